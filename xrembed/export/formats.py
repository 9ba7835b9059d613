"""Export file formats: where an export's files go, how each format is written, and how it reads back.

An export has *items* (regions of interest) with names (e.g. ``"p00000"``) and *models*, labels such as
``"dofa"``. A result is the ``xr.DataArray`` named ``"embeddings"`` that ``embed()`` returns: a grid
``(..., embedding, y, x)`` with ``y``/``x`` pixel-centre coordinates and a ``spatial_ref`` grid mapping, or a
pooled vector ``(..., embedding)``. Model labels may not contain ``"__"`` or ``"/"``; item names may not
contain ``"/"``.

Layout ``per_item(out_dir)``
----------------------------
zarr
    ``<out_dir>/<name>.zarr``, one group ``/<model>`` per model holding the Dataset ``{"embeddings": da}``.
    Written by the export runner; read here.
netcdf
    ``<out_dir>/<name>.nc``, NetCDF4 through h5netcdf, one group ``/<model>`` per model, same Dataset.
npz
    ``<out_dir>/<name>.npz`` with, per model, ``embedding__<model>`` (the values), ``dims__<model>`` (the
    dims, a string array) and ``attrs__<model>`` (a JSON string); grids add their georeferencing as
    ``crs__<model>`` (WKT string), ``transform__<model>`` (6 floats, affine ``a, b, c, d, e, f``),
    ``y__<model>`` and ``x__<model>``. Coordinates of the other dims (``embedding``, ``time``, ...) are kept
    as ``coord_<dim>__<model>``.
geotiff
    ``<out_dir>/<name>__<model>.tif``, for grids with dims exactly ``(embedding, y, x)``: float32, nodata
    NaN, deflate, tiled (a COG when rasterio's GDAL has the ``COG`` driver, else a tiled GTiff); bands are
    described ``E000``, ``E001``, ...; attrs are GDAL dataset tags (strings as they are, any other value
    JSON-encoded). A pooled result, or a grid with other dims, raises :class:`~xrembed.errors.OptionError`.

Layout ``combined(out_file)``
-----------------------------
zarr
    Store ``<out_file>``. Pooled outputs that are 1-D for every item: group ``/<model>`` holds the Dataset
    ``embeddings(item, embedding)`` with coordinate ``item`` (the names); a NaN row is an item that failed
    or was not done. Grids, and pooled outputs with extra dims: group ``/<model>/<name>`` per item with the
    Dataset ``{"embeddings": da}``. Written by the export runner; read here.
netcdf
    Single file ``<out_file>`` (h5netcdf) with the same group layout as zarr.
npz
    Single file ``<out_file>``: stacked pooled ``embeddings__<model>`` ``(item, embedding)`` plus ``items``
    (the names), with ``dims__<model>``, ``attrs__<model>`` and ``coord_embedding__<model>``; otherwise one
    ``embedding__<model>__<name>`` per item with the per-item keys above suffixed ``__<model>__<name>``.
geotiff
    Refused (``OptionError``): use ``ExportTarget.per_item(...)`` for GeoTIFF, or ``format="zarr"``.

Saved inputs (``ExportConfig(save_inputs=True)``)
-------------------------------------------------
The exact model input of a unit (its bands after selection, in model order, before normalisation, on its
own grid) is stored like a result under the label ``<model>.input`` (:func:`input_label`): the variable
``inputs`` with dims ``([time,] band, y, x)``, a ``band`` coordinate with the band names, and the input's
CRS and transform. So a per-item zarr store has the group ``/<model>.input``, a combined store
``/<model>.input/<name>``, npz the keys ``embedding__<model>.input[__<name>]`` (with their ``dims__``,
``crs__``, ... siblings) and GeoTIFF the file ``<name>__<model>.input.tif`` (band descriptions are the
band names; a time series input cannot be a GeoTIFF and fails its unit with the reason).

A stacked array (zarr, netcdf, npz) keeps the attrs shared by all its items. Every file is written
atomically: to a temporary name in the same directory, then moved into place with ``os.replace``, so a
reader never sees half a file and an interrupted export leaves no partial output under the final name.

Dask-backed results stream to NetCDF and GeoTIFF chunk by chunk; NPZ holds everything in memory by
design. Readers are lazy for zarr, netcdf and geotiff (dask), eager for npz. Every grid comes back with
``rio.crs`` and ``rio.transform()`` equal to what was written, ``y``/``x`` coordinates, and its attrs
(lists as lists).
"""

from __future__ import annotations

import json
import os
import threading
import uuid
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr
from affine import Affine
from pyproj import CRS

