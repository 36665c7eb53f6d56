"""Masking secrets in anything tracker prints or records: URLs, command lines, error text.

Example:
    >>> redact("--db=postgresql://me:hunter2@db.lan/runs")
    '--db=postgresql://me:***@db.lan/runs'
    >>> redact("postgresql://db.lan/runs?password=hunter2&sslmode=require")
    'postgresql://db.lan/runs?password=***&sslmode=require'
"""

from __future__ import annotations

import re

# scheme://user:PASSWORD@host — the password may hold anything but '@' and whitespace.
_USERINFO = re.compile(r"(?P<head>[A-Za-z][A-Za-z0-9+.-]*://[^\s/:@]*:)[^\s@]*(?P<at>@)")
# libpq and several drivers also take the password, or a key, as a query parameter.
_QUERY = re.compile(r"(?P<head>[?&](?:password|passwd|sslpassword|secret|token|access_key|secret_key|sas_token)=)[^&\s]*", re.IGNORECASE)

MASK = "***"


def redact(text: str) -> str:
    """``text`` with the password of every URL in it, and secret query parameters, replaced by ``***``."""
    text = _USERINFO.sub(lambda m: f"{m['head']}{MASK}{m['at']}", text)
    return _QUERY.sub(lambda m: f"{m['head']}{MASK}", text)


def unredact(text: str, secrets: list[str]) -> str:
    """Undo `redact` in ``text`` for each of the ``secrets`` (full URLs) whose masked form it holds."""
    for secret in secrets:
        masked = redact(secret)
        if masked != secret:
            text = text.replace(masked, secret)
    return text
