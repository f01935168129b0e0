"""One honest progress line per run: denoising steps done of the run's total, percent and time left.

A run (several candidates, several banner sizes) is one count of denoiser calls, so the line reads
"step 6/8 · 75% · ~4 s left" for the whole run, never one bar per candidate or per pipeline.
"""

from __future__ import annotations

import time
from contextlib import contextmanager
from typing import Callable, Iterator

from .cancel import step_listener


def progress_line(done: int, total: int, elapsed: float) -> str:
    """'step 6/8 · 75% · ~4 s left' (no time left shown before the first step finished)."""
    total = max(1, int(total))
    done = min(max(0, int(done)), total)
    pct = round(100 * done / total)
    line = f"step {done}/{total} · {pct}%"
    if 0 < done < total:
        line += f" · ~{max(1, round(elapsed / done * (total - done)))} s left"
    return line


class RunProgress:
    """Counts denoiser calls of one run and reports each as `report(fraction, line)`."""

    def __init__(self, total: int, report: Callable[[float, str], None], clock: Callable[[], float] = time.monotonic):
        self.total, self.report, self.clock = max(1, int(total)), report, clock
        self.started = 0  # denoiser calls begun
        self.t0: float | None = None

    def _emit(self, done: int) -> None:
        elapsed = 0.0 if self.t0 is None else self.clock() - self.t0
        done = min(done, self.total)
        self.report(done / self.total, progress_line(done, self.total, elapsed))

    def on_step(self) -> None:
        """A denoising step starts: the ones before it are done."""
        if self.t0 is None:
            self.t0 = self.clock()
        self._emit(self.started)
        self.started += 1

    def finished_part(self) -> None:
        """A pipeline call returned: every step it began is done."""
        self._emit(self.started)

    @contextmanager
    def counting(self) -> Iterator["RunProgress"]:
        """Count the denoiser calls the body makes in this thread."""
        with step_listener(self.on_step):
            yield self
            self.finished_part()


def gradio_reporter(progress) -> Callable[[float, str], None]:
    """A `report` for `RunProgress` that drives one `gr.Progress` bar with the line as its label."""
    def report(fraction: float, line: str) -> None:
        progress(fraction, desc=line)
    return report
