"""Grids: reading an input's CRS and transform, and building the output grid.

A :class:`Grid` is a frozen value (shape, affine, CRS), in the spirit of odc-geo's ``GeoBox``. The output
grid of a patch-``P`` model is ``Grid.from_xarray(x).zoom_out(P)``: same origin and CRS, ``P`` times the
cell size, ``ceil(n / P)`` cells. Coordinates of the output are written from that value, never inherited
from the input, so a stale ``GeoTransform`` cannot leak into the result.

This module is the one place for pixel-lattice geometry: snapping bounds outwards onto a lattice
(:func:`pixel_window`, :func:`snap_outwards`, one tolerance :data:`LATTICE_TOLERANCE`), windows
(:class:`PixelWindow`, :func:`window_transform`), pixel-centre coordinates (:func:`pixel_centres`),
zoom-out (:meth:`Grid.zoom_out`), UTM zone choice (:func:`utm_crs`, :func:`utm_zones`, :func:`utm_zone_of`)
and degree/metre conversion (:func:`metres_per_unit`). :class:`Grid` converts to and from
``odc.geo.geobox.GeoBox`` (:meth:`Grid.to_geobox`, :meth:`Grid.from_geobox`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np
import xarray as xr
from affine import Affine
from pyproj import CRS, Transformer

from .errors import CRSError, MissingCRSError, SpatialDimensionError

#: Dimension-name pairs (y, x) recognised as spatial, in order of preference.
SPATIAL_DIM_NAMES = (("y", "x"), ("lat", "lon"), ("latitude", "longitude"))

#: How close (in pixels) a bound must be to a lattice line to count as on it. It absorbs the float noise of
#: reprojection and of decimal degrees (0.3 / 0.1 is 2.9999999999999996), never a real sliver of a pixel.
#: odc-geo's ``snap_grid`` uses the same default.
LATTICE_TOLERANCE = 1e-6

#: Metres per degree of longitude at the equator (and, near enough, per degree of latitude anywhere): the
#: factor Earth Engine and GDAL use to turn a metre scale into degrees.
METRES_PER_DEGREE = 111_320.0


# -- lattices and windows ----------------------------------------------------------------------------------


def snap_outwards(low: float, high: float) -> tuple[int, int]:
    """The whole-pixel span ``[first, stop)`` covering the pixel-space interval ``[low, high]``.

    A value within :data:`LATTICE_TOLERANCE` of a lattice line counts as on it, so a bound that is a whole
    number of pixels up to float noise does not grow the span by a sliver pixel.

    Examples
    --------
    >>> snap_outwards(2.9999999999999996, 5.2)
    (3, 6)
    """
    return math.floor(low + LATTICE_TOLERANCE), math.ceil(high - LATTICE_TOLERANCE)


def is_on_lattice(offset_px: float) -> bool:
    """Whether an offset in pixels is a whole number of pixels (up to :data:`LATTICE_TOLERANCE`).

    Examples
    --------
    >>> is_on_lattice(40.0000000001), is_on_lattice(40.5)
    (True, False)
    """
    return abs(offset_px - round(offset_px)) <= LATTICE_TOLERANCE


class PixelWindow(NamedTuple):
    """Rows ``[row0, row1)`` and columns ``[col0, col1)`` of a lattice (may run past its edges)."""

    row0: int
    row1: int
    col0: int
    col1: int

    @property
    def shape(self) -> tuple[int, int]:
        return self.row1 - self.row0, self.col1 - self.col0

    @property
    def is_empty(self) -> bool:
        return self.row1 <= self.row0 or self.col1 <= self.col0

    @property
    def slices(self) -> tuple[slice, slice]:
        """``(rows, cols)`` slices for ``isel``/numpy indexing."""
        return slice(self.row0, self.row1), slice(self.col0, self.col1)

    def clipped(self, shape: tuple[int, int]) -> PixelWindow:
        """The part of the window inside a ``(height, width)`` raster (empty when it misses it)."""
        height, width = shape
        return PixelWindow(max(self.row0, 0), min(self.row1, height), max(self.col0, 0), min(self.col1, width))


def pixel_window(bounds: tuple[float, float, float, float], transform: Affine) -> PixelWindow:
    """The pixels of ``transform``'s lattice that ``(left, bottom, right, top)`` touch, snapped outwards.

    ``transform`` is axis-aligned (north-up, south-up or mirrored); the window is not clipped to any raster
    (see :meth:`PixelWindow.clipped`). The lattice is the transform's: pass ``Affine(res, 0, 0, 0, -res, 0)``
    for lines at whole multiples of ``res``.

    Examples
    --------
    >>> pixel_window((500_005, 4_199_900, 500_100, 4_200_000), Affine(10, 0, 500_000, 0, -10, 4_200_000))
    PixelWindow(row0=0, row1=10, col0=0, col1=10)
    """
    left, bottom, right, top = bounds
    t = transform
    col_a, col_b = (left - t.c) / t.a, (right - t.c) / t.a
    row_a, row_b = (top - t.f) / t.e, (bottom - t.f) / t.e
    col0, col1 = snap_outwards(min(col_a, col_b), max(col_a, col_b))
    row0, row1 = snap_outwards(min(row_a, row_b), max(row_a, row_b))
    return PixelWindow(row0, row1, col0, col1)


def window_transform(transform: Affine, window: PixelWindow) -> Affine:
    """The transform of ``window``: ``transform`` moved to the window's top-left pixel."""
    return transform * Affine.translation(window.col0, window.row0)


