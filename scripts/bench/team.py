"""Row 12: team mode on a PostgreSQL server of the bench's own (``scripts/test_postgres.sh`` on a free port).

- 12a: the training thread's cost of one epoch's commit (metrics and a 1 MB checkpoint written and pointed at),
  through the local-first spool, against the same commit written to the server directly (``TRACKER_SPOOL=off``),
  in one process, interleaved. The spool's replication runs behind, on its own thread, as in training.
- 12b: epoch wall time of a tracked training loop (a fixed amount of numpy work per epoch and its commit) while
  the server is stopped (``pg_ctl stop -m immediate``, 30 s; 6 s with --quick), against the epochs of the same
  process with the server up, before the outage. Run in a child process, which prints each epoch's duration.

Run as ``python -m scripts.bench.team child DB CKPT STOP_FILE``, this module is 12b's child: it trains until STOP_FILE exists.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from scripts.bench.harness import Plan, Table, add_ratio, folder, interleaved, median, ms, progress, timed

#: 12b's outage, as the issue measured it.
OUTAGE_SECONDS = 30.0
#: 12b: the numpy work of one epoch, 0.05-0.3 s here depending on the load.
WORK = 140
#: 12b: epochs with the server up, before the outage (the baseline) and after it (the catch-up).
EPOCHS_UP = 30


def row_team(table: Table, plan: Plan, work: Path) -> None:
    if not Path("/usr/lib/postgresql").is_dir():
        table.na("12a", "epoch commit: spooled / direct to PostgreSQL", "needs PostgreSQL's server binaries (apt-get install postgresql)")
        table.na("12b", "epoch time, server down 30 s / server up", "needs PostgreSQL's server binaries")
        return
    from tests.support.pg_cluster import Cluster

    progress("row 12: team mode on a PostgreSQL server of its own")
    with Cluster.start() as pg, folder(work, "team") as d:
        _commit_cost(table, plan, pg.url, d)
        _outage(table, plan, pg, d)


def _commit_cost(table: Table, plan: Plan, url: str, d: Path) -> None:
    import tracker

    os.environ["TRACKER_SPOOL_DIR"] = str(d / "spool")
    arrays = {"w": np.random.default_rng(0).standard_normal(2**17)}  # 1 MB
    runs = {}
    for name, spool in (("spooled", "on"), ("direct", "off")):
        os.environ["TRACKER_SPOOL"] = spool
        run = tracker.track(f"bench-{name}", db=url, checkpoint_dir=str(d / "ckpt"), monitor="loss", save_on_signal=None)
        run.start()
        runs[name] = (run, iter(range(10**9)))
    os.environ.pop("TRACKER_SPOOL")

    def commit(name: str) -> None:
        run, epochs = runs[name]
        e = next(epochs)
        run.commit_epoch(e, {"loss": 1.0 / (e + 1), "accuracy": 0.5}, arrays, {})

    reps = max(10, plan.commit_reps // 4)
    samples = interleaved({name: timed(lambda n=name: commit(n)) for name in runs}, reps, warmup=2)
    for run, _ in runs.values():
        run.finish("completed")
    add_ratio(table, "12a", "epoch commit (1 MB checkpoint): spooled / direct to PostgreSQL", samples, "spooled", "direct",
              target="<= 1.0x", note="the training thread's wait; replication runs behind it")


def _outage(table: Table, plan: Plan, pg: object, d: Path) -> None:
    outage = 6.0 if plan.quick else OUTAGE_SECONDS
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("TRACKER_")}, "TRACKER_SPOOL_DIR": str(d / "spool-b")}
    stop = d / "stop-b"
    # The child trains until told to stop, so the outage lies inside training however fast its epochs are here.
    child = subprocess.Popen([sys.executable, "-m", "scripts.bench.team", "child", pg.url, str(d / "ckpt-b"), str(stop)],
                             env=env, stdout=subprocess.PIPE, text=True)
    assert child.stdout is not None
    durations: list[tuple[float, float]] = []  # (end time, seconds)
    down = up = None
    after = 0
    for line in child.stdout:
        end, seconds = json.loads(line)
        durations.append((end, seconds))
        if down is None and len(durations) == EPOCHS_UP:
            pg.stop()
            down = time.time()
        elif down is not None and up is None and time.time() - down >= outage:
            pg.restart()
            up = time.time()
        elif up is not None:
            after += 1
            if after == EPOCHS_UP:
                stop.touch()
    if child.wait() != 0 or down is None or up is None:
        table.na("12b", "epoch time, server down / server up", f"the child exited {child.returncode} (outage {down} to {up})")
        return
    before = [s for t, s in durations[1:EPOCHS_UP]]  # the first epoch warms up
    during = [s for t, s in durations if down + 1 < t < up]
    table.add("12b", f"epoch time, PostgreSQL stopped {outage:.0f} s / server up", ms(median(during)), ms(median(before)),
              median(during) / median(before), "<= 1.05x", f"n={len(during)}/{len(before)}; numpy epochs, 1 MB checkpoints")


def _child(db: str, ckpt: str, stop: Path) -> None:
    import tracker

    rng = np.random.default_rng(0)
    a = rng.standard_normal((WORK * 4, WORK * 4))
    run = tracker.track("bench-outage", db=db, checkpoint_dir=ckpt, monitor="loss", save_on_signal=None)
    run.start()
    e = 0
    while not stop.exists():
        t = time.perf_counter()
        for _ in range(6):
            a = np.tanh(a @ a.T / a.shape[0])
        run.commit_epoch(e, {"loss": float(a[0, 0])}, {"w": a[:256]}, {})
        print(json.dumps([time.time(), time.perf_counter() - t]), flush=True)
        e += 1
    run.finish("completed")


if __name__ == "__main__":
    if sys.argv[1] == "child":
        _child(sys.argv[2], sys.argv[3], Path(sys.argv[4]))
