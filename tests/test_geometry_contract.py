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
from xrembed.models.dofa import DEFAULT_BANDS
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


def test_south_up_flip_stays_lazy(tiny):
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


@pytest.mark.parametrize("origin", [(500000, 4e8), (5e7, 4e6)])
def test_projected_coordinates_far_outside_the_crs_are_refused(tiny, origin):
    da = synthetic_raster((16, 16), resolution=10, origin=origin, crs="EPSG:32629")
    with pytest.raises(errors.CRSError, match="no place on Earth"):
        da.rsembed.embed("dofa-tiny", **tiny)


def test_unknown_epsg_in_xee_attrs_is_a_crs_error(tiny):
    ds = to_xee_dataset(synthetic_raster((16, 16), crs=None), crs="EPSG:999999")
    with pytest.raises(errors.CRSError, match=r"EPSG:999999.*write_crs\("):
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
# Rotated and sheared grids


ROTATED = Affine.translation(500000, 4200000) * Affine.rotation(20) * Affine.scale(10, -10)


def test_user_data_rotated_transform_is_refused():
    data = UserData(np.ones((4, 16, 16), "float32"), bands=["B02", "B03", "B04", "B08"], crs="EPSG:32629",
                    transform=ROTATED)
    with pytest.raises(errors.SpatialDimensionError, match="rotated or sheared.*gdalwarp"):
        data.to_xarray()


def test_user_data_gdal_ordered_geotransform_names_from_gdal():
    gdal = (500000.0, 10.0, 0.0, 4200000.0, 0.0, -10.0)
    data = UserData(np.ones((4, 16, 16), "float32"), bands=["B02", "B03", "B04", "B08"], crs="EPSG:32629",
                    transform=gdal)
    with pytest.raises(errors.SpatialDimensionError, match="from_gdal"):
        data.to_xarray()


def test_user_data_crs_without_transform_is_not_dropped():
    pb = PointBuffer(-9.5, 25.0, 320)
    data = UserData(np.ones((4, 64, 64), "float32"), bands=["B02", "B03", "B04", "B08"], crs="EPSG:4326", spatial=pb)
    with pytest.raises(errors.SpecError, match="no transform="):
        data.to_xarray()


def test_rotated_grid_mapping_on_a_data_array_is_refused_at_embed(tiny):
    da = synthetic_raster((16, 16)).rio.write_transform(ROTATED)
    with pytest.raises(errors.SpatialDimensionError, match="rotated"):
        da.rsembed.embed("dofa-tiny", **tiny)


def test_open_raster_warps_a_rotated_geotiff_to_north_up(tmp_path):
    path = _write_tif(tmp_path / "rotated.tif", transform=ROTATED, shape=(48, 64), count=2)
    da = xrembed.open_raster(path, bands=["B04", "B08"])
    t = da.rio.transform()
    assert t.b == t.d == 0 and t.a > 0 and t.e < 0
    # The warped grid covers all four corners of the rotated one.
    corners = [ROTATED * c for c in ((0, 0), (64, 0), (0, 48), (64, 48))]
    left, bottom, right, top = da.rio.bounds()
    for x, y in corners:
        assert left - 1e-6 <= x <= right + 1e-6 and bottom - 1e-6 <= y <= top + 1e-6
    with rasterio.open(path) as src:
        centre = src.read(1)[24, 32]
    x, y = ROTATED * (32.5, 24.5)
    assert float(da.sel(band="B04").sel(x=x, y=y, method="nearest")) == pytest.approx(float(centre))
    assert np.isnan(da.values[:, 0, 0]).all()  # the corner outside the rotated footprint is nodata


# ---------------------------------------------------------------------------------------------------
# ROIs at the raster's edge (local backend)


