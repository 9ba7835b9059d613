"""``embed()``: validate the request from metadata, then build the (lazy or eager) computation.

Everything that can be known without pixels is checked here, before any graph exists: dimensions, CRS,
band names, wavelengths, model/variant/option names, the weights file or hub access. Pixels are read
only when the result is computed (or at once for numpy-backed input, the eager path).

Input contract (the refusals ``embed()`` raises before any pixel is read)
-------------------------------------------------------------------------
* dims: no ``y``/``x`` (or ``lat``/``lon``), or a spatial dim of length 0 -> ``SpatialDimensionError``;
  ``time`` (or any other dim) of length 0 -> ``OptionError``; no bands -> ``BandMismatchError``.
* bands: a wanted band missing, named twice in the input (``B4`` and ``B04`` count as one name) or listed
  twice in ``bands=`` -> ``BandMismatchError``.
* dtypes (each picked variable of a Dataset): see :mod:`xrembed.models.checks` -> ``DTypeError``.
* ``wavelengths=``: not numbers, wrong count, not positive, or ``>= 100`` (nanometres) -> ``WavelengthError``.
* ``nodata=``: a number (every band), one number or ``None`` per input band (input order), or a mapping
  ``{band: value}`` (other bands keep what the input declares); anything else -> ``OptionError``. Without
  it, each band's ``_FillValue``/``nodata`` attribute (or ``rio.nodata``) is its nodata. A pixel is invalid
  when any band is NaN or equals its band's nodata.
* ``device=``: ``"auto"``, ``"cpu"``, ``"cuda[:N]"`` (present), ``"mps"`` (present) or a ``torch.device``;
  ``batch_size``/``tiles_per_chunk``: positive integers; ``precision``: ``fp32``/``bf16``/``fp16``/``int8`` -> ``OptionError``.

Value checks need pixels and run per block when the graph computes (``InputRangeError``); they look at
robust percentiles of the valid values (see :mod:`xrembed.models.checks`).
"""

from __future__ import annotations

import math
import numbers
import warnings
from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Unpack

import numpy as np
import xarray as xr

from . import engine, tiling
from .bands import canonical_band_name, canonical_band_names, find_bands
from .errors import BandMismatchError, OptionError, SlowPrecisionWarning, SpatialDimensionError, user_stacklevel
from .geo import Grid, assign_grid, grid_provenance, metres_per_unit, spatial_dims, with_nan_nodata
from .models.base import InputContext
from .models.checks import check_dtype
from .models.registry import get_adapter
from .options import INPUT_PREPS, OUTPUTS, PRECISIONS, SPACES, EmbedKwargs, EmbedOptions, check_pooling, choice, positive_int
from .models.weights import resolve_weights

BAND_DIM = "band"
TIME_DIM = "time"
#: ``input_prep="auto"`` resizes a pooled request when the raster fits in this many tiles per side.
AUTO_RESIZE_MAX_TILES = 4


def embed(obj: xr.DataArray | xr.Dataset, model: str, **options: Unpack[EmbedKwargs]) -> xr.DataArray:
    """Embed a georeferenced raster with a foundation model. See :meth:`RSEmbedAccessor.embed`."""
    return embed_with(obj, model, EmbedOptions.from_kwargs(options))


