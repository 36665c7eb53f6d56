"""Crash torture: train, SIGKILL at random and at every write boundary, resume, check every invariant.

Usage:
    python -m scripts.crash_torture --trials 200 [--jobs 2] [--seed 1] [--serve] [--backend jax]
    python -m scripts.crash_torture --mid-epoch --trials 200 [--jobs 2] [--seed 1] [--backup-and-restore-every K]

With ``--mid-epoch``, the runs checkpoint inside epochs and are stopped at the write boundaries of step
checkpoints, at random batches, and by SIGTERM; `scripts/torture_mid_epoch.py` says what it checks and
how it counts the batches retrained by tracker and by Keras's ``BackupAndRestore(save_freq=N)``.

Each trial trains a tiny model (tests/child_train.py, cycling through the exact-resume cases)
and kills it with SIGKILL: either while it is paused at a named write boundary of an epoch
(during the file write, between fsync and rename, between rename and commit, inside the
commit transaction, right after the commit, during retention cleanup), or at a random
instant inside a random epoch. It resumes with ``python -m tracker.resume``; about a third of
the trials kill the resume too. Two other kinds of trial (after the first six) change how the
run is resumed:

- ``moved``: after the first kill the checkpoint folder is moved elsewhere and the run resumed
  by re-running the script with the new folder; that resume is killed again.
- ``rewind``: a live writer is stopped before a commit, and ``python -m tracker.resume
  --from-epoch K --force`` is killed inside the rewind's transaction or right after it; the
  rewind is then repeated and the run completed from epoch K + 1.

After every kill and at the end it checks:

- SQLite ``PRAGMA integrity_check`` is ok;
- the newest committed epoch's file exists and its sha256 and size match;
- no committed epoch was lost;
- the final curve has each epoch exactly once;
- the final metrics equal an uninterrupted run's, bit for bit.

The random kills are replayed on the same case trained without tracker under Keras's
``BackupAndRestore`` with ``CSVLogger(append=True)`` as its history, for comparison.

With ``--backend jax`` or ``--backend torch``, every child trains under that Keras backend (the
case that needs TensorFlow, ``tfdata``, is replaced by ``shuffle``); the default is TensorFlow.

With ``--serve``, each trial's database is also served by ``python -m tracker.serve`` while it
trains, with an open page's traffic (an event stream, and the run list and curves fetched every
0.2 s); a server error or an unclean server exit counts as a violation too.
"""

from __future__ import annotations

import argparse
import csv
import json
import random
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import tracker
from tests.support import invariants
from tracker.faults import BOUNDARIES, REWIND_BOUNDARIES

ROOT = Path(__file__).resolve().parents[1]
CHILD = ROOT / "tests" / "child_train.py"
CASES = ("adam", "shuffle", "dropout", "tfdata", "callbacks", "functional", "subclassed", "schedule")
BACKENDS = ("tensorflow", "jax", "torch")
EPOCHS = 7
TIMEOUT = 300


@dataclass
class Kill:
    """Where a kill lands: a named boundary of an epoch, or ``delay`` seconds after ``after`` epochs are recorded."""

    boundary: str | None
    epoch: int
    delay: float = 0.0

    @property
    def label(self) -> str:
        return self.boundary or "random"


@dataclass
class Plan:
    """One trial: its case, how the run is resumed (``plain``, ``moved`` or ``rewind``), and its kills.

    For ``rewind``, the first kill is the live writer's stop (its boundary and epoch) and
    ``rewind_to`` the epoch the rewind goes back to.
    """

    case: str
    backend: str
    scenario: str
    kills: list[Kill]
    rewind_to: int | None = None

    def child(self, *extra: str) -> list[str]:
        """The training script's command for this plan's case and backend."""
        return train_command(self.case, self.backend, *extra)


def train_command(case: str, backend: str, *extra: str) -> list[str]:
    """Run ``r`` of the training script; the backend is on its command line, so `tracker resume` keeps it."""
    return [sys.executable, str(CHILD), "r", str(EPOCHS), "--case", case, "--backend", backend, *extra]


