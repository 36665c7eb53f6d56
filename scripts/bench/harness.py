"""The benchmark's harness: the plan of sizes, timing cases interleaved, and the table of same-run ratios.

Every figure is a ratio of medians against a baseline timed in the same run, interleaved with it
(`interleaved`), so that the noise of a shared machine falls on both alike. Nothing here asserts a timing.
"""

from __future__ import annotations

import importlib.metadata
import os
import platform
import shutil
import sqlite3
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

LOGS = {"loss": 0.5, "accuracy": 0.8, "val_loss": 0.6, "val_accuracy": 0.75}

TABLE_HEADER = f"{'row':<4} {'measurement':<54} {'tracker':>11} {'baseline':>11} {'ratio':>8}  {'target':<9} note"



@dataclass(frozen=True)
class Plan:
    """How many repetitions and how much data each row uses."""

    quick: bool
    reps: int
    commit_reps: int  # row 1: one-row transactions, ~ms each
    hook_reps_cnn: int  # row 2, demo CNN: ~10 ms per end of epoch
    hook_reps_big: int  # row 2, 5M model: ~0.1-1 s per end of epoch
    fit_rounds: int  # row 3: (plain, tracked) fit pairs per model
    fit_epochs: int  # row 3: epochs per fit; the first is skipped (tracing)
    cnn_samples: int
    big_samples: int  # sized so that one 5M-model epoch takes ~1-2 s on 2 cores
    wide_samples: int  # row 3c: sized so that one 5.8M-model epoch takes ~3 s on 2 cores
    curve_epochs: int  # row 4
    curve_reps: int
    process_reps: int  # rows 5 and 6: whole processes
    rss_reps: int  # row 7: whole training processes
    rss_samples: int
    serve_runs: int  # row 8a: runs in the database
    serve_epochs: int  # row 8a: epochs per run (x SERVE_METRICS metrics)
    serve_points: int  # row 8b: points of the one long curve
    serve_reps: int



def make_plan(quick: bool, reps: int | None) -> Plan:
    if quick:
        r = reps or 1
        return Plan(quick, r, commit_reps=20 * r, hook_reps_cnn=2 * r, hook_reps_big=2 * r, fit_rounds=r,
                    fit_epochs=2, cnn_samples=640, big_samples=256, wide_samples=256, curve_epochs=2_000, curve_reps=2 * r,
                    process_reps=r, rss_reps=r, rss_samples=128, serve_runs=20, serve_epochs=100, serve_points=20_000,
                    serve_reps=3 * r)
    r = reps or 5
    return Plan(quick, r, commit_reps=40 * r, hook_reps_cnn=6 * r, hook_reps_big=2 * r + 1, fit_rounds=r,
                fit_epochs=6, cnn_samples=3_000, big_samples=1_024, wide_samples=8_000, curve_epochs=100_000, curve_reps=2 * r,
                process_reps=r, rss_reps=max(1, r // 2), rss_samples=1_024, serve_runs=500, serve_epochs=2_000,
                serve_points=1_000_000, serve_reps=2 * r)



Case = Callable[[], list[float]]



def timed(fn: Callable[[], object]) -> Case:
    """A case that times one whole call of ``fn``."""

    def case() -> list[float]:
        start = time.perf_counter()
        fn()
        return [time.perf_counter() - start]

    return case



def interleaved(cases: dict[str, Case], rounds: int, *, warmup: int = 1) -> dict[str, list[float]]:
    """Run every case once per round, rotating the order each round, and pool each case's samples (seconds).

    Rotating spreads a noisy neighbour's bursts, and any drift, over all cases alike.
    """
    names = list(cases)
    for _ in range(warmup):
        for name in names:
            cases[name]()
    samples: dict[str, list[float]] = {name: [] for name in names}
    for i in range(rounds):
        k = i % len(names)
        for name in names[k:] + names[:k]:
            samples[name].extend(cases[name]())
    return samples



def median(samples: list[float]) -> float:
    return statistics.median(samples)



def run_process(argv: list[str], *, cwd: Path | None = None) -> subprocess.CompletedProcess:
    """Run a child to completion; raise with its stderr if it fails, so a broken row is not timed."""
    proc = subprocess.run(argv, cwd=cwd, env=child_env(), capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} exited {proc.returncode}: {proc.stderr.strip()[-2000:]}")
    return proc



def child_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRACKER_")}
    env["TF_CPP_MIN_LOG_LEVEL"] = "2"
    return env



def python_c(code: str) -> list[str]:
    return [sys.executable, "-c", code]



def process_case(argv: list[str], *, cwd: Path | None = None) -> Case:
    """A case that times ``argv`` as a whole process."""
    return timed(lambda: run_process(argv, cwd=cwd))



def progress(msg: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)



@dataclass
class Row:
    key: str
    what: str
    value: str
    baseline: str
    ratio: float | None
    target: str = ""
    note: str = ""



@dataclass
class Table:
    rows: list[Row] = field(default_factory=list)

    def add(self, *args: object, **kwargs: object) -> None:
        self.rows.append(Row(*args, **kwargs))

    def na(self, key: str, what: str, reason: str, target: str = "") -> None:
        self.rows.append(Row(key, what, "n/a", "n/a", None, target, reason))

    def print(self) -> None:
        print(TABLE_HEADER)
        print("-" * len(TABLE_HEADER))
        for r in self.rows:
            ratio = f"{r.ratio:.2f}x" if r.ratio is not None else ""
            print(f"{r.key:<4} {r.what:<54} {r.value:>11} {r.baseline:>11} {ratio:>8}  {r.target:<9} {r.note}".rstrip())



def ms(seconds: float) -> str:
    return f"{seconds * 1e3:.2f} ms" if seconds < 0.1 else f"{seconds * 1e3:.0f} ms"



def mb(n_bytes: float) -> str:
    return f"{n_bytes / 2**20:.0f} MB"



def add_ratio(table: Table, key: str, what: str, samples: dict[str, list[float]], ours: str, base: str,
              *, target: str = "", note: str = "") -> None:
    a, b = median(samples[ours]), median(samples[base])
    n = f"n={len(samples[ours])}/{len(samples[base])}"
    table.add(key, what, ms(a), ms(b), a / b, target, f"{n}; {note}" if note else n)



@contextmanager
def folder(parent: Path, name: str) -> Iterator[Path]:
    """A fresh subfolder, removed afterwards: checkpoints of the 5M model are ~60 MB each."""
    path = parent / name
    path.mkdir()
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)



