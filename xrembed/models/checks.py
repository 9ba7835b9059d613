"""Value-range checks shared by the adapters (they need pixels, so they run when the graph computes)."""

from __future__ import annotations

import numpy as np

from ..errors import InputRangeError

#: A largest value at or below this (and above 0) means the data were already scaled to [0, 1].
NORMALISED_PEAK = 1.5


def check_raw_reflectance(pixels: np.ndarray, who: str, what: str = "Sentinel-2 reflectance") -> None:
    """Raise :class:`InputRangeError` if valid pixels look normalised to [0, 1] instead of raw 0..10000.

    ``who`` names the model in the message (e.g. ``"dofa"``); NaNs are ignored; an all-NaN block passes.
    """
    # fmax skips NaN without copying the block or warning on an all-NaN one (which has nothing to check).
    peak = float(np.fmax.reduce(pixels, axis=None)) if pixels.size else np.nan
    if 0 < peak <= NORMALISED_PEAK:
        raise InputRangeError(
            f"{who} expects raw {what} (0..10000) but the largest value is {peak:.3g}: the data look already "
            "normalised to [0, 1]. Multiply by 10000 (e.g. `x * 10000`) or load the raw product."
        )


def check_wavelengths(wavelengths, bands: list[str]) -> tuple[float, ...]:
    """Validate caller-given ``wavelengths=`` (micrometres, one per band in ``bands``) and return them as floats."""
    from ..errors import WavelengthError

    waves = tuple(float(w) for w in wavelengths)
    if len(waves) != len(bands):
        raise WavelengthError(
            f"wavelengths= has {len(waves)} values but the model reads {len(bands)} bands {bands}; "
            "give one wavelength (micrometres) per band, in the same order."
        )
    if any(not np.isfinite(w) or w <= 0 for w in waves):
        raise WavelengthError(f"wavelengths must be positive micrometres, got {list(waves)}.")
    return waves
