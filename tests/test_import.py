"""`tracker import`: each format in the shape its tool writes, restarts, refusals, and nothing written on a malformed file."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

import tracker
from tests.conftest import same_floats
from tracker.cli import main

EPOCHS = 4


def logs_at(epoch: int) -> dict[str, float]:
    return {"loss": 1.0 / (epoch + 1), "accuracy": epoch / 10, "val_loss": 1.2 / (epoch + 1), "val_accuracy": epoch / 11}


def expected(epochs: range = range(EPOCHS)) -> dict[str, list]:
    return {"epoch": list(epochs), **{k: [logs_at(e)[k] for e in epochs] for k in sorted(logs_at(0))}}


def assert_imported(db: str, name: str, want: dict[str, list]) -> None:
    got = tracker.curves(name, db=db)
    assert got["epoch"] == want["epoch"]
    assert sorted(got) == sorted(want)
    for k in want:
        assert same_floats(got[k], want[k]), k
    (info,) = [r for r in tracker.runs(db) if r.name == name]
    assert info.status == "imported"


def write_seed_history(folder: Path, epochs: range) -> Path:
    """What the seed article's callback writes: after each epoch, the whole list again, indent=4."""
    history_data = []
    for epoch in epochs:
        current_data = {"epoch": epoch}
        current_data.update(logs_at(epoch))
        history_data.append(current_data)
        with open(folder / "history.json", "w") as f:
            json.dump(history_data, f, indent=4)
    return folder / "history.json"


def test_seed_history_json(db, tmp_path, capsys):
    path = write_seed_history(tmp_path, range(EPOCHS))

    assert main(["import", str(path), "--name", "seed", "--db", db]) == 0

    assert f"imported {EPOCHS} epoch(s) from {path} (history-json) as run seed" in capsys.readouterr().out
    assert_imported(db, "seed", expected())


def test_keras_history_json(db, tmp_path):
    path = tmp_path / "history.json"
    path.write_text(json.dumps({k: [logs_at(e)[k] for e in range(EPOCHS)] for k in logs_at(0)}))

    assert main(["import", str(path), "--name", "hist", "--db", db]) == 0

    assert_imported(db, "hist", expected())


def test_csvlogger_csv_with_a_restart_appended(db, tmp_path, keras_env, capsys):
    keras = keras_env
    path = tmp_path / "training.log"
    # The real CSVLogger: epochs 0-3, then a restart that resumed at epoch 2 appends 2-5.
    for epochs in (range(0, 4), range(2, 6)):
        logger = keras.callbacks.CSVLogger(str(path), append=True)
        logger.on_train_begin()
        for epoch in epochs:
            logger.on_epoch_end(epoch, logs_at(epoch))
        logger.on_train_end()

    assert main(["import", str(path), "--name", "csv", "--db", db]) == 0

    out = capsys.readouterr().out
    assert "imported 6 epoch(s)" in out and "2 epoch(s) logged again after a restart were replaced" in out
    assert_imported(db, "csv", expected(range(6)))


def test_csv_with_a_repeated_header_na_and_nan(db, tmp_path, capsys):
    path = tmp_path / "log.csv"
    path.write_text(
        "epoch,loss,val_loss\r\n0,1.0,NA\r\n1,0.5,nan\r\n2,0.25,0.3\r\n"
        "epoch,loss,val_loss\r\n1,0.6,0.7\r\n2,0.3,0.4\r\n"  # a restart at epoch 1 wrote the header again
    )

    assert main(["import", str(path), "--name", "csv", "--db", db]) == 0

    assert "2 epoch(s) logged again after a restart were replaced" in capsys.readouterr().out
    got = tracker.curves("csv", db=db)
    assert got["epoch"] == [0, 1, 2] and got["loss"] == [1.0, 0.6, 0.3]
    assert math.isnan(got["val_loss"][0]) and got["val_loss"][1:] == [0.7, 0.4]


def test_tensorboard_event_files(db, tmp_path, keras_env):
    import tensorflow as tf

    logdir = tmp_path / "logs"
    # The layout and tags of Keras's TensorBoard callback, written with the same writer it uses.
    for sub, prefix in (("train", ""), ("validation", "val_")):
        writer = tf.summary.create_file_writer(str(logdir / sub))
        with writer.as_default():
            for epoch in range(EPOCHS):
                for name in ("loss", "accuracy"):
                    tf.summary.scalar(f"epoch_{name}", logs_at(epoch)[prefix + name], step=epoch)
                tf.summary.scalar("batch_loss", 9.0, step=epoch * 100)  # per batch: not a curve point
        writer.close()

    assert main(["import", str(logdir), "--name", "tb", "--db", db]) == 0

    want = expected()
    got = tracker.curves("tb", db=db)
    assert got["epoch"] == want["epoch"] and sorted(got) == sorted(want)
    for k in ("loss", "accuracy", "val_loss", "val_accuracy"):  # written as float32
        assert got[k] == pytest.approx(want[k], rel=1e-6), k


