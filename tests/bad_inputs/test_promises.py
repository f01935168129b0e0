"""Issue 19's promises that are not "refused with one line": what must happen instead (a file stays
inside its folder, a vote is stored or reported as a duplicate, a body gets a 413 before it is read,
a bad flag fails before anything heavy is imported). Each test failed on the code before the fix."""
from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from core.errors import InputError

ROOT = Path(__file__).resolve().parents[2]
PY = sys.executable


def _env() -> dict:
    return {**os.environ, "HF_HUB_OFFLINE": "1", "GRADIO_ANALYTICS_ENABLED": "False", "OMP_NUM_THREADS": "1",
            "ATELIER_THREADS": "1", "PYTHONPATH": str(ROOT)}


# --- file names from ids --------------------------------------------------------------------------
def test_safe_name_keeps_plain_ids_and_never_makes_a_path():
    from core.paths import safe_name

    assert safe_name("u123") == "u123" and safe_name("p0010_a-b.c") == "p0010_a-b.c"
    hostile = ["x/../../ESCAPED", "..", ".", ".hidden", "a\\b", "a\x00b", "", "/etc/passwd", "é" * 300]
    names = [safe_name(h) for h in hostile]
    for n in names:
        assert n and "/" not in n and "\\" not in n and "\x00" not in n and not n.startswith(".") and len(n) <= 96
    assert len(set(names)) == len(names)  # different ids, different files


def test_outfit_board_of_a_hostile_user_id_stays_inside_out(tmp_path):
    """`generate outfit` names its board after the user id; `x/../../ESCAPED` once wrote two levels up."""
    work = tmp_path / "a" / "b"
    out = work / "out"
    work.mkdir(parents=True)
    cond = {"user_id": "x/../../ESCAPED", "item_scores": [], "embedding": None,
            "attributes": {"color": {"navy": 1.0}}, "reference_items": [], "source": "test"}
    (work / "cond.json").write_text(json.dumps(cond))
    p = subprocess.run([PY, "-m", "app.cli", "generate", "outfit", "--condition", "cond.json", "--items", "p0010",
                        "--out", "out", "--steps", "1", "--no-score"], cwd=work, env=_env(), capture_output=True,
                       text=True, timeout=300)
    assert p.returncode == 0, p.stderr[-2000:]
    from core.paths import safe_name

    assert (out / f"outfit-{safe_name(cond['user_id'])}.png").is_file(), sorted(out.iterdir())
    outside = [f for f in tmp_path.rglob("*") if f.is_file() and out not in f.parents and f.parent != work]
    assert not outside, outside


def test_inside_refuses_symlinks_out_of_the_root_and_catalog_images_too(tmp_path):
    from core.paths import inside
    from recommenders.catalog import Catalog

    shop = tmp_path / "shop"
    shop.mkdir()
    (tmp_path / "secret.png").write_bytes(b"x")
    (shop / "link.png").symlink_to("../secret.png")
    (shop / "ok.png").write_bytes(b"x")
    (shop / "sub").mkdir()
    (shop / "sub" / "in.png").symlink_to("../ok.png")  # a link that stays inside is fine
    assert inside(shop, "sub/in.png") == (shop / "ok.png").resolve()
    for bad in ("link.png", "../secret.png", "/etc/passwd", "sub/../../secret.png"):
        with pytest.raises(InputError):
            inside(shop, bad)
    (shop / "catalog.csv").write_text("item_id,title,category,image_path\na,A,top,link.png\n")
    cat = Catalog.load(shop / "catalog.csv", check_images=False)  # even when loaded without the checks
    with pytest.raises(InputError, match="outside"):
        cat.load_image("a")


def test_catalog_images_go_through_the_shared_image_checks(tmp_path):
    import sys as _sys

    _sys.path.insert(0, str(Path(__file__).parent))
    from corpus import bomb_png

    from recommenders.catalog import Catalog

    (tmp_path / "bomb.png").write_bytes(bomb_png(100_000, 100_000))
    (tmp_path / "catalog.csv").write_text("item_id,title,category,image_path\na,A,top,bomb.png\n")
    cat = Catalog.load(tmp_path / "catalog.csv", check_images=False)
    with pytest.raises(InputError, match="pixels"):  # before PIL's DecompressionBombError
        cat.load_image("a")


