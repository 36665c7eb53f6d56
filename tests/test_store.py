"""The database: schema from migrations only, safe concurrent opening, NaN round trips, locking, retention."""

from __future__ import annotations

import math
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import sqlalchemy as sa

import tracker
from tests.conftest import same_floats
from tests.support.servers import sqlite_only
from tracker.store import migrate, open_store
from tracker.store.tables import metadata


def test_migrations_and_table_descriptions_agree(db):
    from alembic.autogenerate import compare_metadata
    from alembic.runtime.migration import MigrationContext

    store = open_store(db)
    with store.engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), metadata)
    store.close()
    assert diff == []


def test_head_constant_is_the_newest_migration():
    from alembic.script import ScriptDirectory

    assert ScriptDirectory(str(migrate._migrations_dir())).get_current_head() == migrate.HEAD


@sqlite_only
def test_sqlite_settings(db):
    store = open_store(db)
    with store.engine.connect() as conn:
        pragmas = {p: conn.exec_driver_sql(f"PRAGMA {p}").scalar() for p in ("journal_mode", "synchronous", "foreign_keys", "busy_timeout")}
    store.close()
    assert pragmas == {"journal_mode": "wal", "synchronous": 2, "foreign_keys": 1, "busy_timeout": 60000}


@sqlite_only
def test_one_metric_curve_is_one_covering_index_scan(db, record):
    record("r", 3)
    store = open_store(db)
    issued = []
    sa.event.listen(store.engine, "before_cursor_execute", lambda conn, cur, sql, params, *_: issued.append((sql, params)))
    store.metric_curve(store.get_run("r").id, "loss")
    sql, params = next((s, p) for s, p in issued if "FROM metrics" in s)
    with store.engine.connect() as conn:
        plan = conn.exec_driver_sql(f"EXPLAIN QUERY PLAN {sql}", params).all()
    store.close()
    assert len(plan) == 1 and "COVERING INDEX ix_metrics_curve" in plan[0][-1], plan


@sqlite_only
def test_retention_and_resume_read_only_the_kept_checkpoints(db, record, ckpt):
    record("r", 8)
    run = tracker.track("r", db=db, checkpoint_dir=ckpt)
    run.start()
    store, issued = run._store, []
    sa.event.listen(store.engine, "before_cursor_execute", lambda conn, cur, sql, params, *_: issued.append((sql, params)))
    run.commit_epoch(8, {"loss": 0.1}, {"w": np.zeros(2)}, {})  # its retention step
    store.checkpoints(store.get_run("r").id)  # what resume reads
    kept_reads = [(q, p) for q, p in issued if q.lstrip().startswith("SELECT") and "checkpoint_deleted = 0" in q]
    with store.engine.connect() as conn:
        plans = [conn.exec_driver_sql(f"EXPLAIN QUERY PLAN {q}", p).all() for q, p in kept_reads]
    run.finish("completed")
    # Retention and resume each read the kept epoch checkpoints and the kept step checkpoints, each on its small index.
    assert len(kept_reads) == 4
    for (query, _), plan in zip(kept_reads, plans):
        index = "ix_steps_kept" if "FROM steps" in query else "ix_epochs_kept"
        assert any(index in step[-1] for step in plan), (query, plan)


_OPEN_SCRIPT = """
import sys
from tracker.store import open_store
open_store(sys.argv[1]).close()
"""


@pytest.mark.parametrize("trial", range(3))
def test_eight_processes_open_one_new_database_at_once(db, trial):
    procs = [subprocess.Popen([sys.executable, "-c", _OPEN_SCRIPT, db], stderr=subprocess.PIPE, text=True) for _ in range(8)]
    failures = [p.stderr.read() for p in procs if p.wait(timeout=120) != 0]
    assert failures == []
    engine = sa.create_engine(db if "://" in db else f"sqlite:///{db}")
    with engine.connect() as conn:
        assert conn.exec_driver_sql("SELECT version_num FROM alembic_version").all() == [(migrate.HEAD,)]
    engine.dispose()


