"""Google Satellite Embedding (AlphaEarth Foundations, "AEF"): 64-d, 10 m, annual, in each tile's UTM zone.

Two routes to the same data (see ``docs/products/gse.md``):

* **COGs** (default): the public Source Cooperative mirror of Google's GCS export,
  ``https://data.source.coop/tge-labs/aef/v1/annual/{year}/{zone}/{image}-{yoff}-{xoff}.tiff``, found through
  the ``aef_index.parquet`` (or headerless ``aef_index.csv``) index beside the year folders. Each file holds
  64 int8 bands ``A00``..``A63``, nodata ``-128``, stored **bottom-up** (positive y pixel size, origin at the
  south-west corner). Files are opened lazily with rioxarray (all 64 bands in one chunk), cropped, flipped
  north-up, dequantised with the published mapping ``sign(v) * (v / 127.5) ** 2`` and mosaicked on the
  zone's common 10 m lattice.
* **Earth Engine** (``source="ee"``): ``GOOGLE/SATELLITE_EMBEDDING/V1/ANNUAL`` through
  :func:`xrembed.open_gee` (float values, no dequantisation), one mosaic per calendar year.

A request is served from one UTM zone: tiles are never reprojected. An ROI that crosses a zone boundary
raises an error naming the fix (``utm_zone=`` to pick one, or one request per zone).
"""

from __future__ import annotations

import hashlib
import math
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import dask.array as dsa
import numpy as np
import xarray as xr
from affine import Affine
from pyproj import CRS

from ...cache import cache_dir, download_url
from ...errors import NoDataInBoundsError, OptionError, SourceError, SpecError, XrembedError
from ...geo import Grid, assign_grid, is_on_lattice, pixel_window, utm_crs_of_zone, utm_zone_of, window_transform
from ...specs import BBox, PointBuffer, TemporalSpec

__all__ = ["BANDS", "DEFAULT_SOURCE", "EE_COLLECTION", "PRODUCT_INFO", "dequantize", "open_gse"]

BANDS = tuple(f"A{i:02d}" for i in range(64))
YEARS = tuple(range(2017, 2026))
RESOLUTION = 10.0
NODATA = -128
EE_COLLECTION = "GOOGLE/SATELLITE_EMBEDDING/V1/ANNUAL"
#: Source Cooperative mirror of gs://alphaearth_foundations/satellite_embedding/v1/annual (free, anonymous).
DEFAULT_SOURCE = "https://data.source.coop/tge-labs/aef/v1/annual/"
INDEX_NAMES = ("aef_index.parquet", "aef_index.csv")
#: Column order of the headerless ``aef_index.csv``.
CSV_COLUMNS = (
    "WKT", "crs", "path", "year", "utm_zone", "utm_west", "utm_south", "utm_east", "utm_north",
    "wgs84_west", "wgs84_south", "wgs84_east", "wgs84_north",
)
_NEEDED = ("crs", "path", "year")
_OPTIONAL = ("utm_zone", "utm_west", "utm_south", "utm_east", "utm_north",
             "wgs84_west", "wgs84_south", "wgs84_east", "wgs84_north")
#: Default dask chunk side (pixels). The COGs are tiled 1024 x 1024; 512 keeps a float32 chunk at 64 MiB.
DEFAULT_CHUNK = 512
ATTRIBUTION = "The AlphaEarth Foundations Satellite Embedding dataset is produced by Google and Google DeepMind."
DEQUANTISATION = "sign(v) * (v / 127.5) ** 2 for int8 v; v == -128 is nodata (NaN)"

PRODUCT_INFO: dict[str, Any] = {
    "product": "gse",
    "title": "Google Satellite Embedding V1 Annual (AlphaEarth Foundations)",
    "embed_dim": 64,
    "bands": BANDS,
    "resolution": RESOLUTION,
    "crs": "UTM per tile (EPSG:326zz / 327zz)",
    "years": YEARS,
    "dequantisation": DEQUANTISATION,
    "nodata": NODATA,
    "default_source": DEFAULT_SOURCE,
    "sources": {
        "cog": DEFAULT_SOURCE + "aef_index.parquet",
        "gcs": "gs://alphaearth_foundations/satellite_embedding/v1/annual/ (requester pays)",
        "ee": EE_COLLECTION,
    },
    "licence": "CC-BY-4.0",
    "attribution": ATTRIBUTION,
    "reference": "Brown et al. 2025, AlphaEarth Foundations (arXiv:2507.22291); "
    "https://developers.google.com/earth-engine/guides/aef_on_gcs_readme",
}