def test_an_imported_run_plots_exports_shows_but_does_not_resume(db, tmp_path, capsys):
    path = write_seed_history(tmp_path, range(EPOCHS))
    assert main(["import", str(path), "--name", "seed", "--db", db]) == 0
    capsys.readouterr()

    assert main(["show", "seed", "--db", db]) == 0
    out = capsys.readouterr().out
    assert "status:       imported" in out and "cannot be resumed" in out
    assert "monitor:      val_loss (min), best 0.3 at epoch 3" in out
    assert main(["export", "seed", "--db", db]) == 0
    assert capsys.readouterr().out.splitlines()[0] == "epoch,accuracy,loss,val_accuracy,val_loss"
    assert main(["plot", "seed", "-o", str(tmp_path / "seed.png"), "--db", db]) == 0
    assert main(["resume", "seed", "--db", db]) == 1
    assert "imported from another tool's log" in capsys.readouterr().err
    assert main(["resume", "seed", "--check", "--db", db]) == 1
    assert "imported from another tool's log, with no checkpoint: it cannot be resumed" in capsys.readouterr().out
    assert main(["verify", "--db", db]) == 0
    # Training under its name does not quietly turn it into a fresh run on top of the imported curve.
    with pytest.raises(tracker.ResumeError, match="imported from another tool's log and has no checkpoint"):
        tracker.track("seed", db=db, checkpoint_dir=str(tmp_path / "ck")).start()
    assert tracker.runs(db)[0].status == "imported"


def test_importing_a_name_twice_is_refused_unless_replace(db, ckpt, tmp_path, record, capsys):
    record("r", 2)
    path = write_seed_history(tmp_path, range(EPOCHS))

    assert main(["import", str(path), "--name", "r", "--db", db]) == 1
    assert "already exists" in capsys.readouterr().err and tracker.curves("r", db=db)["epoch"] == [0, 1]

    assert main(["import", str(path), "--name", "r", "--replace", "--db", db]) == 0
    assert_imported(db, "r", expected())
    assert not (Path(ckpt) / "r").exists()  # the replaced run's checkpoints went with it


@pytest.mark.parametrize(
    "name, content, words",
    [
        ("h.json", '[{"epoch": 0, "loss": 1.0},\n {"epoch": 1, "loss": }]', "line 2, column"),
        ("h.json", '[{"epoch": 0, "loss": 1.0}, {"loss": 0.5}]', 'item 1: has no "epoch" field'),
        ("h.json", '[{"epoch": 0, "loss": "high"}]', "item 0, field 'loss': expected a number"),
        ("h.json", '[{"epoch": -1, "loss": 1.0}]', 'field "epoch": expected an epoch number'),
        ("k.json", '{"loss": [1.0, 0.5], "val_loss": [0.9]}', "field 'val_loss' has 1 values but 'loss' has 2"),
        ("k.json", '{"loss": 1.0}', "field 'loss': expected a list"),
        ("l.csv", "epoch,loss\n0,1.0\n1,abc\n", "line 3, column 'loss': expected a number. Received: 'abc'"),
        ("l.csv", "epoch,loss\n0,1.0,7\n", "line 2: has 3 fields, the header has 2"),
        ("l.csv", "0,1.0\n", "line 1: expected a header starting with 'epoch'"),
        ("l.csv", "epoch,loss\n", "holds no epoch"),
        ("h.json", '[{"epoch": 0, "superseded": 1.0}]', "cannot be named 'superseded'"),
        ("h.json", '[{"epoch": 1e20, "loss": 1.0}]', 'field "epoch": expected an epoch number (an integer from 0 to 2147483647)'),
        ("h.json", '[{"epoch": 9223372036854775808, "loss": 1.0}]', "Received: 9223372036854775808"),
        ("l.csv", "epoch,loss\n9223372036854775808,1.0\n", "line 2, column 'epoch': expected an epoch number"),
        ("h.json", '[{"epoch": 0, "step": 1.0}]', "cannot be named 'step'"),
        ("l.csv", "epoch,lo\x00ss\n0,1.0\n", "holds a NUL character"),
        ("l.csv", "epoch,loss,acc,loss\n0,1.0,0.5,2.0\n", "line 1, header: column 'loss' appears twice"),
        ("h.json", '[{"epoch": 0, "loss": 1.0, "loss": 2.0}]', "field 'loss' appears twice"),
        ("l.csv", "epoch,loss,acc\n0,1.0,0.5\n1,0.9", "line 3: has 2 fields, the header has 3. The file ends inside this row"),
    ],
    ids=["json-syntax", "no-epoch", "not-a-number", "negative-epoch", "uneven-lists", "not-a-list",
         "csv-not-a-number", "csv-extra-field", "csv-no-header", "empty", "reserved-name",
         "epoch-1e20", "epoch-2**63", "csv-epoch-2**63", "named-step", "csv-nul-in-name", "csv-repeated-column",
         "json-repeated-field", "csv-cut-off"],
)
def test_a_malformed_file_names_the_place_and_writes_nothing(db, tmp_path, capsys, name, content, words):
    path = tmp_path / name
    path.write_text(content)

    assert main(["import", str(path), "--name", "bad", "--db", db]) == 1

    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1
    assert words in err and str(path) in err
    if "://" not in db:
        assert not Path(db).exists()  # not even the database was created
    else:
        assert tracker.runs(db) == []


