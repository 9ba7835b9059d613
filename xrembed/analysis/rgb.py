"""An RGB quicklook of an embedding grid: three PCA components (or three chosen embedding bands) with a robust
percentile stretch, as ``(band=[r, g, b], y, x)`` uint8 with nodata 0 that ``rio.to_raster`` writes as a
georeferenced GeoTIFF."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import xarray as xr

from ..errors import OptionError
from ._grid import EMBEDDING_DIM, embedding_grid, finish
from ._sampling import sample_valid_cells
from .pca import DEFAULT_SAMPLE_SIZE, fit_pca

__all__ = ["NODATA", "to_rgb"]

#: The nodata value of the quicklook: valid cells take 1..255, cells with no data 0.
NODATA = 0
_CHANNELS = ["r", "g", "b"]


def _stretch_limits(sample: np.ndarray, percentiles: tuple[float, float]) -> tuple[np.ndarray, np.ndarray]:
    low, high = np.percentile(sample, percentiles, axis=0)
    return low.astype(np.float64), high.astype(np.float64)


def _check_percentiles(percentiles) -> tuple[float, float]:
    try:
        low, high = (float(p) for p in percentiles)
    except (TypeError, ValueError) as err:
        raise OptionError(f"percentiles={percentiles!r} must be two numbers (low, high), e.g. (2, 98).") from err
    if not 0 <= low < high <= 100:
        raise OptionError(f"percentiles={percentiles!r} must satisfy 0 <= low < high <= 100, e.g. (2, 98).")
    return low, high


def to_rgb(
    emb: xr.DataArray,
    *,
    bands: Sequence[int] | None = None,
    percentiles: tuple[float, float] = (2, 98),
    value_range: tuple[float, float] | None = None,
    sample_size: int = DEFAULT_SAMPLE_SIZE,
    seed: int = 0,
) -> xr.DataArray:
    """A lazy RGB quicklook ``(band=["r", "g", "b"], y, x)`` uint8 of an embedding grid.

    By default the first three principal components (:func:`~xrembed.analysis.pca`, fitted on a seeded sample
    of valid cells), each stretched linearly between its ``percentiles`` over that sample, onto 1..255. Cells
    with no data (NaN in any channel) are 0, declared as nodata (``rio.nodata``), so ``rgb.rio.to_raster(path)``
    writes a georeferenced GeoTIFF whose nodata is masked by GIS software. CRS and coordinates are kept.

    Parameters
    ----------
    emb
        An embedding grid ``(..., embedding, y, x)``, or a PCA output ``(..., component=3, y, x)``.
    bands
        Three embedding indices to show instead of PCA components (e.g. ``[1, 16, 9]``, AlphaEarth's default
        view of the Satellite Embedding's A01/A16/A09).
    percentiles
        Lower and upper percentile of each channel over the sample, mapped to 1 and 255.
    value_range
        A fixed ``(low, high)`` for all three channels instead of percentiles (AlphaEarth: ``(-0.3, 0.3)``).
    sample_size, seed
        The sample the PCA and the percentiles are computed from.

    Returns
    -------
    xarray.DataArray
        ``(band, y, x)`` uint8 named ``rgb``; ``attrs["stretch_low"]`` / ``["stretch_high"]`` per channel.

    Examples
    --------
    >>> rgb = emb.rsembed.to_rgb()                 # doctest: +SKIP
    >>> rgb.rio.to_raster("pca.tif")               # doctest: +SKIP
    """
    low_p, high_p = _check_percentiles(percentiles)
    if "component" in getattr(emb, "dims", ()) and EMBEDDING_DIM not in emb.dims:
        source = embedding_grid(emb, "to_rgb()", dim="component")
        if source.sizes["component"] != 3:
            raise OptionError(
                f"to_rgb() on a PCA output needs 3 components, it has {source.sizes['component']}; "
                "use `emb.rsembed.pca(n_components=3)` or pass the embedding grid itself."
            )
        channels, what = source, "pca components"
        sample = None if value_range is not None else sample_valid_cells(
            source, size=sample_size, seed=seed, dim="component", what="to_rgb()"
        ).values
    else:
        grid = embedding_grid(emb, "to_rgb()")
        if bands is not None:
            bands = [int(b) for b in bands]
            size = grid.sizes[EMBEDDING_DIM]
            if len(bands) != 3 or not all(0 <= b < size for b in bands):
                raise OptionError(f"bands={bands!r} must be three embedding indices between 0 and {size - 1}.")
            channels = grid.isel({EMBEDDING_DIM: bands}).rename({EMBEDDING_DIM: "component"})
            channels = channels.drop_vars([c for c in channels.coords if "component" in channels[c].dims])
            what = f"embedding bands {bands}"
            sample = None if value_range is not None else sample_valid_cells(
                channels, size=sample_size, seed=seed, dim="component", what="to_rgb()"
            ).values
        else:
            fitted = fit_pca(grid, 3, sample_size=sample_size, seed=seed)
            channels, what, sample = fitted.transform(grid), "pca components 0, 1, 2", fitted.sample_scores
    if value_range is not None:
        try:
            low_v, high_v = (float(v) for v in value_range)
        except (TypeError, ValueError) as err:
            raise OptionError(f"value_range={value_range!r} must be two numbers (low, high), e.g. (-0.3, 0.3).") from err
        if not low_v < high_v:
            raise OptionError(f"value_range={value_range!r} needs low < high.")
        low, high = np.full(3, low_v), np.full(3, high_v)
    else:
        low, high = _stretch_limits(sample, (low_p, high_p))
    span = np.where(high > low, high - low, 1.0)
    scale = xr.DataArray(span, dims="component")
    offset = xr.DataArray(low, dims="component")
    unit = ((channels.astype(np.float64) - offset) / scale).clip(0.0, 1.0)
    valid = channels.notnull().all("component")
    levels = (1 + (unit * 254).round()).where(valid, NODATA).fillna(NODATA)  # fillna: NaN never reaches astype
    rgb = levels.astype(np.uint8).rename({"component": "band"}).assign_coords(band=_CHANNELS)
    order = [d if d != "component" else "band" for d in channels.dims]
    rgb = rgb.transpose(*order)
    attrs = {
        "analysis": "rgb",
        "channels": what,
        "stretch_low": [float(v) for v in low],
        "stretch_high": [float(v) for v in high],
    }
    rgb = finish(rgb, emb, "rgb", attrs, nan_nodata=False)
    rgb.encoding = {key: value for key, value in rgb.encoding.items() if key == "grid_mapping"}
    return rgb.rio.write_nodata(NODATA, encoded=False)
