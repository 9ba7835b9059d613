"""rs-embed's documentation (``../shared/reference/peer-docs/``), call by call, with ``rs_embed`` replaced by
``xrembed``.

Each test names the page and the call it runs. Earth Engine is test_gee's fake server (only the network
boundary is mocked); Tessera is test_tessera's fixture in the product's real tile layout. Official weights
are not downloaded in tests: each model call adds ``weights="random"`` (the only change besides the import),
and where a page writes ``spatial=...`` a small ROI is used. Calls that xrembed refuses must raise an
``xrembed.errors`` error naming the xrembed way; those are listed in docs/migration.md.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import xarray as xr
from test_gee import ROI, ee_offline  # noqa: F401  (ee_offline: used by server)
from test_gee import server as _gee_server  # noqa: F401
from test_tessera import tile_source  # noqa: F401  (module-scoped product fixture)

import xrembed
from xrembed import errors

RANDOM = {"weights": "random"}  # no Hub in tests


@pytest.fixture
def fake_ee(_gee_server):  # noqa: F811
    return _gee_server


def _serve(fake, model, modality=None):
    """Let the fake Earth Engine hold the bands of ``model``'s default sensor."""
    from xrembed.catalog import default_sensor

    fake.bands = list(default_sensor(model, modality).bands)


def _grid(data, dim):
    assert isinstance(data, xr.DataArray) and data.dims == ("embedding", "y", "x") and data.sizes["embedding"] == dim
    assert data.rio.crs is not None and data.rio.transform(recalc=True) == data.rio.transform()
    assert np.isfinite(data.values).all()


# -- README: unified interface --------------------------------------------------------------------------------


def test_readme_spatial_temporal_output_specs():
    from xrembed import BBox, OutputSpec, PointBuffer, TemporalSpec, get_embedding  # noqa: F401  (README's import)

    box = BBox(121.45, 31.15, 121.55, 31.25)  # BBox(minlon, minlat, maxlon, maxlat)
    point = PointBuffer(121.5, 31.2, 2048)  # PointBuffer(lon, lat, buffer_m)
    assert box.crs == "EPSG:4326" and point.buffer_m == 2048
    assert TemporalSpec.year(2022).interval == ("2022-01-01", "2023-01-01")
    assert TemporalSpec.range("2022-06-01", "2022-09-01").interval == ("2022-06-01", "2022-09-01")
    assert OutputSpec.pooled(pooling="mean").mode == "pooled"
    # OutputSpec.grid(scale_m=10): refused as by rs-embed itself, naming the fetch setting
    with pytest.raises(errors.SpecError, match=r"fetch=FetchSpec\(scale_m=10\)"):
        OutputSpec.grid(scale_m=10)


def test_readme_example_1_tessera_local(tile_source):  # noqa: F811
    from xrembed import OutputSpec, PointBuffer, TemporalSpec, get_embedding

    spatial = PointBuffer(lon=0.05, lat=52.05, buffer_m=2048)  # inside the fixture's tiles (README: 121.5, 31.2)
    temporal = TemporalSpec.year(2024)
    emb_tes_g = get_embedding("tessera", spatial=spatial, temporal=temporal, output=OutputSpec.grid(),
                              backend="local", source=tile_source["root"])
    _grid(emb_tes_g.data.fillna(0), 128)
    assert emb_tes_g.data.rio.crs.to_epsg() == 32631
    print("tessera grid meta:", emb_tes_g.meta)
    assert emb_tes_g.meta["model"] == "tessera" and emb_tes_g.meta["crs"] == "EPSG:32631"
    figure = xrembed.plot.pseudocolor(emb_tes_g.data, title="Tessera PCA pseudocolor")  # plot_embedding_pseudocolor
    assert figure.axes[0].get_title() == "Tessera PCA pseudocolor"


def test_readme_example_2_remoteclip_gee(fake_ee):
    from xrembed import OutputSpec, PointBuffer, TemporalSpec, get_embedding

    _serve(fake_ee, "remoteclip")
    spatial = PointBuffer(lon=121.5, lat=31.2, buffer_m=2048)
    emb = get_embedding("remoteclip_s2rgb", spatial=spatial, temporal=TemporalSpec.range("2022-06-01", "2022-09-01"),
                        output=OutputSpec.grid(), backend="gee", **RANDOM)
    print(emb.data.shape)  # (D, H, W)
    _grid(emb.data, 768)
    assert emb.data.rio.crs.to_epsg() == 32651  # the point's UTM zone
    assert emb.data.rio.transform().a == 320.0  # patch 32 at 10 m


# -- API specs page -------------------------------------------------------------------------------------------


