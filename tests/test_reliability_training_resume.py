"""SIGKILL at a random moment, then `--resume latest`: Diffusion-DPO, the preference adapter and the reward loop
end with the same bytes as an uninterrupted run, with no partial files, and so does `rec train` (epoch checkpoints,
resumed by rerunning the command); `finetune reward` (no checkpoints) reruns from scratch to the same bytes
(LoRA, demo-model and batch runs are in `test_crash_resume.py`).
Same machinery: real processes, tiny models, kill delays from ATELIER_CRASH_SEED.
"""
from __future__ import annotations

import json
import random
import sys
from pathlib import Path
from typing import Callable

import pytest
from crash_tools import (
    SEED,
    assert_no_partial_files,
    atelier,
    kill_and_resume,
    sha256,
    timed_run,
)


def _pairs(folder: Path) -> Path:
    """An A/B export of four red-over-blue pairs (what `atelier ab export-pairs` writes)."""
    from PIL import Image

    folder.mkdir(parents=True)
    rows = []
    for i in range(4):
        Image.new("RGB", (64, 64), (200 + 10 * i, 30, 30)).save(folder / f"red{i}.png")
        Image.new("RGB", (64, 64), (30, 30, 200 + 10 * i)).save(folder / f"blue{i}.png")
        rows.append({"prompt": f"a product {i % 2}", "chosen": f"red{i}.png", "rejected": f"blue{i}.png"})
    (folder / "pairs.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return folder / "pairs.jsonl"


@pytest.mark.slow
def test_dpo_survives_sigkill(tmp_path, tiny_sd):
    rng = random.Random(SEED + 3)
    print(f"ATELIER_CRASH_SEED={SEED}")
    pairs = _pairs(tmp_path / "ab")

    def cmd(out: Path) -> list[str]:
        return atelier("finetune", "dpo", "--pairs", str(pairs), "--base-model", str(tiny_sd), "--out", str(out),
                       "--steps", "30", "--batch-size", "2", "--rank", "4", "--checkpoint-every", "3", "--seed", "4",
                       "--resume", "latest", "--json-out", str(out.parent / f"{out.name}-report.json"))

    ref_ckpts = tmp_path / "ref" / "checkpoints"
    _, window = timed_run(cmd(tmp_path / "ref"), lambda: ref_ckpts.is_dir() and any(ref_ckpts.glob("step-*")))
    out = tmp_path / "run"
    ckpts = out / "checkpoints"
    killed = kill_and_resume(cmd(out), lambda: ckpts.is_dir() and any(ckpts.glob("step-*")), rng=rng, window_s=window)
    assert killed >= 1, "no run was killed: training finished too fast for this test"
    assert_no_partial_files(out)
    name = "pytorch_lora_weights.safetensors"
    assert sha256(out / name) == sha256(tmp_path / "ref" / name)
    report = json.loads((tmp_path / "run-report.json").read_text())  # written by the final run only
    assert report["steps"] == 30 and report["resumed_from_step"] > 0, "the final run did not resume"


# `atelier finetune adapter` spends ~45 s building leave-one-out examples for every demo user before it
# trains; this runs the same `train_adapter` on 40 users so each process takes seconds.
ADAPTER = """
import sys
from pipelines.device import set_threads
set_threads(1)
from finetune.adapter import AdapterTrainConfig, train_adapter
from finetune.data import UserConditions
from recommenders.shop import DemoShop
shop = DemoShop.load()
users = UserConditions(shop.interactions, shop.catalog)
cfg = AdapterTrainConfig(steps=30, batch_size=4, items_per_user=1, checkpoint_every=3, seed=2)
report = train_adapter(sys.argv[1], users, sorted(users.user_ids)[:40], sys.argv[2], cfg, resume="latest",
                       progress=False)
from core.io import atomic_write_json
atomic_write_json(sys.argv[2] + "-report.json", report)
"""


@pytest.mark.slow
def test_adapter_survives_sigkill(tmp_path, tiny_sd):
    rng = random.Random(SEED + 4)
    print(f"ATELIER_CRASH_SEED={SEED}")
    ref_ckpts = tmp_path / "ref" / "checkpoints"
    _, window = timed_run([sys.executable, "-c", ADAPTER, str(tiny_sd), str(tmp_path / "ref")],
                          lambda: ref_ckpts.is_dir() and any(ref_ckpts.glob("step-*")))
    out = tmp_path / "run"
    ckpts = out / "checkpoints"
    killed = kill_and_resume([sys.executable, "-c", ADAPTER, str(tiny_sd), str(out)],
                             lambda: ckpts.is_dir() and any(ckpts.glob("step-*")), rng=rng, window_s=window)
    assert killed >= 1, "no run was killed: training finished too fast for this test"
    assert_no_partial_files(out)
    assert sha256(out / "model.safetensors") == sha256(tmp_path / "ref" / "model.safetensors")
    assert (out / "config.json").read_bytes() == (tmp_path / "ref" / "config.json").read_bytes()
    report = json.loads((tmp_path / "run-report.json").read_text())  # written by the final run only
    assert report["steps"] == 30 and report["resumed_from_step"] > 0, "the final run did not resume"


@pytest.mark.slow
def test_reward_rerun_after_sigkill_gives_the_same_model(tmp_path):
    """`finetune reward` has no checkpoints (it trains in seconds): a kill at a random moment leaves no partial
    file, and rerunning the command from scratch writes the same bytes as an uninterrupted run."""
    rng = random.Random(SEED + 5)
    print(f"ATELIER_CRASH_SEED={SEED}")

    def cmd(out: Path) -> list[str]:
        return atelier("finetune", "reward", "--out", str(out), "--epochs", "20", "--seed", "1")

    _, window = timed_run(cmd(tmp_path / "ref"), lambda: True)
    out = tmp_path / "run"
    killed = kill_and_resume(cmd(out), lambda: True, rng=rng, window_s=window, kills=1)
    assert killed == 1, "the run finished before the kill"
    assert_no_partial_files(out)
    for name in ("model.safetensors", "config.json"):
        assert sha256(out / name) == sha256(tmp_path / "ref" / name), name


@pytest.mark.slow
def test_reward_loop_survives_sigkill(tmp_path, tiny_sd):
    """`finetune reward-loop --resume latest`, killed once round 1 is recorded: the final run skips the recorded
    rounds, redoes a cut-off one from its start, and ends with an uninterrupted run's report and LoRA bytes."""
    rng = random.Random(SEED + 6)
    print(f"ATELIER_CRASH_SEED={SEED}")
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("a red shirt\na blue hat\n")

    def cmd(out: Path) -> list[str]:
        return atelier("finetune", "reward-loop", "--reward-model", "oracle", "--base-model", str(tiny_sd),
                       "--prompts", str(prompts), "--out", str(out), "--rounds", "3", "--candidates", "4", "--keep",
                       "0.5", "--lora-steps", "4", "--lora-rank", "2", "--batch-size", "2", "--sample-steps", "2",
                       "--eval-seeds", "2", "--seed", "1", "--resume", "latest",
                       "--json-out", str(out.parent / f"{out.name}-report.json"))

    def round_done(out: Path) -> Callable[[], bool]:
        state = out / "loop-state.json"  # written atomically: it reads back whole or not at all
        return lambda: state.is_file() and len(json.loads(state.read_text())["rounds"]) >= 1

    _, window = timed_run(cmd(tmp_path / "ref"), round_done(tmp_path / "ref"))
    out = tmp_path / "run"
    killed = kill_and_resume(cmd(out), round_done(out), rng=rng, window_s=window)
    assert killed >= 1, "no run was killed: the loop finished too fast for this test"
    assert_no_partial_files(out)

    def comparable(report: dict) -> dict:  # timings, paths and the resume count may differ
        drop = ("seconds", "total_seconds", "resumed_from_round")
        return {**{k: v for k, v in report.items() if k not in drop},
                "rounds": [{k: v for k, v in r.items() if k not in ("seconds", "lora")} for r in report["rounds"]]}

    ref = json.loads((tmp_path / "ref-report.json").read_text())
    report = json.loads((tmp_path / "run-report.json").read_text())  # written by the final run only
    print(f"killed {killed}x; the final run resumed after round {report['resumed_from_round']}")
    assert report["resumed_from_round"] >= 1, "the final run did not resume"
    assert comparable(report) == comparable(ref)
    for r in (1, 2, 3):
        name = f"round-{r}/pytorch_lora_weights.safetensors"
        assert sha256(out / name) == sha256(tmp_path / "ref" / name), name
        kept = {p.name: sha256(p) for p in (out / f"round-{r}" / "kept").glob("*.png")}
        assert kept == {p.name: sha256(p) for p in (tmp_path / "ref" / f"round-{r}" / "kept").glob("*.png")}


def _cf_csv(path: Path) -> Path:
    """300 users' histories over 120 items in 10 taste groups: an interactions CSV `rec train` reads."""
    import numpy as np

    rng = np.random.default_rng(0)
    rows = ["user_id,item_id,timestamp"]
    for u in range(300):
        for k, i in enumerate(rng.choice(120, size=rng.integers(8, 25), replace=False)):
            rows.append(f"u{u},i{(i + u // 30 * 7) % 120},{1_600_000_000 + 100 * k}")
    path.write_text("\n".join(rows) + "\n")
    return path


@pytest.mark.slow
@pytest.mark.parametrize("model", ["diffrec", "multivae"])
def test_rec_train_resumes_after_sigkill_to_the_same_model(tmp_path, model):
    """`rec train` of DiffRec / MultiVAE checkpoints every epoch: a kill at a random moment after the first
    checkpoint leaves no partial file, and rerunning the command resumes and writes the bytes of an
    uninterrupted run."""
    rng = random.Random(SEED + 7)
    print(f"ATELIER_CRASH_SEED={SEED}")
    data = _cf_csv(tmp_path / "tiny.csv")

    def cmd(out: Path) -> list[str]:  # no early stop, so training is most of the run and most kills land in it
        return atelier("rec", "train", "--data", str(data), "--model", model, "--out", str(out), "--seed", "2",
                       "--set", "epochs=300", "--set", "patience=1000", "--json-out", str(out) + "-report.json")

    def started(out: Path) -> Callable[[], bool]:
        return lambda: (out / ".checkpoint" / "checkpoint.json").is_file()

    _, window = timed_run(cmd(tmp_path / "ref"), started(tmp_path / "ref"))
    ref = json.loads((tmp_path / "ref-report.json").read_text())
    print(f"{model}: {ref['train_s']:.1f} s of training in a {window:.1f} s run")
    out = tmp_path / "run"
    killed = kill_and_resume(cmd(out), started(out), rng=rng, window_s=window)
    assert killed >= 1, "the run finished before the kill"
    assert_no_partial_files(out)
    for name in ("model.safetensors", "config.json"):
        assert sha256(out / name) == sha256(tmp_path / "ref" / name), name
    report = json.loads((tmp_path / "run-report.json").read_text())
    assert report["test"] == ref["test"] and report["epochs_run"] == ref["epochs_run"]


def _seq_folder(folder: Path) -> Path:
    """A zhihu-format next-item data set (train/valid/test.npz): next = last + 1 most of the time."""
    import numpy as np

    rng = np.random.default_rng(0)
    folder.mkdir(parents=True)
    n_items, length = 40, 6
    for name, n in (("train", 2000), ("valid", 200), ("test", 200)):
        seq = np.full((n, length), n_items, np.int64)
        lens = rng.integers(1, length + 1, n)
        target = np.zeros(n, np.int64)
        for r in range(n):
            x = int(rng.integers(n_items))
            for j in range(lens[r]):
                seq[r, j] = x
                x = (x + 1) % n_items if rng.random() < 0.8 else int(rng.integers(n_items))
            target[r] = x
        np.savez(folder / f"{name}.npz", seq=seq, seq_len=lens, target=target)
    return folder


@pytest.mark.slow
@pytest.mark.parametrize("model", ["sasrec", "dreamrec"])
def test_rec_train_of_a_sequence_model_resumes_after_sigkill(tmp_path, model):
    """Next-item models checkpoint every epoch: killed runs resume after their last finished epoch and
    end with the bytes of an uninterrupted run."""
    rng = random.Random(SEED + 11)
    print(f"ATELIER_CRASH_SEED={SEED}")
    data = _seq_folder(tmp_path / "seq")

    def cmd(out: Path) -> list[str]:
        return atelier("rec", "train", "--data", str(data), "--model", model, "--out", str(out), "--seed", "5",
                       "--set", "hidden=16", "--set", "epochs=40", "--set", "patience=1000", "--set", "max_train_seconds=0",
                       "--set", "batch_size=64", "--json-out", str(out) + "-report.json")

    def started(out: Path) -> Callable[[], bool]:
        return lambda: (out / ".checkpoint" / "checkpoint.json").is_file()

    _, window = timed_run(cmd(tmp_path / "ref"), started(tmp_path / "ref"))
    out = tmp_path / "run"
    killed = kill_and_resume(cmd(out), started(out), rng=rng, window_s=window)
    assert killed >= 1, "the run finished before the kill"
    assert_no_partial_files(out)
    assert not (out / ".checkpoint").exists()  # removed once the model is saved
    for name in ("model.safetensors", "config.json"):
        assert sha256(out / name) == sha256(tmp_path / "ref" / name), name
    report = json.loads((tmp_path / "run-report.json").read_text())
    ref = json.loads((tmp_path / "ref-report.json").read_text())
    assert report["test"]["hr@10"] == ref["test"]["hr@10"] and report["epochs_run"] == 40