def embed_with(obj: xr.DataArray | xr.Dataset, model: str, opts: EmbedOptions) -> xr.DataArray:
    """:func:`embed` with its keywords already gathered into an :class:`~xrembed.options.EmbedOptions`."""
    from .sources.precomputed import embed_product, is_product

    if is_product(model):  # the model keywords go along, to be refused unless at their defaults
        return embed_product(
            obj, model, temporal=opts.temporal, source=opts.source, patch_size=opts.patch_size, like=opts.like,
            **opts.model_keywords(),
        )
    if opts.product_keywords_given():
        raise OptionError(
            "temporal=, source=, patch_size= and like= apply to precomputed products (tessera, gse, "
            f"copernicus_embed); {model!r} embeds the pixels it is given."
        )
    tiles_per_chunk = positive_int("tiles_per_chunk", opts.tiles_per_chunk)
    # rs-embed's InputPrepSpec: a tile size the model cannot run is refused; a stride below the tile size
    # means overlapping tiles (xrembed.overlap), never silently abutting ones
    tiling.check_input_prep(model, opts.input_prep, opts.variant)
    stride = tiling.overlap_stride(model, opts.input_prep, opts.variant)
    if stride is not None:
        from .overlap import embed_overlapping

        tile_size = tiling.requested_tile_size(opts.input_prep, opts.tile_size)
        return embed_overlapping(
            obj, model, tile_stride=stride, **{**opts.model_keywords(), "input_prep": "tile", "tile_size": tile_size}
        )
    return _build(_prepare(obj, model, opts), tiles_per_chunk)


@dataclass(frozen=True)
class _Request:
    """A validated embedding request: everything decided from metadata, before any graph exists."""

    adapter: Any
    data: xr.DataArray  # (extra..., [time,] band, y, x), bands picked and ordered
    extra: tuple[str, ...]
    frames: tuple[str, ...]
    grid: Grid
    plan: Any
    #: One nodata value (or ``None``) per band of ``data``; ``None`` when no band has one.
    nodata: tuple[float | None, ...] | None
    output: str
    input_prep: str
    precision: str
    key: engine.ModelKey
    batch_size: int
    weights_label: str
    #: ``"tokens"`` or ``"joint"`` (each grid cell mapped into the image-text space, :mod:`xrembed.text.joint`).
    space: str = "tokens"
    #: Side in pixels of the tiles the model runs on (tile mode); ``None``: the variant's ``image_size``.
    tile_size: int | None = None

    @property
    def run_variant(self):
        """The variant with ``image_size`` = the tiles' size: what the tile path cuts and batches."""
        v = self.adapter.variant
        if self.input_prep != "tile" or self.tile_size in (None, v.image_size):
            return v
        from dataclasses import replace

        return replace(v, image_size=self.tile_size)

    def signature(self) -> tuple:
        """A hashable key: inputs with equal keys can be stacked and embedded in the same forward passes.

        It holds the model, the input plan (bands, wavelengths and any per-raster options such as
        Prithvi's location), the raster shape and pixel size, and the non-spatial coordinates; the
        position and CRS of the raster do not matter, since tiles are cut in pixel space.
        """
        extra_coords = tuple(
            (name, tuple(np.asarray(coord.values).ravel().tolist()))
            for name, coord in self.data.coords.items()
            if name not in ("y", "x", "spatial_ref", BAND_DIM)
        )
        res = tuple(round(abs(r), 9) for r in self.grid.resolution)
        return (
            self.key, self.plan, self.nodata, self.output, self.input_prep, self.tile_size, self.grid.shape, res,
            tuple(self.data.dims), str(self.data.dtype), extra_coords,
        )


