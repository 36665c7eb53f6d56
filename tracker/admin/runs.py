"""Deleting and renaming runs, crash-safely, and finding a run's checkpoint folder.

The order of database transactions and file operations is chosen so that a
SIGKILL at any instant leaves either the whole run, or files that no row points
at (orphans, which ``tracker gc`` deletes): never a row that points at a deleted
file.

Example:
    >>> store = open_store("runs.db")                              # doctest: +SKIP
    >>> delete_run(store, store.get_run("cnn-old"), force=False)   # doctest: +SKIP
    >>> rename_run(store, store.get_run("cnn-a"), "cnn-baseline")  # doctest: +SKIP
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

from tracker import settings
from tracker.checkpoint import Folder, LocalFolder, run_folder
from tracker.durable import fsync_path
from tracker.faults import pause_point
from tracker.records import FileInfo, RunRow
from tracker.store import Store


def owns(folder: Folder, run: RunRow, store: Store) -> bool:
    """Whether ``folder`` exists and its ``.tracker-run`` marker names ``run``, so that tracker may delete files in it.

    A folder that another database's run of the same name owns, or that has no marker, is never touched.
    """
    return folder.owned_by(run.uid)


def size_of(path: str) -> int:
    """The size in bytes of a local file or an object at a URL; 0 if it is gone."""
    try:
        if settings.is_url(path):
            import fsspec

            fs, key = fsspec.core.url_to_fs(path)
            return int(fs.size(key))
        return os.stat(path).st_size
    except FileNotFoundError:
        return 0


def empty_folder(store: Store, run: RunRow, folder: Folder) -> list[tuple[str, int]]:
    """Delete every checkpoint file in ``folder`` that no row of ``run`` points at, then its marker and the
    folder itself if that leaves it empty. Returns the files deleted with their sizes.

    Files tracker did not name are never deleted; a folder that holds some is kept.
    """
    # Only rows that record a path in this very folder keep a file here: after a rename, the hard links
    # left in the old folder carry the same names as the run's files, yet no row points at them.
    referenced = {p for p in store.referenced_paths(run.id) if p.rsplit("/", 1)[0] == folder.location}
    doomed = [(p, size_of(p)) for p in folder.sweep(referenced, dry_run=True)]
    folder.sweep(referenced)
    if isinstance(folder, LocalFolder) and not referenced:
        folder.release()  # the folder itself only if empty: files that are not tracker's stay with it
    return doomed


def rename_leftover(store: Store, run: RunRow, folder: LocalFolder) -> list[str] | None:
    """The files to delete from ``folder``, a folder marked as ``run``'s that the run does not record, if an
    interrupted `rename_run` left it; None if it is not such a leftover.

    A rename leaves only hard links to the run's own checkpoints, so only those are ever returned. A folder
    that holds any other checkpoint file (a copy someone made with ``cp -r``, say) is not a leftover, and
    neither is one that still holds a file a row points at.
    """
    referenced = store.referenced_paths(run.id)
    if any(Path(p).parent == folder.path for p in referenced):
        return None
    inodes = {_inode(p) for p in referenced} - {None}
    unreferenced = folder.sweep(set(), dry_run=True)  # the run does not record this folder: none of its files
    links = [p for p in unreferenced if _inode(p) in inodes]
    return links if len(links) == len(unreferenced) else None


def _inode(path: str) -> tuple[int, int] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_dev, st.st_ino


def remove_leftover(store: Store, run: RunRow, folder: LocalFolder) -> list[tuple[str, int]]:
    """Delete a folder that `rename_leftover` recognises: its links, its marker, and the folder if then empty."""
    links = rename_leftover(store, run, folder)
    if links is None:
        return []
    freed = [(p, size_of(p)) for p in links]
    for p in links:
        Path(p).unlink(missing_ok=True)
    folder.release()  # the folder itself only if empty: files that are not tracker's stay with it
    return freed


def delete_run(store: Store, run: RunRow, *, force: bool) -> list[tuple[str, int]]:
    """Delete a run: its rows and its checkpoint files. Returns the files deleted with their sizes.

    1. One transaction marks the run ``deleting`` and its checkpoints as deleted, and fences out its writer:
       from then on no row points at a file.
    2. The files, the folder's marker, and the folder if it is then empty, are deleted.
    3. One transaction deletes the run's rows.

    A crash after step 1 leaves a ``deleting`` run whose files are orphans: ``tracker gc`` (or ``rm`` again)
    finishes it.

    Raises:
        RunLockedError: The run's writer is alive and ``force`` is False.
    """
    run = store.begin_delete(run, force=force)
    pause_point("rm-after-mark", 0)
    folder = run_folder(run)
    freed = empty_folder(store, run, folder) if folder is not None and owns(folder, run, store) else []
    pause_point("rm-after-files", 0)
    store.finish_delete(run)
    return freed


def rename_run(store: Store, run: RunRow, new_name: str) -> str:
    """Rename a run; its curve, checkpoints and resumability stay. Returns the run's checkpoint folder after.

    When the run's local checkpoint folder is named after it (``<checkpoint_dir>/<old name>``), the folder
    follows the new name, crash-safely, without copying a byte:

    1. ``<checkpoint_dir>/<new name>`` is made, marked as the run's, and gets a hard link to each checkpoint
       file; it is fsynced. The database still points at the old folder, whose files are untouched.
    2. One transaction renames the run and points its rows at the new links.
    3. The old folder's links, marker and folder are deleted.

    A crash before step 2 leaves the run as it was plus a folder of links that no row points at; a crash
    after it leaves the renamed run plus the old folder of such links. ``tracker gc`` deletes either
    (see `rename_leftover`), and so does the next rename to the same name.
    Elsewhere (object storage, a folder named otherwise) only the row is renamed and the folder stays.

    Raises:
        ValueError: ``new_name`` is not a valid run name, or is taken.
        RunLockedError: The run's writer is alive.
    """
    settings.validate_run_name(new_name)
    store.refuse_live(run, "Rename it once it has stopped.")  # before any file is touched
    if store.find_run(new_name) is not None:
        raise ValueError(f"A run named {new_name!r} already exists in {store.display}. Choose another name, or remove that run first.")
    folder = run_folder(run)
    if (
        not isinstance(folder, LocalFolder)
        or folder.path.name != run.name
        or not owns(folder, run, store)
    ):
        store.rename_run(run, new_name)
        return run.checkpoint_dir
    target = LocalFolder(folder.path.with_name(new_name))
    if target.path.exists():
        # Only a leftover of an interrupted rename of this same run may be reused.
        if not owns(target, run, store) or rename_leftover(store, run, target) is None:
            raise ValueError(
                f"Cannot move the checkpoints of run {run.name!r} to {target.path}: it exists and is not a leftover of this run. Move it away first."
            )
        remove_leftover(store, run, target)
    try:
        target.path.mkdir(exist_ok=True)
        target.claim(run.uid, store.display, set())
        for path in sorted(store.referenced_paths(run.id)):
            here = Path(folder.locate(FileInfo(path, 0, "")).path)
            if here.parent == folder.path and here.exists():
                os.link(here, target.path / here.name)
        fsync_path(target.path)
        fsync_path(target.path.parent)
    except OSError as e:
        # A file system without hard links, say: the run is renamed and its folder stays where it is.
        remove_leftover(store, run, target)
        warnings.warn(f"Cannot move the checkpoints of run {run.name!r} to {target.path} ({e.strerror or e}); they stay in {folder.path}.", stacklevel=2)
        store.rename_run(run, new_name)
        return run.checkpoint_dir
    pause_point("rename-after-link", 0)
    store.rename_run(run, new_name, (folder.location, target.location))
    pause_point("rename-after-commit", 0)
    empty_folder(store, run, folder)
    return target.location

