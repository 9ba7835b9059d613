"""Every rs-embed call shape documented in docs/migration.md runs on xrembed and returns what the page says.

* Earth Engine (``backend="gee"`` and ``"auto"`` without ``source=``) runs against the fake server of
  ``test_gee.py`` (offline ``ee``, mocked ``computeValue`` / ``computePixels`` / xee's ``get_info``); the
  request the code sent is decoded and checked: collection, bands, cloud filter, dates, grid CRS and scale.
* Local data is the bundled Sentinel-2 sample (``xrembed.sample_path()``, EPSG:32629, 100 m).
* The model is ``dofa-tiny`` (patch 8, 32 px tiles, 32-d, random weights) wherever the shape of the call
  does not need a particular model.
"""

from __future__ import annotations

import numpy as np
import pytest
import xarray as xr
from affine import Affine
from pyproj import Transformer

# The Earth Engine boundary mocks of test_gee.py: its fixtures and its request decoder.
from test_gee import ROI, S2_DOFA, SUMMER, _calls, ee_offline  # noqa: F401  (ee_offline: used by server)
from test_gee import server as _test_gee_server  # noqa: F401

import xrembed
from xrembed import (
    BBox,
    Embedding,
    ExportConfig,
    ExportModelRequest,
    ExportTarget,
    FetchSpec,
    InputPrepSpec,
    OutputSpec,
    PointBuffer,
    SensorSpec,
    TemporalSpec,
    UserData,
    errors,
)
from xrembed.api import resolve_backend

MODEL = "dofa-tiny"
TINY = {"weights": "random"}  # the tiny model has no official checkpoint
DIM = 32  # dofa-tiny's embedding size
PATCH_M = 80  # dofa-tiny's patch (8 px) at Sentinel-2's 10 m
DOFA_BANDS_S2 = ("B4", "B3", "B2", "B5", "B6", "B7", "B8", "B11", "B12")

ROI20 = BBox(449040.0, 2764920.0, 449680.0, 2765560.0, crs="EPSG:32629")  # 640 m on the 20 m lattice
SAMPLE = xrembed.sample_path()  # 448 x 448 px at 100 m, EPSG:32629
SAMPLE_ORIGIN = (199980.0, 2800020.0)
_TO_LONLAT = Transformer.from_crs("EPSG:32629", "EPSG:4326", always_xy=True)
# The sample's centre: (222380, 2777620) in EPSG:32629.
CENTER_LON, CENTER_LAT = _TO_LONLAT.transform(222380.0, 2777620.0)


def assert_georeferenced_grid(data, *, epsg, dim=DIM):
    """An (embedding, y, x) DataArray whose coordinates are the pixel centres of its transform."""
    assert isinstance(data, xr.DataArray)
    assert data.dims == ("embedding", "y", "x") and data.sizes["embedding"] == dim
    assert data.rio.crs.to_epsg() == epsg
    t = data.rio.transform()
    np.testing.assert_allclose(data.x.values, t.c + t.a * (np.arange(data.sizes["x"]) + 0.5))
    np.testing.assert_allclose(data.y.values, t.f + t.e * (np.arange(data.sizes["y"]) + 0.5))
    assert data.rio.transform(recalc=True) == t  # no stale GeoTransform


def assert_pooled(emb, dim=DIM):
    assert isinstance(emb, Embedding) and emb.ok
    assert isinstance(emb.data, np.ndarray) and emb.data.shape == (dim,)
    assert np.isfinite(emb.data).all()


@pytest.fixture
def fake_ee(_test_gee_server):  # noqa: F811
    """test_gee's fake Earth Engine server (offline ``ee``, decoded requests, computed pixels)."""
    return _test_gee_server


def gee_request(fake):
    """(collection id, cloud filter or None, (start, end)) of the last collection the code asked Earth Engine for,
    and (crsCode, scale, width, height, bands) of the pixel grids it requested."""
    query = fake.size_queries[-1]
    collection = _calls(query, "ImageCollection.load")[0]["args"]["id"]
    cloud = [(c["args"]["leftField"], c["args"]["rightValue"]) for c in _calls(query, "Filter.lessThan")]
    dates = _calls(query, "DateRange")[0]["args"]
    grids = {(g["crsCode"], g["affineTransform"]["scaleX"], g["dimensions"]["width"], g["dimensions"]["height"])
             for g, _, _, _ in fake.pixel_requests}
    bands = [band for _, band, _, _ in fake.pixel_requests]
    return collection, (cloud[0] if cloud else None), (dates["start"], dates["end"]), grids, bands


