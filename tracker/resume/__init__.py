"""Continuing a crashed or stopped run: ``tracker resume`` and ``python -m tracker.resume`` (`tracker.resume.__main__`).

`plan_relaunch` builds the run's own training command, `rewind` moves its resume point back to an
epoch end, and `Relaunch.exec` becomes the training process.
"""

from tracker.resume.launch import Relaunch, launch_command, plan_relaunch, rewind

__all__ = ["Relaunch", "launch_command", "plan_relaunch", "rewind"]
