"""Google Earth Engine through xee: a filtered (and optionally composited) image collection as a lazy
``xr.Dataset`` with one variable per band, ready for ``.rsembed.embed(...)``.

What is built server-side, in this order (rs-embed's fetch recipe, see ``docs/sources/gee.md``):

1. ``ee.ImageCollection(collection).filterBounds(grid footprint).filterDate(start, end)``
   (``TemporalSpec`` windows are half-open, as ``filterDate`` is);
2. the collection's cloud property ``< cloudy_pct`` (Sentinel-2 ``CLOUDY_PIXEL_PERCENTAGE``, Landsat
   ``CLOUD_COVER``; other collections have none and are not cloud-filtered);
3. Sentinel-1 only: ``instrumentMode == "IW"`` (optionally relaxed when that leaves nothing), the requested
   polarisations in ``transmitterReceiverPolarisation``, and ``orbitProperties_pass``; linear power
   (``COPERNICUS/S1_GRD_FLOAT``) or dB (``COPERNICUS/S1_GRD``);
4. ``select(bands)``; then ``median()`` or a time-sorted ``mosaic()`` (most recent on top), wrapped as a
   one-image collection, or no composite (a time series sorted by acquisition time).

The pixel grid is the ROI's local UTM zone at the sensor's native scale (10 m for Sentinel-1/2, 30 m for
Landsat) unless ``crs=`` / ``scale_m=`` say otherwise, snapped to whole multiples of the scale with
``xee.helpers.fit_geometry``. Nothing is read until a chunk is computed: opening costs one size check
(``collection.size().getInfo()``, two for a relaxed Sentinel-1 retry) and xee's one metadata RPC.
"""

from __future__ import annotations

import datetime as _dt
import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import xarray as xr
from affine import Affine
from pyproj import CRS

from ..bands import canonical_band_name
from ..errors import NoDataInBoundsError, OptionError, SourceError, SpecError, XrembedError
from ..geo import metres_per_unit, pixel_window, window_transform
from ..specs import COMPOSITES, BBox, FetchSpec, PointBuffer, SensorSpec, TemporalSpec

__all__ = ["open_gee"]

S1_DB = "COPERNICUS/S1_GRD"
S1_LINEAR = "COPERNICUS/S1_GRD_FLOAT"
S1_COLLECTIONS = (S1_DB, S1_LINEAR)

#: (collection id prefix, cloud-cover property, native scale in metres)
_COLLECTION_FACTS: tuple[tuple[str, str | None, float], ...] = (
    ("COPERNICUS/S2", "CLOUDY_PIXEL_PERCENTAGE", 10.0),
    ("COPERNICUS/S1", None, 10.0),
    ("LANDSAT/", "CLOUD_COVER", 30.0),
)

#: Default Earth Engine request window (and dask chunk) side: four 224 px model tiles.
DEFAULT_IO_TILES = 4
_WORST_ITEMSIZE = 8  # float64 bands, before the bands are known (xee adds one mask byte per pixel)
_UNSET: Any = object()


