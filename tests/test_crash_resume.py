"""SIGKILL at random moments, then resume: batch generation, LoRA training and demo-model training end
with the same bytes as an uninterrupted run, and leave no temp, partial or unreadable files behind.

Each command runs as a real process (`atelier ...`) on tiny models from `tests/tiny_models.py`. It
is killed once it has started real work (the first manifest line or checkpoint), after a random
delay, up to twice; a final run then resumes to the end. The kill delays come from
`ATELIER_CRASH_SEED` (printed, so a failing schedule can be replayed roughly).
"""
from __future__ import annotations

import json
import random
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from crash_tools import (
    ENV,
    ROOT,
    SEED,
    assert_no_partial_files,
    atelier,
    caption_folder,
    kill_and_resume,
    sha256,
    timed_run,
)


# --- batch generation -------------------------------------------------------------------------------
def _campaign(tmp_path: Path, sd: Path) -> Path:
    path = tmp_path / "crash.yaml"
    path.write_text(textwrap.dedent(f"""\
        name: crash
        products: [p0010, p0004]
        audience: {{top_users: 2}}
        formats: {{product: {{}}, banner: {{sizes: [128x64]}}}}
        candidates: 2
        model: {{base: {sd}, steps: 2}}
        """))
    return path


def _batch_result(folder: Path) -> dict[tuple, str]:
    """(format, audience, product, width, height, seed) -> sha256, checked against the manifest: one record
    per image, every image recorded, every checksum right."""
    records = [json.loads(x) for x in (folder / "manifest.jsonl").read_text().splitlines() if x.strip()]
    ids = [r["creative_id"] for r in records]
    assert len(ids) == len(set(ids)), "a creative is recorded twice"
    images = {str(p.relative_to(folder)): sha256(p) for p in (folder / "images").rglob("*.png")}
    assert {r["image_path"] for r in records} == set(images), "manifest and images disagree"
    out = {}
    for r in records:
        assert images[r["image_path"]] == r["extra"]["sha256"]
        e = r["extra"]
        out[(e["format"], e["audience"], e["product"], r["width"], r["height"], r["seed"])] = r["extra"]["sha256"]
    return out


@pytest.mark.slow
def test_batch_survives_sigkill(tmp_path, tiny_sd):
    rng = random.Random(SEED)
    print(f"ATELIER_CRASH_SEED={SEED}")
    campaign = _campaign(tmp_path, tiny_sd)
    ref_manifest = tmp_path / "ref" / "crash" / "manifest.jsonl"
    stdout, window = timed_run(atelier("batch", str(campaign), "--output-root", str(tmp_path / "ref"), "--json"),
                               lambda: ref_manifest.exists() and ref_manifest.stat().st_size > 0)
    reference = _batch_result(tmp_path / "ref" / "crash")
    assert len(reference) == json.loads(stdout)["jobs"] == 2 * 2 * 2 * 2

    out = tmp_path / "run" / "crash"
    manifest = out / "manifest.jsonl"
    killed = kill_and_resume(atelier("batch", str(campaign), "--output-root", str(tmp_path / "run")),
                             lambda: manifest.exists() and manifest.stat().st_size > 0, rng=rng, window_s=window)
    assert killed >= 1, "no run was killed: the campaign finished too fast for this test"
    assert_no_partial_files(out)
    assert _batch_result(out) == reference


# --- LoRA ---------------------------------------------------------------------------------------------
def _lora_cmd(*args: str) -> list[str]:
    """`atelier finetune lora ...` (or its command module directly while the group is not registered yet)."""
    probe = subprocess.run(atelier("finetune", "lora", "--help"), cwd=ROOT, env=ENV, capture_output=True, timeout=120)
    if probe.returncode == 0:
        return atelier("finetune", "lora", *args)
    return [sys.executable, "-c", "from app.commands.finetune import app; app(prog_name='atelier finetune')",
            "lora", *args]


@pytest.mark.slow
def test_lora_survives_sigkill(tmp_path, tiny_sd):
    rng = random.Random(SEED + 1)
    print(f"ATELIER_CRASH_SEED={SEED}")
    data = caption_folder(tmp_path / "data")
    args = ["--base-model", str(tiny_sd), "--steps", "24", "--batch-size", "2", "--rank", "4", "--learning-rate",
            "1e-3", "--checkpoint-every", "3", "--seed", "5"]
    ref_ckpts = tmp_path / "ref" / "checkpoints"
    _, window = timed_run(_lora_cmd(str(data), "--out", str(tmp_path / "ref"), *args, "--resume", "latest"),
                          lambda: ref_ckpts.is_dir() and any(ref_ckpts.glob("step-*")))
    out = tmp_path / "run"
    ckpts = out / "checkpoints"
    report = tmp_path / "run-report.json"  # written by the run that finishes: the final, resumed one
    killed = kill_and_resume(_lora_cmd(str(data), "--out", str(out), *args, "--resume", "latest", "--json-out",
                                       str(report)),
                             lambda: ckpts.is_dir() and any(ckpts.glob("step-*")), rng=rng, window_s=window)
    assert killed >= 1, "no run was killed: training finished too fast for this test"
    assert_no_partial_files(out)
    assert json.loads(report.read_text())["resumed_from_step"] > 0, "the final run did not resume"
    name = "pytorch_lora_weights.safetensors"
    assert sha256(out / name) == sha256(tmp_path / "ref" / name)


