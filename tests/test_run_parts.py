"""The parts of a run fit together: one set of options behind `track` and `Run`, checked when they are made,
and the `TrainingRun` protocol that declares every member of the run the Keras adapter uses."""

from __future__ import annotations

import ast
import inspect
import signal
from pathlib import Path

import pytest

import tracker
from tracker.run.adapter import TrainingRun
from tracker.run.options import RunOptions
from tracker.run.reader import Reader

KERAS_ADAPTER = Path(__file__).resolve().parents[1] / "tracker" / "keras"


def _parameters(function: object, leave_out: tuple[str, ...] = ()) -> dict[str, object]:
    return {p.name: p.default for p in inspect.signature(function).parameters.values() if p.name not in leave_out}


def test_track_run_and_the_options_take_the_same_arguments_with_the_same_defaults():
    options = _parameters(RunOptions)
    assert _parameters(tracker.track) == options
    assert _parameters(tracker.Run, leave_out=("integration",)) == options


@pytest.mark.parametrize(
    ("arguments", "error", "message"),
    [
        ({"mode": "lowest"}, ValueError, "Invalid value for argument `mode`. Received: mode='lowest'. Expected 'auto', 'min' or 'max'."),
        ({"keep_last": 0}, ValueError,
         "Invalid value for argument `keep_last`. Received: keep_last=0. Expected an integer >= 1, or None to keep every checkpoint."),
        ({"keep_last_steps": True}, ValueError,
         "Invalid value for argument `keep_last_steps`. Received: keep_last_steps=True. Expected an integer >= 1, or None to keep every checkpoint."),
        ({"checkpoint_every_steps": 2.5}, ValueError,
         "Invalid value for argument `checkpoint_every_steps`. Received: checkpoint_every_steps=2.5. Expected an integer >= 1, "
         "or None for no checkpoint inside epochs."),
        ({"log_every_steps": -1}, ValueError,
         "Invalid value for argument `log_every_steps`. Received: log_every_steps=-1. Expected an integer >= 1, or None to log epochs only."),
        ({"checkpoint_every_seconds": 0}, ValueError,
         "Invalid value for argument `checkpoint_every_seconds`. Received: checkpoint_every_seconds=0. Expected a number of seconds > 0, or None."),
        ({"save_on_signal": signal.SIGKILL}, ValueError,
         "Invalid value for argument `save_on_signal`. Received: save_on_signal=<Signals.SIGKILL: 9>. "
         "Expected a signal such as signal.SIGTERM, a list of them, or None to not handle any."),
        ({"save_on_signal": [signal.SIGTERM, signal.SIGTERM]}, ValueError,
         "Invalid value for argument `save_on_signal`. Received: save_on_signal=[<Signals.SIGTERM: 15>, <Signals.SIGTERM: 15>]. "
         "SIGTERM is named twice: name each signal once."),
        ({"config": ["lr"]}, TypeError, "Invalid value for argument `config`. Received: list. Expected a dict of JSON-able hyperparameters."),
        ({"mode": "lowest", "keep_last": 0}, ValueError, "Received: mode='lowest'"),  # the first wrong argument is the one reported
    ],
    ids=["mode", "keep_last", "keep_last_steps-bool", "every_steps-float", "log_every_steps", "every_seconds", "sigkill",
         "signal-twice", "config", "order"],
)
def test_track_and_run_refuse_a_bad_option_with_the_same_error_before_touching_anything(tmp_path, arguments, error, message):
    for make in (tracker.track, tracker.Run):
        with pytest.raises(error) as caught:
            make("r", db=str(tmp_path / "t.db"), checkpoint_dir=str(tmp_path / "ckpt"), **arguments)
        assert message in str(caught.value)
    assert list(tmp_path.iterdir()) == []


def test_a_run_is_a_training_run_and_the_keras_adapter_uses_only_what_that_protocol_declares(db, ckpt):
    declared = {name for name in vars(TrainingRun) if not name.startswith("_")}
    used = set()
    for path in sorted(KERAS_ADAPTER.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            # `run.x` and `self.run.x`, in code only: the adapter's messages mention `run.callback` to the user.
            value = node.value if isinstance(node, ast.Attribute) else None
            if isinstance(value, ast.Name) and value.id == "run" or (
                isinstance(value, ast.Attribute) and value.attr == "run" and isinstance(value.value, ast.Name) and value.value.id == "self"
            ):
                used.add(node.attr)
    assert used, "found no use of the run in tracker/keras"
    assert used <= declared, f"the Keras adapter uses {sorted(used - declared)}, which TrainingRun does not declare"
    with tracker.track("r", db=db, checkpoint_dir=ckpt, monitor="loss", save_on_signal=None) as run:
        run.fit_started()
        assert isinstance(run, TrainingRun)
        assert all(hasattr(run, name) for name in declared)


def test_a_non_chief_worker_gets_the_read_only_variant(monkeypatch, db, ckpt):
    monkeypatch.setenv("TF_CONFIG", '{"cluster": {"worker": ["a:1", "b:2"]}, "task": {"type": "worker", "index": 1}}')
    for run in (tracker.track("r", db=db, checkpoint_dir=ckpt), tracker.Run("r", db=db, checkpoint_dir=ckpt)):
        assert isinstance(run, Reader) and isinstance(run, TrainingRun) and not run.is_writer
    monkeypatch.delenv("TF_CONFIG")
    assert tracker.track("r", db=db, checkpoint_dir=ckpt).is_writer


def test_stop_signals_put_back_exactly_the_handlers_that_were_there_even_when_caught_twice():
    from tracker.run.signals import StopSignals

    def mine(signum, frame):
        pass

    previous = signal.signal(signal.SIGUSR2, mine)
    try:
        stops = StopSignals("r", (signal.SIGUSR2,))
        stops.catch()
        stops.catch()
        assert signal.getsignal(signal.SIGUSR2) == stops.received
        stops.release()
        assert signal.getsignal(signal.SIGUSR2) is mine
    finally:
        signal.signal(signal.SIGUSR2, previous)