def open_gee(
    source: Any,
    *,
    spatial: BBox | PointBuffer,
    temporal: TemporalSpec,
    bands: Sequence[str] | None = None,
    scale_m: float | None = None,
    crs: Any = None,
    composite: str | None = _UNSET,
    cloudy_pct: float | None = _UNSET,
    modality: str | None = None,
    tile_size: int = 224,
    fetch: FetchSpec | None = None,
    cloud_property: str | None = _UNSET,
    s1_orbit: str | None = _UNSET,
    s1_linear: bool | None = None,
    s1_require_iw: bool | None = None,
    s1_relax_iw_on_empty: bool | None = None,
    io_chunks: Mapping[str, int] | None = None,
    chunks: Mapping[str, int] | str | None = "io",
    ee_init_kwargs: Mapping[str, Any] | None = None,
    ee_init_if_necessary: bool = True,
    request_byte_limit: int | None = None,
    executor_kwargs: Mapping[str, Any] | None = None,
    getitem_kwargs: Mapping[str, int] | None = None,
) -> xr.Dataset:
    """Open an Earth Engine image collection over ``spatial`` / ``temporal`` as a lazy Dataset (via xee).

    Parameters
    ----------
    source
        A collection id (``"COPERNICUS/S2_SR_HARMONIZED"``), a :class:`~xrembed.specs.SensorSpec`, or an
        ``ee.ImageCollection`` (then give ``bands``/``scale_m``). A model id (``"dofa"``, ``"terrafm"`` with
        ``modality="s1"``) is taken by :func:`xrembed.open_gee`, which reads the model's default sensor.
    spatial, temporal
        Where (``BBox`` in any CRS, or ``PointBuffer`` in ground metres) and when (half-open window).
    bands
        Bands to select, in order. Sentinel-2 names may be spelled ``B04`` or ``B4`` (sent as ``B4``).
        Default: the sensor's bands; all bands for a bare collection id.
    scale_m, crs
        Pixel size (metres; converted at 111,320 m per degree for a geographic ``crs``) and grid CRS.
        Defaults: the sensor's scale (10 m Sentinel-1/2, 30 m Landsat) and the ROI's local UTM zone.
    composite
        ``"median"``, ``"mosaic"`` (most recent image on top) or ``None`` for the time series.
        Default: the sensor's (``"median"``).
    cloudy_pct
        Keep images whose cloud property is below this percentage (default: the sensor's, 30). ``None``
        disables the filter. ``cloud_property`` names the property for collections xrembed does not know.
    modality
        With a model id (:func:`xrembed.open_gee`): which of its sensors (``"s1"``, ``"s2"``, ``"s2_l1c"``).
    tile_size
        Side of the model tiles the data will be cut into (default 224): requests hold whole tiles.
    fetch
        An rs-embed :class:`~xrembed.specs.FetchSpec` overriding the sensor's scale, cloud filter and
        composite (explicit keywords win over it).
    s1_orbit, s1_linear, s1_require_iw, s1_relax_iw_on_empty
        Sentinel-1: ``"ASCENDING"``/``"DESCENDING"`` pass; linear power (``COPERNICUS/S1_GRD_FLOAT``,
        ``True``) or dB (``COPERNICUS/S1_GRD``, ``False``); keep only IW-mode scenes; if that leaves none,
        retry without the IW filter. Defaults from the sensor (IW required, relaxed on empty).
    io_chunks
        Earth Engine request windows, e.g. ``{"time": 1, "y": 896, "x": 896}``. Default: one image and
        four model tiles a side (896 px for 224 px tiles), checked against xee's request byte limit.
    chunks
        Dask chunks: ``"io"`` (default, equal to ``io_chunks``), a dict, or ``None`` for xee's lazily
        indexed arrays without dask.
    ee_init_kwargs, ee_init_if_necessary
        ``ee.Initialize`` keywords (``project``, ``credentials``, ``credentials_function``, ``url``).
        Used here if Earth Engine is not initialised yet, and handed to xee so that dask workers
        initialise themselves before their first request.
    request_byte_limit, executor_kwargs, getitem_kwargs
        Passed to xee (request size limit, per-chunk thread pool, retry/backoff).

    Returns
    -------
    xarray.Dataset
        One float32 variable per band (masked pixels NaN), dims ``(time, y, x)`` with pixel-centre
        coordinates; a composite keeps a length-1 ``time`` whose value is the window's midpoint. A
        ``spatial_ref`` coordinate carries CRS and transform (``ds.rio.crs``); ``attrs`` record the
        collection, window, grid and every filter applied.

    Examples
    --------
    >>> sensor = SensorSpec("COPERNICUS/S2_SR_HARMONIZED", ("B4", "B3", "B2"), scale_m=10)
    >>> ds = open_gee(sensor, spatial=PointBuffer(-9.5, 25.0, 1120),            # doctest: +SKIP
    ...               temporal=TemporalSpec.range("2022-06-01", "2022-09-01"))
    >>> emb = ds.rsembed.embed("dofa")                                           # doctest: +SKIP
    """
    ee = _import_ee()
    import xee  # noqa: F401  (registers engine="ee")

    if not isinstance(spatial, (BBox, PointBuffer)):
        raise SpecError(f"spatial must be a BBox or PointBuffer, got {type(spatial).__name__}.")
    if not isinstance(temporal, TemporalSpec):
        raise SpecError(
            f"temporal must be a TemporalSpec (e.g. TemporalSpec.range('2022-06-01', '2022-09-01')), got {temporal!r}."
        )
    req = _resolve_request(
        ee, source, bands=bands, scale_m=scale_m, composite=composite, cloudy_pct=cloudy_pct, modality=modality,
        fetch=fetch, cloud_property=cloud_property, s1_orbit=s1_orbit, s1_linear=s1_linear,
        s1_require_iw=s1_require_iw, s1_relax_iw_on_empty=s1_relax_iw_on_empty, tile_size=tile_size,
    )
    _ensure_initialized(ee, ee_init_kwargs)

    grid_crs = CRS.from_user_input(crs) if crs is not None else spatial.local_utm()
    grid = grid_params(spatial, grid_crs, req["scale_m"])
    start, end = temporal.interval

    try:
        collection, applied, n_images = _build_collection(ee, req, grid, start, end)
    except ee.EEException as err:
        raise SourceError(
            f"Earth Engine refused the request for {req['collection_id']!r} (bands {req['bands']}): {err}. "
            "Check the collection id and band names (Earth Engine spelling, e.g. 'B4') and your access."
        ) from err

    tile = req["tile_size"]
    io = _io_chunks(io_chunks, tile, request_byte_limit)
    kwargs: dict[str, Any] = {
        "crs": grid["crs"], "crs_transform": grid["crs_transform"], "shape_2d": grid["shape_2d"], "io_chunks": io,
        "ee_init_if_necessary": ee_init_if_necessary,
        "ee_init_kwargs": dict(ee_init_kwargs) if ee_init_kwargs else None,
    }
    if request_byte_limit is not None:
        kwargs["request_byte_limit"] = request_byte_limit
    if executor_kwargs is not None:
        kwargs["executor_kwargs"] = dict(executor_kwargs)
    if getitem_kwargs is not None:
        kwargs["getitem_kwargs"] = dict(getitem_kwargs)
    if chunks == "io":
        kwargs["chunks"] = dict(io)
    elif chunks is not None:
        kwargs["chunks"] = dict(chunks)
    try:
        ds = xr.open_dataset(collection, engine="ee", **kwargs)
    except ee.EEException as err:
        raise SourceError(
            f"Earth Engine could not describe the filtered {req['collection_id']!r} collection: {err}. "
            "Check the band names and your Earth Engine access."
        ) from err
    return _finish(ds, req, grid, grid_crs, start, end, applied, n_images)


