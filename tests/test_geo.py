"""Invariant 1: output grids carry the input CRS and lie on the input grid zoomed out by the patch size."""

import numpy as np
import pytest
from affine import Affine
from pyproj import CRS

from xrembed.geo import Grid
from xrembed.testing import synthetic_raster, to_xee_dataset

PATCH = 8  # dofa-tiny


def _expected_transform(origin, res, patch):
    return Affine(res * patch, 0, origin[0], 0, -res * patch, origin[1])


def test_rioxarray_utm_input_hand_computed(tiny):
    da = synthetic_raster((70, 90), resolution=10, origin=(500000, 4200000))
    emb = da.rsembed.embed("dofa-tiny", **tiny)
    assert emb.dims == ("embedding", "y", "x")
    assert emb.sizes["y"] == 9 and emb.sizes["x"] == 12  # ceil(70/8), ceil(90/8)
    assert emb.rio.crs.to_epsg() == 32629
    # rio.transform() without recalc must already be right (no stale GeoTransform)
    assert emb.rio.transform() == Affine(80, 0, 500000, 0, -80, 4200000)
    assert emb.rio.transform(recalc=True) == emb.rio.transform()
    assert emb.x.values[0] == 500000 + 40 and emb.y.values[0] == 4200000 - 40
    np.testing.assert_allclose(np.diff(emb.x.values), 80)
    assert emb.name == "embeddings"


def test_stale_geotransform_on_input_is_not_inherited(tiny):
    da = synthetic_raster((64, 64), resolution=10, origin=(300000, 5000000))
    # slice: coords change but spatial_ref still holds the parent's GeoTransform
    sliced = da.isel(y=slice(8, 40), x=slice(16, 56))
    emb = sliced.rsembed.embed("dofa-tiny", **tiny)
    assert emb.rio.transform() == Affine(80, 0, 300000 + 160, 0, -80, 5000000 - 80)
    assert emb.spatial_ref.attrs["GeoTransform"].split()[0] == str(300000.0 + 160)


def test_xee_style_dataset_crs_in_attrs_only(tiny):
    da = synthetic_raster((40, 48), resolution=10, origin=(600000, 100000), crs=None, times=2)
    ds = to_xee_dataset(da, crs="EPSG:32633")
    assert "spatial_ref" not in ds.coords
    emb = ds.rsembed.embed("dofa-tiny", **tiny)
    assert emb.dims == ("time", "embedding", "y", "x")
    np.testing.assert_array_equal(emb.time.values, ds.time.values)
    assert emb.rio.crs.to_epsg() == 32633
    assert emb.rio.transform() == _expected_transform((600000, 100000), 10, PATCH)


def test_missing_crs_is_a_clear_error(tiny):
    da = synthetic_raster((32, 32), crs=None)
    with pytest.raises(xrembed_errors().MissingCRSError, match="write_crs"):
        da.rsembed.embed("dofa-tiny", **tiny)


def xrembed_errors():
    from xrembed import errors

    return errors


def test_resize_grid_spreads_over_the_extent(tiny):
    da = synthetic_raster((50, 100), resolution=20, origin=(400000, 3000000))
    emb = da.rsembed.embed("dofa-tiny", input_prep="resize", **tiny)
    assert emb.sizes["y"] == emb.sizes["x"] == 4  # 32 px tiles / patch 8
    assert emb.rio.transform() == Affine(100 * 20 / 4, 0, 400000, 0, -50 * 20 / 4, 3000000)
    assert emb.rio.bounds() == da.rio.bounds()


def test_south_up_input_gives_a_north_up_grid(tiny):
    # Output grids are north-up (invariant 1): a south-up input is flipped before embedding.
    da = synthetic_raster((40, 40), resolution=10, origin=(500000, 4200000))
    flipped = da.isel(y=slice(None, None, -1))
    emb = flipped.rsembed.embed("dofa-tiny", **tiny)
    assert Grid.from_xarray(flipped).transform.e == 10
    assert emb.rio.transform() == _expected_transform((500000, 4200000), 10, PATCH)
    assert emb.y.values[0] > emb.y.values[-1]


def test_geographic_lat_lon_dims(tiny):
    da = synthetic_raster((24, 24), resolution=0.001, origin=(10.0, 50.0), crs="EPSG:4326")
    da = da.rename({"y": "lat", "x": "lon"})
    emb = da.rsembed.embed("dofa-tiny", **tiny)
    assert emb.dims == ("embedding", "y", "x")
    assert emb.rio.crs.to_epsg() == 4326
    np.testing.assert_allclose(emb.x.values[0], 10.0 + 0.004)


def test_grid_zoom_out_rounds_up_and_keeps_origin():
    grid = Grid((100, 33), Affine(10, 0, 5, 0, -10, 1000), crs=CRS.from_epsg(32629))
    out = grid.zoom_out(16)
    assert out.shape == (7, 3)
    assert out.transform == Affine(160, 0, 5, 0, -160, 1000)


def test_pooled_output_carries_no_stale_grid_mapping(tiny):
    da = synthetic_raster((40, 40), times=2)
    pooled = da.rsembed.embed("dofa-tiny", output="pooled", **tiny)
    assert pooled.dims == ("time", "embedding")
    assert "spatial_ref" not in pooled.coords
    assert pooled.attrs["input_crs"] == "EPSG:32629"
    assert pooled.attrs["input_bounds"] == list(da.rio.bounds())
