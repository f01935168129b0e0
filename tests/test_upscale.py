"""The 2x upscaler: the network, the shipped weights against bicubic, the pipelines' output sizes, and a
resumed training stage ending with the same bytes as an uninterrupted one."""
from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch

from core.errors import InputError
from pipelines.loading import demo_path

SHIPPED = demo_path("demo-upscaler")


def _perturbed(seed: int = 0):
    from pipelines.upscale import Upscaler

    torch.manual_seed(seed)
    model = Upscaler(channels=8, num_blocks=2)
    with torch.no_grad():
        model.tail.weight.normal_(0, 0.05)  # the tail starts at zero (exactly bicubic); make it do something
    return model.eval()


def test_shapes_determinism_and_save_load_round_trip(tmp_path):
    from pipelines.upscale import Upscaler, bicubic, load_upscaler, upscale_images

    x = torch.rand(2, 3, 16, 24) * 2 - 1
    fresh = Upscaler(channels=8, num_blocks=2)
    with torch.no_grad():
        assert torch.equal(fresh(x), bicubic(x))  # residual learning: untrained == bicubic
        model = _perturbed()
        y = model(x)
        assert y.shape == (2, 3, 32, 48)
        assert torch.equal(y, model(x))
        assert not torch.equal(y, bicubic(x))
    model.save_pretrained(tmp_path / "sr")
    assert [p.name for p in (tmp_path / "sr").iterdir() if p.suffix != ".json"] == ["diffusion_pytorch_model.safetensors"]
    loaded = load_upscaler(tmp_path / "sr")
    with torch.no_grad():
        assert torch.equal(loaded(x), y)
    from PIL import Image

    ims = [Image.new("RGB", (16, 24), (200, 30, 30)), Image.new("RGB", (8, 8), (0, 0, 255))]
    assert [im.size for im in upscale_images(loaded, ims)] == [(32, 48), (16, 16)]
    with pytest.raises(InputError, match="no config.json"):
        load_upscaler(tmp_path)


@pytest.mark.skipif(not (SHIPPED / "config.json").is_file(), reason="the demo upscaler is not installed")
def test_shipped_upscaler_beats_bicubic_on_held_out_renders():
    from finetune.demo_model.train_upscaler import build_pairs, evaluate_upscaler, load_vae
    from pipelines.upscale import load_upscaler

    weights = SHIPPED / "diffusion_pytorch_model.safetensors"
    assert weights.stat().st_size < 2 * 2**20
    vae, _ = load_vae(None)  # the shipped demo VAE
    pairs = build_pairs(vae, held_out=True, max_pairs=32, progress=False)  # catalog items never trained on
    m = evaluate_upscaler(load_upscaler(SHIPPED), pairs)
    assert m["psnr_upscaler"] > m["psnr_bicubic"] + 0.15, m  # 18.87 vs 18.67 dB on these 32
    assert m["gradient_upscaler"] > m["gradient_bicubic"], m


def _product_images(tiny_sd, tiny_catalog, upscaler):
    from pipelines.assemble import PipelineSpec, assemble

    spec = PipelineSpec(model=str(tiny_sd), controlnet=None, scorer=None, upscaler=upscaler)
    geometry = spec.check()
    pipe = assemble(spec).pipeline("product", catalog=tiny_catalog)
    out = pipe(None, category="shoes", num_candidates=2, seed=3, steps=2, batch_size=2, progress=False)
    assert pipe.regenerate(out.creatives[1]).tobytes() == out.images[1].tobytes()  # the record is enough
    return geometry, out


def test_pipeline_output_is_128_px_with_an_upscaler_and_64_without(tmp_path, tiny_sd, tiny_catalog):
    from core.pnginfo import read_png_parameters
    from pipelines.assemble import AUTO

    _perturbed().save_pretrained(tmp_path / "sr")
    geometry, out = _product_images(tiny_sd, tiny_catalog, str(tmp_path / "sr"))
    assert geometry["native_size"] == 128 and geometry["upscale"] == 2
    assert [im.size for im in out.images] == [(128, 128)] * 2
    assert all(c.width == 128 and c.extra["upscaler"] == str(tmp_path / "sr") for c in out.creatives)
    path = out.save(tmp_path / "png")[0]
    assert read_png_parameters(path)["upscaler"] == str(tmp_path / "sr")
    _, plain = _product_images(tiny_sd, tiny_catalog, None)
    assert [im.size for im in plain.images] == [(64, 64)] * 2 and "upscaler" not in plain.creatives[0].extra
    _, auto = _product_images(tiny_sd, tiny_catalog, AUTO)  # the tiny model has no upscaler of its own
    assert [im.size for im in auto.images] == [(64, 64)] * 2
    # a pipeline folder with an `upscaler/` subfolder brings its own
    own = tmp_path / "sd-with-sr"
    shutil.copytree(tiny_sd, own)
    shutil.copytree(tmp_path / "sr", own / "upscaler")
    _, found = _product_images(own, tiny_catalog, AUTO)
    assert [im.size for im in found.images] == [(128, 128)] * 2


def test_the_demo_model_comes_with_its_upscaler():
    from pipelines.assemble import PipelineSpec
    from pipelines.loading import find_upscaler

    if not (SHIPPED / "config.json").is_file():
        pytest.skip("the demo upscaler is not installed")
    assert find_upscaler(demo_path("demo")) == SHIPPED
    assert PipelineSpec(model="demo").upscaler_name() == "demo-upscaler"
    assert PipelineSpec(model="demo", upscaler=None).upscaler_folder() is None
    assert PipelineSpec(model="demo", controlnet=None, scorer=None).check()["native_size"] == 128


def test_bad_upscaler_folder_is_one_line(tmp_path, tiny_sd):
    from pipelines.assemble import PipelineSpec, SpecError

    (tmp_path / "sr").mkdir()
    (tmp_path / "sr" / "config.json").write_text('{"_class_name": "UNet2DModel"}')
    with pytest.raises(SpecError, match="not Upscaler") as e:
        PipelineSpec(model=str(tiny_sd), upscaler=str(tmp_path / "sr")).check()
    assert e.value.field == "upscaler"


def test_resumed_upscaler_stage_ends_with_the_same_bytes(tmp_path):
    from finetune.demo_model.train_upscaler import train_upscaler

    kw = dict(steps=6, seed=3, max_pairs=12, checkpoint_every=3, progress=False)
    straight = train_upscaler(tmp_path / "a", **kw)
    # an interruption after the step-3 checkpoint: that checkpoint and the cached data are all that is left
    b = tmp_path / "b"
    shutil.copytree(tmp_path / "a", b)
    shutil.rmtree(b / "upscaler")
    shutil.rmtree(b / "upscaler-train" / "checkpoints" / "step-000006")
    resumed = train_upscaler(b, resume="latest", **kw)
    assert resumed["resumed_from"] == 3 and resumed["steps"] == 6
    name = "diffusion_pytorch_model.safetensors"
    assert (b / "upscaler" / name).read_bytes() == (tmp_path / "a" / "upscaler" / name).read_bytes()
    assert resumed["heldout"] == straight["heldout"]
