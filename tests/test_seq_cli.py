"""`atelier rec train|eval` on next-item data, fast scoring paths, and the bench's validation choice.

The data set is a tiny Markov chain written in code as a zhihu-format folder (train/valid/test.npz).
"""
import json

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from app.commands.rec import _data_kind, app
from recommenders.base import SequentialRecommender
from recommenders.bench_config import rel_path
from recommenders.datasets import load_seq
from recommenders.splits import SeqSplit

torch.set_num_threads(1)

N_ITEMS, L = 30, 6


def chain_split(n_rows: int, rng: np.random.Generator) -> SeqSplit:
    """next = last + 1 (80%), else item 0; histories of 1..L items, right-padded with N_ITEMS."""
    seq = np.full((n_rows, L), N_ITEMS, np.int64)
    lens = rng.integers(1, L + 1, n_rows)
    target = np.zeros(n_rows, np.int64)
    for r in range(n_rows):
        x, walk = int(rng.integers(N_ITEMS)), []
        for _ in range(lens[r] + 1):
            walk.append(x)
            x = (x + 1) % N_ITEMS if rng.random() < 0.8 else 0
        seq[r, :lens[r]] = walk[:-1]
        target[r] = walk[-1]
    return SeqSplit(seq, lens, target)


def write_folder(folder, n_items=N_ITEMS, seed=0):
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True)
    for name, n in (("train", 600), ("valid", 120), ("test", 150)):
        split = chain_split(n, rng)
        if n_items != N_ITEMS:  # same rows, another pad id (= item count)
            split.seq[split.seq == N_ITEMS] = n_items
        np.savez(folder / f"{name}.npz", seq=split.seq, seq_len=split.seq_len, target=split.target)
    return folder


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return write_folder(tmp_path_factory.mktemp("seqcli") / "chain")


FAST = {
    "dreamrec": ["hidden=16", "epochs=3", "lr=0.005", "batch_size=128", "num_train_timesteps=50",
                 "sampling_steps=5", "max_train_seconds=0"],
    "sasrec": ["hidden=16", "n_layers=1", "epochs=3", "lr=0.005", "batch_size=128", "max_train_seconds=0"],
    "gru4rec": ["hidden=16", "epochs=3", "lr=0.01", "batch_size=128", "max_train_seconds=0"],
    "mostpop": [],
}


def run(args):
    res = CliRunner().invoke(app, args)
    return res.exit_code, res.output


def user_error(args, capsys) -> str:
    """Run `atelier rec ARGS` through the real entry point: exit code 2 and one `error:` line."""
    from app.cli import main

    with pytest.raises(SystemExit) as e:
        main(["rec", *args])
    err = capsys.readouterr().err.strip()
    assert e.value.code == 2 and err.startswith("error:") and "\n" not in err, err
    return err


@pytest.mark.parametrize("model", ["dreamrec", "sasrec", "gru4rec", "mostpop"])
def test_train_saves_a_folder_that_eval_reloads_with_the_same_metrics(folder, tmp_path, model):
    out = tmp_path / model
    sets = [a for s in FAST[model] for a in ("--set", s)]
    code, text = run(["train", "--data", str(folder), "--model", model, "--out", str(out), "--seed", "1",
                      "--json", *sets])
    assert code == 0, text
    trained = json.loads(text)
    assert trained["task"] == "seq" and trained["seed"] == 1
    assert {"config.json", "model.safetensors", "training.json"} <= {p.name for p in out.iterdir()}
    assert json.loads((out / "training.json").read_text())["seed"] == 1
    if model != "mostpop":
        assert trained["best_epoch"] >= 1 and trained["metric"] == "valid_hr@10"  # selected on validation
    code, text = run(["eval", "--model-dir", str(out), "--data", str(folder), "--json"])
    assert code == 0, text
    ev = json.loads(text)
    # the reloaded model gives exactly the metrics measured right after training (same sampling seed)
    for key in ("hr@5", "ndcg@10", "recall@20"):
        assert ev[key] == pytest.approx(trained["test"][key], abs=1e-12), key
    assert ev["rows"] == 150 and ev["infer_ms_per_1k"] > 0 and ev["single_row_ms"] > 0
    if model != "mostpop":  # learned models find the chain; a random ranking has HR@5 = 1/6
        assert ev["hr@5"] > 0.5, ev


