"""Accessor vs bare-forward throughput for every registered model, as one markdown table.

    python benchmarks/bench_zoo.py [--tiles-per-side 4] [--heavy-tiles-per-side 2] [--repeats 2]

Runs ``bench_throughput.py`` once per model (default variant, fp32, random weights) in its own process and
prints one row per model for ``docs/benchmarks.md``.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import xrembed


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--tiles-per-side", type=int, default=4)
    parser.add_argument("--heavy-tiles-per-side", type=int, default=2, help="for ViT-L and larger models")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--models", nargs="*", default=None)
    args = parser.parse_args()
    script = Path(__file__).with_name("bench_throughput.py")
    print("| model | variant | tile | tiles | bare forward | accessor | accessor / bare |")
    print("|---|---|---|---|---|---|---|")
    for model in args.models or xrembed.list_models():
        info = xrembed.describe_model(model)
        heavy = info["embed_dim"] >= 1024 or info["image_size"] > 224
        tiles = args.heavy_tiles_per_side if heavy else args.tiles_per_side
        out = subprocess.run(
            [sys.executable, str(script), "--model", model, "--tiles-per-side", str(tiles),
             "--repeats", str(args.repeats), "--no-bf16"],
            capture_output=True, text=True,
        )
        if out.returncode:
            print(f"| {model} | failed: {out.stderr.strip().splitlines()[-1]} |||||", flush=True)
            continue
        result = json.loads(out.stdout[out.stdout.index("{"):])
        fp32 = result["fp32"]
        tile = info["image_size"]
        print(
            f"| {model} | {result['variant']} | {tile} px | {fp32['tiles']} | {fp32['bare_tiles_per_s']} tiles/s | "
            f"{fp32['accessor_tiles_per_s']} tiles/s | **{fp32['accessor_over_bare_throughput']:.2f}** |",
            flush=True,
        )


if __name__ == "__main__":
    main()
