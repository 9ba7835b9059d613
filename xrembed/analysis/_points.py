"""Points and polygons for the vector side of the analysis layer: reading what the user passes (GeoDataFrame,
GeoSeries, shapely geometries, coordinate pairs), reprojecting it onto a raster's CRS, and finding the cell
of a grid under each point.

Coordinates alone need nothing beyond the core dependencies; geometries need shapely, and a GeoDataFrame
geopandas (the ``analysis`` extra), imported only when such an object is passed.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import xarray as xr
from pyproj import CRS, Transformer

from ..errors import MissingCRSError, OptionError
from ..geo import Grid, parse_crs
from ._deps import require

__all__ = ["as_array", "Locations", "read_points", "read_geometries", "cell_index", "vector_columns", "vector_dim"]


@dataclass(frozen=True)
class Locations:
    """Point coordinates in a target CRS, and the frame they came from (``None`` for bare coordinates)."""

    x: np.ndarray
    y: np.ndarray
    frame: object | None  # the caller's GeoDataFrame / GeoSeries, untouched


def as_array(obj, what: str) -> xr.DataArray:
    """``obj`` as one DataArray: itself, a Dataset's ``embeddings`` variable, or its only variable."""
    if isinstance(obj, xr.Dataset):
        names = list(obj.data_vars)
        if "embeddings" in names or len(names) == 1:
            return obj["embeddings" if "embeddings" in names else names[0]]
        raise OptionError(
            f"{what} needs one raster, but the Dataset holds {names}; pick one (`ds[{names[0]!r}]`) or stack bands "
            "with `ds.to_array('band')`."
        )
    if not isinstance(obj, xr.DataArray):
        raise OptionError(f"{what} needs an xarray DataArray with y/x dimensions, not {type(obj).__name__}.")
    return obj


def _is_geopandas(obj) -> bool:
    return type(obj).__module__.startswith("geopandas")


def _source_crs(obj, crs, target: CRS, what: str) -> CRS:
    """The CRS the user's coordinates are in: the frame's own, else ``crs=``, else the raster's."""
    own = getattr(obj, "crs", None) if _is_geopandas(obj) else None
    if own is not None and crs is not None and parse_crs(crs) != parse_crs(own):
        raise OptionError(
            f"{what} carry the CRS {parse_crs(own).to_string()} but crs={crs!r} was passed; drop crs= (the frame's "
            "own CRS is used) or reproject the frame with `gdf.to_crs(...)` first."
        )
    if own is not None:
        return parse_crs(own)
    if _is_geopandas(obj) and crs is None:
        raise MissingCRSError(
            f"{what} have no CRS; set it with `gdf.set_crs('EPSG:4326')` (or pass crs=...), so they can be placed "
            "on the raster."
        )
    return target if crs is None else parse_crs(crs, "crs=", "e.g. crs='EPSG:4326' for longitude/latitude")


def _reproject_xy(x: np.ndarray, y: np.ndarray, source: CRS, target: CRS) -> tuple[np.ndarray, np.ndarray]:
    if source == target:
        return x, y
    tx, ty = Transformer.from_crs(source, target, always_xy=True).transform(x, y)
    return np.asarray(tx, dtype="float64"), np.asarray(ty, dtype="float64")


def read_points(points, target: CRS, *, crs=None, what: str = "the points") -> Locations:
    """``points`` as x/y arrays in ``target``.

    Accepts a GeoDataFrame or GeoSeries of points (its own CRS), a shapely point or a list of them, one
    ``(x, y)`` pair, or an ``(n, 2)`` array-like of pairs; bare coordinates are in ``crs=`` (default: the
    raster's CRS ``target``), e.g. ``crs="EPSG:4326"`` for ``(lon, lat)``.

    Examples
    --------
    >>> from pyproj import CRS
    >>> loc = read_points([(-9.0, 25.0)], CRS.from_epsg(32629), crs="EPSG:4326")
    >>> round(float(loc.x[0])), round(float(loc.y[0]))
    (500000, 2764948)
    """
    source = _source_crs(points, crs, target, what)
    frame = None
    if _is_geopandas(points):
        frame = points
        geoms = np.asarray(points.geometry.values if hasattr(points, "geometry") else points.values, dtype=object)
        x, y = _point_xy(geoms, what)
    elif _looks_like_geometry(points):
        x, y = _point_xy(np.asarray(points if isinstance(points, (list, tuple)) else [points], dtype=object), what)
    else:
        try:
            pairs = np.asarray(points, dtype="float64")
        except (TypeError, ValueError) as err:
            raise OptionError(
                f"{what} must be a GeoDataFrame/GeoSeries of points, shapely points, or (x, y) pairs; got "
                f"{type(points).__name__} ({err})."
            ) from None
        if pairs.ndim == 1 and pairs.shape == (2,):
            pairs = pairs[None]
        if pairs.ndim != 2 or pairs.shape[1] != 2:
            raise OptionError(f"{what} as an array must have shape (n, 2) of (x, y) pairs; got shape {pairs.shape}.")
        x, y = pairs[:, 0], pairs[:, 1]
    x, y = _reproject_xy(np.asarray(x, dtype="float64"), np.asarray(y, dtype="float64"), source, target)
    return Locations(x=x, y=y, frame=frame)


