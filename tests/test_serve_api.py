"""The web view's JSON API, pages and guards, through Starlette's TestClient on SQLite and PostgreSQL."""

from __future__ import annotations

import math
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import tracker
from tests.support import serving
from tracker.records import Position, ProcessInfo
from tracker.serve.app import STATIC, allowed_hosts
from tracker.store import open_store

CHILD = Path(__file__).with_name("child_numpy.py")



def test_run_list_has_the_issue_fields_and_the_crashed_status(record, db, tmp_path, client):
    record("done", 3, config={"lr": 0.1, "layers": [8, 4]})
    # child_numpy dies with os._exit at epoch 1, without finishing, as a killed process would.
    died = subprocess.run([sys.executable, str(CHILD), "dead", "3", "--db", db], env=serving.env(CRASH_AT="1"),
                          cwd=tmp_path, timeout=120)
    assert died.returncode == 9

    runs = client.get("/api/runs").json()

    assert [r["name"] for r in runs] == ["done", "dead"]
    done, dead = runs
    assert {k: done[k] for k in ("status", "last_epoch", "target_epochs", "best_epoch", "monitor", "config")} == {
        "status": "completed", "last_epoch": 2, "target_epochs": 3, "best_epoch": 2, "monitor": "val_loss",
        "config": {"lr": 0.1, "layers": [8, 4]},
    }
    assert done["best_value"] == pytest.approx(1.5 / 3 + 0.02)
    assert (dead["status"], dead["last_epoch"]) == ("crashed", 0)
    assert [(r.name, r.status) for r in tracker.runs(db)] == [(r["name"], r["status"]) for r in runs]


def test_curves_match_tracker_curves_with_resume_epochs(record, db, client):
    record("r", 4, finish=None)
    record("r", 7, force=True)  # a second attempt, resumed at epoch 4

    answer = client.get("/api/runs/r/curves").json()

    expected = tracker.curves("r", db=db)
    assert {k: answer[k] for k in expected} == expected
    assert answer["resumed_at"] == [4]
    assert answer["points"] == 7 and answer["superseded"] is None
    only = client.get("/api/runs/r/curves?metrics=val_loss").json()
    assert set(only) == {"epoch", "val_loss", "resumed_at", "points", "superseded"}
    after = client.get("/api/runs/r/curves?metrics=loss&after=4").json()
    assert after["epoch"] == [5, 6] and after["loss"] == expected["loss"][5:]


def comma_metrics(epoch: int) -> dict[str, float]:
    return {"a,b": 1.0 + epoch, "a": 10.0 + epoch, "b": 20.0 + epoch, "loss": 1 / (epoch + 1)}


def test_a_metric_with_a_comma_is_one_name_alone_or_among_repeated_parameters(record, client):
    record("lr=0.1,bs=32", 3, metrics=comma_metrics, monitor="loss")  # run names may hold commas too
    base = "/api/runs/lr%3D0.1%2Cbs%3D32"
    assert client.get(base).json()["metrics"] == ["a", "a,b", "b", "loss"]

    alone = client.get(f"{base}/curves", params={"metrics": "a,b"})  # the name the run logged wins over a split
    assert alone.status_code == 200, alone.text
    assert set(alone.json()) == {"epoch", "a,b", "resumed_at", "points", "superseded"}
    assert alone.json()["a,b"] == [1.0, 2.0, 3.0]

    repeated = client.get(f"{base}/curves", params=[("metrics", "a,b"), ("metrics", "loss")]).json()
    assert set(repeated) - {"epoch", "resumed_at", "points", "superseded"} == {"a,b", "loss"}
    both = client.get(f"{base}/curves?metrics=a&metrics=b&max_points=10").json()
    assert (both["a"], both["b"]) == ([10.0, 11.0, 12.0], [20.0, 21.0, 22.0]) and "a,b" not in both
    # The older form, one parameter with names between commas, still works where no metric has that name.
    old = client.get(f"{base}/curves?metrics=loss,b").json()
    assert set(old) - {"epoch", "resumed_at", "points", "superseded"} == {"loss", "b"}
    unknown = client.get(f"{base}/curves", params=[("metrics", "a,b"), ("metrics", "c,d")])
    assert unknown.status_code == 400 and "Received: 'c,d'" in unknown.json()["error"]
    empty = client.get(f"{base}/curves?metrics=a&metrics=")
    assert empty.status_code == 400 and "one name per metrics= parameter" in empty.json()["error"]


