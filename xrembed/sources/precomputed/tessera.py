"""Tessera (GeoTessera) annual embeddings: 128 dimensions, 10 m, on their native UTM grids.

Two published layouts are read, both lazily (nothing but metadata is touched until a chunk computes):

* **Zarr store** (the cloud-native layout, and the default source): one group per UTM zone ``utmNN`` with
  ``embeddings`` int8 ``(time, band, y, x)`` and ``scales`` float32 ``(time, y, x)`` (NaN = water or no
  source data, ``+inf`` = no data yet). The zone CRS is always the northern ``EPSG:326NN``; southern data
  has negative northings. The zone grid (``spatial:transform``) is already snapped to 10 m.
* **Tile layout** (the "tile API"): per 0.1-degree tile and year, ``grid_X_Y.npy`` int8 ``(H, W, 128)`` and
  ``grid_X_Y_scales.npy`` float32 ``(H, W)`` (or ``(H, W, 128)``), georeferenced by the tile's landmask
  GeoTIFF ``grid_X_Y.tiff`` (its UTM CRS and transform), and listed in a ``manifest.parquet``. Tile origins
  are *not* on a common lattice, so the tiles of a request are placed by whole-pixel offsets onto the
  zone's lattice (multiples of the pixel size, as the Zarr builder snaps its zone grids): each tile pixel
  lands on the lattice cell nearest to it, a shift of at most half a pixel and never a resampling.

Dequantisation (both layouts, as ``geotessera.dequantize_embedding`` defines it): ``q.astype(float32) *
scale``, with non-finite scales (NaN water, ``+inf`` no data) giving NaN for all 128 values.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import xarray as xr
from affine import Affine
from pyproj import CRS

from ...errors import CRSError, NoDataInBoundsError, OptionError, SourceError, XrembedError
from ...geo import PixelWindow, pixel_centres, pixel_window, snap_outwards, utm_zone_of, utm_zones, window_transform
from ...specs import BBox, PointBuffer, TemporalSpec

__all__ = ["DEFAULT_SOURCE", "PRODUCT_INFO", "open_tessera"]

#: Root of the public Zarr v3 store (v1.1 "dclimate", the complete global run) on Source Cooperative.
DEFAULT_SOURCE = "https://data.source.coop/tessera/tessera/zarr/v1.1-dclimate"
EMBED_DIM = 128
#: Default dask chunk side in pixels (a 128 x 512 x 512 float32 chunk is 128 MiB).
DEFAULT_CHUNK = 512
ATTRIBUTION = (
    "TESSERA embeddings (University of Cambridge, ucam-eo/tessera; Feng et al. 2025, arXiv:2506.20380), "
    "released under CC0"
)

PRODUCT_INFO: dict = {
    "product": "tessera",
    "title": "TESSERA (GeoTessera) annual pixel embeddings",
    "embed_dim": EMBED_DIM,
    "resolution": 10.0,
    "crs": "UTM per tile (Zarr store: EPSG:326NN per zone, negative northings in the south)",
    "years": "2017+ (v1.1: 2024 global; 2017-2025 for much of Europe and the US; back-filling continues)",
    "dequantisation": "int8 q * float32 scale (per pixel); non-finite scale (NaN water, +inf no data) -> NaN",
    "nodata": "NaN (non-finite scale)",
    "default_source": DEFAULT_SOURCE,
    "licence": "CC0-1.0 (embeddings and weights); geotessera/TESSERA code MIT",
    "attribution": ATTRIBUTION,
    "reference": "https://github.com/ucam-eo/tessera ; https://github.com/ucam-eo/geotessera ; arXiv:2506.20380",
}

_TILE_NAME = re.compile(r"grid_(-?\d+\.\d{2})_(-?\d+\.\d{2})")


def open_tessera(
    *,
    spatial: BBox | PointBuffer | None = None,
    temporal: TemporalSpec | int | None = None,
    source: str | os.PathLike | None = None,
    chunks: int | Mapping | None = None,
    zone: int | None = None,
) -> xr.DataArray:
    """Open Tessera embeddings as a lazy ``(time, embedding, y, x)`` float32 DataArray named ``embeddings``.

    Parameters
    ----------
    spatial
        A :class:`~xrembed.BBox` or :class:`~xrembed.PointBuffer`: crop to it, snapped outwards to whole
        pixels of the zone's 10 m lattice. ``None``: everything in the source (one UTM zone; see ``zone``).
    temporal
        A :class:`~xrembed.TemporalSpec` (``TemporalSpec.year(2024)``; a range selects every year it
        overlaps) or a bare year. ``None``: every year in the source.
    source
        A Zarr store (local folder or URL); a local tile-layout folder (``global_0.1_degree_representation/``
        and ``global_0.1_degree_tiff_all/`` beside a ``manifest.parquet``, or a ``registry/manifest.parquet``);
        or the path of a ``manifest.parquet``. ``None``: :data:`DEFAULT_SOURCE`, the public v1.1 Zarr store.
    chunks
        Dask chunk side in pixels (default 512) or a dict over ``time``/``embedding``/``y``/``x``.
    zone
        UTM zone number to return when the request spans several zones (Tessera grids are per zone, so a
        request crossing a zone boundary is refused unless this picks one).

    Returns
    -------
    xarray.DataArray
        ``(time, embedding, y, x)`` float32 with NaN for water/no data, pixel-centre ``x``/``y``, ``time``
        (1 January of each year) with a ``year`` coordinate, ``embedding`` 0..127, CRS and transform written
        with rioxarray, and ``attrs`` product, licence, attribution, dequantisation.
    """
    years = _requested_years(temporal)
    if spatial is not None and not isinstance(spatial, (BBox, PointBuffer)):
        raise OptionError(f"spatial={spatial!r}: pass a BBox, a PointBuffer or None (the whole source).")
    if zone is not None and not (isinstance(zone, int) and 1 <= zone <= 60):
        raise OptionError(f"zone={zone!r} is not a UTM zone number (1..60).")
    src = DEFAULT_SOURCE if source is None else source
    kind, where = _layout(src)
    if kind == "zarr":
        return _open_zarr(where, spatial, years, chunks, zone)
    return _open_tiles(where, spatial, years, chunks, zone)


# --------------------------------------------------------------------------------------------- common


def _requested_years(temporal) -> tuple[int, int] | None:
    """Inclusive ``(first, last)`` year wanted, or ``None`` for all."""
    if temporal is None:
        return None
    if isinstance(temporal, (int, np.integer)) and not isinstance(temporal, bool):
        return int(temporal), int(temporal)
    if not isinstance(temporal, TemporalSpec):
        raise OptionError(f"temporal={temporal!r}: pass TemporalSpec.year(2024), a TemporalSpec range, or a year.")
    if temporal.mode == "year":
        return temporal.year, temporal.year
    start, end = temporal.interval  # end exclusive
    last = int(end[:4]) - (1 if end[5:] == "01-01" else 0)
    return int(start[:4]), last


def _select_years(available: list[int], wanted: tuple[int, int] | None, where: str) -> list[int]:
    if wanted is None:
        return sorted(available)
    chosen = [y for y in sorted(available) if wanted[0] <= y <= wanted[1]]
    if not chosen:
        span = str(wanted[0]) if wanted[0] == wanted[1] else f"{wanted[0]}-{wanted[1]}"
        raise NoDataInBoundsError(
            f"Tessera has no year {span} in {where}; it has {sorted(available)}. "
            "Ask for one of those years (temporal=TemporalSpec.year(...))."
        )
    return chosen


def _chunk_sizes(chunks) -> dict:
    if chunks is None:
        return {"time": 1, "embedding": EMBED_DIM, "y": DEFAULT_CHUNK, "x": DEFAULT_CHUNK}
    if isinstance(chunks, bool):
        raise OptionError(f"chunks={chunks!r}: pass a chunk side in pixels (e.g. 512) or a dict.")
    if isinstance(chunks, (int, np.integer)):
        if chunks <= 0:
            raise OptionError(f"chunks must be a positive number of pixels, got {chunks}.")
        return {"time": 1, "embedding": EMBED_DIM, "y": int(chunks), "x": int(chunks)}
    if isinstance(chunks, Mapping):
        unknown = set(chunks) - {"time", "embedding", "y", "x"}
        if unknown:
            raise OptionError(f"chunks= names {sorted(unknown)}; Tessera's dims are time, embedding, y, x.")
        out = {"time": 1, "embedding": EMBED_DIM, "y": DEFAULT_CHUNK, "x": DEFAULT_CHUNK}
        out.update({k: (-1 if v is None else v) for k, v in chunks.items()})
        return out
    raise OptionError(f"chunks={chunks!r}: pass a chunk side in pixels (e.g. 512) or a dict.")


def _is_url(src) -> bool:
    return isinstance(src, str) and re.match(r"^[a-zA-Z][a-zA-Z0-9+.-]*://", src) is not None


def _layout(src) -> tuple[str, object]:
    """``("zarr", store)`` or ``("tiles", (manifest_path, root_dir))``."""
    if _is_url(src):
        if str(src).rstrip("/").endswith(".parquet"):
            raise OptionError(
                f"source={src!r}: the tile layout is read from a local copy only (download the tiles with "
                "geotessera, then pass that folder); for remote data use the Zarr store, e.g. source=None "
                f"({DEFAULT_SOURCE})."
            )
        return "zarr", str(src).rstrip("/")
    path = Path(src)
    if path.is_file():
        if path.suffix == ".parquet":
            root = path.parent.parent if path.parent.name == "registry" else path.parent
            if not (root / "global_0.1_degree_representation").is_dir():
                # geotessera's usual layout: registry/ beside the embeddings folder (e.g. emb/).
                beside = sorted(p.parent for p in root.glob("*/global_0.1_degree_representation"))
                root = beside[0] if len(beside) == 1 else root
            return "tiles", (path, root)
        raise SourceError(
            f"source={str(path)!r} is a file but not a Tessera manifest.parquet; pass a Tessera Zarr store, "
            "a tile-layout folder, or its manifest.parquet."
        )
    if not path.is_dir():
        raise SourceError(f"source={str(path)!r} does not exist; pass a Tessera Zarr store or tile-layout folder.")
    if (path / "zarr.json").is_file() or (path / ".zgroup").is_file():
        return "zarr", str(path)
    for manifest in (path / "manifest.parquet", path / "registry" / "manifest.parquet",
                     path.parent / "registry" / "manifest.parquet"):
        if manifest.is_file():
            return "tiles", (manifest, path)
    raise SourceError(
        f"{str(path)!r} is not a Tessera source: it has no zarr.json (Zarr store) and no manifest.parquet "
        "(tile layout, in the folder or in registry/ beside it). Pass the store, the tile folder or the manifest."
    )


def _bounds(spatial, crs: CRS) -> tuple[float, float, float, float]:
    try:
        return tuple(float(v) for v in spatial.bounds_in(crs))
    except Exception as err:  # pyproj failures
        raise CRSError(
            f"cannot express spatial={spatial} in {crs.to_string()}: {err}. Check the region's coordinates and CRS."
        ) from err


def _lonlat_bounds(spatial) -> tuple[float, float, float, float]:
    return _bounds(spatial, CRS.from_epsg(4326))


def _spatial_zones(spatial) -> list[int]:
    """UTM zones a request touches: the box's own zone when it is given in a UTM CRS, else by longitude."""
    if isinstance(spatial, BBox):
        own = utm_zone_of(CRS.from_user_input(spatial.crs))
        if own is not None:
            return [own[0]]
    west, _, east, _ = _lonlat_bounds(spatial)
    return utm_zones(west, east)


