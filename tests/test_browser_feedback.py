"""End to end in a real browser: three rounds of the Shopper tab's "Which do you prefer?" loop.

Each click on A or B must store one feedback event in the A/B store `atelier serve` was started with,
show the condition before and after (what changed), and the updated condition must make new images.

    pytest -m browser tests/test_browser_feedback.py
"""

from __future__ import annotations

import sqlite3

import pytest
from browser_tools import SHOTS, click, count_images, wait

pytestmark = [pytest.mark.browser]




def _text(driver, elem_id: str) -> str:
    from selenium.webdriver.common.by import By

    return driver.find_element(By.ID, elem_id).text


def test_three_rounds_of_the_shopper_loop(server, browser):
    from selenium.webdriver.common.by import By

    SHOTS.mkdir(parents=True, exist_ok=True)
    driver = browser
    driver.get(server["url"])
    wait(driver, "recommendation images", lambda d: count_images(d, "#shopper-recs") >= 3)
    user = _text(driver, "shopper-status")
    assert "Preference from" in user and "feedback" not in user  # a fresh store: no answers yet

    click(driver, driver.find_element(By.ID, "shopper-loop-start"))
    wait(driver, "the first pair", lambda d: count_images(d, "#shopper-loop-a") >= 1
         and count_images(d, "#shopper-loop-b") >= 1 and "Round 1" in _text(d, "shopper-loop-status"))
    conditions = []
    for n, side in enumerate(("a", "b", "a"), start=1):
        click(driver, driver.find_element(By.ID, f"shopper-loop-pick-{side}"))
        wait(driver, f"round {n} stored", lambda d: f"{n} answer(s) so far" in _text(d, "shopper-loop-change")
             and f"Round {n + 1}" in _text(d, "shopper-loop-status"))
        change = _text(driver, "shopper-loop-change")
        assert "Condition before:" in change and "Condition after:" in change and "->" in change
        before = change.split("Condition before:")[1].split("Condition after:")[0].strip()
        after = change.split("Condition after:")[1].split("What changed:")[0].strip()
        assert before != after  # the shown condition changed
        conditions.append(after)
        driver.save_screenshot(str(SHOTS / f"shopper_loop_round{n}.png"))
    assert len(set(conditions)) == 3
    assert "feedback (3 choices)" in _text(driver, "shopper-status")  # the tab's condition is the updated one

    with sqlite3.connect(server["db"]) as con:
        rows = con.execute("SELECT user_id, kind, creative_ids FROM feedback").fetchall()
    assert len(rows) == 3 and {r[1] for r in rows} == {"choice"} and len({r[0] for r in rows}) == 1

    click(driver, driver.find_element(By.ID, "shopper-loop-generate"))
    wait(driver, "images from the updated condition", lambda d: count_images(d, "#shopper-images") >= 4)
    status = _text(driver, "shopper-status")
    assert "Made 4 image(s)" in status and "feedback (3 choices)" in status
    driver.save_screenshot(str(SHOTS / "shopper_loop_generated.png"))
