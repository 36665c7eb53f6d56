"""crash_torture.py --mid-epoch: kill runs that checkpoint inside epochs, resume them, check, and count retrained batches.

Usage:
    python -m scripts.crash_torture --mid-epoch --trials 200 [--jobs 2] [--seed 1] [--backend jax]
        [--no-backup-and-restore | --backup-and-restore-every K] [--cases seconds,adam]

Each trial trains a tiny model for 3 epochs of 6 batches (tests/child_train.py, ``--samples 128``)
with checkpoints inside epochs, cycling through the exact-resume cases, each with its own configuration
(`CONFIGS`: ``checkpoint_every_steps`` 1, 2 or 3, ``log_every_steps`` 1, 2 or none, and
``steps_per_execution=2`` for ``schedule``, except on torch, which runs one batch per step), and a
ninth, ``seconds``: the shuffle case under ``checkpoint_every_seconds=0.9`` (about every fourth batch
with the batch sleep below, so that some epoch ends commit without a file and a resume supersedes
them). A trial's first process is stopped in one of three ways (``seconds``: the last two, as its
checkpoints fall at no fixed batch, and a SIGKILL paused right after an epoch end's commit,
``after-commit (epoch end)``, which finds the resume superseding that epoch whenever it was committed
without a file):

- ``<boundary> (step)``: SIGKILL while it is paused at a write boundary of a step checkpoint
  (``TRACKER_TEST_PAUSE_AT=<boundary>:<epoch>.<batch>``; the first six trials hit each boundary once);
- ``random SIGKILL``: the child sleeps 0.2 s at each batch start (``CHILD_BATCH_SLEEP``); it is killed
  0 to 0.35 s after it reports the end of a random batch, so the kill lands in that sleep, in the
  next batch's step, in the background write of a checkpoint, or in validation at an epoch end;
- ``SIGTERM``: the same random instants, with SIGTERM: the child must finish its batch, commit a
  checkpoint there and exit with status 143, its attempt recorded ``preempted``.

About a third of the trials stop the resume (``python -m tracker.resume r``) the same way once more;
then the run is resumed to its end.

After every stop it checks, besides crash_torture's invariants (``PRAGMA integrity_check``; the newest
committed epoch file exists with its recorded size and sha256; no committed epoch lost; each epoch
once): every checkpoint file a committed row keeps (epoch ends and steps) has its recorded size and
sha256; the newest committed checkpoint is never older than before the stop, and no epoch it covers is
lost (under ``seconds``, a resume supersedes the epochs committed after it); no live step is recorded
twice (in ``tracker.curves(run, by="step")`` and in the tables); a paused step checkpoint is committed
exactly when the pause was after its commit; after SIGTERM, the exit status, the ``preempted``
attempt, and a resume point exactly at the batch where the child stopped. After each resume: the
resumed process's first trained batch is the one after the resume point, with the optimizer at the
same step; and at the end, the epoch curve, the step curve and the final weights are bit-identical
to an uninterrupted run of the same case and configuration (computed once per case).

Batches retrained, and how they are measured. Every child prints, at each batch end,
``CHILD-STEP <epoch> <batches of it done> <optimizer iterations>`` (``CHILD_REPORT_STEPS=1``).
For each stop:

- the stop instant is the killed process's *last reported batch* (global position
  ``epoch * 6 + batches done``). A batch whose step finished but whose line was not yet written
  when SIGKILL landed counts as not trained: an undercount of at most one batch. At a write
  boundary, the training thread keeps going until it waits for the paused write (one to three
  batches later); the kill comes 0.3 s after the pause, and those batches count as trained.
- *retrained* = that position minus the position of the first batch the next process trains
  (from its first report), or 0 if it starts later; *applied twice* = those of them that the
  restored weights had already received: retrained minus the updates lost (the stopped process's
  optimizer step minus the one the next process starts from). tracker must apply none twice.
  A stop whose next process trains nothing (the run had ended) is not counted.

The comparison replays the same stops on the same case trained without tracker under
``keras.callbacks.BackupAndRestore(dir, save_freq=N)`` (N = the trial's ``checkpoint_every_steps``;
``--backup-and-restore DIR --backup-save-freq N``): its child (with the same 0.2 s batch sleep) is
sent the same signal 0.1 s after it reports the batch at which tracker's child had stopped, that is
after its save for that batch, the instant most favourable to it. Keras restores the weights and
optimizer of its last save but restarts the epoch recorded with them at batch 0, so it retrains the
epoch's batches and applies the ones before its save twice. (In Keras 3.15, a restored process's saves
before its first epoch end record epoch 0, so a second stop there restarts it from epoch 0.) Keras has no handler for SIGTERM, so
there a SIGTERM is a kill. Its final process is stopped after its first batch, which is all the count
needs; its curve is not compared.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import random
import re
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import tracker
from tests.support import invariants
from tracker.errors import Preempted
from tracker.faults import BOUNDARIES

ROOT = Path(__file__).resolve().parents[1]
CHILD = ROOT / "tests" / "child_train.py"
EPOCHS = 3
BATCHES = 6  # per epoch: --samples 128, a quarter for validation, batches of 16
SAMPLES = 128
TIMEOUT = 300
BATCH_SLEEP = 0.2
#: After a pause at a boundary, time for the training thread to reach the wait for the paused write.
SETTLE = 0.3
#: BackupAndRestore's child is stopped this long after it reports the batch: after its save for that batch.
BAR_DELAY = 0.1
CASES = ("adam", "shuffle", "dropout", "tfdata", "callbacks", "functional", "subclassed", "schedule", "seconds")
STOPS = ("random SIGKILL", "SIGTERM")
#: Case seconds only: SIGKILL right after an epoch end's commit, which under checkpoint_every_seconds often has no file.
EPOCH_END = "after-commit (epoch end)"
REPORT = re.compile(r"CHILD-STEP (\d+) (\d+) (\d+)")


@dataclass(frozen=True)
class Config:
    """A case's step options: ``checkpoint_every_steps`` (or ``checkpoint_every_seconds``), ``log_every_steps``
    and ``steps_per_execution``; ``child`` is the case tests/child_train.py trains, if not the torture case's name.

    ``every`` is also BackupAndRestore's ``save_freq`` in the comparison.
    """

    every: int
    log: int | None = None
    spe: int = 1
    seconds: float | None = None
    child: str | None = None

    def args(self) -> list[str]:
        every = ["--every-seconds", str(self.seconds)] if self.seconds else ["--every-steps", str(self.every)]
        out = [*every, "--samples", str(SAMPLES)]
        if self.log:
            out += ["--log-every-steps", str(self.log)]
        if self.spe > 1:
            out += ["--steps-per-execution", str(self.spe)]
        return out

    def describe(self) -> str:
        every = f"every {self.seconds:g} s" if self.seconds else f"every {self.every}"
        return every + (f", log {self.log}" if self.log else "") + (f", spe {self.spe}" if self.spe > 1 else "")

    def labels(self) -> list[tuple[int, int]]:
        """Every step checkpoint of an uninterrupted run, as ``(epoch, batches done)``: the rule of
        `tracker.run.schedule.CheckpointSchedule`, with every epoch end a checkpoint. None under ``seconds``:
        where those fall depends on the clock."""
        out: list[tuple[int, int]] = []
        if self.seconds:
            return out
        for epoch in range(EPOCHS):
            last = epoch * BATCHES
            for done in range(self.spe, BATCHES, self.spe):
                step = epoch * BATCHES + done
                if step // self.every > last // self.every:
                    out.append((epoch, done))
                    last = step
        return out


CONFIGS = {
    "adam": Config(1, 1), "shuffle": Config(2, 1), "dropout": Config(1, 2), "tfdata": Config(2),
    "callbacks": Config(1, 1), "functional": Config(3, 1), "subclassed": Config(1), "schedule": Config(2, 2, spe=2),
    "seconds": Config(4, 1, seconds=0.9, child="shuffle"),
}


@dataclass
class Stop:
    """How one process is stopped: at ``boundary`` of the step checkpoint ``label`` (epoch, batches done), or
    with ``signum`` ``delay`` seconds after it reports global position ``after`` (``after`` None: chosen at run time)."""

    kind: str  # a boundary, "random SIGKILL" or "SIGTERM"
    label: tuple[int, int] | None = None
    after: int | None = None
    delay: float = 0.0

    @property
    def signum(self) -> int:
        return signal.SIGTERM if self.kind == "SIGTERM" else signal.SIGKILL


@dataclass
class Plan:
    case: str
    backend: str
    config: Config
    stops: list[Stop]
    seed: int


@dataclass
class Count:
    """One stop: where it landed, and the batches each tool retrained after it."""

    kind: str
    position: int | None  # the stopped process's last reported batch
    iterations: int | None  # and its optimizer step then
    ours: tuple[int, int] | None = None  # tracker: (retrained, applied twice)
    theirs: tuple[int, int] | None = None  # BackupAndRestore
    where_theirs: Count | None = None  # where BackupAndRestore's process was at the same stop


@dataclass
class Outcome:
    counts: list[Count] = field(default_factory=list)
    violations: list[str] = field(default_factory=list)
    missed: list[str] = field(default_factory=list)  # planned stops that did not land
    bar_failed: list[str] = field(default_factory=list)  # BackupAndRestore could not restart
    seconds: float = 0.0
    superseded: int = 0  # epochs a resume superseded: committed after the newest checkpoint (case seconds)
    case: str = ""


def position(report: tuple[int, int, int]) -> int:
    return report[0] * BATCHES + report[1]


class Child:
    """A training process whose stderr is read on a thread: its batch reports and its pause."""

    def __init__(self, command: list[str], environment: dict[str, str], cwd: Path) -> None:
        self.proc = subprocess.Popen(command, env=environment, cwd=cwd, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True)
        self.reports: list[tuple[int, int, int]] = []
        self.paused = False
        self.tail: list[str] = []
        self._done = False
        self._cond = threading.Condition()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        # Searched anywhere in a line: two threads of the child write to stderr, and their lines can meet.
        for line in self.proc.stderr:
            with self._cond:
                self.reports += [tuple(map(int, m)) for m in REPORT.findall(line)]
                self.paused = self.paused or "TRACKER-PAUSED" in line
                self.tail = [*self.tail[-8:], line.rstrip()]
                self._cond.notify_all()
        with self._cond:
            self._done = True
            self._cond.notify_all()

    def wait_for(self, ready: Callable[[], bool], timeout: float = TIMEOUT) -> bool:
        with self._cond:
            return self._cond.wait_for(lambda: ready() or self._done, timeout) and ready()

    def reached(self, at: int) -> bool:
        return bool(self.reports) and position(self.reports[-1]) >= at

    def end(self, signum: int | None = None) -> int:
        """Send ``signum`` (if any), wait for the exit and the last line; the exit status."""
        if signum is not None and self.proc.poll() is None:
            self.proc.send_signal(signum)
        try:
            self.proc.wait(timeout=TIMEOUT)
        finally:
            self.proc.kill()
            self.proc.wait(timeout=60)
            self._reader.join(timeout=60)
        return self.proc.returncode

    @property
    def first(self) -> tuple[int, int, int] | None:
        return self.reports[0] if self.reports else None

    @property
    def last(self) -> int | None:
        return position(self.reports[-1]) if self.reports else None

    @property
    def last_iterations(self) -> int | None:
        return self.reports[-1][2] if self.reports else None


def env(workdir: Path, pause_at: str | None = None, *, sleep: bool = False) -> dict[str, str]:
    import os

    e = {k: v for k, v in os.environ.items() if not k.startswith(("TRACKER_", "CHILD_"))}
    e.update(TRACKER_DB=str(workdir / "t.db"), TRACKER_CHECKPOINT_DIR=str(workdir / "ckpt"), PYTHONPATH=str(ROOT), CHILD_REPORT_STEPS="1")
    if pause_at:
        e["TRACKER_TEST_PAUSE_AT"] = pause_at
    if sleep:
        e["CHILD_BATCH_SLEEP"] = str(BATCH_SLEEP)
    return e


def train_command(plan: Plan, *extra: str) -> list[str]:
    return [sys.executable, str(CHILD), "r", str(EPOCHS), "--case", plan.config.child or plan.case, "--backend", plan.backend, *plan.config.args(), *extra]


# -- the database, read without tracker's own code --------------------------------------------------


def _query(db: Path, sql: str, *args: object) -> list[tuple]:
    if not db.exists():
        return []
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=30)
    try:
        if not conn.execute("SELECT count(*) FROM sqlite_master WHERE name = 'steps'").fetchone()[0]:
            return []
        return conn.execute(sql, args).fetchall()
    finally:
        conn.close()


def kept_checkpoints(db: Path) -> list[tuple[int, str, int, str]]:
    """``(global position, path, size, sha256)`` of every live checkpoint a row keeps, epoch ends and steps."""
    ends = _query(db, "SELECT (epoch + 1) * ?, checkpoint_path, checkpoint_size, checkpoint_sha256 FROM epochs "
                      "WHERE checkpoint_path IS NOT NULL AND NOT checkpoint_deleted AND NOT superseded", BATCHES)
    steps = _query(db, "SELECT step, checkpoint_path, checkpoint_size, checkpoint_sha256 FROM steps "
                       "WHERE checkpoint_path IS NOT NULL AND NOT checkpoint_deleted AND NOT superseded")
    return sorted(ends + steps)


def newest(db: Path) -> int | None:
    kept = kept_checkpoints(db)
    return kept[-1][0] if kept else None


def check(db: Path, state: dict, violations: list[str], when: str, *, supersedes: bool = False) -> None:
    """The invariants after a stop; ``state`` carries the live epochs and the newest checkpoint seen before.

    ``supersedes``: epochs may commit without a file (``checkpoint_every_seconds``), so a resume may
    supersede those after the newest checkpoint; the ones it covers must stay.
    """
    try:
        live = invariants.check(str(db), "r")
    except AssertionError as e:
        violations.append(f"{when}: {e}")
        return
    kept = state["epochs"]
    if supersedes:
        kept = [e for e in kept if (e + 1) * BATCHES <= (state["newest"] or 0)]
    if live[: len(kept)] != kept:
        violations.append(f"{when}: committed epochs {state['epochs']} became {live}")
    state["epochs"] = live
    for at, path, size, sha in kept_checkpoints(db):
        data = Path(path).read_bytes() if Path(path).exists() else None
        if data is None or len(data) != size or hashlib.sha256(data).hexdigest() != sha:
            violations.append(f"{when}: the checkpoint at batch {at} is {'missing' if data is None else 'not what its row recorded'}: {path}")
    now = newest(db)
    if state["newest"] is not None and (now is None or now < state["newest"]):
        violations.append(f"{when}: the newest committed checkpoint went back from batch {state['newest']} to {now}")
    state["newest"] = now if now is not None else state["newest"]
    twice = _query(db, "SELECT step FROM steps WHERE NOT superseded GROUP BY run_id, step HAVING count(*) > 1")
    twice += _query(db, "SELECT m.step FROM step_metrics m JOIN steps s ON s.id = m.step_id WHERE NOT m.superseded "
                        "GROUP BY m.run_id, m.step, m.name HAVING count(*) > 1 OR max(s.superseded)")
    if twice:
        violations.append(f"{when}: live steps recorded twice (or metrics of a superseded step live): {sorted({r[0] for r in twice})}")
    if _query(db, "SELECT 1 FROM runs WHERE name = 'r'"):
        by_step = tracker.curves("r", db=str(db), by="step")["step"]
        if by_step != sorted(set(by_step)):
            violations.append(f"{when}: curves(by='step') has a step twice or out of order: {by_step}")


def last_attempt_status(db: Path) -> str | None:
    rows = _query(db, "SELECT a.status FROM attempts a JOIN runs r ON r.id = a.run_id WHERE r.name = 'r' ORDER BY a.id DESC LIMIT 1")
    return rows[0][0] if rows else None


# -- one trial ------------------------------------------------------------------------------------


def stop(child: Child, s: Stop) -> bool:
    """Stop ``child`` as ``s`` says; False if it ended (or never reached the point) first."""
    if s.label is not None:
        if not child.wait_for(lambda: child.paused):
            return False
        time.sleep(SETTLE)
    elif not child.wait_for(lambda: child.reached(s.after)):
        return False
    else:
        time.sleep(s.delay)
    return child.proc.poll() is None


def resolve(s: Stop, rng: random.Random, config: Config, resume_at: int) -> Stop | None:
    """Fix a planned stop of a resume to a point after where it starts (None: no such point)."""
    if s.kind == EPOCH_END:
        ends = [(epoch, BATCHES) for epoch in range(EPOCHS - 1) if (epoch + 1) * BATCHES > resume_at]
        return dataclasses.replace(s, label=rng.choice(ends)) if ends else None
    if s.kind in STOPS:
        # At least one more batch boundary after the stop lands, so that it lands inside training.
        low, high = resume_at + 1, EPOCHS * BATCHES - 2 * config.spe
        return dataclasses.replace(s, after=rng.randint(low, high)) if low <= high else None
    labels = [lab for lab in config.labels() if position(lab + (0,)) > resume_at]
    # Retention deletes a step checkpoint only once two newer ones are committed.
    labels = labels[2:] if s.kind == "during-retention" else labels
    return dataclasses.replace(s, label=rng.choice(labels)) if labels else None


def tracker_trial(workdir: Path, plan: Plan, reference: dict, out: Outcome) -> list[tuple[str, Stop, int | None]]:
    """Run, stop and resume under tracker; returns each landed stop with where it landed, for the replay."""
    db = workdir / "t.db"
    rng = random.Random(plan.seed)
    first = train_command(plan)
    resume = [sys.executable, "-m", "tracker.resume", "r"]
    state: dict = {"epochs": [], "newest": None}
    landed: list[tuple[str, Stop, int | None]] = []
    for i, planned in enumerate(plan.stops):
        s = planned if i == 0 else resolve(planned, rng, plan.config, state["newest"] or 0)
        if s is None:
            continue
        resume_at = state["newest"] or 0
        step = s.label is not None and s.kind != EPOCH_END
        pause = f"after-commit:{s.label[0]}" if s.kind == EPOCH_END else f"{s.kind}:{s.label[0]}.{s.label[1]}" if step else None
        child = Child(resume if _query(db, "SELECT 1 FROM runs") else first, env(workdir, pause, sleep=not step), workdir)
        ok = stop(child, s)
        rc = child.end(s.signum if ok else None)
        kind = s.kind + (" (step)" if step else "") + (" (during resume)" if i else "")
        if not ok:
            out.missed.append(f"{kind} at {s.label or s.after}: the child exited with {rc} first")
            if rc != 0:
                out.violations.append(f"{kind}: the child failed with {rc}: {child.tail[-3:]}")
            break
        out.counts.append(Count(kind, child.last, child.last_iterations))
        if out.counts[-2:-1]:
            _count_ours(out.counts[-2], child, resume_at, plan.config.spe, out.violations)
        check(db, state, out.violations, f"after {kind}", supersedes=bool(plan.config.seconds))
        if step:
            at = s.label[0] * BATCHES + s.label[1]
            committed = any(c[0] == at for c in kept_checkpoints(db))
            if committed != (s.kind in ("after-commit", "during-retention")):
                out.violations.append(f"after {kind} at {s.label}: its checkpoint is {'' if committed else 'not '}committed")
        if s.kind == "SIGTERM":
            if rc != Preempted.EXIT_STATUS:
                out.violations.append(f"after SIGTERM: exit status {rc}, not {Preempted.EXIT_STATUS}: {child.tail[-3:]}")
            if last_attempt_status(db) != "preempted":
                out.violations.append(f"after SIGTERM: the attempt is {last_attempt_status(db)!r}, not 'preempted'")
            if state["newest"] != child.last:
                out.violations.append(f"after SIGTERM: the resume point is batch {state['newest']}, but the child stopped after batch {child.last}")
        landed.append((kind, s, child.last))
    resume_at = state["newest"] or 0
    child = Child(resume if _query(db, "SELECT 1 FROM runs") else first, env(workdir), workdir)
    rc = child.end()
    if rc != 0:
        out.violations.append(f"final resume failed with {rc}: {child.tail[-3:]}")
    if out.counts:
        _count_ours(out.counts[-1], child, resume_at, plan.config.spe, out.violations)
    check(db, state, out.violations, "final", supersedes=bool(plan.config.seconds))
    final_checks(db, reference, out)
    out.superseded = _query(db, "SELECT count(*) FROM epochs WHERE superseded")[0][0]
    return landed


def _count_ours(count: Count, child: Child, resume_at: int, spe: int, violations: list[str]) -> None:
    """tracker's count after ``count``'s stop, from the next process's first batch; it must start at the resume point."""
    if child.first is None:
        return
    start, step = position(child.first) - spe, child.first[2] - spe
    count.ours = retrained(count, child.first, spe)
    if (start, step) != (resume_at, resume_at):
        violations.append(f"the resume trained batch {start} first with the optimizer at step {step}, "
                          f"but the newest committed checkpoint is at batch {resume_at}")