# --- weights: what the loader reads ---------------------------------------------------------------
def test_weights_check_lists_what_diffusers_would_read(tmp_path):
    from core.weights import check_weights, weight_files

    lora = tmp_path / "lora"
    lora.mkdir()
    (lora / "pytorch_lora_weights.bin").write_bytes(b"\x80\x04.")
    with pytest.raises(InputError, match="pickle"):
        check_weights(lora, kind="lora")
    assert check_weights(lora, kind="lora", allow_unsafe=True) == [lora / "pytorch_lora_weights.bin"]
    good = ROOT / "assets" / "models" / "demo-sd"
    files = weight_files(good)  # a pipeline: each weighted component's file
    assert {f.parent.name for f in files} == {"unet", "vae", "text_encoder"}
    assert all(f.name.endswith(".safetensors") for f in files)
    check_weights(good)


# --- JSON written stays JSON ------------------------------------------------------------------------
def test_non_finite_numbers_are_written_as_null_never_as_bare_nan(tmp_path):
    from core.io import append_jsonl, read_jsonl

    append_jsonl(tmp_path / "m.jsonl", {"scores": {"clip": float("nan"), "ctr": float("inf"), "ok": 0.5}})
    text = (tmp_path / "m.jsonl").read_text()
    assert "NaN" not in text and "Infinity" not in text
    assert read_jsonl(tmp_path / "m.jsonl") == [{"scores": {"clip": None, "ctr": None, "ok": 0.5}}]


# --- votes -------------------------------------------------------------------------------------------
@pytest.fixture()
def two_experiments(tmp_path):
    from app.ab.store import ABStore

    store = ABStore(tmp_path / "ab.sqlite")
    for exp in ("spring", "summer"):
        store.create_experiment(exp)
        store.add_creative(exp, "a")
        store.add_creative(exp, "b")
    return store


def test_event_ids_are_scoped_to_their_experiment(two_experiments):
    from app.ab.store import EventConflict

    store = two_experiments
    first = store.record_vote("spring", "a", "b", event_id="e1")
    other = store.record_vote("summer", "a", "b", event_id="e1")  # another experiment: another event
    assert not first.duplicate and not other.duplicate
    assert len(store.votes("spring")) == len(store.votes("summer")) == 1
    again = store.record_vote("spring", "a", "b", event_id="e1")
    assert again == "e1" and again.duplicate and len(store.votes("spring")) == 1
    with pytest.raises(EventConflict):
        store.record_vote("spring", "b", "a", event_id="e1")  # same id, different vote
    imp = store.record_impression("spring", "a", event_id="i1")
    assert store.record_impression("summer", "a", event_id="i1") == imp  # both stored, one per experiment
    assert store.counts()["impressions"] == 2
    with pytest.raises(InputError, match="several experiments"):
        store.record_click(impression_id="i1")
    assert not store.record_click(impression_id="i1", experiment_id="spring").duplicate
    assert store.record_click(impression_id="i1", experiment_id="spring").duplicate  # one click per impression


def test_http_votes_report_duplicates_and_conflicts(two_experiments):
    from fastapi import FastAPI
    from fastapi.testclient import TestClient

    from app.ab.api import make_router

    web = FastAPI()
    web.include_router(make_router(two_experiments), prefix="/api/ab")
    client = TestClient(web)
    vote = {"experiment_id": "spring", "winner_id": "a", "loser_id": "b", "event_id": "v1"}
    r1 = client.post("/api/ab/vote", json=vote)
    r2 = client.post("/api/ab/vote", json={**vote, "experiment_id": "summer"})
    r3 = client.post("/api/ab/vote", json=vote)
    assert (r1.status_code, r1.json()["duplicate"]) == (200, False)
    assert (r2.status_code, r2.json()["duplicate"]) == (200, False)
    assert (r3.status_code, r3.json()["duplicate"]) == (200, True)
    assert client.post("/api/ab/vote", json={**vote, "winner_id": "b", "loser_id": "a"}).status_code == 409
    assert len(two_experiments.votes("summer")) == 1
    chose = client.post("/api/ab/choose", json={"experiment_id": "spring", "event_id": "c1"}).json()
    again = client.post("/api/ab/choose", json={"experiment_id": "spring", "event_id": "c1"}).json()
    assert again["duplicate"] and again["creative_id"] == chose["creative_id"]