from ..cache import atomic_path
from ..errors import MissingCRSError, OptionError, StoreError
from .manifest import jsonable
from .ownership import MARK, check_replaceable, mark

__all__ = [
    "FORMATS",
    "INPUT_VAR",
    "input_label",
    "is_input_label",
    "item_paths",
    "normalize_format",
    "read_combined",
    "read_item",
    "write_combined",
    "write_item",
]

FORMATS = ("zarr", "geotiff", "netcdf", "npz")
_ALIASES = {"tif": "geotiff", "tiff": "geotiff", "cog": "geotiff", "nc": "netcdf", "netcdf4": "netcdf"}
_SUFFIXES = {"zarr": ".zarr", "netcdf": ".nc", "npz": ".npz", "geotiff": ".tif"}
_GRID_DIMS = ("embedding", "y", "x")
_VAR = "embeddings"
#: The variable of a saved model input, and the suffix of its label (model labels never contain a '.input').
INPUT_VAR = "inputs"
INPUT_SUFFIX = ".input"
#: Attribute listing which attrs were JSON-encoded (NetCDF and GeoTIFF cannot hold lists of strings etc.).
_JSON_ATTRS = "xrembed_json_attrs"
#: Largest uncompressed COG tile (all bands of a pixel-interleaved tile), in bytes.
_MAX_TILE_BYTES = 32 * 2**20
#: Largest uncompressed HDF5 chunk in NetCDF outputs, in bytes.
_MAX_NETCDF_CHUNK = 4 * 2**20


# --------------------------------------------------------------------------------------------- names


def normalize_format(fmt: str) -> str:
    """The canonical name of an export format: one of ``FORMATS``.

    Examples
    --------
    >>> normalize_format("COG"), normalize_format("nc"), normalize_format("zarr")
    ('geotiff', 'netcdf', 'zarr')
    """
    text = str(fmt).strip().lower().lstrip(".") if isinstance(fmt, str) else None
    text = _ALIASES.get(text, text)
    if text not in FORMATS:
        raise OptionError(
            f"format={fmt!r} is not one of {list(FORMATS)} "
            "(aliases: 'tif', 'tiff', 'cog' for 'geotiff'; 'nc', 'netcdf4' for 'netcdf')."
        )
    return text


def item_paths(out_dir: str | os.PathLike, name: str, fmt: str, models: Sequence[str]) -> list[Path]:
    """The files (or, for zarr, the store) that item ``name`` produces in the per-item layout.

    Examples
    --------
    >>> [p.name for p in item_paths("out", "p00000", "tif", ["dofa", "terrafm"])]
    ['p00000__dofa.tif', 'p00000__terrafm.tif']
    >>> [str(p) for p in item_paths("out", "p00000", "netcdf", ["dofa", "terrafm"])]
    ['out/p00000.nc']
    """
    fmt = normalize_format(fmt)
    out_dir = Path(out_dir)
    _check_name(name)
    if fmt == "geotiff":
        return [out_dir / f"{name}__{_check_model(model)}.tif" for model in models]
    return [out_dir / f"{name}{_SUFFIXES[fmt]}"]


def input_label(label: str) -> str:
    """The label under which the model inputs of ``label`` are saved.

    Examples
    --------
    >>> input_label("dofa"), is_input_label("dofa.input"), is_input_label("dofa")
    ('dofa.input', True, False)
    """
    return f"{label}{INPUT_SUFFIX}"


def is_input_label(label: str) -> bool:
    return str(label).endswith(INPUT_SUFFIX)


def _var(da: xr.DataArray) -> str:
    """The stored variable name: ``inputs`` for a saved model input, else ``embeddings``."""
    return INPUT_VAR if da.name == INPUT_VAR else _VAR


def _depth_dim(da: xr.DataArray) -> str:
    """The per-cell vector dim: ``band`` for a model input, ``embedding`` for a result."""
    return "band" if da.name == INPUT_VAR else "embedding"


def _check_model(model: str) -> str:
    if not isinstance(model, str) or not model or "__" in model or "/" in model or "\\" in model:
        raise OptionError(f"model label {model!r} must be a non-empty string without '__', '/' or '\\'.")
    return model


def _check_name(name: str) -> str:
    if not isinstance(name, str) or not name or "/" in name or "\\" in name or name.startswith("."):
        raise OptionError(f"item name {name!r} must be a non-empty string without '/' or '\\', not starting with '.'.")
    return name


# --------------------------------------------------------------------------------------------- writers


