"""``tracker sweep list``, ``tracker sweep show`` and ``tracker list --sweep``, on SQLite and PostgreSQL.

The sweeps are written through the store as `tracker.sweep` writes them, and their trial runs through
the real protocol (the ``record`` fixture). A crashed trial, whose worker a child process plays, is in
tests/test_serve_sweeps.py: the command line prints the status the same report gives.
"""

from __future__ import annotations

import json
import re

import pytest

import tracker
from tests.support.sweeps import GRID, RANKED, mixed_sweep, plan_sweep
from tracker.cli import main


def table(out: str) -> list[list[str]]:
    """The rows of a printed table (header first), split on runs of two or more spaces."""
    return [re.split(r"\s{2,}", line.strip()) for line in out.strip().splitlines()]


def trials_table(out: str) -> list[list[str]]:
    """The trials table that ends `sweep show`'s output: from its ``#`` header to the first blank line."""
    block = out.split("\n#", 1)[1].split("\n\n", 1)[0]
    return table("#" + block)


# -- sweep show --------------------------------------------------------------


def test_sweep_show_prints_what_it_searches_the_counts_and_the_trials_best_first(record, db, capsys):
    mixed_sweep(record, db)

    assert main(["sweep", "show", "mlp", "--db", db]) == 0

    out = capsys.readouterr().out
    assert "sweep:     mlp\n" in out
    assert "kind:      grid of 6 combinations\n" in out
    assert "searches:  units [4, 8, 16]\n           act [\"relu\", \"tanh\"]\n" in out
    assert "trials:    6: 3 completed, 1 running, 1 pending, 1 failed\n" in out
    assert "best:      mlp-1, objective=0.1, with units=4, act=tanh\n" in out
    rows = trials_table(out)
    assert rows[0] == ["#", "run", "units", "act", "status", "epochs", "value", "monitor", "best epoch"]
    assert [int(r[0]) for r in rows[1:]] == RANKED == [t.number for t in tracker.sweep_trials("mlp", db)]
    by_number = {int(r[0]): r for r in rows[1:]}
    assert by_number[1] == ["1", "mlp-1", "4", "tanh", "completed", "3/3", "0.1", "objective", "2"]
    assert by_number[2] == ["2", "mlp-2", "8", "relu", "completed", "3/3", "0.45", "val_loss", "2"]
    assert by_number[4][4:6] == ["running", "1/?"]
    assert by_number[5] == ["5", "mlp-5", "16", "tanh", "pending", "0/?", "-", "-", "-"]
    assert by_number[3][4] == "failed"
    # The failed trial's error follows, its password masked.
    assert "errors of failed trials:\n  mlp-3: OperationalError: cannot reach postgresql://me:***@db.lan/runs\n" in out
    assert "hunter2" not in out


def test_sweep_show_of_a_random_space_names_its_distributions_seed_and_size(db, capsys):
    plan_sweep(db, "rnd", space={"lr": tracker.loguniform(1e-4, 1e-1), "units": tracker.randint(4, 65),
                                 "act": tracker.choice(["relu", "tanh"])}, n_trials=4, seed=7)

    assert main(["sweep", "show", "rnd", "--db", db]) == 0

    out = capsys.readouterr().out
    assert "kind:      random, 4 trials, seed 7\n" in out
    assert "searches:  lr loguniform(0.0001, 0.1)\n           units randint(4, 65)\n           act [\"relu\", \"tanh\"]\n" in out
    assert "trials:    4: 4 pending\n" in out and "best:      none yet\n" in out
    rows = trials_table(out)
    assert [r[1] for r in rows[1:]] == ["rnd-0", "rnd-1", "rnd-2", "rnd-3"]
    drawn = tracker.sweep_trials("rnd", db)
    assert [r[2] for r in rows[1:]] == [format(t.params["lr"], ".4g") for t in drawn]


