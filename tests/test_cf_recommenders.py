"""CF recommenders on a tiny synthetic data set: fit, score shapes, save/load identity, conditions."""

import numpy as np
import pytest
from tiny_models import TINY, tiny_splits

from core.errors import InputError
from recommenders.base import CFRecommender, model_class
from recommenders.splits import CFSplits


@pytest.fixture(scope="module")
def data():
    import torch

    torch.set_num_threads(1)
    return tiny_splits()


VARIANTS = [(name, cfg) for name, cfg in TINY.items()] + [
    ("diffrec", {**TINY["diffrec"], "ema_decay": 0.9, "ensemble": True, "loss": "multinomial", "reweight": False}),
    ("diffrec", {**TINY["diffrec"], "item_linear": True, "ema_decay": 0.98, "noise_scale": 0.2}),
]


@pytest.mark.parametrize("name,cfg", VARIANTS, ids=[f"{n}-{i}" for i, (n, _) in enumerate(VARIANTS)])
def test_fit_score_and_reload_identical(name, cfg, data, tmp_path):
    model = model_class(name)(**cfg)
    log = model.fit(data, seed=3, progress=False)
    assert isinstance(log, dict)
    users = np.arange(data.n_users)
    scores = model.score(users)
    assert scores.shape == (data.n_users, data.n_items) and np.isfinite(scores).all()
    model.save(tmp_path / name)
    again = CFRecommender.load(tmp_path / name)
    assert type(again) is type(model)
    np.testing.assert_array_equal(again.score(users), scores)
    # an explicit history gives the same scores as the stored training rows
    np.testing.assert_allclose(model.score(users[:5], history=data.train[:5]), scores[:5], rtol=1e-5, atol=1e-6)


def test_load_refuses_weights_that_do_not_match_the_config(data, tmp_path):
    """A save killed between model.safetensors and config.json must not load as a silent mix."""
    import shutil

    first = model_class("ease")(l2=10.0)
    first.fit(data, progress=False)
    first.save(tmp_path / "a")
    second = model_class("ease")(l2=500.0)
    second.fit(data, progress=False)
    second.save(tmp_path / "b")
    shutil.copy(tmp_path / "b" / "model.safetensors", tmp_path / "a" / "model.safetensors")
    with pytest.raises(InputError, match="does not match config.json"):
        CFRecommender.load(tmp_path / "a")
    CFRecommender.load(tmp_path / "b")  # an intact pair loads


@pytest.mark.parametrize("name", ["itemknn", "ease", "multivae", "diffrec", "ldiffrec", "giffcf"])
def test_models_learn_the_group_structure(name, data):
    """Each personalised model ranks the user's own half of the catalog above the other half."""
    cfg = dict(TINY[name])
    if "epochs" in cfg:  # the neural models: a faster learning rate, long enough to learn two groups
        cfg.update(epochs=20, patience=20, lr=3e-2 if name == "ldiffrec" else 1e-2)
    model = model_class(name)(**cfg)
    model.fit(data, seed=0, progress=False)
    scores = model.score(np.arange(data.n_users))
    half = data.n_items // 2
    own = np.where((np.arange(data.n_users) % 2)[:, None] == 0, scores[:, :half].mean(1, keepdims=True),
                   scores[:, half:].mean(1, keepdims=True))
    other = np.where((np.arange(data.n_users) % 2)[:, None] == 0, scores[:, half:].mean(1, keepdims=True),
                     scores[:, :half].mean(1, keepdims=True))
    assert (own > other).mean() > 0.9


def test_same_seed_same_model_different_seed_differs(data):
    a = model_class("diffrec")(**TINY["diffrec"])
    b = model_class("diffrec")(**TINY["diffrec"])
    c = model_class("diffrec")(**TINY["diffrec"])
    a.fit(data, seed=1, progress=False)
    b.fit(data, seed=1, progress=False)
    c.fit(data, seed=2, progress=False)
    users = np.arange(data.n_users)
    np.testing.assert_array_equal(a.score(users), b.score(users))
    assert not np.array_equal(a.score(users), c.score(users))


