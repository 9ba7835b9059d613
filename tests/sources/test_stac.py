"""open_stac: STAC items through odc-stac -> lazy (time, band, y, x), checked against rasterio reads.

The real Earth Search item of the shared Sentinel-2 scene is used with its asset hrefs rewritten to the
local files. Nothing is mocked except the HTTP boundary (pystac's urllib3 GET) in the URL test.
"""

import copy
import io
import json
import shutil

import dask.array as dsa
import numpy as np
import pystac
import pytest
import rasterio
import urllib3
from affine import Affine
from rasterio.enums import Resampling

from xrembed import BBox, PointBuffer, errors
from xrembed.sources.stac import open_stac

DOFA_BANDS = ["B04", "B03", "B02", "B05", "B06", "B07", "B08", "B11", "B12"]
ITEM_ID = "S2A_29RKH_20200219_0_L2A"
# A 64 x 64 px (100 m) window on the scene's pixel lattice: rows/cols 500..563 of the 100 m bands.
WINDOW = BBox(249980, 2743620, 256380, 2750020, crs="EPSG:32629")


def _localise(item: dict, scene, target=None, relative: bool = False) -> dict:
    """Point every asset with a file in ``scene`` at it (or at ``target``/name), with proj:* of that file.

    The local files are the original COGs downsampled ten-fold (100/200/600 m), while the item's
    ``proj:shape``/``proj:transform`` describe the original 10/20/60 m grids. odc-stac builds the output grid
    from that metadata alone (it opens no file until a chunk is computed), so left as is it would produce a
    10980 x 10980 grid at 10 m and upsample the local files; dropped, it would need crs=/resolution= and
    take the footprint from the item's lon/lat geometry (edges off the files' by up to a pixel). The
    metadata are therefore rewritten to the local files' true grids. The ``self``/``canonical`` links point
    to the original bucket, against which pystac would resolve root-relative paths (``/work/...`` ->
    ``s3://sentinel-cogs/work/...``), so they are dropped too.
    """
    item = copy.deepcopy(item)
    item["links"] = [link for link in item["links"] if link["rel"] not in ("self", "canonical")]
    for asset in item["assets"].values():
        name = asset["href"].rsplit("/", 1)[-1]
        if not name.endswith(".tif") or not (scene / name).is_file():
            continue
        with rasterio.open(scene / name) as src:
            asset["proj:shape"] = [src.height, src.width]
            asset["proj:transform"] = list(src.transform)[:6]
        asset["href"] = f"./{name}" if relative else str((target or scene) / name)
    return item


@pytest.fixture
def item_dict(s2_scene):
    return _localise(json.loads((s2_scene / f"{ITEM_ID}.json").read_text()), s2_scene)


@pytest.fixture
def item(item_dict):
    return pystac.Item.from_dict(item_dict)


def _read(path, row, col, size):
    with rasterio.open(path) as src:
        return src.read(1, window=((row, row + size), (col, col + size))).astype("f4")


def test_dims_bands_crs_bounds_and_laziness(item, s2_scene):
    da = open_stac(item, bands=["red", "B8A", "B1", "swir16"])
    assert da.dims == ("time", "band", "y", "x")
    assert list(da.band.values) == ["B04", "B8A", "B01", "B11"]
    assert da.dtype == np.float32 and isinstance(da.data, dsa.Array)
    assert da.rio.crs.to_epsg() == 32629
    with rasterio.open(s2_scene / "B04.tif") as src:
        assert da.rio.bounds() == tuple(src.bounds)
        assert da.rio.transform() == src.transform == Affine(100, 0, 199980, 0, -100, 2800020)
    assert da.shape == (1, 4, 1098, 1098)
    assert str(da.time.values[0])[:10] == "2020-02-19"
    assert da.attrs["stac_assets"] == ["red", "nir08", "coastal", "swir16"]
    # default resolution = the finest requested band: only 20/60 m bands -> the 200 m grid
    coarse = open_stac(item, bands=["B8A", "B01"])
    assert coarse.rio.resolution() == (200, -200) and coarse.shape[-2:] == (549, 549)


