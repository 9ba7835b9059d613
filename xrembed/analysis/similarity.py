"""Cosine similarity of every cell to a query: a vector, points, polygons or text, with optional negatives
(GeoVibes' ``2 * mean(positives) - mean(negatives)``). The map is lazy, chunk by chunk; NaN cells stay NaN."""

from __future__ import annotations

import importlib
import numbers
from collections.abc import Sequence

import numpy as np
import xarray as xr
from pyproj import Transformer

from ..errors import NoDataInBoundsError, OptionError
from ..geo import Grid, parse_crs, read_crs, spatial_dims
from ._deps import require
from ._grid import EMBEDDING_DIM, embedding_grid, finish, map_cells

__all__ = ["cosine_map", "query_vector", "similarity"]

#: The CRS of a point given as a bare ``(x, y)`` tuple or a shapely geometry, unless ``crs=`` says otherwise.
DEFAULT_QUERY_CRS = "EPSG:4326"


# --- block function ----------------------------------------------------------------------------------------------


def _cosine(block: np.ndarray, query: np.ndarray) -> np.ndarray:
    """``(..., D)`` -> ``(...)``: cosine of each cell with the unit vector ``query``; NaN for NaN or zero cells."""
    values = block.astype(np.float64)
    norm = np.sqrt(np.einsum("...d,...d->...", values, values))
    with np.errstate(invalid="ignore", divide="ignore"):
        out = (values @ query) / norm
    out[~(norm > 0)] = np.nan  # a zero vector has no direction; NaN norms (no data) stay NaN
    return out.astype(np.float32)


def cosine_map(emb: xr.DataArray, vector: np.ndarray, name: str = "similarity") -> xr.DataArray:
    """Lazy cosine ``(..., y, x)`` of every cell of ``emb`` with ``vector`` (same length as ``embedding``)."""
    vector = np.asarray(vector, dtype=np.float64)
    norm = float(np.linalg.norm(vector))
    if not np.isfinite(norm) or norm == 0:
        raise OptionError(
            "the query vector is zero (or not finite), so it has no direction: with negatives, the positives and "
            "negatives cancel out; choose examples that differ."
        )
    out = map_cells(_cosine, emb, kwargs={"query": vector / norm})
    return finish(out, emb, name, {"analysis": "cosine similarity"})


# --- queries -----------------------------------------------------------------------------------------------------


def _unit_rows(vectors: np.ndarray, what: str) -> np.ndarray:
    vectors = np.atleast_2d(np.asarray(vectors, dtype=np.float64))
    norms = np.linalg.norm(vectors, axis=1)
    if not np.all(np.isfinite(norms)) or np.any(norms == 0):
        raise OptionError(f"{what} holds a zero or non-finite vector, which has no direction; drop it.")
    return vectors / norms[:, None]


def _is_xy(item) -> bool:
    return (
        isinstance(item, tuple)
        and len(item) == 2
        and all(isinstance(v, numbers.Real) and not isinstance(v, bool) for v in item)
    )


def _is_text(query) -> bool:
    if isinstance(query, str):
        return True
    return isinstance(query, (list, tuple)) and len(query) > 0 and all(isinstance(q, str) for q in query)


def _text_vectors(emb: xr.DataArray, text) -> np.ndarray:
    try:
        text_module = importlib.import_module("xrembed.text")
        text_query = text_module.query_vector
    except (ImportError, AttributeError) as err:
        raise OptionError(
            "text queries need `xrembed.text.query_vector`, which this install of xrembed does not provide; "
            "pass a vector, a point or polygons instead."
        ) from err
    return np.asarray(text_query(emb, text), dtype=np.float64)


def _describe_bounds(grid: Grid) -> str:
    left, bottom, right, top = grid.bounds
    return f"x {left:.6g}..{right:.6g}, y {bottom:.6g}..{top:.6g} in {grid.crs.to_string()}"


def _outside(what: str, where: str, grid: Grid, crs) -> NoDataInBoundsError:
    lonlat = parse_crs(crs).is_geographic
    hint = (
        "Points are longitude/latitude unless `crs=` says otherwise; for coordinates in the raster's CRS pass "
        "`crs=emb.rio.crs`."
        if lonlat
        else "Check the coordinates and their CRS (`crs=`)."
    )
    return NoDataInBoundsError(f"{what} {where} lies outside the raster ({_describe_bounds(grid)}). {hint}")


