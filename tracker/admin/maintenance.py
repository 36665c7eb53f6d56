"""``tracker verify`` and ``tracker gc``: check every kept checkpoint against the database, and free what no row needs.

Both reuse the checks that training itself relies on: `tracker.checkpoint.read_verified`
(size and sha256 against the database), `tracker.checkpoint.newest_verified` (where a resume
would continue) and `Folder.sweep` (which files no row points at). Neither touches the
folder of a run whose writer is alive: it may be in the middle of a write.

Example:
    >>> store = open_store("runs.db")                                # doctest: +SKIP
    >>> [f for check in verify(store) for f in check.findings]       # doctest: +SKIP
    >>> sum(size for _, size, _ in collect(store, dry_run=True))     # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

from tracker.admin.runs import (
    delete_run,
    owns,
    remove_leftover,
    rename_leftover,
    size_of,
)
from tracker.checkpoint import MARKER, LocalFolder, newest_verified, read_verified, run_folder
from tracker.errors import CheckpointError
from tracker.faults import pause_point
from tracker.query import effective_status
from tracker.records import Retention, RunRow, Status, now
from tracker.store import Store


@dataclass(frozen=True)
class Finding:
    """One thing `verify` found wrong."""

    #: ``missing`` or ``corrupt`` (a kept checkpoint), ``orphan`` (a file no row points at),
    #: ``unfinished-rm`` (a run whose ``rm`` was interrupted) or ``leftover`` (a folder an interrupted rename left).
    kind: str
    path: str
    detail: str


@dataclass(frozen=True)
class RunCheck:
    """What `verify` found for one run."""

    run: str
    findings: list[Finding] = field(default_factory=list)
    #: Where a resume would continue now that a live checkpoint is bad: ``"epoch N"`` or ``"epoch 0 (start over)"``.
    fallback: str | None = None


def _selected(store: Store, names: Sequence[str] | None) -> list[tuple[RunRow, str]]:
    """The runs to look at, each with its status as `tracker.runs` shows it (``running`` only while its writer is alive)."""
    found = [(r, effective_status(r, a)) for r, a in store.list_runs()]
    if not names:
        return found
    wanted = {store.get_run(n).name for n in names}  # raises, with suggestions, for an unknown name
    return [(r, state) for r, state in found if r.name in wanted]


def _leftovers(store: Store, selected: list[tuple[RunRow, str]]) -> Iterator[tuple[RunRow, LocalFolder, list[str]]]:
    """Folders an interrupted `tracker.admin.runs.rename_run` left beside stopped runs' folders, with the files to delete.

    Only folders whose marker names a run of this database that records another folder are looked at,
    and `tracker.admin.runs.rename_leftover` decides.
    """
    stopped = {r.uid: r for r, state in selected if state not in (Status.RUNNING, Status.DELETING)}
    roots = {Path(r.checkpoint_dir).parent for r in stopped.values() if isinstance(run_folder(r), LocalFolder)}
    for root in sorted(roots):
        for child in sorted(root.iterdir()) if root.is_dir() else []:
            try:
                uid = (child / MARKER).read_text().splitlines()[0]
            except (OSError, IndexError):
                continue
            run = stopped.get(uid)
            if run is None or str(child) == run.checkpoint_dir:
                continue
            links = rename_leftover(store, run, LocalFolder(child))
            if links is not None:
                yield run, LocalFolder(child), links


def verify(store: Store, names: Sequence[str] | None = None) -> list[RunCheck]:
    """Re-read every kept checkpoint of the runs ``names`` (default: all) and compare it with the database.

    Also reports orphaned files in stopped runs' folders, runs whose ``rm`` was interrupted, and folders an
    interrupted rename left; for a run with a bad live checkpoint, the epoch a resume would fall back to.
    """
    selected = _selected(store, names)
    checks = {r.name: RunCheck(r.name) for r, _ in selected}
    for run, state in selected:
        live = state == Status.RUNNING
        findings = checks[run.name].findings
        folder = run_folder(run)
        if run.status == Status.DELETING:
            findings.append(Finding("unfinished-rm", run.checkpoint_dir, "rm was interrupted; gc finishes it"))
        elif folder is not None:
            bad_live = False
            for row in store.checkpoints(run.id, live_only=False):
                try:
                    read_verified(folder.locate(row.checkpoint))
                except CheckpointError as e:
                    if live and row.checkpoint.path not in store.referenced_paths(run.id):
                        continue  # retention of the live writer deleted it after we listed it
                    missing = isinstance(e.__cause__, FileNotFoundError)
                    findings.append(Finding("missing" if missing else "corrupt", row.checkpoint.path, f"{row.describe()}: {e}"))
                    bad_live = bad_live or not row.superseded
            if bad_live:
                point = newest_verified(store.checkpoints(run.id), folder).row
                fallback = "epoch 0 (start over)" if point is None else point.describe()
                checks[run.name] = RunCheck(run.name, findings, fallback)
        if folder is not None and not live and owns(folder, run, store):
            for path in folder.sweep(store.referenced_paths(run.id), dry_run=True):
                findings.append(Finding("orphan", path, "no row points at it; gc deletes it"))
    for run, leftover, links in _leftovers(store, selected):
        checks[run.name].findings.append(Finding("leftover", leftover.location, "left by an interrupted rename; gc deletes it"))
        for path in links:
            checks[run.name].findings.append(Finding("orphan", path, "no row points at it; gc deletes it"))
    return list(checks.values())


def collect(
    store: Store,
    *,
    dry_run: bool = False,
    older_than: float | None = None,
    status: str | None = None,
    keep_last: int = 1,
) -> list[tuple[str, int, str]]:
    """Free the space no committed row needs; return ``(path, bytes, why)`` for each file deleted.

    - finishes runs whose ``rm`` was interrupted;
    - applies retention (the ``keep_last`` newest live checkpoints and the best one) to the stopped runs
      selected by ``older_than`` (days since their last update) and ``status``; with neither, to none;
    - deletes orphans in stopped runs' folders, and folders an interrupted rename left.

    Never deletes a file a committed row points at, and never touches a live run's folder.
    ``dry_run=True`` deletes nothing and returns what it would delete.
    """
    if keep_last < 1:
        raise ValueError(f"Invalid value for --keep-last. Received: {keep_last}. Expected an integer >= 1.")
    freed: list[tuple[str, int, str]] = []
    selected = _selected(store, None)
    for run, state in selected:
        folder = run_folder(run)
        if state == Status.DELETING:
            if dry_run:
                freed += [(p, size_of(p), f"interrupted rm of {run.name}") for p in _owned_files(store, run)]
            else:
                freed += [(p, size, f"interrupted rm of {run.name}") for p, size in delete_run(store, run, force=True)]
            continue
        # Asked again just before touching the folder: a writer may have started since the list was read.
        if state == Status.RUNNING or folder is None or store.live_writer(run) is not None:
            continue
        if _retention_applies(run, state, older_than, status):
            doomed = store.apply_retention(run, Retention(keep_last=keep_last, keep_best=True), dry_run=dry_run)
            pause_point("gc-after-retention", 0)
            if not dry_run:
                folder.delete([f.path for f in doomed])
            freed += [(f.path, f.size, f"retention of {run.name}") for f in doomed]
        if owns(folder, run, store):
            referenced = store.referenced_paths(run.id)
            orphans = [(p, size_of(p)) for p in folder.sweep(referenced, dry_run=True)]
            if not dry_run:
                folder.sweep(referenced)
            freed += [(p, size, f"orphan of {run.name}") for p, size in orphans]
    for run, leftover, links in list(_leftovers(store, selected)):
        why = f"left by an interrupted rename of {run.name}"
        if dry_run:
            freed += [(p, size_of(p), why) for p in links]
        else:
            freed += [(p, size, why) for p, size in remove_leftover(store, run, leftover)]
    return freed


def _owned_files(store: Store, run: RunRow) -> list[str]:
    folder = run_folder(run)
    if folder is None or not owns(folder, run, store):
        return []
    return folder.sweep(store.referenced_paths(run.id), dry_run=True)


def _retention_applies(run: RunRow, state: str, older_than: float | None, status: str | None) -> bool:
    if older_than is None and status is None:
        return False
    if older_than is not None and now() - run.updated_at < timedelta(days=older_than):
        return False
    return status is None or state == status
