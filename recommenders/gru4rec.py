"""GRU4Rec (Hidasi et al., ICLR 2016): a GRU over the history, next item by full softmax."""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from .seq_base import NextItemConfig, NextItemModel


@dataclass
class GRU4RecConfig(NextItemConfig):
    hidden: int = 64
    n_layers: int = 1
    dropout: float = 0.3


class _GRUNet(nn.Module):
    def __init__(self, cfg: GRU4RecConfig):
        super().__init__()
        self.item_emb = nn.Embedding(cfg.n_items + 1, cfg.hidden, padding_idx=cfg.n_items)
        self.drop = nn.Dropout(cfg.dropout)
        self.gru = nn.GRU(cfg.hidden, cfg.hidden, cfg.n_layers, batch_first=True)
        self.out = nn.Linear(cfg.hidden, cfg.hidden)
        nn.init.normal_(self.item_emb.weight, std=0.02)

    def forward(self, seq: torch.Tensor, seq_len: torch.Tensor) -> torch.Tensor:
        states, _ = self.gru(self.drop(self.item_emb(seq)))
        # right padding: the state after the last real item is at seq_len-1 (pads come later)
        last = (seq_len.clamp(1, seq.shape[1]) - 1).view(-1, 1, 1).expand(-1, 1, states.shape[-1])
        h = self.out(self.drop(states.gather(1, last).squeeze(1)))
        return h @ self.item_emb.weight[:-1].T


class GRU4Rec(NextItemModel):
    """Session-based recurrent recommender; the same protocol and loop as SASRec."""

    name = "gru4rec"
    Config = GRU4RecConfig

    def build(self) -> nn.Module:
        return _GRUNet(self.config)

    def loss(self, seq, seq_len, target):
        return F.cross_entropy(self.net(seq, seq_len), target)

    def score_batch(self, seq, seq_len):
        return self.net(seq, seq_len)