def retrained(stopped: Count, first: tuple[int, int, int], spe: int) -> tuple[int, int]:
    """(batches run again, updates applied twice) by the process after ``stopped``, whose first report is ``first``.

    The process starts at data position ``start`` with the optimizer at step ``first[2] - spe``; the stopped
    one was at ``stopped.position`` with its optimizer at ``stopped.iterations``: the difference of those
    steps is the work lost, and the rest of the batches run again were already in the restored weights.
    """
    if stopped.position is None:
        return 0, 0
    start = position(first) - spe
    again = max(0, stopped.position - start)
    lost = stopped.iterations - (first[2] - spe)
    return again, max(0, again - lost)


def final_checks(db: Path, reference: dict, out: Outcome) -> None:
    ours = _results(db)
    for what in ("curve", "steps", "weights"):
        if ours[what] != reference[what]:
            detail = ""
            if what == "steps" and ours["steps"]["step"] != reference["steps"]["step"]:
                extra = sorted(set(ours["steps"]["step"]) - set(reference["steps"]["step"]))
                lost = sorted(set(reference["steps"]["step"]) - set(ours["steps"]["step"]))
                detail = f" (steps logged that it never logs: {extra}; not logged: {lost})"
            out.violations.append(f"final {what} differ from the uninterrupted run's{detail}")


