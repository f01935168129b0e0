"""Results JSON hold relative paths: `core.io.portable` and the committed results files."""

import json
import re
import tempfile
from pathlib import Path

from core.io import portable, write_results_json

ROOT = Path(__file__).resolve().parents[1]
MACHINE_PATH = re.compile(r"(?<![\w.~$])/(home|work|root|Users|tmp|var/folders|mnt|srv|opt)/")


def test_portable_rewrites_project_and_scratch_paths(tmp_path):
    base = tmp_path / "clone" / "atelier"
    base.mkdir(parents=True)
    shared = tmp_path / "clone" / "shared" / "data" / "ml-1m_clean"
    obj = {"data": str(shared), "cmd": f"atelier rec bench --data {shared} --seeds 5",
           "cfg": [base / "recommenders" / "configs" / "x.yaml"], "system": "/usr/lib/x", "url": "http://host/a"}
    out = portable(obj, base=base)
    tmp = tempfile.gettempdir()
    if str(tmp_path).startswith(tmp):  # pytest's tmp_path lies under the temp folder: named by $TMPDIR
        assert out["data"].startswith("$TMPDIR/") and out["data"].endswith("shared/data/ml-1m_clean")
    assert "--seeds 5" in out["cmd"] and str(shared) not in out["cmd"]
    assert out["system"] == "/usr/lib/x" and out["url"] == "http://host/a"


def test_portable_relative_inside_the_working_tree(tmp_path):
    base = Path.cwd()
    inside = base / "benchmarks" / "results" / "x.json"
    sibling = base.parent / "shared" / "data"
    out = portable({"a": str(inside), "b": f"--data {sibling}"}, base=base)
    assert out == {"a": "benchmarks/results/x.json", "b": "--data ../shared/data"}


def test_write_results_json_is_portable(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    target = write_results_json(tmp_path / "r.json", {"model": str(tmp_path / "models" / "m")})
    assert json.loads(target.read_text())["model"] in ("models/m",)


def test_committed_results_hold_no_machine_paths():
    bad = []
    for f in sorted((ROOT / "benchmarks" / "results").glob("*.json")):
        for m in MACHINE_PATH.finditer(f.read_text()):
            bad.append(f"{f.name}: ...{f.read_text()[max(0, m.start() - 30):m.end() + 30]}...")
    assert not bad, "\n".join(bad[:10])


def test_printed_json_keeps_paths_a_user_can_open(tmp_path, monkeypatch):
    """A command's printed --json answer names temp-folder outputs by their real path (the slow
    reproducibility test opened `$TMPDIR/.../manifest.jsonl` before), and work-tree paths relative to it."""
    from core.io import printable

    monkeypatch.chdir(tmp_path)
    out_dir = Path(tempfile.gettempdir()) / "atelier-x" / "gen"
    printed = printable({"output_dir": str(out_dir), "here": str(tmp_path / "a" / "b.png")})
    assert printed == {"output_dir": str(out_dir), "here": "a/b.png"}
    assert portable({"output_dir": str(out_dir)})["output_dir"] == "$TMPDIR/atelier-x/gen"