@dataclass
class Outcome:
    kills: list[str] = field(default_factory=list)
    violations: list[str] = field(default_factory=list)
    seconds: float = 0.0
    served: int = 0  # with --serve: requests the server answered during the trial
    # BackupAndRestore comparison (random-kill trials only)
    bar_ran: bool = False
    bar_identical: bool = False
    bar_disagreed: bool = False
    bar_bad_epochs: bool = False  # its history's epochs are not exactly the uninterrupted run's


def env(workdir: Path, pause_at: str | None = None, checkpoints: str = "ckpt") -> dict[str, str]:
    import os

    e = {k: v for k, v in os.environ.items() if not k.startswith("TRACKER_")}
    e.update(TRACKER_DB=str(workdir / "t.db"), TRACKER_CHECKPOINT_DIR=str(workdir / checkpoints), PYTHONPATH=str(ROOT))
    if pause_at:
        e["TRACKER_TEST_PAUSE_AT"] = pause_at
    return e


def run_exists(db: Path) -> bool:
    try:
        conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5)
        try:
            return conn.execute("SELECT count(*) FROM runs").fetchone()[0] > 0
        finally:
            conn.close()
    except sqlite3.Error:
        return False


def committed_epochs(db: Path) -> int:
    try:
        conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5)
        try:
            return conn.execute("SELECT count(*) FROM epochs WHERE NOT superseded").fetchone()[0]
        finally:
            conn.close()
    except sqlite3.Error:
        return 0


def csv_rows(path: Path) -> list[dict[str, str]]:
    if not path.exists():
        return []
    with path.open() as f:
        return list(csv.DictReader(f))


def run_until_killed(command: list[str], environment: dict[str, str], cwd: Path, kill: Kill, progress) -> bool:
    """Run ``command`` and SIGKILL it at ``kill``; False if it finished before the kill landed."""
    proc = subprocess.Popen(command, env=environment, cwd=cwd, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True)
    try:
        if kill.boundary:
            for line in proc.stderr:
                if line.startswith("TRACKER-PAUSED"):
                    proc.send_signal(signal.SIGKILL)
                    break
        else:
            deadline = time.monotonic() + TIMEOUT
            while progress() < kill.epoch and proc.poll() is None and time.monotonic() < deadline:
                time.sleep(0.02)
            time.sleep(kill.delay)
            proc.send_signal(signal.SIGKILL)
    finally:
        proc.kill()
        proc.wait(timeout=60)
    return proc.returncode == -signal.SIGKILL


def check(db: Path, before: list[int], violations: list[str], when: str, checkpoint_dir: Path | None = None) -> list[int]:
    try:
        live = invariants.check(str(db), "r", None if checkpoint_dir is None else str(checkpoint_dir))
    except AssertionError as e:
        violations.append(f"{when}: {e}")
        return before
    if live[: len(before)] != before:
        violations.append(f"{when}: committed epochs {before} became {live}")
    return live


def tracker_trial(workdir: Path, plan: Plan, reference: dict[str, list]) -> Outcome:
    if plan.scenario == "rewind":
        return rewind_trial(workdir, plan, reference)
    out = Outcome()
    db = workdir / "t.db"
    first = plan.child()
    resume = [sys.executable, "-m", "tracker.resume", "r"]
    live: list[int] = []
    folder = "ckpt"
    for i, kill in enumerate(plan.kills):
        pause = f"{kill.boundary}:{kill.epoch}" if kill.boundary else None
        # Killed before the run was even recorded, there is nothing to resume: the user re-runs the script.
        # After a move, the user re-runs the script with the folder's new place.
        command = resume if run_exists(db) and folder == "ckpt" else first
        landed = run_until_killed(command, env(workdir, pause, folder), workdir, kill, lambda: committed_epochs(db))
        if landed:
            label = kill.label if i == 0 else f"{kill.label} (during {'moved-folder ' if folder != 'ckpt' else ''}resume)"
            out.kills.append(label)
        live = check(db, live, out.violations, f"after kill {i + 1} ({kill.label})", workdir / folder)
        if plan.scenario == "moved" and i == 0:
            if (workdir / "ckpt").exists():
                (workdir / "ckpt").rename(workdir / "ckpt-moved")
            folder = "ckpt-moved"
    command = resume if run_exists(db) and folder == "ckpt" else first
    done = subprocess.run(command, env=env(workdir, checkpoints=folder), cwd=workdir, capture_output=True, text=True, timeout=TIMEOUT)
    if done.returncode != 0:
        out.violations.append(f"final resume failed: {done.stderr.strip().splitlines()[-1:]}")
    live = check(db, live, out.violations, "final", workdir / folder)
    return final_checks(db, live, reference, out)


