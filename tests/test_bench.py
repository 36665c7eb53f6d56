"""``python -m scripts.bench`` still runs: its --quick smoke run exits 0 and prints the table. Timings are never asserted."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from tests.support.scripts import script_command, script_env


@pytest.mark.slow
def test_quick_benchmark_runs_and_prints_the_table(tmp_path: Path) -> None:
    # A guard against a hang, not a timing: the smoke run takes 4-5 minutes beside another test worker on 2 cores.
    proc = subprocess.run(script_command("bench", "--quick"), cwd=tmp_path, env=script_env(), capture_output=True, text=True, timeout=1200)
    assert proc.returncode == 0, proc.stderr[-3000:]
    header = next((line for line in proc.stdout.splitlines() if line.startswith("row ")), None)
    assert header is not None, proc.stdout
    assert all(word in header for word in ("measurement", "tracker", "baseline", "ratio", "target"))
    for row in ("1 ", "2a", "3b", "3c", "4b", "5 ", "6 ", "7 ", "8a", "8b", "9a", "9b", "9c", "9d", "9e", "10a", "10b", "13"):
        assert any(line.startswith(row) for line in proc.stdout.splitlines()), f"row {row!r} missing:\n{proc.stdout}"


def test_row_11_kill_schedule_lands_on_batches_its_workers_announce(capsys: pytest.CaptureFixture[str]) -> None:
    # Row 11 is left out of a plain --quick run (its child processes take minutes); this checks what its kills rely on:
    # a worker announces every epoch and every batch the schedule can name, so that each kill is reached.
    from scripts.bench.sweeps import batches_per_epoch, kill_schedule, objective_for

    samples, epochs = 200, 2
    objective_for(samples, epochs, announce=True)(3, {"units": 4, "lr": 1e-3})
    lines = [line.split() for line in capsys.readouterr().out.splitlines()]
    assert [line for line in lines if line[0] == "EPOCH"] == [["EPOCH", "3", str(e)] for e in range(epochs)]
    batches = {tuple(int(n) for n in line[1:]) for line in lines if line[0] == "BATCH"}
    assert batches == {(3, e, b) for e in range(epochs) for b in range(batches_per_epoch(samples))}

    schedule = kill_schedule(12, 4, batches_per_epoch(1024), 4)
    assert schedule == kill_schedule(12, 4, batches_per_epoch(1024), 4)  # seeded: every run, every tool, the same kills
    assert len({(k.trial, k.epoch) for k in schedule}) == 4 and schedule == sorted(schedule, key=lambda k: (k.trial, k.epoch))
    assert all(1 <= k.epoch < 4 and 0 <= k.batch < batches_per_epoch(1024) for k in schedule)


def test_crash_torture_help_works_without_httpx(tmp_path: Path) -> None:
    # httpx comes with the test extra; only --serve needs it. None in sys.modules makes `import httpx` fail.
    blocked = (
        "import runpy, sys; sys.modules['httpx'] = None; sys.argv = ['crash_torture', '--help']; "
        "runpy.run_module('scripts.crash_torture', run_name='__main__')"
    )
    proc = subprocess.run([script_command("x")[0], "-c", blocked], cwd=tmp_path, env=script_env(), capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "--serve" in proc.stdout and "usage: python -m scripts.crash_torture" in proc.stdout