def test_format_option_overrides_detection_and_bad_values_are_usage_errors(db, tmp_path, capsys):
    path = tmp_path / "h.txt"
    path.write_text("epoch,loss\n0,1.0\n")
    assert main(["import", str(path), "--name", "a", "--format", "csv", "--db", db]) == 0
    with pytest.raises(SystemExit) as exc:
        main(["import", str(path), "--name", "b", "--format", "xml", "--db", db])
    assert exc.value.code == 2
    assert main(["import", str(tmp_path / "missing.json"), "--name", "c", "--db", db]) == 1
    assert "no such file or folder" in capsys.readouterr().err


def quadratic_merge(rows):
    """The merge of restarts as the import first wrote it (quadratic): the semantics the linear one keeps."""
    merged, replaced = {}, 0
    for epoch, values in rows:
        if merged and epoch <= max(merged):
            dropped = [e for e in merged if e >= epoch]
            replaced += len(dropped)
            for e in dropped:
                del merged[e]
        merged[epoch] = values
    return sorted(merged.items()), replaced


@pytest.mark.parametrize("seed", range(20))
def test_merging_restarts_keeps_the_later_rows_from_each_restart_on(seed, tmp_path):
    import random

    from tracker.admin.importer import _merge_restarts

    rng = random.Random(seed)
    rows, epoch = [], 0
    for i in range(rng.randint(1, 300)):
        # Mostly the next epoch; sometimes a restart (back to an earlier or the same epoch), sometimes a gap.
        epoch = rng.choice([epoch + 1] * 6 + [rng.randint(0, epoch), epoch, epoch + rng.randint(2, 5)])
        rows.append((epoch, {"loss": float(i)}))
    assert _merge_restarts(rows, tmp_path / "l.csv") == quadratic_merge(rows)


def test_merging_a_restart_to_epoch_0_after_many_replaces_them_all(tmp_path):
    from tracker.admin.importer import _merge_restarts

    rows = [(e, {"loss": 1.0}) for e in range(5)] + [(0, {"loss": 2.0}), (1, {"loss": 2.0}), (1, {"loss": 3.0}), (7, {"loss": 4.0})]
    assert _merge_restarts(rows, tmp_path / "l.csv") == ([(0, {"loss": 2.0}), (1, {"loss": 3.0}), (7, {"loss": 4.0})], 6)


def test_a_complete_last_row_without_a_newline_is_imported(db, tmp_path):
    path = tmp_path / "l.csv"
    path.write_text("epoch,loss\n0,1.0\n1,0.5")
    assert main(["import", str(path), "--name", "r", "--db", db]) == 0
    assert tracker.curves("r", db=db)["loss"] == [1.0, 0.5]


def test_a_refused_epoch_leaves_no_run_so_a_retry_succeeds(db, tmp_path, capsys):
    path = tmp_path / "h.json"
    path.write_text('[{"epoch": 0, "loss": 1.0}, {"epoch": 1e20, "loss": 0.5}]')
    assert main(["import", str(path), "--name", "r", "--db", db]) == 1
    assert capsys.readouterr().err.startswith("error: ")

    path.write_text('[{"epoch": 0, "loss": 1.0}, {"epoch": 1, "loss": 0.5}]')
    assert main(["import", str(path), "--name", "r", "--db", db]) == 0
    assert tracker.curves("r", db=db)["epoch"] == [0, 1]
