"""The A/B tab in headless Chromium (issue 18, items 5 and 6): set-up first, same-format pairs with captions,
names beside ids, the vote message naming the voted pair, "—" at 0 impressions, an honest empty export and a
duplicate name that keeps the tables. Each check fails on the tab before issue 18."""

from __future__ import annotations

import os

import pytest
from browser_tools import click, count_images, fake_run, open_tab, pick, serve_app, set_value, shot, \
    skip_without_shop, text_of, wait

pytestmark = [pytest.mark.browser]
FORMATS = [("banner", 300, 250), ("product", 64, 64), ("banner", 300, 250), ("product", 64, 64),
           ("banner", 728, 90)]


@pytest.fixture(scope="module")
def server(tmp_path_factory, browser_model):
    skip_without_shop(tmp_path_factory)
    tmp = tmp_path_factory.mktemp("serve-ab")
    fake_run(tmp / "out" / "sessions" / "tester" / "batch-1" / "spring", FORMATS)
    with serve_app(tmp, browser_model, os.environ.get("ATELIER_BROWSER_STEPS", "2")) as (url, _, log):
        yield {"url": url, "log": log, "out": tmp / "out", "db": tmp / "ab.sqlite"}


def _caption(d, elem_id: str) -> str:
    return d.execute_script("const e = document.querySelector(arguments[0] + ' [data-testid=block-label]') "
                            "|| document.querySelector(arguments[0] + ' label'); return e ? e.textContent : '';",
                            f"#{elem_id}").strip()


def test_ab_setup_pairs_votes_tables_and_export(server, browser):
    from selenium.webdriver.common.by import By

    d = browser
    open_tab(d, server["url"], "A/B ranking")
    name = wait(d, "the new-experiment name box, open on arrival",
                lambda d: next((e for e in d.find_elements(By.CSS_SELECTOR, "#ab-new-name textarea, #ab-new-name input")
                                if e.is_displayed()), False), timeout=60)
    assert name.location["y"] < d.find_element(By.ID, "ab-left").location["y"], "set-up is below the pair"
    wait(d, "the no-experiment hint", lambda d: "create one above" in text_of(d, "ab-status"), timeout=120)
    shot(d, "ab_opens_on_setup")

    set_value(d, "ab-new-name", "spring")
    pick(d, "ab-manifest", "spring", "spring")
    click(d, d.find_element(By.ID, "ab-from-manifest"))
    wait(d, "the pair", lambda d: count_images(d, "#ab-left") >= 1 and count_images(d, "#ab-right") >= 1)
    for _ in range(3):  # every pair shown is of one format, each image captioned with what it is
        a, b = _caption(d, "ab-left"), _caption(d, "ab-right")
        assert a.startswith("A: ") and b.startswith("B: "), (a, b)
        assert a.split(" · ")[:2] and a[3:].split(" · ")[0:2] == b[3:].split(" · ")[0:2], (a, b)
        assert "728x90" not in a + b
        click(d, d.find_element(By.ID, "ab-vote-left"))
        # the message names the pair just voted on: A's and B's captions as they were when clicked
        wait(d, f"'Vote stored' naming {a} and {b}", lambda d: "processing" not in text_of(d, "ab-status")
             and "Vote stored" in text_of(d, "ab-status")
             and text_of(d, "ab-status").replace("\n", " ").find(f"({a[3:]}) preferred over") > 0
             and f"({b[3:]})" in text_of(d, "ab-status").replace("\n", " "), timeout=60)
    shot(d, "ab_same_format_pairs_voted")

    ranking = d.find_element(By.ID, "ab-ranking").text
    assert "banner · 300x250 · for u0001" in ranking and "product · 64x64" in ranking
    ctr = d.find_element(By.ID, "ab-ctr").text
    assert "—" in ctr and "0.5" not in ctr

    # CTR export with no impressions: says why, offers no file
    click(d, d.find_element(By.XPATH, "//*[contains(@class, 'label-wrap') and contains(., 'Export preference pairs')]"))
    click(d, wait(d, "the ctr choice", lambda d: next((e for e in d.find_elements(
        By.XPATH, "//label[.//input[@type='radio' and @value='ctr']]") if e.is_displayed()), False), timeout=30))
    click(d, d.find_element(By.ID, "ab-export"))
    wait(d, "the export message", lambda d: "nothing was written" in text_of(d, "ab-export-status"))
    assert not list(server["out"].rglob("pairs-*.jsonl"))
    shot(d, "ab_export_no_pairs")

    # the same name again: an error by the create buttons; the tables stay
    click(d, d.find_element(By.ID, "ab-from-manifest"))
    wait(d, "the duplicate-name error", lambda d: "Error" in text_of(d, "ab-create-status"))
    assert "experiment 'spring' already exists" in text_of(d, "ab-create-status")
    assert "/tmp" not in text_of(d, "ab-create-status") and "sqlite" not in text_of(d, "ab-create-status")
    assert "banner · 300x250" in d.find_element(By.ID, "ab-ranking").text
    assert count_images(d, "#ab-left") >= 1
    shot(d, "ab_duplicate_name_keeps_tables")
