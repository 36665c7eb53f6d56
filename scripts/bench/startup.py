"""Rows 5 and 6: whole processes, ``python -m tracker.plot`` and a first ``open_store``, against ``python -c pass``."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

from scripts.bench.curves import bulk_run
from scripts.bench.harness import Plan, Table, add_ratio, folder, interleaved, process_case, progress, python_c, run_process, timed

TENSORFLOW_MODULES = ("tensorflow", "keras", "tf_keras")



def imported_modules(importtime_stderr: str) -> set[str]:
    """Top-level module names from ``python -X importtime`` output."""
    names = set()
    for line in importtime_stderr.splitlines():
        if line.startswith("import time:") and "|" in line:
            names.add(line.rsplit("|", 1)[1].strip().split(".")[0])
    return names



def row_plot(table: Table, plan: Plan, work: Path) -> None:
    progress("row 5: python -m tracker.plot as a process")
    with folder(work, "plot") as d:
        db = d / "tracker.db"
        bulk_run(db, "bench-plot", 100)
        plot = [sys.executable, "-m", "tracker.plot", "bench-plot", "-o", str(d / "curves.png"), "--db", str(db)]
        samples = interleaved({
            "plot": process_case(plot),
            "pass": process_case(python_c("pass")),
            "pyplot": process_case(python_c("import matplotlib.pyplot")),
        }, plan.process_reps)
        importtime = run_process([sys.executable, "-X", "importtime", *plot[1:]]).stderr
    add_ratio(table, "5", "python -m tracker.plot, 100 epochs / python -c pass", samples, "plot", "pass",
              target="<= 1.5 s", note="whole process, PNG written")
    add_ratio(table, "5", "  same / python -c 'import matplotlib.pyplot'", samples, "plot", "pyplot")
    loaded = sorted(imported_modules(importtime) & set(TENSORFLOW_MODULES))
    table.add("5", "  tensorflow/keras imported by tracker.plot?", "yes" if loaded else "no", "", None, "no",
              f"python -X importtime: {', '.join(loaded) or 'none of ' + ', '.join(TENSORFLOW_MODULES)}")



def row_open(table: Table, plan: Plan, work: Path) -> None:
    progress("row 6: first open of a new database as a process")
    with folder(work, "open") as d:
        fresh = iter(range(10**6))

        def first_open() -> None:
            cwd = d / f"db{next(fresh)}"
            cwd.mkdir()
            run_process(python_c("from tracker.store import open_store; open_store('new.db')"), cwd=cwd)
            if not (cwd / "new.db").exists():
                raise RuntimeError("open_store did not create new.db")

        def mlflow_create() -> None:
            cwd = d / f"mlflow{next(fresh)}"
            cwd.mkdir()
            run_process(python_c("from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore; "
                                 "SqlAlchemyStore('sqlite:///mlflow.db', './artifacts')"), cwd=cwd)
            if not (cwd / "mlflow.db").exists():
                raise RuntimeError("MLflow did not create mlflow.db")

        cases = {
            "open": timed(first_open),
            "pass": process_case(python_c("pass")),
            "sa": process_case(python_c("import sqlalchemy, alembic")),
        }
        has_mlflow = importlib.util.find_spec("mlflow") is not None
        if has_mlflow:
            cases["mlflow"] = timed(mlflow_create)
        samples = interleaved(cases, plan.process_reps)
    add_ratio(table, "6", "open_store('new.db') in a new process / python -c pass", samples, "open", "pass",
              note="migrations run")
    add_ratio(table, "6", "  same / python -c 'import sqlalchemy, alembic'", samples, "open", "sa")
    what = "MLflow SqlAlchemyStore('sqlite:///new.db') process / tracker open_store process"
    if has_mlflow:
        add_ratio(table, "6b", what, samples, "mlflow", "open", target=">= 4x", note="both whole processes, migrations included")
    else:
        table.na("6b", what, "mlflow not installed (pip install -e '.[bench]')")
