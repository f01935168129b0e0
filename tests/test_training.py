"""The one epoch trainer (recommenders.training): every epoch-trained model resumes to the same bytes, logs
the same keys, stops early on its validation figure, averages its weights when asked, obeys a time cap;
and a new model needs only the few methods its docstring names."""
import hashlib
import json

import numpy as np
import pytest
import scipy.sparse as sp
import torch

from recommenders.base import model_class
from recommenders.checkpoint import STATE, EpochCheckpoint
from recommenders.splits import CFSplits, SeqSplit, SeqSplits
from recommenders.training import (
    LOG_KEYS,
    RECORD_KEYS,
    EpochTrained,
    shuffled_batches,
    train_epochs,
)

torch.set_num_threads(1)


def cf_data(n_users=40, n_items=60, seed=0) -> CFSplits:
    """Two user groups, each liking its own half of the catalog."""
    rng = np.random.default_rng(seed)
    parts = {k: np.zeros((n_users, n_items), np.float32) for k in ("train", "valid", "test")}
    for u in range(n_users):
        half = np.arange(n_items // 2) + (u % 2) * (n_items // 2)
        items = rng.choice(half, size=12, replace=False)
        parts["train"][u, items[:8]] = 1
        parts["valid"][u, items[8:10]] = 1
        parts["test"][u, items[10:]] = 1
    emb = rng.normal(size=(n_items, 4)).astype(np.float32)
    return CFSplits("tiny", *(sp.csr_matrix(parts[k]) for k in ("train", "valid", "test")), item_emb=emb,
                    item_ids=[f"i{j}" for j in range(n_items)])


def seq_data(n_items=20, max_len=5, seed=0) -> SeqSplits:
    """next = last + 1 (80%), else item 0."""
    rng = np.random.default_rng(seed)

    def split(n):
        seq = np.full((n, max_len), n_items, np.int64)
        lens = rng.integers(1, max_len + 1, n)
        target = np.zeros(n, np.int64)
        for r in range(n):
            x = int(rng.integers(n_items))
            for j in range(lens[r]):
                seq[r, j] = x
                x = (x + 1) % n_items if rng.random() < 0.8 else 0
            target[r] = x
        return SeqSplit(seq, lens, target)

    return SeqSplits("chain", n_items, split(300), split(60), split(60), item_ids=[f"s{j}" for j in range(n_items)])


MODELS = {  # every model trained in epochs, tiny settings; 5 epochs, no early stop unless a test asks
    "diffrec": {"hidden": [16], "steps": 5, "batch_size": 16, "epochs": 5, "patience": 10, "ema_decay": 0.9,
                "item_linear": True, "sampling_start": 2, "sampling_steps": 2},
    "ldiffrec": {"n_clusters": 2, "latent": 8, "hidden": [16], "steps": 5, "batch_size": 16, "epochs": 5,
                 "patience": 10},
    "multivae": {"hidden": [16], "latent": 8, "batch_size": 16, "epochs": 5, "patience": 10, "anneal_steps": 10},
    "giffcf": {"embed_dim": 8, "batch_size": 16, "epochs": 5, "patience": 10, "eval_every": 1, "noise_scale": 0.1,
               "ideal_weight": 0.3, "ideal_cutoff": 4},
    "sasrec": {"hidden": 16, "n_layers": 1, "max_len": 5, "batch_size": 64, "epochs": 5, "patience": 10,
               "select_k": 5, "lr": 5e-3},
    "gru4rec": {"hidden": 16, "max_len": 5, "batch_size": 64, "epochs": 5, "patience": 10, "select_k": 5,
                "lr": 5e-3},
    "dreamrec": {"hidden": 16, "max_len": 5, "batch_size": 64, "epochs": 5, "patience": 10, "select_k": 5,
                 "num_train_timesteps": 50, "sampling_steps": 3, "lr": 5e-3},
}
CF_MODELS = ("diffrec", "ldiffrec", "multivae", "giffcf")


@pytest.fixture(scope="module")
def datasets():
    return {"cf": cf_data(), "seq": seq_data()}


def data_for(name, datasets):
    return datasets["cf" if name in CF_MODELS else "seq"]


def saved_bytes(model, folder) -> str:
    model.save(folder)
    return hashlib.sha256((folder / "model.safetensors").read_bytes()).hexdigest()


class Stop(Exception):
    """Stands in for a kill during an epoch's validation."""


@pytest.mark.parametrize("name", MODELS)
def test_a_resumed_run_ends_with_the_bytes_of_an_uninterrupted_one(name, datasets, tmp_path):
    data = data_for(name, datasets)
    ref = model_class(name)(**MODELS[name])
    ref_log = ref.fit(data, seed=3, progress=False)
    ref_bytes = saved_bytes(ref, tmp_path / "ref")

    ckpt = tmp_path / "ckpt"
    first = model_class(name)(**MODELS[name])
    calls, real = [], first.validate

    def validate(d):
        calls.append(1)
        if len(calls) == 3:
            raise Stop  # "killed" during epoch 3: the checkpoint holds epoch 2
        return real(d)

    first.validate = validate
    with pytest.raises(Stop):
        first.fit(data, seed=3, progress=False, checkpoint_dir=ckpt)
    assert json.loads((ckpt / STATE).read_text())["state"]["epoch"] == 2
    resumed = model_class(name)(**MODELS[name])
    log = resumed.fit(data, seed=3, progress=False, checkpoint_dir=ckpt)
    assert log["epochs_resumed"] == 2 and log["epochs_run"] == ref_log["epochs_run"] == 5
    assert [r["valid"] for r in log["log"]] == [r["valid"] for r in ref_log["log"]]
    assert saved_bytes(resumed, tmp_path / "resumed") == ref_bytes
    # the finished run resumes to the same model without training; other settings start afresh
    again = model_class(name)(**MODELS[name])
    assert again.fit(data, seed=3, progress=False, checkpoint_dir=ckpt)["epochs_resumed"] == 5
    assert saved_bytes(again, tmp_path / "again") == ref_bytes
    other = model_class(name)(**{**MODELS[name], "epochs": 1})
    assert other.fit(data, seed=4, progress=False, checkpoint_dir=ckpt)["epochs_resumed"] == 0


def test_checkpoints_of_the_per_model_loops_are_ignored(datasets, tmp_path):
    """The format before the shared trainer had the same file names; its fingerprint can never match."""
    data = datasets["cf"]
    model = model_class("multivae")(**MODELS["multivae"])
    model.setup_fit(data, 0)
    EpochCheckpoint(tmp_path, model.fit_fingerprint(data, 0)).save({"x": torch.zeros(1)}, {"epoch": 4})
    log = model_class("multivae")(**MODELS["multivae"]).fit(data, seed=0, progress=False, checkpoint_dir=tmp_path)
    assert log["epochs_resumed"] == 0 and log["epochs_run"] == 5


def test_every_model_logs_the_same_keys_and_counts_epochs_from_one(datasets):
    for name, hp in MODELS.items():
        log = model_class(name)(**{**hp, "epochs": 2}).fit(data_for(name, datasets), seed=0, progress=False)
        assert tuple(log) == LOG_KEYS, name
        assert all(tuple(r) == RECORD_KEYS for r in log["log"]), name
        assert [r["epoch"] for r in log["log"]] == [1, 2] and log["stopped"] == "epochs", name
        assert log["metric"] == ("valid_recall@20" if name in CF_MODELS else "valid_hr@5"), name
        assert log["best_valid"] == max(r["valid"] for r in log["log"]), name
        json.dumps(log)  # the log goes to training.json as it is


@pytest.mark.parametrize("name", ["multivae", "sasrec"])
def test_early_stopping_keeps_the_best_validated_weights(name, datasets):
    """Validation that only gets worse after epoch 2 stops the run `patience` validations later, with the
    weights of epoch 2."""
    data = data_for(name, datasets)
    model = model_class(name)(**{**MODELS[name], "epochs": 20, "patience": 2})
    figures, weights = iter([0.1, 0.5, 0.4, 0.3, 0.2, 0.1]), []

    def validate(d):
        weights.append({k: v.clone() for k, v in model.net.state_dict().items()})
        return next(figures)

    model.validate = validate
    log = model.fit(data, seed=0, progress=False)
    assert log["stopped"] == "patience" and log["best_epoch"] == 2 and log["epochs_run"] == 4
    assert log["best_valid"] == 0.5
    for k, v in model.net.state_dict().items():
        assert torch.equal(v, weights[1][k]), k
    assert not all(torch.equal(v, weights[-1][k]) for k, v in model.net.state_dict().items())


def test_eval_every_and_the_time_cap(datasets):
    data = datasets["seq"]
    log = model_class("gru4rec")(**{**MODELS["gru4rec"], "epochs": 5, "eval_every": 2}).fit(data, progress=False)
    assert [r["valid"] is not None for r in log["log"]] == [False, True, False, True, True]  # and the last epoch
    capped = model_class("gru4rec")(**{**MODELS["gru4rec"], "epochs": 50, "max_train_seconds": 1e-6})
    log = capped.fit(data, progress=False)
    assert log["stopped"] == "time cap" and log["epochs_run"] == 1


class ToyRegressor(EpochTrained):
    """A model written against the trainer's contract only (what a new backbone supplies)."""

    name = "toy"

    class Config:
        epochs, patience, lr, ema_decay = 6, 10, 0.1, 0.0

    def __init__(self, **overrides):
        self.config = self.Config()
        for k, v in overrides.items():
            setattr(self.config, k, v)

    valid_metric = "neg_mse"

    def setup_fit(self, data, seed):
        return torch.nn.Linear(3, 1)

    def configure_optimizer(self, net):
        return torch.optim.SGD(net.parameters(), lr=self.config.lr)

    def train_batches(self, data, gen):
        return shuffled_batches(data["train"], 16, gen)

    def batch_loss(self, batch, gen):
        x, y = batch
        return ((self.net(x).squeeze(-1) - y) ** 2).mean()

    def validate(self, data):
        x, y = data["valid"]
        return -float(((self.net(x).squeeze(-1) - y) ** 2).mean())

    def fit_fingerprint(self, data, seed):
        return f"toy-{seed}-{self.config.ema_decay}"


def toy_data():
    g = torch.Generator().manual_seed(0)
    w = torch.tensor([1.0, -2.0, 0.5])
    x = torch.randn(128, 3, generator=g)
    xv = torch.randn(32, 3, generator=g)
    return {"train": (x, x @ w), "valid": (xv, xv @ w)}


def test_a_new_model_needs_only_the_documented_methods_and_gets_ema(tmp_path, monkeypatch):
    from core.ema import EMA

    data = toy_data()
    plain = ToyRegressor()
    log = plain.fit(data, seed=0, progress=False)
    assert log["best_valid"] > -0.05 and log["log"][-1]["loss"] < log["log"][0]["loss"]  # it learned
    # with ema_decay the validated and kept weights are the average, not the last trained ones
    shadows, trained = [], []
    real = EMA.update

    def update(self, module):
        real(self, module)
        shadows.append({k: v.clone() for k, v in self.shadow.items()})
        trained.append({k: v.detach().clone() for k, v in module.state_dict().items()})

    monkeypatch.setattr(EMA, "update", update)
    averaged = ToyRegressor(ema_decay=0.8, epochs=3)
    log = averaged.fit(data, seed=0, progress=False, checkpoint_dir=tmp_path)
    best_step = log["best_epoch"] * 8 - 1  # 128 rows / 16 per batch = 8 updates per epoch
    for k, v in averaged.net.state_dict().items():
        assert torch.equal(v, shadows[best_step][k]), k
    assert any(not torch.equal(v, trained[best_step][k]) for k, v in averaged.net.state_dict().items())
    monkeypatch.undo()
    resumed = ToyRegressor(ema_decay=0.8, epochs=3)  # the checkpoint holds the average too
    assert resumed.fit(data, seed=0, progress=False, checkpoint_dir=tmp_path)["epochs_resumed"] == 3
    for k, v in averaged.net.state_dict().items():
        assert torch.equal(v, resumed.net.state_dict()[k]), k


def test_bad_trainer_settings_are_input_errors(datasets):
    from core.errors import InputError

    with pytest.raises(InputError, match="epochs, patience"):
        model_class("sasrec")(**{**MODELS["sasrec"], "patience": 0}).fit(datasets["seq"], progress=False)
    with pytest.raises(InputError, match="ema_decay"):
        train_epochs(ToyRegressor(ema_decay=1.5), toy_data())
