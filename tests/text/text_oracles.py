"""Reference tokenizations for the text tests (test-only): sentencepiece with open_clip's cleaning."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from xrembed.text.testing import TextTinyDOFACLIP, TextTinyRemoteCLIP

DOFA_TINY = TextTinyDOFACLIP.model_id
REMOTE_TINY = TextTinyRemoteCLIP.model_id


def sentencepiece_reference(folder: Path, texts, open_clip) -> np.ndarray:
    """sentencepiece on ``spiece.model`` after open_clip's ``canonicalize`` cleaning: 63 pieces + EOS 1,
    padded with 1 (the path reference/text-towers.md §3.1 verified equal to open_clip's HFTokenizer)."""
    import sentencepiece as spm
    from open_clip.tokenizer import get_clean_fn

    clean = get_clean_fn("canonicalize")
    sp = spm.SentencePieceProcessor(model_file=str(Path(folder) / "spiece.model"))
    rows = []
    for text in texts:
        ids = sp.encode(clean(text))[:63] + [1]
        rows.append(ids + [1] * (64 - len(ids)))
    return np.array(rows)