def _single_grid(emb: xr.DataArray, what: str) -> None:
    y_dim, x_dim = spatial_dims(emb)
    extra = [d for d in emb.dims if d not in (EMBEDDING_DIM, y_dim, x_dim)]
    if extra:
        raise OptionError(
            f"{what} given as places needs a single (embedding, y, x) grid, but the grid also has {extra}; pick one "
            f"step, e.g. `emb.isel({extra[0]}=0)`, or pass the query as a vector."
        )


def _locate(grid: Grid, xs, ys, crs, what: str) -> tuple[np.ndarray, np.ndarray]:
    """Rows and columns of the cells under points given in ``crs``; a point off the raster is an error."""
    source = parse_crs(crs, "the query's CRS", "`crs='EPSG:4326'` (lon/lat) or `crs=emb.rio.crs`")
    xs, ys = np.asarray(xs, dtype=np.float64), np.asarray(ys, dtype=np.float64)
    if source != grid.crs:
        xs, ys = Transformer.from_crs(source, grid.crs, always_xy=True).transform(xs, ys)
        xs, ys = np.asarray(xs, dtype=np.float64), np.asarray(ys, dtype=np.float64)
    t = grid.transform
    with np.errstate(invalid="ignore"):
        cols = np.floor((xs - t.c) / t.a)
        rows = np.floor((ys - t.f) / t.e)
    height, width = grid.shape
    for i in range(xs.size):
        if not (np.isfinite([xs[i], ys[i]]).all() and 0 <= rows[i] < height and 0 <= cols[i] < width):
            raise _outside(what, f"point {i} ({xs[i]:.6g}, {ys[i]:.6g} in the raster's CRS)", grid, crs)
    return rows.astype(np.int64), cols.astype(np.int64)


def _polygon_cells(grid: Grid, geometry, index: int, what: str):
    """The window of the grid under ``geometry`` (in the grid's CRS) and the mask of its cells: centres inside,
    or, for a polygon smaller than a cell, the cells it touches."""
    from rasterio.features import geometry_mask

    window = grid.window(geometry.bounds).clipped(grid.shape)
    if window.is_empty:
        raise _outside(what, f"polygon {index}", grid, grid.crs)
    sub = grid[window]
    for all_touched in (False, True):
        inside = geometry_mask([geometry], out_shape=sub.shape, transform=sub.transform, invert=True, all_touched=all_touched)
        if inside.any():
            break
    return window, inside


def _read_all(parts: list) -> list[np.ndarray]:
    """Compute the lazy pieces together: a chunk under several places is computed once."""
    if any(hasattr(part, "dask") for part in parts):
        import dask

        parts = dask.compute(*parts)
    return [np.asarray(part, dtype=np.float64) for part in parts]


def _place_vectors(emb: xr.DataArray, places: list, what: str) -> np.ndarray:
    """One vector per place: ``("points", label, rows, cols)`` gives one per point (its cell), ``("polygon",
    label, window, mask)`` the mean unit vector of the polygon's valid cells. All are read in one computation."""
    y_dim, x_dim = spatial_dims(emb)
    parts = []
    for kind, _, first, second in places:
        if kind == "points":
            picked = emb.isel({y_dim: xr.DataArray(first, dims="_query"), x_dim: xr.DataArray(second, dims="_query")})
            parts.append(picked.transpose("_query", EMBEDDING_DIM).data)
        else:
            rows, cols = first.slices
            parts.append(emb.isel({y_dim: rows, x_dim: cols}).transpose(y_dim, x_dim, EMBEDDING_DIM).data)
    out = []
    for (kind, label, first, second), values in zip(places, _read_all(parts)):
        if kind == "points":
            bad = ~np.isfinite(values).all(axis=1)
            if bad.any():
                i = int(np.flatnonzero(bad)[0])
                raise NoDataInBoundsError(
                    f"{what} {label} (point {i}) falls on a cell with no data (NaN) at row {first[i]}, column "
                    f"{second[i]}; move it onto a valid cell or drop it."
                )
            out.extend(values)
            continue
        cells = values[second]
        cells = cells[np.isfinite(cells).all(axis=1)]
        norms = np.linalg.norm(cells, axis=1)
        cells, norms = cells[norms > 0], norms[norms > 0]
        if cells.shape[0] == 0:
            raise NoDataInBoundsError(
                f"{what} {label} covers no valid cell (only NaN, or none inside the raster); drop it or draw it "
                "over valid data."
            )
        out.append((cells / norms[:, None]).mean(axis=0))
    return np.asarray(out, dtype=np.float64)


