"""The CLI's Zarr output opens in GDAL (QGIS, rasterio) with the same values, CRS and transform as in xarray."""

import numpy as np
import rasterio
import xarray as xr
from affine import Affine

import xrembed
from xrembed.cli import main


def test_cli_zarr_opens_in_the_gdal_of_rasterio(tmp_path):
    out = tmp_path / "out.zarr"
    assert main(["embed", "sample", "--model", "dofa-tiny", "--weights", "random", "--out", str(out), "--quiet"]) == 0
    back = xr.open_zarr(out, decode_coords="all")["embeddings"]
    sample = xrembed.open_raster("sample").rio.transform()
    patch = 8  # dofa-tiny: each cell is 8 x 8 sample pixels, from the sample's top-left corner
    expected = Affine(sample.a * patch, 0, sample.c, 0, sample.e * patch, sample.f)
    with rasterio.open(f'ZARR:"{out}":/embeddings') as src:
        assert src.count == back.sizes["embedding"] and src.shape == (back.sizes["y"], back.sizes["x"])
        assert src.crs.to_epsg() == 32629 == back.rio.crs.to_epsg()
        assert src.transform.almost_equals(expected) and back.rio.transform().almost_equals(expected)
        np.testing.assert_array_equal(src.read(), back.values)
