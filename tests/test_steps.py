"""Points inside epochs, in the framework-free core: step checkpoints, per-step metrics, their
retention, and the resume point that is the newest committed checkpoint of either kind."""

from __future__ import annotations

import math
import shutil
from pathlib import Path

import numpy as np
import pytest
import sqlalchemy as sa

import tracker
from tracker.records import StepValues
from tracker.store import migrate, open_store

RELEASE_0004 = Path(__file__).parent / "data" / "release-0004"


def _open(db: str, ckpt: str, **options: object) -> tracker.Run:
    run = tracker.track("r", db=db, checkpoint_dir=ckpt, monitor="loss", save_on_signal=None, **options)
    run.start()
    return run


def _state(x: float) -> dict[str, np.ndarray]:
    return {"w": np.full(3, x)}


def test_the_resume_point_is_the_newest_checkpoint_inside_or_at_the_end_of_an_epoch(db, ckpt):
    run = _open(db, ckpt)
    run.commit_epoch(0, {"loss": 1.0}, _state(0), {})
    run.commit_step(StepValues(1, 40, 140, {}), _state(1.4), {})
    run.finish("crashed")

    run = _open(db, ckpt)
    assert (run.initial_epoch, run.initial_batch) == (1, 40)
    assert run.resume_point.batch == 40 and run.resume_point.arrays["w"][0] == 1.4
    assert run.resume_point.header["step"] == 140
    run.commit_epoch(1, {"loss": 0.5}, _state(2), {})
    run.finish("crashed")

    run = _open(db, ckpt)  # the epoch end after it is newer than the step checkpoint
    assert (run.initial_epoch, run.initial_batch) == (2, 0)
    run.finish("completed")


def test_a_resume_from_a_step_checkpoint_supersedes_the_epochs_and_steps_after_it(db, ckpt):
    run = _open(db, ckpt, checkpoint_every_seconds=3600)
    run.commit_epoch(0, {"loss": 1.0}, _state(0), {})
    run.commit_step(StepValues(1, 50, 150, {"loss": 0.8}), _state(1.5), {})
    # After the checkpoint: logged steps, and an epoch whose metrics committed without a file.
    run.commit_step(StepValues(1, 100, 200, {}), None, None, step_rows=[StepValues(1, 75, 175, {"loss": 0.7}), StepValues(1, 100, 200, {"loss": 0.6})])
    run.commit_epoch(1, {"loss": 0.6}, None, None)
    run.finish("crashed")
    assert tracker.curves("r", db=db)["epoch"] == [0, 1]

    run = _open(db, ckpt)
    assert (run.initial_epoch, run.initial_batch) == (1, 50)
    run.finish("crashed")
    assert tracker.curves("r", db=db)["epoch"] == [0]
    assert tracker.curves("r", db=db, by="step") == {"step": [150], "epoch": [1], "loss": [0.8]}


def test_the_curve_by_step_never_has_a_step_twice_across_resumes(db, ckpt):
    run = _open(db, ckpt)
    run.commit_step(StepValues(0, 10, 10, {"loss": 2.0}), _state(0.1), {}, step_rows=[StepValues(0, 5, 5, {"loss": 3.0})])
    run.commit_step(StepValues(0, 15, 15, {}), None, None, step_rows=[StepValues(0, 15, 15, {"loss": 1.9, "acc": 0.2})])
    run.finish("crashed")

    run = _open(db, ckpt)  # resumes at step 10: step 15 is trained again, and logged again
    run.commit_step(StepValues(0, 15, 15, {}), None, None, step_rows=[StepValues(0, 15, 15, {"loss": 1.8, "acc": 0.3})])
    run.commit_epoch(0, {"loss": 1.5}, _state(1), {})
    run.finish("completed")

    steps = tracker.curves("r", db=db, by="step")
    assert steps["step"] == [5, 10, 15] and steps["epoch"] == [0, 0, 0]
    assert steps["loss"] == [3.0, 2.0, 1.8]
    assert math.isnan(steps["acc"][0]) and steps["acc"][2] == 0.3
    assert tracker.curves("r", db=db, by="step", metrics=["acc"]) == {"step": [15], "epoch": [0], "acc": [0.3]}
    assert tracker.curves("r", db=db)["epoch"] == [0]  # the epoch curve is unchanged


