"""Names that are user data, in a real headless Chromium (as tests/test_serve_browser.py drives it).

Every name training can record must be viewable: a run named ``lr=0.1,bs=32``, a metric named ``a,b``,
a config key ``constructor``, metrics ``toString`` and ``valueOf``. One server and one browser for the module.
"""

from __future__ import annotations

import urllib.parse
from collections.abc import Iterator

import numpy as np
import pytest
from playwright.sync_api import expect

import tracker
from tests.support import serving
from tests.test_serve_browser import browser, open_page, page  # noqa: F401 (fixtures: they use this module's site)

COMMA_RUN = "lr=0.1,bs=32"


def record(db: str, ckpt: str, name: str, metrics: list[str], *, config: dict | None = None) -> None:
    run = tracker.track(name, db=db, checkpoint_dir=ckpt, config=config or {}, monitor="loss")
    run.start()
    for epoch in range(5):
        run.commit_epoch(epoch, {m: (i + 1) / (epoch + 1) for i, m in enumerate(metrics)}, {"w": np.zeros(4)}, {"format": 1})
    run.set_target_epochs(5)
    run.finish("completed")


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[serving.Server, str, str]]:
    tmp = tmp_path_factory.mktemp("names-site")
    db, ckpt = str(tmp / "tracker.db"), str(tmp / "ckpt")
    record(db, ckpt, COMMA_RUN, ["loss", "val_loss", "a,b"], config={"lr": 0.1, "bs": 32})
    record(db, ckpt, "other", ["loss", "val_loss"], config={"lr": 0.2, "bs": 32})
    record(db, ckpt, "proto", ["loss", "toString", "valueOf"], config={"constructor": "mine", "lr": 0.3})
    server = serving.start(db)
    yield server, db, ckpt
    code, err = server.stop()
    assert code == 0, err[-3000:]


def q(name: str) -> str:
    return urllib.parse.quote(name, safe="")


def test_a_metric_named_with_a_comma_is_charted_and_its_url_shared(page, site):  # noqa: F811 (the imported fixture)
    server = site[0]
    open_page(page, f"{server.url}/run/{q(COMMA_RUN)}")
    expect(page.locator("h1")).to_contain_text(COMMA_RUN)
    expect(page.locator('.chart[data-family="a,b"] .u-legend')).to_contain_text("a,b")
    expect(page.locator(".chart")).to_have_count(2)

    page.locator('input[data-metric="val_loss"]').uncheck()
    expect(page.locator('.chart[data-family="loss"] .u-legend')).not_to_contain_text("val_loss")
    two = page.url
    page.goto(two)  # two names, one with a comma: one parameter each
    expect(page.locator("body")).to_have_attribute("data-ready", "1")
    expect(page.locator(".chart")).to_have_count(2)
    expect(page.locator('input[data-metric="val_loss"]')).not_to_be_checked()

    page.locator('input[data-metric="loss"]').uncheck()
    expect(page.locator(".chart")).to_have_count(1)
    alone = page.url
    page.goto(alone)  # the comma name alone
    expect(page.locator("body")).to_have_attribute("data-ready", "1")
    expect(page.locator(".chart")).to_have_count(1)
    expect(page.locator('.chart[data-family="a,b"]')).to_have_count(1)
    expect(page.locator('input[data-metric="a,b"]')).to_be_checked()


def test_a_run_named_with_a_comma_opens_on_the_compare_page_by_url(page, site):  # noqa: F811 (the imported fixture)
    server = site[0]
    open_page(page, f"{server.url}/compare?runs={q(COMMA_RUN)}&runs=other&metrics=loss")
    legend = page.locator('.chart[data-family="loss"] .u-legend')
    expect(legend).to_contain_text(f"{COMMA_RUN} loss")
    expect(legend).to_contain_text("other loss")
    expect(page.locator("#config-diff tr[data-key=lr]")).to_have_count(1)
    # One run, its name alone in the single parameter (the older list form would split it).
    open_page(page, f"{server.url}/compare?runs={q(COMMA_RUN)}")
    expect(page.locator("h1")).to_have_text("Comparing 1 runs")
    expect(page.locator('.chart[data-family="a,b"] .u-legend')).to_contain_text(f"{COMMA_RUN} a,b")
    # The older form still works for names without commas.
    open_page(page, f"{server.url}/compare?runs=other,proto&metrics=loss")
    expect(page.locator("h1")).to_have_text("Comparing 2 runs")


def test_a_run_named_with_a_comma_opens_on_the_compare_page_by_ticking_it(page, site):  # noqa: F811 (the imported fixture)
    server = site[0]
    open_page(page, server.url + "/")
    page.locator(f'tr[data-run="{COMMA_RUN}"] input[type=checkbox]').check()
    page.locator('tr[data-run="other"] input[type=checkbox]').check()
    page.locator("#compare").click()
    expect(page.locator("body")).to_have_attribute("data-ready", "1")
    expect(page.locator("h1")).to_have_text("Comparing 2 runs")
    expect(page.locator('.chart[data-family="loss"] .u-legend')).to_contain_text(f"{COMMA_RUN} loss")
    expect(page.locator('.chart[data-family="a,b"] .u-legend')).to_contain_text(f"{COMMA_RUN} a,b")


def test_a_config_key_named_constructor_is_blank_for_the_runs_without_it(page, site):  # noqa: F811 (the imported fixture)
    server = site[0]
    open_page(page, server.url + "/")
    expect(page.locator('tr[data-run="proto"] td[data-col="config.constructor"]')).to_have_text("mine")
    for name in (COMMA_RUN, "other"):
        expect(page.locator(f'tr[data-run="{name}"] td[data-col="config.constructor"]')).to_have_text("")
    expect(page.locator("#runs")).not_to_contain_text("native code")
    page.locator('input[data-filter="config.constructor"]').fill("mine")
    page.locator('input[data-filter="config.constructor"]').press("Enter")
    expect(page.locator("#runs tbody tr")).to_have_count(1)


def test_metrics_named_tostring_and_valueof_in_one_of_two_compared_runs(page, site):  # noqa: F811 (the imported fixture)
    server = site[0]
    open_page(page, server.url + "/compare?runs=proto&runs=other")
    for metric in ("toString", "valueOf"):
        legend = page.locator(f'.chart[data-family="{metric}"] .u-legend')
        expect(legend).to_contain_text(f"proto {metric}")
        expect(legend).not_to_contain_text("other")
    expect(page.locator('.chart[data-family="loss"] .u-legend')).to_contain_text("other loss")
    expect(page.locator('#config-diff tr[data-key="constructor"]')).to_contain_text("(unset)")
    expect(page.locator("#config-diff")).not_to_contain_text("native code")
    open_page(page, server.url + "/run/proto?metrics=toString&metrics=valueOf")
    expect(page.locator(".chart")).to_have_count(2)
