"""KerasTuner searches whose trials are tracker runs: `track_tuner`.

Importing this package imports KerasTuner and Keras (``import tracker`` imports neither: the
``tracker.track_tuner`` export imports this package when it is called). Tested with keras-tuner 1.4.x
(``pip install 'tracker[keras-tuner]'``); every private KerasTuner name it uses is in
`tracker.keras.tuner.internals`.
"""

from tracker.keras.tuner.tracking import TunerTracking, TunerTrackingError, track_tuner

__all__ = ["TunerTracking", "TunerTrackingError", "track_tuner"]
