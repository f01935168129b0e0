"""The A1111 `parameters` chunk: written into every creative PNG, read back strictly."""

from __future__ import annotations

import pytest
from PIL import Image
from PIL.PngImagePlugin import PngInfo

from core.creative import Creative
from core.errors import InputError
from core.pnginfo import parameters_text, parse_parameters, png_bytes, read_png_parameters, save_creative_png


def _creative(**kw) -> Creative:
    base = dict(creative_id="banner-u0001-abc", pipeline="banner", base_model="demo",
                prompt="red checked trousers, on a beach", negative_prompt="blurry, text, watermark", seed=4242,
                steps=12, guidance=6.5, width=300, height=250, condition={"source": "ease", "user_id": "u0001"},
                user_id="u0001", extra={"sampler": "DPMSolverMultistepScheduler"})
    base.update(kw)
    return Creative(**base)


def test_round_trip_through_a_png_file(tmp_path):
    c = _creative()
    path = save_creative_png(Image.new("RGB", (30, 25), (200, 30, 30)), tmp_path / "x.png", c)
    got = read_png_parameters(path)
    assert got == {"prompt": c.prompt, "negative_prompt": c.negative_prompt, "steps": 12, "guidance": 6.5,
                   "seed": 4242, "width": 300, "height": 250, "sampler": "DPMSolverMultistepScheduler",
                   "model": "demo", "pipeline": "banner", "backbone": "ease", "user": "u0001"}
    with Image.open(path) as im:  # a tEXt chunk any A1111-aware tool reads
        assert im.info["parameters"].splitlines()[1] == "Negative prompt: blurry, text, watermark"
        assert "Steps: 12, Sampler: DPMSolverMultistepScheduler, CFG scale: 6.5, Seed: 4242, Size: 300x250" \
            in im.info["parameters"]


def test_values_with_commas_and_colons_are_quoted_and_come_back():
    c = _creative(base_model="runs/lora, v2: final", prompt="a hat", negative_prompt="")
    text = parameters_text(c)
    assert "Negative prompt" not in text
    assert parse_parameters(text)["model"] == "runs/lora, v2: final"


def test_png_bytes_carry_the_chunk_and_stay_deterministic(tmp_path):
    img, c = Image.new("RGB", (8, 8)), _creative()
    assert png_bytes(img, c) == png_bytes(img, c)
    (tmp_path / "b.png").write_bytes(png_bytes(img, c))
    assert read_png_parameters(tmp_path / "b.png")["seed"] == 4242


def test_a1111_written_text_is_read():
    text = ("masterpiece, a cat\nNegative prompt: lowres\n"
            "Steps: 20, Sampler: Euler a, Schedule type: Automatic, CFG scale: 7, Seed: 1234, Size: 512x768, "
            'Model hash: 6ce0161689, Model: v1-5, Lora hashes: "x: 1a2b, y: 3c4d", Version: v1.9.4')
    got = parse_parameters(text)
    assert (got["prompt"], got["negative_prompt"], got["steps"], got["guidance"], got["seed"]) == \
        ("masterpiece, a cat", "lowres", 20, 7.0, 1234)
    assert (got["width"], got["height"], got["sampler"], got["model"]) == (512, 768, "Euler a", "v1-5")


@pytest.mark.parametrize("text, problem", [
    ("a cat\nSteps: 2000, Seed: 1", "Steps must be between 1 and 500"),
    ("a cat\nSteps: 20, CFG scale: __import__('os')", "CFG scale is"),
    ("a cat\nSteps: 20, Seed: -5", "Seed must be between"),
    ("a cat\nSteps: 20, Size: 99999x3", "Size must be between"),
    ("a cat\nSeed: 3", "no `Steps:`"),
    ("a cat\nSteps: 20, Size: big", "not WIDTHxHEIGHT"),
    ("x" * 50_000, "the most read is"),
    ("", "empty"),
])
def test_bad_parameters_are_one_input_error(text, problem):
    with pytest.raises(InputError, match=problem.replace("(", r"\(").replace(")", r"\)")):
        parse_parameters(text, "shot.png")


def test_files_without_parameters_name_the_users_file(tmp_path):
    plain = tmp_path / "tmpa8f3/upload.png"
    plain.parent.mkdir()
    Image.new("RGB", (4, 4)).save(plain)
    with pytest.raises(InputError) as e:
        read_png_parameters(plain, shown_name="my shot.png")
    assert str(e.value).startswith("my shot.png:") and "no generation parameters" in str(e.value)
    Image.new("RGB", (4, 4)).save(tmp_path / "a.jpg")
    with pytest.raises(InputError, match="this is JPEG"):
        read_png_parameters(tmp_path / "a.jpg")
    info = PngInfo()
    info.add_text("parameters", "just words")
    Image.new("RGB", (4, 4)).save(tmp_path / "w.png", pnginfo=info)
    with pytest.raises(InputError, match="no `Steps:`"):
        read_png_parameters(tmp_path / "w.png")


def test_pipeline_output_and_batch_runner_write_the_chunk(tmp_path):
    from app.batch.runner import png_bytes as batch_png
    from core.creative import Manifest
    from pipelines.personalized import PipelineOutput

    c = _creative()
    out = PipelineOutput(images=[Image.new("RGB", (8, 8))], creatives=[c])
    (path,) = out.save(tmp_path, Manifest(tmp_path / "manifest.jsonl"))
    assert read_png_parameters(path)["prompt"] == c.prompt
    (tmp_path / "batch.png").write_bytes(batch_png(Image.new("RGB", (8, 8)), c))
    assert read_png_parameters(tmp_path / "batch.png")["user"] == "u0001"
