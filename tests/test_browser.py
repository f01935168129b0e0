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

import contextlib
import os
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import pytest

# ~1 minute with start-up: run with `pytest -m browser tests/test_browser.py` (or `make test-slow`).
pytestmark = [pytest.mark.browser]

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
ROOT = Path(__file__).resolve().parents[1]
# Screenshots land in benchmarks/results/screenshots with ATELIER_SAVE_SCREENSHOTS=1 (how the committed
# ones were made); otherwise in a temp folder, so `make test` leaves the working tree clean.
SHOTS = (ROOT / "benchmarks" / "results" / "screenshots" if os.environ.get("ATELIER_SAVE_SCREENSHOTS") == "1"
         else Path(tempfile.gettempdir()) / "atelier-screenshots")
CHROME_FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-dev-shm-usage",
                "--window-size=1400,1800")
NAME_BOX = "#ab-new-name textarea, #ab-new-name input"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_http(url: str, proc: subprocess.Popen, log: Path, timeout: float = 300) -> None:
    end = time.time() + timeout
    while time.time() < end:
        if proc.poll() is not None:
            raise AssertionError(f"atelier serve exited with {proc.returncode}:\n{log.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(url, timeout=2) as r:
                if r.status == 200:
                    return
        except OSError:
            time.sleep(0.5)
    raise AssertionError(f"atelier serve did not answer within {timeout} s:\n{log.read_text()[-3000:]}")


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory) -> str:
    """A tiny random SD folder (seconds, anywhere); ATELIER_BROWSER_MODEL=demo uses the shipped model instead."""
    if os.environ.get("ATELIER_BROWSER_MODEL"):
        return os.environ["ATELIER_BROWSER_MODEL"]
    from tiny_models import build_tiny_sd  # tests/ is on sys.path under pytest

    return str(build_tiny_sd(tmp_path_factory.mktemp("models") / "sd"))


@contextlib.contextmanager
def serve_app(tmp: Path, model: str, steps: int | str):
    """`atelier serve` on a free loopback port in a subprocess, stopped on exit; yields (url, proc, log)."""
    port, log = _free_port(), tmp / "serve.log"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "ATELIER_THREADS": "1", "HF_HUB_OFFLINE": "1",
           "GRADIO_ANALYTICS_ENABLED": "False", "PYTHONUNBUFFERED": "1"}
    env.pop("ATELIER_AUTH", None)
    cmd = [sys.executable, "-m", "app.cli", "serve", "--port", str(port), "--out", str(tmp / "out"),
           "--ab-db", str(tmp / "ab.sqlite"), "--model", model, "--steps", str(steps)]
    with open(log, "wb") as out:
        proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)
    try:
        _wait_http(f"http://127.0.0.1:{port}/", proc, log)
        yield f"http://127.0.0.1:{port}/", proc, log
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def skip_without_shop(tmp_path_factory) -> None:
    from app.ui.workspace import UIConfig, Unavailable, Workspace

    try:
        Workspace(UIConfig(out_dir=tmp_path_factory.mktemp("probe"))).shop()
    except Unavailable as e:
        pytest.skip(str(e))


@pytest.fixture(scope="module")
def server(tmp_path_factory, tiny_model):
    """`atelier serve` in a subprocess (our own process group; stopped by its pid at the end)."""
    skip_without_shop(tmp_path_factory)
    tmp = tmp_path_factory.mktemp("serve")
    with serve_app(tmp, tiny_model, os.environ.get("ATELIER_BROWSER_STEPS", "2")) as (url, _, log):
        yield {"url": url, "db": tmp / "ab.sqlite", "log": log, "out": tmp / "out"}


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    if not (CHROMIUM.exists() and CHROMEDRIVER.exists()):
        pytest.skip(f"needs {CHROMIUM} and {CHROMEDRIVER} (apt-get install chromium chromium-driver)")
    webdriver = pytest.importorskip("selenium.webdriver")
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in CHROME_FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={tmp_path_factory.mktemp('chromium-profile')}")
    driver = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)
    driver.set_page_load_timeout(120)
    try:
        yield driver
    finally:
        driver.quit()


def _count_images(driver, css: str) -> int:
    """Loaded <img> elements under `css` (naturalWidth > 0 means the picture really arrived)."""
    return driver.execute_script(
        "return [...document.querySelectorAll(arguments[0])].filter(i => i.complete && i.naturalWidth > 0).length;",
        f"{css} img")