# -- get_embedding on Earth Engine -----------------------------------------------------------------------


def test_get_embedding_pointbuffer_pooled_gee(fake_ee):
    """README quick example: PointBuffer + TemporalSpec.range + OutputSpec.pooled()."""
    emb = xrembed.get_embedding(
        MODEL, spatial=PointBuffer(lon=-9.5, lat=25.0, buffer_m=320), temporal=SUMMER,
        output=OutputSpec.pooled(), backend="gee", **TINY,
    )
    assert_pooled(emb)
    assert emb.meta["model"] == MODEL and emb.meta["backend"] == "gee" and emb.meta["status"] == "ok"
    collection, cloud, dates, grids, bands = gee_request(fake_ee)
    assert collection == "COPERNICUS/S2_SR_HARMONIZED"  # the model's default sensor
    assert cloud == ("CLOUDY_PIXEL_PERCENTAGE", 30) and dates == ("2022-06-01", "2022-09-01")
    assert set(bands) == set(DOFA_BANDS_S2)
    # imagery on the point's UTM zone at 10 m, and buffer_m is ground metres: 640 m = 64 px (+1 where the
    # square straddles the 10 m lattice), not 640 Web-Mercator metres (~58 px of ground at 25 N)
    ((crs, scale, width, height),) = grids
    assert crs == "EPSG:32629" and scale == 10.0
    assert width in (64, 65) and height in (64, 65)
    left, bottom, right, top = emb.meta["input_bounds"]
    assert 640 <= right - left <= 650 and 640 <= top - bottom <= 650


def test_get_embedding_bbox_grid_auto_resolves_to_gee(fake_ee):
    """OutputSpec.grid(): a georeferenced DataArray on the ROI's UTM grid, patch-size cells."""
    emb = xrembed.get_embedding(MODEL, spatial=ROI, temporal=SUMMER, output=OutputSpec.grid(), **TINY)
    assert emb.meta["backend"] == "gee"  # backend="auto" without source= is Earth Engine
    assert_georeferenced_grid(emb.data, epsg=32629)
    assert emb.data.shape == (DIM, 8, 8)  # 64 x 64 px / patch 8
    assert emb.data.rio.transform() == Affine(PATCH_M, 0, 449040, 0, -PATCH_M, 2765550)
    assert emb.meta["crs"] == "EPSG:32629" and emb.meta["transform"] == [80.0, 0.0, 449040.0, 0.0, -80.0, 2765550.0]
    assert np.isfinite(emb.data.values).all()
    # lazy=True: the same grid (small ROIs are computed in shared forward passes anyway)
    lazy = xrembed.get_embedding(MODEL, spatial=ROI, temporal=SUMMER, output=OutputSpec.grid(), lazy=True, **TINY)
    np.testing.assert_allclose(lazy.data.values, emb.data.values, atol=1e-5)


def test_bbox_in_lonlat_is_fetched_on_its_utm_zone(fake_ee):
    box = BBox(-9.52, 24.98, -9.51, 24.99)  # EPSG:4326, as rs-embed
    emb = xrembed.get_embedding(MODEL, spatial=box, temporal=SUMMER, output=OutputSpec.grid(), backend="gee", **TINY)
    assert_georeferenced_grid(emb.data, epsg=32629)
    ((crs, scale, _, _),) = gee_request(fake_ee)[3]
    assert crs == "EPSG:32629" and scale == 10.0
    # the grid covers the box (in UTM) within one patch
    left, bottom, right, top = box.bounds_in("EPSG:32629")
    g_left, g_bottom, g_right, g_top = emb.data.rio.bounds()
    assert g_left <= left + 10 and g_top >= top - 10
    assert right - PATCH_M <= g_right <= right + PATCH_M and bottom - PATCH_M <= g_bottom <= bottom + PATCH_M


