"""Where tracker keeps things: environment variables, defaults, run names.

Every environment variable tracker reads is named here and nowhere else.
"""

from __future__ import annotations

import json
import math
import os
import re
from pathlib import Path

from tracker.redact import redact

#: Database file path or SQLAlchemy URL, used when ``db=`` is not given.
ENV_DB = "TRACKER_DB"
#: Folder for checkpoints, used when ``checkpoint_dir=`` is not given.
ENV_CHECKPOINT_DIR = "TRACKER_CHECKPOINT_DIR"
#: Set to ``1`` by ``python -m tracker.resume --force``: take over a run whose writer looks alive.
ENV_FORCE = "TRACKER_FORCE"
#: TensorFlow's cluster description for multi-worker training; tracker reads which task this process is.
ENV_TF_CONFIG = "TF_CONFIG"
#: Seconds a write to a SQLite database waits for a lock that another program holds; unset: as long as it is held.
ENV_LOCK_TIMEOUT = "TRACKER_LOCK_TIMEOUT"
#: Seconds a writer that stops beating keeps its run (its lease); the heartbeat beats every eighth of it. Default 120.
ENV_LEASE = "TRACKER_LEASE_SECONDS"
#: Folder of the local-first spools of runs written to a database server or remote checkpoints (team mode).
ENV_SPOOL_DIR = "TRACKER_SPOOL_DIR"
#: ``off``: a run with a database server or remote checkpoints writes to them directly, without a spool.
ENV_SPOOL = "TRACKER_SPOOL"
#: Seconds a finishing run waits for its spool to reach the server before it leaves the rest for later. Default 30.
ENV_SPOOL_WAIT = "TRACKER_SPOOL_WAIT"
#: Test-only: name of a write boundary at which the process stops itself (see `tracker.checkpoint`).
ENV_PAUSE_AT = "TRACKER_TEST_PAUSE_AT"

DEFAULT_DB = "tracker.db"
DEFAULT_LEASE_SECONDS = 120.0
DEFAULT_CHECKPOINT_DIR = "checkpoints"
DEFAULT_SPOOL_WAIT_SECONDS = 30.0

_RUN_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._=+@,-]{0,127}")


def resolve_db(db: str | os.PathLike[str] | None) -> str:
    """The database to use: ``db`` if given, else ``$TRACKER_DB``, else ``./tracker.db``."""
    if db is not None:
        return os.fspath(db)
    return os.environ.get(ENV_DB) or DEFAULT_DB


def lock_timeout() -> float:
    """``$TRACKER_LOCK_TIMEOUT`` in seconds; unset means no limit (``math.inf``).

    Raises:
        ValueError: The variable is set but is not a number of seconds > 0.
    """
    raw = os.environ.get(ENV_LOCK_TIMEOUT)
    if not raw:
        return math.inf
    try:
        seconds = float(raw)
    except ValueError:
        seconds = math.nan
    if not seconds > 0:  # also refuses NaN
        raise ValueError(
            f"Invalid value for {ENV_LOCK_TIMEOUT}. Received: {raw!r}. Expected a number of seconds > 0 "
            "(e.g. 3600, or inf), or leave it unset to wait as long as another program holds the database's lock."
        )
    return seconds


def resolve_checkpoint_root(checkpoint_dir: str | os.PathLike[str] | None) -> str:
    """Where checkpoints go: the argument, else ``$TRACKER_CHECKPOINT_DIR``, else ``./checkpoints``.

    A local path comes back absolute and resolved; a URL (``s3://bucket/prefix``) as given.

    Raises:
        ValueError: The URL holds a password, which would end up in the database.
    """
    chosen = os.fspath(checkpoint_dir) if checkpoint_dir is not None else None
    chosen = chosen or os.environ.get(ENV_CHECKPOINT_DIR) or DEFAULT_CHECKPOINT_DIR
    if is_url(chosen):
        if redact(chosen) != chosen:
            raise ValueError(
                f"Checkpoint location {redact(chosen)!r} holds a password. tracker records this location, so pass "
                "credentials through storage_options= or the storage provider's environment variables instead."
            )
        return chosen.rstrip("/")
    # Resolved, symlinks included, so that one folder reached by two paths is recorded the same way.
    return str(Path(chosen.removeprefix("file://")).expanduser().resolve())


def is_url(location: str) -> bool:
    """Whether ``location`` names an fsspec filesystem (``s3://...``) rather than a local path."""
    return "://" in location and not location.startswith("file://")


