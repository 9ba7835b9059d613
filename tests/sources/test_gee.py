"""open_gee: Earth Engine through xee, with the network boundary mocked the way xee and earthengine-api
test themselves.

* ``ee`` objects are real: Earth Engine is initialised offline with earthengine-api's own canned
  algorithm list (``ee.apitestcase.GetAlgorithms``, shipped in the wheel) instead of the
  ``getAlgorithms`` RPC, and without building the REST client (``_install_cloud_api_resource``).
* RPCs are fakes: ``ee.data.computeValue`` (what ``getInfo()`` sends; here only ``size()`` checks),
  ``xee.EarthEngineStore.get_info`` (a ``PropertyMock``, as in ``xee/ext_test.py``) and
  ``ee.data.computePixels`` (deterministic pixels computed from the requested grid).

The server-side expression is checked by decoding what the code sends to those RPCs.
"""

from __future__ import annotations

import datetime as dt
from unittest import mock

import numpy as np
import pytest
from affine import Affine

from xrembed import errors
from xrembed.models.base import InputContext
from xrembed.models.registry import get_adapter, list_models
from xrembed import open_gee  # takes model ids: the catalog resolves their default sensor
from xrembed.catalog import default_sensor
from xrembed.sources.gee import grid_params
from xrembed.specs import BBox, FetchSpec, PointBuffer, SensorSpec, TemporalSpec

ee = pytest.importorskip("ee")
xee = pytest.importorskip("xee")

SUMMER = TemporalSpec.range("2022-06-01", "2022-09-01")
MIDPOINT = np.datetime64("2022-07-17")  # middle of [06-01, 09-01): 92 days, + 46
MIDPOINT_MS = int(dt.datetime(2022, 7, 17, tzinfo=dt.UTC).timestamp() * 1000)
# A 640 m square on the 10 m UTM 29N lattice: exactly 64 x 64 px, two dofa-tiny tiles a side.
ROI = BBox(449040.0, 2764910.0, 449680.0, 2765550.0, crs="EPSG:32629")


# -- the fake server --------------------------------------------------------------------------------


def _decode(obj):
    """The expression graph of an ee object as nested ``{"fn": name, "args": {...}}`` / constants."""
    encoded = ee.serializer.encode(obj, for_cloud_api=True)
    values = encoded["values"]

    def node(value):
        if "valueReference" in value:
            return node(values[value["valueReference"]])
        if "constantValue" in value:
            return value["constantValue"]
        if "arrayValue" in value:
            return [node(v) for v in value["arrayValue"]["values"]]
        if "dictionaryValue" in value:
            return {k: node(v) for k, v in value["dictionaryValue"]["values"].items()}
        if "functionInvocationValue" in value:
            inv = value["functionInvocationValue"]
            name = inv.get("functionName") or "<call>"
            return {"fn": name, "args": {k: node(v) for k, v in inv.get("arguments", {}).items()}}
        if "functionDefinitionValue" in value:
            return {"fn": "<lambda>", "args": {"body": node(values[value["functionDefinitionValue"]["body"]])}}
        if "argumentReference" in value:
            return {"fn": "<arg>", "args": {}}
        return value

    return node(values[encoded["result"]])


def _calls(tree, name=None):
    """Every function call in ``tree`` (outermost first), optionally only those named ``name``."""
    found = []

    def walk(x):
        if isinstance(x, dict):
            if "fn" in x and (name is None or x["fn"] == name):
                found.append(x)
            for v in x.values():
                walk(v)
        elif isinstance(x, list):
            for v in x:
                walk(v)

    walk(tree)
    return found