def test_sensor_spec_picks_collection_bands_and_scale(fake_ee):
    sensor = SensorSpec(collection="COPERNICUS/S2_HARMONIZED", bands=("B4", "B3", "B2"), scale_m=20, cloudy_pct=10)
    fake_ee.bands = ["B4", "B3", "B2"]
    # DOFA reads any bands with known wavelengths: the sensor's bands are the ones embedded (as rs-embed)
    emb = xrembed.get_embedding(MODEL, spatial=ROI20, temporal=SUMMER, sensor=sensor, output=OutputSpec.grid(),
                                backend="gee", **TINY)
    assert emb.meta["bands"] == ["B04", "B03", "B02"]
    collection, cloud, _, grids, bands = gee_request(fake_ee)
    assert collection == "COPERNICUS/S2_HARMONIZED" and cloud == ("CLOUDY_PIXEL_PERCENTAGE", 10)
    assert set(bands) == {"B4", "B3", "B2"}
    ((crs, scale, width, height),) = grids
    assert (crs, scale, width, height) == ("EPSG:32629", 20.0, 32, 32)
    assert emb.data.shape == (DIM, 4, 4)
    assert emb.data.rio.transform() == Affine(160, 0, 449040, 0, -160, 2765560)  # patch 8 at 20 m
    assert emb.meta["sensor"]["collection"] == "COPERNICUS/S2_HARMONIZED"


def test_fetch_spec_overrides_the_default_sensor(fake_ee):
    emb = xrembed.get_embedding(MODEL, spatial=ROI, temporal=SUMMER, fetch=FetchSpec(scale_m=20, cloudy_pct=5),
                                backend="gee", **TINY)
    assert_pooled(emb)
    collection, cloud, _, grids, bands = gee_request(fake_ee)
    assert collection == "COPERNICUS/S2_SR_HARMONIZED" and cloud == ("CLOUDY_PIXEL_PERCENTAGE", 5)
    assert {g[1] for g in grids} == {20.0} and set(bands) == set(DOFA_BANDS_S2)


def test_modality_s1_fetches_sentinel1(fake_ee):
    fake_ee.bands = ["VV", "VH"]
    fake_ee.value = lambda x, y, band_index, t: -20.0 + 0.01 * ((x / 10.0) % 50) + 3.0 * band_index  # dB
    emb = xrembed.get_embedding(MODEL, spatial=ROI, temporal=SUMMER, modality="s1", output=OutputSpec.grid(),
                                backend="gee", **TINY)
    assert_georeferenced_grid(emb.data, epsg=32629)
    collection, cloud, _, _, bands = gee_request(fake_ee)
    assert collection == "COPERNICUS/S1_GRD"  # DOFA reads dB backscatter
    assert cloud is None and set(bands) == {"VV", "VH"}
    assert np.isfinite(emb.data.values).all()


def test_no_temporal_on_earth_engine_warns_and_uses_rs_embeds_window(fake_ee):
    with pytest.warns(UserWarning, match=r"2022-06-01.*2022-09-01.*TemporalSpec.range"):
        emb = xrembed.get_embedding(MODEL, spatial=ROI, backend="gee", **TINY)
    assert_pooled(emb)
    assert gee_request(fake_ee)[2] == ("2022-06-01", "2022-09-01")


def test_input_prep_forms(fake_ee):
    """None == "tile" == InputPrepSpec.tile() (rs-embed's default); "resize" feeds one model-size image."""
    common = dict(spatial=ROI, temporal=SUMMER, output=OutputSpec.grid(), backend="gee", **TINY)
    default = xrembed.get_embedding(MODEL, **common)
    tile = xrembed.get_embedding(MODEL, input_prep="tile", **common)
    tile_spec = xrembed.get_embedding(MODEL, input_prep=InputPrepSpec.tile(), **common)
    resize = xrembed.get_embedding(MODEL, input_prep="resize", **common)
    resize_spec = xrembed.get_embedding(MODEL, input_prep=InputPrepSpec.resize(), **common)
    assert default.meta["input_prep"] == tile.meta["input_prep"] == "tile"
    np.testing.assert_allclose(default.data.values, tile.data.values, atol=1e-6)
    np.testing.assert_allclose(tile_spec.data.values, tile.data.values, atol=1e-6)
    assert tile.data.shape == (DIM, 8, 8)
    # resize: the 64 px extent becomes one 32 px input, 4 x 4 cells of 160 m over the same ground
    assert resize.meta["input_prep"] == "resize" and resize.data.shape == (DIM, 4, 4)
    assert resize.data.rio.transform() == Affine(160, 0, 449040, 0, -160, 2765550)
    np.testing.assert_allclose(resize_spec.data.values, resize.data.values, atol=1e-6)
    assert not np.allclose(resize.data.values, tile.data.values[:, :4, :4])


