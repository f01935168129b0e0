"""The X/Y plot (issue 18 item 7): the labelled sheet (`pipelines.grid`), the axes' parsing and cap, and a
tiny-model grid through the tab's function."""

from __future__ import annotations

import pytest
from PIL import Image

from core.errors import InputError

MODELS = ["ease", "mostpop"]


def test_xy_grid_places_each_image_under_its_labels():
    from pipelines.grid import cell_box, xy_grid

    colors = [(200, 0, 0), (0, 200, 0), (0, 0, 200), (200, 200, 0), (0, 200, 200), (200, 0, 200)]
    images = [Image.new("RGB", (40, 30), c) for c in colors]
    sheet = xy_grid(images, ["seed: 1", "seed: 2", "seed: 3"], ["steps: 10", "steps: 20"])
    assert sheet.mode == "RGB" and sheet.width > 3 * 40 and sheet.height > 2 * 30
    for k, color in enumerate(colors):  # row by row: image k sits in row k // 3, column k % 3
        left, top, right, bottom = cell_box(sheet, images, 3, k)
        assert sheet.getpixel(((left + right) // 2, (top + bottom) // 2)) == color
    # the labels are drawn: the band above the cells and the column left of them hold dark pixels
    first = cell_box(sheet, images, 3, 0)
    top_band = sheet.crop((first[0], 0, sheet.width, first[1])).convert("L")
    left_band = sheet.crop((0, first[1], first[0], sheet.height)).convert("L")
    assert top_band.getextrema()[0] < 100 and left_band.getextrema()[0] < 100
    # mixed sizes are centred in one cell size; a wrong count is one clear error
    assert xy_grid([Image.new("RGB", (20, 20)), Image.new("RGB", (64, 32))], ["a", "b"], [""]).width >= 2 * 64
    with pytest.raises(InputError, match="needs 4 images, got 3"):
        xy_grid(images[:3], ["a", "b"], ["c", "d"])


def test_axes_parse_and_the_grid_is_capped():
    from app.ui.xy_plot import MAX_CELLS, NO_AXIS, cell_settings, parse_axis, plan

    assert parse_axis("seed", "1, 2,3", MODELS) == [1, 2, 3]
    assert parse_axis("guidance", "3, 7.5", MODELS) == [3.0, 7.5]
    assert parse_axis("backbone", "ease, mostpop", MODELS) == MODELS
    for kind, text, message in [("steps", "10, ten", "not a whole number"), ("steps", "0", "steps must be"),
                                ("backbone", "ease, nope", "no recommender 'nope'"), ("seed", " , ", "comma list"),
                                ("seed", "1, 1", "repeat")]:
        with pytest.raises(InputError, match=message):
            parse_axis(kind, text, MODELS)
    assert plan("seed", "1,2", NO_AXIS, "", MODELS) == ([1, 2], [None])
    with pytest.raises(InputError, match="both seed"):
        plan("seed", "1,2", "seed", "3", MODELS)
    with pytest.raises(InputError, match=f"5 x 4 = 20 images is too many; the most is {MAX_CELLS}"):
        plan("seed", "1,2,3,4,5", "steps", "1,2,3,4", MODELS)
    base = {"backbone": "ease", "seed": 0, "steps": 20, "guidance": 7.5}
    assert cell_settings(base, "seed", 3, "backbone", "mostpop") == {**base, "seed": 3, "backbone": "mostpop"}


@pytest.mark.slow
def test_grid_of_seeds_and_backbones_with_a_tiny_model(tmp_path, tiny_sd):
    from app.ui import shopper
    from app.ui.workspace import UIConfig, Unavailable, Workspace
    from app.ui.xy_plot import cell_gallery, run_grid

    ws = Workspace(UIConfig(out_dir=tmp_path / "out", ab_db=tmp_path / "ab.sqlite", model=str(tiny_sd), steps=2))
    try:
        uid = shopper.demo_users(ws, n=1)[0][1]
    except Unavailable as e:
        pytest.skip(str(e))
    out_dir = ws.session_dir("s", "xy")
    base = {"backbone": "ease", "seed": 0, "steps": 2, "guidance": 7.5}
    made, sheet = run_grid(ws, shopper.user_history(ws, uid), uid, base, "seed", [1, 2], "backbone",
                           ["ease", "mostpop"], out_dir)
    assert [c.seed for c in made] == [1, 2, 1, 2]
    assert made[0].condition["source"] != made[2].condition["source"], "each row has its backbone's condition"
    assert [caption for _, caption in cell_gallery(made, out_dir)] == [
        "seed: 1 · backbone: ease", "seed: 2 · backbone: ease", "seed: 1 · backbone: mostpop",
        "seed: 2 · backbone: mostpop"]
    with Image.open(sheet) as im:
        assert im.width > 2 * made[0].width and im.height > 2 * made[0].height
    assert (out_dir / "manifest.jsonl").is_file()