def _wait(driver, what: str, predicate, timeout: float = 600):
    # generous ceilings: on a shared, busy CPU a first generation can take minutes
    from selenium.webdriver.support.ui import WebDriverWait

    try:
        return WebDriverWait(driver, timeout, poll_frequency=0.5).until(lambda d: predicate(d))
    except Exception:
        driver.save_screenshot(str(SHOTS / "failure.png"))
        raise AssertionError(f"timed out waiting for {what}") from None


def _click(driver, element) -> None:
    driver.execute_script("arguments[0].scrollIntoView({block: 'center'});", element)
    element.click()


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
    _wait(driver, "history images", lambda d: _count_images(d, "#shopper-history") >= 3)
    _wait(driver, "recommendation images", lambda d: _count_images(d, "#shopper-recs") >= 3)
    assert "Preference from" in driver.find_element(By.ID, "shopper-status").text
    driver.save_screenshot(str(SHOTS / "shopper_recommendations.png"))

    _click(driver, driver.find_element(By.ID, "shopper-generate"))
    _wait(driver, "generated images", lambda d: _count_images(d, "#shopper-images") >= 4)
    assert "Made 4 image(s)" in driver.find_element(By.ID, "shopper-status").text
    driver.save_screenshot(str(SHOTS / "shopper_generated.png"))

    # A/B: an experiment from those images, then one vote by clicking "A is better".
    _click(driver, _tab(driver, "A/B ranking"))
    accordion = driver.find_element(By.XPATH, "//*[contains(@class, 'label-wrap') and contains(., 'New experiment')]")
    _click(driver, accordion)
    name = _wait(driver, "experiment name box",
                 lambda d: next((e for e in d.find_elements(By.CSS_SELECTOR, NAME_BOX)
                                 if e.is_displayed()), False))
    name.send_keys("browser-test")
    _click(driver, driver.find_element(By.ID, "ab-from-shopper"))
    _wait(driver, "the pair of creatives",
          lambda d: _count_images(d, "#ab-left") >= 1 and _count_images(d, "#ab-right") >= 1)
    driver.save_screenshot(str(SHOTS / "ab_pair.png"))

    _click(driver, driver.find_element(By.ID, "ab-vote-left"))
    _wait(driver, "the vote confirmation", lambda d: "Vote stored" in d.find_element(By.ID, "ab-status").text)
    _wait(driver, "the ranking table", lambda d: "votes 1" in d.find_element(By.ID, "ab-status").text)
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
    _click(driver, _wait(driver, "the studio tab", lambda d: _tab(d, "Background & banner studio")))
    product = Image.new("RGBA", (96, 96), (0, 0, 0, 0))
    product.paste((200, 40, 40, 255), (24, 16, 72, 80))
    product.save(tmp_path / "product.png")
    upload = driver.find_element(By.CSS_SELECTOR, "#studio-product input[type=file]")
    upload.send_keys(str(tmp_path / "product.png"))
    _wait(driver, "the upload", lambda d: d.execute_script(
        "return [...document.querySelectorAll('#studio-product')].some(e => /product\\s*\\.png/.test(e.textContent));"))
    _click(driver, driver.find_element(By.ID, "studio-generate"))
    _wait(driver, "banners", lambda d: _count_images(d, "#studio-banners") >= 2)
    _wait(driver, "backgrounds", lambda d: _count_images(d, "#studio-backgrounds") >= 2)
    driver.save_screenshot(str(SHOTS / "studio.png"))

    _click(driver, _tab(driver, "Outfit"))
    box = _wait(driver, "the item picker",
                lambda d: next((e for e in d.find_elements(By.CSS_SELECTOR, "#outfit-items input") if e.is_displayed()),
                               False))
    box.click()
    box.send_keys("shirt")
    option = _wait(driver, "the item options",
                   lambda d: next((e for e in d.find_elements(By.CSS_SELECTOR, "[role=option]")
                                   if "shirt" in e.text and e.is_displayed()), False))
    option.click()
    box.send_keys(Keys.ESCAPE)
    _click(driver, driver.find_element(By.ID, "outfit-generate"))
    _wait(driver, "generated pieces", lambda d: _count_images(d, "#outfit-pieces") >= 2)
    _wait(driver, "retrieved items", lambda d: _count_images(d, "#outfit-items-to-buy") >= 2)
    driver.save_screenshot(str(SHOTS / "outfit.png"))
