#!/usr/bin/env bash
# Install tracker without TensorFlow, for real, and train, crash and resume with it.
#
# Usage: scripts/check_install_without_tf.sh [jax|torch]...      (default: both, one after the other)
#
# For each backend: a fresh venv gets `pip install '.[jax]'` (or '.[torch]', torch pinned ==2.13.0 by the
# extra), not editable, so the wheel is what is tested. The check fails if any TensorFlow distribution
# got installed. Then, under KERAS_BACKEND=<backend>, outside the source tree: a tiny tracked fit
# (shuffled numpy input, Dropout, validation_split) runs once uninterrupted, once killed with SIGKILL
# after epoch 2's commit and resumed with `tracker resume`; the resumed curve must equal the
# uninterrupted one. `python -m tracker list` and `tracker plot` must work, and no process may have
# imported TensorFlow (the CLI no framework at all). pip's cache is reused; a miss downloads from PyPI.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
backends=("$@")
[[ ${#backends[@]} -gt 0 ]] || backends=(jax torch)
tmp="$(mktemp -d -t tracker-no-tf-XXXXXX)"
trap 'rm -rf "$tmp"' EXIT
# The source tree must not shadow the installed package.
unset PYTHONPATH KERAS_BACKEND
for name in $(env | grep -o '^TRACKER_[A-Z_]*' || true); do unset "$name"; done

fail() { echo "check_install_without_tf: $backend: $*" >&2; exit 1; }

cat >"$tmp/train.py" <<'EOF'
import sys

import keras
import numpy as np

import tracker

keras.utils.set_random_seed(7)
if keras.backend.backend() == "torch":
    import torch

    torch.use_deterministic_algorithms(True)
rng = np.random.default_rng(0)
x, y = rng.random((48, 8, 8, 1), dtype=np.float32), rng.integers(0, 3, 48)
model = keras.Sequential([
    keras.Input((8, 8, 1)), keras.layers.Conv2D(4, 3, activation="relu"), keras.layers.Flatten(),
    keras.layers.Dropout(0.3), keras.layers.Dense(3),
])
model.compile(keras.optimizers.Adam(1e-2), keras.losses.SparseCategoricalCrossentropy(from_logits=True), metrics=["accuracy"])
with tracker.track(sys.argv[1]):
    model.fit(x, y, epochs=5, batch_size=16, validation_split=0.25, shuffle=True, verbose=0)
assert "tensorflow" not in sys.modules, "TensorFlow was imported"
EOF

cat >"$tmp/check.py" <<'EOF'
import sys

import tracker
from tracker.__main__ import main

backend, venv = sys.argv[1:]
assert tracker.__file__.startswith(venv), f"tracker imported from {tracker.__file__}, not from the venv"
ref, resumed = tracker.curves("ref"), tracker.curves("r")
assert resumed == ref, f"resumed curve differs from the uninterrupted one:\n{resumed}\n{ref}"
[run] = [r for r in tracker.runs() if r.name == "r"]
assert run.status == "completed" and run.last_epoch == 4, run
for argv in (["list"], ["show", "r"], ["plot", "r", "ref", "-o", "curves-in-process.png"]):
    assert main(argv) == 0, argv
frameworks = sorted({m.split(".")[0] for m in sys.modules} & {"tensorflow", "keras", "jax", "torch"})
assert not frameworks, f"the CLI imported {frameworks}"
print(f"{backend}: resumed curve equals the uninterrupted one over {len(ref['epoch'])} epochs; CLI imported no framework")
EOF

for backend in "${backends[@]}"; do
    [[ $backend == jax || $backend == torch ]] || { echo "usage: $0 [jax|torch]..." >&2; exit 2; }
    start=$SECONDS
    work="$tmp/work-$backend"  # not "$tmp/jax": train.py's folder is on sys.path, and a folder named jax would shadow the package
    mkdir -p "$work"
    python3 -m venv "$work/venv"
    py="$work/venv/bin/python"
    "$py" -m pip install --quiet --disable-pip-version-check "$root[$backend]"
    if "$py" -m pip list --format=freeze 2>/dev/null | grep -i '^tensorflow'; then fail "a TensorFlow distribution was installed"; fi
    if "$py" -m pip show tensorflow >/dev/null 2>&1; then fail "pip show tensorflow found it"; fi
    if "$py" -c 'import tensorflow' 2>/dev/null; then fail "tensorflow is importable"; fi

    cd "$work"
    export KERAS_BACKEND=$backend TRACKER_DB="$work/t.db" TRACKER_CHECKPOINT_DIR="$work/ckpt"
    "$py" "$tmp/train.py" ref

    # Killed right after epoch 2 committed, where a real crash would leave it.
    TRACKER_TEST_PAUSE_AT=after-commit:2 "$py" "$tmp/train.py" r 2>"$work/killed.err" &
    pid=$!
    for _ in $(seq 600); do
        grep -q '^TRACKER-PAUSED' "$work/killed.err" && break
        kill -0 "$pid" 2>/dev/null || { cat "$work/killed.err" >&2; fail "the training exited before its pause point"; }
        sleep 0.5
    done
    grep -q '^TRACKER-PAUSED' "$work/killed.err" || { kill -9 "$pid"; fail "the training never reached its pause point"; }
    kill -9 "$pid"
    wait "$pid" 2>/dev/null || true
    "$work/venv/bin/tracker" list | grep -E '^r +crashed' >/dev/null || { "$work/venv/bin/tracker" list; fail "the killed run is not listed as crashed"; }

    "$work/venv/bin/tracker" resume r
    "$py" -m tracker list
    "$work/venv/bin/tracker" plot r ref -o "$work/curves.png"
    [[ -s $work/curves.png ]] || fail "tracker plot wrote no file"
    "$py" "$tmp/check.py" "$backend" "$work/venv"
    cd "$root"
    echo "check_install_without_tf: $backend: ok in $((SECONDS - start)) s"
done