def test_eval_of_dreamrec_takes_sampler_steps_and_the_valid_split(folder, tmp_path, capsys):
    out = tmp_path / "dr"
    sets = [a for s in FAST["dreamrec"] for a in ("--set", s)]
    assert run(["train", "--data", str(folder), "--model", "dreamrec", "--out", str(out), "--json", *sets])[0] == 0
    code, text = run(["eval", "--model-dir", str(out), "--data", str(folder), "--split", "valid",
                      "--sampler", "dpmsolver", "--steps", "2", "--json"])
    assert code == 0, text
    ev = json.loads(text)
    assert ev["split"] == "valid" and ev["rows"] == 120 and ev["sampler"] == "dpmsolver" and ev["steps"] == 2
    model = SequentialRecommender.load(out)
    data = load_seq(str(folder))
    from recommenders.metrics import ranking_metrics

    direct = ranking_metrics(model.score(data.valid.seq, data.valid.seq_len, sampler="dpmsolver", steps=2),
                             data.valid.target, ks=(5, 10, 20))
    assert ev["hr@10"] == pytest.approx(direct["hr@10"], abs=1e-12)
    assert "--steps" in user_error(["eval", "--model-dir", str(out), "--data", str(folder), "--steps", "999"], capsys)
    assert "euler" in user_error(["eval", "--model-dir", str(out), "--data", str(folder), "--sampler", "euler"], capsys)
    assert "--split" in user_error(["eval", "--model-dir", str(out), "--data", str(folder), "--split", "x"], capsys)
    # IVF retrieval probing every list returns the exact top lists: the same metrics, from top lists
    code, text = run(["eval", "--model-dir", str(out), "--data", str(folder), "--split", "valid", "--sampler",
                      "dpmsolver", "--steps", "2", "--retrieval", "ivf", "--n-probe", "100", "--json"])
    assert code == 0, text
    iv = json.loads(text)
    assert iv["retrieval"] == "ivf" and iv["n_probe"] == 100 and iv["infer_ms_per_1k"] > 0
    for key in ("hr@10", "ndcg@20", "recall@5"):
        assert iv[key] == pytest.approx(ev[key], abs=1e-12), key
    assert "--retrieval" in user_error(["eval", "--model-dir", str(out), "--data", str(folder), "--retrieval",
                                        "hnsw"], capsys)
    assert "--n-probe" in user_error(["eval", "--model-dir", str(out), "--data", str(folder), "--retrieval", "ivf",
                                      "--n-probe", "0"], capsys)


def test_eval_refuses_a_data_set_with_another_item_count(folder, tmp_path, capsys):
    out = tmp_path / "pop"
    assert run(["train", "--data", str(folder), "--model", "mostpop", "--out", str(out)])[0] == 0
    other = write_folder(tmp_path / "other", n_items=N_ITEMS + 5)
    assert "items" in user_error(["eval", "--model-dir", str(out), "--data", str(other)], capsys)
    assert "config.json" in user_error(["eval", "--model-dir", str(tmp_path / "nothing"), "--data", str(folder)],
                                       capsys)
    assert "dreamrec" in user_error(["eval", "--model-dir", str(out), "--data", str(folder), "--retrieval", "ivf"],
                                    capsys)
    assert "--retrieval" in user_error(["bench", "--data", str(folder), "--models", "mostpop", "--retrieval", "x"],
                                       capsys)


def test_train_routes_sequential_models_and_data(folder):
    kind = lambda data, model, task: _data_kind(data, [model], task)  # noqa: E731
    assert kind("demo", "sasrec", "auto") == kind("demo", "dreamrec", "auto") == "seq"
    assert kind("demo", "ease", "auto") == kind("demo", "mostpop", "auto") == "cf"
    assert kind("demo", "mostpop", "seq") == "seq" and kind("demo", "sasrec", "cf") == "cf"
    assert kind(str(folder), "ease", "auto") == "seq"  # a sequence folder is sequence data, whatever the model


def test_batched_scoring_and_topk_match_one_pass(folder):
    from recommenders.seq_bench import train_seq

    model, data, _, _ = train_seq(str(folder), "sasrec", overrides=dict(hidden=16, n_layers=1, epochs=1),
                                  progress=False)
    whole = model.score(data.test.seq, data.test.seq_len, batch_size=4096)
    np.testing.assert_allclose(model.score(data.test.seq, data.test.seq_len, batch_size=7), whole,
                               rtol=1e-5, atol=1e-6)
    top = model.recommend(data.test.seq, data.test.seq_len, k=5, batch_size=16)
    np.testing.assert_array_equal(np.sort(top, 1), np.sort(np.argsort(-whole, 1, kind="stable")[:, :5], 1))


def test_mostpop_recommends_the_most_frequent_targets(folder):
    from recommenders.seq_bench import train_seq

    model, data, _, _ = train_seq(str(folder), "mostpop", progress=False)
    counts = np.bincount(data.train.target, minlength=N_ITEMS)
    top = model.recommend(data.test.seq[:4], data.test.seq_len[:4], k=3)
    assert top.shape == (4, 3) and (top == top[0]).all() and top[0, 0] == counts.argmax()
    assert list(counts[top[0]]) == sorted(counts, reverse=True)[:3]


