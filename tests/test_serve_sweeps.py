"""The web view's sweep API (``/api/sweeps``, ``/api/sweeps/{name}``), the sweep of each run, and their guards.

Through Starlette's TestClient on SQLite and PostgreSQL; the sweeps are written through the store as
`tracker.sweep` writes them, their trial runs through the real protocol.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

import tracker
from tests.support import serving
from tests.support.sweeps import GRID, RANKED, finish_trial, mixed_sweep, plan_sweep, scaled

CHILD = Path(__file__).with_name("child_numpy.py")



def test_sweep_detail_lists_the_trials_best_first_as_tracker_sweep_returns_them(record, db, client):
    mixed_sweep(record, db)

    response = client.get("/api/sweeps/mlp")

    assert response.status_code == 200
    assert "hunter2" not in response.text
    detail = response.json()
    assert [t["trial"] for t in detail["trials"]] == RANKED == [t.number for t in tracker.sweep_trials("mlp", db)]
    assert (detail["name"], detail["kind"], detail["description"], detail["total"]) == ("mlp", "grid", "grid of 6 combinations", 6)
    assert detail["searches"] == [["units", "[4, 8, 16]"], ["act", '["relu", "tanh"]']] and detail["spec_text"] is None
    assert detail["spec"] == {"grid": [["units", GRID["units"]], ["act", GRID["act"]]]}
    assert detail["counts"] == {"completed": 3, "running": 1, "pending": 1, "failed": 1}
    assert detail["best"] == {"name": "mlp-1", "trial": 1, "params": {"units": 4, "act": "tanh"}, "value": 0.1, "source": "objective"}
    assert detail["params"] == [{"name": "units", "axis": "linear", "values": [4, 8, 16]},
                                {"name": "act", "axis": "category", "categories": ["relu", "tanh"]}]
    by_number = {t["trial"]: t for t in detail["trials"]}
    assert {k: by_number[2][k] for k in ("name", "params", "status", "value", "source", "monitor", "mode", "best_epoch", "epochs_done",
                                          "target_epochs", "run", "error")} == {
        "name": "mlp-2", "params": {"units": 8, "act": "relu"}, "status": "completed", "value": pytest.approx(0.45),
        "source": "val_loss", "monitor": "val_loss", "mode": "min", "best_epoch": 2, "epochs_done": 3, "target_epochs": 3,
        "run": True, "error": None,
    }
    assert (by_number[4]["status"], by_number[4]["epochs_done"], by_number[4]["target_epochs"]) == ("running", 1, None)
    assert (by_number[5]["status"], by_number[5]["run"], by_number[5]["value"], by_number[5]["source"]) == ("pending", False, None, None)
    assert by_number[3]["status"] == "failed" and by_number[3]["failures"] == 1
    assert by_number[3]["error"] == "OperationalError: cannot reach postgresql://me:***@db.lan/runs"


def test_sweep_list_has_every_sweep_with_its_counts_and_best(record, db, client):
    assert client.get("/api/sweeps").json() == []
    mixed_sweep(record, db)
    plan_sweep(db, "other", space={"lr": tracker.loguniform(1e-4, 1e-1)}, n_trials=2, seed=3)

    listed = client.get("/api/sweeps").json()

    assert [s["name"] for s in listed] == ["mlp", "other"]
    mlp, other = listed
    assert mlp == {k: v for k, v in client.get("/api/sweeps/mlp").json().items() if k in mlp}
    assert "trials" not in mlp and "spec" not in mlp  # the list is the summaries only
    assert (other["description"], other["searches"], other["counts"], other["best"]) == (
        "random, 2 trials, seed 3", [["lr", "loguniform(0.0001, 0.1)"]], {"pending": 2}, None)


def test_runs_say_which_sweep_and_trial_they_belong_to(record, db, client):
    record("plain", 2)
    mixed_sweep(record, db)

    runs = {r["name"]: r for r in client.get("/api/runs").json()}

    assert (runs["plain"]["sweep"], runs["plain"]["trial"]) == (None, None)
    assert (runs["mlp-2"]["sweep"], runs["mlp-2"]["trial"]) == ("mlp", 2)
    assert "mlp-5" not in runs  # a pending trial has no run yet
    detail = client.get("/api/runs/mlp-4").json()
    assert (detail["sweep"], detail["trial"], detail["status"]) == ("mlp", 4, "running")
    assert [(r.name, r.sweep, r.trial) for r in tracker.runs(db)] == [(n, r["sweep"], r["trial"]) for n, r in runs.items()]


def test_a_trial_whose_worker_died_is_crashed_and_keeps_its_epochs(db, tmp_path, client):
    sweep_id, _ = plan_sweep(db, "mlp", grid={"units": [4, 8]})
    # child_numpy dies with os._exit at epoch 2, as a killed worker would.
    died = subprocess.run([sys.executable, str(CHILD), "mlp-1", "5", "--db", db], env=serving.env(CRASH_AT="2"), cwd=tmp_path, timeout=120)
    assert died.returncode == 9

    detail = client.get("/api/sweeps/mlp").json()

    assert [(t["name"], t["status"], t["epochs_done"], t["target_epochs"]) for t in detail["trials"]] == [
        ("mlp-1", "crashed", 2, 5), ("mlp-0", "pending", 0, None)]
    assert detail["counts"] == {"crashed": 1, "pending": 1}
    assert client.get("/api/runs/mlp-1").json()["sweep"] == "mlp"


@pytest.mark.parametrize(
    "searched, expected",
    [
        ({"space": {"lr": tracker.loguniform(1e-4, 1e-1), "units": tracker.randint(4, 65), "drop": tracker.uniform(0.0, 0.5)},
          "n_trials": 4}, {"lr": "log", "units": "linear", "drop": "linear"}),
        ({"grid": {"lr": [1e-3, 1e-2, 1e-1], "batch": [32, 64]}}, {"lr": "log", "batch": "linear"}),
        ({"grid": {"bn": [True, False], "width": [-1.0, 1.0]}}, {"bn": "category", "width": "linear"}),
    ],
    ids=["space", "grid-of-decades", "booleans"],
)
def test_each_param_gets_the_axis_its_values_call_for(db, client, searched, expected):
    plan_sweep(db, "s", **searched)

    params = client.get("/api/sweeps/s").json()["params"]

    assert {p["name"]: p["axis"] for p in params} == expected
    assert [p["name"] for p in params] == list(expected)  # the spec's order


def test_category_values_of_any_json_come_back_exactly_in_the_spec_order(record, db, client):
    values = ['<img src="//evil.example/x.png">', "tanh & co", 'say "hi"\n', [1, 2], None]
    sweep_id, params = plan_sweep(db, "html", space={"act": tracker.choice(values)}, n_trials=6, seed=0)
    run = record("html-0", 2, config=params[0], metrics=scaled(1.0))
    finish_trial(db, sweep_id, 0, run)

    response = client.get("/api/sweeps/html")

    detail = response.json()
    assert detail["params"] == [{"name": "act", "axis": "category", "categories": values}]
    assert [t["params"]["act"] for t in sorted(detail["trials"], key=lambda t: t["trial"])] == [p["act"] for p in params]
    assert json.loads(response.text) == detail and response.headers["content-type"] == "application/json"


def test_unknown_sweep_is_404_naming_the_known_ones(record, db, client):
    mixed_sweep(record, db)

    response = client.get("/api/sweeps/mpl")

    assert response.status_code == 404
    assert response.json()["error"].startswith("No sweep named 'mpl'") and "Did you mean: 'mlp'?" in response.json()["error"]
    assert client.get("/sweep/mpl").status_code == 200  # the page itself; its script shows the API's error


@pytest.mark.parametrize("path", ["/api/sweeps?x=1", "/api/sweeps/mlp?sort=value"])
def test_parameters_are_400(record, db, client, path):
    mixed_sweep(record, db)
    response = client.get(path)
    assert response.status_code == 400 and "takes no parameters" in response.json()["error"]


@pytest.mark.parametrize("method", ["POST", "PUT", "DELETE"])
def test_nothing_writes(record, db, client, method):
    mixed_sweep(record, db)
    for path in ("/api/sweeps", "/api/sweeps/mlp", "/sweep/mlp"):
        assert client.request(method, path).status_code == 405, path


def test_foreign_host_header_is_403(record, db, client):
    mixed_sweep(record, db)
    for path in ("/sweep/mlp", "/api/sweeps", "/api/sweeps/mlp", "/static/sweep.js"):
        response = client.get(path, headers={"host": "evil.example"})
        assert response.status_code == 403, path
