"""Safe defaults: loopback bind, optional auth, upload limit, file access only under the output folder,
no remote code, no pickle weights without an explicit opt-in, offline and no telemetry."""
from __future__ import annotations

import base64
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from core.errors import InputError

ROOT = Path(__file__).resolve().parents[1]
SOURCE_DIRS = ("app", "pipelines", "finetune", "recommenders", "benchmarks", "tests", "assets")


# --- offline, no telemetry ------------------------------------------------------------------------
@pytest.mark.parametrize("module", ["recommenders", "pipelines", "finetune", "app", "app.cli"])
def test_packages_default_to_offline_and_no_analytics(module):
    """Importing any Atelier package sets the offline/no-telemetry defaults, but never overrides the user."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("HF_HUB_OFFLINE", "GRADIO_ANALYTICS_ENABLED", "HF_HUB_DISABLE_TELEMETRY", "DO_NOT_TRACK")}
    env["PYTHONPATH"] = str(ROOT)
    code = (f"import os, {module}; print(os.environ.get('HF_HUB_OFFLINE'), os.environ.get('GRADIO_ANALYTICS_ENABLED'), "
            "os.environ.get('HF_HUB_DISABLE_TELEMETRY'))")
    out = subprocess.run([sys.executable, "-c", code], env=env, cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["1", "False", "1"]
    env["HF_HUB_OFFLINE"] = "0"  # a user who wants the hub keeps it
    out = subprocess.run([sys.executable, "-c", code], env=env, cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert out.stdout.split()[0] == "0"


# --- no remote code, no pickles --------------------------------------------------------------------
def _source_files():
    for d in SOURCE_DIRS:
        for p in (ROOT / d).rglob("*"):
            if p.suffix in (".py", ".yaml", ".yml", ".toml", ".cfg") and p.is_file():
                yield p
    yield ROOT / "pyproject.toml"


def test_no_trust_remote_code_anywhere():
    """Nothing in the tree turns on `trust_remote_code` (it would run code downloaded with a model)."""
    pattern = re.compile("trust_remote_code" + r"\s*[=:]\s*(True|true|1)\b")
    files = list(_source_files())
    assert len(files) > 50  # the walk really saw the tree
    hits = [f"{p.relative_to(ROOT)}:{n}" for p in files
            for n, line in enumerate(p.read_text(encoding="utf-8", errors="replace").splitlines(), 1)
            if pattern.search(line)]
    assert not hits, f"trust_remote_code enabled at {hits}"


def test_no_pickle_loading_calls_in_source():
    """Weights are read with safetensors only: no torch.load / pickle.load in Atelier's own code."""
    pattern = re.compile(r"\b(torch\.load|pickle\.loads?|joblib\.load|cloudpickle)\s*\(")
    hits = [f"{p.relative_to(ROOT)}:{n}" for p in _source_files() if p.suffix == ".py" and "tests" not in p.parts
            for n, line in enumerate(p.read_text(encoding="utf-8", errors="replace").splitlines(), 1)
            if pattern.search(line)]
    assert not hits, f"pickle loading at {hits}"


@pytest.mark.parametrize("suffix", [".bin", ".pt", ".pth", ".ckpt", ".pkl"])
def test_pickle_weights_refused_unless_allowed(tmp_path, suffix):
    from core.io import check_not_pickle, load_safetensors

    path = tmp_path / f"weights{suffix}"
    path.write_bytes(b"\x80\x04 not to be unpickled")
    with pytest.raises(InputError) as info:
        check_not_pickle(path)
    msg = str(info.value)
    assert "pickle" in msg and "arbitrary code" in msg and "--allow-unsafe-weights" in msg and "\n" not in msg
    check_not_pickle(path, allow_unsafe=True)  # the explicit opt-in
    with pytest.raises(InputError):
        load_safetensors(path)  # the safetensors loader never falls back to pickle
    check_not_pickle(tmp_path / "weights.safetensors")


def test_cli_offers_the_unsafe_weights_opt_in():
    """Commands that take weight files name the opt-in flag, so the refusal message can be acted on."""
    from typer.testing import CliRunner

    from app.cli import app

    runner = CliRunner()
    for cmd in (["generate", "product", "--help"], ["generate", "banner", "--help"]):
        out = runner.invoke(app, cmd, env={"COLUMNS": "200", "NO_COLOR": "1", "TERM": "dumb"})
        assert out.exit_code == 0 and "--allow-unsafe-weights" in out.output, cmd


def test_cli_refuses_pickle_lora_and_accepts_the_opt_in(tmp_path, monkeypatch):
    """`--lora x.bin` is refused with the reason; with `--allow-unsafe-weights` it gets past that check."""
    import io
    from contextlib import redirect_stderr, redirect_stdout

    from app.cli import main

    monkeypatch.chdir(tmp_path)
    (tmp_path / "lora.bin").write_bytes(b"\x80\x04 pickle")
    (tmp_path / "cond.json").write_text('{"user_id": "u1", "item_scores": [], "embedding": null, "attributes": {}, '
                                        '"reference_items": [], "source": "test"}')
    base = ["generate", "product", "--category", "shirt", "--condition", "cond.json", "--no-score", "--out", "out",
            "--model", str(tmp_path / "no-model"), "--lora", "lora.bin"]

    def run(argv):
        err = io.StringIO()
        with redirect_stdout(io.StringIO()), redirect_stderr(err), pytest.raises(SystemExit) as info:
            main(argv)
        return info.value.code, err.getvalue()

    code, err = run(base)
    assert code == 2 and "refusing to load a pickle" in err and "--allow-unsafe-weights" in err
    code, err = run(base + ["--allow-unsafe-weights"])
    assert code == 2 and "model folder not found" in err  # refused later for the missing model, not the pickle


