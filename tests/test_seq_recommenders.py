"""Sequential recommenders on a tiny synthetic next-item problem: fit, beat random, save/load, sample."""
import numpy as np
import pytest
import torch

from core.errors import InputError
from recommenders.base import SequentialRecommender, model_class
from recommenders.splits import SeqSplit, SeqSplits

torch.set_num_threads(1)

N_ITEMS, L = 30, 6
POPULAR = (0, 1, 2)


def chain_split(n_rows: int, rng: np.random.Generator) -> SeqSplit:
    """Rows of a Markov chain: next = last + 1 (70%), else one of three popular items."""
    seq = np.full((n_rows, L), N_ITEMS, np.int64)
    lens = rng.integers(1, L + 1, n_rows)
    target = np.zeros(n_rows, np.int64)
    for r in range(n_rows):
        x = int(rng.integers(N_ITEMS))
        walk = []
        for _ in range(lens[r] + 1):
            walk.append(x)
            x = (x + 1) % N_ITEMS if rng.random() < 0.7 else int(rng.choice(POPULAR))
        seq[r, :lens[r]] = walk[:-1]
        target[r] = walk[-1]
    return SeqSplit(seq, lens, target)


@pytest.fixture(scope="module")
def data() -> SeqSplits:
    rng = np.random.default_rng(0)
    ids = [f"i{j}" for j in range(N_ITEMS)]
    return SeqSplits("chain", N_ITEMS, chain_split(800, rng), chain_split(150, rng), chain_split(200, rng),
                     item_ids=ids)


TINY = {
    "seq-mostpop": {},
    "sasrec": dict(hidden=32, n_layers=1, epochs=10, lr=5e-3, batch_size=128, max_len=L, dropout=0.1, select_k=3),
    "gru4rec": dict(hidden=32, epochs=20, lr=1e-2, batch_size=128, max_len=L, dropout=0.1, select_k=3),
    "dreamrec": dict(hidden=32, epochs=10, lr=5e-3, batch_size=128, max_len=L, num_train_timesteps=100,
                     sampling_steps=10, guidance=1.0, select_k=3, emb_init_std=1.0),
    "preferdiff": dict(hidden=32, epochs=10, lr=5e-3, batch_size=128, max_len=L, num_train_timesteps=100,
                       sampling_steps=10, guidance=1.0, objective="preferdiff", n_neg=8, select_k=3, aux_ce=0.0,
                       emb_init_std=1.0),
}


def make(name: str):
    cls = model_class("dreamrec" if name == "preferdiff" else name)
    return cls(**TINY[name])


@pytest.fixture(scope="module")
def fitted(data):
    models = {}
    for name in TINY:
        m = make(name)
        log = m.fit(data, seed=0, progress=False)
        assert log["seconds"] >= 0
        models[name] = m
    return models


@pytest.mark.parametrize("name", list(TINY))
def test_each_model_beats_random(fitted, data, name):
    m = fitted[name]
    hr5 = m.evaluate(data.test, ks=(5,))["hr@5"]
    random_hr5 = 5 / N_ITEMS
    floor = 0.3 if name == "seq-mostpop" else 0.6  # the chain is 70% predictable from the last item
    assert hr5 > max(floor, 1.5 * random_hr5), f"{name}: HR@5 {hr5:.3f}"


def test_sequence_models_beat_mostpop(fitted, data):
    pop = fitted["seq-mostpop"].evaluate(data.test, ks=(1,))["hr@1"]
    for name in ("sasrec", "gru4rec", "dreamrec", "preferdiff"):
        assert fitted[name].evaluate(data.test, ks=(1,))["hr@1"] > pop + 0.15, name