def write_item(
    out_dir: str | os.PathLike, name: str, results: Mapping[str, xr.DataArray | None], fmt: str,
    *, overwrite: bool = False,
) -> list[Path]:
    """Write one item's results (``{model: DataArray}``) in the per-item layout; returns the paths written.

    Handles ``"netcdf"``, ``"npz"`` and ``"geotiff"``; zarr stores are written by the export runner. A
    ``None`` result (the model failed for this item) is left out. Everything is validated before the first
    byte is written, and each file appears atomically. A file there that xrembed did not write is refused
    (:class:`~xrembed.errors.OverwriteError`) unless ``overwrite=True``.

    Examples
    --------
    >>> emb = da.rsembed.embed("dofa")                                  # doctest: +SKIP
    >>> write_item("out", "p00000", {"dofa": emb}, "geotiff")           # doctest: +SKIP
    [PosixPath('out/p00000__dofa.tif')]
    """
    fmt = normalize_format(fmt)
    _check_name(name)
    present = {_check_model(model): _as_result(da) for model, da in results.items() if da is not None}
    out_dir = Path(out_dir)
    if fmt == "zarr":
        raise OptionError(
            "write_item() writes netcdf, npz and geotiff; zarr stores are written by the export runner "
            "(Dataset.to_zarr(store, group=model))."
        )
    if fmt == "geotiff":
        for model, da in present.items():
            _check_geotiff(model, da)
    for path in item_paths(out_dir, name, fmt, list(present)):
        check_replaceable(path, overwrite=overwrite, what="export item file")
    out_dir.mkdir(parents=True, exist_ok=True)
    if fmt == "geotiff":
        written = []
        for model, da in present.items():
            path = out_dir / f"{name}__{model}.tif"
            _write_geotiff(path, da)
            written.append(path)
        return written
    (path,) = item_paths(out_dir, name, fmt, list(present))
    if fmt == "netcdf":
        _write_netcdf(path, [(model, _dataset(da)) for model, da in present.items()])
    else:
        arrays: dict[str, np.ndarray] = {}
        for model, da in present.items():
            arrays.update(_npz_entries(da, model))
        _write_npz(path, arrays)
    return [path]


def write_combined(
    out_file: str | os.PathLike,
    names: Sequence[str],
    results: Mapping[str, Mapping[str, xr.DataArray | None]],
    fmt: str,
    *,
    overwrite: bool = False,
) -> Path:
    """Write every item's results into one file (``results[model][name]``) in the combined layout.

    Handles ``"netcdf"`` and ``"npz"`` (zarr stores are written by the export runner; GeoTIFF is refused).
    A model whose present results are all 1-D vectors of one length is stacked into ``(item, embedding)``
    over ``names``, a NaN row for each ``None`` (failed) or missing item; other results get one group (or
    key) per item, and failed items are simply absent.

    Examples
    --------
    >>> write_combined("out.nc", ["p0", "p1"], {"dofa": {"p0": vec0, "p1": None}}, "netcdf")  # doctest: +SKIP
    PosixPath('out.nc')
    """
    fmt = normalize_format(fmt)
    if fmt == "geotiff":
        raise OptionError(
            "GeoTIFF cannot hold a combined export: use ExportTarget.per_item(...) for GeoTIFF, or format='zarr'."
        )
    if fmt == "zarr":
        raise OptionError(
            "write_combined() writes netcdf and npz; zarr stores are written by the export runner "
            "(Dataset.to_zarr(store, group=...))."
        )
    names = [_check_name(n) for n in names]
    if len(set(names)) != len(names):
        raise OptionError("item names must be unique in a combined export.")
    out_file = Path(out_file)
    plan = _combined_plan(names, results)
    check_replaceable(out_file, overwrite=overwrite, what="export file")
    out_file.parent.mkdir(parents=True, exist_ok=True)
    if fmt == "netcdf":
        groups = []
        for model, entry in plan.items():
            if isinstance(entry, xr.DataArray):
                groups.append((model, _dataset(entry)))
            else:
                groups.extend((f"{model}/{name}", _dataset(da)) for name, da in entry.items())
        _write_netcdf(out_file, groups)
    else:
        arrays = {}
        stacked_any = False
        for model, entry in plan.items():
            if isinstance(entry, xr.DataArray):
                stacked_any = True
                suffix = model
                arrays.update(_npz_entries(entry, suffix, values_key=f"embeddings__{suffix}"))
                arrays.pop(f"coord_item__{suffix}", None)  # the names live in "items"
            else:
                for name, da in entry.items():
                    arrays.update(_npz_entries(da, f"{model}__{name}"))
        if stacked_any:
            arrays["items"] = np.asarray(names, dtype=str)
        _write_npz(out_file, arrays)
    return out_file


