"""Local rasters: one multi-band file, a folder of single-band files, or a list of them.

Single-band files of different resolutions (a Sentinel-2 folder: 10, 20 and 60 m) are stacked onto one
grid lazily: each file that is not already on the target grid is read through a rasterio ``WarpedVRT``,
so nothing is resampled until a chunk is computed. Nodata becomes NaN.
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import rasterio
import rioxarray
import xarray as xr
from affine import Affine
from rasterio.enums import Resampling
from pyproj import CRS, Transformer
from rasterio.transform import array_bounds
from rasterio.vrt import WarpedVRT
from rasterio.warp import calculate_default_transform

from ..bands import canonical_band_name, canonical_band_names
from ..errors import BandMismatchError, OptionError, XrembedError
from ..specs import utm_crs

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
        files, the UTM zone of the scene centre (metric, like the model patch sizes).

    Returns
    -------
    xarray.DataArray
        ``(band, y, x)`` float32 with NaN for nodata, a ``spatial_ref`` coordinate (CRS and transform)
        and ``band`` names in canonical spelling (``B04``, ``B8A``, ``VV``).

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
        for f in files:
            if not f.is_file():
                raise XrembedError(f"raster file {str(f)!r} does not exist.")
        names = list(bands) if bands is not None else [_band_from_name(f) for f in files]
        if bands is not None and len(bands) != len(files):
            raise BandMismatchError(f"bands= has {len(bands)} names for {len(files)} files; give one per file.")
        if any(n is None for n in names):
            raise BandMismatchError(
                f"cannot read a band name from every file name ({[f.name for f in files]}); pass bands=[...] in file order."
            )
        return files, names
    path = Path(source)
    if path.is_file():
        return [path], None
    if not path.is_dir():
        raise XrembedError(f"{str(path)!r} is neither a raster file nor a folder of rasters.")
    found = {}
    for f in sorted(path.iterdir()):
        if f.suffix.lower() in RASTER_SUFFIXES:
            name = _band_from_name(f)
            if name is not None:
                found.setdefault(canonical_band_name(name), f)
    if not found:
        raise XrembedError(f"no band files (e.g. B04.tif) found in {str(path)!r}.")
    if bands is None:
        order = sorted(found, key=_band_sort_key)
    else:
        order = canonical_band_names(bands)
        missing = [b for b in order if b not in found]
        if missing:
            raise BandMismatchError(f"the folder {str(path)!r} has no file for bands {missing} (it has {sorted(found)}).")
    return [found[b] for b in order], order


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
    raise XrembedError(f"{name} has no CRS; xrembed needs georeferenced rasters (a CRS, or ground control points).")


def _target_grid(files: list[Path], resolution: float | None, crs=None, single_band: bool = True) -> dict:
    """The grid every file is brought onto: the finest file's, or a warp to ``crs`` (GCP files always warp)."""
    if resolution is not None and resolution <= 0:
        raise OptionError(f"resolution must be positive, got {resolution}.")
    infos = []
    for f in files:
        with rasterio.open(f) as src:
            if single_band and src.count != 1:
                raise BandMismatchError(f"{f.name} has {src.count} bands; a folder or list must hold single-band files.")
            infos.append((*_georeference(src, f.name), src.width, src.height))
    if crs is None and all(gcps is None for _, _, gcps, _, _ in infos):
        src_crs, transform, _, width, height = min(infos, key=lambda info: abs(info[1].a))
        if resolution is not None:
            left, top = transform.c, transform.f
            right, bottom = left + width * transform.a, top + height * transform.e
            transform = Affine(resolution, 0, left, 0, -resolution, top)
            width = int(np.ceil((right - left) / resolution - 1e-9))
            height = int(np.ceil((top - bottom) / resolution - 1e-9))
        return {"crs": src_crs, "transform": transform, "width": width, "height": height}
    dst_crs = CRS.from_user_input(crs) if crs is not None else _scene_utm(infos[0])
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
            left, bottom, right, top = array_bounds(height, width, transform)
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
    with rasterio.open(path) as src:
        same_grid = (
            src.crs == target["crs"]
            and src.transform.almost_equals(target["transform"])
            and (src.width, src.height) == (target["width"], target["height"])
        )
    if same_grid:
        data = rioxarray.open_rasterio(path, masked=True, chunks=_chunks(chunks))
    else:
        data = rioxarray.open_rasterio(_warped(path, target, method), masked=True, chunks=_chunks(chunks))
    return data.astype("float32") if data.dtype != np.float32 else data


def _warped(path: Path, target: dict, method: Resampling) -> WarpedVRT:
    src = rasterio.open(path)
    src_crs, _, gcps = _georeference(src, path.name)
    if gcps is None:
        return WarpedVRT(
            src, src_crs=src_crs, crs=target["crs"], transform=target["transform"], width=target["width"],
            height=target["height"], resampling=method, nodata=src.nodata,
        )
    # GCP-only products (Sentinel-1 GRD) declare no nodata but use 0 outside the swath. GDAL's GCP warper is
    # only right on its own suggested grid (see _target_grid), so the grid is checked, not imposed.
    vrt = WarpedVRT(src, src_crs=src_crs, crs=target["crs"], resampling=method, nodata=src.nodata or 0)
    if not (vrt.transform.almost_equals(target["transform"]) and (vrt.width, vrt.height) == (target["width"], target["height"])):
        raise XrembedError(
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
    with rasterio.open(path) as src:
        descriptions = src.descriptions
    names = list(bands) if bands is not None else None
    if names is None and descriptions and len(descriptions) == data.sizes["band"] and all(descriptions):
        names = list(descriptions)
    if names is not None:
        if len(names) != data.sizes["band"]:
            raise BandMismatchError(f"bands= has {len(names)} names but {path.name} has {data.sizes['band']} bands.")
        data = data.assign_coords(band=canonical_band_names(names))
    return data