def test_values_equal_rasterio_reads(item, s2_scene):
    da = open_stac(item, bands=["B04", "B8A", "B11"], spatial=WINDOW, chunks=32)
    assert da.rio.bounds() == (249980, 2743620, 256380, 2750020)
    assert da.chunks[-2:] == ((32, 32), (32, 32))
    values = da.values[0]
    np.testing.assert_array_equal(values[0], _read(s2_scene / "B04.tif", 500, 500, 64))
    # 200 m bands onto the 100 m grid with nearest: each source pixel becomes 2 x 2
    for i, name in ((1, "B8A"), (2, "B11")):
        native = _read(s2_scene / f"{name}.tif", 250, 250, 32)
        np.testing.assert_array_equal(values[i], np.kron(native, np.ones((2, 2), "f4")))
    # the eager path gives the same numbers
    eager = open_stac(item, bands=["B04", "B8A", "B11"], spatial=WINDOW, chunks=None)
    assert isinstance(eager.data, np.ndarray)
    np.testing.assert_array_equal(eager.values, da.values)


def test_resolution_crop_and_point_buffer(item, s2_scene):
    da = open_stac(item, bands=["B04"], spatial=WINDOW, resolution=200, resampling="average")
    # the 200 m grid keeps the native origin: edges at 199980 + k * 200, snapped outwards
    assert da.rio.transform() == Affine(200, 0, 249980, 0, -200, 2750020)
    assert da.shape == (1, 1, 32, 32)
    # coarsening reads the COG's internal overview, as a decimated rasterio read does
    with rasterio.open(s2_scene / "B04.tif") as src:
        expected = src.read(1, window=((500, 564), (500, 564)), out_shape=(32, 32), resampling=Resampling.average)
    np.testing.assert_array_equal(da.values[0, 0], expected.astype("f4"))
    box = open_stac(item, bands=["B04"], spatial=PointBuffer(-11.5, 24.8, 1000))
    left, bottom, right, top = box.rio.bounds()
    assert 2000 <= right - left <= 2200 and 2000 <= top - bottom <= 2200
    assert (left - 199980) % 100 == 0 and (2800020 - top) % 100 == 0


def test_reprojected_to_another_crs(item):
    da = open_stac(item, bands=["B04"], spatial=BBox(-11.5, 24.8, -11.45, 24.85), crs="EPSG:4326", resolution=0.001)
    assert da.dims == ("time", "band", "y", "x") and da.rio.crs.to_epsg() == 4326
    assert da.shape == (1, 1, 50, 50)
    assert np.isfinite(da.values).all()
    with pytest.raises(errors.OptionError, match="resolution="):
        open_stac(item, bands=["B04"], crs="EPSG:4326")


def test_asset_keys_in_either_spelling_and_from_eo_bands(item_dict):
    reference = open_stac(pystac.Item.from_dict(item_dict), bands=["B04", "B8A"], spatial=WINDOW).values
    # Sentinel-2 keys (B04, B8A) without any eo:bands metadata
    s2_keys = copy.deepcopy(item_dict)
    s2_keys["assets"] = {
        asset["href"].rsplit("/", 1)[-1][:-4]: {k: v for k, v in asset.items() if k != "eo:bands"}
        for key, asset in item_dict["assets"].items()
        if key in ("red", "nir08")
    }
    da = open_stac(pystac.Item.from_dict(s2_keys), bands=["B4", "b8a"], spatial=WINDOW)
    assert da.attrs["stac_assets"] == ["B04", "B8A"]
    np.testing.assert_array_equal(da.values, reference)
    # opaque keys: the band is found through the asset's eo:bands name
    opaque = copy.deepcopy(item_dict)
    opaque["assets"] = {"asset_1": item_dict["assets"]["red"], "asset_2": item_dict["assets"]["nir08"]}
    da = open_stac(pystac.Item.from_dict(opaque), bands=["B04", "B8A"], spatial=WINDOW)
    assert da.attrs["stac_assets"] == ["asset_1", "asset_2"]
    np.testing.assert_array_equal(da.values, reference)