class FakeEarthEngine:
    """Answers ``size()`` checks, xee's metadata RPC and ``computePixels`` without a network."""

    def __init__(self, sizes=(3,), images=1, times=None, kind="reflectance"):
        self.sizes = list(sizes)
        self.images = images
        self.times = times
        self.kind = kind
        self.size_queries = []  # decoded collections whose size was asked for
        self.pixel_requests = []  # (grid, band, offset, count)
        self.bands = None

    def compute_value(self, obj):
        tree = _decode(obj)
        assert tree["fn"] == "Collection.size", f"unexpected getInfo of {tree['fn']}"
        self.size_queries.append(tree["args"]["collection"])
        return self.sizes.pop(0) if len(self.sizes) > 1 else self.sizes[0]

    def get_info(self, store):
        bands = self.bands
        times = self.times or [1658016000000] * self.images
        first = {"bands": [{"id": b, "data_type": {"type": "PixelType", "precision": "float"}} for b in bands]}
        return {"size": self.images, "props": {}, "first": first,
                "properties": [[f"img{i}" for i in range(self.images)], list(times)]}

    def value(self, x, y, band_index, t):
        """Pixel values as a function of position, band and image: a request on the wrong grid shows."""
        pattern = (x / 10.0) % 50 + 2 * ((y / 10.0) % 40)
        if self.kind == "linear":  # Sentinel-1 linear backscatter power, ~ -20..-5 dB
            return 0.01 + 0.002 * pattern + 0.01 * band_index + 0.005 * t
        return 500.0 + 20.0 * pattern + 100.0 * band_index + 50.0 * t

    def compute_pixels(self, params):
        grid = params["grid"]
        tree = _decode(params["expression"])
        band = _calls(tree, "Image.addBands")[0]["args"]["names"][0]
        to_list = _calls(tree, "Collection.toList")[0]["args"]
        offset, count = to_list.get("offset", 0), to_list["count"]
        self.pixel_requests.append((grid, band, offset, count))
        t = grid["affineTransform"]
        w, h = grid["dimensions"]["width"], grid["dimensions"]["height"]
        xs = t["translateX"] + t["scaleX"] * (np.arange(w) + 0.5)
        ys = t["translateY"] + t["scaleY"] * (np.arange(h) + 0.5)
        yy, xx = np.meshgrid(ys, xs, indexing="ij")
        out = np.zeros((h, w), dtype=[(f"b{i}", "<f4") for i in range(count)])
        for i in range(count):
            out[f"b{i}"] = self.value(xx, yy, self.bands.index(band), offset + i)
        return out


@pytest.fixture
def ee_offline(monkeypatch):
    """Earth Engine initialised offline (earthengine-api's own test recipe), reset afterwards."""
    from ee import apitestcase

    monkeypatch.setattr(ee.data, "_install_cloud_api_resource", lambda: None)
    monkeypatch.setattr(ee.data, "getAlgorithms", apitestcase.GetAlgorithms)
    monkeypatch.setattr(ee.deprecation, "_FetchDataCatalogStac", dict)
    ee.Reset()
    ee.Initialize(None, "", project="xrembed-test")
    yield
    ee.Reset()


S2_DOFA = ["B4", "B3", "B2", "B5", "B6", "B7", "B8", "B11", "B12"]


@pytest.fixture
def server(ee_offline, monkeypatch):
    """The fake server behind ``ee.data`` and xee's metadata RPC; ``server.bands`` is what the first image
    of the opened collection holds (tests that select other bands set it)."""
    fake = FakeEarthEngine()
    fake.bands = list(S2_DOFA)
    fake.expressions = []  # decoded pixel expressions
    fake.store_kwargs = {}
    monkeypatch.setattr(ee.data, "computeValue", fake.compute_value)

    def pixels(params):
        fake.expressions.append(_decode(params["expression"]))
        return fake.compute_pixels(params)

    monkeypatch.setattr(ee.data, "computePixels", pixels)
    original_open = xee.EarthEngineStore.open.__func__

    def spy_open(cls, image_collection, **kwargs):  # records what open_gee hands to xee
        fake.store_kwargs = kwargs
        return original_open(cls, image_collection, **kwargs)

    monkeypatch.setattr(xee.EarthEngineStore, "open", classmethod(spy_open))
    with mock.patch.object(xee.EarthEngineStore, "get_info", new_callable=mock.PropertyMock) as info:
        info.side_effect = lambda: fake.get_info(None)
        yield fake


# -- grid ------------------------------------------------------------------------------------------


