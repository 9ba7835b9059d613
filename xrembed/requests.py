"""Turning a request for one model over many ROIs into inputs and ``embed()`` keywords.

Shared by the rs-embed-style functional API (:mod:`xrembed.api`) and the exporter (:mod:`xrembed.export`),
which sits below the public functions: both build a :class:`SourceRequest` (which backend, sensor, window)
and open each ROI through it, and both map rs-embed's ``OutputSpec``/``InputPrepSpec`` to ``embed()``
keywords with :func:`embed_kwargs`.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import xarray as xr

from . import batch
from .catalog import default_sensor, open_gee
from .errors import NoDataInBoundsError, OptionError, SpecError
from .geo import Grid, PixelWindow, pixel_centres, spatial_dims
from .options import check_pooling
from .specs import BBox, FetchSpec, InputPrepSpec, OutputSpec, PointBuffer, SensorSpec, TemporalSpec

BACKENDS = ("auto", "gee", "stac", "local", "tensor")
#: rs-embed's window when no ``temporal`` is given (with a warning, as there).
DEFAULT_TEMPORAL = TemporalSpec.range("2022-06-01", "2022-09-01")
SpatialSpec = BBox | PointBuffer
POOLED = OutputSpec.pooled()  # rs-embed's default output


# ---------------------------------------------------------------------------------------------------
# Sources


def resolve_backend(model: str, backend: str, source: Any) -> str:
    """The source kind for ``backend`` (``"auto"`` picks by ``source=``)."""
    from .sources.precomputed import is_product

    if backend not in BACKENDS:
        raise OptionError(f"backend={backend!r} is not one of {list(BACKENDS)}.")
    if is_product(model):
        return "product"
    if backend == "tensor":
        raise OptionError(
            "backend='tensor' embeds arrays you pass in: use get_embedding_from_data(model, UserData(array, ...))."
        )
    if backend != "auto":
        if backend in ("local", "stac") and source is None:
            raise OptionError(f"backend={backend!r} needs source= (a raster path for 'local', STAC items for 'stac').")
        return backend
    if source is None:
        return "gee"
    if isinstance(source, (str, os.PathLike)) and not str(source).endswith(".json"):
        return "local"
    if isinstance(source, (list, tuple)) and source and all(isinstance(s, (str, os.PathLike)) for s in source):
        return "local" if not str(source[0]).endswith(".json") else "stac"
    return "stac"


@dataclass(frozen=True)
class SourceRequest:
    """Everything needed to open one model's input over any ROI (shared by batch items)."""

    model: str
    backend: str
    temporal: TemporalSpec | None = None
    sensor: SensorSpec | None = None
    fetch: FetchSpec | None = None
    modality: str | None = None
    source: Any = None
    ee_init_kwargs: Mapping[str, Any] | None = None

    def embed_defaults(self) -> dict:
        """``embed()`` keywords implied by the source: a ``SensorSpec``'s bands are the bands to embed."""
        return {"bands": list(self.sensor.bands)} if self.sensor is not None else {}

    def openers(self, spatials: Sequence[SpatialSpec]) -> list[Callable[[], xr.DataArray | xr.Dataset]]:
        """One callable per ROI opening its input lazily (pixels are read by the engine)."""
        for spatial in spatials:
            check_spatial(spatial)
        if self.backend == "gee":
            return [lambda s=s: _open_gee_roi(self, s) for s in spatials]
        if self.backend == "local":
            raster = _shared_raster(self)  # one open file for all ROIs; each reads its own window
            return [lambda s=s: crop_to(raster(), s) for s in spatials]
        if self.backend == "stac":
            return [lambda s=s: _open_stac_roi(self, s) for s in spatials]
        raise OptionError(f"backend {self.backend!r} does not open ROIs.")


