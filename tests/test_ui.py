"""UI callbacks as plain functions, the app's routes and safe defaults (no browser; see test_browser.py)."""

from __future__ import annotations

import base64
import sqlite3
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from core.creative import Creative, Manifest
from core.errors import InputError


@pytest.fixture()
def ws(tmp_path):
    from app.ui.workspace import UIConfig, Workspace

    return Workspace(UIConfig(out_dir=tmp_path / "out", ab_db=tmp_path / "ab.sqlite", model=str(tmp_path / "no-model"),
                              campaigns_dir=tmp_path / "campaigns"))


@pytest.fixture()
def shop_ws(ws):
    from app.ui.workspace import Unavailable

    try:
        ws.shop()
    except Unavailable as e:
        pytest.skip(str(e))
    return ws


def _creatives(folder: Path, n: int = 3) -> list[Creative]:
    """n saved creatives with distinct solid-color images and a manifest, like a batch run writes."""
    folder.mkdir(parents=True, exist_ok=True)
    manifest = Manifest(folder / "manifest.jsonl")
    out = []
    for k in range(n):
        Image.new("RGB", (32, 32), (60 * k, 100, 200 - 50 * k)).save(folder / f"c{k}.png")
        c = Creative(creative_id=f"c{k}", pipeline="product", base_model="tiny", prompt=f"prompt {k}", seed=k,
                     steps=2, guidance=5.0, width=32, height=32, image_path=f"c{k}.png", user_id="u0001")
        manifest.append(c)
        out.append(c)
    return out


# --- settings and safe defaults ----------------------------------------------------------------
def test_parse_auth():
    from app.ui.server import parse_auth

    assert parse_auth(None) is None and parse_auth("") is None
    assert parse_auth("ann:s3:cret") == ("ann", "s3:cret")
    for bad in ("ann", "ann:", ":pw"):
        with pytest.raises(InputError):
            parse_auth(bad)


def test_session_dirs_stay_inside_output(ws):
    a = ws.session_dir("../../etc", "shopper")
    b = ws.session_dir("abc/../def", "../x")
    assert ws.inside_output(a) and ws.inside_output(b)
    assert a != b and a.is_dir()
    assert not ws.inside_output("/etc/passwd")


def test_cached_builds_once(ws):
    calls = []
    assert ws.cached("k", lambda: calls.append(1) or 42) == 42
    assert ws.cached("k", lambda: calls.append(1) or 43) == 42
    assert calls == [1]


def test_serve_rejects_bad_arguments(capsys):
    from app.cli import main
    from app.commands.serve import serve

    for flags in (["--port", "0"], ["--steps", "0"], ["--queue-size", "0"]):  # typer's bounds (core.limits for steps)
        with pytest.raises(SystemExit) as exc:
            main(["serve", *flags])
        err = capsys.readouterr().err
        assert exc.value.code == 2 and err.startswith("error: atelier serve: ") and err.count("\n") == 1, err
    with pytest.raises(InputError):
        serve(auth="nopassword")


# --- A/B tab ------------------------------------------------------------------------------------
def test_ab_vote_flow(ws, tmp_path):
    from app.ui import ab_tab

    run = ws.config.campaigns_dir / "spring"
    _creatives(run)
    assert ab_tab.manifest_choices(ws) == [("spring", str(run / "manifest.jsonl"))]
    exp = ab_tab.experiment_from_manifest(ws, "spring", "classic", run / "manifest.jsonl")
    assert [c[1] for c in ab_tab.experiment_choices(ws)] == ["spring"]
    pair = ab_tab.next_pair(ws, exp)
    assert pair["left"] != pair["right"] and Path(pair["left_image"]).is_file()
    ab_tab.cast_vote(ws, pair, "left", voter="tester")
    ab_tab.cast_vote(ws, pair, "left", voter="tester")  # a double click on the same pair counts once
    pair2 = ab_tab.next_pair(ws, exp)
    assert pair2["token"] != pair["token"]
    ab_tab.cast_vote(ws, pair2, "right", voter="tester")
    with sqlite3.connect(ws.config.ab_db) as con:
        rows = con.execute("SELECT winner_id, loser_id, user_id FROM votes ORDER BY ts").fetchall()
    assert rows == [(pair["left"], pair["right"], "tester"), (pair2["right"], pair2["left"], "tester")]
    ranking, ctr, summary = ab_tab.results_tables(ws, exp)
    assert {r[1] for r in ranking} == {"c0", "c1", "c2"} and "votes 2" in summary
    assert len(ctr) == 3
    path, stats = ab_tab.export_pairs(ws, exp, ws.session_dir("s", "pairs"))
    assert stats["written"] == 2 and len(path.read_text().splitlines()) == 2


