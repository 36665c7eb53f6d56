"""Benchmark tracker against baselines measured in the same run: every figure is a ratio of medians.

Each row times tracker and its baseline interleaved (A, B, A, B, ...) so that the
noise of a shared machine falls on both alike, and reports the medians in ms next
to their ratio and the target the row is held to. Nothing here asserts a timing.

    python scripts/bench.py            # the full table, about 11 minutes on 2 cores, plus ~12 for row 9
    python scripts/bench.py --quick    # every row at toy sizes, a smoke test (under a minute; TensorFlow's import is most of it)
    python scripts/bench.py --reps 9   # more repetitions, for steadier medians
    python scripts/bench.py --rows 3c  # one row: the 5.8M model's checkpoint at every epoch (~5 minutes)
    python scripts/bench.py --rows 10  # rows 2 and 3 again under KERAS_BACKEND=jax and torch, each in a child process
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import importlib.metadata
import importlib.util
import json
import os
import platform
import re
import resource
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # for tests.serving, however this script is started
DEMO_TRAIN = ROOT / "scripts" / "demo_train.py"
LOGS = {"loss": 0.5, "accuracy": 0.8, "val_loss": 0.6, "val_accuracy": 0.75}
TABLE_HEADER = f"{'row':<4} {'measurement':<54} {'tracker':>11} {'baseline':>11} {'ratio':>8}  {'target':<9} note"


# -- plan ----------------------------------------------------------------------


@dataclass(frozen=True)
class Plan:
    """How many repetitions and how much data each row uses."""

    quick: bool
    reps: int
    commit_reps: int  # row 1: one-row transactions, ~ms each
    hook_reps_cnn: int  # row 2, demo CNN: ~10 ms per end of epoch
    hook_reps_big: int  # row 2, 5M model: ~0.1-1 s per end of epoch
    fit_rounds: int  # row 3: (plain, tracked) fit pairs per model
    fit_epochs: int  # row 3: epochs per fit; the first is skipped (tracing)
    cnn_samples: int
    big_samples: int  # sized so that one 5M-model epoch takes ~1-2 s on 2 cores
    wide_samples: int  # row 3c: sized so that one 5.8M-model epoch takes ~3 s on 2 cores
    curve_epochs: int  # row 4
    curve_reps: int
    process_reps: int  # rows 5 and 6: whole processes
    rss_reps: int  # row 7: whole training processes
    rss_samples: int
    serve_runs: int  # row 8a: runs in the database
    serve_epochs: int  # row 8a: epochs per run (x SERVE_METRICS metrics)
    serve_points: int  # row 8b: points of the one long curve
    serve_reps: int


def make_plan(quick: bool, reps: int | None) -> Plan:
    if quick:
        r = reps or 1
        return Plan(quick, r, commit_reps=20 * r, hook_reps_cnn=2 * r, hook_reps_big=2 * r, fit_rounds=r,
                    fit_epochs=2, cnn_samples=640, big_samples=256, wide_samples=256, curve_epochs=2_000, curve_reps=2 * r,
                    process_reps=r, rss_reps=r, rss_samples=128, serve_runs=20, serve_epochs=100, serve_points=20_000,
                    serve_reps=3 * r)
    r = reps or 5
    return Plan(quick, r, commit_reps=40 * r, hook_reps_cnn=6 * r, hook_reps_big=2 * r + 1, fit_rounds=r,
                fit_epochs=6, cnn_samples=3_000, big_samples=1_024, wide_samples=8_000, curve_epochs=100_000, curve_reps=2 * r,
                process_reps=r, rss_reps=max(1, r // 2), rss_samples=1_024, serve_runs=500, serve_epochs=2_000,
                serve_points=1_000_000, serve_reps=2 * r)


# -- timing helpers ------------------------------------------------------------


Case = Callable[[], list[float]]


def timed(fn: Callable[[], object]) -> Case:
    """A case that times one whole call of ``fn``."""

    def case() -> list[float]:
        start = time.perf_counter()
        fn()
        return [time.perf_counter() - start]

    return case


def interleaved(cases: dict[str, Case], rounds: int, *, warmup: int = 1) -> dict[str, list[float]]:
    """Run every case once per round, rotating the order each round, and pool each case's samples (seconds).

    Rotating spreads a noisy neighbour's bursts, and any drift, over all cases alike.
    """
    names = list(cases)
    for _ in range(warmup):
        for name in names:
            cases[name]()
    samples: dict[str, list[float]] = {name: [] for name in names}
    for i in range(rounds):
        k = i % len(names)
        for name in names[k:] + names[:k]:
            samples[name].extend(cases[name]())
    return samples


def median(samples: list[float]) -> float:
    return statistics.median(samples)


def run_process(argv: list[str], *, cwd: Path | None = None) -> subprocess.CompletedProcess:
    """Run a child to completion; raise with its stderr if it fails, so a broken row is not timed."""
    proc = subprocess.run(argv, cwd=cwd, env=child_env(), capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} exited {proc.returncode}: {proc.stderr.strip()[-2000:]}")
    return proc


def child_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRACKER_")}
    env["TF_CPP_MIN_LOG_LEVEL"] = "2"
    return env


def python_c(code: str) -> list[str]:
    return [sys.executable, "-c", code]


def process_case(argv: list[str], *, cwd: Path | None = None) -> Case:
    """A case that times ``argv`` as a whole process."""
    return timed(lambda: run_process(argv, cwd=cwd))


def progress(msg: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


# -- the table -----------------------------------------------------------------


@dataclass
class Row:
    key: str
    what: str
    value: str
    baseline: str
    ratio: float | None
    target: str = ""
    note: str = ""


@dataclass
class Table:
    rows: list[Row] = field(default_factory=list)

    def add(self, *args: object, **kwargs: object) -> None:
        self.rows.append(Row(*args, **kwargs))

    def na(self, key: str, what: str, reason: str, target: str = "") -> None:
        self.rows.append(Row(key, what, "n/a", "n/a", None, target, reason))

    def print(self) -> None:
        print(TABLE_HEADER)
        print("-" * len(TABLE_HEADER))
        for r in self.rows:
            ratio = f"{r.ratio:.2f}x" if r.ratio is not None else ""
            print(f"{r.key:<4} {r.what:<54} {r.value:>11} {r.baseline:>11} {ratio:>8}  {r.target:<9} {r.note}".rstrip())


def ms(seconds: float) -> str:
    return f"{seconds * 1e3:.2f} ms" if seconds < 0.1 else f"{seconds * 1e3:.0f} ms"


def mb(n_bytes: float) -> str:
    return f"{n_bytes / 2**20:.0f} MB"


def add_ratio(table: Table, key: str, what: str, samples: dict[str, list[float]], ours: str, base: str,
              *, target: str = "", note: str = "") -> None:
    a, b = median(samples[ours]), median(samples[base])
    n = f"n={len(samples[ours])}/{len(samples[base])}"
    table.add(key, what, ms(a), ms(b), a / b, target, f"{n}; {note}" if note else n)


# -- models and data -------------------------------------------------------------


@functools.cache
def load_demo():
    """scripts/demo_train.py as a module: its ``build_model`` and ``blobs``."""
    spec = importlib.util.spec_from_file_location("demo_train", DEMO_TRAIN)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def build_big_model(width: int = 1024):
    """~5.3M parameters: a 3072-input MLP with three 1024-wide hidden layers, Adam (~5.8M at ``width=1100``)."""
    import keras

    model = keras.Sequential([
        keras.Input((3072,)),
        keras.layers.Dense(width, activation="relu"),
        keras.layers.Dense(width, activation="relu"),
        keras.layers.Dense(width, activation="relu"),
        keras.layers.Dense(10),
    ])
    model.compile(optimizer=keras.optimizers.Adam(1e-3),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True), metrics=["accuracy"])
    return model


def big_data(n: int):
    import numpy as np

    rng = np.random.default_rng(0)
    return rng.normal(size=(n, 3072)).astype("float32"), rng.integers(0, 10, n)


@contextmanager
def folder(parent: Path, name: str) -> Iterator[Path]:
    """A fresh subfolder, removed afterwards: checkpoints of the 5M model are ~60 MB each."""
    path = parent / name
    path.mkdir()
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


# -- row 1: one epoch's commit ---------------------------------------------------------


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


def mlflow_or_none():
    """MLflow, if the bench extra is installed; its rows read n/a otherwise."""
    if importlib.util.find_spec("mlflow") is None:
        return None
    import logging

    import mlflow

    logging.getLogger("mlflow").setLevel(logging.WARNING)  # its store creation logs every migration
    return mlflow


# -- row 2: end of epoch on the training thread ----------------------------------------------


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


# -- row 3: epoch wall time in fit --------------------------------------------------------------


def row_fit(table: Table, plan: Plan, work: Path) -> None:
    demo = load_demo()
    cnn_x, cnn_y = demo.blobs(plan.cnn_samples, seed=1)
    big_x, big_y = big_data(plan.big_samples)
    cases = [("3a", "demo CNN", demo.build_model, cnn_x, cnn_y), ("3b", "5M MLP", build_big_model, big_x, big_y)]
    for key, label, build, x, y in cases:
        progress(f"row {key}: epoch wall time, {label}, {plan.fit_rounds} x (plain, tracked) fits of {plan.fit_epochs} epochs")
        with folder(work, f"fit-{key}") as d, end_of_epoch_costs() as costs:
            runs = iter(range(10**6))
            samples = interleaved(
                {"tracked": lambda: fit_epoch_times(build, x, y, plan.fit_epochs, d, next(runs)),
                 "plain": lambda: fit_epoch_times(build, x, y, plan.fit_epochs, None, 0)},
                plan.fit_rounds, warmup=0,
            )
        add_ratio(table, key, f"epoch wall time, {label}: tracked / plain fit", samples, "tracked", "plain",
                  target="<= 1.02x", note=f"{len(x)} samples, batch 64, val 0.2; epochs after the 1st")
        if key == "3b":  # the demo CNN's checkpoint is too small for these to say anything
            add_costs(table, key, costs, median(samples["plain"]))


def row_fit_checkpoint_cost(table: Table, plan: Plan, work: Path) -> None:
    """Row 3c: the issue's case, a 5.8M-parameter model with ~3 s epochs and a checkpoint (~70 MB) at every epoch.

    Besides the ratio, where tracker's time goes per epoch: on the training thread (the end-of-epoch
    hook: snapshot and hand-over, and any wait for the previous epoch's commit), and on the writer
    thread (its CPU: encode, CRC, hash, write, fsync, commit, retention), measured inside the tracked fits.
    """
    build = functools.partial(build_big_model, 1100)
    x, y = big_data(plan.wide_samples)
    progress(f"row 3c: epoch wall time, 5.8M MLP, {plan.fit_rounds} x (plain, tracked) fits of {plan.fit_epochs} epochs")
    with folder(work, "fit-3c") as d, end_of_epoch_costs() as costs:
        runs = iter(range(10**6))
        samples = interleaved(
            {"tracked": lambda: fit_epoch_times(build, x, y, plan.fit_epochs, d, next(runs)),
             "plain": lambda: fit_epoch_times(build, x, y, plan.fit_epochs, None, 0)},
            plan.fit_rounds, warmup=0,
        )
    add_ratio(table, "3c", "epoch wall time, 5.8M MLP, 3 s epochs: tracked / plain", samples, "tracked", "plain",
              target="<= 1.10x", note=f"{len(x)} samples, batch 64, val 0.2; a checkpoint every epoch; spread "
              f"{min(samples['tracked']):.2f}-{max(samples['tracked']):.2f} s / {min(samples['plain']):.2f}-{max(samples['plain']):.2f} s")
    add_costs(table, "3c", costs, median(samples["plain"]))


def add_costs(table: Table, key: str, costs: dict[str, list[float]], plain: float) -> None:
    """Sub-rows of ``key``: where tracker's time goes per epoch, each over a plain epoch's wall time.

    The writer's CPU over twice the plain epoch is about the least a checkpoint at every epoch can cost
    on 2 cores that training keeps busy: that CPU has to come from one of them.
    """
    for what, cost, note in [
        ("  training thread: on_epoch_end", "hook_wall", "wall: snapshot, hand-over, any wait for the writer"),
        ("  writer thread CPU per epoch", "writer_cpu", "encode, CRC, sha256, write, fsync, commit, retention"),
        ("  writer thread wall per epoch", "writer_wall", "overlaps the next epoch's training"),
    ]:
        v = median(costs[cost]) if costs[cost] else float("nan")
        table.add(key, f"{what} / plain epoch", ms(v), ms(plain), v / plain, "", f"n={len(costs[cost])}; {note}")


@contextmanager
def end_of_epoch_costs() -> Iterator[dict[str, list[float]]]:
    """Time tracker's end-of-epoch hook (training thread) and each epoch's commit (writer thread) while inside.

    Wraps the two methods for the benchmark's own fits only; the first epoch of each fit is dropped, as
    `EpochClock` drops it.
    """
    from tracker.keras import TrackerCallback
    from tracker.run import Run

    costs: dict[str, list[float]] = {"hook_wall": [], "writer_cpu": [], "writer_wall": []}
    hook, commit = TrackerCallback.on_epoch_end, Run.commit_epoch

    def timed_hook(self, epoch: int, logs: dict | None = None) -> None:
        start = time.perf_counter()
        hook(self, epoch, logs)
        if epoch > 0:
            costs["hook_wall"].append(time.perf_counter() - start)

    def timed_commit(self, epoch: int, *args: object, **kwargs: object) -> None:
        start, cpu = time.perf_counter(), time.thread_time()
        commit(self, epoch, *args, **kwargs)
        if epoch > 0:
            costs["writer_cpu"].append(time.thread_time() - cpu)
            costs["writer_wall"].append(time.perf_counter() - start)

    TrackerCallback.on_epoch_end, Run.commit_epoch = timed_hook, timed_commit
    try:
        yield costs
    finally:
        TrackerCallback.on_epoch_end, Run.commit_epoch = hook, commit


@functools.cache
def epoch_clock_class() -> type:
    """A Keras callback class, made on first use so that Keras is imported only by the rows that train."""
    import keras

    class EpochClock(keras.callbacks.Callback):
        """Marks each epoch's start and the end of training: the gaps include every end-of-epoch callback."""

        def __init__(self) -> None:
            super().__init__()
            self.marks: list[float] = []

        def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
            self.marks.append(time.perf_counter())

        def on_train_end(self, logs: dict | None = None) -> None:
            self.marks.append(time.perf_counter())

        def epoch_times(self) -> list[float]:
            gaps = [b - a for a, b in zip(self.marks, self.marks[1:])]
            return gaps[1:]  # the first epoch traces the graph

    return EpochClock


