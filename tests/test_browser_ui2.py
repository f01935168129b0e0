"""Issue 18 item 7, second round, in headless Chromium: the X/Y plot, Send to Studio, the History tab and the
queue position two sessions see. One `atelier serve` (tiny random SD model, 2 steps) for the module; the tests
run in file order and History reads the runs the earlier ones made.

Each test fails on the app before this round: there was no X/Y tab, no Send button, no History tab, and a
second session's job sat in Gradio's queue with no line of ours saying how many jobs were ahead.
"""

from __future__ import annotations

import json
import re

import pytest
from browser_tools import count_images, field, open_tab, shot, tab, text_of, value_of, wait

pytestmark = [pytest.mark.browser]


def _js_click(driver, element) -> None:
    """Scroll to the element and click it with JavaScript (nothing can sit on top of it then)."""
    driver.execute_script("arguments[0].scrollIntoView({block: 'center'}); arguments[0].click();", element)


def _type(driver, elem_id: str, value) -> None:
    """Type into a text box, then leave it without moving the focus on (a focused dropdown opens its list over
    the buttons below it)."""
    from selenium.webdriver.common.keys import Keys

    box = field(driver, elem_id)
    driver.execute_script("arguments[0].scrollIntoView({block: 'center'}); arguments[0].focus();", box)
    box.send_keys(Keys.CONTROL, "a")
    box.send_keys(Keys.DELETE)
    box.send_keys(str(value))
    driver.execute_script("arguments[0].blur();", box)


def _content(driver, elem_id: str | None = None) -> str:
    """All text under the element `elem_id` (or the page), the progress overlay too (Selenium's `.text` leaves
    out the overlay of an empty status box)."""
    return driver.execute_script("const e = arguments[0] ? document.getElementById(arguments[0]) : document.body;"
                                 "return e ? e.textContent : '';", elem_id) or ""


def _newest_run(out, kind: str) -> list[dict]:
    manifests = sorted(out.glob(f"sessions/*/{kind}-*/manifest.jsonl"), key=lambda p: p.stat().st_mtime)
    assert manifests, f"no {kind} run under {out}"
    return [json.loads(line) for line in manifests[-1].read_text().splitlines() if line.strip()]


def test_xy_grid_with_labels_and_cells_and_the_cap(server, browser):
    """Seeds 0, 1 across, steps 1, 2 down: one labelled sheet and four cells; 5 x 4 values is refused in one line."""
    from selenium.webdriver.common.by import By

    d = browser
    open_tab(d, server["url"], "X/Y plot")
    wait(d, "the X values box", lambda d: value_of(d, "xy-x-values") == "0, 1", timeout=120)
    _type(d, "xy-y-values", "1, 2")
    _js_click(d, d.find_element(By.ID, "xy-generate"))
    wait(d, "the grid", lambda d: count_images(d, "#xy-grid") >= 1)
    wait(d, "four cells", lambda d: count_images(d, "#xy-cells") >= 4)
    assert "Made a 2 x 2 grid (4 image(s))" in text_of(d, "xy-status")
    cells = _newest_run(server["out"], "xy")
    assert [(c["seed"], c["steps"]) for c in cells] == [(0, 1), (1, 1), (0, 2), (1, 2)]
    shot(d, "xy_grid")

    _type(d, "xy-x-values", "1, 2, 3, 4, 5")
    _type(d, "xy-y-values", "1, 2, 3, 4")
    _js_click(d, d.find_element(By.ID, "xy-generate"))
    wait(d, "the cap's error", lambda d: "Error" in text_of(d, "xy-status"), timeout=120)
    assert "5 x 4 = 20 images is too many; the most is 16" in text_of(d, "xy-status")


