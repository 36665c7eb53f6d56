"""``tests/child_numpy.py``, the training script without a framework, run as a real child process by the tests."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def child_env(**extra: str) -> dict[str, str]:
    """This process's environment for a child: no ``TRACKER_*``, ``CRASH_AT`` or ``EPOCH_SLEEP`` leaking in,
    the repository first on ``PYTHONPATH``, then ``extra``."""
    env = {k: v for k, v in os.environ.items() if (not k.startswith("TRACKER_") or k == "TRACKER_SPOOL_DIR") and k not in ("CRASH_AT", "EPOCH_SLEEP")}
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")])
    return {**env, **extra}


def train(cwd: Path, *args: str, prefix: tuple[str, ...] = (), **env: str) -> subprocess.CompletedProcess[str]:
    """Run ``train.py`` in ``cwd`` (a copy of ``tests/child_numpy.py``) as run ``r`` to its end, under ``prefix``
    (``unshare ...``, say) and with ``env`` added to `child_env`; its output is captured."""
    return subprocess.run([*prefix, sys.executable, "train.py", "r", *args], cwd=cwd, env=child_env(**env),
                          capture_output=True, text=True, timeout=120)
