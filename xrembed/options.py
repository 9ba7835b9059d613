"""The option strings of ``embed()`` as ``Literal`` types, and the tuples validation checks against.

One place for both, so that a type checker, the docs and the run-time check agree:
``get_args(Output) == OUTPUTS``.
"""

from __future__ import annotations

from typing import Literal, get_args

from .errors import OptionError

#: ``output=``: a georeferenced grid of tokens, or one vector per image.
Output = Literal["grid", "pooled"]
#: ``input_prep=``: model-size tiles at native resolution, the whole extent resized, or chosen per request.
InputPrep = Literal["tile", "resize", "auto"]
#: ``precision=``: full precision, or autocast to bfloat16 / float16 (CUDA only).
Precision = Literal["fp32", "bf16", "fp16"]

OUTPUTS: tuple[str, ...] = get_args(Output)
INPUT_PREPS: tuple[str, ...] = get_args(InputPrep)
PRECISIONS: tuple[str, ...] = get_args(Precision)

__all__ = ["INPUT_PREPS", "OUTPUTS", "PRECISIONS", "InputPrep", "Output", "Precision", "check_pooling"]


def check_pooling(output) -> None:
    """rs-embed's ``OutputSpec(pooling="max")`` has no counterpart here: refuse it, naming the alternative."""
    if getattr(output, "pooling", "mean") != "mean":
        raise OptionError("pooling='max' is not supported; pooled outputs are valid-area-weighted means (pooling='mean').")
