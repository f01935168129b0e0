"""Loaders refuse what they cannot read (issue 17): one `error:` line naming the file and the problem, exit 2.

Each case writes a small data set in one of the benchmark formats (shared/data/README.md: CF `*_list.npy`,
sequence `*.npz` right-padded with pad id = n_items, sequence `*_data.txt` 1-indexed) with one defect, and
runs `atelier data info` (and `rec train` / `rec bench` where the issue saw the crash) in this process.
Also here: a model of the wrong kind for the data, and `--config` refused for every data kind.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from cli_tools import run_cli

N_ITEMS = 6
L = 4




def assert_refused(argv: list[str], *needles: str) -> str:
    """The command exits 2 with exactly one `error:` line (no traceback) containing every needle."""
    code, out, err = run_cli(argv)
    lines = [x for x in err.strip().splitlines() if x.strip()]
    assert code == 2, (code, out, err)
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    assert "Traceback" not in err + out
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])
    return lines[0]


# --- writers of small, valid data sets ------------------------------------------------------------------
def good_seq_arrays(n: int = 8) -> dict[str, np.ndarray]:
    """Right-padded histories (pad id = N_ITEMS), seq_len = real items, targets in 0..N_ITEMS-1."""
    rng = np.random.default_rng(0)
    seq = np.full((n, L), N_ITEMS, np.int64)
    lens = rng.integers(1, L + 1, size=n)
    for r, k in enumerate(lens):
        seq[r, :k] = rng.integers(0, N_ITEMS, size=k)
    seq[0, :] = N_ITEMS - 1  # a full row uses the largest item id
    lens[0] = L
    seq[1, :] = N_ITEMS  # an empty history: all pad, seq_len 1 (the zhihu convention)
    lens[1] = 1
    return {"seq": seq, "seq_len": lens.astype(np.int64), "target": rng.integers(0, N_ITEMS, size=n)}


def write_npz(folder: Path, broken: dict | None = None, split: str = "train") -> Path:
    """A seq-npz folder; `broken` replaces arrays of one split."""
    folder.mkdir(parents=True, exist_ok=True)
    for s in ("train", "valid", "test"):
        arrays = good_seq_arrays()
        if s == split and broken:
            arrays.update(broken)
        np.savez(folder / f"{s}.npz", **arrays)
    return folder


def write_cf(folder: Path, train: np.ndarray | None = None) -> Path:
    """A cf-npy folder of 12 users x 8 items."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    pairs = np.asarray([(u, i) for u in range(12) for i in range(8) if rng.random() < 0.6], np.int64)
    rng.shuffle(pairs)
    k1, k2 = int(0.7 * len(pairs)), int(0.9 * len(pairs))
    np.save(folder / "train_list.npy", pairs[:k1] if train is None else train)
    np.save(folder / "valid_list.npy", pairs[k1:k2])
    np.save(folder / "test_list.npy", pairs[k2:])
    return folder


def write_txt(folder: Path, train_text: str | None = None) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    good = "1 2 3 4\n2 3 4 5\n3 4 5 6\n1 3 5 2\n"
    for s in ("train", "valid", "test"):
        (folder / f"{s}_data.txt").write_text(train_text if (s == "train" and train_text is not None) else good)
    return folder


# --- sequence npz -----------------------------------------------------------------------------------------
def test_good_npz_loads(tmp_path):
    code, out, err = run_cli(["data", "info", str(write_npz(tmp_path / "ok"))])
    assert code == 0, err
    assert "sequential" in out


def test_npz_object_dtype_is_refused_by_data_info(tmp_path):
    folder = tmp_path / "obj"
    write_npz(folder)
    arrays = good_seq_arrays()
    np.savez(folder / "train.npz", seq=arrays["seq"].astype(object), seq_len=arrays["seq_len"],
             target=arrays["target"])
    assert_refused(["data", "info", str(folder)], "train.npz", "seq", "object")


def test_npz_negative_target_is_refused_before_training(tmp_path):
    target = good_seq_arrays()["target"]
    target[3] = -1
    folder = write_npz(tmp_path / "neg", {"target": target})
    assert_refused(["data", "info", str(folder)], "train.npz", "target", "negative")
    assert_refused(["rec", "train", "--data", str(folder), "--model", "seq-mostpop", "--out", str(tmp_path / "m")],
                   "train.npz", "negative")


def test_npz_left_padding_is_refused(tmp_path):
    arrays = good_seq_arrays()
    seq = arrays["seq"].copy()
    seq[2] = [N_ITEMS, N_ITEMS, 1, 2]  # pad first, items after: left padding
    lens = arrays["seq_len"].copy()
    lens[2] = 2
    folder = write_npz(tmp_path / "left", {"seq": seq, "seq_len": lens})
    assert_refused(["data", "info", str(folder)], "train.npz", "row 2", "left-padded")


