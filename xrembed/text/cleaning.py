"""Text clean-up before tokenizing, as open_clip does it (``basic_clean``, ``canonicalize_text``)."""

from __future__ import annotations

import html
import string

_ASCII_PUNCTUATION = str.maketrans("", "", string.punctuation)


def basic_clean(text: str) -> str:
    """``ftfy.fix_text``, HTML entities unescaped twice, surrounding whitespace stripped.

    Examples
    --------
    >>> basic_clean("  fish &amp;amp; chips ")
    'fish & chips'
    """
    import ftfy

    return html.unescape(html.unescape(ftfy.fix_text(text))).strip()


def whitespace_clean(text: str) -> str:
    """Runs of whitespace collapsed to one space."""
    return " ".join(text.split()).strip()


def clean_lower(text: str) -> str:
    """CLIP's cleaning: :func:`basic_clean`, whitespace collapsed, lower case.

    Examples
    --------
    >>> clean_lower("A  Harbour\\n")
    'a harbour'
    """
    return whitespace_clean(basic_clean(text)).lower()


def canonicalize(text: str) -> str:
    """SigLIP's cleaning (open_clip ``clean="canonicalize"``, from big_vision): :func:`basic_clean`,
    underscores to spaces, ASCII punctuation dropped, lower case, whitespace collapsed.

    Examples
    --------
    >>> canonicalize("Sand_Dunes, near the COAST!")
    'sand dunes near the coast'
    """
    text = basic_clean(text).replace("_", " ").translate(_ASCII_PUNCTUATION).lower()
    return " ".join(text.split()).strip()