def test_a_step_checkpoint_joins_its_step_logged_in_an_earlier_group(db, ckpt):
    run = _open(db, ckpt)
    run.commit_step(StepValues(0, 4, 4, {}), None, None, step_rows=[StepValues(0, 4, 4, {"loss": 2.0})])
    run.commit_step(StepValues(0, 4, 4, {}), _state(4), {})
    run.finish("crashed")
    assert tracker.curves("r", db=db, by="step") == {"step": [4], "epoch": [0], "loss": [2.0]}
    run = _open(db, ckpt)
    assert (run.initial_epoch, run.initial_batch) == (0, 4)
    run.finish("completed")


def test_step_checkpoints_keep_the_newest_keep_last_steps_and_delete_files_only_after_the_commit(db, ckpt):
    run = _open(db, ckpt, keep_last=2, keep_last_steps=2)
    files = []
    for step in (10, 20, 30, 40):
        run.commit_step(StepValues(0, step, step, {}), _state(step), {})
        files.append({p.name for p in Path(ckpt, "r").glob("*.npz")})
    run.commit_epoch(0, {"loss": 1.0}, _state(0), {})
    store = open_store(db)
    kept = store.checkpoints(store.get_run("r").id)
    store.close()
    run.finish("completed")
    assert [r.describe() for r in kept] == ["epoch 0", "epoch 0, batch 40", "epoch 0, batch 30"]
    assert [len(f) for f in files] == [1, 2, 2, 2]
    assert len(list(Path(ckpt, "r").glob("*.npz"))) == 3
    assert tracker.curves("r", db=db, by="step")["step"] == []  # checkpoints alone log no metrics


def test_rewind_supersedes_the_steps_of_later_epochs(db, ckpt, tmp_path):
    run = _open(db, ckpt)
    run.commit_epoch(0, {"loss": 1.0}, _state(0), {})
    run.commit_step(StepValues(1, 5, 15, {}), _state(1), {}, step_rows=[StepValues(1, 5, 15, {"loss": 0.9})])
    run.commit_epoch(1, {"loss": 0.8}, _state(1), {})
    run.finish("completed")
    store = open_store(db)
    store.rewind(store.get_run("r"), 0, force=False)
    store.close()
    assert tracker.curves("r", db=db, by="step")["step"] == []
    run = _open(db, ckpt)
    assert (run.initial_epoch, run.initial_batch) == (1, 0)
    run.finish("completed")


def test_curves_by_step_refuses_what_it_cannot_give(db, record):
    record("r", 2)
    with pytest.raises(ValueError, match="Expected 'epoch' or 'step'"):
        tracker.curves("r", db=db, by="batch")
    with pytest.raises(ValueError, match="only for by='epoch'"):
        tracker.curves("r", db=db, by="step", include_superseded=True)


@pytest.mark.parametrize(
    "option, value",
    [("checkpoint_every_steps", 0), ("checkpoint_every_steps", 2.5), ("checkpoint_every_seconds", 0), ("checkpoint_every_seconds", "30"),
     ("keep_last_steps", 0), ("log_every_steps", -1), ("save_on_signal", 9), ("save_on_signal", "SIGTERM")],
)
def test_bad_step_options_are_refused_before_anything_is_opened(tmp_path, option, value):
    with pytest.raises(ValueError, match=f"argument `{option}`"):
        tracker.track("r", db=str(tmp_path / "t.db"), checkpoint_dir=str(tmp_path / "c"), **{option: value})
    assert not (tmp_path / "t.db").exists() and not (tmp_path / "c").exists()


