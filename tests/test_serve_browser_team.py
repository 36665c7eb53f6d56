"""The team view in a real headless Chromium (Debian's, driven by Playwright): a visitor is sent to the login
form, a token opens the run list, and a share link opens its run's page, live, and nothing else."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pytest
from playwright.sync_api import Browser, expect, sync_playwright

import tracker
from tests.support import serving
from tracker.serve import auth
from tracker.store import open_store


@pytest.fixture(scope="module")
def team(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[serving.Server, str, str]]:
    """(server, db, viewer token): runs cnn-a and cnn-b behind ``--team``."""
    tmp = tmp_path_factory.mktemp("team")
    db = str(tmp / "tracker.db")
    for name in ("cnn-a", "cnn-b"):
        run = tracker.track(name, db=db, checkpoint_dir=str(tmp / "ckpt"), monitor="loss")
        run.start()
        for e in range(5):
            run.commit_epoch(e, {"loss": 1.0 / (e + 1), "val_loss": 1.2 / (e + 1)}, {"w": np.zeros(2)}, {})
        run.finish("completed")
    store = open_store(db)
    token = store.create_token("alice", "viewer", expires_at=None)
    store.close()
    server = serving.start(db, "--team")
    yield server, db, token
    code, err = server.stop()
    assert code == 0, err[-3000:]
    assert token not in err and token not in server.out


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as p:
        launched = serving.chromium(p)
        yield launched
        launched.close()


def test_a_visitor_logs_in_with_a_token_and_sees_the_runs(browser, team):
    server, _, token = team
    context = browser.new_context()
    page = context.new_page()
    page.goto(server.url + "/")
    expect(page).to_have_url(server.url + "/login?next=/")
    page.fill("#token", "trk_wrong")
    page.click("button[type=submit]")
    expect(page.locator(".error")).to_contain_text("not valid")
    page.fill("#token", token)
    page.click("button[type=submit]")
    expect(page.locator("body")).to_have_attribute("data-ready", "1")
    expect(page.locator("tr[data-run]")).to_have_count(2)
    expect(page.locator("#live")).to_have_text("live")
    context.close()


def test_a_share_link_opens_its_run_page_live_and_no_other_run(browser, team):
    server, db, _ = team
    store = open_store(db, create=False)
    link = auth.share_link(store, ["cnn-a"], hours=1, base=server.url)
    store.close()
    context = browser.new_context()
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto(link)
    expect(page).to_have_url(server.url + "/run/cnn-a")
    expect(page.locator("body")).to_have_attribute("data-ready", "1")
    expect(page.locator(".chart")).to_have_count(1)
    expect(page.locator("#live")).to_have_text("live")
    assert errors == []
    page.goto(server.url + "/run/cnn-b")
    expect(page).to_have_url(server.url + "/login?next=/run/cnn-b")
    assert "cnn-b" not in page.request.get(server.url + "/api/runs/cnn-b").text()
    context.close()
