"""Grids: reading an input's CRS and transform, and building the output grid.

A :class:`Grid` is a frozen value (shape, affine, CRS), in the spirit of odc-geo's ``GeoBox``. The output
grid of a patch-``P`` model is ``Grid.from_xarray(x).zoom_out(P)``: same origin and CRS, ``P`` times the
cell size, ``ceil(n / P)`` cells. Coordinates of the output are written from that value, never inherited
from the input, so a stale ``GeoTransform`` cannot leak into the result.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import xarray as xr
from affine import Affine
from pyproj import CRS

from .errors import MissingCRSError, SpatialDimensionError

#: Dimension-name pairs (y, x) recognised as spatial, in order of preference.
SPATIAL_DIM_NAMES = (("y", "x"), ("lat", "lon"), ("latitude", "longitude"))


@dataclass(frozen=True)
class Grid:
    """A north-up (or south-up) raster grid: ``shape`` is ``(height, width)`` in cells."""

    shape: tuple[int, int]
    transform: Affine
    crs: CRS

    @classmethod
    def from_xarray(cls, obj: xr.DataArray | xr.Dataset) -> Grid:
        """Read the grid of an xarray object (rioxarray ``spatial_ref`` or xee ``attrs["crs"]``).

        The transform is computed from the pixel-centre coordinates, not from a cached
        ``GeoTransform`` attribute, which goes stale when an array is coarsened or sliced.

        Examples
        --------
        >>> grid = Grid.from_xarray(da)          # doctest: +SKIP
        >>> grid.zoom_out(16).shape              # doctest: +SKIP
        (70, 70)
        """
        y_dim, x_dim = spatial_dims(obj)
        crs = read_crs(obj)
        height, width = obj.sizes[y_dim], obj.sizes[x_dim]
        x_res, x_first = _axis_spacing(obj, x_dim)
        y_res, y_first = _axis_spacing(obj, y_dim)
        if x_res is None or y_res is None:
            cached = _cached_transform(obj)
            if cached is None:
                raise SpatialDimensionError(
                    "cannot infer the pixel size from a spatial dimension of length 1 and the input has no "
                    "GeoTransform; write one with `obj.rio.write_transform(transform)`."
                )
            x_res = cached.a if x_res is None else x_res
            y_res = cached.e if y_res is None else y_res
        transform = Affine(x_res, 0.0, x_first - x_res / 2, 0.0, y_res, y_first - y_res / 2)
        return cls((int(height), int(width)), transform, crs)

    @property
    def resolution(self) -> tuple[float, float]:
        """``(x_res, y_res)`` with sign (``y_res`` is negative for north-up grids)."""
        return self.transform.a, self.transform.e

    @property
    def bounds(self) -> tuple[float, float, float, float]:
        """``(left, bottom, right, top)`` of the outer cell edges."""
        height, width = self.shape
        xs = (self.transform.c, self.transform.c + width * self.transform.a)
        ys = (self.transform.f, self.transform.f + height * self.transform.e)
        return min(xs), min(ys), max(xs), max(ys)

    def zoom_out(self, factor: int) -> Grid:
        """The grid of ``factor`` x ``factor`` blocks: same origin, ``ceil(n / factor)`` cells."""
        height, width = self.shape
        shape = (math.ceil(height / factor), math.ceil(width / factor))
        return Grid(shape, self.transform @ Affine.scale(factor), self.crs)

    def resized(self, image_size: int, patch_size: int) -> Grid:
        """The token grid of this extent resized to ``image_size`` px (``input_prep="resize"``).

        Each token covers ``patch_size`` px of the resized image, so a cell is ``extent * patch_size /
        image_size`` wide; there are ``image_size // patch_size`` of them (a remainder of the resized
        image that no token covers, e.g. 384 px with patch 14, is left out of the grid).
        """
        height, width = self.shape
        cells = image_size // patch_size
        scale = Affine.scale(width * patch_size / image_size, height * patch_size / image_size)
        return Grid((cells, cells), self.transform @ scale, self.crs)

    def coords(self) -> dict[str, np.ndarray]:
        """Pixel-centre coordinates ``{"y": ..., "x": ...}``."""
        height, width = self.shape
        t = self.transform
        x = t.c + t.a * (np.arange(width) + 0.5)
        y = t.f + t.e * (np.arange(height) + 0.5)
        return {"y": y, "x": x}


def spatial_dims(obj: xr.DataArray | xr.Dataset) -> tuple[str, str]:
    """Names of the ``(y, x)`` dimensions of ``obj``."""
    for y_dim, x_dim in SPATIAL_DIM_NAMES:
        if y_dim in obj.dims and x_dim in obj.dims:
            return y_dim, x_dim
    raise SpatialDimensionError(
        f"no spatial dimensions found among {tuple(obj.dims)}; xrembed expects 'y' and 'x' "
        "(or 'lat'/'lon'). Rename them, e.g. `obj.rename({'northing': 'y', 'easting': 'x'})`."
    )


def read_crs(obj: xr.DataArray | xr.Dataset) -> CRS:
    """The CRS of ``obj``, from rioxarray's grid mapping or xee's ``attrs["crs"]``."""
    crs = None
    try:
        crs = obj.rio.crs
    except Exception:  # rioxarray raises on conflicting per-variable CRSs; fall through to attrs
        crs = None
    if crs is None:
        candidates = [obj.attrs.get("crs")]
        if isinstance(obj, xr.Dataset):
            candidates += [var.attrs.get("crs") for var in obj.data_vars.values()]
        for candidate in candidates:
            if candidate:
                crs = candidate
                break
    if crs is None:
        raise MissingCRSError(
            "the input has no CRS. Set it with `obj.rio.write_crs('EPSG:32629')` (rioxarray) "
            "or open the data with a reader that records it (rioxarray, xee)."
        )
    try:
        return CRS.from_user_input(str(crs) if not isinstance(crs, CRS) else crs)
    except Exception as err:  # pyproj.exceptions.CRSError
        raise MissingCRSError(f"the input's CRS {crs!r} is not understood by pyproj ({err}).") from err


def _axis_spacing(obj: xr.DataArray | xr.Dataset, dim: str) -> tuple[float | None, float]:
    if dim not in obj.coords:
        raise SpatialDimensionError(
            f"dimension {dim!r} has no coordinate; xrembed needs pixel-centre coordinates to place the output. "
            "Assign them, e.g. with `obj.rio.write_transform(transform)` followed by rioxarray coords, "
            "or open the file with rioxarray."
        )
    values = np.asarray(obj[dim].values, dtype="float64")
    if values.size < 2:
        return None, float(values[0])
    steps = np.diff(values)
    step = (values[-1] - values[0]) / (values.size - 1)
    if step == 0 or not np.allclose(steps, step, rtol=1e-6, atol=abs(step) * 1e-6):
        raise SpatialDimensionError(
            f"coordinate {dim!r} is not regularly spaced; xrembed needs a regular grid. "
            "Reproject or resample first (e.g. `obj.rio.reproject(...)`)."
        )
    return float(step), float(values[0])


def _cached_transform(obj: xr.DataArray | xr.Dataset) -> Affine | None:
    try:
        return obj.rio.transform()
    except Exception:
        return None


def assign_grid(data: xr.DataArray, grid: Grid) -> xr.DataArray:
    """Attach ``grid``'s coordinates, CRS and transform to ``data`` (dims ending in ``y``, ``x``).

    The ``spatial_ref`` coordinate is written fresh, with the output transform in its
    ``GeoTransform``, so ``data.rio.transform()`` is right without ``recalc=True``.
    """
    coords = grid.coords()
    data = data.assign_coords(y=("y", coords["y"]), x=("x", coords["x"]))
    data = data.drop_vars("spatial_ref", errors="ignore")
    data = data.rio.write_crs(grid.crs)
    data = data.rio.write_transform(grid.transform)
    return data
