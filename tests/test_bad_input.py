"""Malformed catalogs and interaction logs: one clear error line naming file and line, exit code 2."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from core.errors import InputError
from recommenders.catalog import Catalog
from recommenders.interactions import load_interactions_csv

HEADER = "user_id,item_id,timestamp\n"
CAT_HEADER = "item_id,title,category,image_path\n"

# (file name, bytes, expected fragment of the message, expected line number or None)
CASES = [
    ("empty.csv", b"", "file is empty", None),
    ("only_header.csv", HEADER.encode(), "no data rows", None),
    ("semicolons.csv", b"user_id;item_id;timestamp\nu1;i1;5\n", "';'-separated", 1),
    ("unknown_col.csv", b"user_id,item_id,timestamp,colour\nu1,i1,5,red\n", "unknown column 'colour'", 1),
    ("missing_col.csv", b"user_id,item_id\nu1,i1\n", "missing required column(s): timestamp", 1),
    ("short_row.csv", (HEADER + "u1,i1,5\nu2,i2\n").encode(), "expected 3 fields, found 2", 3),
    ("bad_ts.csv", (HEADER + "u1,i1,5\nu1,i2,yesterday\n").encode(), "timestamp 'yesterday' is not a number", 3),
    ("nan_ts.csv", (HEADER + "u1,i1,nan\n").encode(), "not a finite number", 2),
    ("dup_row.csv", (HEADER + "u1,i1,5\nu2,i1,6\nu1,i1,5\n").encode(), "duplicate row (same user, item and timestamp as line 2)", 4),
    ("neg_id.csv", (HEADER + "-3,i1,5\n").encode(), "user_id '-3' is negative", 2),
    ("nan_id.csv", (HEADER + "NaN,i1,5\n").encode(), "user_id is 'NaN', not an id", 2),
    ("empty_id.csv", (HEADER + "u1,,5\n").encode(), "item_id is empty", 2),
    ("bad_click.csv", b"user_id,item_id,timestamp,click\nu1,i1,5,yes\n", "click must be 0 or 1", 2),
    ("latin1.csv", (HEADER + "u1,caf\xe9,5\n").encode("latin-1"), "not UTF-8 text", 2),
    ("binary.csv", b"\x89PNG\r\n\x1a\n\x00\x00\x00", "NUL bytes", None),
    ("dup_header.csv", b"user_id,item_id,timestamp,item_id\nu1,i1,5,i2\n", "appears twice", 1),
    ("cat_dup.csv", (CAT_HEADER + "a,A shirt,top,\nb,B hat,hat,\na,A again,top,\n").encode(), "duplicate item_id 'a' (first on line 2)", 4),
    ("cat_missing_img.csv", (CAT_HEADER + "a,A shirt,top,images/nope.png\n").encode(), "image not found: images/nope.png", 2),
    ("cat_escape.csv", (CAT_HEADER + "a,A shirt,top,../../etc/passwd\n").encode(), "must be relative to the catalog", 2),
    ("cat_no_title.csv", (CAT_HEADER + "a,,top,\n").encode(), "title is missing or empty", 2),
    ("cat_bad_attr.csv", b"item_id,title,category,attributes\na,A shirt,top,color navy\n", "is not key=value", 2),
    ("cat_bad.jsonl", b'{"item_id": "a", "title": "A", "category": "top"}\n{"item_id": "b", "title": \n', "invalid JSON", 2),
    ("cat_list.jsonl", b'["a", "A", "top"]\n', "expected a JSON object", 1),
    ("cat_unknown.jsonl", b'{"item_id": "a", "title": "A", "category": "top", "price": 3}\n', "unknown field(s) price", 1),
    ("cat_attr_type.jsonl", b'{"item_id": "a", "title": "A", "category": "top", "attributes": {"color": [1]}}\n', "attribute 'color' must be text", 1),
]


def _load(path: Path):
    if path.name.startswith("cat_"):
        return Catalog.load(path)
    return load_interactions_csv(path)


def _write(tmp_path: Path, name: str, data: bytes) -> Path:
    if name.startswith("cat_") and name.endswith(".csv"):
        name = name[:-4] + ".csv"
    path = tmp_path / name
    path.write_bytes(data)
    return path


@pytest.mark.parametrize("name,data,fragment,line", CASES, ids=[c[0] for c in CASES])
def test_loader_error_names_file_line_and_problem(tmp_path, name, data, fragment, line):
    path = _write(tmp_path, name, data)
    with pytest.raises(InputError) as info:
        _load(path)
    msg = str(info.value)
    assert "\n" not in msg
    assert fragment in msg
    expected_where = f"{path}:{line}:" if line is not None else f"{path}:"
    assert msg.startswith(expected_where), msg


def test_case_count():
    assert len(CASES) >= 15


@pytest.mark.parametrize("name,data,fragment,line", CASES[::3], ids=[c[0] for c in CASES[::3]])
def test_cli_exit_code_2_and_one_line(tmp_path, name, data, fragment, line):
    """Through the CLI: exit code 2, a single `error:` line on stderr, nothing on stdout, no traceback."""
    path = _write(tmp_path, name, data)
    before = sorted(p.name for p in tmp_path.iterdir())
    proc = subprocess.run([sys.executable, "-m", "app.cli", "data", "info", str(path), "--json"],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and fragment in lines[0], proc.stderr
    assert proc.stdout == ""
    assert sorted(p.name for p in tmp_path.iterdir()) == before  # nothing half-written


def test_good_files_load(tmp_path):
    (tmp_path / "images").mkdir()
    from PIL import Image

    Image.new("RGBA", (8, 8)).save(tmp_path / "images" / "a.png")  # catalog images are header-checked on load
    cat = tmp_path / "catalog.csv"
    cat.write_text("item_id,title,category,image_path,attr_color,attributes\n"
                   "a,a navy shirt,top,images/a.png,navy,pattern=striped\nb,a red hat,hat,,red,\n")
    c = Catalog.load(cat)
    assert c["a"].attributes == {"pattern": "striped", "color": "navy"} and c.attribute_values("color") == ["navy", "red"]
    inter = tmp_path / "log.csv"
    inter.write_text("user_id,item_id,timestamp,click\nu1,a,3,1\nu1,b,1,0\nu2,a,2,1\n")
    log = load_interactions_csv(inter, catalog=c)
    assert (log.n_users, log.n_items, len(log)) == (2, 2, 3)
    assert [list(s) for s in log.user_sequences()] == [[1, 0], [0]]  # time ordered: b (t=1) before a (t=3)
