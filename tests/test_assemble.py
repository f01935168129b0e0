"""The one pipeline assembler: a spec is checked from files and configs alone (nothing heavy imported),
each component loads once per process, and every surface gets its pipelines from it."""
from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from core.errors import InputError

ROOT = Path(__file__).resolve().parents[1]


def _adapter_folder(folder: Path, cross_attention_dim: int) -> Path:
    folder.mkdir(parents=True)
    (folder / "config.json").write_text(json.dumps({"_class_name": "PreferenceAdapter", "embedding_dim": 3,
                                                    "cross_attention_dim": cross_attention_dim}))
    (folder / "adapter.safetensors").write_bytes(b"")
    return folder


def test_check_refuses_bad_components_with_the_field_named(tiny_sd, tmp_path):
    from pipelines.assemble import PipelineSpec, SpecError

    (tmp_path / "lora.bin").write_bytes(b"\x80\x04 pickle")
    import torch
    from safetensors.torch import save_file

    save_file({"w": torch.zeros(1)}, str(tmp_path / "ip.safetensors"))  # valid weights, no image_encoder/ beside
    (tmp_path / "lora_dir").mkdir()
    (tmp_path / "rw").mkdir()
    (tmp_path / "rw" / "config.json").write_text('{"_class_name": "RewardModel"}')  # a reward folder, read first
    (tmp_path / "lora_dir" / "README.txt").write_text("no weights here")
    cases = [
        (dict(model=str(tmp_path / "nowhere")), "model", "model folder not found"),
        (dict(model=str(tmp_path / "nowhere"), lora=str(tmp_path / "lora.bin")), "lora", "refusing to load a pickle"),
        (dict(model=str(tiny_sd), lora=str(tmp_path / "lora_dir")), "lora", "must be .safetensors"),
        (dict(model=str(tiny_sd), lora="missing.safetensors", root=str(tmp_path)), "lora", "LoRA weights not found"),
        (dict(model=str(tiny_sd), ip_adapter=str(tmp_path / "ip.safetensors")), "ip_adapter", "image_encoder"),
        (dict(model=str(tiny_sd), adapter=str(_adapter_folder(tmp_path / "wide", 768))), "adapter", "768-wide"),
        (dict(model=str(tiny_sd), adapter=str(tmp_path)), "adapter", "not a preference adapter folder"),
        (dict(model=str(tiny_sd), controlnet=str(tiny_sd)), "controlnet", "give its ControlNet"),
        (dict(model=str(tiny_sd), scorer=None, reward=str(tmp_path / "rw")), "reward", "needs the scorer"),
        (dict(model=str(tiny_sd), scorer=str(tmp_path)), "scorer", "not an open_clip folder"),
        (dict(model=str(tiny_sd), dtype="fp8"), "dtype", "unknown dtype"),
        (dict(model=str(tiny_sd), lora_scale=9.0), "lora_scale", "between 0 and 4"),
    ]
    for kwargs, field, needle in cases:
        with pytest.raises(SpecError) as err:
            PipelineSpec(**kwargs).check()
        assert err.value.field == field and needle in str(err.value) and "\n" not in str(err.value), (kwargs, err.value)
    # a good spec reports what it read of the model: the tiny UNet works on sides in multiples of 8
    geometry = PipelineSpec(model=str(tiny_sd), adapter=str(_adapter_folder(tmp_path / "fits", 32))).check()
    assert geometry == {"size_multiple": 8, "native_size": 64, "cross_attention_dim": 32}


def test_check_imports_nothing_heavy(tiny_sd):
    """`PipelineSpec.check` answers from files and configs: torch and diffusers stay unimported."""
    code = textwrap.dedent(f"""
        import sys
        from pipelines.assemble import PipelineSpec
        PipelineSpec(model={str(tiny_sd)!r}, controlnet="demo-controlnet").check()
        heavy = sorted(m for m in ("torch", "diffusers", "transformers", "open_clip") if m in sys.modules)
        print(",".join(heavy))
        """)
    p = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120,
                       env={"PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1", "PATH": "/usr/bin:/bin"})
    assert p.returncode == 0, p.stderr[-2000:]
    assert p.stdout.strip() == "", f"check() imported {p.stdout.strip()}"


def test_each_component_loads_once_and_pipelines_share_it(tiny_sd, tiny_catalog):
    from tiny_models import ColorScorer

    from pipelines.assemble import PipelineSpec, assemble, clear_cache

    clear_cache()
    spec = PipelineSpec(model=str(tiny_sd), controlnet=None, scorer=None, device="cpu")
    parts = assemble(spec)
    assert assemble(PipelineSpec(model=str(tiny_sd), controlnet=None, scorer=None, device="cpu")) is parts
    product = parts.pipeline("product", catalog=tiny_catalog)
    banner = parts.pipeline("banner", catalog=tiny_catalog)
    assert product is parts.pipeline("product", catalog=tiny_catalog)  # built once per catalog
    assert product.sd is banner.sd is parts.sd()  # one base model for every pipeline
    assert product.base_model == str(tiny_sd) and product.lora == [] and product.scorer is None
    scorer = ColorScorer()
    ranked = parts.pipeline("outfit", catalog=tiny_catalog, scorer=scorer)  # an override, like from_pipe
    assert ranked.scorer is scorer and ranked.sd is product.sd
    assert parts.pipeline("background", catalog=tiny_catalog).controlnet is None  # none asked for: inpainting
    with pytest.raises(InputError, match="unknown pipeline"):
        parts.pipeline("poster")
    other = assemble(PipelineSpec(model=str(tiny_sd), controlnet=None, scorer=None, device="cpu", lora_scale=0.5))
    assert other is not parts  # another spec, another assembly (the base model itself stays cached)
    clear_cache()
    assert assemble(spec) is not parts


def test_campaign_sizes_the_model_cannot_draw_fail_before_rendering(tiny_sd, tmp_path):
    from app.batch.campaign import parse_campaign

    text = textwrap.dedent(f"""\
        name: sizes
        products: [p0010]
        audience: {{users: [u0001]}}
        formats: {{product: {{sizes: [64x64, 60x60]}}}}
        model: {{base: {tiny_sd}}}
        """)
    path = tmp_path / "sizes.yaml"
    path.write_text(text)
    from app.batch.render import CampaignRenderer

    r = CampaignRenderer.__new__(CampaignRenderer)  # the checks alone, without fitting the shop's recommender
    r.campaign, r.dir = parse_campaign(text, path), tmp_path
    r.data = type("Data", (), {"catalog": {"p0010": None}})()
    with pytest.raises(InputError) as err:
        r._check_products()
    assert str(err.value) == (f"{path}:4: formats.product.sizes.1: size 60x60: this model draws sides in "
                              "multiples of 8")
    # a banner side the banner pipeline would refuse is refused by the campaign schema, with its line
    with pytest.raises(InputError, match=r":4: formats.banner.sizes: .*between 32 and 4096"):
        parse_campaign(text.replace("product: {sizes: [64x64, 60x60]}", "banner: {sizes: [16x16]}"), path)
