"""Make the pictures of docs/analysis.md from the bundled Sentinel-2 sample (``xrembed.open_raster("sample")``).

The model runs with RANDOM weights (``weights="random"``): no download, and the pictures show what the analysis
functions do with an embedding grid, not what a trained model sees. A random ViT's tokens are dominated by its
random position embeddings, so its pictures repeat with every 224 px tile; beside it, each analysis also runs on
the input bands averaged per cell (the "no model" baseline grid), whose pictures read like the scene.

    python docs/scripts/make_analysis_figures.py [--out docs/img] [--model dofa]
"""

from __future__ import annotations

import argparse
import warnings
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from pyproj import Transformer  # noqa: E402

import xrembed  # noqa: E402
from xrembed.geo import Grid, assign_grid  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]


def _extent(da):
    left, bottom, right, top = Grid.from_xarray(da).bounds
    return left, right, bottom, top


def _true_colour(raster):
    rgb = raster.sel(band=["B04", "B03", "B02"]).transpose("y", "x", "band").values.astype("float64")
    low, high = np.nanpercentile(rgb, (2, 98))
    return np.clip((rgb - low) / (high - low), 0, 1)


def band_grid(raster, cell_px: int = 8):
    """The input bands averaged over ``cell_px`` x ``cell_px`` pixel cells, as an ``(embedding, y, x)`` grid
    (reflectance): the "no model" baseline, whose analyses read like the scene itself."""
    grid = Grid.from_xarray(raster).zoom_out(cell_px)
    means = (raster / 10000.0).coarsen(y=cell_px, x=cell_px, boundary="trim").mean()
    means = means.rename(band="embedding").assign_coords(embedding=np.arange(raster.sizes["band"]))
    return assign_grid(means.drop_vars("spatial_ref"), grid).rename("embeddings")


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(ROOT / "docs" / "img"))
    parser.add_argument("--model", default="dofa")
    args = parser.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    raster = xrembed.open_raster("sample")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", xrembed.errors.RandomWeightsWarning)
        emb = raster.rsembed.embed(args.model, weights="random").persist()  # computed once, reused below
    bands = band_grid(raster).persist()
    grids = [("bands per 800 m cell, no model", bands), (f"{args.model}, RANDOM weights", emb)]

    # 1. PCA RGB beside the input's true colour
    fig, axes = plt.subplots(1, 3, figsize=(15, 5), constrained_layout=True)
    axes[0].imshow(_true_colour(raster), extent=_extent(raster))
    axes[0].set_title("input: Sentinel-2 B04/B03/B02 (100 m)")
    for ax, (name, grid) in zip(axes[1:], grids):
        xrembed.plot.pseudocolor(grid, ax=ax, title=f"to_rgb(): {name}")
    for ax in axes:
        ax.set_xlabel("x (m, EPSG:32629)")
        ax.set_ylabel("")
    fig.savefig(out / "analysis_pca_rgb.png", dpi=80)
    plt.close(fig)

    # 2. similarity to one point, given as lon/lat
    x, y = 226_000.0, 2_786_000.0  # the dark outcrop in the centre of the scene
    lon, lat = Transformer.from_crs(emb.rio.crs, "EPSG:4326", always_xy=True).transform(x, y)
    fig, axes = plt.subplots(1, 2, figsize=(11, 5), constrained_layout=True)
    for ax, (name, grid) in zip(axes, grids):
        sim = grid.rsembed.similarity((lon, lat)).compute()
        image = ax.imshow(sim.values, extent=_extent(sim), cmap="magma", vmin=float(np.nanpercentile(sim, 2)), vmax=1)
        ax.plot([x], [y], marker="+", color="cyan", markersize=14, mew=2)
        fig.colorbar(image, ax=ax, label="cosine similarity", shrink=0.8)
        ax.set_title(f"similarity(({lon:.3f}, {lat:.3f})): {name}", fontsize=10)
    fig.savefig(out / "analysis_similarity.png", dpi=80)
    plt.close(fig)

    # 3. k-means maps
    fig, axes = plt.subplots(1, 2, figsize=(11, 5), constrained_layout=True)
    for ax, (name, grid) in zip(axes, grids):
        labels = grid.rsembed.kmeans(5).compute()
        image = ax.imshow(labels.values, extent=_extent(labels), cmap="tab10", vmin=-0.5, vmax=9.5, interpolation="nearest")
        ax.set_title(f"kmeans(5): {name}", fontsize=10)
    fig.colorbar(image, ax=axes, ticks=range(5), boundaries=np.arange(-0.5, 5.5), label="cluster", shrink=0.8)
    fig.savefig(out / "analysis_kmeans.png", dpi=80)
    plt.close(fig)
    print(f"wrote {sorted(p.name for p in out.glob('analysis_*.png'))} to {out}")


if __name__ == "__main__":
    main()
