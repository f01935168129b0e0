"""Helpers for the browser tests: `atelier serve` in a subprocess on a free loopback port, and waits and
clicks on the page (the `browser` and `browser_model` fixtures are in conftest.py)."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import pytest

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


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_http(url: str, proc: subprocess.Popen, log: Path, timeout: float = 300) -> None:
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


@contextlib.contextmanager
def serve_app(tmp: Path, model: str, steps: int | str):
    """`atelier serve` on a free loopback port in a subprocess, stopped on exit; yields (url, proc, log)."""
    port, log = free_port(), tmp / "serve.log"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "ATELIER_THREADS": "1", "HF_HUB_OFFLINE": "1",
           "GRADIO_ANALYTICS_ENABLED": "False", "PYTHONUNBUFFERED": "1"}
    env.pop("ATELIER_AUTH", None)
    cmd = [sys.executable, "-m", "app.cli", "serve", "--port", str(port), "--out", str(tmp / "out"),
           "--ab-db", str(tmp / "ab.sqlite"), "--model", model, "--steps", str(steps)]
    with open(log, "wb") as out:
        proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)
    try:
        wait_http(f"http://127.0.0.1:{port}/", proc, log)
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


def count_images(driver, css: str) -> int:
    """Loaded <img> elements under `css` (naturalWidth > 0 means the picture really arrived)."""
    return driver.execute_script(
        "return [...document.querySelectorAll(arguments[0])].filter(i => i.complete && i.naturalWidth > 0).length;",
        f"{css} img")


def wait(driver, what: str, predicate, timeout: float = 600):
    # generous ceilings: on a shared, busy CPU a first generation can take minutes
    from selenium.webdriver.support.ui import WebDriverWait

    try:
        return WebDriverWait(driver, timeout, poll_frequency=0.5).until(lambda d: predicate(d))
    except Exception:
        driver.save_screenshot(str(SHOTS / "failure.png"))
        raise AssertionError(f"timed out waiting for {what}") from None


def click(driver, element) -> None:
    driver.execute_script("arguments[0].scrollIntoView({block: 'center'});", element)
    element.click()


def tab(driver, label: str):
    """The tab button whose label contains `label`."""
    from selenium.webdriver.common.by import By

    return driver.find_element(By.XPATH, f"//button[@role='tab' and contains(normalize-space(.), '{label}')]")


def open_tab(driver, url: str, label: str) -> None:
    """Load the app and switch to a tab (waits for it to be there)."""
    driver.get(url)
    click(driver, wait(driver, f"the {label} tab", lambda d: tab(d, label), timeout=120))


def field(driver, elem_id: str):
    """The visible input, textarea or number box inside the component with `elem_id`."""
    from selenium.webdriver.common.by import By

    boxes = driver.find_elements(By.CSS_SELECTOR, f"#{elem_id} textarea, #{elem_id} input:not([type=file])"
                                                  f":not([type=range]):not([type=checkbox]):not([type=radio])")
    return next(e for e in boxes if e.is_displayed())


def set_value(driver, elem_id: str, value) -> None:
    """Type `value` into a Gradio textbox / number / slider box as a user would (then leave the box)."""
    from selenium.webdriver.common.keys import Keys

    box = field(driver, elem_id)
    driver.execute_script("arguments[0].scrollIntoView({block: 'center'});", box)
    box.click()
    box.send_keys(Keys.CONTROL, "a")
    box.send_keys(Keys.DELETE)
    box.send_keys(str(value))
    box.send_keys(Keys.TAB)


def value_of(driver, elem_id: str) -> str:
    return field(driver, elem_id).get_attribute("value") or ""


def text_of(driver, elem_id: str) -> str:
    from selenium.webdriver.common.by import By

    return driver.find_element(By.ID, elem_id).text


def pick(driver, elem_id: str, typed: str, option_text: str) -> None:
    """Choose a dropdown option by typing into its filter and clicking the option that contains `option_text`."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    box = field(driver, elem_id)
    click(driver, box)
    box.send_keys(Keys.CONTROL, "a")
    box.send_keys(Keys.DELETE)
    box.send_keys(typed)
    option = wait(driver, f"option {option_text!r}",
                  lambda d: next((e for e in d.find_elements(By.CSS_SELECTOR, "[role=option]")
                                  if option_text in e.text and e.is_displayed()), False), timeout=60)
    option.click()
    box.send_keys(Keys.ESCAPE)


def shot(driver, name: str, element=None, width: int = 900) -> None:
    """A screenshot of the page (or of one element) as it is now, as SHOTS/<name>.png, scaled to `width` px
    and palette-quantized so the committed set stays small."""
    from PIL import Image

    SHOTS.mkdir(parents=True, exist_ok=True)
    path = SHOTS / f"{name}.png"
    (element.screenshot if element is not None else driver.save_screenshot)(str(path))
    with Image.open(path) as im:
        im = im.convert("RGB")
    if im.width > width:
        im = im.resize((width, round(im.height * width / im.width)), Image.LANCZOS)
    im.quantize(colors=128, method=Image.Quantize.MEDIANCUT).save(path, optimize=True)


def upload(driver, elem_id: str, path) -> None:
    """Send a file to the file input of the component `elem_id`."""
    from selenium.webdriver.common.by import By

    driver.find_element(By.CSS_SELECTOR, f"#{elem_id} input[type=file]").send_keys(str(path))


def fake_run(folder: Path, formats: list[tuple[str, int, int]], user: str = "u0001") -> Path:
    """A batch-run folder (images + manifest) with one creative per (pipeline, width, height), as the runner
    writes it; returns the manifest path."""
    from PIL import Image

    from core.creative import Creative, Manifest

    folder.mkdir(parents=True, exist_ok=True)
    manifest = Manifest(folder / "manifest.jsonl")
    for k, (pipeline, w, h) in enumerate(formats):
        Image.new("RGB", (w, h), (40 * k % 255, 120, 200 - 20 * k)).save(folder / f"c{k}.png")
        manifest.append(Creative(creative_id=f"{pipeline}-{k:02d}", pipeline=pipeline, base_model="tiny",
                                 prompt=f"prompt {k}", seed=k, steps=2, guidance=5.0, width=w, height=h,
                                 image_path=f"c{k}.png", user_id=user))
    return manifest.path
