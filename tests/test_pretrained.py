"""One save/load (core.pretrained) for recommenders, the preference adapter and the reward model: folders of
config.json + model.safetensors, the one-line errors, no pickles, and folders written by the previous
version (tests/fixtures/saved_v1, made by Atelier at 91ca637) loading with the same outputs."""
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

from core.errors import InputError
from core.pretrained import read_folder, save_folder
from recommenders.base import CFRecommender, SequentialRecommender, _Saveable
from recommenders.diffrec import DiffRec
from recommenders.sasrec import SASRec

torch.set_num_threads(1)
V1 = Path(__file__).parent / "fixtures" / "saved_v1"
EXPECTED = load_file(str(V1 / "expected.safetensors"))
CF = ["mostpop", "itemknn", "ease", "multivae", "diffrec", "ldiffrec"]
SEQ = ["seq-mostpop", "sasrec", "gru4rec", "dreamrec"]
# The diffusion models' samplers are diffusers' schedulers now, whose alphas_cumprod are float32 (they were
# float64): DreamRec's DDIM path and (L-)DiffRec's sqrt(alpha_bar) input scale move by ~1 ulp
TOLERANCE = {"dreamrec": 1e-5, "diffrec": 1e-6, "ldiffrec": 1e-6}


def outputs(model, name: str) -> np.ndarray:
    """What make_folders.py recorded: CF scores of users 0-3, sequential scores of three test histories."""
    if name in CF:
        return model.score(np.arange(4))
    return model.score(EXPECTED["seq"].numpy(), EXPECTED["seq_len"].numpy())


@pytest.mark.parametrize("name", CF + SEQ)
def test_folders_of_the_previous_version_load_with_the_same_outputs(name, tmp_path):
    model = _Saveable.from_pretrained(V1 / name)
    assert model.name == name
    want = EXPECTED[name].numpy()
    got = outputs(model, name)
    np.testing.assert_allclose(got, want, rtol=0, atol=TOLERANCE.get(name, 0.0))
    # saved again, it is in the current layout and reloads to the same outputs, through either base class
    model.save_pretrained(tmp_path / name)
    meta = json.loads((tmp_path / name / "config.json").read_text())
    assert meta["_class_name"] == type(model).__name__ and len(meta["_weights_sha256"]) == 64
    assert "model" not in meta and "config" not in meta  # config keys sit at the top, as in diffusers
    base = CFRecommender if name in CF else SequentialRecommender
    again = base.load(tmp_path / name)
    np.testing.assert_array_equal(outputs(again, name), got)
    assert type(again).from_pretrained(tmp_path / name).name == name


def test_the_previous_adapter_and_reward_model_load_with_the_same_outputs(tmp_path):
    from pipelines.conditioning import PreferenceAdapter
    from pipelines.reward import RewardModel

    adapter = PreferenceAdapter.from_pretrained(V1 / "adapter")  # v1: adapter.safetensors, no checksum
    assert adapter.config.embedding_dim == 3 and adapter.source == str(V1 / "adapter")
    with torch.no_grad():
        assert torch.equal(adapter(EXPECTED["adapter_emb"])[0], EXPECTED["adapter"])
        assert torch.equal(adapter(None)[0], EXPECTED["adapter_null"])
    reward = RewardModel.from_pretrained(V1 / "reward")  # v1: metrics beside the config keys
    assert reward.config.user_embedding == "taste" and reward.extra["metrics"]["held_out"]["auc"] == 0.61
    with torch.no_grad():
        logits = reward(EXPECTED["reward_image"], EXPECTED["reward_user"], torch.tensor([0, 1, 0]))
    assert torch.equal(logits, EXPECTED["reward"])
    for module, cls in ((adapter, PreferenceAdapter), (reward, RewardModel)):
        out = tmp_path / cls.__name__
        (module.save_pretrained(out, metrics=module.extra["metrics"]) if cls is RewardModel
         else module.save_pretrained(out))
        assert sorted(p.name for p in out.iterdir()) == ["config.json", "model.safetensors"]
        meta = json.loads((out / "config.json").read_text())
        assert meta["_class_name"] == cls.__name__ and "_weights_sha256" in meta
        again = cls.from_pretrained(out)
        for k, v in module.state_dict().items():
            assert torch.equal(v, again.state_dict()[k]), k
    assert json.loads((tmp_path / "RewardModel" / "config.json").read_text())["_extra"]["metrics"]["held_out"]