def test_a_file_that_is_not_sqlite_is_refused_and_untouched(tmp_path):
    path = tmp_path / "notes.db"
    path.write_text("my precious notes\n")
    with pytest.raises(tracker.NotADatabaseError, match="not a SQLite database; it was left untouched"):
        open_store(str(path))
    assert path.read_text() == "my precious notes\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.db"]


def test_a_newer_schema_is_refused(db, record):
    record("r", 1)
    store = open_store(db)
    with store.engine.begin() as conn:
        conn.exec_driver_sql("UPDATE alembic_version SET version_num = '9999_future'")
    store.close()
    with pytest.raises(tracker.SchemaError, match="newer than this tracker.*Upgrade tracker"):
        tracker.curves("r", db=db)


def test_a_database_at_the_previous_revision_is_upgraded_when_opened_and_keeps_its_data(db, record):
    record("r", 5)
    store = open_store(db)
    with store.engine.begin() as conn:  # back to revision 0001's schema: undo 0007 to 0002 by hand
        conn.exec_driver_sql("DROP TABLE signing_keys")
        conn.exec_driver_sql("DROP TABLE tokens")
        for column in ("spooled_at", "spool_newest", "spool_pending", "replicated_seq", "spool"):
            conn.exec_driver_sql(f"ALTER TABLE attempts DROP COLUMN {column}")
        conn.exec_driver_sql("DROP TABLE trials")
        conn.exec_driver_sql("DROP TABLE sweeps")
        conn.exec_driver_sql("DROP TABLE step_metrics")
        conn.exec_driver_sql("DROP TABLE steps")
        conn.exec_driver_sql("DROP TABLE tags")
        conn.exec_driver_sql("ALTER TABLE runs DROP COLUMN note")
        conn.exec_driver_sql("ALTER TABLE attempts DROP COLUMN process_start")
        conn.exec_driver_sql("DROP INDEX ix_epochs_kept")
        conn.exec_driver_sql("UPDATE alembic_version SET version_num = '0001'")
    store.close()

    assert tracker.curves("r", db=db)["epoch"] == [0, 1, 2, 3, 4]
    store = open_store(db)
    with store.engine.connect() as conn:
        version = conn.exec_driver_sql("SELECT version_num FROM alembic_version").scalar()
        indexes = {i["name"] for i in sa.inspect(conn).get_indexes("epochs")}
        columns = {c["name"] for c in sa.inspect(conn).get_columns("attempts")}
    store.close()
    assert version == migrate.HEAD and "ix_epochs_kept" in indexes and {"process_start", "spool"} <= columns


def test_reading_a_missing_database_does_not_create_it(tmp_path):
    with pytest.raises(tracker.StoreError, match="No database at"):
        tracker.runs(str(tmp_path / "typo.db"))
    assert not (tmp_path / "typo.db").exists()


def test_nan_and_inf_survive_the_round_trip(db, record):
    odd = {0: math.nan, 1: math.inf, 2: -math.inf, 3: 0.5}
    record("r", 4, metrics=lambda e: {"loss": odd[e]})
    assert same_floats(tracker.curves("r", db=db)["loss"], [math.nan, math.inf, -math.inf, 0.5])


def test_unknown_run_suggests_close_names(db, record):
    record("cnn-baseline", 1)
    with pytest.raises(tracker.RunNotFoundError, match="Did you mean: 'cnn-baseline'"):
        tracker.curves("cnn-basline", db=db)


@pytest.mark.parametrize(
    "name, error",
    [
        ("../x", ValueError),
        ("/abs/path", ValueError),
        ("a/b", ValueError),
        ("nul\x00byte", ValueError),
        ("", ValueError),
        (".hidden", ValueError),
        ("x" * 129, ValueError),
        (42, TypeError),
    ],
    ids=["parent", "absolute", "separator", "nul", "empty", "dot", "too-long", "not-a-string"],
)
def test_bad_run_names_are_refused_before_anything_is_written(name, error, db, ckpt):
    with pytest.raises(error, match="[Rr]un name"):
        tracker.track(name, db=db, checkpoint_dir=ckpt)
    assert not Path(db).exists() and not Path(ckpt).exists()


