"""Running `atelier` in this process for tests: exit code and captured output, no subprocess start-up."""

from __future__ import annotations

import io
from contextlib import redirect_stderr, redirect_stdout


def run_cli(argv: list[str]) -> tuple[int, str, str]:
    """`atelier ARGV` through `app.cli.main`; returns (exit code, stdout, stderr)."""
    from app.cli import main

    out, err = io.StringIO(), io.StringIO()
    code = 0
    with redirect_stdout(out), redirect_stderr(err):
        try:
            main(argv)
        except SystemExit as e:
            code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
    return code, out.getvalue(), err.getvalue()
