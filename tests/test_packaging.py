"""The built wheel carries the migrations, so a non-editable install can create and migrate a database,
and the web view's page files and vendored chart library, so that it serves offline."""

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
    web = ("tracker/serve/__main__.py", "tracker/serve/static/index.html", "tracker/serve/static/app.js", "tracker/serve/static/app.css",
           "tracker/serve/static/vendor/uPlot.iife.min.js", "tracker/serve/static/vendor/uPlot.min.css", "tracker/serve/static/vendor/uPlot.LICENSE")
    for expected in ("tracker/_migrations/env.py", "tracker/_migrations/script.py.mako", "tracker/_migrations/versions/0001_initial.py",
                     "tracker/cli/__init__.py", *web):
        assert expected in names
    site = tmp_path / "site"
    zipfile.ZipFile(wheel).extractall(site)
    probe = ("import tracker, tracker.store as s, tracker.serve.app as web; s.open_store('fresh.db').close(); "
             "assert (web.STATIC / 'vendor' / 'uPlot.iife.min.js').is_file(), web.STATIC; print(tracker.__file__); "
             "from tracker.cli import main; assert main(['list', '--db', 'fresh.db']) == 0")
    out = subprocess.run(
        [sys.executable, "-c", probe], cwd=tmp_path, env={"PYTHONPATH": str(site), "PATH": "/usr/bin:/bin"},
        capture_output=True, text=True, timeout=120,
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().startswith(str(site))  # the wheel's copy, not the source tree
    assert (tmp_path / "fresh.db").exists()


def test_every_package_under_tracker_is_listed_for_the_wheel():
    # setuptools takes the explicit list in pyproject.toml: a new folder left out of it would be missing from the wheel.
    tomllib = pytest.importorskip("tomllib")
    listed = set(tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    found = {".".join(p.parent.relative_to(ROOT).parts) for p in (ROOT / "tracker").rglob("__init__.py")}
    assert found - listed == set(), "add these to [tool.setuptools] packages in pyproject.toml"