def test_grid_is_local_utm_snapped_to_the_scale():
    g = grid_params(PointBuffer(-9.5, 25.0, 500), PointBuffer(-9.5, 25.0, 500).local_utm(), 10)
    assert g["crs"] == "EPSG:32629"
    a, b, c, d, e, f = g["crs_transform"]
    assert (a, b, d, e) == (10, 0, 0, -10)
    assert c % 10 == 0 and f % 10 == 0  # on the global 10 m lattice (Sentinel-2's own)
    assert g["shape_2d"] in ((100, 100), (101, 101), (100, 101), (101, 100))  # 1000 m, snapped outwards
    # an aligned box gives exactly its own grid
    g = grid_params(ROI, ROI.local_utm(), 10)
    assert g["crs_transform"] == (10.0, 0.0, 449040.0, 0.0, -10.0, 2765550.0)
    assert g["shape_2d"] == (64, 64)
    assert grid_params(ROI, ROI.local_utm(), 30)["shape_2d"] == (22, 22)


# -- Sentinel-2 -----------------------------------------------------------------------------------------


def test_model_default_sensor_median_composite(server):
    ds = open_gee("dofa", spatial=ROI, temporal=SUMMER)

    # the server-side expression: xee's metadata request is about exactly this collection
    (size_query,) = server.size_queries
    load = _calls(size_query, "ImageCollection.load")[0]["args"]
    assert load["id"] == "COPERNICUS/S2_SR_HARMONIZED"
    rect = _calls(size_query, "GeometryConstructors.Rectangle")[0]["args"]
    assert rect["coordinates"] == [449040.0, 2764910.0, 449680.0, 2765550.0] and rect["geodesic"] is False
    assert _calls(rect, "Projection")[0]["args"]["crs"] == "EPSG:32629"
    dates = _calls(size_query, "DateRange")[0]["args"]
    assert (dates["start"], dates["end"]) == ("2022-06-01", "2022-09-01")
    cloud = _calls(size_query, "Filter.lessThan")[0]["args"]
    assert (cloud["leftField"], cloud["rightValue"]) == ("CLOUDY_PIXEL_PERCENTAGE", 30)


    # the Dataset: one variable per band, (time, y, x), one composite step at the window's midpoint
    assert list(ds.data_vars) == server.bands
    assert ds["B4"].dims == ("time", "y", "x") and ds.sizes == {"time": 1, "y": 64, "x": 64}
    assert ds.time.values.astype("datetime64[D]")[0] == MIDPOINT
    np.testing.assert_allclose(ds.x.values, 449040 + 5 + 10 * np.arange(64))  # pixel centres
    np.testing.assert_allclose(ds.y.values, 2765550 - 5 - 10 * np.arange(64))
    assert ds.rio.crs.to_epsg() == 32629
    assert ds.rio.transform() == Affine(10, 0, 449040, 0, -10, 2765550)
    assert "spatial_ref" in ds.coords
    assert ds["B4"].chunks is not None  # lazy, on io chunks (896 > 64: one chunk)
    assert ds.attrs["collection"] == "COPERNICUS/S2_SR_HARMONIZED"
    assert ds.attrs["composite"] == "median" and ds.attrs["cloud_filter"] == "CLOUDY_PIXEL_PERCENTAGE < 30"
    assert "median()" in ds.attrs["filters"] and "filterDate(2022-06-01, 2022-09-01)" in ds.attrs["filters"]
    assert "scale_factor" not in ds["B4"].encoding  # xee's pixel size must not act as a CF scale

    # pixels: requested on the grid above, returned where they belong
    b5 = ds["B5"].isel(time=0).values
    yy, xx = np.meshgrid(ds.y.values, ds.x.values, indexing="ij")
    np.testing.assert_allclose(b5, server.value(xx, yy, 3, 0), rtol=1e-6)
    for grid, band, _, count in server.pixel_requests:
        assert grid["crsCode"] == "EPSG:32629" and grid["affineTransform"]["scaleX"] == 10.0 and count == 1
    # what xee asks pixels of is our composite: median of the selected bands, stamped at the midpoint
    tree = server.expressions[0]
    assert _calls(tree, "reduce.median") and not _calls(tree, "ImageCollection.mosaic")
    assert _calls(tree, "Image.select")[-1]["args"]["bandSelectors"] == S2_DOFA  # ours: innermost
    stamps = [c["args"]["value"] for c in _calls(tree, "Element.set") if c["args"]["key"] == "system:time_start"]
    assert set(stamps) == {MIDPOINT_MS}


