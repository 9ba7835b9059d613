"""rs-embed's object and helper API on xrembed: ``Model``, ``get_embeddings_batch_from_inputs``,
``list_models_for_data``, ``inspect_provider_patch`` / ``inspect_gee_patch`` and ``reset_runtime``.

Expected values come from outside the code under test: the functional API on the same request, a DataArray
placed by hand, the raster read with rioxarray, the fake Earth Engine server's pixel formula, and the
model's own refusal when it is actually run.
"""

from __future__ import annotations

import numpy as np
import pytest
import rioxarray
import xarray as xr
from affine import Affine
from pyproj import Transformer
from test_gee import ROI, SUMMER, ee_offline  # noqa: F401  (ee_offline: used by server)
from test_gee import server as _gee_server  # noqa: F401

import xrembed
from xrembed import OutputSpec, PointBuffer, SensorSpec, UserData, errors

MODEL = "dofa-tiny"  # patch 8, 32 px tiles, 32-d
TINY = {"weights": "random"}
SAMPLE = xrembed.sample_path()  # 448 x 448 px at 100 m, EPSG:32629
CENTER_LON, CENTER_LAT = Transformer.from_crs("EPSG:32629", "EPSG:4326", always_xy=True).transform(222380.0, 2777620.0)
DOFA_S2 = ("B4", "B3", "B2", "B5", "B6", "B7", "B8", "B11", "B12")


# -- Model ----------------------------------------------------------------------------------------------------


def test_model_calls_equal_the_functional_api():
    pb = PointBuffer(CENTER_LON, CENTER_LAT, 1600)
    other = PointBuffer(CENTER_LON + 0.05, CENTER_LAT, 1600)
    model = xrembed.Model(MODEL, output=OutputSpec.grid(), source=SAMPLE, **TINY)
    one = model.get_embedding(pb)
    direct = xrembed.get_embedding(MODEL, spatial=pb, output=OutputSpec.grid(), source=SAMPLE, **TINY)
    xr.testing.assert_allclose(one.data, direct.data)
    assert one.data.rio.crs.to_epsg() == 32629 and one.data.rio.transform() == direct.data.rio.transform()
    batch = model.get_embeddings_batch([pb, other])
    assert [b.data.shape for b in batch] == [(32, 4, 4)] * 2
    # A batch shares forward passes across ROIs: equal to one at a time to the engine's 1e-5 (float32 batching)
    xr.testing.assert_allclose(batch[0].data, direct.data, rtol=0, atol=1e-5)
    pooled = xrembed.Model(MODEL, source=SAMPLE, **TINY).get_embedding(pb)  # rs-embed's default: pooled
    assert isinstance(pooled.data, np.ndarray) and pooled.data.shape == (32,)


def test_model_describe_and_list_models():
    assert xrembed.Model("dofa", variant="large").describe() == xrembed.describe_model("dofa", variant="large")
    assert xrembed.Model("dofa").describe()["embed_dim"] == 768
    assert xrembed.Model.list_models() == xrembed.list_models()
    assert "remoteclip_s2rgb" in xrembed.Model.list_models(include_aliases=True)
    assert xrembed.Model("tessera").describe()["product"] == "tessera"


def test_model_refuses_bad_settings_at_construction():
    with pytest.raises(errors.UnknownModelError):
        xrembed.Model("not-a-model")
    with pytest.raises(errors.OptionError, match="batch_size"):
        xrembed.Model(MODEL, batchsize=4)
    with pytest.raises(errors.SpecError, match="not both"):
        xrembed.Model(MODEL, sensor=SensorSpec("COPERNICUS/S2_SR_HARMONIZED", ("B4",)), fetch=xrembed.FetchSpec(scale_m=20))
    with pytest.raises(errors.OptionError, match="multiple of 8"):  # dofa-tiny: 8 px patches
        xrembed.Model(MODEL, input_prep=xrembed.InputPrepSpec.tile(tile_size=36))


# -- get_embeddings_batch_from_inputs ---------------------------------------------------------------------------


def _chw(seed, shape=(9, 64, 64)):
    return np.random.default_rng(seed).uniform(200, 4000, shape)