def fit_epoch_times(build: Callable, x, y, epochs: int, d: Path | None, i: int) -> list[float]:
    """One fresh model's fit; tracked through `tracker.track` when ``d`` is given. Returns its epoch times."""
    import keras

    import tracker

    keras.backend.clear_session()
    model, clock = build(), epoch_clock_class()()
    fit = lambda: model.fit(x, y, epochs=epochs, batch_size=64, validation_split=0.2, verbose=0, callbacks=[clock])  # noqa: E731
    if d is None:
        fit()
    else:
        with tracker.track(f"bench-fit-{i}", db=d / "tracker.db", checkpoint_dir=d / "ckpt"):
            fit()
        shutil.rmtree(d / "ckpt" / f"bench-fit-{i}", ignore_errors=True)
    return clock.epoch_times()


# -- row 9: checkpoints and metrics inside epochs ------------------------------------------------


@dataclass(frozen=True)
class StepsPlan:
    """Row 9's sizes, derived from the `Plan` (kept apart so that row 3's sizes can change on their own)."""

    rounds: int  # (plain, tracked...) fit rounds of the demo CNN
    cnn_epochs: int  # per fit; the first is skipped (tracing)
    cnn_samples: int
    every_steps: int  # 9a: ~13% of the demo CNN's 38 training batches
    log_every: tuple[int, ...]  # 9d, 9e
    big_rounds: int  # 9b: (plain, tracked) fit pairs of the 5M model, over a minute each
    big_epochs: int  # 9b: enough epochs that two `big_seconds` intervals pass
    big_samples: int
    big_seconds: float


