"""SASRec (Kang & McAuley, ICDM 2018): a causal transformer over the history, next item by softmax.

Training uses the full softmax over all items (cross-entropy), which is markedly stronger than the
paper's one sampled negative with binary cross-entropy (Klenitskiy & Vasilev, RecSys 2023).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from .seq_base import NextItemConfig, NextItemModel, SeqEncoder


@dataclass
class SASRecConfig(NextItemConfig):
    hidden: int = 64
    n_layers: int = 2
    n_heads: int = 2
    dropout: float = 0.3


class _SASRecNet(nn.Module):
    def __init__(self, cfg: SASRecConfig):
        super().__init__()
        self.encoder = SeqEncoder(cfg.n_items, cfg.max_len, cfg.hidden, cfg.n_layers, cfg.n_heads, cfg.dropout)

    def forward(self, seq: torch.Tensor, seq_len: torch.Tensor) -> torch.Tensor:
        h = self.encoder(seq, seq_len)
        return h @ self.encoder.item_emb.weight[:-1].T  # tied output embeddings, pad row excluded


class SASRec(NextItemModel):
    """Self-attentive sequential recommendation with a full-softmax next-item loss."""

    name = "sasrec"
    Config = SASRecConfig

    def build(self) -> nn.Module:
        return _SASRecNet(self.config)

    def loss(self, seq, seq_len, target):
        return F.cross_entropy(self.net(seq, seq_len), target)

    def score_batch(self, seq, seq_len):
        return self.net(seq, seq_len)