def test_api_page_spatial_and_temporal_specs():
    from xrembed import BBox, PointBuffer, TemporalSpec

    box = BBox(121.45, 31.15, 121.55, 31.25, crs="EPSG:4326")
    assert box.validate() is box  # validate() checks that bounds are valid
    assert PointBuffer(121.5, 31.2, 2048, crs="EPSG:4326").validate().buffer_m == 2048
    with pytest.raises(errors.SpecError, match="positive"):
        PointBuffer(121.5, 31.2, 0)  # requires buffer_m > 0 (refused at construction already)
    direct = TemporalSpec("range", None, "2022-06-01", "2022-09-01")
    assert direct == TemporalSpec.range("2022-06-01", "2022-09-01") and direct.validate() is direct
    assert TemporalSpec("year", 2022, None, None) == TemporalSpec.year(2022)
    one_day = TemporalSpec.range("2022-06-01", "2022-06-02")  # the page's single-day window
    assert one_day.interval == ("2022-06-01", "2022-06-02")


def test_api_page_sensor_and_fetch_specs(fake_ee):
    from xrembed import FetchSpec, SensorSpec, get_embedding

    sensor = SensorSpec(
        collection="COPERNICUS/S2_SR_HARMONIZED", bands=("B4", "B3", "B2"), scale_m=10, cloudy_pct=30, fill_value=0.0,
        composite="median", modality=None, orbit=None, use_float_linear=True, check_input=False, check_raise=True,
        check_save_dir=None,
    )
    assert sensor.validate() is sensor
    fetch = FetchSpec(scale_m=None, cloudy_pct=None, fill_value=None, composite=None)
    assert fetch.validate() is fetch
    _serve(fake_ee, "prithvi")
    emb = get_embedding("prithvi", spatial=ROI, temporal=xrembed.TemporalSpec.range("2022-06-01", "2022-09-01"),
                        fetch=FetchSpec(scale_m=10, cloudy_pct=10), **RANDOM)
    assert emb.data.shape == (768,) and np.isfinite(emb.data).all()
    scales = {g["affineTransform"]["scaleX"] for g, _, _, _ in fake_ee.pixel_requests}
    assert scales == {10.0}  # the FetchSpec override, not Prithvi's default 30 m
    with pytest.raises(errors.SpecError, match="not both"):  # fetch and sensor cannot be passed together
        get_embedding("prithvi", spatial=ROI, sensor=sensor, fetch=FetchSpec(scale_m=10), **RANDOM)


def test_api_page_output_specs(fake_ee):
    from xrembed import OutputSpec

    assert OutputSpec("grid", "mean", "north_up") == OutputSpec.grid()
    assert OutputSpec.pooled(pooling="mean") == OutputSpec("pooled")
    native = OutputSpec.grid(grid_orientation="native")
    assert native.validate() is native
    _serve(fake_ee, "dofa-tiny")
    with pytest.warns(UserWarning, match="grid_orientation='native' has no effect"):  # always north-up here
        emb = xrembed.get_embedding("dofa-tiny", spatial=ROI, output=native, backend="gee",
                                    temporal=xrembed.TemporalSpec.range("2022-06-01", "2022-09-01"), **RANDOM)
    assert emb.data.rio.transform().e < 0


def test_api_page_input_prep_specs(fake_ee):
    from xrembed import InputPrepSpec

    spec = InputPrepSpec(mode="tile", tile_size=None, tile_stride=None, max_tiles=9, pad_edges=True)
    assert spec.validate() is spec
    forms = [InputPrepSpec.resize(), InputPrepSpec.tile(), InputPrepSpec.auto(max_tiles=4), "resize", "tile", "auto"]
    _serve(fake_ee, "dofa-tiny")
    temporal = xrembed.TemporalSpec.range("2022-06-01", "2022-09-01")
    for form in forms:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # max_tiles has no effect (tiles are never snapped)
            emb = xrembed.get_embedding("dofa-tiny", spatial=ROI, temporal=temporal, input_prep=form, **RANDOM)
        assert emb.data.shape == (32,)
    # InputPrepSpec.tile(tile_size=224): the explicit size, DOFA's own, runs
    xrembed.tiling.check_input_prep("dofa", InputPrepSpec.tile(tile_size=224))


