"""The one preference path (recommenders/preference.py): every surface gets the same condition, every
backbone (CF and sequential, fitted or a `rec train` folder) reaches generation, and the condition says why."""
from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest

from core.errors import InputError

ROOT = Path(__file__).resolve().parents[1]
SEQ_TINY = ["--set", "hidden=16", "--set", "n_layers=1", "--set", "n_heads=1", "--set", "epochs=1",
            "--set", "max_train_seconds=0"]


def run(args):
    from typer.testing import CliRunner

    from app.cli import app

    return CliRunner().invoke(app, args)


@pytest.fixture(scope="module")
def demo():
    from recommenders.preference import load_shop

    try:
        return load_shop("demo")
    except InputError as e:
        pytest.skip(str(e))


@pytest.fixture(scope="module")
def sasrec_dir(tmp_path_factory, demo):
    """A tiny SASRec trained on the demo shop by `atelier rec train` (one epoch)."""
    out = tmp_path_factory.mktemp("rec") / "sasrec"
    res = run(["rec", "train", "--data", "demo", "--model", "sasrec", "--out", str(out), "--json", *SEQ_TINY])
    assert res.exit_code == 0, res.output
    return out


@pytest.fixture(scope="module")
def own_shop(tmp_path_factory, tiny_catalog):
    """A user's own shop folder: catalog.jsonl + interactions.csv, no shop.json."""
    import shutil

    folder = tmp_path_factory.mktemp("own") / "myshop"
    shutil.copytree(tiny_catalog.root, folder)
    rows = ["user_id,item_id,timestamp"]
    likes = {"u1": ["t01", "t11", "t21", "t31", "t00", "t02"], "u2": ["t00", "t10", "t20", "t30", "t03"],
             "u3": ["t01", "t10", "t21", "t12"], "u4": ["t02", "t12", "t22", "t32", "t01"]}
    for user, items in likes.items():
        rows += [f"{user},{item},{1700000000 + 60 * k}" for k, item in enumerate(items)]
    (folder / "interactions.csv").write_text("\n".join(rows) + "\n")
    assert not (folder / "shop.json").exists()
    return folder


# -- the same condition everywhere ------------------------------------------------------------------
def test_every_surface_gives_the_same_condition(demo, tiny_sd, tmp_path):
    from app.batch.audience import ShopData
    from app.batch.jobs import AudienceMember
    from app.commands.generate import pipeline_spec, prepare
    from app.ui import shopper
    from app.ui.workspace import UIConfig, Workspace
    from finetune.data import UserConditions

    user = "u0007"
    spec = pipeline_spec(model=str(tiny_sd), lora=None, lora_scale=1.0, adapter=None, reward=None, device="cpu",
                         dtype=None, score=False, allow_unsafe=False)
    gen = prepare(spec, user=user, condition_file=None, shop="demo", recommender="ease").condition
    campaign = ShopData("demo", ROOT, "ease").condition(AudienceMember(user, "user", (user,)))
    ws = Workspace(UIConfig(out_dir=tmp_path / "ui"))
    ui = shopper.recommend(ws, "ease", shopper.user_history(ws, user), user_id=user, k=20)
    tune = UserConditions(demo.demo.interactions, demo.demo.catalog, model="ease").condition(user)
    for other in (campaign, ui, tune):
        assert other.to_dict() == gen.to_dict()
    why = gen.why
    assert why["backbone"] == "ease" and set(why["shares"]) == {"history", "backbone", "prior"}
    assert abs(sum(why["shares"].values()) - 1) < 1e-3 and why["shares"]["backbone"] > 0
    assert why["top"]["color"][0][0] == gen.top_keywords(1)["color"][0]


def test_switching_backbone_changes_the_condition(demo):
    from recommenders.preference import load_backbone, preference

    ease, pop = load_backbone(demo, "ease"), load_backbone(demo, "mostpop")
    users = sorted(demo.history)[:60]
    differs = 0
    for u in users:
        a, b = preference(ease, demo.events(u)), preference(pop, demo.events(u))
        assert a.source == "ease" and b.source == "mostpop"
        assert [i for i, _ in a.item_scores] != [i for i, _ in b.item_scores]
        differs += a.top_keywords(1, kinds=("color", "pattern")) != b.top_keywords(1, kinds=("color", "pattern"))
    assert differs >= 3, differs
    # the learned fusion gives MostPop's popularity list (the same for everyone) next to no weight
    assert pop.fusion().overall["color"][1] < ease.fusion().overall["color"][1]


