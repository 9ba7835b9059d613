"""Make the comparison table and plot of docs/analysis.md: ``xrembed.compare`` on real labels.

The labels are the real scene classification (SCL, 200 m) of the shared Sentinel-2 scene (bare soil, thin
cirrus, cloud) over its cloudy north-east corner (448 x 448 px at 100 m). The models run with RANDOM weights
(``weights="random"``): no download; the table shows what the comparison reports, not how good the trained
models are.

    python docs/scripts/make_compare_figure.py [--scene ../shared/data/S2A_29RKH_20200219_0_L2A] [--out docs/img]
"""

from __future__ import annotations

import argparse
import warnings
from pathlib import Path

import rioxarray

import xrembed

ROOT = Path(__file__).resolve().parents[2]
SCENE = ROOT.parent / "shared" / "data" / "S2A_29RKH_20200219_0_L2A"


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scene", default=str(SCENE))
    parser.add_argument("--out", default=str(ROOT / "docs" / "img"))
    parser.add_argument("--models", nargs="+", default=["dofa", "remoteclip"])
    args = parser.parse_args(argv)
    scene, out = Path(args.scene), Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    raster = xrembed.open_raster(scene).isel(y=slice(0, 448), x=slice(650, 1098))
    scl = rioxarray.open_rasterio(scene / "SCL.tif").squeeze("band", drop=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", xrembed.errors.RandomWeightsWarning)
        result = xrembed.compare(
            raster,
            args.models,
            scl,
            classes={5: "bare soil", 10: "thin cirrus", 8: "cloud", 9: "cloud"},
            points_per_class=100,
            n_splits=5,
            embed_kwargs={"weights": "random"},
        )
    fig = result.plot()
    fig.suptitle("xrembed.compare on real SCL labels (models with random weights)", fontsize="medium")
    fig.savefig(out / "analysis_compare.png", dpi=90)
    columns = ["model", "probe", "accuracy_mean", "accuracy_sd", "macro_f1_mean", "macro_f1_sd", "time_s"]
    print(result.table[columns].round(3).to_markdown(index=False) if _has_tabulate() else result.table[columns].round(3))
    print(f"dropped {result.dropped}; settings {result.settings}; wrote {out / 'analysis_compare.png'}")


def _has_tabulate() -> bool:
    try:
        import tabulate  # noqa: F401
    except ImportError:
        return False
    return True


if __name__ == "__main__":
    main()