def _prepare(obj, model, opts: EmbedOptions, *, resolve: bool = True, weights_source=None) -> _Request:
    """Validate a request from metadata. ``resolve=False`` skips locating the weights (for inspection);
    ``weights_source`` reuses weights already resolved (once for a batch of rasters)."""
    output, input_prep, precision, batch_size = opts.output, opts.input_prep, opts.precision, opts.batch_size
    check_pooling(output)
    output = choice("output", getattr(output, "mode", output), OUTPUTS)
    input_prep = choice("input_prep", getattr(input_prep, "mode", input_prep), INPUT_PREPS)
    precision = choice("precision", precision, PRECISIONS)
    adapter = get_adapter(model, opts.variant)
    v = adapter.variant
    space = choice("space", opts.space, SPACES)
    if space == "joint":  # only vision-language models have a joint space: refused at call time
        from .text.encode import text_adapter

        text_adapter(model, opts.variant)

    _check_not_empty(obj)
    from .geo import north_up

    obj = north_up(obj)  # south-up / east-to-west inputs are flipped lazily: output grids are north-up
    y_dim, x_dim = spatial_dims(obj)
    grid = Grid.from_xarray(obj)
    context = input_context(obj, grid)
    data, plan, nodata = _select_bands(obj, adapter, opts.bands, opts.wavelengths, opts.modality, opts.nodata, context)
    data = data.rename({y_dim: "y", x_dim: "x"}) if (y_dim, x_dim) != ("y", "x") else data
    extra = [d for d in data.dims if d not in (BAND_DIM, "y", "x")]
    # Temporal models read the whole series as one input: time goes into the channels, frame-major.
    frames = [TIME_DIM] if adapter.temporal and TIME_DIM in extra else []
    extra = [d for d in extra if d not in frames]
    data = data.transpose(*extra, *frames, BAND_DIM, "y", "x")

    device = _resolve_device(opts.device)
    if precision == "fp16" and not device.startswith("cuda"):
        raise OptionError("precision='fp16' needs a CUDA device; on CPU use precision='bf16' or 'fp32'.")
    if precision == "int8" and device != "cpu":
        raise OptionError(
            f"precision='int8' (dynamic quantisation of the Linear layers) runs on CPU only, not on {device}; "
            "use precision='fp16' or 'bf16' there, or device='cpu'."
        )
    slow = engine.slow_precision_note(precision, device)
    if slow is not None:
        warnings.warn(slow, SlowPrecisionWarning, stacklevel=user_stacklevel())
    if batch_size is None:
        batch_size = 32 if device.startswith("cuda") else 8
    batch_size = positive_int("batch_size", batch_size)
    # A tile size other than the model's runs it there (position embedding resampled, where the family allows
    # it); asking for one means tiles.
    tile_size = tiling.run_tile_size(adapter, opts.input_prep, opts.tile_size)
    if tile_size != v.image_size and input_prep == "resize":
        raise OptionError(
            f"tile_size={tile_size} sets the size of tiles; input_prep='resize' runs {model!r} on one image of its "
            f"own {v.image_size} px. Use input_prep='tile' with tile_size=, or drop tile_size for resize."
        )
    if input_prep == "auto":
        fits = max(grid.shape) <= AUTO_RESIZE_MAX_TILES * v.image_size
        input_prep = "resize" if output == "pooled" and fits and tile_size == v.image_size else "tile"

    if resolve:
        source = weights_source if weights_source is not None else resolve_weights(adapter, opts.weights)
        path, label = source.path, source.label
    else:
        path, label = None, "unresolved"
    key = engine.ModelKey(adapter.model_id, v.name, engine.adapter_path(adapter), path, label, device, precision)
    return _Request(
        adapter=adapter, data=data, extra=tuple(extra), frames=tuple(frames), grid=grid, plan=plan, nodata=nodata,
        output=output, input_prep=input_prep, precision=precision, key=key, batch_size=batch_size,
        weights_label=label, space=space, tile_size=tile_size if input_prep == "tile" else None,
    )


def _build(req: _Request, tiles_per_chunk: int) -> xr.DataArray:
    return _wrap(req, _compute(req, _as_array(req.data), tiles_per_chunk))


def _compute(req: _Request, array, tiles_per_chunk: int):
    """Embeddings of ``array`` (lazy for dask input, at once for numpy): the request's data, or a stack of
    rasters that share its :meth:`_Request.signature` along extra leading axes."""
    v, output = req.run_variant, req.output  # tile mode: image_size is the tiles' size
    common = {"key": req.key, "plan": req.plan, "batch_size": req.batch_size, "nodata": req.nodata}
    if req.frames:
        if req.nodata is not None:  # channels are frame-major: each frame repeats the bands' nodata
            common["nodata"] = req.nodata * array.shape[-4]
        array = _fold_time_into_channels(array)
    if req.input_prep == "tile":
        return _tile_path(array, req.grid, v, common, output, tiles_per_chunk, req.adapter.pooled_dim)
    return _resize_path(array, v, common, output, req.adapter.pooled_dim)


