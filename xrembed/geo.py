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
from pyproj import CRS, Transformer

from .errors import CRSError, MissingCRSError, SpatialDimensionError

#: Dimension-name pairs (y, x) recognised as spatial, in order of preference.
SPATIAL_DIM_NAMES = (("y", "x"), ("lat", "lon"), ("latitude", "longitude"))


@dataclass(frozen=True)
class Grid:
    """An axis-aligned raster grid: ``shape`` is ``(height, width)`` in cells.

    Inputs may be south-up (``transform.e > 0``); :func:`north_up` flips them before embedding, so every
    output grid is north-up.
    """

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
        cached = _cached_transform(obj)
        if cached is not None and not is_axis_aligned(cached):
            raise SpatialDimensionError(rotated_message(cached))
        x_res, x_first = _axis_spacing(obj, x_dim)
        y_res, y_first = _axis_spacing(obj, y_dim)
        if x_res is None or y_res is None:
            if cached is None:
                raise SpatialDimensionError(
                    "cannot infer the pixel size from a spatial dimension of length 1 and the input has no "
                    "GeoTransform; write one with `obj.rio.write_transform(transform)`."
                )
            # A single row or column has no orientation of its own: take it north-up.
            x_res = abs(cached.a) if x_res is None else x_res
            y_res = -abs(cached.e) if y_res is None else y_res
        transform = Affine(x_res, 0.0, x_first - x_res / 2, 0.0, y_res, y_first - y_res / 2)
        grid = cls((int(height), int(width)), transform, crs)
        check_coordinates(grid)
        return grid

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
    return parse_crs(crs, "the input's CRS", "`obj.rio.write_crs('EPSG:32629')`")


def parse_crs(value, what: str = "crs", fix: str = "a valid one, e.g. 'EPSG:32629'") -> CRS:
    """``value`` as a pyproj ``CRS``; an unknown code or string is a :class:`CRSError` naming the fix."""
    if isinstance(value, CRS):
        return value
    try:
        return CRS.from_user_input(value if isinstance(value, (int, dict)) or hasattr(value, "to_wkt") else str(value))
    except Exception as err:  # pyproj.exceptions.CRSError: unknown EPSG code, garbled WKT, ...
        raise CRSError(f"{what} {str(value)!r} is not a CRS pyproj knows ({err}); pass {fix}.") from err


def is_axis_aligned(transform: Affine) -> bool:
    """No rotation or shear (a 90-degree rotation is rectilinear but swaps the axes: not aligned)."""
    scale = max(abs(transform.a), abs(transform.e), 1e-300)
    no_shear = abs(transform.b) <= 1e-9 * scale and abs(transform.d) <= 1e-9 * scale
    return no_shear and transform.a != 0 and transform.e != 0


def rotated_message(transform: Affine) -> str:
    """Why a rotated or sheared transform is refused, and how to warp it onto a north-up grid."""
    return (
        f"the grid is rotated or sheared (transform {tuple(round(v, 6) for v in transform[:6])}); xrembed needs "
        "an axis-aligned north-up grid. Warp it first: `xrembed.open_raster(path)` warps a rotated GeoTIFF lazily "
        "(for an array, write it with `da.rio.to_raster('in.tif')` first), or run `gdalwarp in.tif out.tif`."
    )


#: Pixel sizes below this (in CRS units) on a projected CRS, with coordinates in degree range, are degrees.
_DEGREE_LIKE_RES = 0.01


def check_coordinates(grid: Grid) -> None:
    """Refuse coordinates that cannot be in ``grid.crs``: metres under a geographic CRS, or degrees under a
    projected one (a ``write_crs`` with the wrong CRS). Only the pixel-centre extent is looked at."""
    height, width = grid.shape
    t = grid.transform
    xs = (t.c + t.a / 2, t.c + t.a * (width - 0.5))
    ys = (t.f + t.e / 2, t.f + t.e * (height - 0.5))
    x0, x1, y0, y1 = min(xs), max(xs), min(ys), max(ys)
    extent = f"x {x0:.6g}..{x1:.6g}, y {y0:.6g}..{y1:.6g}"
    name = grid.crs.to_string()
    if grid.crs.is_geographic and not (-360 <= x0 and x1 <= 360 and -90 - 1e-9 <= y0 and y1 <= 90 + 1e-9):
        raise CRSError(
            f"the coordinates ({extent}) are not longitudes/latitudes, but the CRS {name} is geographic (degrees). "
            "They look like a projected CRS's metres: write the CRS they are in, e.g. "
            "`da.rio.write_crs('EPSG:32629')` (UTM 29N), not a geographic one."
        )
    if not grid.crs.is_projected:
        return
    in_degree_range = -360 <= x0 and x1 <= 360 and -90 <= y0 and y1 <= 90
    if in_degree_range and max(abs(t.a), abs(t.e)) < _DEGREE_LIKE_RES:
        raise CRSError(
            f"the coordinates ({extent}) with a pixel size of {abs(t.a):.3g} look like degrees, but the CRS {name} "
            "is projected. Write the CRS they are in, e.g. `da.rio.write_crs('EPSG:4326')`."
        )
    # Far outside a projection's domain its inverse is infinite or wraps around (a UTM northing of 4e8 m comes
    # back as 81 km): the round trip through longitude/latitude shows coordinates that are no place on Earth.
    x, y = (x0 + x1) / 2, (y0 + y1) / 2
    try:
        to_geodetic = Transformer.from_crs(grid.crs, grid.crs.geodetic_crs, always_xy=True)
        lon, lat = to_geodetic.transform(x, y)
        x_back, y_back = to_geodetic.transform(lon, lat, direction="INVERSE")
    except Exception:  # noqa: BLE001  (a CRS pyproj cannot invert: nothing to check against)
        return
    tolerance = max(1.0, 1e-6 * max(abs(x), abs(y)))
    round_trips = abs(x_back - x) <= tolerance and abs(y_back - y) <= tolerance
    if not (np.isfinite([lon, lat, x_back, y_back]).all() and round_trips):
        raise CRSError(
            f"the coordinates ({extent}) are no place on Earth in the CRS {name}: they lie far outside its area of "
            "use. Write the CRS they are in, e.g. `da.rio.write_crs('EPSG:32629')`, or check the coordinates' units."
        )


def north_up(obj: xr.DataArray | xr.Dataset) -> xr.DataArray | xr.Dataset:
    """``obj`` with ``y`` decreasing and ``x`` increasing: a south-up or east-to-west raster is flipped
    lazily (a reversed view, no pixel read), so its embeddings lie on a north-up grid."""
    y_dim, x_dim = spatial_dims(obj)
    flips = {}
    for dim, wrong in ((y_dim, np.greater), (x_dim, np.less)):
        if dim in obj.coords and obj.sizes[dim] > 1:
            values = obj[dim].values
            if wrong(values[-1], values[0]):
                flips[dim] = slice(None, None, -1)
    if not flips:
        return obj
    flipped = obj.isel(flips)
    if "spatial_ref" in flipped.coords:  # the parent's GeoTransform now describes another corner
        flipped = flipped.rio.write_transform(Grid.from_xarray(flipped).transform)
    return flipped


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
