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
