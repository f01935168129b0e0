"""What every neural next-item model here shares.

`SeqEncoder` is the transformer over a history that SASRec uses as its model and DreamRec as its
history encoder; `NextItemModel` holds what the epoch trainer (`recommenders.training`) asks of a
next-item model beyond its loss (batches, validation HR@K, the run's fingerprint), scoring in
batches of rows and save/load.
"""
from __future__ import annotations

import copy
import dataclasses
from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from core.errors import InputError

from .base import SequentialRecommender
from .checkpoint import fingerprint
from .metrics import ranking_metrics
from .training import EpochTrained, shuffled_batches


class SeqEncoder(nn.Module):
    """Item + position embeddings and a causal transformer; returns the state at the last real item."""

    table_max_bytes = 256 * 2**20  # projection_table() is skipped above this size

    def __init__(self, n_items: int, max_len: int, hidden: int, n_layers: int, n_heads: int, dropout: float):
        super().__init__()
        self.item_emb = nn.Embedding(n_items + 1, hidden, padding_idx=n_items)  # last row is the pad id
        self.pos_emb = nn.Embedding(max_len, hidden)
        self.drop = nn.Dropout(dropout)
        layer = nn.TransformerEncoderLayer(hidden, n_heads, 4 * hidden, dropout, activation="gelu",
                                           batch_first=True, norm_first=True)
        self.blocks = nn.TransformerEncoder(layer, n_layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(hidden)
        mask = torch.triu(torch.full((max_len, max_len), float("-inf")), diagonal=1)
        self.register_buffer("causal_mask", mask, persistent=False)
        self._table: tuple | None = None  # (weights' versions, projection_table()); inference only
        nn.init.normal_(self.item_emb.weight, std=0.02)
        nn.init.normal_(self.pos_emb.weight, std=0.02)

    def forward(self, seq: torch.Tensor, seq_len: torch.Tensor) -> torch.Tensor:
        # Right padding + a causal mask: position seq_len-1 never sees a pad, so no padding mask is
        # needed, and an empty history (a lone pad) still gets a learned representation.
        L = seq.shape[1]
        layers = self.blocks.layers
        if len(layers) == 1 and not self.training and not torch.is_grad_enabled():
            table = self.projection_table()
            if table is not None:
                return self.norm(_last_query_block_from_table(self, table, seq, seq_len.clamp(1, L) - 1))
        x = self.drop(self.item_emb(seq) + self.pos_emb.weight[:L])
        for layer in layers[:-1]:
            x = layer(x, src_mask=self.causal_mask[:L, :L], is_causal=True)
        # Only the last real position is used, so the final block runs its query, output projection
        # and feed-forward there alone (same result as the full block, ~L times less of that work).
        return self.norm(last_query_block(layers[-1], x, seq_len.clamp(1, L) - 1))

    def projection_table(self) -> tuple[torch.Tensor, torch.Tensor] | None:
        """The first block's attention inputs for every (item, position) pair, for inference.

        A pre-norm block's queries, keys and values are LayerNorm(item + position) times fixed
        matrices, so in a one-block encoder they take only (n_items + 1) x max_len values: computing
        them once turns the per-row key/value projections (two thirds of the encoder's multiply-adds
        on zhihu) into a lookup. Returns (kv, q) of shapes (n_items + 1, max_len, 2 * hidden) and
        (n_items + 1, max_len, hidden), rebuilt whenever those weights change (tensor versions), or
        None when it would exceed `table_max_bytes`.
        """
        layer = self.blocks.layers[0]
        attn = layer.self_attn
        params = (self.item_emb.weight, self.pos_emb.weight, layer.norm1.weight, layer.norm1.bias,
                  attn.in_proj_weight, attn.in_proj_bias)
        n, L, D = self.item_emb.num_embeddings, self.pos_emb.num_embeddings, self.item_emb.embedding_dim
        if n * L * 3 * D * 4 > self.table_max_bytes:
            self._table = None
            return None
        key = tuple((id(t), t.data_ptr(), t._version) for t in params)
        if self._table is not None and self._table[0] == key:
            return self._table[1]
        with torch.inference_mode(False), torch.no_grad():  # a plain tensor, usable outside inference mode
            x = self.item_emb.weight[:, None, :] + self.pos_emb.weight[None]           # (n, L, D)
            proj = F.linear(layer.norm1(x), attn.in_proj_weight, attn.in_proj_bias)      # (n, L, 3D): q | k | v
            table = (proj[..., D:].contiguous(), proj[..., :D].contiguous())
        self._table = (key, table)
        return table

    def forward_full(self, seq: torch.Tensor, seq_len: torch.Tensor) -> torch.Tensor:
        """Reference: every block at every position, then the last real position (for tests)."""
        L = seq.shape[1]
        x = self.blocks(self.drop(self.item_emb(seq) + self.pos_emb.weight[:L]),
                        mask=self.causal_mask[:L, :L], is_causal=True)
        last = (seq_len.clamp(1, L) - 1).view(-1, 1, 1).expand(-1, 1, x.shape[-1])
        return self.norm(x.gather(1, last).squeeze(1))


def last_query_block(layer: nn.TransformerEncoderLayer, x: torch.Tensor, pos: torch.Tensor) -> torch.Tensor:
    """A pre-norm encoder block evaluated only at position `pos` of each row, attending causally."""
    if not layer.training:
        return _last_query_block_eval(layer, x, pos)
    h = layer.norm1(x)
    idx = pos.view(-1, 1, 1).expand(-1, 1, x.shape[-1])
    later = torch.arange(x.shape[1], device=x.device)[None] > pos[:, None]  # keys after pos are masked
    att, _ = layer.self_attn(h.gather(1, idx), h, h, key_padding_mask=later, need_weights=False)
    y = x.gather(1, idx) + layer.dropout1(att)
    y = y + layer.dropout2(layer.linear2(layer.dropout(layer.activation(layer.linear1(layer.norm2(y))))))
    return y.squeeze(1)


def _last_query_block_eval(layer: nn.TransformerEncoderLayer, x: torch.Tensor, pos: torch.Tensor) -> torch.Tensor:
    """`last_query_block` at inference, written out: with one query per row, attention is two
    broadcast products over (B, L, heads, head_dim); one matmul projects keys and values together.
    Same maths as nn.MultiheadAttention (a test compares them), without its transposes and copies,
    which were half of the history-encoding time at inference."""
    attn = layer.self_attn
    D = x.shape[-1]
    idx = pos.view(-1, 1, 1).expand(-1, 1, D)
    h = layer.norm1(x)
    q = F.linear(h.gather(1, idx).squeeze(1), attn.in_proj_weight[:D], attn.in_proj_bias[:D])  # (B, D)
    kv = F.linear(h, attn.in_proj_weight[D:], attn.in_proj_bias[D:])                          # (B, L, 2D)
    return _attend_from_last(layer, q, kv, x.gather(1, idx).squeeze(1), pos)


def _last_query_block_from_table(enc: SeqEncoder, table: tuple[torch.Tensor, torch.Tensor], seq: torch.Tensor,
                                 pos: torch.Tensor) -> torch.Tensor:
    """`_last_query_block_eval` of a one-block encoder with its projections read from `projection_table()`."""
    kv_table, q_table = table
    L = seq.shape[1]
    max_len, D = kv_table.shape[1], kv_table.shape[2] // 2
    flat = seq * max_len + torch.arange(L, device=seq.device)                   # (B, L) row of (item, position)
    kv = F.embedding(flat, kv_table.view(-1, 2 * D))                               # (B, L, 2D); faster than []
    last = seq.gather(1, pos[:, None]).squeeze(1)
    q = F.embedding(last * max_len + pos, q_table.view(-1, D))                     # (B, D)
    x_last = F.embedding(last, enc.item_emb.weight) + F.embedding(pos, enc.pos_emb.weight)
    return _attend_from_last(enc.blocks.layers[0], q, kv, x_last, pos)


def _attend_from_last(layer: nn.TransformerEncoderLayer, q: torch.Tensor, kv: torch.Tensor, x_last: torch.Tensor,
                      pos: torch.Tensor) -> torch.Tensor:
    """The rest of a pre-norm block for one query per row: causal attention, residual, feed-forward."""
    attn = layer.self_attn
    B, L, D2 = kv.shape
    D, H = D2 // 2, attn.num_heads
    dh = D // H
    k, v = kv.split(D, -1)
    logits = (k.reshape(B, L, H, dh) * q.view(B, 1, H, dh)).sum(-1) * dh ** -0.5              # (B, L, H)
    later = torch.arange(L, device=kv.device)[None] > pos[:, None]  # keys after pos are masked
    weights = logits.masked_fill(later[:, :, None], float("-inf")).softmax(1)
    att = attn.out_proj((weights[..., None] * v.reshape(B, L, H, dh)).sum(1).reshape(B, D))
    y = x_last + att
    return y + layer.linear2(layer.activation(layer.linear1(layer.norm2(y))))


def to_tensors(split) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """A SeqSplit as int64 tensors (seq, seq_len, target)."""
    return (torch.as_tensor(split.seq, dtype=torch.long), torch.as_tensor(split.seq_len, dtype=torch.long),
            torch.as_tensor(split.target, dtype=torch.long))


@dataclass
class NextItemConfig:
    """What every neural next-item model's config holds: the data's shape, optimisation (AdamW) and the
    epoch trainer's settings (`recommenders.training`). A model's config subclasses it with its own."""

    n_items: int = 0  # set by fit from the data
    max_len: int = 10
    lr: float = 1e-3
    weight_decay: float = 0.0
    batch_size: int = 256
    epochs: int = 100
    patience: int = 5  # validations without a better HR@select_k before stopping
    eval_every: int = 1
    select_k: int = 20
    grad_clip: float = 1.0
    max_train_seconds: float = 0.0  # 0: no time cap


class NextItemModel(EpochTrained, SequentialRecommender):
    """Shared machinery of the neural next-item models; subclasses give `build`, `loss`, `score_batch`."""

    name = ""
    scores_into = False  # score_batch(..., out=rows) writes into a given array (saves one copy of N x items)

    def __init__(self, config=None, **overrides):
        config = copy.deepcopy(config) if config is not None else self.Config()
        for key, value in overrides.items():
            if not hasattr(config, key):
                raise InputError(f"{self.name} has no hyperparameter {key!r}")
            setattr(config, key, value)
        self.config = config
        self.net: nn.Module | None = None
        self.item_ids: list[str] | None = None

    # -- what a model defines --------------------------------------------------------------
    def build(self) -> nn.Module:
        raise NotImplementedError

    def loss(self, seq: torch.Tensor, seq_len: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def score_batch(self, seq: torch.Tensor, seq_len: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    # -- training --------------------------------------------------------------------------
    def _check_data(self, data) -> None:
        if len(data.train) == 0:
            raise InputError("the training split has no rows")
        if self.config.n_items and self.config.n_items != data.n_items:
            raise InputError(f"model is configured for {self.config.n_items} items, data has {data.n_items}")
        if data.train.seq.shape[1] > self.config.max_len:
            raise InputError(f"histories are {data.train.seq.shape[1]} long, max_len is {self.config.max_len}")

    # -- what the epoch trainer asks (recommenders.training) --------------------------------
    @property
    def valid_metric(self) -> str:
        return f"hr@{self.config.select_k}"

    def setup_fit(self, data, seed: int) -> nn.Module:
        """Check the data against the config, keep the item ids, build the network."""
        self._check_data(data)
        self.config.n_items = data.n_items
        self.item_ids = list(data.item_ids) if data.item_ids is not None else None
        return self.build()

    def configure_optimizer(self, net: nn.Module) -> torch.optim.Optimizer:
        return torch.optim.AdamW(net.parameters(), lr=self.config.lr, weight_decay=self.config.weight_decay)

    def train_batches(self, data, gen: torch.Generator):
        """One epoch of (seq, seq_len, target) batches, shuffled with `gen`."""
        return shuffled_batches(to_tensors(data.train), self.config.batch_size, gen)

    def batch_loss(self, batch, gen: torch.Generator) -> torch.Tensor:
        return self.loss(*batch)

    def validate(self, data) -> float:
        """Validation HR@select_k over all items: the figure early stopping maximises."""
        return self.evaluate(data.valid, ks=(self.config.select_k,))[self.valid_metric]

    def fit_fingerprint(self, data, seed: int) -> str:
        """What makes a checkpoint this run's: model, hyperparameters, seed, train and valid splits."""
        return fingerprint(model=self.name, config=dataclasses.asdict(self.config), seed=seed,
                           train_seq=data.train.seq, train_len=data.train.seq_len, train_target=data.train.target,
                           valid_seq=data.valid.seq, valid_len=data.valid.seq_len, valid_target=data.valid.target)

    # -- inference -------------------------------------------------------------------------
    def _require_fitted(self) -> nn.Module:
        if self.net is None:
            raise RuntimeError(f"{self.name} is not fitted; call fit() or load()")
        return self.net

    def _as_batch(self, seq, seq_len) -> tuple[torch.Tensor, torch.Tensor]:
        seq = torch.as_tensor(np.asarray(seq), dtype=torch.long)
        if seq.dim() == 1:
            seq = seq[None]
        if seq_len is None:
            seq_len = (seq != self.config.n_items).sum(1).clamp(min=1)
        seq_len = torch.as_tensor(np.asarray(seq_len), dtype=torch.long).reshape(-1)
        if seq.numel() and (seq.min() < 0 or seq.max() > self.config.n_items):
            raise InputError(f"item index out of range 0..{self.config.n_items} (the pad id)")
        if seq.shape[1] > self.config.max_len:
            seq = seq[:, :self.config.max_len]  # keep the model's window; callers pass the last items
        return seq, seq_len

    @torch.inference_mode()
    def score(self, seq: np.ndarray, seq_len: np.ndarray | None = None, *, batch_size: int = 1024,
              **kwargs) -> np.ndarray:
        """Scores (N, n_items) for right-padded histories, computed in batches of rows.

        Each batch is written straight into one preallocated array (no concatenation copy).
        """
        net = self._require_fitted()
        net.eval()
        seq, seq_len = self._as_batch(seq, seq_len)
        out = np.empty((len(seq), self.config.n_items), np.float32)
        view = torch.from_numpy(out)
        for i in range(0, len(seq), batch_size):
            if self.scores_into:  # the model writes its scores straight into the output rows
                self.score_batch(seq[i:i + batch_size], seq_len[i:i + batch_size], out=view[i:i + batch_size],
                                 **kwargs)
            else:
                view[i:i + batch_size] = self.score_batch(seq[i:i + batch_size], seq_len[i:i + batch_size], **kwargs)
        return out

    @torch.inference_mode()
    def recommend(self, seq: np.ndarray, seq_len: np.ndarray | None = None, *, k: int = 20,
                  batch_size: int = 1024, **kwargs) -> np.ndarray:
        """Indices (N, k) of the k best items per history, best first (torch.topk per batch, no full sort)."""
        self._require_fitted().eval()
        seq, seq_len = self._as_batch(seq, seq_len)
        k = min(k, self.config.n_items)
        out = torch.empty((len(seq), k), dtype=torch.long)
        for i in range(0, len(seq), batch_size):
            scores = self.score_batch(seq[i:i + batch_size], seq_len[i:i + batch_size], **kwargs)
            out[i:i + batch_size] = scores.topk(k, dim=1).indices
        return out.numpy()

    def evaluate(self, split, ks: Sequence[int] = (10, 20, 50), **kwargs) -> dict[str, float]:
        """HR/NDCG/Recall@K on a SeqSplit with the shared metrics module (all items ranked); kwargs go to score."""
        scores = self.score(split.seq, split.seq_len, **kwargs)
        return ranking_metrics(scores, split.target, ks=ks)

    def history_to_seq(self, history: Sequence) -> tuple[np.ndarray, np.ndarray]:
        """One right-padded row from a history of item ids (or indices), keeping the last max_len."""
        index = {iid: j for j, iid in enumerate(self.item_ids or [])}
        idx = []
        for h in history:
            if isinstance(h, (int, np.integer)) and not index:
                idx.append(int(h))
            elif str(h) in index:
                idx.append(index[str(h)])
            else:
                raise InputError(f"unknown item id {h!r} in the history")
        idx = idx[-self.config.max_len:]
        row = np.full((1, self.config.max_len), self.config.n_items, np.int64)
        row[0, :len(idx)] = idx
        return row, np.asarray([max(len(idx), 1)])

    def next_item_embedding(self, seq: np.ndarray, seq_len: np.ndarray) -> np.ndarray | None:
        """The model's own next-item vector, if it has one (None: use score-weighted item embeddings)."""
        return None

    # -- persistence -----------------------------------------------------------------------
    def state_tensors(self) -> dict:
        return {k: v.detach().contiguous() for k, v in self._require_fitted().state_dict().items()}

    def load_state_tensors(self, tensors: dict) -> None:
        self.net = self.build()
        self.net.load_state_dict(tensors)
        self.net.eval()

    def extra_state(self) -> dict:
        return {"item_ids": self.item_ids}

    def load_extra_state(self, extra: dict) -> None:
        self.item_ids = extra.get("item_ids")