def test_batch_from_inputs_lays_each_array_over_its_roi():
    spatials = [PointBuffer(-9.5, 25.0, 320), PointBuffer(-9.4, 25.1, 320)]
    chws = [_chw(0), _chw(1)]
    embs = xrembed.Model(MODEL, output=OutputSpec.grid(), **TINY).get_embeddings_batch_from_inputs(
        spatials=spatials, input_chws=chws)
    for emb, spatial, chw in zip(embs, spatials, chws):
        # the same pixels placed by hand on the point's UTM square (64 px over 640 m: 10 m pixels)
        utm = spatial.local_utm()
        left, bottom, right, top = spatial.bounds_in(utm)
        transform = Affine(10.0, 0, left, 0, -10.0, top)
        ys = top - 10.0 * (np.arange(64) + 0.5)
        xs = left + 10.0 * (np.arange(64) + 0.5)
        da = xr.DataArray(chw, dims=("band", "y", "x"), coords={"band": list(DOFA_S2), "y": ys, "x": xs})
        da = da.rio.write_crs(utm).rio.write_transform(transform)
        expected = da.rsembed.embed(MODEL, **TINY)
        assert emb.data.rio.crs == utm
        assert emb.data.rio.transform() == Affine(80.0, 0, left, 0, -80.0, top)
        np.testing.assert_allclose(emb.data.values, expected.values, atol=1e-5)
    assert not np.allclose(embs[0].data.values, embs[1].data.values)  # each array is its own input


def test_batch_from_inputs_takes_the_sensor_bands_and_refuses_bad_shapes():
    rgb = SensorSpec("COPERNICUS/S2_SR_HARMONIZED", ("B4", "B3", "B2"))
    (emb,) = xrembed.get_embeddings_batch_from_inputs(
        MODEL, spatials=[PointBuffer(-9.5, 25.0, 160)], input_chws=[_chw(2, (3, 32, 32))], sensor=rgb, **TINY)
    assert emb.data.shape == (32,) and emb.meta["bands"] == ["B04", "B03", "B02"]
    with pytest.raises(errors.SpecError, match="2 spatials for 1 input_chws"):
        xrembed.get_embeddings_batch_from_inputs(MODEL, spatials=[ROI, ROI], input_chws=[_chw(0)], **TINY)
    with pytest.raises(errors.SpecError, match=r"C = 9 channels.*sensor=SensorSpec"):
        xrembed.get_embeddings_batch_from_inputs(MODEL, spatials=[ROI], input_chws=[_chw(0, (4, 64, 64))], **TINY)


# -- list_models_for_data ---------------------------------------------------------------------------------------


def _rows(data):
    return {r["model"]: r for r in xrembed.list_models_for_data(data)}


def test_list_models_for_data_rgb():
    rgb = UserData(_chw(3, (3, 32, 32)), bands=["B4", "B3", "B2"], spatial=PointBuffer(-9.5, 25.0, 160))
    rows = _rows(rgb)
    assert set(rows) == set(xrembed.list_models())
    assert rows["remoteclip"]["compatible"] and rows["remoteclip"]["bands_used"] == ["B04", "B03", "B02"]
    assert not rows["terrafm"]["compatible"] and "B8A" in rows["terrafm"]["reason"]
    assert not rows["prithvi"]["compatible"] and rows["prithvi"]["reason"].startswith("BandMismatchError")
    # DOFA reads RGB when told to: compatible, with the keyword to pass; and that keyword really runs
    tiny = rows[MODEL]
    assert tiny["compatible"] and tiny["embed_kwargs"] == {"bands": ["B4", "B3", "B2"]}
    assert xrembed.get_embedding_from_data(MODEL, rgb, **tiny["embed_kwargs"], **TINY).data.shape == (32,)
    # ... and without it the model refuses
    with pytest.raises(errors.BandMismatchError):
        xrembed.get_embedding_from_data(MODEL, rgb, **TINY)


def test_list_models_for_data_reason_is_the_models_own_refusal():
    s1 = UserData(_chw(4, (2, 32, 32)), bands=["VV", "VH"], spatial=PointBuffer(-9.5, 25.0, 160))
    rows = _rows(s1)
    assert rows["terrafm"]["compatible"] and rows["terrafm"]["modality"] == "s1"
    assert rows["terrafm"]["bands_used"] == ["VV", "VH"]
    assert not rows["remoteclip"]["compatible"]
    with pytest.raises(errors.XrembedError) as refusal:
        xrembed.get_embedding_from_data("remoteclip", s1, weights="random")
    assert rows["remoteclip"]["reason"] == f"{type(refusal.value).__name__}: {refusal.value}"


