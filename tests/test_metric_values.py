"""Which logs become metrics: names reserved for the curve's own columns, names too long for the database, values that are not numbers."""

from __future__ import annotations

import numpy as np
import pytest

import tracker
from tracker.store import open_store


def test_metrics_named_like_curve_columns_are_skipped_with_a_warning(db, ckpt, record):
    with pytest.warns(UserWarning, match="'epoch'.*reserved") as caught:
        record("r", 3, metrics=lambda e: {"loss": 1.0 / (e + 1), "epoch": 100.0 + e, "superseded": 1.0})
    assert sum("reserved" in str(w.message) for w in caught) == 2  # once per name, not once per epoch
    assert tracker.curves("r", db=db) == {"epoch": [0, 1, 2], "loss": [1.0, 0.5, 1.0 / 3]}
    store = open_store(db)
    store.rewind(store.get_run("r"), 0, force=False)
    store.close()
    record("r", 3, metrics=lambda e: {"loss": 1.0 / (e + 1), "epoch": 7.0})
    full = tracker.curves("r", db=db, include_superseded=True)
    assert full["epoch"] == [0, 1, 1, 2, 2] and full["superseded"] == [False, True, False, True, False]


def test_a_metric_name_too_long_for_the_database_is_refused_on_every_backend(db, ckpt):
    run = tracker.track("r", db=db, checkpoint_dir=ckpt)
    run.start()
    run.set_target_epochs(3)  # as fit does when its first epoch begins
    with pytest.raises(ValueError, match="Metric name 'xxxx.*is 300 characters long.*at most 255"):
        run.submit_epoch(0, {"loss": 1.0, "x" * 300: 2.0}, {"w": np.zeros(2)}, {})
    run.finish("failed")
    assert tracker.curves("r", db=db)["epoch"] == [] and tracker.runs(db)[0].status == "failed"


def test_a_metric_name_with_a_nul_is_refused_on_every_backend(db, ckpt):
    run = tracker.track("r", db=db, checkpoint_dir=ckpt)
    run.start()
    run.set_target_epochs(3)
    with pytest.raises(ValueError, match="Metric name 'lo\\\\x00ss' holds a NUL character"):
        run.submit_epoch(0, {"loss": 1.0, "lo\x00ss": 2.0}, {"w": np.zeros(2)}, {})
    run.finish("failed")
    assert tracker.curves("r", db=db)["epoch"] == []


def test_non_numeric_logs_are_skipped_with_one_warning_each(db, ckpt):
    run = tracker.track("r", db=db, checkpoint_dir=ckpt)
    run.start()
    odd = {"name": "adam", "vector": np.ones(3), "nothing": None, "complex": 1 + 2j}
    with pytest.warns(UserWarning) as caught:
        for epoch in range(3):
            run.submit_epoch(epoch, {"loss": 1.0 / (epoch + 1), **odd}, {"w": np.zeros(2)}, {})
        run.flush()
    run.finish("completed")
    skipped = [str(w.message) for w in caught if "is not recorded" in str(w.message)]
    assert len(skipped) == 4 and all(any(f"{k!r}" in m for m in skipped) for k in odd)
    assert tracker.curves("r", db=db) == {"epoch": [0, 1, 2], "loss": [1.0, 0.5, 1.0 / 3]}