def test_graph_reads_nothing_until_computed(item_dict, s2_scene, tmp_path):
    # the item JSON lies in an empty folder with relative hrefs: the files it names do not exist yet
    localised = _localise(item_dict, s2_scene, tmp_path, relative=True)
    path = tmp_path / "item.json"
    path.write_text(json.dumps(localised))
    da = open_stac(path, bands=["B04", "B8A"], spatial=WINDOW)
    emb = da.rsembed.embed("dofa-tiny", bands=["B04", "B8A"], wavelengths=[0.665, 0.865], weights="random")
    with pytest.raises(Exception, match=r"(B04|B8A)\.tif: No such file"):
        da.compute()  # nothing was opened while building: the first read fails on the missing file
    for name in ("B04.tif", "B8A.tif"):
        shutil.copy(s2_scene / name, tmp_path / name)
    np.testing.assert_array_equal(da.values[0, 0], _read(s2_scene / "B04.tif", 500, 500, 64))
    assert np.isfinite(emb.values).all()


def test_item_url_fetched_over_http(item_dict, monkeypatch):
    """The network boundary (pystac's urllib3 GET) serves the item JSON; everything else is real."""
    url = f"https://earth-search.aws.element84.com/v1/collections/sentinel-2-l2a/items/{ITEM_ID}"
    requested = []

    def fake_request(self, method, href, **kwargs):
        requested.append((method, href))
        body = json.dumps(item_dict).encode() if href == url else b"{}"
        return urllib3.response.HTTPResponse(
            body=io.BytesIO(body), status=200 if href == url else 404, preload_content=False
        )

    monkeypatch.setattr(urllib3.PoolManager, "request", fake_request)
    da = open_stac([url], bands=["B04"], spatial=WINDOW)
    assert requested == [("GET", url)]
    assert da.attrs["stac_items"] == [ITEM_ID] and da.sizes["y"] == 64


def _tiny_item(folder, name, data, left, when="2021-06-01T10:00:00Z"):
    transform = Affine(10, 0, left, 0, -10, 4000000)
    path = folder / f"{name}.tif"
    profile = {"driver": "GTiff", "width": data.shape[1], "height": data.shape[0], "count": 1, "dtype": "uint16",
               "nodata": 0, "crs": "EPSG:32631", "transform": transform}
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(data, 1)
    return {
        "type": "Feature", "stac_version": "1.0.0", "id": name, "links": [],
        "stac_extensions": ["https://stac-extensions.github.io/projection/v1.1.0/schema.json"],
        "geometry": {"type": "Polygon", "coordinates": [[[3, 36], [3.01, 36], [3.01, 36.01], [3, 36]]]},
        "bbox": [3, 36, 3.01, 36.01],
        "properties": {"datetime": when, "proj:epsg": 32631},
        "assets": {"red": {"href": str(path), "type": "image/tiff; application=geotiff", "roles": ["data"],
                           "proj:shape": list(data.shape), "proj:transform": list(transform)[:6],
                           "raster:bands": [{"nodata": 0, "data_type": "uint16"}]}},
    }


def test_nodata_is_nan_and_items_are_fused_by_time(tmp_path):
    west = np.full((8, 8), 100, "uint16")
    west[:2, :2] = 0  # nodata inside the file, where no other item covers it
    east = np.full((8, 8), 200, "uint16")
    east[:, :2] = 0  # nodata where west overlaps it
    items = [_tiny_item(tmp_path, "west", west, 500000), _tiny_item(tmp_path, "east", east, 500040)]
    da = open_stac(items, bands=["B04"], groupby="solar_day")
    assert da.shape == (1, 1, 8, 12)  # one overpass, the union of both footprints
    values = da.values[0, 0]
    assert np.isnan(values[:2, :2]).all()  # nodata became NaN, not 0
    assert (values[2:, :4] == 100).all() and (values[:, 8:] == 200).all()
    # overlap (cols 4-7): items are fused in (time, id) order, so "east" comes first; its nodata
    # pixels are filled from "west"
    assert (values[:, 4:6] == 100).all() and (values[:, 6:8] == 200).all()
    per_item = open_stac(items, bands=["B04"], groupby="id")
    assert per_item.sizes["time"] == 2
    assert np.isnan(per_item.sel(time=per_item.time[0]).values[0, :, 8:]).all() or np.isnan(
        per_item.sel(time=per_item.time[1]).values[0, :, 8:]
    ).all()
    # a window reaching beyond the items is NaN there
    wide = open_stac(items, bands=["B04"], spatial=BBox(499960, 3999920, 500120, 4000000, crs="EPSG:32631"))
    assert wide.shape[-1] == 16 and np.isnan(wide.values[0, 0, :, :4]).all()