_SC_S3 = "s3://us-west-2.opendata.source.coop/"
_SC_HTTPS = "https://data.source.coop/"


def dequantize(values):
    """The published AEF dequantisation: ``sign(v) * (v / 127.5) ** 2`` as float32, ``-128`` -> NaN.

    Works on numpy and dask arrays (used per block).

    Examples
    --------
    >>> dequantize(np.array([-128, -127, 0, 64, 127], dtype="int8")).astype(float).round(4).tolist()
    [nan, -0.9922, 0.0, 0.252, 0.9922]
    """
    v = np.asarray(values).astype("float32")
    out = np.sign(v) * np.square(v / np.float32(127.5))
    return np.where(v == NODATA, np.float32(np.nan), out).astype("float32")


def open_gse(
    *,
    spatial: BBox | PointBuffer | None = None,
    temporal: TemporalSpec | None = None,
    source: Any = None,
    chunks: int | Mapping[str, int] | None = None,
    utm_zone: str | None = None,
    **ee_kwargs: Any,
) -> xr.DataArray:
    """Open Google Satellite Embedding (AlphaEarth) lazily as ``(time, embedding, y, x)`` float32.

    Parameters
    ----------
    spatial
        ``BBox`` (any CRS) or ``PointBuffer``: the output covers it, snapped outward to whole 10 m pixels
        of the zone's lattice; cells without data are NaN. ``None`` opens every tile of the source (one
        UTM zone only).
    temporal
        ``TemporalSpec.year(y)`` for one year; a range gives every calendar year it touches; ``None``
        every year the tiles have. Years 2017..2025.
    source
        ``None`` (the Source Cooperative COG mirror, index downloaded once into the cache), a local
        folder or URL holding ``aef_index.parquet`` / ``aef_index.csv`` and the ``{year}/{zone}/`` folders,
        the index file itself, or ``"ee"`` for Earth Engine (``GOOGLE/SATELLITE_EMBEDDING/V1/ANNUAL``).
    chunks
        Dask chunk side in pixels (default 512), or ``{"y": .., "x": ..}``. The 64 bands always share
        one chunk and each year is its own chunk.
    utm_zone
        Keep only tiles of this zone (``"31N"``, or an EPSG code / CRS) when the ROI crosses zones.
    **ee_kwargs
        With ``source="ee"``: passed to :func:`xrembed.open_gee` (``ee_init_kwargs``, ``io_chunks``, ...).

    Returns
    -------
    xarray.DataArray
        ``embeddings`` with dims ``("time", "embedding", "y", "x")``, ``embedding`` = 0..63 (the band names
        ``A00``..``A63`` in the coordinate ``embedding_name``),
        ``time`` = 1 January of each year (plus a ``year`` coordinate), pixel-centre ``x``/``y``, the
        tile's UTM CRS and a north-up transform written with rioxarray.

    Examples
    --------
    >>> emb = open_gse(spatial=PointBuffer(5.0, 52.0, 1000), temporal=TemporalSpec.year(2024))  # doctest: +SKIP
    >>> emb.dims                                                                                 # doctest: +SKIP
    ('time', 'embedding', 'y', 'x')
    """
    if spatial is not None and not isinstance(spatial, (BBox, PointBuffer)):
        raise SpecError(f"spatial must be an xrembed.BBox, a PointBuffer or None, got {type(spatial).__name__}.")
    if temporal is not None and not isinstance(temporal, TemporalSpec):
        raise SpecError(f"temporal must be an xrembed.TemporalSpec (e.g. TemporalSpec.year(2024)), got {temporal!r}.")
    years = _requested_years(temporal)
    chunk_y, chunk_x = _chunk_sides(chunks)
    if isinstance(source, str) and source.strip().lower() in ("ee", "earthengine", "gee", EE_COLLECTION.lower()):
        return _open_ee(spatial, temporal, years, ee_kwargs)
    if ee_kwargs:
        raise OptionError(f"unexpected keyword(s) {sorted(ee_kwargs)} for the COG source; they apply to source='ee' only.")
    root, index = _locate(source)
    table = _read_index(index, years)
    return _open_cogs(table, root, spatial, years, (chunk_y, chunk_x), utm_zone, str(source or DEFAULT_SOURCE))