def test_get_embeddings_batch_gee_keeps_input_order_and_equals_single_calls(fake_ee):
    rois = [
        BBox(449040.0, 2764910.0, 449680.0, 2765550.0, crs="EPSG:32629"),
        BBox(452000.0, 2760000.0, 452640.0, 2760640.0, crs="EPSG:32629"),
        BBox(447360.0, 2762000.0, 448000.0, 2762640.0, crs="EPSG:32629"),
    ]
    embs = xrembed.get_embeddings_batch(MODEL, spatials=rois, temporal=SUMMER, output=OutputSpec.grid(),
                                        backend="gee", **TINY)
    assert isinstance(embs, list) and len(embs) == 3
    for emb, roi in zip(embs, rois):
        assert_georeferenced_grid(emb.data, epsg=32629)
        assert emb.data.rio.bounds() == pytest.approx(roi.bounds_in("EPSG:32629"))
        single = xrembed.get_embedding(MODEL, spatial=roi, temporal=SUMMER, output=OutputSpec.grid(),
                                       backend="gee", **TINY)
        np.testing.assert_allclose(emb.data.values, single.data.values, atol=1e-5)
    assert not np.allclose(embs[0].data.values, embs[1].data.values)  # different places, different pixels


def test_inspect_model_input_gee(fake_ee):
    report = xrembed.inspect_model_input(MODEL, spatial=ROI, temporal=SUMMER, backend="gee", return_arrays=True,
                                         **TINY)
    assert isinstance(report, dict) and report["ok"] is True and report["issues"] == []
    info = report["input"]
    assert info["crs"] == "EPSG:32629" and info["transform"] == [10.0, 0.0, 449040.0, 0.0, -10.0, 2765550.0]
    assert len(info["bands"]) == 9 and info["nan_fraction"] == 0.0
    assert report["array"].shape[-3:] == (9, 64, 64)
    assert gee_request(fake_ee)[0] == "COPERNICUS/S2_SR_HARMONIZED"
    # already-normalised values are an issue naming the fix, not an exception
    fake_ee.value = lambda x, y, band_index, t: 0.2 + 0.0 * x
    report = xrembed.inspect_model_input(MODEL, spatial=ROI, temporal=SUMMER, backend="gee", value_range=(0, 10000),
                                         **TINY)
    assert report["ok"] is False and report["issues"]


def test_keyword_arguments_replace_environment_variables(fake_ee, monkeypatch):
    """ee_init_kwargs= reaches Earth Engine's opener; variant=/weights=/batch_size= reach the model."""
    from xrembed.sources import gee as gee_source

    seen = []
    real_open = gee_source.open_gee

    def spy(source, **kwargs):
        seen.append(kwargs["ee_init_kwargs"])
        return real_open(source, **kwargs)

    monkeypatch.setattr(gee_source, "open_gee", spy)
    emb = xrembed.get_embedding(MODEL, spatial=ROI, temporal=SUMMER, backend="gee", variant="tiny", batch_size=2,
                                ee_init_kwargs={"project": "xrembed-test"}, **TINY)
    assert_pooled(emb)
    assert seen == [{"project": "xrembed-test"}]
    assert emb.meta["variant"] == "tiny" and emb.meta["weights"]
    with pytest.raises(errors.XrembedError, match=r"no variant 'large'.*\['tiny'\]"):
        xrembed.get_embedding(MODEL, spatial=ROI, temporal=SUMMER, backend="gee", variant="large", **TINY)
    with pytest.raises(errors.WeightsError, match="does not exist"):
        xrembed.get_embedding(MODEL, spatial=ROI, temporal=SUMMER, backend="gee", weights="/nonexistent/dofa.pth")


# -- local rasters ---------------------------------------------------------------------------------------


def test_get_embedding_local_pointbuffer_pooled_and_grid():
    pb = PointBuffer(CENTER_LON, CENTER_LAT, 3200)
    pooled = xrembed.get_embedding(MODEL, spatial=pb, source=SAMPLE, **TINY)  # backend="auto" -> local
    assert_pooled(pooled)
    assert pooled.meta["backend"] == "local"
    grid = xrembed.get_embedding(MODEL, spatial=pb, source=str(SAMPLE), backend="local", output=OutputSpec.grid(),
                                 **TINY)
    assert_georeferenced_grid(grid.data, epsg=32629)
    assert grid.data.shape == (DIM, 8, 8)  # 6400 m at 100 m = 64 px, patch 8
    t = grid.data.rio.transform()
    assert (t.a, t.e) == (800.0, -800.0)
    assert (t.c - SAMPLE_ORIGIN[0]) % 100 == 0 and (SAMPLE_ORIGIN[1] - t.f) % 100 == 0  # on the raster's pixels
    cx, cy = (t.c + 4 * t.a), (t.f + 4 * t.e)
    assert abs(cx - 222380) <= 100 and abs(cy - 2777620) <= 100  # centred on the point


