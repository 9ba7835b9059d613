"""Kill-safe streaming of a lazy embedding grid to Zarr, region by region (:func:`to_zarr`).

A continent-sized grid is never one ``compute()``: it is written one *region* (one Zarr chunk, which is
one dask chunk) at a time, in bounded batches, so that the scheduler holds a few hundred tasks whatever
the raster size. Each finished region is recorded by creating an empty file under a state folder beside
the store (``.<name>.xrembed-stream/regions/``) *after* its chunk is in place; creating a file is atomic,
so a process killed at any moment leaves every region either recorded (its chunk complete) or not
(computed again on resume). Zarr writes each chunk through a temporary file and a rename; a kill can
leave such a ``*.partial`` file, which the next run removes. The store's metadata is written into a
hidden sibling folder first and renamed into place, so a store is never half-created.

The store records what produced it (attribute ``xrembed_stream``): the model, the weights (with the
checkpoint's sha256 when it is a local file), the options, the input (the tokens of the graph's source
layers, which change when a source file is replaced), the grid and the whole graph's token. A rerun with
``resume=True`` continues only if all of these are the same; otherwise it refuses, naming what changed.
When the last region is written the record is marked complete and the state folder is removed: the
finished store holds the same files and values as an uninterrupted run's. The store's metadata is then
consolidated (one atomic rewrite of its root ``zarr.json``), so ``xr.open_zarr(store)`` opens it at once.

A raster far larger than one graph (Earth's land at 10 m: 1,000,000 x 1,000,000 px, 1.2 million regions)
streams from an :class:`EmbedRequest`: the graph is built one *window* of regions at a time, each window
only when one of its regions is still to do, so the client's and the scheduler's memory stay flat whatever
the raster size. Windows lie on the regions of the whole grid, and tiles sit on the global lattice, so the
store is the one the whole graph writes (chunk invariance), and a killed windowed run resumes like any other.
"""

from __future__ import annotations

import os
import re
import shutil
import sys
import threading
import time
import uuid
import warnings
from collections.abc import Iterable, Iterator
from itertools import islice
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr

from .errors import OptionError, ResumeMismatchError
from .export.conventions import zarr_convention_attrs
from .cache import jsonable
from .export.identity import path_identity
from .export.manifest import fingerprint
from .export.ownership import MARK, check_replaceable, is_owned, mark, mark_state

__all__ = ["EmbedRequest", "ResumeMismatchError", "StreamPlan", "plan_regions", "request_identity", "to_zarr"]

#: Root group attribute holding the request identity and the completion flag.
RECORD = "xrembed_stream"
STATE_SUFFIX = ".xrembed-stream"
#: Chunk side (cells) used for an eager (numpy) grid, which has no dask chunks to follow.
EAGER_CHUNK = 256
#: Regions per side of a window when an :class:`EmbedRequest` is streamed (4,096 regions a window).
DEFAULT_WINDOW = 64
_PARTIAL = re.compile(r"\.[0-9a-f]{32}\.partial$")
#: Identity parts, in the order a mismatch is reported.
_PARTS = ("model", "weights", "options", "xrembed", "input", "grid", "graph")


# ---------------------------------------------------------------------------------------------
# Identity of a request


def request_identity(emb: xr.DataArray, data=None, *, source: tuple[Any, str] | None = None) -> dict[str, Any]:
    """What determines the values of ``emb``, split into the parts a refusal names.

    ``data`` is the dask array that will be written (``emb.data`` after any rechunking). ``source`` is
    ``(input, graph)`` for a grid whose graph is never built whole (:class:`EmbedRequest`): the input's
    source-layer tokens and a token of the whole computation, standing for those of ``data``.

    Examples
    --------
    >>> import numpy as np, xarray as xr
    >>> ident = request_identity(xr.DataArray(np.zeros((2, 3, 3), "f4"), dims=("embedding", "y", "x"),
    ...                                       attrs={"model": "m", "weights": "random(seed=0)"}))
    >>> sorted(ident), ident["model"]
    (['graph', 'grid', 'input', 'model', 'options', 'weights', 'xrembed'], {'model': 'm', 'variant': None})
    """
    import dask.array as dsa
    from dask.base import tokenize

    lazy = isinstance(emb.data, dsa.Array)
    if data is None:
        data = emb.data if lazy else dsa.from_array(emb.values, chunks=_eager_chunks(emb))
    attrs = dict(emb.attrs)
    weights = attrs.get("weights")
    local = weights[len("file://"):] if isinstance(weights, str) and weights.startswith("file://") else weights
    if source is not None:
        roots, graph_token = source
    elif lazy:  # the graph's source layers: their tokens change with the source files (path, mtime) or arrays
        graph = data.__dask_graph__()
        roots = sorted(name for name, deps in graph.dependencies.items() if not deps)
    else:  # an in-memory grid was computed before: its content stands for its input
        roots = {"in_memory_values": tokenize(np.asarray(emb.values))}
    if source is None:
        graph_token = data.name
    crs = emb.rio.crs if {"y", "x"} <= set(emb.dims) else None
    skip = {"model", "variant", "weights", "xrembed_version", "long_name"}
    identity = {
        "model": {"model": attrs.get("model"), "variant": attrs.get("variant")},
        "weights": {"weights": weights, "file": path_identity(local) if isinstance(local, str) else None},
        "options": {k: v for k, v in sorted(attrs.items()) if k not in skip},
        "xrembed": attrs.get("xrembed_version"),
        "input": roots,
        "grid": {
            "dims": list(emb.dims),
            "shape": list(emb.shape),
            "chunks": [list(c) for c in data.chunks],
            "dtype": str(data.dtype),
            "crs": crs.to_wkt() if crs is not None else None,
            "transform": list(emb.rio.transform())[:6] if crs is not None else None,
            "coords": tokenize({name: np.asarray(c.values) for name, c in emb.coords.items() if name != "spatial_ref"}),
        },
        "graph": graph_token,
    }
    return jsonable(identity)