def _wrap(req: _Request, result) -> xr.DataArray:
    """The georeferenced DataArray around computed (or lazy) embeddings of ``req``."""
    adapter, v, data, grid, output = req.adapter, req.adapter.variant, req.data, req.grid, req.output
    extra = list(req.extra)
    out_grid = grid.zoom_out(v.patch_size) if req.input_prep == "tile" else grid.resized(v.image_size, v.patch_size)
    # Coordinates along the kept dims (time, ...); the input's grid mapping describes the input grid only.
    extra_coords = {
        name: coord
        for name, coord in data.coords.items()
        if name not in ("y", "x", "spatial_ref") and set(coord.dims) <= set(extra)
    }
    dims = (*extra, "embedding") + (("y", "x") if output == "grid" else ())
    out = xr.DataArray(result, dims=dims, coords=extra_coords, name="embeddings")
    # Pooled vectors may live in another space than the grid tokens (CLIP: proj 768 -> 512).
    out = out.assign_coords(embedding=np.arange(v.embed_dim if output == "grid" else adapter.pooled_dim))
    if output == "grid":
        out = assign_grid(out, out_grid)
    out.attrs = _attrs(adapter, req.weights_label, req.plan, req.input_prep, req.precision, output, grid, out_grid)
    if req.run_variant.image_size != v.image_size:  # tiles of another size: a departure, recorded
        out.attrs["image_size"] = out.attrs["tile_size"] = req.run_variant.image_size
        out.attrs["pretraining_image_size"] = v.image_size
        out.attrs["tile_size_note"] = str(adapter.other_tile_sizes)
    if output == "grid":

        out = with_nan_nodata(out)  # NaN where rio.nodata reads it (encoding), as for every grid
    if req.space == "joint":
        from .text.joint import to_joint

        out = to_joint(out, req.key, req.plan, adapter.pooled_dim)
    return out


def input_context(obj: xr.DataArray | xr.Dataset, grid: Grid) -> InputContext:
    """Pixel-free facts about the input for models that need them (resolution, centre, dates)."""
    from pyproj import Transformer

    left, bottom, right, top = grid.bounds
    to_lonlat = Transformer.from_crs(grid.crs, "EPSG:4326", always_xy=True)
    lon, lat = to_lonlat.transform((left + right) / 2, (bottom + top) / 2)
    resolution = abs(grid.resolution[0]) * metres_per_unit(grid.crs, lat)
    times = None
    if TIME_DIM in obj.dims and TIME_DIM in obj.coords:
        values = np.asarray(obj[TIME_DIM].values)
        if np.issubdtype(values.dtype, np.datetime64):
            times = tuple(str(t)[:10] for t in values.astype("datetime64[D]"))
    return InputContext(resolution_m=float(resolution), center_lonlat=(float(lon), float(lat)), times=times)


def _fold_time_into_channels(array):
    """``(..., T, C, H, W)`` -> ``(..., T * C, H, W)`` (frame-major), for temporal models."""
    if _is_dask(array):
        nd = array.ndim
        array = array.rechunk({nd - 4: -1, nd - 3: -1})
    return array.reshape(array.shape[:-4] + (array.shape[-4] * array.shape[-3],) + array.shape[-2:])


def _resolve_device(device) -> str:
    """A torch device string xrembed can run on: ``cpu``, ``cuda[:N]`` or ``mps``, present on this machine.

    With a ``dask.distributed`` client active the graph runs on the workers: a CUDA device this client
    lacks (a CPU-only laptop driving GPU workers) is not refused here but where the model runs, on each
    worker, which resolves ``cuda`` to its own GPU (:func:`xrembed.engine.check_device`).
    """
    import torch

    if device is None or (isinstance(device, str) and device.lower() == "auto"):
        return "cuda" if torch.cuda.is_available() else "cpu"
    usage = "use 'auto', 'cpu' or 'cuda' (or 'cuda:N')"
    if not isinstance(device, (str, torch.device)):
        raise OptionError(f"device={device!r} is not a device name; {usage}.")
    try:
        resolved = torch.device(device)
    except (RuntimeError, TypeError, ValueError) as err:
        raise OptionError(f"device={device!r} is not a torch device; {usage}.") from err
    if resolved.type not in ("cpu", "cuda", "mps"):
        raise OptionError(f"device={device!r}: xrembed runs on CPU, CUDA or MPS devices; {usage}.")
    if resolved.type == "cuda" and not torch.cuda.is_available() and engine.client_elsewhere():
        return str(resolved)  # checked on the worker that runs the model
    return engine.check_device(resolved)