def test_get_embeddings_batch_local_in_input_order():
    spatials = [PointBuffer(CENTER_LON + dx, CENTER_LAT + dy, 1600) for dx, dy in [(0, 0), (0.05, 0.03), (-0.05, 0)]]
    embs = xrembed.get_embeddings_batch(MODEL, spatials=spatials, source=SAMPLE, **TINY)
    assert [type(e) for e in embs] == [Embedding] * 3
    for emb, spatial in zip(embs, spatials):
        assert_pooled(emb)
        assert emb.meta["spatial"]["lon"] == spatial.lon
        single = xrembed.get_embedding(MODEL, spatial=spatial, source=SAMPLE, **TINY)
        np.testing.assert_allclose(emb.data, single.data, atol=1e-5)
    assert not np.allclose(embs[0].data, embs[1].data)


def test_continue_on_error_reports_the_failed_roi():
    spatials = [PointBuffer(CENTER_LON, CENTER_LAT, 1600), PointBuffer(100.0, 10.0, 1600)]  # second: off the raster
    with pytest.raises(errors.XrembedError, match=r"ROI 1 .*does not overlap.*continue_on_error=True"):
        xrembed.get_embeddings_batch(MODEL, spatials=spatials, source=SAMPLE, **TINY)
    ok, failed = xrembed.get_embeddings_batch(MODEL, spatials=spatials, source=SAMPLE, continue_on_error=True, **TINY)
    assert_pooled(ok)
    assert failed.data is None and not failed.ok and failed.meta["status"] == "failed"
    assert "does not overlap" in failed.meta["error"]


def test_inspect_model_input_local():
    report = xrembed.inspect_model_input(MODEL, spatial=PointBuffer(CENTER_LON, CENTER_LAT, 1600), source=SAMPLE,
                                         **TINY)
    assert report["ok"] is True and report["backend"] == "local"
    assert report["input"]["shape"] == [9, 32, 32] and report["input"]["crs"] == "EPSG:32629"
    assert set(report["input"]["band_stats"]) == set(report["input"]["bands"])


# -- bring your own data -----------------------------------------------------------------------------------


def _raw_patch(shape=(9, 64, 48), seed=0):
    return np.random.default_rng(seed).uniform(500, 4000, shape).astype("float32")


def test_get_embedding_from_data_with_crs_and_transform():
    data = UserData(_raw_patch(), collection="COPERNICUS/S2_SR_HARMONIZED", bands=DOFA_BANDS_S2,
                    crs="EPSG:32633", transform=Affine(10, 0, 500000, 0, -10, 4000000))
    emb = xrembed.get_embedding_from_data(MODEL, data, output=OutputSpec.grid(), **TINY)
    assert_georeferenced_grid(emb.data, epsg=32633)
    assert emb.data.shape == (DIM, 8, 6)
    assert emb.data.rio.transform() == Affine(80, 0, 500000, 0, -80, 4000000)
    assert emb.meta["backend"] == "tensor"
    pooled = xrembed.get_embedding_from_data(MODEL, data, **TINY)  # rs-embed's default output: pooled
    assert_pooled(pooled)


def test_get_embedding_from_data_spatial_only_placement_and_default_bands():
    pb = PointBuffer(13.0, 45.0, 320)
    # no bands=: only Sentinel-2's full 12-band L2A order is assumed (as rs-embed); other counts must be named
    nine = UserData(_raw_patch((9, 64, 64)), collection="COPERNICUS/S2_SR_HARMONIZED", spatial=pb)
    with pytest.raises(errors.BandMismatchError, match=r"bands=\["):
        xrembed.get_embedding_from_data(MODEL, nine, **TINY)
    data = UserData(_raw_patch((12, 64, 64)), collection="s2", spatial=pb)
    emb = xrembed.get_embedding_from_data(MODEL, data, output=OutputSpec.grid(), **TINY)
    named = UserData(data.data[[3, 2, 1, 4, 5, 6, 7, 10, 11]], bands=DOFA_BANDS_S2, spatial=pb)
    np.testing.assert_allclose(
        xrembed.get_embedding_from_data(MODEL, named, output=OutputSpec.grid(), **TINY).data, emb.data, atol=1e-5
    )
    assert_georeferenced_grid(emb.data, epsg=32633)  # laid over the PointBuffer's UTM square
    assert emb.data.rio.bounds() == pytest.approx(pb.bounds_in("EPSG:32633"))
    # a torch tensor is accepted like numpy
    torch = pytest.importorskip("torch")
    tensor = UserData(torch.from_numpy(_raw_patch((12, 64, 64))), collection="COPERNICUS/S2_SR_HARMONIZED", spatial=pb)
    np.testing.assert_allclose(xrembed.get_embedding_from_data(MODEL, tensor, output=OutputSpec.grid(), **TINY).data,
                               emb.data, atol=1e-5)


