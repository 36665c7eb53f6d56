"""``python -m scripts.bench``: the command line, the rows in the order they run, and the report at the end."""

from __future__ import annotations

import argparse
import dataclasses
import os
import re
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from pathlib import Path

from scripts import bench
from scripts.bench.backends import BACKEND_ROWS, child_backend_rows, row_backends
from scripts.bench.commit import row_commit, row_end_of_epoch
from scripts.bench.curves import row_curves
from scripts.bench.fit import row_fit, row_fit_checkpoint_cost
from scripts.bench.harness import Plan, Table, code_fingerprint, code_version, machine_report, make_plan
from scripts.bench.importer import row_import
from scripts.bench.memory import child_rss, row_memory
from scripts.bench.serve import row_serve
from scripts.bench.startup import row_open, row_plot
from scripts.bench.steps import row_steps
from scripts.bench.sweeps import row_sweeps
from scripts.bench.team import row_team

# Before any row imports TensorFlow: its C++ start-up chatter would bury the table.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

# In this order: the process rows first, while this process does not hold TensorFlow (less to fork, less noise).
ROWS: list[tuple[str, str, Callable[[Table, Plan, Path], None]]] = [
    ("1", "commit_epoch / raw INSERT txn", row_commit),
    ("4", "curves() / raw SELECT", row_curves),
    ("5", "python -m tracker.plot / python -c pass", row_plot),
    ("6", "open_store('new.db') / python -c pass", row_open),
    ("7", "peak RSS tracked / plain", row_memory),
    ("10", "rows 2 and 3 under JAX and torch (child processes)", row_backends),
    ("11", "searches: tracker.sweep / its trials one by one; epochs retrained under SIGKILLs", row_sweeps),
    ("12", "team mode: spooled commit / direct; epoch time with the server down / up", row_team),
    ("13", "tracker import of a long CSV / csv.reader + raw executemany", row_import),
    ("2", "end of epoch: tracker / ModelCheckpoint+CSV", row_end_of_epoch),
    ("3", "epoch wall time: tracked / plain fit", row_fit),
    ("3c", "epoch wall time, 5.8M MLP, 3 s epochs: tracked / plain", row_fit_checkpoint_cost),
    ("8", "web view: GET /api/runs, curves API / raw SELECT", row_serve),
    ("9", "inside epochs: step checkpoints, checkpoint_every_seconds, log_every_steps / plain fit", row_steps),
]

#: Rows a plain ``--quick`` run leaves out, as too slow for a smoke test even at toy sizes; ``--quick --rows KEY`` runs them.
NOT_IN_QUICK = {
    "11": "its 9 child processes (TensorFlow, torch, KerasTuner, Optuna) take 2-4 min on 2 cores",
    "12": "it starts a PostgreSQL server of its own and stops it mid-training (~75 s); tests/test_team_outage.py runs the outages",
}



def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m scripts.bench", description=bench.__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="toy sizes and few repetitions: a smoke test")
    parser.add_argument("--reps", type=int, metavar="N",
                        help="repetitions per row (default 5, or 1 with --quick); fast rows take a multiple of N")
    parser.add_argument("--rows", metavar="KEYS", help="only these rows, comma-separated, e.g. --rows 4,8 (default: all)")
    parser.add_argument("--serve-runs", type=int, metavar="N", help="row 8a: runs in the database (default 500; 20 with --quick)")
    parser.add_argument("--serve-epochs", type=int, metavar="N", help="row 8a: epochs per run (default 2000; 100 with --quick)")
    parser.add_argument("--serve-points", type=int, metavar="N", help="row 8b: points of the long curve (default 1000000; 20000 with --quick)")
    parser.add_argument("--child-rss", choices=["plain", "tracked"], help=argparse.SUPPRESS)
    parser.add_argument("--child-samples", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--child-dir", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--child-backend", choices=sorted(BACKEND_ROWS), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child_rss:
        child_rss(args.child_rss, args.child_samples, args.child_dir)
        return 0
    if args.reps is not None and args.reps < 1:
        parser.error(f"--reps must be >= 1, got {args.reps}")
    plan = make_plan(args.quick, args.reps)
    if args.child_backend:
        child_backend_rows(args.child_backend, plan)
        return 0
    sizes = {"serve_runs": args.serve_runs, "serve_epochs": args.serve_epochs, "serve_points": args.serve_points}
    plan = dataclasses.replace(plan, **{k: v for k, v in sizes.items() if v is not None})
    chosen = ROWS if args.rows is None else [r for r in ROWS if r[0] in args.rows.split(",")]
    left_out = [r for r in chosen if plan.quick and args.rows is None and r[0] in NOT_IN_QUICK]
    chosen = [r for r in chosen if r not in left_out]
    print(machine_report(plan), flush=True)
    code_at_start = code_fingerprint()
    started = time.perf_counter()
    table = Table()
    failed: list[str] = []
    for key, title, _ in left_out:
        table.na(key, title, f"left out of --quick: {NOT_IN_QUICK[key]}; run --quick --rows {key}")
    with tempfile.TemporaryDirectory(prefix="tracker-bench-") as tmp:
        work = Path(tmp)
        for key, title, row in chosen:
            try:
                row(table, plan, work)
            except Exception as e:  # noqa: BLE001 - one broken row (the core may be mid-edit) must not hide the others
                traceback.print_exc()
                table.na(key, title, f"FAILED: {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}")
                failed.append(key)
    table.rows.sort(key=lambda r: int(re.match(r"\d*", r.key)[0] or 0))  # by row number; stable: keeps each row's sub-rows in order
    print()
    table.print()
    print(f"\nbenchmark took {time.perf_counter() - started:.0f} s; load average now "
          f"{' '.join(f'{v:.2f}' for v in os.getloadavg())}")
    if code_fingerprint() != code_at_start:
        print(f"warning: tracker's code changed during the run; now {code_version()}")
    if failed:
        print(f"error: row(s) {', '.join(failed)} failed; see the tracebacks on stderr", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