def test_collection_id_bands_spelling_mosaic_and_no_cloud_filter(server):
    server.bands = ["B4", "B8A", "B11"]
    ds = open_gee(
        "COPERNICUS/S2_SR_HARMONIZED", spatial=ROI, temporal=SUMMER, bands=["B04", "b8a", "B11"],
        composite="mosaic", cloudy_pct=None, io_chunks={"time": 1, "y": 32, "x": 64},
    )
    assert list(ds.data_vars) == ["B4", "B8A", "B11"]
    (size_query,) = server.size_queries
    assert not _calls(size_query, "Filter.lessThan")
    assert ds.attrs["cloud_filter"] == "none" and ds.attrs["composite"] == "mosaic"
    assert ds.chunks["y"] == (32, 32) and ds.chunks["x"] == (64,)
    ds["B8A"].values  # noqa: B018
    assert len(server.expressions) == 2  # 64 x 64 px in 32 x 64 windows
    tree = server.expressions[0]
    assert _calls(tree, "ImageCollection.mosaic") and not _calls(tree, "reduce.median")
    # Earth Engine spelling is what is sent
    assert _calls(tree, "Image.select")[-1]["args"]["bandSelectors"] == ["B4", "B8A", "B11"]
    sort = _calls(tree, "Collection.limit")[0]["args"]  # sort("system:time_start"): ascending, newest on top
    assert sort["key"] == "system:time_start" and sort.get("ascending", True) is True


def test_time_series_without_composite(server):
    server.images = 3
    server.times = [1654300800000, 1655164800000, 1656028800000]  # 2022-06-04, 06-14, 06-24
    ds = open_gee("dofa", spatial=ROI, temporal=SUMMER, composite=None, io_chunks={"time": 1, "y": 64, "x": 64})
    assert ds.sizes["time"] == 3 and ds.attrs["composite"] == "none"
    assert str(ds.time.values[1])[:10] == "2022-06-14"
    assert ds["B4"].chunks[0] == (1, 1, 1)
    last = ds["B4"].isel(time=2, y=0, x=0).values
    assert last == pytest.approx(server.value(449045.0, 2765545.0, 0, 2))  # third image, by its offset
    assert not _calls(server.size_queries[0], "reduce.median")


def test_fetch_spec_and_sensor_spec(server):
    sensor = SensorSpec("COPERNICUS/S2_HARMONIZED", ("B2", "B3"), scale_m=20, cloudy_pct=10)
    ds = open_gee(sensor, spatial=ROI, temporal=SUMMER, fetch=FetchSpec(cloudy_pct=5))
    assert ds.rio.resolution() == (20.0, -20.0) and ds.sizes["x"] == 32
    assert ds.attrs["cloud_filter"] == "CLOUDY_PIXEL_PERCENTAGE < 5"
    ds = open_gee(sensor, spatial=ROI, temporal=SUMMER, cloudy_pct=50, scale_m=10)  # keywords win
    assert ds.attrs["cloud_filter"] == "CLOUDY_PIXEL_PERCENTAGE < 50" and ds.sizes["x"] == 64


def test_landsat_defaults_to_30m_and_cloud_cover(server):
    server.bands = ["SR_B4", "SR_B3"]
    ds = open_gee("LANDSAT/LC09/C02/T1_L2", spatial=ROI, temporal=SUMMER, bands=["SR_B4", "SR_B3"])
    assert ds.rio.resolution() == (30.0, -30.0) and list(ds.data_vars) == ["SR_B4", "SR_B3"]
    assert ds.attrs["cloud_filter"] == "CLOUD_COVER < 30"


def test_empty_collection_names_the_filters(server):
    server.sizes = [0]
    with pytest.raises(errors.NoDataInBoundsError, match=r"CLOUDY_PIXEL_PERCENTAGE < 30.*raise cloudy_pct"):
        open_gee("dofa", spatial=ROI, temporal=SUMMER)


# -- Sentinel-1 -----------------------------------------------------------------------------------------


