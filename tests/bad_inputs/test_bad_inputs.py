"""Every case of the bad-input corpus through its real entry point: one `error:` line, exit 2, no traceback,
and nothing written outside the output folder.

Most cases call `app.cli.main` in this process (the same code path as the `atelier` script; a
subprocess per case would cost seconds of start-up each on a busy CPU); `test_cli_subprocess`
runs one case per group as a real process to show the in-process runs stand for the real thing.
The UI's callbacks (studio upload, batch campaign upload, shopper history upload) get the cases
their tab accepts: each must answer with an `Error: ...` status instead of crashing the event.
"""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from corpus import CASES, Case, argv_for, build_case
from cli_tools import run_cli as run_in_process

ROOT = Path(__file__).resolve().parents[2]
OUTSIDE_TARGET = Path("/tmp/atelier-bad-input-escape")  # the absolute path one campaign case aims at


def snapshot(root: Path, skip: Path) -> dict[str, tuple[int, int]]:
    """Every file and folder under `root` except those under `skip`: path -> (size, mtime_ns)."""
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        here = Path(dirpath)
        if here == skip or skip in here.parents:
            dirnames[:] = []
            continue
        for name in dirnames + filenames:
            p = here / name
            if p == skip:
                continue
            st = p.lstat()
            out[str(p.relative_to(root))] = (st.st_size if p.is_file() else -1, st.st_mtime_ns)
    return out




def run_subprocess(argv: list[str], cwd: Path) -> tuple[int, str, str]:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "GRADIO_ANALYTICS_ENABLED": "False", "OMP_NUM_THREADS": "1",
           "ATELIER_THREADS": "1", "PYTHONPATH": str(ROOT)}
    p = subprocess.run([sys.executable, "-m", "app.cli", *argv], cwd=cwd, env=env, capture_output=True, text=True,
                       timeout=120)
    return p.returncode, p.stdout, p.stderr


def check_refused(case: Case, code: int, out: str, err: str) -> None:
    """The contract of a refused input: exit 2, one `error:` line naming the problem, no traceback."""
    assert "Traceback" not in err and "Traceback" not in out, f"{case.name}: traceback\n{err[-3000:]}"
    lines = [ln for ln in err.splitlines() if ln.strip()]
    errors = [ln for ln in lines if ln.startswith("error: ")]
    assert code == 2, f"{case.name}: exit code {code}, stderr:\n{err[-2000:]}"
    assert len(errors) == 1 and len(lines) == 1, f"{case.name}: expected one error line, got:\n{err[-2000:]}"
    assert case.expect.lower() in errors[0].lower(), f"{case.name}: {errors[0]!r} does not mention {case.expect!r}"


def _prepare(case: Case, tmp_path: Path) -> tuple[Path, Path, Path, list[str]]:
    work = tmp_path / "work"
    inputs, out = build_case(case, work / "in"), work / "out"
    out.mkdir()
    return work, inputs, out, argv_for(case, inputs, out)


@pytest.fixture()
def offline_cwd(tmp_path, monkeypatch):
    """Run in an empty folder, offline, with no ATELIER_* settings leaking in from the shell."""
    for k in [k for k in os.environ if k.startswith("ATELIER_") and k != "ATELIER_THREADS"]:
        monkeypatch.delenv(k)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    (tmp_path / "work").mkdir()
    monkeypatch.chdir(tmp_path / "work")
    return tmp_path


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_bad_input_refused(case: Case, offline_cwd: Path):
    work, _, out, argv = _prepare(case, offline_cwd)
    before = snapshot(offline_cwd, skip=out)
    existed = OUTSIDE_TARGET.exists()
    code, stdout, stderr = run_in_process(argv)
    check_refused(case, code, stdout, stderr)
    after = snapshot(offline_cwd, skip=out)
    changed = sorted(k for k in after.keys() | before.keys() if after.get(k) != before.get(k))
    assert not changed, f"{case.name} wrote outside the output folder: {changed[:10]}"
    assert existed or not OUTSIDE_TARGET.exists(), f"{case.name} created {OUTSIDE_TARGET}"