def _zone_error(zones, shares: Mapping | None = None) -> OptionError:
    share = ""
    if shares:
        share = " (" + ", ".join(f"zone {z}: {n} tile(s)" for z, n in sorted(shares.items())) + ")"
    return OptionError(
        f"the request spans UTM zones {sorted(zones)}{share}; Tessera grids are native to one UTM zone each. "
        "Make one request per zone (split the box at the zone boundary, a multiple of 6 degrees of longitude) "
        f"or pass zone= (one of {sorted(zones)}) to get that zone's part; reproject afterwards to combine."
    )


def _finish(data, years: list[int], transform: Affine, crs: CRS, attrs: dict) -> xr.DataArray:
    y, x = pixel_centres(transform, data.shape[-2:])
    out = xr.DataArray(
        data,
        dims=("time", "embedding", "y", "x"),
        coords={
            "time": np.array([f"{y_:04d}-01-01" for y_ in years], dtype="datetime64[ns]"),
            "year": ("time", np.asarray(years, dtype=np.int32)),
            "embedding": np.arange(EMBED_DIM, dtype=np.int64),
            "y": y,
            "x": x,
        },
        name="embeddings",
    )
    out = out.rio.write_crs(crs).rio.write_transform(transform)
    out.attrs = {
        "product": "tessera",
        "licence": PRODUCT_INFO["licence"],
        "attribution": ATTRIBUTION,
        "dequantisation": PRODUCT_INFO["dequantisation"],
        **attrs,
    }
    return out


