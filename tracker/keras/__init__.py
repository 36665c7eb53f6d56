"""The Keras adapter: a callback, and the patch of ``Model.fit`` that `tracker.track` installs.

It depends on the framework-free core (`tracker.run`) one way: nothing in the core imports it.
Importing this package imports Keras. Each private Keras API it uses is in `tracker.keras.internals`.
"""

from tracker.keras.callback import StepTracker, TrackerCallback, callback_for, metric_direction
from tracker.keras.fit import patch_fit

__all__ = ["StepTracker", "TrackerCallback", "callback_for", "metric_direction", "patch_fit"]