def is_chief() -> bool:
    """Whether this process writes the run: False only for a non-chief task of a ``TF_CONFIG`` cluster.

    The chief is the ``chief`` task, or worker 0 of a cluster without one, as in
    ``tf.distribute.MultiWorkerMirroredStrategy``.

    Raises:
        ValueError: ``TF_CONFIG`` is set but is not valid JSON.
    """
    raw = os.environ.get(ENV_TF_CONFIG)
    if not raw:
        return True
    try:
        config = json.loads(raw)
        task = config.get("task") or {}
        kind, index = task.get("type"), int(task.get("index", 0))
    except (ValueError, AttributeError, TypeError) as e:
        raise ValueError(f"TF_CONFIG is not a valid cluster description ({e}). Fix it or unset it.") from e
    if kind in (None, "chief"):
        return True
    return kind == "worker" and index == 0 and "chief" not in (config.get("cluster") or {})


def lease_seconds() -> float:
    """``$TRACKER_LEASE_SECONDS``: how long a writer whose heartbeat stopped keeps its run. Defaults to 120.

    A shorter lease hands a frozen writer's run (a stopped process, a lost host) to another process sooner;
    every process that writes or reads the same database must use the same value.

    Raises:
        ValueError: The variable is set but is not a number of seconds >= 1.
    """
    raw = os.environ.get(ENV_LEASE)
    if not raw:
        return DEFAULT_LEASE_SECONDS
    try:
        seconds = float(raw)
    except ValueError:
        seconds = math.nan
    if not (1 <= seconds < math.inf):  # also refuses NaN
        raise ValueError(
            f"Invalid value for {ENV_LEASE}. Received: {raw!r}. Expected a number of seconds >= 1 (e.g. 120), "
            "or leave it unset for the default of 120."
        )
    return seconds


def spool_dir() -> Path:
    """``$TRACKER_SPOOL_DIR``, else ``$XDG_STATE_HOME/tracker/spool`` (``~/.local/state/tracker/spool``): where a run
    that writes to a database server or remote checkpoints keeps its commits and files until they have reached them."""
    chosen = os.environ.get(ENV_SPOOL_DIR)
    if chosen:
        return Path(chosen).expanduser().absolute()
    state = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(state).expanduser().absolute() / "tracker" / "spool"


def spool_enabled() -> bool:
    """False when ``$TRACKER_SPOOL`` is ``off``: a server run then writes directly, and an outage stops training.

    Raises:
        ValueError: The variable is set to anything but ``on`` or ``off``.
    """
    raw = os.environ.get(ENV_SPOOL, "on").strip().lower() or "on"
    if raw not in ("on", "off"):
        raise ValueError(f"Invalid value for {ENV_SPOOL}. Received: {raw!r}. Expected 'on' (the default) or 'off'.")
    return raw == "on"


def spool_wait_seconds() -> float:
    """``$TRACKER_SPOOL_WAIT``: how long a finishing run waits for its spool to drain. Defaults to 30.

    Raises:
        ValueError: The variable is set but is not a number of seconds >= 0.
    """
    raw = os.environ.get(ENV_SPOOL_WAIT)
    if not raw:
        return DEFAULT_SPOOL_WAIT_SECONDS
    try:
        seconds = float(raw)
    except ValueError:
        seconds = math.nan
    if not (0 <= seconds < math.inf):
        raise ValueError(
            f"Invalid value for {ENV_SPOOL_WAIT}. Received: {raw!r}. Expected a number of seconds >= 0 (e.g. 30)."
        )
    return seconds


def validate_run_name(name: object) -> str:
    """Return ``name`` if it is a safe run name, else raise.

    A run name becomes a folder under the checkpoint folder, so it must not be
    able to point anywhere else: no path separators, no leading dot, no NUL.

    Raises:
        TypeError: ``name`` is not a string.
        ValueError: ``name`` is empty, too long or has characters that are not allowed.
    """
    if not isinstance(name, str):
        raise TypeError(f"Run name must be a string. Received: {name!r} of type {type(name).__name__}.")
    if not _RUN_NAME.fullmatch(name):
        raise ValueError(
            f"Invalid run name {name!r}. A run name becomes a folder name, so it must be 1 to 128 "
            "characters of letters, digits and . _ = + @ , - , starting with a letter or digit "
            "(no '/', no '..' at the start, no NUL). Example: 'cnn-lr0.01'."
        )
    return name