def test_ease_matches_closed_form(data):
    model = model_class("ease")(l2=5.0)
    model.fit(data, progress=False)
    x = data.train.toarray().astype(np.float64)
    b = np.linalg.solve(x.T @ x + 5.0 * np.eye(x.shape[1]), x.T @ x)  # ridge solution before the constraint
    assert np.allclose(np.diag(model.weights), 0)
    # With the zero-diagonal constraint, B = I - P diag(1/diag(P)); check one column by hand.
    p = np.linalg.inv(x.T @ x + 5.0 * np.eye(x.shape[1]))
    np.testing.assert_allclose(model.weights[:, 3], (-p[:, 3] / p[3, 3]) * (np.arange(x.shape[1]) != 3), atol=1e-5)
    assert not np.allclose(b, model.weights)  # the constraint matters


def test_itemknn_keeps_k_neighbours(data):
    model = model_class("itemknn")(k=4)
    model.fit(data, progress=False)
    per_target = np.diff(model.similarity.tocsc().indptr)
    assert per_target.max() <= 4


def test_mostpop_ranks_by_count(data):
    model = model_class("mostpop")()
    model.fit(data, progress=False)
    counts = np.asarray(data.train.sum(0)).ravel()
    assert np.argmax(model.score(np.array([0]))[0]) == np.argmax(counts)


def test_preference_condition(data):
    model = model_class("ease")(l2=10.0)
    model.fit(data, progress=False)
    from recommenders.preference import Backbone, ShopperEvents, preference

    backbone = Backbone.from_model(model, data.item_ids, item_emb=data.item_emb)
    cond = preference(backbone, ShopperEvents("0", [data.item_ids[j] for j in data.train[0].indices]), k=5)
    assert cond.source == "ease" and len(cond.item_scores) == 5
    assert len(cond.embedding) == data.item_emb.shape[1]
    seen = {data.item_ids[j] for j in data.train[0].indices}
    assert not seen & {i for i, _ in cond.item_scores}


def test_bad_inputs_raise_input_error(data):
    with pytest.raises(InputError):
        model_class("nope")
    with pytest.raises(InputError):
        model_class("ease")(not_a_param=1)
    model = model_class("ease")()
    model.fit(data, progress=False)
    with pytest.raises(InputError):
        model.score(np.array([data.n_users]))


def write_cf_folder(path, data: CFSplits) -> None:
    """The ml-1m_clean file layout (train/valid/test_list.npy of [user, item] pairs)."""
    path.mkdir(parents=True, exist_ok=True)
    for split in ("train", "valid", "test"):
        coo = getattr(data, split).tocoo()
        np.save(path / f"{split}_list.npy", np.stack([coo.row, coo.col], 1).astype(np.int64))


def test_bench_cli_writes_json_table_and_plot(data, tmp_path):
    import json

    from typer.testing import CliRunner

    from app.commands.rec import app

    folder = tmp_path / "tinyset"
    write_cf_folder(folder, data)
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text("models:\n  diffrec: {hidden: [8], epochs: 2, batch_size: 16, steps: 5}\n"
                   "  mostpop: {}\n  ease: {}\n  itemknn: {}\n")  # a --config names every model it runs
    out, png = tmp_path / "r.json", tmp_path / "r.png"
    res = CliRunner().invoke(app, ["bench", "--data", str(folder), "--models", "mostpop,ease,diffrec", "--seeds", "2",
                                   "--config", str(cfg), "--json", str(out), "--plot", str(png), "--quiet"])
    assert res.exit_code == 0, res.output
    assert "recall@20" in res.output and "diffrec" in res.output
    result = json.loads(out.read_text())
    assert png.stat().st_size > 1000
    ease, diff = result["models"]["ease"], result["models"]["diffrec"]
    assert ease["deterministic"] and len(ease["runs"]) == 1 and ease["std"]["recall@20"] == 0
    assert len(diff["runs"]) == 2 and diff["config"]["hidden"] == [8]
    for key in ("recall@10", "ndcg@20", "hr@50", "train_s", "ms_per_user", "single_ms", "coverage@20", "popularity@20"):
        assert key in diff["mean"] and key in diff["std"]
    assert diff["mean"]["recall@20"] == pytest.approx(np.mean([r["recall@20"] for r in diff["runs"]]))
    # --resume reuses finished models (same runs, same timings) and trains only the missing ones
    merged = tmp_path / "merged.json"
    res = CliRunner().invoke(app, ["bench", "--data", str(folder), "--models", "mostpop,ease,diffrec,itemknn",
                                   "--seeds", "2", "--config", str(cfg), "--resume", str(out),
                                   "--json", str(merged), "--quiet"])
    assert res.exit_code == 0, res.output
    again = json.loads(merged.read_text())["models"]
    assert set(again) == {"mostpop", "ease", "diffrec", "itemknn"}
    assert again["diffrec"]["runs"] == diff["runs"], (again["diffrec"]["runs"], diff["runs"])


