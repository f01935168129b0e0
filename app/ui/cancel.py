"""Per-session Cancel that stops a running generation at its next denoising step.

Gradio's `cancels=[event]` drops a queued event and stops waiting for a running one, but a sync
callback keeps running in its worker thread: the denoising loop would go on to the end, holding
the generation lock that every other session's job waits for. So each generation callback runs
inside `JOBS.job(session, tab)`, which gives its thread a cancel flag, and the tab's Cancel button
also calls `JOBS.cancel(session, tab)`, which sets only that session's flag for that tab.

The flag is read by a torch forward pre-hook (installed once per process): any module call in a
thread whose flag is set raises `Cancelled`. A denoising step is one UNet call (plus a ControlNet
call), so the job stops at its next step, whatever pipeline or runner it is in (product,
background, banner, outfit, and batch campaigns, whose runner builds its own pipelines). Threads
without a job, and jobs of other sessions, only pay one attribute read per module call.

No `from __future__ import annotations` here: Gradio injects `gr.Request` by the evaluated annotation.
"""
import threading
from contextlib import contextmanager
from typing import Callable, Iterator

_local = threading.local()  # .flag: the threading.Event of the job this thread runs, if any
_hook_lock = threading.Lock()
_hook_installed = [False]


class Cancelled(Exception):
    """Raised in a job's own thread at its next model call after its user pressed Cancel."""


# A denoising step is one call of the pipeline's denoiser: counted for the progress line (`step_listener`).
STEP_MODULES = frozenset({"UNet2DConditionModel", "UNet2DModel"})


def _step_check(module, args) -> None:
    flag = getattr(_local, "flag", None)
    if flag is not None and flag.is_set():
        raise Cancelled("cancelled by the user")
    listener = getattr(_local, "on_step", None)
    if listener is not None and module is not None and type(module).__name__ in STEP_MODULES:
        listener()


@contextmanager
def step_listener(on_step: Callable[[], None]) -> Iterator[None]:
    """Call `on_step()` in this thread at the start of each denoising step (one denoiser call) of the body."""
    install_step_check()
    previous = getattr(_local, "on_step", None)
    _local.on_step = on_step
    try:
        yield
    finally:
        _local.on_step = previous


def install_step_check() -> None:
    """Register the global forward pre-hook (once per process)."""
    with _hook_lock:
        if not _hook_installed[0]:
            from torch.nn.modules.module import register_module_forward_pre_hook

            register_module_forward_pre_hook(_step_check)
            _hook_installed[0] = True


def check_cancelled() -> None:
    """Raise `Cancelled` when the calling thread's job was cancelled (for checks between model calls)."""
    _step_check(None, ())


class CancelFlags:
    """One cancel flag per running (session, tab) job; cancelling one never touches another."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._flags: dict = {}

    @contextmanager
    def job(self, session: str, tab: str) -> Iterator[threading.Event]:
        """Run the body as `session`'s job in `tab`: model calls in this thread stop once it is cancelled."""
        install_step_check()
        key, flag = (session, tab), threading.Event()
        with self._lock:
            self._flags[key] = flag
        previous = getattr(_local, "flag", None)
        _local.flag = flag
        try:
            yield flag
        finally:
            _local.flag = previous
            with self._lock:
                if self._flags.get(key) is flag:
                    del self._flags[key]

    def cancel(self, session: str, tab: str) -> bool:
        """Set the flag of `session`'s running job in `tab`; False when it has none."""
        with self._lock:
            flag = self._flags.get((session, tab))
        if flag is None:
            return False
        flag.set()
        return True

    def running(self) -> list:
        """(session, tab) of the jobs now registered (for tests and diagnostics)."""
        with self._lock:
            return sorted(self._flags)


JOBS = CancelFlags()


def cancel_handler(tab: str) -> Callable:
    """The Cancel button's callback for `tab`: stops this session's running job there (see module doc)."""
    import gradio as gr

    from .workspace import session_id

    def on_cancel(request: gr.Request) -> None:
        JOBS.cancel(session_id(request), tab)

    on_cancel.__name__ = f"cancel_{tab}"
    return on_cancel


def cancelled_status(tab: str) -> str:
    """The status line a cancelled callback returns (the browser has usually stopped listening by then)."""
    return f"Cancelled: the {tab} job stopped at its next denoising step."