def _check_not_empty(obj) -> None:
    """Refuse inputs with no pixels, frames or bands (from sizes alone), naming the empty dimension."""
    y_dim, x_dim = spatial_dims(obj)
    empty = [d for d in (y_dim, x_dim) if obj.sizes[d] == 0]
    if empty:
        raise SpatialDimensionError(
            f"the input is empty: {', '.join(f'{d!r} has 0 pixels' for d in empty)} (sizes {dict(obj.sizes)}). "
            "Check the window or ROI you selected; it may lie outside the raster."
        )
    if obj.sizes.get(BAND_DIM) == 0:
        raise BandMismatchError("the input has a 'band' dimension of length 0: there are no bands to embed.")
    zero = [d for d, n in obj.sizes.items() if n == 0]
    if zero:
        hint = " (e.g. a time filter that matched no scene)" if TIME_DIM in zero else ""
        raise OptionError(
            f"the input has no values along {zero} (length 0){hint}; select at least one element, e.g. "
            f"widen the {zero[0]!r} selection."
        )


def _band_names(data: xr.DataArray) -> list[str] | None:
    if BAND_DIM in data.coords:
        values = list(data[BAND_DIM].values)
        if values and all(isinstance(v, str) for v in values):
            return values
    long_name = data.attrs.get("long_name")  # rioxarray keeps GeoTIFF band descriptions here
    if isinstance(long_name, (list, tuple)) and len(long_name) == data.sizes[BAND_DIM]:
        if all(isinstance(v, str) and v for v in long_name):
            return list(long_name)
    return None


def _select_bands(obj, adapter, bands, wavelengths, modality, nodata, context=None):
    """Pick and order the model's bands; return ``(DataArray with a band dim, plan, nodata per band)``.

    Dtypes and nodata are resolved per picked band (for a Dataset: per variable).
    """
    if isinstance(obj, xr.Dataset):
        y_dim, x_dim = spatial_dims(obj)
        variables = [n for n, var in obj.data_vars.items() if y_dim in var.dims and x_dim in var.dims]
        if not variables:
            raise BandMismatchError("the Dataset has no variable with both spatial dimensions; nothing to embed.")
        stacked = [n for n in variables if BAND_DIM in obj[n].dims]
        if len(variables) == 1 and stacked:
            # `open_dataset(engine="rasterio")` gives one `band_data` variable with a band dimension.
            return _select_bands(obj[variables[0]], adapter, bands, wavelengths, modality, nodata, context)
        names = [_variable_band_name(n, obj[n]) for n in variables]
        user = _user_nodata(nodata, names, len(names))
        plan = _plan(adapter, names, bands, wavelengths, modality, context)
        picked = _indices(names, plan.bands)
        chosen = [variables[i] for i in picked]
        for name in chosen:
            check_dtype(obj[name].dtype, plan.option("scale"), adapter.model_id, name=str(name))
        declared = [_declared_nodata(obj[n], 1, n)[0] for n in chosen]
        values = _merge_nodata(user, declared, picked, names)
        data = obj[chosen].to_dataarray(BAND_DIM).assign_coords({BAND_DIM: list(plan.bands)})
        return data, plan, values

    if BAND_DIM not in obj.dims:
        if bands is not None and len(bands) == 1:
            obj = obj.expand_dims({BAND_DIM: 1})
        else:
            raise SpatialDimensionError(
                f"the DataArray has no {BAND_DIM!r} dimension (dims {tuple(obj.dims)}). Put the channels on a "
                "dimension named 'band' (e.g. `da.rename({'channel': 'band'})`), or pass a Dataset "
                "with one variable per band."
            )
    count = obj.sizes[BAND_DIM]
    names = _band_names(obj)
    if names is None:
        if bands is not None:
            if isinstance(bands, str) or len(bands) != count:
                raise BandMismatchError(
                    f"bands= names {1 if isinstance(bands, str) else len(bands)} bands but the input has {count}; "
                    "the input's bands are unnamed, so bands= must name every one of them, in order."
                )
            names, bands = list(bands), None
        elif wavelengths is not None:
            names = [f"C{i + 1}" for i in range(count)]
    user = _user_nodata(nodata, names, count)
    plan = _plan(adapter, names, bands, wavelengths, modality, context)
    check_dtype(obj.dtype, plan.option("scale"), adapter.model_id)
    picked = _indices(names, plan.bands) if names is not None else list(range(count))
    declared = _declared_nodata(obj, count)
    values = _merge_nodata(user, [declared[i] for i in picked], picked, names)
    data = obj.isel({BAND_DIM: picked}) if names is not None else obj
    return data.assign_coords({BAND_DIM: list(plan.bands)}), plan, values