# -- arguments -----------------------------------------------------------------------------------------


def _requested_years(temporal: TemporalSpec | None) -> list[int] | None:
    if temporal is None:
        return None
    if temporal.mode == "year":
        years = [temporal.year]
    else:
        first = int(temporal.start[:4])
        last = int(temporal.end[:4]) - (1 if temporal.end[5:] == "01-01" else 0)
        years = list(range(first, last + 1))
    outside = [y for y in years if y not in YEARS]
    if len(outside) == len(years):
        raise NoDataInBoundsError(
            f"Google Satellite Embedding has no year {outside[0] if len(outside) == 1 else outside}: it covers "
            f"{YEARS[0]}..{YEARS[-1]}; pass e.g. TemporalSpec.year({YEARS[-2]})."
        )
    return [y for y in years if y in YEARS]


def _chunk_sides(chunks) -> tuple[int, int]:
    if chunks is None:
        return DEFAULT_CHUNK, DEFAULT_CHUNK
    if isinstance(chunks, bool):
        raise OptionError(f"chunks must be a chunk side in pixels or {{'y': .., 'x': ..}}, got {chunks!r}.")
    if isinstance(chunks, int):
        chunks = {"y": chunks, "x": chunks}
    if not isinstance(chunks, Mapping):
        raise OptionError(f"chunks must be a chunk side in pixels or {{'y': .., 'x': ..}}, got {chunks!r}.")
    extra = set(chunks) - {"y", "x", "time", "embedding", "band"}
    if extra:
        raise OptionError(f"chunks may set 'y' and 'x' only (bands stay in one chunk, years are one chunk each); got {sorted(extra)}.")
    for dim in ("embedding", "band"):
        if dim in chunks and chunks[dim] not in (-1, 64, None):
            raise OptionError(f"chunks[{dim!r}] must be -1: the 64 embedding bands always share one chunk.")
    if "time" in chunks and chunks["time"] not in (1, None):
        raise OptionError("chunks['time'] must be 1: each year is its own chunk.")
    sides = []
    for dim in ("y", "x"):
        value = chunks.get(dim, DEFAULT_CHUNK)
        if value == -1:
            value = 2**31 - 1
        if not isinstance(value, int) or value < 1:
            raise OptionError(f"chunks[{dim!r}] must be a positive number of pixels (or -1), got {value!r}.")
        sides.append(value)
    return sides[0], sides[1]


# -- source and index ----------------------------------------------------------------------------------


def _is_url(value: str) -> bool:
    return value.startswith(("http://", "https://", "s3://", "gs://", "/vsicurl/"))


def _https(url: str) -> str:
    if url.startswith(_SC_S3):
        return _SC_HTTPS + url[len(_SC_S3):]
    if url.startswith("/vsicurl/"):
        return url[len("/vsicurl/"):]
    if url.startswith("gs://"):
        raise OptionError(
            f"{url!r}: the GCS bucket is requester-pays; use the free Source Cooperative mirror (source=None, "
            f"{DEFAULT_SOURCE!r}) or a local copy."
        )
    if url.startswith("s3://"):
        raise OptionError(f"{url!r}: only the Source Cooperative bucket ({_SC_S3}) is known; pass an https:// URL or a local path.")
    return url