def test_max_points_keeps_ends_resume_points_and_extremes(db, client):
    store = open_store(db)
    try:
        run, attempt = store.start_attempt("long", config={}, checkpoint_dir="c", process=_process(["train.py"]), force=False)
        run = store.set_monitor(run, "loss", "min")
        rng = np.random.default_rng(3)
        values = rng.normal(1.0, 0.01, 20_000)
        values[7_777], values[13_000] = 9.0, -4.0  # one spike each way
        values[100:200] = np.nan
        run = store.commit_history(run, attempt, [(e, {"loss": float(v)}) for e, v in enumerate(values[:9_000])])
        _, attempt = store.start_attempt("long", config={}, checkpoint_dir="c", process=_process(["train.py"]), force=True)
        store.set_initial_epoch(attempt, 9_000)
        run = store.commit_history(store.get_run("long"), attempt, [(e, {"loss": float(values[e])}) for e in range(9_000, 20_000)])
    finally:
        store.close()

    answer = client.get("/api/runs/long/curves?metrics=loss&max_points=500").json()

    assert len(answer["epoch"]) == 500 and answer["points"] == 20_000
    assert answer["epoch"][0] == 0 and answer["epoch"][-1] == 19_999
    assert 9_000 in answer["epoch"] and answer["resumed_at"] == [9_000]
    assert 7_777 in answer["epoch"] and 13_000 in answer["epoch"]
    loss = [v for v in answer["loss"] if v is not None]
    assert max(loss) == 9.0 and min(loss) == -4.0
    assert answer == client.get("/api/runs/long/curves?metrics=loss&max_points=500").json(), "deterministic"


@pytest.mark.parametrize("max_points", [8, 10, 11, 12, 50])
def test_max_points_returns_as_many_points_as_asked_up_to_the_curve(record, client, max_points):
    record("r", 12)  # loss, val_loss, accuracy: their minimum is 8 points
    answer = client.get(f"/api/runs/r/curves?max_points={max_points}").json()
    assert len(answer["epoch"]) == min(max_points, 12) and answer["points"] == 12
    assert answer["epoch"][0] == 0 and answer["epoch"][-1] == 11
    full = client.get("/api/runs/r/curves").json()
    for metric in ("loss", "val_loss", "accuracy"):
        assert len(answer[metric]) == len(answer["epoch"])
        assert min(full[metric]) in answer[metric] and max(full[metric]) in answer[metric]


def test_superseded_epochs_come_back_only_when_asked(record, db, client):
    record("r", 6, keep_last=None)  # every checkpoint kept, so that the resume point is epoch 2's
    store = open_store(db)
    try:
        store.supersede(store.get_run("r"), None, Position(3))
    finally:
        store.close()
    record("r", 8, keep_last=None)

    plain = client.get("/api/runs/r/curves?metrics=loss").json()
    shown = client.get("/api/runs/r/curves?metrics=loss&superseded=1").json()

    assert plain["epoch"] == list(range(8)) and plain["superseded"] is None
    assert shown["superseded"]["epoch"] == [3, 4, 5]
    assert shown["superseded"]["loss"] == pytest.approx([1 / 4, 1 / 5, 1 / 6])


def test_nan_and_infinity_are_strict_json(record, client):
    record("r", 3, metrics=lambda e: {"loss": [math.nan, math.inf, 0.5][e], "val_loss": [-math.inf, 1.0, 2.0][e]})
    response = client.get("/api/runs/r/curves")
    assert "NaN" not in response.text and "Infinity," not in response.text.replace('"Infinity",', "")
    answer = response.json()
    assert answer["loss"] == [None, "Infinity", 0.5]
    assert answer["val_loss"] == ["-Infinity", 1.0, 2.0]


def test_run_detail_masks_passwords_and_lists_attempts_and_checkpoints(record, db, client):
    record("r", 3, keep_last=1)
    store = open_store(db)
    try:
        # An attempt recorded with a password in its command (as an older tracker might have):
        # the page must mask it all the same.
        secret = ["train.py", "--db", "postgresql+psycopg://me:hunter2@db.lan/runs", "--token=abc"]
        _, attempt = store.start_attempt("r", config={}, checkpoint_dir="c", process=_process(secret), force=True)
        store.finish_attempt(store.get_run("r").id, attempt, "failed", error="could not reach postgresql://me:hunter2@db.lan/x")
    finally:
        store.close()

    response = client.get("/api/runs/r")

    assert "hunter2" not in response.text
    detail = response.json()
    assert [a["status"] for a in detail["attempts"]] == ["completed", "failed"]
    assert "postgresql+psycopg://me:***@db.lan/runs" in detail["attempts"][1]["command"]
    assert detail["attempts"][1]["host"] == "test-host" and detail["attempts"][1]["error"].endswith("me:***@db.lan/x")
    assert [c["epoch"] for c in detail["checkpoints"]] == [2]
    assert detail["metrics"] == ["accuracy", "loss", "val_loss"] and detail["resumed_at"] == []


def _process(argv: list[str]) -> ProcessInfo:
    return ProcessInfo(executable=sys.executable, argv=argv, cwd="/work", host="test-host", pid=2**22 + 1, versions={})


