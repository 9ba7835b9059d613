"""Scale-out figures: CPU precisions, graph size for huge rasters, per-task overhead, end-to-end rate.

    python benchmarks/bench_scale.py precision [--size 896] [--repeats 2]
    python benchmarks/bench_scale.py graph [--sizes 200000 1000000]
    python benchmarks/bench_scale.py overhead [--workers 2] [--variants tiny base]
    python benchmarks/bench_scale.py rate [--size 1792]

``precision``: DOFA-base (random weights) over a crop of the real Sentinel-2 scene in ``../shared/data``
(9 bands at 100 m, lazy), end to end through ``.rsembed.embed(...).compute()`` in fp32, bf16 (autocast)
and int8 (dynamic quantisation of the Linear layers): best-of-N time, speed-up over fp32, and the minimum
cosine similarity of each cell's token to its fp32 token.

``graph``: a lazy raster of ``size x size`` px (10 m, 9 bands, generated) embedded with a model that does
no work (``weights="random"`` is never loaded: only graphs are built, nothing computes), each size and
path in its own process. ``whole``: wall time and peak RSS for building ``emb`` (the whole graph), and for
culling one batch of 32 regions out of it. ``window``: ``to_zarr(EmbedRequest(...), window=64)`` on the
client: the request, the store's metadata, then the first windows' graphs with every batch culled and
materialised (what the scheduler is handed), peak RSS after each window (flat = bounded by the window),
and the client's time per region.

``overhead``: on a ``LocalCluster(processes=True)`` with 2 workers, the time of a task that embeds one
default chunk (4 x 4 tiles) against the bare forward of the same tiles in the worker (model loaded once
per worker first): the engine's per-task overhead relative to the forward, for dofa-tiny and DOFA-base.

``rate``: the end-to-end rate (tiles/s, km²/h at 10 m) of ``to_zarr`` from a local GeoTIFF, split into
read, prepare (normalise + tile), forward and write time, against the bare forward.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np

warnings.simplefilter("ignore")
ROOT = Path(__file__).resolve().parents[1]
SCENE = ROOT.parent / "shared" / "data" / "S2A_29RKH_20200219_0_L2A"
DOFA_BANDS = ["B04", "B03", "B02", "B05", "B06", "B07", "B08", "B11", "B12"]


def _peak_rss_gb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


def _min_cosine(a: np.ndarray, b: np.ndarray) -> float:
    """Minimum over cells of the cosine between ``a`` and ``b`` (``(D, y, x)``), NaN cells skipped."""
    a = a.reshape(a.shape[0], -1)
    b = b.reshape(b.shape[0], -1)
    ok = np.isfinite(a).all(axis=0) & np.isfinite(b).all(axis=0)
    a, b = a[:, ok].astype(np.float64), b[:, ok].astype(np.float64)
    cos = (a * b).sum(0) / (np.linalg.norm(a, axis=0) * np.linalg.norm(b, axis=0))
    return float(cos.min())


# ---------------------------------------------------------------------------------------------


def precision(args) -> dict:
    import xrembed
    from xrembed import engine

    raster = xrembed.open_raster(SCENE, bands=DOFA_BANDS, resolution=100.0)
    raster = raster.isel(y=slice(0, args.size), x=slice(0, args.size))
    tiles = (args.size // 224) ** 2
    results, reference = {}, None
    for prec in args.precisions:
        emb = raster.rsembed.embed("dofa", variant="base", weights="random", precision=prec, batch_size=8)
        emb.isel(y=slice(0, 1), x=slice(0, 1)).compute()  # load (and quantise) the model first
        times = []
        for _ in range(args.repeats):
            start = time.perf_counter()
            values = emb.values
            times.append(time.perf_counter() - start)
        if reference is None:
            reference = values
        results[prec] = {
            "seconds": min(times), "tiles_per_s": tiles / min(times),
            "speedup_vs_fp32": (results["fp32"]["seconds"] / min(times)) if "fp32" in results else 1.0,
            "min_cosine_vs_fp32": _min_cosine(values, reference),
        }
        engine.clear_runtimes()
        print(prec, json.dumps(results[prec]), flush=True)
    return {"size": args.size, "tiles": tiles, "torch_threads": __import__("torch").get_num_threads(), **results}


# ---------------------------------------------------------------------------------------------


def _huge_raster(size: int, chunk: int = 1792):
    import dask.array as dsa
    import xarray as xr
    from affine import Affine

    res = 10.0
    data = dsa.zeros((len(DOFA_BANDS), size, size), chunks=(len(DOFA_BANDS), chunk, chunk), dtype="uint16")
    da = xr.DataArray(data, dims=("band", "y", "x"), coords={"band": DOFA_BANDS})
    # Coordinates as lazy index-free arrays would still be size-long vectors: 8 MB per million px, kept.
    da = da.assign_coords(y=4200000 - res * (np.arange(size) + 0.5), x=500000 + res * (np.arange(size) + 0.5))
    return da.rio.write_crs("EPSG:32629").rio.write_transform(Affine(res, 0, 500000, 0, -res, 4200000))


def graph_one(size: int) -> dict:
    """Build (never compute) the whole graph for one size, in this process."""
    import dask

    import xrembed
    from xrembed import stream

    start = time.perf_counter()
    raster = _huge_raster(size)
    emb = raster.rsembed.embed("dofa", variant="base", weights="random")
    built = time.perf_counter() - start
    rss_built = _peak_rss_gb()
    graph = emb.data.__dask_graph__()
    layers = {name: type(layer).__name__ for name, layer in graph.layers.items()}
    materialised = sum(1 for t in layers.values() if t == "MaterializedLayer")
    start = time.perf_counter()
    plan = stream.plan_regions(emb)
    identity = stream.request_identity(emb, plan.data)
    source = stream._Source(plan.data, (0,) * len(plan.counts), plan, Path("/nonexistent"), Path("/nonexistent"), "bench")
    batch = [(index, source, index) for index in list(plan.indices())[:32]]
    _keys, graph = stream._batch_graph(batch)
    dict(graph)
    cull = time.perf_counter() - start
    return {
        "path": "whole", "size_px": size, "area_km2": (size * 10 / 1000) ** 2, "regions": plan.total,
        "layers": len(layers), "materialised_layers": materialised, "graph_build_s": built,
        "peak_rss_gb_after_build": rss_built, "one_batch_of_32_cull_s": cull, "peak_rss_gb": _peak_rss_gb(),
        "identity_parts": sorted(identity),
    }


def window_one(size: int, window: int, windows: int, batch: int = 32) -> dict:
    """``to_zarr(EmbedRequest(...), window=...)`` on the client, without computing: the request, the store's
    metadata, then the first ``windows`` windows' graphs built and each batch's graph culled and materialised
    (what ``dask.compute`` hands the scheduler), with the peak RSS after each window."""
    from itertools import islice

    import dask

    from xrembed import stream
    from xrembed.export.manifest import fingerprint

    timings = {}
    start = time.perf_counter()
    raster = _huge_raster(size)
    request = stream.EmbedRequest(raster, "dofa", variant="base", weights="random")
    timings["request_s"] = time.perf_counter() - start
    start = time.perf_counter()
    emb = request.template()
    plan = stream.StreamPlan(emb.data)
    identity = stream.request_identity(emb, plan.data, source=request.source())
    tmp = Path(tempfile.mkdtemp(prefix="xrembed-bench-"))
    stream._create_store(tmp / "emb.zarr", emb, plan, identity, fingerprint(identity=identity))
    timings["template_and_store_metadata_s"] = time.perf_counter() - start
    start = time.perf_counter()
    pending, _done = stream._pending(plan, [])
    timings["list_regions_s"] = time.perf_counter() - start
    per_window = window * window
    tasks = stream._window_tasks(request, plan, pending, window, tmp / "emb.zarr", tmp / "regions", "bench")
    rss, seconds = [], []
    for _ in range(windows):
        start = time.perf_counter()
        done = 0
        while done < per_window:
            items = list(islice(tasks, min(batch, per_window - done)))
            if not items:
                break
            _keys, graph = stream._batch_graph(items)
            dict(graph)  # what the scheduler is handed
            done += len(items)
        seconds.append(time.perf_counter() - start)
        rss.append(_peak_rss_gb())
    n_windows = len(list(request.windows(window)))
    client_ms = 1000 * sum(seconds[1:] or seconds) / (len(seconds[1:] or seconds) * per_window)
    return {
        "path": "window", "size_px": size, "area_km2": (size * 10 / 1000) ** 2, "regions": plan.total,
        "window_regions_per_side": window, "windows": n_windows, **timings,
        "seconds_per_window": seconds, "peak_rss_gb_after_each_window": rss,
        "client_ms_per_region": client_ms,
        "client_hours_for_all_windows": client_ms * plan.total / 1000 / 3600,
        "peak_rss_gb": _peak_rss_gb(),
    }


def graph(args) -> dict:
    out = {}
    for size in args.sizes:
        for path in args.paths:
            command = ["graph-one", str(size)] if path == "whole" else [
                "window-one", str(size), "--window", str(args.window), "--windows", str(args.windows)]
            try:
                proc = subprocess.run([sys.executable, __file__, *command], capture_output=True, text=True,
                                      timeout=args.timeout)
            except subprocess.TimeoutExpired:
                result = {"path": path, "size_px": size, "error": f"did not finish within {args.timeout:.0f} s"}
            else:
                line = [l for l in proc.stdout.splitlines() if l.startswith("{")]
                result = json.loads(line[-1]) if line else {"path": path, "error": proc.stderr[-2000:]}
            out[f"{path}-{size}"] = result
            print(path, size, json.dumps(result), flush=True)
    return out


# ---------------------------------------------------------------------------------------------


def _task_vs_forward(variant: str, repeats: int) -> dict:
    """Runs in a worker: one default chunk through the engine's block function vs the bare forward."""
    import torch

    import xrembed
    from xrembed import engine

    size = {"tiny": 32, "base": 224}[variant] * 4  # a default chunk: 4 x 4 tiles
    model = "dofa-tiny" if variant == "tiny" else "dofa"
    raster = xrembed.testing.synthetic_raster((size, size), seed=0) if variant == "tiny" else None
    if raster is None:
        import xarray as xr
        from affine import Affine

        rng = np.random.default_rng(0)
        values = rng.uniform(200, 6000, (9, size, size)).astype("f4")
        raster = xr.DataArray(values, dims=("band", "y", "x"), coords={"band": DOFA_BANDS,
                              "y": 4200000 - 10 * (np.arange(size) + 0.5), "x": 500000 + 10 * (np.arange(size) + 0.5)})
        raster = raster.rio.write_crs("EPSG:32629").rio.write_transform(Affine(10, 0, 500000, 0, -10, 4200000))
    kwargs = {"weights": "random"} if variant == "tiny" else {"variant": "base", "weights": "random"}
    lazy = raster.chunk({"y": size, "x": size}).rsembed.embed(model, **kwargs)
    import dask

    with dask.config.set(scheduler="sync"):  # in this worker, not through the cluster
        lazy.values  # load the model
    (key,) = {k for k in engine._RUNTIMES}
    runtime = engine.get_runtime(key)
    adapter = runtime.adapter
    import xrembed.embedding as embedding

    req = embedding._prepare(raster, model, embedding.EmbedOptions(**kwargs))
    images = np.asarray(req.data.values, np.float32)[None]
    tiles = []
    step = adapter.variant.image_size
    for r in range(0, size, step):
        for c in range(0, size, step):
            tiles.append(images[0, :, r : r + step, c : c + step])
    tiles = torch.from_numpy(np.stack(tiles))
    with torch.inference_mode():
        prepared = runtime.prepare(tiles, req.plan)
    bare, task = [], []
    for _ in range(repeats):
        start = time.perf_counter()
        with torch.inference_mode():
            for i in range(0, prepared.shape[0], req.batch_size):
                adapter.forward_grid(runtime.module, prepared[i : i + req.batch_size], req.plan)
        bare.append(time.perf_counter() - start)
        start = time.perf_counter()
        engine.tile_grid_block(images, key=key, plan=req.plan, patch_size=adapter.variant.patch_size,
                               image_size=step, batch_size=req.batch_size, nodata=req.nodata)
        task.append(time.perf_counter() - start)
    return {"variant": variant, "tiles": len(tiles), "bare_forward_s": min(bare), "task_s": min(task),
            "overhead_pct": 100 * (min(task) - min(bare)) / min(bare), "torch_threads": torch.get_num_threads()}


