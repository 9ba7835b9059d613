"""Change between two embedding grids of the same place: ``1 - cosine`` per cell, lazy, on aligned grids only."""

from __future__ import annotations

import numpy as np
import xarray as xr

from ..errors import CRSError, OptionError, SpatialDimensionError
from ..geo import Grid, spatial_dims
from ._grid import EMBEDDING_DIM, embedding_grid, finish, map_cells

__all__ = ["change"]

_FIX = (
    "Put both on one grid first: embed the second raster onto the first's grid (products: "
    "`da.rsembed.embed(product, like=a)`; models: the same input grid and model for both years), or resample "
    "with `b = b.rio.reproject_match(a)`."
)


def _one_minus_cosine(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a = a.astype(np.float64)
    b = b.astype(np.float64)
    norms = np.sqrt(np.einsum("...d,...d->...", a, a) * np.einsum("...d,...d->...", b, b))
    with np.errstate(invalid="ignore", divide="ignore"):
        out = 1.0 - np.einsum("...d,...d->...", a, b) / norms
    out[~(norms > 0)] = np.nan  # no data in either, or a zero vector without direction
    return out.astype(np.float32)


def _check_aligned(a: xr.DataArray, b: xr.DataArray) -> None:
    grid_a, grid_b = Grid.from_xarray(a), Grid.from_xarray(b)
    if grid_a.crs != grid_b.crs:
        raise CRSError(
            f"change() needs both grids in one CRS, but a is in {grid_a.crs.to_string()} and b in "
            f"{grid_b.crs.to_string()}. {_FIX}"
        )
    if grid_a.shape != grid_b.shape:
        raise SpatialDimensionError(
            f"change() needs grids of one shape, but a is {grid_a.shape} and b is {grid_b.shape} cells (y, x). {_FIX}"
        )
    ta, tb = grid_a.transform, grid_b.transform
    tolerance = 1e-6 * max(abs(ta.a), abs(ta.e))
    if any(abs(p - q) > tolerance for p, q in zip(ta[:6], tb[:6])):
        raise SpatialDimensionError(
            f"change() needs grids on one transform, but a has {tuple(ta[:6])} and b {tuple(tb[:6])}. {_FIX}"
        )
    if a.sizes[EMBEDDING_DIM] != b.sizes[EMBEDDING_DIM]:
        raise OptionError(
            f"change() compares vectors of one model or product, but a has {a.sizes[EMBEDDING_DIM]} values per cell "
            f"and b {b.sizes[EMBEDDING_DIM]}; embed both with the same model."
        )


def change(a: xr.DataArray, b: xr.DataArray) -> xr.DataArray:
    """Lazy change map ``1 - cosine(a, b)`` per cell, in ``[0, 2]`` (0: same direction), between two embedding
    grids of one model on one grid (e.g. two years).

    Parameters
    ----------
    a, b
        Embedding grids ``(..., embedding, y, x)`` with the same CRS, transform, shape and embedding size.

    Returns
    -------
    xarray.DataArray
        ``(y, x)`` float32 named ``change``, on ``a``'s grid; NaN where either has no data.

    Raises
    ------
    xrembed.errors.CRSError, xrembed.errors.SpatialDimensionError
        The grids do not align (CRS; shape or transform); the message names the fix.
    xrembed.errors.OptionError
        Different embedding sizes (different models).

    Examples
    --------
    >>> delta = xrembed.change(emb_2021, emb_2024)      # doctest: +SKIP
    >>> changed = delta > 0.2                           # doctest: +SKIP
    """
    a = embedding_grid(a, "change()")
    b = embedding_grid(b, "change()")
    _check_aligned(a, b)
    y_dim, x_dim = spatial_dims(a)
    y_b, x_b = spatial_dims(b)
    b = b.rename({y_b: y_dim, x_b: x_dim}) if (y_b, x_b) != (y_dim, x_dim) else b
    # Equal up to float noise (checked above): b takes a's coordinates so alignment never drops a cell.
    # Scalar labels (a's and b's time step, say) would describe only one side of the difference: dropped.
    a = a.drop_vars([c for c in a.coords if c not in a.dims and c != "spatial_ref"])
    b = b.drop_vars([c for c in b.coords if c not in b.dims], errors="ignore")
    b = b.assign_coords({y_dim: a[y_dim].values, x_dim: a[x_dim].values, EMBEDDING_DIM: a[EMBEDDING_DIM].values})
    out = map_cells(_one_minus_cosine, a, b)
    if "spatial_ref" in a.coords and "spatial_ref" not in out.coords:
        out = out.assign_coords(spatial_ref=a["spatial_ref"])
    return finish(out, a, "change", {"analysis": "1 - cosine similarity"})
