"""Row 7: peak memory of a training process, tracked against plain, each measured in a child process of its own."""

from __future__ import annotations

import json
import resource
import subprocess
from pathlib import Path

from scripts.bench.harness import Plan, Table, bench_argv, bench_env, folder, mb, median, progress
from scripts.bench.workloads import big_data, build_big_model


def peak_rss_bytes() -> int:
    """This process's own peak RSS.

    VmHWM, not ``ru_maxrss``: Linux carries the parent's peak RSS across fork+exec
    into ``ru_maxrss``, so a child of a parent that holds TensorFlow would report
    the parent's size. ``ru_maxrss`` is the fallback where /proc is missing.
    """
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024



def child_rss(mode: str, samples: int, d: Path) -> None:
    """Child process of row 7: a 3-epoch fit of the 5M model, then one JSON line with its peak RSS."""
    import tracker

    x, y = big_data(samples)
    model = build_big_model()
    fit = lambda: model.fit(x, y, epochs=3, batch_size=64, validation_split=0.2, verbose=0)  # noqa: E731
    ckpt_bytes = None
    if mode == "tracked":
        with tracker.track("bench-rss", db=d / "tracker.db", checkpoint_dir=d / "ckpt"):
            fit()
        ckpt_bytes = max(p.stat().st_size for p in (d / "ckpt" / "bench-rss").glob("*.npz"))
    else:
        fit()
    print(json.dumps({"peak_rss": peak_rss_bytes(), "ru_maxrss": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
                      "ckpt_bytes": ckpt_bytes}))



def row_memory(table: Table, plan: Plan, work: Path) -> None:
    progress(f"row 7: peak RSS of a 3-epoch 5M fit, {plan.rss_reps} x (plain, tracked) processes side by side")
    results: dict[str, list[dict]] = {"tracked": [], "plain": []}
    for i in range(plan.rss_reps):
        # Side by side: a peak RSS does not depend on speed, and this halves the row's time.
        with folder(work, f"rss-{i}") as d:
            children = {mode: rss_child(mode, plan.rss_samples, d / mode) for mode in results}
            for mode, proc in children.items():
                out, err = proc.communicate()
                if proc.returncode != 0:
                    raise RuntimeError(f"row 7 {mode} child exited {proc.returncode}: {err.strip()[-2000:]}")
                results[mode].append(json.loads(out.strip().splitlines()[-1]))
    tracked = median([r["peak_rss"] for r in results["tracked"]])
    plain = median([r["peak_rss"] for r in results["plain"]])
    ckpt = results["tracked"][0]["ckpt_bytes"]
    table.add("7", "peak RSS, 3-epoch fit of the 5M MLP: tracked / plain", mb(tracked), mb(plain), tracked / plain, "",
              f"n={len(results['tracked'])}; {(tracked - plain) / 2**20:+.0f} MB; "
              f"one checkpoint file = {mb(ckpt)}; VmHWM of each child")



def rss_child(mode: str, samples: int, d: Path) -> subprocess.Popen:
    d.mkdir()
    argv = bench_argv("--child-rss", mode, "--child-samples", str(samples), "--child-dir", str(d))
    return subprocess.Popen(argv, env=bench_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
