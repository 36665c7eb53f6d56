"""Real servers for the tests: a PostgreSQL cluster (started outside, see scripts/test_postgres.sh)
and an S3-compatible object store (moto's server, started here on loopback, shared by the session).

``TRACKER_TEST_POSTGRES`` holds the URL of a server where the tests may create
databases. Without it the PostgreSQL tests skip and say why; with
``TRACKER_TEST_REQUIRE_SERVERS=1`` (CI) they fail instead, so a CI run cannot
pass without having run them.
"""

from __future__ import annotations

import functools
import logging
import os
import uuid

import pytest
import sqlalchemy as sa

# Read at import: the suite's autouse fixture clears every TRACKER_* variable before each test.
POSTGRES_URL = os.environ.get("TRACKER_TEST_POSTGRES")
REQUIRE_SERVERS = os.environ.get("TRACKER_TEST_REQUIRE_SERVERS") == "1"
#: The test server's password, in every PostgreSQL test URL, so that tests can check it is never shown.
#: Without a server, a stand-in that no output contains either.
PG_PASSWORD = (sa.make_url(POSTGRES_URL).password if POSTGRES_URL else None) or "pg-s3cret-pw"

#: ``@sqlite_only`` on a test that uses the ``db`` fixture runs it against SQLite alone.
sqlite_only = pytest.mark.parametrize("db", ["sqlite"], indirect=True)


def require_postgres() -> sa.URL:
    """The admin URL of the test server, or skip (fail in CI) with the reason."""
    if not POSTGRES_URL:
        reason = "no PostgreSQL server: set TRACKER_TEST_POSTGRES to a server URL (scripts/test_postgres.sh starts one)"
        if REQUIRE_SERVERS:
            pytest.fail(reason + " — TRACKER_TEST_REQUIRE_SERVERS=1 makes this an error")
        pytest.skip(reason)
    url = sa.make_url(POSTGRES_URL)
    if not url.password:
        pytest.fail(
            "TRACKER_TEST_POSTGRES has no password: the tests need a server that checks passwords, "
            "so that a mangled password fails (scripts/test_postgres.sh starts one and prints its URL)"
        )
    return url


#: The environment a process needs to reach the test S3 server (besides AWS_ENDPOINT_URL).
S3_CREDENTIALS = {"AWS_ACCESS_KEY_ID": "test-key-id", "AWS_SECRET_ACCESS_KEY": "s3-s3cret-key", "AWS_DEFAULT_REGION": "us-east-1"}


@functools.cache
def s3_endpoint() -> str:
    """Start moto's S3 server on a free loopback port, once per session; its URL."""
    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    return f"http://{host}:{port}"


def s3_env() -> dict[str, str]:
    return {**S3_CREDENTIALS, "AWS_ENDPOINT_URL": s3_endpoint()}


def fresh_s3_prefix(monkeypatch: pytest.MonkeyPatch) -> str:
    """Point this process at the test S3 server, create an empty bucket, and return a prefix URL in it."""
    import fsspec

    for key, value in s3_env().items():
        monkeypatch.setenv(key, value)
    bucket = f"tracker-test-{uuid.uuid4().hex[:12]}"
    fsspec.filesystem("s3", skip_instance_cache=True).mkdir(bucket)
    return f"s3://{bucket}/ckpt"
