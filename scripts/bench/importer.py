"""Row 13: ``tracker import`` of a long CSVLogger file, against reading the same CSV and inserting its rows raw.

The baseline is the floor of any import into tracker's schema: ``csv.reader`` over the file, and one
transaction of ``executemany`` into the same tables and indexes (a database made by `open_store`), with the
pragmas tracker's connections use (WAL, ``synchronous=FULL``, foreign keys). The tracked side is the command
itself, ``tracker import`` run in this process: parse, check every value, merge restarts, commit, mark it imported.
"""

from __future__ import annotations

import csv
import sqlite3
from itertools import count
from pathlib import Path

from scripts.bench.harness import Plan, Table, add_ratio, folder, interleaved, progress, timed

COLUMNS = ("accuracy", "loss", "val_accuracy", "val_loss")


def write_csv(path: Path, n: int) -> None:
    """A CSVLogger file of ``n`` epochs, one column per `COLUMNS`."""
    with path.open("w") as f:
        f.write("epoch," + ",".join(COLUMNS) + "\n")
        for e in range(n):
            f.write(f"{e},{e / n},{1 / (e + 1)},{e / (n + 1)},{1.2 / (e + 1)}\n")


def raw_import(source: Path, db: Path) -> None:
    """Read ``source`` with csv.reader and insert its epochs and metrics raw, in one transaction."""
    con = sqlite3.connect(db, isolation_level=None)
    try:
        for pragma in ("journal_mode = WAL", "synchronous = FULL", "foreign_keys = ON"):
            con.execute(f"PRAGMA {pragma}")
        with source.open(newline="") as f:
            reader = csv.reader(f)
            header = next(reader)
            rows = [(int(cells[0]), [float(c) for c in cells[1:]]) for cells in reader]
        con.execute("BEGIN IMMEDIATE")
        run_id = con.execute(
            "INSERT INTO runs (name, uid, status, created_at, updated_at, config, checkpoint_dir) "
            "VALUES ('raw', 'raw', 'imported', '2025-01-01 00:00:00', '2025-01-01 00:00:00', '{}', '') RETURNING id"
        ).fetchone()[0]
        attempt_id = con.execute(
            "INSERT INTO attempts (run_id, status, started_at, heartbeat_at, initial_epoch, pid, host, executable, argv, cwd, versions) "
            "VALUES (?, 'imported', '2025-01-01 00:00:00', '2025-01-01 00:00:00', 0, 1, 'h', 'python', '[]', '/', '{}') RETURNING id",
            (run_id,),
        ).fetchone()[0]
        first = con.execute("SELECT coalesce(max(id), 0) + 1 FROM epochs").fetchone()[0]
        ids = count(first)
        con.executemany(
            "INSERT INTO epochs (id, run_id, attempt_id, epoch, committed_at, checkpoint_deleted, superseded) VALUES (?, ?, ?, ?, ?, 0, 0)",
            [(next(ids), run_id, attempt_id, e, "2025-01-01 00:00:00") for e, _ in rows],
        )
        names = header[1:]
        con.executemany(
            "INSERT INTO metrics (epoch_id, name, run_id, epoch, value, superseded) VALUES (?, ?, ?, ?, ?, 0)",
            [(first + i, k, run_id, e, v) for i, (e, values) in enumerate(rows) for k, v in zip(names, values)],
        )
        con.execute("COMMIT")
    finally:
        con.close()


def row_import(table: Table, plan: Plan, work: Path) -> None:
    from tracker.cli import main
    from tracker.store import open_store

    n = 20_000 if plan.quick else 1_000_000
    rounds = max(1, plan.reps // 2)
    progress(f"row 13: import of a {n:,}-row CSV, {rounds} round(s)")
    with folder(work, "import") as d:
        source = d / "training.csv"
        write_csv(source, n)
        fresh = count()

        def tracked() -> None:
            db = d / f"tracked-{next(fresh)}.db"
            if main(["import", str(source), "--name", "bench", "--db", str(db)]) != 0:
                raise RuntimeError("tracker import failed")

        def raw() -> None:
            db = d / f"raw-{next(fresh)}.db"
            open_store(db).close()  # the schema, from the migrations
            raw_import(source, db)

        samples = interleaved({"tracker": timed(tracked), "raw": timed(raw)}, rounds, warmup=0)
        add_ratio(table, "13", f"tracker import, {n:,}-row CSV / csv.reader + raw executemany", samples, "tracker", "raw",
                  target="<= 2x", note=f"{len(COLUMNS)} metrics a row; baseline into the same schema")
