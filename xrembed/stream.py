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
finished store holds the same files and values as an uninterrupted run's.
"""

from __future__ import annotations

import os
import re
import shutil
import sys
import threading
import time
import uuid
from collections.abc import Iterable, Iterator
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

__all__ = ["ResumeMismatchError", "StreamPlan", "plan_regions", "request_identity", "to_zarr"]

#: Root group attribute holding the request identity and the completion flag.
RECORD = "xrembed_stream"
STATE_SUFFIX = ".xrembed-stream"
#: Chunk side (cells) used for an eager (numpy) grid, which has no dask chunks to follow.
EAGER_CHUNK = 256
_PARTIAL = re.compile(r"\.[0-9a-f]{32}\.partial$")
#: Identity parts, in the order a mismatch is reported.
_PARTS = ("model", "weights", "options", "xrembed", "input", "grid", "graph")


# ---------------------------------------------------------------------------------------------
# Identity of a request


def request_identity(emb: xr.DataArray, data=None) -> dict[str, Any]:
    """What determines the values of ``emb``, split into the parts a refusal names.

    ``data`` is the dask array that will be written (``emb.data`` after any rechunking).

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
    if lazy:  # the graph's source layers: their tokens change with the source files (path, mtime) or arrays
        graph = data.__dask_graph__()
        roots = sorted(name for name, deps in graph.dependencies.items() if not deps)
    else:  # an in-memory grid was computed before: its content stands for its input
        roots = {"in_memory_values": tokenize(np.asarray(emb.values))}
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
        "graph": data.name,
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
# Writing


def to_zarr(
    emb: xr.DataArray,
    store: str | os.PathLike,
    *,
    resume: bool = True,
    overwrite: bool = False,
    show_progress: bool = True,
    batch_regions: int | None = None,
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
        is written in 256-cell chunks).
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
        ``benchmarks/bench_scale.py graph``), so very large rasters want larger batches.

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
    if not isinstance(emb, xr.DataArray):
        raise OptionError(f"to_zarr writes an embedding DataArray, got {type(emb).__name__}; pass e.g. emb = da.rsembed.embed(...).")
    if batch_regions is not None and (isinstance(batch_regions, bool) or int(batch_regions) < 1):
        raise OptionError(f"batch_regions must be a positive integer, got {batch_regions!r}.")
    path = Path(os.fspath(store)).expanduser()
    state = path.parent / f".{path.name}{STATE_SUFFIX}"
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
        _remove_owned(state, overwrite=False)
        return path
    else:
        mark_state(state)  # the store may have been created just before a kill, its state folder not yet

    regions_dir = state / "regions"
    regions_dir.mkdir(parents=True, exist_ok=True)
    done = {p.name for p in regions_dir.iterdir()}
    todo = [index for index in plan.indices() if region_name(index) not in done]
    _write_regions(emb, plan, path, regions_dir, identity_hash, todo, len(done), show_progress, batch_regions)
    _finish(path)
    _remove_owned(state, overwrite=False)
    return path


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

    template = dsa.empty(plan.data.shape, chunks=plan.data.chunks, dtype=np.float32)
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
    ds.to_zarr(tmp, mode="a", compute=False, consolidated=False, encoding=encoding, zarr_format=3)
    if path.is_dir():
        path.rmdir()  # an empty folder the user made (anything else was refused or removed above)
    os.replace(tmp, path)


def _finish(path: Path) -> None:
    import zarr

    root = zarr.open_group(path, mode="r+")
    record = dict(root.attrs[RECORD])
    record["complete"] = True
    root.attrs[RECORD] = record


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


def _region_task(plan: StreamPlan, index: tuple[int, ...], store: Path, regions_dir: Path, request: str):
    block = plan.data.blocks[index]
    return block.map_blocks(
        _write_region, store=str(store), request=request, region=tuple(int(i) for i in index), slices=plan.slices(index),
        regions_dir=str(regions_dir), chunks=tuple((1,) for _ in index), dtype=np.int8,
        meta=np.empty((0,) * len(index), np.int8), name=f"xrembed-write-{region_name(index)}-{plan.data.name}",
    )


def _write_regions(emb, plan: StreamPlan, store: Path, regions_dir: Path, request: str, todo: list, done: int,
                   show_progress: bool, batch_regions: int | None) -> None:
    bar = _Progress(emb, plan, done, show_progress)
    try:
        client = _client()
        if client is not None:
            _run_distributed(client, plan, store, regions_dir, request, todo, bar, batch_regions)
        else:
            _run_local(plan, store, regions_dir, request, todo, bar, batch_regions)
    finally:
        bar.close()


def _run_local(plan, store, regions_dir, request, todo, bar, batch_regions) -> None:
    import dask

    threads = dask.config.get("num_workers", None) or os.cpu_count() or 1
    size = batch_regions or max(8, 4 * threads)
    # Dask fuses each region's tasks under new names, so the write reports itself (threads share this
    # process); with a multiprocessing scheduler the bar catches up after each batch.
    _LISTENERS[request] = bar.advance
    try:
        for start in range(0, len(todo), size):
            batch = todo[start : start + size]
            dask.compute(*[_region_task(plan, index, store, regions_dir, request) for index in batch])
            for index in batch:
                bar.advance(index)
    finally:
        _LISTENERS.pop(request, None)


def _run_distributed(client, plan, store, regions_dir, request, todo, bar, batch_regions) -> None:
    """Regions in batches of ``size``, at most two batches in flight: each ``client.compute`` call culls the
    whole graph once (cost grows with the raster), so regions are never submitted one by one."""
    from distributed import as_completed

    threads = sum(client.nthreads().values()) or 1
    size = batch_regions or max(8, 4 * threads)
    pending = iter(range(0, len(todo), size))

    def submit():
        start = next(pending, None)
        if start is None:
            return []
        batch = todo[start : start + size]
        futures = client.compute([_region_task(plan, index, store, regions_dir, request) for index in batch])
        for future, index in zip(futures, batch):
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
