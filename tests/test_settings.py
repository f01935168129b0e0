"""One way to validate settings: the shared bounds (core.limits), the one YAML reader (core.yamlio) and
pydantic settings classes (core.settings), each mistake one line."""
from __future__ import annotations

from pathlib import Path

import pytest

from core.errors import InputError


def test_one_bound_per_setting_is_shared_by_flags_campaigns_and_pipelines():
    import typer

    from app.batch.campaign import ModelSpec
    from app.commands import generate
    from core import limits

    steps_flag = generate.Steps.__metadata__[0]
    assert isinstance(steps_flag, typer.models.OptionInfo)
    assert (steps_flag.min, steps_flag.max) == (limits.STEPS.low, limits.STEPS.high)
    with pytest.raises(ValueError):
        ModelSpec(steps=limits.STEPS.high + 1)
    ModelSpec(steps=limits.STEPS.high)
    assert limits.STEPS.check(5, "steps") == 5
    with pytest.raises(InputError, match="steps must be between 1 and 500, got 0"):
        limits.STEPS.check(0, "steps")
    assert 4096 in limits.IMAGE_SIDE and 31 not in limits.IMAGE_SIDE


@pytest.mark.parametrize("text, line, needle", [
    ("a: 1\nb: &x [1, 2]\nc: *x\n", 3, "aliases/anchors are not allowed"),  # at the alias
    ("a: 1\nb: 2\na: 3\n", 3, "duplicate key 'a'"),
    ("base: {x: 1}\nother:\n  <<: {y: 2}\n", 3, "merge keys are not allowed"),
    ("a: !!python/object:os.system ls\n", 1, "tag 'tag:yaml.org,2002:python/object:os.system' is not allowed"),
    ("a: !custom 3\n", 1, "tag '!custom' is not allowed"),
    ("a: [1, 2\nb: 3\n", 2, "YAML syntax error"),
    ("deep:\n  - {a: 1, a: 2}\n", 2, "duplicate key 'a'"),
])
def test_yaml_refuses_what_a_config_does_not_need_with_its_line(tmp_path, text, line, needle):
    from core.yamlio import read_yaml

    path = tmp_path / "c.yaml"
    path.write_text(text)
    with pytest.raises(InputError) as err:
        read_yaml(path, what="config")
    assert str(err.value).startswith(f"{path}:{line}: ") and needle in str(err.value), str(err.value)


def test_yaml_reads_plain_documents_and_names_lines(tmp_path):
    from core.yamlio import parse_yaml, read_yaml

    doc = parse_yaml("models:\n  ease: {l2: 200}\n  mostpop:\nks: [10, 20]\n", "x.yaml")
    assert doc.data == {"models": {"ease": {"l2": 200}, "mostpop": None}, "ks": [10, 20]}
    assert doc.line_of(("ks", 1)) == 4 and doc.line_of(("models", "ease", "l2")) == 2
    assert str(doc.error("bad", ("models", "mostpop"))) == "x.yaml:3: bad"
    assert parse_yaml("", "empty.yaml").data is None
    with pytest.raises(InputError, match="config file not found"):
        read_yaml(tmp_path / "missing.yaml", what="config")
    big = tmp_path / "big.yaml"
    big.write_text("a: " + "x" * 2000 + "\n")
    with pytest.raises(InputError, match="larger than 1000 bytes"):
        read_yaml(big, max_bytes=1000)


def test_both_bench_config_loaders_read_through_the_one_reader(tmp_path):
    from recommenders.bench import load_bench_yaml
    from recommenders.seq_bench import load_bench_config

    bad = tmp_path / "bad.yaml"
    bad.write_text("models:\n  ease: {l2: 1}\n  ease: {l2: 2}\n")
    for load in (load_bench_yaml, load_bench_config):
        with pytest.raises(InputError, match=r"bad.yaml:3: duplicate key 'ease'"):
            load("x", bad)
        with pytest.raises(InputError, match="config file not found"):  # a named file must exist, in both
            load("x", tmp_path / "missing.yaml")


def test_settings_classes_refuse_bad_values_naming_the_flag():
    from dataclasses import asdict

    from app.ui.workspace import UIConfig
    from finetune.dpo import DPOTrainConfig
    from finetune.lora import LoraTrainConfig
    from finetune.reward_loop import RewardLoopConfig

    for make, flag in [(lambda: LoraTrainConfig(rank=0), "--rank"),
                       (lambda: LoraTrainConfig(mixed_precision="fp8"), "--mixed-precision"),
                       (lambda: LoraTrainConfig(validation_steps=5000), "--validation-steps"),
                       (lambda: DPOTrainConfig(beta=0), "--beta"),
                       (lambda: RewardLoopConfig(keep=0), "--keep"),
                       (lambda: RewardLoopConfig(guidance=99), "--guidance"),
                       (lambda: UIConfig(steps=0), "--steps"),
                       (lambda: LoraTrainConfig(rnak=4), "--rnak")]:
        with pytest.raises(InputError) as err:
            make()
        assert str(err.value).startswith(flag + ":") and "\n" not in str(err.value), str(err.value)
    cfg = DPOTrainConfig(rank=4, beta=5000.0)
    assert asdict(cfg)["rank"] == 4 and asdict(cfg)["caption_dropout"] == 0.0  # still a dataclass


def test_the_steps_bound_runs_on_the_shipped_scheduler():
    """The most steps a request may ask for must run: SD's DDIM (steps_offset 1) indexed past its 1000
    training steps at 1000 inference steps (IndexError), which the bound used to allow."""
    import torch
    from diffusers import DDIMScheduler

    from core import limits

    s = DDIMScheduler.from_pretrained(Path(__file__).resolve().parents[1] / "assets/models/demo-sd/scheduler")
    s.set_timesteps(int(limits.STEPS.high))
    x = torch.zeros(1, 4, 8, 8)
    for t in s.timesteps[:2]:
        x = s.step(torch.zeros_like(x), t, x).prev_sample
    assert torch.isfinite(x).all()
