"""The Studio as A1111 users expect it, in headless Chromium (issue 18, items 3, 6, 7, 8 and 10).

One `atelier serve` (tiny random SD model) for the whole module. Each test fails on the Studio
before issue 18: no prompt, steps, guidance or seed controls, no PNG settings, no catalog product,
errors at the top with Gradio's temporary path, headlines borrowed from the shopper's colors.
"""

from __future__ import annotations

import re
import shutil

import pytest
from browser_tools import (click, count_images, open_tab, pick, set_value, shot,
                           text_of, upload, value_of, wait)

pytestmark = [pytest.mark.browser]
STUDIO = "Background & banner studio"




def _pngs(out_dir, pipeline: str) -> list:
    return sorted(out_dir.rglob(f"{pipeline}-*.png"), key=lambda p: p.stat().st_mtime)


def test_catalog_product_settings_and_png_restore(server, browser):
    """Pick red checked trousers from the catalog, set steps/CFG/seed, generate; the PNG carries the settings
    and dropping it back restores them; random and reuse seed work."""
    from selenium.webdriver.common.by import By

    from core.pnginfo import read_png_parameters

    d = browser
    open_tab(d, server["url"], STUDIO)
    pick(d, "studio-item", "red checked trousers", "casual red checked trousers (p0144)")
    wait(d, "the product thumbnail", lambda d: count_images(d, "#studio-thumb") >= 1)
    set_value(d, "studio-n-bg", 1)
    set_value(d, "studio-steps", 3)
    set_value(d, "studio-guidance", 6.5)
    set_value(d, "studio-seed", 4242)
    set_value(d, "studio-negative", "blurry, text")
    click(d, d.find_element(By.ID, "studio-generate"))
    wait(d, "banners", lambda d: count_images(d, "#studio-banners") >= 2)
    wait(d, "the finished status", lambda d: "Made 3 image(s)" in text_of(d, "studio-status"))
    used = text_of(d, "studio-used")
    assert "Headline: Picked for you: casual red checked trousers" in used
    assert re.search(r"Banner backdrop prompt: a red checked trousers|Banner backdrop prompt: red checked trousers",
                     used), used
    shot(d, "studio_catalog_product")

    banner = _pngs(server["out"], "banner")[-1]
    got = read_png_parameters(banner)
    assert (got["steps"], got["guidance"], got["seed"], got["negative_prompt"]) == (3, 6.5, 4242, "blurry, text")
    assert got["prompt"] in used and got["pipeline"] == "banner" and got["backbone"] and got["user"]
    assert (got["width"], got["height"]) in {(300, 250), (728, 90)}

    # random seed, then reuse the last run's seed
    click(d, d.find_element(By.ID, "studio-random-seed"))
    wait(d, "a random seed", lambda d: value_of(d, "studio-seed") not in ("", "4242"))
    click(d, d.find_element(By.ID, "studio-reuse-seed"))
    wait(d, "the reused seed", lambda d: value_of(d, "studio-seed") == "4242")

    # settings from a dragged-in PNG: change them, then drop the banner back in
    set_value(d, "studio-seed", 7)
    set_value(d, "studio-steps", 9)
    set_value(d, "studio-prompt", "something else")
    upload(d, "studio-pnginfo", banner)
    wait(d, "restored settings", lambda d: "Restored the settings" in text_of(d, "studio-status"))
    assert value_of(d, "studio-seed") == "4242" and value_of(d, "studio-steps") == "3"
    assert value_of(d, "studio-guidance") == "6.5" and value_of(d, "studio-prompt") == got["prompt"]
    assert value_of(d, "studio-negative") == "blurry, text"
    shot(d, "studio_png_settings_restored")


