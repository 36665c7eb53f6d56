"""Row 10: rows 2 and 3 again under the JAX and torch backends, each in a child process with its own ``KERAS_BACKEND``."""

from __future__ import annotations

import dataclasses
import importlib.metadata
import importlib.util
import json
import subprocess
import sys
import tempfile
from pathlib import Path

from scripts.bench.commit import row_end_of_epoch
from scripts.bench.fit import row_fit
from scripts.bench.harness import Plan, Table, bench_argv, bench_env, progress

#: Each backend's row key; its rows run in a child process with KERAS_BACKEND set, since Keras picks its backend once, at import.
BACKEND_ROWS = {"jax": "10a", "torch": "10b"}



def row_backends(table: Table, plan: Plan, work: Path) -> None:
    """Rows 2 and 3 (end of epoch on the training thread, epoch wall time tracked / plain) on JAX and torch.

    Each child measures tracker and its baselines interleaved, under its own backend, exactly as
    rows 2 and 3 do on TensorFlow; its ratios are to plain Keras on that same backend.
    """
    for backend, key in BACKEND_ROWS.items():
        title = f"{backend}: end of epoch, and epoch wall time tracked / plain"
        if importlib.util.find_spec(backend) is None:
            table.na(key, title, f"{backend} not installed (pip install -e '.[{backend}]')")
            continue
        progress(f"row {key}: rows 2 and 3 in a child process under KERAS_BACKEND={backend}")
        argv = bench_argv("--child-backend", backend, "--reps", str(plan.reps), *(["--quick"] if plan.quick else []))
        proc = subprocess.run(argv, cwd=work, env=bench_env(KERAS_BACKEND=backend), stdout=subprocess.PIPE, text=True)
        if proc.returncode != 0:
            raise RuntimeError(f"row {key} child under KERAS_BACKEND={backend} exited {proc.returncode}; see its stderr above")
        answer = json.loads(proc.stdout.strip().splitlines()[-1])
        table.add(key, f"KERAS_BACKEND={backend}: rows 2 and 3, in a child process", "", "", None, "",
                  f"keras {answer['keras']}, {backend} {answer['version']}; TensorFlow imported: {'yes' if answer['tensorflow'] else 'no'}")
        for row in answer["rows"]:
            table.add(key, f"  {row['what']}", row["value"], row["baseline"], row["ratio"], row["target"], row["note"])



def child_backend_rows(backend: str, plan: Plan) -> None:
    """Child process of row 10: rows 2 and 3 under ``backend``, printed as one JSON line."""
    import keras

    if keras.backend.backend() != backend:
        raise RuntimeError(f"row 10 child: Keras runs on {keras.backend.backend()!r}, not {backend!r}; set KERAS_BACKEND before starting it")
    table = Table()
    with tempfile.TemporaryDirectory(prefix=f"tracker-bench-{backend}-") as tmp:
        row_end_of_epoch(table, plan, Path(tmp))
        row_fit(table, plan, Path(tmp))
    print(json.dumps({"rows": [dataclasses.asdict(r) for r in table.rows], "tensorflow": "tensorflow" in sys.modules,
                      "keras": keras.__version__, "version": importlib.metadata.version(backend)}))
