"""Writing one (ROI, model) result into a Zarr store, streaming lazy results chunk by chunk.

Two shapes of storage (see :mod:`xrembed.export.formats` for the whole layout):

* a *group* per result (``<model>/<item>`` in a combined store, ``<model>`` in a per-item store):
  the georeferenced Dataset ``{"embeddings": da}``, rewritten whole (``mode="w"``) if it is redone;
* a *stack* for same-length pooled vectors: ``<model>/embeddings (item, embedding)``, created once
  full of NaN with one chunk per item, each item written into its own row (a region write).

Stores are written without consolidated metadata: groups are added over many runs, and a
consolidated copy would go stale.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import xarray as xr

from .conventions import zarr_convention_attrs

#: Spatial chunk side (cells) of grids written from memory; lazy grids keep their dask chunks.
GRID_CHUNK = 256
STACK_DIM = "item"


def as_dataset(da: xr.DataArray) -> xr.Dataset:
    """The stored form of a result: ``{"embeddings": da}`` with the Zarr geo conventions as attrs; a saved
    model input (named ``inputs``) is ``{"inputs": da}`` with its own attrs (it is no embedding)."""
    attrs = {k: v for k, v in da.attrs.items() if v is not None}
    if da.name == "inputs":
        ds = da.to_dataset()
        ds.attrs = attrs
        return ds
    ds = da.rename("embeddings").to_dataset()
    ds.attrs = {**zarr_convention_attrs(da), **attrs}
    return ds


def write_group(store: Path, group: str, da: xr.DataArray, on_band=None) -> None:
    """Write ``da`` as the group ``group`` of ``store``, replacing what an interrupted run left there.

    A lazy (dask) grid is written by region: the group's metadata and coordinates first, then one band
    of chunk rows at a time, each computed (its chunks in parallel) and written before the next, so
    memory holds one band, never the grid. ``on_band(done, total)`` reports progress.
    """
    ds = as_dataset(da)
    if da.chunks is None and {"y", "x"} <= set(da.dims):
        ds = ds.chunk({"y": GRID_CHUNK, "x": GRID_CHUNK})
    for var in ds.variables.values():
        var.encoding.clear()
    var = next(iter(ds.data_vars))
    row_chunks = ds[var].chunksizes.get("y") if da.chunks is not None else None
    if not row_chunks or len(row_chunks) == 1:
        ds.to_zarr(store, group=group, mode="w", consolidated=False)
        return
    ds.to_zarr(store, group=group, mode="w", consolidated=False, compute=False)  # metadata + coordinates
    data = ds[[var]].drop_vars([c for c in ds.coords if "y" not in ds[c].dims])
    region = {dim: slice(None) for dim in data[var].dims}
    stop = 0
    for band, rows in enumerate(row_chunks):
        start, stop = stop, stop + rows
        part = data.isel(y=slice(start, stop)).drop_vars([c for c in data.coords if c != "y"], errors="ignore")
        part.to_zarr(store, group=group, region={**region, "y": slice(start, stop)}, consolidated=False)
        if on_band is not None:
            on_band(band + 1, len(row_chunks))


def stack_matches(store: Path, group: str, names: Sequence[str], dim: int) -> bool:
    """Whether ``group`` already holds a stack for exactly these items and this vector length."""
    from zarr.errors import NodeNotFoundError

    try:
        ds = xr.open_zarr(store, group=group, consolidated=False)
    except (FileNotFoundError, NodeNotFoundError):
        return False  # only a missing stack is rebuilt; a read error must not wipe finished rows
    with ds:
        return (
            "embeddings" in ds
            and ds["embeddings"].shape == (len(names), dim)
            and [str(n) for n in ds[STACK_DIM].values] == list(names)
        )


def create_stack(store: Path, group: str, names: Sequence[str], template: xr.DataArray) -> None:
    """An all-NaN ``(item, embedding)`` stack with one chunk per item (written rows never share a chunk)."""
    import dask.array as dsa

    dim = template.sizes["embedding"]
    data = dsa.full((len(names), dim), np.nan, chunks=(1, dim), dtype=np.float32)
    stack = xr.DataArray(
        data,
        dims=(STACK_DIM, "embedding"),
        coords={STACK_DIM: np.array(list(names), dtype=object), "embedding": np.arange(dim)},
        attrs={k: v for k, v in template.attrs.items() if k not in ("input_crs", "input_bounds")},
        name="embeddings",
    )
    ds = as_dataset(stack)
    ds.to_zarr(store, group=group, mode="w", consolidated=False, compute=False)


def write_stack_row(store: Path, group: str, index: int, vector: xr.DataArray) -> None:
    """Write one item's pooled vector into its row of the stack."""
    row = xr.Dataset({"embeddings": ((STACK_DIM, "embedding"), np.asarray(vector.values, np.float32)[None])})
    row.to_zarr(store, group=group, region={STACK_DIM: slice(index, index + 1), "embedding": slice(None)},
                consolidated=False)