def test_get_embeddings_batch_from_data_in_input_order():
    pb = PointBuffer(13.0, 45.0, 320)
    datas = [UserData(_raw_patch((9, 64, 64), seed=i), collection="COPERNICUS/S2_SR_HARMONIZED",
                      bands=DOFA_BANDS_S2, spatial=pb) for i in range(3)]
    embs = xrembed.get_embeddings_batch_from_data(MODEL, datas, batch_size=4, **TINY)
    assert len(embs) == 3
    for emb, data in zip(embs, datas):
        assert_pooled(emb)
        np.testing.assert_allclose(emb.data, xrembed.get_embedding_from_data(MODEL, data, **TINY).data, atol=1e-5)
    assert not np.allclose(embs[0].data, embs[1].data)


def test_user_data_from_raster(tmp_path):
    rasterio = pytest.importorskip("rasterio")
    path = tmp_path / "scene.tif"
    with rasterio.open(path, "w", driver="GTiff", width=48, height=64, count=3, dtype="float32", crs="EPSG:32633",
                       transform=Affine(10, 0, 500000, 0, -10, 4000000)) as dst:
        dst.write(_raw_patch((3, 64, 48)))
    data = UserData.from_raster(path, bands=["B04", "B03", "B02"])
    emb = xrembed.get_embedding_from_data(MODEL, data, output=OutputSpec.grid(), bands=["B04", "B03", "B02"], **TINY)
    assert_georeferenced_grid(emb.data, epsg=32633)
    assert emb.data.shape == (DIM, 8, 6) and emb.data.rio.transform() == Affine(80, 0, 500000, 0, -80, 4000000)


def test_user_data_errors_name_the_fix():
    with pytest.raises(errors.XrembedError, match=r"crs= and transform=.*spatial="):
        xrembed.get_embedding_from_data(MODEL, UserData(_raw_patch(), bands=DOFA_BANDS_S2), **TINY)
    with pytest.raises(errors.SpecError, match="UserData"):
        xrembed.get_embeddings_batch_from_data(MODEL, [_raw_patch()], **TINY)


# -- export_batch / load_export --------------------------------------------------------------------------------


SPATIALS = [PointBuffer(CENTER_LON + dx, CENTER_LAT + dy, 1600) for dx, dy in [(0, 0), (0.05, 0.03), (-0.05, 0)]]
TINY_REQUEST = ExportModelRequest.configure(MODEL, weights="random")


def test_export_batch_combined_pooled_zarr_then_load(tmp_path):
    out = tmp_path / "run.zarr"
    manifest = xrembed.export_batch(
        spatials=SPATIALS, temporal=None, models=[TINY_REQUEST], target=ExportTarget.combined(out), source=SAMPLE,
        config=ExportConfig(show_progress=False),
    )
    assert isinstance(manifest, dict) and manifest["status"] == "ok" and manifest["format"] == "zarr"
    assert manifest["n_items"] == 3 and (tmp_path / "run.json").is_file() and (out / "zarr.json").is_file()
    result = xrembed.load_export(out)
    assert result.layout == "combined" and result.n_items == 3 and result.ok_models == [MODEL]
    vectors = result.embedding(MODEL)
    assert vectors.dims == ("item", "embedding") and vectors.shape == (3, DIM)
    expected = xrembed.get_embeddings_batch(MODEL, spatials=SPATIALS, source=SAMPLE, **TINY)
    np.testing.assert_allclose(vectors.values, np.stack([e.data for e in expected]), atol=1e-5)


