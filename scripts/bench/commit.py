"""Rows 1 and 2: one epoch's commit against a raw sqlite3 transaction, and the end of an epoch on the training thread."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable
from pathlib import Path

from scripts.bench.harness import LOGS, Plan, Table, add_ratio, folder, interleaved, mb, progress, timed
from scripts.bench.workloads import big_data, build_big_model, load_demo, mlflow_or_none


def raw_sqlite_floor(path: Path) -> tuple[sqlite3.Connection, Callable[[], None]]:
    """The floor for a durable commit in plain sqlite3: a one-row INSERT transaction, WAL, synchronous=FULL."""
    raw = sqlite3.connect(path, isolation_level=None)
    raw.execute("PRAGMA journal_mode=WAL")
    raw.execute("PRAGMA synchronous=FULL")
    raw.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, epoch INTEGER NOT NULL, value REAL)")

    def commit() -> None:
        raw.execute("BEGIN")
        raw.execute("INSERT INTO t (epoch, value) VALUES (?, ?)", (1, 0.5))
        raw.execute("COMMIT")

    return raw, commit



def row_commit(table: Table, plan: Plan, work: Path) -> None:
    progress("row 1: Store.commit_epoch vs raw sqlite3 (and MLflow log_metrics, if installed)")
    from tracker.process import this_process
    from tracker.records import FileInfo, Retention
    from tracker.store import open_store

    with folder(work, "commit") as d:
        store = open_store(d / "tracker.db")
        run, attempt = store.start_attempt("bench-commit", config={}, checkpoint_dir=str(d), process=this_process(), force=False)
        run = store.set_monitor(run, "val_loss", "min")
        raw, raw_commit = raw_sqlite_floor(d / "raw.db")
        epoch = iter(range(10**9))

        def tracker_commit() -> None:
            nonlocal run
            e = next(epoch)
            info = FileInfo(str(d / f"epoch-{e:06d}.npz"), 123_456, "0" * 64)
            # Retention as tracker.track's defaults: the same transaction marks checkpoints it no longer keeps.
            run, _ = store.commit_epoch(run, attempt, e, {k: v / (e + 1) for k, v in LOGS.items()}, info, Retention(3, True))

        cases = {"tracker": timed(tracker_commit), "raw": timed(raw_commit)}
        mlflow = mlflow_or_none()
        if mlflow is not None:
            mlflow.set_tracking_uri(f"sqlite:///{d / 'mlflow.db'}")
            mlflow.start_run()
            step = iter(range(10**9))
            cases["mlflow"] = timed(lambda: mlflow.log_metrics(LOGS, step=next(step)))
        samples = interleaved(cases, plan.commit_reps, warmup=3)
        if mlflow is not None:
            mlflow.end_run()
        raw.close()
        store.close()
    add_ratio(table, "1", "commit_epoch (4 metrics + ckpt ptr) / raw INSERT txn", samples, "tracker", "raw",
              target="<= 2x", note="SQLite WAL, synchronous=FULL")
    what = "MLflow log_metrics (4 metrics) / tracker commit_epoch"
    if mlflow is None:
        table.na("1b", what, "mlflow not installed (pip install -e '.[bench]')")
    else:
        add_ratio(table, "1b", what, samples, "mlflow", "tracker", target=">= 20x", note="MLflow's SQLite store, same machine, interleaved")



def row_end_of_epoch(table: Table, plan: Plan, work: Path) -> None:
    import keras

    demo = load_demo()
    x, y = demo.blobs(256, seed=1)
    models = [("demo CNN", demo.build_model(), x, y, plan.hook_reps_cnn, "2a")]
    bx, by = big_data(256)
    models.append(("5M MLP", build_big_model(), bx, by, plan.hook_reps_big, "2b"))
    for label, model, mx, my, reps, key in models:
        progress(f"row {key}: end-of-epoch callbacks, {label} ({model.count_params():,} params)")
        model.fit(mx, my, epochs=1, batch_size=64, verbose=0)  # builds the optimizer's variables
        with folder(work, f"hooks-{key}") as d:
            samples, ckpt_bytes, background = time_end_of_epoch(model, d, reps)
        how = ("hands over to the background writer" if background else "synchronous: no background writer in this tree")
        add_ratio(table, key, f"end of epoch, {label}: tracker on_epoch_end / MC+CSV", samples, "tracker", "mc_csv",
                  target="<= 0.25x", note=f"training thread, {how}; ckpt {mb(ckpt_bytes)}")
        add_ratio(table, key, "  tracker on_epoch_end / BackupAndRestore", samples, "tracker", "backup",
                  note="BackupAndRestore overwrites one .h5, no fsync")
        add_ratio(table, key, "  tracker until durable / MC+CSV", samples, "tracker_durable", "mc_csv",
                  note="on_epoch_end + flush: write, fsync, hash, commit, retention")
        add_ratio(table, key, "  tracker until durable / MC+CSV+fsync(.h5)", samples, "tracker_durable", "mc_csv_fsync",
                  note="durable vs durable")
        del model
        keras.backend.clear_session()



def time_end_of_epoch(model, d: Path, reps: int) -> tuple[dict[str, list[float]], int, bool]:
    """Time each end-of-epoch hook called directly, as fit would call it.

    Returns the samples, the size of one tracker checkpoint, and whether tracker
    has a background writer (``Run.flush``) in this tree.
    """
    import keras

    import tracker
    from tracker.durable import fsync_path
    from tracker.keras import TrackerCallback

    run = tracker.track("bench-hooks", db=d / "tracker.db", checkpoint_dir=d / "ckpt")
    run.start()
    params = {"epochs": 10**6, "steps": 1, "verbose": 0}
    ours = TrackerCallback(run)
    mc = keras.callbacks.ModelCheckpoint(filepath=str(d / "mc.weights.h5"), save_weights_only=True)
    mc_durable = keras.callbacks.ModelCheckpoint(filepath=str(d / "mcd.weights.h5"), save_weights_only=True)
    csv, csv_durable = keras.callbacks.CSVLogger(str(d / "log.csv")), keras.callbacks.CSVLogger(str(d / "logd.csv"))
    backup = keras.callbacks.BackupAndRestore(backup_dir=str(d / "backup"))
    for cb in (ours, mc, mc_durable, csv, csv_durable, backup):
        cb.set_model(model)
        cb.set_params(params)
    for cb in (ours, csv, csv_durable, backup):
        cb.on_train_begin()
    epochs = {name: iter(range(10**9)) for name in ("tracker", "mc_csv", "mc_csv_fsync", "backup")}

    def with_fsync() -> None:
        e = next(epochs["mc_csv_fsync"])
        mc_durable.on_epoch_end(e, LOGS)
        csv_durable.on_epoch_end(e, LOGS)
        fsync_path(d / "mcd.weights.h5")

    def mc_csv() -> None:
        e = next(epochs["mc_csv"])
        mc.on_epoch_end(e, LOGS)
        csv.on_epoch_end(e, LOGS)

    # With a background writer, on_epoch_end only hands the epoch over; flush() waits until it is committed.
    flush = getattr(run, "flush", lambda: None)

    def tracker_thread() -> list[float]:
        start = time.perf_counter()
        ours.on_epoch_end(next(epochs["tracker"]), LOGS)
        elapsed = time.perf_counter() - start
        flush()  # untimed: in fit the writer works during the next epoch, here it must not overlap the next case
        return [elapsed]

    def tracker_durable() -> None:
        ours.on_epoch_end(next(epochs["tracker"]), LOGS)
        flush()

    cases = {
        "tracker": tracker_thread,
        "tracker_durable": timed(tracker_durable),
        "mc_csv": timed(mc_csv),
        "mc_csv_fsync": timed(with_fsync),
        "backup": timed(lambda: backup.on_epoch_end(next(epochs["backup"]), LOGS)),
    }
    try:
        samples = interleaved(cases, reps)
        ckpt_bytes = run._store.checkpoints(run._run.id)[0].checkpoint.size
    finally:
        csv.on_train_end()
        csv_durable.on_train_end()
        run.finish("completed")
    return samples, ckpt_bytes, hasattr(run, "flush")