def _point_vectors(emb: xr.DataArray, xs, ys, crs, what: str) -> np.ndarray:
    rows, cols = _locate(Grid.from_xarray(emb), xs, ys, crs, what)
    return _place_vectors(emb, [("points", "point", rows, cols)], what)


def _geometry_vectors(emb: xr.DataArray, geometries: Sequence, what: str) -> np.ndarray:
    """Vectors of shapely geometries in the grid's CRS: one per point, one per polygon."""
    grid = Grid.from_xarray(emb)
    places = []
    for i, geometry in enumerate(geometries):
        if geometry is None or geometry.is_empty:
            raise OptionError(f"{what} geometry {i} is empty; drop it.")
        if geometry.geom_type in ("Point", "MultiPoint"):
            points = [geometry] if geometry.geom_type == "Point" else list(geometry.geoms)
            rows, cols = _locate(grid, [p.x for p in points], [p.y for p in points], grid.crs, what)
            places.append(("points", f"geometry {i}", rows, cols))
        elif geometry.geom_type in ("Polygon", "MultiPolygon"):
            window, inside = _polygon_cells(grid, geometry, i, what)
            places.append(("polygon", f"polygon {i}", window, inside))
        else:
            raise OptionError(f"{what} geometry {i} is a {geometry.geom_type}; pass points or polygons.")
    return _place_vectors(emb, places, what)


def _frame_vectors(emb: xr.DataArray, frame, crs, what: str) -> np.ndarray:
    """Geometries of a GeoDataFrame/GeoSeries, reprojected to the grid's CRS."""
    if frame.crs is None:
        if crs is None:
            raise OptionError(
                f"{what} (a {type(frame).__name__}) has no CRS; set it, e.g. `gdf.set_crs('EPSG:4326')`, or pass `crs=`."
            )
        frame = frame.set_crs(parse_crs(crs, "the query's CRS"))
    frame = frame.to_crs(read_crs(emb))
    geometries = frame.geometry if hasattr(frame, "geometry") else frame
    if len(geometries) == 0:
        raise OptionError(f"{what} holds no geometry.")
    return _geometry_vectors(emb, list(geometries), what)


def _vectors(emb: xr.DataArray, query, crs, what: str) -> np.ndarray:
    dim = emb.sizes[EMBEDDING_DIM]
    if _is_text(query):
        vectors = _text_vectors(emb, query)
    elif type(query).__name__ in ("GeoDataFrame", "GeoSeries"):
        require("geopandas", f"similarity() with a {type(query).__name__} query")
        _single_grid(emb, what)
        vectors = _frame_vectors(emb, query, crs, what)
    elif hasattr(query, "geom_type") and hasattr(query, "bounds"):  # a shapely geometry
        _single_grid(emb, what)
        if crs is None:
            crs = DEFAULT_QUERY_CRS
        require("shapely", "similarity() with a shapely geometry")
        from shapely.ops import transform as shapely_transform

        target = read_crs(emb)
        source = parse_crs(crs, "the query's CRS")
        if source != target:
            project = Transformer.from_crs(source, target, always_xy=True).transform
            query = shapely_transform(project, query)
        vectors = _geometry_vectors(emb, [query], what)
    elif _is_xy(query) and dim != 2:
        _single_grid(emb, what)
        vectors = _point_vectors(emb, np.array([query[0]]), np.array([query[1]]), crs or DEFAULT_QUERY_CRS, what)
    elif isinstance(query, (list, tuple)) and query and all(_is_xy(q) for q in query) and dim != 2:
        _single_grid(emb, what)
        xy = np.asarray(query, dtype=np.float64)
        vectors = _point_vectors(emb, xy[:, 0], xy[:, 1], crs or DEFAULT_QUERY_CRS, what)
    else:
        if isinstance(query, xr.DataArray):
            query = query.transpose(..., EMBEDDING_DIM).values if EMBEDDING_DIM in query.dims else query.values
        try:
            vectors = np.asarray(query, dtype=np.float64)
        except (TypeError, ValueError) as err:
            raise OptionError(
                f"{what} of type {type(query).__name__} is not understood; pass a vector of length {dim}, a point "
                "(lon, lat), a list of points, a shapely geometry, a GeoDataFrame, or text."
            ) from err
        if vectors.ndim not in (1, 2) or vectors.shape[-1] != dim:
            raise OptionError(
                f"{what} has shape {vectors.shape}, but the embedding has {dim} values per cell: pass a vector of "
                f"length {dim} (or several, shape (n, {dim})); a point is a tuple (lon, lat)."
            )
    vectors = np.atleast_2d(vectors)
    if vectors.shape[-1] != dim:
        raise OptionError(f"{what} gave vectors of length {vectors.shape[-1]}, but the embedding has {dim}.")
    return vectors


