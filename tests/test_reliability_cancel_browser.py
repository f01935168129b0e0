"""End to end: the Cancel button in a real browser stops that session's *running* generation.

`atelier serve` runs a tiny random SD model with 600 denoising steps, so one Shopper job (4
candidates) takes about a minute on this CPU. The browser clicks "Generate images", waits until
the job is inside the denoising loop (its session folder exists), clicks "Cancel", and then the
server process must go idle within seconds (its CPU time stops growing) instead of finishing the
loop, leave nothing in that job's folder, and still serve another session's job to the end.
"""
from __future__ import annotations

import os
import time
from pathlib import Path

import pytest
from browser_tools import click, count_images, serve_app, skip_without_shop, wait

pytestmark = [pytest.mark.browser, pytest.mark.slow]
STEPS = 600


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime


@pytest.fixture(scope="module")
def slow_server(tmp_path_factory, browser_model):
    skip_without_shop(tmp_path_factory)
    if not Path("/proc/self/stat").exists():
        pytest.skip("needs /proc to read the server's CPU time")
    tmp = tmp_path_factory.mktemp("serve-cancel")
    with serve_app(tmp, browser_model, STEPS) as (url, proc, log):
        yield {"url": url, "out": tmp / "out", "pid": proc.pid, "log": log}


def _idle_within(pid: int, timeout: float, window: float = 1.5, busy_share: float = 0.25) -> float | None:
    """Seconds until the process used < `busy_share` of one core over a `window`; None if it never did."""
    t0 = time.time()
    while time.time() - t0 < timeout:
        c0 = _cpu_seconds(pid)
        time.sleep(window)
        if _cpu_seconds(pid) - c0 < busy_share * window:
            return time.time() - t0
    return None


def test_cancel_button_stops_the_running_job(slow_server, browser):
    from gradio_client import Client
    from selenium.webdriver.common.by import By

    driver, out = browser, slow_server["out"]
    driver.get(slow_server["url"])
    wait(driver, "history images", lambda d: count_images(d, "#shopper-history") >= 3)
    click(driver, driver.find_element(By.ID, "shopper-generate"))
    folder = wait(driver, "the job to start denoising",
                   lambda d: next(iter((out / "sessions").glob("*/shopper-*")), None) if (out / "sessions").is_dir()
                   else None, timeout=300)
    time.sleep(1.0)
    c0 = _cpu_seconds(slow_server["pid"])
    time.sleep(3.0)
    busy = (_cpu_seconds(slow_server["pid"]) - c0) / 3.0  # share of a core the job gets on this (shared) CPU
    assert busy > 0.15, f"the job is not running ({busy:.2f} of a core): nothing to cancel"
    click(driver, driver.find_element(By.ID, "shopper-cancel"))
    idle_after = _idle_within(slow_server["pid"], timeout=20, busy_share=min(0.25, busy / 3))
    # uncancelled, 4 candidates x 600 steps keep the server busy for about a minute more
    assert idle_after is not None, "the server kept computing after Cancel: the running job was not stopped"
    assert not (folder / "manifest.jsonl").exists() and not list(folder.glob("*.png"))

    # another session's job still runs to the end, on the lock the cancelled job let go of
    other = Client(slow_server["url"], verbose=False, download_files=False)
    status, images = other.predict("u0002", None, "ease", "any", 3, 1, api_name="/shopper_generate")[:2]
    assert "Made 1 image(s) for `u0002`" in status and len(images) == 1
    print(f"browser cancel: job used {busy:.2f} core; server idle {idle_after:.1f} s after the click; "
          "the other session's job finished")
