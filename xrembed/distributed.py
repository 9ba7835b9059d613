"""dask.distributed as the cluster engine: load models once per worker, keep model tasks on GPU workers.

Three pieces, all optional (``distributed`` is imported only here, never by ``import xrembed``):

* :class:`ModelPreload`, a worker plugin (``client.register_plugin(ModelPreload(...))``) that loads the
  model(s) of a request on every worker when it starts (and on workers that join or restart later), so
  the first tasks do not all wait on the load; it can also initialise Earth Engine on each worker
  (``ee_init_kwargs``) for graphs that read through xee.
* :func:`annotate_model_tasks`, which puts ``resources={"GPU": 1}`` (or any annotation) on the layers
  that run a model, leaving reads, rechunks and writes free to run on any worker.
* :func:`model_keys`, the model keys a graph uses (what the plugin loads).

``device="cuda"`` in a key means *the worker's current CUDA device*: ``dask_cuda.LocalCUDACluster`` (and
``dask-cuda-worker``) give each worker one GPU through ``CUDA_VISIBLE_DEVICES``, so ``cuda`` is that GPU.
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Mapping, Sequence
from typing import Any

import xarray as xr

from .engine import ModelKey, get_runtime

__all__ = ["ModelPreload", "annotate_model_tasks", "model_keys"]

log = logging.getLogger(__name__)

#: Name prefixes of the graph layers that run a model (the engine's block functions).
MODEL_LAYER_PREFIXES = ("embed-", "tile_grid_block-", "resize_block-", "pool_head_block-")


def _array(obj):
    import dask.array as dsa

    data = obj.data if isinstance(obj, xr.DataArray) else obj
    if not isinstance(data, dsa.Array):
        raise TypeError("a lazy (dask-backed) embedding is needed: embed a chunked raster, e.g. da.chunk(...)")
    return data


def _is_model_layer(name: str) -> bool:
    return str(name).startswith(MODEL_LAYER_PREFIXES)


def model_keys(emb: xr.DataArray) -> list[ModelKey]:
    """The :class:`~xrembed.engine.ModelKey` of every model the graph of ``emb`` runs (no pixels read).

    Examples
    --------
    >>> emb = xrembed.open_raster("sample").rsembed.embed("dofa", weights="random")  # doctest: +SKIP
    >>> [k.model_id for k in model_keys(emb)]                                         # doctest: +SKIP
    ['dofa']
    """
    graph = _array(emb).__dask_graph__()
    found: list[ModelKey] = []
    for name, layer in graph.layers.items():
        # Model layers are Blockwise (map_blocks): one task template holds the block function's keywords,
        # so nothing is materialised here.
        task = getattr(layer, "task", None)
        if _is_model_layer(name) and task is not None:
            for key in _walk(task):
                if key not in found:
                    found.append(key)
    return found


def _walk(value, depth: int = 0):
    """ModelKeys inside a task template (its args, kwargs and wrapped values), depth-limited."""
    if depth > 8 or isinstance(value, (str, bytes, int, float)):
        return
    if isinstance(value, ModelKey):
        yield value
    elif isinstance(value, Mapping):
        for v in value.values():
            yield from _walk(v, depth + 1)
    elif isinstance(value, (list, tuple)):
        for v in value:
            yield from _walk(v, depth + 1)
    else:
        for attr in ("args", "kwargs", "value"):
            inner = getattr(value, attr, None)
            if inner is not None and not callable(inner):
                yield from _walk(inner, depth + 1)


def annotate_model_tasks(emb: xr.DataArray, **annotations) -> xr.DataArray:
    """``emb`` with ``annotations`` (e.g. ``resources={"GPU": 1}``) on the tasks that run a model only.

    With workers started as ``dask worker ... --resources "GPU=1"`` (or ``LocalCUDACluster``, whose
    workers have no resources until given ``resources={"GPU": 1}``), the scheduler places the model tasks
    on GPU workers while reading, rechunking and writing run on any worker. ``dask.annotate`` around the
    whole ``embed()`` call would pin every task of the graph instead.

    Examples
    --------
    >>> emb = annotate_model_tasks(da.rsembed.embed("dofa"), resources={"GPU": 1})  # doctest: +SKIP
    """
    import dask.array as dsa
    from dask.highlevelgraph import HighLevelGraph

    data = _array(emb)
    graph = data.__dask_graph__()
    layers = {}
    touched = 0
    for name, layer in graph.layers.items():
        if _is_model_layer(name):
            layer = copy.copy(layer)
            layer.annotations = {**(layer.annotations or {}), **annotations}
            touched += 1
        layers[name] = layer
    if not touched:
        raise ValueError("no model layer found in this graph; annotate the output of rsembed.embed(...)")
    new = dsa.Array(HighLevelGraph(layers, dict(graph.dependencies)), data.name, data.chunks, meta=data._meta)
    return emb.copy(data=new)


try:
    from distributed.diagnostics.plugin import WorkerPlugin as _WorkerPlugin
except ImportError:  # pragma: no cover - distributed is optional; the class still documents itself
    _WorkerPlugin = object


class ModelPreload(_WorkerPlugin):
    """A worker plugin that loads models when a worker starts, and optionally initialises Earth Engine.

    Parameters
    ----------
    keys
        Model keys to load (from :func:`model_keys`), or embedding DataArrays whose models to load.
    ee_init_kwargs
        Keyword arguments of ``ee.Initialize`` (e.g. ``{"project": "my-project"}``), run on each worker
        before the models load; ``None`` leaves Earth Engine alone.
    compile
        Opt in to ``torch.compile`` for the models loaded on the workers (:func:`xrembed.engine.set_compile`).

    Examples
    --------
    >>> from distributed import Client, LocalCluster                                 # doctest: +SKIP
    >>> client = Client(LocalCluster(n_workers=2, threads_per_worker=1))             # doctest: +SKIP
    >>> emb = da.chunk({"y": 1792, "x": 1792}).rsembed.embed("dofa", variant="base")  # doctest: +SKIP
    >>> client.register_plugin(ModelPreload([emb]))                                  # doctest: +SKIP
    >>> xrembed.to_zarr(emb, "emb.zarr")                                             # doctest: +SKIP
    """

    name = "xrembed-model-preload"
    idempotent = True

    def __init__(self, keys: Sequence[ModelKey | xr.DataArray] = (), *, ee_init_kwargs: Mapping | None = None,
                 compile: bool = False) -> None:
        resolved: list[ModelKey] = []
        for item in keys:
            for key in ([item] if isinstance(item, ModelKey) else model_keys(item)):
                if key not in resolved:
                    resolved.append(key)
        self.keys = tuple(resolved)
        self.ee_init_kwargs = dict(ee_init_kwargs) if ee_init_kwargs is not None else None
        self.compile = bool(compile)

    def setup(self, worker=None) -> None:
        """Run on each worker at start: Earth Engine first (if asked), then each model, loaded once."""
        if self.ee_init_kwargs is not None:
            import ee

            ee.Initialize(**self.ee_init_kwargs)
        if self.compile:
            from .engine import set_compile

            set_compile(True)
        for key in self.keys:
            get_runtime(key)
            log.info("xrembed: loaded %s/%s on %s", key.model_id, key.variant, key.device)

    def teardown(self, worker=None) -> None:
        """Nothing to free explicitly: the models go with the worker process."""
