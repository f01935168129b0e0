"""The real CLIP BPE tokenizer, built offline from the vocabulary file that open_clip ships.

`CLIPTokenizer.from_pretrained(<hub id>)` with no network can return an almost empty tokenizer
without raising, so Atelier builds the tokenizer from `bpe_simple_vocab_16e6.txt.gz` (the merges
list of OpenAI's CLIP, Radford et al. 2021) and checks its size. The ids match open_clip's.
"""
from __future__ import annotations

import gzip
from functools import lru_cache
from pathlib import Path

CLIP_VOCAB_SIZE = 49408
N_MERGES = CLIP_VOCAB_SIZE - 256 * 2 - 2  # 256 byte symbols, 256 word-final ones, 2 specials
BOS, EOS = "<|startoftext|>", "<|endoftext|>"


def open_clip_vocab_file() -> Path:
    """Path of the gzipped BPE merges file inside the installed open_clip package."""
    import open_clip

    path = Path(open_clip.__file__).parent / "bpe_simple_vocab_16e6.txt.gz"
    if not path.exists():
        raise FileNotFoundError(f"open_clip ships no BPE vocabulary at {path}")
    return path


def byte_symbols() -> list[str]:
    """Every byte as a printable unicode character, in CLIP's id order (printable bytes first)."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    # unprintable bytes are moved past 255 so that every symbol is visible, and come last
    others = [b for b in range(256) if b not in printable]
    return [chr(b) for b in printable] + [chr(256 + i) for i in range(len(others))]


@lru_cache(maxsize=1)
def clip_vocab_and_merges() -> tuple[dict[str, int], list[tuple[str, str]]]:
    """CLIP's token->id vocabulary and its merge rules, in the order that fixes the ids."""
    lines = gzip.open(open_clip_vocab_file(), "rt", encoding="utf-8").read().split("\n")
    merges = [tuple(m.split()) for m in lines[1 : N_MERGES + 1]]  # line 0 is a version header
    symbols = byte_symbols()
    tokens = symbols + [s + "</w>" for s in symbols] + ["".join(m) for m in merges] + [BOS, EOS]
    vocab = {t: i for i, t in enumerate(tokens)}
    if len(vocab) != CLIP_VOCAB_SIZE:
        raise RuntimeError(f"CLIP vocabulary has {len(vocab)} tokens, expected {CLIP_VOCAB_SIZE}")
    return vocab, merges


def build_clip_tokenizer(model_max_length: int = 77):
    """A transformers `CLIPTokenizer` equal to CLIP's (ids as open_clip), padded with `<|endoftext|>`."""
    from transformers import CLIPTokenizer

    vocab, merges = clip_vocab_and_merges()
    tok = CLIPTokenizer(vocab=dict(vocab), merges=list(merges), model_max_length=model_max_length)
    check_tokenizer(tok)
    return tok


MIN_TOKENS = 1000  # a real text tokenizer has tens of thousands; a broken offline load has a handful


def check_tokenizer(tokenizer, name: str = "tokenizer", path=None) -> None:
    """The one tokenizer-size check: refuse a tokenizer with almost no vocabulary (the offline-load trap:
    `from_pretrained` without network can return one without raising). Used by the tokenizer built
    here, pipeline loading (`pipelines.loading`) and training (`finetune.lora`)."""
    from core.errors import InputError

    n = len(tokenizer)
    if n < MIN_TOKENS:
        raise InputError(f"the {name} has only {n} tokens (a broken offline download?)", path)
