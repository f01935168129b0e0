"""The generation flags every command shares, each bounded by its one limit in `core.limits`.

    steps: Annotated[int, options.steps()] = 20
    candidates: Annotated[int, options.candidates("Images per user and variant.")] = 2
"""
from __future__ import annotations

import typer

from core import limits


def steps(help: str = "Denoising steps.") -> typer.models.OptionInfo:
    return typer.Option("--steps", min=limits.STEPS.low, max=limits.STEPS.high, help=help)


def guidance(help: str = "Classifier-free guidance scale.") -> typer.models.OptionInfo:
    return typer.Option("--guidance", min=limits.GUIDANCE.low, max=limits.GUIDANCE.high, help=help)


def candidates(help: str = "Candidates per request.") -> typer.models.OptionInfo:
    return typer.Option("--candidates", "-n", min=limits.CANDIDATES.low, max=limits.CANDIDATES.high, help=help)


def seed(help: str = "Seed of the first candidate; candidate i uses seed + i.") -> typer.models.OptionInfo:
    return typer.Option("--seed", min=limits.SEED.low, max=limits.SEED.high, help=help)


def lora_scale(help: str = "LoRA strength.") -> typer.models.OptionInfo:
    return typer.Option("--lora-scale", min=limits.LORA_SCALE.low, max=limits.LORA_SCALE.high, help=help)
