"""Epochs retrained after the same SIGKILLs: ``tracker.track_tuner`` against stock KerasTuner's reload.

Usage: python -m scripts.tuner_bench [--epochs N] [--max-trials N] [--kills T:E,T:E | --random K] [--seed S]

The search is ``tests/child_tuner.py`` (a seeded RandomSearch of a tiny MLP, under torch), run four
ways, each in real child processes: stock KerasTuner (``overwrite=False``, its default) and
``track_tuner``, each once uninterrupted and once under the kill schedule. A kill ``T:E`` sends
SIGKILL the moment the child reports that trial T finished epoch E (KerasTuner's ``on_epoch_end``,
which runs before tracker's commit of that epoch: the kill lands wherever the child is then), and the
search is started again, until it completes. ``--random K`` draws K kills from ``--seed``; both ways get
the same schedule. Retrained epochs are the epochs trained in all launches beyond trials x epochs.
Also printed: each way's best score against its own uninterrupted search.

Row 11c of ``python -m scripts.bench`` runs the same search (`search`) under its kill schedule.
"""

from __future__ import annotations

import argparse
import json
import random
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CHILD = ROOT / "tests" / "child_tuner.py"
#: The kills of the bench row and of the command line by default.
DEFAULT_KILLS = "1:2,2:3"


@dataclass(frozen=True)
class Outcome:
    """One search under one kill schedule: what it trained and how it ended."""

    #: Every epoch trained, ``(trial_id, epoch)``, over all launches.
    trained: Counter
    launches: int
    seconds: float
    best_score: float
    best_values: dict
    trials: dict

    def retrained(self, epochs: int, max_trials: int) -> int:
        return sum(self.trained.values()) - epochs * max_trials

    def restarted(self) -> int:
        """Trials that trained their epoch 0 more than once: run again from the start."""
        return sum(1 for (_, epoch), n in self.trained.items() if epoch == 0 and n > 1)


def _env(directory: Path) -> dict[str, str]:
    import os

    env = {k: v for k, v in os.environ.items() if not k.startswith(("TRACKER_", "CHILD_"))}
    env.update(PYTHONPATH=str(ROOT), TRACKER_DB=str(directory / "t.db"), TRACKER_CHECKPOINT_DIR=str(directory / "ckpt"))
    return env


def search(directory: Path, kills: list[tuple[str, int]], *, stock: bool, epochs: int, max_trials: int) -> Outcome:
    """Run the search in ``directory``, SIGKILLing it at each of ``kills`` in turn, then to its end."""
    directory.mkdir(parents=True)
    out = directory / "out.json"
    argv = [sys.executable, str(CHILD), str(directory), str(out), "--epochs", str(epochs), "--max-trials", str(max_trials)]
    argv += ["--stock"] if stock else []
    trained: Counter = Counter()
    pending = list(kills)
    launches = 0
    start = time.perf_counter()
    while True:
        launches += 1
        kill = pending.pop(0) if pending else None
        proc = subprocess.Popen(argv, env=_env(directory), cwd=directory, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        killed = False
        tail: list[str] = []
        for line in proc.stderr:
            if line.startswith("CHILD-EPOCH"):
                _, trial_id, epoch = line.split()
                trained[(trial_id, int(epoch))] += 1
                if kill == (trial_id, int(epoch)):
                    proc.send_signal(signal.SIGKILL)
                    killed = True
                    break
            else:
                tail = [*tail[-20:], line]
        proc.stderr.close()
        code = proc.wait(timeout=600)
        if killed:
            continue
        if code != 0:
            raise RuntimeError(f"{' '.join(argv)} exited with {code}:\n{''.join(tail)}")
        if kill is not None:
            raise RuntimeError(f"the search ended without reaching the kill at trial {kill[0]} epoch {kill[1]}")
        break
    result = json.loads(out.read_text())
    return Outcome(trained, launches, time.perf_counter() - start, result["best"]["score"], result["best"]["values"], result["trials"])


def schedule(kills: str | None, n_random: int | None, seed: int, epochs: int, max_trials: int) -> list[tuple[str, int]]:
    """The kills as ``(trial_id, epoch)``, in the order the search reaches them (trial ids are KerasTuner's, unpadded here)."""
    width = len(str(max_trials))
    if n_random:
        rng = random.Random(seed)
        picked = rng.sample([(t, e) for t in range(max_trials) for e in range(epochs)], n_random)
    else:
        picked = [tuple(int(p) for p in k.split(":")) for k in (kills or DEFAULT_KILLS).split(",")]
    for t, e in picked:
        if not (0 <= t < max_trials and 0 <= e < epochs):
            raise ValueError(f"Invalid kill {t}:{e}. Expected TRIAL:EPOCH with TRIAL < {max_trials} and EPOCH < {epochs}.")
    return [(f"{t:0{width}d}", e) for t, e in sorted(picked)]


def measure(workdir: Path, kills: list[tuple[str, int]], *, epochs: int = 6, max_trials: int = 4) -> dict[str, Outcome]:
    """The four searches: ``stock``/``tracker``, each ``-clean`` (uninterrupted) and ``-killed`` (under ``kills``)."""
    found = {}
    for way in ("stock", "tracker"):
        for kind, schedule_ in (("clean", []), ("killed", kills)):
            found[f"{way}-{kind}"] = search(workdir / f"{way}-{kind}", schedule_, stock=way == "stock", epochs=epochs, max_trials=max_trials)
    return found


def report(found: dict[str, Outcome], kills: list[tuple[str, int]], epochs: int, max_trials: int) -> list[str]:
    where = ", ".join(f"trial {t} epoch {e}" for t, e in kills)
    lines = [f"epochs retrained after the same SIGKILLs ({max_trials} trials x {epochs} epochs; killed after {where}):"]
    for way, label in (("stock", "stock KerasTuner (overwrite=False reload)"), ("tracker", "tracker.track_tuner")):
        killed, clean = found[f"{way}-killed"], found[f"{way}-clean"]
        same = killed.best_score == clean.best_score and killed.best_values == clean.best_values
        scores = all(killed.trials[t]["score"] == clean.trials[t]["score"] for t in clean.trials)
        lines.append(
            f"  {label:<42} retrained {killed.retrained(epochs, max_trials):>3} epochs in {killed.launches} launches, "
            f"{killed.restarted()} trials restarted from epoch 0; best score {killed.best_score:.6g} vs "
            f"{clean.best_score:.6g} uninterrupted ({'identical' if same else 'differs'}; every trial's score "
            f"{'identical' if scores else 'not identical'}); {killed.seconds:.0f} s vs {clean.seconds:.0f} s"
        )
    ours, theirs = (found[f"{w}-killed"].retrained(epochs, max_trials) for w in ("tracker", "stock"))
    lines.append(f"  retrained epochs, tracker / stock: {ours}/{theirs}" + (f" = {ours / theirs:.2f}" if theirs else ""))
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m scripts.tuner_bench", description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument("--max-trials", type=int, default=4)
    parser.add_argument("--kills", help=f"TRIAL:EPOCH,... (default {DEFAULT_KILLS}): SIGKILL once that trial reports that epoch")
    parser.add_argument("--random", type=int, metavar="K", help="K kills drawn from --seed instead")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    try:
        kills = schedule(args.kills, args.random, args.seed, args.epochs, args.max_trials)
    except ValueError as e:
        parser.error(str(e))
    with tempfile.TemporaryDirectory(prefix="tuner-bench-") as tmp:
        found = measure(Path(tmp), kills, epochs=args.epochs, max_trials=args.max_trials)
    print("\n".join(report(found, kills, args.epochs, args.max_trials)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
