"""Zonal vectors: one row per polygon, reduced from per-chunk sums so nothing but one chunk is ever in memory.

For a polygon ``Z`` and the valid cells ``c`` it overlaps, with ``a_c`` the area of ``Z`` inside cell ``c``
(exact: the polygon intersected with the cell's box), ``v_c`` the cell's vector and ``u_c = v_c / |v_c|``:

* ``area = sum(a_c)`` (valid area, CRS units squared), ``cells`` = how many valid cells it overlaps;
* mean vector ``m = sum(a_c v_c) / area``, its unit direction ``m / |m|``;
* mean resultant length ``R = |sum(a_c u_c)| / area`` (1 when every cell points the same way, near 0 for
  a zone of scattered directions; AlphaEarth's homogeneity feature);
* optionally ``std`` per component from ``sum(a_c v_c**2)``.

Each chunk contributes ``sum(a_c)``, ``sum(a_c v_c)``, ``sum(a_c u_c)`` (and squares) for the polygons that
touch it; the totals are sums of those, so the result does not depend on the chunking and
:meth:`ZonalSums.rollup` merges zones exactly, as rs-embed's ``embed_zones`` does.

Coverage of a cell is computed per polygon window: cells the polygon's boundary does not touch are either
fully inside or fully outside (decided by their centre, GDAL's rasteriser); only the cells along the
boundary are intersected exactly with shapely. Holes and multipolygons follow from the geometry.
"""

from __future__ import annotations

import threading
import warnings
from collections.abc import Hashable, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
import xarray as xr

from ..errors import OptionError
from ..geo import Grid, PixelWindow, pixel_window, spatial_dims, window_transform
from ._deps import require
from ._points import as_array, read_geometries, vector_columns, vector_dim

__all__ = ["ZonalSums", "zonal", "zonal_sums", "coverage_areas"]

_STATS = ("mean", "std")
_RASTERIZE_LOCK = threading.Lock()


@dataclass(frozen=True)
class ZonalSums:
    """Per-zone sums from which every zonal statistic is exact; add two (disjoint chunk sets) or roll up.

    ``area`` is ``(P,)`` valid area, ``cells`` ``(P,)`` valid cells overlapped, ``vector_sum`` and
    ``unit_sum`` ``(P, D)`` area-weighted sums of the vectors and of their unit directions, ``square_sum``
    ``(P, D)`` of the squared components (only when ``std`` was asked for). ``index`` labels the zones.
    """

    index: pd.Index
    area: np.ndarray
    cells: np.ndarray
    vector_sum: np.ndarray
    unit_sum: np.ndarray
    square_sum: np.ndarray | None
    columns: tuple[str, ...]
    cell_area: float

    def rollup(self, keys: Sequence[Hashable] | pd.Series) -> ZonalSums:
        """Merge zones that share a key (e.g. fields into farms) by adding their sums: exact, not a mean of means.

        A cell in two zones of one group counts once per zone, as rs-embed's ``rollup`` does.

        Examples
        --------
        >>> import numpy as np, pandas as pd
        >>> z = ZonalSums(pd.RangeIndex(2), np.array([1.0, 3.0]), np.array([1, 3]), np.array([[2.0], [0.0]]),
        ...               np.array([[1.0], [3.0]]), None, ("e000",), 1.0)
        >>> z.rollup(["a", "a"]).to_frame()["e000"].tolist()
        [0.5]
        """
        keys = np.asarray(keys, dtype=object)
        if keys.shape != (self.area.size,):
            raise OptionError(f"rollup needs one key per zone ({self.area.size}), got {keys.shape[0] if keys.ndim else 1}.")
        codes, uniques = pd.factorize(pd.Series(keys))
        groups = len(uniques)

        def add(values):
            if values is None:
                return None
            out = np.zeros((groups,) + values.shape[1:], dtype=values.dtype)
            np.add.at(out, codes, values)
            return out

        return ZonalSums(
            index=pd.Index(uniques, name="zone"),
            area=add(self.area),
            cells=add(self.cells),
            vector_sum=add(self.vector_sum),
            unit_sum=add(self.unit_sum),
            square_sum=add(self.square_sum),
            columns=self.columns,
            cell_area=self.cell_area,
        )

    def to_frame(self) -> pd.DataFrame:
        """One row per zone: ``area``, ``cells``, ``coverage`` (area in cells), ``resultant_length``, the mean
        vector (``e000...``), its unit direction (``d000...``) and, when summed, the std (``s000...``). For a
        band raster the mean columns are the band names, the others ``direction_B04``, ``std_B04``.

        A zone without valid area (off the raster, or over NaN cells only) has ``area`` 0 and NaN statistics.
        """
        with np.errstate(invalid="ignore", divide="ignore"):
            area = np.where(self.area > 0, self.area, np.nan)[:, None]
            mean = self.vector_sum / area
            norm = np.linalg.norm(mean, axis=1, keepdims=True)
            direction = np.where(norm > 0, mean / norm, np.nan)
            resultant = np.linalg.norm(self.unit_sum / area, axis=1)
            parts = {
                "area": self.area,
                "cells": self.cells.astype("int64"),
                "coverage": self.area / self.cell_area,
                "resultant_length": resultant,
            }
            frames = [pd.DataFrame(parts, index=self.index)]
            frames.append(pd.DataFrame(mean, index=self.index, columns=list(self.columns)))
            frames.append(pd.DataFrame(direction, index=self.index, columns=self._names("d", "direction")))
            if self.square_sum is not None:
                variance = np.maximum(self.square_sum / area - mean**2, 0.0)
                frames.append(pd.DataFrame(np.sqrt(variance), index=self.index, columns=self._names("s", "std")))
        return pd.concat(frames, axis=1)

    def _names(self, letter: str, word: str) -> list[str]:
        return [letter + c[1:] if c.startswith("e") and c[1:].isdigit() else f"{word}_{c}" for c in self.columns]


