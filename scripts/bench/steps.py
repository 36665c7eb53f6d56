"""Row 9: checkpoints and metrics inside epochs (step checkpoints, ``checkpoint_every_seconds``, ``log_every_steps``) / plain fits."""

from __future__ import annotations

import functools
import shutil
import sqlite3
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from scripts.bench.harness import Case, Plan, Table, add_ratio, folder, interleaved, median, progress
from scripts.bench.workloads import big_data, build_big_model, load_demo


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
