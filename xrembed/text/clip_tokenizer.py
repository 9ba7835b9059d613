"""CLIP's byte-level BPE tokenizer (OpenAI ``SimpleTokenizer``), re-implemented on the shipped vocabulary.

``xrembed/data/bpe_simple_vocab_16e6.txt.gz`` is OpenAI's file (MIT, notice beside it), the copy that
open-clip-torch 3.3.0 ships. Layout of a tokenized text: ``[49406] + bpe ids + [49407]``, padded with 0
to 77; a longer text keeps its first 77 ids and ends with the end-of-text id.
"""

from __future__ import annotations

import gzip
import os
from functools import lru_cache
from importlib import resources

import numpy as np

from .cleaning import clean_lower

#: The shipped vocabulary's file name, under ``xrembed/data/``.
VOCAB_FILE = "bpe_simple_vocab_16e6.txt.gz"
_PATTERN = (
    r"""<start_of_text>|<end_of_text>|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+"""
)


def shipped_vocab() -> str:
    """Path of the BPE vocabulary shipped with xrembed."""
    return str(resources.files("xrembed") / "data" / VOCAB_FILE)


@lru_cache
def _bytes_to_unicode() -> dict[int, str]:
    """GPT-2's reversible map from bytes to printable unicode characters."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, map(chr, cs)))


class CLIPTokenizer:
    """OpenAI CLIP's tokenizer on a BPE merges file (``.txt.gz``; default: the shipped one).

    Parameters
    ----------
    vocab_path
        The merges file: its first line is a header, then ``49152 - 256 - 2`` merges are read.
    context_length
        Ids per text (77).

    Examples
    --------
    >>> tok = CLIPTokenizer()
    >>> tok(["a harbour"])[0, :4].tolist()
    [49406, 320, 10011, 49407]
    """

    start_id = 49406
    end_id = 49407
    pad_id = 0

    def __init__(self, vocab_path: str | os.PathLike | None = None, context_length: int = 77) -> None:
        import regex

        path = shipped_vocab() if vocab_path is None else str(vocab_path)
        with gzip.open(path, "rt", encoding="utf-8") as handle:
            merges = handle.read().split("\n")[1 : 49152 - 256 - 2 + 1]
        pairs = [tuple(m.split()) for m in merges]
        byte_symbols = list(_bytes_to_unicode().values())
        vocab = byte_symbols + [s + "</w>" for s in byte_symbols] + ["".join(p) for p in pairs]
        vocab += ["<start_of_text>", "<end_of_text>"]
        self.encoder = {s: i for i, s in enumerate(vocab)}
        self.ranks = {p: i for i, p in enumerate(pairs)}
        self.context_length = context_length
        self._byte_encoder = _bytes_to_unicode()
        self._pattern = regex.compile(_PATTERN, regex.IGNORECASE)
        self._cache = {"<start_of_text>": "<start_of_text>", "<end_of_text>": "<end_of_text>"}

    def _bpe(self, token: str) -> str:
        cached = self._cache.get(token)
        if cached is not None:
            return cached
        word = tuple(token[:-1]) + (token[-1] + "</w>",)
        while len(word) > 1:
            pairs = {(word[i], word[i + 1]) for i in range(len(word) - 1)}
            best = min(pairs, key=lambda p: self.ranks.get(p, float("inf")))
            if best not in self.ranks:
                break
            first, second = best
            merged, i = [], 0
            while i < len(word):
                if i < len(word) - 1 and word[i] == first and word[i + 1] == second:
                    merged.append(first + second)
                    i += 2
                else:
                    merged.append(word[i])
                    i += 1
            word = tuple(merged)
        out = " ".join(word)
        self._cache[token] = out
        return out

    def encode(self, text: str) -> list[int]:
        """BPE ids of ``text`` after CLIP's cleaning, without start/end tokens."""
        ids: list[int] = []
        for token in self._pattern.findall(clean_lower(text)):
            token = "".join(self._byte_encoder[b] for b in token.encode("utf-8"))
            ids.extend(self.encoder[piece] for piece in self._bpe(token).split(" "))
        return ids

    def __call__(self, texts: list[str]) -> np.ndarray:
        """Token ids ``(len(texts), context_length)`` (int64)."""
        out = np.full((len(texts), self.context_length), self.pad_id, dtype=np.int64)
        for row, text in enumerate(texts):
            ids = [self.start_id] + self.encode(text) + [self.end_id]
            if len(ids) > self.context_length:
                ids = ids[: self.context_length]
                ids[-1] = self.end_id
            out[row, : len(ids)] = ids
        return out