# ------------------------------------------------------------------------------------------ Zarr store


def _open_zarr(store: str, spatial, years, chunks, zone) -> xr.DataArray:
    import zarr

    try:
        root = zarr.open_group(store, mode="r")
        root_attrs = dict(root.attrs)
        groups = sorted(name for name in root.group_keys() if re.fullmatch(r"utm\d{2}", name))
    except Exception as err:
        raise SourceError(
            f"cannot open {store!r} as a Zarr store ({err}); pass a Tessera Zarr store (folder or URL), a "
            "tile-layout folder, or None for the public store."
        ) from err
    if "geoemb:dimensions" not in root_attrs and not groups:
        raise SourceError(
            f"{store!r} is a Zarr store but not a Tessera one (no geoemb: attributes, no utmNN groups); "
            "pass a Tessera store."
        )
    dims = root_attrs.get("geoemb:dimensions", EMBED_DIM)
    if dims != EMBED_DIM:
        raise SourceError(
            f"{store!r} holds {dims}-dimensional embeddings; this reader handles the {EMBED_DIM}-d Tessera "
            "arrays (matryoshka depths are not supported)."
        )
    available = {int(name[3:]) for name in groups}
    if spatial is not None:
        wanted = _spatial_zones(spatial)
    else:
        wanted = sorted(available)
    if zone is not None:
        if zone not in wanted:
            raise OptionError(f"zone={zone} is not among the zones the request covers ({wanted}).")
        wanted = [zone]
    if len(wanted) > 1:
        raise _zone_error(wanted)
    if not wanted or wanted[0] not in available:
        raise NoDataInBoundsError(
            f"the Tessera store {store!r} has no data in UTM zone {wanted[0] if wanted else '?'} "
            f"(it has zones {sorted(available)}); choose a region inside them."
        )
    group = f"utm{wanted[0]:02d}"
    zattrs = dict(root[group].attrs)
    crs = CRS.from_user_input(zattrs.get("proj:code", f"EPSG:326{wanted[0]:02d}"))
    ds = xr.open_zarr(store, group=group, chunks=None, consolidated=None, decode_times=False)
    if "embeddings" not in ds or "scales" not in ds:
        raise SourceError(f"group {group} of {store!r} lacks the 'embeddings'/'scales' arrays of a Tessera store.")
    emb, scales = ds["embeddings"], ds["scales"]
    if emb.dims != ("time", "band", "y", "x") or scales.dims != ("time", "y", "x"):
        raise SourceError(
            f"{store!r}/{group}: expected embeddings (time, band, y, x) and scales (time, y, x), got "
            f"{emb.dims} and {scales.dims}."
        )
    transform = _zone_transform(zattrs, root[group])
    shape = (emb.sizes["y"], emb.sizes["x"])
    store_years = _store_years(ds)
    chosen = _select_years(store_years, years, f"the store {store!r}")
    t_index = [store_years.index(y) for y in chosen]
    window = PixelWindow(0, shape[0], 0, shape[1])
    if spatial is not None:
        window = pixel_window(_bounds(spatial, crs), transform).clipped(shape)
        if window.is_empty:
            raise NoDataInBoundsError(
                f"spatial={spatial} lies outside the grid of {group} in {store!r}; choose a region inside it."
            )
    rows, cols = window.slices
    sel = {"time": t_index, "y": rows, "x": cols}
    emb = emb.variable.isel(sel)
    scales = scales.variable.isel(sel)
    sizes = _chunk_sizes(chunks)
    emb = emb.chunk({"time": sizes["time"], "band": sizes["embedding"], "y": sizes["y"], "x": sizes["x"]})
    scales = scales.chunk({"time": sizes["time"], "y": sizes["y"], "x": sizes["x"]})
    data = _dequantise_dask(emb.data, scales.data)
    attrs = {"source": str(store), "layout": "zarr", "utm_zone": wanted[0]}
    return _finish(data, chosen, window_transform(transform, window), crs, attrs)


