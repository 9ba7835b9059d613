"""The keywords of ``embed()`` in one place: their ``Literal`` option strings, the typed keyword set
(:class:`EmbedKwargs`, for signatures) and the value object every front hands on (:class:`EmbedOptions`).

One place for all of them, so that a type checker, the docs and the run-time checks agree:
``get_args(Output) == OUTPUTS``, and ``EmbedKwargs`` names exactly the fields of ``EmbedOptions``
(checked by ``tests/test_options.py``). A new ``embed()`` keyword is one field here, one line in
``EmbedKwargs`` and its entry in the accessor's docstring.
"""

from __future__ import annotations

import dataclasses
import difflib
import numbers
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal, TypedDict, get_args

from .errors import OptionError

#: ``output=``: a georeferenced grid of tokens, or one vector per image.
Output = Literal["grid", "pooled"]
#: ``input_prep=``: model-size tiles at native resolution, the whole extent resized, or chosen per request.
InputPrep = Literal["tile", "resize", "auto"]
#: ``precision=``: full precision, autocast to bfloat16 / float16 (CUDA only), or int8 Linear layers (CPU only).
Precision = Literal["fp32", "bf16", "fp16", "int8"]
#: ``space=``: the model's own grid tokens, or each cell mapped into the image-text space (CLIP models).
Space = Literal["tokens", "joint"]

OUTPUTS: tuple[str, ...] = get_args(Output)
INPUT_PREPS: tuple[str, ...] = get_args(InputPrep)
PRECISIONS: tuple[str, ...] = get_args(Precision)
SPACES: tuple[str, ...] = get_args(Space)

__all__ = [
    "INPUT_PREPS", "OUTPUTS", "PRECISIONS", "SPACES", "EmbedKwargs", "EmbedOptions", "InputPrep", "Output", "Precision", "Space",
    "check_pooling", "choice", "positive_int",
]

NodataOption = float | Sequence[float | None] | Mapping[str, float | None] | None


class EmbedKwargs(TypedDict, total=False):
    """The keywords of ``embed()`` / ``.rsembed.embed()`` (for ``**options: Unpack[EmbedKwargs]``).

    Their meaning is documented once, in :meth:`xrembed.accessor.RSEmbedAccessor.embed`.
    """

    output: Output
    input_prep: InputPrep
    tile_size: int | None
    bands: Sequence[str] | None
    wavelengths: Sequence[float] | None
    modality: str | None
    variant: str | None
    weights: str | os.PathLike | None
    device: str
    batch_size: int | None
    precision: Precision
    nodata: NodataOption
    tiles_per_chunk: int
    space: Space
    temporal: Any
    source: Any
    patch_size: int | None
    like: Any


@dataclass(frozen=True, kw_only=True)
class EmbedOptions:
    """One ``embed()`` request's keywords, each at its default unless given.

    Built once by the front that received them (:meth:`from_kwargs` refuses unknown names, naming the closest
    one) and handed on whole; the values are checked against the raster and the model in
    ``embedding._prepare``, where what they mean is known. ``output`` and ``input_prep`` may also be rs-embed's
    ``OutputSpec`` / ``InputPrepSpec`` (their ``mode`` is used).
    """

    output: Any = "grid"
    input_prep: Any = "auto"
    tile_size: int | None = None
    bands: Sequence[str] | None = None
    wavelengths: Sequence[float] | None = None
    modality: str | None = None
    variant: str | None = None
    weights: str | os.PathLike | None = None
    device: Any = "auto"
    batch_size: int | None = None
    precision: str = "fp32"
    nodata: NodataOption = None
    tiles_per_chunk: int = 4
    space: str = "tokens"
    # Precomputed products only (models refuse them; products refuse the model keywords above).
    temporal: Any = None
    source: Any = None
    patch_size: int | None = None
    like: Any = None

    #: The keywords only precomputed products read.
    PRODUCT_ONLY = ("temporal", "source", "patch_size", "like")

    @classmethod
    def names(cls) -> tuple[str, ...]:
        """Every keyword, in declaration order."""
        return tuple(f.name for f in dataclasses.fields(cls))

    @classmethod
    def from_kwargs(cls, kwargs: Mapping[str, Any], *, where: str = "embed()") -> EmbedOptions:
        """The options of ``kwargs``; an unknown name raises :class:`OptionError` naming the closest one."""
        known = cls.names()
        for name in kwargs:
            if name not in known:
                close = difflib.get_close_matches(name, known, n=1, cutoff=0.6)
                hint = f" Did you mean {close[0]}=?" if close else ""
                raise OptionError(f"{name}= is not a keyword of {where}.{hint} Its keywords are {sorted(known)}.")
        return cls(**kwargs)

    def replace(self, **changes: Any) -> EmbedOptions:
        """A copy with ``changes`` applied (names checked as in :meth:`from_kwargs`)."""
        return type(self).from_kwargs({**self.as_dict(), **changes})

    def as_dict(self) -> dict[str, Any]:
        """Every keyword and its value (shallow: ``like=`` stays the very object given)."""
        return {name: getattr(self, name) for name in self.names()}

    def model_keywords(self) -> dict[str, Any]:
        """The keywords a model reads (everything but the product-only ones)."""
        return {k: v for k, v in self.as_dict().items() if k not in self.PRODUCT_ONLY}

    def product_keywords_given(self) -> list[str]:
        """The product-only keywords set to something (a model refuses them)."""
        return [k for k in self.PRODUCT_ONLY if getattr(self, k) is not None]


def choice(name: str, value: Any, allowed: Sequence[str]) -> str:
    """``value`` lower-cased if it is one of ``allowed``, else :class:`OptionError` listing them."""
    text = str(value).lower()
    if text not in allowed:
        raise OptionError(f"{name}={value!r} is not one of {list(allowed)}.")
    return text


def positive_int(name: str, value: Any, *, allow_none: bool = False) -> int | None:
    """``value`` as an ``int`` if it is a positive integer (numpy integers too, bools not); ``None`` passes
    through when ``allow_none``."""
    import numpy as np

    if value is None and allow_none:
        return None
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Integral) or value < 1:
        kind = "None or a positive integer" if allow_none else "a positive integer"
        raise OptionError(f"{name} must be {kind}, got {value!r}.")
    return int(value)


def check_pooling(output) -> None:
    """rs-embed's ``OutputSpec(pooling="max")`` has no counterpart here: refuse it, naming the alternative."""
    if getattr(output, "pooling", "mean") != "mean":
        raise OptionError("pooling='max' is not supported; pooled outputs are valid-area-weighted means (pooling='mean').")