def _difference(recorded: dict, wanted: dict) -> str | None:
    """A sentence naming the first part of the request that differs, or ``None`` when all agree."""
    for part in _PARTS:
        old, new = recorded.get(part), wanted.get(part)
        if old == new:
            continue
        if isinstance(old, dict) and isinstance(new, dict):
            keys = [k for k in sorted(set(old) | set(new)) if old.get(k) != new.get(k)]
            shown = "; ".join(f"{k}: {_short(old.get(k))} -> {_short(new.get(k))}" for k in keys[:3])
            return f"the {part} changed ({shown})"
        if part == "input":
            return "the input changed (its source files or arrays are not the ones this store was computed from)"
        if part == "graph":
            return "the computation changed (the dask graph producing the embeddings is another one)"
        return f"the {part} changed ({_short(old)} -> {_short(new)})"
    return None


def _short(value: Any, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


# ---------------------------------------------------------------------------------------------
# Regions


class StreamPlan:
    """The regions of a grid: one per dask chunk, each exactly one Zarr chunk (chunks made regular)."""

    def __init__(self, data) -> None:
        self.data = data
        self.chunks = data.chunks
        self.zarr_chunks = tuple(c[0] for c in data.chunks)
        self.counts = tuple(len(c) for c in data.chunks)
        self.starts = tuple(np.concatenate([[0], np.cumsum(c)]).astype(int).tolist() for c in data.chunks)

    @property
    def total(self) -> int:
        return int(np.prod(self.counts))

    def indices(self) -> Iterator[tuple[int, ...]]:
        return iter(np.ndindex(*self.counts))

    def slices(self, index: tuple[int, ...]) -> tuple[slice, ...]:
        return tuple(slice(s[i], s[i + 1]) for s, i in zip(self.starts, index))

    def cells(self, index: tuple[int, ...], dims: tuple[str, ...]) -> int:
        """Grid cells (``y`` x ``x``, times any other non-embedding dims) in a region."""
        return int(np.prod([c[i] for c, i, d in zip(self.chunks, index, dims) if d != "embedding"]))


def region_name(index: Iterable[int]) -> str:
    return ".".join(str(int(i)) for i in index)


def plan_regions(emb: xr.DataArray) -> StreamPlan:
    """The dask array to write, rechunked to regular chunks if needed, and its regions.

    Zarr needs every chunk but the last of an axis to have the same size; an irregular dask chunking is
    rechunked to its first chunk size, so that each region is exactly one Zarr chunk and two regions never
    write the same chunk.
    """
    import dask.array as dsa

    data = emb.data if isinstance(emb.data, dsa.Array) else dsa.from_array(emb.values, chunks=_eager_chunks(emb))
    regular = {}
    for axis, chunks in enumerate(data.chunks):
        if len(chunks) > 1 and (len(set(chunks[:-1])) > 1 or chunks[-1] > chunks[0]):
            regular[axis] = chunks[0]
    if regular:
        data = data.rechunk(regular)
    return StreamPlan(data)


def _eager_chunks(emb: xr.DataArray) -> tuple:
    return tuple(EAGER_CHUNK if d in ("y", "x") else -1 for d in emb.dims)


# ---------------------------------------------------------------------------------------------
# A request streamed one window of regions at a time


class EmbedRequest:
    """``raster.rsembed.embed(model, **options)`` as a request whose graph is built one window at a time.

    Everything ``embed()`` checks without pixels is checked here, at once, and the weights are resolved
    once; no graph exists until :func:`to_zarr` builds one window's (``window`` regions per side), so a
    raster of any size streams with the client's and the scheduler's memory bounded by the window. Each
    window is the raster cut on the region lattice of the whole grid and embedded with the whole raster's
    input plan (options that models derive from the raster, such as its centre, are the whole raster's),
    so its regions hold the values the whole graph gives them. Grid outputs of ``input_prep="tile"`` only
    (the other outputs of a huge raster are not regions of a grid).

    Parameters
    ----------
    raster
        The input raster, as for ``.rsembed.embed`` (one not backed by dask is chunked first, lazily).
    model
        A registered model name.
    **options
        ``embed()`` keywords (``variant=``, ``weights=``, ``bands=``, ``tiles_per_chunk=``, ...).

    Examples
    --------
    >>> import xrembed
    >>> from xrembed import EmbedRequest
    >>> request = EmbedRequest(xrembed.open_raster("earth.zarr"), "dofa", variant="base")  # doctest: +SKIP
    >>> xrembed.to_zarr(request, "earth-emb.zarr", window=64)                              # doctest: +SKIP
    """

    def __init__(self, raster: xr.DataArray | xr.Dataset, model: str, **options: Any) -> None:
        from . import embedding, tiling
        from .geo import north_up, spatial_dims
        from .models.weights import WeightsSource
        from .options import EmbedOptions, positive_int
        from .sources.precomputed import is_product

        opts = EmbedOptions.from_kwargs(options, where="EmbedRequest()")
        usage = "stream it with xrembed.to_zarr(raster.rsembed.embed(...), store) instead (one whole graph)"
        if is_product(model):
            raise OptionError(f"{model!r} is a precomputed product, not a model an EmbedRequest runs; open it with "
                              "xrembed.open_precomputed and write it with to_zarr.")
        tiling.check_input_prep(model, opts.input_prep, opts.variant)
        if tiling.overlap_stride(model, opts.input_prep, opts.variant) is not None:
            raise OptionError(f"an EmbedRequest streams abutting tiles; overlapping tiles (a stride below the tile "
                              f"size) are not windowed yet: {usage}.")
        self.tiles_per_chunk = positive_int("tiles_per_chunk", opts.tiles_per_chunk)
        raster = north_up(raster)
        self.y_dim, self.x_dim = spatial_dims(raster)
        if not _is_dask(raster):  # numpy or lazily indexed (a file opened without chunks): dask, nothing read
            from .sources.raster import DEFAULT_CHUNK

            raster = raster.chunk({self.y_dim: DEFAULT_CHUNK, self.x_dim: DEFAULT_CHUNK})
        whole = embedding._prepare(raster, model, opts)
        if whole.output != "grid" or whole.input_prep != "tile" or whole.space != "tokens":
            raise OptionError(
                "an EmbedRequest streams grid tokens of input_prep='tile' (output='grid', space='tokens'); got "
                f"output={whole.output!r}, input_prep={whole.input_prep!r}, space={whole.space!r}: {usage}."
            )
        self.raster, self.model, self.options = raster, model, opts
        self.request = whole
        self.weights = WeightsSource(whole.key.weights_path, whole.weights_label)
        v = getattr(whole, "run_variant", whole.adapter.variant)  # tile mode: the tiles' own size
        self.patch_size = v.patch_size
        self.step = v.tile_tokens * self.tiles_per_chunk  # tokens per region side
        height, width = whole.grid.shape
        #: The whole grid's chunks along y and x as embed() makes them (a short last one merged).
        self.token_chunks = (
            tiling.chunk_tokens(tiling.token_count(height, v.patch_size), v.tile_tokens, self.tiles_per_chunk),
            tiling.chunk_tokens(tiling.token_count(width, v.patch_size), v.tile_tokens, self.tiles_per_chunk),
        )

    def template(self) -> xr.DataArray:
        """The whole embedding grid, georeferenced, over an empty lazy array (no graph of the model)."""
        import dask.array as dsa

        from . import embedding

        req = self.request
        extra_chunks = tuple(req.data.chunks[: len(req.extra)])
        shape = tuple(sum(c) for c in extra_chunks) + (req.adapter.variant.embed_dim,) + tuple(
            sum(c) for c in self.token_chunks)
        chunks = extra_chunks + ((shape[len(extra_chunks)],),) + tuple(
            _regular(sum(c), self.step) for c in self.token_chunks)
        return embedding._wrap(req, dsa.empty(shape, chunks=chunks, dtype=np.float32))

    def source(self) -> tuple[Any, str]:
        """``(input, graph)`` tokens for :func:`request_identity`: the input's source layers, and the whole
        computation (input, model key, plan, nodata, batching, chunking), with no graph of the model built."""
        from dask.base import tokenize

        req = self.request
        graph = req.data.data.__dask_graph__()
        roots = sorted(name for name, deps in graph.dependencies.items() if not deps)
        token = tokenize(req.data.data.name, req.key, req.plan, req.nodata, req.batch_size, self.tiles_per_chunk,
                         self.token_chunks)
        return roots, f"xrembed-request-{token}"

    def windows(self, window: int) -> Iterator[tuple[slice, slice]]:
        """Token ranges ``(rows, cols)`` of the windows: ``window`` regions per side, on the whole grid's chunks."""
        groups = [_group(chunks, window * self.step) for chunks in self.token_chunks]
        for rows in groups[0]:
            for cols in groups[1]:
                yield rows, cols

    def window_data(self, rows: slice, cols: slice):
        """The lazy embeddings of the tokens ``rows`` x ``cols`` (a window), laid out as the whole grid's."""
        import dataclasses

        from . import embedding

        height, width = self.request.grid.shape
        p = self.patch_size
        ys = slice(rows.start * p, height if rows.stop * p >= height else rows.stop * p)
        xs = slice(cols.start * p, width if cols.stop * p >= width else cols.stop * p)
        part = self.raster.isel({self.y_dim: ys, self.x_dim: xs})
        req = embedding._prepare(part, self.model, self.options, weights_source=self.weights)
        req = dataclasses.replace(req, plan=self.request.plan)  # the whole raster's plan (centre, dates ...)
        return embedding._compute(req, embedding._as_array(req.data), self.tiles_per_chunk)


def _is_dask(obj) -> bool:
    """Whether every variable of ``obj`` (DataArray or Dataset) is dask-backed."""
    import dask.array as dsa

    variables = [obj.variable] if isinstance(obj, xr.DataArray) else [v.variable for v in obj.data_vars.values()]
    return all(isinstance(v.data, dsa.Array) for v in variables)


def _regular(total: int, step: int) -> tuple[int, ...]:
    sizes = [step] * (total // step)
    return tuple(sizes + [total - step * len(sizes)] if total % step else sizes)


def _group(chunks: tuple[int, ...], span: int) -> list[slice]:
    """Consecutive ``chunks`` grouped into token ranges of about ``span`` (never splitting a chunk)."""
    groups, start, stop = [], 0, 0
    for size in chunks:
        if stop - start >= span:
            groups.append(slice(start, stop))
            start = stop
        stop += size
    groups.append(slice(start, stop))
    return groups


# ---------------------------------------------------------------------------------------------
# Writing


def to_zarr(
    emb: xr.DataArray | EmbedRequest,
    store: str | os.PathLike,
    *,
    resume: bool = True,
    overwrite: bool = False,
    show_progress: bool = True,
    batch_regions: int | None = None,
    window: int | None = None,
) -> Path:
    """Write the (lazy) embedding grid ``emb`` to the Zarr store ``store``, kill-safe and resumable.

    Regions (one per Zarr chunk, aligned to the dask chunks) are computed in bounded batches and each is
    recorded as soon as its chunk is written, so a job killed at any moment (SIGKILL, a lost node, a
    wall-clock limit) reruns only the missing regions and ends with the store an uninterrupted run gives.
    The store carries the grid's CRS (a ``spatial_ref`` coordinate), the ``proj:``/``spatial:``/``geoemb:``
    Zarr conventions that exports write, the embedding attrs, and NaN as its fill value. With a
    ``dask.distributed`` client active, regions run on the cluster (each worker writes its own chunks: the
    store and its state folder must be on a file system every worker sees).

    Parameters
    ----------
    emb
        An embedding DataArray, e.g. from ``da.rsembed.embed(...)`` (a lazy grid streams; a numpy-backed one
        is written in 256-cell chunks), or an :class:`EmbedRequest` for a raster too large for one graph
        (Earth's land at 10 m): its graph is built one window of regions at a time.
    store
        Path of the Zarr store (a folder). Its progress is kept beside it in ``.<name>.xrembed-stream/``
        until the store is complete.
    resume
        ``True`` (default): continue a store this same request started (model, weights, options, input and
        grid all equal), computing only the regions not recorded; a store of another request is refused
        with :class:`ResumeMismatchError` naming what changed. ``False``: start again, replacing a store
        xrembed wrote.
    overwrite
        Replace whatever is at ``store``, even a folder xrembed cannot prove it wrote, or the store of
        another request.
    show_progress
        A tqdm bar with regions done, ETA and km²/h.
    batch_regions
        Regions submitted at a time (default: four per worker thread, at least 8; on a cluster at most two
        batches are in flight); bounds the scheduler's memory whatever the raster size. Each batch culls
        the whole graph once on the client (about 8 µs per region of the raster, measured in
        ``benchmarks/bench_scale.py graph``), so very large rasters want larger batches, or windows.
    window
        For an :class:`EmbedRequest`: regions per side of a window (default 64, i.e. 4,096 regions, about
        57,000 px a side for a ViT-B/16 at the default chunking). Only windows with a region still to do are
        built. The store does not depend on it: a run may be resumed with another window.

    Returns
    -------
    pathlib.Path
        The store, complete.

    Examples
    --------
    >>> import xrembed
    >>> emb = xrembed.open_raster("sample").rsembed.embed("dofa", weights="random")  # doctest: +SKIP
    >>> xrembed.to_zarr(emb, "emb.zarr")                                             # doctest: +SKIP
    >>> xr.open_zarr("emb.zarr")["embeddings"].rio.crs                               # doctest: +SKIP
    CRS.from_epsg(32629)
    """
    request = emb if isinstance(emb, EmbedRequest) else None
    if request is None and not isinstance(emb, xr.DataArray):
        raise OptionError(
            f"to_zarr writes an embedding DataArray or an EmbedRequest, got {type(emb).__name__}; pass e.g. "
            "emb = da.rsembed.embed(...)."
        )
    if batch_regions is not None and (isinstance(batch_regions, bool) or int(batch_regions) < 1):
        raise OptionError(f"batch_regions must be a positive integer, got {batch_regions!r}.")
    if window is not None:
        if request is None:
            raise OptionError(
                "window= applies to an EmbedRequest (its graph is built one window at a time); the graph of a "
                "DataArray exists already. Pass xrembed.stream.EmbedRequest(raster, model, **options) instead."
            )
        if isinstance(window, bool) or not isinstance(window, int) or window < 1:
            raise OptionError(f"window must be a positive integer (regions per side), got {window!r}.")
    path = Path(os.fspath(store)).expanduser()
    state = path.parent / f".{path.name}{STATE_SUFFIX}"
    if request is not None:
        emb = request.template()
        plan = StreamPlan(emb.data)
        identity = request_identity(emb, plan.data, source=request.source())
    else:
        plan = plan_regions(emb)
        identity = request_identity(emb, plan.data)
    identity_hash = fingerprint(identity=identity)

    _remove_stale_temporaries(path)
    recorded = _read_record(path) if path.exists() else None
    fresh = True
    if path.exists() or path.is_symlink():
        check_replaceable(path, overwrite=overwrite, what="Zarr store")  # refuses what xrembed did not write
        if resume and not overwrite and _has_content(path):
            if recorded is None:
                raise ResumeMismatchError(
                    f"{path} was written by xrembed, but not by to_zarr (it has no stream record), so it cannot be "
                    "resumed. Write to another path, or pass resume=False to replace it."
                )
            why = _difference(recorded.get("identity", {}), identity)
            if why is not None:
                raise ResumeMismatchError(
                    f"cannot resume {path}: {why} since the store was started. Write to another path, or pass "
                    "resume=False (or overwrite=True) to replace it."
                )
            fresh = False
    if fresh:
        _remove_owned(path, overwrite=overwrite)
        _remove_owned(state, overwrite=overwrite)
        mark_state(state)
        _create_store(path, emb, plan, identity, identity_hash)
    elif recorded.get("complete"):
        _consolidate(path)  # a run killed between marking complete and consolidating
        _remove_owned(state, overwrite=False)
        return path
    else:
        mark_state(state)  # the store may have been created just before a kill, its state folder not yet

    regions_dir = state / "regions"
    regions_dir.mkdir(parents=True, exist_ok=True)
    pending, done = _pending(plan, os.listdir(regions_dir))
    if request is not None:
        tasks = _window_tasks(request, plan, pending, window or DEFAULT_WINDOW, path, regions_dir, identity_hash)
    else:
        tasks = _whole_tasks(plan, pending, path, regions_dir, identity_hash)
    _write_regions(emb, plan, tasks, identity_hash, done, show_progress, batch_regions)
    _finish(path)
    _remove_owned(state, overwrite=False)
    return path


def _pending(plan: StreamPlan, recorded: list[str]) -> tuple[np.ndarray, int]:
    """A boolean array over the regions, True where a region is still to do, and how many are recorded
    (a million regions: one byte each, not a million tuples)."""
    pending = np.ones(plan.counts, dtype=bool)
    done = 0
    for name in recorded:
        try:
            index = tuple(int(part) for part in name.split("."))
        except ValueError:
            continue
        if len(index) == len(plan.counts) and all(0 <= i < n for i, n in zip(index, plan.counts)) and pending[index]:
            pending[index] = False
            done += 1
    return pending, done


def _has_content(path: Path) -> bool:
    return path.is_dir() and any(path.iterdir())


def _read_record(path: Path) -> dict | None:
    import json

    try:
        meta = json.loads((path / "zarr.json").read_text())
    except (OSError, ValueError):
        return None
    record = meta.get("attributes", {}).get(RECORD)
    return record if isinstance(record, dict) else None


def _remove_owned(path: Path, *, overwrite: bool) -> None:
    if not (path.exists() or path.is_symlink()):
        return
    check_replaceable(path, overwrite=overwrite, what="Zarr store")
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    else:
        path.unlink()


def _temporaries(path: Path) -> list[Path]:
    return sorted(path.parent.glob(f".{path.name}.xrembed-new-*")) if path.parent.exists() else []


def _remove_stale_temporaries(path: Path) -> None:
    """Remove what a killed run may have left: an unrenamed new store, Zarr's ``*.partial`` chunk files."""
    for tmp in _temporaries(path):
        # Marked from its first file on; killed before that, it holds nothing but Zarr's own temporaries.
        if is_owned(tmp) or all(p.is_file() and _PARTIAL.search(p.name) for p in tmp.iterdir()):
            shutil.rmtree(tmp, ignore_errors=True)
    if path.is_dir() and is_owned(path):
        for partial in path.rglob("*.partial"):
            if _PARTIAL.search(partial.name):
                partial.unlink(missing_ok=True)


def _create_store(path: Path, emb: xr.DataArray, plan: StreamPlan, identity: dict, identity_hash: str) -> None:
    """Write the store's metadata and coordinates beside it, then rename it into place (never half there)."""
    import dask.array as dsa

    # One dask chunk, never computed: only metadata is written (a template of the grid's own chunks would
    # make xarray build a write graph over every region: minutes for a million regions).
    template = dsa.empty(plan.data.shape, chunks=plan.data.shape, dtype=np.float32)
    da = emb.copy(data=template) if isinstance(emb.data, dsa.Array) else xr.DataArray(
        template, dims=emb.dims, coords=emb.coords, attrs=emb.attrs, name=emb.name)
    ds = da.rename("embeddings").to_dataset()
    ds.attrs = {
        **zarr_convention_attrs(emb),
        **{k: v for k, v in jsonable(emb.attrs).items() if v is not None},
        MARK: mark("stream"),
        RECORD: {"identity": identity, "fingerprint": identity_hash, "regions": plan.total, "complete": False},
    }
    for var in ds.variables.values():
        var.encoding.clear()
    encoding = {"embeddings": {"_FillValue": np.float32("nan"), "chunks": plan.zarr_chunks}}
    tmp = path.parent / f".{path.name}.xrembed-new-{uuid.uuid4().hex[:12]}"
    path.parent.mkdir(parents=True, exist_ok=True)
    from .export.ownership import mark_zarr

    mark_zarr(tmp, "stream")  # the mark comes first, so a killed run's leftover is provably xrembed's
    ds.to_zarr(tmp, mode="a", compute=False, consolidated=False, encoding=encoding, zarr_format=3, safe_chunks=False)
    if path.is_dir():
        path.rmdir()  # an empty folder the user made (anything else was refused or removed above)
    os.replace(tmp, path)


def _finish(path: Path) -> None:
    """Mark the record complete, then consolidate the metadata (each one atomic rewrite of ``zarr.json``)."""
    import zarr

    root = zarr.open_group(path, mode="r+")
    record = dict(root.attrs[RECORD])
    record["complete"] = True
    root.attrs[RECORD] = record
    _consolidate(path)


def _consolidate(path: Path) -> None:
    """Consolidate the store's metadata into its root ``zarr.json`` (Zarr writes it through a temporary file
    and a rename, so a kill leaves the old or the new file), unless it is consolidated already."""
    import json

    import zarr

    try:
        if "consolidated_metadata" in json.loads((path / "zarr.json").read_text()):
            return
    except (OSError, ValueError):
        pass
    with warnings.catch_warnings():  # "not part of the Zarr format 3 specification": xarray reads it
        warnings.simplefilter("ignore")
        zarr.consolidate_metadata(str(path))


#: Open Zarr arrays per (store, request fingerprint) in this process (a worker writes many regions).
_ARRAYS: dict[tuple[str, str], Any] = {}
#: Progress callbacks per request fingerprint, for regions written in this process.
_LISTENERS: dict[str, Any] = {}


def _write_region(block: np.ndarray, *, store: str, request: str, region: tuple[int, ...],
                  slices: tuple[slice, ...], regions_dir: str) -> np.ndarray:
    """Write one computed region into its Zarr chunk, then record it (the record comes last)."""
    import zarr

    array = _ARRAYS.get((store, request))
    if array is None:
        array = _ARRAYS[(store, request)] = zarr.open_array(store, path="embeddings", mode="r+")
    array[slices] = np.asarray(block, dtype=np.float32)
    Path(regions_dir, region_name(region)).touch()
    listener = _LISTENERS.get(request)
    if listener is not None:
        listener(region)
    return np.ones((1,) * block.ndim, dtype=np.int8)


def _write_block(block: np.ndarray, block_info=None, *, offset: tuple[int, ...], zarr_chunks: tuple[int, ...],
                 shape: tuple[int, ...], **kwargs) -> np.ndarray:
    """:func:`_write_region` for the block at ``offset`` + its chunk location (regions of the whole grid)."""
    region = tuple(int(o + i) for o, i in zip(offset, block_info[None]["chunk-location"]))
    slices = tuple(slice(r * c, min((r + 1) * c, n)) for r, c, n in zip(region, zarr_chunks, shape))
    return _write_region(block, region=region, slices=slices, **kwargs)


class _Source:
    """The write tasks of one array of regions (the whole grid, or one window ``offset`` regions in).

    Each batch culls the high-level graph to exactly the tasks its regions need (layer annotations such as
    ``resources={"GPU": 1}`` kept), in one go for all of them: one collection per region would cull the
    whole graph once per region.
    """

    def __init__(self, data, offset: tuple[int, ...], plan: StreamPlan, store: Path, regions_dir: Path,
                 request: str) -> None:
        write = data.map_blocks(
            _write_block, offset=tuple(int(o) for o in offset), zarr_chunks=plan.zarr_chunks,
            shape=tuple(int(n) for n in plan.data.shape), store=str(store), request=request,
            regions_dir=str(regions_dir), chunks=tuple((1,) * len(c) for c in data.chunks), dtype=np.int8,
            meta=np.empty((0,) * data.ndim, np.int8), name=f"xrembed-write-{request[:12]}-{data.name}",
        )
        self.name = write.name
        self.graph = write.__dask_graph__()

    def culled(self, indices: list[tuple[int, ...]]):
        """The keys of the blocks ``indices`` and the high-level graph of exactly the tasks they need."""
        keys = [(self.name, *index) for index in indices]
        return keys, self.graph.cull(keys)


def _whole_tasks(plan: StreamPlan, pending: np.ndarray, store: Path, regions_dir: Path, identity_hash: str):
    """``(region, source, index)`` for each region to do of a grid whose graph exists whole."""
    if not pending.any():
        return
    source = _Source(plan.data, (0,) * len(plan.counts), plan, store, regions_dir, identity_hash)
    for index in np.argwhere(pending):
        index = tuple(int(i) for i in index)
        yield index, source, index


def _window_tasks(request: EmbedRequest, plan: StreamPlan, pending: np.ndarray, window: int, store: Path,
                  regions_dir: Path, identity_hash: str) -> Iterator[tuple[tuple[int, ...], _Source, tuple[int, ...]]]:
    """``(region, source, index)`` for each region to do, window by window; a window's graph is built only
    when one of its regions is to do, and only when the runner asks for its tasks (one window at a time)."""
    ndim = len(plan.counts)
    step = request.step
    for rows, cols in request.windows(window):
        ry = slice(rows.start // step, -(-rows.stop // step))
        rx = slice(cols.start // step, -(-cols.stop // step))
        wanted = np.argwhere(pending[(Ellipsis, ry, rx)])
        if not len(wanted):
            continue
        data = request.window_data(rows, cols)
        expected = plan.chunks[: ndim - 2] + (plan.chunks[ndim - 2][ry], plan.chunks[ndim - 1][rx])
        if tuple(data.chunks) != expected:  # a window must be exactly its regions of the whole grid
            raise RuntimeError(f"window {rows}, {cols} has chunks {data.chunks}, not the grid's {expected}")
        offset = (0,) * (ndim - 2) + (ry.start, rx.start)
        source = _Source(data, offset, plan, store, regions_dir, identity_hash)
        for index in wanted:
            index = tuple(int(i) for i in index)
            yield tuple(i + o for i, o in zip(index, offset)), source, index


def _batch_graph(batch: list):
    """The keys of ``(region, source, index)`` items (in order) and one graph of the tasks they all need:
    one cull per source, handed over as one graph (one collection per region would materialise the batch's
    graph once per region)."""
    from dask.highlevelgraph import HighLevelGraph

    by_source: dict[int, tuple[_Source, list]] = {}
    for position, (_region, source, index) in enumerate(batch):
        by_source.setdefault(id(source), (source, []))[1].append((position, index))
    keys: list = [None] * len(batch)
    graphs = []
    for source, items in by_source.values():
        source_keys, graph = source.culled([index for _, index in items])
        graphs.append(graph)
        for (position, _index), key in zip(items, source_keys):
            keys[position] = key
    return keys, graphs[0] if len(graphs) == 1 else HighLevelGraph.merge(*graphs)


def _write_regions(emb, plan: StreamPlan, tasks: Iterator, request: str, done: int, show_progress: bool,
                   batch_regions: int | None) -> None:
    bar = _Progress(emb, plan, done, show_progress)
    try:
        client = _client()
        if client is not None:
            _run_distributed(client, tasks, bar, batch_regions)
        else:
            _run_local(tasks, bar, batch_regions, request)
    finally:
        bar.close()


def _run_local(tasks: Iterator, bar, batch_regions, request: str) -> None:
    import dask
    import dask.threaded

    threads = dask.config.get("num_workers", None) or os.cpu_count() or 1
    size = batch_regions or max(8, 4 * threads)
    # Dask fuses each region's tasks under new names, so the write reports itself (threads share this
    # process); with a multiprocessing scheduler the bar catches up after each batch.
    _LISTENERS[request] = bar.advance
    try:
        get = dask.base.get_scheduler() or dask.threaded.get  # the configured local scheduler
        while batch := list(islice(tasks, size)):
            keys, graph = _batch_graph(batch)
            get(graph, keys)
            for index, _, _ in batch:
                bar.advance(index)
    finally:
        _LISTENERS.pop(request, None)


def _run_distributed(client, tasks: Iterator, bar, batch_regions) -> None:
    """Regions in batches of ``size``, at most two batches in flight: each ``client.compute`` call culls the
    whole graph once (cost grows with the raster), so regions are never submitted one by one."""
    from distributed import as_completed

    threads = sum(client.nthreads().values()) or 1
    size = batch_regions or max(8, 4 * threads)

    def submit():
        batch = list(islice(tasks, size))
        if not batch:
            return []
        keys, graph = _batch_graph(batch)
        futures = client.get(graph, keys, sync=False)  # unfused: the layers keep their annotations
        for future, (index, _, _) in zip(futures, batch):
            future.xrembed_region = index
        return futures

    queue = as_completed(submit())
    for new in submit():
        queue.add(new)
    in_flight = queue.count()
    for future in queue:
        future.result()  # raises the task's error here
        bar.advance(future.xrembed_region)
        in_flight -= 1
        if in_flight <= size:
            batch = submit()
            for new in batch:
                queue.add(new)
            in_flight += len(batch)


def _client():
    """The active ``dask.distributed`` client, if any (without importing distributed)."""
    if "distributed" not in sys.modules:
        return None
    from distributed import default_client

    try:
        return default_client()
    except ValueError:
        return None


class _Progress:
    """A tqdm bar over regions, with km²/h from the grid's cell size."""

    def __init__(self, emb: xr.DataArray, plan: StreamPlan, done: int, show: bool) -> None:
        self.plan, self.dims = plan, tuple(emb.dims)
        self.seen: set = set()
        self.lock = threading.Lock()
        cell = emb.attrs.get("cell_size")
        gsd = emb.attrs.get("gsd")
        ratio = abs(cell[1] / cell[0]) if isinstance(cell, (list, tuple)) and len(cell) == 2 and cell[0] else 1.0
        self.cell_km2 = float(gsd) ** 2 * ratio / 1e6 if gsd else None
        self.km2 = 0.0
        self.start = time.monotonic()
        self.bar = None
        if show:
            from tqdm.auto import tqdm

            self.bar = tqdm(total=plan.total, initial=done, unit="region", desc="to_zarr", dynamic_ncols=True)

    def advance(self, index) -> None:
        """Count region ``index`` as written (once, however often it is reported)."""
        index = tuple(int(i) for i in index)
        with self.lock:
            if index in self.seen:
                return
            self.seen.add(index)
            self._count(index)

    def _count(self, index) -> None:
        if self.cell_km2 is not None:
            self.km2 += self.plan.cells(index, self.dims) * self.cell_km2
        if self.bar is not None:
            hours = max(time.monotonic() - self.start, 1e-9) / 3600
            if self.cell_km2 is not None:
                self.bar.set_postfix_str(f"{self.km2 / hours:,.0f} km²/h", refresh=False)
            self.bar.update(1)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
