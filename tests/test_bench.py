"""``python -m scripts.bench`` still runs: its --quick smoke run exits 0 and prints the table. Timings are never asserted."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from tests.support.scripts import script_command, script_env


@pytest.mark.slow
def test_quick_benchmark_runs_and_prints_the_table(tmp_path: Path) -> None:
    proc = subprocess.run(script_command("bench", "--quick"), cwd=tmp_path, env=script_env(), capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    header = next((line for line in proc.stdout.splitlines() if line.startswith("row ")), None)
    assert header is not None, proc.stdout
    assert all(word in header for word in ("measurement", "tracker", "baseline", "ratio", "target"))
    for row in ("1 ", "2a", "3b", "3c", "4b", "5 ", "6 ", "7 ", "8a", "8b", "9a", "9b", "9c", "9d", "9e", "10a", "10b"):
        assert any(line.startswith(row) for line in proc.stdout.splitlines()), f"row {row!r} missing:\n{proc.stdout}"