# -- request resolution --------------------------------------------------------------------------------


def _import_ee():
    try:
        import ee
        import xee  # noqa: F401
    except ImportError as err:  # pragma: no cover - depends on the environment
        raise XrembedError(
            "open_gee needs the Earth Engine client and xee: `pip install \"xrembed[gee]\"` "
            "(earthengine-api, xee>=0.1)."
        ) from err
    return ee


def _collection_facts(collection_id: str | None) -> tuple[str | None, float | None]:
    for prefix, cloud, scale in _COLLECTION_FACTS:
        if collection_id and collection_id.upper().startswith(prefix):
            return cloud, scale
    return None, None


def _is_s1(collection_id: str | None) -> bool:
    return bool(collection_id) and collection_id.upper().startswith("COPERNICUS/S1_GRD")


def _ee_band_names(names: Sequence[str], collection_id: str | None) -> tuple[str, ...]:
    """Earth Engine spelling: Sentinel-2 ``B04`` -> ``B4``, ``b8a`` -> ``B8A``, ``vv`` -> ``VV``."""
    out = []
    for name in names:
        if not isinstance(name, str) or not name:
            raise OptionError(f"bands must be non-empty band names, got {list(names)!r}.")
        canon = canonical_band_name(name)
        if collection_id and collection_id.upper().startswith("COPERNICUS/S2") and canon.startswith("B"):
            out.append(canon if canon.endswith("A") else f"B{int(canon[1:])}" if canon[1:].isdigit() else name)
        elif canon in ("VV", "VH", "HH", "HV"):
            out.append(canon)
        else:
            out.append(name)
    if len(set(out)) != len(out):
        raise OptionError(f"bands {list(names)} name a band twice; list each once.")
    return tuple(out)