def _dequantise_dask(q, scales):
    """``q * scale`` with non-finite scales as NaN; q ``(T, B, y, x)`` int8, scales ``(T, y, x)``."""
    import dask.array as da

    s = da.where(da.isfinite(scales), scales, np.float32(np.nan)).astype(np.float32)
    return q.astype(np.float32) * s[:, None, :, :]


def _zone_transform(zattrs: dict, group) -> Affine:
    t = zattrs.get("spatial:transform")
    if t is not None:
        if len(t) == 9:
            t = t[:6]
        return Affine(*[float(v) for v in t])
    # No transform attribute: derive it from the pixel-centre coordinate arrays.
    x = np.asarray(group["x"][:2], dtype=float)
    y = np.asarray(group["y"][:2], dtype=float)
    if x.size < 2 or y.size < 2:
        raise SourceError("the Tessera zone group has no spatial:transform and too few x/y values to derive one.")
    dx, dy = x[1] - x[0], y[1] - y[0]
    return Affine(dx, 0, x[0] - dx / 2, 0, dy, y[0] - dy / 2)


def _store_years(ds: xr.Dataset) -> list[int]:
    t = ds["time"].values
    if np.issubdtype(t.dtype, np.datetime64):
        return [int(v) for v in t.astype("datetime64[Y]").astype(int) + 1970]
    return [int(v) for v in t]