def source_request(model, backend, *, temporal, sensor, fetch, modality, source, ee_init_kwargs) -> SourceRequest:
    backend = resolve_backend(model, backend, source)
    if sensor is not None and fetch is not None:
        raise SpecError("pass sensor= or fetch= (overrides on the model's default sensor), not both.")
    if temporal is not None and not isinstance(temporal, TemporalSpec):
        raise SpecError(f"temporal must be a TemporalSpec, got {type(temporal).__name__}.")
    if temporal is None and backend == "gee":
        warnings.warn(
            f"no temporal= given: using rs-embed's default window {DEFAULT_TEMPORAL.interval} (half-open); pass "
            "temporal=TemporalSpec.range(start, end) to choose.",
            UserWarning,
            stacklevel=3,
        )
        temporal = DEFAULT_TEMPORAL
    fill = fetch.fill_value if fetch is not None else (sensor.fill_value if sensor is not None else 0.0)
    if fill not in (None, 0.0):
        _ignored("fill_value", "missing pixels stay NaN and the output cells they cover are NaN")
    return SourceRequest(model, backend, temporal, sensor, fetch, modality, source, ee_init_kwargs)


def check_spatial(spatial) -> None:
    """Raise a clear :class:`SpecError` unless ``spatial`` is a ``BBox`` or ``PointBuffer``."""
    if not isinstance(spatial, (BBox, PointBuffer)):
        raise SpecError(f"spatial must be an xrembed BBox or PointBuffer, got {type(spatial).__name__}.")


def _open_gee_roi(req: SourceRequest, spatial):
    return open_gee(
        req.sensor if req.sensor is not None else req.model, spatial=spatial, temporal=req.temporal,
        modality=req.modality, fetch=req.fetch, ee_init_kwargs=req.ee_init_kwargs,
    )


def _shared_raster(req: SourceRequest) -> Callable[[], xr.DataArray]:
    """Open a local raster once, on first use, for all ROIs of a call (thread-safe)."""
    import threading

    from .sources.raster import open_raster

    scale = req.fetch.scale_m if req.fetch is not None else (req.sensor.scale_m if req.sensor is not None else None)
    bands = list(req.sensor.bands) if req.sensor is not None else None
    opened: list[xr.DataArray] = []
    lock = threading.Lock()

    def get() -> xr.DataArray:
        with lock:
            if not opened:
                opened.append(open_raster(req.source, bands=bands, resolution=scale))
        return opened[0]

    return get


def crop_to(da: xr.DataArray, spatial) -> xr.DataArray:
    """The window of a raster under ``spatial``, snapped outwards to whole pixels.

    A ``PointBuffer`` always gives the same number of pixels (``2 * buffer / pixel size``, rounded) on a
    projected raster, so equal ROIs stack into shared forward passes. A ROI that runs past the raster's
    edge is padded with NaN (lazily) to its full window, so the output grid covers the whole ROI and the
    cells outside the raster come out NaN; a ROI that misses the raster is a :class:`NoDataInBoundsError`.
    """
    grid = Grid.from_xarray(da)
    t = grid.transform
    crs = grid.crs
    if isinstance(spatial, PointBuffer) and crs.is_projected:
        from pyproj import Transformer

        cx, cy = Transformer.from_crs("EPSG:4326", crs, always_xy=True).transform(spatial.lon, spatial.lat)
        n_x = max(1, round(2 * spatial.buffer_m / abs(t.a)))
        n_y = max(1, round(2 * spatial.buffer_m / abs(t.e)))
        col0 = round((cx - t.c) / t.a - n_x / 2)
        row0 = round((cy - t.f) / t.e - n_y / 2)
        wanted = PixelWindow(row0, row0 + n_y, col0, col0 + n_x)
    else:
        wanted = grid.window(spatial.bounds_in(crs))
    inside = wanted.clipped(grid.shape)
    if inside.is_empty:
        raise NoDataInBoundsError(
            f"the ROI {spatial} does not overlap the raster (bounds {tuple(round(b, 3) for b in grid.bounds)} in "
            f"{crs.to_string()}); check the ROI's coordinates or the source= raster."
        )
    y_dim, x_dim = spatial_dims(da)
    rows, cols = inside.slices
    window = da.isel({y_dim: rows, x_dim: cols})
    pad = {
        y_dim: (inside.row0 - wanted.row0, wanted.row1 - inside.row1),
        x_dim: (inside.col0 - wanted.col0, wanted.col1 - inside.col1),
    }
    if not any(any(p) for p in pad.values()):
        return window
    return _pad_nan(window, pad, grid, wanted, y_dim, x_dim)


