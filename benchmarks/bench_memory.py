"""Peak resident memory while streaming a lazy raster's embeddings to Zarr, for several raster sizes.

    python benchmarks/bench_memory.py [--sizes 2500 5000 10000] [--variant base]

Each size runs in a fresh subprocess (peak RSS is per process): a lazy 9-band raster generated chunk by
chunk (in ``--chunk`` px chunks, 1792 by default as ``open_raster`` gives) is embedded with DOFA (random weights) and written with ``to_zarr``. Peak RSS should stay well
under 3 GB and not grow with the raster size (it is bounded by chunk size and the model).
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time


def run_one(size: int, variant: str, chunk: int) -> dict:
    import warnings

    import xrembed  # noqa: F401  (registers .rsembed)
    from bench_throughput import lazy_raster

    warnings.simplefilter("ignore")
    da = lazy_raster(size, chunk=chunk)
    emb = da.rsembed.embed("dofa", variant=variant, weights="random")
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        emb.to_dataset().to_zarr(f"{tmp}/emb.zarr", mode="w")
        elapsed = time.perf_counter() - start
    peak_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return {"size": size, "input_chunk": chunk, "pixels": size * size, "output_shape": list(emb.shape), "seconds": round(elapsed, 1),
            "peak_rss_gb": round(peak_kb / 1024**2, 3), "raster_gb_float32": round(9 * size * size * 4 / 1e9, 2)}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", type=int, nargs="+", default=[2500, 5000, 10000])
    parser.add_argument("--variant", default="base")
    parser.add_argument("--chunk", type=int, default=1792, help="input chunk side (open_raster's default: 1792)")
    parser.add_argument("--one", type=int, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one is not None:
        print(json.dumps(run_one(args.one, args.variant, args.chunk)))
        return
    for size in args.sizes:
        out = subprocess.run([sys.executable, __file__, "--one", str(size), "--variant", args.variant, "--chunk", str(args.chunk)],
                             check=True, capture_output=True, text=True, cwd=sys.path[0])
        print(out.stdout.strip().splitlines()[-1], flush=True)


if __name__ == "__main__":
    main()
