"""``python -m tracker.resume RUN``: the same as ``tracker resume`` (see `tracker.cli`), kept for existing scripts.

Examples:
    python -m tracker.resume cnn-baseline
    python -m tracker.resume cnn-baseline --check
    python -m tracker.resume cnn-baseline --from-epoch 7
"""

from __future__ import annotations

import sys

from tracker.cli import run_command


def main(argv: list[str] | None = None) -> int:
    """Run ``python -m tracker.resume`` with ``argv`` (default: ``sys.argv[1:]``); return the exit status."""
    return run_command("resume", argv, prog="python -m tracker.resume")


if __name__ == "__main__":
    sys.exit(main())
