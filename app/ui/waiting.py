"""The waiting line in front of the generation pipelines: first come, first served, and each waiter is told
its place ("waiting: 1 job ahead of yours, you are 2nd in line") in its own progress line.

Gradio admits up to `WAITING_ROOM` generation callbacks at once (beyond that its own queue holds
them); inside, every pipeline call takes a turn here (`engine.run`, and a whole campaign in the
Batch tab). A callback says where its waiting position goes with `reporting(report)`, in the thread
that will wait; a waiter that is cancelled leaves the line without starting anything.
"""

from __future__ import annotations

import threading
from contextlib import contextmanager
from typing import Callable, Iterator

from .cancel import check_cancelled

WAITING_ROOM = 16  # generation callbacks Gradio lets in at once (the rest wait in Gradio's own queue)
_local = threading.local()  # .report: where this thread's waiting position goes


def ordinal(n: int) -> str:
    """1 -> '1st', 2 -> '2nd', 11 -> '11th', 23 -> '23rd'."""
    suffix = "th" if 10 <= n % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{suffix}"


def waiting_text(ahead: int) -> str:
    """'waiting: 1 job ahead of yours (you are 2nd in line)'."""
    return f"waiting: {ahead} job{'s' if ahead != 1 else ''} ahead of yours (you are {ordinal(ahead + 1)} in line)"


class WaitingLine:
    """A first-come-first-served line of jobs; only the first in line runs, the others learn how many are ahead."""

    def __init__(self, poll: float = 0.2) -> None:
        self._cond = threading.Condition()
        self._line: list[object] = []
        self.poll = poll  # seconds between cancel checks while waiting

    def __len__(self) -> int:
        with self._cond:
            return len(self._line)

    @contextmanager
    def turn(self, report: Callable[[int], None] | None = None) -> Iterator[None]:
        """Wait for this job's turn (telling `report(jobs ahead)` each time that number changes), run the body."""
        ticket = object()
        with self._cond:
            self._line.append(ticket)
        try:
            told = None
            while True:
                with self._cond:
                    ahead = self._line.index(ticket)
                    if ahead and ahead == told:
                        self._cond.wait(self.poll)
                        ahead = self._line.index(ticket)
                if ahead == 0:
                    break
                if ahead != told and report is not None:
                    report(ahead)
                told = ahead
                check_cancelled()  # this session's Cancel while it waits: leave the line, start nothing
            yield
        finally:
            with self._cond:
                self._line.remove(ticket)
                self._cond.notify_all()


LINE = WaitingLine()


@contextmanager
def reporting(report: Callable[[int], None] | None) -> Iterator[None]:
    """Send this thread's waiting positions (jobs ahead) to `report` while the body runs."""
    previous = getattr(_local, "report", None)
    _local.report = report
    try:
        yield
    finally:
        _local.report = previous


def current_report() -> Callable[[int], None] | None:
    """Where the calling thread's waiting position goes (None: nowhere)."""
    return getattr(_local, "report", None)


def gradio_waiting(progress) -> Callable[[int], None]:
    """A `report` that writes the waiting line into a `gr.Progress` as its label."""
    def report(ahead: int) -> None:
        progress(0.0, desc=waiting_text(ahead))
    return report
