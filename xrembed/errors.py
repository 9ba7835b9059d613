"""Errors raised by xrembed.

Every error is an :class:`XrembedError`, and every message names the fix. Subclasses let a caller catch
one kind of problem (``except xrembed.errors.MissingCRSError``) the way rioxarray's exceptions do.
"""

from __future__ import annotations

__all__ = [
    "XrembedError",
    "MissingCRSError",
    "SpatialDimensionError",
    "BandMismatchError",
    "WavelengthError",
    "InputRangeError",
    "WeightsError",
    "UnknownModelError",
    "OptionError",
    "ProductCoverageError",
    "SpecError",
    "RandomWeightsWarning",
    "ExportError",
]


class XrembedError(RuntimeError):
    """Root of every error xrembed raises on purpose."""


class MissingCRSError(XrembedError):
    """The input has no coordinate reference system."""


class SpatialDimensionError(XrembedError):
    """The input lacks regular ``y``/``x`` dimensions, or its grid is not an axis-aligned lattice."""


class BandMismatchError(XrembedError):
    """Bands are missing, unnamed, duplicated, or their count does not match what the model needs."""


class WavelengthError(XrembedError):
    """Wavelengths cannot be inferred for a band, or the list given has the wrong length."""


class InputRangeError(XrembedError):
    """Pixel values are not on the scale the model expects (e.g. [0, 1] where raw reflectance is needed)."""


class WeightsError(XrembedError):
    """The checkpoint cannot be found, downloaded, read, or loaded strictly."""


class UnknownModelError(XrembedError, KeyError):
    """No model or variant of that name is registered."""

    def __str__(self) -> str:  # KeyError would wrap the message in quotes
        return str(self.args[0]) if self.args else ""


class OptionError(XrembedError, ValueError):
    """A keyword argument has a value xrembed does not accept."""


class SpecError(XrembedError, ValueError):
    """A spec object (BBox, TemporalSpec, ...) was built with invalid values."""


class ProductCoverageError(XrembedError):
    """A precomputed product has no data for the requested place or time."""


class RandomWeightsWarning(UserWarning):
    """Emitted when a model runs with ``weights="random"``: its embeddings carry no meaning."""


class ExportError(XrembedError):
    """An export stopped on a failing (ROI, model) unit; its manifest records what was done."""
