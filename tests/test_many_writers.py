"""Many writers: 8 real processes, each writing its own run to one database at the same moment.

Runs ``python -m scripts.sweep_bench`` (a small sweep: the suite must stay fast on 2 cores) and
checks its verdict, then reads every run back here too. Timings are never asserted.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import tracker
from scripts import sweep_bench as sweep
from tests.support.scripts import script_command, script_env

PROCS, EPOCHS = 8, 25


def test_eight_processes_write_one_database_without_lock_errors_or_lost_rows(db: str, tmp_path: Path) -> None:
    figures = tmp_path / "sweep.json"
    proc = subprocess.run(
        script_command("sweep_bench", "--db", db, "--procs", str(PROCS), "--epochs", str(EPOCHS),
                       "--checkpoint-dir", str(tmp_path / "ckpt"), "--json", str(figures), "--timeout", "240"),
        env=script_env(), check=False, capture_output=True, text=True, timeout=300,
    )
    assert figures.exists(), f"no figures written:\n{proc.stdout}\n{proc.stderr[-3000:]}"
    s = json.loads(figures.read_text())
    report = f"\n{proc.stdout}\n{proc.stderr[-3000:]}"
    assert s["locked_errors"] == 0, report
    assert s["other_errors"] == 0, report
    assert (s["lost_rows"], s["duplicate_rows"], s["wrong_rows"]) == (0, 0, 0), report
    assert s["commits"] == PROCS * EPOCHS, report
    assert len(s["commit_ms"]) == PROCS * EPOCHS, report
    assert len(s["txn_ms"]) == PROCS * EPOCHS, report  # one transaction per commit, none retried
    assert proc.returncode == 0, report
    assert "p99" in proc.stdout

    # Read back here as well, independently of the script's own check.
    listed = {r.name: r for r in tracker.runs(db=db)}
    assert sorted(listed) == sorted(sweep.run_name(i) for i in range(PROCS))
    for i in range(PROCS):
        name = sweep.run_name(i)
        info = listed[name]
        assert (info.status, info.last_epoch, info.target_epochs) == ("completed", EPOCHS - 1, EPOCHS)
        assert info.config == sweep.config_of(i)
        every = tracker.curves(name, db=db, include_superseded=True)
        assert every["epoch"] == list(range(EPOCHS)) and not any(every["superseded"]), name
        curve = tracker.curves(name, db=db)
        expected = [sweep.metrics_of(i, e) for e in range(EPOCHS)]
        assert curve == {"epoch": list(range(EPOCHS)), **{k: [m[k] for m in expected] for k in expected[0]}}, name
