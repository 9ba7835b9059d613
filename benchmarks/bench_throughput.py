"""Throughput of the accessor vs a bare batched forward of the same module over the same tiles.

    python benchmarks/bench_throughput.py [--model dofa] [--variant base] [--tiles-per-side 10] [--batch-size 8]
                                          [--repeats 3] [--no-bf16]

A lazy 2240 x 2240, 9-band raster (dask, generated chunk by chunk) is embedded with DOFA (random weights,
fp32) through ``.rsembed.embed`` and computed; the bare baseline runs the same loaded module on the same
100 tiles, already normalised and in memory, in batches of the same size. The model load is excluded
from both (warm-up first). Then the same with ``precision="bf16"`` (autocast): speed-up over fp32 and
the minimum cosine similarity of its tokens to the fp32 tokens.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
import warnings

import dask.array as dsa
import numpy as np
import torch
import xarray as xr
from affine import Affine

import xrembed
from xrembed import embedding, engine
from xrembed.geo import Grid
from xrembed.models.dofa import DEFAULT_BANDS

warnings.simplefilter("ignore", xrembed.errors.RandomWeightsWarning)


def lazy_raster(size: int, chunk: int = 1792, bands=DEFAULT_BANDS) -> xr.DataArray:
    rng = dsa.random.default_rng(0)
    data = rng.uniform(200, 6000, size=(len(bands), size, size), chunks=(1, chunk, chunk)).astype("f4")
    res = 10.0
    da = xr.DataArray(
        data, dims=("band", "y", "x"),
        coords={"band": list(bands), "y": 4200000 - res * (np.arange(size) + 0.5), "x": 500000 + res * (np.arange(size) + 0.5)},
    )
    return da.rio.write_crs("EPSG:32629").rio.write_transform(Affine(res, 0, 500000, 0, -res, 4200000))


def bare_forward(runtime: engine.Runtime, tiles: torch.Tensor, plan, batch_size: int, precision: str) -> tuple[float, np.ndarray]:
    dtype = {"fp32": None, "bf16": torch.bfloat16}[precision]
    outputs = []
    start = time.perf_counter()
    with torch.inference_mode(), torch.autocast("cpu", dtype=dtype, enabled=dtype is not None):
        for i in range(0, tiles.shape[0], batch_size):
            outputs.append(runtime.adapter.forward_grid(runtime.module, tiles[i : i + batch_size], plan).float())
    return time.perf_counter() - start, torch.cat(outputs).numpy()


def with_date_if_temporal(da: xr.DataArray, model: str) -> xr.DataArray:
    """Temporal models (Prithvi) read a dated time series: give the raster one acquisition date."""
    if xrembed.models.get_adapter(model).temporal:
        return da.expand_dims(time=np.array(["2020-02-19"], dtype="datetime64[ns]"))
    return da


def accessor_forward(da, model: str, variant: str, batch_size: int, precision: str) -> tuple[float, np.ndarray]:
    da = with_date_if_temporal(da, model)
    emb = da.rsembed.embed(model, variant=variant, weights="random", batch_size=batch_size, precision=precision,
                           input_prep="tile")
    start = time.perf_counter()
    values = emb.compute().values
    return time.perf_counter() - start, values


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", default="dofa")
    parser.add_argument("--variant", default=None)
    parser.add_argument("--tiles-per-side", type=int, default=10)
    parser.add_argument("--no-bf16", action="store_true")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    info = xrembed.describe_model(args.model, variant=args.variant)
    tile, patch = info["image_size"], info["patch_size"]
    n = args.tiles_per_side
    k = tile // patch
    size = n * k * patch  # n x n tiles exactly (a tile spans k patches; 384 px with patch 14 uses 378)
    da = lazy_raster(size, bands=info["bands"])
    results = {"machine": platform.processor() or platform.machine(), "torch_threads": torch.get_num_threads(),
               "model": args.model, "variant": info["variant"], "size": size, "batch_size": args.batch_size}
    # The same tiles the engine cuts (the size is a multiple of the tile: a plain n x n lattice), normalised once.
    stride = k * patch
    extra = tile - stride  # pixels a tile reads past its last patch: the engine repeats the edge there
    values = np.pad(da.values, ((0, 0), (0, extra), (0, extra)), mode="edge")
    tiles = np.stack([values[:, i * stride:i * stride + tile, j * stride:j * stride + tile] for i in range(n) for j in range(n)])
    tokens_by_precision = {}
    for precision in ("fp32",) if args.no_bf16 else ("fp32", "bf16"):
        accessor_forward(da.isel(y=slice(0, tile), x=slice(0, tile)), args.model, args.variant, args.batch_size, precision)
        key = next(k for k in engine._RUNTIMES if k.precision == precision)
        runtime = engine.get_runtime(key)
        dated = with_date_if_temporal(da, args.model)
        plan = runtime.adapter.plan_inputs(list(info["bands"]), context=embedding.input_context(dated, Grid.from_xarray(da)))
        prepared = runtime.prepare(torch.from_numpy(tiles), plan)
        bare_times, accessor_times = [], []
        for _ in range(args.repeats):
            t, bare_tokens = bare_forward(runtime, prepared, plan, args.batch_size, precision)
            bare_times.append(t)
            t, grid = accessor_forward(da, args.model, args.variant, args.batch_size, precision)
            accessor_times.append(t)
        bare, accessor = min(bare_times), min(accessor_times)
        results[precision] = {
            "tiles": len(tiles),
            "bare_s": round(bare, 2), "accessor_s": round(accessor, 2),
            "bare_tiles_per_s": round(len(tiles) / bare, 2), "accessor_tiles_per_s": round(len(tiles) / accessor, 2),
            "accessor_over_bare_throughput": round(bare / accessor, 3),
        }
        tokens_by_precision[precision] = grid
        # the engine's grid equals the bare tokens stitched (tile-aligned raster: no shifted tiles)
        stitched = bare_tokens.reshape(n, n, -1, k, k).transpose(2, 0, 3, 1, 4).reshape(-1, n * k, n * k)
        results[precision]["max_abs_diff_vs_bare"] = float(np.abs(stitched - grid).max())
    if args.no_bf16:
        print(json.dumps(results, indent=2))
        return
    a = tokens_by_precision["fp32"].reshape(tokens_by_precision["fp32"].shape[0], -1)
    b = tokens_by_precision["bf16"].reshape(a.shape[0], -1)
    cosine = (a * b).sum(0) / (np.linalg.norm(a, axis=0) * np.linalg.norm(b, axis=0))
    results["bf16_speedup_over_fp32"] = round(results["fp32"]["accessor_s"] / results["bf16"]["accessor_s"], 3)
    results["bf16_min_token_cosine"] = float(cosine.min())
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