def test_export_batch_per_item_grid_two_models_then_load(tmp_path):
    # the same model twice under two labels, the second with its own input_prep
    models = [TINY_REQUEST, ExportModelRequest.configure(MODEL, label="tiny_resize", input_prep="resize", weights="random")]
    items = xrembed.export_batch(
        spatials=SPATIALS, temporal=None, models=models, target=ExportTarget.per_item(tmp_path, names=["a", "b", "c"]),
        source=SAMPLE, output=OutputSpec.grid(), config=ExportConfig(show_progress=False),
    )
    assert isinstance(items, list) and [i["name"] for i in items] == ["a", "b", "c"]
    assert all(i["status"] == "ok" and set(i["models"]) == {MODEL, "tiny_resize"} for i in items)
    assert {p.name for p in tmp_path.glob("*.zarr")} == {"a.zarr", "b.zarr", "c.zarr"}
    result = xrembed.load_export(tmp_path)
    assert result.layout == "per_item" and result.names == ["a", "b", "c"]
    for label, prep in ((MODEL, "tile"), ("tiny_resize", "resize")):
        grids = result.embedding(label)
        assert isinstance(grids, list) and len(grids) == 3
        for grid, spatial in zip(grids, SPATIALS):
            assert_georeferenced_grid(grid, epsg=32629)
            assert grid.shape == (DIM, 4, 4)  # 32 px ROIs: one tile, or resized onto one 32 px input
            single = xrembed.get_embedding(MODEL, spatial=spatial, source=SAMPLE, output=OutputSpec.grid(),
                                           input_prep=prep, **TINY)
            np.testing.assert_allclose(grid.values, single.data.values, atol=1e-5)
            assert grid.rio.transform() == single.data.rio.transform()


@pytest.mark.parametrize("fmt", ["npz", "netcdf"])
def test_export_batch_other_formats_load_back(tmp_path, fmt):
    out = tmp_path / f"run.{'nc' if fmt == 'netcdf' else fmt}"
    xrembed.export_batch(
        spatials=SPATIALS[:2], temporal=None, models=[TINY_REQUEST], target=ExportTarget.combined(out), source=SAMPLE,
        config=ExportConfig(format=fmt, show_progress=False),
    )
    assert out.is_file()
    assert xrembed.load_export(out).embedding(MODEL).shape == (2, DIM)


def test_export_resume_skips_complete_units_and_redoes_changed_requests(tmp_path, monkeypatch):
    from xrembed.export import runner

    embedded = []
    real = runner.batch.iter_embed

    def counting(openers, model, **kwargs):
        embedded.append(len(openers))
        return real(openers, model, **kwargs)

    monkeypatch.setattr(runner.batch, "iter_embed", counting)
    target = ExportTarget.combined(tmp_path / "run.zarr")
    kwargs = {"spatials": SPATIALS, "temporal": None, "target": target, "source": SAMPLE}
    xrembed.export_batch(models=[TINY_REQUEST], config=ExportConfig(show_progress=False), **kwargs)
    assert embedded == [3]
    first = xrembed.load_export(target.out_file).embedding(MODEL).values
    xrembed.export_batch(models=[TINY_REQUEST], config=ExportConfig(resume=True, show_progress=False), **kwargs)
    assert embedded == [3]  # every (ROI, model) unit was complete with the same fingerprint: nothing re-run
    np.testing.assert_array_equal(xrembed.load_export(target.out_file).embedding(MODEL).values, first)
    # a changed request (other prep) has another fingerprint: its units run again
    xrembed.export_batch(models=[TINY_REQUEST], input_prep="resize", config=ExportConfig(resume=True, show_progress=False),
                         **kwargs)
    assert embedded == [3, 3]


def test_export_batch_gee_modality_per_model(fake_ee, tmp_path):
    """rs-embed's ``ExportModelRequest("terrafm", modality="s1")`` pattern, on the tiny model."""
    fake_ee.bands = ["VV", "VH"]
    fake_ee.value = lambda x, y, band_index, t: -20.0 + 0.01 * ((x / 10.0) % 50) + 3.0 * band_index
    request = ExportModelRequest.configure(MODEL, modality="s1", weights="random")
    manifest = xrembed.export_batch(
        spatials=[ROI], temporal=SUMMER, models=[request], target=ExportTarget.combined(tmp_path / "s1.zarr"),
        backend="gee", config=ExportConfig(show_progress=False),
    )
    assert manifest["status"] == "ok"
    assert gee_request(fake_ee)[0] == "COPERNICUS/S1_GRD"
    assert xrembed.load_export(tmp_path / "s1.zarr").embedding(MODEL).shape == (1, DIM)


def test_export_config_rejects_what_it_cannot_do():
    with pytest.raises(errors.OptionError, match="inputs only"):
        ExportConfig(save_inputs=True, save_embeddings=False)
    assert ExportConfig().format == "zarr" and ExportConfig().save_inputs is False
    assert ExportConfig(save_inputs=True).save_inputs  # stored beside the embeddings (tests/compat/test_save_inputs.py)


# -- precomputed products ------------------------------------------------------------------------------------


