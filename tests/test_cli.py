"""``python -m tracker``: list, show and export against real SQLite files."""

from __future__ import annotations

import csv
import io
import json
import math
import os
import socket
import subprocess
import sys
from datetime import datetime
from pathlib import Path

import numpy as np
import pytest

import tracker
from tests.support.servers import PG_PASSWORD
from tracker.__main__ import main
from tracker.cli import commands
from tracker.records import Position
from tracker.store import open_store
from tracker.store.db import locate

PASSWORD_URL = "postgresql+psycopg://u:secret@127.0.0.1:1/x"


def nan_inf_metrics(epoch: int) -> dict[str, float]:
    return {"loss": math.nan if epoch == 1 else 1.0 / (epoch + 1), "val_loss": math.inf if epoch == 2 else 0.5}


def same_floats(a: list[float], b: list[float]) -> bool:
    """Identical values: repr tells NaN, inf and -0.0 apart, and differs for any change of bits that matters."""
    return [repr(float(x)) for x in a] == [repr(float(x)) for x in b]


def run_cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, *args], cwd=cwd, capture_output=True, text=True, timeout=120,
        env={k: v for k, v in os.environ.items() if not k.startswith("TRACKER_") or k == "TRACKER_SPOOL_DIR"},
    )


# -- list --------------------------------------------------------------------


@pytest.mark.parametrize("argv", [["list"], []], ids=["list", "no-subcommand"])
def test_list_prints_an_aligned_table(record, db, capsys, argv):
    record("a", 3)
    record("bb-longer-name", 2, finish=None)

    assert main([*argv, "--db", db]) == 0

    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["name", "status", "epochs", "best", "updated", "tags"]
    assert [line.split()[0] for line in lines[1:]] == ["a", "bb-longer-name"]
    # b's writer is this live process with a fresh heartbeat: running, not crashed; its target is unknown until fit ends.
    expected = [("completed", "3/3", "val_loss=0.52 at epoch 2"), ("running", "2/?", "val_loss=0.76 at epoch 1")]
    column = {name: lines[0].index(name) for name in ("status", "epochs", "best", "updated")}
    for line, (status, epochs, best) in zip(lines[1:], expected):
        assert line[column["status"]:].startswith(status + " ")
        assert line[column["epochs"]:].startswith(epochs + " ")
        assert line[column["best"]:].startswith(best + " ")
        assert datetime.strptime(line[column["updated"]:], "%Y-%m-%d %H:%M")


def test_list_json(record, db, capsys):
    record("a", 3, config={"lr": 0.01})

    assert main(["list", "--json", "--db", db]) == 0

    (run,) = json.loads(capsys.readouterr().out)
    assert run["name"] == "a" and run["status"] == "completed"
    assert (run["last_epoch"], run["target_epochs"], run["best_epoch"], run["best_value"]) == (2, 3, 2, 0.52)
    assert run["config"] == {"lr": 0.01}
    assert datetime.fromisoformat(run["updated_at"]).tzinfo is not None


def test_list_empty_database(db, capsys):
    open_store(db).close()

    assert main(["list", "--db", db]) == 0
    captured = capsys.readouterr()
    assert captured.out == ""
    assert f"no runs yet in {locate(db).display}" in captured.err
    assert PG_PASSWORD not in captured.err

    assert main(["list", "--json", "--db", db]) == 0
    assert json.loads(capsys.readouterr().out) == []


def test_missing_database_is_reported_and_not_created(tmp_path, capsys):
    missing = tmp_path / "typo" / "trackr.db"

    assert main(["list", "--db", str(missing)]) == 1

    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1
    assert str(missing) in err
    assert not missing.exists() and not missing.parent.exists()


@pytest.mark.parametrize("command", ["show", "export"])
def test_unknown_run_suggests_close_names(record, db, tmp_path, capsys, command):
    record("cnn-baseline", 1)
    output = tmp_path / "out.csv"

    assert main([command, "cnn-basline", "--db", db, *(["-o", str(output)] if command == "export" else [])]) == 1

    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1
    assert "'cnn-basline'" in err and "Did you mean: 'cnn-baseline'?" in err
    assert not output.exists()


# -- show --------------------------------------------------------------------