def rewind_trial(workdir: Path, plan: Plan, reference: dict[str, list]) -> Outcome:
    """A live writer, a rewind with --force killed at one of its instants, then the rewind again to the end."""
    out = Outcome()
    db = workdir / "t.db"
    stop, kill = plan.kills
    writer = subprocess.Popen(plan.child(), cwd=workdir,
                              env=env(workdir, f"{stop.boundary}:{stop.epoch}"), stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True)
    try:
        for line in writer.stderr:
            if line.startswith("TRACKER-PAUSED"):
                break
        live = check(db, [], out.violations, "with a live writer")
        rewind = [sys.executable, "-m", "tracker.resume", "r", "--from-epoch", str(plan.rewind_to), "--force"]
        if run_until_killed(rewind, env(workdir, f"{kill.boundary}:{plan.rewind_to}"), workdir, kill, lambda: 0):
            out.kills.append(f"{kill.label} (live writer)")
        live = check(db, live[: plan.rewind_to + 1], out.violations, f"after kill ({kill.label})")
        done = subprocess.run(rewind, env=env(workdir), cwd=workdir, capture_output=True, text=True, timeout=TIMEOUT)
        if done.returncode != 0:
            out.violations.append(f"final rewind failed: {done.stderr.strip().splitlines()[-1:]}")
        if writer.poll() is not None:
            out.violations.append("the stopped writer ended by itself")
    finally:
        writer.kill()
        writer.wait(timeout=60)
    live = check(db, live, out.violations, "final")
    return final_checks(db, live, reference, out)


def final_checks(db: Path, live: list[int], reference: dict[str, list], out: Outcome) -> Outcome:
    if live != list(range(len(reference["epoch"]))):
        out.violations.append(f"final epochs {live} != {reference['epoch']}")
    if tracker.curves("r", db=str(db)) != reference:
        out.violations.append("final metrics differ from the uninterrupted run")
    return out


def backup_and_restore_trial(workdir: Path, plan: Plan, reference: list[dict[str, str]], out: Outcome) -> None:
    folder = workdir / "bar"
    history = folder / "history.csv"
    kills = plan.kills
    command = plan.child("--backup-and-restore", str(folder))
    for kill in kills:
        if run_until_killed(command, env(workdir), workdir, kill, lambda: len(csv_rows(history))):
            meta = folder / "training_metadata.json"
            next_epoch = json.loads(meta.read_text())["epoch"] if meta.exists() else 0
            if next_epoch != len(csv_rows(history)):
                out.bar_disagreed = True  # the checkpoint and the logged history name different epochs
    subprocess.run(command, env=env(workdir), cwd=workdir, capture_output=True, timeout=TIMEOUT)
    rows = csv_rows(history)
    out.bar_ran = True
    out.bar_bad_epochs = [int(r["epoch"]) for r in rows] != list(range(len(reference)))
    out.bar_identical = rows == reference


