"""Many writers: 8 real processes, each writing its own run to one database at the same moment.

Runs scripts/sweep_bench.py (a small sweep: the suite must stay fast on 2 cores) and
checks its verdict, then reads every run back here too. Timings are never asserted.
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import tracker

SWEEP = Path(__file__).resolve().parent.parent / "scripts" / "sweep_bench.py"
PROCS, EPOCHS = 8, 25


def _sweep_module() -> ModuleType:
    spec = importlib.util.spec_from_file_location("sweep_bench", SWEEP)
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault(spec.name, module)  # its dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def test_eight_processes_write_one_database_without_lock_errors_or_lost_rows(db: str, tmp_path: Path) -> None:
    figures = tmp_path / "sweep.json"
    proc = subprocess.run(
        [sys.executable, str(SWEEP), "--db", db, "--procs", str(PROCS), "--epochs", str(EPOCHS),
         "--checkpoint-dir", str(tmp_path / "ckpt"), "--json", str(figures), "--timeout", "240"],
        check=False, capture_output=True, text=True, timeout=300,
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
    sweep = _sweep_module()
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
