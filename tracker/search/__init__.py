"""Hyperparameter searches whose trials are tracker runs: `sweep`, and what it searches (`tracker.search.space`).

The KerasTuner and Optuna glue lives beside the Keras adapter (`tracker.keras`), as it needs Keras.
"""

from tracker.search.space import choice, loguniform, randint, uniform
from tracker.search.sweep import SweepError, Trial, sweep, sweep_trials

__all__ = ["SweepError", "Trial", "choice", "loguniform", "randint", "sweep", "sweep_trials", "uniform"]
