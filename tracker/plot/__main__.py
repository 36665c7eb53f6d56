"""``python -m tracker.plot``: the same as ``tracker plot`` (see `tracker.cli`), kept for existing scripts.

Exit status 0 on success, 1 with one ``error: ...`` line on stderr for anything `tracker.plot.plot`
rejects, 2 for usage errors.

Example:
    python -m tracker.plot cnn-a cnn-b -o curves.png
"""

from __future__ import annotations

import sys

from tracker.cli import run_command


def main(argv: list[str] | None = None) -> int:
    """Run ``python -m tracker.plot`` with ``argv`` (default: ``sys.argv[1:]``); return the exit status."""
    return run_command("plot", argv, prog="python -m tracker.plot")


if __name__ == "__main__":
    sys.exit(main())
