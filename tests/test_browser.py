"""End to end in a real browser: `atelier serve` on a free loopback port, driven by headless Chromium.

Shopper tab: history and recommendations appear on load; "Generate images" makes personalized
images (a tiny random SD model stands in for the demo model, so this runs anywhere in seconds).
A/B tab: an experiment is created from those images, a click on "A is better" stores one vote in
SQLite. Screenshots of each step go to benchmarks/results/screenshots/. Studio and Outfit get one
pass each, and two API sessions check that one's cancel leaves the other's job alone.

    pytest -m browser tests/test_browser.py                                   # tiny random model
    ATELIER_BROWSER_MODEL=demo ATELIER_BROWSER_STEPS=20 pytest -m browser tests/test_browser.py
"""

from __future__ import annotations

import sqlite3
import time

import pytest
from browser_tools import SHOTS, click, count_images, wait

# ~1 minute with start-up: run with `pytest -m browser tests/test_browser.py` (or `make test-slow`).
pytestmark = [pytest.mark.browser]

NAME_BOX = "#ab-new-name textarea, #ab-new-name input"




def _tab(driver, label: str):
    from selenium.webdriver.common.by import By

    return driver.find_element(By.XPATH, f"//button[@role='tab' and contains(normalize-space(.), '{label}')]")


def test_shopper_and_ab_in_browser(server, browser):
    from selenium.webdriver.common.by import By

    SHOTS.mkdir(parents=True, exist_ok=True)
    driver = browser
    t0 = time.perf_counter()
    driver.get(server["url"])

    # Shopper: the page load shows the first demo shopper's history and recommendations.
    wait(driver, "history images", lambda d: count_images(d, "#shopper-history") >= 3)
    wait(driver, "recommendation images", lambda d: count_images(d, "#shopper-recs") >= 3)
    assert "Preference from" in driver.find_element(By.ID, "shopper-status").text
    driver.save_screenshot(str(SHOTS / "shopper_recommendations.png"))

    click(driver, driver.find_element(By.ID, "shopper-generate"))
    wait(driver, "generated images", lambda d: count_images(d, "#shopper-images") >= 4)
    assert "Made 4 image(s)" in driver.find_element(By.ID, "shopper-status").text
    driver.save_screenshot(str(SHOTS / "shopper_generated.png"))

    # A/B: an experiment from those images, then one vote by clicking "A is better".
    click(driver, _tab(driver, "A/B ranking"))
    name = wait(driver, "experiment name box",
                 lambda d: next((e for e in d.find_elements(By.CSS_SELECTOR, NAME_BOX)
                                 if e.is_displayed()), False))
    name.send_keys("browser-test")
    click(driver, driver.find_element(By.ID, "ab-from-shopper"))
    wait(driver, "the pair of creatives",
          lambda d: count_images(d, "#ab-left") >= 1 and count_images(d, "#ab-right") >= 1)
    driver.save_screenshot(str(SHOTS / "ab_pair.png"))

    click(driver, driver.find_element(By.ID, "ab-vote-left"))
    wait(driver, "the vote confirmation", lambda d: "Vote stored" in d.find_element(By.ID, "ab-status").text)
    wait(driver, "the ranking table", lambda d: "votes 1" in d.find_element(By.ID, "ab-status").text)
    driver.save_screenshot(str(SHOTS / "ab_voted.png"))

    with sqlite3.connect(server["db"]) as con:
        votes = con.execute("SELECT experiment_id, winner_id, loser_id FROM votes").fetchall()
        n_creatives = con.execute("SELECT COUNT(*) FROM creatives WHERE experiment_id='browser-test'").fetchone()[0]
    assert n_creatives == 4
    assert len(votes) == 1 and votes[0][0] == "browser-test" and votes[0][1] != votes[0][2]
    print(f"browser test: shopper + generation + A/B vote in {time.perf_counter() - t0:.1f} s; "
          f"screenshots in {SHOTS}")


def test_cancel_is_per_session(server):
    """Two sessions generate at once; one cancels: the other's job still finishes with its own images."""
    from gradio_client import Client
    from gradio_client.utils import Status

    a, b = Client(server["url"], verbose=False), Client(server["url"], verbose=False)
    job_a = a.submit("u0001", None, "ease", "any", 0, 8, api_name="/shopper_generate")
    job_b = b.submit("u0002", None, "ease", "any", 3, 2, api_name="/shopper_generate")
    time.sleep(0.3)
    job_a.cancel()
    status, images = job_b.result(timeout=600)
    assert "Made 2 image(s) for `u0002`" in status and len(images) == 2
    assert job_a.status().code == Status.CANCELLED
    assert job_b.status().code == Status.FINISHED