def _user_nodata(nodata, names: Sequence[str] | None, count: int) -> list | Mapping | None:
    """Validate ``nodata=``: ``None``, one value per input band (a list), or ``{canonical band: value}``."""
    if nodata is None:
        return None
    usage = (
        "pass a number (every band), one number or None per input band in the input's order, or a mapping "
        "{band: number}"
    )
    if isinstance(nodata, Mapping):
        if names is None:
            raise OptionError(
                f"nodata={nodata!r} names bands but the input's bands are unnamed; pass a number or one value per band."
            )
        known = canonical_band_names(names)
        mapped = {}
        for band, value in nodata.items():
            if canonical_band_name(band) not in known:
                raise OptionError(f"nodata= names band {band!r}, which is not in the input (it has {list(names)}).")
            mapped[canonical_band_name(band)] = _nodata_number(value, usage)
        return mapped
    if isinstance(nodata, (str, bytes)) or not np.iterable(nodata):
        return [_nodata_number(nodata, usage, allow_none=False)] * count
    values = [_nodata_number(v, usage) for v in nodata]
    if len(values) != count:
        raise OptionError(f"nodata= has {len(values)} values but the input has {count} bands; {usage}.")
    return values


def _nodata_number(value, usage: str, allow_none: bool = True) -> float | None:
    """``value`` as a float nodata (``None`` for none or NaN, which is invalid anyway)."""
    if value is None and allow_none:
        return None
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
        raise OptionError(f"nodata={value!r} is not a number; {usage}.")
    value = float(value)
    return None if math.isnan(value) else value


def _merge_nodata(user, declared: list, picked: list[int], names) -> tuple[float | None, ...] | None:
    """Nodata of each picked band: the user's (list, or mapping by band name), else what the input declares."""
    if isinstance(user, list):
        values = [user[i] for i in picked]
    elif isinstance(user, Mapping):
        picked_names = [canonical_band_name(names[i]) for i in picked]
        values = [user.get(name, value) for name, value in zip(picked_names, declared)]
    else:
        values = declared
    values = tuple(None if v is None or math.isnan(v) else float(v) for v in values)
    return values if any(v is not None for v in values) else None


def _variable_band_name(name: Hashable, var: xr.DataArray) -> str:
    """A variable's band name: its own name, or its description for rasterio's ``band_1``-style names."""
    description = var.attrs.get("long_name")
    if str(name).startswith("band_") and isinstance(description, str) and description:
        return description
    return str(name)


