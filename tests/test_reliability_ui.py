"""UI reliability: the studio refuses what the CLI refuses (animated images), and a session's Cancel stops its
own running generation at the next denoising step without touching other sessions' jobs."""
from __future__ import annotations

import threading
import time
from collections import Counter
from pathlib import Path

import pytest
from PIL import Image

from core.errors import InputError


def _animated_gif(path: Path) -> Path:
    frames = [Image.new("RGB", (48, 48), (200, 30 * k, 30)) for k in range(3)]
    frames[0].save(path, format="GIF", save_all=True, append_images=frames[1:], duration=100, loop=0)
    return path


def test_studio_refuses_animated_gif_like_the_cli(tmp_path):
    from app.ui import studio
    from core.validate import check_product_image

    gif = _animated_gif(tmp_path / "anim.gif")
    with pytest.raises(InputError) as cli:
        check_product_image(gif)  # what `atelier generate background --image` runs
    with pytest.raises(InputError) as ui:
        studio.prepare_product(gif, None, tmp_path / "out")
    assert "animated" in str(ui.value) and str(ui.value) == str(cli.value)
    with pytest.raises(InputError, match="animated"):  # as a mask too
        rgba = Image.new("RGBA", (48, 48), (0, 0, 0, 0))
        rgba.save(tmp_path / "p.png")
        studio.prepare_product(tmp_path / "p.png", gif, tmp_path / "out")
    assert not (tmp_path / "out" / "product.png").exists()
    # a single-frame GIF with transparency is still a product picture
    one = Image.new("P", (48, 48), 0)
    one.putpalette([0, 0, 0, 200, 30, 30] + [0] * 762)
    one.paste(1, (12, 12, 36, 36))
    one.save(tmp_path / "one.gif", transparency=0)
    assert studio.prepare_product(tmp_path / "one.gif", None, tmp_path / "ok").is_file()


def test_cancel_flags_are_per_session_and_tab():
    from app.ui.cancel import JOBS, Cancelled, check_cancelled

    assert not JOBS.cancel("nobody", "shopper")
    with JOBS.job("s1", "shopper") as mine:
        assert not JOBS.cancel("s2", "shopper")  # another session
        assert not JOBS.cancel("s1", "studio")  # my other tab
        assert not mine.is_set()
        check_cancelled()
        assert JOBS.cancel("s1", "shopper") and mine.is_set()
        with pytest.raises(Cancelled):
            check_cancelled()
    check_cancelled()  # the flag belonged to the job, not the thread
    assert ("s1", "shopper") not in JOBS.running()


def test_cancel_buttons_call_the_per_session_cancel(tmp_path):
    from app.ui.cancel import JOBS
    from app.ui.server import build_blocks
    from app.ui.workspace import UIConfig, Unavailable, Workspace

    ws = Workspace(UIConfig(out_dir=tmp_path / "out", ab_db=tmp_path / "ab.sqlite", model=str(tmp_path / "none")))
    try:
        ws.shop()
    except Unavailable as e:
        pytest.skip(str(e))
    blocks = build_blocks(ws)
    fns = list(blocks.fns.values() if isinstance(blocks.fns, dict) else blocks.fns)
    cancel = {f.fn.__name__: f for f in fns if f.fn is not None and f.fn.__name__.startswith("cancel_")}
    assert set(cancel) == {"cancel_shopper", "cancel_studio", "cancel_outfit", "cancel_batch", "cancel_xy"}

    class Req:
        def __init__(self, session):
            self.session_hash, self.username = session, None

    for name, dep in cancel.items():
        tab = name.removeprefix("cancel_")
        # the same button also carries Gradio's own cancel of the queued event
        buttons = {id(t[0]) for t in dep.targets} if hasattr(dep, "targets") else set()
        gradio_cancels = [f for f in fns if f.fn is None and getattr(f, "cancels", None)
                          and {id(t[0]) for t in getattr(f, "targets", [])} == buttons]
        assert gradio_cancels, f"{name}: no Gradio cancel on the same button"
        with JOBS.job("mine", tab) as flag:
            dep.fn(Req("someone-else"))
            assert not flag.is_set()
            dep.fn(Req("mine"))
            assert flag.is_set()


