"""The flags every command shares: bounded by their one limit in `core.limits`, and checked by
`core.args` while the command line is parsed, before a command body (and so before any model) runs.

    steps: Annotated[int, options.steps()] = 20
    candidates: Annotated[int, options.candidates("Images per user and variant.")] = 2
    out: Path = typer.Option(..., "--out", callback=options.out_dir)
"""
from __future__ import annotations

import typer

from core import args, limits


def steps(help: str = "Denoising steps.") -> typer.models.OptionInfo:
    return typer.Option("--steps", min=limits.STEPS.low, max=limits.STEPS.high, help=help)


def guidance(help: str = "Classifier-free guidance scale.") -> typer.models.OptionInfo:
    return typer.Option("--guidance", min=limits.GUIDANCE.low, max=limits.GUIDANCE.high, help=help)


def candidates(help: str = "Candidates per request.") -> typer.models.OptionInfo:
    return typer.Option("--candidates", "-n", min=limits.CANDIDATES.low, max=limits.CANDIDATES.high, help=help)


def seed(help: str = "Seed of the first candidate; candidate i uses seed + i.") -> typer.models.OptionInfo:
    return typer.Option("--seed", help=help, callback=check_seed)


def lora_scale(help: str = "LoRA strength.") -> typer.models.OptionInfo:
    return typer.Option("--lora-scale", min=limits.LORA_SCALE.low, max=limits.LORA_SCALE.high, help=help)


# -- callbacks: `typer.Option(..., callback=options.out_dir)` ------------------------------------
def _flag(param: typer.CallbackParam) -> str:
    return max(param.opts, key=len) if param.opts else f"--{param.name}"


def check_seed(param: typer.CallbackParam, value):
    """--seed: within core.limits.SEED."""
    return args.check_seed(value, _flag(param))


def device(param: typer.CallbackParam, value):
    """--device: cpu, cuda, cuda:N, mps or auto."""
    return args.check_device(value, _flag(param))


def out_dir(param: typer.CallbackParam, value):
    """An output folder flag: not an existing file."""
    return args.check_out_dir(value, _flag(param))


def out_file(param: typer.CallbackParam, value):
    """An output file flag: not an existing folder."""
    return args.check_out_file(value, _flag(param))
