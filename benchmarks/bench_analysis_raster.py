"""How much of a large lazy embedding grid the raster analyses read, and their time and peak memory.

    python benchmarks/bench_analysis_raster.py [--size 8000] [--embedding 64] [--chunk 500] [--write 4000]

A lazy ``(embedding, y, x)`` grid of ``size x size`` cells (UTM, 10 m) is generated chunk by chunk (each chunk
drawn from a seeded generator when dask computes it; nothing is held), with a NaN stripe. Each block
computation is counted. ``fit_pca`` and ``fit_kmeans`` (the bounded, seeded sample) should read a few dozen
chunks whatever ``size`` is; then ``to_rgb`` of the top-left ``write x write`` cells is streamed to a GeoTIFF
(every chunk read once). Runs in a fresh subprocess so the peak RSS is this run's alone.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time


def lazy_grid(size: int, depth: int, chunk: int, counter: list):
    import dask.array as dsa
    import numpy as np
    import xarray as xr
    from affine import Affine

    from xrembed.geo import pixel_centres

    def block(block_info=None):
        info = block_info[None]
        (_, _), (y0, y1), (x0, x1) = info["array-location"]
        counter.append((y0, x0))
        rng = np.random.default_rng([y0, x0])
        values = rng.normal(size=(depth, y1 - y0, x1 - x0)).astype(np.float32)
        values += np.linspace(0, 3, depth, dtype=np.float32)[:, None, None] * np.float32(np.sin(y0 / 900.0))
        if y0 <= size // 3 < y1:  # a NaN stripe: nodata rows
            values[:, size // 3 - y0, :] = np.nan
        return values

    chunks = ((depth,), tuple(min(chunk, size - i) for i in range(0, size, chunk)),
              tuple(min(chunk, size - i) for i in range(0, size, chunk)))
    data = dsa.map_blocks(block, chunks=chunks, dtype=np.float32, meta=np.empty((0, 0, 0), np.float32))
    transform = Affine(10.0, 0, 300000.0, 0, -10.0, 4500000.0)
    y, x = pixel_centres(transform, (size, size))
    da = xr.DataArray(data, dims=("embedding", "y", "x"), coords={"embedding": np.arange(depth), "y": y, "x": x})
    return da.rio.write_crs("EPSG:32629").rio.write_transform(transform)


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def run(args) -> dict:
    import threading

    import xrembed  # noqa: F401
    from xrembed.analysis import fit_kmeans, fit_pca

    counter: list = []
    emb = lazy_grid(args.size, args.embedding, args.chunk, counter)
    total = len(emb.chunks[1]) * len(emb.chunks[2])
    out = {"size": args.size, "embedding": args.embedding, "chunk": args.chunk, "chunks_total": total}
    for name, fit in (("fit_pca", lambda: fit_pca(emb, 3)), ("fit_kmeans", lambda: fit_kmeans(emb, 8))):
        counter.clear()
        start, cpu = time.perf_counter(), _cpu()
        fit()
        out[name] = {"seconds": round(time.perf_counter() - start, 1), "cpu_seconds": round(_cpu() - cpu, 1),
                     "chunks_read": len(counter)}
    counter.clear()
    start, cpu = time.perf_counter(), _cpu()
    part = emb.isel(y=slice(0, args.write), x=slice(0, args.write))
    part.rsembed.to_rgb().rio.to_raster(args.out, tiled=True, lock=threading.Lock())
    out["to_rgb_geotiff"] = {
        "cells": args.write**2,
        "seconds": round(time.perf_counter() - start, 1),
        "cpu_seconds": round(_cpu() - cpu, 1),
        "chunks_read": len(counter),
        "grid_gb": round(args.embedding * args.write**2 * 4 / 1e9, 2),
    }
    out["peak_rss_gb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6, 2)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=8000)
    parser.add_argument("--embedding", type=int, default=64)
    parser.add_argument("--chunk", type=int, default=500)
    parser.add_argument("--write", type=int, default=4000)
    parser.add_argument("--out", default="/tmp/bench_analysis_rgb.tif")
    parser.add_argument("--child", action="store_true")
    args = parser.parse_args()
    if args.child:
        print(json.dumps(run(args)))
        return
    proc = subprocess.run([sys.executable, __file__, "--child", *sys.argv[1:]], capture_output=True, text=True)
    if proc.returncode:
        sys.exit(proc.stderr)
    print(json.dumps(json.loads(proc.stdout.strip().splitlines()[-1]), indent=1))


if __name__ == "__main__":
    main()