def test_crop_pads_a_roi_past_the_edge_with_nan():
    da = synthetic_raster((64, 64), resolution=10, origin=(500000, 4200000))  # 500000..500640
    roi = BBox(500400, 4199600, 500800, 4200000, crs="EPSG:32629")  # 16 px inside, 24 px beyond the east edge
    window = crop_to(da, roi)
    assert window.sizes == {"band": da.sizes["band"], "y": 40, "x": 40}
    assert window.rio.transform() == Affine(10, 0, 500400, 0, -10, 4200000)
    np.testing.assert_array_equal(window.x.values, 500400 + 10 * (np.arange(40) + 0.5))
    np.testing.assert_array_equal(window.values[:, :, :24], da.values[:, :40, 40:])
    assert np.isnan(window.values[:, :, 24:]).all()


def test_point_buffers_at_the_edge_keep_their_pixel_count():
    da = synthetic_raster((64, 64), resolution=10, origin=(500000, 4200000), chunks={"y": 32, "x": 32})
    from pyproj import Transformer

    to_lonlat = Transformer.from_crs("EPSG:32629", "EPSG:4326", always_xy=True)
    inside = PointBuffer(*to_lonlat.transform(500320, 4199680), 100)
    corner = PointBuffer(*to_lonlat.transform(500010, 4199990), 100)
    a, b = crop_to(da, inside), crop_to(da, corner)
    assert a.shape == b.shape == (da.sizes["band"], 20, 20)
    assert b.chunks is not None  # padding stays lazy
    assert np.isnan(b.values[:, :9, :]).all() and np.isfinite(b.values[:, 10:, 10:]).all()


def test_local_backend_roi_past_the_edge_gives_nan_cells_not_zeros(tmp_path, tiny):
    da = synthetic_raster((64, 64), resolution=10, origin=(500000, 4200000))
    path = tmp_path / "scene.tif"
    da.rio.to_raster(path)
    with rasterio.open(path, "r+") as dst:
        dst.descriptions = tuple(str(b) for b in da.band.values)
    roi = BBox(500320, 4199680, 500960, 4200000, crs="EPSG:32629")  # 32 px inside, 32 px past the east edge
    emb = xrembed.get_embedding("dofa-tiny", spatial=roi, source=str(path), backend="local",
                                output=xrembed.OutputSpec.grid(), **tiny)
    assert emb.data.sizes["x"] == 8 and emb.data.rio.transform() == Affine(80, 0, 500320, 0, -80, 4200000)
    assert np.isfinite(emb.data.values[:, :, :4]).all()
    assert np.isnan(emb.data.values[:, :, 4:]).all()


def test_roi_fully_outside_the_raster_is_a_spec_error():
    da = synthetic_raster((32, 32), resolution=10, origin=(500000, 4200000))
    with pytest.raises(errors.NoDataInBoundsError, match="does not overlap"):
        crop_to(da, BBox(600000, 4100000, 600100, 4100100, crs="EPSG:32629"))


# ---------------------------------------------------------------------------------------------------
# Spec bounds


@pytest.mark.parametrize(
    "build, fix",
    [
        (lambda: PointBuffer(10, 50, float("inf")), "positive"),
        (lambda: PointBuffer(10, 50, float("nan")), "positive"),
        (lambda: PointBuffer(10, 50, True), "positive"),
        (lambda: PointBuffer(10, 50, 5_000_000), "maximum.*BBox"),
        (lambda: PointBuffer(float("nan"), 50, 100), "longitude"),
        (lambda: PointBuffer("10", 50, 100), "longitude"),
        (lambda: PointBuffer(50, 200, 100), "lon first"),
        (lambda: BBox(0, 0, 0, 1), "inverted or empty"),
        (lambda: BBox(0, True, 1, 1), "finite"),
        (lambda: BBox(170, 0, -170, 1), "antimeridian"),
    ],
)
def test_spec_bounds(build, fix):
    with pytest.raises(errors.SpecError, match=fix):
        build()