def test_npz_float_ids_are_refused(tmp_path):
    arrays = good_seq_arrays()
    folder = write_npz(tmp_path / "float", {"seq": arrays["seq"].astype(np.float64) + 0.5})
    assert_refused(["data", "info", str(folder)], "train.npz", "seq", "float64", "integer")


def test_npz_float_targets_are_refused_even_when_whole(tmp_path):
    folder = write_npz(tmp_path / "floatt", {"target": good_seq_arrays()["target"].astype(np.float32)})
    assert_refused(["data", "info", str(folder)], "train.npz", "target", "integer")


def test_npz_seq_len_contradicting_padding_is_refused(tmp_path):
    lens = good_seq_arrays()["seq_len"].copy()
    lens[0] = 2  # the row holds 4 real items
    folder = write_npz(tmp_path / "len", {"seq_len": lens})
    assert_refused(["data", "info", str(folder)], "train.npz", "row 0", "seq_len 2", "4")


def test_npz_mismatched_lengths_are_refused(tmp_path):
    folder = write_npz(tmp_path / "n", {"target": good_seq_arrays()["target"][:5]}, split="valid")
    assert_refused(["data", "info", str(folder)], "valid.npz", "rows")


def test_npz_target_at_the_pad_id_is_refused(tmp_path):
    target = good_seq_arrays()["target"]
    target[0] = N_ITEMS
    folder = write_npz(tmp_path / "padt", {"target": target}, split="test")
    assert_refused(["data", "info", str(folder)], "test.npz", "target", "pad id")


def test_npz_that_is_not_an_npz_is_refused(tmp_path):
    folder = write_npz(tmp_path / "junk")
    (folder / "valid.npz").write_bytes(b"not a zip file at all")
    assert_refused(["data", "info", str(folder)], "valid.npz", "npz")


def test_npz_one_dimensional_seq_is_refused(tmp_path):
    folder = write_npz(tmp_path / "flat", {"seq": np.arange(8, dtype=np.int64)})
    assert_refused(["data", "info", str(folder)], "train.npz", "seq", "(N, L)")


# --- CF npy -------------------------------------------------------------------------------------------------
def test_good_cf_loads(tmp_path):
    code, out, err = run_cli(["data", "info", str(write_cf(tmp_path / "ok"))])
    assert code == 0, err
    assert "collaborative" in out


def test_cf_float_ids_are_refused(tmp_path):
    folder = write_cf(tmp_path / "f")
    np.save(folder / "valid_list.npy", np.load(folder / "valid_list.npy").astype(np.float32))
    assert_refused(["data", "info", str(folder)], "valid_list.npy", "integer")


def test_cf_object_array_is_refused(tmp_path):
    folder = write_cf(tmp_path / "o")
    np.save(folder / "test_list.npy", np.asarray([[0, 1], [1, "x"]], dtype=object), allow_pickle=True)
    assert_refused(["data", "info", str(folder)], "test_list.npy", "object")


def test_cf_object_item_emb_is_refused(tmp_path):
    folder = write_cf(tmp_path / "e")
    np.save(folder / "item_emb.npy", np.empty((8, 2), dtype=object), allow_pickle=True)
    assert_refused(["data", "info", str(folder)], "item_emb.npy", "object")


def test_cf_non_finite_item_emb_is_refused(tmp_path):
    folder = write_cf(tmp_path / "nan")
    emb = np.zeros((8, 3), np.float32)
    emb[2, 1] = np.nan
    np.save(folder / "item_emb.npy", emb)
    assert_refused(["data", "info", str(folder)], "item_emb.npy", "finite")


def test_cf_empty_train_is_refused(tmp_path):
    folder = write_cf(tmp_path / "empty", train=np.zeros((0, 2), np.int64))
    assert_refused(["data", "info", str(folder)], "train_list.npy", "empty")


def test_cf_negative_id_is_refused(tmp_path):
    folder = write_cf(tmp_path / "neg", train=np.asarray([[0, 1], [-1, 2]], np.int64))
    assert_refused(["data", "info", str(folder)], "train_list.npy", "negative")


def test_cf_bench_on_fewer_items_than_its_top_k_is_one_line(tmp_path):
    folder = write_cf(tmp_path / "small")
    assert_refused(["rec", "bench", "--data", str(folder), "--models", "mostpop", "--seeds", "1", "--quiet"],
                   "has 8 items", "top 50")
    assert_refused(["rec", "train", "--data", str(folder), "--model", "ease", "--out", str(tmp_path / "m")],
                   "has 8 items", "top 50")
    seq = write_npz(tmp_path / "seq")  # 6 items; a derived sequence config ranks a top 20 at least
    assert_refused(["rec", "train", "--data", str(seq), "--model", "seq-mostpop", "--out", str(tmp_path / "s")],
                   "has 6 items", "top ")