def test_api_page_export_objects(tmp_path):
    from xrembed import ExportConfig, ExportModelRequest, ExportTarget, SensorSpec

    combined = ExportTarget.combined(tmp_path / "exports" / "run")
    per_item = ExportTarget.per_item(tmp_path / "exports" / "items", names=["p1", "p2"])
    assert combined.path_for("zarr").name == "run.zarr" and per_item.item_names(2) == ["p1", "p2"]
    config = ExportConfig(save_inputs=True, save_embeddings=True, chunk_size=32, num_workers=8, resume=True)
    assert config.save_inputs and config.resume
    my_s1_sensor = SensorSpec("COPERNICUS/S1_GRD_FLOAT", ("VV", "VH"), cloudy_pct=None)
    requests = [ExportModelRequest("remoteclip"), ExportModelRequest("terrafm", modality="s1", sensor=my_s1_sensor),
                ExportModelRequest("thor", model_config={"variant": "large"})]
    assert [r.key for r in requests] == ["remoteclip", "terrafm", "thor"]
    # THOR is not ported: the export refuses it before touching the target, naming the models it has
    with pytest.raises(errors.UnknownModelError, match="available"):
        xrembed.export_batch(spatials=[ROI], temporal=None, models=[requests[2]], target=combined, config=config)
    assert not (tmp_path / "exports").exists()


def test_api_page_export_with_inputs_runs(tmp_path):
    """The page's ExportConfig on a real export: embeddings and inputs both come back."""
    from xrembed import ExportConfig, ExportModelRequest, ExportTarget, PointBuffer

    from pyproj import Transformer

    lon, lat = Transformer.from_crs("EPSG:32629", "EPSG:4326", always_xy=True).transform(222380.0, 2777620.0)
    centre = PointBuffer(lon, lat, 1600)  # the bundled sample's centre (EPSG:32629)
    xrembed.export_batch(
        spatials=[centre], temporal=None, models=[ExportModelRequest.configure("dofa-tiny", **RANDOM)],
        target=ExportTarget.combined(tmp_path / "run"), source=xrembed.sample_path(),
        config=ExportConfig(save_inputs=True, save_embeddings=True, chunk_size=32, num_workers=8, resume=True,
                            show_progress=False),
    )
    result = xrembed.load_export(tmp_path / "run.zarr")
    assert result.embedding("dofa-tiny").shape == (1, 32)
    (inp,) = result.inputs("dofa-tiny")
    assert inp.dims == ("band", "y", "x") and inp.rio.crs.to_epsg() == 32629


def test_api_page_embedding_import_path():
    from xrembed.core.embedding import Embedding  # rs_embed.core.embedding

    emb = Embedding(data=np.zeros(3, np.float32), meta={"model": "x"})
    assert emb is not None and Embedding is xrembed.Embedding and emb.ok


# -- DOFA model page ------------------------------------------------------------------------------------------


def test_dofa_page_minimal_provider_example(fake_ee):
    from xrembed import OutputSpec, PointBuffer, TemporalSpec, get_embedding

    _serve(fake_ee, "dofa")
    emb = get_embedding(
        "dofa",
        spatial=PointBuffer(lon=121.5, lat=31.2, buffer_m=1120),  # (page: 2048) one 224 px tile
        temporal=TemporalSpec.range("2022-06-01", "2022-09-01"),
        output=OutputSpec.pooled(),
        backend="gee",
        **RANDOM,
    )
    assert emb.data.shape == (768,) and np.isfinite(emb.data).all()
    assert emb.meta["bands"] == ["B04", "B03", "B02", "B05", "B06", "B07", "B08", "B11", "B12"]  # the page's order


def test_dofa_page_large_variant(fake_ee):
    from xrembed import OutputSpec, PointBuffer, TemporalSpec, get_embedding

    _serve(fake_ee, "dofa")
    emb = get_embedding(
        "dofa",
        spatial=PointBuffer(lon=121.5, lat=31.2, buffer_m=2048),
        temporal=TemporalSpec.range("2022-06-01", "2022-09-01"),
        output=OutputSpec.grid(),  # (page: pooled) a lazy grid checks the whole request without a ViT-L forward
        backend="gee",
        variant="large",
        lazy=True,
        **RANDOM,
    )
    assert emb.data.sizes["embedding"] == 1024 and emb.data.chunks is not None
    assert emb.data.rio.transform().a == 160.0  # patch 16 at 10 m
    assert xrembed.ExportModelRequest.configure("dofa", variant="large").model_config == {"variant": "large"}
    with pytest.raises(errors.UnknownModelError, match=r"choose one of \['base', 'large'\]"):  # "b"/"l" aliases
        get_embedding("dofa", spatial=ROI, temporal=TemporalSpec.range("2022-06-01", "2022-09-01"), variant="l",
                      **RANDOM)