def plan(rng: random.Random, index: int, backend: str) -> Plan:
    """Deliberate boundary hits first, cycling through all of them, then rewinds and moved folders, then at random.

    A third of the plain trials, and every moved-folder trial, kill the resume too.
    """
    # tf.data needs TensorFlow, which the children on other backends cannot import: numpy input shuffled
    # from the backend's global generator takes its turn, so that each boundary keeps the same case.
    cases = CASES if backend == "tensorflow" else tuple("shuffle" if c == "tfdata" else c for c in CASES)
    case = cases[index % len(cases)]
    kills = plan_kills(rng, index)
    rewinds = len(BOUNDARIES) + len(REWIND_BOUNDARIES)
    if len(BOUNDARIES) <= index < rewinds or (index > rewinds and rng.random() < 0.2):
        boundary = REWIND_BOUNDARIES[index - len(BOUNDARIES)] if index < rewinds else rng.choice(REWIND_BOUNDARIES)
        # The writer must reach its stop: EarlyStopping ends the callbacks case after epoch 4 (on every backend).
        stop = rng.randint(3, 4 if case == "callbacks" else EPOCHS - 2)
        # Rewind to a checkpoint that retention (keep_last=3) still keeps.
        return Plan(case, backend, "rewind", [Kill("before-commit", stop), Kill(boundary, 0)], rewind_to=rng.randint(stop - 3, stop - 1))
    if index == rewinds or (index > rewinds and rng.random() < 0.25):
        return Plan(case, backend, "moved", kills if len(kills) > 1 else [*kills, plan_kills(rng, len(BOUNDARIES), after=kills[0].epoch)[0]])
    return Plan(case, backend, "plain", kills)


def plan_kills(rng: random.Random, index: int, after: int = 0) -> list[Kill]:
    """Kills at a boundary (the index-th first) or at random instants; a third kill the resume too."""
    def at(boundary: str, after: int) -> Kill:
        # Retention deletes nothing until more than keep_last (3) + best checkpoints exist.
        low = max(after + 1, 4) if boundary == "during-retention" else after + 1
        return Kill(boundary, rng.randint(min(low, EPOCHS - 2), EPOCHS - 2))

    def one(after: int) -> Kill:
        if rng.random() < 0.5:
            return at(rng.choice(BOUNDARIES), after)
        return Kill(None, rng.randint(after, EPOCHS - 2), rng.uniform(0.0, 0.6))

    first = at(BOUNDARIES[index], rng.randint(0, 2)) if index < len(BOUNDARIES) else one(after)
    kills = [first]
    if rng.random() < 0.35:
        kills.append(one(first.epoch))
    return kills


def reference(case: str, backend: str, with_bar: bool) -> tuple[dict, list]:
    """The uninterrupted run of ``case``: tracker's curve, and BackupAndRestore's CSV history."""
    with tempfile.TemporaryDirectory(prefix=f"torture-ref-{case}-") as tmp:
        work = Path(tmp)
        subprocess.run(train_command(case, backend), env=env(work), cwd=work, check=True, timeout=TIMEOUT)
        ours = tracker.curves("r", db=str(work / "t.db"))
        if not with_bar:
            return ours, []
        folder = work / "bar"
        subprocess.run(train_command(case, backend, "--backup-and-restore", str(folder)),
                       env=env(work), cwd=work, check=True, timeout=TIMEOUT)
        return ours, csv_rows(folder / "history.csv")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m scripts.crash_torture", description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, required=True, help="number of trials (the first six hit each write boundary)")
    parser.add_argument("--jobs", type=int, default=2, help="trials run at once (default 2)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--no-backup-and-restore", action="store_true", help="skip the Keras BackupAndRestore comparison")
    parser.add_argument("--serve", action="store_true",
                        help="serve each trial's database with python -m tracker.serve and a page's traffic while it trains")
    parser.add_argument("--backend", choices=BACKENDS, default="tensorflow", help="the Keras backend of every child (default tensorflow)")
    parser.add_argument("--mid-epoch", action="store_true",
                        help="runs that checkpoint inside epochs, stopped at a step checkpoint's write boundaries, at random and by SIGTERM "
                             "(see scripts/torture_mid_epoch.py)")
    parser.add_argument("--backup-and-restore-every", type=int, default=1, metavar="K",
                        help="with --mid-epoch, replay the stops on BackupAndRestore in every K-th trial only (default 1: all)")
    parser.add_argument("--time-limit", type=float, metavar="SECONDS",
                        help="with --mid-epoch, start no trial after this many seconds; the report covers the trials run")
    parser.add_argument("--cases", metavar="NAMES",
                        help="with --mid-epoch, cycle through only these cases, comma-separated, e.g. --cases seconds (default: all)")
    args = parser.parse_args(argv)
    if args.mid_epoch:
        if args.serve:
            parser.error("--serve is not supported with --mid-epoch")
        from scripts import torture_mid_epoch

        return torture_mid_epoch.main(args)
    rng = random.Random(args.seed)
    plans = [plan(rng, i, args.backend) for i in range(args.trials)]
    cases = sorted({p.case for p in plans})
    with_bar = not args.no_backup_and_restore
    started = time.monotonic()
    with ThreadPoolExecutor(args.jobs) as pool:
        refs = dict(zip(cases, pool.map(lambda c: reference(c, args.backend, with_bar), cases)))
    ours, theirs = {c: r[0] for c, r in refs.items()}, {c: r[1] for c, r in refs.items()}
    print(f"references for {len(cases)} cases in {time.monotonic() - started:.0f}s", flush=True)

    if args.serve:
        # httpx comes with the test extra: only --serve needs it, so --help and plain runs work without it.
        from tests.support import serving

    def trial(i: int) -> Outcome:
        p = plans[i]
        t0 = time.monotonic()
        with tempfile.TemporaryDirectory(prefix=f"torture-{i}-") as tmp:
            work = Path(tmp)
            watcher = serving.Watcher(str(work / "t.db"), "r") if args.serve else None
            try:
                out = tracker_trial(work, p, ours[p.case])
            except Exception as e:  # noqa: BLE001 - any surprise in a trial is reported as a violation
                out = Outcome(violations=[f"trial raised {type(e).__name__}: {e}"])
            if watcher is not None:
                out.violations += [f"serve: {problem}" for problem in watcher.stop()]
                out.served = watcher.requests
            if with_bar and p.scenario == "plain" and all(k.boundary is None for k in p.kills):
                backup_and_restore_trial(work, p, theirs[p.case], out)
        out.seconds = time.monotonic() - t0
        status = "ok" if not out.violations else "VIOLATION " + "; ".join(out.violations)
        print(f"trial {i + 1:4d} {p.case:11s} {p.scenario:6s} kills={','.join(out.kills) or 'none landed'} {out.seconds:5.1f}s {status}", flush=True)
        return out

    with ThreadPoolExecutor(args.jobs) as pool:
        outcomes = list(pool.map(trial, range(args.trials)))
    report(outcomes, args, time.monotonic() - started)
    return 1 if any(o.violations for o in outcomes) else 0