def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"



def git(*args: str) -> str:
    """Output of a git command in this checkout; raises OSError or CalledProcessError outside one."""
    return subprocess.run(["git", "-C", str(ROOT), *args], capture_output=True, text=True, check=True).stdout



def code_version() -> str:
    """The commit benchmarked, and the tracker files changed since it: the core may be mid-edit."""
    try:
        head, status = git("rev-parse", "--short", "HEAD"), git("status", "--porcelain", "--", "tracker", "migrations")
    except (OSError, subprocess.CalledProcessError):
        return "unknown (not a git checkout)"
    changed = [line[3:] for line in status.splitlines()]
    return head.strip() + (f" + uncommitted changes to {', '.join(changed)}" if changed else " (clean)")



def code_fingerprint() -> str | None:
    """The measured code itself (tracker/ and migrations/, committed or not), so a commit elsewhere does not count."""
    try:
        return "".join((git("rev-parse", "HEAD:tracker", "HEAD:migrations"), git("diff", "HEAD", "--", "tracker", "migrations"),
                        git("status", "--porcelain", "--", "tracker", "migrations")))
    except (OSError, subprocess.CalledProcessError):
        return None



def machine_report(plan: Plan) -> str:
    def version(dist: str) -> str:
        try:
            return importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            return "-"

    tf = version("tensorflow-cpu") if version("tensorflow-cpu") != "-" else version("tensorflow")
    lines = [
        f"tracker benchmark, {datetime.now().isoformat(timespec='seconds')}",
        f"machine: nproc={os.cpu_count()} (usable {len(os.sched_getaffinity(0))}), {cpu_model()}, {platform.platform()}",
        f"load average at start: {' '.join(f'{v:.2f}' for v in os.getloadavg())}",
        f"python {platform.python_version()}, tensorflow {tf}, keras {version('keras')}, numpy {version('numpy')}, "
        f"sqlalchemy {version('sqlalchemy')}, alembic {version('alembic')}, sqlite {sqlite3.sqlite_version}, "
        f"jax {version('jax')}, torch {version('torch')}",
        f"code: {code_version()}",
        f"plan: {'quick (toy sizes: a smoke test, not figures to quote)' if plan.quick else 'full'}, reps={plan.reps}; "
        "every ratio is tracker/baseline of medians, measured interleaved in this run",
    ]
    return "\n".join(lines)



def bench_argv(*args: str) -> list[str]:
    """This benchmark again, as a child process of one of its rows: ``python -m scripts.bench ARGS``; start it with `bench_env`."""
    return [sys.executable, "-m", "scripts.bench", *args]



def bench_env(**extra: str) -> dict[str, str]:
    """`child_env` with the repository root first on ``PYTHONPATH``, where ``-m scripts.bench`` is found from any folder."""
    env = child_env()
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH")) if p)
    return {**env, **extra}
