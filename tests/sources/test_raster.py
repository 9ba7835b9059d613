"""open_raster: folders of single-band files at several resolutions, lists, multi-band files, nodata."""

import numpy as np
import pytest
import rasterio
from affine import Affine

import xrembed
from xrembed import errors


def test_sentinel2_folder_stacks_12_bands_on_the_finest_grid(s2_scene):
    da = xrembed.open_raster(s2_scene)
    assert da.dims == ("band", "y", "x")
    assert list(da.band.values) == ["B01", "B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A", "B09", "B11", "B12"]
    assert da.shape == (12, 1098, 1098)
    assert da.rio.crs.to_epsg() == 32629
    assert da.rio.transform() == Affine(100, 0, 199980, 0, -100, 2800020)
    assert da.rio.bounds() == (199980, 2690220, 309780, 2800020)
    assert da.chunks is not None  # lazy
    # a 20 m band brought to the 100 m grid with nearest: each source pixel becomes 2 x 2
    b05 = da.sel(band="B05").isel(y=slice(0, 4), x=slice(0, 4)).values
    with rasterio.open(s2_scene / "B05.tif") as src:
        native = src.read(1, window=((0, 2), (0, 2))).astype("f4")
    np.testing.assert_array_equal(b05, np.kron(native, np.ones((2, 2))))


def test_band_selection_and_both_spellings(s2_scene):
    da = xrembed.open_raster(s2_scene, bands=["B4", "B03", "B8A"])
    assert list(da.band.values) == ["B04", "B03", "B8A"]
    with pytest.raises(errors.BandMismatchError, match="B10"):
        xrembed.open_raster(s2_scene, bands=["B04", "B10"])


def test_list_of_files_and_target_resolution(s2_scene):
    files = [s2_scene / "B11.tif", s2_scene / "B04.tif"]
    da = xrembed.open_raster(files, resolution=200)
    assert list(da.band.values) == ["B11", "B04"]
    assert da.shape == (2, 549, 549)
    assert da.rio.resolution() == (200, -200)


def test_nodata_becomes_nan(tmp_path):
    profile = dict(driver="GTiff", width=20, height=10, count=1, dtype="uint16", nodata=0, crs="EPSG:32631",
                   transform=Affine(10, 0, 500000, 0, -10, 4000000))
    data = np.full((10, 20), 1234, dtype="uint16")
    data[:3, :5] = 0
    for band in ("B04", "B08"):
        with rasterio.open(tmp_path / f"{band}.tif", "w", **profile) as dst:
            dst.write(data, 1)
    da = xrembed.open_raster(tmp_path)
    values = da.values
    assert np.isnan(values[:, :3, :5]).all() and (values[:, 3:, :] == 1234).all()


def test_multiband_file_uses_descriptions_or_bands(tmp_path):
    path = tmp_path / "stack.tif"
    profile = dict(driver="GTiff", width=8, height=8, count=3, dtype="float32", crs="EPSG:32631",
                   transform=Affine(10, 0, 0, 0, -10, 80))
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(np.ones((3, 8, 8), "f4"))
        for i, name in enumerate(["B4", "B3", "B2"], start=1):
            dst.set_band_description(i, name)
    assert list(xrembed.open_raster(path).band.values) == ["B04", "B03", "B02"]
    assert list(xrembed.open_raster(path, bands=["VV", "VH", "B08"]).band.values) == ["VV", "VH", "B08"]
    with pytest.raises(errors.BandMismatchError, match="3 bands"):
        xrembed.open_raster(path, bands=["B04"])


def test_bundled_sample():
    da = xrembed.open_raster("sample")
    assert da.sizes == {"band": 12, "y": 448, "x": 448}
    assert da.rio.transform() == Affine(100, 0, 199980, 0, -100, 2800020)
    total = sum(f.stat().st_size for f in xrembed.sample_path().iterdir())
    assert total <= 2_000_000


def test_missing_source():
    with pytest.raises(errors.SourceError, match="does not exist"):
        xrembed.open_raster("/nonexistent/scene")


S1_MEASUREMENT = "S1A_IW_GRDH_1SDV_20180716T004042_FD5B/measurement"


def test_gcp_only_sentinel1_is_warped_lazily(s2_scene):
    folder = s2_scene.parent / S1_MEASUREMENT
    da = xrembed.open_raster(folder, bands=["VV", "VH"])
    assert list(da.band.values) == ["VV", "VH"] and da.chunks is not None
    assert da.rio.crs.to_epsg() == 32643  # the scene centre's UTM zone (southern India, 75.6-78.2 E)
    geographic = xrembed.open_raster(folder, bands=["VV", "VH"], crs="EPSG:4326")
    assert (geographic.sizes["x"], geographic.sizes["y"]) == (1417, 1071)  # as GDAL's WarpedVRT suggests
    left, bottom, right, top = geographic.rio.bounds()
    assert 75.5 < left < right < 78.3 and 9.1 < bottom < top < 11.3
    values = da.values
    outside = np.isnan(values).all(axis=0)
    assert 0.1 < outside.mean() < 0.5  # outside the tilted swath is nodata, not zeros
    assert np.nanmin(values) > 0
    with rasterio.open(folder / "iw-vv.tiff") as src:
        assert np.nanmean(values[0]) == pytest.approx(src.read(1)[src.read(1) > 0].mean(), rel=0.05)
    with pytest.raises(errors.OptionError, match="ground control points"):
        xrembed.open_raster(folder, bands=["VV", "VH"], resolution=100)


def test_reprojection_to_another_crs_is_lazy(s2_scene):
    from rasterio.warp import transform_bounds

    da = xrembed.open_raster(s2_scene, bands=["B04"], crs="EPSG:32630")
    assert da.rio.crs.to_epsg() == 32630 and da.chunks is not None
    expected = transform_bounds("EPSG:32629", "EPSG:32630", 199980, 2690220, 309780, 2800020)
    np.testing.assert_allclose(da.rio.bounds(), expected, atol=abs(da.rio.resolution()[0]))
    assert np.isfinite(da.values).mean() > 0.9