def _locate(source) -> tuple[str, str]:
    """``(root, index)``: where the ``{year}/{zone}/`` folders are and the index file (path or URL)."""
    if source is None:
        source = DEFAULT_SOURCE
    if not isinstance(source, (str, os.PathLike)):
        raise OptionError(f"source must be a folder, an index file, a URL, 'ee' or None, got {type(source).__name__}.")
    text = os.fspath(source)
    if _is_url(text):
        url = _https(text)
        if url.lower().endswith((".parquet", ".csv")):
            return url.rsplit("/", 1)[0] + "/", url
        root = url if url.endswith("/") else url + "/"
        return root, root + INDEX_NAMES[0]
    path = Path(text).expanduser()
    if path.is_file():
        if path.suffix.lower() not in (".parquet", ".csv"):
            raise SourceError(
                f"{text!r} is not a Google Satellite Embedding index; pass the folder holding aef_index.parquet "
                "(or aef_index.csv) and the {year}/{zone}/ COG folders, or the index file itself."
            )
        return str(path.parent), str(path)
    if not path.is_dir():
        raise SourceError(f"source {text!r} does not exist; pass the folder holding aef_index.parquet, a URL, or None.")
    for folder in (path, path / "annual", path / "v1" / "annual"):
        for name in INDEX_NAMES:
            if (folder / name).is_file():
                return str(folder), str(folder / name)
    raise SourceError(
        f"{text!r} holds no aef_index.parquet or aef_index.csv, so it is not a Google Satellite Embedding folder; "
        "pass the folder of the v1/annual mirror (index beside the year folders), or source=None for the public mirror."
    )


def _fetch_index(url: str) -> str:
    """Download a remote index once (about 78 MB for the parquet) into the cache and return its path."""
    name = url.rsplit("/", 1)[-1]
    target = cache_dir("gse") / hashlib.sha256(url.encode()).hexdigest()[:16] / name
    if target.is_file():
        return str(target)
    try:
        download_url(url, target)
    except OSError as err:  # urllib.error.URLError is an OSError
        raise SourceError(
            f"could not download the Google Satellite Embedding index {url}: {err}. Check the network, or download "
            "aef_index.parquet yourself and pass source= the folder holding it (paths are resolved beside it)."
        ) from err
    return str(target)


def _read_index(index: str, years: list[int] | None):
    """The index rows (pandas) of the requested years, with the columns the reader needs."""
    import pandas as pd

    local = _fetch_index(index) if _is_url(index) else index
    try:
        if local.lower().endswith(".csv"):
            table = pd.read_csv(local, header=None)
            if table.shape[1] != len(CSV_COLUMNS):
                raise SourceError(
                    f"{index} has {table.shape[1]} columns, not the {len(CSV_COLUMNS)} of aef_index.csv "
                    f"({', '.join(CSV_COLUMNS)}); it is not a Google Satellite Embedding index."
                )
            table.columns = list(CSV_COLUMNS)
        else:
            import pyarrow.parquet as pq

            names = set(pq.read_schema(local).names)
            missing = [c for c in _NEEDED if c not in names]
            if missing:
                raise SourceError(
                    f"{index} lacks the columns {missing} of aef_index.parquet (crs, path, year, utm_*, wgs84_*); "
                    "it is not a Google Satellite Embedding index."
                )
            columns = [c for c in (*_NEEDED, *_OPTIONAL) if c in names]
            filters = [("year", "in", list(years))] if years else None
            table = pq.read_table(local, columns=columns, filters=filters).to_pandas()
    except XrembedError:
        raise
    except Exception as err:
        raise SourceError(f"could not read the Google Satellite Embedding index {index}: {err}.") from err
    table["year"] = table["year"].astype(int)
    if years:
        table = table[table["year"].isin(years)]
    return table.sort_values(["year", "path"]).reset_index(drop=True)


def _href(path: str, root: str) -> str:
    """Where a row's file is: its part after ``.../annual/`` resolved against the index's folder."""
    text = str(path).replace("\\", "/")
    rel = text.split("/annual/", 1)[1] if "/annual/" in text else (None if _is_url(text) or text.startswith("/") else text)
    if rel is None:
        return _https(text) if _is_url(text) else text
    if _is_url(root):
        return root.rstrip("/") + "/" + rel
    return str(Path(root) / rel)


# -- COG route -----------------------------------------------------------------------------------------


def _zone_name(crs: CRS) -> str:
    zone = utm_zone_of(crs)
    return f"{zone[0]}{zone[1]}" if zone is not None else crs.to_string()


def _zone_crs(zone) -> CRS:
    text = str(zone).strip().upper()
    if text[:-1].isdigit() and text[-1:] in ("N", "S") and 1 <= int(text[:-1]) <= 60:
        return utm_crs_of_zone(int(text[:-1]), text[-1])
    try:
        return CRS.from_user_input(zone)
    except Exception as err:
        raise OptionError(f"utm_zone={zone!r} is not a UTM zone ('31N', '56S') or a CRS (e.g. 'EPSG:32631').") from err