# ------------------------------------------------------------------------------------------ tile layout


def tile_name(lon: float, lat: float) -> str:
    """Name of the 0.1-degree tile centred at (``lon``, ``lat``): ``grid_0.15_52.05``."""
    return f"grid_{lon:.2f}_{lat:.2f}"


def _tile_keys(lonlat) -> set[tuple[int, int]]:
    """Integer keys ``(round(lon*100), round(lat*100))`` of the tiles whose 0.1-degree cells the box touches."""
    west, south, east, north = lonlat
    (i0, i_stop), (j0, j_stop) = snap_outwards(west * 10, east * 10), snap_outwards(south * 10, north * 10)
    i1, j1 = i_stop - 1, j_stop - 1
    return {(i * 10 + 5, j * 10 + 5) for i in range(i0, max(i1, i0) + 1) for j in range(j0, max(j1, j0) + 1)}


def _read_manifest(manifest: Path):
    import pyarrow.parquet as pq

    try:
        names = set(pq.read_schema(manifest).names)
    except Exception as err:
        raise SourceError(f"cannot read {str(manifest)!r} as Parquet ({err}); pass a Tessera manifest.parquet.") from err
    missing = {"lat", "lon", "year"} - names
    if missing:
        raise SourceError(
            f"{str(manifest)!r} is not a Tessera manifest: it lacks columns {sorted(missing)} "
            "(a manifest has lat, lon, year, grid_size, ...)."
        )
    cols = [c for c in ("version", "variant", "year", "lon", "lat", "grid_path", "scales_path") if c in names]
    frame = pq.read_table(manifest, columns=cols).to_pandas()
    if {"version", "variant"} <= set(frame.columns):
        pairs = sorted({(str(a), str(b)) for a, b in zip(frame["version"], frame["variant"])})
        if len(pairs) > 1:
            raise SourceError(
                f"{str(manifest)!r} lists several Tessera datasets {pairs}; their embedding spaces must never be "
                "mixed. Point source= at one dataset's manifest."
            )
    frame["lon_i"] = np.round(frame["lon"].astype(float) * 100).astype(int)
    frame["lat_i"] = np.round(frame["lat"].astype(float) * 100).astype(int)
    frame["year"] = frame["year"].astype(int)
    return frame


