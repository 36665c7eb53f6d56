"""How the subcommands write what they read: aligned tables, ``key: value`` pairs, times, numbers and JSON.

A leaf of the command line, as `tracker.cli.command` is: the subcommand modules share it, so that
``tracker list`` and ``tracker sweep show`` print times, values and tables alike.

Example:
    >>> print_table([["name", "status"], ["cnn-a", "completed"]])
    name   status
    cnn-a  completed
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime

from tracker import settings
from tracker.store import db as dbmod

#: How much of a tag's key and of its value a table shows; ``--json`` and ``show`` give them whole.
TAG_CELL = 40


def database_display(db: str | None) -> str:
    """The database as messages name it: the file path, or the URL with its password masked (the store's own display)."""
    return dbmod.locate(settings.resolve_db(db)).display


def json_default(value: object) -> str:
    """``default=`` for `json.dumps`: a datetime as ISO 8601."""
    if isinstance(value, datetime):
        return value.isoformat()
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


def local_time(t: datetime, *, seconds: bool = False) -> str:
    """``2025-03-01 14:05`` in the local time zone."""
    return t.astimezone().strftime("%Y-%m-%d %H:%M:%S" if seconds else "%Y-%m-%d %H:%M")


def or_unknown(n: int | None) -> str:
    """A count that may not be known yet (a run's target epochs): ``?`` for None."""
    return "?" if n is None else str(n)


def number_text(value: float | None) -> str:
    """A value in full enough for a summary: 6 significant digits, ``none`` for None."""
    return "none" if value is None else format(value, ".6g")


def best_text(monitor: str | None, value: float | None, epoch: int | None) -> str:
    """``val_loss=0.52 at epoch 2``, or ``-`` before there is a best epoch."""
    if not monitor or value is None or epoch is None:
        return "-"
    return f"{safe_text(monitor)}={format(value, '.4g')} at epoch {epoch}"


def safe_text(text: str, limit: int | None = None) -> str:
    """``text`` as a terminal may print it: each control or other unprintable character escaped as Python writes
    it (``\\x1b``, ``\\n``), so that a value can neither retitle nor recolour the terminal nor split a table's row;
    cut to ``limit`` characters with ``...`` when given. ``--json`` gives values raw and whole.

    Example:
        >>> safe_text("red\\x1b[31m\\nnext", limit=12)
        'red\\\\x1b[3...'
    """
    if not text.isprintable():
        text = "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)
    return text if limit is None or len(text) <= limit else text[: limit - 3] + "..."


def tags_text(tags: dict[str, str], limit: int | None = None) -> str:
    """``key=value`` pairs on one line, each key and value escaped (`safe_text`) and, in a table, cut to ``limit``."""
    return " ".join(f"{safe_text(k, limit)}={safe_text(v, limit)}" for k, v in tags.items())


def param_text(value: object, limit: int = 40) -> str:
    """A hyperparameter in a table cell: a float to 4 significant digits, a printable string as it is, anything
    else (a string with a newline, a list) as JSON; cut to ``limit`` characters. ``--json`` gives them whole."""
    if isinstance(value, float):
        text = format(value, ".4g")
    elif isinstance(value, str) and value.isprintable() or isinstance(value, int) and not isinstance(value, bool):
        text = str(value)
    else:
        text = json.dumps(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def print_table(rows: Sequence[Sequence[str]], indent: str = "") -> None:
    """Print ``rows`` (the header first) as left-aligned columns two spaces apart."""
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        print(indent + "  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip())


def print_pairs(pairs: Sequence[tuple[str, str]], indent: str = "") -> None:
    """Print ``key: value`` lines with the values aligned."""
    width = max((len(k) for k, _ in pairs), default=0) + 1
    for key, value in pairs:
        print(f"{indent}{(key + ':').ljust(width)}  {value}")
