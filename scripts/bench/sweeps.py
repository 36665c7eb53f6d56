"""Row 11: searches. A `tracker.sweep`'s wall time against its trials tracked one by one (11a), and the epochs
retrained under one seeded SIGKILL schedule by `tracker.sweep` (11b), stock KerasTuner (11c) and stock Optuna (11d).

11a times two child processes per round, each on a fresh database: one runs ``tracker.sweep`` over a 12-trial grid,
the other trains the same trials (same params, seeds and order) one after another in one process, each inside
``tracker.track("bench-<n>", config=params)``. Each side gets a process of its own, as rows 5-7 and 10 do, so that
neither inherits the other's warmed-up TensorFlow, caches or open SQLite files; both get the same warm-up before
the clock starts: every module either side imports, the data, and one untracked fit (TensorFlow's first).

11b-11d share one kill schedule: K distinct ``(trial, epoch)`` points drawn from a seed, each inside an epoch >= 1
(the trial has trained before it dies), reached the first time any attempt of that trial gets there. Each trial's
kills go up in epoch, so every one is reached whether the trial resumes or restarts. How each search is killed:

- 11b, ``tracker.sweep`` in 2 workers (this module run as children): SIGKILL as the worker starts a seeded random
  batch of epoch E, as tests/test_sweep.py kills its workers at random instants mid-trial; the killed worker is
  started again, the same command, until the search is done;
- 11c, stock KerasTuner (``overwrite=False`` reload), through ``scripts/tuner_bench.py``: SIGKILL as epoch E ends
  (its kill point, before tracker would commit that epoch), then the search started again until it completes;
- 11d, stock Optuna (RDB storage with heartbeat, ``RetryFailedTrialCallback``), through ``scripts/optuna_bench.py``:
  SIGKILL as epoch E begins, and the study started again after the heartbeat's grace period.

Epochs trained are counted as epochs begun, over every launch: an epoch a kill cut short counts as one. For 11b
that is every epoch row committed to the database, superseded ones too, plus the epochs begun and lost at kills
(the workers print as each epoch begins); for 11c every epoch that ended (nothing is begun and lost there); for
11d every epoch that ended plus the one each kill cut off at its start. Retrained = trained - trials x epochs, the
epochs a clean search needs. tracker's own KerasTuner and Optuna glue under the same kills are sub-rows.

Run as ``python -m scripts.bench.sweeps MODE FOLDER --trials N --epochs E --samples S``, this module is 11a's and
11b's child: MODE ``sweep`` or ``sequential`` prints one JSON line (11a); ``worker`` is a sweep worker that prints
``EPOCH <trial> <epoch>`` as each epoch begins and ``BATCH <trial> <epoch> <batch>`` as each batch does (11b).
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import json
import queue
import random
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from scripts.bench.harness import Plan, Table, add_ratio, bench_env, folder, interleaved, median, progress

#: 11a's grid, 12 trials: the first key varies slowest (``itertools.product`` order, as `tracker.sweep` documents).
GRID = {"units": [16, 32, 64], "lr": [1e-3, 3e-3], "dropout": [0.0, 0.25]}
#: --quick's grid: 2 trials.
QUICK_GRID = {"units": [16, 32], "lr": [1e-3]}
SWEEP = "bench"
#: Seeds the kill schedule (which trials and epochs, and the instants inside them).
KILL_SEED = 19


@dataclass(frozen=True)
class SweepsPlan:
    """Row 11's sizes, derived from the `Plan`."""

    trials: int  # 12 (GRID), or 2 (QUICK_GRID) with --quick
    epochs: int  # per trial
    samples: int  # sized so that one trial of the CNN takes ~2-5 s on 2 cores
    rounds: int  # 11a: (sweep, sequential) pairs of child processes
    kills: int  # 11b-11d: SIGKILLs per search
    tracker_glue: bool  # 11c, 11d: also tracker's own KerasTuner and Optuna glue under the same kills



