"""A tiny deterministic training script, run as a real child process by the crash tests and the torture script.

Usage: python child_train.py RUN EPOCHS [--case CASE] [--backend BACKEND] [--explicit] [--backup-and-restore DIR]
       [--every-steps N] [--every-seconds T] [--log-every-steps N] [--steps-per-execution K] [--samples N]
The database and checkpoint folder come from TRACKER_DB and TRACKER_CHECKPOINT_DIR.
CHILD_EPOCH_SLEEP=SECONDS sleeps at the start of each epoch, so that a test can watch epochs arrive;
CHILD_BATCH_SLEEP=SECONDS at the start of each batch, so that a signal can land inside an epoch;
CHILD_REPORT_STEPS=1 prints ``CHILD-STEP <epoch> <batches of it done> <optimizer iterations>`` to stderr at each batch end.
The step options are tracker.track's; --samples sets the data size (48: three batches per epoch).

Cases (issue: exact resume): adam, shuffle, dropout, tfdata, callbacks, functional, subclassed, schedule,
and on torch dataloader (a shuffling torch DataLoader without a generator of its own: exact) and
dataloader-generator (one given its own generator: tracker warns before the first epoch). Join cases
with commas to prove several in one child: functional,callbacks trains the functional model with the
callbacks. CHILD_ANNOUNCE_EPOCHS=1 prints "EPOCH-BEGIN N" to stderr as each epoch begins.
--backend tensorflow|jax|torch sets KERAS_BACKEND before Keras is imported (default: $KERAS_BACKEND, else
tensorflow); it is part of the command line, so `tracker resume` re-launches under the same backend.
Each backend runs under its determinism settings: TensorFlow's op determinism, torch's deterministic
algorithms; JAX on the CPU is deterministic as it is. On JAX and torch, TensorFlow is blocked as if not
installed (the tfdata case needs it), so the script fails if tracker imports it.
--explicit uses run.callback and run.initial_epoch instead of the patched fit.
--backup-and-restore DIR trains WITHOUT tracker, under keras.callbacks.BackupAndRestore(DIR) and a
CSVLogger(DIR/history.csv, append=True), for the torture script's comparison.
"""

import argparse
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # for tests.support.models, however this script is started

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")

CASES = {"adam", "shuffle", "dropout", "tfdata", "callbacks", "functional", "subclassed", "schedule", "dataloader", "dataloader-generator"}

parser = argparse.ArgumentParser()
parser.add_argument("run")
parser.add_argument("epochs", type=int)
parser.add_argument("--case", default="adam")
parser.add_argument("--backend", choices=("tensorflow", "jax", "torch"), default=os.environ.get("KERAS_BACKEND", "tensorflow"))
parser.add_argument("--explicit", action="store_true")
parser.add_argument("--backup-and-restore")
parser.add_argument("--backup-save-freq", type=int, help="BackupAndRestore(save_freq=N) instead of every epoch")
parser.add_argument("--every-steps", type=int)
parser.add_argument("--every-seconds", type=float)
parser.add_argument("--log-every-steps", type=int)
parser.add_argument("--steps-per-execution", type=int, default=1)
parser.add_argument("--samples", type=int, default=48)
args = parser.parse_args()
cases = set(args.case.split(","))
if not cases <= CASES or {"functional", "subclassed"} <= cases:
    parser.error(f"--case: received {args.case!r}; expected one or more of {sorted(CASES)}, joined by commas, at most one model kind")
if cases & {"dataloader", "dataloader-generator"} and args.backend != "torch":
    parser.error("--case dataloader needs --backend torch")
# Keras reads its backend once, at import.
os.environ["KERAS_BACKEND"] = args.backend
if args.backend != "tensorflow":
    # As if TensorFlow were not installed: any import of it fails (Keras's own seeding skips it), so a
    # tracker that imported TensorFlow on JAX or torch fails this script.
    sys.modules["tensorflow"] = None

import keras  # noqa: E402
import numpy as np  # noqa: E402

import tracker  # noqa: E402
from tests.support.models import tiny  # noqa: E402

keras.utils.set_random_seed(7)
if args.backend == "tensorflow":
    import tensorflow as tf

    tf.config.experimental.enable_op_determinism()
elif args.backend == "torch":
    import torch

    torch.use_deterministic_algorithms(True)
rng = np.random.default_rng(0)
x = rng.random((args.samples, 8, 8, 1), dtype=np.float32)
y = rng.integers(0, 3, args.samples)