def _tile_files(row, manifest: Path, root: Path) -> tuple[Path, Path, Path]:
    name = tile_name(row.lon_i / 100, row.lat_i / 100)
    year = str(int(row.year))
    candidates = []
    grid_path = getattr(row, "grid_path", None)
    scales_path = getattr(row, "scales_path", None)
    if isinstance(grid_path, str) and grid_path and not _is_url(grid_path):
        for base in (manifest.parent, root):
            g = Path(grid_path) if Path(grid_path).is_absolute() else base / grid_path
            s = (Path(scales_path) if Path(str(scales_path)).is_absolute() else base / str(scales_path)) \
                if isinstance(scales_path, str) and scales_path else g.with_name(f"{name}_scales.npy")
            candidates.append((g, s))
    for base in (root / "global_0.1_degree_representation", root, manifest.parent):
        folder = base / year / name
        candidates.append((folder / f"{name}.npy", folder / f"{name}_scales.npy"))
    for grid, scales in candidates:
        if grid.is_file() and scales.is_file():
            break
    else:
        raise SourceError(
            f"the manifest lists Tessera tile {name} for {year}, but its .npy files are not under {str(root)!r} "
            f"(looked for {root}/global_0.1_degree_representation/{year}/{name}/{name}.npy and _scales.npy). "
            "Download the tile (geotessera download) or point source= at the folder holding it."
        )
    masks = [root / "global_0.1_degree_tiff_all" / f"{name}.tiff", root / f"{name}.tiff",
             root / "landmasks" / f"{name}.tiff"]
    for mask in masks:
        if mask.is_file():
            return grid, scales, mask
    raise SourceError(
        f"Tessera tile {name} has no landmask GeoTIFF (looked for {masks[0]}); the landmask gives the tile's "
        "UTM CRS and transform. Download it (geotessera) into global_0.1_degree_tiff_all/."
    )


def _npy_header(path: Path) -> tuple[tuple[int, ...], np.dtype, bool, int]:
    """``(shape, dtype, fortran_order, data offset)`` of a ``.npy`` file, reading only its header."""
    with open(path, "rb") as f:
        try:
            version = np.lib.format.read_magic(f)
            if version == (1, 0):
                shape, fortran, dtype = np.lib.format.read_array_header_1_0(f)
            else:
                shape, fortran, dtype = np.lib.format.read_array_header_2_0(f)
        except ValueError as err:
            raise SourceError(f"{str(path)!r} is not a .npy array ({err}); re-download the Tessera tile.") from err
        return tuple(shape), np.dtype(dtype), bool(fortran), f.tell()


def _load_npy(path: str) -> np.ndarray:
    """Memory-map a tile array (called only when a chunk computes)."""
    return np.load(path, mmap_mode="r")


class _Tile:
    """One tile-year: its files, its place on the output lattice, and a lazy dequantising reader."""

    def __init__(self, grid: Path, scales: Path, row0: int, col0: int, height: int, width: int, per_band: bool):
        self.grid, self.scales = str(grid), str(scales)
        self.row0, self.col0, self.height, self.width = row0, col0, height, width
        self.per_band = per_band

    def read(self, rows: slice, cols: slice) -> np.ndarray:
        """Dequantised ``(128, h, w)`` float32 of the tile-local window, NaN where the scale is not finite."""
        q = _load_npy(self.grid)[rows, cols, :]
        s = np.asarray(_load_npy(self.scales)[rows, cols], dtype=np.float32)
        s = np.where(np.isfinite(s), s, np.float32(np.nan))
        values = q.astype(np.float32) * (s if self.per_band else s[..., None])
        return np.moveaxis(values, -1, 0)