def coverage_areas(geometry, transform, shape: tuple[int, int]) -> np.ndarray:
    """Area of ``geometry`` inside each cell of the grid ``(transform, shape)``, CRS units squared.

    Cells crossed by the boundary are intersected exactly with shapely; all others are wholly in or out.
    ``geometry`` is prepared in place (``shapely.prepare``): do not share one object between threads.

    Examples
    --------
    >>> import shapely
    >>> from affine import Affine
    >>> coverage_areas(shapely.box(5, 0, 20, 10), Affine(10, 0, 0, 0, -10, 10), (1, 3)).tolist()
    [[50.0, 100.0, 0.0]]
    """
    shapely = require("shapely", "zonal")
    from rasterio import features
    from rasterio.errors import NotGeoreferencedWarning

    height, width = shape
    cell_area = abs(transform.a * transform.e)
    if geometry is None or shapely.is_empty(geometry):
        return np.zeros(shape)
    # One rasterisation at a time: from several threads at once rasterio warns that its in-memory dataset has
    # no transform (a race in its setup); the rasterising is cheap beside the exact intersections.
    with _RASTERIZE_LOCK, warnings.catch_warnings():
        warnings.simplefilter("ignore", NotGeoreferencedWarning)
        inside, edge = _rasterize(features, geometry, transform, shape)
    edge = _dilate(edge.astype(bool))
    areas = np.where(inside.astype(bool) & ~edge, cell_area, 0.0)
    rows, cols = np.nonzero(edge)
    if rows.size:
        x0, y0 = transform * (cols, rows)
        x1, y1 = transform * (cols + 1, rows + 1)
        boxes = shapely.box(np.minimum(x0, x1), np.minimum(y0, y1), np.maximum(x0, x1), np.maximum(y0, y1))
        shapely.prepare(geometry)  # prepared predicates are cheap; an exact intersection is not
        whole = shapely.contains_properly(geometry, boxes)
        cut = shapely.intersects(geometry, boxes) & ~whole
        part = np.where(whole, cell_area, 0.0)
        if cut.any():
            part[cut] = shapely.area(shapely.intersection(geometry, boxes[cut]))
        areas[rows, cols] = part
    return areas


def _rasterize(features, geometry, transform, shape):
    """Cells whose centre is inside ``geometry``, and cells its boundary touches."""
    inside = features.rasterize([(geometry, 1)], out_shape=shape, transform=transform, fill=0, dtype="uint8")
    edge = features.rasterize([(geometry.boundary, 1)], out_shape=shape, transform=transform, fill=0, all_touched=True, dtype="uint8")
    return inside, edge


def _dilate(mask: np.ndarray) -> np.ndarray:
    """``mask`` grown by one cell in the 8-neighbourhood (robust to the rasteriser's edge cases)."""
    out = mask.copy()
    out[1:, :] |= mask[:-1, :]
    out[:-1, :] |= mask[1:, :]
    grown = out.copy()
    grown[:, 1:] |= out[:, :-1]
    grown[:, :-1] |= out[:, 1:]
    return grown


#: Values converted to float64 at a time (cells x components), so a polygon over a whole chunk of a 768-D
#: grid never needs a float64 copy of the chunk.
_BATCH_VALUES = 1 << 22