def _overlaps(a, b) -> bool:
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]


def _open_cogs(table, root, spatial, years, chunk, utm_zone, source_label) -> xr.DataArray:
    import rasterio

    if table.empty:
        raise NoDataInBoundsError(
            f"the Google Satellite Embedding index at {source_label} has no tile for {years}; "
            "pick a year it holds (see PRODUCT_INFO['years']) or another source."
        )
    table = table.copy()
    table["_crs"] = [CRS.from_user_input(c) for c in table["crs"]]
    if utm_zone is not None:
        wanted = _zone_crs(utm_zone)
        table = table[[c == wanted for c in table["_crs"]]]
        if table.empty:
            raise NoDataInBoundsError(f"no Google Satellite Embedding tile of zone {utm_zone!r} for {years}; drop utm_zone= or pick another zone.")
    if spatial is not None:
        roi_ll = spatial.bounds_in("EPSG:4326")
        keep = []
        for _, row in table.iterrows():
            hit = True
            if all(c in row and not _isnan(row[c]) for c in ("wgs84_west", "wgs84_south", "wgs84_east", "wgs84_north")):
                hit = _overlaps(roi_ll, (row.wgs84_west, row.wgs84_south, row.wgs84_east, row.wgs84_north))
            if hit and all(c in row and not _isnan(row[c]) for c in ("utm_west", "utm_south", "utm_east", "utm_north")):
                hit = _overlaps(spatial.bounds_in(row["_crs"]), (row.utm_west, row.utm_south, row.utm_east, row.utm_north))
            keep.append(hit)
        table = table[keep]
        if table.empty:
            raise NoDataInBoundsError(
                f"no Google Satellite Embedding tile at {source_label} covers the ROI {tuple(round(v, 5) for v in roi_ll)} "
                f"(lon/lat) in {years if years else 'any year'}; move the ROI or use a source that covers it."
            )
    zones = sorted({_zone_name(c) for c in table["_crs"]})
    if len(zones) > 1:
        raise OptionError(
            f"the request spans UTM zones {zones}; Google Satellite Embedding tiles are stored in their own zone and "
            f"xrembed does not reproject them. Pass utm_zone={zones[0]!r} (or another) to read one zone, split the ROI "
            "at the zone boundary, or align each zone onto one grid with "
            "xrembed.sources.precomputed.align_to_grid / da.rsembed.embed('gse')."
        )
    crs = table["_crs"].iloc[0]

    tiles = []
    for _, row in table.iterrows():
        href = _href(row["path"], root)
        try:
            with rasterio.open(_gdal_path(href)) as src:
                meta = (src.transform, src.width, src.height, src.count, src.dtypes[0], src.nodata, src.crs, src.descriptions)
        except rasterio.errors.RasterioIOError as err:
            raise SourceError(f"cannot open Google Satellite Embedding tile {href}: {err}. Check the source folder/URL.") from err
        transform, width, height, count, dtype, nodata, file_crs, descriptions = meta
        if count != 64 or dtype != "int8":
            raise SourceError(
                f"{href} has {count} band(s) of {dtype}; Google Satellite Embedding COGs hold 64 int8 bands (A00..A63). "
                "Is source= the right product?"
            )
        if any(descriptions) and tuple(descriptions) != BANDS:
            raise SourceError(
                f"{href} has bands {tuple(descriptions)[:3]}..., not A00..A63; it is not a Google Satellite Embedding COG."
            )
        if nodata is not None and nodata != NODATA:
            raise SourceError(f"{href} declares nodata {nodata}, not {NODATA}; it is not a Google Satellite Embedding COG.")
        if file_crs is not None and CRS.from_user_input(file_crs) != crs:
            raise SourceError(f"{href} is in {file_crs}, but the index says {row['crs']}; the index does not match its files.")
        if not (math.isclose(abs(transform.a), RESOLUTION) and math.isclose(abs(transform.e), RESOLUTION)
                and transform.b == 0 and transform.d == 0 and transform.a > 0):
            raise SourceError(f"{href} is not on a 10 m axis-aligned grid ({transform!r}); it is not a Google Satellite Embedding COG.")
        tiles.append({"href": href, "year": int(row["year"]), "transform": transform, "width": width, "height": height})

    grid = _output_grid(tiles, crs, spatial)
    out_years = sorted({t["year"] for t in tiles})
    if years and len(years) == 1 and out_years != years:  # pragma: no cover - filtered above
        raise NoDataInBoundsError(f"no tile for year {years[0]}.")
    layers = []
    for year in out_years:
        pieces = [_tile_on_grid(t, grid, chunk) for t in tiles if t["year"] == year]
        pieces = [p for p in pieces if p is not None]
        if not pieces:
            pieces = [dsa.full((64, *grid.shape), np.nan, dtype="float32", chunks=(64, *chunk))]
        layer = pieces[0]
        for other in pieces[1:]:  # first tile (index order) wins where tiles overlap
            layer = dsa.where(dsa.isnan(layer), other, layer)
        layers.append(layer.rechunk((64, *chunk)))
    data = dsa.stack(layers, axis=0)
    times = np.array([np.datetime64(f"{y:04d}-01-01", "ns") for y in out_years])
    out = xr.DataArray(
        data, dims=("time", "embedding", "y", "x"),
        coords={"time": times, "year": ("time", np.array(out_years)), **_embedding_coords()},
        name="embeddings",
    )
    out = assign_grid(out, grid)
    out.attrs = _attrs(
        source=source_label, route="cog", tiles=[t["href"] for t in tiles], utm_zone=_zone_name(crs),
        dequantisation=DEQUANTISATION,
    )
    return out


