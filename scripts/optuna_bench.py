"""Epochs retrained by an Optuna search under one kill schedule: `tracker.track_optuna` against stock Optuna.

Both searches are the same study (``tests/child_optuna.py``: RDB storage on SQLite with ``heartbeat_interval=1``,
``grace_period=2`` and ``RetryFailedTrialCallback``, a ``MedianPruner`` asked at every epoch, one enqueued trial
per ``--units`` value, a tiny seeded Keras model), run as real processes and SIGKILLed by this script under the
same schedule, then launched again (after Optuna's grace period) until the study is done:

- **stock**: what Optuna offers, a retried trial trains from epoch 0, reporting each epoch's logged value
  (as optuna-integration's Keras pruning callback does);
- **tracker**: each trial inside ``tracker.track_optuna``, so a retried trial resumes its run.

A kill ``T:E`` lands as (original) trial ``T`` begins epoch ``E``, the first time any attempt of it gets there;
every kill of the schedule is reachable in both searches when a trial's kills go up in epoch. An epoch counts as
trained when it ends; an epoch trained again is one that ended before in an earlier attempt. The script also
checks that both searches end with the same value for each trial (the stock retrain is from scratch, so equal
values mean the resumed trials ended where uninterrupted ones do).

    python -m scripts.optuna_bench                       # 4 trials x 6 epochs, kills 0:2,2:5,3:1,0:4
    python -m scripts.optuna_bench --epochs 10 --kills 1:8,1:9

`compare` returns the figures, for a row of ``python -m scripts.bench``.
"""

from __future__ import annotations

import argparse
import collections
import dataclasses
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.support.children import child_env  # noqa: E402

CHILD = ROOT / "tests" / "child_optuna.py"
#: The child's grace_period (2 s), and a margin: by the next launch the killed trial is stale.
GRACE_WAIT = 2.5


@dataclasses.dataclass
class Search:
    """One search's figures."""

    variant: str
    trained: int  # epochs that ended, over every attempt
    needed: int  # trials x epochs
    kills: list[tuple[int, int]]
    launches: int
    wall_s: float
    values: dict[int, float]  # each original trial's final value

    @property
    def retrained(self) -> int:
        return self.trained - self.needed


def search(variant: str, folder: Path, units: list[int], epochs: int, kills: list[tuple[int, int]]) -> Search:
    """Run the study ``variant`` (``stock`` or ``tracker``) in ``folder`` to its end under the kill schedule."""
    folder.mkdir(parents=True)
    storage = f"sqlite:///{folder / 'optuna.db'}"
    command = [sys.executable, str(CHILD), storage, str(epochs), "--units", ",".join(map(str, units))]
    if variant == "stock":
        command.append("--stock")
    env = child_env(TRACKER_DB=str(folder / "tracker.db"), TRACKER_CHECKPOINT_DIR=str(folder / "ckpt"), CHILD_ANNOUNCE_EPOCHS="1")
    pending, fired = list(kills), []
    ends: collections.Counter[tuple[int, int]] = collections.Counter()
    launches, started = 0, time.monotonic()
    while True:
        launches += 1
        proc = subprocess.Popen(command, env=env, cwd=folder, stderr=subprocess.PIPE, text=True)
        killed, tail = False, collections.deque(maxlen=30)
        for line in proc.stderr:
            tail.append(line)
            if not line.startswith("CHILD-EPOCH "):
                continue
            _, what, trial, epoch = line.split()
            at = (int(trial), int(epoch))
            if what == "end":
                ends[at] += 1
            elif at in pending:
                proc.kill()
                pending.remove(at)
                fired.append(at)
                killed = True
                break
        rc = proc.wait(timeout=300)
        if not killed:
            if rc != 0:
                raise RuntimeError(f"{variant}: the child exited with {rc}:\n{''.join(tail)}")
            break
        time.sleep(GRACE_WAIT)
    wall = time.monotonic() - started
    if pending:
        raise RuntimeError(f"{variant}: kills {pending} were never reached; each trial's kills must go up in epoch")
    return Search(variant, sum(ends.values()), len(units) * epochs, fired, launches, wall, _values(storage))


def _values(storage: str) -> dict[int, float]:
    import warnings

    import optuna

    from tracker.search.optuna_study import original_number

    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    study = optuna.load_study(study_name="s", storage=storage)
    return {original_number(t): t.value for t in study.get_trials(states=(optuna.trial.TrialState.COMPLETE,))}


def compare(folder: Path, units: list[int], epochs: int, kills: list[tuple[int, int]]) -> tuple[Search, Search]:
    """Both searches under the same schedule, stock first."""
    return tuple(search(variant, folder / variant, units, epochs, kills) for variant in ("stock", "tracker"))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m scripts.optuna_bench", description=__doc__.splitlines()[0])
    parser.add_argument("--units", default="2,3,4,5", help="one trial per value (default 2,3,4,5)")
    parser.add_argument("--epochs", type=int, default=6, help="epochs per trial (default 6)")
    parser.add_argument("--kills", default="0:2,2:5,3:1,0:4", help="TRIAL:EPOCH,... (default 0:2,2:5,3:1,0:4)")
    args = parser.parse_args(argv)
    units = [int(u) for u in args.units.split(",")]
    kills = [(int(t), int(e)) for t, e in (k.split(":") for k in args.kills.split(","))]
    with tempfile.TemporaryDirectory(prefix="optuna-bench-") as tmp:
        stock, tracked = compare(Path(tmp), units, args.epochs, kills)
    print(f"{len(units)} trials x {args.epochs} epochs, SIGKILL as trial:epoch begins: {args.kills}")
    print(f"{'search':<10}{'epochs trained':>16}{'needed':>8}{'retrained':>11}{'kills':>7}{'launches':>10}{'wall s':>9}")
    for s in (stock, tracked):
        print(f"{s.variant:<10}{s.trained:>16}{s.needed:>8}{s.retrained:>11}{len(s.kills):>7}{s.launches:>10}{s.wall_s:>9.1f}")
    print(f"retrained epochs, tracker / stock: {tracked.retrained} / {stock.retrained}; "
          f"wall time tracker / stock: {tracked.wall_s / stock.wall_s:.2f}x")
    same = stock.values == tracked.values
    print(f"each trial's final value the same in both searches: {'yes' if same else 'NO'}")
    for number in sorted(stock.values.keys() | tracked.values.keys()):
        print(f"  trial {number}: stock {stock.values.get(number)!r}  tracker {tracked.values.get(number)!r}")
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