def test_unknown_run_is_404_with_a_json_error_and_suggestions(record, client):
    record("cnn-baseline", 1)
    for path in ("/api/runs/cnn-baseline2", "/api/runs/cnn-baseline2/curves"):
        response = client.get(path)
        assert response.status_code == 404
        assert "No run named 'cnn-baseline2'" in response.json()["error"] and "cnn-baseline" in response.json()["error"]
    assert client.get("/api/nothing").status_code == 404


@pytest.mark.parametrize(
    "query, words",
    [
        ("max_points=0", "Expected an integer >= 1"),
        ("max_points=ten", "Received: 'ten'"),
        ("max_points=3", "Expected at least"),
        ("after=-x", "Invalid value for after"),
        ("after=9223372036854775808", "Expected an integer from -9223372036854775808 to 9223372036854775807"),
        ("after=-99999999999999999999", "Received: -99999999999999999999"),
        ("metrics=loss,,val_loss", "comma-separated names"),
        ("metrics=loss&metrics=", "one name per metrics= parameter"),
        ("metrics=los", "Received: 'los'. Expected names that run 'r' logged: 'accuracy', 'loss', 'val_loss'"),
        ("superseded=maybe", "Expected 1, 0, true or false"),
        ("max_point=10", "Unknown parameter(s) max_point"),
    ],
    ids=["zero", "not-int", "below-minimum", "after", "after-beyond-int64", "after-below-int64", "empty-name", "empty-repeated",
         "unknown-metric", "flag", "typo"],
)
def test_bad_parameters_are_400_with_a_message(record, client, query, words):
    record("r", 5)
    response = client.get(f"/api/runs/r/curves?{query}")
    assert response.status_code == 400
    assert words in response.json()["error"]


@pytest.mark.parametrize("method", ["POST", "PUT", "PATCH", "DELETE"])
def test_nothing_writes(record, client, method):
    record("r", 1)
    for path in ("/api/runs", "/api/runs/r", "/api/runs/r/curves", "/api/events", "/", "/run/r"):
        assert client.request(method, path).status_code == 405, path


@pytest.mark.parametrize("host", ["evil.example", "evil.example:6007", "127.0.0.1.evil.example", "192.168.1.5:6007"])
def test_foreign_host_header_is_403(record, client, host):
    record("r", 1)
    for path in ("/", "/api/runs", "/api/events", "/static/app.js"):
        response = client.get(path, headers={"host": host})
        assert response.status_code == 403, path
        assert "not allowed" in response.json()["error"]


@pytest.mark.parametrize("host", ["127.0.0.1:6007", "127.0.0.1", "localhost", "localhost:8080", "LOCALHOST:6007", "[::1]:6007"])
def test_loopback_host_headers_are_served(record, client, host):
    record("r", 1)
    assert client.get("/api/runs", headers={"host": host}).status_code == 200


def test_allowed_hosts_for_another_address():
    assert allowed_hosts("0.0.0.0", ["gpu-box.lan"]) == {"0.0.0.0", "localhost", "gpu-box.lan"}
    assert allowed_hosts("::1") == {"::1", "127.0.0.1", "localhost"}


def test_pages_load_only_their_own_files(record, client):
    record("r", 1)
    for path in ("/", "/run/r", "/compare?runs=r", "/sweep/s"):
        page = client.get(path)
        assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
        assert "connect-src 'self'" in page.headers["content-security-policy"]
        references = re.findall(r'(?:src|href)="([^"]+)"', page.text)
        assert references and all(r.startswith("/") and not r.startswith("//") or r == "data:," for r in references), references
        for ref in references:
            if ref.startswith("/static/"):
                assert client.get(ref).status_code == 200, ref
    # The vendored library and its licence are package files, not fetched from anywhere.
    assert (STATIC / "vendor" / "uPlot.iife.min.js").stat().st_size > 10_000
    assert "MIT" in (STATIC / "vendor" / "uPlot.LICENSE").read_text()
    scripts = "".join((STATIC / name).read_text() for name in ("app.js", "sweep.js", "index.html"))
    # The SVG namespace is a name, not an address: nothing is fetched from it.
    assert not re.search(r"https?://", scripts.replace('"http://www.w3.org/2000/svg"', ""))


def test_a_page_that_stops_reading_gets_its_stream_ended_not_unbounded_memory():
    import asyncio

    from tracker.serve import feed

    async def stalled_page() -> list:
        queue: asyncio.Queue = asyncio.Queue(feed.MAX_PENDING + 1)  # as `stream` makes it
        for i in range(3 * feed.MAX_PENDING):  # the server keeps offering; the page never reads
            feed._offer(queue, ("runs", {"runs": [i]}))
            assert queue.qsize() <= feed.MAX_PENDING
        return [queue.get_nowait() for _ in range(queue.qsize())]

    left = asyncio.run(stalled_page())
    # What was unread is dropped and the stream ends: the browser reconnects and re-reads on its `hello`.
    assert None in left and len(left) <= feed.MAX_PENDING
