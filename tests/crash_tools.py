"""Helpers for the crash tests: run a command, SIGKILL it at a random moment, resume it, and check that
nothing partial is left (used by test_crash_resume, test_reliability_training_resume, test_lora_determinism)."""
from __future__ import annotations

import hashlib
import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable

ROOT = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "ATELIER_THREADS": "1", "HF_HUB_OFFLINE": "1",
       "GRADIO_ANALYTICS_ENABLED": "False", "PYTHONPATH": str(ROOT)}
SEED = int(os.environ.get("ATELIER_CRASH_SEED", time.time_ns() % 100_000))
PARTIAL_PATTERNS = (".*.tmp", "*.partial", ".*.partial", "*.tmp-*", "*.incomplete", ".lora-*")


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def timed_run(cmd: list[str], started: Callable[[], bool], timeout_s: float = 900) -> tuple[str, float]:
    """Run `cmd` to the end; return (stdout, seconds from `started()` turning true to the end): the window
    in which a kill lands mid-work."""
    proc = subprocess.Popen(cmd, cwd=ROOT, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    t_start, deadline = None, time.time() + timeout_s
    while proc.poll() is None and time.time() < deadline:
        if t_start is None and started():
            t_start = time.time()
        time.sleep(0.02)
    out, err = proc.communicate(timeout=timeout_s)
    assert proc.returncode == 0, f"{cmd} failed:\n{err[-3000:]}"
    return out, time.time() - (t_start or time.time())


def kill_and_resume(cmd: list[str], started: Callable[[], bool], *, rng: random.Random, window_s: float,
                    kills: int = 2, timeout_s: float = 600) -> int:
    """Run `cmd`; once `started()` is true, SIGKILL it after a random share of `window_s` (the reference
    run's time from that point to its end); repeat on the resumed run; then run it to the end.

    Returns how many runs were really killed (a run may finish before its kill lands).
    """
    max_delay_s = window_s
    killed = 0
    for _ in range(kills):
        proc = subprocess.Popen(cmd, cwd=ROOT, env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.time() + timeout_s
        while proc.poll() is None and not started() and time.time() < deadline:
            time.sleep(0.02)
        time.sleep(rng.uniform(0.05, 0.6) * max_delay_s)
        max_delay_s /= 2  # the resumed run has less left to do
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            proc.wait()
            killed += 1
        else:
            err = proc.stderr.read().decode(errors="replace")
            assert proc.returncode == 0, f"{cmd} failed before the kill:\n{err[-3000:]}"
            break
    final = subprocess.run(cmd, cwd=ROOT, env=ENV, capture_output=True, text=True, timeout=timeout_s)
    assert final.returncode == 0, f"resume failed:\n{final.stderr[-3000:]}"
    return killed


def assert_no_partial_files(folder: Path) -> None:
    """No temp/partial files, and every PNG, safetensors, JSON and JSONL file reads back whole."""
    from PIL import Image
    from safetensors import safe_open

    leftovers = [p for pat in PARTIAL_PATTERNS for p in folder.rglob(pat)]
    assert not leftovers, f"partial files left: {leftovers[:5]}"
    for p in folder.rglob("*"):
        if not p.is_file():
            continue
        if p.suffix == ".png":
            with Image.open(p) as im:
                im.load()
        elif p.suffix == ".safetensors":
            with safe_open(str(p), "pt") as f:
                for k in f.keys():
                    f.get_tensor(k)
        elif p.suffix == ".json":
            json.loads(p.read_text())
        elif p.suffix == ".jsonl":
            for line in p.read_text().splitlines():
                if line.strip():
                    json.loads(line)


def atelier(*args: str) -> list[str]:
    """`atelier ARGS` as a command line for this interpreter."""
    return [sys.executable, "-m", "app.cli", *args]


def caption_folder(folder: Path) -> Path:
    """Four flat-color squares with captions: a LoRA training set made in milliseconds."""
    from PIL import Image

    folder.mkdir(parents=True)
    for i, rgb in enumerate([(220, 30, 30), (30, 40, 220), (30, 200, 60), (240, 220, 30)]):
        im = Image.new("RGB", (64, 64), rgb)
        im.paste((255, 255, 255), (16, 16, 48, 48))
        im.save(folder / f"{i}.png")
        (folder / f"{i}.txt").write_text(f"a square number {i}")
    return folder