def test_ab_vote_errors(ws, tmp_path):
    from app.ui import ab_tab

    with pytest.raises(InputError):
        ab_tab.cast_vote(ws, {}, "left")
    creatives = _creatives(tmp_path / "b")
    with pytest.raises(InputError):
        ab_tab.create_experiment(ws, "one", None, creatives[:1])
    exp = ab_tab.create_experiment(ws, "two", None, creatives[:2], base_dir=tmp_path / "b")
    with pytest.raises(InputError):
        ab_tab.cast_vote(ws, ab_tab.next_pair(ws, exp), "middle")
    with pytest.raises(InputError):
        ab_tab.experiment_from_manifest(ws, "x", None, tmp_path / "missing.jsonl")
    with pytest.raises(InputError, match="only reads"):  # a manifest elsewhere on the server
        ab_tab.experiment_from_manifest(ws, "x", None, tmp_path / "b" / "manifest.jsonl")
    # a manifest in the output folder whose images point elsewhere
    inside = ws.session_dir("s", "batch")
    Manifest(inside / "manifest.jsonl").append(Creative(
        creative_id="evil", pipeline="product", base_model="x", prompt="", seed=0, steps=1, guidance=1.0,
        width=8, height=8, image_path=str(tmp_path / "b" / "c0.png")))
    with pytest.raises(InputError, match="outside"):
        ab_tab.experiment_from_manifest(ws, "y", None, inside / "manifest.jsonl")


# --- Shopper tab ----------------------------------------------------------------------------------
def test_shopper_history_and_recommendations(shop_ws, tmp_path):
    from app.ui import shopper

    users = shopper.demo_users(shop_ws, n=5)
    uid = users[0][1]
    hist = shopper.user_history(shop_ws, uid)
    assert hist
    cond = shopper.recommend(shop_ws, "mostpop", hist, user_id=uid, k=8)
    assert cond.user_id == uid and len(cond.item_scores) == 8
    assert not set(i for i, _ in cond.item_scores) & set(hist)  # seen items are never recommended
    # An uploaded history of the same items gives the same recommendations.
    csv = tmp_path / "h.csv"
    csv.write_text("user_id,item_id,timestamp\n" + "".join(f"me,{i},{t}\n" for t, i in enumerate(hist)))
    assert shopper.history_from_csv(shop_ws, csv) == hist
    cond2 = shopper.recommend(shop_ws, "mostpop", shopper.history_from_csv(shop_ws, csv), k=8)
    assert cond2.item_scores == cond.item_scores
    assert "True taste" in shopper.condition_summary(cond, shopper.true_taste(shop_ws, uid))
    assert shopper.true_taste(shop_ws, "upload") is None
    gallery = shopper.item_gallery(shop_ws, hist[:2])
    assert len(gallery) == 2 and gallery[0][0].mode == "RGB"


def test_shopper_bad_uploads(shop_ws, tmp_path):
    from app.ui import shopper

    item = shop_ws.catalog().item_ids[0]
    cases = {
        "two_users.csv": f"user_id,item_id,timestamp\na,{item},1\nb,{item},2\n",
        "unknown_item.csv": "user_id,item_id,timestamp\na,no-such-item,1\n",
        "no_header.csv": f"a,{item},1\n",
        "empty.csv": "user_id,item_id,timestamp\n",
    }
    for name, text in cases.items():
        (tmp_path / name).write_text(text)
        with pytest.raises(InputError):
            shopper.history_from_csv(shop_ws, tmp_path / name)
    big = tmp_path / "big.csv"
    big.write_bytes(b"user_id,item_id,timestamp\n" + b"a,x,1\n" * 400_000)
    with pytest.raises(InputError, match="larger"):
        shopper.history_from_csv(shop_ws, big)
    with pytest.raises(InputError):
        shopper.recommend(shop_ws, "no-such-model", ["x"])