def _resolve_request(ee, source, *, bands, scale_m, composite, cloudy_pct, modality, fetch, cloud_property,
                     s1_orbit, s1_linear, s1_require_iw, s1_relax_iw_on_empty, tile_size) -> dict[str, Any]:
    """Merge the sensor's defaults, the FetchSpec and the explicit keywords into one request."""
    sensor: SensorSpec | None = None
    collection_obj = None
    if isinstance(source, SensorSpec):
        sensor = source
    elif isinstance(source, ee.ImageCollection):
        collection_obj = source
    elif isinstance(source, str) and "/" in source:
        _cloud, native = _collection_facts(source)
        sensor = SensorSpec(source, tuple(bands) if bands else ("*",), scale_m=native or 10, composite="median")
        if native is None and scale_m is None and (fetch is None or fetch.scale_m is None):
            raise OptionError(
                f"the native scale of {source!r} is not known to xrembed; pass scale_m= (metres per pixel)."
            )
    elif isinstance(source, str):  # a model's sensor is resolved above the sources (xrembed.open_gee)
        raise OptionError(
            f"{source!r} is not an Earth Engine collection id; for a model's default sensor call xrembed.open_gee "
            f"({source!r}, ...), or pass a collection id or a SensorSpec."
        )
    else:
        raise OptionError(
            f"open_gee takes a collection id, a SensorSpec, a model id or an ee.ImageCollection, not {source!r}."
        )
    if modality is not None and isinstance(source, str) and "/" in source:
        raise OptionError("modality= picks a model's sensor; with a collection id leave it out.")

    collection_id = sensor.collection if sensor is not None else None
    if fetch is not None and not isinstance(fetch, FetchSpec):
        raise SpecError(f"fetch must be a FetchSpec, got {fetch!r}.")

    def pick(explicit, fetch_value, sensor_value, unset=_UNSET):
        if explicit is not unset:
            return explicit
        if fetch_value is not None:
            return fetch_value
        return sensor_value

    composite = pick(composite, fetch.composite if fetch else None, sensor.composite if sensor else "median")
    if composite is not None and composite not in COMPOSITES:
        raise OptionError(f"composite={composite!r} is not one of {list(COMPOSITES)} or None.")
    cloudy = pick(cloudy_pct, fetch.cloudy_pct if fetch else None, sensor.cloudy_pct if sensor else None)
    if cloudy is not None and not (isinstance(cloudy, (int, float)) and 0 <= cloudy <= 100):
        raise OptionError(f"cloudy_pct must be a percentage in [0, 100] or None, got {cloudy!r}.")
    known_cloud, native = _collection_facts(collection_id)
    cloud_prop = known_cloud if cloud_property is _UNSET else cloud_property
    scale = scale_m if scale_m is not None else (fetch.scale_m if fetch and fetch.scale_m else None)
    if scale is None:
        scale = sensor.scale_m if sensor is not None else None
    if scale is None or not (isinstance(scale, (int, float)) and math.isfinite(scale) and scale > 0):
        raise OptionError(f"scale_m must be a positive number of metres; got {scale!r}. Pass scale_m=10, say.")

    is_s1 = _is_s1(collection_id)
    s1: dict[str, Any] = {}
    if is_s1:
        explicit_linear = s1_linear is not None
        linear = s1_linear if explicit_linear else (
            sensor.use_float_linear if isinstance(source, SensorSpec) or not isinstance(source, str) or "/" not in source
            else collection_id.upper() == S1_LINEAR
        )
        collection_id = S1_LINEAR if linear else S1_DB
        orbit = pick(s1_orbit, None, sensor.orbit)
        if orbit is not None:
            orbit = str(orbit).upper()
            if orbit not in ("ASCENDING", "DESCENDING"):
                raise OptionError(f"s1_orbit must be 'ASCENDING', 'DESCENDING' or None, got {s1_orbit!r}.")
        s1 = {
            "linear": bool(linear), "orbit": orbit,
            "require_iw": sensor.s1_require_iw if s1_require_iw is None else bool(s1_require_iw),
            "relax_iw": sensor.s1_relax_iw_on_empty if s1_relax_iw_on_empty is None else bool(s1_relax_iw_on_empty),
        }
        cloudy = None  # radar: no cloud filter
    elif any(v is not None and v is not _UNSET for v in (s1_linear, s1_require_iw, s1_relax_iw_on_empty)) or (
        s1_orbit is not _UNSET and s1_orbit is not None
    ):
        raise OptionError(f"s1_* options apply to Sentinel-1 ({S1_DB} / {S1_LINEAR}) only, not {collection_id!r}.")

    if bands is not None:
        band_names = _ee_band_names(bands, collection_id)
    elif sensor is not None and sensor.bands != ("*",):
        band_names = _ee_band_names(sensor.bands, collection_id)
    else:
        band_names = None
    if collection_obj is None and collection_id is None:  # pragma: no cover - guarded above
        raise OptionError("no collection to open.")
    return {
        "collection_id": collection_id or "<ee.ImageCollection>", "collection_obj": collection_obj, "bands": band_names,
        "scale_m": float(scale), "composite": composite, "cloudy_pct": cloudy, "cloud_property": cloud_prop if cloudy is not None else None,
        "s1": s1, "tile_size": tile_size, "modality": sensor.modality if sensor is not None else None,
    }