def test_corpus_size_and_coverage():
    """At least 40 cases, and every kind of input the issue names is in the corpus."""
    names = {c.name for c in CASES}
    assert len(CASES) >= 40 and len(names) == len(CASES)
    assert {c.group for c in CASES} == {"catalog", "interactions", "image", "campaign", "prompt", "model", "ab",
                                        "flags"}
    for needed in ("latin1", "semicolons", "nan", "negative", "duplicate-rows", "million-columns", "truncated",
                   "cmyk", "16bit", "gray", "animated", "bomb", "zero-bytes", "not-an-image", "syntax-error",
                   "unknown-key", "wrong-type", "negative-count", "dotdot", "absolute", "headline-empty", "10k",
                   "control", "missing-folder", "controlnet-as-pipeline", "pickle"):
        assert any(needed in n for n in names), needed


SUBPROCESS_CASES = [next(c for c in CASES if c.group == g) for g in ("interactions", "catalog", "campaign", "ab")]


@pytest.mark.parametrize("case", SUBPROCESS_CASES, ids=[c.name for c in SUBPROCESS_CASES])
def test_cli_subprocess(case: Case, tmp_path: Path):
    """The real process: same exit code and single error line as the in-process run."""
    work, _, out, argv = _prepare(case, tmp_path)
    before = snapshot(tmp_path, skip=out)
    code, stdout, stderr = run_subprocess(argv, cwd=work)
    check_refused(case, code, stdout, stderr)
    assert snapshot(tmp_path, skip=out) == before


# --- the UI's own callbacks: an "Error: ..." status instead of a crashed event -------------------------
@pytest.fixture(scope="module")
def ui(tmp_path_factory):
    """The Gradio Blocks of `atelier serve` and its callbacks by api name (no model is installed)."""
    from app.ui.server import build_blocks
    from app.ui.workspace import UIConfig, Unavailable, Workspace

    tmp = tmp_path_factory.mktemp("ui")
    ws = Workspace(UIConfig(out_dir=tmp / "out", ab_db=tmp / "out" / "ab.sqlite", model=str(tmp / "no-model")))
    try:
        ws.shop()
    except Unavailable as e:
        pytest.skip(str(e))
    blocks = build_blocks(ws)
    fns = blocks.fns.values() if isinstance(blocks.fns, dict) else blocks.fns
    return ws, {f.api_name: f.fn for f in fns if f.api_name}


class _Request:
    """What the callbacks read from `gr.Request`: a session hash (and no logged-in user)."""

    session_hash = "bad-input-test"
    username = None


def _ui_call(fns: dict, case: Case, argv: list[str]) -> str:
    """Feed the case's file to the UI callback that takes that kind of file; return its status text."""
    if case.group == "image":
        image = argv[argv.index("--image") + 1]
        mask = argv[argv.index("--mask") + 1] if "--mask" in argv else None
        result = _last(fns["studio_generate"](None, image, mask, "", ["300x250"], 1, "", "Shop now", "", "", 2,
                                              7.5, "", 0, _Request()))
    elif case.argv[0] == "batch":  # as in the page: the upload fills the editor, then Run runs the editor's text
        from app.ui.batch_tab import read_example
        from core.errors import InputError

        try:
            text = read_example(argv[1])
        except InputError as e:
            return f"Error: {e}"
        result = _last(fns["batch_run"](text, _Request()))
    else:  # an uploaded shopper history
        result = fns["shopper_recommend"]("", argv[-1], "ease")
    return result[0]


def _last(results):
    """The last update a generator callback yields (what stays on the page)."""
    out = None
    for out in results:
        pass
    return out


UI_CASES = ([c for c in CASES if c.group == "image" and "--image" in c.argv and "missing" not in c.name]
            + [c for c in CASES if c.argv[0] == "batch" and "missing" not in c.name]
            + [c for c in CASES if c.group == "interactions" and "missing" not in c.name])


@pytest.mark.parametrize("case", UI_CASES, ids=[c.name for c in UI_CASES])
def test_ui_callback_shows_error(ui, case: Case, tmp_path: Path):
    ws, fns = ui
    _, _, _, argv = _prepare(case, tmp_path)
    before = snapshot(tmp_path, skip=ws.config.out_dir)
    status = _ui_call(fns, case, argv)
    assert isinstance(status, str) and status.startswith("Error: "), f"{case.name}: {status!r}"
    assert "Traceback" not in status and "\n" not in status.strip()
    expect = case.ui_expect or case.expect
    assert expect.lower() in status.lower(), f"{case.name}: {status!r} does not mention {expect!r}"
    after = snapshot(tmp_path, skip=ws.config.out_dir)
    assert after == before, f"{case.name} wrote outside the output folder"