def test_errors_name_the_fix(item, item_dict, tmp_path):
    with pytest.raises(errors.BandMismatchError, match=r"B10.*choose bands"):
        open_stac(item, bands=["B04", "B10"])
    with pytest.raises(errors.BandMismatchError, match="more than once"):
        open_stac(item, bands=["B04", "red"])
    with pytest.raises(errors.BandMismatchError, match="bands= is required"):
        open_stac(item, bands=None)
    with pytest.raises(errors.OptionError, match="Resampling"):
        open_stac(item, bands=["B04"], resampling="cubicish")
    with pytest.raises(errors.OptionError, match="BBox"):
        open_stac(item, bands=["B04"], spatial=(1, 2, 3, 4))
    with pytest.raises(errors.NoDataInBoundsError, match="does not overlap"):
        open_stac(item, bands=["B04"], spatial=BBox(10, 40, 11, 41))
    with pytest.raises(errors.SourceError, match="no STAC items"):
        open_stac([], bands=["B04"])
    with pytest.raises(errors.SourceError, match="does not exist"):
        open_stac(tmp_path / "missing.json", bands=["B04"])
    bare = copy.deepcopy(item_dict)
    for asset in bare["assets"].values():
        asset.pop("proj:shape", None), asset.pop("proj:transform", None)
    bare["properties"].pop("proj:epsg")
    with pytest.raises(errors.SourceError, match="crs= and resolution="):
        open_stac(pystac.Item.from_dict(bare), bands=["B04"])
    # with crs= and resolution= the footprint comes from the item's geometry
    da = open_stac(pystac.Item.from_dict(bare), bands=["B04"], crs="EPSG:32629", resolution=100)
    assert da.rio.crs.to_epsg() == 32629 and da.rio.resolution() == (100, -100)


def test_item_metadata_decides_the_grid(s2_scene):
    # The item as published (10 m proj:* metadata) gives the original 10 m grid, lazily, without reading.
    original = json.loads((s2_scene / f"{ITEM_ID}.json").read_text())
    original["links"] = []
    for asset in original["assets"].values():
        asset["href"] = str(s2_scene / asset["href"].rsplit("/", 1)[-1])
    da = open_stac(pystac.Item.from_dict(original), bands=DOFA_BANDS)
    assert da.shape == (1, 9, 10980, 10980) and da.rio.resolution() == (10, -10)
    assert da.chunks[-1][0] == 1792


def test_feeds_dofa_tiny_like_open_raster(item, s2_scene, tiny):
    import xrembed

    da = open_stac(item, bands=DOFA_BANDS, spatial=WINDOW)
    emb = da.rsembed.embed("dofa-tiny", **tiny)
    assert emb.dims == ("time", "embedding", "y", "x") and emb.sizes["y"] == emb.sizes["x"] == 8
    assert emb.rio.crs.to_epsg() == 32629
    assert emb.rio.transform() == Affine(800, 0, 249980, 0, -800, 2750020)
    # the same pixels through open_raster give the same embeddings
    local = xrembed.open_raster(s2_scene, bands=DOFA_BANDS).isel(y=slice(500, 564), x=slice(500, 564))
    expected = local.rsembed.embed("dofa-tiny", **tiny).values
    np.testing.assert_allclose(emb.values[0], expected, atol=1e-5)


def test_feeds_dofa_base(item, tiny):
    crop = BBox(249980, 2727620, 272380, 2750020, crs="EPSG:32629")  # 224 x 224 px: one DOFA tile
    da = open_stac(item, bands=DOFA_BANDS, spatial=crop)
    emb = da.rsembed.embed("dofa", **tiny)
    assert emb.dims == ("time", "embedding", "y", "x") and emb.shape == (1, 768, 14, 14)
    assert np.isfinite(emb.values).all()


@pytest.mark.network
def test_earth_search_live():
    url = f"https://earth-search.aws.element84.com/v1/collections/sentinel-2-l2a/items/{ITEM_ID}"
    da = open_stac([url], bands=["B04", "B8A"], spatial=BBox(249980, 2749380, 250620, 2750020, crs="EPSG:32629"))
    assert da.rio.resolution() == (10, -10) and da.shape == (1, 2, 64, 64)
    assert np.isfinite(da.values).all()