def _ensure_initialized(ee, ee_init_kwargs) -> None:
    if ee.data.is_initialized():
        return
    kwargs = dict(ee_init_kwargs or {})
    if "credentials_function" in kwargs:
        if "credentials" in kwargs:
            raise OptionError("ee_init_kwargs takes credentials or credentials_function, not both.")
        kwargs["credentials"] = kwargs.pop("credentials_function")()
    try:
        ee.Initialize(**kwargs)
    except Exception as err:
        raise SourceError(
            f"Earth Engine is not initialised and ee.Initialize failed ({err}). Run `earthengine authenticate` "
            "once, then pass ee_init_kwargs={'project': 'your-cloud-project'} (or call ee.Initialize yourself)."
        ) from err


# -- grid --------------------------------------------------------------------------------------------


def grid_params(spatial: BBox | PointBuffer, crs: CRS, scale_m: float) -> dict[str, Any]:
    """xee grid keywords (``crs``, ``crs_transform``, ``shape_2d`` = (width, height)) covering ``spatial``.

    The ROI's bounds in ``crs`` (edges densified) are snapped outwards to whole multiples of the scale,
    the computation of ``xee.helpers.fit_geometry(..., grid_scale=(s, -s))``, so grids of neighbouring
    requests share one lattice (for UTM at 10 m, Sentinel-2's own).

    Examples
    --------
    >>> g = grid_params(PointBuffer(-9.5, 25.0, 500), CRS.from_epsg(32629), 10)
    >>> g["crs"], g["shape_2d"]
    ('EPSG:32629', (101, 101))
    """
    epsg = crs.to_epsg()
    if epsg is None:
        raise OptionError(f"crs {crs.name!r} has no EPSG code; Earth Engine grids need one, e.g. crs='EPSG:32629'.")
    # Degrees are Earth Engine's equatorial ones (scale_m / 111 320 m), as xee's own grids.
    scale = scale_m / metres_per_unit(crs)
    lattice = Affine(scale, 0.0, 0.0, 0.0, -scale, 0.0)  # lines at whole multiples of the scale
    window = pixel_window(spatial.bounds_in(crs), lattice)
    corner = window_transform(lattice, window)
    height, width = max(1, window.shape[0]), max(1, window.shape[1])
    return {
        "crs": f"EPSG:{epsg}",
        "crs_transform": (float(scale), 0.0, float(corner.c), 0.0, -float(scale), float(corner.f)),
        "shape_2d": (int(width), int(height)),
    }