def test_cli_vote_reports_a_duplicate(two_experiments):
    db = str(two_experiments.path)
    outs = []
    for _ in range(2):
        p = subprocess.run([PY, "-m", "app.cli", "ab", "vote", "spring", "a", "b", "--event-id", "v9", "--db", db,
                            "--json"], env=_env(), capture_output=True, text=True, timeout=60)
        assert p.returncode == 0, p.stderr
        outs.append(json.loads(p.stdout))
    assert [o["duplicate"] for o in outs] == [False, True]
    assert len(two_experiments.votes("spring")) == 1


def test_another_applications_database_is_left_untouched(tmp_path):
    import sqlite3

    from app.ab.store import ABStore

    db = tmp_path / "crm.sqlite"
    con = sqlite3.connect(db)
    con.execute("CREATE TABLE customers (id INTEGER PRIMARY KEY)")
    con.commit()
    con.close()
    before = db.read_bytes()
    with pytest.raises(InputError, match="other tables"):
        ABStore(db)
    assert db.read_bytes() == before
    assert not (tmp_path / "crm.sqlite-wal").exists()


def test_schema_1_database_is_upgraded_in_place(tmp_path):
    """A store written before event ids were scoped keeps its events."""
    import sqlite3

    from app.ab.store import ABStore

    db = tmp_path / "old.sqlite"
    con = sqlite3.connect(db)
    con.executescript("""
        CREATE TABLE experiments (experiment_id TEXT PRIMARY KEY, name TEXT NOT NULL, segment TEXT, control_id TEXT,
            status TEXT NOT NULL DEFAULT 'running', created_at REAL NOT NULL, meta TEXT NOT NULL DEFAULT '{}');
        CREATE TABLE creatives (experiment_id TEXT NOT NULL, creative_id TEXT NOT NULL, image_path TEXT, prompt TEXT,
            record TEXT NOT NULL DEFAULT '{}', created_at REAL NOT NULL, PRIMARY KEY (experiment_id, creative_id));
        CREATE TABLE impressions (impression_id TEXT PRIMARY KEY, experiment_id TEXT NOT NULL,
            creative_id TEXT NOT NULL, user_id TEXT, ts REAL NOT NULL);
        CREATE TABLE clicks (click_id TEXT PRIMARY KEY, impression_id TEXT, experiment_id TEXT NOT NULL,
            creative_id TEXT NOT NULL, user_id TEXT, ts REAL NOT NULL);
        CREATE TABLE votes (vote_id TEXT PRIMARY KEY, experiment_id TEXT NOT NULL, winner_id TEXT NOT NULL,
            loser_id TEXT NOT NULL, user_id TEXT, ts REAL NOT NULL);
        CREATE UNIQUE INDEX clicks_once ON clicks(impression_id) WHERE impression_id IS NOT NULL;
        INSERT INTO experiments VALUES ('e', 'e', NULL, 'a', 'running', 1.0, '{}');
        INSERT INTO creatives VALUES ('e', 'a', NULL, NULL, '{}', 1.0), ('e', 'b', NULL, NULL, '{}', 2.0);
        INSERT INTO impressions VALUES ('i1', 'e', 'a', 'u', 3.0);
        INSERT INTO clicks VALUES ('k1', 'i1', 'e', 'a', 'u', 4.0);
        INSERT INTO votes VALUES ('v1', 'e', 'a', 'b', 'u', 5.0);
    """)
    con.close()
    store = ABStore(db)
    assert store.counts() == {"experiments": 1, "creatives": 2, "impressions": 1, "clicks": 1, "votes": 1}
    assert store.record_vote("e", "a", "b", user_id="u", event_id="v1").duplicate
    store.create_experiment("f")
    store.add_creative("f", "a")
    store.add_creative("f", "b")
    assert not store.record_vote("f", "a", "b", event_id="v1").duplicate


