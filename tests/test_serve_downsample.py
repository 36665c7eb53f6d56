"""Min/max bucket reduction of long curves: adversarial series, never random, never losing a spike."""

from __future__ import annotations

import numpy as np
import pytest

from tracker.serve.downsample import minimum_points, reduce_points


def kept_values(values: np.ndarray, keep: np.ndarray) -> set[float]:
    return {float(v) for v in values[keep] if not np.isnan(v)}


def check_basics(epochs: np.ndarray, columns: dict[str, np.ndarray], keep: np.ndarray, max_points: int) -> None:
    assert len(keep) == min(max_points, len(epochs)), "as many points as asked, up to the series' length"
    assert list(keep) == sorted(set(keep.tolist())), "indices must be sorted and unique"
    assert keep[0] == 0 and keep[-1] == len(epochs) - 1, "first and last points are always kept"
    for values in columns.values():
        if not np.isnan(values).all():
            assert np.nanmin(values) in values[keep] and np.nanmax(values) in values[keep], "global min and max are kept"


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_every_single_point_spike_survives(seed):
    rng = np.random.default_rng(seed)
    n, max_points = 100_000, 500
    values = rng.normal(0.0, 0.01, n)
    spikes = rng.choice(n, 40, replace=False)
    values[spikes[:20]] = 50.0 + rng.random(20)  # up
    values[spikes[20:]] = -50.0 - rng.random(20)  # down
    epochs = np.arange(n)

    keep = reduce_points(epochs, {"loss": values}, max_points)

    check_basics(epochs, {"loss": values}, keep, max_points)
    # 40 spikes in 249 buckets: two may share a bucket, but each bucket's max and min stay,
    # so every bucket that holds a spike keeps its highest up-spike and its lowest down-spike.
    starts = np.linspace(0, n, (max_points - 2) // 2 + 1).astype(int)
    for lo, hi in zip(starts[:-1], starts[1:]):
        inside = values[lo:hi]
        assert inside.max() in values[keep] and inside.min() in values[keep], (lo, hi)


def test_each_bucket_keeps_its_min_and_max_compared_with_a_plain_loop():
    rng = np.random.default_rng(7)
    n, max_points = 10_007, 202  # n not a multiple of the bucket count
    values = np.cumsum(rng.normal(size=n))
    keep = reduce_points(np.arange(n), {"v": values}, max_points)
    buckets = (max_points - 2) // 2
    starts = np.linspace(0, n, buckets + 1).astype(int)
    expected = {0, n - 1}
    for lo, hi in zip(starts[:-1], starts[1:]):
        expected |= {lo + int(np.argmin(values[lo:hi])), lo + int(np.argmax(values[lo:hi]))}
    # Where a bucket's extreme is also an end, the budget left over goes to evenly spaced points.
    assert set(keep.tolist()) >= expected and len(keep) == max_points


def test_nan_is_never_chosen_and_an_all_nan_stretch_costs_nothing():
    n = 5_000
    values = np.linspace(1.0, 0.0, n)
    values[:1000] = np.nan  # the first point is NaN: still kept, as the first point
    values[2500:3000] = np.nan
    values[4000] = 7.0
    keep = reduce_points(np.arange(n), {"loss": values}, 100)
    check_basics(np.arange(n), {"loss": values}, keep, 100)
    chosen = keep[(keep != 0) & (keep != n - 1)]
    assert not np.isnan(values[chosen]).any(), "the budget left over goes to points with a value first"
    assert 4000 in keep


def test_all_nan_series_keeps_the_ends_and_evenly_spaced_points():
    values = np.full(1_000, np.nan)
    keep = reduce_points(np.arange(1_000), {"loss": values}, 50)
    assert len(keep) == 50 and keep[0] == 0 and keep[-1] == 999
    assert np.diff(keep).max() <= 2 * np.diff(keep).min() + 1, "no extremes to keep: the budget is spread evenly"


def test_constant_series_is_reduced_and_deterministic():
    epochs, values = np.arange(50_000), np.full(50_000, 0.25)
    first = reduce_points(epochs, {"loss": values}, 300)
    assert len(first) == 300
    assert np.array_equal(first, reduce_points(epochs, {"loss": values}, 300))


def test_infinities_are_values_not_gaps():
    values = np.ones(10_000)
    values[1234], values[8765] = np.inf, -np.inf
    keep = reduce_points(np.arange(10_000), {"loss": values}, 40)
    assert {1234, 8765} <= set(keep.tolist())


def test_resume_points_are_pinned_and_count_against_the_budget():
    n, max_points = 20_000, 60
    epochs = np.arange(n)
    columns = {"loss": np.linspace(3, 1, n), "val_loss": np.linspace(4, 2, n)}
    pinned = [5_001, 12_345, 99_999]  # the last one is not an epoch of this curve: ignored
    keep = reduce_points(epochs, columns, max_points, pinned)
    check_basics(epochs, columns, keep, max_points)
    assert {5_001, 12_345} <= set(epochs[keep].tolist())


def test_short_series_are_returned_whole():
    assert reduce_points(np.arange(5), {"loss": np.arange(5.0)}, 5).tolist() == [0, 1, 2, 3, 4]


def test_gapped_epochs_pin_by_epoch_value_not_position():
    epochs = np.arange(0, 30_000, 3)  # epochs 0, 3, 6, ...
    keep = reduce_points(epochs, {"loss": np.zeros(len(epochs))}, 20, [300])
    assert 300 in epochs[keep]


def test_too_small_a_budget_is_refused_with_the_minimum():
    assert minimum_points(2, 1) == 7
    with pytest.raises(ValueError, match=r"Received: max_points=6\. Expected at least 7 for 2 metric\(s\) and 1 resume point"):
        reduce_points(np.arange(100), {"a": np.zeros(100), "b": np.zeros(100)}, 6, [50])


@pytest.mark.parametrize(
    "n, max_points, n_metrics",
    [(12, 10, 3), (12, 8, 3), (12, 11, 1), (13, 12, 2), (100, 9, 1), (100, 99, 2), (1_000, 7, 2), (10, 10, 3), (5, 50, 1)],
    ids=["issue-12-epochs", "minimum", "one-short", "two-metrics", "few-of-many", "all-but-one", "tiny-budget", "exact", "short"],
)
def test_as_many_points_as_asked_with_the_ends_and_the_extremes(n, max_points, n_metrics):
    rng = np.random.default_rng(n * 1000 + max_points)
    epochs = np.arange(n)
    columns = {f"m{i}": rng.normal(size=n) for i in range(n_metrics)}
    keep = reduce_points(epochs, columns, max_points)
    check_basics(epochs, columns, keep, max_points)


def test_exactly_min_max_points_and_length_over_many_sizes():
    rng = np.random.default_rng(11)
    for trial in range(400):
        n = int(rng.integers(1, 400))
        n_metrics = int(rng.integers(1, 4))
        pinned = sorted(rng.choice(n, int(rng.integers(0, min(n, 3) + 1)), replace=False).tolist())
        least = minimum_points(n_metrics, len(pinned))
        max_points = int(rng.integers(least, n + 20))
        epochs = np.arange(n) * int(rng.integers(1, 4))
        columns = {f"m{i}": np.round(rng.normal(size=n), int(rng.integers(0, 3))) for i in range(n_metrics)}
        if trial % 5 == 0:  # gaps
            for values in columns.values():
                values[rng.random(n) < 0.3] = np.nan
        pins = epochs[pinned].tolist()
        keep = reduce_points(epochs, columns, max_points, pins)
        context = (trial, n, max_points, n_metrics, pins)
        check_basics(epochs, columns, keep, max_points)
        assert set(pins) <= set(epochs[keep].tolist()), context