# --- Studio and Batch tabs ------------------------------------------------------------------------
def test_studio_upload_checks(tmp_path):
    from app.ui import studio

    rgba = Image.new("RGBA", (40, 30), (0, 0, 0, 0))
    rgba.paste((200, 30, 30, 255), (10, 5, 30, 25))
    rgba.save(tmp_path / "p.png")
    out = studio.prepare_product(tmp_path / "p.png", None, tmp_path / "o")
    assert np.array_equal(np.asarray(Image.open(out)), np.asarray(rgba))
    # an opaque picture plus a mask becomes the same RGBA product
    rgba.convert("RGB").save(tmp_path / "p.jpg", quality=100)
    Image.fromarray((np.asarray(rgba)[..., 3] > 0).astype(np.uint8) * 255).save(tmp_path / "m.png")
    out2 = studio.prepare_product(tmp_path / "p.jpg", tmp_path / "m.png", tmp_path / "o2")
    assert np.array_equal(np.asarray(Image.open(out2))[..., 3], np.asarray(rgba)[..., 3])
    Image.new("I;16", (8, 8), 300).save(tmp_path / "16bit.png")
    Image.new("CMYK", (8, 8)).save(tmp_path / "cmyk.jpg")
    (tmp_path / "zero.png").write_bytes(b"")
    (tmp_path / "text.png").write_text("not an image")
    (tmp_path / "trunc.png").write_bytes((tmp_path / "p.png").read_bytes()[:60])
    Image.new("L", (8, 8)).save(tmp_path / "m_small.png")
    for product, mask in [("16bit.png", None), ("cmyk.jpg", None), ("zero.png", None), ("text.png", None),
                          ("trunc.png", None), ("p.jpg", None), ("p.png", "m_small.png")]:
        with pytest.raises(InputError):
            studio.prepare_product(tmp_path / product, tmp_path / mask if mask else None, tmp_path / "o3")


def test_studio_text_checks():
    from app.ui.studio import check_text

    assert check_text("  New in  ", "headline", 40) == "New in"
    assert check_text("", "headline", 40) is None
    for bad in ("x" * 10_000, "bold\x1b[1m", "two\nlines"):
        with pytest.raises(InputError):
            check_text(bad, "headline", 120)


def test_studio_refuses_huge_images(tmp_path):
    import struct
    import zlib

    from app.ui import studio

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    # A PNG whose header claims 30000x30000 pixels: refused from the header, before decoding anything.
    ihdr = struct.pack(">IIBBBBB", 30000, 30000, 8, 2, 0, 0, 0)
    (tmp_path / "bomb.png").write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr)
                                        + chunk(b"IDAT", zlib.compress(b"\0" * 100)) + chunk(b"IEND", b""))
    with pytest.raises(InputError, match="pixels|usable"):
        studio.load_upload_image(tmp_path / "bomb.png")


def test_batch_upload_is_restricted(ws, tmp_path):
    pytest.importorskip("app.batch.campaign")
    from app.ui import batch_tab

    base = "name: c1\nproducts: [p0001]\naudience: {users: [u0001]}\nformats: {product: {}}\n"
    ok = tmp_path / "ok.yaml"
    ok.write_text(base)
    assert batch_tab.check_campaign(ws, ok).name == "c1"
    bad = {
        "image.yaml": base.replace("[p0001]", "[{image: /etc/hosts.png}]"),
        "shop.yaml": base + "shop: /etc\n",
        "model.yaml": base + "model: {base: /somewhere/else}\n",
        "lora.yaml": base + "model: {lora: /tmp/x.safetensors}\n",
        "escape.yaml": base + "output: ../../outside\n",
        "syntax.yaml": base + "formats: [\n",
    }
    for name, text in bad.items():
        (tmp_path / name).write_text(text)
        with pytest.raises(InputError):
            if name == "escape.yaml":
                from app.batch.campaign import load_campaign

                load_campaign(tmp_path / name).output_dir(ws.config.out_dir)
            else:
                batch_tab.check_campaign(ws, tmp_path / name)


def test_zip_folder(tmp_path):
    import zipfile

    from app.ui.batch_tab import zip_folder

    _creatives(tmp_path / "run")
    z = zip_folder(tmp_path / "run", tmp_path / "run.zip")
    with zipfile.ZipFile(z) as zf:
        assert sorted(zf.namelist()) == ["run/c0.png", "run/c1.png", "run/c2.png", "run/manifest.jsonl"]


# --- the app ------------------------------------------------------------------------------------
def test_app_builds_with_api_and_auth(tmp_path):
    from fastapi.testclient import TestClient

    from app.ui.server import build_app
    from app.ui.workspace import UIConfig

    cfg = UIConfig(out_dir=tmp_path / "out", ab_db=tmp_path / "ab.sqlite", model=str(tmp_path / "none"))
    app = build_app(cfg, auth=("ann", "pw"))
    with TestClient(app) as client:
        assert client.get("/openapi.json").status_code == 401  # under --auth the schema needs credentials too
        paths = client.get("/openapi.json", auth=("ann", "pw")).json()["paths"]
        if app.state.ab_api:
            assert "/api/ab/vote" in paths and "/api/ab/choose" in paths
            assert client.get("/api/ab/experiments").status_code == 401
            token = base64.b64encode(b"ann:pw").decode()
            assert client.get("/api/ab/experiments", headers={"Authorization": f"Basic {token}"}).json() == []
            bad = base64.b64encode(b"ann:wrong").decode()
            assert client.get("/api/ab/experiments", headers={"Authorization": f"Basic {bad}"}).status_code == 401
        config = client.get("/config")
        assert config.status_code in (200, 401)
        # Gradio serves files only from the output folder (and its own upload cache).
        assert client.get("/gradio_api/file=/etc/passwd").status_code in (401, 403, 404)


