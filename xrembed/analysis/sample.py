"""Sampling a raster at points: one row per point, the vector of the cell under it.

``emb.rsembed.sample(points)`` reads only the chunks that hold a point (vectorised point indexing on the
dask array), never the whole raster.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import xarray as xr

from ..errors import NoDataInBoundsError, OptionError
from ..geo import Grid, spatial_dims
from ._points import as_array, cell_index, read_points, vector_columns, vector_dim

__all__ = ["sample", "sample_values"]


def sample_values(arr: xr.DataArray, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray, Grid]:
    """The values of ``arr`` (``(D, y, x)`` or ``(y, x)``) at the cells under points already in its CRS.

    Returns ``(values, inside, grid)``: ``values`` is ``(n, D)`` float (NaN rows for points off the grid),
    ``inside`` says which points lie on it. Only the chunks holding a point are computed.
    """
    y_dim, x_dim = spatial_dims(arr)
    dim = vector_dim(arr, "sample", y_dim, x_dim)
    grid = Grid.from_xarray(arr)
    rows, cols, inside = cell_index(grid, x, y)
    width = 1 if dim is None else arr.sizes[dim]
    values = np.full((len(rows), width), np.nan, dtype="float64")
    if inside.any():
        picked = arr.isel({y_dim: xr.DataArray(rows[inside], dims="point"), x_dim: xr.DataArray(cols[inside], dims="point")})
        picked = picked.transpose("point", *([dim] if dim is not None else []))
        values[inside] = np.asarray(picked.values, dtype="float64").reshape(int(inside.sum()), width)
    return values, inside, grid


def sample(
    emb: xr.DataArray,
    points,
    *,
    crs=None,
    outside: str = "raise",
    prefix: str = "e",
):
    """One row per point: the vector of the raster cell under it (nearest cell centre).

    Parameters
    ----------
    emb
        An embedding grid ``(embedding, y, x)`` with a CRS, or any ``(band, y, x)`` / ``(y, x)`` raster
        (a label raster, a similarity map). Lazy input stays lazy until here; only the chunks that hold a
        point are computed.
    points
        A GeoDataFrame or GeoSeries of points (reprojected from its own CRS onto ``emb``'s), shapely points,
        one ``(x, y)`` pair or an ``(n, 2)`` array of pairs.
    crs
        The CRS of bare coordinates or shapely points (default: ``emb``'s CRS); e.g. ``"EPSG:4326"`` for
        ``(lon, lat)`` pairs.
    outside
        ``"raise"`` (default): a point off the raster is a :class:`~xrembed.errors.NoDataInBoundsError`.
        ``"nan"``: its row is kept with NaN values (``inside`` is False).
    prefix
        Column prefix for the vector components: ``e000, e001, ...``. Other dims name their columns by
        coordinate value (``B04``), a ``(y, x)`` raster by its name.

    Returns
    -------
    geopandas.GeoDataFrame or pandas.DataFrame
        For a GeoDataFrame/GeoSeries: a GeoDataFrame with the caller's columns and geometry (in its own CRS),
        plus ``cell_x``, ``cell_y`` (centre of the sampled cell, in ``emb``'s CRS), ``inside`` and the vector
        columns. For coordinates or shapely points: a DataFrame with ``x``, ``y`` (in ``emb``'s CRS) and the
        same columns. A point on a NaN cell (no valid data) gets NaN values: they are never filled. Save
        it with ``gdf.to_parquet("points.parquet")`` (GeoParquet).

    Raises
    ------
    NoDataInBoundsError
        A point off the raster with ``outside="raise"``.
    xrembed.errors.MissingCRSError
        A GeoDataFrame without a CRS.

    Examples
    --------
    >>> import numpy as np, xarray as xr, xrembed
    >>> emb = xr.DataArray(np.arange(8.0).reshape(2, 2, 2), dims=("embedding", "y", "x"),
    ...                    coords={"y": [15.0, 5.0], "x": [5.0, 15.0]}).rio.write_crs("EPSG:32629")
    >>> sample(emb, [(4.0, 14.0), (19.0, 1.0)])
          x     y  cell_x  cell_y  inside  e000  e001
    0   4.0  14.0     5.0    15.0    True   0.0   4.0
    1  19.0   1.0    15.0     5.0    True   3.0   7.0
    """
    if outside not in ("raise", "nan"):
        raise OptionError(f"outside={outside!r} is not one of 'raise', 'nan'.")
    emb = as_array(emb, "sample")
    y_dim, x_dim = spatial_dims(emb)
    dim = vector_dim(emb, "sample", y_dim, x_dim)
    grid = Grid.from_xarray(emb)
    loc = read_points(points, grid.crs, crs=crs)
    values, inside, grid = sample_values(emb, loc.x, loc.y)
    if outside == "raise" and not inside.all():
        first = int(np.flatnonzero(~inside)[0])
        raise NoDataInBoundsError(
            f"{int((~inside).sum())} of {inside.size} points lie off the raster (the first, number {first}, at "
            f"x={loc.x[first]:.6g}, y={loc.y[first]:.6g} in {grid.crs.to_string()}; the raster spans "
            f"{tuple(round(v, 6) for v in grid.bounds)}). Drop them, check their CRS (pass crs=... for bare "
            "coordinates), or pass outside='nan' to keep them as NaN rows."
        )
    rows, cols, _ = cell_index(grid, loc.x, loc.y)
    centre_x, centre_y = grid.transform * (cols + 0.5, rows + 0.5)
    table = pd.DataFrame(
        {
            "cell_x": np.where(inside, centre_x, np.nan),
            "cell_y": np.where(inside, centre_y, np.nan),
            "inside": inside,
        }
    )
    vectors = pd.DataFrame(values, columns=vector_columns(emb, dim, prefix))
    if loc.frame is None:
        coords = pd.DataFrame({"x": loc.x, "y": loc.y})
        return pd.concat([coords, table, vectors], axis=1)
    frame = loc.frame if hasattr(loc.frame, "geometry") and not _is_series(loc.frame) else loc.frame.to_frame("geometry")
    added = pd.concat([table, vectors], axis=1)
    added.index = frame.index
    clash = [c for c in added.columns if c in frame.columns]
    if clash:
        raise OptionError(f"the points already have columns {clash}; rename them or pass another prefix=.")
    return pd.concat([frame, added], axis=1)


def _is_series(obj) -> bool:
    return type(obj).__name__ == "GeoSeries"