def _results(db: Path) -> dict:
    """The epoch curve, the step curve, and the final weights' sha256 (each array's bytes, in name order)."""
    from tracker import checkpoint
    from tracker.records import FileInfo

    kept = kept_checkpoints(db)
    digest = None
    if kept:
        arrays, _ = checkpoint.load(FileInfo(*kept[-1][1:]))
        h = hashlib.sha256()
        for name in sorted(k for k in arrays if k.startswith("model.")):
            h.update(name.encode() + arrays[name].tobytes())
        digest = h.hexdigest()
    return {"curve": tracker.curves("r", db=str(db)), "steps": tracker.curves("r", db=str(db), by="step"), "weights": digest}


def backup_and_restore_trial(workdir: Path, plan: Plan, landed: list[tuple[str, Stop, int | None]], out: Outcome) -> None:
    """Replay the landed stops on Keras's BackupAndRestore(save_freq=N) and count its retrained batches."""
    folder = workdir / "bar"
    command = train_command(plan, "--backup-and-restore", str(folder), "--backup-save-freq", str(plan.config.every))
    previous: Count | None = None  # the last stop, with where BackupAndRestore's process was then
    for (_, s, at), count in [*zip(landed, out.counts), ((None, None, None), None)]:
        child = Child(command, env(workdir, sleep=count is not None), workdir)
        if previous is not None:
            if not child.wait_for(lambda: bool(child.reports)):
                out.bar_failed.append(f"exit {child.end()}: {child.tail[-1:]}")
                return
            previous.theirs = retrained(previous.where_theirs, child.first, plan.config.spe)
        if count is None or at is None or not child.wait_for(lambda: child.reached(at)):
            child.end(signal.SIGKILL)
            return
        time.sleep(BAR_DELAY)
        child.end(s.signum)
        previous = count
        count.where_theirs = Count(count.kind, child.last, child.last_iterations)