def test_dofa_page_custom_bands_sensor(fake_ee):
    from xrembed import SensorSpec

    sensor = SensorSpec(collection="COPERNICUS/S2_SR_HARMONIZED", bands=("B2", "B3", "B4", "B8"), scale_m=10)
    fake_ee.bands = ["B2", "B3", "B4", "B8"]
    emb = xrembed.get_embedding("dofa-tiny", spatial=ROI, temporal=xrembed.TemporalSpec.range("2022-06-01", "2022-09-01"),
                                sensor=sensor, **RANDOM)
    assert emb.meta["bands"] == ["B02", "B03", "B04", "B08"]  # known S2 wavelengths: no wavelengths= needed


def test_dofa_page_tensor_path():
    """backend="tensor" via get_embeddings_batch_from_inputs; already-normalised [0,1] inputs are rejected."""
    spatials = [xrembed.PointBuffer(-9.5, 25.0, 160)] * 2
    raw = [np.random.default_rng(i).uniform(100, 4000, (9, 32, 32)) for i in range(2)]
    embs = xrembed.Model("dofa-tiny", **RANDOM).get_embeddings_batch_from_inputs(spatials=spatials, input_chws=raw)
    assert [e.data.shape for e in embs] == [(32,), (32,)]
    scaled = [r / 10000.0 for r in raw]
    with pytest.raises(errors.XrembedError, match="already normalised") as refused:
        xrembed.get_embeddings_batch_from_inputs("dofa-tiny", spatials=spatials, input_chws=scaled, **RANDOM)
    assert isinstance(refused.value.__cause__, errors.InputRangeError)


# -- TerraFM model page ---------------------------------------------------------------------------------------


def test_terrafm_page_s2_example(fake_ee):
    from xrembed import OutputSpec, PointBuffer, TemporalSpec, get_embedding

    _serve(fake_ee, "terrafm", "s2")
    emb = get_embedding(
        "terrafm",
        spatial=PointBuffer(lon=121.5, lat=31.2, buffer_m=1120),  # (page: 2048) one 224 px tile
        temporal=TemporalSpec.range("2022-06-01", "2022-09-01"),
        modality="s2",
        output=OutputSpec.pooled(),
        backend="gee",
        **RANDOM,
    )
    assert emb.data.shape == (768,) and np.isfinite(emb.data).all()


def test_terrafm_page_s1_example(fake_ee):
    from xrembed import OutputSpec, PointBuffer, SensorSpec, TemporalSpec, get_embedding

    fake_ee.bands, fake_ee.kind = ["VV", "VH"], "linear"
    sensor = SensorSpec(
        collection="COPERNICUS/S1_GRD_FLOAT",
        bands=("VV", "VH"),
        scale_m=10,
        composite="median",
        use_float_linear=True,
        s1_require_iw=True,
        s1_relax_iw_on_empty=True,
    )
    emb = get_embedding(
        "terrafm",
        spatial=PointBuffer(lon=121.5, lat=31.2, buffer_m=1120),  # (page: 2048) one 224 px tile
        temporal=TemporalSpec.range("2022-06-01", "2022-09-01"),
        sensor=sensor,
        modality="s1",
        output=OutputSpec.pooled(),
        backend="gee",
        **RANDOM,
    )
    assert emb.data.shape == (768,) and np.isfinite(emb.data).all()
    from test_gee import _calls

    query = fake_ee.size_queries[-1]
    assert _calls(query, "ImageCollection.load")[0]["args"]["id"] == "COPERNICUS/S1_GRD_FLOAT"
    assert any(c["args"].get("rightValue") == "IW" for c in _calls(query, "Filter.equals"))


# -- DOFA-CLIP README (its calls are open_clip's; xrembed's counterparts) ----------------------------------------


def test_dofa_clip_readme_wavelengths_and_input_size():
    """The README's wavelength configurations are what xrembed feeds DOFA-CLIP for those bands, at 384 px."""
    from xrembed.models.registry import get_adapter

    adapter = get_adapter("dofa_clip")
    wvs_rgb = [0.665, 0.560, 0.490]  # Red, Green, Blue
    assert list(adapter.plan_inputs(["B04", "B03", "B02"]).option("wavelengths")) == pytest.approx(wvs_rgb)
    s2 = ["B04", "B03", "B02", "B05", "B06", "B07", "B08", "B11", "B12"]
    wvs_multi = [0.665, 0.56, 0.49, 0.705, 0.74, 0.783, 0.842, 1.61, 2.19]  # Sentinel-2, 9 bands
    assert list(adapter.plan_inputs(s2, bands=s2).option("wavelengths")) == pytest.approx(wvs_multi)
    info = xrembed.describe_model("dofa_clip")
    assert (info["image_size"], info["patch_size"]) == (384, 14)  # "Input Resolution: 384x384", ViT-14
    assert callable(xrembed.encode_text)  # model.encode_text(tokenizer(labels)) -> xrembed.encode_text("dofa_clip", labels)
