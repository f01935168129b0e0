"""The one exception type for user mistakes: the CLI prints it as a single line and exits 2."""

from __future__ import annotations

from pathlib import Path


class InputError(ValueError):
    """A problem with what the user gave us (a file, a flag, a row), never a bug in Atelier."""

    def __init__(self, problem: str, path: str | Path | None = None, line: int | None = None):
        self.problem = " ".join(str(problem).split())  # one line, always
        self.path = str(path) if path is not None else None
        self.line = line
        super().__init__(str(self))

    def __str__(self) -> str:
        where = ""
        if self.path is not None:
            where = self.path if self.line is None else f"{self.path}:{self.line}"
            return f"{where}: {self.problem}"
        if self.line is not None:
            return f"line {self.line}: {self.problem}"
        return self.problem