# --- generation through the tabs' functions (tiny random SD model) --------------------------------
@pytest.mark.slow
def test_tabs_generate_with_a_tiny_model(tmp_path, tiny_sd):
    from app.ui import batch_tab, outfit, shopper, studio
    from app.ui.workspace import UIConfig, Unavailable, Workspace

    sd = tiny_sd
    ws = Workspace(UIConfig(out_dir=tmp_path / "out", ab_db=tmp_path / "ab.sqlite", model=str(sd), steps=2))
    try:
        uid = shopper.demo_users(ws, n=1)[0][1]
    except Unavailable as e:
        pytest.skip(str(e))
    cond = shopper.recommend(ws, "ease", shopper.user_history(ws, uid), user_id=uid)

    # Shopper: n candidates with consecutive seeds, saved with a manifest; same seed -> same pixels.
    dir_a, dir_b = ws.session_dir("a", "shopper"), ws.session_dir("b", "shopper")
    made = shopper.personalize(ws, cond, dir_a, n_candidates=3, seed=5)
    again = shopper.personalize(ws, cond, dir_b, n_candidates=3, seed=5)
    assert sorted(c.seed for c in made) == [5, 6, 7]
    by_seed = {c.seed: c for c in again}
    for c in made:
        assert c.creative_id == by_seed[c.seed].creative_id
        assert (dir_a / c.image_path).read_bytes() == (dir_b / by_seed[c.seed].image_path).read_bytes()
    assert len(Manifest(dir_a / "manifest.jsonl").load()) == 3
    with pytest.raises(InputError):
        shopper.personalize(ws, cond, tmp_path, n_candidates=ws.config.max_candidates + 1)

    # Studio: the product's pixels survive in the backgrounds; banners come at the asked sizes.
    product = Image.new("RGBA", (64, 64), (0, 0, 0, 0))
    product.paste((20, 40, 160, 255), (16, 16, 48, 48))
    product.save(tmp_path / "product.png")
    out_dir = ws.session_dir("a", "studio")
    path = studio.prepare_product(tmp_path / "product.png", None, out_dir)
    res = studio.make_creatives(ws, cond, path, out_dir, sizes=["300x250", "728x90"], backgrounds=1, seed=0,
                                headline=None, cta="Shop now")
    assert sorted((c.width, c.height) for c in res["banner"]) == [(300, 250), (728, 90)]
    assert len(res["background"]) == 1
    bg = np.asarray(Image.open(out_dir / res["background"][0].image_path).convert("RGB"))
    assert bg.shape[2] == 3 and (out_dir / "manifest.jsonl").is_file()

    # Outfit: one generated piece per missing category, each with a real catalog item to buy.
    shirt = next(i for i in ws.catalog().item_ids if ws.catalog()[i].category == "shirt")
    out_dir = ws.session_dir("a", "outfit")
    pieces = outfit.complete_outfit(ws, cond, [shirt], out_dir)
    made_pics, items = outfit.pieces_and_items(ws, pieces, out_dir)
    assert len(pieces) >= 2 and len(items) == len(pieces)
    assert all(ws.catalog()[c.extra["retrieved_item"]].category == c.extra["category"] for c in pieces)

    # Batch: the uploaded campaign runs inside the session folder and comes back as a zip.
    yaml = tmp_path / "c.yaml"
    yaml.write_text(f"name: ui\nproducts: [{shirt}]\naudience: {{users: [{uid}]}}\nformats: {{product: {{}}}}\n"
                    f"candidates: 2\nmodel: {{base: {sd}, steps: 2}}\n")
    res = batch_tab.run_uploaded_campaign(ws, yaml, ws.session_dir("a", "batch"), progress=False)
    assert res["creatives"] == 2 and ws.inside_output(res["zip"]) and Path(res["zip"]).is_file()


def test_missing_model_is_a_clear_message(ws, tmp_path):
    from app.ui import shopper
    from app.ui.workspace import Unavailable
    from recommenders.condition import PreferenceCondition

    cond = PreferenceCondition(user_id="u1", attributes={"color": {"navy": 1.0}})
    with pytest.raises(Unavailable, match="cannot load the image model"):
        shopper.personalize(ws, cond, tmp_path / "o", n_candidates=1)