class _TileMosaic:
    """A ``(time, 128, H, W)`` array-like over the tiles of one zone; ``__getitem__`` reads only what it needs.

    Pixels covered by several tiles (adjacent tiles' UTM envelopes overlap) take the first tile in
    ``(lon, lat)`` order that has a finite value there.
    """

    def __init__(self, tiles_per_time: list[list[_Tile]], height: int, width: int):
        self.tiles_per_time = tiles_per_time
        self.shape = (len(tiles_per_time), EMBED_DIM, height, width)
        self.dtype = np.dtype(np.float32)
        self.ndim = 4

    def __getitem__(self, key) -> np.ndarray:
        key = key if isinstance(key, tuple) else (key,)
        key = key + (slice(None),) * (4 - len(key))
        t_sl, b_sl, y_sl, x_sl = (k if isinstance(k, slice) else slice(k, k + 1) for k in key)
        t_idx = range(*t_sl.indices(self.shape[0]))
        y0, y1, ys = y_sl.indices(self.shape[2])
        x0, x1, xs = x_sl.indices(self.shape[3])
        if ys != 1 or xs != 1:
            raise XrembedError("internal: the Tessera tile mosaic only serves unit-step windows.")
        out = np.full((len(t_idx), EMBED_DIM, max(y1 - y0, 0), max(x1 - x0, 0)), np.nan, dtype=np.float32)
        for k, t in enumerate(t_idx):
            for tile in self.tiles_per_time[t]:
                r0, r1 = max(y0, tile.row0), min(y1, tile.row0 + tile.height)
                c0, c1 = max(x0, tile.col0), min(x1, tile.col0 + tile.width)
                if r1 <= r0 or c1 <= c0:
                    continue
                values = tile.read(slice(r0 - tile.row0, r1 - tile.row0), slice(c0 - tile.col0, c1 - tile.col0))
                target = out[k, :, r0 - y0:r1 - y0, c0 - x0:c1 - x0]
                empty = np.isnan(target[0])
                target[:, empty] = values[:, empty]
        result = out[:, b_sl]
        drop = tuple(i for i, k in enumerate(key) if not isinstance(k, slice))
        return result.squeeze(axis=drop) if drop else result


def _tile_grid(mask: Path, grid: Path, scales: Path, name: str):
    import rasterio

    with rasterio.open(mask) as src:  # header only, no pixel read
        crs, transform, shape = CRS.from_user_input(src.crs.to_wkt()), src.transform, (src.height, src.width)
    gshape, gdtype, gfortran, _ = _npy_header(grid)
    sshape, sdtype, _, _ = _npy_header(scales)
    if gdtype != np.int8 or len(gshape) != 3 or gshape[2] != EMBED_DIM or gfortran:
        raise SourceError(
            f"{grid} is not a Tessera embedding tile: expected int8 (H, W, {EMBED_DIM}) in C order, got "
            f"{gdtype} {gshape}. Re-download the tile."
        )
    if sshape not in (gshape[:2], gshape) or sdtype.kind != "f":
        raise SourceError(f"{scales} does not match its tile: expected float32 {gshape[:2]}, got {sdtype} {sshape}.")
    if gshape[:2] != shape:
        raise SourceError(
            f"tile {name}: the embedding grid is {gshape[:2]} but its landmask is {shape}; the files belong to "
            "different tiles or versions. Re-download both."
        )
    if transform.b != 0 or transform.d != 0 or transform.e >= 0 or abs(transform.a + transform.e) > 1e-9 * transform.a:
        raise SourceError(f"tile {name}: the landmask grid is not north-up with square pixels ({transform}).")
    return crs, transform, len(sshape) == 3


