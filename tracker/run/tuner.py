"""`track_tuner`: the KerasTuner glue (`tracker.keras.tuner`), imported with KerasTuner and Keras only when called.

Beside `tracker.run.track`, the other place where the core reaches the Keras adapter, and for the same reason:
``import tracker`` must import no framework.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from tracker.keras.tuner import TunerTracking


def track_tuner(tuner: Any, name: str, *, seed_trials: bool = True, **track_options: Any) -> TunerTracking:
    """Track every trial of a KerasTuner search as a tracker run; running the script again continues the search.

    ``tracker.keras.tuner.track_tuner``, imported (with KerasTuner and Keras) only when called. Each trial's
    ``fit`` is the run ``<name>-<trial_id>`` with its hyperparameters as config; after a kill, the same script
    with KerasTuner's default ``overwrite=False`` skips completed trials and continues the interrupted one from
    its checkpoint, and the search ends as an uninterrupted one would.

    Example:
        ```python
        tuner = keras_tuner.RandomSearch(build, objective="val_loss", max_trials=20, seed=1, directory="kt", project_name="mlp")
        with tracker.track_tuner(tuner, "mlp"):
            tuner.search(x, y, epochs=20, validation_split=0.2)
        ```

    Args:
        tuner: A ``keras_tuner`` tuner (RandomSearch, GridSearch, BayesianOptimization; not Hyperband).
        name: The sweep's name; its trials are the runs ``<name>-<trial_id>``.
        seed_trials: Begin each trial with ``keras.utils.set_random_seed(oracle seed + trial number)``, so that a
            trial trains the same whatever ran or crashed before it. Defaults to True.
        **track_options: The options of `tracker.track` for every trial (not ``config``).
    """
    from tracker.keras.tuner import track_tuner as tracked

    return tracked(tuner, name, seed_trials=seed_trials, **track_options)
