"""Benchmark and shop data sets as split matrices (collaborative filtering) or next-item rows (sequential)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from core.errors import InputError

from .splits import CFSplits, SeqSplit, SeqSplits

CF_FORMATS = {"cf-npy"}
SEQ_FORMATS = {"seq-npz", "seq-txt"}


def detect_format(path: str | Path) -> str:
    """Name the data format of a folder or file, or raise a clear error."""
    p = Path(path)
    if str(path) == "demo":
        return "demo"
    if not p.exists():
        raise InputError("data path not found", p)
    if p.is_file():
        if p.suffix.lower() == ".csv":
            return "interactions-csv"
        raise InputError("unsupported data file (expected an interactions .csv or a benchmark folder)", p)
    if (p / "train_list.npy").exists():
        return "cf-npy"
    if (p / "train.npz").exists():
        return "seq-npz"
    if (p / "train_data.txt").exists():
        return "seq-txt"
    if (p / "interactions.csv").exists():
        return "shop"
    raise InputError("no known data set here (expected train_list.npy, train.npz, train_data.txt or interactions.csv)", p)


def _read_npy(path: Path) -> np.ndarray:
    """One plain .npy array (never a pickle), or one error naming the file."""
    if not path.exists():
        raise InputError("file missing from the data set", path)
    try:
        return np.load(path, allow_pickle=False)
    except ValueError as e:
        if "allow_pickle" in str(e):
            raise InputError("holds an object array (pickled Python objects); expected a plain numeric array",
                             path) from None
        raise InputError(f"not a plain .npy array ({e})", path) from None
    except (OSError, EOFError) as e:
        raise InputError(f"not a readable .npy file ({e})", path) from None


def _check_ids(arr: np.ndarray, what: str, path: Path, shape: str) -> np.ndarray:
    """Integer ids (never floats, even whole ones: a float id means the file was written wrong), none negative."""
    if not np.issubdtype(arr.dtype, np.integer):
        raise InputError(f"{what} must be an integer array {shape}, got {arr.dtype}", path)
    if arr.size and int(arr.min()) < 0:
        raise InputError(f"{what} holds a negative id ({int(arr.min())}); ids are 0-indexed", path)
    return arr.astype(np.int64)


def _load_pairs(path: Path) -> np.ndarray:
    arr = _read_npy(path)
    if arr.ndim != 2 or arr.shape[1] != 2:
        raise InputError(f"expected an integer array of shape (N, 2) of [user, item], got {arr.dtype} {arr.shape}",
                         path)
    return _check_ids(arr, "[user, item] pairs", path, "of shape (N, 2)")


def _load_cf_npy(folder: Path) -> CFSplits:
    import scipy.sparse as sp

    parts = {s: _load_pairs(folder / f"{s}_list.npy") for s in ("train", "valid", "test")}
    for s, a in parts.items():
        if not len(a) and s != "valid":
            raise InputError("is empty: no [user, item] pairs", folder / f"{s}_list.npy")
    n_users = 1 + max(int(a[:, 0].max()) for a in parts.values() if len(a))
    n_items = 1 + max(int(a[:, 1].max()) for a in parts.values() if len(a))

    def csr(a: np.ndarray):
        m = sp.csr_matrix((np.ones(len(a), np.float32), (a[:, 0], a[:, 1])), shape=(n_users, n_items))
        m.data[:] = 1.0
        return m

    emb = None
    if (folder / "item_emb.npy").exists():
        path = folder / "item_emb.npy"
        emb = _read_npy(path)
        if emb.ndim != 2 or not np.issubdtype(emb.dtype, np.number) or np.issubdtype(emb.dtype, np.complexfloating):
            raise InputError(f"expected a real (n_items, dim) array, got {emb.dtype} {emb.shape}", path)
        emb = emb.astype(np.float32)
        if emb.shape[0] != n_items:
            raise InputError(f"item_emb.npy has {emb.shape[0]} rows for {n_items} items", path)
        if not np.isfinite(emb).all():
            raise InputError("holds non-finite values (NaN or inf); embeddings must be finite", path)
    return CFSplits(folder.name, csr(parts["train"]), csr(parts["valid"]), csr(parts["test"]), item_emb=emb)


def _read_npz(path: Path) -> dict[str, np.ndarray]:
    """The seq, seq_len and target arrays of one split file (plain arrays only), or one error naming it."""
    import zipfile

    if not path.exists():
        raise InputError("file missing from the data set", path)
    try:
        with np.load(path, allow_pickle=False) as d:
            if not hasattr(d, "files"):
                raise InputError("is a single .npy array; expected an .npz with seq, seq_len and target", path)
            missing = {"seq", "seq_len", "target"} - set(d.files)
            if missing:
                raise InputError(f"missing arrays: {', '.join(sorted(missing))}", path)
            out = {}
            for name in ("seq", "seq_len", "target"):
                try:
                    out[name] = d[name]
                except ValueError:
                    raise InputError(f"array {name} holds objects (pickled Python objects); expected integers",
                                     path) from None
            return out
    except (zipfile.BadZipFile, OSError, EOFError, ValueError) as e:
        raise InputError(f"not a readable .npz file ({e})", path) from None


def _check_seq_split(d: dict[str, np.ndarray], path: Path) -> SeqSplit:
    """dtype, shape and range checks of one split; padding and seq_len are checked once the pad id is known."""
    seq = _check_ids(d["seq"], "seq", path, "(N, L)")
    lens = _check_ids(d["seq_len"], "seq_len", path, "(N,)")
    target = _check_ids(d["target"], "target", path, "(N,)")
    if seq.ndim != 2 or seq.shape[1] < 1:
        raise InputError(f"seq must be (N, L) item ids, got shape {seq.shape}", path)
    if lens.ndim != 1 or target.ndim != 1:
        raise InputError(f"seq_len and target must be 1-D, got shapes {lens.shape} and {target.shape}", path)
    if not (len(seq) == len(lens) == len(target)):
        raise InputError(f"rows differ: seq {len(seq)}, seq_len {len(lens)}, target {len(target)}", path)
    if not len(seq):
        raise InputError("has no rows", path)
    return SeqSplit(seq, lens, target)


def _check_padding(split: SeqSplit, pad: int, path: Path) -> None:
    """Right padding with the pad id, and seq_len = the real items in each row (1 for an empty history)."""
    is_pad = split.seq == pad
    real = (~is_pad).sum(1)
    width = split.seq.shape[1]
    # right padding: once a row has a pad, everything after it is pad
    after_pad = np.logical_or.accumulate(is_pad, axis=1) & ~is_pad
    bad = np.flatnonzero(after_pad.any(1))
    if len(bad):
        r = int(bad[0])
        raise InputError(f"row {r} is left-padded (pad id {pad} before item ids: {split.seq[r].tolist()}); "
                         f"histories must be right-padded", path)
    expected = np.maximum(real, 1)
    bad = np.flatnonzero(split.seq_len != expected)
    if len(bad):
        r = int(bad[0])
        raise InputError(f"row {r}: seq_len {int(split.seq_len[r])} contradicts the padding ({int(real[r])} real "
                         f"item(s) of {width}; an empty history has seq_len 1); {len(bad)} row(s) like it", path)
    if int(split.target.max()) >= pad:
        r = int(np.argmax(split.target >= pad))
        raise InputError(f"row {r}: target {int(split.target[r])} is >= the pad id {pad} (the largest id in seq); "
                         f"targets must be item ids 0..{pad - 1}", path)


def _load_seq_npz(folder: Path) -> SeqSplits:
    files = {s: folder / f"{s}.npz" for s in ("train", "valid", "test")}
    splits = {s: _check_seq_split(_read_npz(f), f) for s, f in files.items()}
    widths = {s: sp.seq.shape[1] for s, sp in splits.items()}
    if len(set(widths.values())) > 1:
        raise InputError(f"splits have different history lengths L: {widths}", folder)
    # The pad id equals the number of items (DreamRec convention): the largest id in any history.
    n_items = int(max(sp.seq.max() for sp in splits.values()))
    if n_items < 1:
        raise InputError("no pad id found (the largest id in seq must be the pad id = number of items)", folder)
    for s, sp in splits.items():
        _check_padding(sp, n_items, files[s])
    return SeqSplits(folder.name, n_items, splits["train"], splits["valid"], splits["test"])


def _load_seq_txt(folder: Path, max_len: int = 10) -> SeqSplits:
    raw = {}
    for s in ("train", "valid", "test"):
        f = folder / f"{s}_data.txt"
        if not f.exists():
            raise InputError("file missing from the data set", f)
        try:
            text = f.read_text(encoding="utf-8")
        except UnicodeDecodeError:
            raise InputError("not UTF-8 text", f) from None
        rows = []
        for i, line in enumerate(text.splitlines(), start=1):
            if not line.strip():
                continue
            try:
                ids = [int(x) for x in line.split()]
            except ValueError:
                raise InputError("expected space-separated integer item ids", f, i) from None
            if len(ids) < 2 or min(ids) < 1:
                raise InputError("need a history and a target of 1-indexed ids", f, i)
            rows.append(ids)
        if not rows:
            raise InputError("has no sequences", f)
        raw[s] = rows
    n_items = max(max(r) for rows in raw.values() for r in rows)
    pad = n_items

    def make(rows) -> SeqSplit:
        seq = np.full((len(rows), max_len), pad, np.int64)
        lens = np.zeros(len(rows), np.int64)
        for k, r in enumerate(rows):
            hist = [x - 1 for x in r[:-1]][-max_len:]
            seq[k, :len(hist)] = hist
            lens[k] = len(hist)
        return SeqSplit(seq, lens, np.asarray([r[-1] - 1 for r in rows], np.int64))

    return SeqSplits(folder.name, n_items, make(raw["train"]), make(raw["valid"]), make(raw["test"]))


def _demo_interactions():
    from .shop import DemoShop

    shop = DemoShop.load()
    return shop, shop.interactions


def attribute_embeddings(catalog) -> np.ndarray:
    """Item embeddings from catalog attributes (one-hot per kind, L2-normalised): a shared space for conditions."""
    kinds = ["category"] + catalog.attribute_names()
    vocab = {(k, v): j for j, (k, v) in enumerate((k, v) for k in kinds for v in catalog.attribute_values(k))}
    emb = np.zeros((len(catalog), len(vocab)), np.float32)
    for r, it in enumerate(catalog):
        emb[r, vocab[("category", it.category)]] = 1
        for k, v in it.attributes.items():
            emb[r, vocab[(k, v)]] = 1
    return emb / np.maximum(np.linalg.norm(emb, axis=1, keepdims=True), 1e-8)


def _align_to_catalog(inter, catalog):
    """A copy of `inter` with item indices in catalog order (so scores line up with items)."""
    import dataclasses

    pos = {iid: k for k, iid in enumerate(catalog.item_ids)}
    remap = np.asarray([pos[i] for i in inter.item_ids], np.int64)
    return dataclasses.replace(inter, item_index=remap[inter.item_index], item_ids=list(catalog.item_ids))


def load_cf(spec: str | Path) -> CFSplits:
    """Collaborative-filtering splits from a benchmark folder, an interactions CSV, or "demo"."""
    fmt = detect_format(spec)
    if fmt == "cf-npy":
        return _load_cf_npy(Path(spec))
    if fmt == "demo":
        shop, inter = _demo_interactions()
        inter = _align_to_catalog(inter, shop.catalog)
        splits = inter.to_cf_splits(name="demo")
        splits.item_emb = attribute_embeddings(shop.catalog)
        return splits
    if fmt in ("interactions-csv", "shop"):
        from .interactions import load_interactions_csv

        path = Path(spec) / "interactions.csv" if fmt == "shop" else Path(spec)
        return load_interactions_csv(path).to_cf_splits(name=Path(spec).stem)
    raise InputError(f"{spec} is a sequential data set; use a sequential model (dreamrec, sasrec, gru4rec)")


def load_seq(spec: str | Path, max_len: int = 10) -> SeqSplits:
    """Next-item splits from a benchmark folder (zhihu npz, amazon txt), an interactions CSV, or "demo"."""
    fmt = detect_format(spec)
    if fmt == "seq-npz":
        return _load_seq_npz(Path(spec))
    if fmt == "seq-txt":
        return _load_seq_txt(Path(spec), max_len=max_len)
    if fmt == "demo":
        shop, inter = _demo_interactions()
        inter = _align_to_catalog(inter, shop.catalog)
        splits = inter.to_seq_splits(max_len=max_len, name="demo")
        splits.item_emb = attribute_embeddings(shop.catalog)
        return splits
    if fmt in ("interactions-csv", "shop"):
        from .interactions import load_interactions_csv

        path = Path(spec) / "interactions.csv" if fmt == "shop" else Path(spec)
        return load_interactions_csv(path).to_seq_splits(max_len=max_len, name=Path(spec).stem)
    raise InputError(f"{spec} is a collaborative-filtering data set; use a CF model (ease, diffrec, ...)")


def is_sequential(spec: str | Path) -> bool:
    return detect_format(spec) in SEQ_FORMATS


def dataset_info(spec: str | Path) -> dict:
    """Counts for any supported data set: users/items and split sizes."""
    fmt = detect_format(spec)
    if fmt in SEQ_FORMATS:
        d = load_seq(spec)
        return {"format": fmt, "name": d.name, "kind": "sequential", "items": d.n_items,
                "rows": {"train": len(d.train), "valid": len(d.valid), "test": len(d.test)},
                "sequences": len(d.train) + len(d.valid) + len(d.test)}
    d = load_cf(spec)
    info = {"format": fmt, "name": d.name, "kind": "collaborative", "users": d.n_users, "items": d.n_items,
            "interactions": {"train": int(d.train.nnz), "valid": int(d.valid.nnz), "test": int(d.test.nnz)}}
    if fmt == "demo":
        s = load_seq("demo")
        info["sequence_rows"] = {"train": len(s.train), "valid": len(s.valid), "test": len(s.test)}
    return info