def test_read_only_database_is_one_line(tmp_path):
    """A database file nobody may write (immutable, so even root cannot): one `error:` line, exit 2."""
    from app.ab.store import ABStore

    db = tmp_path / "ab.sqlite"
    store = ABStore(db)
    store.create_experiment("e")
    store.add_creative("e", "a")
    store.add_creative("e", "b")
    del store
    for f in tmp_path.glob("ab.sqlite-*"):
        f.unlink()  # checkpointed: the WAL is empty once every connection closed
    if shutil.which("chattr") is None or subprocess.run(["chattr", "+i", str(db)], capture_output=True).returncode:
        pytest.skip("cannot make a file read-only here (no chattr +i)")
    try:
        p = subprocess.run([PY, "-m", "app.cli", "ab", "vote", "e", "a", "b", "--db", str(db)], env=_env(),
                           capture_output=True, text=True, timeout=60)
    finally:
        subprocess.run(["chattr", "-i", str(db)], capture_output=True)
    lines = [ln for ln in p.stderr.splitlines() if ln.strip()]
    assert p.returncode == 2 and len(lines) == 1 and lines[0].startswith("error: "), p.stderr[-1500:]
    assert "read-only" in lines[0] or "cannot open" in lines[0], lines[0]


# --- HTTP -----------------------------------------------------------------------------------------------
class _Served:
    """An app under uvicorn on a free loopback port, in a thread."""

    def __init__(self, app):
        import uvicorn

        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.server = uvicorn.Server(uvicorn.Config(app, log_level="warning"))
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.sock]}, daemon=True)

    def __enter__(self):
        self.thread.start()
        deadline = time.time() + 60
        while not self.server.started and time.time() < deadline:
            time.sleep(0.05)
        return self

    def __exit__(self, *exc):
        self.server.should_exit = True
        self.thread.join(timeout=20)
        self.sock.close()

    def raw(self, head: bytes, body_chunks=()) -> bytes:
        """Send a request head (and chunks), return the status line of the answer."""
        s = socket.create_connection(("127.0.0.1", self.port), timeout=10)
        s.sendall(head)
        try:
            for chunk in body_chunks:
                s.sendall(chunk)
        except OSError:
            pass  # the server answered and closed: the rest of the body was never read
        data = s.recv(4096)
        s.close()
        return data.split(b"\r\n", 1)[0]


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    from app.ui.server import build_app
    from app.ui.workspace import UIConfig

    tmp = tmp_path_factory.mktemp("served")
    app = build_app(UIConfig(out_dir=tmp / "out", ab_db=tmp / "ab.sqlite", model=str(tmp / "no-model")),
                    auth=("ann", "pw"))
    with _Served(app) as srv:
        yield srv, tmp


AUTH = b"Authorization: Basic YW5uOnB3\r\n"  # ann:pw


def test_a_60mb_body_is_refused_before_it_is_read(served):
    srv, _ = served
    head = (b"POST /api/ab/vote HTTP/1.1\r\nHost: x\r\n" + AUTH +
            b"Content-Type: application/json\r\nContent-Length: 60000000\r\n\r\n")
    t0 = time.perf_counter()
    assert srv.raw(head) == b"HTTP/1.1 413 Request Entity Too Large"  # no body byte was sent at all
    assert time.perf_counter() - t0 < 5


def test_a_chunked_body_is_cut_off_at_the_limit(served):
    srv, _ = served
    head = (b"POST /api/ab/vote HTTP/1.1\r\nHost: x\r\n" + AUTH +
            b"Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n")
    chunk = b"a" * 65536
    chunks = (b"%x\r\n" % len(chunk) + chunk + b"\r\n" for _ in range(60 * 16))  # 60 MB if all were read
    assert srv.raw(head, chunks) == b"HTTP/1.1 413 Request Entity Too Large"


def test_docs_and_schema_need_the_credentials(served):
    import httpx

    srv, _ = served
    with httpx.Client(base_url=f"http://127.0.0.1:{srv.port}", timeout=30) as c:
        for path in ("/docs", "/redoc", "/openapi.json", "/api/ab/experiments"):
            assert c.get(path).status_code == 401, path
            assert c.get(path, auth=("ann", "pw")).status_code == 200, path
        assert "/api/ab/vote" in c.get("/openapi.json", auth=("ann", "pw")).json()["paths"]