def test_fusion_is_learned_from_next_choices_not_a_formula(demo):
    from recommenders.preference import load_backbone

    fusion = load_backbone(demo, "ease").fusion()
    assert fusion.learned and fusion.n_users >= 500 and fusion.n_targets > fusion.n_users
    for kind, w in fusion.overall.items():
        assert len(w) == 3 and abs(sum(w) - 1) < 1e-3 and min(w) >= 0
    assert fusion.overall["color"] != fusion.overall["style"]  # per kind, from the data


# -- sequence models and trained folders ----------------------------------------------------------
def test_sequence_model_reads_the_time_order(demo):
    from recommenders.preference import ShopperEvents, load_backbone, preference

    seq = load_backbone(demo, "seq-mostpop")
    assert seq.sequential
    hist = demo.history["u0001"]
    cond = preference(seq, ShopperEvents("u0001", hist + ["not-an-item"]))  # unknown ids are skipped
    assert cond.source == "seq-mostpop" and cond.why["backbone"] == "seq-mostpop"
    assert not set(hist) & {i for i, _ in cond.item_scores}


def test_recommender_dir_round_trips_a_trained_model(demo, sasrec_dir):
    from recommenders.base import _Saveable
    from recommenders.preference import Backbone, load_backbone, preference

    folder = load_backbone(demo, folder=sasrec_dir)
    assert folder.sequential and folder.name == "sasrec" and load_backbone(demo, folder=sasrec_dir) is folder
    again = Backbone(_Saveable.from_pretrained(sasrec_dir), demo.seq_data().item_ids, name="sasrec",
                     origin=str(sasrec_dir), shop=demo)
    a, b = preference(folder, demo.events("u0003")), preference(again, demo.events("u0003"))
    assert a.to_dict() == b.to_dict() and a.source == "sasrec (sasrec)"


def test_a_folder_from_another_shop_is_refused(demo, own_shop, tmp_path, capsys):
    from app.cli import main
    from recommenders.preference import load_backbone, load_shop

    out = tmp_path / "pop"  # saved as `rec train` saves (its test metrics need more than the 16 items here)
    load_backbone(load_shop(str(own_shop)), "seq-mostpop").model.save_pretrained(out)
    with pytest.raises(SystemExit) as exc:
        main(["generate", "product", "--user", "u0001", "--category", "shirt", "--recommender-dir", str(out),
              "--out", str(tmp_path / "gen")])
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and "do not match the shop" in err[0]


def test_a_sequence_model_drives_generate(sasrec_dir, tiny_sd, tmp_path):
    out = tmp_path / "gen"
    res = run(["generate", "product", "--user", "u0002", "--category", "shirt", "--recommender-dir", str(sasrec_dir),
               "--model", str(tiny_sd), "--steps", "2", "-n", "1", "--no-score", "--out", str(out), "--json"])
    assert res.exit_code == 0, res.output
    record = json.loads(res.stdout)[0]
    assert record["condition"]["source"].startswith("sasrec")
    assert record["condition"]["why"]["backbone"].startswith("sasrec")
    res = run(["generate", "product", "--user", "u0002", "--category", "shirt", "--recommender", "seq-mostpop",
               "--model", str(tiny_sd), "--steps", "2", "-n", "1", "--no-score", "--out", str(out), "--json"])
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout)[0]["condition"]["why"]["backbone"] == "seq-mostpop"


def test_a_sequence_model_drives_a_campaign_segment(sasrec_dir, tiny_sd, tmp_path):
    from app.batch.runner import run_campaign
    from core.creative import Manifest

    campaign = tmp_path / "seq.yaml"
    campaign.write_text(textwrap.dedent(f"""\
        name: seq
        products: [p0010]
        audience: {{segments: [{{name: few, users: [u0001, u0002, u0003]}}]}}
        formats: {{product: {{}}}}
        model: {{base: {tiny_sd}, steps: 2, recommender_dir: {sasrec_dir}}}
        """))
    summary = run_campaign(campaign, output_root=tmp_path / "out", progress=False)
    records = Manifest(Path(summary.output_dir) / "manifest.jsonl").load()
    assert records and all(r.user_id == "segment-few" for r in records)
    assert records[0].why["backbone"].startswith("sasrec") and records[0].why["members"] == 3


