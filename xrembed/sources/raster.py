"""Local rasters: one multi-band file, a folder of single-band files, or a list of them.

Single-band files of different resolutions (a Sentinel-2 folder: 10, 20 and 60 m) are stacked onto one
grid lazily: each file that is not already on the target grid (another resolution or CRS, a rotated
geotransform, ground control points only) is read through a rasterio ``WarpedVRT``, so nothing is
resampled until a chunk is computed. Nodata becomes NaN.

A missing, unreadable or truncated file is a :class:`~xrembed.errors.SourceError` naming it: at open where
the header tells (a GeoTIFF whose blocks lie past the end of the file), else when the chunk is read.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Sequence
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import rasterio
import rioxarray
import xarray as xr
from affine import Affine
from rasterio.enums import Resampling
from pyproj import CRS, Transformer
from rasterio.vrt import WarpedVRT
from rasterio.warp import calculate_default_transform

from rasterio.errors import RasterioError
from xarray.backends import BackendArray
from xarray.core import indexing

from ..bands import canonical_band_name, canonical_band_names
from ..errors import BandMismatchError, MissingCRSError, OptionError, SourceError, XrembedError
from ..geo import is_axis_aligned, parse_crs, pixel_window, utm_crs

RASTER_SUFFIXES = (".tif", ".tiff", ".jp2", ".vrt")
#: Default dask chunk side: a multiple of both 224 (model tiles) and 256 (GeoTIFF blocks).
DEFAULT_CHUNK = 1792
_BAND_IN_NAME = re.compile(r"(?:^|[_\-.])(B\d{1,2}A?|VV|VH)(?:$|[_\-.])", re.IGNORECASE)

PathLike = str | os.PathLike


def sample_path() -> Path:
    """Folder of the bundled sample: a 448 x 448 px (100 m) crop of a Sentinel-2 L2A scene, 12 bands.

    Bands are single-band COGs at their native resolutions, as in the original product: B02, B03, B04,
    B08 at 100 m, B05, B06, B07, B8A, B11, B12 at 200 m, B01 and B09 at 600 m (the scene in
    ``shared/data`` is itself downsampled ten-fold). Contains modified Copernicus Sentinel data 2020.
    """
    return Path(__file__).resolve().parent.parent / "data" / "sample_s2"


def open_raster(
    source: PathLike | Sequence[PathLike],
    *,
    bands: Sequence[str] | None = None,
    resolution: float | None = None,
    chunks: int | dict | bool | None = DEFAULT_CHUNK,
    resampling: str = "nearest",
    crs: str | None = None,
) -> xr.DataArray:
    """Open local raster(s) as a lazy ``(band, y, x)`` DataArray whose ``band`` coordinate holds names.

    Parameters
    ----------
    source
        A multi-band file; a folder of single-band files (band names from file names, e.g. ``B04.tif``
        or ``T29RKH_20200219T112111_B8A_20m.jp2``); a list of single-band files; or ``"sample"``
        for the bundled Sentinel-2 sample.
    bands
        For a folder or list: which bands to stack, in this order (``B4`` and ``B04`` both match).
        For a multi-band file: the names of its bands, if the file does not record them.
    resolution
        Target pixel size in CRS units. Default: the finest resolution among the files.
    chunks
        Dask chunk side in pixels (default 1792, a multiple of 224 and 256), a dict, or ``None``
        for an eager numpy array.
    resampling
        How coarser bands are brought onto the target grid (a ``rasterio.enums.Resampling`` name).
    crs
        Target CRS. Files in another CRS, or georeferenced only by ground control points (a Sentinel-1
        GRD), are warped to it lazily through a ``WarpedVRT``. Default: the files' own CRS; for GCP-only
        files, the UTM zone of the scene centre (metric, like the model patch sizes). Files with a rotated
        or sheared geotransform are warped onto a north-up grid in their own CRS.

    Returns
    -------
    xarray.DataArray
        ``(band, y, x)`` float32 with NaN for nodata, a ``spatial_ref`` coordinate (CRS and transform)
        and ``band`` names in canonical spelling (``B04``, ``B8A``, ``VV``). Cells that no file covers (a
        rotated grid's corners) are NaN.

    Raises
    ------
    SourceError
        A path that does not exist, a folder without band files, a file GDAL cannot read, or a truncated
        GeoTIFF (at open when its header shows it, else when the corrupt chunk is computed).
    CRSError
        ``crs=`` that pyproj does not know, or files without any georeferencing (``MissingCRSError``).

    Examples
    --------
    >>> import xrembed
    >>> da = xrembed.open_raster("sample")
    >>> da.sizes["band"], da.rio.crs.to_epsg(), da.rio.resolution()
    (12, 32629, (100.0, -100.0))
    """
    try:
        method = Resampling[resampling]
    except KeyError:
        raise OptionError(f"resampling={resampling!r} is not a rasterio Resampling name (e.g. 'nearest', 'bilinear').") from None
    files, names = _list_files(source, bands)
    if len(files) == 1 and names is None:
        return _open_multiband(files[0], bands, chunks, _target_grid(files, resolution, crs, single_band=False), method)
    if names is None:
        raise BandMismatchError("cannot tell the band names of these files; pass bands=[...] in file order.")
    target = _target_grid(files, resolution, crs)
    arrays = [_open_on_grid(path, target, method, chunks) for path in files]
    stacked = xr.concat(arrays, dim="band", join="override", combine_attrs="drop")
    stacked = stacked.assign_coords(band=canonical_band_names(names))
    stacked = stacked.rio.write_crs(target["crs"]).rio.write_transform(target["transform"])
    stacked.attrs = {"source": str(source if not isinstance(source, (list, tuple)) else [str(f) for f in files])}
    stacked.name = "reflectance" if all(n.startswith("B") for n in canonical_band_names(names)) else "raster"
    return stacked


def _list_files(source, bands) -> tuple[list[Path], list[str] | None]:
    if isinstance(source, str) and source == "sample":
        source = sample_path()
    if isinstance(source, (list, tuple)):
        files = [Path(p) for p in source]
        if not files:
            raise SourceError("open_raster was given an empty list of files; pass at least one raster path.")
        for f in files:
            if not f.is_file():
                raise SourceError(_missing_message(f))
        names = list(bands) if bands is not None else [_band_from_name(f) for f in files]
        if bands is not None and len(bands) != len(files):
            raise BandMismatchError(f"bands= has {len(bands)} names for {len(files)} files; give one per file.")
        if any(n is None for n in names):
            raise BandMismatchError(
                f"cannot read a band name from every file name ({[f.name for f in files]}); pass bands=[...] in file order."
            )
        return files, names
    if not isinstance(source, (str, os.PathLike)):
        raise SourceError(
            f"open_raster needs a path, a list of paths or 'sample', got {type(source).__name__}; for an array in "
            "memory use UserData(array, ...) or a georeferenced xr.DataArray directly."
        )
    path = Path(source)
    if path.is_file():
        return [path], None
    if not path.is_dir():
        raise SourceError(_missing_message(path))
    found = {}
    rasters = []
    for f in sorted(path.iterdir()):
        if f.suffix.lower() in RASTER_SUFFIXES:
            rasters.append(f.name)
            name = _band_from_name(f)
            if name is not None:
                found.setdefault(canonical_band_name(name), f)
    if not found:
        what = f"its rasters {rasters[:5]} have no band name in their file names" if rasters else "it holds no rasters"
        raise SourceError(
            f"no band files (e.g. B04.tif) found in {str(path)!r}: {what}. Pass the folder of band files "
            f"({', '.join(RASTER_SUFFIXES)}), a multi-band file, or a list of files with bands=[...]."
        )
    if bands is None:
        order = sorted(found, key=_band_sort_key)
    else:
        order = canonical_band_names(bands)
        missing = [b for b in order if b not in found]
        if missing:
            raise BandMismatchError(f"the folder {str(path)!r} has no file for bands {missing} (it has {sorted(found)}).")
    return [found[b] for b in order], order


def _missing_message(path: Path) -> str:
    if path.exists():
        return (
            f"{str(path)!r} is neither a raster file nor a folder of rasters; pass a GeoTIFF, JPEG2000 or VRT file, "
            "or a folder of them."
        )
    return (
        f"raster {str(path)!r} does not exist (a relative path is taken from {os.getcwd()!r}); check the path, or "
        "pass 'sample' for the bundled Sentinel-2 sample."
    )


@contextmanager
def _reading(path: Path):
    """Turn rasterio/GDAL failures on ``path`` into a :class:`SourceError` naming the file."""
    try:
        yield
    except XrembedError:
        raise
    except (RasterioError, OSError) as err:
        raise SourceError(
            f"cannot read raster {str(path)!r}: {err}. The file is not a raster GDAL reads, or it is truncated or "
            "corrupt; re-download or re-export it (`gdalinfo -checksum` shows whether it reads end to end)."
        ) from err


def _open(path: Path):
    """``rasterio.open(path)``, checked for blocks past the end of the file; a :class:`SourceError` otherwise."""
    with _reading(path):
        src = rasterio.open(path)
    try:
        _check_complete(src, path)
    except BaseException:
        src.close()
        raise
    return src


def _check_complete(src, path: Path) -> None:
    """Refuse a GeoTIFF whose last block lies past the end of the file (a truncated download or copy).

    GDAL only notices when the block is read; the TIFF header already says where it should be.
    """
    if src.driver != "GTiff":
        return
    size = os.path.getsize(path)
    bands = range(1, src.count + 1) if src.interleaving is not None and src.interleaving.name == "BAND" else [1]
    for bidx in bands:
        block_h, block_w = src.block_shapes[bidx - 1]
        last = f"{math.ceil(src.width / block_w) - 1}_{math.ceil(src.height / block_h) - 1}"
        offset = src.get_tag_item(f"BLOCK_OFFSET_{last}", "TIFF", bidx=bidx)
        length = src.get_tag_item(f"BLOCK_SIZE_{last}", "TIFF", bidx=bidx)
        if offset and length and int(offset) > 0 and int(offset) + int(length) > size:
            raise SourceError(
                f"raster {str(path)!r} is truncated: its last block ends at byte {int(offset) + int(length)} but the "
                f"file has {size} bytes. Re-download or re-export it."
            )


def _band_from_name(path: Path) -> str | None:
    stem = path.stem
    if _BAND_IN_NAME.fullmatch("_" + stem + "_"):
        return stem
    match = _BAND_IN_NAME.search(stem)
    return match.group(1) if match else None


def _band_sort_key(name: str) -> tuple:
    match = re.match(r"B(\d+)(A?)", name)
    return (0, int(match.group(1)), match.group(2)) if match else (1, 0, name)


def _georeference(src, name: str):
    """``(crs, transform, gcps)`` of an open dataset: an affine grid, or ground control points only."""
    if src.crs is not None and not src.transform.is_identity:
        return src.crs, src.transform, None
    gcps, gcp_crs = src.gcps
    if gcps and gcp_crs is not None:
        return gcp_crs, None, gcps
    raise MissingCRSError(
        f"{name} has no CRS; xrembed needs georeferenced rasters (a CRS, or ground control points). Assign one, "
        "e.g. `gdal_edit.py -a_srs EPSG:32629 -a_ullr ...`, or open it with rioxarray and `.rio.write_crs(...)`."
    )


def _target_grid(files: list[Path], resolution: float | None, crs=None, single_band: bool = True) -> dict:
    """The grid every file is brought onto: the finest file's, or a warp to ``crs`` (GCP files always warp)."""
    valid = isinstance(resolution, (int, float, np.number)) and not isinstance(resolution, bool)
    if resolution is not None and not (valid and math.isfinite(resolution) and resolution > 0):
        raise OptionError(f"resolution must be a positive number of CRS units (e.g. resolution=10), got {resolution!r}.")
    infos = []
    for f in files:
        with _open(f) as src:
            if single_band and src.count != 1:
                raise BandMismatchError(f"{f.name} has {src.count} bands; a folder or list must hold single-band files.")
            infos.append((*_georeference(src, f.name), src.width, src.height))
    if crs is not None:
        crs = parse_crs(crs, "open_raster crs=", "a valid one, e.g. crs='EPSG:32629'")
    # Rotated or sheared geotransforms are warped onto a north-up grid like GCP rasters (xrembed grids are
    # axis-aligned; rioxarray gives such files no x/y coordinates at all).
    rotated = [transform is not None and not is_axis_aligned(transform) for _, transform, _, _, _ in infos]
    if crs is None and all(gcps is None for _, _, gcps, _, _ in infos) and not any(rotated):
        src_crs, transform, _, width, height = min(infos, key=lambda info: abs(info[1].a))
        if resolution is not None:
            left, top = transform.c, transform.f
            right, bottom = left + width * transform.a, top + height * transform.e
            transform = Affine(resolution, 0, left, 0, -resolution, top)
            height, width = pixel_window((left, bottom, right, top), transform).shape
        return {"crs": src_crs, "transform": transform, "width": width, "height": height}
    if crs is not None:
        dst_crs = crs
    elif infos[0][2] is not None:
        dst_crs = _scene_utm(infos[0])
    else:
        dst_crs = CRS.from_user_input(infos[0][0])  # a rotated grid keeps its own CRS
    grids = []
    for src_crs, transform, gcps, width, height in infos:
        if gcps is not None:
            if resolution is not None:
                # GDAL's GCP warper goes wrong when handed an explicit output grid (rasterio 1.4 fills the
                # outside of the swath with garbage), so GCP rasters keep GDAL's own suggested grid.
                raise OptionError(
                    "resolution= is not supported for rasters georeferenced by ground control points; open them "
                    "without it (GDAL picks the native resolution) and resample afterwards if needed."
                )
            grids.append(calculate_default_transform(src_crs, dst_crs, width, height, gcps=gcps))
        else:
            # All four corners: a rotated grid's extent is not spanned by two of them.
            xs, ys = zip(*(transform * corner for corner in ((0, 0), (width, 0), (0, height), (width, height))))
            left, bottom, right, top = min(xs), min(ys), max(xs), max(ys)
            grids.append(calculate_default_transform(
                src_crs, dst_crs, width, height, left, bottom, right, top, resolution=resolution
            ))
    transform, width, height = min(grids, key=lambda grid: abs(grid[0].a))
    return {"crs": dst_crs, "transform": transform, "width": width, "height": height}


def _scene_utm(info) -> CRS:
    src_crs, transform, gcps, width, height = info
    if gcps is not None:
        xs, ys = [g.x for g in gcps], [g.y for g in gcps]
        x, y = (min(xs) + max(xs)) / 2, (min(ys) + max(ys)) / 2
    else:
        x, y = transform * (width / 2, height / 2)
    lon, lat = Transformer.from_crs(src_crs, "EPSG:4326", always_xy=True).transform(x, y)
    return utm_crs(lon, lat)


def _open_on_grid(path: Path, target: dict, method: Resampling, chunks) -> xr.DataArray:
    with _open(path) as src:
        same_grid = (
            src.crs == target["crs"]
            and src.transform.almost_equals(target["transform"])
            and (src.width, src.height) == (target["width"], target["height"])
        )
        block_shape = src.block_shapes[0]
    with _reading(path):
        opened = path if same_grid else _warped(path, target, method)
        lazy = rioxarray.open_rasterio(opened, masked=True, cache=False)
    data = xr.DataArray(
        indexing.LazilyIndexedArray(_GuardedRaster(lazy, path)), dims=lazy.dims, coords=lazy.coords,
        attrs=lazy.attrs, name=lazy.name,
    )
    data.encoding = dict(lazy.encoding)
    chunks = _chunks(chunks)
    if chunks is None or chunks is False:
        return data  # lazily indexed: the engine chunks it (embedding._as_array), reads stay guarded
    if chunks is True:
        chunks = {"band": 1, "y": "auto", "x": "auto"}
    from dask.array.core import normalize_chunks
    from dask.base import tokenize

    chunks = normalize_chunks(
        tuple(chunks.get(d, -1) for d in data.dims), shape=data.shape, dtype=np.float32,
        previous_chunks=(1, *block_shape),
    )
    stat = path.stat()
    grid_key = (str(target["crs"]), tuple(target["transform"]), target["width"], target["height"], method.name)
    token = tokenize(str(path.resolve()), stat.st_mtime_ns, stat.st_size, same_grid, grid_key, chunks)
    return data.chunk(dict(zip(data.dims, chunks)), name_prefix="open_raster-", token=token)


class _GuardedRaster(BackendArray):
    """A raster's pixels as float32, read lazily; a failing read (a corrupt or truncated file, found only when
    its chunk is computed) raises :class:`SourceError` naming the file, not a rasterio error from inside dask."""

    def __init__(self, lazy: xr.DataArray, path: Path) -> None:
        self.lazy, self.path = lazy, path
        self.shape, self.dtype = lazy.shape, np.dtype("float32")

    def __getitem__(self, key):
        return indexing.explicit_indexing_adapter(key, self.shape, indexing.IndexingSupport.BASIC, self._read)

    def _read(self, key):
        with _reading(self.path):
            return np.asarray(self.lazy.variable[key].values, dtype=np.float32)


def _warped(path: Path, target: dict, method: Resampling) -> WarpedVRT:
    src = _open(path)
    src_crs, _, gcps = _georeference(src, path.name)
    if gcps is None:
        # Without a declared nodata GDAL fills what the source does not cover (a rotated grid's corners, the
        # margin of a smaller band) with 0; warping to float32 with NaN keeps those cells missing.
        fill = {"nodata": src.nodata} if src.nodata is not None else {"nodata": np.nan, "dtype": "float32"}
        return WarpedVRT(
            src, src_crs=src_crs, crs=target["crs"], transform=target["transform"], width=target["width"],
            height=target["height"], resampling=method, **fill,
        )
    # GCP-only products (Sentinel-1 GRD) declare no nodata but use 0 outside the swath. GDAL's GCP warper is
    # only right on its own suggested grid (see _target_grid), so the grid is checked, not imposed.
    vrt = WarpedVRT(src, src_crs=src_crs, crs=target["crs"], resampling=method, nodata=src.nodata or 0)
    if not (vrt.transform.almost_equals(target["transform"]) and (vrt.width, vrt.height) == (target["width"], target["height"])):
        raise SourceError(
            f"{path.name} is georeferenced by ground control points and its warped grid differs from the other "
            "files'; open GCP rasters with the same footprint together, or one at a time."
        )
    return vrt


def _chunks(chunks):
    if chunks is None:
        return None
    if isinstance(chunks, bool):
        return chunks
    if isinstance(chunks, int):
        return {"band": 1, "y": chunks, "x": chunks}
    return chunks


def _open_multiband(path: Path, bands, chunks, target: dict, method: Resampling) -> xr.DataArray:
    data = _open_on_grid(path, target, method, chunks)
    with _open(path) as src:
        descriptions = src.descriptions
    names = list(bands) if bands is not None else None
    if names is None and descriptions and len(descriptions) == data.sizes["band"] and all(descriptions):
        names = list(descriptions)
    if names is not None:
        if len(names) != data.sizes["band"]:
            raise BandMismatchError(f"bands= has {len(names)} names but {path.name} has {data.sizes['band']} bands.")
        data = data.assign_coords(band=canonical_band_names(names))
    return data
