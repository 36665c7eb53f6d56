"""Row 8: the web view (``python -m tracker.serve``) over HTTP, its run list and a long curve, against raw SELECTs."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable
from pathlib import Path

from scripts.bench.curves import CURVE_SQL
from scripts.bench.harness import Plan, Table, add_ratio, folder, interleaved, progress, timed

SERVE_METRICS = [f"metric_{i:02d}" for i in range(20)]

SERVE_MAX_POINTS = 2_000

RUNS_SQL = ("SELECT * FROM runs ORDER BY created_at, id",
            "SELECT * FROM attempts WHERE id IN (SELECT max(id) FROM attempts GROUP BY run_id)")



def history_run(store, name: str, n_epochs: int, values: Callable[[int], dict[str, float]], chunk: int = 50_000) -> None:
    """A completed run of ``n_epochs`` epochs written with the store's own methods (`Store.commit_history`)."""
    from tracker.process import this_process

    run, attempt_id = store.start_attempt(name, config={"lr": 10 ** -(len(name) % 4), "run": name}, checkpoint_dir=name,
                                          process=this_process(), force=False)
    run = store.set_monitor(run, SERVE_METRICS[0] if "metric_00" in values(0) else "loss", "min")
    for start in range(0, n_epochs, chunk):
        run = store.commit_history(run, attempt_id, [(e, values(e)) for e in range(start, min(n_epochs, start + chunk))])
    store.set_target_epochs(run.id, n_epochs)
    store.finish_attempt(run.id, attempt_id, "completed")



def row_serve(table: Table, plan: Plan, work: Path) -> None:
    import httpx
    import numpy as np

    from tests.support import serving
    from tracker.store import open_store

    n_runs, n_epochs, n_points = plan.serve_runs, plan.serve_epochs, plan.serve_points
    with folder(work, "serve") as d:
        db = d / "tracker.db"
        progress(f"row 8: building {n_runs} runs x {len(SERVE_METRICS)} metrics x {n_epochs:,} epochs and one run "
                 f"of {n_points:,} epochs with Store.commit_history")
        rng = np.random.default_rng(0)
        series = rng.normal(1.0, 0.05, n_points)
        series[n_points // 3], series[2 * n_points // 3] = 25.0, -20.0  # one spike each way: both must survive
        started = time.perf_counter()
        store = open_store(db)
        try:
            for i in range(n_runs):
                history_run(store, f"run-{i:03d}", n_epochs,
                            lambda e: {m: 1.0 / (e + 1) + k / 100 for k, m in enumerate(SERVE_METRICS)})
            history_run(store, "long", n_points, lambda e: {"loss": float(series[e])})
        finally:
            store.close()
        progress(f"row 8: built in {time.perf_counter() - started:.0f} s, {db.stat().st_size / 2**20:.0f} MB")
        raw = sqlite3.connect(db)
        server = serving.start(str(db))
        try:
            with httpx.Client(base_url=server.url, timeout=600) as client:
                listed = client.get("/api/runs").json()
                if len(listed) != n_runs + 1:
                    raise RuntimeError(f"GET /api/runs listed {len(listed)} runs, expected {n_runs + 1}")

                def raw_runs() -> None:
                    for sql in RUNS_SQL:
                        raw.execute(sql).fetchall()

                samples = interleaved({"serve": timed(lambda: client.get("/api/runs").raise_for_status()),
                                       "raw": timed(raw_runs)}, plan.serve_reps)
                add_ratio(table, "8a", f"GET /api/runs, {n_runs} runs x {len(SERVE_METRICS)} metrics x {n_epochs:,} ep. "
                          "/ raw SELECT", samples, "serve", "raw", note="over HTTP, JSON; baseline: same rows, open connection")

                run_id = raw.execute("SELECT id FROM runs WHERE name = 'long'").fetchone()[0]
                path = f"/api/runs/long/curves?metrics=loss&max_points={SERVE_MAX_POINTS}"
                answer = client.get(path).json()
                kept = [v for v in answer["loss"] if v is not None]
                if len(answer["epoch"]) > SERVE_MAX_POINTS or max(kept) != series.max() or min(kept) != series.min():
                    raise RuntimeError(f"curve answer: {len(answer['epoch'])} points, max {max(kept)}, min {min(kept)}")
                samples = interleaved({"serve": timed(lambda: client.get(path).raise_for_status()),
                                       "raw": timed(lambda: raw.execute(CURVE_SQL, (run_id, "loss")).fetchall())},
                                      plan.serve_reps)
                add_ratio(table, "8b", f"curves API, 1 metric, {n_points:,} points -> max_points={SERVE_MAX_POINTS} "
                          "/ raw SELECT", samples, "serve", "raw", target="<= 1.5x",
                          note=f"over HTTP; {len(answer['epoch'])} points kept, global min and max among them")
        finally:
            server.stop()
            raw.close()