def test_list_models_for_data_unnamed_channels():
    twelve = UserData(_chw(5, (12, 16, 16)), collection="COPERNICUS/S2_SR_HARMONIZED")  # the canonical L2A order
    assert _rows(twelve)["terrafm"]["compatible"]
    five = UserData(_chw(5, (5, 16, 16)))
    rows = _rows(five)
    assert not any(r["compatible"] for r in rows.values())
    assert all("bands=[...]" in r["reason"] for r in rows.values())
    with pytest.raises(errors.SpecError, match="UserData"):
        xrembed.list_models_for_data(np.zeros((3, 4, 4)))


# -- inspect_provider_patch / inspect_gee_patch -----------------------------------------------------------------


def test_inspect_gee_patch_reports_the_fetched_pixels(_gee_server):  # noqa: F811
    _gee_server.bands = ["B4", "B3", "B2"]
    sensor = SensorSpec("COPERNICUS/S2_SR_HARMONIZED", ("B4", "B3", "B2"), scale_m=10)
    assert xrembed.inspect_gee_patch is xrembed.inspect_provider_patch
    report = xrembed.inspect_gee_patch(spatial=ROI, temporal=SUMMER, sensor=sensor, return_array=True)
    assert report["ok"] and report["issues"] == [] and report["backend"] == "gee"
    info = report["input"]
    assert info["bands"] == ["B4", "B3", "B2"] and info["crs"] == "EPSG:32629"
    assert info["transform"][0] == 10.0 and info["nan_fraction"] == 0.0
    array = report["array"]
    assert array.shape[0] == 3 and array.shape[-2:] == (64, 64)
    # the fake server's own formula on the pixel centres the report gives
    t = info["transform"]
    xs = t[2] + t[0] * (np.arange(64) + 0.5)
    ys = t[5] + t[4] * (np.arange(64) + 0.5)
    yy, xx = np.meshgrid(ys, xs, indexing="ij")
    for b in range(3):
        expected = _gee_server.value(xx, yy, b, 0)
        np.testing.assert_allclose(array[b].reshape(-1, 64, 64)[0], expected, rtol=1e-6)
        assert info["band_stats"][sensor.bands[b]]["max"] == pytest.approx(expected.max(), rel=1e-6)
    flagged = xrembed.inspect_provider_patch(spatial=ROI, temporal=SUMMER, sensor=sensor, value_range=(0, 1))
    assert not flagged["ok"] and "value_range" in flagged["issues"][0] and "array" not in flagged


def test_inspect_provider_patch_local_matches_the_raster():
    sensor = SensorSpec("COPERNICUS/S2_SR_HARMONIZED", ("B04", "B08"), scale_m=100)
    pb = PointBuffer(CENTER_LON, CENTER_LAT, 2000)
    report = xrembed.inspect_provider_patch(spatial=pb, sensor=sensor, source=SAMPLE, return_array=True)
    assert report["backend"] == "local" and report["input"]["shape"] == [2, 40, 40]
    left, bottom, right, top = report["input"]["bounds"]
    assert (right - left, top - bottom) == (4000.0, 4000.0)
    for i, band in enumerate(("B04", "B08")):
        tif = rioxarray.open_rasterio(SAMPLE / f"{band}.tif").squeeze("band", drop=True)
        window = tif.sel(x=slice(left, right), y=slice(top, bottom)).values.astype(float)
        np.testing.assert_array_equal(report["array"][i], window)
        assert report["input"]["band_stats"][band]["mean"] == pytest.approx(window.mean())
    with pytest.raises(errors.SpecError, match="SensorSpec"):
        xrembed.inspect_provider_patch(spatial=pb, sensor="COPERNICUS/S2_SR_HARMONIZED", source=SAMPLE)
    with pytest.raises(errors.OptionError, match="source="):
        xrembed.inspect_provider_patch(spatial=pb, sensor=sensor, backend="local")


# -- reset_runtime ----------------------------------------------------------------------------------------------


def test_reset_runtime_forgets_loaded_models():
    from xrembed import engine

    pb = PointBuffer(CENTER_LON, CENTER_LAT, 1600)
    first = xrembed.get_embedding(MODEL, spatial=pb, source=SAMPLE, **TINY).data
    assert engine.load_count() == 1
    assert xrembed.reset_runtime() == {"models": 1}
    assert engine.load_count() == 0 and xrembed.reset_runtime() == {"models": 0}
    again = xrembed.get_embedding(MODEL, spatial=pb, source=SAMPLE, **TINY).data
    assert engine.load_count() == 1
    np.testing.assert_allclose(again, first, atol=1e-6)  # seeded random weights: the reload is the same model