def overhead(args) -> dict:
    import distributed

    out = {}
    with distributed.LocalCluster(n_workers=args.workers, threads_per_worker=1, processes=True,
                                  dashboard_address=None) as cluster, distributed.Client(cluster) as client:
        client.run(lambda: __import__("xrembed.testing").testing.register_test_models())
        for variant in args.variants:
            # Per-task scheduler round trip: an empty task's latency, measured on the same cluster.
            start = time.perf_counter()
            client.gather(client.map(lambda i: i, range(200), pure=False))
            empty_ms = (time.perf_counter() - start) / 200 * 1000
            result = client.submit(_task_vs_forward, variant, args.repeats, pure=False).result()
            result["scheduler_round_trip_ms_per_task"] = empty_ms
            result["overhead_with_scheduling_pct"] = 100 * (result["task_s"] + empty_ms / 1000 - result["bare_forward_s"]) / result["bare_forward_s"]
            out[variant] = result
            print(variant, json.dumps(result), flush=True)
    return out


# ---------------------------------------------------------------------------------------------


def rate(args) -> dict:
    """End to end from a local GeoTIFF to Zarr, with the time split by phase (summed over threads)."""
    import rasterio
    import torch
    from affine import Affine

    import xrembed
    from xrembed import engine

    tmp = Path(tempfile.mkdtemp(prefix="xrembed-bench-"))
    tif = tmp / "raster.tif"
    rng = np.random.default_rng(0)
    size = args.size
    with rasterio.open(tif, "w", driver="GTiff", width=size, height=size, count=9, dtype="uint16", crs="EPSG:32629",
                       transform=Affine(10, 0, 500000, 0, -10, 4200000), tiled=True, blockxsize=512, blockysize=512,
                       compress="deflate") as dst:
        dst.write(rng.integers(200, 6000, (9, size, size), dtype="uint16"))
        dst.descriptions = tuple(DOFA_BANDS)
    timings = {"read": 0.0, "prepare": 0.0, "forward": 0.0, "write": 0.0}

    def timed(name, fn):
        def wrapper(*a, **k):
            start = time.perf_counter()
            try:
                return fn(*a, **k)
            finally:
                timings[name] += time.perf_counter() - start
        return wrapper

    from xrembed import stream

    device = getattr(args, "device", "cpu")
    kwargs = {"variant": args.variant, "weights": "random", "device": device,
              "precision": getattr(args, "precision", "fp32")}
    sync = torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)
    engine.Runtime.prepare = timed("prepare", engine.Runtime.prepare)
    engine.Runtime._run = timed("forward", engine.Runtime._run)  # includes prepare: subtracted below
    engine._as_images = timed("read", engine._as_images)  # the cast/mask of read pixels (reads run in dask)
    write = stream._write_region
    stream._write_region = timed("write", write)
    raster = xrembed.open_raster(tif)
    emb = raster.rsembed.embed("dofa", **kwargs)
    emb.isel(y=slice(0, 1), x=slice(0, 1)).compute()
    for key in timings:
        timings[key] = 0.0
    start = time.perf_counter()
    stream.to_zarr(emb, tmp / "emb.zarr", show_progress=False)
    wall = time.perf_counter() - start
    timings["forward"] -= timings["prepare"]
    tiles = (size // 224) ** 2
    # The bare forward of the same number of tiles, normalised and in memory.
    runtime = engine.get_runtime(next(iter(engine._RUNTIMES)))
    batch = 32 if device.startswith("cuda") else 8
    x = torch.randn(batch, 9, 224, 224, device=runtime.device)
    plan = xrembed.embedding._prepare(raster, "dofa", xrembed.embedding.EmbedOptions(**kwargs)).plan
    dtype = {"fp32": None, "int8": None, "bf16": torch.bfloat16, "fp16": torch.float16}[kwargs["precision"]]
    sync()
    start = time.perf_counter()
    with torch.inference_mode(), torch.autocast(runtime.device.type, dtype=dtype, enabled=dtype is not None):
        for _ in range(0, tiles, batch):
            runtime.adapter.forward_grid(runtime.module, x, plan)
    sync()
    bare = time.perf_counter() - start
    km2 = (size * 10 / 1000) ** 2
    return {
        "size_px": size, "tiles": tiles, "wall_s": wall, "tiles_per_s": tiles / wall, "km2_per_h": km2 / wall * 3600,
        "bare_forward_s": bare, "bare_tiles_per_s": tiles / bare, "end_to_end_over_bare": bare / wall,
        "phase_s_summed_over_threads": timings,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="what", required=True)
    p = sub.add_parser("precision")
    p.add_argument("--size", type=int, default=896)
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--precisions", nargs="+", default=["fp32", "bf16", "int8"])
    p = sub.add_parser("graph")
    p.add_argument("--sizes", type=int, nargs="+", default=[200_000, 1_000_000])
    p.add_argument("--paths", nargs="+", default=["whole", "window"], choices=["whole", "window"])
    p.add_argument("--window", type=int, default=64)
    p.add_argument("--windows", type=int, default=3)
    p.add_argument("--timeout", type=float, default=1800)
    p = sub.add_parser("graph-one")
    p.add_argument("size", type=int)
    p = sub.add_parser("window-one")
    p.add_argument("size", type=int)
    p.add_argument("--window", type=int, default=64)
    p.add_argument("--windows", type=int, default=3)
    p = sub.add_parser("overhead")
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--variants", nargs="+", default=["tiny", "base"])
    p.add_argument("--repeats", type=int, default=3)
    p = sub.add_parser("rate")
    p.add_argument("--size", type=int, default=1792)
    p.add_argument("--variant", default="base")
    args = parser.parse_args()

    import xrembed.testing

    xrembed.testing.register_test_models()
    if args.what == "graph-one":
        print(json.dumps(graph_one(args.size)))
        return
    if args.what == "window-one":
        print(json.dumps(window_one(args.size, args.window, args.windows)))
        return
    result = {"precision": precision, "graph": graph, "overhead": overhead, "rate": rate}[args.what](args)
    print(json.dumps({"what": args.what, "cpus": os.cpu_count(), "result": result}, indent=1, default=str))


if __name__ == "__main__":
    main()