def test_a_reward_model_saved_before_the_affinity_term_still_loads(tmp_path):
    from pipelines.reward import RewardModel

    old = tmp_path / "old"
    shutil.copytree(V1 / "reward", old)
    tensors = load_file(str(old / "model.safetensors"))
    older = {k: v for k, v in tensors.items() if not k.startswith(("aff_", "probe_bias"))}
    save_file(older, str(old / "model.safetensors"))
    model = RewardModel.from_pretrained(old)
    assert torch.equal(model.probe_bias, torch.zeros(2)) and torch.equal(model.aff_scale, torch.zeros(1))


def _errors(folder: Path, loader) -> str:
    with pytest.raises(InputError) as e:
        loader(folder)
    msg = str(e.value)
    assert "\n" not in msg
    return msg


@pytest.fixture()
def saved(tmp_path) -> dict[str, Path]:
    from pipelines.conditioning import PreferenceAdapter
    from pipelines.reward import RewardModel

    out = {}
    for name in ("diffrec", "adapter", "reward"):
        out[name] = tmp_path / name
        shutil.copytree(V1 / name, out[name])
    DiffRec.load(out["diffrec"]).save(out["diffrec"])  # in the current layout
    PreferenceAdapter.from_pretrained(out["adapter"]).save_pretrained(tmp_path / "adapter2")
    RewardModel.from_pretrained(out["reward"]).save_pretrained(out["reward"])
    out["adapter"] = tmp_path / "adapter2"
    return out


def loaders():
    from pipelines.conditioning import PreferenceAdapter
    from pipelines.reward import RewardModel

    return {"diffrec": _Saveable.load, "adapter": PreferenceAdapter.from_pretrained,
            "reward": RewardModel.from_pretrained}


@pytest.mark.parametrize("kind", ["diffrec", "adapter", "reward"])
def test_bad_folders_are_one_line_input_errors(kind, saved, tmp_path):
    load = loaders()[kind]
    folder = saved[kind]
    assert "folder not found" in _errors(tmp_path / "missing", load)
    empty = tmp_path / "empty"
    empty.mkdir()
    assert "no config.json" in _errors(empty, load)
    cfg = folder / "config.json"
    good = cfg.read_text()
    cfg.write_text("{broken")
    assert "invalid JSON" in _errors(folder, load)
    cfg.write_text("[1, 2]")
    assert "JSON object" in _errors(folder, load)
    cfg.write_text(good)
    meta = json.loads(good)
    cfg.write_text(json.dumps({**meta, "no_such_setting": 1}))
    assert "no_such_setting" in _errors(folder, load)
    cfg.write_text(good)
    # weights of another save (an interrupted one): the checksum in config.json does not match
    weights = folder / "model.safetensors"
    tensors = load_file(str(weights))
    key = next(iter(tensors))
    save_file({**tensors, key: tensors[key] + 1}, str(weights))
    assert "interrupted" in _errors(folder, load)
    # weights that do not fit the config (checksum updated, shapes wrong)
    save_file({**tensors, key: torch.zeros(3, 3, 3)}, str(weights))
    from core.io import sha256_file

    cfg.write_text(json.dumps({**meta, "_weights_sha256": sha256_file(weights)}))
    assert "do not match config.json" in _errors(folder, load)
    # a pickle where the weights belong is refused, never unpickled
    weights.unlink()
    (folder / "model.bin").write_bytes(b"\x80\x04 not to be unpickled")
    assert "pickle" in _errors(folder, load)


def test_a_folder_of_another_class_is_refused(saved):
    from pipelines.conditioning import PreferenceAdapter
    from pipelines.reward import RewardModel

    assert "not a PreferenceAdapter" in _errors(saved["reward"], PreferenceAdapter.from_pretrained)
    assert "not a RewardModel" in _errors(saved["adapter"], RewardModel.from_pretrained)
    assert "not a sasrec" in _errors(saved["diffrec"], SASRec.load)
    assert "not an Atelier recommender" in _errors(saved["adapter"], _Saveable.load)


def test_save_writes_the_weights_before_the_config_that_vouches_for_them(tmp_path, monkeypatch):
    """A save killed between the two files leaves a pair that load refuses, never a silent mix."""
    import core.pretrained as pretrained

    save_folder(tmp_path / "m", "Thing", {"a": 1}, {"w": torch.ones(2)})
    assert read_folder(tmp_path / "m", what="thing").config == {"a": 1}

    def killed(*a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr(pretrained, "atomic_write_json", killed)
    with pytest.raises(KeyboardInterrupt):
        save_folder(tmp_path / "m", "Thing", {"a": 2}, {"w": torch.zeros(2)})
    monkeypatch.undo()
    with pytest.raises(InputError, match="interrupted"):
        read_folder(tmp_path / "m", what="thing")
    with pytest.raises(ValueError, match="reserved"):
        save_folder(tmp_path / "n", "Thing", {"_private": 1}, {})
