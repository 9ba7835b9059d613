"""The geometry part of the input contract: orientation, CRS versus coordinates, rotated grids, ROIs at the
raster's edge, spec bounds, and local rasters that are missing, corrupt or of the wrong kind."""

import numpy as np
import pytest
import rasterio
import xarray as xr
from affine import Affine

import xrembed
from xrembed import errors
from xrembed.api import UserData, crop_to
from xrembed.specs import BBox, PointBuffer
from xrembed.testing import synthetic_raster, to_xee_dataset

PATCH = 8  # dofa-tiny


# ---------------------------------------------------------------------------------------------------
# Orientation: every output grid is north-up


def _embed(da, tiny, **kwargs):
    return da.rsembed.embed("dofa-tiny", **tiny, **kwargs).compute()


def test_south_up_input_embeds_like_the_same_image_north_up(tiny):
    da = synthetic_raster((40, 48), resolution=10, origin=(500000, 4200000))
    south_up = da.isel(y=slice(None, None, -1))
    assert south_up.y.values[0] < south_up.y.values[-1]
    reference, flipped = _embed(da, tiny), _embed(south_up, tiny)
    assert flipped.rio.transform() == Affine(80, 0, 500000, 0, -80, 4200000)
    assert flipped.rio.transform() == reference.rio.transform()
    np.testing.assert_array_equal(flipped.y.values, reference.y.values)
    np.testing.assert_allclose(flipped.values, reference.values, rtol=0, atol=1e-6)


def test_east_to_west_input_embeds_like_west_to_east(tiny):
    da = synthetic_raster((32, 40), resolution=10, origin=(300000, 5000000))
    reversed_x = da.isel(x=slice(None, None, -1))
    reference, flipped = _embed(da, tiny), _embed(reversed_x, tiny)
    assert flipped.rio.transform() == reference.rio.transform() == Affine(80, 0, 300000, 0, -80, 5000000)
    np.testing.assert_allclose(flipped.values, reference.values, rtol=0, atol=1e-6)


def test_south_up_flip_reads_no_pixels(tiny):
    da = synthetic_raster((40, 40), chunks={"band": 1, "y": 20, "x": 20}).isel(y=slice(None, None, -1))
    lazy = da.rsembed.embed("dofa-tiny", **tiny)
    assert lazy.chunks is not None  # still a graph
    assert lazy.rio.transform().e < 0


def test_south_up_xee_dataset_and_pooled(tiny):
    da = synthetic_raster((32, 32), resolution=10, origin=(600000, 100000), crs=None, times=1)
    north = to_xee_dataset(da, crs="EPSG:32633")
    south = north.isel(y=slice(None, None, -1))
    grid = _embed(south, tiny)
    assert grid.rio.transform() == Affine(80, 0, 600000, 0, -80, 100000)
    np.testing.assert_allclose(grid.values, _embed(north, tiny).values, atol=1e-6)
    pooled_n = _embed(north, tiny, output="pooled", input_prep="tile")
    pooled_s = _embed(south, tiny, output="pooled", input_prep="tile")
    np.testing.assert_allclose(pooled_s.values, pooled_n.values, atol=1e-6)


def test_south_up_user_data_transform_gives_north_up_output(tiny):
    da = synthetic_raster((32, 32), resolution=10, origin=(500000, 4200000))
    values = da.values[:, ::-1, :]  # stored bottom row first
    south_up = Affine(10, 0, 500000, 0, 10, 4200000 - 320)
    emb = xrembed.get_embedding_from_data(
        "dofa-tiny", UserData(values, bands=list(da.band.values), crs="EPSG:32629", transform=south_up),
        output=xrembed.OutputSpec.grid(), **tiny,
    )
    assert emb.data.rio.transform() == Affine(80, 0, 500000, 0, -80, 4200000)
    np.testing.assert_allclose(emb.data.values, _embed(da, tiny).values, atol=1e-6)


# ---------------------------------------------------------------------------------------------------
# CRS against coordinates


def test_geographic_crs_on_metre_coordinates_is_refused_at_embed(tiny):
    da = synthetic_raster((32, 32), resolution=10, origin=(500000, 4000000), crs="EPSG:4326")
    with pytest.raises(errors.CRSError, match=r"write_crs\('EPSG:"):
        da.rsembed.embed("dofa-tiny", **tiny)


def test_geographic_latitude_out_of_range_is_refused(tiny):
    da = synthetic_raster((16, 16), resolution=1.0, origin=(10, 100), crs="EPSG:4326")
    with pytest.raises(errors.CRSError, match="geographic"):
        da.rsembed.embed("dofa-tiny", **tiny)


def test_geographic_grid_within_range_and_0_to_360_longitudes_pass(tiny):
    da = synthetic_raster((16, 16), resolution=0.001, origin=(350.0, 60.0), crs="EPSG:4326")
    emb = da.rsembed.embed("dofa-tiny", **tiny)
    assert emb.rio.crs.to_epsg() == 4326


def test_projected_crs_on_degree_coordinates_is_refused(tiny):
    da = synthetic_raster((32, 32), resolution=0.0001, origin=(-9.5, 25.0), crs="EPSG:32629")
    with pytest.raises(errors.CRSError, match="look like degrees"):
        da.rsembed.embed("dofa-tiny", **tiny)


def test_unknown_epsg_in_xee_attrs_is_a_crs_error(tiny):
    ds = to_xee_dataset(synthetic_raster((16, 16), crs=None), crs="EPSG:999999")
    with pytest.raises(errors.CRSError, match="EPSG:999999"):
        ds.rsembed.embed("dofa-tiny", **tiny)


def test_unknown_epsg_in_user_data_is_a_crs_error(tiny):
    data = UserData(np.ones((4, 16, 16), "float32"), bands=["B02", "B03", "B04", "B08"], crs="EPSG:999999",
                    transform=Affine(10, 0, 500000, 0, -10, 4200000))
    with pytest.raises(errors.CRSError, match="EPSG:999999"):
        data.to_xarray()


def test_unknown_epsg_in_open_raster_is_a_crs_error(tmp_path):
    path = _write_tif(tmp_path / "B04.tif")
    with pytest.raises(errors.CRSError, match="EPSG:999999"):
        xrembed.open_raster(path, bands=["B04"], crs="EPSG:999999")


# ---------------------------------------------------------------------------------------------------
# Helpers


def _write_tif(path, *, transform=Affine(10, 0, 500000, 0, -10, 4200000), shape=(64, 64), count=1, seed=0,
               **profile):
    rng = np.random.default_rng(seed)
    values = rng.integers(1, 10000, size=(count, *shape)).astype("uint16")
    with rasterio.open(path, "w", driver="GTiff", width=shape[1], height=shape[0], count=count, dtype="uint16",
                       crs="EPSG:32629", transform=transform, **profile) as dst:
        dst.write(values)
    return path
