"""`track_tuner`: a KerasTuner search whose every trial is a tracker run, so that a kill costs no trial its progress.

While the context is active, each trial KerasTuner runs is tracked exactly as
``tracker.track(f"{name}-{trial.trial_id}", config=trial.hyperparameters.values, **track_options)``
would track it; the trials form the sweep ``name`` (kind ``keras-tuner``) in tracker's database; and
KerasTuner's own state files are written durably (`tracker.keras.tuner.state_files`).

How each piece reaches KerasTuner: the tuner's public hooks ``run_trial``, ``on_trial_begin`` and
``on_trial_end`` are wrapped on this one tuner object; ``Model.fit`` is wrapped for the length of each
trial (`tracker.keras.tuner.whole_run`); the private names are in `tracker.keras.tuner.internals`.
Everything is put back as the context exits.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import ExitStack
from types import TracebackType
from typing import Any

import keras
import keras_tuner

from tracker import settings
from tracker.errors import TrackerError
from tracker.keras.tuner import internals
from tracker.keras.tuner.registry import Registry, params_of
from tracker.keras.tuner.reload import finish_reload
from tracker.keras.tuner.state_files import StateFiles
from tracker.keras.tuner.whole_run import whole_run
from tracker.run.options import RunOptions
from tracker.run.track import track
from tracker.store import open_store

_HOOKS = ("run_trial", "on_trial_begin", "on_trial_end")


class TunerTrackingError(TrackerError, keras_tuner.errors.FatalError):
    """A trial's run could not be tracked (its run is held by another live process, its checkpoint cannot be
    read, ...). It is a KerasTuner ``FatalError``, so the search stops instead of recording the trial as failed."""


def track_tuner(tuner: keras_tuner.Tuner, name: str, *, seed_trials: bool = True, **track_options: Any) -> TunerTracking:
    """Track every trial of a KerasTuner search as a tracker run; running the script again continues the search.

    Each trial's ``fit`` is tracked as the run ``<name>-<trial_id>`` with the trial's hyperparameters as its
    config, exactly as ``tracker.track(run_name, config=trial.hyperparameters.values, **track_options)``
    would track it; its best epoch is KerasTuner's (the monitor defaults to the tuner's objective, in its
    direction). After a kill (SIGKILL, OOM, a lost machine), run the same script again, with KerasTuner's
    default ``overwrite=False``:

    - completed trials are not run again;
    - the trial that was running continues from its newest tracker checkpoint, with the same
      hyperparameters, and KerasTuner gets the whole run's curve: the trial's score, best step and
      best-epoch weights (``checkpoint.weights.h5``) are those of an uninterrupted trial;
    - with ``seed_trials`` (the default), each trial begins with ``keras.utils.set_random_seed(oracle seed
      + trial number)``, so a trial trains the same whatever ran or crashed before it in the process.
      Under the backend's determinism settings (``tf.config.experimental.enable_op_determinism()`` on
      TensorFlow) the search then ends with the same trials, the same best hyperparameters and the same
      best score as one that was never killed, each trial's curve bit for bit;
    - KerasTuner's own files (``oracle.json``, ``trial.json``, the tuner's file, the trials' weights) are
      replaced whole, never left half-written, and a kill between two of them is mended as the context
      opens (`tracker.keras.tuner.reload`).

    The trials form the sweep ``name`` (kind ``keras-tuner``): ``tracker.runs()`` entries name it
    (``sweep``, ``trial``), and ``tracker sweep show NAME`` lists the trials with their params, status
    and score, best first.

    Not covered: KerasTuner's multi-worker (chief/worker over gRPC) search; ``Hyperband``, whose trials
    continue other trials' weights from a later epoch; ``executions_per_trial`` other than 1 (one tracked
    ``fit`` per trial); a trial that calls ``fit`` more than once. Each is refused before any trial runs,
    except the last, which fails its trial.

    Example:
        ```python
        import keras_tuner
        import tracker

        def build(hp):
            model = keras.Sequential([keras.Input((8,)), keras.layers.Dense(hp.Int("units", 4, 32), "relu"), keras.layers.Dense(1)])
            model.compile(keras.optimizers.Adam(hp.Float("lr", 1e-4, 1e-1, sampling="log")), "mse")
            return model

        tuner = keras_tuner.RandomSearch(build, objective="val_loss", max_trials=20, seed=1,
                                         directory="kt", project_name="mlp")
        with tracker.track_tuner(tuner, "mlp"):
            tuner.search(x, y, epochs=30, validation_split=0.2)
        best = tuner.get_best_hyperparameters()[0]
        ```

    Args:
        tuner: A KerasTuner ``Tuner`` (``RandomSearch``, ``BayesianOptimization``, ``GridSearch``, or a
            subclass of ``Tuner``), constructed as usual; with ``overwrite=False`` (KerasTuner's default) it has
            reloaded its project already.
        name: The sweep's name, and the prefix of its trials' run names.
        seed_trials: Seed Keras's global random generators as each trial begins (see above). Defaults to True.
        **track_options: The options of `tracker.track` (``db``, ``checkpoint_dir``, ``monitor``, ``mode``,
            ``keep_last``, step options, ...) for every trial; not ``config``, which is the trial's hyperparameters.

    Returns:
        A context manager; the search runs inside it.

    Raises:
        TypeError: ``tuner`` is not a KerasTuner ``Tuner``, or an option is not one of `tracker.track`'s.
        ValueError: A tuner or option this does not cover, or a bad name (all before any trial runs); on
            entering, a sweep of that name that is another search.
    """
    return TunerTracking(tuner, name, seed_trials=seed_trials, track_options=track_options)


class TunerTracking:
    """The context `track_tuner` returns: its hooks, patches and sweep rows, installed on entry and taken back on exit."""

    def __init__(self, tuner: keras_tuner.Tuner, name: str, *, seed_trials: bool, track_options: dict[str, Any]) -> None:
        _check(tuner, name, track_options)
        self.tuner = tuner
        self.name = name
        self.seed_trials = seed_trials
        self.options = {**_monitor_of(tuner.oracle.objective), **track_options}
        self._stack: ExitStack | None = None
        self._registry: Registry | None = None
        self._hooks: dict[str, Callable[..., Any]] = {}
        #: The attempt that trained each trial in this process, which its outcome is recorded for.
        self._attempts: dict[str, int | None] = {}

    def __enter__(self) -> TunerTracking:
        with ExitStack() as stack:
            stack.callback(StateFiles(self.tuner.project_dir).install())
            finish_reload(self.tuner)
            store = open_store(self.options.get("db"))
            stack.callback(store.close)
            self._registry = Registry(store, self.name, self.tuner)
            self._registry.open()
            stack.callback(self._install_hooks())
            self._stack = stack.pop_all()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        stack, self._stack = self._stack, None
        if stack is not None:
            stack.close()

    def _install_hooks(self) -> Callable[[], None]:
        own = {hook: vars(self.tuner)[hook] for hook in _HOOKS if hook in vars(self.tuner)}  # a hook set on the object itself
        self._hooks = {hook: getattr(self.tuner, hook) for hook in _HOOKS}
        self.tuner.run_trial = self._run_trial
        self.tuner.on_trial_begin = self._on_trial_begin
        self.tuner.on_trial_end = self._on_trial_end

        def undo() -> None:
            for hook in _HOOKS:
                if hook in own:
                    setattr(self.tuner, hook, own[hook])
                else:
                    delattr(self.tuner, hook)

        return undo

    def _on_trial_begin(self, trial: Any) -> None:
        self._require().begin(trial)
        self._hooks["on_trial_begin"](trial)

    def _on_trial_end(self, trial: Any) -> None:
        self._hooks["on_trial_end"](trial)  # KerasTuner scores the trial and saves its state here
        self._require().end(trial, self._attempts.get(trial.trial_id))

    def _run_trial(self, trial: Any, *args: Any, **kwargs: Any) -> Any:
        registry = self._require()
        run_name = registry.run_name(trial)
        if self.seed_trials:
            keras.utils.set_random_seed(int(self.tuner.oracle.seed) + registry.number(trial))
        try:
            with track(run_name, config=params_of(trial), **self.options) as run:
                self._attempts[trial.trial_id] = run.attempt_id
                # What this trial reported at the epochs the resume trains again, it reports again.
                internals.drop_observations_from(trial, run.initial_epoch)
                try:
                    with whole_run(run):
                        return self._hooks["run_trial"](trial, *args, **kwargs)
                except TrackerError:
                    raise
                except Exception as e:
                    registry.failed(trial, run.attempt_id, f"{type(e).__name__}: {e}")
                    raise
        except TrackerError as e:
            raise TunerTrackingError(f"KerasTuner trial {trial.trial_id} (run {run_name!r}) cannot be tracked: {e}") from e

    def _require(self) -> Registry:
        if self._registry is None:
            raise TrackerError("track_tuner(...) is not active: use it as `with tracker.track_tuner(tuner, name):`.")
        return self._registry


def _monitor_of(objective: Any) -> dict[str, Any]:
    # A single metric named by the objective becomes the run's monitor, in the objective's direction; a
    # sum of several (MultiObjective) or a value returned by run_trial (DefaultObjective) leaves tracker's default.
    if type(objective) is keras_tuner.Objective:
        return {"monitor": objective.name, "mode": objective.direction}
    return {}


def _check(tuner: Any, name: Any, track_options: dict[str, Any]) -> None:
    if not isinstance(tuner, keras_tuner.Tuner):
        raise TypeError(
            f"Invalid value for argument `tuner`. Received: {type(tuner).__name__}. Expected a keras_tuner.Tuner, "
            "such as keras_tuner.RandomSearch(...)."
        )
    settings.validate_run_name(name)
    if isinstance(tuner, keras_tuner.Hyperband):
        raise ValueError(
            "track_tuner does not cover Hyperband: its trials continue other trials' weights from a later epoch "
            "(tuner/initial_epoch), which a new tracker run cannot start at. Received: a Hyperband tuner. "
            "Expected RandomSearch, BayesianOptimization, GridSearch or another Tuner."
        )
    executions = getattr(tuner, "executions_per_trial", 1)
    if executions != 1:
        raise ValueError(
            f"track_tuner tracks one fit per trial. Received: executions_per_trial={executions}. Expected 1."
        )
    if internals.is_multi_worker() or getattr(tuner.oracle, "multi_worker", False):
        raise ValueError(
            "track_tuner does not cover KerasTuner's multi-worker search (KERASTUNER_ORACLE_IP is set, or the tuner's "
            "distribution strategy is multi-worker). Run the search in one process."
        )
    if "config" in track_options:
        raise ValueError("track_tuner sets each trial's config to its hyperparameters; pass no config=.")
    try:
        # The options, and a trial run name of the longest likely length, before any trial.
        RunOptions(f"{name}-{'0' * len(str(tuner.oracle.max_trials or 1))}", **track_options)
    except TypeError as e:
        if "unexpected keyword" in str(e):
            known = ", ".join(f for f in RunOptions.__dataclass_fields__ if f not in ("name", "config"))
            raise TypeError(f"track_tuner() got an option that tracker.track does not take: {e}. Expected any of: {known}.") from None
        raise