def test_studio_and_outfit_in_browser(server, browser, tmp_path):
    """Studio: upload a product PNG with alpha, get backgrounds and banners; Outfit: pick a shirt, complete it."""
    from PIL import Image
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    SHOTS.mkdir(parents=True, exist_ok=True)
    driver = browser
    driver.get(server["url"])
    click(driver, wait(driver, "the studio tab", lambda d: _tab(d, "Background & banner studio")))
    product = Image.new("RGBA", (96, 96), (0, 0, 0, 0))
    product.paste((200, 40, 40, 255), (24, 16, 72, 80))
    product.save(tmp_path / "product.png")
    upload = driver.find_element(By.CSS_SELECTOR, "#studio-product input[type=file]")
    upload.send_keys(str(tmp_path / "product.png"))
    wait(driver, "the upload", lambda d: d.execute_script(
        "return [...document.querySelectorAll('#studio-product')].some(e => /product\\s*\\.png/.test(e.textContent));"))
    click(driver, driver.find_element(By.ID, "studio-generate"))
    wait(driver, "banners", lambda d: count_images(d, "#studio-banners") >= 2)
    wait(driver, "backgrounds", lambda d: count_images(d, "#studio-backgrounds") >= 2)
    driver.save_screenshot(str(SHOTS / "studio.png"))

    click(driver, _tab(driver, "Outfit"))
    box = wait(driver, "the item picker",
                lambda d: next((e for e in d.find_elements(By.CSS_SELECTOR, "#outfit-items input") if e.is_displayed()),
                               False))
    box.click()
    box.send_keys("shirt")
    option = wait(driver, "the item options",
                   lambda d: next((e for e in d.find_elements(By.CSS_SELECTOR, "[role=option]")
                                   if "shirt" in e.text and e.is_displayed()), False))
    option.click()
    box.send_keys(Keys.ESCAPE)
    click(driver, driver.find_element(By.ID, "outfit-generate"))
    wait(driver, "generated pieces", lambda d: count_images(d, "#outfit-pieces") >= 2)
    wait(driver, "retrieved items", lambda d: count_images(d, "#outfit-items-to-buy") >= 2)
    driver.save_screenshot(str(SHOTS / "outfit.png"))


def _pick(driver, elem_id: str, text: str) -> None:
    """Type into a Gradio dropdown and click the option whose text is exactly `text`."""
    from selenium.webdriver.common.by import By

    box = wait(driver, f"the {elem_id} box", lambda d: next(
        (e for e in d.find_elements(By.CSS_SELECTOR, f"#{elem_id} input") if e.is_displayed()), False))
    box.click()
    box.clear()
    box.send_keys(text)
    option = wait(driver, f"the {text} option", lambda d: next(
        (e for e in d.find_elements(By.CSS_SELECTOR, "[role=option]") if e.is_displayed()
         and e.text.strip().split(" ")[0] == text), False))
    option.click()


def test_switching_backbone_changes_the_shown_condition(server, browser):
    """Shopper tab (#15): choosing MostPop instead of EASE changes the "why" line (backbone, top
    attributes, shares), and typing a shopper id selects that shopper (#18 item 9)."""
    from selenium.webdriver.common.by import By

    driver = browser
    driver.get(server["url"])

    def why(d):
        return d.find_element(By.ID, "shopper-why").text.strip()

    wait(driver, "the EASE condition line", lambda d: why(d).startswith("ease:") and "% history" in why(d))
    before = why(driver)
    _pick(driver, "shopper-user", "u0500")
    assert "u0500" in driver.find_element(By.CSS_SELECTOR, "#shopper-user input").get_attribute("value")
    first = wait(driver, "u0500's EASE line", lambda d: why(d) if why(d).startswith("ease:") and why(d) != before
                 else False)
    _pick(driver, "shopper-model", "mostpop")
    second = wait(driver, "the MostPop condition line", lambda d: why(d) if why(d).startswith("mostpop:") else False)
    assert first != second and "% mostpop" in second
    driver.save_screenshot(str(SHOTS / "shopper_backbone_switch.png"))