def _isnan(value) -> bool:
    try:
        return bool(np.isnan(value))
    except TypeError:
        return value is None


def _tile_bounds(t) -> tuple[float, float, float, float]:
    tr = t["transform"]
    xs = (tr.c, tr.c + tr.a * t["width"])
    ys = (tr.f, tr.f + tr.e * t["height"])
    return min(xs), min(ys), max(xs), max(ys)


def _output_grid(tiles, crs: CRS, spatial) -> Grid:
    """The north-up 10 m grid: the ROI snapped outward to the tiles' common lattice (or all tiles)."""
    res = RESOLUTION
    ox, oy = tiles[0]["transform"].c % res, tiles[0]["transform"].f % res
    for t in tiles[1:]:
        if not (is_on_lattice((t["transform"].c - ox) / res) and is_on_lattice((t["transform"].f - oy) / res)):
            raise SourceError(
                f"{t['href']} is not on the same 10 m lattice as {tiles[0]['href']}; they cannot be mosaicked without "
                "resampling. Request an ROI inside one tile."
            )
    if spatial is None:
        boxes = [_tile_bounds(t) for t in tiles]
        left, bottom = min(b[0] for b in boxes), min(b[1] for b in boxes)
        right, top = max(b[2] for b in boxes), max(b[3] for b in boxes)
    else:
        left, bottom, right, top = spatial.bounds_in(crs)
    lattice = Affine(res, 0.0, ox, 0.0, -res, oy)
    window = pixel_window((left, bottom, right, top), lattice)
    height, width = max(1, window.shape[0]), max(1, window.shape[1])
    return Grid((height, width), window_transform(lattice, window), crs)


