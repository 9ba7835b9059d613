"""Small synthetic embedding grids ``(embedding, y, x)`` with a rioxarray CRS, for the raster analysis tests."""

from __future__ import annotations

import numpy as np
import xarray as xr
from affine import Affine

from xrembed.geo import pixel_centres

ORIGIN = (500000.0, 4200000.0)  # UTM 29N, well inside the zone
RESOLUTION = 160.0


def make_grid(
    shape=(24, 30),
    dim=8,
    *,
    crs="EPSG:32629",
    resolution=RESOLUTION,
    origin=ORIGIN,
    nan_cells=(),
    seed=0,
    chunks=None,
    values=None,
) -> xr.DataArray:
    """A grid like a model's output: low-rank smooth structure plus noise, NaN at ``nan_cells`` ((row, col) list)."""
    height, width = shape
    if values is None:
        rng = np.random.default_rng(seed)
        yy, xx = np.meshgrid(np.linspace(0, 1, height), np.linspace(0, 1, width), indexing="ij")
        fields = np.stack([np.sin(3 * yy) * 3, np.cos(4 * xx) * 2, (yy - xx)])  # (3, h, w), decreasing variance
        loadings = rng.normal(size=(dim, 3))
        values = np.einsum("dk,khw->dhw", loadings, fields) + rng.normal(0, 0.1, size=(dim, height, width)) + 0.5
    values = np.array(values, dtype=np.float32)
    for row, col in nan_cells:
        values[:, row, col] = np.nan
    transform = Affine(resolution, 0, origin[0], 0, -resolution, origin[1])
    y, x = pixel_centres(transform, (height, width))
    da = xr.DataArray(
        values,
        dims=("embedding", "y", "x"),
        coords={"embedding": np.arange(values.shape[0]), "y": y, "x": x},
        name="embeddings",
        attrs={"model": "synthetic"},
    )
    da = da.rio.write_crs(crs).rio.write_transform(transform)
    if chunks is not None:
        da = da.chunk(chunks)
    return da


def unit(values: np.ndarray) -> np.ndarray:
    values = np.asarray(values, dtype=np.float64)
    return values / np.linalg.norm(values, axis=-1, keepdims=True)


def counting(da: xr.DataArray) -> tuple[xr.DataArray, list]:
    """``da`` (dask-backed) whose every chunk computation is recorded: (block location) appended to the list."""
    import dask.array as dsa

    seen: list = []

    def record(block, block_info=None):
        seen.append(tuple(block_info[0]["chunk-location"]))
        return block

    data = dsa.map_blocks(record, da.data, dtype=da.dtype, meta=np.empty((0, 0, 0), dtype=da.dtype))
    return da.copy(data=data), seen
