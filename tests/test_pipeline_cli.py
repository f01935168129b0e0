"""`atelier generate ...` on a tiny shop folder and a tiny model: PNGs, a manifest, clean errors."""
from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image


@pytest.fixture(scope="module")
def tiny_shop(tiny_catalog):
    """The tiny catalog plus an interactions.csv: u1 likes red items, u2 navy ones, u3 a bit of both."""
    catalog = tiny_catalog
    rows = ["user_id,item_id,timestamp,click"]
    likes = {"u1": ["t01", "t11", "t21", "t31", "t00"], "u2": ["t00", "t10", "t20", "t30"], "u3": ["t01", "t10", "t21"]}
    for user, items in likes.items():
        rows += [f"{user},{item},{1700000000 + 60 * k},1" for k, item in enumerate(items)]
    (catalog.root / "interactions.csv").write_text("\n".join(rows) + "\n")
    return catalog.root


def run(args):
    from typer.testing import CliRunner

    from app.cli import app

    return CliRunner().invoke(app, args)


def test_generate_product_writes_pngs_and_manifest(tiny_shop, tmp_path, tiny_sd):
    from core.creative import Manifest
    from pipelines.loading import load_sd_pipeline
    from pipelines.product import ProductPipeline
    from recommenders.catalog import Catalog

    model = str(tiny_sd)
    out = tmp_path / "out"
    res = run(["generate", "product", "--user", "u1", "--category", "shirt", "--shop", str(tiny_shop),
               "--recommender", "mostpop", "--model", model, "--steps", "2", "-n", "2", "--out", str(out), "--json"])
    assert res.exit_code == 0, res.output
    records = json.loads(res.stdout)
    assert len(records) == 2 and {r["seed"] for r in records} == {0, 1}
    manifest = Manifest(out / "manifest.jsonl").load()
    assert [c.creative_id for c in manifest] == [r["creative_id"] for r in records]
    first = manifest[0]
    image = Image.open(out / first.image_path)
    assert image.size == (64, 64) and first.user_id == "u1" and first.base_model == model
    # the record alone regenerates the image on this device
    pipe = ProductPipeline(load_sd_pipeline(model), catalog=Catalog.load(tiny_shop / "catalog.jsonl"))
    assert np.array_equal(np.asarray(pipe.regenerate(first)), np.asarray(image.convert("RGB")))


def test_generate_banner_and_background(tiny_shop, tmp_path, tiny_sd):
    model = str(tiny_sd)
    common = ["--user", "u2", "--shop", str(tiny_shop), "--recommender", "mostpop", "--model", model, "--steps", "1",
              "--out", str(tmp_path), "--no-score"]
    res = run(["generate", "banner", "--item", "t00", "--size", "300x250", "--size", "728x90", *common])
    assert res.exit_code == 0, res.output
    res = run(["generate", "background", "--item", "t00", "--mode", "inpaint", "-n", "1", *common])
    assert res.exit_code == 0, res.output
    sizes = sorted(Image.open(p).size for p in tmp_path.glob("*.png"))
    assert sizes == [(96, 96), (300, 250), (728, 90)]  # 64 px product + 25% scene on each side


@pytest.mark.parametrize("args, message", [
    (["product", "--user", "nobody", "--category", "shirt"], "unknown user 'nobody'"),
    (["product", "--user", "u1"], "give --category or --item"),
    (["banner", "--user", "u1", "--item", "t00", "--size", "10x10"], "between 32 and 4096"),
    (["background", "--user", "u1"], "exactly one of --item or --image"),
    (["outfit", "--user", "u1"], "--items"),
])
def test_bad_input_is_one_line_and_exit_2(tiny_shop, tmp_path, capsys, args, message, tiny_sd):
    from app.cli import main

    model = str(tiny_sd)
    with pytest.raises(SystemExit) as exc:
        main(["generate", *args, "--shop", str(tiny_shop), "--recommender", "mostpop", "--model", model,
              "--steps", "1", "--out", str(tmp_path)])
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("error: ") and message in err[-1]