def _pad_nan(window: xr.DataArray, pad: dict, grid: Grid, wanted: PixelWindow, y_dim: str, x_dim: str) -> xr.DataArray:
    """``window`` padded with NaN out to the ``wanted`` window of ``grid`` (the full ROI; lazy for dask)."""
    if not np.issubdtype(window.dtype, np.floating):  # NaN marks the padding, never a zero
        window = window.astype("float32" if window.dtype.itemsize <= 2 else "float64")
    padded = window.pad(pad, mode="constant", constant_values=np.nan)
    # Centres counted from the parent grid's origin, as the unpadded pixels' own coordinates are.
    y, x = pixel_centres(grid.transform, wanted.shape, origin=(wanted.row0, wanted.col0))
    padded = padded.assign_coords({x_dim: (x_dim, x), y_dim: (y_dim, y)})
    padded.attrs = window.attrs
    if "spatial_ref" in padded.coords:
        padded = padded.rio.write_transform(grid[wanted].transform)
    return padded


def _open_stac_roi(req: SourceRequest, spatial):
    from .sources.stac import _as_items, open_stac

    items = _as_items(req.source)
    if req.temporal is not None:
        start, end = (np.datetime64(d) for d in req.temporal.interval)
        items = [i for i in items if i.datetime is None or start <= np.datetime64(i.datetime.replace(tzinfo=None)) < end]
        if not items:
            raise SpecError(f"no STAC item falls in {req.temporal.interval}; widen temporal= or pass other items.")
    sensor = req.sensor if req.sensor is not None else default_sensor(req.model, req.modality)
    scale = req.fetch.scale_m if req.fetch is not None and req.fetch.scale_m else sensor.scale_m
    return open_stac(items, bands=list(sensor.bands), spatial=spatial, resolution=scale)


# ---------------------------------------------------------------------------------------------------
# Embedding keywords and results


def embed_kwargs(model, output, input_prep, device, modality, model_kwargs) -> dict:
    """``.rsembed.embed`` keywords from rs-embed's arguments (``OutputSpec``, ``InputPrepSpec``, ...)."""
    batch.check_embed_keywords(model_kwargs, where="xrembed's embedding functions")  # a typo fails before any fetch
    output = OutputSpec(output) if isinstance(output, str) else output
    if not isinstance(output, OutputSpec):
        raise SpecError(f"output must be an OutputSpec (OutputSpec.pooled() / .grid()), got {output!r}.")
    check_pooling(output)  # here too, for products, which bypass the engine
    if output.grid_orientation != "north_up":
        _ignored("OutputSpec.grid_orientation='native'", "grids are always north-up, with their CRS and transform")
    if input_prep is None:
        input_prep = "tile"  # rs-embed's default since 0.2
    if isinstance(input_prep, InputPrepSpec):
        default = InputPrepSpec(input_prep.mode)
        changed = [f for f in ("max_tiles", "max_tiles_hard", "pad_edges", "tile_snap_frac")
                   if getattr(input_prep, f) != getattr(default, f)]
        if changed:
            _ignored(f"InputPrepSpec {changed}", "tiles lie on the patch lattice at native resolution, never snapped or padded")
    mode = input_prep.mode if isinstance(input_prep, InputPrepSpec) else input_prep
    kwargs = {"output": output, "input_prep": mode, "device": device, **model_kwargs}
    if getattr(input_prep, "tile_size", None) is not None and mode != "resize":  # tiles of that size
        kwargs.setdefault("tile_size", input_prep.tile_size)
    if modality is not None:
        kwargs["modality"] = modality
    return kwargs


def drop_single_time(result: xr.DataArray | None) -> xr.DataArray | None:
    """rs-embed's shapes: a one-step composite (Earth Engine's ``time`` of length 1) gives ``(D,)`` /
    ``(D, H, W)``; its date stays as a scalar ``time`` coordinate. Time series keep their ``time`` dim."""
    if result is not None and "time" in result.dims and result.sizes["time"] == 1:
        return result.squeeze("time")
    return result


def _ignored(what: str, why: str) -> None:
    warnings.warn(f"{what} has no effect in xrembed: {why}.", UserWarning, stacklevel=4)


def product_result(model, spatial, temporal, source, output) -> xr.DataArray:
    """A precomputed product over one ROI (lazy): its grid, or the mean of its valid vectors."""
    from .sources.precomputed import open_precomputed, pool_product, product_output

    mode = product_output(output)
    da = open_precomputed(model, spatial=spatial, temporal=temporal, source=source)
    return pool_product(da) if mode == "pooled" else da
