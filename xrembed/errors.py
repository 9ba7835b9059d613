"""Errors raised by xrembed.

Every error is an :class:`XrembedError`, and every message names the fix. Subclasses let a caller catch
one kind of problem (``except xrembed.errors.MissingCRSError``) the way rioxarray's exceptions do.
"""

from __future__ import annotations

__all__ = [
    "XrembedError",
    "CRSError",
    "MissingCRSError",
    "SpatialDimensionError",
    "BandMismatchError",
    "WavelengthError",
    "InputRangeError",
    "DTypeError",
    "SourceError",
    "WeightsError",
    "UnknownModelError",
    "OptionError",
    "ProductCoverageError",
    "NoDataInBoundsError",
    "SpecError",
    "RandomWeightsWarning",
    "SlowPrecisionWarning",
    "ExportError",
    "OverwriteError",
    "StoreError",
    "MissingDependencyError",
    "ResumeMismatchError",
]


class XrembedError(RuntimeError):
    """Root of every error xrembed raises on purpose."""


class CRSError(XrembedError):
    """The coordinate reference system is missing, unknown, or contradicts the coordinates."""


class MissingCRSError(CRSError):
    """The input has no coordinate reference system."""


class SpatialDimensionError(XrembedError):
    """The input lacks regular ``y``/``x`` dimensions, or its grid is not an axis-aligned lattice."""


class BandMismatchError(XrembedError):
    """Bands are missing, unnamed, duplicated, or their count does not match what the model needs."""


class WavelengthError(XrembedError):
    """Wavelengths cannot be inferred for a band, or the list given has the wrong length."""


class InputRangeError(XrembedError):
    """Pixel values are not on the scale the model expects (e.g. [0, 1] where raw reflectance is needed)."""


class DTypeError(XrembedError, TypeError):
    """The input's data type cannot hold what the model reads (bool, complex, 8-bit quicklooks, ...)."""


class SourceError(XrembedError):
    """An input file, folder, STAC item or Earth Engine asset is missing, unreadable or corrupt."""


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


class NoDataInBoundsError(ProductCoverageError, SpecError):
    """The requested region or time holds no data of the source: an ROI outside the raster or the STAC
    items, outside a product's coverage, or no Earth Engine image matching the filters.

    One class for "nothing there" whatever the source; it is also a :class:`ProductCoverageError` and a
    :class:`SpecError`, the classes these cases raised before.
    """


class RandomWeightsWarning(UserWarning):
    """Emitted when a model runs with ``weights="random"``: its embeddings carry no meaning."""


def user_stacklevel() -> int:
    """The ``stacklevel=`` of the first caller outside xrembed, so that a warning points at the user's line."""
    import inspect
    from pathlib import Path

    package_dir = str(Path(__file__).resolve().parent)
    frame, level = inspect.currentframe(), 1
    while frame is not None and str(Path(frame.f_code.co_filename).resolve()).startswith(package_dir):
        frame, level = frame.f_back, level + 1
    return max(level - 1, 1)


class SlowPrecisionWarning(UserWarning):
    """Emitted when a ``precision=`` runs slower than fp32 on this device (bf16 on a CPU without bfloat16
    instructions); the message names the faster choice."""


class ExportError(XrembedError):
    """An export stopped on a failing (ROI, model) unit; its manifest records what was done."""


class OverwriteError(ExportError, FileExistsError):
    """A target exists and xrembed cannot prove it wrote it; pass ``overwrite=True`` to replace it."""


class StoreError(XrembedError):
    """A store or file xrembed wrote cannot be read back (torn chunk, missing group, wrong kind)."""


class MissingDependencyError(XrembedError, ImportError):
    """An optional dependency is not installed (e.g. the ``analysis`` extra: scikit-learn, geopandas,
    matplotlib); the message names the ``pip install`` command. Also an ``ImportError``."""


class ResumeMismatchError(ExportError, ValueError):
    """A store holds the results of another request (model, weights, options or input changed): resuming into
    it would mix two requests' results (``xrembed.to_zarr(..., resume=True)``)."""
