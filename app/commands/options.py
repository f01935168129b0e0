"""Typer callbacks that run `core.args`' checks while the command line is parsed, before a command
body (and so before any model) runs: `typer.Option("--out", callback=out_dir)`."""

from __future__ import annotations

import typer

from core import args


def _flag(param: typer.CallbackParam) -> str:
    return max(param.opts, key=len) if param.opts else f"--{param.name}"


def seed(param: typer.CallbackParam, value):
    """--seed: 0..2**32-1."""
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
