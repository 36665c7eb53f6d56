"""How the tests start the repository's scripts: ``python -m scripts.NAME``, from any working folder."""

from __future__ import annotations

import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def script_command(name: str, *args: str) -> list[str]:
    """The command line that runs ``scripts/NAME.py`` (or the package ``scripts/NAME/``) as a module.

    Example:
        >>> script_command("sweep_bench", "--help")[1:]
        ['-m', 'scripts.sweep_bench', '--help']
    """
    return [sys.executable, "-m", f"scripts.{name}", *args]


def script_env(**extra: str) -> dict[str, str]:
    """This process's environment with the repository root first on ``PYTHONPATH``, where ``-m scripts.NAME`` looks.

    Example:
        >>> script_env(KERAS_BACKEND="jax")["PYTHONPATH"].split(os.pathsep)[0] == str(ROOT)
        True
    """
    path = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p)
    return {**os.environ, "PYTHONPATH": path, **extra}
