"""Passwords and storage keys never reach the database, the command output, or error messages."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

import tracker
from tests.support.servers import PG_PASSWORD, S3_CREDENTIALS, require_postgres
from tracker.redact import redact, unredact

CHILD = Path(__file__).with_name("child_numpy.py")
SECRETS = (PG_PASSWORD, S3_CREDENTIALS["AWS_SECRET_ACCESS_KEY"])


def run(*args: str, cwd: Path, **env: str) -> subprocess.CompletedProcess[str]:
    full_env = {**{k: v for k, v in os.environ.items() if not k.startswith("TRACKER_") or k == "TRACKER_SPOOL_DIR"}, **env}
    return subprocess.run([sys.executable, *args], cwd=cwd, env=full_env, capture_output=True, text=True, timeout=120)


def everything_stored(db: str) -> str:
    engine = sa.create_engine(db)
    with engine.connect() as conn:
        text = "\n".join(
            repr(row) for table in sa.inspect(conn).get_table_names() for row in conn.execute(sa.text(f'SELECT * FROM "{table}"'))
        )
    engine.dispose()
    return text


def test_a_team_run_keeps_its_secrets(postgres_db, s3_prefix, tmp_path):
    assert PG_PASSWORD in postgres_db
    train = tmp_path / "train.py"
    train.write_text(CHILD.read_text())

    crashed = run(str(train), "r", "5", "--db", postgres_db, cwd=tmp_path, TRACKER_CHECKPOINT_DIR=s3_prefix, CRASH_AT="2")
    assert crashed.returncode == 9, crashed.stderr
    outputs = [crashed]
    for command in (["list"], ["show", "r"], ["export", "r"], ["show", "nope"]):
        outputs.append(run("-m", "tracker", *command, "--db", postgres_db, cwd=tmp_path))
    resumed = run("-m", "tracker.resume", "r", "--db", postgres_db, cwd=tmp_path)
    outputs.append(resumed)

    # The recorded command line had the password masked; resume put the real one back.
    assert resumed.returncode == 0, resumed.stderr
    assert "--db postgresql+psycopg://postgres:***@" in resumed.stderr
    assert tracker.curves("r", db=postgres_db)["epoch"] == [0, 1, 2, 3, 4]
    printed = "".join(o.stdout + o.stderr for o in outputs)
    stored = everything_stored(postgres_db)
    assert "postgres:***@" in stored  # the argv is there, masked
    for secret in SECRETS:
        assert secret not in printed
        assert secret not in stored


#: Whitespace where a password-matching pattern would stop, and characters that a URL must escape.
SPACED_PASSWORD = "correct horse: battery"


@pytest.fixture
def spaced_password_db(postgres_db) -> Iterator[str]:
    """``postgres_db`` owned by a new role whose password holds spaces, as a user types it: not escaped."""
    admin = sa.create_engine(require_postgres(), isolation_level="AUTOCOMMIT")
    role = f"tracker_spaced_{uuid.uuid4().hex[:8]}"
    url = sa.make_url(postgres_db)
    with admin.connect() as conn:
        conn.exec_driver_sql(f"CREATE ROLE {role} LOGIN PASSWORD '{SPACED_PASSWORD}'")
        conn.exec_driver_sql(f'ALTER DATABASE "{url.database}" OWNER TO {role}')
    try:
        yield f"{url.drivername}://{role}:{SPACED_PASSWORD}@{url.host}:{url.port}/{url.database}"
    finally:
        with admin.connect() as conn:  # the role owns the tables in it, so the database goes first
            conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{url.database}" WITH (FORCE)')
            conn.exec_driver_sql(f"DROP ROLE {role}")
        admin.dispose()


@pytest.mark.parametrize("form", ["separate", "equals"], ids=["--db URL", "--db=URL"])
def test_a_password_with_spaces_is_masked_and_resume_puts_it_back(spaced_password_db, ckpt, tmp_path, form):
    url = spaced_password_db
    train = tmp_path / "train.py"
    train.write_text(CHILD.read_text())
    db_args = ["--db", url] if form == "separate" else [f"--db={url}"]

    crashed = run(str(train), "r", "5", *db_args, cwd=tmp_path, TRACKER_CHECKPOINT_DIR=ckpt, CRASH_AT="2")
    assert crashed.returncode == 9, crashed.stderr
    shown = run("-m", "tracker", "show", "r", "--db", url, cwd=tmp_path)
    assert shown.returncode == 0, shown.stderr
    assert "***@" in shown.stdout
    resumed = run("-m", "tracker.resume", "r", "--db", url, cwd=tmp_path)

    assert resumed.returncode == 0, resumed.stderr
    assert tracker.curves("r", db=url)["epoch"] == [0, 1, 2, 3, 4]
    stored = everything_stored(url)
    for text in (crashed.stdout + crashed.stderr, shown.stdout + shown.stderr, resumed.stdout + resumed.stderr, stored):
        for fragment in SPACED_PASSWORD.split():
            assert fragment not in text


def test_the_test_server_checks_passwords(postgres_db):
    wrong = sa.create_engine(sa.make_url(postgres_db).set(password="not-the-password"))
    with pytest.raises(sa.exc.OperationalError, match="password authentication failed"):
        wrong.connect().close()
    wrong.dispose()


def test_an_error_from_the_server_does_not_show_the_password(postgres_db, tmp_path):
    wrong = sa.make_url(postgres_db).set(database="no_such_database").render_as_string(hide_password=False)
    result = run("-m", "tracker", "list", "--db", wrong, cwd=tmp_path)
    assert result.returncode == 1
    assert "no_such_database" in result.stderr and PG_PASSWORD not in result.stderr


def test_a_failed_attempt_records_its_error_masked(postgres_db, ckpt):
    with pytest.raises(RuntimeError), tracker.track("r", db=postgres_db, checkpoint_dir=ckpt):
        raise RuntimeError(f"could not reach {postgres_db}")
    assert PG_PASSWORD not in everything_stored(postgres_db)


@pytest.mark.parametrize(
    ("text", "masked"),
    [
        ("postgresql+psycopg://me:pw@h:5432/db", "postgresql+psycopg://me:***@h:5432/db"),
        ("--db=mysql://u:p%40ss@h/db", "--db=mysql://u:***@h/db"),
        ("postgresql://h/db?sslmode=require&password=pw", "postgresql://h/db?sslmode=require&password=***"),
        ("s3://bucket/prefix", "s3://bucket/prefix"),
        ("postgresql://user@h/db", "postgresql://user@h/db"),
        ("postgresql+psycopg://u:pa ss@h/db", "postgresql+psycopg://u:***@h/db"),
        ("--db=postgresql://u:correct horse: battery@h/db", "--db=postgresql://u:***@h/db"),
        ("postgresql://h/db?password=pa ss&sslmode=require", "postgresql://h/db?password=***&sslmode=require"),
        ("postgresql://h/db?password=pa ss", "postgresql://h/db?password=***"),
        ("postgresql://u:a/b+c=@h/db", "postgresql://u:***@h/db"),
    ],
    ids=["userinfo", "escaped", "query", "no-password", "no-userinfo", "spaced", "spaced-option", "spaced-query",
         "spaced-query-last", "slash"],
)
def test_redact(text, masked):
    assert redact(text) == masked
    assert unredact(masked, [text]) == text


@pytest.mark.parametrize(
    "text",
    [
        "Cannot open database postgresql://u:***@h/db: connection refused",
        "Cannot open database postgresql://h/db?password=***: connection refused",
        "could not connect to postgresql://db.lan:5432/runs",
        "could not connect to postgresql://db.lan:5432/runs as me@corp",
    ],
    ids=["masked-userinfo", "masked-query", "port", "port-then-at"],
)
def test_masking_keeps_the_rest_of_a_message(text):
    assert redact(text) == text


def test_messages_and_stored_texts_share_one_masking_function():
    from tracker.store import db

    url = "postgresql+psycopg://u:pa ss@h/db?sslpassword=k y"
    assert db.locate(url).display == redact(url) == "postgresql+psycopg://u:***@h/db?sslpassword=***"


AT_IN_PASSWORD = ["postgresql+psycopg://u3:pa ss@s3cr3t@127.0.0.1/db", "postgresql+psycopg://u3:pass@s3cr3t@127.0.0.1:5432/db"]


@pytest.mark.parametrize("url", AT_IN_PASSWORD, ids=["spaced", "plain"])
def test_a_password_with_an_unescaped_at_is_masked_whole(url):
    assert "s3cr3t" not in redact(url)
    assert redact(url).startswith("postgresql+psycopg://u3:***@127.0.0.1")
    assert unredact(redact(url), [url]) == url


@pytest.mark.parametrize("url", AT_IN_PASSWORD, ids=["spaced", "plain"])
def test_a_password_with_an_unescaped_at_is_refused_naming_the_encoding_and_no_fragment(url, capsys, tmp_path):
    from tracker.cli import main as cli
    from tracker.serve.__main__ import main as serve
    from tracker.store import db

    with pytest.raises(ValueError, match="%40") as caught:
        db.locate(url)
    assert "s3cr3t" not in str(caught.value)
    for command in (lambda: cli(["list", "--db", url]), lambda: serve(["--db", url])):
        assert command() == 1
        err = capsys.readouterr().err
        assert "%40" in err and "percent-encode" in err
        assert "s3cr3t" not in err and "pa ss" not in err and "pass@" not in err