def test_sentinel1_linear_iw_dual_pol_orbit(server):
    server.kind, server.bands = "linear", ["VV", "VH"]
    ds = open_gee("terrafm", modality="s1", spatial=ROI, temporal=SUMMER, s1_orbit="descending")
    _iw_query, final_query = server.size_queries
    assert _calls(final_query, "ImageCollection.load")[0]["args"]["id"] == "COPERNICUS/S1_GRD_FLOAT"
    equals = {(c["args"]["leftField"], c["args"]["rightValue"]) for c in _calls(final_query, "Filter.equals")}
    assert equals == {("instrumentMode", "IW"), ("orbitProperties_pass", "DESCENDING")}
    contains = {c["args"]["rightValue"] for c in _calls(final_query, "Filter.listContains")}
    assert contains == {"VV", "VH"}
    assert not _calls(final_query, "Filter.lessThan")  # no cloud filter on radar
    assert list(ds.data_vars) == ["VV", "VH"]
    assert ds.attrs["s1_instrument_mode"] == "IW" and ds.attrs["s1_units"] == "linear power"
    assert ds.attrs["s1_orbit_pass"] == "DESCENDING" and ds.attrs["s1_polarisation"] == "dual VV+VH"


def test_sentinel1_db_and_iw_relaxed_when_empty(server):
    server.sizes, server.bands = [0, 4], ["VV", "VH"]  # no IW scene, four scenes in other modes
    ds = open_gee("COPERNICUS/S1_GRD_FLOAT", spatial=ROI, temporal=SUMMER, bands=["VV", "VH"], s1_linear=False)
    iw_query, final_query = server.size_queries
    assert _calls(final_query, "ImageCollection.load")[0]["args"]["id"] == "COPERNICUS/S1_GRD"
    assert ("instrumentMode", "IW") in {(c["args"]["leftField"], c["args"]["rightValue"]) for c in _calls(iw_query, "Filter.equals")}
    assert not _calls(final_query, "Filter.equals")
    assert ds.attrs["s1_instrument_mode"].startswith("relaxed") and ds.attrs["s1_units"] == "dB"
    assert ds.attrs["images_matched"] == 4


def test_sentinel1_strict_iw_empty_is_an_error(server):
    server.sizes = [0, 0]
    with pytest.raises(errors.NoDataInBoundsError, match="instrumentMode == IW"):
        open_gee("terrafm", modality="s1", spatial=ROI, temporal=SUMMER, s1_relax_iw_on_empty=False)


# -- defaults, options, initialisation -------------------------------------------------------------------


def test_every_model_has_a_default_sensor_its_adapter_accepts():
    from xrembed.models.dofa import DOFA

    context = InputContext(resolution_m=10.0, center_lonlat=(-9.5, 25.0), times=("2022-07-17",))
    for model in list_models():
        adapter = get_adapter(model)
        modalities = [None] + list(adapter.describe().get("modalities", {}))
        if isinstance(adapter, DOFA):  # DOFA (and test sub-families) also reads Sentinel-1
            modalities.append("s1")
        for modality in modalities:
            sensor = default_sensor(model, modality)
            from xrembed.bands import canonical_band_names

            plan = adapter.plan_inputs(canonical_band_names(sensor.bands), modality=modality, context=context)
            assert set(plan.bands) == set(canonical_band_names(sensor.bands)), (model, modality)
    assert default_sensor("terrafm", "s1").collection == "COPERNICUS/S1_GRD_FLOAT"
    assert default_sensor("dofa", "s1").collection == "COPERNICUS/S1_GRD"  # DOFA reads dB
    assert default_sensor("prithvi").scale_m == 30
    assert default_sensor("dofa-tiny") is DOFA.sensors["s2"]  # sub-families read their family's sensors
    with pytest.raises(errors.OptionError, match="modality"):
        default_sensor("remoteclip", "s1")


