"""A fresh, empty PostgreSQL database on a server, dropped afterwards: for the tests and ``scripts/sweep_bench.py``.

It needs no pytest: the tests' ``postgres_db`` fixture adds the skip-or-fail rule on top
(`tests.support.servers.require_postgres`).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import sqlalchemy as sa


@contextmanager
def fresh_postgres_database(server_url: str | sa.URL, *, prefix: str) -> Iterator[str]:
    """Create an empty database named ``<prefix>_<random>`` on ``server_url``'s server; yield its URL; drop it on exit.

    The URL yielded keeps the server URL's password, so that a child process can connect with it.
    The server URL's user must be allowed to create databases.

    Example:
        >>> with fresh_postgres_database("postgresql+psycopg://postgres:pw@127.0.0.1/postgres", prefix="sweep") as url:
        ...     run_the_sweep(url)  # doctest: +SKIP

    Args:
        server_url: a SQLAlchemy URL of any database on the server (``postgres`` will do).
        prefix: the start of the new database's name, saying who made it.

    Raises:
        sqlalchemy.exc.OperationalError: the server cannot be reached or refuses the ``CREATE DATABASE``;
            nothing is left to drop then.
    """
    admin_url = sa.make_url(server_url)
    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(admin_url, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
    except BaseException:
        admin.dispose()
        raise
    try:
        yield admin_url.set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.dispose()
