"""The rs-embed functional API (``get_embedding``, ``get_embeddings_batch``, ...) on top of the accessor.

Each call opens a source for the ROI and hands it to the same engine as ``.rsembed.embed``:

==============  ================================================================================
``backend``     source
==============  ================================================================================
``"gee"``       Earth Engine through xee (:func:`~xrembed.open_gee`), the model's default sensor
``"stac"``      STAC items given as ``source=`` (:func:`~xrembed.open_stac`)
``"local"``     a raster file or folder given as ``source=`` (:func:`~xrembed.open_raster`)
``"tensor"``    the caller's array, through :class:`UserData` and ``get_embedding_from_data``
``"auto"``      ``"local"`` or ``"stac"`` when ``source=`` is given, else ``"gee"``
==============  ================================================================================

Precomputed products (``"tessera"``, ``"gse"``, ``"copernicus_embed"``) open with
:func:`~xrembed.open_precomputed`. Where rs-embed read environment variables, these functions take
keyword arguments (``weights=``, ``variant=``, ``batch_size=``, ``ee_init_kwargs=``, ``num_workers=``).
Unlike rs-embed, a grid :class:`Embedding` is georeferenced (``data.rio.crs``), ``PointBuffer`` is in
ground metres, and imagery is fetched on the ROI's local UTM grid.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import xarray as xr

from . import batch
from .catalog import describe_model, list_models
from .errors import OptionError, SpecError
from .geo import pixel_centres
from .tiling import check_input_prep, overlap_stride
from .options import EmbedOptions

# The request code the exporter shares lives below both; crop_to and resolve_backend stay importable here.
from .requests import (
    POOLED,
    SpatialSpec,
    check_spatial,
    crop_to,  # noqa: F401
    drop_single_time,
    embed_kwargs,
    product_result,
    resolve_backend,  # noqa: F401
    source_request,
)
from .specs import (
    BBox,
    FetchSpec,
    InputPrepSpec,
    OutputSpec,
    PointBuffer,
    SensorSpec,
    TemporalSpec,
)

__all__ = [
    "Embedding",
    "UserData",
    "describe_model",
    "get_embedding",
    "get_embedding_from_data",
    "get_embeddings_batch",
    "get_embeddings_batch_from_data",
    "get_embeddings_batch_from_inputs",
    "inspect_gee_patch",
    "inspect_model_input",
    "inspect_provider_patch",
    "list_models",
    "list_models_for_data",
    "reset_runtime",
]



@dataclass
class Embedding:
    """One ROI's embedding: ``data`` is a numpy vector (pooled) or a georeferenced ``xr.DataArray``
    ``(embedding, y, x)`` (grid); ``meta`` describes the request and the model.

    A failed item of a batch run with ``continue_on_error=True`` has ``data=None`` and
    ``meta["status"] == "failed"`` with ``meta["error"]``.
    """

    data: np.ndarray | xr.DataArray | None
    meta: dict = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.data is not None


@dataclass
class UserData:
    """The caller's own imagery (rs-embed's bring-your-own-data type).

    ``data`` is ``(C, H, W)`` or ``(T, C, H, W)`` (numpy, torch or an ``xr.DataArray``). It is placed
    on the ground by ``crs`` + ``transform`` (an affine of the top-left corner), or, failing that, laid
    over ``spatial`` (a ``PointBuffer`` square in its local UTM zone, a ``BBox`` in its own CRS). A
    georeferenced ``xr.DataArray`` needs neither. ``bands`` names the channels; without it, the
    ``collection``'s default bands are used when their number matches. NaN marks missing pixels.
    """

    data: Any
    collection: str | None = None
    spatial: BBox | PointBuffer | None = None
    bands: Sequence[str] | None = None
    temporal: TemporalSpec | None = None
    scale_m: float | None = None
    crs: Any = None
    transform: Any = None

    @classmethod
    def from_raster(cls, path, *, collection: str | None = None, bands=None, temporal=None) -> UserData:
        """Wrap a local raster (opened lazily with :func:`~xrembed.open_raster`)."""
        from .sources.raster import open_raster

        return cls(open_raster(path, bands=bands), collection=collection, bands=bands, temporal=temporal)

    def to_xarray(self) -> xr.DataArray:
        """A georeferenced ``([time,] band, y, x)`` DataArray of ``data``."""
        if isinstance(self.data, xr.DataArray):
            da = self.data
            if "band" in da.dims and self.bands is not None:
                da = da.assign_coords(band=list(self.bands))
            if _has_crs(da):
                return da
            values = da
        else:
            values = np.asarray(self.data.detach().cpu() if hasattr(self.data, "detach") else self.data)
        if values.ndim not in (3, 4):
            raise SpecError(f"UserData.data must be (C, H, W) or (T, C, H, W), got shape {values.shape}.")
        height, width = values.shape[-2:]
        crs, transform = self._placement(height, width)
        crs, transform = _user_grid(crs, transform)
        y, x = pixel_centres(transform, (height, width))
        dims = ("time", "band", "y", "x")[-values.ndim :]
        bands = list(self.bands) if self.bands is not None else _collection_bands(self.collection, values.shape[-3])
        coords = {"y": y, "x": x}
        if bands is not None:
            if len(bands) != values.shape[-3]:
                raise SpecError(f"UserData.bands names {len(bands)} bands but data has {values.shape[-3]} channels.")
            coords["band"] = bands
        da = xr.DataArray(np.asarray(values), dims=dims, coords=coords, name="user_data")
        return da.rio.write_crs(crs).rio.write_transform(transform)

    def _placement(self, height: int, width: int):
        from affine import Affine

        if self.crs is not None and self.transform is not None:
            return self.crs, self.transform
        if (self.crs is None) != (self.transform is None):  # one without the other would be silently dropped
            given, missing = ("crs", "transform") if self.transform is None else ("transform", "crs")
            raise SpecError(
                f"UserData has {given}= but no {missing}=: pass both (the affine of the array's top-left corner and "
                "its CRS), or spatial= alone."
            )
        if self.spatial is not None:
            if isinstance(self.spatial, PointBuffer):
                crs = self.spatial.local_utm()
                left, bottom, right, top = self.spatial.bounds_in(crs)
            else:
                crs = self.spatial.crs
                left, bottom, right, top = self.spatial.bounds_in(crs)
            return crs, Affine((right - left) / width, 0, left, 0, -(top - bottom) / height, top)
        raise SpecError(
            "UserData has no place on the ground: pass crs= and transform= (the affine of the array's top-left "
            "corner), or spatial= (a PointBuffer/BBox the array covers), or a georeferenced xr.DataArray."
        )


def _user_grid(crs, transform):
    """``UserData``'s ``crs``/``transform`` as pyproj and ``Affine`` values; a rotated or sheared transform is
    refused (xrembed grids are axis-aligned, and dropping the rotation would misplace every pixel)."""
    from affine import Affine

    from .errors import SpatialDimensionError
    from .geo import is_axis_aligned, parse_crs, rotated_message

    crs = parse_crs(crs, "UserData crs=", "a valid one, e.g. crs='EPSG:32629'")
    if not isinstance(transform, Affine):
        try:
            transform = Affine(*[float(v) for v in list(transform)[:6]])
        except (TypeError, ValueError) as err:
            raise SpecError(
                f"UserData transform={transform!r} is not an affine; pass affine.Affine(a, b, c, d, e, f) "
                "(or Affine.from_gdal(*geotransform) for a GDAL GeoTransform)."
            ) from err
    if not is_axis_aligned(transform):
        hint = ""
        if transform.a != 0 and abs(transform.b) > 0 and transform.e == 0 and transform.c == 0:
            hint = " If this is a GDAL GeoTransform (c, a, b, f, d, e), pass Affine.from_gdal(*geotransform)."
        raise SpatialDimensionError("UserData: " + rotated_message(transform) + hint)
    return crs, transform


def _has_crs(da: xr.DataArray) -> bool:
    try:
        return da.rio.crs is not None or "crs" in da.attrs
    except Exception:  # noqa: BLE001  (rioxarray raises various errors on malformed grid mappings)
        return False


#: Collection names (and rs-embed aliases) whose unnamed 12-channel arrays follow the canonical L2A order.
S2_COLLECTIONS = ("COPERNICUS/S2_SR_HARMONIZED", "COPERNICUS/S2_SR", "s2", "s2_sr", "sentinel-2", "sentinel2")
S2_L2A_12 = ("B01", "B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A", "B09", "B11", "B12")


def _collection_bands(collection: str | None, channels: int) -> list[str] | None:
    """Band names for unnamed channels: only Sentinel-2's full 12-band L2A order is assumed (as rs-embed);
    anything else must be named with ``bands=``, since a guessed order would be silently wrong."""
    known = collection is not None and (collection in S2_COLLECTIONS or collection.lower() in S2_COLLECTIONS)
    return list(S2_L2A_12) if known and channels == 12 else None


def _to_embedding(result: xr.DataArray, meta: dict, lazy: bool = False) -> Embedding:
    result = drop_single_time(result)
    meta = {**meta, **result.attrs, "status": "ok"}
    if result.attrs.get("output") == "grid" or {"y", "x"} <= set(result.dims):
        if not lazy:
            result = result.compute()
        meta["crs"] = result.rio.crs.to_string() if result.rio.crs is not None else None
        meta["transform"] = list(result.rio.transform())[:6]
        return Embedding(result, meta)
    return Embedding(np.asarray(result.values), meta)


def _request_meta(model, backend, spatial, temporal, output, sensor=None) -> dict:
    return {
        "model": model,
        "backend": backend,
        "spatial": _spec_dict(spatial),
        "temporal": _spec_dict(temporal),
        "sensor": _spec_dict(sensor),
        "output_mode": getattr(output, "mode", output),
    }


def _spec_dict(spec) -> dict | None:
    if spec is None:
        return None
    if hasattr(spec, "__dataclass_fields__"):
        return {"type": type(spec).__name__, **{k: getattr(spec, k) for k in spec.__dataclass_fields__ if k != "extra"}}
    return {"type": type(spec).__name__, "repr": repr(spec)}


def get_embedding(
    model: str,
    *,
    spatial: SpatialSpec,
    temporal: TemporalSpec | None = None,
    sensor: SensorSpec | None = None,
    fetch: FetchSpec | None = None,
    modality: str | None = None,
    output: OutputSpec = POOLED,
    backend: str = "auto",
    device: str = "auto",
    input_prep: InputPrepSpec | str | None = None,
    source: Any = None,
    ee_init_kwargs: Mapping[str, Any] | None = None,
    lazy: bool = False,
    **model_kwargs,
) -> Embedding:
    """Embed one ROI (rs-embed's ``get_embedding``).

    Parameters
    ----------
    model
        A model id (``xrembed.list_models()``) or a precomputed product (``"tessera"``, ``"gse"``, ...).
    spatial, temporal
        Where (``BBox`` in any CRS, ``PointBuffer`` in ground metres) and when. Without ``temporal``,
        Earth Engine uses rs-embed's default window (warned).
    sensor, fetch, modality
        The imagery: a full ``SensorSpec``, or ``FetchSpec`` overrides on the model's default sensor.
    output
        ``OutputSpec.pooled()`` (a numpy vector) or ``OutputSpec.grid()`` (a georeferenced DataArray).
    backend, source
        Where the pixels come from (see the module docs); ``source=`` is a raster path (``"local"``),
        STAC items (``"stac"``) or a product location.
    input_prep
        ``"tile"`` (default, as rs-embed), ``"resize"`` or ``"auto"``.
    lazy
        Return a grid as a lazy (dask) DataArray, built by ``.rsembed.embed`` on the opened source, instead
        of computing it (batches then run ROI by ROI).
    **model_kwargs
        ``.rsembed.embed`` keywords: ``variant=``, ``weights=``, ``bands=``, ``wavelengths=``,
        ``batch_size=``, ``precision=``.

    Examples
    --------
    >>> import xrembed
    >>> emb = xrembed.get_embedding("dofa", spatial=xrembed.PointBuffer(-9.5, 25.0, 1120),   # doctest: +SKIP
    ...                             temporal=xrembed.TemporalSpec.range("2022-06-01", "2022-09-01"))
    >>> emb.data.shape                                                                        # doctest: +SKIP
    (768,)
    """
    with _single_item_errors():
        embeddings = get_embeddings_batch(
            model, spatials=[spatial], temporal=temporal, sensor=sensor, fetch=fetch, modality=modality,
            output=output, backend=backend, device=device, input_prep=input_prep, source=source,
            ee_init_kwargs=ee_init_kwargs, lazy=lazy, **model_kwargs,
        )
    return embeddings[0]


@contextmanager
def _single_item_errors():
    """One ROI: raise its own error, not the batch wrapper (whose advice is for batches)."""
    try:
        yield
    except batch.BatchItemError as err:
        raise err.__cause__ from None


def get_embeddings_batch(
    model: str,
    *,
    spatials: Sequence[SpatialSpec],
    temporal: TemporalSpec | None = None,
    sensor: SensorSpec | None = None,
    fetch: FetchSpec | None = None,
    modality: str | None = None,
    output: OutputSpec = POOLED,
    backend: str = "auto",
    device: str = "auto",
    input_prep: InputPrepSpec | str | None = None,
    source: Any = None,
    ee_init_kwargs: Mapping[str, Any] | None = None,
    num_workers: int = 4,
    continue_on_error: bool = False,
    max_retries: int = 0,
    retry_backoff_s: float = 0.0,
    lazy: bool = False,
    **model_kwargs,
) -> list[Embedding]:
    """Embed many ROIs with one model load (rs-embed's ``get_embeddings_batch``).

    ROIs are fetched concurrently (``num_workers`` threads) and ROIs of equal size share forward
    passes; the values equal those of one ROI at a time. A failing ROI raises
    :class:`~xrembed.batch.BatchItemError` naming it, or, with ``continue_on_error=True``, comes back as
    an :class:`Embedding` with ``data=None`` and the error in ``meta``. ``max_retries`` /
    ``retry_backoff_s`` retry transient fetch errors (backoff doubles each time).
    """
    spatials = list(spatials)
    for spatial in spatials:
        check_spatial(spatial)
    req = source_request(
        model, backend, temporal=temporal, sensor=sensor, fetch=fetch, modality=modality, source=source,
        ee_init_kwargs=ee_init_kwargs,
    )
    output = OutputSpec(output) if isinstance(output, str) else output
    if req.backend == "product":
        from .sources.precomputed import check_product_options

        check_product_options(model, sensor=sensor, fetch=fetch, modality=modality, device=device,
                              input_prep=input_prep, **model_kwargs)
        return [_product_embedding(model, s, req.temporal, source, output, lazy) for s in spatials]
    check_input_prep(model, input_prep, model_kwargs.get("variant"))
    kwargs = {**req.embed_defaults(), **embed_kwargs(model, output, input_prep, device, modality, model_kwargs)}
    stride = overlap_stride(model, input_prep, model_kwargs.get("variant"))
    if stride is not None:  # overlapping tiles: each ROI through xrembed.overlap (no cross-ROI stacking)
        from .overlap import embed_overlapping

        return [
            _to_embedding(embed_overlapping(opener(), model, tile_stride=stride, **kwargs),
                          _request_meta(model, req.backend, s, req.temporal, output, req.sensor), lazy=lazy)
            for opener, s in zip(req.openers(spatials), spatials)
        ]
    if lazy:  # no stacking: each ROI's own lazy graph, computed (or streamed) by the caller
        return [
            _to_embedding(opener().rsembed.embed(model, **kwargs),
                          _request_meta(model, req.backend, s, req.temporal, output, req.sensor), lazy=True)
            for opener, s in zip(req.openers(spatials), spatials)
        ]
    outcomes = batch.embed_many(
        req.openers(spatials), model, continue_on_error=continue_on_error, num_workers=num_workers,
        max_retries=max_retries, retry_backoff_s=retry_backoff_s, **kwargs,
    )
    return [
        _outcome_embedding(o, _request_meta(model, req.backend, s, req.temporal, output, req.sensor), lazy)
        for o, s in zip(outcomes, spatials)
    ]


def _outcome_embedding(outcome: batch.ItemOutcome, meta: dict, lazy: bool) -> Embedding:
    meta = {**meta, "attempts": outcome.attempts}
    if not outcome.ok:
        return Embedding(None, {**meta, "status": "failed", "error": f"{type(outcome.error).__name__}: {outcome.error}"})
    return _to_embedding(outcome.result, meta, lazy)


def _product_embedding(model, spatial, temporal, source, output, lazy) -> Embedding:
    result = product_result(model, spatial, temporal, source, output)
    return _to_embedding(result, _request_meta(model, "product", spatial, temporal, output), lazy)


def get_embedding_from_data(
    model: str,
    data: UserData,
    *,
    modality: str | None = None,
    output: OutputSpec = POOLED,
    device: str = "auto",
    input_prep: InputPrepSpec | str | None = None,
    **model_kwargs,
) -> Embedding:
    """Embed the caller's own imagery (rs-embed's ``get_embedding_from_data``; ``backend="tensor"``)."""
    with _single_item_errors():
        return get_embeddings_batch_from_data(
            model, [data], modality=modality, output=output, device=device, input_prep=input_prep, **model_kwargs
        )[0]


def get_embeddings_batch_from_data(
    model: str,
    datas: Sequence[UserData],
    *,
    modality: str | None = None,
    output: OutputSpec = POOLED,
    device: str = "auto",
    batch_size: int | None = None,
    input_prep: InputPrepSpec | str | None = None,
    continue_on_error: bool = False,
    **model_kwargs,
) -> list[Embedding]:
    """Embed many :class:`UserData` with one model load; equal-sized arrays share forward passes."""
    datas = list(datas)
    for d in datas:
        if not isinstance(d, UserData):
            raise SpecError(f"expected UserData items, got {type(d).__name__}; wrap arrays as UserData(array, ...).")
    output = OutputSpec(output) if isinstance(output, str) else output
    check_input_prep(model, input_prep, model_kwargs.get("variant"))
    kwargs = embed_kwargs(model, output, input_prep, device, modality, model_kwargs)
    if batch_size is not None:
        kwargs["batch_size"] = batch_size
    stride = overlap_stride(model, input_prep, model_kwargs.get("variant"))
    if stride is not None:
        from .overlap import embed_overlapping

        return [
            _to_embedding(embed_overlapping(d.to_xarray(), model, tile_stride=stride, **kwargs),
                          {**_request_meta(model, "tensor", d.spatial, d.temporal, output), "collection": d.collection})
            for d in datas
        ]
    outcomes = batch.embed_many(
        [d.to_xarray for d in datas], model, continue_on_error=continue_on_error, num_workers=1, **kwargs
    )
    return [
        _outcome_embedding(o, {**_request_meta(model, "tensor", d.spatial, d.temporal, output), "collection": d.collection}, False)
        for o, d in zip(outcomes, datas)
    ]


def inspect_model_input(
    model: str,
    *,
    spatial: SpatialSpec,
    temporal: TemporalSpec | None = None,
    sensor: SensorSpec | None = None,
    fetch: FetchSpec | None = None,
    modality: str | None = None,
    backend: str = "auto",
    value_range: tuple[float, float] | None = None,
    return_arrays: bool = False,
    source: Any = None,
    ee_init_kwargs: Mapping[str, Any] | None = None,
    **model_kwargs,
) -> dict:
    """Fetch what ``model`` would read over ``spatial`` and report on it, without running the model.

    Returns a dict: ``ok``, ``issues`` (each a sentence naming the fix), ``input`` (shape, dims, bands
    in model order, CRS, transform, bounds, dtype, NaN fraction, per-band min/max/mean/std) and, with
    ``return_arrays=True``, ``array`` (the ``([time,] band, y, x)`` numpy input).
    """
    from . import embedding, engine
    from .geo import Grid

    check_spatial(spatial)
    req = source_request(
        model, backend, temporal=temporal, sensor=sensor, fetch=fetch, modality=modality, source=source,
        ee_init_kwargs=ee_init_kwargs,
    )
    if req.backend == "product":
        raise OptionError(f"{model!r} is a precomputed product: there is no model input to inspect.")
    obj = req.openers([spatial])[0]()
    kwargs = {"modality": modality, **model_kwargs} if modality is not None else dict(model_kwargs)
    report: dict[str, Any] = {"model": model, "backend": req.backend, "spatial": _spec_dict(spatial),
                              "temporal": _spec_dict(req.temporal), "issues": []}
    prepared = embedding._prepare(obj, model, EmbedOptions.from_kwargs(kwargs, where="inspect_model_input"), resolve=False)
    data = prepared.data.load()
    values = np.asarray(data.values, dtype=np.float64)
    values = engine.mask_nodata(values, prepared.nodata)  # nodata is per band
    grid = Grid.from_xarray(obj)
    per_band = np.moveaxis(values, -3, 0).reshape(values.shape[-3], -1)  # data is (..., band, y, x)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN bands
        stats = {
            str(b): {"min": float(np.nanmin(v)), "max": float(np.nanmax(v)), "mean": float(np.nanmean(v)),
                     "std": float(np.nanstd(v))}
            for b, v in zip(prepared.plan.bands, per_band)
        }
    report["input"] = {
        "shape": list(values.shape), "dims": list(data.dims), "bands": list(prepared.plan.bands),
        "dtype": str(data.dtype), "crs": grid.crs.to_string(), "transform": list(grid.transform)[:6],
        "bounds": list(grid.bounds), "nan_fraction": float(np.isnan(values).mean()), "band_stats": stats,
    }
    if np.isnan(values).all():
        report["issues"].append("every pixel is missing: widen temporal= or relax the sensor's cloud filter.")
    if value_range is not None:
        lo, hi = value_range
        outside = [b for b, s in stats.items() if s["min"] < lo or s["max"] > hi]
        if outside:
            report["issues"].append(f"bands {outside} fall outside value_range={value_range}.")
    try:
        images = values.reshape((-1,) + values.shape[-3:]).astype(np.float32)
        prepared.adapter.check_values(images, prepared.plan)
    except Exception as err:  # noqa: BLE001  (reported, not raised: this is an inspection)
        report["issues"].append(str(err))
    report["ok"] = not report["issues"]
    if return_arrays:
        report["array"] = values
    return report


def get_embeddings_batch_from_inputs(
    model: str,
    *,
    spatials: Sequence[SpatialSpec],
    input_chws: Sequence[Any],
    temporal: TemporalSpec | None = None,
    sensor: SensorSpec | None = None,
    modality: str | None = None,
    output: OutputSpec = POOLED,
    backend: str = "tensor",
    device: str = "auto",
    input_prep: InputPrepSpec | str | None = None,
    fetch_metas: Sequence[Any] | None = None,
    **model_kwargs,
) -> list[Embedding]:
    """Embed ``(C, H, W)`` arrays the caller already has, each laid over its ROI (rs-embed's batched tensor path).

    ``input_chws[i]`` is raw imagery (e.g. Sentinel-2 reflectance 0..10000, not normalised) covering
    ``spatials[i]`` (a ``PointBuffer`` square in its UTM zone, a ``BBox`` in its own CRS); its channels are
    ``sensor.bands``, or the model's default bands for ``modality``. Equal-sized arrays share forward
    passes; grids come back georeferenced. ``backend`` and ``fetch_metas`` are accepted for rs-embed
    compatibility (nothing is fetched).

    Examples
    --------
    >>> import numpy as np, xrembed
    >>> chws = [np.full((9, 64, 64), 1500.0), np.full((9, 64, 64), 900.0)]          # doctest: +SKIP
    >>> embs = xrembed.get_embeddings_batch_from_inputs(                             # doctest: +SKIP
    ...     "dofa", spatials=[xrembed.PointBuffer(-9.5, 25.0, 320)] * 2, input_chws=chws)
    """
    from .catalog import default_sensor

    spatials, chws = list(spatials), list(input_chws)
    if len(spatials) != len(chws):
        raise SpecError(
            f"get_embeddings_batch_from_inputs got {len(spatials)} spatials for {len(chws)} input_chws; give one "
            "ROI per array."
        )
    for spatial in spatials:
        check_spatial(spatial)
    if sensor is not None:
        bands = list(sensor.bands)
    else:
        bands = list(default_sensor(model, modality).bands)
    datas = [
        UserData(chw, collection=getattr(sensor, "collection", None), spatial=spatial, bands=bands, temporal=temporal)
        for chw, spatial in zip(chws, spatials)
    ]
    if "bands" not in model_kwargs:
        model_kwargs["bands"] = bands
    for i, d in enumerate(datas):
        shape = np.shape(d.data)
        if len(shape) != 3 or shape[0] != len(bands):
            raise SpecError(
                f"input_chws[{i}] has shape {shape}; expected (C, H, W) with C = {len(bands)} channels for bands "
                f"{bands} (pass sensor=SensorSpec(..., bands=...) naming the channels you have)."
            )
    return get_embeddings_batch_from_data(
        model, datas, modality=modality, output=output, device=device, input_prep=input_prep, **model_kwargs
    )


def list_models_for_data(data: UserData) -> list[dict]:
    """Which models can embed ``data``'s bands, and why not (rs-embed's ``list_models_for_data``).

    One dict per model (``xrembed.list_models()``): ``model``, ``compatible``, ``bands_used`` (in model
    order, for the first modality that fits), ``modality`` and ``reason`` (the error the model would raise,
    naming the fix; ``None`` when compatible). A model that takes the data only when told which bands to read
    (DOFA on RGB) is compatible with ``embed_kwargs={"bands": [...]}``, the keyword to pass. Nothing is
    loaded or fetched.

    Examples
    --------
    >>> import numpy as np, xrembed
    >>> rgb = xrembed.UserData(np.zeros((3, 8, 8)), bands=["B04", "B03", "B02"],
    ...                        spatial=xrembed.PointBuffer(-9.5, 25.0, 40))
    >>> {r["model"]: r["compatible"] for r in xrembed.list_models_for_data(rgb)}["remoteclip"]
    True
    """
    from .errors import XrembedError
    from .models.registry import get_adapter

    if not isinstance(data, UserData):
        raise SpecError(f"list_models_for_data takes a UserData, got {type(data).__name__}; wrap arrays as UserData(...).")
    shape = np.shape(data.data)
    if len(shape) not in (3, 4):
        raise SpecError(f"UserData.data must be (C, H, W) or (T, C, H, W), got shape {shape}.")
    bands = list(data.bands) if data.bands is not None else _collection_bands(data.collection, shape[-3])
    if bands is None and isinstance(data.data, xr.DataArray) and "band" in data.data.coords:
        bands = [str(b) for b in data.data["band"].values]
    context = None
    try:
        from .embedding import input_context
        from .geo import Grid

        da = data.to_xarray()
        context = input_context(da, Grid.from_xarray(da))
    except XrembedError:
        pass  # no place on the ground: models that need one say so below
    rows = []
    for model in list_models():
        adapter = get_adapter(model)
        row = {"model": model, "compatible": False, "bands_used": None, "modality": None, "reason": None}
        if bands is None:
            row["reason"] = (
                f"the {shape[-3]} channels are not named: pass UserData(..., bands=[...]) so each model can pick its "
                "bands."
            )
            rows.append(row)
            continue
        first_error = None
        # The model's own band choice first, then every band of the data named with bands= (DOFA-like
        # models read any bands with known wavelengths).
        attempts = [(m, None) for m in dict.fromkeys(type(adapter).accepted_modalities)] + [(None, bands)]
        for modality, chosen in attempts:
            try:
                plan = adapter.plan_inputs(bands, bands=chosen, modality=modality, context=context)
            except XrembedError as err:
                first_error = first_error or err
                continue
            row.update(compatible=True, bands_used=list(plan.bands), modality=plan.option("modality", modality))
            if chosen is not None:
                row["embed_kwargs"] = {"bands": list(chosen)}
            break
        if not row["compatible"]:
            row["reason"] = f"{type(first_error).__name__}: {first_error}"
        rows.append(row)
    return rows


def inspect_provider_patch(
    *,
    spatial: SpatialSpec,
    temporal: TemporalSpec | None = None,
    sensor: SensorSpec,
    backend: str = "gee",
    name: str = "gee_patch",
    value_range: tuple[float, float] | None = None,
    return_array: bool = False,
    source: Any = None,
    ee_init_kwargs: Mapping[str, Any] | None = None,
) -> dict:
    """Fetch ``sensor``'s bands over ``spatial`` and report on them, without a model (rs-embed's
    ``inspect_provider_patch``; ``inspect_gee_patch`` is the same function).

    ``backend="gee"`` reads Earth Engine; ``backend="local"`` (or ``"auto"`` with ``source=``) reads a raster.
    Returns ``ok``, ``issues`` (sentences naming the fix), ``input`` (shape, dims, bands, CRS, transform,
    bounds, NaN fraction, per-band min/max/mean/std) and, with ``return_array=True``, ``array``: the
    ``(band, [time,] y, x)`` numpy patch. Missing pixels are NaN (never ``fill_value``).

    Examples
    --------
    >>> s2 = xrembed.SensorSpec("COPERNICUS/S2_SR_HARMONIZED", ("B4", "B3", "B2"))     # doctest: +SKIP
    >>> xrembed.inspect_gee_patch(spatial=xrembed.PointBuffer(-9.5, 25.0, 320),        # doctest: +SKIP
    ...                           temporal=xrembed.TemporalSpec.range("2022-06-01", "2022-09-01"), sensor=s2)["ok"]
    True
    """
    from .catalog import open_gee
    from .geo import Grid

    check_spatial(spatial)
    if not isinstance(sensor, SensorSpec):
        raise SpecError(f"sensor must be a SensorSpec(collection, bands, ...), got {type(sensor).__name__}.")
    if backend not in ("gee", "local", "auto"):
        raise OptionError(f"backend={backend!r}: inspect_provider_patch reads 'gee' or 'local' (with source=).")
    if backend == "local" and source is None:
        raise OptionError("backend='local' needs source= (a raster file or folder).")
    if temporal is not None and not isinstance(temporal, TemporalSpec):
        raise SpecError(f"temporal must be a TemporalSpec, got {type(temporal).__name__}.")
    if source is None:
        obj = open_gee(sensor, spatial=spatial, temporal=temporal, ee_init_kwargs=ee_init_kwargs)
    else:
        from .requests import crop_to
        from .sources.raster import open_raster

        obj = crop_to(open_raster(source, bands=list(sensor.bands), resolution=sensor.scale_m), spatial)
    da = obj.to_dataarray("band") if isinstance(obj, xr.Dataset) else obj
    if "band" in da.dims:
        da = da.transpose("band", ...)
    grid = Grid.from_xarray(obj)
    values = np.asarray(da.values, dtype=np.float64)
    band_names = [str(b) for b in da["band"].values] if "band" in da.coords else list(sensor.bands)
    per_band = values.reshape(values.shape[0], -1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN bands
        stats = {
            b: {"min": float(np.nanmin(v)), "max": float(np.nanmax(v)), "mean": float(np.nanmean(v)),
                "std": float(np.nanstd(v)), "nan_fraction": float(np.isnan(v).mean())}
            for b, v in zip(band_names, per_band)
        }
    issues = []
    if np.isnan(values).all():
        issues.append("every pixel is missing: widen temporal= or relax the sensor's cloud filter (cloudy_pct=).")
    else:
        empty = [b for b, s in stats.items() if s["nan_fraction"] == 1.0]
        if empty:
            issues.append(f"bands {empty} have no valid pixel: check the band names against the collection.")
        constant = [b for b, s in stats.items() if s["std"] == 0.0]
        if constant:
            issues.append(f"bands {constant} are constant over the patch: check the ROI and the collection.")
    if value_range is not None:
        lo, hi = value_range
        outside = [b for b, s in stats.items() if s["min"] < lo or s["max"] > hi]
        if outside:
            issues.append(f"bands {outside} fall outside value_range={tuple(value_range)}.")
    report = {
        "name": name, "backend": "local" if source is not None else "gee", "spatial": _spec_dict(spatial),
        "temporal": _spec_dict(temporal), "sensor": _spec_dict(sensor), "ok": not issues, "issues": issues,
        "input": {
            "shape": list(values.shape), "dims": [str(d) for d in da.dims], "bands": band_names,
            "dtype": str(da.dtype), "crs": grid.crs.to_string(), "transform": list(grid.transform)[:6],
            "bounds": list(grid.bounds), "nan_fraction": float(np.isnan(values).mean()), "band_stats": stats,
        },
    }
    if return_array:
        report["array"] = values
    return report


#: rs-embed's older name for :func:`inspect_provider_patch`.
inspect_gee_patch = inspect_provider_patch


def reset_runtime() -> dict[str, int]:
    """Forget the models this process has loaded (rs-embed's ``reset_runtime``); returns what was cleared.

    The next embedding loads its model again (from the local weights cache; nothing is downloaded twice).

    Examples
    --------
    >>> import xrembed
    >>> xrembed.reset_runtime()["models"] >= 0
    True
    """
    from . import engine

    count = engine.load_count()
    engine.clear_runtimes()
    return {"models": count}
