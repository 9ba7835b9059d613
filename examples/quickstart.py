"""Embed the bundled Sentinel-2 sample with DOFA, write Zarr, and look at the result.

    python examples/quickstart.py [--weights /path/to/DOFA_ViT_base_e100.pth]

Without --weights the official checkpoint is fetched from the Hugging Face Hub; pass --weights random to
try the pipeline offline (the embeddings then mean nothing). If matplotlib is installed, a false-colour
picture of the first three principal components is saved as dofa_pca.png.
"""

import argparse

import numpy as np
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

    # Principal components of the grid: a quick look at what the embedding separates.
    values = back.values.reshape(back.sizes["embedding"], -1).T
    values = values - values.mean(axis=0)
    _, _, components = np.linalg.svd(values, full_matrices=False)
    pcs = (values @ components[:3].T).reshape(back.sizes["y"], back.sizes["x"], 3)
    pcs = (pcs - pcs.min((0, 1))) / np.ptp(pcs, axis=(0, 1))
    try:
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib not installed: skipping the picture")
        return
    plt.imsave("dofa_pca.png", pcs)
    print("wrote dofa_pca.png")


if __name__ == "__main__":
    main()
