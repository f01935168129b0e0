"""The Batch tab in headless Chromium (issue 18, items 4, 6 and 8): the shipped example is picked and edited in the
page; Cancel keeps the finished images (gallery, zip, count); a rerun resumes the same folder; a new run clears
the old summary; the contact sheet is shown; every problem of a campaign is listed. Fails on the tab before."""

from __future__ import annotations

import re

import pytest
from browser_tools import click, count_images, open_tab, shot, text_of, wait

pytestmark = [pytest.mark.browser]




def _editor_text(d) -> str:
    return d.execute_script("const e = document.querySelector('#batch-editor .cm-content');"
                            "return e ? e.innerText : '';")


def _type_campaign(d, lines: list[str]) -> None:
    """Replace the editor's text by typing (flow-style YAML, so the editor's auto-indent cannot change it)."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    box = d.find_element(By.CSS_SELECTOR, "#batch-editor .cm-content")
    click(d, box)
    box.send_keys(Keys.CONTROL, "a")
    box.send_keys(Keys.DELETE)
    for line in lines:
        box.send_keys(line)
        box.send_keys(Keys.ENTER)


def _manifest_lines(out) -> int:
    return sum(len(f.read_text().splitlines()) for f in out.glob("sessions/*/batch-ui-test/ui-test/manifest*.jsonl"))


def test_example_edit_cancel_resume_and_sheet(server, browser):
    from selenium.webdriver.common.by import By

    d = browser
    open_tab(d, server["url"], "Batch")
    wait(d, "the shipped example in the editor", lambda d: "name: spring-demo" in _editor_text(d), timeout=60)
    shot(d, "batch_example_in_editor")

    campaign = ["name: ui-test", "shop: demo", "products: [p0010, p0004]", "audience: {top_users: 2}",
                "formats: {product: {}}", "candidates: 4", "seed: 0",
                f"model: {{base: '{server['model']}', recommender: mostpop, steps: 60, guidance: 5.0}}"]
    _type_campaign(d, campaign)
    wait(d, "the edited campaign", lambda d: "name: ui-test" in _editor_text(d) and "spring-demo" not in
         _editor_text(d), timeout=30)
    click(d, d.find_element(By.ID, "batch-run"))
    wait(d, "two finished images", lambda d: _manifest_lines(server["out"]) >= 2, timeout=300)
    click(d, d.find_element(By.ID, "batch-cancel"))
    wait(d, "the cancel summary", lambda d: "Cancelled: kept the" in text_of(d, "batch-status"), timeout=60)
    kept = int(re.search(r"kept the (\d+) finished", text_of(d, "batch-status")).group(1))
    assert 2 <= kept < 16
    wait(d, "the kept images", lambda d: count_images(d, "#batch-gallery") == min(kept, 24), timeout=60)
    assert ".zip" in d.find_element(By.ID, "batch-zip").text
    shot(d, "batch_cancel_keeps_images")

    click(d, d.find_element(By.ID, "batch-run"))
    wait(d, "the old summary cleared", lambda d: "Cancelled" not in text_of(d, "batch-status"), timeout=30)
    wait(d, "the resumed run", lambda d: "already done" in text_of(d, "batch-status"), timeout=300)
    status = text_of(d, "batch-status")
    skipped = int(re.search(r"resumed: (\d+) were already done", status).group(1))
    assert skipped >= kept and "16 jobs" in status, status
    assert len(list(server["out"].glob("sessions/*/batch-ui-test"))) == 1  # the same folder, resumed
    wait(d, "the contact sheet", lambda d: count_images(d, "#batch-sheet") >= 1, timeout=60)
    shot(d, "batch_resumed_with_contact_sheet")

    # a campaign with two mistakes: both listed, with their lines
    _type_campaign(d, ["name: bad", "shop: demo", "products: [p0010]", "formats: {product: {}}",
                       "candidates: 0", "seed: -1"])
    click(d, d.find_element(By.ID, "batch-run"))
    wait(d, "the problems", lambda d: "Error" in text_of(d, "batch-status"), timeout=60)
    message = text_of(d, "batch-status")
    assert "more problem" not in message and "line 5" in message and "line 6" in message, message
    assert "/tmp" not in message
    shot(d, "batch_all_problems_listed")
