"""How long a precomputed product takes on a model's grid: ``raster.rsembed.embed("copernicus_embed")``.

    python benchmarks/bench_products.py [--sides 4 8 32 256]

Writes a Copernicus-Embed GeoTIFF window in the product's real profile (float32, 768 bands, EPSG:4326,
0.25 degree cells, tiled 256, deflate, pixel interleave) to a temporary folder, then, for each side,
embeds a UTM raster of ``side x side`` 100 m pixels at the default zoom (``patch_size=1``: one output cell
per input pixel, the case that used to split into 1 x 1 chunks and warp band by band) and prints the
wall time, the output's chunk count and the embedding-axis chunks.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import rasterio
from affine import Affine
from pyproj import Transformer

import xrembed
from xrembed.testing import synthetic_raster

ROW0, COL0, HEIGHT, WIDTH, BANDS = 150, 720, 8, 12, 768  # a window of the real global grid


def write_window(path: Path) -> Path:
    values = np.random.default_rng(0).normal(size=(BANDS, HEIGHT, WIDTH)).astype("float32")
    profile = {
        "driver": "GTiff", "dtype": "float32", "nodata": None, "width": WIDTH, "height": HEIGHT, "count": BANDS,
        "crs": "EPSG:4326", "transform": Affine(0.25, 0.0, -180.125 + 0.25 * COL0, 0.0, -0.25, 90.125 - 0.25 * ROW0),
        "blockxsize": 256, "blockysize": 256, "tiled": True, "compress": "deflate", "interleave": "pixel",
    }
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(values)
    return path


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sides", type=int, nargs="*", default=[4, 8, 32, 256])
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        tif = write_window(Path(tmp) / "embed_map_310k.tif")
        x0, y0 = Transformer.from_crs("EPSG:4326", "EPSG:32631", always_xy=True).transform(1.0, 51.8)
        print("| side (px) | seconds | chunks | embedding chunks |")
        print("|---|---|---|---|")
        for side in args.sides:
            raster = synthetic_raster((side, side), resolution=100, origin=(x0, y0), crs="EPSG:32631")
            start = time.perf_counter()
            emb = raster.rsembed.embed("copernicus_embed", source=str(tif))
            values = emb.values
            seconds = time.perf_counter() - start
            assert np.isfinite(values).any()
            print(f"| {side} | {seconds:.1f} | {emb.data.npartitions} | {emb.chunks[0]} |", flush=True)


if __name__ == "__main__":
    main()