def _io_chunks(io_chunks, tile: int, request_byte_limit: int | None) -> dict[str, int]:
    from xee import REQUEST_BYTE_LIMIT

    limit = request_byte_limit or REQUEST_BYTE_LIMIT
    if io_chunks is None:
        side = tile * DEFAULT_IO_TILES
        while side > tile and side * side * (_WORST_ITEMSIZE + 1) > limit:
            side -= tile
        return {"time": 1, "y": side, "x": side}
    io = {"index" if k in ("time", "index") else "height" if k in ("y", "height") else "width" if k in ("x", "width")
          else k: v for k, v in dict(io_chunks).items()}
    unknown = set(io) - {"index", "height", "width"}
    if unknown or not all(isinstance(v, int) and v > 0 for v in io.values()):
        raise OptionError(f"io_chunks must map 'time', 'y', 'x' to positive integers, got {dict(io_chunks)!r}.")
    out = {"time": io.get("index", 1), "y": io.get("height", tile * DEFAULT_IO_TILES), "x": io.get("width", tile * DEFAULT_IO_TILES)}
    size = out["time"] * out["y"] * out["x"] * (_WORST_ITEMSIZE + 1)
    if size > limit:
        raise OptionError(
            f"io_chunks {out} may ask Earth Engine for {size / 2**20:.0f} MiB per request, above the "
            f"{limit / 2**20:.0f} MiB limit; use smaller windows, e.g. {{'time': 1, 'y': 896, 'x': 896}}."
        )
    return out


# -- server-side expression ----------------------------------------------------------------------------


