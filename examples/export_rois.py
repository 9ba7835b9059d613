"""Embed a list of ROIs with the rs-embed-style functional API and export them, resumably, to Zarr.

    python examples/export_rois.py [--weights /path/to/DOFA_ViT_base_e100.pth] [--out rois.zarr]

Runs offline on the bundled Sentinel-2 sample (``backend="local"``). Without --weights the official DOFA
checkpoint is fetched from the Hugging Face Hub; pass --weights random to try it offline (the embeddings
then mean nothing). Run it twice: the second run finds every unit complete and skips it.
"""

import argparse

from pyproj import Transformer

import xrembed
from xrembed import (
    ExportConfig,
    ExportModelRequest,
    ExportTarget,
    OutputSpec,
    PointBuffer,
)


def sample_rois() -> list[PointBuffer]:
    """Nine 6.4 km squares on the sample scene, and one in the sea far away (it fails, and is recorded)."""
    da = xrembed.open_raster("sample")
    left, bottom, right, top = da.rio.bounds()
    to_lonlat = Transformer.from_crs(da.rio.crs, "EPSG:4326", always_xy=True)
    rois = [
        PointBuffer(*to_lonlat.transform(left + (right - left) * fx, bottom + (top - bottom) * fy), 3200)
        for fy in (0.25, 0.5, 0.75) for fx in (0.25, 0.5, 0.75)
    ]
    return [*rois, PointBuffer(-30.0, 30.0, 3200)]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--weights", default=None)
    parser.add_argument("--out", default="rois.zarr")
    args = parser.parse_args()
    rois = sample_rois()

    # One ROI, pooled: a numpy vector; as a grid: a georeferenced DataArray.
    emb = xrembed.get_embedding("dofa", spatial=rois[0], source="sample", backend="local", weights=args.weights)
    print("pooled", emb.data.shape)
    grid = xrembed.get_embedding("dofa", spatial=rois[0], source="sample", backend="local", weights=args.weights,
                                 output=OutputSpec.grid())
    print("grid", grid.data.shape, grid.data.rio.crs, tuple(grid.data.rio.transform())[:6])

    # Many ROIs, two outputs, one store; a killed run picks up where it stopped with resume=True.
    manifest = xrembed.export_batch(
        spatials=rois, temporal=None, source=xrembed.sample_path(), backend="local",
        models=[ExportModelRequest.configure("dofa", weights=args.weights),
                ExportModelRequest.configure("dofa", label="dofa_grid", weights=args.weights, output="grid")],
        target=ExportTarget.combined(args.out),
        config=ExportConfig(resume=True, continue_on_error=True),
    )
    print("export", manifest["status"], [item["status"] for item in manifest["items"]])
    result = xrembed.load_export(args.out)
    print("pooled stack", result.embedding("dofa").shape)
    first = result.embedding("dofa_grid")[0]
    print("first grid", first.shape, first.rio.crs)
    print("errors", result.models["dofa"].errors)


if __name__ == "__main__":
    main()
