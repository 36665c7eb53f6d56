"""The README's demo: train, SIGKILL mid-run, resume with ``tracker resume``, plot with ``tracker plot``.

It ends by printing the ``python -m tracker.serve`` command that shows the run in a browser.

Everything it does is a real command, printed before it runs; the output goes
to ``demo-out/``. Usage:

    python scripts/demo.py
"""

from __future__ import annotations

import os
import random
import shlex
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import tracker

RUN = "demo-cnn"
EPOCHS = 12
KILL_AFTER = 4  # committed epochs before the kill


def tracker_command() -> list[str]:
    """The ``tracker`` console script of this interpreter's environment, else the same command as ``python -m tracker``."""
    script = Path(sys.executable).with_name("tracker")
    return [str(script)] if script.is_file() else [sys.executable, "-m", "tracker"]


def step(title: str) -> None:
    print(f"\n=== {title}", flush=True)


def run(*command: str, env: dict[str, str]) -> None:
    print("$ " + shlex.join(command), flush=True)
    subprocess.run(command, env=env, check=True)


def committed(db: str) -> int:
    try:
        return len(tracker.curves(RUN, db=db)["epoch"])
    except tracker.TrackerError:
        return 0  # no database or no run yet


def main() -> int:
    out = Path("demo-out").absolute()
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir()
    db = str(out / "tracker.db")
    env = {**os.environ, "TRACKER_DB": db, "TRACKER_CHECKPOINT_DIR": str(out / "checkpoints")}
    train = [sys.executable, "scripts/demo_train.py", "--run", RUN, "--epochs", str(EPOCHS)]

    step(f"1. Train {RUN} for {EPOCHS} epochs; SIGKILL it at a random instant after epoch {KILL_AFTER - 1} commits")
    print("$ " + shlex.join(train), flush=True)
    child = subprocess.Popen(train, env=env)
    while committed(db) < KILL_AFTER:
        if child.poll() is not None:
            raise SystemExit(f"training exited early with status {child.returncode}")
        time.sleep(0.2)
    time.sleep(random.uniform(0.0, 1.5))  # somewhere inside the next epoch, maybe inside its write
    child.send_signal(signal.SIGKILL)
    child.wait()
    print(f"*** killed pid {child.pid} with SIGKILL; {committed(db)} epochs were committed", flush=True)

    cli = tracker_command()
    step("2. The run shows as crashed; check its resume point")
    run(*cli, "list", env=env)
    run(*cli, "resume", RUN, "--check", env=env)

    step("3. Resume it: same script, weights, optimizer state and epoch counter")
    run(*cli, "resume", RUN, env=env)

    step("4. Plot the curve, with the resume point marked")
    run(*cli, "plot", RUN, "-o", str(out / "curves.png"), env=env)
    curve = tracker.curves(RUN, db=db)
    ok = curve["epoch"] == list(range(EPOCHS))
    print(f"\ncurve epochs: {curve['epoch']} -> {'no gap, no duplicate' if ok else 'WRONG'}")
    print(f"final val_accuracy {curve['val_accuracy'][-1]:.3f}; plot: {out / 'curves.png'}")
    print("\nWatch it in the browser (the crash, the resume mark, the attempts), then open the URL it prints:")
    print("  " + shlex.join([sys.executable, "-m", "tracker.serve", "--db", db]))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