# --- the server ---------------------------------------------------------------------------------
@pytest.fixture()
def fake_uvicorn(monkeypatch):
    """Capture what `atelier serve` would start, without starting it or building the UI."""
    import uvicorn

    import app.ui.server as server

    seen: dict = {}
    monkeypatch.setattr(uvicorn, "run", lambda app, **kw: seen.update(kw, app=app))
    monkeypatch.setattr(server, "build_app", lambda config, auth=None, limits=None: seen.update(
        auth=auth, limits=limits, config=config) or "APP")
    for k in ("ATELIER_AUTH", "ATELIER_OUT", "ATELIER_MODEL"):
        monkeypatch.delenv(k, raising=False)
    return seen


def test_serve_binds_loopback_by_default(fake_uvicorn, tmp_path, capsys):
    from app.commands.serve import serve

    serve(out=tmp_path / "out", ab_db=tmp_path / "ab.sqlite")
    assert fake_uvicorn["host"] == "127.0.0.1" and fake_uvicorn["auth"] is None
    assert fake_uvicorn["limits"].max_file_size == "20mb"  # an upload limit is always set
    assert "warning" not in capsys.readouterr().err


def test_serve_warns_when_exposed_without_auth(fake_uvicorn, tmp_path, capsys):
    from app.commands.serve import serve

    serve(host="0.0.0.0", out=tmp_path / "out", ab_db=tmp_path / "ab.sqlite")
    assert fake_uvicorn["host"] == "0.0.0.0"
    assert "without --auth" in capsys.readouterr().err


def test_serve_auth_from_flag_and_env(fake_uvicorn, tmp_path, monkeypatch):
    from app.commands.serve import serve

    serve(auth="ann:pw", out=tmp_path / "out", ab_db=tmp_path / "ab.sqlite")
    assert fake_uvicorn["auth"] == ("ann", "pw")
    monkeypatch.setenv("ATELIER_AUTH", "bob:s3cret")
    serve(out=tmp_path / "out", ab_db=tmp_path / "ab.sqlite")
    assert fake_uvicorn["auth"] == ("bob", "s3cret")
    with pytest.raises(InputError):
        serve(auth="bob", out=tmp_path / "out", ab_db=tmp_path / "ab.sqlite")


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """The real app with auth and a 2 kB upload limit, behind a test client."""
    from fastapi.testclient import TestClient

    from app.ui.server import ServerLimits, build_app
    from app.ui.workspace import UIConfig

    tmp = tmp_path_factory.mktemp("served")
    out = tmp / "out"
    (out / "sub").mkdir(parents=True)
    (out / "sub" / "ok.txt").write_text("inside")
    (tmp / "secret.txt").write_text("outside")
    app = build_app(UIConfig(out_dir=out, ab_db=tmp / "ab.sqlite", model=str(tmp / "none")), auth=("ann", "pw"),
                    limits=ServerLimits(max_file_size="2kb"))
    with TestClient(app) as client:
        yield client, tmp


def _basic(user: str, password: str) -> dict:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


def test_auth_protects_api_and_ui(served):
    client, _ = served
    assert client.get("/api/ab/experiments").status_code == 401
    assert client.get("/api/ab/experiments", headers=_basic("ann", "nope")).status_code == 401
    assert client.get("/api/ab/experiments", headers=_basic("ann", "pw")).status_code == 200
    assert client.post("/api/ab/vote", json={"experiment_id": "x", "winner_id": "a", "loser_id": "b"}).status_code == 401
    assert client.get("/config").status_code == 401  # the UI's config needs a login too
    assert client.post("/login", data={"username": "ann", "password": "nope"}).status_code >= 400
    assert client.post("/login", data={"username": "ann", "password": "pw"}).status_code == 200


def test_files_served_only_from_output_folder(served):
    client, tmp = served
    client.post("/login", data={"username": "ann", "password": "pw"})
    inside = tmp / "out" / "sub" / "ok.txt"
    assert client.get(f"/gradio_api/file={inside}").status_code == 200
    for outside in (tmp / "secret.txt", Path("/etc/passwd"), ROOT / "pyproject.toml",
                    f"{tmp / 'out'}/../secret.txt"):
        assert client.get(f"/gradio_api/file={outside}").status_code in (403, 404), outside


def test_upload_size_limit(served):
    client, _ = served
    client.post("/login", data={"username": "ann", "password": "pw"})
    big = client.post("/gradio_api/upload", files={"files": ("big.png", b"x" * 5000, "image/png")})
    assert big.status_code == 413
    small = client.post("/gradio_api/upload", files={"files": ("small.png", b"x" * 100, "image/png")})
    assert small.status_code == 200
