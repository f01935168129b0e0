"""Send to Studio (issue 18 item 7): a Shopper image becomes a Studio product the Studio's own checks accept."""

from __future__ import annotations

import pytest
from PIL import Image

from core.errors import InputError


def _record(ws, tmp_path):
    folder = ws.session_dir("me", "shopper")
    creatives = []
    for k, color in enumerate([(200, 30, 30), (30, 30, 200)]):
        im = Image.new("RGB", (64, 64), (248, 248, 246))
        im.paste(color, (20, 16, 44, 50))
        im.save(folder / f"c{k}.png")
        creatives.append({"creative_id": f"product-{k}", "image_path": f"c{k}.png", "prompt": f"a shirt {k}",
                          "seed": 5 + k, "user_id": "u0003"})
    return {"creatives": creatives, "out_dir": str(folder)}


def test_the_selected_image_becomes_a_cut_out_studio_product(tmp_path):
    import numpy as np

    from app.ui.send_to_studio import studio_product
    from app.ui.studio import prepare_product
    from app.ui.workspace import UIConfig, Workspace

    ws = Workspace(UIConfig(out_dir=tmp_path / "out", ab_db=tmp_path / "ab.sqlite", model="none"))
    record = _record(ws, tmp_path)
    got = studio_product(ws, record, 1, "me")
    assert got["prompt"] == "a shirt 1" and got["user"] == "u0003" and "seed 6" in got["note"]
    assert "cut out" in got["note"] and ws.inside_output(got["path"])
    with Image.open(got["path"]) as im:
        assert im.mode == "RGBA" and im.getpixel((0, 0))[3] == 0 and im.getpixel((30, 30)) == (30, 30, 200, 255)
    stored = prepare_product(got["path"], None, ws.session_dir("me", "studio"))  # the Studio's upload check passes
    assert np.asarray(Image.open(stored))[..., 3].min() == 0
    assert studio_product(ws, record, None, "me")["prompt"] == "a shirt 0", "nothing selected: the first image"

    noisy = Image.effect_noise((64, 64), 80).convert("RGB")  # no plain background: sent whole, with advice
    noisy.save(record["out_dir"] + "/c0.png")
    assert "add a mask" in studio_product(ws, record, 0, "me")["note"]


def test_send_errors_are_one_clear_line(tmp_path):
    from app.ui.send_to_studio import studio_product
    from app.ui.workspace import UIConfig, Workspace

    ws = Workspace(UIConfig(out_dir=tmp_path / "out", ab_db=tmp_path / "ab.sqlite", model="none"))
    with pytest.raises(InputError, match="generate images in the Shopper tab first"):
        studio_product(ws, None, 0, "me")
    record = _record(ws, tmp_path)
    with pytest.raises(InputError, match="no image 5 in the last run"):
        studio_product(ws, record, 4, "me")
    outside = tmp_path / "elsewhere.png"
    Image.new("RGB", (8, 8)).save(outside)
    record["creatives"][0]["image_path"] = str(outside)
    with pytest.raises(InputError, match="no longer in the output folder"):
        studio_product(ws, record, 0, "me")
