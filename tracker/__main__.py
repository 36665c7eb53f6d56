"""``python -m tracker``: the same command line as the ``tracker`` console script (see `tracker.cli`).

Examples:
    python -m tracker                                   # the table of runs
    python -m tracker show cnn-baseline
    python -m tracker export cnn-baseline -o cnn-baseline.csv
"""

from __future__ import annotations

import sys

from tracker.cli import main

__all__ = ["main"]

if __name__ == "__main__":
    sys.exit(main())
