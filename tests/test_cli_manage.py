"""`tracker list` filters, `show --json`, `tag`, `note`, `rm` and `rename`, on SQLite and PostgreSQL."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

import tracker
from tracker.checkpoint import MARKER
from tracker.cli import main
from tracker.store import open_store


def files(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


# -- list filters, tags, notes ------------------------------------------------


def test_tags_and_notes_show_in_list_show_and_runs(record, db, capsys):
    record("cnn-a", 2)
    record("cnn-b", 2)
    record("mlp", 2)

    assert main(["tag", "cnn-a", "dataset=mnist", "lr=0.001", "--db", db]) == 0
    assert capsys.readouterr().out == "dataset=mnist lr=0.001\n"
    assert main(["tag", "cnn-a", "lr=0.01", "--remove", "dataset", "--db", db]) == 0
    assert capsys.readouterr().out == "lr=0.01\n"
    assert main(["tag", "cnn-b", "lr=0.01", "dataset=cifar", "--db", db]) == 0
    assert main(["note", "cnn-a", "baseline, keep it", "--db", db]) == 0
    capsys.readouterr()

    by_name = {r.name: r for r in tracker.runs(db)}
    assert by_name["cnn-a"].tags == {"lr": "0.01"} and by_name["cnn-a"].note == "baseline, keep it"
    assert by_name["mlp"].tags == {} and by_name["mlp"].note is None

    assert main(["show", "cnn-a", "--db", db]) == 0
    out = capsys.readouterr().out
    assert "tags:         lr=0.01" in out and "note:         baseline, keep it" in out

    assert main(["list", "--tag", "lr=0.01", "--db", db]) == 0
    assert [line.split()[0] for line in capsys.readouterr().out.splitlines()[1:]] == ["cnn-a", "cnn-b"]
    assert main(["list", "--tag", "lr=0.01", "--tag", "dataset=cifar", "--json", "--db", db]) == 0
    (only,) = json.loads(capsys.readouterr().out)
    assert only["name"] == "cnn-b" and only["tags"] == {"dataset": "cifar", "lr": "0.01"}

    assert main(["note", "cnn-a", "", "--db", db]) == 0
    assert {r.name: r.note for r in tracker.runs(db)}["cnn-a"] is None


def test_list_filters_by_name_pattern_and_status(record, db, capsys):
    record("cnn-a", 2)
    record("cnn-b", 2, finish="failed")
    record("mlp", 2)

    assert main(["list", "cnn-*", "--db", db]) == 0
    assert [line.split()[0] for line in capsys.readouterr().out.splitlines()[1:]] == ["cnn-a", "cnn-b"]
    assert main(["list", "--status", "completed", "--json", "--db", db]) == 0
    assert [r["name"] for r in json.loads(capsys.readouterr().out)] == ["cnn-a", "mlp"]
    assert main(["list", "zzz*", "--db", db]) == 0
    assert "no runs match" in capsys.readouterr().err


@pytest.mark.parametrize("argv", [["tag", "a", "novalue"], ["tag", "a", "=x"], ["tag", "a"], ["list", "--tag", "k"],
                                  ["tag", "a", "k" * 256 + "=v"]],
                         ids=["no-equals", "no-key", "nothing-to-do", "list-filter", "key-too-long"])
def test_bad_tag_arguments_are_one_line_errors(record, db, capsys, argv):
    record("a", 1)
    assert main([*argv, "--db", db]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1


def test_show_json(record, db, ckpt, capsys):
    record("a", 3, config={"lr": 0.01})
    main(["tag", "a", "k=v", "--db", db])
    capsys.readouterr()

    assert main(["show", "a", "--json", "--db", db]) == 0

    got = json.loads(capsys.readouterr().out)
    assert (got["name"], got["status"], got["last_epoch"], got["best_epoch"], got["imported"]) == ("a", "completed", 2, 2, False)
    assert got["tags"] == {"k": "v"} and got["config"] == {"lr": 0.01}
    assert set(got["metrics"]) == {"loss", "val_loss", "accuracy"}
    assert [c["epoch"] for c in got["checkpoints"]] == [2, 1, 0]
    assert all(Path(c["path"]).parent == Path(ckpt) / "a" for c in got["checkpoints"])
    assert got["attempts"][0]["status"] == "completed"


# -- rm ---------------------------------------------------------------------------


def test_rm_deletes_rows_files_marker_and_folder(record, db, ckpt, capsys):
    record("a", 3)
    record("b", 2)
    (Path(ckpt) / "a" / "notes.txt").write_text("mine")  # not tracker's: it stays, and so does its folder

    assert main(["rm", "a", "b", "--yes", "--db", db]) == 0

    out = capsys.readouterr().out
    assert "deleted run a: 3 file(s)" in out and "deleted run b: 2 file(s)" in out
    assert tracker.runs(db) == []
    assert files(Path(ckpt) / "a") == ["notes.txt"]
    assert not (Path(ckpt) / "b").exists()
    record("a", 1)  # the name is free again, and its folder is not refused as another run's
    assert tracker.curves("a", db=db)["epoch"] == [0]


def test_rm_refuses_a_live_run_unless_force(record, db, ckpt, capsys):
    record("live", 2, finish=None)

    assert main(["rm", "live", "--yes", "--db", db]) == 1
    assert "is being written by pid" in capsys.readouterr().err
    assert [r.name for r in tracker.runs(db)] == ["live"]

    assert main(["rm", "live", "--yes", "--force", "--db", db]) == 0
    assert tracker.runs(db) == []


def test_rm_checks_every_name_before_deleting_anything(record, db, capsys):
    record("a", 1)
    assert main(["rm", "a", "nope", "--yes", "--db", db]) == 1
    assert "No run named 'nope'" in capsys.readouterr().err
    assert [r.name for r in tracker.runs(db)] == ["a"]


def test_rm_asks_on_a_terminal(record, db, monkeypatch, capsys):
    record("a", 1)
    monkeypatch.setattr("sys.stdin.isatty", lambda: True)
    monkeypatch.setattr("builtins.input", lambda prompt: "n")

    assert main(["rm", "a", "--db", db]) == 1
    assert "nothing deleted" in capsys.readouterr().err
    assert [r.name for r in tracker.runs(db)] == ["a"]

    monkeypatch.setattr("builtins.input", lambda prompt: "y")
    assert main(["rm", "a", "--db", db]) == 0
    assert tracker.runs(db) == []


# -- rename ---------------------------------------------------------------------------


def test_rename_moves_the_folder_and_keeps_curve_checkpoints_and_resume(record, db, ckpt, capsys):
    record("a", 3, finish="interrupted")
    before = tracker.curves("a", db=db)

    assert main(["rename", "a", "b", "--db", db]) == 0

    assert f"renamed run a to b; checkpoints in {Path(ckpt) / 'b'}" in capsys.readouterr().out
    assert not (Path(ckpt) / "a").exists()
    assert MARKER in files(Path(ckpt) / "b")
    assert tracker.curves("b", db=db) == before
    assert main(["verify", "--db", db]) == 0
    run = record("b", 5)  # resumes from the moved checkpoint
    assert run.initial_epoch == 3
    assert tracker.curves("b", db=db)["epoch"] == [0, 1, 2, 3, 4]


@pytest.mark.parametrize(
    "argv, words",
    [(["rename", "a", "taken"], "already exists"), (["rename", "a", "../x"], "Invalid run name"),
     (["rename", "nope", "c"], "No run named 'nope'")],
    ids=["taken", "bad-name", "unknown"],
)
def test_rename_refusals(record, db, capsys, argv, words):
    record("a", 1)
    record("taken", 1)
    assert main([*argv, "--db", db]) == 1
    assert words in capsys.readouterr().err
    assert sorted(r.name for r in tracker.runs(db)) == ["a", "taken"]


def test_rename_refuses_a_live_run(record, db, capsys):
    record("a", 1, finish=None)
    assert main(["rename", "a", "b", "--db", db]) == 1
    assert "is being written by pid" in capsys.readouterr().err


def test_migration_0004_upgrades_a_database_made_at_0003(db, record):
    from alembic import command
    from alembic.config import Config

    from tracker.store import migrate

    record("r", 3)
    store = open_store(db)
    with store.engine.begin() as conn:
        config = Config()
        config.set_main_option("script_location", str(migrate._migrations_dir()))
        config.attributes["connection"] = conn
        command.downgrade(config, "0003")
        assert conn.exec_driver_sql("SELECT version_num FROM alembic_version").scalar() == "0003"
    store.close()

    assert tracker.runs(db)[0].tags == {}  # opening migrates it back to the head
    assert main(["tag", "r", "k=v", "--db", db]) == 0
    assert tracker.runs(db)[0].tags == {"k": "v"}
    assert tracker.curves("r", db=db)["epoch"] == [0, 1, 2]


def test_rename_keeps_the_folder_where_hard_links_are_not_supported(record, db, ckpt, capsys, monkeypatch):
    import errno

    record("a", 2)

    def no_links(src: str, dst: object) -> None:
        raise OSError(errno.EPERM, "Operation not permitted")  # what a file system without hard links answers

    monkeypatch.setattr("tracker.admin.runs.os.link", no_links)
    assert main(["rename", "a", "b", "--db", db]) == 0

    captured = capsys.readouterr()
    assert captured.err.startswith("warning: Cannot move the checkpoints of run 'a'") and "Operation not permitted" in captured.err
    assert f"checkpoints in {Path(ckpt) / 'a'}" in captured.out
    assert not (Path(ckpt) / "b").exists() and len(list((Path(ckpt) / "a").glob("*.npz"))) == 2
    assert tracker.curves("b", db=db)["epoch"] == [0, 1]
    assert main(["verify", "--db", db]) == 0


def test_a_live_run_deleted_with_force_stops_its_writer_saying_it_was_deleted(record, db, ckpt, capsys):
    run = record("live", 2, finish=None)

    assert main(["rm", "live", "--yes", "--force", "--db", db]) == 0
    with pytest.raises(tracker.errors.RunDeletedError, match=r"Run 'live' was deleted \(tracker rm --force\) while this process"):
        run.commit_epoch(2, {"loss": 0.1, "val_loss": 0.1}, {"w": np.zeros(1)}, {})
    assert tracker.runs(db) == []
    assert not (Path(ckpt) / "live").exists()  # the failed write made no folder again
