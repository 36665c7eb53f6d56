"""Who may read the team view (`python -m tracker.serve --team`): access tokens and the keys that sign share links.

A token is shown once, when it is made, and stored only as its sha256: a reader of the database (or of a
backup of it) learns nothing that opens the view. Tokens have a role, ``viewer`` (every page and API route,
read-only) or ``admin`` (the same, and making share links), an optional expiry, and can be revoked by name.

Example:
    >>> token = store.create_token("alice", "viewer", expires_at=None)    # doctest: +SKIP
    >>> store.check_token(token).role                                      # doctest: +SKIP
    'viewer'
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

import sqlalchemy as sa

from tracker.records import now
from tracker.store.rows import _aware
from tracker.store.session import Session
from tracker.store.tables import signing_keys, tokens

#: The roles a token may have.
ROLES = ("viewer", "admin")
#: What every token starts with, so that a leaked one is recognisable (and secret scanners can find it).
PREFIX = "trk_"
_TOUCH_EVERY = timedelta(minutes=1)


@dataclass(frozen=True)
class TokenRow:
    """A token as the database records it: never the token itself."""

    name: str
    role: str
    created_at: datetime
    expires_at: datetime | None
    revoked_at: datetime | None
    last_used_at: datetime | None

    def valid(self, at: datetime | None = None) -> bool:
        at = at or now()
        return self.revoked_at is None and (self.expires_at is None or at < self.expires_at)


def digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def _token_row(r: sa.RowMapping) -> TokenRow:
    return TokenRow(r["name"], r["role"], _aware(r["created_at"]), _aware(r["expires_at"]), _aware(r["revoked_at"]),
                    _aware(r["last_used_at"]))


class Access(Session):
    """The team view's tokens and signing keys: one part of `tracker.store.Store`."""

    def create_token(self, name: str, role: str, *, expires_at: datetime | None) -> str:
        """Make a token called ``name``; return it (the only time it exists outside the caller).

        Raises:
            ValueError: ``role`` is not one of `ROLES`, or a token of that name exists already.
        """
        if role not in ROLES:
            raise ValueError(f"Invalid role {role!r}. Expected one of: {', '.join(ROLES)}.")
        token = PREFIX + secrets.token_urlsafe(32)
        with self._write() as conn:
            if conn.scalar(sa.select(tokens.c.id).where(tokens.c.name == name)) is not None:
                raise ValueError(f"A token named {name!r} exists already. Revoke it first (tracker token revoke {name}) or pick another name.")
            conn.execute(tokens.insert().values(name=name, role=role, digest=digest(token), created_at=now(), expires_at=expires_at))
        return token

    def tokens(self) -> list[TokenRow]:
        with self._read() as conn:
            return [_token_row(r) for r in conn.execute(sa.select(tokens).order_by(tokens.c.created_at, tokens.c.id)).mappings()]

    def revoke_token(self, name: str) -> bool:
        """Revoke the token called ``name``; False if there is no such token that is not revoked yet."""
        with self._write() as conn:
            return bool(conn.execute(
                tokens.update().where(tokens.c.name == name, tokens.c.revoked_at.is_(None)).values(revoked_at=now())
            ).rowcount)

    def check_token(self, token: str) -> TokenRow | None:
        """The valid token that ``token`` is, or None (unknown, revoked or expired)."""
        if not token.startswith(PREFIX):
            return None
        with self._read() as conn:
            row = conn.execute(sa.select(tokens).where(tokens.c.digest == digest(token))).mappings().first()
        found = _token_row(row) if row is not None else None
        if found is None or not found.valid():
            return None
        t = now()
        if found.last_used_at is None or t - found.last_used_at > _TOUCH_EVERY:
            with self._write() as conn:
                conn.execute(tokens.update().where(tokens.c.name == found.name).values(last_used_at=t))
        return found

    def has_valid_token(self) -> bool:
        return any(t.valid() for t in self.tokens())

    def signing_key(self) -> bytes:
        """The key that signs share links: the newest, made on first use."""
        with self._write() as conn:
            secret = conn.scalar(sa.select(signing_keys.c.secret).order_by(signing_keys.c.id.desc()).limit(1))
            if secret is None:
                secret = secrets.token_hex(32)
                conn.execute(signing_keys.insert().values(secret=secret, created_at=now()))
        return bytes.fromhex(secret)

    def rotate_signing_key(self) -> None:
        """A new signing key: every share link signed before stops working."""
        with self._write() as conn:
            conn.execute(signing_keys.insert().values(secret=secrets.token_hex(32), created_at=now()))