def test_show_prints_summary_metrics_attempts_and_checkpoints(record, db, ckpt, capsys):
    record("a", 2, finish="interrupted", config={"lr": 0.01})
    record("a", 5)

    assert main(["show", "a", "--db", db]) == 0

    out = capsys.readouterr().out
    assert "status:       completed" in out
    assert "epochs:       5 done of 5" in out
    assert "monitor:      val_loss (min), best 0.34 at epoch 4" in out
    assert f"checkpoints:  {Path(ckpt) / 'a'}" in out
    assert 'config:       {"lr": 0.01}' in out
    assert "metrics at epoch 4:" in out and "  val_loss:  0.34" in out and "  loss:      0.2" in out
    attempts = out.split("attempts, oldest first:")[1].split("checkpoints kept")[0]
    assert "1. " in attempts and "interrupted  from epoch 0" in attempts
    assert "2. " in attempts and "completed  from epoch 2" in attempts
    assert f"pid {os.getpid()}@{socket.gethostname()}" in attempts
    assert f"command: {sys.executable}" in attempts and f"cwd:     {os.getcwd()}" in attempts
    kept = out.split("checkpoints kept, newest first:")[1]
    on_disk = sorted((Path(ckpt) / "a").glob("*.npz"))
    assert len(on_disk) == 3  # keep_last=3; the best (epoch 4) is among them
    assert all(str(path) in kept for path in on_disk)
    assert [line.split()[1] for line in kept.strip().splitlines()] == ["4", "3", "2"]


def test_show_live_run_is_running(record, db, capsys):
    record("b", 2, finish=None)

    assert main(["show", "b", "--db", db]) == 0

    out = capsys.readouterr().out
    assert "status:       running" in out
    assert "epochs:       2 done of ?" in out


# -- export ------------------------------------------------------------------


def test_export_csv_round_trips_exactly(record, db, capsys):
    record("m", 4, metrics=nan_inf_metrics)
    expected = tracker.curves("m", db=db)

    assert main(["export", "m", "--db", db]) == 0

    text = capsys.readouterr().out
    assert text.splitlines()[0] == "epoch,loss,val_loss"
    assert "\n1,nan,0.5\n" in text and "\n2,0.3333333333333333,inf\n" in text
    rows = list(csv.DictReader(io.StringIO(text)))
    assert [int(r["epoch"]) for r in rows] == expected["epoch"]
    for name in ("loss", "val_loss"):
        assert same_floats([float(r[name]) for r in rows], expected[name]), name


def test_export_json_round_trips_exactly(record, db, capsys):
    record("m", 4, metrics=nan_inf_metrics)
    expected = tracker.curves("m", db=db)

    assert main(["export", "m", "--format", "json", "--db", db]) == 0

    # NaN and Infinity tokens: not strict JSON, but Python's json reads them back.
    got = json.loads(capsys.readouterr().out)
    assert list(got) == ["epoch", "loss", "val_loss"]
    assert got["epoch"] == expected["epoch"]
    for name in ("loss", "val_loss"):
        assert same_floats(got[name], expected[name]), name
    assert math.isnan(got["loss"][1]) and got["val_loss"][2] == math.inf


@pytest.mark.parametrize(
    "filename, options, fmt",
    [("c.json", [], "json"), ("c.csv", [], "csv"), ("c.txt", [], "csv"), ("c.json", ["--format", "csv"], "csv")],
    ids=["json-from-extension", "csv-from-extension", "csv-by-default", "format-beats-extension"],
)
def test_export_to_file(record, db, tmp_path, capsys, filename, options, fmt):
    record("m", 3, metrics=nan_inf_metrics)
    target = tmp_path / filename

    assert main(["export", "m", "--db", db, "-o", str(target), *options]) == 0

    assert capsys.readouterr().out == ""
    text = target.read_text(encoding="utf-8")
    if fmt == "json":
        assert json.loads(text)["epoch"] == [0, 1, 2]
    else:
        assert text.splitlines() == ["epoch,loss,val_loss", "0,1.0,0.5", "1,nan,0.5", "2,0.3333333333333333,inf"]


def test_export_include_superseded(record, db, capsys):
    record("r", 3)
    store = open_store(db)
    try:
        store.supersede(store.get_run("r"), None, Position(2))  # what a rewind to epoch 1 does
    finally:
        store.close()
    record("r", 4)

    assert main(["export", "r", "--include-superseded", "--db", db]) == 0

    rows = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    assert list(rows[0]) == ["epoch", "superseded", "accuracy", "loss", "val_loss"]
    assert [(r["epoch"], r["superseded"]) for r in rows] == [
        ("0", "false"), ("1", "false"), ("2", "true"), ("2", "false"), ("3", "false"),
    ]


# -- --db, errors, help, imports --------------------------------------------


