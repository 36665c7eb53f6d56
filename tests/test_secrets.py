"""Passwords and storage keys never reach the database, the command output, or error messages."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import sqlalchemy as sa

import tracker
from tests.servers import PG_PASSWORD, S3_CREDENTIALS
from tracker.redact import redact, unredact

CHILD = Path(__file__).with_name("child_numpy.py")
SECRETS = (PG_PASSWORD, S3_CREDENTIALS["AWS_SECRET_ACCESS_KEY"])


def run(*args: str, cwd: Path, **env: str) -> subprocess.CompletedProcess[str]:
    full_env = {**{k: v for k, v in os.environ.items() if not k.startswith("TRACKER_")}, **env}
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
    ],
)
def test_redact(text, masked):
    assert redact(text) == masked
    assert unredact(masked, [text]) == text