def test_a_database_made_by_the_previous_release_is_upgraded_and_its_run_continues_inside_epochs(tmp_path):
    """``tests/data/release-0004`` was written by tracker at schema 0004 (commit d851a84): a run of
    three epochs, interrupted. Opening it migrates in place; the run resumes and checkpoints inside epochs."""
    shutil.copytree(RELEASE_0004, tmp_path / "old")
    db, ckpt = str(tmp_path / "old" / "tracker.db"), str(tmp_path / "old" / "checkpoints")
    engine = sa.create_engine(f"sqlite:///{db}")
    with engine.connect() as conn:
        assert conn.exec_driver_sql("SELECT version_num FROM alembic_version").scalar() == "0004"
    engine.dispose()

    run = tracker.track("old-run", db=db, checkpoint_dir=ckpt, monitor="loss", checkpoint_every_steps=10, save_on_signal=None)
    run.start()
    assert run.initial_epoch == 3 and run.resume_point.arrays["w"][0] == 2.0
    run.commit_step(StepValues(3, 10, 40, {}), _state(3.5), {}, step_rows=[StepValues(3, 10, 40, {"loss": 0.3})])
    run.finish("crashed")

    engine = sa.create_engine(f"sqlite:///{db}")
    with engine.connect() as conn:
        assert conn.exec_driver_sql("SELECT version_num FROM alembic_version").scalar() == migrate.HEAD
    engine.dispose()
    assert tracker.curves("old-run", db=db)["loss"] == [1.0, 0.5, 1 / 3]
    run = tracker.track("old-run", db=db, checkpoint_dir=ckpt, monitor="loss", save_on_signal=None)
    run.start()
    assert (run.initial_epoch, run.initial_batch) == (3, 10)
    run.finish("completed")


def test_the_stop_signal_handler_lives_only_inside_the_block_and_can_be_changed_or_disabled(db, ckpt):
    import signal

    def mine(signum, frame):
        pass

    previous = signal.signal(signal.SIGTERM, mine)
    try:
        with tracker.track("a", db=db, checkpoint_dir=ckpt, monitor="loss") as run:
            run.fit_started()
            assert signal.getsignal(signal.SIGTERM) == run._stops.received
        assert signal.getsignal(signal.SIGTERM) is mine
        with tracker.track("b", db=db, checkpoint_dir=ckpt, monitor="loss", save_on_signal=[signal.SIGUSR1, signal.SIGINT]) as run:
            run.fit_started()
            assert signal.getsignal(signal.SIGTERM) is mine and signal.getsignal(signal.SIGUSR1) == run._stops.received
        assert signal.getsignal(signal.SIGUSR1) == signal.SIG_DFL
        with tracker.track("c", db=db, checkpoint_dir=ckpt, monitor="loss", save_on_signal=None) as run:
            run.fit_started()
            assert signal.getsignal(signal.SIGTERM) is mine
    finally:
        signal.signal(signal.SIGTERM, previous)


def test_a_stop_signal_outside_training_stops_the_block_and_records_preempted(db, ckpt):
    import os
    import signal

    with pytest.raises(tracker.Preempted) as stopped:
        with tracker.track("r", db=db, checkpoint_dir=ckpt, monitor="loss") as run:
            run.commit_epoch(0, {"loss": 1.0}, _state(0), {})
            os.kill(os.getpid(), signal.SIGTERM)
    assert stopped.value.code == 143 and "SIGTERM" in str(stopped.value)
    store = open_store(db)
    attempts = store.attempts(store.get_run("r").id)
    store.close()
    assert [a.status for a in attempts] == ["preempted"]


def test_a_step_checkpoint_at_a_step_already_logged_and_flushed_is_committed(db, ckpt):
    """Found by crash_torture --mid-epoch: with log_every_steps=1 and checkpoint_every_steps=1, the per-step
    metrics flush (after STEP_FLUSH_SECONDS) can commit step s just before step s's checkpoint is handed
    over with no buffered rows; that checkpoint's commit then inserted step s a second time and failed
    (UNIQUE constraint ux_steps_live), ending the run."""
    run = _open(db, ckpt, checkpoint_every_steps=1, log_every_steps=1)
    at = StepValues(0, 1, 1, {"loss": 0.9})
    run.commit_step(at, None, None, step_rows=[at])  # the time-based flush of the logged step
    run.commit_step(StepValues(0, 1, 1, {}), _state(1), {})  # that step's checkpoint, no rows buffered
    run.finish("crashed")

    run = _open(db, ckpt)
    assert (run.initial_epoch, run.initial_batch) == (0, 1)
    run.finish("completed")
    assert tracker.curves("r", db=db, by="step") == {"step": [1], "epoch": [0], "loss": [0.9]}
