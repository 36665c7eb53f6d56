"""``tracker publish``: a run's page as a self-contained folder, to send or host anywhere, no server needed.

The folder holds the live page's own files (``static/``: ``app.js``, its styles and the vendored chart library),
an ``index.html`` that loads them by relative paths under a policy that forbids any network access, and
``data.js``: exactly what the JSON API (`tracker.serve.data`) answers for the published runs, which the page
reads instead of fetching (``window.TRACKER_DATA``, as JSON text: an object literal would take a key ``__proto__``
for the prototype). It opens from ``file://``: ``index.html#/run/NAME``.

Unless asked (``include_paths``), no absolute path of the training machine is in it: every path in a command,
a working directory, an error or a checkpoint is cut to its last component, and passwords in URLs are masked.
A folder is written beside its destination and renamed into place, so a crash never leaves half a page.

Example:
    >>> publish("runs/tracker.db", ["cnn-a", "cnn-b"], Path("share/cnn"))   # doctest: +SKIP
    PosixPath('share/cnn/index.html')
"""

from __future__ import annotations

import json
import os
import re
import shutil
import uuid
from pathlib import Path
from typing import Any

from tracker.errors import TrackerError
from tracker.redact import redact
from tracker.serve import data
from tracker.serve.app import STATIC
from tracker.store import open_store

#: Marks a folder as one this command wrote: publishing again may replace it.
MARKER = ".tracker-publish"
_ABSOLUTE = re.compile(r"(?<![\w.:/-])/(?:[^\s'\"/]+/)*([^\s'\"/]+)")
_POLICY = ("default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; "
           "connect-src 'none'; form-action 'none'; base-uri 'none'")


def publish(db: str | os.PathLike[str] | None, names: list[str], out: Path, *, include_paths: bool = False,
            force: bool = False) -> Path:
    """Write the page of runs ``names`` of ``db`` to the folder ``out``; return its ``index.html``.

    Raises:
        RunNotFoundError: A run is not in the database (with close names).
        TrackerError: ``out`` holds something else than an earlier publish, and ``force`` is not set.
    """
    if not names:
        raise ValueError("tracker publish needs at least one RUN, e.g. tracker publish cnn-a -o share/cnn-a")
    _refuse_foreign(out, force)
    store = open_store(db, create=False)
    try:
        for name in names:
            store.get_run(name)
        answers = {
            "runs": [r for r in data.list_runs(store) if r["name"] in names],
            "details": {n: data.run_detail(store, n) for n in names},
            "curves": {n: data.run_curves(store, n, max_points=data_max_points(), superseded=True) for n in names},
        }
    finally:
        store.close()
    if not include_paths:
        answers = _scrubbed(answers)
    temp = out.parent / f".{out.name}.{uuid.uuid4().hex[:8]}.tmp"
    out.parent.mkdir(parents=True, exist_ok=True)
    try:
        shutil.copytree(STATIC, temp / "static", ignore=shutil.ignore_patterns("index.html"))
        (temp / "data.js").write_text("window.TRACKER_DATA = " + json.dumps(json.dumps(answers, allow_nan=False)) + ";\n")
        (temp / "index.html").write_text(_index())
        (temp / MARKER).write_text("written by tracker publish; publishing again here replaces this folder\n")
        _replace(temp, out)
    finally:
        shutil.rmtree(temp, ignore_errors=True)
    return out / "index.html"


def data_max_points() -> int:
    """As many points per curve as the live page asks for (``MAX_POINTS`` in ``static/app.js``)."""
    found = re.search(r"const MAX_POINTS = (\d+);", (STATIC / "app.js").read_text())
    return int(found[1]) if found else 2000


def _refuse_foreign(out: Path, force: bool) -> None:
    if out.exists() and not out.is_dir():
        raise TrackerError(f"Cannot publish to {out}: it is a file. Pass a folder (-o DIR).")
    if out.is_dir() and any(out.iterdir()) and not (out / MARKER).exists() and not force:
        raise TrackerError(
            f"Cannot publish to {out}: it holds files that tracker publish did not write. Pick an empty or new "
            "folder, or pass --force to replace it."
        )


def _replace(new: Path, out: Path) -> None:
    old = out.parent / f".{out.name}.{uuid.uuid4().hex[:8]}.old"
    if out.exists():
        out.rename(old)
    new.rename(out)
    shutil.rmtree(old, ignore_errors=True)


def _index() -> str:
    page = (STATIC / "index.html").read_text()
    page = page.replace('href="/static/', 'href="static/').replace('src="/static/', 'src="static/')
    page = page.replace('<a href="/" class="brand">', '<a href="#/" class="brand">')
    page = page.replace('<script src="static/app.js">', '<script src="data.js"></script>\n<script src="static/app.js">')
    policy = f'<meta http-equiv="Content-Security-Policy" content="{_POLICY}">'
    return page.replace('<meta charset="utf-8">', f'<meta charset="utf-8">\n{policy}', 1)


def _scrubbed(value: Any) -> Any:
    """``value`` with every absolute path cut to its last component and every password in a URL masked."""
    if isinstance(value, str):
        return _ABSOLUTE.sub(lambda m: m[1], redact(value))
    if isinstance(value, list):
        return [_scrubbed(v) for v in value]
    if isinstance(value, dict):
        return {k: _scrubbed(v) for k, v in value.items()}
    return value
