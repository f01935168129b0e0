"""Queue position (issue 18 item 7): a second user's job waits in line and is told its place; first come, first
served; a waiter's Cancel takes it out of the line."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest


def _until(pred, timeout: float = 60.0) -> None:
    deadline = time.time() + timeout
    while not pred():
        assert time.time() < deadline, "timed out"
        time.sleep(0.005)


def test_waiters_learn_their_place_and_go_in_order():
    from app.ui.waiting import WaitingLine, waiting_text

    line = WaitingLine(poll=0.01)
    release = {name: threading.Event() for name in "abc"}
    order: list[str] = []
    told: dict[str, list[int]] = {"b": [], "c": []}

    def job(name: str) -> None:
        with line.turn(told[name].append if name in told else None):
            order.append(name)
            release[name].wait(30)

    a = threading.Thread(target=job, args=("a",))
    a.start()
    _until(lambda: order == ["a"])
    b = threading.Thread(target=job, args=("b",))
    b.start()
    _until(lambda: told["b"] == [1])
    c = threading.Thread(target=job, args=("c",))
    c.start()
    _until(lambda: told["c"] == [2])
    assert len(line) == 3 and order == ["a"], "only the first in line runs"
    release["a"].set()
    _until(lambda: told["c"] == [2, 1] and order == ["a", "b"])
    release["b"].set(), release["c"].set()
    for t in (a, b, c):
        t.join(30)
    assert order == ["a", "b", "c"] and told == {"b": [1], "c": [2, 1]} and len(line) == 0
    assert waiting_text(1) == "waiting: 1 job ahead of yours (you are 2nd in line)"
    assert waiting_text(2) == "waiting: 2 jobs ahead of yours (you are 3rd in line)"


def test_a_cancelled_waiter_leaves_the_line():
    from app.ui.cancel import JOBS, Cancelled
    from app.ui.waiting import WaitingLine

    line = WaitingLine(poll=0.01)
    release, errors, ran = threading.Event(), [], []

    def first() -> None:
        with line.turn():
            release.wait(30)

    def second() -> None:
        try:
            with JOBS.job("waiter", "shopper"), line.turn():
                ran.append(True)
        except Cancelled as e:
            errors.append(e)

    a = threading.Thread(target=first)
    a.start()
    _until(lambda: len(line) == 1)
    b = threading.Thread(target=second)
    b.start()
    _until(lambda: len(line) == 2 and ("waiter", "shopper") in JOBS.running())
    assert JOBS.cancel("waiter", "shopper")
    b.join(30)
    assert errors and not ran and len(line) == 1
    release.set()
    a.join(30)
    assert len(line) == 0


def test_generation_events_let_waiters_in_to_be_told_their_place(tmp_path):
    """Gradio keeps a concurrency group's lowest limit: every generation event must let `WAITING_ROOM` in."""
    from app.ui.server import build_blocks
    from app.ui.waiting import WAITING_ROOM
    from app.ui.workspace import UIConfig, Workspace

    ws = Workspace(UIConfig(out_dir=tmp_path / "out", ab_db=tmp_path / "ab.sqlite", model="none"))
    blocks = build_blocks(ws)
    group = {fn.name: fn.concurrency_limit for fn in blocks.fns.values() if fn.concurrency_id == "generation"}
    if not group:
        pytest.skip("no generation tab in this build (demo shop missing)")
    assert {"on_generate", "on_run"} <= set(group), group
    assert set(group.values()) == {WAITING_ROOM}, group


@pytest.mark.slow
def test_two_users_generate_at_once_and_the_second_is_told_its_place(tmp_path, tiny_sd):
    """Two concurrent generation calls (as two browser sessions' callbacks run): the second waits, told
    '1 job ahead', and makes the same pixels as alone."""
    from app.ui import engine, shopper
    from app.ui.cancel import JOBS
    from app.ui.waiting import gradio_waiting, reporting
    from app.ui.workspace import UIConfig, Unavailable, Workspace

    ws = Workspace(UIConfig(out_dir=tmp_path / "out", ab_db=tmp_path / "ab.sqlite", model=str(tiny_sd), steps=2))
    try:
        uid = shopper.demo_users(ws, n=1)[0][1]
    except Unavailable as e:
        pytest.skip(str(e))
    cond = shopper.recommend(ws, "ease", shopper.user_history(ws, uid), user_id=uid)
    lines: dict[str, list] = {"a": [], "b": []}
    results: dict[str, list] = {}

    def user(name: str, steps: int) -> None:
        progress = lambda fraction, desc=None: lines[name].append(desc)  # noqa: E731 (a gr.Progress stand-in)
        with JOBS.job(name, "shopper"), reporting(gradio_waiting(progress)):
            results[name] = engine.run(ws, "product", tmp_path / name, cond, num_candidates=1, seed=1, steps=steps)

    a = threading.Thread(target=user, args=("a", 120))
    a.start()
    _until(lambda: len(engine.LINE) == 1 and engine.GENERATION_LOCK.locked())
    b = threading.Thread(target=user, args=("b", 2))
    b.start()
    _until(lambda: lines["b"], timeout=120)
    assert lines["b"] == ["waiting: 1 job ahead of yours (you are 2nd in line)"] and a.is_alive()
    a.join(300), b.join(300)
    assert lines["a"] == [], "the first user never waited"
    alone = engine.run(ws, "product", tmp_path / "alone", cond, num_candidates=1, seed=1, steps=2)
    made = Path(tmp_path / "b" / results["b"][0].image_path).read_bytes()
    assert made == Path(tmp_path / "alone" / alone[0].image_path).read_bytes()