# -- planning, references, the report -------------------------------------------------------------


def plan(rng: random.Random, index: int, backend: str, only: tuple[str, ...] = CASES) -> Plan:
    """The first six trials pause at each boundary, the next two stop at random with SIGKILL then SIGTERM;
    then a third each. A third of the trials stop the resume too. Cases cycle in order (``only`` those)."""
    cases = only if backend == "tensorflow" else tuple(dict.fromkeys("shuffle" if c == "tfdata" else c for c in only))
    case = cases[index % len(cases)]
    config = config_for(case, backend)
    # A third each: boundaries (under seconds: epoch ends), random SIGKILL, SIGTERM.
    kinds = [EPOCH_END, *STOPS] if config.seconds else [*BOUNDARIES, *STOPS, *STOPS]
    if index >= len(BOUNDARIES) + len(STOPS):
        kind = rng.choice(kinds)
    elif config.seconds:
        kind = kinds[index % len(kinds)]
    else:
        kind = BOUNDARIES[index] if index < len(BOUNDARIES) else STOPS[index % len(STOPS)]
    first = resolve(Stop(kind), rng, config, 0)
    stops = [first]
    if rng.random() < 0.35:
        stops.append(Stop(rng.choice(kinds)))
    delay = rng.uniform(0.0, 0.35)
    stops = [dataclasses.replace(s, delay=delay) for s in stops]
    return Plan(case, backend, config, stops, seed=rng.randrange(2**32))


