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


def _load_pairs(path: Path) -> np.ndarray:
    if not path.exists():
        raise InputError("file missing from the data set", path)
    try:
        arr = np.load(path, allow_pickle=False)
    except ValueError as e:
        raise InputError(f"not a plain .npy array ({e})", path) from None
    if arr.ndim != 2 or arr.shape[1] != 2 or not np.issubdtype(arr.dtype, np.integer):
        raise InputError(f"expected an integer array of shape (N, 2), got {arr.dtype} {arr.shape}", path)
    if len(arr) and arr.min() < 0:
        raise InputError("negative user or item index", path)
    return arr.astype(np.int64)


def _load_cf_npy(folder: Path) -> CFSplits:
    import scipy.sparse as sp

    parts = {s: _load_pairs(folder / f"{s}_list.npy") for s in ("train", "valid", "test")}
    n_users = 1 + max(int(a[:, 0].max()) for a in parts.values() if len(a))
    n_items = 1 + max(int(a[:, 1].max()) for a in parts.values() if len(a))

    def csr(a: np.ndarray):
        m = sp.csr_matrix((np.ones(len(a), np.float32), (a[:, 0], a[:, 1])), shape=(n_users, n_items))
        m.data[:] = 1.0
        return m

    emb = None
    if (folder / "item_emb.npy").exists():
        emb = np.load(folder / "item_emb.npy", allow_pickle=False).astype(np.float32)
        if emb.shape[0] != n_items:
            raise InputError(f"item_emb.npy has {emb.shape[0]} rows for {n_items} items", folder / "item_emb.npy")
    return CFSplits(folder.name, csr(parts["train"]), csr(parts["valid"]), csr(parts["test"]), item_emb=emb)


def _load_seq_npz(folder: Path) -> SeqSplits:
    splits = {}
    for s in ("train", "valid", "test"):
        f = folder / f"{s}.npz"
        if not f.exists():
            raise InputError("file missing from the data set", f)
        with np.load(f, allow_pickle=False) as d:
            missing = {"seq", "seq_len", "target"} - set(d.files)
            if missing:
                raise InputError(f"missing arrays: {', '.join(sorted(missing))}", f)
            splits[s] = SeqSplit(d["seq"].astype(np.int64), d["seq_len"].astype(np.int64), d["target"].astype(np.int64))
    # The pad id equals the number of items (DreamRec convention): the largest id in any history.
    n_items = int(max(sp.seq.max() for sp in splits.values()))
    if max(int(sp.target.max()) for sp in splits.values()) >= n_items:
        raise InputError("a target id is >= the pad id; cannot infer the item count", folder)
    return SeqSplits(folder.name, n_items, splits["train"], splits["valid"], splits["test"])


def _load_seq_txt(folder: Path, max_len: int = 10) -> SeqSplits:
    raw = {}
    for s in ("train", "valid", "test"):
        f = folder / f"{s}_data.txt"
        if not f.exists():
            raise InputError("file missing from the data set", f)
        rows = []
        for i, line in enumerate(f.read_text().splitlines(), start=1):
            if not line.strip():
                continue
            try:
                ids = [int(x) for x in line.split()]
            except ValueError:
                raise InputError("expected space-separated integer item ids", f, i) from None
            if len(ids) < 2 or min(ids) < 1:
                raise InputError("need a history and a target of 1-indexed ids", f, i)
            rows.append(ids)
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
