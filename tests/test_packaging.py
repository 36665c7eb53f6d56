"""The built wheel carries the migrations, so a non-editable install can create and migrate a database."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[1]


@pytest.mark.slow
def test_wheel_ships_migrations_and_opens_a_database(tmp_path):
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", "-w", str(tmp_path / "dist"), str(ROOT)],
        check=True, timeout=600,
    )
    wheel = next((tmp_path / "dist").glob("tracker-*.whl"))
    names = zipfile.ZipFile(wheel).namelist()
    for expected in ("tracker/_migrations/env.py", "tracker/_migrations/script.py.mako", "tracker/_migrations/versions/0001_initial.py",
                     "tracker/cli/__init__.py"):
        assert expected in names
    site = tmp_path / "site"
    zipfile.ZipFile(wheel).extractall(site)
    probe = ("import tracker, tracker.store as s; s.open_store('fresh.db').close(); print(tracker.__file__); "
             "from tracker.cli import main; assert main(['list', '--db', 'fresh.db']) == 0")
    out = subprocess.run(
        [sys.executable, "-c", probe], cwd=tmp_path, env={"PYTHONPATH": str(site), "PATH": "/usr/bin:/bin"},
        capture_output=True, text=True, timeout=120,
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().startswith(str(site))  # the wheel's copy, not the source tree
    assert (tmp_path / "fresh.db").exists()