def _combined_plan(
    names: Sequence[str], results: Mapping[str, Mapping[str, xr.DataArray | None]]
) -> dict[str, xr.DataArray | dict[str, xr.DataArray]]:
    """Per model: the stacked ``(item, embedding)`` array, or ``{name: result}`` for the present items."""
    plan: dict[str, xr.DataArray | dict[str, xr.DataArray]] = {}
    for model, by_name in results.items():
        _check_model(model)
        unknown = set(by_name) - set(names)
        if unknown:
            raise OptionError(f"results for model {model!r} name items not in `names`: {sorted(unknown)}.")
        present = {n: _as_result(by_name[n]) for n in names if by_name.get(n) is not None}
        if not present:
            continue
        sizes = {da.sizes["embedding"] if da.dims == ("embedding",) else None for da in present.values()}
        if len(sizes) == 1 and None not in sizes:
            plan[model] = stack_pooled(names, present)
        else:
            plan[model] = present
    return plan


def stack_pooled(names: Sequence[str], present: Mapping[str, xr.DataArray]) -> xr.DataArray:
    """Pooled vectors of the ``present`` items as ``(item, embedding)``, NaN rows for the others; shared attrs."""
    first = next(iter(present.values()))
    dtype = np.result_type(*(da.dtype for da in present.values()), np.float32)
    values = np.full((len(names), first.sizes["embedding"]), np.nan, dtype=dtype)
    for row, name in enumerate(names):
        if name in present:
            values[row] = np.asarray(present[name].values)
    shared = dict(first.attrs)
    for da in present.values():
        shared = {k: v for k, v in shared.items() if k in da.attrs and _same(da.attrs[k], v)}
    coords = {"item": np.asarray(names, dtype=str)}
    if "embedding" in first.coords:
        coords["embedding"] = first["embedding"].values
    return xr.DataArray(values, dims=("item", "embedding"), coords=coords, name=_VAR, attrs=shared)


def _same(a: Any, b: Any) -> bool:
    try:
        return json.dumps(jsonable(a), sort_keys=True) == json.dumps(jsonable(b), sort_keys=True)
    except TypeError:
        return False


def _as_result(da: xr.DataArray) -> xr.DataArray:
    if not isinstance(da, xr.DataArray):
        raise OptionError(f"an export result must be an xarray.DataArray, got {type(da).__name__}.")
    if da.name == INPUT_VAR and "band" in da.dims:  # a saved model input
        return da
    if "embedding" not in da.dims:
        raise OptionError(f"an export result needs an 'embedding' dimension; got dims {tuple(da.dims)}.")
    return da if da.name == _VAR else da.rename(_VAR)


def _is_grid(da: xr.DataArray) -> bool:
    return "y" in da.dims and "x" in da.dims


# --------------------------------------------------------------------------------------------- attrs


def _encode_attrs(attrs: Mapping[str, Any], native: tuple[type, ...]) -> dict[str, Any]:
    """Attrs a format can store: values of the ``native`` types as they are, the rest as JSON strings."""
    out: dict[str, Any] = {}
    encoded = []
    for key, value in attrs.items():
        value = jsonable(value)
        if isinstance(value, native) and not isinstance(value, bool):
            out[key] = value
        else:
            out[key] = json.dumps(value)
            encoded.append(key)
    if encoded:
        out[_JSON_ATTRS] = json.dumps(encoded)
    return out


def _decode_attrs(attrs: Mapping[str, Any]) -> dict[str, Any]:
    out = {key: jsonable(value) for key, value in attrs.items() if key != _JSON_ATTRS}
    for key in json.loads(attrs.get(_JSON_ATTRS, "[]")):
        if key in out:
            out[key] = json.loads(out[key])
    return out


# --------------------------------------------------------------------------------------------- netcdf


def _dataset(da: xr.DataArray) -> xr.Dataset:
    """The Dataset ``{"embeddings": da}`` with NetCDF-safe attrs and compression."""
    var = da.copy(deep=False)
    var.attrs = _encode_attrs(da.attrs, native=(str, int, float))
    grid_mapping = da.encoding.get("grid_mapping")
    # Drop encodings from other backends (zarr chunks/codecs); keep the grid mapping link.
    var.encoding = {"zlib": True, "complevel": 1, "shuffle": True, "chunksizes": _netcdf_chunks(da)}
    if grid_mapping is not None:
        var.encoding["grid_mapping"] = grid_mapping
    return var.to_dataset(name=_var(da))