@pytest.mark.parametrize(
    "argv",
    [
        ["--db", "{db}", "list"], ["list", "--db", "{db}"],
        ["--db", "{db}", "show", "a"], ["show", "a", "--db", "{db}"],
        ["--db", "{db}", "export", "a"], ["export", "a", "--db", "{db}"],
        ["--db", "missing.db", "list", "--db", "{db}"],
    ],
    ids=["before-list", "after-list", "before-show", "after-show", "before-export", "after-export", "after-wins"],
)
def test_db_before_or_after_the_subcommand(record, db, capsys, argv):
    record("a", 2)

    assert main([a.format(db=db) for a in argv]) == 0
    assert "a" in capsys.readouterr().out


def test_db_from_environment(record, db, capsys, monkeypatch):
    record("a", 2)
    monkeypatch.setenv("TRACKER_DB", db)

    assert main(["show", "a"]) == 0
    assert "status:       completed" in capsys.readouterr().out


@pytest.mark.parametrize(
    "argv",
    [["show"], ["export", "a", "--format", "xml"], ["nope"], ["list", "--bogus"]],
    ids=["missing-run", "bad-format", "unknown-command", "unknown-option"],
)
def test_usage_errors_exit_2(db, argv):
    with pytest.raises(SystemExit) as exc:
        main([*argv, "--db", db])
    assert exc.value.code == 2


SUBCOMMANDS = ["list", "show", "export", "plot", "sweep", "resume", "rm", "rename", "tag", "note", "verify", "gc", "import",
               "spool", "token", "share", "publish"]


def test_the_subcommands_are_the_contract():
    assert [c.name for c in commands()] == SUBCOMMANDS