def _build_collection(ee, req: dict, grid: dict, start: str, end: str):
    """The filtered, selected, composited collection; the filters applied; the number of images used."""
    (a, _, c, _, e, f), (width, height) = grid["crs_transform"], grid["shape_2d"]
    footprint = ee.Geometry.Rectangle(
        [c, f + e * height, c + a * width, f], proj=grid["crs"], geodesic=False
    )
    base = req["collection_obj"] if req["collection_obj"] is not None else ee.ImageCollection(req["collection_id"])
    col = base.filterBounds(footprint).filterDate(start, end)
    applied = [f"filterBounds({grid['crs']} grid footprint)", f"filterDate({start}, {end})"]
    if req["cloudy_pct"] is not None and req["cloud_property"]:
        col = col.filter(ee.Filter.lt(req["cloud_property"], req["cloudy_pct"]))
        applied.append(f"{req['cloud_property']} < {req['cloudy_pct']:g}")

    s1 = req["s1"]
    iw = "not applicable"
    if s1:
        pols = [b for b in (req["bands"] or ("VV", "VH")) if b in ("VV", "VH", "HH", "HV")]
        for pol in pols:
            col = col.filter(ee.Filter.listContains("transmitterReceiverPolarisation", pol))
            applied.append(f"transmitterReceiverPolarisation contains {pol}")
        if s1["orbit"]:
            col = col.filter(ee.Filter.eq("orbitProperties_pass", s1["orbit"]))
            applied.append(f"orbitProperties_pass == {s1['orbit']}")
        if s1["require_iw"]:
            with_iw = col.filter(ee.Filter.eq("instrumentMode", "IW"))
            n = int(with_iw.size().getInfo())
            if n == 0 and s1["relax_iw"]:
                iw = "relaxed (no IW scene matched; all instrument modes kept)"
                applied.append("instrumentMode == IW (relaxed: no scene matched)")
            else:
                col, iw = with_iw, "IW"
                applied.append("instrumentMode == IW")
        else:
            iw = "any"
    n_images = int(col.size().getInfo())
    if n_images == 0:
        raise NoDataInBoundsError(
            f"no {req['collection_id']} image matches the request ({'; '.join(applied)}). Widen the time window "
            "or the area, raise cloudy_pct= (or pass cloudy_pct=None), or drop s1_orbit=."
        )
    if req["bands"] is not None:
        col = col.select(list(req["bands"]))
        applied.append(f"select({', '.join(req['bands'])})")
    if req["composite"] is None:
        col = col.sort("system:time_start")
    else:
        middle = _midpoint(start, end)
        millis = int((middle - _dt.datetime(1970, 1, 1)).total_seconds() * 1000)
        if req["composite"] == "median":
            image = col.median()
        else:  # later images on top: sort ascending, mosaic paints the last one over the others
            image = col.sort("system:time_start").mosaic()
        image = image.set({"system:time_start": millis, "system:index": f"{req['composite']}_{start}_{end}"})
        col = ee.ImageCollection([image])
        applied.append(f"{req['composite']}()")
    req["iw"] = iw
    return col, applied, n_images


def _midpoint(start: str, end: str) -> _dt.datetime:
    t0 = _dt.datetime.fromisoformat(start)
    t1 = _dt.datetime.fromisoformat(end)
    return t0 + (t1 - t0) / 2


# -- result --------------------------------------------------------------------------------------------


def _finish(ds: xr.Dataset, req, grid, grid_crs: CRS, start, end, applied, n_images) -> xr.Dataset:
    from affine import Affine

    if req["composite"] is not None:
        # One image; its time is the window's midpoint (set server-side too, fixed here client-side).
        ds = ds.assign_coords(time=np.array([_midpoint(start, end)], dtype="datetime64[ns]"))
    for var in ds.data_vars.values():
        # xee writes the pixel size as `scale_factor`: CF writers would apply it to the data.
        var.encoding.pop("scale_factor", None)
    ds = ds.rio.write_crs(grid_crs).rio.write_transform(Affine(*grid["crs_transform"]))
    attrs = {k: v for k, v in ds.attrs.items() if isinstance(v, (str, int, float))}
    attrs.update(
        source="earthengine",
        collection=req["collection_id"],
        bands=",".join(str(b) for b in ds.data_vars),
        time_start=start,
        time_end=end,
        crs=grid["crs"],
        scale_m=req["scale_m"],
        composite=req["composite"] or "none",
        images_matched=n_images,
        cloud_filter=(f"{req['cloud_property']} < {req['cloudy_pct']:g}" if req["cloud_property"] else "none"),
        filters="; ".join(applied),
        nodata="NaN (masked pixels)",
    )
    if req["s1"]:
        attrs.update(
            s1_instrument_mode=req["iw"],
            s1_polarisation="dual VV+VH" if {"VV", "VH"} <= set(ds.data_vars) else ",".join(ds.data_vars),
            s1_orbit_pass=req["s1"]["orbit"] or "any",
            s1_units="linear power" if req["s1"]["linear"] else "dB",
        )
    if req.get("modality"):
        attrs["modality"] = req["modality"]
    ds.attrs = attrs
    return ds