def _block_sums(values, transform, zone_ids, geometries_wkb, with_squares: bool):
    """Sums of one ``(D, h, w)`` block for the zones that touch it: ``(ids, area, cells, S, U, Q)``.

    The polygons arrive as WKB and are decoded here: each task owns its geometries, because shapely's
    in-place ``prepare`` of one geometry object shared by two threads crashes GEOS.
    """
    geometries = require("shapely", "zonal").from_wkb(geometries_wkb)
    values = np.asarray(values)
    depth, height, width = values.shape
    valid = np.isfinite(values.sum(axis=0, dtype="float64"))  # any NaN (or inf) component: no valid cell
    n = len(zone_ids)
    area, cells = np.zeros(n), np.zeros(n, dtype="int64")
    vector_sum, unit_sum = np.zeros((n, depth)), np.zeros((n, depth))
    square_sum = np.zeros((n, depth)) if with_squares else None
    flat = values.reshape(depth, height * width)
    batch = max(1, _BATCH_VALUES // max(depth, 1))
    for k, geometry in enumerate(geometries):
        window = PixelWindow(*_window(geometry.bounds, transform)).clipped((height, width))
        if window.is_empty:
            continue
        weights = coverage_areas(geometry, window_transform(transform, window), window.shape)
        weights = np.where(valid[window.slices], weights, 0.0)
        rows, cols = np.nonzero(weights > 0)
        if not rows.size:
            continue
        a_all = weights[rows, cols]
        index_all = (rows + window.row0) * width + (cols + window.col0)
        area[k], cells[k] = a_all.sum(), a_all.size
        for start in range(0, a_all.size, batch):
            a, index = a_all[start:start + batch], index_all[start:start + batch]
            v = flat[:, index].astype("float64")  # (D, cells in this batch)
            norms = np.linalg.norm(v, axis=0)
            u = np.divide(v, norms, out=np.zeros_like(v), where=norms > 0)  # a zero vector has no direction: adds 0
            vector_sum[k] += v @ a
            unit_sum[k] += u @ a
            if with_squares:
                square_sum[k] += (v * v) @ a
    return np.asarray(zone_ids), area, cells, vector_sum, unit_sum, square_sum


def _window(bounds, transform) -> tuple[int, int, int, int]:
    return tuple(pixel_window(bounds, transform))


def zonal_sums(emb: xr.DataArray, polygons, *, crs=None, stats: Sequence[str] = ("mean",)) -> ZonalSums:
    """The per-polygon sums behind :func:`zonal` (for exact roll-ups), streamed chunk by chunk.

    Parameters are those of :func:`zonal`. Each dask chunk is read once by one task that returns only the
    sums of the polygons touching it (a few vectors), so memory is bounded by the chunk size whatever the
    raster size; no cube of the raster is built.
    """
    stats = _check_stats(stats)
    emb = as_array(emb, "zonal")
    y_dim, x_dim = spatial_dims(emb)
    dim = vector_dim(emb, "zonal", y_dim, x_dim)
    grid = Grid.from_xarray(emb)
    geometries, frame = read_geometries(polygons, grid.crs, crs=crs)
    arr = emb.transpose(dim, y_dim, x_dim) if dim is not None else emb.expand_dims("_v", 0)
    data = arr.data
    depth = data.shape[0]
    with_squares = "std" in stats
    total = _empty(len(geometries), depth, with_squares)
    index = frame.index if frame is not None else pd.RangeIndex(len(geometries))
    if len(geometries):
        windows = np.array([_window(g.bounds, grid.transform) if g is not None and not g.is_empty else (0, 0, 0, 0) for g in geometries])
        for result in _compute_blocks(data, grid, windows, geometries, with_squares):
            _accumulate(total, result)
    return ZonalSums(
        index=index,
        area=total[0],
        cells=total[1],
        vector_sum=total[2],
        unit_sum=total[3],
        square_sum=total[4],
        columns=tuple(vector_columns(emb, dim, "e")),
        cell_area=abs(grid.transform.a * grid.transform.e),
    )


def _compute_blocks(data, grid: Grid, windows: np.ndarray, geometries: np.ndarray, with_squares: bool):
    """Yield each block's sums; dask blocks are computed in parallel by dask, one task per touched block."""
    if not hasattr(data, "dask"):  # numpy: the whole raster is one block
        touching = np.flatnonzero(_overlaps(windows, 0, grid.shape[0], 0, grid.shape[1]))
        if touching.size:
            yield _block_sums(np.asarray(data), grid.transform, touching, _wkb(geometries[touching]), with_squares)
        return
    import dask

    data = data.rechunk({0: -1})
    blocks = data.to_delayed()
    row_edges = np.concatenate([[0], np.cumsum(data.chunks[1])])
    col_edges = np.concatenate([[0], np.cumsum(data.chunks[2])])
    tasks = []
    for i in range(len(data.chunks[1])):
        for j in range(len(data.chunks[2])):
            r0, r1, c0, c1 = row_edges[i], row_edges[i + 1], col_edges[j], col_edges[j + 1]
            touching = np.flatnonzero(_overlaps(windows, r0, r1, c0, c1))
            if not touching.size:
                continue  # a chunk no polygon touches is never read
            transform = window_transform(grid.transform, PixelWindow(int(r0), int(r1), int(c0), int(c1)))
            block_sums = dask.delayed(_block_sums, pure=True)
            tasks.append(block_sums(blocks[0, i, j], transform, touching, _wkb(geometries[touching]), with_squares))
    yield from dask.compute(*tasks)


def _wkb(geometries: np.ndarray) -> np.ndarray:
    return require("shapely", "zonal").to_wkb(geometries)


def _overlaps(windows: np.ndarray, r0, r1, c0, c1) -> np.ndarray:
    return (windows[:, 0] < r1) & (windows[:, 1] > r0) & (windows[:, 2] < c1) & (windows[:, 3] > c0)


def _empty(n: int, depth: int, with_squares: bool) -> list:
    return [np.zeros(n), np.zeros(n, dtype="int64"), np.zeros((n, depth)), np.zeros((n, depth)),
            np.zeros((n, depth)) if with_squares else None]


def _accumulate(total: list, result) -> None:
    ids, *parts = result
    for acc, part in zip(total, parts):
        if acc is not None:
            np.add.at(acc, ids, part)


def _check_stats(stats) -> tuple[str, ...]:
    stats = (stats,) if isinstance(stats, str) else tuple(stats)
    unknown = [s for s in stats if s not in _STATS]
    if unknown or not stats:
        raise OptionError(
            f"stats={stats!r}: {unknown or 'nothing'} is not one of {_STATS}. 'mean' gives the valid-area-weighted "
            "mean vector with its unit direction, area, cell count and mean resultant length; 'std' adds the "
            "per-component standard deviation."
        )
    return stats


def zonal(emb: xr.DataArray, polygons, *, stats: Sequence[str] = ("mean",), crs=None, by=None):
    """One row per polygon: its valid-area-weighted mean vector, unit direction, area and homogeneity.

    Parameters
    ----------
    emb
        An embedding grid ``(embedding, y, x)`` with a CRS (lazy or eager), or any ``(band, y, x)`` /
        ``(y, x)`` raster. Streams over its dask chunks: only chunks a polygon touches are read, each once.
    polygons
        A GeoDataFrame or GeoSeries (reprojected from its own CRS onto ``emb``'s, vertex by vertex), or
        shapely geometries (in ``crs=``, default ``emb``'s CRS). Polygons, holes and multipolygons.
    stats
        ``("mean",)`` (default): ``area`` (valid area, CRS units squared: m² on a UTM grid), ``cells`` (valid
        cells overlapped), ``coverage`` (the area in cells), ``resultant_length`` (mean resultant length of the
        cells' unit vectors, area-weighted), the mean vector ``e000...`` and its unit direction ``d000...``.
        Add ``"std"`` for the area-weighted standard deviation per component ``s000...``.
    crs
        The CRS of shapely geometries (default ``emb``'s).
    by
        A column name of ``polygons`` or one key per polygon: zones sharing a key are rolled up exactly
        (their sums added) into one row per key.

    Returns
    -------
    geopandas.GeoDataFrame or pandas.DataFrame
        For a GeoDataFrame (and no ``by``): its columns and geometry plus the statistics, same index. Else a
        DataFrame indexed like the polygons (or by key). Cells are weighted by the area of the polygon inside
        them (exact intersection), NaN cells count for nothing; a polygon off the raster or over NaN cells
        only has ``area`` 0, ``cells`` 0 and NaN statistics.

    Examples
    --------
    >>> import numpy as np, shapely, xarray as xr
    >>> values = np.array([[[9.0, 9.0], [1.0, 3.0]], [[9.0, 9.0], [0.0, 0.0]]])     # (embedding, y, x)
    >>> emb = xr.DataArray(values, dims=("embedding", "y", "x"),
    ...                    coords={"y": [15.0, 5.0], "x": [5.0, 15.0]}).rio.write_crs("EPSG:32629")
    >>> row = zonal(emb, [shapely.box(5, 0, 20, 10)]).iloc[0]   # half the lower-left cell, all the lower-right
    >>> float(row["area"]), int(row["cells"]), round(float(row["e000"]), 4), float(row["resultant_length"])
    (150.0, 2, 2.3333, 1.0)
    """
    sums = zonal_sums(emb, polygons, crs=crs, stats=stats)
    frame = polygons if type(polygons).__module__.startswith("geopandas") else None
    if by is not None:
        keys = frame[by] if isinstance(by, str) and frame is not None else by
        return sums.rollup(keys).to_frame()
    table = sums.to_frame()
    if frame is None:
        return table
    if type(frame).__name__ == "GeoSeries":
        frame = frame.to_frame("geometry")
    clash = [c for c in table.columns if c in frame.columns]
    if clash:
        raise OptionError(f"the polygons already have columns {clash}; rename them before calling zonal.")
    return pd.concat([frame, table], axis=1)