@pytest.mark.parametrize("target", ["db", "checkpoint_dir"])
def test_unwritable_locations_fail_before_training(tmp_path, target):
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    paths = {"db": str(tmp_path / "t.db"), "checkpoint_dir": str(tmp_path / "ckpt")}
    paths[target] = str(blocker / "sub")  # a folder inside a regular file can never be created, even by root
    run = tracker.track("r", **paths)
    with pytest.raises(tracker.TrackerError, match="(not writable|Cannot create)"):
        run.start()


def test_a_live_writer_blocks_a_second_one(record, db, ckpt, other_process):
    record("r", 2, finish=None)
    pid = other_process("r")  # a live process that keeps its lease
    with pytest.raises(tracker.RunLockedError, match=f"is being written by pid {pid}"):
        tracker.track("r", db=db, checkpoint_dir=ckpt).start()
    taken = record("r", 3, force=True)
    assert tracker.curves("r", db=db)["epoch"] == [0, 1, 2]
    assert taken.initial_epoch == 2


def test_a_taken_over_writer_cannot_commit(record, db, ckpt, other_process):
    old = record("r", 1, finish=None)
    other_process("r")
    record("r", 2, force=True)
    # On a server the commit lands in the local spool first, and the writer learns of the takeover when the
    # server refuses it: the next commit raises. Either way nothing of the old writer's reaches the database.
    with pytest.raises(tracker.RunLockedError, match="taken over"):
        for epoch in range(1, 100):
            old.commit_epoch(epoch, {"loss": 0.0}, {}, {})
            time.sleep(0.05)
    assert tracker.curves("r", db=db)["epoch"] == [0, 1]


def test_dead_writer_shows_as_crashed(tmp_path, db, ckpt):
    script = f"""
import os, numpy as np, tracker
run = tracker.track("r", db={db!r}, checkpoint_dir={ckpt!r})
run.start()
run.commit_epoch(0, {{"loss": 1.0}}, {{"w": np.zeros(2)}}, {{}})
os._exit(9)  # dies without finishing, as a killed process would
"""
    subprocess.run([sys.executable, "-c", script], timeout=120)
    if not db.endswith(".db"):
        # On a server the commit may still be in the dead process's spool on this host: the next start sends
        # it, and so does `tracker spool push`.
        from tracker.cli import main

        assert main(["spool", "push", "--db", db]) == 0
    assert [(r.name, r.status, r.last_epoch) for r in tracker.runs(db)] == [("r", "crashed", 0)]


def test_retention_keeps_newest_and_best_and_deletes_only_after_commit(record, db, ckpt):
    # val_loss is best at epoch 1, then gets worse.
    record("r", 8, metrics=lambda e: {"loss": 1.0 / (e + 1), "val_loss": abs(e - 1) + 0.5}, keep_last=2)
    kept = sorted(int(p.name.split("-")[1]) for p in (Path(ckpt) / "r").glob("*.npz"))
    assert kept == [1, 6, 7]
    assert tracker.runs(db)[0].best_epoch == 1


def test_keep_last_none_keeps_everything(record, ckpt):
    record("r", 5, keep_last=None)
    assert len(list((Path(ckpt) / "r").glob("*.npz"))) == 5


def test_orphans_are_swept_at_start_and_foreign_files_are_not(record, ckpt):
    record("r", 2)
    folder = Path(ckpt) / "r"
    orphan = folder / "epoch-000009-0123456789ab.npz"
    temp = folder / ".epoch-000002-0123456789ab.npz.tmp"
    mine = folder / "notes.txt"
    for f in (orphan, temp, mine):
        f.write_text("x")
    record("r", 2)
    assert not orphan.exists() and not temp.exists() and mine.exists()


def test_monitor_mode_max_keeps_the_highest(record, db):
    record("r", 4, monitor="val_accuracy", mode="max", metrics=lambda e: {"loss": 1.0, "val_accuracy": [0.1, 0.9, 0.5, 0.2][e]})
    info = tracker.runs(db)[0]
    assert (info.monitor, info.best_epoch, info.best_value) == ("val_accuracy", 1, 0.9)


