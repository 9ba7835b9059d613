"""Embed the bundled Sentinel-2 sample with DOFA, write Zarr, and look at the result.

    python examples/quickstart.py [--weights /path/to/DOFA_ViT_base_e100.pth]

Without --weights the official checkpoint is fetched from the Hugging Face Hub; pass --weights random to
try the pipeline offline (the embeddings then mean nothing). With the analysis extra
(``pip install -e ".[analysis]"``) a georeferenced false-colour GeoTIFF of the first three principal
components is written as dofa_rgb.tif (``emb.rsembed.to_rgb()``).
"""

import argparse

import xarray as xr

import xrembed


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--weights", default=None)
    parser.add_argument("--out", default="dofa_sample.zarr")
    args = parser.parse_args()

    da = xrembed.open_raster("sample")                       # lazy (12, 448, 448), 100 m, EPSG:32629
    print(da)
    emb = da.rsembed.embed("dofa", weights=args.weights)     # lazy (768, 28, 28), 1.6 km cells
    print(emb)
    emb.to_dataset().to_zarr(args.out, mode="w")             # computed chunk by chunk
    back = xr.open_zarr(args.out, decode_coords="all")["embeddings"]
    print("CRS", back.rio.crs, "transform", tuple(back.rio.transform())[:6])

    pooled = da.rsembed.embed("dofa", weights=args.weights, output="pooled")
    print("pooled", pooled.shape, pooled.attrs["input_prep"])

    # The first three principal components as RGB: a quick look at what the embedding separates.
    try:
        rgb = back.rsembed.to_rgb()                          # lazy (band=[r, g, b], y, x) uint8, nodata 0
    except ImportError as err:  # the message names pip install "xrembed[analysis]"
        print(err)
        return
    rgb.rio.to_raster("dofa_rgb.tif")                        # opens in QGIS on the right spot
    print("wrote dofa_rgb.tif")


if __name__ == "__main__":
    main()