@pytest.mark.parametrize("command", [[], *([c] for c in SUBCOMMANDS)], ids=["top", *SUBCOMMANDS])
def test_help_has_an_example(capsys, command):
    with pytest.raises(SystemExit) as exc:
        main([*command, "--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    example = out.split("Example:\n", 1)[1]
    assert example.startswith("  tracker " + (command[0] if command else ""))
    if command:
        assert "--db DB" in out


def test_every_subcommand_is_documented_in_the_cli_reference():
    # The README's tour links to docs/cli.md, the one page that documents every subcommand with examples.
    reference = (Path(__file__).parents[1] / "docs" / "cli.md").read_text()
    examples = [line.split() for block in reference.split("```bash\n")[1:] for line in block.split("```")[0].splitlines()]
    for name in SUBCOMMANDS:
        assert ["tracker", name] in [words[:2] for words in examples], (
            f"`tracker {name}` has no example in docs/cli.md, the command line reference")


def test_password_is_never_printed(tmp_path):
    # No server listens there and the driver may be missing: it fails either way, without showing the password.
    result = run_cli("-m", "tracker", "list", "--db", PASSWORD_URL, cwd=tmp_path)

    assert result.returncode != 0
    assert "secret" not in result.stdout + result.stderr


@pytest.mark.parametrize(
    "url",
    [PASSWORD_URL, "postgresql+pg8000://u:secret@127.0.0.1:1/x"],  # no server there; a driver that is not installed
    ids=["unreachable", "missing-driver"],
)
def test_a_database_that_cannot_be_opened_is_a_one_line_error(tmp_path, url):
    result = run_cli("-m", "tracker", "list", "--db", url, cwd=tmp_path)

    assert result.returncode == 1
    assert result.stderr.startswith("error: ") and result.stderr.count("\n") == 1
    assert "u:***@127.0.0.1" in result.stderr and "secret" not in result.stderr


@pytest.mark.parametrize(
    "argv",
    [["list"], ["show", "a"], ["export", "a"], ["plot", "a", "-o", "a.png"], ["resume", "a", "--check"],
     ["tag", "a", "k=v"], ["note", "a", "text"], ["verify"], ["gc", "--dry-run"],
     ["import", "h.csv", "--name", "imported"], ["rename", "a", "b"], ["rm", "b", "--yes"],
     ["sweep", "list"], ["sweep", "show", "s"], ["list", "--sweep", "s"]],
    ids=lambda argv: "-".join(a.strip("-") for a in argv[:2]),
)
def test_no_subcommand_imports_tensorflow_or_keras(tmp_path, argv):
    from tests.conftest import loss_at
    from tracker import track

    db = str(tmp_path / "t.db")
    run = track("a", db=db, checkpoint_dir=str(tmp_path / "ckpt"))
    run.start()
    run.commit_epoch(0, loss_at(0), {"w": np.zeros(2)}, {})
    run.finish("completed")
    if argv[0] == "rm":
        assert main(["rename", "a", "b", "--db", db]) == 0
    if "sweep" in argv or "--sweep" in argv:
        from tests.support.sweeps import plan_sweep

        plan_sweep(db, "s", grid={"units": [4, 8]})
    (tmp_path / "h.csv").write_text("epoch,loss\n0,1.0\n")

    result = run_cli("-X", "importtime", "-m", "tracker", *argv, "--db", db, cwd=tmp_path)

    assert result.returncode == 0, result.stderr
    assert "import time:" in result.stderr
    # Only plot may import matplotlib.
    avoid = ("tensorflow", "keras") if argv[0] == "plot" else ("tensorflow", "keras", "matplotlib")
    heavy = [line for line in result.stderr.splitlines() if any(m in line for m in avoid)]
    assert heavy == []


# -- a full disk (issue 10, item 18) -----------------------------------------


@pytest.mark.parametrize("previous", [None, "epoch,loss\n0,1.0\n"], ids=["new-file", "existing-file"])
def test_export_onto_a_full_disk_leaves_no_truncated_file(record, db, full_disk, capsys, previous):
    from tests.conftest import fill

    # About 25 KiB of CSV: more than the page that truncating the old file would free.
    record("m", 120, metrics=lambda e: {f"metric_{i}": (e + i) / 7 for i in range(10)}, monitor="metric_0")
    target = full_disk / "curve.csv"
    if previous is not None:
        target.write_text(previous)
    fill(full_disk)

    assert main(["export", "m", "--db", db, "-o", str(target)]) == 1

    err = capsys.readouterr().err
    assert err.startswith("error: ") and "No space left on device" in err and str(target) in err
    # The old file is untouched, or there is none; no temporary file is left behind.
    assert sorted(p.name for p in full_disk.iterdir()) == sorted(["filler", *(["curve.csv"] if previous else [])])
    if previous is not None:
        assert target.read_text() == previous


@pytest.mark.parametrize("options", [["-o", "-"], ["--output", "-", "--format", "json"]], ids=["csv", "json"])
def test_export_dash_means_standard_output(record, db, tmp_path, monkeypatch, capsys, options):
    record("m", 3, metrics=nan_inf_metrics)
    monkeypatch.chdir(tmp_path)

    assert main(["export", "m", "--db", db, *options]) == 0

    out = capsys.readouterr().out
    assert not (tmp_path / "-").exists()
    if "json" in options:
        assert json.loads(out)["epoch"] == [0, 1, 2]
    else:
        assert out.splitlines()[0] == "epoch,loss,val_loss"


# -- what a value may do to a terminal -----------------------------------------

#: A tag or note that, printed raw, retitles the terminal (OSC 0) and turns its text red (SGR 31).
ESCAPES = "\x1b]0;pwned\x07\x1b[31mred"
ESCAPED = "\\x1b]0;pwned\\x07\\x1b[31mred"


def test_list_and_show_print_escape_sequences_escaped_and_json_keeps_them(record, db, capsys):
    record("r", 2)
    assert main(["tag", "r", f"k={ESCAPES}", "--db", db]) == 0
    assert main(["note", "r", f"see {ESCAPES}", "--db", db]) == 0
    capsys.readouterr()

    for argv in (["list"], ["show", "r"]):
        assert main([*argv, "--db", db]) == 0
        out = capsys.readouterr().out
        assert "\x1b" not in out and "\x07" not in out, argv
        assert f"k={ESCAPED}" in out, argv
    assert main(["show", "r", "--db", db]) == 0
    assert f"note:         see {ESCAPED}\n" in capsys.readouterr().out

    assert main(["show", "r", "--json", "--db", db]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["tags"] == {"k": ESCAPES} and shown["note"] == f"see {ESCAPES}"
    assert main(["list", "--json", "--db", db]) == 0
    assert json.loads(capsys.readouterr().out)[0]["tags"] == {"k": ESCAPES}


def test_list_cuts_a_long_tag_and_keeps_a_newline_inside_its_row_json_keeps_them_whole(record, db, capsys):
    record("long", 1)
    record("lines", 1)
    assert main(["tag", "long", "blob=" + "x" * 30_000, "--db", db]) == 0
    assert main(["tag", "lines", "msg=first\nsecond", "--db", db]) == 0
    capsys.readouterr()

    assert main(["list", "--db", db]) == 0

    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 3  # the header and one line per run: the newline did not split a row
    assert max(len(line) for line in lines) < 300
    assert "blob=xxx" in lines[1] and lines[1].endswith("...")
    assert "msg=first\\nsecond" in lines[2]
    assert main(["list", "--json", "--db", db]) == 0
    tags = [r["tags"] for r in json.loads(capsys.readouterr().out)]
    assert tags == [{"blob": "x" * 30_000}, {"msg": "first\nsecond"}]