def _tile_on_grid(t, grid: Grid, chunk):
    """The tile's part of ``grid`` as a lazy (64, H, W) float32 dask array (NaN outside the tile), or None."""
    import rioxarray

    tr, res = t["transform"], RESOLUTION
    height, width = grid.shape
    left, top = grid.transform.c, grid.transform.f
    m = round((left - tr.c) / res)  # raw column of output column 0
    j_lo, j_hi = max(0, -m), min(width, t["width"] - m)
    if tr.e > 0:  # bottom-up: raw row r spans [f + r*res, f + (r+1)*res]; output row i spans [top-(i+1)res, top-i*res]
        k = round((top - tr.f) / res)  # output row i <-> raw row k - 1 - i
        i_lo, i_hi = max(0, k - t["height"]), min(height, k)
        rows = slice(k - i_hi, k - i_lo)
    else:  # north-up: raw row r spans [f - (r+1)res, f - r*res]; output row i <-> raw row i + k
        k = round((tr.f - top) / res)
        i_lo, i_hi = max(0, -k), min(height, t["height"] - k)
        rows = slice(i_lo + k, i_hi + k)
    if j_hi <= j_lo or i_hi <= i_lo:
        return None
    raw = rioxarray.open_rasterio(
        _gdal_path(t["href"]), chunks={"band": -1, "y": chunk[0], "x": chunk[1]}, mask_and_scale=False, lock=False,
        cache=False,
    )
    window = raw.data[:, rows, m + j_lo : m + j_hi]
    if tr.e > 0:
        window = window[:, ::-1, :]
    values = window.map_blocks(dequantize, dtype="float32")
    pad = ((0, 0), (i_lo, height - i_hi), (j_lo, width - j_hi))
    if any(p != (0, 0) for p in pad):
        values = dsa.pad(values, pad, mode="constant", constant_values=np.nan)
    return values


def _gdal_path(href: str) -> str:
    """What GDAL opens: URLs through ``/vsicurl/`` with directory listing off (GDAL would otherwise list the
    zone folder, tens of thousands of objects, on every open, at compute time too)."""
    if not _is_url(href):
        return href
    from urllib.parse import quote

    return "/vsicurl?list_dir=no&empty_dir=yes&url=" + quote(href, safe="")


def _embedding_coords() -> dict[str, Any]:
    """``embedding`` 0..63 as for every model and product; the band names ``A00..A63`` as ``embedding_name``."""
    return {"embedding": np.arange(len(BANDS), dtype=np.int64), "embedding_name": ("embedding", list(BANDS))}


def _attrs(**extra) -> dict[str, Any]:
    attrs = {
        "product": "gse",
        "title": PRODUCT_INFO["title"],
        "licence": PRODUCT_INFO["licence"],
        "attribution": ATTRIBUTION,
        "nodata": "NaN",
        "resolution": RESOLUTION,
    }
    for key, value in extra.items():
        attrs[key] = ", ".join(value) if isinstance(value, list) else value
    return attrs


# -- Earth Engine route --------------------------------------------------------------------------------


def _open_ee(spatial, temporal, years, ee_kwargs) -> xr.DataArray:
    from ..gee import open_gee

    if spatial is None or temporal is None:
        raise OptionError("source='ee' needs spatial= (a BBox or PointBuffer) and temporal= (e.g. TemporalSpec.year(2024)).")
    for key in ("bands", "scale_m", "composite", "cloudy_pct", "spatial", "temporal"):
        if key in ee_kwargs:
            raise OptionError(f"{key}= is fixed for Google Satellite Embedding on Earth Engine; leave it out.")
    layers = []
    for year in years:
        ds = open_gee(
            EE_COLLECTION, spatial=spatial, temporal=TemporalSpec.year(year), bands=list(BANDS), scale_m=10,
            composite="mosaic", cloudy_pct=None, **ee_kwargs,
        )
        missing = [b for b in BANDS if b not in ds.data_vars]
        if missing:
            raise SourceError(f"Earth Engine returned no bands {missing[:4]}... for {EE_COLLECTION}; check the collection id.")
        da = ds[list(BANDS)].to_array("embedding").transpose("time", "embedding", "y", "x").astype("float32")
        da = da.assign_coords(time=np.array([np.datetime64(f"{year:04d}-01-01", "ns")]), year=("time", [year]))
        layers.append((da, ds))
    out = xr.concat([d for d, _ in layers], dim="time") if len(layers) > 1 else layers[0][0]
    crs, transform = layers[0][1].rio.crs, layers[0][1].rio.transform()
    grid = Grid((out.sizes["y"], out.sizes["x"]), transform, CRS.from_user_input(crs))
    out = assign_grid(out.drop_vars("spatial_ref", errors="ignore"), grid)
    out = out.assign_coords(_embedding_coords())
    out.name = "embeddings"
    out.attrs = _attrs(
        source=EE_COLLECTION, route="earthengine", composite="mosaic", scale_m=10.0, utm_zone=_zone_name(grid.crs),
        dequantisation="none (Earth Engine serves float values)",
    )
    return out