def _netcdf_chunks(da: xr.DataArray) -> tuple[int, ...]:
    """HDF5 chunks of at most ~4 MiB holding whole embedding vectors: 1 along leading dims (time, item...),
    all of ``embedding``, and square spatial blocks (256 px, halved while too big)."""
    sizes = dict(da.sizes)
    depth_dim = _depth_dim(da)
    depth = sizes[depth_dim] * max(np.dtype(da.dtype).itemsize, 1)
    side = 256
    while side > 8 and depth * side * side > _MAX_NETCDF_CHUNK:
        side //= 2
    chunks = {dim: 1 for dim in da.dims}
    chunks[depth_dim] = sizes[depth_dim]
    if _is_grid(da):
        chunks["y"], chunks["x"] = min(side, sizes["y"]), min(side, sizes["x"])
    elif da.dims == ("item", "embedding"):
        chunks["item"] = max(1, min(sizes["item"], _MAX_NETCDF_CHUNK // depth))
    return tuple(max(1, chunks[dim]) for dim in da.dims)


def _write_netcdf(path: Path, groups: Sequence[tuple[str, xr.Dataset]]) -> None:
    """One NetCDF4 file (h5netcdf) with each Dataset in its group; dask data streams."""
    with atomic_path(path) as tmp:
        xr.Dataset(attrs={MARK: mark("export")}).to_netcdf(tmp, engine="h5netcdf", mode="w")
        for group, ds in groups:
            ds.to_netcdf(tmp, engine="h5netcdf", group=group, mode="a")


def _open_netcdf(path: Path, group: str) -> xr.DataArray:
    def open_(chunks):
        return xr.open_dataset(path, engine="h5netcdf", group=group, decode_coords="all", chunks=chunks)

    return _finish(_guarded(open_, path, group))


def _netcdf_groups(path: Path) -> dict[str, list[str] | None]:
    """``{model: None}`` for a group holding ``embeddings`` itself, else ``{model: [sub-group names]}``."""
    import h5netcdf

    with h5netcdf.File(path, "r") as f:
        return {
            model: None if (_VAR in grp.variables or INPUT_VAR in grp.variables) else sorted(grp.groups)
            for model, grp in f.groups.items()
        }


# --------------------------------------------------------------------------------------------- npz


def _npz_entries(da: xr.DataArray, suffix: str, values_key: str | None = None) -> dict[str, np.ndarray]:
    """The npz arrays for one result; ``values_key`` overrides ``embedding__<suffix>``."""
    arrays = {
        values_key or f"embedding__{suffix}": np.asarray(da.values),
        f"dims__{suffix}": np.asarray([str(d) for d in da.dims], dtype=str),
        f"attrs__{suffix}": np.asarray(json.dumps(jsonable(da.attrs))),
    }
    grid = _is_grid(da)
    for dim in da.dims:
        if grid and dim in ("y", "x"):
            continue
        if dim in da.coords:
            arrays[f"coord_{dim}__{suffix}"] = _savable(da[dim].values)
    if grid:
        arrays[f"y__{suffix}"] = np.asarray(da["y"].values)
        arrays[f"x__{suffix}"] = np.asarray(da["x"].values)
        crs = da.rio.crs
        if crs is not None:
            arrays[f"crs__{suffix}"] = np.asarray(CRS.from_user_input(crs).to_wkt())
            arrays[f"transform__{suffix}"] = np.asarray(tuple(da.rio.transform())[:6], dtype="float64")
    return arrays


def _savable(values: np.ndarray) -> np.ndarray:
    values = np.asarray(values)
    # object and numpy StringDType (kind "T", what Zarr v3 strings read back as) both need pickling in npz
    if values.dtype == object or values.dtype.kind == "T":
        return np.asarray([str(v) for v in values.ravel()], dtype=str).reshape(values.shape)
    return values


def _write_npz(path: Path, arrays: Mapping[str, np.ndarray]) -> None:
    # A file object, since np.savez would append ".npz" to the temporary name.
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        np.savez_compressed(f, **arrays, **{MARK: np.asarray(mark("export"))})


def _npz_result(z: Mapping[str, np.ndarray], suffix: str, values_key: str | None = None) -> xr.DataArray:
    dims = tuple(str(d) for d in z[f"dims__{suffix}"])
    coords: dict[str, Any] = {}
    for dim in dims:
        key = f"coord_{dim}__{suffix}"
        if key in z:
            coords[dim] = z[key]
    if f"y__{suffix}" in z:
        coords["y"] = z[f"y__{suffix}"]
        coords["x"] = z[f"x__{suffix}"]
    attrs = json.loads(str(z[f"attrs__{suffix}"]))
    name = INPUT_VAR if "band" in dims and "embedding" not in dims else _VAR
    da = xr.DataArray(z[values_key or f"embedding__{suffix}"], dims=dims, coords=coords, name=name, attrs=attrs)
    if f"crs__{suffix}" in z:
        da = da.rio.write_crs(str(z[f"crs__{suffix}"]))
        da = da.rio.write_transform(Affine(*(float(v) for v in z[f"transform__{suffix}"])))
    return da


def _load_npz(path: Path) -> dict[str, np.ndarray]:
    with np.load(path, allow_pickle=False) as z:
        return {key: z[key] for key in z.files}


# --------------------------------------------------------------------------------------------- geotiff


def _check_geotiff(model: str, da: xr.DataArray) -> None:
    if da.name == INPUT_VAR and tuple(da.dims) != ("band", "y", "x"):
        raise OptionError(
            f"the saved input of {model!r} has dims {tuple(da.dims)} (a time series); GeoTIFF holds (band, y, x). "
            "Use format='zarr' or 'netcdf' to save time-series inputs, or save_inputs=False."
        )
    if da.name != INPUT_VAR and tuple(da.dims) != _GRID_DIMS:
        kind = "a pooled result" if not _is_grid(da) else "a grid with extra dimensions"
        raise OptionError(
            f"GeoTIFF holds grids with dims exactly {_GRID_DIMS}; the {model!r} result is {kind} "
            f"(dims {tuple(da.dims)}). Use format='zarr' or format='netcdf' for it."
        )
    if da.rio.crs is None:
        raise MissingCRSError(
            f"the {model!r} grid has no CRS, so a GeoTIFF of it would not be georeferenced; "
            "write one with `da.rio.write_crs(...)`, or use format='zarr' or 'netcdf'."
        )


def _has_cog_driver() -> bool:
    import rasterio

    with rasterio.Env() as env:
        return "COG" in env.drivers()


def _cog_blocksize(bands: int) -> int:
    """Tile side for a pixel-interleaved COG: 256, halved while a tile (all bands) exceeds 32 MiB."""
    size = 256
    while size > 16 and size * size * bands * 4 > _MAX_TILE_BYTES:
        size //= 2
    return size


def _write_lock(da: xr.DataArray):
    """A lock for rioxarray's dask writes: a distributed lock under a dask client, else a thread lock."""
    if not hasattr(da.data, "dask"):
        return None
    try:
        from distributed import Lock, get_client

        get_client()
        return Lock(f"xrembed-geotiff-{uuid.uuid4().hex}")
    except (ImportError, ValueError):
        return threading.Lock()


def _write_geotiff(path: Path, da: xr.DataArray) -> None:
    """Stream ``da`` into an uncompressed tiled scratch GTiff, tag it, then copy it compressed into place.

    Dask chunks rarely line up with TIFF tiles, and GDAL would recompress a deflated tile for every chunk
    that touches it (20x slower in a 768 x 300 x 300 trial); the copy reads each tile once. The copy is a
    COG when GDAL has the driver (``OVERVIEWS=NONE``: an embedding grid is already ``patch_size`` times
    coarser than its input, and overviews tripled the write time), else a tiled GTiff.
    """
    import rasterio
    import rasterio.shutil

    crs, transform = da.rio.crs, da.rio.transform()
    out = xr.DataArray(da.data, dims=da.dims, coords={"y": da["y"].values, "x": da["x"].values}, name=_VAR)
    out = out.rio.write_crs(crs).rio.write_transform(transform).rio.write_nodata(np.nan, encoded=False)
    if out.dtype != np.float32:
        out = out.astype(np.float32)
    bands = int(da.sizes[_depth_dim(da)])
    if da.name == INPUT_VAR and "band" in da.coords:
        descriptions = [str(b) for b in da["band"].values]
    else:
        descriptions = [f"E{band:03d}" for band in range(bands)]
    tags = _encode_attrs(da.attrs, native=(str,))
    blocksize = _cog_blocksize(bands)
    with atomic_path(path) as tmp:
        scratch = tmp.with_name(f"{tmp.stem}.src.tif")
        try:
            out.rio.to_raster(
                scratch, driver="GTiff", tiled=True, blockxsize=256, blockysize=256, interleave="band",
                recalc_transform=False, lock=_write_lock(out),
            )
            with rasterio.open(scratch, "r+") as dst:
                dst.update_tags(**tags, **{MARK: mark("export")})
                for band in range(bands):
                    dst.set_band_description(band + 1, descriptions[band])
            if _has_cog_driver():
                options = {"driver": "COG", "predictor": "FLOATING_POINT", "overviews": "NONE", "blocksize": blocksize}
            else:
                options = {"driver": "GTiff", "tiled": True, "predictor": 3}
                options.update(blockxsize=blocksize, blockysize=blocksize)
            rasterio.shutil.copy(scratch, tmp, compress="DEFLATE", num_threads="ALL_CPUS", **options)
        finally:
            if scratch.exists():
                scratch.unlink()


def _read_geotiff(path: Path, saved_input: bool = False) -> xr.DataArray:
    import rasterio
    import rioxarray

    with rasterio.open(path) as src:
        tags = src.tags()
        block_y, block_x = src.block_shapes[0]
        count = src.count
        descriptions = list(src.descriptions)
    da = rioxarray.open_rasterio(path, chunks={"band": -1, "y": block_y, "x": block_x})
    if saved_input:
        da = da.assign_coords(band=np.asarray(descriptions, dtype=str))
    else:
        da = da.rename(band="embedding").assign_coords(embedding=np.arange(count))
    tags.pop("AREA_OR_POINT", None)
    tags.pop(MARK, None)
    nodata = da.rio.nodata  # read from the file into attrs["_FillValue"], which the attrs below replace
    da.attrs = _decode_attrs(tags)
    if nodata is not None:  # kept where every grid keeps it (encoding), so rio.nodata reads it back
        da = da.rio.write_nodata(nodata, encoded=True)
    return da.rename(INPUT_VAR if saved_input else _VAR)


def _geotiff_files(path: Path, name: str | None) -> dict[str, Path]:
    if path.is_file() or path.suffix.lower() in (".tif", ".tiff"):
        stem_name, sep, model = path.stem.rpartition("__")
        if not sep or (name is not None and stem_name != name):
            raise OptionError(f"{path} is not named '<name>__<model>.tif'" + (f" for item {name!r}." if name else "."))
        return {model: path}
    if name is None:
        raise OptionError("read_item() needs the item name when given a directory.")
    files = {}
    for file in sorted(path.glob(f"{name}__*.tif")):
        stem_name, _, model = file.stem.rpartition("__")
        if stem_name == name and not file.name.startswith("."):
            files[model] = file
    return files


# --------------------------------------------------------------------------------------------- zarr


def _zarr_groups(store: Path) -> dict[str, list[str] | None]:
    """Like :func:`_netcdf_groups`, listing the store itself (consolidated metadata may be stale)."""
    import zarr

    root = zarr.open_group(store, mode="r", use_consolidated=False)
    out = {}
    for model, grp in root.groups():
        keys = set(grp.array_keys())
        out[model] = None if (_VAR in keys or INPUT_VAR in keys) else sorted(n for n, _ in grp.groups())
    return out


def _open_zarr(store: Path, group: str) -> xr.DataArray:
    def open_(chunks):
        return xr.open_zarr(store, group=group, decode_coords="all", consolidated=False, chunks=chunks)

    return _finish(_guarded(open_, store, group))


def _guarded(open_, path: Path, group: str) -> xr.DataArray:
    """The lazy result of ``open_(chunks)`` whose reads raise :class:`StoreError` on a damaged file.

    A torn chunk is found only when its pixels are read (inside dask, with a codec's own error): the
    dask array is rebuilt over a reader that names the file and the fix instead.
    """
    import dask.array as dsa

    try:
        first = open_({})
        var = _VAR if _VAR in first else INPUT_VAR
        lazy = first[var]
        backend = open_(None)[var].variable
    except Exception as err:  # noqa: BLE001  (a store whose metadata cannot be read at all)
        raise StoreError(f"cannot open {path} (group {group!r}): {err}. The file is damaged or not an xrembed "
                         "export; rerun the export (a new target, or ExportConfig(overwrite=True)).") from err
    if lazy.chunks is None:
        return lazy
    data = dsa.from_array(_GuardedReader(backend, f"{path} (group {group!r})"), chunks=lazy.chunks,
                          meta=np.empty((0,) * lazy.ndim, dtype=lazy.dtype), name=f"xrembed-read-{uuid.uuid4().hex}")
    return lazy.copy(data=data)


class _GuardedReader:
    """Array-like over a lazily indexed variable; a failing read becomes a :class:`StoreError`."""

    def __init__(self, variable, where: str) -> None:
        self.variable, self.where = variable, where
        self.shape, self.dtype, self.ndim = variable.shape, variable.dtype, variable.ndim

    def __getitem__(self, key):
        try:
            return np.asarray(self.variable[key].values)
        except Exception as err:  # noqa: BLE001  (codec and I/O errors vary by library)
            raise StoreError(
                f"{self.where} is damaged: reading {key} failed with {type(err).__name__}: {err}. Its data cannot "
                "be trusted; rerun the export into a new target (or with ExportConfig(overwrite=True))."
            ) from err


# --------------------------------------------------------------------------------------------- readers


def _finish(da: xr.DataArray) -> xr.DataArray:
    da.attrs = _decode_attrs(da.attrs)
    return da.rename(INPUT_VAR if da.name == INPUT_VAR else _VAR)


def _item_file(path_or_dir: str | os.PathLike, name: str | None, fmt: str) -> Path:
    path = Path(path_or_dir)
    suffix = _SUFFIXES[fmt]
    if name is not None and (path / f"{_check_name(name)}{suffix}").exists():
        return path / f"{name}{suffix}"
    if path.suffix.lower() == suffix:  # the item's own file (or store)
        return path
    if name is None:
        raise OptionError(f"read_item() needs the item name when given the directory {path}.")
    return path / f"{name}{suffix}"


def read_item(path_or_dir: str | os.PathLike, name: str | None, fmt: str) -> dict[str, xr.DataArray]:
    """Read one item of a per-item export: ``{model: result}``.

    ``path_or_dir`` is the export's ``out_dir`` (then ``name`` picks the item) or the item's own file
    (``<name>.nc``, ``<name>.npz``, ``<name>.zarr``, ``<name>__<model>.tif``; ``name`` may be ``None``).
    Zarr, NetCDF and GeoTIFF results are lazy (dask); npz results are in memory.

    Examples
    --------
    >>> results = read_item("out", "p00000", "netcdf")          # doctest: +SKIP
    >>> results["dofa"].rio.crs                                 # doctest: +SKIP
    CRS.from_epsg(32629)
    """
    fmt = normalize_format(fmt)
    if fmt == "geotiff":
        files = _geotiff_files(Path(path_or_dir), name)
        if not files:
            raise FileNotFoundError(f"no GeoTIFF '{name}__<model>.tif' in {path_or_dir}.")
        return {model: _read_geotiff(file, is_input_label(model)) for model, file in files.items()}
    path = _item_file(path_or_dir, name, fmt)
    if not path.exists():
        raise FileNotFoundError(f"no {fmt} output for item {name!r} at {path}.")
    if fmt == "npz":
        z = _load_npz(path)
        models = [key[len("embedding__"):] for key in z if key.startswith("embedding__")]
        return {model: _npz_result(z, model) for model in models}
    groups = _zarr_groups(path) if fmt == "zarr" else _netcdf_groups(path)
    opener = _open_zarr if fmt == "zarr" else _open_netcdf
    return {model: opener(path, model) for model, sub in groups.items() if sub is None}


def read_combined(
    out_file: str | os.PathLike, fmt: str
) -> dict[str, dict[str, xr.DataArray] | xr.DataArray]:
    """Read a combined export: ``{model: stacked (item, embedding) DataArray | {name: result}}``.

    Examples
    --------
    >>> out = read_combined("export.zarr", "zarr")              # doctest: +SKIP
    >>> out["dofa"]["p00000"].rio.transform()                   # doctest: +SKIP
    """
    fmt = normalize_format(fmt)
    if fmt == "geotiff":
        raise OptionError("GeoTIFF exports are per item: read them with read_item(out_dir, name, 'geotiff').")
    path = Path(out_file)
    if not path.exists():
        raise FileNotFoundError(f"no combined {fmt} export at {path}.")
    if fmt == "npz":
        return _read_combined_npz(_load_npz(path))
    groups = _zarr_groups(path) if fmt == "zarr" else _netcdf_groups(path)
    opener = _open_zarr if fmt == "zarr" else _open_netcdf
    out: dict[str, dict[str, xr.DataArray] | xr.DataArray] = {}
    for model, items in groups.items():
        if items is None:
            out[model] = opener(path, model)
        else:
            out[model] = {name: opener(path, f"{model}/{name}") for name in items}
    return out


def _read_combined_npz(z: Mapping[str, np.ndarray]) -> dict[str, dict[str, xr.DataArray] | xr.DataArray]:
    out: dict[str, dict[str, xr.DataArray] | xr.DataArray] = {}
    for key in z:
        if key.startswith("embeddings__"):
            model = key[len("embeddings__"):]
            da = _npz_result(z, model, values_key=key)
            out[model] = da.assign_coords(item=("item", z["items"]))
    for key in z:
        if key.startswith("embedding__"):
            model, _, name = key[len("embedding__"):].partition("__")
            entry = out.setdefault(model, {})
            entry[name] = _npz_result(z, f"{model}__{name}")
    return out
