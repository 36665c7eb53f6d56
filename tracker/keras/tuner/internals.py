"""Every touch of private KerasTuner API that `tracker.track_tuner` relies on, each behind a named function.

Each function here is pinned by a test in ``tests/test_tuner_internals.py`` against the installed
keras-tuner (1.4.x), and no other module of `tracker.keras.tuner` reads a private KerasTuner name
(a test checks that too): a KerasTuner upgrade means reading this one file.

What KerasTuner 1.4.8 does that these functions lean on:

- every state file (``oracle.json``, each ``trial_*/trial.json``, ``<tuner_id>.json``, the build
  config) is written by ``keras_tuner.src.utils.save_json``, in place, through ``Stateful.save``;
- the trial's best-epoch weights are written by ``SaveBestEpoch._save_model``, a callback that
  ``Tuner.run_trial`` makes for each trial and whose ``best_value`` starts at ``inf`` (``-inf``);
- ``Oracle.reload`` sends the trials that were ongoing to ``_retry_queue``, which
  ``create_trial`` pops with their saved hyperparameters; ``_record_values`` marks a set of values
  as tried, so that the random draw skips it;
- ``BaseTuner.__init__`` reloads a project only once ``<tuner_id>.json`` exists
  (``_get_tuner_fname``), which is first written when the first trial ends.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import keras_tuner
from keras_tuner.src import utils as kt_utils
from keras_tuner.src.distribute import utils as dist_utils
from keras_tuner.src.engine import tuner_utils

#: The callback class whose saves are a trial's ``checkpoint.weights.h5``.
SaveBestEpoch = tuner_utils.SaveBestEpoch


def replace_save_json(replacement: Callable[[Callable[[str, Any], str], str, Any], str]) -> Callable[[], None]:
    """Route every KerasTuner state-file write through ``replacement(original, path, obj)``; returns the undo.

    Example:
        ```python
        undo = replace_save_json(lambda original, path, obj: original(path, obj))
        ```
    """
    original = kt_utils.save_json

    def save_json(path: str, obj: Any) -> str:
        return replacement(original, path, obj)

    kt_utils.save_json = save_json

    def undo() -> None:
        kt_utils.save_json = original

    return undo


def replace_best_epoch_save(replacement: Callable[[Any, Callable[[], None]], None]) -> Callable[[], None]:
    """Route every ``SaveBestEpoch`` weight save through ``replacement(callback, original)``; returns the undo."""
    original = SaveBestEpoch._save_model

    def _save_model(callback: Any) -> None:
        replacement(callback, lambda: original(callback))

    SaveBestEpoch._save_model = _save_model

    def undo() -> None:
        SaveBestEpoch._save_model = original

    return undo


def is_multi_worker() -> bool:
    """Whether this process is part of KerasTuner's chief/worker (gRPC) search, which track_tuner does not cover."""
    return bool(dist_utils.has_chief_oracle())


def tuner_file(tuner: keras_tuner.Tuner) -> str:
    """The tuner's own state file, ``<project>/<tuner_id>.json``: its presence makes KerasTuner reload a project."""
    return tuner._get_tuner_fname()


def oracle_file(oracle: keras_tuner.Oracle) -> str:
    """The oracle's state file, ``<project>/oracle.json``."""
    return oracle._get_oracle_fname()


def retry_queue(oracle: keras_tuner.Oracle) -> list[str]:
    """The ids of the trials the oracle hands out again before any new one (the list itself, to change in place)."""
    return oracle._retry_queue


def count_run(oracle: keras_tuner.Oracle, trial_id: str) -> None:
    """Count one more finished run of ``trial_id``, as ``Oracle.end_trial`` does (it bounds the retries)."""
    oracle._run_times[trial_id] += 1


def mark_tried(oracle: keras_tuner.Oracle, trial: keras_tuner.engine.trial.Trial) -> None:
    """Record the trial's values as tried, as ``create_trial`` does: the random draw then skips them."""
    oracle._record_values(trial)


def drop_observations_from(trial: keras_tuner.engine.trial.Trial, step: int) -> None:
    """Forget what the trial reported to the oracle at ``step`` and after: a resumed fit reports those epochs again."""
    for history in trial.metrics.metrics.values():
        for at in [s for s in history._observations if s >= step]:
            del history._observations[at]