def _plan(adapter, names, bands, wavelengths, modality, context=None):
    if isinstance(bands, str):
        raise BandMismatchError(f"bands= takes a list of band names, e.g. bands=[{bands!r}], not the string {bands!r}.")
    if bands is not None:
        canonical = canonical_band_names(bands)
        twice = sorted({b for b in canonical if canonical.count(b) > 1})
        if twice:
            raise BandMismatchError(f"bands= lists {twice} more than once; list each band once.")
    if bands is not None and names is not None:
        missing = [b for b, c in zip(bands, canonical_band_names(bands)) if c not in canonical_band_names(names)]
        if missing:
            raise BandMismatchError(f"bands {missing} are not in the input, which has bands {list(names)}.")
    return adapter.plan_inputs(names, bands=bands, wavelengths=wavelengths, modality=modality, context=context)


def _indices(names: Sequence[Hashable], wanted: Sequence[str]) -> list[int]:
    try:
        return find_bands(names, wanted)
    except ValueError as err:  # a wanted band named twice in the input
        raise BandMismatchError(str(err)) from None
    except KeyError as err:
        raise BandMismatchError(
            f"the input lacks bands {err.args[0]} (it has {list(names)}); add them or choose others with bands=[...]."
        ) from None


def _declared_nodata(data: xr.DataArray, count: int, name: Hashable | None = None) -> list[float | None]:
    """The nodata ``data`` declares for each of its ``count`` bands (``_FillValue``/``nodata`` attribute or
    encoding, or ``rio.nodata``); a per-band list (rasterio's ``nodatavals`` style) is kept per band."""
    candidates = (data.attrs.get("_FillValue"), data.attrs.get("nodata"), data.encoding.get("_FillValue"))
    candidate = next((c for c in candidates if c is not None), None)
    if candidate is None:
        try:
            candidate = data.rio.nodata
        except Exception:
            candidate = None
    if candidate is None:
        return [None] * count
    try:
        values = np.asarray(candidate, dtype=np.float64).ravel()
    except (TypeError, ValueError):
        where = f"variable {str(name)!r}" if name is not None else "the input"
        raise OptionError(
            f"{where} declares nodata {candidate!r}, which is not a number; pass nodata= explicitly "
            "(a number, or None per band) or fix the attribute."
        ) from None
    if values.size == 0:
        return [None] * count
    per_band = values.tolist() if values.size == count else [values[0]] * count
    return [None if math.isnan(v) else float(v) for v in per_band]


def _as_array(data: xr.DataArray):
    """The dask array behind ``data``; lazily-indexed backend data is wrapped in dask, numpy stays numpy."""
    if data.chunks is not None:
        return data.data
    if isinstance(data.variable._data, np.ndarray):
        return data.values
    # Lazily-indexed backend data (a file opened without chunks): wrap in dask, never read it whole.
    from .sources.raster import DEFAULT_CHUNK

    return data.chunk({"y": DEFAULT_CHUNK, "x": DEFAULT_CHUNK}).data


def _is_dask(array) -> bool:
    return hasattr(array, "dask")


def _tile_path(array, grid: Grid, variant, common: dict, output: str, tiles_per_chunk: int, pooled_dim: int):
    patch, size = variant.patch_size, variant.image_size
    block_kwargs = dict(patch_size=patch, image_size=size, **common)
    if not _is_dask(array):
        tokens = engine.tile_grid_block(array, **block_kwargs)
        if output == "grid":
            return tokens
        counts = engine.count_block(array, patch_size=patch, nodata=common["nodata"])
        return _pooled_from_tokens(tokens, counts, common, pooled_dim)

    import dask.array as dsa

    height, width = grid.shape
    token_rows = tiling.chunk_tokens(tiling.token_count(height, patch), variant.tile_tokens, tiles_per_chunk)
    token_cols = tiling.chunk_tokens(tiling.token_count(width, patch), variant.tile_tokens, tiles_per_chunk)
    nd = array.ndim
    array = array.rechunk(
        {nd - 3: -1, nd - 2: tiling.pixel_chunks(token_rows, height, patch), nd - 1: tiling.pixel_chunks(token_cols, width, patch)}
    )
    meta = np.empty((0,) * nd, dtype=np.float32)
    tokens = dsa.map_blocks(
        engine.tile_grid_block,
        array,
        chunks=array.chunks[:-3] + ((variant.embed_dim,), token_rows, token_cols),
        dtype=np.float32,
        meta=meta,
        token=f"embed-{common['key'].model_id}",
        **block_kwargs,
    )
    if output == "grid":
        # A merged trailing chunk is larger than the others, which Zarr cannot store: even the chunks out
        # (only the last two chunks of each axis exchange data, a few small blocks).
        step = variant.tile_tokens * tiles_per_chunk
        return tokens.rechunk({nd - 2: step, nd - 1: step})
    counts = dsa.map_blocks(
        engine.count_block,
        array,
        chunks=array.chunks[:-3] + ((1,), token_rows, token_cols),
        dtype=np.float32,
        meta=meta,
        patch_size=patch,
        nodata=common["nodata"],
    )
    return _pooled_from_tokens(tokens, counts, common, pooled_dim)


