"""The database misused or disturbed: in memory, replaced mid-run, locked by another program, read-only, not ours."""

from __future__ import annotations

import hashlib
import os
import shutil
import sqlite3
import subprocess
import sys
import threading
import warnings
from pathlib import Path

import numpy as np
import pytest
import sqlalchemy as sa

import tracker
from tests.support.servers import sqlite_only
from tracker.__main__ import main
from tracker.store import db as dbmod
from tracker.store import migrate, open_store


def engine_for(db: str) -> sa.Engine:
    return sa.create_engine(db if "://" in db else f"sqlite:///{db}")


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


# -- 5: in memory ------------------------------------------------------------


IN_MEMORY = ["sqlite://", "sqlite:///:memory:", ":memory:", "sqlite:///file::memory:?uri=true", "sqlite:///file:x?mode=memory&uri=true"]
IN_MEMORY_IDS = ["empty", "memory", "bare", "uri", "uri-mode"]


@pytest.mark.parametrize("url", IN_MEMORY, ids=IN_MEMORY_IDS)
def test_an_in_memory_database_is_refused_before_training(url, ckpt):
    run = tracker.track("r", db=url, checkpoint_dir=ckpt)
    with pytest.raises(tracker.StoreError, match="in memory.*crash.*Pass a file path"):
        run.start()
    assert not Path(":memory:").exists()
    assert not Path(ckpt).exists()  # refused before any folder was made


