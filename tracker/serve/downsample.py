"""Reduce long learning curves for drawing: deterministic min/max buckets, never random sampling.

A curve of a million epochs is cut into equal runs of consecutive points; each run
keeps, for every metric, the point of its lowest and of its highest value. A spike
therefore always survives (it is its bucket's max), and so do the global min and
max. The first point, the last point and every point the caller pins (resume
epochs) are kept as well. NaN values are never chosen as a min or a max. What the
buckets leave of the budget (a bucket's min and max may be one point, or an end)
goes to points spread evenly over the rest, so that exactly ``max_points`` come
back: a short curve asked for 10 points gets 10, not the 2 its extremes are.
Points where every metric is NaN fill the budget last.

Example:
    >>> import numpy as np
    >>> keep = reduce_points(np.arange(10), {"loss": np.r_[5.0, 4, 3, 9, 2, 2, 1, 1, 0, 1]}, 6)
    >>> keep.tolist()
    [0, 3, 4, 5, 8, 9]
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import numpy as np


def minimum_points(n_metrics: int, n_pinned: int) -> int:
    """The smallest ``max_points`` that can hold the ends, ``n_pinned`` pinned points and one bucket per metric."""
    return 2 + n_pinned + 2 * max(n_metrics, 1)


def reduce_points(
    epochs: np.ndarray, columns: Mapping[str, np.ndarray], max_points: int, pinned: Iterable[int] = ()
) -> np.ndarray:
    """The sorted indices of the points to keep: exactly ``min(max_points, len(epochs))`` of them.

    Args:
        epochs: The x values, one per point, in increasing order.
        columns: Each metric's values, aligned with ``epochs``; NaN where missing.
        max_points: How many points may be kept at most.
        pinned: Epochs that must be kept (resume points); those not in ``epochs`` are ignored.

    Raises:
        ValueError: ``max_points`` is below `minimum_points` for these columns and pinned epochs.
    """
    n = len(epochs)
    pinned_at = np.flatnonzero(np.isin(epochs, np.fromiter(pinned, dtype=np.int64)))
    if n <= max_points:
        return np.arange(n)
    least = minimum_points(len(columns), len(pinned_at))
    if max_points < least:
        raise ValueError(
            f"Invalid value for max_points. Received: max_points={max_points}. Expected at least {least} for "
            f"{len(columns)} metric(s) and {len(pinned_at)} resume point(s) (first, last, resume points, "
            "and a min and a max per metric)."
        )
    buckets = max(1, (max_points - 2 - len(pinned_at)) // (2 * max(len(columns), 1)))
    starts = np.linspace(0, n, buckets + 1).astype(np.int64)[:-1]
    keep = [np.array([0, n - 1]), pinned_at]
    for values in columns.values():
        keep.append(_bucket_extremes(values, starts))
    chosen = np.unique(np.concatenate(keep))
    # The budget left goes to points where some metric has a value; to gaps only once those run out.
    present = np.zeros(n, dtype=bool)
    for values in columns.values():
        present |= ~np.isnan(values)
    rest = np.setdiff1d(np.arange(n), chosen)
    filled, gaps = rest[present[rest]], rest[~present[rest]]
    left = max_points - len(chosen)
    return np.unique(np.concatenate([chosen, _spread(filled, left), _spread(gaps, left - len(filled))]))


def _spread(rest: np.ndarray, count: int) -> np.ndarray:
    """``count`` of the indices ``rest`` (all of them if fewer), evenly spaced, each the middle one of its share."""
    if count <= 0:
        return rest[:0]
    if count >= len(rest):
        return rest
    return rest[((np.arange(count) + 0.5) * len(rest) / count).astype(np.int64)]


def _bucket_extremes(values: np.ndarray, starts: np.ndarray) -> np.ndarray:
    """For each bucket (from each start to the next), the index of its first min and first max, NaN skipped."""
    n = len(values)
    bucket = np.repeat(np.arange(len(starts)), np.diff(np.append(starts, n)))
    present = ~np.isnan(values)
    chosen = []
    for fill, reduce in ((np.inf, np.minimum), (-np.inf, np.maximum)):
        # NaN would win every comparison; filled with the value that never wins, it is never chosen.
        filled = np.where(present, values, fill)
        extreme = reduce.reduceat(filled, starts)
        hit = np.flatnonzero(present & (filled == extreme[bucket]))
        # The first hit of each bucket: hits are in index order, so np.unique's first index is it.
        _, first = np.unique(bucket[hit], return_index=True)
        chosen.append(hit[first])
    return np.concatenate(chosen)
