"""Row 3: epoch wall time of whole fits, tracked against plain, and where tracker's time goes per epoch."""

from __future__ import annotations

import functools
import shutil
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from scripts.bench.harness import Plan, Table, add_ratio, folder, interleaved, median, ms, progress
from scripts.bench.workloads import big_data, build_big_model, load_demo


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