def test_a_sequence_model_drives_the_ui(sasrec_dir, tmp_path):
    from app.ui import shopper
    from app.ui.workspace import FOLDER_PREFIX, UIConfig, Workspace

    ws = Workspace(UIConfig(out_dir=tmp_path / "ui", recommender_dirs=sasrec_dir.parent))
    models = ws.available_models()
    assert {"sasrec", "gru4rec", "dreamrec", "seq-mostpop"} <= set(models)
    choice = f"{FOLDER_PREFIX}{sasrec_dir}"
    assert choice in models
    cond = shopper.recommend(ws, choice, shopper.user_history(ws, "u0004"), user_id="u0004")
    assert cond.source.startswith("sasrec")
    assert "sasrec" in shopper.condition_summary(cond) and "% history" in shopper.condition_summary(cond)
    with pytest.raises(InputError):
        ws.recommender(f"{FOLDER_PREFIX}{tmp_path}")  # only folders the workspace lists


def test_typing_a_user_id_selects_it(tmp_path):
    from app.ui import shopper
    from app.ui.workspace import UIConfig, Workspace

    ws = Workspace(UIConfig(out_dir=tmp_path / "ui"))
    users = shopper.demo_users(ws)
    assert len(users) == len(ws.shop().users) and ("u0500" in {u for _, u in users})
    assert shopper.pick_user(ws, "u0500") == "u0500"
    assert shopper.pick_user(ws, "u0500 (classic)") == "u0500"
    assert shopper.pick_user(ws, "  ") is None
    with pytest.raises(InputError):
        shopper.pick_user(ws, "nobody")


# -- a user's own shop ----------------------------------------------------------------------------
def test_own_shop_folder_drives_a_campaign(own_shop, tiny_sd, tmp_path):
    from app.batch.runner import run_campaign
    from core.creative import Manifest

    campaign = tmp_path / "own.yaml"
    campaign.write_text(textwrap.dedent(f"""\
        name: own
        shop: {own_shop}
        products: [t00]
        audience: {{users: [u1], segments: [{{name: mixed, users: [u2, u3]}}]}}
        formats: {{product: {{}}}}
        model: {{base: {tiny_sd}, steps: 2, recommender: ease}}
        """))
    summary = run_campaign(campaign, output_root=tmp_path / "out", progress=False)
    records = Manifest(Path(summary.output_dir) / "manifest.jsonl").load()
    assert {r.user_id for r in records} == {"u1", "segment-mixed"}
    for r in records:
        assert r.why["backbone"] == "ease" and r.condition["attributes"]["color"]


# -- the condition's provenance -------------------------------------------------------------------
def test_why_is_validated_and_old_conditions_still_load():
    from recommenders.condition import PreferenceCondition

    old = PreferenceCondition.from_dict({"user_id": "u", "attributes": {"color": {"navy": 1.0}}})
    assert old.why is None
    cond = PreferenceCondition.from_dict({"user_id": "u", "why": {"backbone": "ease", "shares": {"history": 0.7}}})
    assert cond.why["shares"]["history"] == 0.7
    for bad in ("text", {"x": float("nan")}, {"x": {"y": {"z": {"w": {"v": [1]}}}}}, {"x": "a\x00b"}):
        with pytest.raises(InputError):
            PreferenceCondition.from_dict({"user_id": "u", "why": bad})


def test_why_line_reads_like_a_sentence():
    from recommenders.condition import PreferenceCondition
    from recommenders.preference import why_line

    cond = PreferenceCondition("u", attributes={"color": {"navy": 0.41, "red": 0.2}, "pattern": {"striped": 0.33}},
                               source="ease", why={"backbone": "ease",
                                                   "shares": {"history": 0.7, "backbone": 0.25, "prior": 0.05}})
    assert why_line(cond) == "ease: navy 0.41, striped 0.33 — 70% history, 25% ease, 5% prior"


def test_eval_personalization_has_one_row_per_backbone_and_the_floor(demo, tiny_sd, tmp_path, capsys):
    from app.cli import main
    from pipelines.attribute_classifier import DEMO_PATH

    if not DEMO_PATH.is_dir():
        pytest.skip("the demo attribute classifier is not installed")
    out = tmp_path / "rows.json"
    main(["eval", "personalization", "--users", "2", "--backbones", "mostpop,seq-mostpop", "--model", str(tiny_sd),
          "--steps", "1", "-n", "1", "--json-out", str(out), "--json"])
    result = json.loads(out.read_text())
    assert set(result["rows"]) == {"taste fit alone", "mostpop", "seq-mostpop"} and result["floor"] == "taste fit alone"
    for row in result["rows"].values():
        assert 0 <= row["color_match"] <= 1 and set(row["shares"]) == {"history", "backbone", "prior"}
    assert "/work/" not in out.read_text()
    with pytest.raises(SystemExit) as exc:
        main(["eval", "personalization", "--backbones", "mostpop,nope"])
    assert exc.value.code == 2