# --- sequence txt ----------------------------------------------------------------------------------------------
def test_txt_float_id_is_refused(tmp_path):
    folder = write_txt(tmp_path / "t", "1 2 3\n1 2.5 3\n")
    assert_refused(["data", "info", str(folder)], "train_data.txt:2", "integer")


def test_txt_empty_split_is_refused(tmp_path):
    folder = write_txt(tmp_path / "e", "\n\n")
    assert_refused(["data", "info", str(folder)], "train_data.txt", "no sequences")


# --- a model of the wrong kind for the data ----------------------------------------------------------------------
def test_cf_model_on_sequence_data_is_one_line(tmp_path):
    folder = write_npz(tmp_path / "seq")
    for argv in (["rec", "bench", "--data", str(folder), "--models", "ease", "--seeds", "1", "--quiet"],
                 ["rec", "train", "--data", str(folder), "--model", "ease", "--out", str(tmp_path / "m")]):
        line = assert_refused(argv, "ease is a CF model", "holds sequence data", "sasrec", "dreamrec")
        assert "unknown" not in line


def test_sequence_model_on_cf_data_is_one_line(tmp_path):
    folder = write_cf(tmp_path / "cf")
    for argv in (["rec", "bench", "--data", str(folder), "--models", "ease,sasrec", "--seeds", "1", "--quiet"],
                 ["rec", "train", "--data", str(folder), "--model", "sasrec", "--task", "cf",
                  "--out", str(tmp_path / "m")]):
        line = assert_refused(argv, "sasrec is a sequence model", "holds CF data", "ease", "diffrec")
        assert "unknown" not in line


# --- --config honoured or refused for every data kind ---------------------------------------------------------
@pytest.mark.parametrize("kind", ["cf", "npz", "txt"])
def test_missing_config_file_is_refused(tmp_path, kind):
    folder = {"cf": write_cf, "npz": write_npz, "txt": write_txt}[kind](tmp_path / kind)
    model = "mostpop"
    missing = tmp_path / "nope.yaml"
    assert_refused(["rec", "bench", "--data", str(folder), "--models", model, "--seeds", "1", "--quiet",
                    "--config", str(missing)], "nope.yaml", "not found")
    assert_refused(["rec", "train", "--data", str(folder), "--model", model, "--out", str(tmp_path / "m"),
                    "--config", str(missing)], "nope.yaml", "not found")


def test_config_of_the_other_kind_is_refused(tmp_path, repo_root):
    seq = write_npz(tmp_path / "seq")
    cf_yaml = repo_root / "recommenders" / "configs" / "ml-1m_clean.yaml"
    assert_refused(["rec", "bench", "--data", str(seq), "--models", "mostpop", "--seeds", "1", "--quiet",
                    "--config", str(cf_yaml)], "ml-1m_clean.yaml", "CF", "sequence data")
    cf = write_cf(tmp_path / "cf")
    seq_yaml = repo_root / "recommenders" / "configs" / "zhihu.yaml"
    assert_refused(["rec", "train", "--data", str(cf), "--model", "mostpop", "--out", str(tmp_path / "m"),
                    "--config", str(seq_yaml)], "zhihu.yaml", "sequence", "CF data")


@pytest.mark.parametrize("kind", ["cf", "npz"])
def test_config_with_unknown_model_key_is_refused(tmp_path, kind):
    folder = {"cf": write_cf, "npz": write_npz}[kind](tmp_path / kind)
    cfg = tmp_path / "c.yaml"
    cfg.write_text("models:\n  mostpop: {}\n  easy: {l2: 10}\n")
    assert_refused(["rec", "bench", "--data", str(folder), "--models", "mostpop", "--seeds", "1", "--quiet",
                    "--config", str(cfg)], "c.yaml", "easy", "unknown model")


@pytest.mark.parametrize("kind", ["cf", "npz"])
def test_config_without_the_model_run_is_refused_not_defaulted(tmp_path, kind):
    folder = {"cf": write_cf, "npz": write_npz}[kind](tmp_path / kind)
    cfg = tmp_path / "c.yaml"
    cfg.write_text("models:\n  mostpop: {}\n" if kind == "cf" else "models:\n  seq-mostpop: {}\n")
    model = "ease" if kind == "cf" else "sasrec"
    assert_refused(["rec", "train", "--data", str(folder), "--model", model, "--out", str(tmp_path / "m"),
                    "--config", str(cfg)], "c.yaml", f"no settings for {model}", "class defaults")
