"""What every raster analysis checks first: an ``(..., embedding, y, x)`` DataArray with a CRS, and the
per-cell block functions' conventions (the embedding axis last, a cell is valid when all its values are finite)."""

from __future__ import annotations

import numpy as np
import xarray as xr

from ..errors import OptionError
from ..geo import Grid, read_crs, spatial_dims
from ..geo import with_nan_nodata as geo_with_nan_nodata

__all__ = ["EMBEDDING_DIM", "embedding_grid", "map_cells", "valid_cells", "with_nan_nodata"]

#: The dimension that holds the embedding vector, for every model and product.
EMBEDDING_DIM = "embedding"


def embedding_grid(obj: xr.DataArray | xr.Dataset, what: str, dim: str = EMBEDDING_DIM) -> xr.DataArray:
    """``obj`` as the embedding DataArray ``(..., dim, y, x)``, checked (dims, CRS, regular grid).

    A Dataset is accepted when it holds an ``embeddings`` variable (as written by ``emb.to_dataset()``) or a
    single variable. Integer arrays become float32 (no cell of them can be NaN).

    Raises
    ------
    OptionError
        When the object is not an embedding grid (no ``dim`` dimension: pooled output, a band raster, ...).
    xrembed.errors.SpatialDimensionError, xrembed.errors.MissingCRSError
        When it has no ``y``/``x`` dimensions or no CRS.
    """
    if isinstance(obj, xr.Dataset):
        names = list(obj.data_vars)
        if "embeddings" in obj.data_vars:
            obj = obj["embeddings"]
        elif len(names) == 1:
            obj = obj[names[0]]
        else:
            raise OptionError(
                f"{what} needs one embedding DataArray, but the Dataset holds {names}; pick one, e.g. `ds[{names[0]!r}]`."
            )
    if not isinstance(obj, xr.DataArray):
        raise OptionError(f"{what} needs an xarray DataArray (embedding, y, x), not {type(obj).__name__}.")
    has_space = any(y in obj.dims and x in obj.dims for y, x in (("y", "x"), ("lat", "lon")))
    if dim in obj.dims and not has_space:
        raise OptionError(
            f"{what} needs a grid (embedding, y, x), but the input's dims are {tuple(obj.dims)}, a pooled vector: "
            "embed with `output='grid'` (the default) to get one vector per cell."
        )
    if dim not in obj.dims:
        raise OptionError(
            f"{what} needs a grid with an {dim!r} dimension, but the input's dims are {tuple(obj.dims)}. Embed it "
            f"first, e.g. `emb = da.rsembed.embed('dofa')`, then call {what} on `emb`."
        )
    spatial_dims(obj)  # raises SpatialDimensionError naming the fix
    read_crs(obj)  # raises MissingCRSError naming the fix
    if not np.issubdtype(obj.dtype, np.floating):
        obj = obj.astype(np.float32)
    return obj


def grid_of(emb: xr.DataArray) -> Grid:
    """The ``(y, x)`` grid of an embedding array (transform from its coordinates, never a stale attr)."""
    return Grid.from_xarray(emb)


def valid_cells(values: np.ndarray) -> np.ndarray:
    """``True`` for the cells (rows of the last axis) whose values are all finite."""
    return np.isfinite(values).all(axis=-1)


#: Attributes of an embedding grid an analysis output carries on (what made the vectors).
CARRIED_ATTRS = ("model", "variant", "weights", "gsd", "product")


def finish(out: xr.DataArray, emb: xr.DataArray, name: str, attrs: dict, *, nan_nodata: bool = True) -> xr.DataArray:
    """Name ``out``, give it ``emb``'s provenance attrs plus ``attrs``, declare NaN nodata, and make sure its CRS
    is readable by rioxarray even when ``emb`` kept it only in ``attrs["crs"]`` (xee-style)."""
    out.name = name
    out.attrs = {**{key: value for key, value in emb.attrs.items() if key in CARRIED_ATTRS}, **attrs}
    if nan_nodata:
        out = with_nan_nodata(out)
    if out.rio.crs is None:
        out = out.rio.write_crs(read_crs(emb))
    return out


def with_nan_nodata(out: xr.DataArray) -> xr.DataArray:
    """``out`` declaring NaN as its nodata the way the embeddings do (:func:`xrembed.geo.with_nan_nodata`).

    An analysis output holds new values, so the input's storage encoding (dtype, scale, chunks) does not
    carry over; only its ``grid_mapping`` does."""
    out.encoding = {key: value for key, value in out.encoding.items() if key == "grid_mapping"}
    return geo_with_nan_nodata(out)


def map_cells(
    func, *grids: xr.DataArray, kwargs: dict | None = None, new_dim: str | None = None, new_size: int | None = None
) -> xr.DataArray:
    """``func`` applied cell by cell, lazily: each block's embedding axis last and whole.

    ``func`` takes the grids' blocks ``(..., D)`` and returns float32 ``(...)`` (``new_dim`` None) or
    ``(..., new_size)``; the result keeps the first grid's dimension order, ``new_dim`` in the embedding's place.
    """
    if any(grid.chunks is not None for grid in grids):  # a block must hold whole vectors
        grids = tuple(grid.chunk({EMBEDDING_DIM: -1}) for grid in grids)
    out = xr.apply_ufunc(
        func,
        *grids,
        kwargs=kwargs or {},
        input_core_dims=[[EMBEDDING_DIM]] * len(grids),
        output_core_dims=[[new_dim] if new_dim else []],
        dask="parallelized",
        output_dtypes=[np.float32],
        dask_gufunc_kwargs={"output_sizes": {new_dim: new_size}} if new_dim else None,
    )
    return output_order(grids[0], out, new_dim)


def output_order(emb: xr.DataArray, out: xr.DataArray, new_dim: str | None) -> xr.DataArray:
    """``out`` with ``emb``'s dimension order, ``new_dim`` taking the embedding's place (or dropped when None)."""
    order = [new_dim if d == EMBEDDING_DIM else d for d in emb.dims]
    order = [d for d in order if d is not None and d in out.dims]
    return out.transpose(*order)
