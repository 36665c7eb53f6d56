"""``tracker publish``: the folder opens from file:// in a real headless Chromium, with every network request
refused, and shows what the live API answers for the same runs; it holds no path of the training machine."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from playwright.sync_api import Browser, expect, sync_playwright

import tracker
from tests.support import serving
from tracker.cli import main
from tracker.serve import data
from tracker.store import open_store


def _record(db: str, ckpt: str, name: str, epochs: range, *, finish: str = "completed", config: dict | None = None) -> None:
    run = tracker.track(name, db=db, checkpoint_dir=ckpt, monitor="val_loss", keep_last=None, config=config or {"lr": 0.01})
    run.start()
    for e in epochs:
        run.commit_epoch(e, {"loss": 1.0 / (e + 1), "val_loss": 1.3 / (e + 1) + 0.01 * e}, {"w": np.zeros(3)}, {})
    run.set_target_epochs(12)
    run.finish(finish)


@pytest.fixture(scope="module")
def published(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, Path, Path]:
    """(db, the folder, the training machine's folder): cnn-a resumed at epoch 8 after a rewind from 11, and cnn-b."""
    tmp = tmp_path_factory.mktemp("publish")
    db, ckpt = str(tmp / "tracker.db"), str(tmp / "ckpt")
    _record(db, ckpt, "cnn-a", range(12), finish="interrupted")
    store = open_store(db)
    store.rewind(store.get_run("cnn-a"), 7, force=False)
    store.close()
    _record(db, ckpt, "cnn-a", range(8, 12))
    _record(db, ckpt, "cnn-b", range(6), config={"lr": 0.01, "__proto__": 0.5})  # a JS object literal would drop that key
    out = tmp / "page"
    assert main(["publish", "cnn-a", "cnn-b", "-o", str(out), "--db", db]) == 0
    return db, out, tmp


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as p:
        launched = serving.chromium(p)
        yield launched
        launched.close()


def _open(browser: Browser, url: str) -> tuple[object, list[str], list[str]]:
    context = browser.new_context()
    page = context.new_page()
    refused: list[str] = []
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))

    def only_files(route) -> None:  # noqa: ANN001 - Playwright's Route
        if route.request.url.startswith("file://"):
            route.continue_()
        else:
            refused.append(route.request.url)
            route.abort()

    context.route("**/*", only_files)
    page.goto(url)
    expect(page.locator("body")).to_have_attribute("data-ready", "1")
    return page, refused, errors


def test_the_published_run_page_shows_the_apis_points_resume_marks_and_attempts_offline(browser, published):
    db, out, _ = published
    page, refused, errors = _open(browser, (out / "index.html").as_uri() + "#/run/cnn-a")
    store = open_store(db, create=False)
    live = data.run_curves(store, "cnn-a", max_points=2000)
    detail = data.run_detail(store, "cnn-a")
    store.close()
    drawn = sorted(int(e) for e in page.evaluate("Object.keys(window.trackerAppeared)"))
    assert drawn == live["epoch"] == list(range(12))
    expect(page.locator(".chart")).to_have_count(1)
    expect(page.locator('.chart[data-family="loss"] .u-legend')).to_contain_text("val_loss")
    expect(page.locator("#resumes")).to_have_attribute("data-epochs", "8")
    expect(page.locator("#attempts tbody tr")).to_have_count(len(detail["attempts"]))
    expect(page.locator("#live")).to_have_text("published")
    assert refused == [] and errors == []


def test_the_published_list_and_comparison_route_by_the_hash(browser, published):
    _, out, _ = published
    page, refused, errors = _open(browser, (out / "index.html").as_uri() + "#/")
    expect(page.locator("tr[data-run]")).to_have_count(2)
    page.click('tr[data-run="cnn-b"] a')
    expect(page.locator("body")).to_have_attribute("data-ready", "1")
    assert page.url.endswith("#/run/cnn-b")
    expect(page.locator("h1")).to_contain_text("cnn-b")
    page.goto((out / "index.html").as_uri() + "#/compare?runs=cnn-a,cnn-b")
    expect(page.locator("body")).to_have_attribute("data-ready", "1")
    expect(page.locator(".chart")).to_have_count(1)
    assert refused == [] and errors == []


def test_a_config_key_named_proto_is_published_as_a_key(browser, published):
    _, out, _ = published
    page, refused, errors = _open(browser, (out / "index.html").as_uri() + "#/run/cnn-b")
    expect(page.locator("#config")).to_have_text('{"__proto__":0.5,"lr":0.01}')
    assert refused == [] and errors == []


def test_the_folder_holds_no_path_of_the_training_machine_unless_asked(published, tmp_path):
    db, out, machine = published
    for path in out.rglob("*"):
        if path.is_file() and path.suffix in (".js", ".html", ""):
            text = path.read_text(errors="replace")
            assert str(machine) not in text and "tracker.db" not in text and "/work/" not in text, path
    kept = tmp_path / "with-paths"
    assert main(["publish", "cnn-a", "-o", str(kept), "--include-paths", "--db", db]) == 0
    assert str(machine) in (kept / "data.js").read_text()


def test_a_folder_that_is_not_a_publish_is_refused_and_a_publish_is_replaced(published, tmp_path, capsys):
    db, _, _ = published
    foreign = tmp_path / "mine"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("keep me")
    assert main(["publish", "cnn-a", "-o", str(foreign), "--db", db]) == 1
    assert "did not write" in capsys.readouterr().err and (foreign / "notes.txt").exists()
    again = tmp_path / "page"
    assert main(["publish", "cnn-a", "-o", str(again), "--db", db]) == 0
    assert main(["publish", "cnn-b", "-o", str(again), "--db", db]) == 0
    assert "cnn-b" in (again / "data.js").read_text() and "cnn-a" not in (again / "data.js").read_text()
    assert main(["publish", "nope", "-o", str(tmp_path / "x"), "--db", db]) == 1
    assert not (tmp_path / "x").exists()