def test_a_damaged_database_answers_one_json_error(tmp_path, caplog):
    from fastapi import FastAPI
    from fastapi.testclient import TestClient

    from app.ab.api import make_router
    from app.ab.store import ABStore

    store = ABStore(tmp_path / "ab.sqlite")
    store.create_experiment("e")
    web = FastAPI()
    web.include_router(make_router(store), prefix="/api/ab")
    client = TestClient(web, raise_server_exceptions=False)
    assert client.get("/api/ab/experiments").status_code == 200
    for f in tmp_path.glob("ab.sqlite*"):
        f.write_bytes(b"garbage " * 2000)  # the disk went bad under the running server
    with caplog.at_level("WARNING"):
        r = client.get("/api/ab/experiments")
        r2 = client.post("/api/ab/vote", json={"experiment_id": "e", "winner_id": "a", "loser_id": "b"})
    assert r.status_code == r2.status_code == 503
    assert "A/B store unavailable" in r.json()["detail"]
    assert "Traceback" not in caplog.text


# --- quiet and early -----------------------------------------------------------------------------------
EARLY = r"""
import sys, time, io, contextlib
from app.cli import main
cases = {cases!r}
out = {{}}
for name, argv in cases.items():
    err = io.StringIO()
    t0 = time.perf_counter()
    with contextlib.redirect_stderr(err):
        try:
            main(argv)
            code = 0
        except SystemExit as e:
            code = e.code
    out[name] = [code, round(time.perf_counter() - t0, 3), err.getvalue()]
heavy = [m for m in ("torch", "diffusers", "transformers", "gradio", "open_clip") if m in sys.modules]
import json; print(json.dumps({{"cases": out, "heavy": heavy}}))
"""


def test_bad_arguments_fail_before_anything_heavy_loads(tmp_path):
    """Every argument (sizes, files, weights' format, device, out paths) is checked before a model loads:
    in one process, each bad command line answers with its error and torch/diffusers are never imported."""
    (tmp_path / "cond.json").write_text('{"user_id": "u1"}')
    (tmp_path / "lora").mkdir()
    (tmp_path / "lora" / "pytorch_lora_weights.bin").write_bytes(b"\x80\x04.")
    (tmp_path / "taken").write_text("a file")
    (tmp_path / "m").mkdir()
    (tmp_path / "m" / "model_index.json").write_text("[]")
    base = ["generate", "product", "--condition", str(tmp_path / "cond.json"), "--category", "shirt", "--no-score"]
    cases = {
        "seed": [*base, "--seed", "9" * 30],
        "device": [*base, "--device", "tpu9"],
        "out-file": [*base, "--out", str(tmp_path / "taken")],
        "json-out-dir": [*base, "--json-out", str(tmp_path)],
        "lora-pickle": [*base, "--lora", str(tmp_path / "lora")],
        "model-index": [*base, "--model", str(tmp_path / "m")],
        "dtype": [*base, "--dtype", "fp8"],
        "strength": [*base, "--strength", "3"],
        "banner-size": ["generate", "banner", "--condition", str(tmp_path / "cond.json"), "--item", "p0010",
                        "--size", "300by250"],
        "nan-condition": ["generate", "product", "--condition", str(tmp_path / "nan.json"), "--category", "shirt"],
        "max-file-size": ["serve", "--max-file-size", "lots"],
    }
    (tmp_path / "nan.json").write_text('{"user_id": "u1", "embedding": [NaN]}')
    p = subprocess.run([PY, "-c", EARLY.format(cases=cases)], env=_env(), capture_output=True, text=True,
                       timeout=120, cwd=tmp_path)
    assert p.returncode == 0, p.stderr[-2000:]
    res = json.loads(p.stdout.strip().splitlines()[-1])
    for name, (code, seconds, err) in res["cases"].items():
        lines = [ln for ln in err.splitlines() if ln.strip()]
        assert code == 2 and len(lines) == 1 and lines[0].startswith("error: "), (name, err[-800:])
        assert seconds < 2.0, (name, seconds)  # correctness, not speed: nothing heavy ran first
    assert res["heavy"] == [], f"imported before the error: {res['heavy']}"