def test_dreamrec_recommend_uses_the_same_samples_as_score(folder):
    from recommenders.seq_bench import train_seq

    model, data, _, _ = train_seq(str(folder), "dreamrec", progress=False,
                                  overrides=dict(hidden=16, epochs=1, num_train_timesteps=50, sampling_steps=5))
    scores = model.score(data.test.seq, data.test.seq_len, seed=3)
    top = model.recommend(data.test.seq, data.test.seq_len, k=3, seed=3)
    np.testing.assert_array_equal(top[:, 0], scores.argmax(1))
    assert model.timing["sample_s"] > 0 and model.timing["encode_s"] > 0


def test_bench_chooses_the_sampler_on_validation(folder):
    from recommenders.seq_bench import format_table, run_seq_bench

    fast = {"dreamrec": dict(hidden=16, epochs=1, num_train_timesteps=50, batch_size=256)}
    res = run_seq_bench(str(folder), ["dreamrec"], 1, [50, 10], progress=False, samplers=["ddpm", "ddim"],
                        overrides=fast, select=[("ddim", 1), ("ddim", 5), ("dpmsolver", 5)])
    run_ = res["models"]["dreamrec"]["runs"][0]
    assert set(run_["valid_variants"]) == {"ddim@1", "ddim@5", "dpmsolver@5"}
    assert {"ddim@1", "ddim@5", "dpmsolver@5"} <= set(run_["variants"])  # candidates are also tested
    chosen = res["summary"]["chosen_on_valid"]["dreamrec"]
    valid = {v: run_["valid_variants"][v]["hr@10"] for v in run_["valid_variants"]}
    assert chosen["variant"] == max(valid, key=valid.get)  # the argmax of VALIDATION, whatever test says
    assert chosen["test_mean"]["hr@10"] == run_["variants"][chosen["variant"]]["metrics"]["hr@10"]
    assert "chosen on validation" in format_table(res)
    v = run_["variants"]["ddim@5"]
    assert v["encode_ms_per_1k"] > 0 and v["rank_ms_per_1k"] > 0


def test_bench_times_fast_samplers_with_ivf_retrieval(folder):
    from recommenders.seq_bench import format_table, parse_variant, run_seq_bench

    fast = {"dreamrec": dict(hidden=16, epochs=1, num_train_timesteps=50, batch_size=256, n_probe=2)}
    res = run_seq_bench(str(folder), ["dreamrec"], 1, [50, 5], progress=False, samplers=["ddpm", "ddim"],
                        overrides=fast, select=[("ddim", 5)], retrieval=["exact", "ivf"])
    variants = res["models"]["dreamrec"]["runs"][0]["variants"]
    assert set(variants) == {"ddpm@50", "ddpm@5", "ddim@50", "ddim@5", "ddim@50/ivf2", "ddim@5/ivf2"}  # DDPM stays exact
    assert parse_variant("ddim@5/ivf2") == ("ddim", 5, "ivf")
    ivf, exact = variants["ddim@5/ivf2"], variants["ddim@5"]
    assert set(ivf["metrics"]) == set(exact["metrics"]) and ivf["infer_ms_per_1k"] > 0 and ivf["rank_ms_per_1k"] > 0
    with_ivf = res["summary"]["chosen_on_valid"]["dreamrec"]["with_ivf"]
    assert with_ivf["variant"] == "ddim@5/ivf2" and with_ivf["test_mean"] == res["models"]["dreamrec"]["variants"][
        "ddim@5/ivf2"]["mean"]
    assert "with IVF retrieval: ddim@5/ivf2" in format_table(res)
    # probing every list is exact retrieval: the same metrics as scoring all items
    res = run_seq_bench(str(folder), ["dreamrec"], 1, [5], progress=False, samplers=["ddim"], select=[],
                        overrides={"dreamrec": {**fast["dreamrec"], "n_probe": 100}}, retrieval=["exact", "ivf"])
    variants = res["models"]["dreamrec"]["runs"][0]["variants"]
    for key, value in variants["ddim@5"]["metrics"].items():
        assert variants["ddim@5/ivf100"]["metrics"][key] == pytest.approx(value, abs=1e-12), key


