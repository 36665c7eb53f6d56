"""Many writers: a hyperparameter sweep of N processes, each writing its own run to ONE database.

Every worker is a real OS process (this module, run again with ``--worker``). All of
them import tracker first, then wait on a start file so that they open the database
and commit at the same moment. Each one tracks run ``sweep-<i>`` through the real
protocol (`tracker.track`, ``Run.commit_epoch``: durable checkpoint file, then one
transaction, then retention), with 4 metrics per epoch, and times every commit: the
whole ``Run.commit_epoch`` and, by wrapping ``tracker.store.Store.commit_epoch``, the
database transaction alone. No error is retried or swallowed: each is counted
("database is locked" apart) and shown, as is every warning tracker logs (e.g. a
failed heartbeat). When all workers have exited, the parent reads every run back
through the public query layer (`tracker.runs`, `tracker.curves`) and counts lost,
duplicated and wrong rows.

    python -m scripts.sweep_bench                               # 8 x 200 on a fresh SQLite file in a temp dir
    python -m scripts.sweep_bench --procs 8 --epochs 25         # a quick one
    python -m scripts.sweep_bench --db postgresql+psycopg://postgres@127.0.0.1:54329/sweep
    python -m scripts.sweep_bench --db postgresql+psycopg://postgres@127.0.0.1:54329/postgres --create-db
    python -m scripts.sweep_bench --serve    # twice: alone, then watched by python -m tracker.serve; p99 compared

With ``--serve`` the sweep runs twice, each time on a fresh database: first alone, then while
``python -m tracker.serve`` serves the database to an open page (an event stream, and the run
list and one run's curves fetched every 0.2 s; see ``tests/support/serving.py``). The server starts as
soon as the database exists. The report ends with the p99 commit times of both runs side by side.

A PostgreSQL URL names a database that must exist and hold no ``sweep-*`` runs yet;
with ``--create-db`` the script instead creates a fresh database on that server
(the URL's user must be allowed to), uses it, and drops it at the end. A SQLite
path must not exist yet. The checkpoint folder defaults to a temp dir removed at
the end. Exit status 1 if any error, lost, duplicated or wrong row was found.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from tests.support.postgres import fresh_postgres_database

LOCKED = "database is locked"
READY_TIMEOUT_S = 300.0


# -- the values a worker commits, known to the parent too -----------------------


def config_of(index: int) -> dict[str, Any]:
    """Hyperparameters of sweep member ``index``."""
    return {"lr": 10.0 ** -(1 + index % 4), "batch_size": 32 * (1 + index % 3), "seed": index}


def metrics_of(index: int, epoch: int) -> dict[str, float]:
    """The 4 metrics member ``index`` commits at ``epoch``: distinct per run and per epoch."""
    scale = 1.0 + index / 10.0
    return {
        "loss": scale / (epoch + 1),
        "val_loss": scale / (epoch + 1) + 0.001 * epoch,
        "accuracy": 1.0 - 1.0 / (epoch + 2 + index),
        "val_accuracy": 1.0 - 1.5 / (epoch + 3 + index),
    }


def run_name(index: int) -> str:
    return f"sweep-{index}"


# -- worker ------------------------------------------------------------------------


class _TrackerWarnings(logging.Handler):
    """Keeps every WARNING-or-worse record tracker logs (a failed heartbeat is logged, not raised)."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(f"{record.name}: {record.getMessage()}")


