"""``from xrembed.core.embedding import Embedding``: rs-embed's import path for :class:`xrembed.Embedding`."""

from ..api import Embedding

__all__ = ["Embedding"]
