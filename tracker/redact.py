"""Masking secrets in anything tracker prints or records: URLs, command lines, error text.

`redact` is the one masking function: database URLs shown in messages, recorded
command lines and stored error text all go through it; `reason` is the one way an
exception from a driver or a storage client becomes the masked clause of a message.

Example:
    >>> redact("--db=postgresql://me:hunter2@db.lan/runs")
    '--db=postgresql://me:***@db.lan/runs'
    >>> redact("postgresql://db.lan/runs?password=hunter2&sslmode=require")
    'postgresql://db.lan/runs?password=***&sslmode=require'
    >>> redact("--db=postgresql://me:correct horse@db.lan/runs")
    '--db=postgresql://me:***@db.lan/runs'
"""

from __future__ import annotations

import re

MASK = "***"

# scheme://user:PASSWORD@ — users type `--db "postgresql://u:pa ss@h/db"`, a base64 password with '/' in
# it, or one with an '@' in it, unescaped. SQLAlchemy ends the password at its first '@' (and takes the
# rest for the host), so the mask runs to the last '@' instead: masking too much is safe, showing the
# tail of a password is not. A password with whitespace in it may not hold '/' as well, so that
# 'host:5432/db failed for me@corp' in a message is not taken for one.
_USERINFO = re.compile(r"(?P<head>[A-Za-z][A-Za-z0-9+.-]*://[^\s/:@]*:)(?:\S*|[^/\n]*)(?P<at>@)")
# libpq and several drivers also take the password, or a key, as a query parameter. Its value runs to
# the next parameter or the line's end (spaces included, as above), except that text masked before
# keeps what follows it.
_QUERY = re.compile(
    r"(?P<head>[?&](?:password|passwd|sslpassword|secret|token|access_key|secret_key|sas_token)=)(?:\*\*\*|[^&#\n]*)",
    re.IGNORECASE,
)


def redact(text: str) -> str:
    """``text`` with the password of every URL in it, and secret query parameters, replaced by ``***``.

    Apply it to each element of a command line on its own: an element is one URL or option,
    so a password with spaces in it is masked whole.
    """
    text = _USERINFO.sub(lambda m: f"{m['head']}{MASK}{m['at']}", text)
    return _QUERY.sub(lambda m: f"{m['head']}{MASK}", text)


def unredact(text: str, secrets: list[str]) -> str:
    """Undo `redact` in ``text`` for each of the ``secrets`` (full URLs) whose masked form it holds."""
    for secret in secrets:
        masked = redact(secret)
        if masked != secret:
            text = text.replace(masked, secret)
    return text


def reason(e: BaseException) -> str:
    """The first line of what a database driver or a storage client said, masked: the clause after "because".

    A SQLAlchemy ``DBAPIError`` wraps the driver's own exception as ``orig``, whose text is the useful
    part; its own text adds the SQL statement and a link to SQLAlchemy's docs.

    Example:
        >>> reason(OSError("connection to postgresql://me:pw@db.lan/runs refused\\nretrying"))
        'connection to postgresql://me:***@db.lan/runs refused'
    """
    cause = getattr(e, "orig", None) or e
    text = str(cause)
    first = text.splitlines()[0] if text else type(cause).__name__
    # SQLite's generic "disk I/O error" says which I/O failed only in its extended code (SQLITE_IOERR_SHORT_READ, ...).
    code = getattr(cause, "sqlite_errorname", None)
    if code and code.startswith("SQLITE_IOERR_"):
        first = f"{first} ({code})"
    return redact(first)
