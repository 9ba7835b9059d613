"""End to end on the real Sentinel-2 scene: 12 bands stacked, embedded, written to Zarr, read back."""

import numpy as np
import xarray as xr
from affine import Affine

import xrembed
from xrembed.cli import main


def test_real_scene_to_zarr_and_back(s2_scene, tmp_path):
    stack = xrembed.open_raster(s2_scene)
    assert stack.sizes["band"] == 12
    emb = stack.rsembed.embed("dofa", weights="random")  # picks its 9 bands out of the 12
    assert emb.attrs["bands"] == ["B04", "B03", "B02", "B05", "B06", "B07", "B08", "B11", "B12"]
    assert emb.shape == (768, 69, 69)  # ceil(1098 / 16)
    store = tmp_path / "scene.zarr"
    emb.to_dataset().to_zarr(store, mode="w")
    back = xr.open_zarr(store, decode_coords="all")["embeddings"]
    assert back.rio.crs == stack.rio.crs
    assert back.rio.transform() == Affine(1600, 0, 199980, 0, -1600, 2800020)
    left, bottom, right, top = back.rio.bounds()
    assert (left, top) == (199980, 2800020)
    # the last cell holds 1098 - 68 * 16 = 10 real pixels and reaches 6 px (600 m) past the raster
    assert (right, bottom) == (199980 + 69 * 1600, 2800020 - 69 * 1600)
    values = back.values
    assert np.isfinite(values).all()
    assert back.attrs["model"] == "dofa" and back.attrs["input_prep"] == "tile"


def test_cli_on_the_bundled_sample(tmp_path, capsys):
    out = tmp_path / "out.zarr"
    assert main(["embed", "sample", "--model", "dofa", "--weights", "random", "--out", str(out), "--quiet"]) == 0
    back = xr.open_zarr(out, decode_coords="all")["embeddings"]
    assert back.sizes == {"embedding": 768, "y": 28, "x": 28}
    assert back.rio.crs.to_epsg() == 32629
    assert back.rio.bounds() == xrembed.open_raster("sample").rio.bounds()


def test_cli_reports_errors_without_traceback(tmp_path, capsys):
    code = main(["embed", "sample", "--weights", str(tmp_path / "missing.pth"), "--out", str(tmp_path / "o.zarr")])
    assert code == 2
    assert "does not exist" in capsys.readouterr().err


def test_cli_lists_and_describes_models(capsys):
    assert main(["models"]) == 0
    assert "dofa" in capsys.readouterr().out.split()
    assert main(["models", "--describe", "dofa"]) == 0
    assert '"patch_size": 16' in capsys.readouterr().out
