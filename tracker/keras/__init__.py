"""The Keras adapter: a callback, and the patch of ``Model.fit`` that `tracker.track` installs.

It depends on the framework-free core (`tracker.run`) one way: nothing in the core imports it.
Importing this package imports Keras.
"""

from tracker.keras.adapter import StepTracker, TrackerCallback, callback_for, metric_direction, patch_fit

__all__ = ["StepTracker", "TrackerCallback", "callback_for", "metric_direction", "patch_fit"]