def test_send_the_selected_shopper_image_to_the_studio(server, browser):
    """Generate in the Shopper, click the second image, Send to Studio: the Studio tab opens with that image as
    its product upload, its prompt in the Prompt box and the shopper picked."""
    from selenium.webdriver.common.by import By

    d = browser
    d.get(server["url"])
    wait(d, "recommendations", lambda d: count_images(d, "#shopper-recs") >= 3, timeout=300)
    _js_click(d, d.find_element(By.ID, "shopper-generate"))
    wait(d, "generated images", lambda d: count_images(d, "#shopper-images") >= 4)
    made = _newest_run(server["out"], "shopper")
    thumbs = wait(d, "the gallery thumbnails",
                  lambda d: (lambda t: t if len(t) >= 2 else False)(
                      d.find_elements(By.CSS_SELECTOR, "#shopper-images button.thumbnail-lg")), timeout=60)
    _js_click(d, thumbs[1])
    _js_click(d, d.find_element(By.ID, "shopper-send-studio"))
    wait(d, "the Studio tab", lambda d: tab(d, "Background & banner studio").get_attribute("aria-selected") == "true",
         timeout=120)
    wait(d, "the note", lambda d: "From the Shopper: image 2" in text_of(d, "studio-status"), timeout=60)
    assert value_of(d, "studio-prompt") == made[1]["prompt"]
    product = d.find_element(By.ID, "studio-product").get_attribute("innerHTML") or ""
    assert made[1]["creative_id"] in product, "the second image is the Studio's product upload"
    wait(d, "the product thumbnail", lambda d: count_images(d, "#studio-thumb") >= 1, timeout=60)
    shot(d, "send_to_studio")


def test_history_lists_past_runs_newest_first_and_opens_one(server, browser):
    """The X/Y and Shopper runs above are listed, newest first; clicking the first shows its images and settings."""
    from selenium.webdriver.common.by import By

    d = browser
    open_tab(d, server["url"], "History")
    _js_click(d, wait(d, "Refresh", lambda d: d.find_element(By.ID, "history-refresh"), timeout=60))
    wait(d, "the runs", lambda d: count_images(d, "#history-runs") >= 2)
    assert re.search(r"\d+ run\(s\)", text_of(d, "history-status"))
    table = wait(d, "the table", lambda d: (lambda t: t if "shopper" in t else False)(text_of(d, "history-table")),
                 timeout=60)
    kinds = re.findall(r"\b(shopper|xy|studio)\b", table)
    assert kinds[:2] == ["shopper", "xy"], f"newest first: {kinds} in {table!r}"
    thumbs = d.find_elements(By.CSS_SELECTOR, "#history-runs button.thumbnail-lg")
    _js_click(d, thumbs[0])
    wait(d, "the run's images", lambda d: count_images(d, "#history-images") >= 4, timeout=120)
    details = text_of(d, "history-details")
    made = _newest_run(server["out"], "shopper")
    assert "shopper run of" in details and made[0]["prompt"] in details and "steps 2" in details, details
    shot(d, "history")


@pytest.mark.slow  # 4 x 500 denoising steps while a second session loads: about 4 min here (make test-slow)
def test_second_session_sees_its_place_in_line(server, browser):
    """Session 1 runs four 500-step X/Y cells (500: the most steps a request takes); session 2 (another tab)
    generates in the Shopper and is told
    it waits with 1 job ahead; session 1's Cancel lets it through."""
    from selenium.webdriver.common.by import By

    d = browser
    open_tab(d, server["url"], "X/Y plot")
    first = d.current_window_handle
    wait(d, "the X values box", lambda d: value_of(d, "xy-x-values") == "0, 1", timeout=120)
    _type(d, "xy-x-values", "0, 1, 2, 3")
    _type(d, "xy-y-values", "500")
    _js_click(d, d.find_element(By.ID, "xy-generate"))
    # a step done: session 1 holds the pipelines (not still loading the model, where session 2 could overtake it)
    wait(d, "session 1's first steps", lambda d: re.search(r"step [1-9]\d*/2000", _content(d, "xy-status")),
         timeout=300)

    d.switch_to.new_window("tab")  # a second Gradio session
    try:
        d.get(server["url"])
        wait(d, "recommendations", lambda d: count_images(d, "#shopper-recs") >= 3, timeout=300)
        _js_click(d, d.find_element(By.ID, "shopper-generate"))
        wait(d, "the waiting line", lambda d: "waiting: 1 job ahead of yours (you are 2nd in line)" in _content(d),
             timeout=120)
        shot(d, "queue_position")
        d.switch_to.window(first)
        _js_click(d, d.find_element(By.ID, "xy-cancel"))
        d.switch_to.window([h for h in d.window_handles if h != first][0])
        wait(d, "session 2's images", lambda d: "Made 4 image(s)" in text_of(d, "shopper-status"), timeout=300)
        assert "waiting:" not in _content(d)
    finally:
        for handle in [h for h in d.window_handles if h != first]:
            d.switch_to.window(handle)
            d.close()
        d.switch_to.window(first)