def query_vector(emb: xr.DataArray, query, *, crs=None, what: str = "the query") -> np.ndarray:
    """The mean of the unit vectors ``query`` stands for, read from ``emb`` where it is a place.

    Parameters
    ----------
    emb
        The embedding grid ``(embedding, y, x)`` the places are read from.
    query
        A vector ``(D,)`` or vectors ``(n, D)``; a point ``(x, y)`` or a list of them (lon/lat unless ``crs=``);
        a shapely geometry (points or polygons, lon/lat unless ``crs=``); a GeoDataFrame/GeoSeries (its own CRS,
        reprojected); text (a str or a list of str, through ``xrembed.text.query_vector``). A polygon stands for
        the mean unit vector of the valid cells whose centres it holds (the cells it touches when it holds none).
    crs
        CRS of bare points and shapely geometries (default ``"EPSG:4326"``), or of a GeoDataFrame without one.

    Returns
    -------
    numpy.ndarray
        ``(D,)``: the mean of the examples' unit vectors.

    Examples
    --------
    >>> query_vector(emb, (-13.1, 25.0))        # doctest: +SKIP
    """
    emb = embedding_grid(emb, "similarity()")
    return _unit_rows(_vectors(emb, query, crs, what), what).mean(axis=0)


def similarity(emb: xr.DataArray, query, *, negatives=None, crs=None) -> xr.DataArray:
    """Lazy cosine similarity ``(y, x)`` of every cell of ``emb`` to ``query``, in ``[-1, 1]``.

    The query direction is the mean of the positives' unit vectors, or with ``negatives``
    ``2 * mean(positives) - mean(negatives)`` (GeoVibes' iterative search). Only the cells under the query's
    places are read to build it; the map itself is computed chunk by chunk. NaN cells stay NaN; CRS and
    coordinates are kept.

    Parameters
    ----------
    emb
        An embedding grid ``(..., embedding, y, x)`` (model output or precomputed product).
    query
        What to look for; see :func:`query_vector` for the accepted kinds (vector, points, polygons, text).
    negatives
        What to look away from, of the same kinds (optional).
    crs
        CRS of bare points and shapely geometries (default lon/lat, ``"EPSG:4326"``); pass ``emb.rio.crs`` for
        the raster's own x/y.

    Returns
    -------
    xarray.DataArray
        ``(y, x)`` float32 named ``similarity``.

    Raises
    ------
    xrembed.errors.NoDataInBoundsError
        A query place outside the raster, or on cells with no data.
    xrembed.errors.OptionError
        A query that is not understood, of the wrong length, or that cancels out with the negatives.

    Examples
    --------
    >>> sim = emb.rsembed.similarity((-13.1, 25.0))                       # doctest: +SKIP
    >>> sim = emb.rsembed.similarity(gdf_ports, negatives=gdf_beaches)    # doctest: +SKIP
    """
    emb = embedding_grid(emb, "similarity()")
    positive = query_vector(emb, query, crs=crs, what="the query")
    direction = positive
    if negatives is not None:
        direction = 2 * positive - query_vector(emb, negatives, crs=crs, what="the negatives")
    attrs = {
        "analysis": "cosine similarity",
        "query": type(query).__name__,
        "negatives": type(negatives).__name__ if negatives is not None else "none",
    }
    return finish(cosine_map(emb, direction), emb, "similarity", attrs)
