"""Reproducibility: the same campaign with the same seeds on the same device gives byte-identical PNGs.

Runs a small campaign on a tiny random SD model twice, with the model reloaded from disk in
between (and, in the slow test, in separate processes), and compares every PNG byte for byte.
The two seeds of the campaign must give two different images, so the comparison can fail.
"""
from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
VOLATILE = {"created_at"}  # when a record was written; everything else must match


def write_campaign(folder: Path, sd: Path, seeds: list[int]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "repro.yaml"
    path.write_text(textwrap.dedent(f"""\
        name: repro
        products: [p0010]
        audience: {{top_users: 1}}
        formats: {{product: {{}}, banner: {{sizes: [128x64]}}}}
        seeds: {seeds}
        model: {{base: {sd}, steps: 2, guidance: 5.0}}
        """))
    return path


def pngs(folder: Path) -> dict[tuple, str]:
    """(format, audience, product, width, height, seed) -> sha256 of the PNG the manifest records for it."""
    out = {}
    for r in (json.loads(x) for x in (folder / "manifest.jsonl").read_text().splitlines() if x.strip()):
        e = r["extra"]
        key = (e["format"], e["audience"], e["product"], r["width"], r["height"], r["seed"])
        assert key not in out, f"two creatives for {key}"
        out[key] = hashlib.sha256((folder / r["image_path"]).read_bytes()).hexdigest()
    return out


def records(folder: Path) -> list[dict]:
    """Manifest records without what may differ between runs (time written; job-id hash and paths, which
    name the code version's job identity rather than the pixels)."""
    rows = [json.loads(x) for x in (folder / "manifest.jsonl").read_text().splitlines() if x.strip()]
    drop = VOLATILE | {"creative_id", "image_path"}
    return [{k: ({kk: vv for kk, vv in v.items() if kk != "job_id"} if k == "extra" else v)
             for k, v in r.items() if k not in drop} for r in rows]


def run_in_process(campaign: Path, root: Path) -> Path:
    from app.batch.runner import run_campaign
    from pipelines.assemble import clear_cache

    clear_cache()  # assemble and load the models from disk again: nothing carries over between the runs
    summary = run_campaign(campaign, output_root=root, progress=False, device="cpu")
    return Path(summary.output_dir)


def test_same_seeds_same_bytes(tmp_path, tiny_sd):
    campaign = write_campaign(tmp_path, tiny_sd, [3, 4])
    a = run_in_process(campaign, tmp_path / "a")
    b = run_in_process(campaign, tmp_path / "b")
    images_a = pngs(a)
    assert len(images_a) == 4  # 1 user x 1 product x (product + banner) x 2 seeds
    assert images_a == pngs(b)
    assert records(a) == records(b)
    assert len(set(images_a.values())) == 4  # the other seed (and format) really gives other bytes


@pytest.mark.slow
def test_separate_processes_give_identical_pngs(tmp_path, tiny_sd):
    """Two `atelier batch` processes and one in-process run: the same bytes (same device, same seeds)."""
    campaign = write_campaign(tmp_path, tiny_sd, [7, 8])
    env = {**os.environ, "OMP_NUM_THREADS": "1", "ATELIER_THREADS": "1", "HF_HUB_OFFLINE": "1",
           "PYTHONPATH": str(ROOT)}
    outs = []
    for name in ("p1", "p2"):
        p = subprocess.run([sys.executable, "-m", "app.cli", "batch", str(campaign), "--output-root",
                            str(tmp_path / name), "--device", "cpu", "--json"], cwd=ROOT, env=env,
                           capture_output=True, text=True, timeout=900)
        assert p.returncode == 0, p.stderr[-3000:]
        outs.append(Path(json.loads(p.stdout)["output_dir"]))
    outs.append(run_in_process(campaign, tmp_path / "inproc"))
    assert pngs(outs[0]) == pngs(outs[1]) == pngs(outs[2])
    assert records(outs[0]) == records(outs[1]) == records(outs[2])