model = tiny(next(iter(cases & {"functional", "subclassed"}), "sequential"), dropout=0.3 if "dropout" in cases else 0.0)
lr = keras.optimizers.schedules.ExponentialDecay(1e-2, decay_steps=2, decay_rate=0.7) if "schedule" in cases else 1e-2
model.compile(
    keras.optimizers.Adam(lr), keras.losses.SparseCategoricalCrossentropy(from_logits=True), metrics=["accuracy"],
    steps_per_execution=args.steps_per_execution,
)

fit = {"epochs": args.epochs, "verbose": 0}
split = args.samples * 3 // 4  # validation_split=0.25 holds out the last quarter, as the other inputs do
if "tfdata" in cases:
    if args.backend != "tensorflow":
        parser.error("--case tfdata needs --backend tensorflow")
    train = tf.data.Dataset.from_tensor_slices((x[:split], y[:split])).shuffle(split, seed=3, reshuffle_each_iteration=True).batch(16)
    fit.update(x=train, validation_data=tf.data.Dataset.from_tensor_slices((x[split:], y[split:])).batch(16))
elif cases & {"dataloader", "dataloader-generator"}:
    tensors = [torch.from_numpy(a) for a in (x, y)]
    own = {"generator": torch.Generator().manual_seed(3)} if "dataloader-generator" in cases else {}
    train = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(*(t[:split] for t in tensors)), batch_size=16, shuffle=True, **own)
    validation = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(*(t[split:] for t in tensors)), batch_size=16)
    fit.update(x=train, validation_data=validation, shuffle=False)  # the DataLoader shuffles; Keras would warn it ignores shuffle=True
else:
    fit.update(x=x, y=y, batch_size=16, validation_split=0.25, shuffle="shuffle" in cases)
callbacks = []
if "callbacks" in cases:
    # min_delta is large, so the plateau and patience counters move every epoch.
    callbacks = [
        keras.callbacks.ReduceLROnPlateau(monitor="val_loss", factor=0.5, patience=1, min_delta=0.02),
        keras.callbacks.EarlyStopping(monitor="val_loss", patience=4, min_delta=0.02, restore_best_weights=True),
    ]

if os.environ.get("CHILD_ANNOUNCE_EPOCHS"):
    callbacks.append(keras.callbacks.LambdaCallback(on_epoch_begin=lambda epoch, logs: print(f"EPOCH-BEGIN {epoch}", file=sys.stderr, flush=True)))
if os.environ.get("CHILD_EPOCH_SLEEP"):
    pause = float(os.environ["CHILD_EPOCH_SLEEP"])
    callbacks.append(keras.callbacks.LambdaCallback(on_epoch_begin=lambda epoch, logs: time.sleep(pause)))
if os.environ.get("CHILD_BATCH_SLEEP"):
    batch_pause = float(os.environ["CHILD_BATCH_SLEEP"])
    callbacks.append(keras.callbacks.LambdaCallback(on_train_batch_begin=lambda batch, logs: time.sleep(batch_pause)))

reporting = []
if os.environ.get("CHILD_REPORT_STEPS"):
    # For the torture script's count of retrained batches: at each batch end, the epoch, the batches of it
    # done, and the optimizer's step (which counts a batch trained twice twice). Last in the list, so that
    # under BackupAndRestore the line comes after its save for that batch.
    def report(batch, logs):
        if args.backend == "jax":
            model.jax_state_sync()  # during fit, JAX keeps the variables' values outside them
        iterations = int(keras.ops.convert_to_numpy(model.optimizer.iterations))
        # One write: print() writes the newline apart, and tracker's writer thread may write in between.
        sys.stderr.write(f"CHILD-STEP {report.epoch} {batch + 1} {iterations}\n")
        sys.stderr.flush()

    report.epoch = 0
    reporting.append(keras.callbacks.LambdaCallback(
        on_epoch_begin=lambda epoch, logs: setattr(report, "epoch", epoch), on_train_batch_end=report))

if args.backup_and_restore:
    folder = args.backup_and_restore
    os.makedirs(folder, exist_ok=True)
    model.build((None, 8, 8, 1))  # BackupAndRestore cannot restore into an unbuilt model
    backup = keras.callbacks.BackupAndRestore(folder, save_freq=args.backup_save_freq or "epoch")
    callbacks += [backup, keras.callbacks.CSVLogger(os.path.join(folder, "history.csv"), append=True), *reporting]
    model.fit(callbacks=callbacks, **fit)
else:
    steps = {"checkpoint_every_steps": args.every_steps, "checkpoint_every_seconds": args.every_seconds, "log_every_steps": args.log_every_steps}
    callbacks += reporting
    with tracker.track(args.run, config={"case": args.case}, **steps) as run:
        if args.explicit:
            model.fit(callbacks=[*callbacks, run.callback], initial_epoch=run.initial_epoch, **fit)
        else:
            model.fit(callbacks=callbacks, **fit)
