"""Configs that carry to new data (issue 17): derived when a data set has none, said on screen and in the JSON;
`--tune BUDGET` searches on valid with optuna, saves the chosen config as YAML, and the run reuses it."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import yaml
from cli_tools import run_cli




def cf_folder(folder: Path, users: int = 40, items: int = 60, seed: int = 0) -> Path:
    """A cf-npy folder (ml-1m_clean's file layout) of random pairs, split 7:2:1."""
    folder.mkdir(parents=True)
    rng = np.random.default_rng(seed)
    pairs = np.asarray([(u, i) for u in range(users) for i in range(items) if rng.random() < 0.4], np.int64)
    rng.shuffle(pairs)
    a, b = int(0.7 * len(pairs)), int(0.9 * len(pairs))
    for name, part in (("train", pairs[:a]), ("valid", pairs[a:b]), ("test", pairs[b:])):
        np.save(folder / f"{name}_list.npy", part)
    return folder


def seq_folder(folder: Path, n_items: int = 20, seed: int = 0) -> Path:
    """A seq-npz folder (zhihu's layout): a noisy chain i -> i+1, right-padded with pad id = n_items."""
    folder.mkdir(parents=True)
    rng = np.random.default_rng(seed)
    for name, n in (("train", 400), ("valid", 80), ("test", 80)):
        seq = np.full((n, 5), n_items, np.int64)
        lens = rng.integers(1, 6, size=n)
        target = np.zeros(n, np.int64)
        for r, k in enumerate(lens):
            start = rng.integers(0, n_items)
            seq[r, :k] = (start + np.arange(k)) % n_items
            target[r] = (start + k) % n_items if rng.random() < 0.8 else rng.integers(0, n_items)
        np.savez(folder / f"{name}.npz", seq=seq, seq_len=lens, target=target)
    return folder


def no_absolute_paths(obj) -> bool:
    if isinstance(obj, dict):
        return all(no_absolute_paths(v) for v in obj.values())
    if isinstance(obj, list):
        return all(no_absolute_paths(v) for v in obj)
    return not (isinstance(obj, str) and obj.startswith("/"))


def test_cf_folder_without_config_gets_a_derived_one_said_and_recorded(tmp_path):
    data = cf_folder(tmp_path / "new-cf")
    out = tmp_path / "bench.json"
    code, stdout, err = run_cli(["rec", "bench", "--data", str(data), "--models", "mostpop,ease,itemknn",
                                 "--seeds", "1", "--quiet", "--json", str(out)])
    assert code == 0, err
    line = next(x for x in stdout.splitlines() if x.startswith("config:"))
    assert line.startswith("config: derived for 40 users x 60 items (density ")
    assert "from ml-1m_clean.yaml" in line and "epoch caps 200" in line
    result = json.loads(out.read_text())
    cfg = result["config"]
    assert cfg["source"] == "derived" and cfg["line"] == line and cfg["file"].endswith("configs/ml-1m_clean.yaml")
    # EASE's L2 scaled with the mean item degree: 1000 * (train/items here) / (403,277 / 2,810)
    train = int(result["interactions"]["train"])
    assert cfg["models"]["ease"]["l2"] == pytest.approx(round(1000.0 * (train / 60) / (403277 / 2810), 1), abs=0.11)
    assert result["models"]["ease"]["config"]["l2"] == cfg["models"]["ease"]["l2"]
    assert cfg["models"]["itemknn"]["k"] == 59  # bounded by the item count
    assert cfg["models"]["diffrec"]["epochs"] == 200 and cfg["models"]["ldiffrec"]["epochs"] == 200
    assert cfg["models"]["diffrec"]["hidden"] == [60] and cfg["changes"]["diffrec"]["hidden"] == [[1000], [60]]
    assert "reference" not in cfg["settings"] and result["reference"] == {}  # ml-1m's figures are not this data's
    assert no_absolute_paths(result)


def test_a_tuned_name_on_other_data_is_derived_not_trusted(tmp_path):
    data = cf_folder(tmp_path / "ml-1m_clean")  # the name of a tuned data set, not its size
    code, stdout, err = run_cli(["rec", "train", "--data", str(data), "--model", "mostpop", "--out",
                                 str(tmp_path / "m")])
    assert code == 0, err
    assert "config: derived for 40 users x 60 items" in stdout
    assert "ml-1m_clean.yaml is for another data set of that name" in stdout
    saved = json.loads((tmp_path / "m" / "training.json").read_text())
    assert saved["config"]["source"] == "derived" and no_absolute_paths(saved)


def test_the_tuned_config_is_named_on_its_own_data():
    from recommenders.bench_config import DataStats, resolve

    rc = resolve("ml-1m_clean", DataStats("cf", 5949, 2810, 403277))
    assert rc.source == "tuned" and rc.models["ease"]["l2"] == 1000.0
    assert rc.line == "config: recommenders/configs/ml-1m_clean.yaml (tuned for ml-1m_clean, 5,949 users x " \
                      "2,810 items (density 2.4%))"


def test_sequence_folder_without_config_is_derived_without_caps(tmp_path):
    data = seq_folder(tmp_path / "new-seq")
    code, stdout, err = run_cli(["rec", "train", "--data", str(data), "--model", "seq-mostpop",
                                 "--out", str(tmp_path / "m")])
    assert code == 0, err
    line = next(x for x in stdout.splitlines() if x.startswith("config:"))
    assert line.startswith("config: derived for 400 train rows over 20 items from ")
    assert "demo_seq" not in line  # never the demo's 10-epoch smoke-test config
    saved = json.loads((tmp_path / "m" / "training.json").read_text())
    models = saved["config"]["models"]
    assert saved["config"]["source"] == "derived"
    for name in ("sasrec", "gru4rec", "dreamrec"):
        assert models[name]["epochs"] >= 200 and models[name].get("max_train_seconds", 0) == 0


def test_config_is_honoured_for_sequence_benches(tmp_path):
    data = seq_folder(tmp_path / "s")
    cfg = tmp_path / "mine.yaml"
    cfg.write_text("ks: [5, 10]\ntarget_metric: hr@10\nmodels:\n  seq-mostpop: {}\n")
    out = tmp_path / "b.json"
    code, stdout, err = run_cli(["rec", "bench", "--data", str(data), "--models", "mostpop", "--seeds", "1",
                                 "--quiet", "--config", str(cfg), "--json", str(out)])
    assert code == 0, err
    assert "(--config)" in next(x for x in stdout.splitlines() if x.startswith("config:"))
    result = json.loads(out.read_text())
    assert result["ks"] == [5, 10] and result["config"]["source"] == "given" and "--config" in result["command"]


def test_tune_searches_saves_and_reuses_a_config_cf(tmp_path):
    out = tmp_path / "bench.json"
    code, stdout, err = run_cli(["rec", "bench", "--data", "demo", "--models", "mostpop,ease", "--seeds", "1",
                                 "--quiet", "--json", str(out), "--tune", "6s"])
    assert code == 0, err
    tuned = tmp_path / "bench.tuned.yaml"
    saved = yaml.safe_load(tuned.read_text())
    record = saved["tuning"]["models"]["ease"]
    assert record["trials"] >= 2 and saved["tuning"]["untuned"] == ["mostpop"]
    assert saved["models"]["ease"]["l2"] == record["best"]["l2"]
    assert record["best_valid"] >= record["base_valid"]  # trial 0 is the config's own l2
    result = json.loads(out.read_text())
    assert result["config"]["source"] == "given" and result["config"]["file"].endswith("bench.tuned.yaml")
    assert result["models"]["ease"]["config"]["l2"] == pytest.approx(record["best"]["l2"])
    assert "tuned config:" in stdout
    code, stdout, err = run_cli(["rec", "train", "--data", "demo", "--model", "ease", "--out", str(tmp_path / "m"),
                                 "--config", str(tuned)])  # the saved YAML is a --config like any other
    assert code == 0, err
    assert json.loads((tmp_path / "m" / "training.json").read_text())["config"]["models"]["ease"]["l2"] == \
        pytest.approx(record["best"]["l2"])


def test_tune_on_sequence_data_for_train(tmp_path):
    data = seq_folder(tmp_path / "s")
    code, stdout, err = run_cli(["rec", "train", "--data", str(data), "--model", "gru4rec", "--out",
                                 str(tmp_path / "m"), "--tune", "8s", "--set", "hidden=16", "--set", "epochs=3"])
    assert code == 0, err
    saved = yaml.safe_load((tmp_path / "m" / "tuned.yaml").read_text())
    assert saved["data"]["kind"] == "seq" and saved["tuning"]["metric"].startswith("valid ")
    assert saved["tuning"]["models"]["gru4rec"]["trials"] >= 1
    assert set(saved["tuning"]["models"]["gru4rec"]["best"]) == {"lr", "dropout", "hidden"}
    training = json.loads((tmp_path / "m" / "training.json").read_text())
    assert training["config"]["source"] == "given" and training["config"]["file"].endswith("tuned.yaml")


@pytest.mark.parametrize("budget", ["soon", "2s", "-5", "10d"])
def test_bad_tune_budget_is_one_line(tmp_path, budget):
    code, _, err = run_cli(["rec", "bench", "--data", "demo", "--models", "ease", "--tune", budget, "--quiet"])
    assert code == 2 and err.startswith("error: --tune") and len(err.strip().splitlines()) == 1, err