def test_specs_accept_numpy_scalars_and_the_maximum_buffer():
    box = BBox(np.float32(-9.9), np.float32(24.9), np.float64(-9.5), np.int64(25))
    assert box.bounds_in("EPSG:4326")[0] == pytest.approx(-9.9, abs=1e-5)
    assert PointBuffer(np.float32(10.0), 50, 500_000).buffer_m == 500_000


# ---------------------------------------------------------------------------------------------------
# Opening local rasters


def test_missing_file_is_a_source_error_at_once(tmp_path):
    with pytest.raises(errors.SourceError, match="does not exist"):
        xrembed.open_raster(tmp_path / "nope.tif")
    with pytest.raises(errors.SourceError, match="does not exist"):
        xrembed.open_raster([tmp_path / "B04.tif"], bands=["B04"])


def test_empty_folder_is_a_source_error(tmp_path):
    with pytest.raises(errors.SourceError, match="holds no rasters"):
        xrembed.open_raster(tmp_path)


def test_text_file_is_a_source_error_naming_it(tmp_path):
    path = tmp_path / "notes.tif"
    path.write_text("not a raster")
    with pytest.raises(errors.SourceError, match="notes.tif"):
        xrembed.open_raster(path)


def test_truncated_geotiff_is_a_source_error_at_open(tmp_path):
    good = _write_tif(tmp_path / "good.tif", shape=(512, 512), tiled=True, blockxsize=256, blockysize=256)
    truncated = tmp_path / "B04.tif"
    truncated.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    with pytest.raises(errors.SourceError, match="B04.tif.*truncated"):
        xrembed.open_raster(truncated, bands=["B04"])


@pytest.mark.parametrize("chunks", [256, None])
def test_corrupt_block_is_a_source_error_at_compute(tmp_path, chunks):
    path = _write_tif(tmp_path / "B04.tif", shape=(512, 512), tiled=True, blockxsize=256, blockysize=256,
                      compress="deflate")
    with rasterio.open(path) as src:
        offset = int(src.get_tag_item("BLOCK_OFFSET_1_1", "TIFF", bidx=1))
    raw = bytearray(path.read_bytes())
    raw[offset : offset + 64] = b"\xff" * 64  # garbage where the last tile's deflate stream starts
    path.write_bytes(bytes(raw))
    da = xrembed.open_raster(path, bands=["B04"], chunks=chunks)  # the header is fine: opens lazily
    np.testing.assert_array_equal(np.isfinite(da.isel(y=slice(0, 256)).values), True)
    with pytest.raises(errors.SourceError, match="B04.tif"):
        da.values


def test_corrupt_file_in_embed_is_a_source_error(tmp_path, tiny):
    path = _write_tif(tmp_path / "B04.tif", shape=(64, 64), compress="deflate")
    with rasterio.open(path) as src:
        offset = int(src.get_tag_item("BLOCK_OFFSET_0_0", "TIFF", bidx=1))
    raw = bytearray(path.read_bytes())
    raw[offset : offset + 64] = b"\xff" * 64
    path.write_bytes(bytes(raw))
    da = xr.concat([xrembed.open_raster(path, bands=["B04"])] * len(DEFAULT_BANDS), dim="band")
    da = da.assign_coords(band=list(DEFAULT_BANDS))
    with pytest.raises(errors.SourceError, match="B04.tif"):
        da.rsembed.embed("dofa-tiny", **tiny).compute()


@pytest.mark.parametrize("resolution", [float("nan"), "10", 0])
def test_open_raster_resolution_must_be_a_positive_number(tmp_path, resolution):
    path = _write_tif(tmp_path / "B04.tif")
    with pytest.raises(errors.OptionError, match="resolution"):
        xrembed.open_raster([path], bands=["B04"], resolution=resolution)


def test_wrong_kind_of_source_object_is_a_source_error():
    with pytest.raises(errors.SourceError, match="UserData"):
        xrembed.open_raster(np.zeros((3, 4, 4)))


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