# --- demo-model training ---------------------------------------------------------------------------------
# The shipped settings checkpoint every 500 steps; the test checkpoints every 2 so a kill lands between two.
DEMO_MODEL = """
import sys, dataclasses
from finetune.demo_model import configs
configs.DEFAULT_SETTINGS["vae"] = dataclasses.replace(configs.DEFAULT_SETTINGS["vae"], checkpoint_every=2, batch_size=8)
from app.cli import main
main(["finetune", "demo-model", "--what", "vae", "--out", sys.argv[1], "--steps", "16", "--seed", "1",
      "--resume", "latest", "--device", "cpu"])
"""


@pytest.mark.slow
def test_demo_model_training_survives_sigkill(tmp_path):
    rng = random.Random(SEED + 2)
    print(f"ATELIER_CRASH_SEED={SEED}")
    ref_ckpts = tmp_path / "ref" / "vae-train" / "checkpoints"
    _, window = timed_run([sys.executable, "-c", DEMO_MODEL, str(tmp_path / "ref")],
                          lambda: ref_ckpts.is_dir() and any(ref_ckpts.glob("step-*")), timeout_s=1800)
    out = tmp_path / "run"
    (out / "data").mkdir(parents=True)
    for f in (tmp_path / "ref" / "data").iterdir():  # share the rendered training images: only training is killed
        (out / "data" / f.name).write_bytes(f.read_bytes())
    ckpts = out / "vae-train" / "checkpoints"
    killed = kill_and_resume([sys.executable, "-c", DEMO_MODEL, str(out)],
                             lambda: ckpts.is_dir() and any(ckpts.glob("step-*")), rng=rng, window_s=window,
                             timeout_s=1800)
    assert killed >= 1, "no run was killed: training finished too fast for this test"
    assert_no_partial_files(out)
    weights = "vae/diffusion_pytorch_model.safetensors"
    assert sha256(out / weights) == sha256(tmp_path / "ref" / weights)


# The upscaler stage on 24 pairs, checkpointing every 2 steps (the shipped run: 1,293 pairs, every 500).
UPSCALER = """
import sys
from finetune.demo_model.train_upscaler import train_upscaler
train_upscaler(sys.argv[1], steps=16, seed=1, max_pairs=24, checkpoint_every=2, resume="latest", device="cpu",
               progress=False)
"""


@pytest.mark.slow
def test_upscaler_training_survives_sigkill(tmp_path):
    rng = random.Random(SEED + 5)
    print(f"ATELIER_CRASH_SEED={SEED}")
    ref_ckpts = tmp_path / "ref" / "upscaler-train" / "checkpoints"
    _, window = timed_run([sys.executable, "-c", UPSCALER, str(tmp_path / "ref")],
                          lambda: ref_ckpts.is_dir() and any(ref_ckpts.glob("step-*")), timeout_s=1800)
    out = tmp_path / "run"
    (out / "data").mkdir(parents=True)
    for f in (tmp_path / "ref" / "data").iterdir():  # share the rendered pairs: only training is killed
        (out / "data" / f.name).write_bytes(f.read_bytes())
    ckpts = out / "upscaler-train" / "checkpoints"
    killed = kill_and_resume([sys.executable, "-c", UPSCALER, str(out)],
                             lambda: ckpts.is_dir() and any(ckpts.glob("step-*")), rng=rng, window_s=window,
                             timeout_s=1800)
    assert killed >= 1, "no run was killed: training finished too fast for this test"
    assert_no_partial_files(out)
    weights = "upscaler/diffusion_pytorch_model.safetensors"
    assert sha256(out / weights) == sha256(tmp_path / "ref" / weights)


# --- fast checks of the pieces the crash tests rely on -------------------------------------------------------
def test_atomic_write_leaves_old_file_when_killed(tmp_path):
    """A writer killed mid-write leaves the previous file intact and only a hidden temp file beside it."""
    target = tmp_path / "result.json"
    target.write_text('{"old": true}')
    script = textwrap.dedent(f"""
        import os, signal
        from core.io import atomic_path
        with atomic_path({str(target)!r}) as tmp:
            tmp.write_text('{{"new": tru')
            os.kill(os.getpid(), signal.SIGKILL)
        """)
    p = subprocess.run([sys.executable, "-c", script], cwd=ROOT, env=ENV, timeout=60)
    assert p.returncode == -signal.SIGKILL
    assert json.loads(target.read_text()) == {"old": True}
    assert [x.name for x in tmp_path.glob(".result.json.*.tmp")], "expected the abandoned temp file"


def test_partial_file_check_catches_a_truncated_png(tmp_path):
    """The leftover check can fail: a torn PNG or a temp file is reported."""
    from PIL import Image

    Image.new("RGB", (32, 32), (1, 2, 3)).save(tmp_path / "ok.png")
    assert_no_partial_files(tmp_path)
    data = (tmp_path / "ok.png").read_bytes()
    (tmp_path / "torn.png").write_bytes(data[: len(data) // 2])
    with pytest.raises(OSError):
        assert_no_partial_files(tmp_path)
    (tmp_path / "torn.png").unlink()
    (tmp_path / ".x.png.abc.tmp").write_bytes(b"")
    with pytest.raises(AssertionError):
        assert_no_partial_files(tmp_path)