# --- a real denoising loop on a tiny model ---------------------------------------------------------------
@pytest.fixture(scope="module")
def tiny_ws(tmp_path_factory, tiny_sd):
    from app.ui import engine, shopper
    from app.ui.workspace import UIConfig, Unavailable, Workspace

    sd = tiny_sd
    tmp = tmp_path_factory.mktemp("cancel")
    ws = Workspace(UIConfig(out_dir=tmp / "out", ab_db=tmp / "ab.sqlite", model=str(sd), steps=400))
    try:
        uid = shopper.demo_users(ws, n=1)[0][1]
    except Unavailable as e:
        pytest.skip(str(e))
    cond = shopper.recommend(ws, "ease", shopper.user_history(ws, uid), user_id=uid)
    unet = engine.pipeline(ws, "product").sd.unet
    calls: Counter = Counter()  # UNet calls (= denoising steps) per thread name (idents get reused)
    handle = unet.register_forward_hook(lambda *a: calls.update([threading.current_thread().name]))
    yield ws, cond, calls
    handle.remove()


class Job(threading.Thread):
    """One session's generation in its own thread (as Gradio runs a callback), recording how it ended."""

    def __init__(self, ws, cond, session: str, out: Path, steps: int | None = None):
        super().__init__(daemon=True, name=f"job-{session}")
        self.ws, self.cond, self.session, self.out, self.steps = ws, cond, session, out, steps
        self.result, self.error, self.started_ = None, None, False

    def run(self):
        from app.ui import engine
        from app.ui.cancel import JOBS

        self.started_ = True
        try:
            with JOBS.job(self.session, "shopper"):
                extra = {} if self.steps is None else {"steps": self.steps}
                self.result = engine.run(self.ws, "product", self.out, self.cond, num_candidates=1, seed=3, **extra)
        except BaseException as e:  # noqa: BLE001 (the test inspects it)
            self.error = e


def _wait(pred, timeout: float = 120.0) -> None:
    deadline = time.time() + timeout
    while not pred():
        assert time.time() < deadline, "timed out"
        time.sleep(0.005)


def test_cancel_stops_my_running_generation_and_not_the_next_users(tiny_ws, tmp_path):
    from app.ui.cancel import JOBS, Cancelled

    ws, cond, calls = tiny_ws
    # reference: user B's job alone
    ref = Job(ws, cond, "ref", tmp_path / "ref", steps=4)
    ref.start(), ref.join()
    assert ref.error is None and calls[ref.name] == 4

    a = Job(ws, cond, "user-a", tmp_path / "a")  # 400 steps: long enough to cancel mid-way
    a.start()
    _wait(lambda: a.started_ and calls[a.name] >= 3)
    b = Job(ws, cond, "user-b", tmp_path / "b", steps=4)  # queued behind A on the generation lock
    b.start()
    _wait(lambda: ("user-b", "shopper") in JOBS.running())
    assert calls[b.name] == 0
    steps_at_cancel = calls[a.name]
    assert JOBS.cancel("user-a", "shopper")
    a.join(60)
    assert not a.is_alive() and isinstance(a.error, Cancelled), a.error
    # it stopped at its next step (the one in flight may finish), not at the end of 400
    assert calls[a.name] <= steps_at_cancel + 1, (steps_at_cancel, calls[a.name])
    assert not (tmp_path / "a" / "manifest.jsonl").exists() and not list((tmp_path / "a").rglob("*.png"))

    b.join(120)
    assert b.error is None, b.error
    assert calls[b.name] == 4, "B's job ran all its steps"
    made, want = b.result[0], ref.result[0]
    assert (tmp_path / "b" / made.image_path).read_bytes() == (tmp_path / "ref" / want.image_path).read_bytes()
    print(f"cancel: A stopped after {calls[a.name]} of 400 steps (cancel at step {steps_at_cancel}); "
          f"B ran {calls[b.name]} steps, same pixels as alone")


def test_cancel_while_queued_starts_nothing_and_spares_the_running_job(tiny_ws, tmp_path):
    from app.ui.cancel import JOBS, Cancelled

    ws, cond, calls = tiny_ws
    a = Job(ws, cond, "user-c", tmp_path / "c", steps=60)
    a.start()
    _wait(lambda: a.started_ and calls[a.name] >= 1)
    b = Job(ws, cond, "user-d", tmp_path / "d", steps=60)
    b.start()
    _wait(lambda: ("user-d", "shopper") in JOBS.running())
    assert JOBS.cancel("user-d", "shopper")  # D gives up while C still runs
    assert not JOBS.cancel("user-e", "shopper")  # nobody's job
    a.join(120), b.join(120)
    assert a.error is None and calls[a.name] == 60 and (tmp_path / "c" / "manifest.jsonl").is_file()
    assert isinstance(b.error, Cancelled) and calls[b.name] == 0
    assert not (tmp_path / "d" / "manifest.jsonl").exists()
