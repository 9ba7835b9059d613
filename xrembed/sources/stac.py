"""STAC items (Earth Search, Planetary Computer, a local catalogue) as a lazy ``(time, band, y, x)`` raster.

Pixels are read through `odc-stac <https://odc-stac.readthedocs.io>`_ (``odc.stac.load``): it builds the
output grid from the items' ``proj:*`` metadata alone, so opening reads no pixel and no file; each dask
chunk later reads (and, for coarser bands, resamples) only the windows it needs.

Band names are the model's (``B04``, ``B8A``, ``VV``), matched to each item's asset keys by canonical name:
Earth Search keys (``red``, ``nir08``), Sentinel-2 keys (``B04``, ``B8A``) and the assets' ``eo:bands``
names all work (see :func:`xrembed.bands.canonical_band_name`).
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

import numpy as np
import xarray as xr
from affine import Affine
from pyproj import CRS
from rasterio.enums import Resampling

from ..bands import canonical_band_name, canonical_band_names
from ..errors import BandMismatchError, CRSError, NoDataInBoundsError, OptionError, SourceError, SpecError
from ..geo import pixel_window, window_transform
from ..specs import BBox, PointBuffer
from .raster import DEFAULT_CHUNK

__all__ = ["open_stac"]

def open_stac(
    items,
    *,
    bands: Sequence[str],
    spatial: BBox | PointBuffer | None = None,
    resolution: float | None = None,
    crs=None,
    chunks: int | dict | None = DEFAULT_CHUNK,
    resampling: str | Mapping[str, str] = "nearest",
    groupby: str | None = None,
) -> xr.DataArray:
    """Open STAC items as a lazy ``(time, band, y, x)`` DataArray through ``odc.stac.load``.

    Parameters
    ----------
    items
        ``pystac.Item`` objects, a ``pystac.ItemCollection`` (e.g. ``pystac_client`` search results),
        or paths/URLs/dicts of item (or FeatureCollection) JSON; one item or an iterable of them.
    bands
        Model band names, in the order wanted (``["B04", "B03", "B02"]``; ``B4``, ``red`` also match).
        Each is matched to an asset by its key (``red``, ``B04``) or, failing that, by the asset's
        ``eo:bands`` name or common name.
    spatial
        A :class:`~xrembed.BBox` or :class:`~xrembed.PointBuffer`: crop to it (pixels snap outwards to the
        grid). Default: the whole footprint of the items.
    resolution
        Pixel size in units of the output CRS. Default: the finest of the requested bands.
    crs
        Output CRS. Default: the items' native CRS (the most common one across items); then the grid is
        the native pixel lattice of the finest requested band, so that band is read without resampling.
    chunks
        Dask chunk side in pixels (default 1792, a multiple of 224 and 256), a dict for ``odc.stac.load``
        (``{"x": ..., "y": ..., "time": ...}``), or ``None`` to load eagerly into numpy.
    resampling
        How bands are brought onto the grid: a ``rasterio.enums.Resampling`` name, or a dict
        ``{band: name}`` keyed by model band names.
    groupby
        How items become time steps (passed to ``odc.stac.load``): ``None``/``"time"`` (items with the same
        timestamp are fused), ``"solar_day"`` (a mosaic of all items of one overpass, e.g. adjacent MGRS
        tiles), ``"id"`` (one step per item), or an item property name.

    Returns
    -------
    xarray.DataArray
        ``(time, band, y, x)`` float32 with NaN for nodata and outside the items, ``band`` names in
        canonical spelling, a ``spatial_ref`` coordinate (``.rio.crs``, ``.rio.transform()``), and
        reflectance as stored (raw digital numbers: ``raster:bands`` scale/offset are not applied, since
        models expect raw Sentinel-2 L2A DN).

    Examples
    --------
    >>> import pystac_client, xrembed                                          # doctest: +SKIP
    >>> found = pystac_client.Client.open("https://earth-search.aws.element84.com/v1").search(
    ...     collections=["sentinel-2-l2a"], bbox=[-11.9, 24.4, -11.8, 24.5], datetime="2020-02-19")  # doctest: +SKIP
    >>> da = xrembed.open_stac(found.item_collection(), bands=["B04", "B03", "B02"])  # doctest: +SKIP
    >>> da.dims                                                                 # doctest: +SKIP
    ('time', 'band', 'y', 'x')
    """
    import odc.stac

    item_list = _as_items(items)
    wanted = _wanted_bands(bands)
    keys = _asset_keys(item_list, wanted)
    method = _resampling(resampling, wanted, keys)
    load_chunks = _load_chunks(chunks)
    if groupby is None:
        groupby = "time"
    if spatial is not None and not isinstance(spatial, (BBox, PointBuffer)):
        raise OptionError(
            f"spatial={spatial!r}: pass an xrembed.BBox(minlon, minlat, maxlon, maxlat) or "
            "xrembed.PointBuffer(lon, lat, buffer_m)."
        )
    if resolution is not None and not (
        isinstance(resolution, (int, float)) and math.isfinite(resolution) and resolution > 0
    ):
        raise OptionError(f"resolution must be a positive number in units of the output CRS, got {resolution!r}.")
    target_crs = _crs(crs) if crs is not None else None

    geobox = _output_geobox(item_list, keys, spatial, resolution, target_crs)
    ds = odc.stac.load(
        item_list,
        bands=keys,
        geobox=geobox,
        chunks=load_chunks,
        resampling=method,
        groupby=groupby,
        dtype="float32",
        nodata=np.nan,
    )
    da = ds[keys].to_dataarray("band")
    # odc-stac names geographic axes latitude/longitude; the contract is (time, band, y, x) in any CRS.
    da = da.rename({old: new for old, new in (("latitude", "y"), ("longitude", "x")) if old in da.dims})
    da = da.transpose("time", "band", "y", "x")
    da = da.assign_coords(band=wanted)
    da.attrs = {"source": "stac", "stac_items": [item.id for item in item_list], "stac_assets": list(keys)}
    da.name = "reflectance" if all(b.startswith("B") for b in wanted) else "raster"
    return da


# -- items ---------------------------------------------------------------------------------------------


def _as_items(items) -> list:
    import pystac

    if isinstance(items, (pystac.Item, dict, str, os.PathLike)):
        items = [items]
    if not isinstance(items, Iterable):
        raise OptionError(
            f"items={items!r}: pass pystac.Item objects, a pystac.ItemCollection, or paths/URLs/dicts of item JSON."
        )
    out: list[pystac.Item] = []
    for entry in items:
        if isinstance(entry, pystac.Item):
            out.append(entry)
        elif isinstance(entry, dict):
            out.extend(_items_from_dict(entry, href=None))
        elif isinstance(entry, (str, os.PathLike)):
            href = str(entry)
            if "://" not in href:
                path = Path(href)
                if not path.is_file():
                    raise SourceError(f"STAC item file {href!r} does not exist; pass a path or URL of item JSON.")
                href = str(path.resolve())
            out.extend(_items_from_dict(pystac.StacIO.default().read_json(href), href=href))
        else:
            raise OptionError(
                f"cannot read a STAC item from {type(entry).__name__}; pass pystac.Item objects, a "
                "pystac.ItemCollection, or paths/URLs/dicts of item JSON."
            )
    if not out:
        raise SourceError("no STAC items to load; check the search (collection, bbox, datetime) that produced them.")
    return out


def _items_from_dict(d: dict, href: str | None) -> list:
    import pystac

    kind = d.get("type") if isinstance(d, dict) else None
    if kind == "FeatureCollection":
        return list(pystac.ItemCollection.from_dict(d).items)
    if kind != "Feature":
        raise SourceError(
            f"{href or 'this dict'} is not STAC item JSON (type={kind!r}); pass an Item ('Feature') or "
            "an ItemCollection ('FeatureCollection')."
        )
    # Relative asset hrefs resolve against the JSON's own location, as pystac.Item.from_file does.
    return [pystac.Item.from_dict(d, href=href)]  # from_dict copies d (preserve_dict=True)


# -- bands -----------------------------------------------------------------------------------------------


def _wanted_bands(bands) -> list[str]:
    if bands is None:
        raise BandMismatchError("bands= is required: name the model bands to load, e.g. bands=['B04', 'B03', 'B02'].")
    names = [bands] if isinstance(bands, str) else list(bands)
    if not names:
        raise BandMismatchError("bands= is empty; name the model bands to load, e.g. bands=['B04', 'B03', 'B02'].")
    wanted = canonical_band_names(names)
    duplicates = sorted({b for b in wanted if wanted.count(b) > 1})
    if duplicates:
        raise BandMismatchError(f"bands= names {duplicates} more than once; list each band once.")
    return wanted


def _asset_band_names(asset) -> list[tuple[int, str]]:
    """(priority, canonical name) under which an asset may be asked for: its key first, then metadata."""
    fields = asset.extra_fields
    entries = fields.get("eo:bands") or fields.get("bands") or []
    names: list[tuple[int, str]] = []
    if isinstance(entries, list) and len(entries) == 1 and isinstance(entries[0], dict):
        entry = entries[0]
        if entry.get("name"):
            names.append((1, canonical_band_name(entry["name"])))
        common = entry.get("common_name") or entry.get("eo:common_name")
        if common:
            names.append((2, canonical_band_name(common)))
    return names


def _item_band_map(item) -> dict[str, str]:
    """Canonical band name -> asset key for one item (key matches beat metadata matches; GeoTIFF first)."""
    best: dict[str, tuple] = {}
    for order, (key, asset) in enumerate(item.assets.items()):
        roles = asset.roles or []
        if roles and "data" not in roles:
            continue
        tiff = 0 if "tiff" in (asset.media_type or "tiff").lower() else 1
        candidates = [(0, canonical_band_name(key))] + _asset_band_names(asset)
        for priority, name in candidates:
            rank = (priority, tiff, order)
            if name not in best or rank < best[name][0]:
                best[name] = (rank, key)
    return {name: key for name, (_, key) in best.items()}


def _asset_keys(items: list, wanted: list[str]) -> list[str]:
    chosen: dict[str, str] = {}
    for item in items:
        mapping = _item_band_map(item)
        missing = [b for b in wanted if b not in mapping]
        if missing:
            available = sorted({k for k in mapping if k.startswith("B") or k in ("VV", "VH", "HH", "HV")})
            raise BandMismatchError(
                f"STAC item {item.id!r} has no asset for bands {missing} (its assets: {sorted(item.assets)}; "
                f"bands it offers: {available}); choose bands=[...] from those."
            )
        for band in wanted:
            key = chosen.setdefault(band, mapping[band])
            if key != mapping[band]:
                raise BandMismatchError(
                    f"band {band} is asset {key!r} in some items and {mapping[band]!r} in item {item.id!r}; "
                    "open each collection with its own open_stac call and xr.concat the results."
                )
    return [chosen[b] for b in wanted]


def _resampling(resampling, wanted: list[str], keys: list[str]):
    def check(name):
        try:
            Resampling[name]
        except (KeyError, TypeError):
            raise OptionError(
                f"resampling={name!r} is not a rasterio Resampling name (e.g. 'nearest', 'bilinear')."
            ) from None
        return name

    if isinstance(resampling, Mapping):
        by_band = {canonical_band_name(b): check(m) for b, m in resampling.items()}
        unknown = sorted(set(by_band) - set(wanted))
        if unknown:
            raise OptionError(f"resampling= names bands {unknown} that are not in bands={wanted}.")
        return {"*": "nearest", **{keys[wanted.index(b)]: m for b, m in by_band.items()}}
    return check(resampling)


def _load_chunks(chunks):
    if chunks is None:
        return None
    if isinstance(chunks, bool) or not isinstance(chunks, (int, dict)):
        raise OptionError(f"chunks={chunks!r}: pass a chunk side in pixels (e.g. 1792), a dict, or None (eager).")
    if isinstance(chunks, int):
        if chunks < 1:
            raise OptionError(f"chunks must be a positive number of pixels, got {chunks}.")
        return {"time": 1, "y": chunks, "x": chunks}
    return {k: v for k, v in chunks.items() if k != "band"}


# -- grid ------------------------------------------------------------------------------------------------


def _crs(value) -> CRS:
    try:
        return CRS.from_user_input(value)
    except Exception as err:
        raise OptionError(f"crs={value!r} is not a CRS pyproj understands (e.g. 'EPSG:32629').") from err


def _output_geobox(items, keys, spatial, resolution, target_crs):
    """The output GeoBox, built from metadata only (no file is opened)."""
    import odc.stac
    from odc.geo.geobox import GeoBox

    parsed = list(odc.stac.parse_items(items))
    try:
        native = odc.stac.output_geobox(parsed, keys)
    except ValueError:
        native = None
    north_up = native is not None and native.affine.b == 0 and native.affine.d == 0
    if north_up and (target_crs is None or CRS(native.crs.to_wkt()) == target_crs):
        return _on_native_lattice(native, spatial, resolution)
    if target_crs is None:
        if native is None:
            raise SourceError(
                "the STAC items carry no usable projection metadata (proj:code/proj:epsg with proj:shape and "
                "proj:transform per asset); pass crs= and resolution= to choose the grid."
            )
        target_crs = CRS(native.crs.to_wkt())
    if resolution is None:
        native_unit = _unit(CRS(native.crs.to_wkt())) if native is not None else None
        if native_unit is None or native_unit != _unit(target_crs):
            raise OptionError(
                f"resolution= is needed to load in {target_crs.to_string()}: give the pixel size in that CRS's "
                "units (the items' native resolution is in other units, or unknown)."
            )
        resolution = abs(native.resolution.x)
    if spatial is not None:
        bounds = _bounds(spatial, target_crs)
        return GeoBox.from_bbox(bounds, target_crs.to_wkt(), resolution=resolution, anchor="edge")
    geobox = odc.stac.output_geobox(parsed, keys, crs=target_crs.to_wkt(), resolution=resolution)
    if geobox is None:
        raise SpecError("cannot work out the items' footprint; pass spatial=BBox(...) to choose the area.")
    return geobox


def _on_native_lattice(native, spatial, resolution):
    """Crop and/or coarsen on the native pixel lattice: edges at ``origin + k * resolution``."""
    from odc.geo.geobox import GeoBox

    res = float(resolution) if resolution is not None else abs(native.resolution.x)
    x0, y0 = native.affine.c, native.affine.f
    left, bottom, right, top = native.boundingbox
    if spatial is not None:
        crs = CRS(native.crs.to_wkt())
        want = _bounds(spatial, crs)
        if want[0] >= right or want[2] <= left or want[1] >= top or want[3] <= bottom:
            raise NoDataInBoundsError(
                f"spatial={spatial} does not overlap the STAC items (their extent in {crs.to_string()} is "
                f"{(left, bottom, right, top)}); check the box (minlon, minlat, maxlon, maxlat) and the search."
            )
        left, bottom, right, top = want
    lattice = Affine(res, 0, x0, 0, -res, y0)
    window = pixel_window((left, bottom, right, top), lattice)
    height, width = window.shape
    return GeoBox((max(height, 1), max(width, 1)), window_transform(lattice, window), native.crs)


def _bounds(spatial, crs: CRS) -> tuple[float, float, float, float]:
    try:
        return spatial.bounds_in(crs)
    except SpecError:
        raise
    except Exception as err:  # pyproj cannot transform the box
        raise CRSError(f"cannot express spatial={spatial} in {crs.to_string()}: {err}; pass crs=.") from err


def _unit(crs: CRS) -> str | None:
    axis = crs.axis_info[0] if crs.axis_info else None
    return axis.unit_name if axis is not None else None
