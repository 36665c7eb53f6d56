"""Row 4: reading curves back, ``tracker.curves`` against a raw SELECT (and MLflow's metric history), and a bulk-built run to read."""

from __future__ import annotations

import sqlite3
import time
from datetime import datetime, timezone
from pathlib import Path

from scripts.bench.harness import LOGS, Plan, Table, add_ratio, folder, interleaved, progress, timed
from scripts.bench.workloads import mlflow_or_none

CURVE_SQL = "SELECT epoch, value FROM metrics WHERE run_id=? AND name=? AND superseded=0 ORDER BY epoch"



def bulk_run(db: Path, name: str, n_epochs: int) -> int:
    """A completed run of ``n_epochs`` epochs x `LOGS` metrics, its epochs inserted in bulk; returns its id.

    The schema comes from `open_store` (the migrations), the run and its attempt from
    the store's own methods; only the epoch and metric rows are written here directly.
    """
    from tracker.process import this_process
    from tracker.store import open_store
    from tracker.store.tables import epochs, metrics, runs

    store = open_store(db)
    try:
        run, attempt_id = store.start_attempt(name, config={}, checkpoint_dir=str(db.parent / name),
                                              process=this_process(), force=False)
        run = store.set_monitor(run, "val_loss", "min")
        t = datetime.now(timezone.utc)
        with store.engine.begin() as conn:
            row = {"run_id": run.id, "attempt_id": attempt_id, "committed_at": t, "checkpoint_deleted": False, "superseded": False}
            first = conn.execute(epochs.insert().values(epoch=0, **row)).inserted_primary_key[0]
            # Explicit ids for the rest, so that the metric rows can point at them without reading them back.
            conn.execute(epochs.insert(), [{"id": first + e, "epoch": e, **row} for e in range(1, n_epochs)])
            conn.execute(metrics.insert(), [
                {"epoch_id": first + e, "name": k, "run_id": run.id, "epoch": e, "value": v / (e + 1), "superseded": False}
                for e in range(n_epochs) for k, v in LOGS.items()
            ])
            conn.execute(runs.update().where(runs.c.id == run.id).values(
                last_epoch=n_epochs - 1, best_epoch=n_epochs - 1, best_value=LOGS["val_loss"] / n_epochs,
            ))
        store.set_target_epochs(run.id, n_epochs)
        store.finish_attempt(run.id, attempt_id, "completed")
    finally:
        store.close()
    return run.id



def raw_curves(db: Path, run_id: int, names: list[str]) -> dict[str, list]:
    con = sqlite3.connect(db)
    try:
        out: dict[str, list] = {}
        for name in names:
            rows = con.execute(CURVE_SQL, (run_id, name)).fetchall()
            out["epoch"] = [r[0] for r in rows]
            out[name] = [r[1] for r in rows]
        return out
    finally:
        con.close()



def row_curves(table: Table, plan: Plan, work: Path) -> None:
    import tracker

    n = plan.curve_epochs
    progress(f"row 4: curves of a {n:,}-epoch run (building it)")
    with folder(work, "curves") as d:
        db = d / "tracker.db"
        run_id = bulk_run(db, "bench-curves", n)
        names = list(LOGS)
        for key, which, what in (("4a", None, f"all {len(names)} metrics"), ("4b", ["loss"], "1 metric")):
            wanted = which or names
            check = tracker.curves("bench-curves", db, metrics=which)
            if len(check["epoch"]) != n or set(check) != {"epoch", *wanted}:
                raise RuntimeError(f"curves returned {len(check['epoch'])} epochs and {sorted(check)}")
            samples = interleaved({"tracker": timed(lambda: tracker.curves("bench-curves", db, metrics=which)),
                                   "raw": timed(lambda: raw_curves(db, run_id, wanted))}, plan.curve_reps)
            add_ratio(table, key, f"curves() {n:,} ep., {what} / raw SELECT", samples, "tracker", "raw",
                      target="<= 50 ms" if which else "", note="includes open; baseline incl. connect")
        what = f"MLflow get_metric_history, {n:,} points / tracker curves(1 metric)"
        mlflow = mlflow_or_none()
        if mlflow is None:
            table.na("4c", what, "mlflow not installed (pip install -e '.[bench]')")
            return
        client = mlflow_with_history(mlflow, d, n)
        samples = interleaved({"mlflow": timed(lambda: client.get_metric_history(client.run_id, "loss")),
                               "tracker": timed(lambda: tracker.curves("bench-curves", db, metrics=["loss"]))}, plan.curve_reps)
        add_ratio(table, "4c", what, samples, "mlflow", "tracker", target=">= 20x", note="same points, MLflow's SQLite store")



def mlflow_with_history(mlflow, d: Path, n: int):
    """An MLflow client on a fresh SQLite store holding one run with ``n`` points of ``loss``, logged in batches."""
    from mlflow.entities import Metric
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=f"sqlite:///{d / 'mlflow.db'}")
    experiment = client.create_experiment("bench")
    client.run_id = client.create_run(experiment).info.run_id
    now = int(time.time() * 1000)
    for start in range(0, n, 1000):
        batch = [Metric("loss", 1.0 / (e + 1), now, e) for e in range(start, min(n, start + 1000))]
        client.log_batch(client.run_id, metrics=batch)
    return client
