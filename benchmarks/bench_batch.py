"""Many ROIs: cross-ROI batching vs one ROI at a time vs a bare batched forward over the same tiles.

    python benchmarks/bench_batch.py [--rois 64] [--model dofa] [--scene ../shared/data/S2A_29RKH_20200219_0_L2A]

Each ROI is a ``PointBuffer`` of 448 x 448 px (2 x 2 tiles of 224 px) on the Sentinel-2 scene, read with
``backend="local"`` from an analysis-ready stack: the model's bands resampled once onto one grid and written
as a tiled GeoTIFF (``--no-stack`` reads the band folder instead, where the 20 m and 60 m bands are warped on
every read, which costs more than the model on 2 cores). Three timings, with random weights (the forward costs the same as with the official ones):

* ``batched``: one ``get_embeddings_batch`` call (one model load, concurrent reads, tiles of several
  ROIs in each forward pass);
* ``one_at_a_time``: one ``get_embedding`` call per ROI (the model stays loaded between calls);
* ``bare``: the loaded module's forward over the same tiles, already in memory and normalised, in batches.

``bare / batched`` is the throughput ratio of the functional API to the bare forward (target >= 0.9).
Prints one JSON object.
"""

from __future__ import annotations

import argparse
import json
import time
import warnings
from pathlib import Path

import numpy as np
import torch
from pyproj import Transformer

import xrembed
from xrembed import engine
from xrembed.api import crop_to

warnings.simplefilter("ignore")
SCENE = Path(__file__).resolve().parents[2] / "shared" / "data" / "S2A_29RKH_20200219_0_L2A"


def rois(scene: Path, n: int, size_px: int) -> list[xrembed.PointBuffer]:
    """``n`` ROIs of ``size_px`` pixels a side spread over the scene (a deterministic grid)."""
    da = xrembed.open_raster(scene, bands=["B04"])
    left, bottom, right, top = da.rio.bounds()
    res = abs(da.rio.resolution()[0])
    half = size_px * res / 2
    to_lonlat = Transformer.from_crs(da.rio.crs, "EPSG:4326", always_xy=True)
    side = int(np.ceil(np.sqrt(n)))
    out = []
    for k in range(n):
        fx, fy = (k % side + 0.5) / side, (k // side + 0.5) / side
        x = left + half + (right - left - 2 * half) * fx
        y = bottom + half + (top - bottom - 2 * half) * fy
        out.append(xrembed.PointBuffer(*to_lonlat.transform(x, y), half))
    return out


def analysis_ready_stack(scene: Path, bands: list[str]) -> Path:
    """The model's bands on one grid, as one tiled GeoTIFF (in a temporary folder, written once per run)."""
    import tempfile

    out = Path(tempfile.mkdtemp(prefix="xrembed-bench-")) / "stack.tif"
    da = xrembed.open_raster(scene, bands=bands).load()
    da.attrs["long_name"] = list(da.band.values)  # band descriptions: the names travel with the file
    da.rio.to_raster(out, tiled=True, blockxsize=512, blockysize=512, compress="deflate", dtype="float32")
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rois", type=int, default=64)
    parser.add_argument("--size", type=int, default=448)
    parser.add_argument("--model", default="dofa")
    parser.add_argument("--variant", default=None)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--scene", type=Path, default=SCENE)
    parser.add_argument("--output", default="grid", choices=["grid", "pooled"])
    parser.add_argument("--no-stack", action="store_true", help="read the band folder (warped per read)")
    args = parser.parse_args()
    torch.manual_seed(0)
    spatials = rois(args.scene, args.rois, args.size)
    if not args.no_stack:
        args.scene = analysis_ready_stack(args.scene, xrembed.describe_model(args.model)["bands"])
    kwargs = {"source": args.scene, "backend": "local", "weights": "random", "variant": args.variant,
              "batch_size": args.batch_size, "output": xrembed.OutputSpec(args.output), "input_prep": "tile"}

    # Warm up: load the model once (every path below reuses it) and check the ROI size.
    first = xrembed.get_embedding(args.model, spatial=spatials[0], **kwargs)
    grid_shape = first.meta.get("input_bounds"), first.data.shape

    start = time.perf_counter()
    batched = xrembed.get_embeddings_batch(args.model, spatials=spatials, **kwargs)
    t_batched = time.perf_counter() - start

    start = time.perf_counter()
    single = [xrembed.get_embedding(args.model, spatial=s, **kwargs) for s in spatials]
    t_single = time.perf_counter() - start

    # Bare: the same tiles, read and normalised beforehand, through the loaded module.
    from xrembed import embedding

    scene = xrembed.open_raster(args.scene, bands=None if args.no_stack else xrembed.describe_model(args.model)["bands"])
    requests = [embedding._prepare(crop_to(scene, s), args.model, weights="random", variant=args.variant)
                for s in spatials]
    runtime = engine.get_runtime(requests[0].key)
    size = runtime.adapter.variant.image_size
    images = np.stack([r.data.values.astype(np.float32) for r in requests])
    if images.shape[-1] != args.size or images.shape[-2] != args.size:
        raise SystemExit(f"ROIs are {images.shape[-2:]} px, expected {args.size}")
    tiles = images.reshape(len(spatials), images.shape[1], args.size // size, size, args.size // size, size)
    tiles = torch.from_numpy(np.ascontiguousarray(tiles.transpose(0, 2, 4, 1, 3, 5).reshape(-1, images.shape[1], size, size)))
    with torch.inference_mode():
        prepared = runtime.prepare(tiles, requests[0].plan)
    start = time.perf_counter()
    with torch.inference_mode():
        for i in range(0, prepared.shape[0], args.batch_size):
            runtime.adapter.forward_grid(runtime.module, prepared[i : i + args.batch_size], requests[0].plan)
    t_bare = time.perf_counter() - start

    diff = max(float(np.nanmax(np.abs(np.asarray(b.data) - np.asarray(s.data)))) for b, s in zip(batched, single))
    print(json.dumps({
        "model": args.model, "rois": len(spatials), "roi_px": args.size, "tiles": int(prepared.shape[0]),
        "batch_size": args.batch_size, "output": args.output, "torch_threads": torch.get_num_threads(),
        "batched_s": round(t_batched, 2), "one_at_a_time_s": round(t_single, 2), "bare_forward_s": round(t_bare, 2),
        "bare_over_batched": round(t_bare / t_batched, 3), "bare_over_one_at_a_time": round(t_bare / t_single, 3),
        "batched_speedup_over_one_at_a_time": round(t_single / t_batched, 3),
        "max_abs_diff_batched_vs_single": diff, "first_output_shape": list(grid_shape[1]),
    }, indent=1))


if __name__ == "__main__":
    main()