def _open_tiles(where, spatial, years, chunks, zone) -> xr.DataArray:
    import dask.array as da

    manifest, root = where
    frame = _read_manifest(manifest)
    chosen = _select_years(sorted(set(frame["year"])), years, f"the manifest {str(manifest)!r}")
    frame = frame[frame["year"].isin(chosen)]
    if spatial is not None:
        keys = _tile_keys(_lonlat_bounds(spatial))
        frame = frame[[(a, b) in keys for a, b in zip(frame["lon_i"], frame["lat_i"])]]
        if frame.empty:
            raise NoDataInBoundsError(
                f"Tessera has no tile for spatial={spatial} in {chosen} in the manifest {str(manifest)!r}; "
                "choose a region (or year) the manifest lists, or download those tiles."
            )
    frame = frame.sort_values(["year", "lon_i", "lat_i"])
    # Georeference every tile from its landmask (headers only) and group by UTM zone.
    infos = []
    for row in frame.itertuples(index=False):
        name = tile_name(row.lon_i / 100, row.lat_i / 100)
        grid, scales, mask = _tile_files(row, manifest, root)
        crs, transform, per_band = _tile_grid(mask, grid, scales, name)
        epsg = crs.to_epsg()
        if utm_zone_of(crs) is None:
            raise SourceError(f"tile {name}: its landmask CRS {crs.to_string()} is not a WGS84 UTM zone.")
        infos.append((int(row.year), name, grid, scales, per_band, epsg, transform))
    zones = {}
    for info in infos:
        zones.setdefault(info[5] % 100, set()).add(info[1])
    if zone is not None:
        if zone not in zones:
            raise NoDataInBoundsError(f"no Tessera tile of the request lies in UTM zone {zone} (zones: {sorted(zones)}).")
        infos = [i for i in infos if i[5] % 100 == zone]
    elif len(zones) > 1:
        raise _zone_error(zones, {z: len(names) for z, names in zones.items()})
    the_zone = infos[0][5] % 100
    epsgs = {i[5] for i in infos}
    # One hemisphere: the tiles' own CRS. Both: the northern CRS with negative northings (as the Zarr store).
    out_epsg = epsgs.pop() if len(epsgs) == 1 else 32600 + the_zone
    res = abs(infos[0][6].a)
    placed = []
    for year, name, grid, scales, per_band, epsg, transform in infos:
        if abs(abs(transform.a) - res) > 1e-6 * res:
            raise SourceError(f"tile {name} has {abs(transform.a)} m pixels, others {res} m; they cannot share a grid.")
        north_shift = 10_000_000.0 if (epsg != out_epsg and epsg > 32700) else 0.0
        left, top = transform.c, transform.f - north_shift
        placed.append((year, name, grid, scales, per_band, left, top, transform))
    # The zone lattice: lines at whole multiples of the pixel size. Each tile is placed at the nearest offset.
    snapped = [(round(p[5] / res), round(p[6] / res)) for p in placed]
    shift = max(max(abs(p[5] - c * res), abs(p[6] - r * res)) for p, (c, r) in zip(placed, snapped))
    if spatial is not None:
        zone_lattice = Affine(res, 0, 0, 0, -res, 0)  # rows counted downwards from northing 0
        window = pixel_window(_bounds(spatial, CRS.from_epsg(out_epsg)), zone_lattice)
        c_first, c_last, r_first, r_last = window.col0, window.col1, window.row0, window.row1
    else:
        c_first = min(c for c, _ in snapped)
        r_first = min(-r for _, r in snapped)
        c_last = max(c + _npy_header(Path(p[2]))[0][1] for p, (c, _) in zip(placed, snapped))
        r_last = max(-r + _npy_header(Path(p[2]))[0][0] for p, (_, r) in zip(placed, snapped))
    height, width = r_last - r_first, c_last - c_first
    tiles_per_time = {y: [] for y in chosen}
    for (year, name, grid, scales, per_band, _, _, _), (c, r) in zip(placed, snapped):
        h, w = _npy_header(Path(grid))[0][:2]
        tile = _Tile(grid, scales, -r - r_first, c - c_first, h, w, per_band)
        if tile.row0 < height and tile.row0 + h > 0 and tile.col0 < width and tile.col0 + w > 0:
            tiles_per_time[year].append(tile)
    kept = [y for y in chosen if tiles_per_time[y]]
    if not kept:
        raise NoDataInBoundsError(f"no Tessera tile in {str(manifest)!r} overlaps spatial={spatial}; choose a region it covers.")
    mosaic = _TileMosaic([tiles_per_time[y] for y in kept], height, width)
    sizes = _chunk_sizes(chunks)
    data = da.from_array(
        mosaic,
        chunks=(sizes["time"], sizes["embedding"], sizes["y"], sizes["x"]),
        asarray=False,
        lock=False,
        meta=np.empty((0, 0, 0, 0), dtype=np.float32),
        name=f"tessera-tiles-{_token(manifest, kept, r_first, c_first, height, width, out_epsg)}",
    )
    transform = Affine(res, 0, c_first * res, 0, -res, -r_first * res)
    attrs = {"source": str(manifest), "layout": "tiles", "utm_zone": the_zone,
             "tessera_max_shift_m": float(shift)}
    return _finish(data, kept, transform, CRS.from_epsg(out_epsg), attrs)


def _token(*parts) -> str:
    from dask.base import tokenize

    return tokenize(*[str(p) for p in parts])
