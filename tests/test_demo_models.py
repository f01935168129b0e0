"""The shipped demo models, their loading code, the tokenizer and the shared training loop."""
from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")
torch.set_num_threads(1)

ROOT = Path(__file__).resolve().parents[1]
MODELS = ROOT / "assets" / "models"
needs_models = pytest.mark.skipif(not (MODELS / "demo-sd" / "model_index.json").exists(),
                                  reason="demo models not installed (atelier finetune demo-model --install)")


# -- tokenizer -------------------------------------------------------------------------------------
def test_clip_tokenizer_matches_open_clip():
    import open_clip

    from pipelines.tokenizer import CLIP_VOCAB_SIZE, build_clip_tokenizer

    tok = build_clip_tokenizer()
    assert len(tok) == CLIP_VOCAB_SIZE
    reference = open_clip.get_tokenizer("RN50")
    for text in ["a navy striped shirt on a beach", "Red polka-dot HAT, in a studio!", "café zigzag t-shirt 42"]:
        ours = tok(text).input_ids
        theirs = [int(t) for t in reference([text])[0] if t != 0]
        assert ours == theirs, text


# -- loading errors --------------------------------------------------------------------------------
def test_loading_errors_are_one_clear_line(tmp_path, monkeypatch):
    from core.errors import InputError
    from pipelines.loading import load_controlnet, load_sd_pipeline

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(InputError, match="not found"):
        load_sd_pipeline(tmp_path / "missing")
    with pytest.raises(InputError, match="no model_index.json"):
        load_sd_pipeline(tmp_path)
    cn = tmp_path / "cn"
    cn.mkdir()
    (cn / "config.json").write_text(json.dumps({"_class_name": "ControlNetModel"}))
    with pytest.raises(InputError, match="ControlNetModel folder, not a pipeline"):
        load_sd_pipeline(cn)
    pk = tmp_path / "pickled"
    for part in ("unet", "vae", "text_encoder"):
        (pk / part).mkdir(parents=True)
        (pk / part / "diffusion_pytorch_model.bin").write_bytes(b"not really a pickle")
    (pk / "model_index.json").write_text(json.dumps({"_class_name": "StableDiffusionPipeline", "unet": ["diffusers", "UNet2DConditionModel"],
                                                     "vae": ["diffusers", "AutoencoderKL"], "text_encoder": ["transformers", "CLIPTextModel"]}))
    with pytest.raises(InputError, match="only pickle weights"):
        load_sd_pipeline(pk)
    (pk / "model_index.json").write_text(json.dumps({"_class_name": "FluxPipeline"}))
    with pytest.raises(InputError, match="FluxPipeline"):
        load_sd_pipeline(pk)
    with pytest.raises(InputError, match="HF_HUB_OFFLINE"):
        load_sd_pipeline("some-org/some-model")
    with pytest.raises(InputError, match="not a ControlNet folder"):
        load_controlnet(tmp_path)
    try:
        load_sd_pipeline(tmp_path)
    except InputError as e:
        assert "\n" not in str(e) and str(tmp_path) in str(e)


def test_device_choice():
    from core.errors import InputError
    from pipelines.device import pick_device, pick_dtype

    assert pick_device("cpu").type == "cpu"
    assert pick_dtype("cpu") == torch.float32
    with pytest.raises(InputError):
        pick_device("tpu9")


# -- shipped models --------------------------------------------------------------------------------
@needs_models
def test_shipped_folders_load_with_plain_libraries():
    import open_clip
    from diffusers import ControlNetModel, StableDiffusionPipeline

    pipe = StableDiffusionPipeline.from_pretrained(MODELS / "demo-sd")
    assert len(pipe.tokenizer) == 49408 and pipe.unet.dtype == torch.float32
    assert pipe.vae_scale_factor * pipe.unet.config.sample_size == 64
    cn = ControlNetModel.from_pretrained(MODELS / "demo-controlnet")
    assert cn.config.cross_attention_dim == pipe.unet.config.cross_attention_dim
    model, _, preprocess = open_clip.create_model_and_transforms(f"local-dir:{MODELS / 'demo-clip'}")
    tokens = open_clip.get_tokenizer(f"local-dir:{MODELS / 'demo-clip'}")(["a red dotted hat"])
    assert model.encode_text(tokens).shape[-1] == model.encode_image(torch.zeros(1, 3, 64, 64)).shape[-1]
    total = sum(f.stat().st_size for f in MODELS.rglob("*") if f.is_file())
    assert total < 45e6, f"shipped models take {total / 1e6:.1f} MB"
    assert not [f for f in MODELS.rglob("*") if f.suffix in (".bin", ".pt", ".pth", ".ckpt", ".pkl")]


@needs_models
def test_fixed_seed_generation_is_reproducible():
    from pipelines.loading import load_sd_pipeline

    pipe = load_sd_pipeline("demo", device="cpu")

    def gen(seed):
        g = torch.Generator("cpu").manual_seed(seed)
        return pipe(["a red striped shirt", "a navy dotted bag"], num_inference_steps=4, generator=g,
                    output_type="np").images

    a, b, c = gen(3), gen(3), gen(4)
    assert a.shape == (2, 64, 64, 3)
    assert np.array_equal(a, b)
    assert not np.array_equal(a, c)