def _pooled_from_tokens(tokens, counts, common: dict, pooled_dim: int):
    """Valid-area-weighted mean of grid tokens, then the model's pooling head (lazy for dask input)."""
    weighted = np.where(counts > 0, tokens, 0.0) * counts
    total = counts.sum(axis=(-2, -1))
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = weighted.sum(axis=(-2, -1)) / total
    if not _is_dask(mean):
        return engine.pool_head_block(mean, key=common["key"], plan=common["plan"])
    mean = mean.rechunk({mean.ndim - 1: -1})
    return mean.map_blocks(
        engine.pool_head_block, dtype=np.float32, meta=np.empty((0,) * mean.ndim, np.float32),
        chunks=mean.chunks[:-1] + ((pooled_dim,),), key=common["key"], plan=common["plan"],
    )


def _resize_path(array, variant, common: dict, output: str, pooled_dim: int):
    kwargs = dict(image_size=variant.image_size, patch_size=variant.patch_size, what=output, **common)
    if not _is_dask(array):
        return engine.resize_block(array, **kwargs)
    import dask.array as dsa

    nd = array.ndim
    array = array.rechunk({nd - 3: -1, nd - 2: -1, nd - 1: -1})
    meta = np.empty((0,) * (nd if output == "grid" else nd - 2), dtype=np.float32)
    if output == "grid":
        k = variant.tile_tokens
        chunks = array.chunks[:-3] + ((variant.embed_dim,), (k,), (k,))
        return dsa.map_blocks(engine.resize_block, array, chunks=chunks, dtype=np.float32, meta=meta, **kwargs)
    chunks = array.chunks[:-3] + ((pooled_dim,),)
    return dsa.map_blocks(
        engine.resize_block, array, drop_axis=[nd - 2, nd - 1], chunks=chunks, dtype=np.float32, meta=meta, **kwargs
    )


def _attrs(adapter, weights_label, plan, input_prep, precision, output, grid: Grid, out_grid: Grid) -> dict:
    from ._version import __version__

    v = adapter.variant
    attrs = {
        "long_name": f"{adapter.model_id} embeddings",
        "model": adapter.model_id,
        "variant": v.name,
        "weights": weights_label,
        "patch_size": v.patch_size,
        "image_size": v.image_size,
        "input_prep": input_prep,
        "precision": precision,
        "output": output,
        "bands": list(plan.bands),
        "input_crs": grid.crs.to_string(),
        "input_bounds": list(grid.bounds),
        "xrembed_version": __version__,
    }
    # Scalar choices the adapter derived (ScaleMAE's GSD ratio, TerraFM's stem, Prithvi's frames...).
    for name, value in plan.options:
        if isinstance(value, (bool, int, float, str)) and not isinstance(value, np.generic):
            attrs.setdefault(f"plan_{name}", value if not isinstance(value, bool) else str(value))
    waves = plan.option("wavelengths")
    if waves is not None:
        attrs["wavelengths_um"] = [float(w) for w in waves]
    if output == "grid":

        attrs["cell_size"] = [float(abs(out_grid.resolution[0])), float(abs(out_grid.resolution[1]))]
        attrs.update(grid_provenance(out_grid))  # gsd (metres), as geoemb:gsd
    return attrs