def test_sweep_show_json_has_the_spec_counts_and_every_trial(record, db, capsys):
    mixed_sweep(record, db)

    assert main(["sweep", "show", "mlp", "--json", "--db", db]) == 0

    found = json.loads(capsys.readouterr().out)
    assert (found["name"], found["kind"], found["total"]) == ("mlp", "grid", 6)
    assert found["spec"] == {"grid": [["units", GRID["units"]], ["act", GRID["act"]]]}
    assert found["counts"] == {"completed": 3, "running": 1, "pending": 1, "failed": 1}
    assert found["best"] == {"name": "mlp-1", "trial": 1, "params": {"units": 4, "act": "tanh"}, "value": 0.1, "source": "objective"}
    assert found["params"] == ["units", "act"]
    assert [t["trial"] for t in found["trials"]] == RANKED
    first, *_, failed = found["trials"]
    assert (first["status"], first["value"], first["source"], first["monitor"], first["best_epoch"]) == ("completed", 0.1, "objective", "val_loss", 2)
    assert (failed["status"], failed["failures"]) == ("failed", 1)
    assert failed["error"].endswith("me:***@db.lan/runs")


@pytest.mark.parametrize("command", [["sweep", "show", "mpl"], ["list", "--sweep", "mpl"]], ids=["sweep-show", "list-sweep"])
def test_unknown_sweep_is_one_line_naming_the_known_ones(record, db, capsys, command):
    mixed_sweep(record, db)
    plan_sweep(db, "cnn", grid={"lr": [0.1]})

    assert main([*command, "--db", db]) == 1

    err = capsys.readouterr().err
    assert err.startswith("error: No sweep named 'mpl'") and err.count("\n") == 1
    assert "Did you mean: 'mlp'?" in err and err.rstrip().endswith("Sweeps there: mlp, cnn.")


# -- sweep list --------------------------------------------------------------


@pytest.mark.parametrize("argv", [["sweep", "list"], ["sweep"]], ids=["list", "no-action"])
def test_sweep_list_has_each_sweep_with_its_counts_and_best_trial(record, db, capsys, argv):
    mixed_sweep(record, db)
    plan_sweep(db, "rnd", space={"lr": tracker.uniform(0.0, 1.0)}, n_trials=3)

    assert main([*argv, "--db", db]) == 0

    rows = table(capsys.readouterr().out)
    assert rows[0] == ["name", "kind", "trials", "status", "best", "created"]
    assert rows[1][:5] == ["mlp", "grid of 6 combinations", "6", "3 completed, 1 running, 1 pending, 1 failed", "mlp-1 objective=0.1"]
    assert rows[2][:5] == ["rnd", "random, 3 trials, seed 0", "3", "3 pending", "-"]


def test_sweep_list_json_and_an_empty_database(record, db, capsys):
    record("plain", 1)

    assert main(["sweep", "list", "--db", db]) == 0
    captured = capsys.readouterr()
    assert captured.out == "" and "no sweeps yet in" in captured.err

    mixed_sweep(record, db)
    assert main(["sweep", "list", "--json", "--db", db]) == 0
    (found,) = json.loads(capsys.readouterr().out)
    assert found["name"] == "mlp" and found["counts"]["completed"] == 3 and found["best"]["name"] == "mlp-1"


# -- list --sweep, and the sweep column of list --------------------------------


def test_list_sweep_lists_the_trials_best_first_with_a_column_per_param(record, db, capsys):
    mixed_sweep(record, db)
    record("plain", 2)

    assert main(["list", "--sweep", "mlp", "--db", db]) == 0

    rows = table(capsys.readouterr().out)
    assert rows[0] == ["#", "name", "units", "act", "status", "epochs", "value", "updated", "tags"]
    assert [int(r[0]) for r in rows[1:]] == RANKED  # pending included; the run of no sweep left out
    assert rows[1][:7] == ["1", "mlp-1", "4", "tanh", "completed", "3/3", "objective=0.1"]
    assert rows[2][:7] == ["2", "mlp-2", "8", "relu", "completed", "3/3", "val_loss=0.45 at epoch 2"]
    assert rows[5][:7] == ["5", "mlp-5", "16", "tanh", "pending", "0/?", "-"]


def test_list_sweep_filters_by_status_pattern_and_tag(record, db, capsys):
    mixed_sweep(record, db)
    assert main(["tag", "mlp-2", "keep=yes", "--db", db]) == 0
    capsys.readouterr()

    def listed(*options: str) -> list[str]:
        assert main(["list", "--sweep", "mlp", *options, "--db", db]) == 0
        return [row[1] for row in table(capsys.readouterr().out)[1:]]

    assert listed("--status", "pending") == ["mlp-5"]
    assert listed("--status", "completed") == ["mlp-1", "mlp-2", "mlp-0"]
    assert listed("mlp-[34]") == ["mlp-4", "mlp-3"]
    assert listed("--tag", "keep=yes") == ["mlp-2"]
    assert main(["list", "--sweep", "mlp", "--status", "crashed", "--db", db]) == 0
    assert "no trials match in sweep 'mlp'" in capsys.readouterr().err