@pytest.mark.parametrize("name", ["seq-mostpop", "sasrec", "gru4rec", "dreamrec"])
def test_save_load_gives_identical_scores(fitted, data, name, tmp_path):
    m = fitted[name]
    m.save(tmp_path / name)
    loaded = SequentialRecommender.load(tmp_path / name)
    assert type(loaded) is type(m)
    np.testing.assert_array_equal(m.score(data.test.seq[:50], data.test.seq_len[:50]),
                                  loaded.score(data.test.seq[:50], data.test.seq_len[:50]))


@pytest.mark.parametrize("sampler,steps", [("ddpm", 100), ("ddpm", 20), ("ddim", 5), ("ddim", 2),
                                           ("dpmsolver", 5), ("dpmsolver", 2)])
def test_fewer_sampling_steps_rank_sensibly(fitted, data, sampler, steps):
    m = fitted["dreamrec"]
    full = m.evaluate(data.test, ks=(5,), sampler="ddpm", steps=100)["hr@5"]
    fast = m.evaluate(data.test, ks=(5,), sampler=sampler, steps=steps)["hr@5"]
    assert fast > 0.6 and fast > full - 0.1, (sampler, steps, fast, full)


def test_scores_repeat_with_a_seed_and_differ_across_seeds(fitted, data):
    m = fitted["dreamrec"]
    a = m.score(data.test.seq[:20], data.test.seq_len[:20], sampler="ddpm", steps=20, seed=1)
    b = m.score(data.test.seq[:20], data.test.seq_len[:20], sampler="ddpm", steps=20, seed=1)
    c = m.score(data.test.seq[:20], data.test.seq_len[:20], sampler="ddpm", steps=20, seed=2)
    np.testing.assert_array_equal(a, b)
    assert not np.allclose(a, c)


def test_preference_carries_the_generated_embedding(fitted):
    from recommenders.preference import Backbone, ShopperEvents, preference

    m = fitted["dreamrec"]
    cond = preference(Backbone.from_model(m), ShopperEvents("u1", ["i3", "i4", "i5"]), k=5)
    assert cond.source == "dreamrec" and cond.user_id == "u1"
    assert len(cond.embedding) == TINY["dreamrec"]["hidden"]
    assert len(cond.item_scores) == 5 and cond.item_scores[0][0] == "i6"  # the chain's next item
    assert cond.reference_items[0] == "i5"
    skipped = preference(Backbone.from_model(m), ShopperEvents("u1", ["nope", "i3", "i4", "i5"]), k=5)
    assert skipped.item_scores == cond.item_scores  # ids the model does not know are skipped
    sas = preference(Backbone.from_model(fitted["sasrec"]), ShopperEvents("user", ["i3", "i4", "i5"]), k=3)
    assert sas.item_scores[0][0] == "i6"


@pytest.mark.parametrize("overrides", [dict(prediction_type="epsilon", beta_schedule="cosine"),
                                       dict(guidance=0.0, sampler="dpmsolver", objective="mse"),
                                       dict(objective="softmax", score="cosine", aux_ce=0.5, cond_skip=True,
                                            guidance=2.0)])
def test_dreamrec_variants_train_and_score(data, overrides):
    m = model_class("dreamrec")(hidden=16, epochs=1, batch_size=256, max_len=L, num_train_timesteps=50,
                                sampling_steps=5, **overrides)
    m.fit(data, seed=0, progress=False)
    s = m.score(data.test.seq[:10], data.test.seq_len[:10])
    assert s.shape == (10, N_ITEMS) and np.isfinite(s).all()


def test_bad_settings_are_input_errors():
    with pytest.raises(InputError):
        model_class("sasrec")(no_such_knob=1)
    with pytest.raises(InputError):
        model_class("dreamrec")(objective="gan")
    with pytest.raises(InputError):
        model_class("dreamrec")(sampler="euler")