def sweeps_plan(plan: Plan) -> SweepsPlan:
    if plan.quick:
        return SweepsPlan(trials=2, epochs=2, samples=128, rounds=plan.reps, kills=1, tracker_glue=False)
    return SweepsPlan(trials=12, epochs=4, samples=1_024, rounds=max(3, (plan.reps + 1) // 2), kills=4, tracker_glue=True)



def grid_of(trials: int) -> dict[str, list]:
    return {12: GRID, 2: QUICK_GRID}[trials]



def batches_per_epoch(samples: int) -> int:
    """Training batches per epoch of `objective_for`'s fit: batch 64, a fifth held out."""
    return -(-(samples - int(samples * 0.2)) // 64)


# -- the children: one trial's training, a sweep, the same trials one after another ------------


def objective_for(samples: int, epochs: int, announce: bool = False):
    """The trial function both sides of 11a train, and 11b's workers: a small CNN on the demo's blobs.

    ~14k parameters; each trial seeded by its number, so that both sides train exactly the same trials.
    ``announce`` prints ``EPOCH <trial> <epoch>`` to stdout as each epoch begins, before any of its work, and
    ``BATCH <trial> <epoch> <batch>`` as each training batch begins.
    """
    import keras

    from scripts.bench.workloads import load_demo

    x, y = load_demo().blobs(samples, seed=1)

    def build(units: int, lr: float, dropout: float = 0.0) -> keras.Model:
        model = keras.Sequential([
            keras.Input((28, 28, 1)),
            keras.layers.Conv2D(8, 3, activation="relu"),
            keras.layers.MaxPooling2D(),
            keras.layers.Conv2D(16, 3, activation="relu"),
            keras.layers.MaxPooling2D(),
            keras.layers.Flatten(),
            keras.layers.Dropout(dropout),
            keras.layers.Dense(units, activation="relu"),
            keras.layers.Dense(4),
        ])
        model.compile(keras.optimizers.Adam(lr), keras.losses.SparseCategoricalCrossentropy(from_logits=True), metrics=["accuracy"])
        return model

    def train(number: int, params: dict[str, Any], fit_epochs: int = epochs) -> None:
        keras.backend.clear_session()
        keras.utils.set_random_seed(100 + number)
        callbacks = []
        if announce:
            at = {"epoch": 0}

            def begin(epoch: int, logs: dict | None = None) -> None:
                at["epoch"] = epoch
                print(f"EPOCH {number} {epoch}", flush=True)

            def batch(step: int, logs: dict | None = None) -> None:
                print(f"BATCH {number} {at['epoch']} {step}", flush=True)

            callbacks.append(keras.callbacks.LambdaCallback(on_epoch_begin=begin, on_train_batch_begin=batch))
        build(**params).fit(x, y, epochs=fit_epochs, batch_size=64, validation_split=0.2, verbose=0, callbacks=callbacks)

    return train



def child(argv: list[str]) -> None:
    """11a's and 11b's child process (see the module docstring)."""
    parser = argparse.ArgumentParser(prog="python -m scripts.bench.sweeps")
    parser.add_argument("mode", choices=["sweep", "sequential", "worker"])
    parser.add_argument("folder", type=Path)
    parser.add_argument("--trials", type=int, required=True)
    parser.add_argument("--epochs", type=int, required=True)
    parser.add_argument("--samples", type=int, required=True)
    args = parser.parse_args(argv)

    import tracker
    import tracker.keras  # noqa: F401 - every module either side uses, imported before the clock starts on both
    import tracker.search.sweep  # noqa: F401
    from tracker.search import space

    grid = grid_of(args.trials)
    where = {"db": args.folder / "tracker.db", "checkpoint_dir": args.folder / "ckpt"}
    train = objective_for(args.samples, args.epochs, announce=args.mode == "worker")
    if args.mode == "worker":
        tracker.sweep(SWEEP, lambda trial: train(trial.number, trial.params), grid=grid, **where)
        return
    train(0, space.plan(grid=grid).params[0], fit_epochs=1)  # warm-up, both sides alike: TensorFlow's first fit
    start = time.perf_counter()
    if args.mode == "sweep":
        tracker.sweep(SWEEP, lambda trial: train(trial.number, trial.params), grid=grid, **where)
    else:
        for number, params in enumerate(space.plan(grid=grid).params):
            with tracker.track(f"{SWEEP}-{number}", config=params, **where):
                train(number, params)
    wall = time.perf_counter() - start
    runs = tracker.runs(where["db"])
    done = sorted(r.name for r in runs if r.status == "completed" and r.last_epoch == args.epochs - 1)
    print(json.dumps({"wall": wall, "completed": len(done), "runs": len(runs)}))


# -- 11a: wall time ----------------------------------------------------------------------------


def child_argv(mode: str, d: Path, sp: SweepsPlan) -> list[str]:
    return [sys.executable, "-m", "scripts.bench.sweeps", mode, str(d), "--trials", str(sp.trials), "--epochs", str(sp.epochs),
            "--samples", str(sp.samples)]



def wall_case(mode: str, work: Path, sp: SweepsPlan):
    """A case that runs one 11a child on a fresh folder and returns the wall time it measured."""
    fresh = iter(range(10**6))

    def case() -> list[float]:
        with folder(work, f"{mode}-{next(fresh)}") as d:
            proc = subprocess.run(child_argv(mode, d, sp), env=bench_env(), capture_output=True, text=True)
        if proc.returncode != 0:
            raise RuntimeError(f"row 11a {mode} child exited {proc.returncode}: {proc.stderr.strip()[-2000:]}")
        answer = json.loads(proc.stdout.strip().splitlines()[-1])
        if (answer["completed"], answer["runs"]) != (sp.trials, sp.trials):
            raise RuntimeError(f"row 11a {mode} child: {answer['completed']} of {answer['runs']} runs completed, expected {sp.trials}")
        return [answer["wall"]]

    return case



def row_sweep_wall(table: Table, sp: SweepsPlan, work: Path) -> None:
    progress(f"row 11a: {sp.rounds} x (tracker.sweep, the same trials tracked one after another) child processes, "
             f"{sp.trials} trials x {sp.epochs} epochs")
    samples = interleaved({"sweep": wall_case("sweep", work, sp), "sequential": wall_case("sequential", work, sp)}, sp.rounds, warmup=0)
    pairs = [a / b for a, b in zip(samples["sweep"], samples["sequential"])]
    extra = (median(samples["sweep"]) - median(samples["sequential"])) / sp.trials
    add_ratio(table, "11a", f"{sp.trials}-trial tracker.sweep / the trials tracked one by one", samples, "sweep", "sequential",
              target="<= 1.05x", note=f"rounds median {median(pairs):.2f}x, {min(pairs):.2f}-{max(pairs):.2f}x; {sp.epochs} epochs, "
              f"{median(samples['sequential']) / sp.trials:.1f} s/trial; {extra * 1e3:+.0f} ms/trial; each a fresh process and database")


# -- the kill schedule -------------------------------------------------------------------------


@dataclass(frozen=True)
class Kill:
    """SIGKILL as trial ``trial`` starts batch ``batch`` of epoch ``epoch`` (11b; 11c and 11d kill at the epoch's edge)."""

    trial: int
    epoch: int
    batch: int



def kill_schedule(trials: int, epochs: int, batches: int, kills: int, seed: int = KILL_SEED) -> list[Kill]:
    """``kills`` distinct (trial, epoch) points with epoch >= 1, in that order, each at a random batch; drawn from ``seed``."""
    rng = random.Random(seed)
    points = sorted(rng.sample([(t, e) for t in range(trials) for e in range(1, epochs)], kills))
    return [Kill(t, e, rng.randrange(batches)) for t, e in points]



@dataclass
class Retrained:
    """What one search under the kill schedule trained."""

    trained: int  # epochs begun, over every launch
    needed: int  # trials x epochs
    kills: int  # that landed
    launches: int
    seconds: float
    detail: str = ""

    @property
    def retrained(self) -> int:
        return self.trained - self.needed

    @property
    def per_kill(self) -> float:
        return self.retrained / self.kills if self.kills else float("nan")


# -- 11b: tracker.sweep in 2 workers, killed ---------------------------------------------------


@dataclass
class _Killer:
    """11b's parent: runs 2 workers, SIGKILLs them on the schedule, starts them again, counts the epochs begun."""

    sp: SweepsPlan
    d: Path
    lines: queue.Queue = field(default_factory=queue.Queue)
    begun: Counter = field(default_factory=Counter)
    launches: int = 0
    landed: int = 0
    workers: dict[int, tuple[subprocess.Popen, threading.Thread]] = field(default_factory=dict)

    def start(self) -> int:
        """A worker, by its launch number; a thread queues its announcements. Its stderr goes to a file (a full pipe would stall it)."""
        self.launches += 1
        launch = self.launches
        with open(self.d / f"worker-{launch}.stderr", "w") as stderr:
            proc = subprocess.Popen(child_argv("worker", self.d, self.sp), env=bench_env(), stdout=subprocess.PIPE, stderr=stderr, text=True)

        def read() -> None:
            for line in proc.stdout:
                self.lines.put((launch, line))

        reader = threading.Thread(target=read, daemon=True)
        reader.start()
        self.workers[launch] = (proc, reader)
        return launch

    def run(self, schedule: list[Kill]) -> None:
        """Until both workers have returned, each kill firing the first time its trial gets to its batch."""
        live = {self.start(), self.start()}
        pending = list(schedule)
        while True:
            try:
                launch, line = self.lines.get(timeout=0.2)
            except queue.Empty:
                if all(proc.poll() is not None and not reader.is_alive() for proc, reader in self.workers.values()):
                    break
                continue
            what, *numbers = line.split()
            if what == "EPOCH":
                self.begun[tuple(int(n) for n in numbers)] += 1
                continue
            trial, epoch, batch = (int(n) for n in numbers)
            due = next((k for k in pending if k.trial == trial), None)  # each trial's kills in epoch order
            if launch not in live or due is None or (due.epoch, due.batch) != (epoch, batch):
                continue  # (a line a killed worker wrote just before it died kills nothing)
            pending.remove(due)
            proc, _ = self.workers[launch]
            proc.send_signal(signal.SIGKILL)
            proc.wait()
            self.landed += 1
            live.remove(launch)
            live.add(self.start())  # the same command again
        failed = [n for n in live if self.workers[n][0].returncode != 0]
        if failed:
            raise RuntimeError(f"row 11b: worker {failed[0]} exited {self.workers[failed[0]][0].returncode}: "
                               f"{(self.d / f'worker-{failed[0]}.stderr').read_text().strip()[-2000:]}")
        if pending:
            raise RuntimeError(f"row 11b: kills {pending} were never reached")



def committed_epochs(db: Path) -> tuple[int, int, int]:
    """Epoch rows committed (superseded ones included), of which superseded, and attempts that resumed past epoch 0."""
    con = sqlite3.connect(db)
    try:
        rows, superseded = con.execute("SELECT count(*), coalesce(sum(superseded), 0) FROM epochs").fetchone()
        resumed = con.execute("SELECT count(*) FROM attempts WHERE initial_epoch > 0").fetchone()[0]
        return rows, superseded, resumed
    finally:
        con.close()



def sweep_under_kills(sp: SweepsPlan, schedule: list[Kill], work: Path) -> Retrained:
    import tracker

    with folder(work, "sweep-killed") as d:
        killer = _Killer(sp, d)
        start = time.monotonic()
        killer.run(schedule)
        seconds = time.monotonic() - start
        trials = tracker.sweep_trials(SWEEP, d / "tracker.db")
        if len(trials) != sp.trials or any(t.status != "completed" or t.last_epoch != sp.epochs - 1 for t in trials):
            raise RuntimeError(f"row 11b: the killed sweep did not complete every trial: {[(t.name, t.status, t.last_epoch) for t in trials]}")
        rows, superseded, resumed = committed_epochs(d / "tracker.db")
    trained = sum(killer.begun.values())
    if trained < rows:
        raise RuntimeError(f"row 11b: {rows} epoch rows committed but only {trained} epochs announced")
    restarts = sum(n - 1 for (_, epoch), n in killer.begun.items() if epoch == 0 and n > 1)
    return Retrained(trained, sp.trials * sp.epochs, killer.landed, killer.launches, seconds,
                     f"{rows} epoch rows committed ({superseded} superseded) + {trained - rows} begun and lost at kills; "
                     f"{resumed} attempts resumed past epoch 0, {restarts} trials restarted at epoch 0")


# -- 11c, 11d: stock KerasTuner and Optuna, through their benchmarks ----------------------------


def bench_script(name: str):
    """``scripts/<name>.py`` if this checkout has it (the KerasTuner and Optuna glue bring their own), else None."""
    if importlib.util.find_spec(f"scripts.{name}") is None:
        return None
    return importlib.import_module(f"scripts.{name}")



def keras_tuner_under_kills(tuner_bench, sp: SweepsPlan, schedule: list[Kill], work: Path, *, stock: bool) -> Retrained:
    """`scripts.tuner_bench.search`: killed as epoch E ends (nothing is begun and lost, so begun = ended)."""
    width = len(str(sp.trials))  # KerasTuner pads its trial ids
    kills = [(f"{k.trial:0{width}d}", k.epoch) for k in schedule]
    with folder(work, f"kt-{'stock' if stock else 'tracker'}") as d:
        out = tuner_bench.search(d / "search", kills, stock=stock, epochs=sp.epochs, max_trials=sp.trials)
    return Retrained(sum(out.trained.values()), sp.trials * sp.epochs, len(kills), out.launches, out.seconds,
                     f"{out.restarted()} trials restarted at epoch 0")



def optuna_under_kills(optuna_bench, sp: SweepsPlan, schedule: list[Kill], work: Path, *, variant: str) -> Retrained:
    """`scripts.optuna_bench.search`: killed as epoch E begins, so each kill also lost one begun epoch."""
    with folder(work, f"optuna-{variant}") as d:
        out = optuna_bench.search(variant, d / "search", list(range(2, 2 + sp.trials)), sp.epochs, [(k.trial, k.epoch) for k in schedule])
    return Retrained(out.trained + len(out.kills), out.needed, len(out.kills), out.launches, out.wall_s)



def add_retrained(table: Table, key: str, what: str, ours: Retrained, base: Retrained, note: str) -> None:
    """A row of retrained epochs per kill, ``ours`` over ``base``; ``note`` says how they were killed."""
    ratio = ours.per_kill / base.per_kill if base.per_kill else None
    table.add(key, what, f"{ours.per_kill:.2f} ep", f"{base.per_kill:.2f} ep", ratio, "", note)



def figures(search: Retrained) -> str:
    return f"{search.retrained} retrained, {search.trained} trained for {search.needed}, {search.launches} launches, {search.seconds:.0f} s"



def row_retrained(table: Table, sp: SweepsPlan, work: Path) -> None:
    schedule = kill_schedule(sp.trials, sp.epochs, batches_per_epoch(sp.samples), sp.kills)
    where = ", ".join(f"{k.trial}:{k.epoch}" for k in schedule)
    progress(f"row 11b: tracker.sweep in 2 workers, {sp.trials} trials x {sp.epochs} epochs, SIGKILL in trial:epoch {where}")
    ours = sweep_under_kills(sp, schedule, work)
    table.add("11b", f"epochs trained, {ours.kills} SIGKILLs: tracker.sweep, 2 workers / clean", f"{ours.trained} ep",
              f"{ours.needed} ep", ours.trained / ours.needed, "",
              f"{ours.retrained} retrained = {ours.per_kill:.2f}/kill (trial:epoch {where}); {ours.detail}; "
              f"{ours.launches} launches, {ours.seconds:.0f} s")

    tuner_bench = bench_script("tuner_bench")
    what = "retrained epochs per kill: tracker.sweep / stock KerasTuner"
    if tuner_bench is None or importlib.util.find_spec("keras_tuner") is None:
        table.na("11c", what, "scripts/tuner_bench.py or keras-tuner is missing")
    else:
        progress(f"row 11c: stock KerasTuner, the same {len(schedule)} kills, through scripts/tuner_bench.py")
        stock = keras_tuner_under_kills(tuner_bench, sp, schedule, work, stock=True)
        add_retrained(table, "11c", what, ours, stock, f"stock KT (overwrite=False reload), killed as epoch E ends: {figures(stock)}")
        if sp.tracker_glue:
            glue = keras_tuner_under_kills(tuner_bench, sp, schedule, work, stock=False)
            add_retrained(table, "11c", "  same kills: tracker.track_tuner / stock KerasTuner", glue, stock,
                          f"track_tuner: {figures(glue)}; {glue.detail}")

    optuna_bench = bench_script("optuna_bench")
    what = "retrained epochs per kill: tracker.sweep / stock Optuna"
    if optuna_bench is None or importlib.util.find_spec("optuna") is None:
        table.na("11d", what, "scripts/optuna_bench.py or optuna is missing")
    else:
        progress(f"row 11d: stock Optuna, the same {len(schedule)} kills, through scripts/optuna_bench.py")
        stock = optuna_under_kills(optuna_bench, sp, schedule, work, variant="stock")
        add_retrained(table, "11d", what, ours, stock,
                      f"stock Optuna (RDB heartbeat, RetryFailedTrialCallback), killed as epoch E begins: {figures(stock)}")
        if sp.tracker_glue:
            glue = optuna_under_kills(optuna_bench, sp, schedule, work, variant="tracker")
            add_retrained(table, "11d", "  same kills: tracker.track_optuna / stock Optuna", glue, stock,
                          f"track_optuna: {figures(glue)}")



def row_sweeps(table: Table, plan: Plan, work: Path) -> None:
    sp = sweeps_plan(plan)
    row_sweep_wall(table, sp, work)
    row_retrained(table, sp, work)


if __name__ == "__main__":
    child(sys.argv[1:])
