"""Text towers of the vision-language models (DOFA-CLIP, RemoteCLIP): tokenizers, ``encode_text``,
zero-shot class maps (``classify``) and text queries for similarity maps (``query_vector``).

Importing this package imports nothing heavy (no torch, no tokenizer); the functions load what they need.
"""

from __future__ import annotations

__all__ = ["classify", "encode_text", "query_vector", "text_models"]


def __getattr__(name: str):
    if name in ("encode_text", "query_vector", "text_models"):
        from . import encode

        return getattr(encode, name)
    if name == "classify":
        from .classify import classify

        return classify
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