def steps_plan(plan: Plan) -> StepsPlan:
    if plan.quick:
        return StepsPlan(plan.reps, cnn_epochs=2, cnn_samples=640, every_steps=2, log_every=(1, 50), big_rounds=plan.reps,
                         big_epochs=4, big_samples=256, big_seconds=0.5)
    return StepsPlan(max(3, plan.reps), cnn_epochs=6, cnn_samples=plan.cnn_samples, every_steps=5, log_every=(1, 50),
                     big_rounds=max(3, (plan.reps + 1) // 2), big_epochs=130, big_samples=plan.big_samples, big_seconds=30.0)


@dataclass
class FitCounts:
    """What one tracked fit left in its database (read with plain sqlite3)."""

    wall: float  # the whole fit, first epoch included
    epochs: int
    epoch_checkpoints: int
    step_checkpoints: int
    step_rows: int
    transactions: int  # commits that wrote epoch or step rows: distinct commit times

    @property
    def checkpoints(self) -> int:
        return self.epoch_checkpoints + self.step_checkpoints


@functools.cache
def second_epoch_class() -> type:
    """A Keras callback class that notes the wall and CPU clocks when the second epoch begins."""
    import keras

    class SecondEpoch(keras.callbacks.Callback):
        def __init__(self) -> None:
            super().__init__()
            self.begins: list[tuple[float, float]] = []

        def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
            self.begins.append((time.perf_counter(), time.process_time()))

    return SecondEpoch


@dataclass
class StepsSamples:
    """Per case, one sample per fit: its mean wall and CPU time per epoch after the first."""

    wall: dict[str, list[float]] = field(default_factory=dict)
    cpu: dict[str, list[float]] = field(default_factory=dict)
    counts: dict[str, list[FitCounts]] = field(default_factory=dict)

    def case(self, name: str, build: Callable, x, y, epochs: int, d: Path, options: dict | None) -> Case:
        """A case that runs one fit, plain when ``options`` is None, and keeps its samples and counts here."""
        runs = iter(range(10**6))
        for per in (self.wall, self.cpu, self.counts):
            per[name] = []

        def case() -> list[float]:
            wall, cpu, counts = steps_fit(build, x, y, epochs, d, None if options is None else f"bench-{name}-{next(runs)}", options or {})
            self.cpu[name].append(cpu)
            if counts is not None:
                self.counts[name].append(counts)
            return [wall]

        return case

    def run(self, cases: dict[str, Case], rounds: int) -> None:
        self.wall |= interleaved(cases, rounds, warmup=0)


def steps_fit(build: Callable, x, y, epochs: int, d: Path, name: str | None, options: dict) -> tuple[float, float, FitCounts | None]:
    """One fresh model's fit, plain when ``name`` is None, else inside ``tracker.track(name, **options)``.

    Returns the mean wall and CPU time (this process, all threads) per epoch after the first, which
    traces, and the tracked fit's counts. The window runs from the second epoch's start until fit
    (and the ``track`` block, which waits for the last commit) has returned: one mean per fit, not a
    median of epochs, since with `checkpoint_every_seconds` only a few epochs pay for a checkpoint.
    """
    import keras

    import tracker

    keras.backend.clear_session()
    model, clock = build(), second_epoch_class()()
    start = time.perf_counter()

    def fit() -> None:
        model.fit(x, y, epochs=epochs, batch_size=64, validation_split=0.2, verbose=0, callbacks=[clock])

    counts = None
    if name is None:
        fit()
    else:
        with tracker.track(name, db=d / "tracker.db", checkpoint_dir=d / "ckpt", **options):
            fit()
    end, end_cpu = time.perf_counter(), time.process_time()
    if name is not None:
        counts = read_counts(d / "tracker.db", name, end - start)
        shutil.rmtree(d / "ckpt" / name, ignore_errors=True)
    wall, cpu = clock.begins[1]
    return (end - wall) / (epochs - 1), (end_cpu - cpu) / (epochs - 1), counts


def read_counts(db: Path, name: str, wall: float) -> FitCounts:
    con = sqlite3.connect(db)
    try:
        (run_id,) = con.execute("SELECT id FROM runs WHERE name = ?", (name,)).fetchone()

        def one(sql: str) -> int:
            return con.execute(sql, {"run": run_id}).fetchone()[0]

        return FitCounts(
            wall=wall,
            epochs=one("SELECT count(*) FROM epochs WHERE run_id = :run"),
            epoch_checkpoints=one("SELECT count(*) FROM epochs WHERE run_id = :run AND checkpoint_sha256 IS NOT NULL"),
            step_checkpoints=one("SELECT count(*) FROM steps WHERE run_id = :run AND checkpoint_sha256 IS NOT NULL"),
            step_rows=one("SELECT count(*) FROM steps WHERE run_id = :run"),
            # Every commit stamps all the rows it writes with one time.
            transactions=one("SELECT count(DISTINCT committed_at) FROM (SELECT committed_at FROM epochs WHERE run_id = :run "
                             "UNION ALL SELECT committed_at FROM steps WHERE run_id = :run)"),
        )
    finally:
        con.close()


def add_fit_ratio(table: Table, key: str, what: str, samples: StepsSamples, ours: str, base: str,
                  *, target: str = "", note: str = "") -> None:
    """`add_ratio` of per-fit means, the spread of each round's own ratio (same round, same noise), and
    the same for CPU time, which a busy machine disturbs less."""
    def spread(per: dict[str, list[float]]) -> str:
        pairs = [a / b for a, b in zip(per[ours], per[base])]
        return f"median {median(pairs):.2f}x, {min(pairs):.2f}-{max(pairs):.2f}x"

    add_ratio(table, key, what, samples.wall, ours, base, target=target, note=f"rounds {spread(samples.wall)}; {note}")
    add_ratio(table, key, "  same, CPU time of the process (all threads)", samples.cpu, ours, base,
              note=f"rounds {spread(samples.cpu)}")


def per_fit(counts: list[FitCounts], what: str, unit: str = "") -> str:
    """The median of one count over the tracked fits, and its range when the fits differ."""
    values = [getattr(c, what) for c in counts]
    lo, mid, hi = min(values), median(values), max(values)
    return f"{mid:.0f}{unit}" if round(lo) == round(hi) else f"{mid:.0f}{unit} ({lo:.0f}-{hi:.0f})"


def row_steps(table: Table, plan: Plan, work: Path) -> None:
    sp = steps_plan(plan)
    demo = load_demo()
    x, y = demo.blobs(sp.cnn_samples, seed=1)
    variants = {"steps": {"checkpoint_every_steps": sp.every_steps}} | {f"log{n}": {"log_every_steps": n} for n in sp.log_every}
    progress(f"row 9a/9d/9e: demo CNN, {sp.rounds} x (plain, {', '.join(variants)}) fits of {sp.cnn_epochs} epochs")
    cnn = StepsSamples()
    with folder(work, "steps-cnn") as d:
        cnn.run({name: cnn.case(name, demo.build_model, x, y, sp.cnn_epochs, d, options)
                 for name, options in ({"plain": None} | variants).items()}, sp.rounds)

    bx, by = big_data(sp.big_samples)
    seconds = f"{sp.big_seconds:g}"
    progress(f"row 9b: 5M MLP, checkpoint_every_seconds={seconds}, {sp.big_rounds} x (plain, tracked) fits of {sp.big_epochs} epochs")
    big = StepsSamples()
    with folder(work, "steps-big") as d:
        big.run({name: big.case(name, build_big_model, bx, by, sp.big_epochs, d, options)
                 for name, options in {"seconds": {"checkpoint_every_seconds": sp.big_seconds}, "plain": None}.items()}, sp.big_rounds)

    c = cnn.counts["steps"]
    batches = -(-int(len(x) * 0.8) // 64)
    add_fit_ratio(table, "9a", f"checkpoint_every_steps={sp.every_steps}, demo CNN: tracked / plain fit", cnn, "steps", "plain",
                  note=f"{batches} batches/epoch, {sp.cnn_epochs} epochs; checkpoints/fit: {per_fit(c, 'step_checkpoints')} "
                  f"inside epochs, {per_fit(c, 'epoch_checkpoints')} at epoch ends")
    c = big.counts["seconds"]
    add_fit_ratio(table, "9b", f"checkpoint_every_seconds={seconds}, 5M MLP: tracked / plain fit", big, "seconds", "plain",
                  target="<= 1.02x", note=f"{sp.big_epochs} epochs, fit {per_fit(c, 'wall', ' s')}; checkpoints/fit: "
                  f"{per_fit(c, 'checkpoints')}, of which {per_fit(c, 'step_checkpoints')} inside epochs (and the last epoch's, always)")
    default = next((r for r in table.rows if r.key == "3c"), None)  # its first row; the others are its costs
    what = "default (checkpoint every epoch), 5.8M MLP, 3 s epochs: tracked / plain"
    if default is None:
        table.add("9c", what, "", "", None, "<= 1.10x", "is row 3c: run --rows 3c,9 to see both")
    else:
        table.add("9c", what, default.value, default.baseline, default.ratio, "<= 1.10x", f"= row 3c ({default.note})")
    for key, n in zip(("9d", "9e"), sp.log_every):
        c = cnn.counts[f"log{n}"]
        add_fit_ratio(table, key, f"log_every_steps={n}, demo CNN: tracked / plain fit", cnn, f"log{n}", "plain",
                      note=f"per fit: {per_fit(c, 'step_rows')} steps logged in {per_fit(c, 'transactions')} transactions "
                      f"({per_fit(c, 'epochs')} epochs, fit {per_fit(c, 'wall', ' s')})")


# -- row 4: curve query -------------------------------------------------------------------


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


# -- rows 5 and 6: whole processes ------------------------------------------------------------------


TENSORFLOW_MODULES = ("tensorflow", "keras", "tf_keras")


def imported_modules(importtime_stderr: str) -> set[str]:
    """Top-level module names from ``python -X importtime`` output."""
    names = set()
    for line in importtime_stderr.splitlines():
        if line.startswith("import time:") and "|" in line:
            names.add(line.rsplit("|", 1)[1].strip().split(".")[0])
    return names


def row_plot(table: Table, plan: Plan, work: Path) -> None:
    progress("row 5: python -m tracker.plot as a process")
    with folder(work, "plot") as d:
        db = d / "tracker.db"
        bulk_run(db, "bench-plot", 100)
        plot = [sys.executable, "-m", "tracker.plot", "bench-plot", "-o", str(d / "curves.png"), "--db", str(db)]
        samples = interleaved({
            "plot": process_case(plot),
            "pass": process_case(python_c("pass")),
            "pyplot": process_case(python_c("import matplotlib.pyplot")),
        }, plan.process_reps)
        importtime = run_process([sys.executable, "-X", "importtime", *plot[1:]]).stderr
    add_ratio(table, "5", "python -m tracker.plot, 100 epochs / python -c pass", samples, "plot", "pass",
              target="<= 1.5 s", note="whole process, PNG written")
    add_ratio(table, "5", "  same / python -c 'import matplotlib.pyplot'", samples, "plot", "pyplot")
    loaded = sorted(imported_modules(importtime) & set(TENSORFLOW_MODULES))
    table.add("5", "  tensorflow/keras imported by tracker.plot?", "yes" if loaded else "no", "", None, "no",
              f"python -X importtime: {', '.join(loaded) or 'none of ' + ', '.join(TENSORFLOW_MODULES)}")


def row_open(table: Table, plan: Plan, work: Path) -> None:
    progress("row 6: first open of a new database as a process")
    with folder(work, "open") as d:
        fresh = iter(range(10**6))

        def first_open() -> None:
            cwd = d / f"db{next(fresh)}"
            cwd.mkdir()
            run_process(python_c("from tracker.store import open_store; open_store('new.db')"), cwd=cwd)
            if not (cwd / "new.db").exists():
                raise RuntimeError("open_store did not create new.db")

        def mlflow_create() -> None:
            cwd = d / f"mlflow{next(fresh)}"
            cwd.mkdir()
            run_process(python_c("from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore; "
                                 "SqlAlchemyStore('sqlite:///mlflow.db', './artifacts')"), cwd=cwd)
            if not (cwd / "mlflow.db").exists():
                raise RuntimeError("MLflow did not create mlflow.db")

        cases = {
            "open": timed(first_open),
            "pass": process_case(python_c("pass")),
            "sa": process_case(python_c("import sqlalchemy, alembic")),
        }
        has_mlflow = importlib.util.find_spec("mlflow") is not None
        if has_mlflow:
            cases["mlflow"] = timed(mlflow_create)
        samples = interleaved(cases, plan.process_reps)
    add_ratio(table, "6", "open_store('new.db') in a new process / python -c pass", samples, "open", "pass",
              note="migrations run")
    add_ratio(table, "6", "  same / python -c 'import sqlalchemy, alembic'", samples, "open", "sa")
    what = "MLflow SqlAlchemyStore('sqlite:///new.db') process / tracker open_store process"
    if has_mlflow:
        add_ratio(table, "6b", what, samples, "mlflow", "open", target=">= 4x", note="both whole processes, migrations included")
    else:
        table.na("6b", what, "mlflow not installed (pip install -e '.[bench]')")


# -- row 7: peak memory ----------------------------------------------------------------------


def peak_rss_bytes() -> int:
    """This process's own peak RSS.

    VmHWM, not ``ru_maxrss``: Linux carries the parent's peak RSS across fork+exec
    into ``ru_maxrss``, so a child of a parent that holds TensorFlow would report
    the parent's size. ``ru_maxrss`` is the fallback where /proc is missing.
    """
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def child_rss(mode: str, samples: int, d: Path) -> None:
    """Child process of row 7: a 3-epoch fit of the 5M model, then one JSON line with its peak RSS."""
    import tracker

    x, y = big_data(samples)
    model = build_big_model()
    fit = lambda: model.fit(x, y, epochs=3, batch_size=64, validation_split=0.2, verbose=0)  # noqa: E731
    ckpt_bytes = None
    if mode == "tracked":
        with tracker.track("bench-rss", db=d / "tracker.db", checkpoint_dir=d / "ckpt"):
            fit()
        ckpt_bytes = max(p.stat().st_size for p in (d / "ckpt" / "bench-rss").glob("*.npz"))
    else:
        fit()
    print(json.dumps({"peak_rss": peak_rss_bytes(), "ru_maxrss": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
                      "ckpt_bytes": ckpt_bytes}))


def row_memory(table: Table, plan: Plan, work: Path) -> None:
    progress(f"row 7: peak RSS of a 3-epoch 5M fit, {plan.rss_reps} x (plain, tracked) processes side by side")
    results: dict[str, list[dict]] = {"tracked": [], "plain": []}
    for i in range(plan.rss_reps):
        # Side by side: a peak RSS does not depend on speed, and this halves the row's time.
        with folder(work, f"rss-{i}") as d:
            children = {mode: rss_child(mode, plan.rss_samples, d / mode) for mode in results}
            for mode, proc in children.items():
                out, err = proc.communicate()
                if proc.returncode != 0:
                    raise RuntimeError(f"row 7 {mode} child exited {proc.returncode}: {err.strip()[-2000:]}")
                results[mode].append(json.loads(out.strip().splitlines()[-1]))
    tracked = median([r["peak_rss"] for r in results["tracked"]])
    plain = median([r["peak_rss"] for r in results["plain"]])
    ckpt = results["tracked"][0]["ckpt_bytes"]
    table.add("7", "peak RSS, 3-epoch fit of the 5M MLP: tracked / plain", mb(tracked), mb(plain), tracked / plain, "",
              f"n={len(results['tracked'])}; {(tracked - plain) / 2**20:+.0f} MB; "
              f"one checkpoint file = {mb(ckpt)}; VmHWM of each child")


def rss_child(mode: str, samples: int, d: Path) -> subprocess.Popen:
    d.mkdir()
    argv = [sys.executable, str(Path(__file__).resolve()), "--child-rss", mode,
            "--child-samples", str(samples), "--child-dir", str(d)]
    return subprocess.Popen(argv, env=child_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


# -- main -------------------------------------------------------------------------------


# -- row 8: the web view (python -m tracker.serve) ---------------------------------------------------

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


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def git(*args: str) -> str:
    """Output of a git command in this checkout; raises OSError or CalledProcessError outside one."""
    return subprocess.run(["git", "-C", str(ROOT), *args], capture_output=True, text=True, check=True).stdout


def code_version() -> str:
    """The commit benchmarked, and the tracker files changed since it: the core may be mid-edit."""
    try:
        head, status = git("rev-parse", "--short", "HEAD"), git("status", "--porcelain", "--", "tracker", "migrations")
    except (OSError, subprocess.CalledProcessError):
        return "unknown (not a git checkout)"
    changed = [line[3:] for line in status.splitlines()]
    return head.strip() + (f" + uncommitted changes to {', '.join(changed)}" if changed else " (clean)")


def code_fingerprint() -> str | None:
    """The measured code itself (tracker/ and migrations/, committed or not), so a commit elsewhere does not count."""
    try:
        return "".join((git("rev-parse", "HEAD:tracker", "HEAD:migrations"), git("diff", "HEAD", "--", "tracker", "migrations"),
                        git("status", "--porcelain", "--", "tracker", "migrations")))
    except (OSError, subprocess.CalledProcessError):
        return None


def machine_report(plan: Plan) -> str:
    def version(dist: str) -> str:
        try:
            return importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            return "-"

    tf = version("tensorflow-cpu") if version("tensorflow-cpu") != "-" else version("tensorflow")
    lines = [
        f"tracker benchmark, {datetime.now().isoformat(timespec='seconds')}",
        f"machine: nproc={os.cpu_count()} (usable {len(os.sched_getaffinity(0))}), {cpu_model()}, {platform.platform()}",
        f"load average at start: {' '.join(f'{v:.2f}' for v in os.getloadavg())}",
        f"python {platform.python_version()}, tensorflow {tf}, keras {version('keras')}, numpy {version('numpy')}, "
        f"sqlalchemy {version('sqlalchemy')}, alembic {version('alembic')}, sqlite {sqlite3.sqlite_version}, "
        f"jax {version('jax')}, torch {version('torch')}",
        f"code: {code_version()}",
        f"plan: {'quick (toy sizes: a smoke test, not figures to quote)' if plan.quick else 'full'}, reps={plan.reps}; "
        "every ratio is tracker/baseline of medians, measured interleaved in this run",
    ]
    return "\n".join(lines)


# -- row 10: rows 2 and 3 under the JAX and torch backends ------------------------------------------------

#: Each backend's row key; its rows run in a child process with KERAS_BACKEND set, since Keras picks its backend once, at import.
BACKEND_ROWS = {"jax": "10a", "torch": "10b"}


def row_backends(table: Table, plan: Plan, work: Path) -> None:
    """Rows 2 and 3 (end of epoch on the training thread, epoch wall time tracked / plain) on JAX and torch.

    Each child measures tracker and its baselines interleaved, under its own backend, exactly as
    rows 2 and 3 do on TensorFlow; its ratios are to plain Keras on that same backend.
    """
    for backend, key in BACKEND_ROWS.items():
        title = f"{backend}: end of epoch, and epoch wall time tracked / plain"
        if importlib.util.find_spec(backend) is None:
            table.na(key, title, f"{backend} not installed (pip install -e '.[{backend}]')")
            continue
        progress(f"row {key}: rows 2 and 3 in a child process under KERAS_BACKEND={backend}")
        argv = [sys.executable, str(Path(__file__).resolve()), "--child-backend", backend, "--reps", str(plan.reps),
                *(["--quick"] if plan.quick else [])]
        proc = subprocess.run(argv, cwd=work, env={**child_env(), "KERAS_BACKEND": backend}, stdout=subprocess.PIPE, text=True)
        if proc.returncode != 0:
            raise RuntimeError(f"row {key} child under KERAS_BACKEND={backend} exited {proc.returncode}; see its stderr above")
        answer = json.loads(proc.stdout.strip().splitlines()[-1])
        table.add(key, f"KERAS_BACKEND={backend}: rows 2 and 3, in a child process", "", "", None, "",
                  f"keras {answer['keras']}, {backend} {answer['version']}; TensorFlow imported: {'yes' if answer['tensorflow'] else 'no'}")
        for row in answer["rows"]:
            table.add(key, f"  {row['what']}", row["value"], row["baseline"], row["ratio"], row["target"], row["note"])


def child_backend_rows(backend: str, plan: Plan) -> None:
    """Child process of row 10: rows 2 and 3 under ``backend``, printed as one JSON line."""
    import keras

    if keras.backend.backend() != backend:
        raise RuntimeError(f"row 10 child: Keras runs on {keras.backend.backend()!r}, not {backend!r}; set KERAS_BACKEND before starting it")
    table = Table()
    with tempfile.TemporaryDirectory(prefix=f"tracker-bench-{backend}-") as tmp:
        row_end_of_epoch(table, plan, Path(tmp))
        row_fit(table, plan, Path(tmp))
    print(json.dumps({"rows": [dataclasses.asdict(r) for r in table.rows], "tensorflow": "tensorflow" in sys.modules,
                      "keras": keras.__version__, "version": importlib.metadata.version(backend)}))


# In this order: the process rows first, while this process does not hold TensorFlow (less to fork, less noise).
ROWS: list[tuple[str, str, Callable[[Table, Plan, Path], None]]] = [
    ("1", "commit_epoch / raw INSERT txn", row_commit),
    ("4", "curves() / raw SELECT", row_curves),
    ("5", "python -m tracker.plot / python -c pass", row_plot),
    ("6", "open_store('new.db') / python -c pass", row_open),
    ("7", "peak RSS tracked / plain", row_memory),
    ("10", "rows 2 and 3 under JAX and torch (child processes)", row_backends),
    ("2", "end of epoch: tracker / ModelCheckpoint+CSV", row_end_of_epoch),
    ("3", "epoch wall time: tracked / plain fit", row_fit),
    ("3c", "epoch wall time, 5.8M MLP, 3 s epochs: tracked / plain", row_fit_checkpoint_cost),
    ("8", "web view: GET /api/runs, curves API / raw SELECT", row_serve),
    ("9", "inside epochs: step checkpoints, checkpoint_every_seconds, log_every_steps / plain fit", row_steps),
]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python scripts/bench.py", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="toy sizes and few repetitions: a smoke test")
    parser.add_argument("--reps", type=int, metavar="N",
                        help="repetitions per row (default 5, or 1 with --quick); fast rows take a multiple of N")
    parser.add_argument("--rows", metavar="KEYS", help="only these rows, comma-separated, e.g. --rows 4,8 (default: all)")
    parser.add_argument("--serve-runs", type=int, metavar="N", help="row 8a: runs in the database (default 500; 20 with --quick)")
    parser.add_argument("--serve-epochs", type=int, metavar="N", help="row 8a: epochs per run (default 2000; 100 with --quick)")
    parser.add_argument("--serve-points", type=int, metavar="N", help="row 8b: points of the long curve (default 1000000; 20000 with --quick)")
    parser.add_argument("--child-rss", choices=["plain", "tracked"], help=argparse.SUPPRESS)
    parser.add_argument("--child-samples", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--child-dir", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--child-backend", choices=sorted(BACKEND_ROWS), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child_rss:
        child_rss(args.child_rss, args.child_samples, args.child_dir)
        return 0
    if args.reps is not None and args.reps < 1:
        parser.error(f"--reps must be >= 1, got {args.reps}")
    plan = make_plan(args.quick, args.reps)
    if args.child_backend:
        child_backend_rows(args.child_backend, plan)
        return 0
    sizes = {"serve_runs": args.serve_runs, "serve_epochs": args.serve_epochs, "serve_points": args.serve_points}
    plan = dataclasses.replace(plan, **{k: v for k, v in sizes.items() if v is not None})
    chosen = ROWS if args.rows is None else [r for r in ROWS if r[0] in args.rows.split(",")]
    print(machine_report(plan), flush=True)
    code_at_start = code_fingerprint()
    started = time.perf_counter()
    table = Table()
    failed: list[str] = []
    with tempfile.TemporaryDirectory(prefix="tracker-bench-") as tmp:
        work = Path(tmp)
        for key, title, row in chosen:
            try:
                row(table, plan, work)
            except Exception as e:  # noqa: BLE001 - one broken row (the core may be mid-edit) must not hide the others
                traceback.print_exc()
                table.na(key, title, f"FAILED: {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}")
                failed.append(key)
    table.rows.sort(key=lambda r: int(re.match(r"\d*", r.key)[0] or 0))  # by row number; stable: keeps each row's sub-rows in order
    print()
    table.print()
    print(f"\nbenchmark took {time.perf_counter() - started:.0f} s; load average now "
          f"{' '.join(f'{v:.2f}' for v in os.getloadavg())}")
    if code_fingerprint() != code_at_start:
        print(f"warning: tracker's code changed during the run; now {code_version()}")
    if failed:
        print(f"error: row(s) {', '.join(failed)} failed; see the tracebacks on stderr", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
