"""benchmarks/cost_table.py reads the committed bench JSONs into one table; latency_same_run.py times models in one run."""

import importlib.util
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _load(name: str):
    spec = importlib.util.spec_from_file_location(name, ROOT / "benchmarks" / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules[name] = mod
    spec.loader.exec_module(mod)
    return mod


def test_cost_table_has_a_row_with_quality_and_cost_for_every_model_of_every_bench():
    cost = _load("cost_table")
    tab = cost.table()
    assert {"rec_ml-1m_clean.json", "rec_zhihu.json", "rec_amazon-beauty.json"} <= set(tab)
    for file, t in tab.items():
        doc = json.loads((cost.RESULTS / file).read_text())
        assert len(t["rows"]) == len(doc["models"]), file
        for r in t["rows"]:
            mean, _ = r[t["metrics"][0]]
            assert mean is not None and 0 <= mean <= 1, (file, r)
            assert r["seeds"] >= 1 and r["train_s"] is not None, (file, r)
    ease = next(r for r in tab["rec_ml-1m_clean.json"]["rows"] if r["model"] == "ease")
    assert abs(ease["recall@20"][0] - 0.1816) < 5e-4  # the README's figure, read back


def test_latency_same_run_times_every_named_model_and_refuses_an_unknown_one(tmp_path, capsys):
    lat = _load("latency_same_run")
    out = tmp_path / "lat.json"
    assert lat.main(["--data", "demo", "--models", "mostpop,ease", "--repeats", "1", "--json-out", str(out)]) == 0
    doc = json.loads(out.read_text())
    assert set(doc["ms_per_1k"]) == {"mostpop", "ease"} and all(v > 0 for v in doc["ms_per_1k"].values())
    assert lat.main(["--data", "demo", "--models", "nosuchmodel"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error:") and "nosuchmodel" in err[0]
