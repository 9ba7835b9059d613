"""Regenerate the bundled sample (xrembed/data/sample_s2) from the Sentinel-2 scene in ../shared/data.

The sample is the top-left 44.8 x 44.8 km of scene S2A_29RKH_20200219_0_L2A (already downsampled
ten-fold: 100/200/600 m), every band kept at its own resolution, as single-band tiled GeoTIFFs.

    python scripts/make_sample.py [path/to/S2A_29RKH_20200219_0_L2A]
"""

import math
import sys
from pathlib import Path

import rasterio
from rasterio.windows import Window

SCENE = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "S2A_29RKH_20200219_0_L2A"
OUT = Path(__file__).resolve().parents[1] / "xrembed" / "data" / "sample_s2"
EXTENT_M = 44800.0  # 448 px at 100 m
BANDS = ["B01", "B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A", "B09", "B11", "B12"]


def main(scene: Path) -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    for band in BANDS:
        with rasterio.open(scene / f"{band}.tif") as src:
            size = math.ceil(EXTENT_M / src.res[0])
            window = Window(0, 0, size, size)
            profile = src.profile | {
                "width": size, "height": size, "transform": src.window_transform(window),
                "tiled": True, "blockxsize": 256, "blockysize": 256, "compress": "deflate", "predictor": 2,
            }
            with rasterio.open(OUT / f"{band}.tif", "w", **profile) as dst:
                dst.write(src.read(1, window=window), 1)
                dst.set_band_description(1, band)
    total = sum(f.stat().st_size for f in OUT.iterdir())
    print(f"wrote {len(BANDS)} bands to {OUT} ({total / 1e6:.2f} MB)")


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else SCENE)