def test_without_an_integration_mode_auto_takes_lower_as_better(record, db):
    record("r", 3, monitor="score", metrics=lambda e: {"score": [0.5, 0.1, 0.9][e]})
    assert (tracker.runs(db)[0].best_epoch, tracker.runs(db)[0].best_value) == (1, 0.1)


def test_config_must_be_json(db, ckpt):
    with pytest.raises(TypeError, match="config"):
        tracker.track("r", db=db, checkpoint_dir=ckpt, config={"f": object()})


@pytest.mark.parametrize(
    "url",
    ["postgresql+psycopg://u:hunter2@db.example/x", "postgresql+psycopg://u@db.example/x?password=hunter2"],
    ids=["userinfo", "query"],
)
def test_passwords_are_masked_in_messages(url):
    from tracker.redact import redact
    from tracker.store.db import locate

    assert "hunter2" not in redact(url)
    assert "hunter2" not in locate(url).display


def test_a_checkpoint_folder_owned_by_another_database_is_refused(tmp_path, record, ckpt):
    record("r", 2)
    before = sorted(p.name for p in (Path(ckpt) / "r").iterdir())
    other = tracker.track("r", db=str(tmp_path / "other.db"), checkpoint_dir=ckpt)
    with pytest.raises(tracker.CheckpointError, match="belongs to another run of the same name"):
        other.start()
    assert sorted(p.name for p in (Path(ckpt) / "r").iterdir()) == before
    assert tracker.runs(str(tmp_path / "other.db")) == []  # a failed start of a new run leaves no row


def test_a_metric_missing_at_some_epochs_reads_nan_there(record, db):
    record("r", 4, metrics=lambda e: {"loss": float(e), **({"val_loss": 10.0 + e} if e % 2 == 0 else {})})
    curve = tracker.curves("r", db=db)
    assert curve["epoch"] == [0, 1, 2, 3] and curve["loss"] == [0.0, 1.0, 2.0, 3.0]
    assert same_floats(curve["val_loss"], [10.0, math.nan, 12.0, math.nan])
    assert tracker.curves("r", db=db, metrics=["val_loss"]) == {"epoch": [0, 1, 2, 3], "val_loss": curve["val_loss"]}


def test_metrics_only_in_superseded_epochs_are_left_out(record, db, ckpt):
    record("r", 2, metrics=lambda e: {"loss": 1.0, "old_metric": 2.0})
    for f in (Path(ckpt) / "r").glob("*.npz"):
        f.unlink()
    with pytest.warns(UserWarning, match="Starting over"):
        record("r", 2, metrics=lambda e: {"loss": 0.5})
    assert tracker.curves("r", db=db) == {"epoch": [0, 1], "loss": [0.5, 0.5]}


def test_commit_history_writes_many_epochs_in_one_fenced_transaction(db, record):
    from tracker.errors import RunLockedError
    from tracker.records import ProcessInfo

    record("r", 2)
    store = open_store(db)
    process = ProcessInfo(executable=sys.executable, argv=[], cwd=".", host="h", pid=1, versions={})
    run, attempt = store.start_attempt("r", config={}, checkpoint_dir="ck", process=process, force=True)
    run = store.commit_history(run, attempt, [(e, {"loss": 1.0 / (e + 1), "val_loss": 0.5 - 0.01 * e}) for e in range(2, 6)])
    assert (run.last_epoch, run.best_epoch) == (5, 5)
    _, other = store.start_attempt("r", config={}, checkpoint_dir="ck", process=process, force=True)
    with pytest.raises(RunLockedError, match="taken over"):
        store.commit_history(run, attempt, [(6, {"loss": 0.1})])
    store.close()
    curve = tracker.curves("r", db=db)
    assert curve["epoch"] == [0, 1, 2, 3, 4, 5]
    assert curve["loss"][2:] == [1.0 / 3, 1.0 / 4, 1.0 / 5, 1.0 / 6]
