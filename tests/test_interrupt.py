"""Ctrl-C and a `tracker.track` block: a second Ctrl-C while the block waits for its last commit still records the run as interrupted."""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap
import time

import pytest

import tracker
from tests.support.children import child_env

INTERRUPTED_CHILD = """
import sys, time
import numpy as np
import tracker

with tracker.track("r") as run:
    for epoch in range(3):
        run.submit_epoch(epoch, {"loss": 1.0}, {"w": np.zeros(2)}, {})
    print("waiting", flush=True)
    time.sleep(600)
"""


@pytest.mark.slow
def test_a_second_ctrl_c_while_finishing_records_interrupted(tmp_path):
    (tmp_path / "train.py").write_text(textwrap.dedent(INTERRUPTED_CHILD))
    # The writer stops for good before committing epoch 2, so the first Ctrl-C's finish waits on it.
    child = subprocess.Popen([sys.executable, "train.py"], cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                             env=child_env(TRACKER_DB="t.db", TRACKER_CHECKPOINT_DIR="ck", TRACKER_TEST_PAUSE_AT="before-commit:2"))
    try:
        assert child.stdout.readline() == "waiting\n"
        while "TRACKER-PAUSED" not in child.stderr.readline():
            pass
        child.send_signal(signal.SIGINT)
        time.sleep(1.0)
        assert child.poll() is None  # still waiting for the pending epoch
        child.send_signal(signal.SIGINT)
        child.wait(timeout=30)
    finally:
        child.kill()
    info = tracker.runs(str(tmp_path / "t.db"))[0]
    assert (info.status, info.last_epoch) == ("interrupted", 1)