def config_for(case: str, backend: str) -> Config:
    """The case's configuration; on torch, whose trainer runs one batch per step, without ``steps_per_execution``."""
    return dataclasses.replace(CONFIGS[case], spe=1) if backend == "torch" else CONFIGS[case]


def reference(case: str, backend: str) -> dict:
    with tempfile.TemporaryDirectory(prefix=f"torture-mid-ref-{case}-") as tmp:
        work = Path(tmp)
        p = Plan(case, backend, config_for(case, backend), [], 0)
        subprocess.run(train_command(p), env=env(work), cwd=work, check=True, timeout=TIMEOUT, stderr=subprocess.DEVNULL)
        return _results(work / "t.db")


def main(args: argparse.Namespace) -> int:
    rng = random.Random(args.seed)
    only = tuple(args.cases.split(",")) if args.cases else CASES
    if not set(only) <= set(CASES):
        raise SystemExit(f"--cases: received {args.cases!r}; expected some of {', '.join(CASES)}, comma-separated")
    plans = [plan(rng, i, args.backend, only) for i in range(args.trials)]
    cases = sorted({p.case for p in plans})
    started = time.monotonic()
    with ThreadPoolExecutor(args.jobs) as pool:
        refs = dict(zip(cases, pool.map(lambda c: reference(c, args.backend), cases)))
    print(f"references for {len(cases)} cases in {time.monotonic() - started:.0f}s", flush=True)
    every = 0 if args.no_backup_and_restore else args.backup_and_restore_every

    def trial(i: int) -> Outcome | None:
        if args.time_limit and time.monotonic() - started > args.time_limit:
            return None  # not started: the report covers the trials that finished
        p = plans[i]
        out = Outcome(case=p.case)
        t0 = time.monotonic()
        with tempfile.TemporaryDirectory(prefix=f"torture-mid-{i}-") as tmp:
            work = Path(tmp)
            try:
                landed = tracker_trial(work, p, refs[p.case], out)
                if every and i % every == 0 and landed:
                    backup_and_restore_trial(work, p, landed, out)
            except Exception as e:  # noqa: BLE001 - any surprise in a trial is reported as a violation
                out.violations.append(f"trial raised {type(e).__name__}: {e}")
        out.seconds = time.monotonic() - t0
        status = "ok" if not out.violations else "VIOLATION " + "; ".join(out.violations)
        stops = ", ".join(f"{c.kind}@{c.position}" for c in out.counts) or "none landed"
        ours = "/".join(str(c.ours[0]) if c.ours else "-" for c in out.counts)
        theirs = "/".join(str(c.theirs[0]) if c.theirs else "-" for c in out.counts)
        missed = f" MISSED {'; '.join(out.missed)}" if out.missed else ""
        missed += f" B&R-RESTART-FAILED {'; '.join(out.bar_failed)}" if out.bar_failed else ""
        print(f"trial {i + 1:4d} {p.case:10s} ({p.config.describe():20s}) {stops}  retrained tracker {ours} B&R {theirs}  "
              f"{out.seconds:5.1f}s {status}{missed}", flush=True)
        return out

    with ThreadPoolExecutor(args.jobs) as pool:
        outcomes = [o for o in pool.map(trial, range(args.trials)) if o is not None]
    if len(outcomes) < args.trials:
        print(f"\n--time-limit {args.time_limit:.0f}s: {len(outcomes)} of {args.trials} trials started and finished; the rest were not started")
    report(outcomes, args, time.monotonic() - started)
    return 1 if any(o.violations for o in outcomes) else 0