@pytest.mark.parametrize("n_layers", [1, 2])
def test_encoder_last_position_shortcut_matches_the_full_transformer(n_layers):
    from recommenders.seq_base import SeqEncoder

    enc = SeqEncoder(N_ITEMS, 8, 16, n_layers, 2, 0.1).eval()
    seq = torch.randint(0, N_ITEMS + 1, (32, 8))
    seq_len = torch.randint(1, 9, (32,))
    with torch.no_grad():
        torch.testing.assert_close(enc(seq, seq_len), enc.forward_full(seq, seq_len), rtol=1e-4, atol=1e-5)


def test_encoder_projection_table_follows_weight_updates_and_size_cap():
    """The one-block encoder reads its attention inputs from a per-(item, position) table at
    inference; it must match the full transformer, refresh after an optimiser step or a load, and
    be skipped (same result, computed per row) when it would be too large."""
    from recommenders.seq_base import SeqEncoder

    torch.manual_seed(0)
    enc = SeqEncoder(N_ITEMS, 8, 16, 1, 2, 0.0)
    seq = torch.randint(0, N_ITEMS + 1, (32, 8))
    seq_len = torch.randint(1, 9, (32,))
    enc.eval()
    with torch.no_grad():
        before = enc(seq, seq_len)
    assert enc._table is not None  # the table path ran
    opt = torch.optim.SGD(enc.parameters(), lr=0.5)
    enc.train()
    enc(seq, seq_len).square().sum().backward()
    opt.step()
    enc.eval()
    with torch.inference_mode():
        after = enc(seq, seq_len)
        full = enc.forward_full(seq, seq_len)
    assert not torch.allclose(before, after)
    torch.testing.assert_close(after, full, rtol=1e-4, atol=1e-5)
    other = SeqEncoder(N_ITEMS, 8, 16, 1, 2, 0.0).eval()
    enc.load_state_dict(other.state_dict())
    with torch.no_grad():
        torch.testing.assert_close(enc(seq, seq_len), other.forward_full(seq, seq_len), rtol=1e-4, atol=1e-5)
        enc.table_max_bytes = 0
        assert enc.projection_table() is None
        torch.testing.assert_close(enc(seq, seq_len), other.forward_full(seq, seq_len), rtol=1e-4, atol=1e-5)


def test_bench_runs_every_sampler_and_merges(data, tmp_path):
    import json

    from recommenders.seq_bench import format_table, merge_results, run_seq_bench

    folder = tmp_path / "chain"
    folder.mkdir()
    for name in ("train", "valid", "test"):
        split = getattr(data, name)
        seq = np.full((len(split), L), N_ITEMS)
        seq[:, :split.seq.shape[1]] = split.seq
        np.savez(folder / f"{name}.npz", seq=seq, seq_len=split.seq_len, target=split.target)
    fast = {"dreamrec": dict(hidden=16, epochs=1, max_len=L, num_train_timesteps=50, batch_size=256)}
    a = run_seq_bench(str(folder), ["mostpop", "dreamrec"], 1, [50, 10], progress=False,
                      samplers=["ddpm", "ddim"], overrides=fast, save_dir=tmp_path / "models", select=[])
    b = run_seq_bench(str(folder), ["dreamrec"], 1, [50, 10], progress=False, samplers=["ddpm", "ddim"],
                      overrides=fast, seed_list=[1], select=[])
    assert set(a["models"]["dreamrec"]["variants"]) == {"ddpm@50", "ddpm@10", "ddim@50", "ddim@10"}
    assert (tmp_path / "models" / "dreamrec-seed0" / "model.safetensors").exists()
    merged = merge_results([a, b])
    assert [r["seed"] for r in merged["models"]["dreamrec"]["runs"]] == [0, 1]
    assert merged["models"]["dreamrec"]["variants"]["ddim@10"]["infer_ms_per_1k"]["n"] == 2
    json.dumps(merged)
    table = format_table(merged)
    assert "ddim@10" in table and "seq-mostpop" in table
    with pytest.raises(InputError):
        run_seq_bench(str(folder), ["nope"], 1, None, progress=False)
