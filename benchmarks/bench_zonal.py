"""Peak resident memory and time of ``emb.rsembed.zonal`` over a large lazy embedding raster.

    python benchmarks/bench_zonal.py [--size 10000] [--polygons 1000] [--embedding 16] [--chunk 1000]

A lazy ``(embedding, y, x)`` raster of ``size x size`` cells (10 m, UTM) is generated chunk by chunk (nothing
is held: each chunk is drawn from a seeded generator when dask computes it), with a NaN stripe. ``polygons``
random polygons (buffered points with holes and multipolygons among them, 50 m to 2 km across) are scattered
over it and reduced with ``zonal(stats=("mean", "std"))``. Runs in a fresh subprocess, so the peak RSS is this
run's alone. Peak RSS should be a few chunks, not the raster (``embedding * size**2 * 4`` bytes).

A spot check recomputes three polygons eagerly on their own windows (numpy) and prints the largest
relative difference from the streamed result.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time


def lazy_embedding(size: int, depth: int, chunk: int):
    import dask.array as dsa
    import numpy as np
    import xarray as xr

    def block(block_info=None):
        (_, _), (r0, r1), (c0, c1) = block_info[None]["array-location"]
        rng = np.random.default_rng([r0, c0])
        values = rng.random((depth, r1 - r0, c1 - c0), dtype=np.float32) - 0.5
        values[:, (np.arange(r0, r1) % 2000 < 20), :] = np.nan  # NaN stripes: nodata rows
        return values

    chunks = ((depth,), tuple(min(chunk, size - s) for s in range(0, size, chunk)), tuple(min(chunk, size - s) for s in range(0, size, chunk)))
    data = dsa.map_blocks(block, chunks=chunks, dtype=np.float32, meta=np.array((), dtype=np.float32))
    x0, y0, res = 300_000.0, 2_800_000.0, 10.0
    return xr.DataArray(
        data,
        dims=("embedding", "y", "x"),
        coords={"embedding": np.arange(depth), "y": y0 - res * (np.arange(size) + 0.5), "x": x0 + res * (np.arange(size) + 0.5)},
    ).rio.write_crs("EPSG:32629")


def random_polygons(n: int, emb, seed: int = 0):
    import geopandas as gpd
    import numpy as np
    import shapely

    rng = np.random.default_rng(seed)
    left, right = float(emb.x[0]) - 5, float(emb.x[-1]) + 5
    bottom, top = float(emb.y[-1]) - 5, float(emb.y[0]) + 5
    cx, cy = rng.uniform(left, right, n), rng.uniform(bottom, top, n)
    radius = np.exp(rng.uniform(np.log(25), np.log(1000), n))
    geoms = []
    for k in range(n):
        poly = shapely.Point(cx[k], cy[k]).buffer(radius[k], quad_segs=6)
        if k % 5 == 1:
            poly = poly.difference(shapely.Point(cx[k], cy[k]).buffer(radius[k] / 2, quad_segs=6))  # a hole
        if k % 5 == 2:
            poly = shapely.MultiPolygon([poly, shapely.box(cx[k] + radius[k] * 1.5, cy[k], cx[k] + radius[k] * 2.5, cy[k] + radius[k])])
        geoms.append(poly)
    return gpd.GeoDataFrame({"zone": np.arange(n)}, geometry=geoms, crs="EPSG:32629")


def run_one(size: int, n: int, depth: int, chunk: int) -> dict:
    import numpy as np

    import xrembed  # noqa: F401  (registers .rsembed)

    emb = lazy_embedding(size, depth, chunk)
    polygons = random_polygons(n, emb)
    start = time.perf_counter()
    table = emb.rsembed.zonal(polygons, stats=("mean", "std"))
    elapsed = time.perf_counter() - start
    peak_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss

    # spot check: three polygons recomputed on their own eager window
    worst = 0.0
    for k in (3, 11, 17):  # a disc, a disc with a hole, a multipolygon
        geom = polygons.geometry.iloc[k]
        x0, y0, x1, y1 = geom.bounds
        window = emb.sel(x=slice(x0 - 10, x1 + 10), y=slice(y1 + 10, y0 - 10)).compute()
        eager = window.rsembed.zonal([geom]).iloc[0]
        cols = [c for c in eager.index if c.startswith("e")]
        if eager["area"] > 0:
            diff = np.abs(eager[cols].to_numpy(float) - table.iloc[k][cols].to_numpy(float)).max()
            worst = max(worst, float(diff / np.abs(eager[cols].to_numpy(float)).max()))
    return {
        "raster_cells": f"{size} x {size}",
        "embedding": depth,
        "chunk": chunk,
        "polygons": n,
        "polygons_with_area": int((table["area"] > 0).sum()),
        "seconds": round(elapsed, 1),
        "peak_rss_gb": round(peak_kb / 1024**2, 3),
        "raster_gb_float32": round(depth * size * size * 4 / 1e9, 2),
        "chunk_mb": round(depth * chunk * chunk * 4 / 1e6, 1),
        "spot_check_max_rel_diff": worst,
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--size", type=int, default=10_000)
    parser.add_argument("--polygons", type=int, default=1000)
    parser.add_argument("--embedding", type=int, default=16)
    parser.add_argument("--chunk", type=int, default=1000)
    parser.add_argument("--one", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        print(json.dumps(run_one(args.size, args.polygons, args.embedding, args.chunk)))
        return
    command = [sys.executable, __file__, "--one", "--size", str(args.size), "--polygons", str(args.polygons),
               "--embedding", str(args.embedding), "--chunk", str(args.chunk)]
    out = subprocess.run(command, check=True, capture_output=True, text=True, cwd=sys.path[0])
    print(out.stdout.strip().splitlines()[-1], flush=True)


if __name__ == "__main__":
    main()
