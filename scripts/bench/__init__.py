"""Benchmark tracker against baselines measured in the same run: every figure is a ratio of medians.

Each row times tracker and its baseline interleaved (A, B, A, B, ...) so that the
noise of a shared machine falls on both alike, and reports the medians in ms next
to their ratio and the target the row is held to. Nothing here asserts a timing.
Run it from the repository root:

    python -m scripts.bench            # the full table, about 11 minutes on 2 cores, plus ~12 for row 9 and ~15 for row 11
    python -m scripts.bench --quick    # every row but 11 at toy sizes, a smoke test (3-4 minutes on 2 busy cores)
    python -m scripts.bench --quick --rows 11  # row 11's searches at toy sizes (2-4 minutes: its children import TensorFlow)
    python -m scripts.bench --reps 9   # more repetitions, for steadier medians
    python -m scripts.bench --rows 3c  # one row: the 5.8M model's checkpoint at every epoch (~5 minutes)
    python -m scripts.bench --rows 10  # rows 2 and 3 again under KERAS_BACKEND=jax and torch, each in a child process

`harness` holds the plan, the interleaved timing and the table; each row family has its module:
`commit` (rows 1, 2), `fit` (3), `curves` (4), `startup` (5, 6), `memory` (7), `serve` (8),
`steps` (9), `backends` (10), `sweeps` (11); `__main__` runs them in order and prints the report.
"""
