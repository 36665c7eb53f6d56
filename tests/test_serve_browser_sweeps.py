"""The sweep page in a real headless Chromium (Debian's, driven by Playwright), as tests/test_serve_browser.py drives the others.

One server and one browser for the module. The database holds sweep ``mlp`` with a trial at each status
(`tests.support.sweeps.mixed_sweep`), whose ``act`` values are HTML and ampersands, and a run of no sweep.
Screenshots go to $SERVE_SCREENSHOTS if set, else to a temporary folder.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pytest
from playwright.sync_api import expect

import tracker
from tests.support import serving
from tests.support.sweeps import RANKED, finish_trial, plan_sweep, scaled
from tests.test_serve_browser import browser, open_page, page, shots  # noqa: F401 (fixtures: they use this module's site)

#: The grid's values; ``act`` would inject an image from another site if the page took a param for HTML.
UNITS = [4, 8, 16]
ACTS = ['<img src="//evil.example/x.png">', "tanh & co"]


def commit(run: tracker.Run, epochs: range, scale: float) -> None:
    for epoch in epochs:
        run.commit_epoch(epoch, scaled(scale)(epoch), {"w": np.zeros(4)}, {"format": 1})


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[serving.Server, str, str, int]]:
    """(server, db, checkpoint folder, the sweep's id), with `RANKED`'s statuses: trials 1, 2, 0 completed, 4 running, 5 pending, 3 failed."""
    tmp = tmp_path_factory.mktemp("sweep-site")
    db, ckpt = str(tmp / "tracker.db"), str(tmp / "ckpt")
    sweep_id, params = plan_sweep(db, "mlp", grid={"units": UNITS, "act": ACTS})
    runs = {}
    for number, scale, value, epochs in [(0, 1.2, None, 3), (1, 1.0, 0.1, 3), (2, 0.9, None, 3), (3, 1.0, None, 2), (4, 1.1, None, 1)]:
        run = tracker.track(f"mlp-{number}", db=db, checkpoint_dir=ckpt, config=params[number], monitor="val_loss")
        run.start()
        commit(run, range(epochs), scale)
        runs[number] = run
        if number == 4:
            continue  # left running: this process is its live writer
        run.set_target_epochs(epochs)
        run.finish("failed" if number == 3 else "completed")
        finish_trial(db, sweep_id, number, run, value=value, error="ValueError: diverged" if number == 3 else None)
    plain = tracker.track("plain", db=db, checkpoint_dir=ckpt, monitor="val_loss")
    plain.start()
    commit(plain, range(2), 1.0)
    plain.finish("completed")
    server = serving.start(db)
    yield server, db, ckpt, sweep_id
    runs[4].finish("interrupted")
    code, err = server.stop()
    assert code == 0, err[-3000:]


def test_sweep_page_table_sorts_charts_render_and_compare_opens_the_trials(page, site):  # noqa: F811 (the imported fixture)
    server = site[0]
    open_page(page, server.url + "/sweep/mlp")
    rows = page.locator("#trials tbody tr")
    expect(rows).to_have_count(6)
    for i, number in enumerate(RANKED):  # best first, as tracker.sweep returns them
        expect(rows.nth(i)).to_have_attribute("data-trial", f"mlp-{number}")
    expect(page.locator("#counts")).to_have_text("6: 3 completed, 1 running, 1 pending, 1 failed")
    expect(page.locator("#best")).to_contain_text("mlp-1")
    expect(page.locator('tr[data-trial="mlp-3"] td[data-col="error"]')).to_have_text("ValueError: diverged")

    # Params are text, never HTML: the cell shows the markup and no image was made (nor fetched: see the page fixture).
    expect(page.locator('tr[data-trial="mlp-0"] td[data-col="param.act"]')).to_have_text(ACTS[0])
    expect(page.locator('tr[data-trial="mlp-1"] td[data-col="param.act"]')).to_have_text(ACTS[1])
    expect(page.locator("#main img")).to_have_count(0)

    page.locator('th[data-key="param.units"]').click()
    expect(rows.first.locator('td[data-col="param.units"]')).to_have_text("4")
    page.locator('th[data-key="param.units"]').click()  # descending
    expect(rows.first.locator('td[data-col="param.units"]')).to_have_text("16")
    page.locator('th[data-key="value"]').click()
    expect(rows.first).to_have_attribute("data-trial", "mlp-1")
    expect(rows.last).to_have_attribute("data-trial", "mlp-5")  # no value: last either way
    assert "sort=value" in page.url
    page.goto(page.url)  # the same order from the URL alone
    expect(page.locator("body")).to_have_attribute("data-ready", "1")
    expect(rows.first).to_have_attribute("data-trial", "mlp-1")

    # One scatter per param; the pending trial has no value, so five points each; the categories are the axis.
    expect(page.locator(".scatter")).to_have_count(2)
    for param in ("units", "act"):
        expect(page.locator(f'.scatter[data-param="{param}"] circle')).to_have_count(5)
    expect(page.locator('.scatter[data-param="act"] .tick-label title')).to_have_text(ACTS)
    expect(page.locator('.scatter circle.best')).to_have_count(2)
    expect(page.locator('.scatter[data-param="units"] circle.best')).to_have_attribute("data-trial", "mlp-1")
    page.screenshot(path=shots() / "serve-sweep.png", full_page=True)

    page.locator("#compare-trials").click()
    expect(page.locator("body")).to_have_attribute("data-ready", "1")
    started = [f"mlp-{n}" for n in RANKED if n != 5]
    assert page.url == server.url + "/compare?" + "&".join(f"runs={name}" for name in started)
    expect(page.locator("#compare-runs thead th")).to_have_count(1 + len(started))
    legend = page.locator('.chart[data-family="loss"] .u-legend')
    for name in started:
        expect(legend).to_contain_text(f"{name} val_loss")


def test_run_list_shows_the_sweeps_and_each_runs_sweep(page, site):  # noqa: F811
    server = site[0]
    open_page(page, server.url + "/")
    expect(page.locator('#sweeps tr[data-sweep="mlp"]')).to_contain_text("3 completed, 1 running, 1 pending, 1 failed")
    expect(page.locator('tr[data-run="plain"] td[data-col="sweep"]')).to_have_text("")
    page.locator('tr[data-run="mlp-2"] td[data-col="sweep"] a').click()
    expect(page.locator("body")).to_have_attribute("data-ready", "1")
    assert page.url == server.url + "/sweep/mlp"
    open_page(page, server.url + "/run/mlp-2")
    expect(page.locator("#trial")).to_have_text("#2 of mlp")


def test_the_sweep_page_follows_a_trial_live(page, site):  # noqa: F811
    server, db, ckpt, sweep_id = site
    open_page(page, server.url + "/sweep/mlp")
    pending = page.locator('tr[data-trial="mlp-5"]')
    expect(pending.locator("[data-status]")).to_have_text("pending")

    run = tracker.track("mlp-5", db=db, checkpoint_dir=ckpt, config={"units": 16, "act": ACTS[1]}, monitor="val_loss")
    run.start()
    commit(run, range(1), 0.5)
    expect(pending.locator("[data-status]")).to_have_text("running")
    expect(pending.locator('td[data-col="param.units"]')).to_have_text("16")
    commit(run, range(1, 3), 0.5)
    run.set_target_epochs(3)
    run.finish("completed")
    finish_trial(db, sweep_id, 5, run, value=0.05)
    # Now the best: its objective's value, recorded just after its run ended, reaches the page too.
    expect(page.locator("#trials tbody tr").first).to_have_attribute("data-trial", "mlp-5")
    expect(page.locator('tr[data-trial="mlp-5"] td[data-col="value"]')).to_have_text("0.05")
    expect(page.locator(".scatter circle")).to_have_count(12)
    assert page.evaluate("window.__sameDocument === true"), "the page was reloaded"