@pytest.mark.parametrize("url", IN_MEMORY, ids=IN_MEMORY_IDS)
def test_readers_refuse_an_in_memory_database_with_the_same_message(url, capsys):
    with pytest.raises(tracker.StoreError, match="in memory"):
        tracker.runs(url)
    assert main(["list", "--db", url]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "in memory" in err and err.count("\n") == 1


# -- 7: the file deleted or replaced mid-run ---------------------------------


def other_tracker_database(path: Path, ckpt: str) -> None:
    """A second tracker database with run "o" (epochs 0..2), closed, so it is one self-contained file."""
    run = tracker.track("o", db=str(path), checkpoint_dir=ckpt)
    run.start()
    for epoch in range(3):
        run.commit_epoch(epoch, {"loss": 1.0}, {"w": np.zeros(2)}, {})
    run.finish("completed")
    assert not Path(f"{path}-wal").exists()


@sqlite_only
def test_a_database_deleted_mid_run_stops_the_next_commit(db, record):
    run = record("r", 2, finish=None)
    os.unlink(db)
    with pytest.raises(tracker.StoreError, match=f"Database {db} was deleted or moved away while this process was using it"):
        run.commit_epoch(2, {"loss": 0.1}, {"w": np.zeros(2)}, {})


@sqlite_only
def test_a_database_moved_away_mid_run_keeps_its_epochs_when_put_back(db, record, tmp_path):
    run = record("r", 3, finish=None)
    os.rename(db, tmp_path / "moved.db")
    with pytest.raises(tracker.StoreError, match="was deleted or moved away"):
        run.commit_epoch(3, {"loss": 0.1}, {"w": np.zeros(2)}, {})
    with pytest.raises(tracker.StoreError, match="moved away"):
        run.finish("failed")
    os.rename(tmp_path / "moved.db", db)
    assert tracker.curves("r", db=db)["epoch"] == [0, 1, 2]


@sqlite_only
def test_a_database_replaced_mid_run_stops_the_next_commit_and_the_other_database_keeps_its_run(db, record, tmp_path):
    run = record("r", 2, finish=None)
    other = tmp_path / "other.db"
    other_tracker_database(other, str(tmp_path / "other-ckpt"))
    os.replace(other, db)
    with pytest.raises(tracker.StoreError, match=f"Database {db} was replaced by another file"):
        run.commit_epoch(2, {"loss": 0.1}, {"w": np.zeros(2)}, {})
    with pytest.raises(tracker.StoreError, match="replaced"):
        run.finish("failed")
    assert [r.name for r in tracker.runs(db)] == ["o"]
    assert tracker.curves("o", db=db)["epoch"] == [0, 1, 2]


@sqlite_only
def test_no_new_connection_opens_a_replaced_database(db, record, tmp_path):
    record("r", 2)
    store = open_store(db)
    store.run_names()
    other = tmp_path / "other.db"
    other_tracker_database(other, str(tmp_path / "other-ckpt"))
    os.replace(other, db)
    with store.engine.connect():  # holds the pooled connection, so the next read needs a new one
        with pytest.raises(tracker.StoreError, match="replaced by another file"):
            store.run_names()
    store.close()
    assert tracker.curves("o", db=db)["epoch"] == [0, 1, 2]


# -- 8: a lock held by another program ---------------------------------------


def hold_write_lock(db: str) -> sqlite3.Connection:
    """What a database browser with unsaved edits does: an open write transaction."""
    other = sqlite3.connect(db, isolation_level=None)
    other.execute("BEGIN IMMEDIATE")
    return other


@sqlite_only
def test_a_writer_waits_for_a_lock_held_by_another_program_and_warns_while_it_waits(db, record, monkeypatch):
    monkeypatch.setattr(dbmod, "SQLITE_BUSY_TIMEOUT_S", 0.05)  # warn every 50 ms instead of every minute
    run = record("r", 1, finish=None)
    browser = hold_write_lock(db)
    errors: list[BaseException] = []

    def commit() -> None:
        try:
            run.commit_epoch(1, {"loss": 0.5}, {"w": np.zeros(2)}, {})
        except BaseException as e:  # noqa: BLE001 - checked below
            errors.append(e)

    writer = threading.Thread(target=commit)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        writer.start()
        while len(caught) < 2 and writer.is_alive():
            writer.join(0.01)
        browser.rollback()
        writer.join()
    assert errors == []
    assert len(caught) >= 2, "no warning while waiting"
    message = str(caught[0].message)
    assert db in message and "another program holds its write lock" in message and "TRACKER_LOCK_TIMEOUT" in message
    assert tracker.curves("r", db=db)["epoch"] == [0, 1]


@sqlite_only
def test_the_lock_wait_stops_at_tracker_lock_timeout(db, record, monkeypatch):
    monkeypatch.setattr(dbmod, "SQLITE_BUSY_TIMEOUT_S", 0.05)
    monkeypatch.setenv("TRACKER_LOCK_TIMEOUT", "0.2")
    run = record("r", 1, finish=None)
    browser = hold_write_lock(db)
    with pytest.warns(UserWarning, match="another program"), pytest.raises(
        tracker.StoreError, match=rf"Database {db} stayed locked by another program for 0.2 s \(TRACKER_LOCK_TIMEOUT\)"
    ):
        run.commit_epoch(1, {"loss": 0.5}, {"w": np.zeros(2)}, {})
    browser.rollback()
    assert tracker.curves("r", db=db)["epoch"] == [0]


@pytest.mark.parametrize("value", ["soon", "0", "-1", "nan"])
def test_a_bad_lock_timeout_is_refused(value, monkeypatch, sqlite_db, ckpt):
    monkeypatch.setenv("TRACKER_LOCK_TIMEOUT", value)
    with pytest.raises(ValueError, match=f"TRACKER_LOCK_TIMEOUT.*Received: {value!r}"):
        tracker.track("r", db=sqlite_db, checkpoint_dir=ckpt).start()


# -- 9: read-only ------------------------------------------------------------


_MOUNT_READ_ONLY = """
set -e
mount --bind "$DIR" "$DIR"
mount -o remount,ro,bind "$DIR"
"""
_CHECK_READ_ONLY = """
set -e
if touch "$DIR/probe" 2>/dev/null; then echo "the folder is writable" >&2; exit 99; fi
"""
_READ_EVERYTHING = """
python -m tracker list --db "$DIR/tracker.db"
python -m tracker show r --db "$DIR/tracker.db"
python -c 'import sys, tracker; print("curve", tracker.curves("r", db=sys.argv[1])["epoch"])' "$DIR/tracker.db"
python -m tracker.plot r --db "$DIR/tracker.db" -o "$OUT/curves.png"
"""
_UNSHARE = ["unshare", "--map-root-user", "--mount"]


def read_only(folder: Path, out: Path, commands: str) -> subprocess.CompletedProcess[str]:
    """Run the shell ``commands`` in a private mount namespace where ``folder`` is a read-only bind mount.

    A read-only mount stops root too (EROFS), where chmod would not.
    """
    if not shutil.which("unshare") or subprocess.run([*_UNSHARE, "true"], capture_output=True).returncode != 0:
        pytest.skip("cannot make a private mount namespace (unshare --map-root-user --mount) for a read-only mount")
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("TRACKER_")}, "DIR": str(folder), "OUT": str(out), "MPLBACKEND": "Agg"}
    command = [*_UNSHARE, "sh", "-c", _MOUNT_READ_ONLY + _CHECK_READ_ONLY + commands]
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)


def crashed_writer(db: str, ckpt: str, epochs: int) -> None:
    """A writer killed after ``epochs`` commits: its -wal and -shm stay next to the database."""
    script = f"""
import os, numpy as np, tracker
run = tracker.track("r", db={db!r}, checkpoint_dir={ckpt!r})
run.start()
for epoch in range({epochs}):
    run.commit_epoch(epoch, {{"loss": 1.0 / (epoch + 1)}}, {{"w": np.zeros(2)}}, {{}})
os._exit(9)
"""
    subprocess.run([sys.executable, "-c", script], timeout=120)