def test_precomputed_product_by_rs_embed_id(tmp_path):
    from test_copernicus_embed import _values, _write_tif

    tif = _write_tif(tmp_path / "embed_map_310k.tif", _values())
    pb = PointBuffer(1.0, 51.8, 20000)
    pooled = xrembed.get_embedding("copernicus", spatial=pb, temporal=TemporalSpec.year(2021), source=str(tif))
    assert_pooled(pooled, dim=768)
    assert pooled.meta["backend"] == "product"
    grid = xrembed.get_embedding("copernicus", spatial=pb, temporal=TemporalSpec.year(2021), source=str(tif),
                                 output=OutputSpec.grid())
    assert_georeferenced_grid(grid.data, epsg=4326, dim=768)  # the product's own grid
    assert grid.data.rio.transform().a == 0.25
    np.testing.assert_allclose(pooled.data, np.nanmean(grid.data.values, axis=(1, 2)), rtol=1e-5)


# -- catalogue -------------------------------------------------------------------------------------------------


def test_list_models_and_describe_model():
    models = xrembed.list_models()
    assert isinstance(models, list) and {"dofa", "terrafm", "prithvi", "remoteclip"} <= set(models)
    assert "remoteclip_s2rgb" in xrembed.list_models(include_aliases=True)  # rs-embed's legacy ids
    info = xrembed.describe_model("dofa")
    assert isinstance(info, dict) and info["embed_dim"] == 768 and info["patch_size"] == 16
    assert info["default_sensors"]["s2"]["collection"] == "COPERNICUS/S2_SR_HARMONIZED"
    assert set(xrembed.list_products()) == {"tessera", "gse", "copernicus_embed"}
    assert xrembed.describe_model("gse")["product"] == "gse"


# -- backend resolution and bad calls -----------------------------------------------------------------------


def test_backend_auto_resolution(tmp_path):
    assert resolve_backend("dofa", "auto", None) == "gee"
    assert resolve_backend("dofa", "auto", SAMPLE) == "local"
    assert resolve_backend("dofa", "auto", [str(SAMPLE / "B04.tif")]) == "local"
    assert resolve_backend("dofa", "auto", "items.json") == "stac"
    assert resolve_backend("dofa", "auto", [object()]) == "stac"  # pystac items
    assert resolve_backend("tessera", "auto", None) == "product"
    assert resolve_backend("gse", "gee", None) == "product"


def test_bad_calls_name_the_fix():
    pb = PointBuffer(CENTER_LON, CENTER_LAT, 1600)
    with pytest.raises(errors.OptionError, match=r"get_embedding_from_data\(model, UserData"):
        xrembed.get_embedding(MODEL, spatial=pb, backend="tensor", **TINY)
    with pytest.raises(errors.SpecError, match="sensor= or fetch=.*not both"):
        xrembed.get_embedding(MODEL, spatial=pb, sensor=SensorSpec("COPERNICUS/S2_SR_HARMONIZED", ("B4",)),
                              fetch=FetchSpec(scale_m=20), **TINY)
    with pytest.raises(errors.OptionError, match=r"backend='provider' is not one of .*'gee'.*'local'"):
        xrembed.get_embedding(MODEL, spatial=pb, backend="provider", **TINY)
    with pytest.raises(errors.OptionError, match="needs source="):
        xrembed.get_embedding(MODEL, spatial=pb, backend="local", **TINY)
    with pytest.raises(errors.SpecError, match="BBox or PointBuffer"):
        xrembed.get_embedding(MODEL, spatial=(0, 0, 1, 1), **TINY)
    with pytest.raises(errors.SpecError, match="TemporalSpec"):
        xrembed.get_embedding(MODEL, spatial=pb, temporal=("2022-06-01", "2022-09-01"), source=SAMPLE, **TINY)
    with pytest.raises(errors.SpecError, match="OutputSpec"):
        xrembed.get_embedding(MODEL, spatial=pb, output=42, source=SAMPLE, **TINY)
    with pytest.raises(errors.UnknownModelError):
        xrembed.get_embedding("not-a-model", spatial=pb, source=SAMPLE)
    with pytest.raises(errors.XrembedError, match="pooling='max' is not supported"):
        xrembed.get_embedding(MODEL, spatial=pb, source=SAMPLE, output=OutputSpec.pooled(pooling="max"), **TINY)
    with pytest.raises(errors.OptionError, match="multiple of 8"):  # dofa-tiny: 8 px patches
        xrembed.get_embedding(MODEL, spatial=pb, source=SAMPLE, input_prep=InputPrepSpec.tile(tile_size=36), **TINY)
