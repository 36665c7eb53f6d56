"""Warnings that point at the user's own line, however deep in a framework tracker notices the problem.

A warning raised from a callback deep inside ``fit`` would otherwise name a line of
Keras or of tracker, which tells the user nothing.

Example:
    >>> warn_user("monitor 'val_acc' is not among the metrics")     # doctest: +SKIP
    train.py:12: UserWarning: monitor 'val_acc' is not among the metrics
"""

from __future__ import annotations

import sys
import warnings

# Frames of these packages are never the user's line.
_NOT_THE_USER = frozenset({"tracker", "keras", "tensorflow", "jax", "torch", "contextlib", "functools", "threading"})


def warn_user(message: str, category: type[Warning] = UserWarning) -> None:
    """``warnings.warn(message)``, attributed to the innermost frame outside tracker and the ML frameworks."""
    frame, level = sys._getframe(1), 2
    while frame.f_back is not None and frame.f_globals.get("__name__", "").partition(".")[0] in _NOT_THE_USER:
        frame, level = frame.f_back, level + 1
    warnings.warn(message, category, stacklevel=level)