@sqlite_only
@pytest.mark.parametrize("leftover_wal", [False, True], ids=["closed-cleanly", "crashed-writer-wal"])
def test_readers_work_on_a_read_only_folder(db, record, ckpt, tmp_path, leftover_wal):
    if leftover_wal:
        crashed_writer(db, ckpt, 4)
        assert Path(f"{db}-wal").stat().st_size > 0  # the committed epochs live in the WAL
    else:
        record("r", 4)
        assert not Path(f"{db}-wal").exists()
    folder = Path(db).parent
    out = tmp_path.parent / f"{tmp_path.name}-out"
    out.mkdir()
    before = {p.name: sha256(p) for p in folder.iterdir() if p.is_file()}

    result = read_only(folder, out, _READ_EVERYTHING)

    assert result.returncode == 0, result.stderr
    assert "curve [0, 1, 2, 3]" in result.stdout
    assert "r " in result.stdout and (out / "curves.png").stat().st_size > 0
    assert {p.name: sha256(p) for p in folder.iterdir() if p.is_file()} == before


@sqlite_only
def test_a_read_only_database_at_an_older_schema_is_refused_clearly(db, record):
    record("r", 1)
    store = open_store(db)
    with store.engine.begin() as conn:
        conn.exec_driver_sql("UPDATE alembic_version SET version_num = '0001'")
    store.close()
    database = dbmod.locate(db)
    engine = dbmod.create_engine(database, read_only_uri=dbmod.peek(database.path).read_only_uri)
    with pytest.raises(tracker.SchemaError, match="cannot be written here and has schema revision '0001', older than this tracker's"):
        migrate.upgrade(engine, database.display, read_only=True)
    engine.dispose()


@sqlite_only
def test_a_read_only_database_whose_wal_cannot_be_read_is_refused_rather_than_read_stale(db, ckpt, tmp_path):
    crashed_writer(db, ckpt, 4)
    Path(f"{db}-shm").unlink()  # copied without it, say: SQLite would have to create it
    result = read_only(Path(db).parent, tmp_path, 'python -m tracker show r --db "$DIR/tracker.db"')

    assert result.returncode == 1
    assert result.stderr.startswith("error: Cannot open database") and result.stderr.count("\n") == 1
    assert "tracker.db-wal cannot be read without tracker.db-shm" in result.stderr
    assert "Copy the database with its -wal file to a writable folder" in result.stderr


# -- 16: another application's database ------------------------------------------------


FOREIGN = {
    "no-alembic": ["CREATE TABLE contacts (id INTEGER PRIMARY KEY, name TEXT)", "INSERT INTO contacts VALUES (1, 'Ada')"],
    "other-alembic": [
        "CREATE TABLE alembic_version (version_num VARCHAR(32) NOT NULL PRIMARY KEY)",
        "INSERT INTO alembic_version VALUES ('9f3c2a7d1b04')",
        "CREATE TABLE invoices (id INTEGER PRIMARY KEY)",
    ],
}


def everything_in(db: str) -> dict[str, list]:
    engine = engine_for(db)
    with engine.connect() as conn:
        tables = sorted(sa.inspect(conn).get_table_names())
        content = {t: sorted(map(tuple, conn.execute(sa.text(f'SELECT * FROM "{t}"')))) for t in tables}
    engine.dispose()
    return content


@pytest.mark.parametrize("kind", sorted(FOREIGN))
def test_another_applications_database_is_refused_and_left_untouched(db, kind, ckpt, capsys):
    engine = engine_for(db)
    with engine.begin() as conn:
        for statement in FOREIGN[kind]:
            conn.exec_driver_sql(statement)
    engine.dispose()
    before = everything_in(db)
    file_before = sha256(Path(db)) if "://" not in db else None

    with pytest.raises(tracker.NotADatabaseError, match="not a tracker database.*left untouched.*another"):
        tracker.track("r", db=db, checkpoint_dir=ckpt).start()
    with pytest.raises(tracker.NotADatabaseError, match="not a tracker database"):
        tracker.runs(db)
    assert main(["list", "--db", db]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "not a tracker database" in err and err.count("\n") == 1

    assert everything_in(db) == before
    if file_before is not None:  # SQLite: not one byte changed, and no switch to WAL
        assert sha256(Path(db)) == file_before
        assert not Path(f"{db}-wal").exists() and not Path(f"{db}-shm").exists()
        with sqlite3.connect(db) as conn:
            assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "delete"


def test_an_empty_database_from_elsewhere_is_used(db, record):
    engine = engine_for(db)
    with engine.begin() as conn:  # SQLite: a valid file with no tables; PostgreSQL: the fresh database
        conn.exec_driver_sql("CREATE TABLE t (x INTEGER)")
        conn.exec_driver_sql("DROP TABLE t")
    engine.dispose()
    record("r", 2)
    assert tracker.curves("r", db=db)["epoch"] == [0, 1]