def test_upload_thumbnail_headline_and_errors_by_the_button(server, browser, tmp_path):
    """An upload shows a thumbnail and the banner speaks of the uploaded product; a bad upload's error sits under
    Generate and names the user's file, never the temporary upload folder."""
    from selenium.webdriver.common.by import By

    d = browser
    open_tab(d, server["url"], STUDIO)
    bad = tmp_path / "my broken product.png"
    bad.write_bytes(b"not a picture at all")
    upload(d, "studio-product", bad)
    # the narrow file box may shorten the shown name (".p"): look for it in the component's markup
    wait(d, "the upload", lambda d: "my broken product" in (d.find_element(By.ID, "studio-product")
                                                            .get_attribute("innerHTML") or ""))
    go = d.find_element(By.ID, "studio-generate")
    click(d, go)
    wait(d, "the error", lambda d: "Error" in text_of(d, "studio-status"))
    message = text_of(d, "studio-status")
    assert "my broken product.png" in message, message
    assert "/tmp" not in message and "gradio" not in message.lower(), message
    status = d.find_element(By.ID, "studio-status")
    gap = abs(status.location["y"] - (go.location["y"] + go.size["height"]))
    assert gap < 150, f"the error is {gap} px from the Generate button"
    shot(d, "studio_error_by_the_button")

    # the catalog's red checked trousers as a user's own upload: the classifier reads them
    from recommenders.shop import DemoShop

    catalog = DemoShop.load().catalog
    mine = tmp_path / "trousers from my shop.png"
    shutil.copyfile(catalog.image_file("p0144"), mine)
    open_tab(d, server["url"], STUDIO)
    upload(d, "studio-product", mine)
    wait(d, "the upload thumbnail", lambda d: count_images(d, "#studio-thumb") >= 1)
    set_value(d, "studio-n-bg", 0)
    click(d, d.find_element(By.ID, "studio-generate"))
    wait(d, "banners", lambda d: count_images(d, "#studio-banners") >= 2)
    used = text_of(d, "studio-used")
    assert "Headline: Picked for you: red checked trousers" in used, used
    assert "green" not in used.split("Headline:")[1].split("\n")[0]
    shot(d, "studio_upload_thumbnail_headline")


def test_one_progress_line_and_cancel_keeps_finished_images(server, browser):
    """A long run shows one line 'step k/N · p% · ~s left' (one bar, in one place); Cancel keeps what was done."""
    from selenium.webdriver.common.by import By

    d = browser
    open_tab(d, server["url"], STUDIO)
    pick(d, "studio-item", "red checked trousers", "casual red checked trousers (p0144)")
    set_value(d, "studio-n-bg", 4)
    set_value(d, "studio-steps", 150)
    click(d, d.find_element(By.ID, "studio-generate"))
    line = re.compile(r"step (\d+)/900 · (\d+)% · ~\d+ s left")
    seen = wait(d, "the progress line", lambda d: line.search(d.find_element(By.TAG_NAME, "body").text), timeout=300)
    done, pct = int(seen.group(1)), int(seen.group(2))
    assert pct == round(100 * done / 900)
    body = d.find_element(By.TAG_NAME, "body").text
    assert len(line.findall(body)) == 1 and "steps |" not in body and "it/s" not in body, body[:2000]
    status = d.find_element(By.ID, "studio-status")
    d.execute_script("arguments[0].scrollIntoView({block: 'center'});", status)
    wait(d, "the progress line again", lambda d: line.search(status.text), timeout=60)
    shot(d, "studio_one_progress_line", element=status)
    hosts = d.execute_script("return [...new Set([...document.querySelectorAll('.progress-level')]"
                             ".filter(e => e.offsetParent !== null).map(e => (e.closest('[id]') || {}).id))];")
    assert hosts == ["studio-status"], f"progress bars in {hosts}"
    wait(d, "a finished background", lambda d: count_images(d, "#studio-backgrounds") >= 1, timeout=300)
    click(d, d.find_element(By.ID, "studio-cancel"))
    wait(d, "the cancel summary", lambda d: "Cancelled: kept the" in text_of(d, "studio-status"), timeout=60)
    kept = int(re.search(r"kept the (\d+) finished", text_of(d, "studio-status")).group(1))
    assert 1 <= kept < 6
    wait(d, "the kept images on screen",
         lambda d: count_images(d, "#studio-backgrounds") + count_images(d, "#studio-banners") == kept, timeout=60)
    assert ".zip" in d.find_element(By.ID, "studio-zip").text
    shot(d, "studio_cancel_keeps_finished")
