"""The SigLIP tokenizer of DOFA-CLIP, through the ``tokenizers`` package on a Hub ``tokenizer.json``.

Reproduces open_clip's ``HFTokenizer(..., clean="canonicalize")`` without transformers or open_clip
(both pull in torchvision): :func:`~xrembed.text.cleaning.canonicalize`, then the file's own T5 Unigram
pipeline (its normalizer, Metaspace pre-tokenizer and ``$A </s>`` post-processor), truncation to 64 with
the appended end token kept last, and **padding with id 1** (``</s>``), as big_vision and open_clip's
``SigLipTokenizer`` pad. The tower has no attention mask, so the pad id changes the embedding.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from ..errors import WeightsError
from .cleaning import canonicalize

#: SigLIP's pad and end id (``</s>``) when neither tokenizer file names the pad token.
SIGLIP_PAD_ID = 1


def _pad_token(folder: Path, tokenizer) -> tuple[str, int]:
    """The pad token named by ``special_tokens_map.json`` or ``tokenizer_config.json`` beside the file,
    else ``</s>``; returned with its id."""
    name = None
    for filename in ("special_tokens_map.json", "tokenizer_config.json"):
        path = folder / filename
        if name is None and path.is_file():
            try:
                value = json.loads(path.read_text(encoding="utf-8")).get("pad_token")
            except (OSError, ValueError):
                value = None
            name = value.get("content") if isinstance(value, dict) else value
    name = name if isinstance(name, str) else "</s>"
    token_id = tokenizer.token_to_id(name)
    return (name, token_id) if token_id is not None else ("</s>", SIGLIP_PAD_ID)


class SigLIPTokenizer:
    """Token ids for a SigLIP text tower from a ``tokenizer.json`` file.

    Parameters
    ----------
    path
        The ``tokenizer.json`` (Hub layout); the pad token is read from the JSON files beside it.
    context_length
        Ids per text (64).

    Examples
    --------
    >>> tok = SigLIPTokenizer("/path/to/tokenizer.json")          # doctest: +SKIP
    >>> tok(["a harbour"]).shape                                    # doctest: +SKIP
    (1, 64)
    """

    def __init__(self, path: str | os.PathLike, context_length: int = 64) -> None:
        import tokenizers

        path = Path(path)
        try:
            tokenizer = tokenizers.Tokenizer.from_file(str(path))
        except Exception as err:
            raise WeightsError(
                f"{str(path)!r} is not a readable tokenizer.json ({type(err).__name__}: {err}); pass the "
                "tokenizer.json of the model's Hub repo with tokenizer=..."
            ) from err
        pad_token, self.pad_id = _pad_token(path.parent, tokenizer)
        tokenizer.enable_truncation(max_length=context_length)
        tokenizer.enable_padding(length=context_length, pad_id=self.pad_id, pad_token=pad_token)
        self.context_length = context_length
        self.path = str(path)
        self._tokenizer = tokenizer

    def __call__(self, texts: list[str]) -> np.ndarray:
        """Token ids ``(len(texts), context_length)`` (int64)."""
        encoded = self._tokenizer.encode_batch([canonicalize(t) for t in texts])
        return np.array([e.ids for e in encoded], dtype=np.int64).reshape(len(texts), self.context_length)