def _looks_like_geometry(obj) -> bool:
    first = obj[0] if isinstance(obj, (list, tuple)) and len(obj) else obj
    return type(first).__module__.startswith("shapely")


def _point_xy(geoms: np.ndarray, what: str) -> tuple[np.ndarray, np.ndarray]:
    shapely = require("shapely", what)
    kinds = shapely.get_type_id(geoms)
    if geoms.size and not (kinds == shapely.GeometryType.POINT).all():
        raise OptionError(
            f"{what} must be points, but some geometries are not (types {sorted(set(shapely.get_type_id(geoms).tolist()))}, "
            "0 = point); for polygons use `zonal`, or pass `gdf.representative_point()`."
        )
    return shapely.get_x(geoms), shapely.get_y(geoms)


def read_geometries(polygons, target: CRS, *, crs=None, what: str = "the polygons"):
    """``polygons`` as a numpy array of shapely geometries in ``target``, and the caller's frame (or None).

    Accepts a GeoDataFrame or GeoSeries (its own CRS), one shapely geometry or a list of them (in ``crs=``,
    default the raster's CRS). Reprojection is exact per vertex (``pyproj``), not a bounding-box warp.
    """
    shapely = require("shapely", what)
    source = _source_crs(polygons, crs, target, what)
    frame = None
    if _is_geopandas(polygons):
        frame = polygons
        geoms = np.asarray(polygons.geometry.values if hasattr(polygons, "geometry") else polygons.values, dtype=object)
    elif _looks_like_geometry(polygons):
        geoms = np.asarray(polygons if isinstance(polygons, (list, tuple)) else [polygons], dtype=object)
    else:
        raise OptionError(
            f"{what} must be a GeoDataFrame/GeoSeries or shapely geometries, got {type(polygons).__name__}; build "
            "them with e.g. `shapely.box(x0, y0, x1, y1)` or `geopandas.read_file(path)`."
        )
    if source != target:
        transformer = Transformer.from_crs(source, target, always_xy=True)

        def project(coords: np.ndarray) -> np.ndarray:
            tx, ty = transformer.transform(coords[:, 0], coords[:, 1])
            return np.column_stack([tx, ty])

        geoms = shapely.transform(geoms, project)
    return geoms, frame


def cell_index(grid: Grid, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Row and column of the cell of ``grid`` under each point, and whether the point lies on the grid.

    The cell whose box holds a point is the one whose centre is nearest (a regular lattice). A point on a
    shared edge goes to the cell right of / below it, a point on the grid's outer right or bottom edge to the
    last cell.

    Examples
    --------
    >>> from affine import Affine
    >>> from pyproj import CRS
    >>> grid = Grid((2, 3), Affine(10, 0, 0, 0, -10, 20), CRS.from_epsg(32629))
    >>> cell_index(grid, np.array([5.0, 29.0, 30.0, 31.0]), np.array([19.0, 1.0, 0.0, 5.0]))
    (array([0, 1, 1, 0]), array([0, 2, 2, 0]), array([ True,  True,  True, False]))
    """
    inverse = ~grid.transform
    col_f, row_f = inverse * (np.asarray(x, dtype="float64"), np.asarray(y, dtype="float64"))
    height, width = grid.shape
    tol = 1e-9
    inside = (row_f >= -tol) & (row_f <= height + tol) & (col_f >= -tol) & (col_f <= width + tol)
    inside &= np.isfinite(row_f) & np.isfinite(col_f)
    rows = np.clip(np.floor(np.nan_to_num(row_f)), 0, height - 1).astype(int)
    cols = np.clip(np.floor(np.nan_to_num(col_f)), 0, width - 1).astype(int)
    return np.where(inside, rows, 0), np.where(inside, cols, 0), inside


def vector_dim(arr: xr.DataArray, what: str, y_dim: str, x_dim: str) -> str | None:
    """The one non-spatial dimension of ``arr`` (``None`` for a ``(y, x)`` raster); more is an error."""
    others = [d for d in arr.dims if d not in (y_dim, x_dim)]
    if len(others) > 1:
        extra = [d for d in others if d != "embedding"] or others[1:]
        raise OptionError(
            f"{what} works on a (embedding, y, x) or (y, x) raster, but this one has dims {tuple(arr.dims)}; select "
            f"one step first, e.g. `emb.isel({extra[0]}=0)`."
        )
    return others[0] if others else None


def vector_columns(arr: xr.DataArray, dim: str | None, prefix: str) -> list[str]:
    """Column names for the values along ``dim``: ``e000, e001, ...`` for ``embedding`` (``prefix`` + index,
    zero-padded), the coordinate's values for other dims (band names), the array's name for a ``(y, x)`` raster."""
    if dim is None:
        return [str(arr.name) if arr.name is not None else "value"]
    size = arr.sizes[dim]
    if dim == "embedding" or dim not in arr.coords:
        width = max(3, len(str(size - 1)))
        return [f"{prefix}{i:0{width}d}" for i in range(size)]
    return [str(v) for v in arr[dim].values]
