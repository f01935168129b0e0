"""LoRA fine-tuning: output loads in plain diffusers, SIGKILL + `--resume latest` gives the same weights, bad input is one line."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from core.errors import InputError

ROOT = Path(__file__).resolve().parents[1]
COLORS = {"red": (220, 30, 30), "blue": (30, 40, 220), "green": (30, 200, 60), "yellow": (240, 220, 30)}


def make_caption_folder(folder: Path) -> Path:
    """Four flat-color squares with captions (enough for a LoRA to move away from the base)."""
    folder.mkdir(parents=True, exist_ok=True)
    for i, (name, rgb) in enumerate(COLORS.items()):
        img = Image.new("RGB", (64, 64), rgb)
        img.paste((255, 255, 255), (16, 16, 48, 48))
        img.save(folder / f"{i}.png")
        (folder / f"{i}.txt").write_text(f"a {name} square")
    return folder


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory) -> Path:
    return make_caption_folder(tmp_path_factory.mktemp("data") / "squares")


RESUME_CFG = dict(rank=4, steps=10, batch_size=2, learning_rate=1e-3, checkpoint_every=2, checkpoint_limit=2,
                  grad_accum=2, caption_dropout=0.25, seed=3)

TRAIN_SCRIPT = """
import sys, torch
torch.set_num_threads(1)
from finetune.data import load_caption_folder
from finetune.lora import LoraTrainConfig, train_lora
cfg = LoraTrainConfig(**{cfg})
train_lora(sys.argv[1], load_caption_folder(sys.argv[2]), sys.argv[3], cfg, resume=sys.argv[4] or None, progress=False)
"""


def run_training(tiny_sd: Path, data_dir: Path, out: Path, resume: str = "") -> subprocess.Popen:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(ROOT)}
    script = TRAIN_SCRIPT.format(cfg=repr(RESUME_CFG))
    return subprocess.Popen([sys.executable, "-c", script, str(tiny_sd), str(data_dir), str(out), resume],
                            env=env, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)


def lora_tensors(out: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    return load_file(str(out / "pytorch_lora_weights.safetensors"))


@pytest.mark.slow  # ~30 s (make test-slow)
def test_sigkill_then_resume_latest_gives_same_weights(tiny_sd, data_dir, tmp_path):
    from finetune.data import load_caption_folder
    from finetune.lora import LoraTrainConfig, train_lora

    killed = run_training(tiny_sd, data_dir, tmp_path / "killed")
    ckpts = tmp_path / "killed" / "checkpoints"
    deadline = time.time() + 300
    while time.time() < deadline and killed.poll() is None:
        done = sorted(p.name for p in ckpts.glob("step-*")) if ckpts.is_dir() else []
        if any(int(n.split("-")[1]) >= 4 for n in done):
            break
        time.sleep(0.02)
    killed.send_signal(signal.SIGKILL)
    killed.wait()
    assert killed.returncode == -signal.SIGKILL, "training finished before it could be killed"
    assert not (tmp_path / "killed" / "pytorch_lora_weights.safetensors").exists()
    resumed_from = max(int(p.name.split("-")[1]) for p in ckpts.glob("step-*"))
    assert 0 < resumed_from < RESUME_CFG["steps"]
    resumed = run_training(tiny_sd, data_dir, tmp_path / "killed", resume="latest")

    # meanwhile, the uninterrupted reference run with the same seed, in this process (one thread)
    train_lora(tiny_sd, load_caption_folder(data_dir), tmp_path / "ref", LoraTrainConfig(**RESUME_CFG), progress=False)
    log = resumed.communicate(timeout=300)[0].decode()
    assert resumed.returncode == 0, log

    a, b = lora_tensors(tmp_path / "ref"), lora_tensors(tmp_path / "killed")
    assert a.keys() == b.keys() and len(a) > 0
    for k in a:
        assert torch.equal(a[k], b[k]), f"{k} differs after resume from step {resumed_from}"
    # the LoRA did train: up (B) matrices start at zero
    assert any("lora.up" in k and a[k].abs().max() > 0 for k in a)


def test_lora_output_loads_in_plain_diffusers(tiny_sd, data_dir, tmp_path):
    from diffusers import StableDiffusionPipeline

    from finetune.data import load_caption_folder
    from finetune.lora import (
        LoraTrainConfig,
        build_pipeline,
        load_sd_components,
        train_lora,
    )

    parts = load_sd_components(tiny_sd)
    cfg = LoraTrainConfig(rank=4, alpha=8, steps=6, batch_size=2, learning_rate=5e-3, train_text_encoder=True,
                          checkpoint_every=0, validate_every=3, validation_prompts=["a red square"],
                          validation_steps=2, seed=1)
    summary = train_lora(tiny_sd, load_caption_folder(data_dir), tmp_path / "lora", cfg, progress=False, parts=parts)
    assert summary["steps"] == 6 and np.isfinite(summary["last_loss"])
    assert (tmp_path / "lora" / "validation" / "step-000003" / "00.png").is_file()
    assert json.loads((tmp_path / "lora" / "lora_config.json").read_text())["config"]["rank"] == 4

    def sample(pipe) -> np.ndarray:
        return pipe("a red square", num_inference_steps=3, height=64, width=64, guidance_scale=3.0,
                    generator=torch.Generator().manual_seed(0), output_type="np").images[0]

    trained = sample(build_pipeline(parts))
    plain = StableDiffusionPipeline.from_pretrained(tiny_sd, safety_checker=None)
    plain.set_progress_bar_config(disable=True)
    base = sample(plain)
    plain.load_lora_weights(tmp_path / "lora")
    loaded = sample(plain)
    assert np.abs(trained - base).max() > 1e-3, "the LoRA changed nothing"
    # same pixels as the in-training modules: rank, alpha (scale 2) and the text-encoder LoRA all loaded
    np.testing.assert_allclose(loaded, trained, atol=1e-4)


def test_caption_folder_and_config_errors(tmp_path, data_dir):
    from finetune.data import load_caption_folder, load_examples
    from finetune.lora import LoraTrainConfig

    assert [e.caption for e in load_examples(data_dir)] == [f"a {c} square" for c in COLORS]
    from recommenders.shop import DEMO_SHOP_DIR
    from recommenders.shop.vocab import CATEGORIES

    catalog = load_examples(DEMO_SHOP_DIR)  # a folder with catalog.jsonl: one example per item, title as caption
    assert len(catalog) > 100 and catalog[0].image.is_file() and catalog[0].caption.split()[-1] in CATEGORIES
    bad = tmp_path / "bad"
    bad.mkdir()
    Image.new("RGB", (8, 8)).save(bad / "x.png")
    with pytest.raises(InputError, match="no caption file"):
        load_caption_folder(bad)
    (bad / "metadata.jsonl").write_text('{"file_name": "x.png", "text": "a thing"}\n{"file_name": "y.png", "text": "b"}\n')
    with pytest.raises(InputError, match=r"metadata.jsonl:2: image not found"):
        load_caption_folder(bad)
    with pytest.raises(InputError, match="no images"):
        load_caption_folder(tmp_path / "bad" / ".." / "bad2") if (tmp_path / "bad2").mkdir() is None else None
    with pytest.raises(InputError, match="--rank"):
        LoraTrainConfig(rank=0)
    with pytest.raises(InputError, match="--caption-dropout"):
        LoraTrainConfig(caption_dropout=1.5)


def test_lora_command_prints_and_writes_json(tiny_sd, data_dir, tmp_path):
    from typer.testing import CliRunner

    from app.commands.finetune import app

    args = ["lora", str(data_dir), "--base-model", str(tiny_sd), "--out", str(tmp_path / "cli"), "--steps", "2",
            "--batch-size", "2", "--rank", "2", "--checkpoint-every", "1", "--json", "--json-out",
            str(tmp_path / "report.json")]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    printed = json.loads(result.stdout[result.stdout.index("{"):])
    from core.io import portable

    # the same report: printed with real paths (a user opens them), written portable ($TMPDIR/... for temp paths)
    assert portable(printed) == json.loads((tmp_path / "report.json").read_text())
    assert Path(printed["lora"]).is_file()
    assert printed["steps"] == 2 and printed["examples"] == 4
    assert len(list((tmp_path / "cli" / "checkpoints").glob("step-*"))) == 2  # the limit keeps two
    result = CliRunner().invoke(app, ["lora", str(tmp_path / "missing"), "--base-model", str(tiny_sd)])
    assert isinstance(result.exception, InputError) and "not found" in str(result.exception)