@needs_models
def test_demo_scorer_prefers_the_true_caption():
    from PIL import Image

    from finetune.demo_model.data import caption, render_product
    from pipelines.scorer import Scorer

    scorer = Scorer.load("demo")
    images, true, wrong = [], [], []
    for i, (cat, color, wrong_color) in enumerate([("shirt", "red", "green"), ("bag", "yellow", "navy"),
                                                   ("hat", "black", "pink"), ("dress", "white", "brown")]):
        im = render_product(cat, color, "striped", "casual", seed=9000 + i)
        bg = Image.new("RGBA", im.size, (220, 220, 220, 255))
        images.append(Image.alpha_composite(bg, im).convert("RGB"))
        true.append(caption(cat, color, "striped", None))
        wrong.append(caption(cat, wrong_color, "striped", None))
    emb = scorer.embed_images(images)
    assert torch.allclose(emb.norm(dim=-1), torch.ones(len(images)), atol=1e-4)
    assert (scorer.clip_score(images, true) > scorer.clip_score(images, wrong)).all()


@needs_models
def test_attribute_classifier_reads_renders():
    from PIL import Image

    from finetune.demo_model.data import composite_gray, render_product
    from pipelines.attribute_classifier import AttributeClassifier, accuracy

    clf = AttributeClassifier.load()
    combos = [("shirt", "navy", "striped"), ("shoes", "red", "solid"), ("skirt", "yellow", "dotted"),
              ("trousers", "green", "checked"), ("bag", "purple", "zigzag"), ("hat", "orange", "striped")]
    images = np.stack([np.asarray(Image.fromarray(composite_gray(np.asarray(
        render_product(c, col, p, "formal", seed=7000 + i)))).reduce(2)) for i, (c, col, p) in enumerate(combos)])
    acc = accuracy(clf.predict(images), [dict(category=c, color=col, pattern=p) for c, col, p in combos])
    assert min(acc.values()) >= 0.8, acc


def test_attribute_classifier_roundtrip(tmp_path):
    from pipelines.attribute_classifier import AttributeClassifier

    torch.manual_seed(0)
    clf = AttributeClassifier({"color": ["red", "blue"], "pattern": ["solid", "striped", "dotted"]})
    clf.save(tmp_path / "clf")
    again = AttributeClassifier.load(tmp_path / "clf")
    x = np.random.default_rng(0).integers(0, 255, (3, 64, 64, 3), dtype=np.uint8)
    assert clf.eval().predict(x) == again.predict(x)
    assert (tmp_path / "clf" / "model.safetensors").exists()


# -- the shared training loop ----------------------------------------------------------------------
def _toy_run(out: Path, steps: int, resume=None):
    from finetune.loop import EMA, TrainLoop, cosine_schedule

    torch.manual_seed(0)
    model = torch.nn.Linear(4, 1)
    opt = torch.optim.AdamW(model.parameters(), lr=0.05)
    loop = TrainLoop(out, models={"m": model}, optimizer=opt, max_steps=steps, seed=7, device="cpu",
                     lr_scheduler=cosine_schedule(opt, 6, warmup=2), ema={"m": EMA(model, 0.9, warmup=1)},
                     checkpoint_every=2, checkpoint_limit=2, progress=False)
    target = torch.tensor([[1.0], [-2.0], [0.5], [3.0]])

    def step_fn(step, gen):
        x = torch.randn(8, 4, generator=gen)
        return ((loop.models["m"](x) - x @ target) ** 2).mean()

    result = loop.run(step_fn, resume=resume)
    return loop, result


def test_loop_resume_is_exact_and_checkpoints_are_safetensors(tmp_path):
    straight, r1 = _toy_run(tmp_path / "a", 6)
    _toy_run(tmp_path / "b", 3)
    resumed, r2 = _toy_run(tmp_path / "b", 6, resume="latest")
    assert r2.resumed_from == 3 and r2.steps == 6
    for k, v in straight.models["m"].state_dict().items():
        assert torch.equal(v, resumed.models["m"].state_dict()[k]), k
    assert torch.equal(straight.ema["m"].shadow["weight"], resumed.ema["m"].shadow["weight"])
    assert r1.last_loss < straight.losses[0]  # it learned something
    kept = [p.name for p in straight.checkpoints()]
    assert kept == ["step-000004", "step-000006"]  # limit 2, the oldest dropped
    files = {f.suffix for f in (tmp_path / "a").rglob("*") if f.is_file()}
    assert files <= {".safetensors", ".json"}


def test_held_out_combinations_are_never_trained_on():
    from finetune.demo_model.data import _product_specs, eval_prompts, held_out_combos

    held = held_out_combos()
    assert len(held) == 42
    specs = _product_specs(None, 1, held, seed=0)
    assert not {(s[1], s[2], s[3]) for s in specs} & held
    prompts = eval_prompts(84)
    assert {(l["category"], l["color"], l["pattern"]) for _, l in prompts} == held


def test_cli_rejects_bad_arguments():
    from typer.testing import CliRunner

    from app.cli import app

    runner = CliRunner()
    res = runner.invoke(app, ["finetune", "demo-model", "--what", "everything", "--out", "/tmp/atelier-none"])
    assert res.exit_code != 0 and "unknown --what" in str(res.exception or res.output)