def test_option_errors_name_the_fix(server):
    with pytest.raises(errors.OptionError, match="scale_m"):
        open_gee("MY/UNKNOWN_COLLECTION", spatial=ROI, temporal=SUMMER, bands=["b1"])
    with pytest.raises(errors.OptionError, match="Sentinel-1"):
        open_gee("dofa", spatial=ROI, temporal=SUMMER, s1_orbit="ASCENDING")
    with pytest.raises(errors.OptionError, match="MiB"):
        open_gee("dofa", spatial=ROI, temporal=SUMMER, io_chunks={"time": 4, "y": 2048, "x": 2048})
    with pytest.raises(errors.OptionError, match="composite"):
        open_gee("dofa", spatial=ROI, temporal=SUMMER, composite="mean")
    with pytest.raises(errors.SpecError, match="TemporalSpec"):
        open_gee("dofa", spatial=ROI, temporal=("2022-06-01", "2022-09-01"))
    with pytest.raises(errors.UnknownModelError):
        open_gee("not-a-model", spatial=ROI, temporal=SUMMER)


def test_ee_init_kwargs_initialise_here_and_go_to_xee(server, monkeypatch):
    real_initialize = ee.Initialize
    made = []

    def initialize(**kwargs):  # records the call, then initialises offline like the fixture
        made.append(kwargs)
        real_initialize(None, "", project=kwargs["project"])

    ee.Reset()
    monkeypatch.setattr(ee, "Initialize", initialize)
    creds = object()
    ds = open_gee("dofa", spatial=ROI, temporal=SUMMER,
                  ee_init_kwargs={"project": "my-project", "credentials_function": lambda: creds})
    assert made == [{"project": "my-project", "credentials": creds}]
    assert server.store_kwargs["ee_init_if_necessary"] is True  # dask workers initialise themselves
    assert "credentials_function" in server.store_kwargs["ee_init_kwargs"]  # called on each worker
    assert ds.sizes["x"] == 64


def test_uninitialised_earth_engine_is_a_clear_error(ee_offline, monkeypatch):
    ee.Reset()

    def refuse(**kwargs):
        raise ee.EEException("Please authorize access to your Earth Engine account")

    monkeypatch.setattr(ee, "Initialize", refuse)
    with pytest.raises(errors.XrembedError, match="earthengine authenticate"):
        open_gee("dofa", spatial=ROI, temporal=SUMMER)


# -- straight into embed ---------------------------------------------------------------------------------


def test_open_gee_output_embeds_with_dofa_tiny(server, tiny):
    ds = open_gee("dofa-tiny", spatial=ROI, temporal=SUMMER)
    assert ds["B4"].chunks[1:] == ((64,), (64,))  # io chunks: four 32 px tiles a side (128) > 64 px
    emb = ds.rsembed.embed("dofa-tiny", **tiny)
    assert emb.dims == ("time", "embedding", "y", "x") and emb.shape[2:] == (8, 8)
    assert emb.rio.crs.to_epsg() == 32629
    assert emb.rio.transform() == Affine(80, 0, 449040, 0, -80, 2765550)
    assert server.pixel_requests == []  # embed() reads no pixels
    values = emb.compute().values
    assert np.isfinite(values).all()
    assert {band for _, band, _, _ in server.pixel_requests} == set(server.bands)


def test_open_gee_sentinel1_embeds_with_terrafm(server, tiny):
    server.kind, server.bands = "linear", ["VV", "VH"]
    roi = BBox(449040.0, 2763310.0, 449040.0 + 2240, 2765550.0, crs="EPSG:32629")  # 224 x 224 px
    ds = open_gee("terrafm", modality="s1", spatial=roi, temporal=SUMMER)
    assert ds.sizes == {"time": 1, "y": 224, "x": 224}
    emb = ds.rsembed.embed("terrafm", modality="s1", **tiny)
    assert emb.shape == (1, 768, 14, 14)
    assert emb.rio.transform() == Affine(160, 0, 449040, 0, -160, 2765550)
    assert np.isfinite(emb.compute().values).all()


# -- live --------------------------------------------------------------------------------------------


@pytest.mark.network
def test_live_sentinel2_median_composite():
    import os

    ds = open_gee(
        "dofa", spatial=PointBuffer(-9.5, 25.0, 320), temporal=SUMMER,
        ee_init_kwargs={"project": os.environ["EE_PROJECT"]} if os.environ.get("EE_PROJECT") else None,
    )
    assert ds.rio.crs.to_epsg() == 32629 and ds.rio.resolution() == (10.0, -10.0)
    b4 = ds["B4"].isel(time=0).values
    assert np.isfinite(b4).mean() > 0.9 and 0 < np.nanmedian(b4) < 10000