def test_cli_train_eval_roundtrip_and_errors(data, tmp_path):
    import json

    from typer.testing import CliRunner

    from app.commands.rec import app

    folder = tmp_path / "tinyset"
    write_cf_folder(folder, data)
    runner = CliRunner()
    res = runner.invoke(app, ["train", "--data", str(folder), "--model", "ease", "--out", str(tmp_path / "m"),
                              "--set", "l2=5", "--json"])
    assert res.exit_code == 0, res.output
    trained = json.loads(res.output)
    res = runner.invoke(app, ["eval", "--model-dir", str(tmp_path / "m"), "--data", str(folder), "--json"])
    assert res.exit_code == 0, res.output
    assert json.loads(res.output)["recall@20"] == pytest.approx(trained["test"]["recall@20"])
    bad = runner.invoke(app, ["train", "--data", str(folder), "--model", "nope", "--out", str(tmp_path / "x")])
    assert isinstance(bad.exception, InputError)
    bad = runner.invoke(app, ["bench", "--data", str(tmp_path / "missing"), "--models", "ease"])
    assert isinstance(bad.exception, InputError)


@pytest.mark.parametrize("name,cfg", [
    ("diffrec", {**TINY["diffrec"], "epochs": 6, "patience": 10, "ema_decay": 0.9, "item_linear": True}),
    ("diffrec", {**TINY["diffrec"], "epochs": 6, "patience": 2}),
    ("multivae", {**TINY["multivae"], "epochs": 6, "patience": 10, "anneal_steps": 10}),
], ids=["diffrec-ema", "diffrec-early-stop", "multivae"])
def test_training_resumes_from_its_epoch_checkpoint_to_the_same_weights(name, cfg, data, tmp_path, monkeypatch):
    """A run stopped during epoch 3 and restarted on the same checkpoint folder ends with the weights
    (and log) of an uninterrupted run; a run with another seed does not resume it."""
    import json

    import torch

    import recommenders.cf_base as module
    from recommenders.checkpoint import STATE

    ref = model_class(name)(**cfg)
    ref_log = ref.fit(data, seed=2, progress=False)

    class Stop(Exception):
        pass

    real, calls = module.valid_recall, []

    def failing(*a, **k):
        calls.append(1)
        if len(calls) == 3:
            raise Stop
        return real(*a, **k)

    ckpt = tmp_path / "ckpt"
    monkeypatch.setattr(module, "valid_recall", failing)
    with pytest.raises(Stop):
        model_class(name)(**cfg).fit(data, seed=2, progress=False, checkpoint_dir=ckpt)
    monkeypatch.setattr(module, "valid_recall", real)
    assert json.loads((ckpt / STATE).read_text())["state"]["epoch"] == 2  # epochs 1 and 2 finished
    resumed = model_class(name)(**cfg)
    log = resumed.fit(data, seed=2, progress=False, checkpoint_dir=ckpt)
    assert log["epochs_run"] == ref_log["epochs_run"] and log["best_epoch"] == ref_log["best_epoch"]
    assert [r["valid"] for r in log["log"]] == [r["valid"] for r in ref_log["log"]]
    for key, value in ref.net.state_dict().items():
        assert torch.equal(value, resumed.net.state_dict()[key]), key
    np.testing.assert_array_equal(ref.score(np.arange(8)), resumed.score(np.arange(8)))
    again = model_class(name)(**cfg)  # the run had finished: resuming it again trains nothing and agrees
    assert again.fit(data, seed=2, progress=False, checkpoint_dir=ckpt)["epochs_run"] == ref_log["epochs_run"]
    np.testing.assert_array_equal(ref.score(np.arange(8)), again.score(np.arange(8)))
    other = model_class(name)(**{**cfg, "epochs": 1})
    assert other.fit(data, seed=3, progress=False, checkpoint_dir=ckpt)["epochs_run"] == 1