def _wait_for(path: Path, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while not path.exists():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{path} did not appear within {timeout_s:.0f}s")
        time.sleep(0.001)


def worker(index: int, db: str, epochs: int, checkpoint_dir: str, sync_dir: Path) -> int:
    """Track ``sweep-<index>`` for ``epochs`` epochs; write timings and errors to ``sync_dir/result-<index>.json``."""
    import tracker
    import tracker.store

    txn_ms: list[float] = []
    original = tracker.store.Store.commit_epoch

    def timed_commit(self: tracker.store.Store, *args: Any, **kwargs: Any) -> Any:
        t0 = time.perf_counter()
        try:
            return original(self, *args, **kwargs)
        finally:
            txn_ms.append((time.perf_counter() - t0) * 1e3)

    tracker.store.Store.commit_epoch = timed_commit  # type: ignore[method-assign]
    logged = _TrackerWarnings()
    logging.getLogger("tracker").addHandler(logged)

    errors: list[str] = []
    commit_ms: list[float] = []
    committed = 0
    first_commit_at = last_commit_at = math.nan

    (sync_dir / f"ready-{index}").touch()
    _wait_for(sync_dir / "go", READY_TIMEOUT_S)
    started_at = time.time()
    run = tracker.track(run_name(index), db=db, checkpoint_dir=checkpoint_dir, config=config_of(index))
    try:
        run.start()
        run.set_target_epochs(epochs)
        first_commit_at = time.time()
        for epoch in range(run.initial_epoch, epochs):
            arrays = {"w": np.full(3, float(epoch))}
            t0 = time.perf_counter()
            try:
                run.commit_epoch(epoch, metrics_of(index, epoch), arrays, {})
            except Exception as e:  # noqa: BLE001 - counted and reported, then the next epoch is tried
                errors.append(f"epoch {epoch}: {type(e).__name__}: {e}")
                continue
            commit_ms.append((time.perf_counter() - t0) * 1e3)
            committed += 1
        last_commit_at = time.time()
        run.finish("completed")
    except Exception as e:  # noqa: BLE001 - counted and reported
        errors.append(f"{type(e).__name__}: {e}")
        try:
            run.finish("failed", error=str(e))
        except Exception as e2:  # noqa: BLE001 - counted and reported
            errors.append(f"finish: {type(e2).__name__}: {e2}")
    finally:
        tracker.store.Store.commit_epoch = original  # type: ignore[method-assign]
    errors += [f"logged: {m}" for m in logged.messages]
    result = {
        "index": index, "committed": committed, "commit_ms": commit_ms, "txn_ms": txn_ms, "errors": errors,
        "started_at": started_at, "first_commit_at": first_commit_at, "last_commit_at": last_commit_at,
        "ended_at": time.time(),
    }
    temp = sync_dir / f".result-{index}.tmp"
    temp.write_text(json.dumps(result))
    temp.replace(sync_dir / f"result-{index}.json")
    return 0


# -- parent: start the sweep --------------------------------------------------------


@dataclass
class Sweep:
    """What the workers reported."""

    results: list[dict[str, Any]]
    wall_s: float
    #: Workers that exited badly or wrote no result, with their stderr's tail.
    failures: list[str] = field(default_factory=list)


def run_sweep(db: str, procs: int, epochs: int, checkpoint_dir: str, timeout_s: float) -> Sweep:
    """Start ``procs`` workers, release them together, wait for all of them."""
    with tempfile.TemporaryDirectory(prefix="sweep-sync-") as sync, ExitStack() as files:
        sync_dir = Path(sync)
        workers = []
        for i in range(procs):
            # This module again, found as the parent found it: same working folder, same PYTHONPATH.
            argv = [sys.executable, "-m", "scripts.sweep_bench", "--worker", str(i), "--sync-dir", sync,
                    "--db", db, "--epochs", str(epochs), "--checkpoint-dir", checkpoint_dir]
            # A file, not a pipe: a chatty worker cannot block.
            stderr = files.enter_context(open(sync_dir / f"stderr-{i}", "w+b"))
            workers.append((subprocess.Popen(argv, stdout=stderr, stderr=stderr), stderr))
        deadline = time.monotonic() + READY_TIMEOUT_S
        while not all((sync_dir / f"ready-{i}").exists() or p.poll() is not None for i, (p, _) in enumerate(workers)):
            if time.monotonic() > deadline:
                break
            time.sleep(0.01)
        (sync_dir / ".go").touch()
        t0 = time.perf_counter()
        (sync_dir / ".go").replace(sync_dir / "go")
        failures, results = [], []
        for i, (p, stderr) in enumerate(workers):
            try:
                rc = p.wait(timeout=max(1.0, timeout_s - (time.perf_counter() - t0)))
            except subprocess.TimeoutExpired:
                p.kill()
                rc = p.wait()
            stderr.seek(0)
            tail = stderr.read().decode(errors="replace")[-2000:]
            result = sync_dir / f"result-{i}.json"
            if rc != 0 or not result.exists():
                failures.append(f"worker {i} exited with {rc}{'' if result.exists() else ', no result'}: {tail.strip()}")
            if result.exists():
                results.append(json.loads(result.read_text()))
        return Sweep(results, time.perf_counter() - t0, failures)


# -- parent: check every row through the public query layer ---------------------------


@dataclass
class Check:
    lost: int = 0
    duplicated: int = 0
    wrong: int = 0
    problems: list[str] = field(default_factory=list)


def _same(a: float, b: float) -> bool:
    return a == b or (math.isnan(a) and math.isnan(b))


def verify(db: str, procs: int, epochs: int) -> Check:
    """Every run ``sweep-<i>`` must hold epochs 0..epochs-1 exactly once, with exactly the committed values."""
    import tracker

    check = Check()
    try:
        listed = {r.name: r for r in tracker.runs(db=db)}
    except tracker.TrackerError as e:  # e.g. no worker got as far as creating the SQLite file
        check.lost = procs * epochs
        check.problems.append(f"cannot read the database: {e}")
        return check
    for i in range(procs):
        name = run_name(i)
        info = listed.get(name)
        if info is None:
            check.lost += epochs
            check.problems.append(f"{name}: missing from tracker.runs()")
            continue
        if (info.status, info.last_epoch, info.target_epochs, info.config) != ("completed", epochs - 1, epochs, config_of(i)):
            check.wrong += 1
            check.problems.append(f"{name}: runs() says status={info.status} last_epoch={info.last_epoch} "
                                  f"target_epochs={info.target_epochs} config={info.config}")
        live = tracker.curves(name, db=db)
        every = tracker.curves(name, db=db, include_superseded=True)  # superseded rows too: a duplicate cannot hide
        seen = every["epoch"]
        check.duplicated += len(seen) - len(set(seen))
        check.wrong += sum(1 for e in seen if not 0 <= e < epochs)
        got = set(live["epoch"])
        missing = [e for e in range(epochs) if e not in got]
        check.lost += len(missing)
        if missing:
            check.problems.append(f"{name}: epochs missing: {missing[:10]}{' ...' if len(missing) > 10 else ''}")
        names = sorted(k for k in live if k != "epoch")
        if names != sorted(metrics_of(i, 0)):
            check.wrong += 1
            check.problems.append(f"{name}: metric names {names}")
        for row, epoch in enumerate(live["epoch"]):
            if not 0 <= epoch < epochs:
                continue
            expected = metrics_of(i, epoch)
            bad = [k for k in expected if k in live and not _same(live[k][row], expected[k])]
            if bad:
                check.wrong += 1
                check.problems.append(f"{name}: epoch {epoch}: wrong {bad}")
    extra = sorted(set(listed) - {run_name(i) for i in range(procs)})
    if extra:
        check.problems.append(f"runs not made by this sweep (ignored): {extra[:5]}")
    return check


# -- report -------------------------------------------------------------------------


def _percentiles(ms: list[float]) -> str:
    if not ms:
        return f"{'-':>8} {'-':>8} {'-':>8} {'-':>8}"
    p50, p90, p99 = np.percentile(ms, [50, 90, 99])
    return f"{p50:8.2f} {p90:8.2f} {p99:8.2f} {max(ms):8.2f}"


def summarize(backend: str, procs: int, epochs: int, sweep: Sweep, check: Check) -> dict[str, Any]:
    errors = [e for r in sweep.results for e in r["errors"]]
    commit_ms = [x for r in sweep.results for x in r["commit_ms"]]
    txn_ms = [x for r in sweep.results for x in r["txn_ms"]]
    commits = sum(r["committed"] for r in sweep.results)
    firsts = [r["first_commit_at"] for r in sweep.results if not math.isnan(r["first_commit_at"])]
    lasts = [r["last_commit_at"] for r in sweep.results if not math.isnan(r["last_commit_at"])]
    span = max(lasts) - min(firsts) if firsts and lasts else math.nan
    locked = sum(LOCKED in e for e in errors)
    return {
        "backend": backend, "procs": procs, "epochs": epochs, "commits": commits, "wall_s": sweep.wall_s,
        "commit_span_s": span, "commits_per_s": commits / span if span and span > 0 else math.nan,
        "commit_ms": commit_ms, "txn_ms": txn_ms,
        "locked_errors": locked, "other_errors": len(errors) - locked + len(sweep.failures),
        "lost_rows": check.lost, "duplicate_rows": check.duplicated, "wrong_rows": check.wrong,
        "error_messages": errors + sweep.failures, "problems": check.problems,
    }


def print_report(s: dict[str, Any]) -> None:
    print(f"{'backend':<10} {'procs':>5} {'epochs':>6} {'commits':>7} {'wall s':>7} {'commit s':>8} {'commits/s':>9}")
    print(f"{s['backend']:<10} {s['procs']:>5} {s['epochs']:>6} {s['commits']:>7} {s['wall_s']:>7.2f} "
          f"{s['commit_span_s']:>8.2f} {s['commits_per_s']:>9.1f}")
    print()
    print(f"{'per-commit latency, ms':<34} {'p50':>8} {'p90':>8} {'p99':>8} {'max':>8}")
    print(f"{'Run.commit_epoch (file + txn)':<34} {_percentiles(s['commit_ms'])}")
    print(f"{'Store.commit_epoch (txn alone)':<34} {_percentiles(s['txn_ms'])}")
    print()
    print(f"{'locked errors':>13} {'other errors':>12} {'lost rows':>9} {'duplicate rows':>14} {'wrong rows':>10}")
    print(f"{s['locked_errors']:>13} {s['other_errors']:>12} {s['lost_rows']:>9} {s['duplicate_rows']:>14} {s['wrong_rows']:>10}")
    for line in (s["error_messages"] + s["problems"])[:20]:
        print(f"  ! {line}")
    print("wall s: start file to last worker exit (opening the database, migrating, finishing included); "
          "commit s: first commit started to last commit ended, over all workers; commits/s = commits / commit s.")


# -- main ---------------------------------------------------------------------------


def _backend(db: str) -> str:
    import sqlalchemy as sa

    return sa.make_url(db).get_backend_name() if "://" in db else "sqlite"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m scripts.sweep_bench", description=__doc__.split("\n\n")[0])
    parser.add_argument("--db", help="SQLite path (must not exist) or SQLAlchemy URL. Default: a fresh SQLite file in a temp dir.")
    parser.add_argument("--procs", type=int, default=8)
    parser.add_argument("--epochs", type=int, default=200)
    parser.add_argument("--checkpoint-dir", help="Default: a temp dir, removed at the end.")
    parser.add_argument("--create-db", action="store_true", help="PostgreSQL: use a fresh database on the URL's server, dropped after.")
    parser.add_argument("--timeout", type=float, default=1800.0, help="Seconds before unfinished workers are killed.")
    parser.add_argument("--json", help="Also write the figures (and every latency) to this file.")
    parser.add_argument("--serve", action="store_true",
                        help="Run the sweep twice: alone, then served by python -m tracker.serve to an open page; compare p99.")
    parser.add_argument("--worker", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--sync-dir", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.worker is not None:
        return worker(args.worker, args.db, args.epochs, args.checkpoint_dir, Path(args.sync_dir))

    reports = []
    with tempfile.TemporaryDirectory(prefix="sweep-bench-") as tmp:
        db = args.db or str(Path(tmp) / "sweep.db")
        backend = _backend(db)
        if args.create_db and backend != "postgresql":
            parser.error("--create-db is for a PostgreSQL URL")
        if args.serve and backend != "sqlite" and not args.create_db:
            parser.error("--serve runs the sweep twice, on two fresh databases: add --create-db")
        for served in (False, True) if args.serve else (False,):
            # The second SQLite file sits beside the first: both sweeps write to the same disk.
            path = db if not served or "://" in db else str(Path(db).with_name(Path(db).stem + "-served" + Path(db).suffix))
            if backend == "sqlite" and "://" not in path and Path(path).exists():
                parser.error(f"--db {path} exists: the sweep needs a fresh database")
            checkpoint_dir = os.path.abspath(args.checkpoint_dir or str(Path(tmp) / "checkpoints"))
            if served:
                checkpoint_dir += "-served"
            with fresh_postgres_database(path, prefix="sweep") if args.create_db else _as_is(path) as url:
                watcher = _watcher(url) if served else None
                sweep = run_sweep(url, args.procs, args.epochs, checkpoint_dir, args.timeout)
                serve_problems = watcher.stop() if watcher else []
                check = verify(url, args.procs, args.epochs)
            if args.checkpoint_dir is None:
                shutil.rmtree(checkpoint_dir, ignore_errors=True)
            s = summarize(backend, args.procs, args.epochs, sweep, check)
            s.update(served=served, serve_requests=watcher.requests if watcher else 0, serve_problems=serve_problems)
            reports.append(s)
    for s in reports:
        if args.serve:
            print(f"\n== {'watched by python -m tracker.serve (' + str(s['serve_requests']) + ' requests + an event stream)' if s['served'] else 'alone'}")
        print_report(s)
        for problem in s["serve_problems"]:
            print(f"  ! serve: {problem}")
    if args.serve:
        alone, watched = reports
        print(f"\n{'p99 commit, ms':<34} {'alone':>8} {'watched':>8} {'ratio':>8}")
        for key, label in (("commit_ms", "Run.commit_epoch (file + txn)"), ("txn_ms", "Store.commit_epoch (txn alone)")):
            a, w = (float(np.percentile(r[key], 99)) if r[key] else math.nan for r in (alone, watched))
            print(f"{label:<34} {a:8.2f} {w:8.2f} {w / a:7.2f}x")
    if args.json:
        Path(args.json).write_text(json.dumps(reports if args.serve else reports[0]))
    bad = sum(s["locked_errors"] + s["other_errors"] + s["lost_rows"] + s["duplicate_rows"] + s["wrong_rows"]
              + len(s["serve_problems"]) for s in reports)
    return 1 if bad else 0


def _watcher(db: str) -> Any:
    """A `tests.support.serving.Watcher` on ``db`` (imported here: workers never need it)."""
    from tests.support import serving

    return serving.Watcher(db, run_name(0))


@contextmanager
def _as_is(db: str) -> Iterator[str]:
    yield db


if __name__ == "__main__":
    sys.exit(main())