def report(outcomes: list[Outcome], args: argparse.Namespace, wall: float) -> None:
    hits = Counter(k for o in outcomes for k in o.kills)
    seconds = sorted(o.seconds for o in outcomes)
    violations = sum(len(o.violations) for o in outcomes)
    print(f"\ntrials: {len(outcomes)}  (backend {args.backend}, jobs {args.jobs}, seed {args.seed}, {EPOCHS} epochs each, wall {wall:.0f}s)")
    print(f"{'kill point':46s} hits")
    for name in [*BOUNDARIES, "random"]:
        print(f"  {name:44s} {hits[name]}")
        for during in ("during resume", "during moved-folder resume"):
            if hits[f"{name} ({during})"]:
                print(f"  {name + f' ({during})':44s} {hits[name + f' ({during})']}")
    for name in REWIND_BOUNDARIES:
        print(f"  {name + ' (live writer)':44s} {hits[name + ' (live writer)']}")
    print(f"violations: {violations}")
    if args.serve:
        print(f"served while training (--serve): {sum(o.served for o in outcomes)} requests, plus an open event stream per trial")
    print(f"seconds per trial: median {statistics.median(seconds):.1f}, p90 {seconds[int(0.9 * (len(seconds) - 1))]:.1f}, max {seconds[-1]:.1f}")
    compared = [o for o in outcomes if o.bar_ran]
    if compared:
        ours_ok = sum(not o.violations for o in compared)
        print(f"\nSame random kills, {len(compared)} trials:       tracker   BackupAndRestore+CSVLogger")
        print(f"  final metrics bit-identical          {ours_ok:7d}   {sum(o.bar_identical for o in compared):7d}")
        print(f"  checkpoint and history disagreed     {0:7d}   {sum(o.bar_disagreed for o in compared):7d}")
        print(f"  final epochs differ from uninterrupted {0:5d}   {sum(o.bar_bad_epochs for o in compared):7d}   (gap, duplicate, or extra epochs)")


if __name__ == "__main__":
    sys.exit(main())