def pixel_centres(transform: Affine, shape: tuple[int, int], origin: tuple[int, int] = (0, 0)) -> tuple[np.ndarray, np.ndarray]:
    """Pixel-centre coordinates ``(y, x)`` of the ``shape`` pixels from pixel ``origin`` (row, col) of
    ``transform`` (rioxarray's convention: the centre of pixel ``i`` is ``c + a * (i + 0.5)``).

    Examples
    --------
    >>> pixel_centres(Affine(10, 0, 500_000, 0, -10, 4_200_000), (2, 3))
    (array([4199995., 4199985.]), array([500005., 500015., 500025.]))
    """
    height, width = shape
    row0, col0 = origin
    x = transform.c + transform.a * (np.arange(col0, col0 + width) + 0.5)
    y = transform.f + transform.e * (np.arange(row0, row0 + height) + 0.5)
    return y, x


# -- UTM zones and units -----------------------------------------------------------------------------------

_UTM_NORTH, _UTM_SOUTH = 32600, 32700  # EPSG:326zz / 327zz: WGS84 UTM zone zz, northern / southern


def utm_zone(lon: float) -> int:
    """The UTM zone number (1..60) whose 6-degree band holds longitude ``lon`` (180 is zone 60)."""
    return min(int((lon + 180) // 6) + 1, 60)


def utm_crs(lon: float, lat: float) -> CRS:
    """The WGS84 UTM zone CRS containing (``lon``, ``lat``) (EPSG:326xx north, 327xx south).

    A plain 6-degree band, not ``odc.geo.crs.CRS.utm``: that asks the EPSG database for the best zone by area
    of use, which is slower and may pick a neighbour on a zone edge.

    Examples
    --------
    >>> utm_crs(-9.5, 25.0).to_epsg(), utm_crs(151.2, -33.9).to_epsg()
    (32629, 32756)
    """
    return CRS.from_epsg((_UTM_NORTH if lat >= 0 else _UTM_SOUTH) + utm_zone(lon))


def utm_zones(west: float, east: float) -> list[int]:
    """UTM zone numbers a longitude span touches; an edge on a zone boundary does not touch the next zone.

    Examples
    --------
    >>> utm_zones(-7.0, -6.0), utm_zones(-7.0, -5.9)
    ([29], [29, 30])
    """
    first, stop = snap_outwards((west + 180) / 6, (min(east, 180.0) + 180) / 6)
    return list(range(min(first, 59) + 1, min(max(stop, first + 1), 60) + 1))


def utm_zone_of(crs: CRS) -> tuple[int, str] | None:
    """``(zone, "N" | "S")`` of a WGS84 UTM CRS, ``None`` for any other CRS.

    Examples
    --------
    >>> utm_zone_of(CRS.from_epsg(32756)), utm_zone_of(CRS.from_epsg(4326))
    ((56, 'S'), None)
    """
    epsg = crs.to_epsg() or 0
    for base, hemisphere in ((_UTM_NORTH, "N"), (_UTM_SOUTH, "S")):
        if base + 1 <= epsg <= base + 60:
            return epsg - base, hemisphere
    return None


def utm_crs_of_zone(zone: int, hemisphere: str = "N") -> CRS:
    """The WGS84 UTM CRS of ``zone`` (1..60) in hemisphere ``"N"`` or ``"S"``."""
    return CRS.from_epsg((_UTM_NORTH if hemisphere.upper() == "N" else _UTM_SOUTH) + int(zone))


def metres_per_unit(crs: CRS, lat: float = 0.0) -> float:
    """Metres per CRS unit along x: a degree of longitude at latitude ``lat`` on a geographic CRS, the axis
    unit's factor (1 for metres, 0.3048 for feet) on a projected one.

    Examples
    --------
    >>> metres_per_unit(CRS.from_epsg(4326)), metres_per_unit(CRS.from_epsg(32629))
    (111320.0, 1.0)
    """
    if crs.is_geographic:
        return METRES_PER_DEGREE * math.cos(math.radians(lat))
    return crs.axis_info[0].unit_conversion_factor if crs.axis_info else 1.0


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
        y, x = pixel_centres(self.transform, self.shape)
        return {"y": y, "x": x}

    def window(self, bounds: tuple[float, float, float, float]) -> PixelWindow:
        """The pixels of this grid's lattice that ``bounds`` (in ``crs``) touch, snapped outwards, unclipped."""
        return pixel_window(bounds, self.transform)

    def __getitem__(self, window: PixelWindow) -> Grid:
        """The grid of ``window`` (on the same lattice; it may run past this grid's edges)."""
        return Grid(window.shape, window_transform(self.transform, window), self.crs)

    def to_geobox(self):
        """This grid as an ``odc.geo.geobox.GeoBox`` (same shape, affine and CRS)."""
        from odc.geo.geobox import GeoBox

        return GeoBox(self.shape, self.transform, self.crs.to_wkt())

    @classmethod
    def from_geobox(cls, geobox) -> Grid:
        """The grid of an ``odc.geo.geobox.GeoBox`` (``odc.stac.load``'s output grid, for one)."""
        return cls((int(geobox.shape[0]), int(geobox.shape[1])), geobox.affine, CRS.from_wkt(geobox.crs.to_wkt()))


def grid_provenance(grid: Grid) -> dict[str, Any]:
    """The attr every embedding grid carries about its cells: ``gsd`` (cell size in metres along x, degrees
    scaled at the grid's centre, as ``geoemb:gsd`` is written)."""
    lat = 0.0
    if grid.crs.is_geographic:
        _, bottom, _, top = grid.bounds
        lat = (bottom + top) / 2
    return {"gsd": float(abs(grid.resolution[0]) * metres_per_unit(grid.crs, lat))}


def with_nan_nodata(grid: xr.DataArray) -> xr.DataArray:
    """``grid`` with NaN as its nodata where rioxarray reads it (``grid.rio.nodata``) and the writers write it:
    ``encoding["_FillValue"]``, so that ``attrs`` hold no NaN (two equal results' attrs compare equal)."""
    grid.attrs.pop("_FillValue", None)
    if isinstance(grid.attrs.get("nodata"), str):  # "NaN", as GSE's attrs said before
        grid.attrs.pop("nodata")
    grid.encoding["_FillValue"] = np.nan
    return grid


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