def report(outcomes: list[Outcome], args: argparse.Namespace, wall: float) -> None:
    counts = [c for o in outcomes for c in o.counts]
    hits = Counter(c.kind for c in counts)
    seconds = sorted(o.seconds for o in outcomes)
    print(f"\ntrials: {len(outcomes)}  (--mid-epoch, backend {args.backend}, jobs {args.jobs}, seed {args.seed}, "
          f"{EPOCHS} epochs x {BATCHES} batches, wall {wall:.0f}s)")
    print(f"{'stop':44s} hits")
    kinds = [f"{b} (step)" for b in BOUNDARIES] + list(STOPS) + [EPOCH_END]
    for name in kinds:
        print(f"  {name:42s} {hits[name]}")
        if hits[f"{name} (during resume)"]:
            print(f"  {name + ' (during resume)':42s} {hits[name + ' (during resume)']}")
    missed = sum(len(o.missed) for o in outcomes)
    print(f"planned stops that did not land: {missed}")
    seconds_trials = [o for o in outcomes if CONFIGS[o.case].seconds]
    if seconds_trials:
        print(f"case seconds: a resume superseded {sum(o.superseded for o in seconds_trials)} epochs committed after its checkpoint, "
              f"in {sum(o.superseded > 0 for o in seconds_trials)} of {len(seconds_trials)} trials")
    print(f"violations: {sum(len(o.violations) for o in outcomes)} (in {sum(bool(o.violations) for o in outcomes)} trials)")
    print(f"seconds per trial: median {statistics.median(seconds):.1f}, p90 {seconds[int(0.9 * (len(seconds) - 1))]:.1f}, max {seconds[-1]:.1f}")
    failed = [f for o in outcomes for f in o.bar_failed]
    if failed:
        print(f"BackupAndRestore failed to restart after {len(failed)} stops: {Counter(failed).most_common(3)}")
    ours = [c for c in counts if c.ours]
    print(f"tracker, over all {len(ours)} stops followed by a resume that trained: retrained {sum(c.ours[0] for c in ours)} "
          f"batches (max {max([c.ours[0] for c in ours], default=0)} after one stop), applied twice {sum(c.ours[1] for c in ours)}")
    sigterms = [c for c in ours if c.kind.startswith("SIGTERM")]
    if sigterms:
        print(f"after SIGTERM, tracker retrained 0 batches in {sum(c.ours[0] == 0 for c in sigterms)} of {len(sigterms)} stops")
    both = [c for c in counts if c.ours and c.theirs]
    if not both:
        return
    print(f"\nBatches retrained after the same stops ({len(both)} stops in "
          f"{sum(any(c.theirs for c in o.counts) for o in outcomes)} trials; see the docstring for how they are counted):")
    print(f"  {'stop':40s} {'stops':>5s}   {'tracker: retrained':>18s} {'twice':>5s}   {'BackupAndRestore: retrained':>27s} {'twice':>5s}")
    rows = [(k, [c for c in both if c.kind.split(' (during')[0] == k]) for k in kinds]
    rows.append(("all", both))
    for name, group in rows:
        if not group:
            continue

        def stat(values: list[int]) -> str:
            return f"{sum(values):4d} (max {max(values)})"

        print(f"  {name:40s} {len(group):5d}   {stat([c.ours[0] for c in group]):>18s} {sum(c.ours[1] for c in group):5d}   "
              f"{stat([c.theirs[0] for c in group]):>27s} {sum(c.theirs[1] for c in group):5d}")