def test_list_sweep_json_is_the_trials_best_first(record, db, capsys):
    mixed_sweep(record, db)

    assert main(["list", "--sweep", "mlp", "--json", "--db", db]) == 0

    found = json.loads(capsys.readouterr().out)
    assert [t["name"] for t in found] == [t.name for t in tracker.sweep_trials("mlp", db)]
    assert found[0] == {**found[0], "sweep": "mlp", "trial": 1, "params": {"units": 4, "act": "tanh"}, "status": "completed",
                        "value": 0.1, "source": "objective", "target_epochs": 3, "tags": {}, "error": None}
    pending = found[RANKED.index(5)]
    assert (pending["status"], pending["value"], pending["last_epoch"], pending["target_epochs"]) == ("pending", None, None, None)


def test_plain_list_gains_a_sweep_column_once_a_run_is_a_trial(record, db, capsys):
    record("plain", 2)
    assert main(["list", "--db", db]) == 0
    assert table(capsys.readouterr().out)[0] == ["name", "status", "epochs", "best", "updated", "tags"]

    mixed_sweep(record, db)
    assert main(["list", "--db", db]) == 0
    rows = table(capsys.readouterr().out)
    assert rows[0] == ["name", "sweep", "status", "epochs", "best", "updated", "tags"]
    assert [r[:3] for r in rows[1:3]] == [["plain", "-", "completed"], ["mlp-0", "mlp #0", "completed"]]
    assert main(["list", "--json", "--db", db]) == 0
    assert [(r["name"], r["sweep"], r["trial"]) for r in json.loads(capsys.readouterr().out)][:2] == [("plain", None, None), ("mlp-0", "mlp", 0)]


# -- usage -------------------------------------------------------------------


@pytest.mark.parametrize(
    "argv",
    [["--db", "{db}", "sweep", "show", "mlp"], ["sweep", "--db", "{db}", "show", "mlp"], ["sweep", "show", "mlp", "--db", "{db}"],
     ["--db", "missing.db", "sweep", "show", "mlp", "--db", "{db}"]],
    ids=["before-sweep", "before-show", "after-show", "after-wins"],
)
def test_db_anywhere_on_the_line(record, db, capsys, argv):
    mixed_sweep(record, db)

    assert main([a.format(db=db) for a in argv]) == 0
    assert "sweep:     mlp" in capsys.readouterr().out


@pytest.mark.parametrize("argv", [["sweep", "show"], ["sweep", "bogus"], ["sweep", "list", "--bogus"]], ids=["no-name", "unknown-action", "unknown-option"])
def test_usage_errors_exit_2(db, argv):
    with pytest.raises(SystemExit) as exc:
        main([*argv, "--db", db])
    assert exc.value.code == 2


@pytest.mark.parametrize("action", ["list", "show"])
def test_each_action_has_help_with_an_example(capsys, action):
    with pytest.raises(SystemExit) as exc:
        main(["sweep", action, "--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    assert out.split("Example:\n", 1)[1].startswith(f"  tracker sweep {action}")
    assert "--db DB" in out


def test_sweep_views_print_escape_sequences_escaped(record, db, capsys):
    from tests.support.sweeps import finish_trial

    sweep_id, params = plan_sweep(db, "esc", grid={"act": ["relu\x1b[31m"]})
    run = record("esc-0", 1, config=params[0], finish="failed")
    finish_trial(db, sweep_id, 0, run, error="ValueError: \x1b]0;pwned\x07")
    assert main(["tag", "esc-0", "k=\x1b[2J", "--db", db]) == 0
    capsys.readouterr()

    for argv in (["sweep", "show", "esc"], ["list", "--sweep", "esc"], ["sweep", "list"]):
        assert main([*argv, "--db", db]) == 0
        out = capsys.readouterr().out
        assert "\x1b" not in out and "\x07" not in out, argv
    assert main(["sweep", "show", "esc", "--db", db]) == 0
    assert "esc-0: ValueError: \\x1b]0;pwned\\x07\n" in capsys.readouterr().out
    assert main(["list", "--sweep", "esc", "--db", db]) == 0
    assert "k=\\x1b[2J" in capsys.readouterr().out