@pytest.mark.parametrize("n_layers,n_heads", [(1, 2), (2, 4), (1, 1)])
def test_inference_attention_matches_multihead_attention(n_layers, n_heads):
    from recommenders.seq_base import SeqEncoder, last_query_block

    enc = SeqEncoder(N_ITEMS, 8, 16, n_layers, n_heads, 0.1).eval()
    seq = torch.randint(0, N_ITEMS + 1, (64, 8))
    seq_len = torch.randint(1, 9, (64,))
    with torch.no_grad():
        torch.testing.assert_close(enc(seq, seq_len), enc.forward_full(seq, seq_len), rtol=1e-4, atol=1e-5)
        layer = enc.blocks.layers[-1]
        x = torch.randn(64, 8, 16)
        pos = seq_len - 1
        fast = last_query_block(layer, x, pos)
        layer.train()
        layer.dropout.p = layer.dropout1.p = layer.dropout2.p = layer.self_attn.dropout = 0.0
        torch.testing.assert_close(fast, last_query_block(layer, x, pos), rtol=1e-4, atol=1e-5)  # the MHA path


def test_bench_resumes_finished_runs_and_refuses_other_options(folder, tmp_path, monkeypatch):
    """A stopped sequential bench picks up from its --json: finished (model, seed) runs are reused."""
    from core.errors import InputError
    from core.io import atomic_write_json
    from recommenders import seq_bench

    fast = {"dreamrec": dict(hidden=16, epochs=1, num_train_timesteps=50, batch_size=256)}
    out = tmp_path / "bench.json"
    kwargs = dict(progress=False, samplers=["ddim"], overrides=fast, select=[("ddim", 2)])
    first = seq_bench.run_seq_bench(str(folder), ["dreamrec"], 1, [5], **kwargs,
                                    partial=lambda r: atomic_write_json(out, r))
    fits = []
    real = seq_bench.model_class

    def counting(name):
        cls = real(name)

        class Counted(cls):
            def fit(self, *a, **k):
                fits.append(k.get("seed"))
                return super().fit(*a, **k)
        return Counted

    monkeypatch.setattr(seq_bench, "model_class", counting)
    again = seq_bench.run_seq_bench(str(folder), ["dreamrec"], 2, [5], **kwargs, resume=[out])
    assert fits == [1]  # seed 0 came from the JSON, only seed 1 was trained
    runs = again["models"]["dreamrec"]["runs"]
    assert [r["seed"] for r in runs] == [0, 1] and runs[0] == first["models"]["dreamrec"]["runs"][0]
    assert again["resumed_from"] == [rel_path(out)]  # results JSON hold relative paths (issue 17)
    with pytest.raises(InputError, match="other options"):
        seq_bench.run_seq_bench(str(folder), ["dreamrec"], 1, [10], **kwargs, resume=[out])
    out.write_text("{not json")
    with pytest.raises(InputError, match="not a bench JSON"):
        seq_bench.run_seq_bench(str(folder), ["dreamrec"], 1, [5], **kwargs, resume=[out])


@pytest.mark.parametrize("model", ["dreamrec", "sasrec"])
def test_training_resumes_from_its_epoch_checkpoint_to_the_same_weights(folder, tmp_path, model):
    """A run stopped after epoch 2 and restarted with the same checkpoint folder ends with the weights
    of an uninterrupted run; other settings never resume it."""
    from recommenders.base import model_class as cls_of
    from recommenders.checkpoint import STATE

    data = load_seq(str(folder))
    hp = dict(hidden=16, epochs=4, patience=10, lr=0.005, batch_size=128, dropout=0.2)
    if model == "dreamrec":
        hp.update(num_train_timesteps=50, sampling_steps=5)
    ref = cls_of(model)(**hp)
    ref.fit(data, seed=3, progress=False)

    class Stop(Exception):
        pass

    ckpt = tmp_path / "ckpt"
    first = cls_of(model)(**hp)
    calls = []
    real_evaluate = first.evaluate

    def evaluate(*a, **k):
        calls.append(1)
        if len(calls) == 3:
            raise Stop  # "killed" during epoch 3: the checkpoint holds epoch 2
        return real_evaluate(*a, **k)

    first.evaluate = evaluate
    with pytest.raises(Stop):
        first.fit(data, seed=3, progress=False, checkpoint_dir=ckpt)
    assert json.loads((ckpt / STATE).read_text())["state"]["epoch"] == 2
    resumed = cls_of(model)(**hp)
    log = resumed.fit(data, seed=3, progress=False, checkpoint_dir=ckpt)
    assert log["epochs_run"] == 4 and [r["epoch"] for r in log["log"]] == [1, 2, 3, 4]
    for name, value in ref.net.state_dict().items():
        assert torch.equal(value, resumed.net.state_dict()[name]), name
    # another seed has another fingerprint: it trains from scratch instead of resuming
    other = cls_of(model)(**{**hp, "epochs": 1})
    assert other.fit(data, seed=4, progress=False, checkpoint_dir=ckpt)["log"][0]["epoch"] == 1
