"""Google Satellite Embedding (AlphaEarth) reader: fixtures written here in the product's real COG format.

Each fixture tile is what Google exports (precomputed.md §A2.2/§A2.3): 64 int8 bands ``A00``..``A63`` with
those descriptions, nodata -128 (all bands at once), tiled (16 px stands in for 1024), ZSTD, band-interleaved,
**bottom-up** (``Affine(10, 0, W, 0, 10, S)``), under ``{year}/{zone}/{17-char id}-{yoff:010d}-{xoff:010d}.tiff``,
listed in a GeoParquet ``aef_index.parquet`` (or the headerless ``aef_index.csv``) whose ``path`` column uses
the ``s3://us-west-2.opendata.source.coop/...`` convention. Values are unit vectors quantised the way the
README's dequantisation inverts: ``q = round(sign(v) * sqrt(|v|) * 127.5)``.

Expected values are computed here independently: raw row/column from the bottom-up geometry, then
``sign(q) * (q / 127.5) ** 2`` in float64.
"""

from __future__ import annotations

import functools
import http.server
import json
import os
import struct
import threading

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import rasterio
from affine import Affine
from pyproj import Transformer

from xrembed import errors
from xrembed.sources.precomputed import gse
from xrembed.sources.precomputed.gse import BANDS, PRODUCT_INFO, open_gse
from xrembed.specs import BBox, PointBuffer, TemporalSpec

try:  # Earth Engine route: the RPC-boundary fakes of tests/sources/test_gee.py (its fixtures are reused here)
    from test_gee import ROI as EE_ROI
    from test_gee import _calls, ee_offline, server  # noqa: F401
except (ImportError, pytest.skip.Exception):  # earthengine-api / xee not installed
    EE_ROI = _calls = None
needs_ee = pytest.mark.skipif(EE_ROI is None, reason="needs earthengine-api and xee")

SC = "s3://us-west-2.opendata.source.coop/tge-labs/aef/v1/annual"
N = 32  # fixture tile side in pixels (8192 in the real files)
A_W, A_S = 500000.0, 5800000.0  # tile A, zone 31N; B is its eastern neighbour (the 2x2 split's xoff)
Y2024 = TemporalSpec.year(2024)


def _quantised(seed: int, shape=(N, N)) -> np.ndarray:
    """Unit vectors quantised as AEF does, plus a few nodata pixels (raw, bottom-up row order)."""
    rng = np.random.default_rng(seed)
    v = rng.normal(size=(64, *shape))
    v /= np.linalg.norm(v, axis=0, keepdims=True)
    q = np.clip(np.round(np.sign(v) * np.sqrt(np.abs(v)) * 127.5), -127, 127).astype("int8")
    q[:, 3, 7] = -128  # raw row 3 (near the south edge), column 7
    q[:, 20, 10] = -128
    return q


def _reference(q: np.ndarray) -> np.ndarray:
    f = q.astype("float64")
    return np.where(q == -128, np.nan, np.sign(f) * (f / 127.5) ** 2)


def _wkb_polygon(w, s, e, n) -> bytes:
    ring = [(w, s), (e, s), (e, n), (w, n), (w, s)]
    return struct.pack("<BII", 1, 3, 1) + struct.pack("<I", len(ring)) + b"".join(struct.pack("<dd", *p) for p in ring)


class Fixture:
    """A ``v1/annual`` mirror folder: tiles + index; ``tiles[(name, year)]`` holds the raw int8 data."""

    def __init__(self, root):
        self.root = root
        self.rows = []
        self.tiles = {}

    def tile(self, name, zone, west, south, year, seed, yoff=0, xoff=0, size=(N, N)):
        epsg = 32600 + int(zone[:-1]) if zone.endswith("N") else 32700 + int(zone[:-1])
        q = _quantised(seed, size)
        image_id = f"{name}{'x' * (17 - len(name))}"
        rel = f"{year}/{zone}/{image_id}-{yoff:010d}-{xoff:010d}.tiff"
        path = self.root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        h, w = size
        profile = {
            "driver": "GTiff", "width": w, "height": h, "count": 64, "dtype": "int8", "nodata": -128,
            "crs": f"EPSG:{epsg}", "transform": Affine(10, 0, west, 0, 10, south),  # bottom-up, SW origin
            "tiled": True, "blockxsize": 16, "blockysize": 16, "compress": "zstd", "interleave": "band",
        }
        with rasterio.open(path, "w", **profile) as dst:
            dst.write(q)
            for i, band in enumerate(BANDS, start=1):
                dst.set_band_description(i, band)
        east, north = west + 10 * w, south + 10 * h
        ll = Transformer.from_crs(f"EPSG:{epsg}", "EPSG:4326", always_xy=True).transform_bounds(west, south, east, north)
        self.rows.append({
            "fid": len(self.rows) + 1, "geom": _wkb_polygon(*ll), "crs": f"EPSG:{epsg}", "path": f"{SC}/{rel}",
            "year": year, "utm_zone": zone, "utm_west": west, "utm_south": south, "utm_east": east, "utm_north": north,
            "wgs84_west": ll[0], "wgs84_south": ll[1], "wgs84_east": ll[2], "wgs84_north": ll[3],
        })
        self.tiles[(name, year)] = q
        return self

    def write_index(self, csv=False):
        if csv:
            lines = []
            for r in self.rows:
                w, s, e, n = r["wgs84_west"], r["wgs84_south"], r["wgs84_east"], r["wgs84_north"]
                wkt = f"POLYGON(({w} {s},{e} {s},{e} {n},{w} {n},{w} {s}))"
                lines.append(",".join([f'"{wkt}"', r["crs"], r["path"], str(r["year"]), r["utm_zone"]]
                                      + [f"{r[k]:g}" if "utm" in k else repr(r[k]) for k in
                                         ("utm_west", "utm_south", "utm_east", "utm_north",
                                          "wgs84_west", "wgs84_south", "wgs84_east", "wgs84_north")]))
            (self.root / "aef_index.csv").write_text("\n".join(lines) + "\n")
            return self
        table = pa.Table.from_pylist(self.rows)
        geo = {"version": "1.0.0", "primary_column": "geom",
               "columns": {"geom": {"encoding": "WKB", "geometry_types": ["Polygon"], "crs": None}}}
        table = table.replace_schema_metadata({b"geo": json.dumps(geo).encode()})
        pq.write_table(table, self.root / "aef_index.parquet")
        return self


@pytest.fixture
def mirror(tmp_path):
    """Tiles A (2023, 2024) and B (2024 only) side by side in zone 31N."""
    root = tmp_path / "v1" / "annual"
    fx = Fixture(root)
    fx.tile("a", "31N", A_W, A_S, 2023, seed=1).tile("a", "31N", A_W, A_S, 2024, seed=2)
    fx.tile("b", "31N", A_W + 10 * N, A_S, 2024, seed=3, xoff=8192)
    return fx.write_index()


# -- values, grid, layout -----------------------------------------------------------------------------


def test_single_tile_flip_dequantisation_grid(mirror):
    roi = BBox(500053, 5800017, 500198, 5800251, crs="EPSG:32631")  # snapped outward to 500050..500200, 5800010..5800260
    da = open_gse(spatial=roi, temporal=Y2024, source=mirror.root)
    assert da.name == "embeddings" and da.dims == ("time", "embedding", "y", "x")
    assert da.dtype == np.float32 and da.shape == (1, 64, 25, 15)
    assert list(da.embedding.values) == list(range(64)) and list(da.embedding_name.values) == list(BANDS)
    assert da.rio.crs.to_epsg() == 32631
    assert da.rio.transform() == Affine(10, 0, 500050, 0, -10, 5800260)  # north-up, no recalc
    np.testing.assert_array_equal(da.x.values, 500055 + 10 * np.arange(15))
    np.testing.assert_array_equal(da.y.values, 5800255 - 10 * np.arange(25))
    assert da.time.values[0] == np.datetime64("2024-01-01") and da.year.values.tolist() == [2024]
    assert da.attrs["product"] == "gse" and da.attrs["licence"] == "CC-BY-4.0"
    assert da.attrs["attribution"] == PRODUCT_INFO["attribution"]
    assert "127.5" in da.attrs["dequantisation"]
    assert isinstance(da.data, __import__("dask").array.Array) and da.data.chunksize[1] == 64

    q = mirror.tiles[("a", 2024)]
    rows = ((da.y.values - A_S) // 10).astype(int)  # bottom-up: raw row counts from the south edge
    cols = ((da.x.values - A_W) // 10).astype(int)
    expected = _reference(q[:, rows][:, :, cols])
    got = da.values[0]
    np.testing.assert_allclose(got, expected, rtol=1e-6, atol=0)
    assert np.isnan(got).any()  # the nodata pixel (raw row 20, col 10) is inside and NaN in every band
    assert np.isnan(got[:, rows.tolist().index(20), cols.tolist().index(10)]).all()
    norms = np.linalg.norm(got, axis=0)
    assert np.nanmin(norms) > 0.98 and np.nanmax(norms) < 1.02  # unit vectors after dequantisation


def test_two_tiles_same_zone_mosaic_and_nan_outside(mirror):
    roi = BBox(500250, 5800250, 500400, 5800400, crs="EPSG:32631")  # over A|B, above the tiles' north edge
    da = open_gse(spatial=roi, temporal=Y2024, source=mirror.root)
    assert da.shape == (1, 64, 15, 15) and da.rio.transform() == Affine(10, 0, 500250, 0, -10, 5800400)
    got = da.values[0]
    a, b = mirror.tiles[("a", 2024)], mirror.tiles[("b", 2024)]
    for i, y in enumerate(da.y.values):
        for j, x in enumerate(da.x.values):
            if y > A_S + 10 * N:
                assert np.isnan(got[:, i, j]).all()
                continue
            tile, west = (a, A_W) if x < A_W + 10 * N else (b, A_W + 10 * N)
            ref = _reference(tile[:, int((y - A_S) // 10), int((x - west) // 10)])
            np.testing.assert_allclose(got[:, i, j], ref, rtol=1e-6)
    assert len(da.attrs["tiles"].split(", ")) == 2


def test_years_from_range_and_none(mirror):
    roi = BBox(500100, 5800100, 500200, 5800200, crs="EPSG:32631")
    both = open_gse(spatial=roi, temporal=None, source=mirror.root)
    assert both.year.values.tolist() == [2023, 2024] and both.data.chunksize[0] == 1
    ranged = open_gse(spatial=roi, temporal=TemporalSpec.range("2023-06-01", "2024-06-01"), source=mirror.root)
    assert ranged.year.values.tolist() == [2023, 2024]
    only = open_gse(spatial=roi, temporal=TemporalSpec.range("2023-01-01", "2024-01-01"), source=mirror.root)
    assert only.year.values.tolist() == [2023]  # end is exclusive
    rows = ((both.y.values - A_S) // 10).astype(int)
    cols = ((both.x.values - A_W) // 10).astype(int)
    for k, year in enumerate((2023, 2024)):
        np.testing.assert_allclose(both.values[k], _reference(mirror.tiles[("a", year)][:, rows][:, :, cols]), rtol=1e-6)


def test_whole_source_and_pointbuffer(mirror):
    da = open_gse(temporal=Y2024, source=mirror.root / "aef_index.parquet")
    assert da.shape == (1, 64, N, 2 * N)
    assert da.rio.transform() == Affine(10, 0, A_W, 0, -10, A_S + 10 * N)
    lon, lat = Transformer.from_crs("EPSG:32631", "EPSG:4326", always_xy=True).transform(A_W + 160, A_S + 160)
    pb = open_gse(spatial=PointBuffer(lon, lat, 50), temporal=Y2024, source=mirror.root.parent.parent)
    assert pb.rio.crs.to_epsg() == 32631 and pb.sizes["x"] in (10, 11) and pb.sizes["y"] in (10, 11)
    assert float(pb.x[0] - 5) % 10 == 0  # on the 10 m lattice


def test_headerless_csv_index_gives_the_same(mirror, tmp_path):
    roi = BBox(500250, 5800100, 500400, 5800200, crs="EPSG:32631")
    ref = open_gse(spatial=roi, temporal=Y2024, source=mirror.root).values
    mirror.write_index(csv=True)
    (mirror.root / "aef_index.parquet").unlink()
    np.testing.assert_array_equal(open_gse(spatial=roi, temporal=Y2024, source=mirror.root).values, ref)


def test_chunks_keep_bands_together(mirror):
    da = open_gse(temporal=Y2024, source=mirror.root, chunks={"y": 16, "x": 8})
    assert da.data.chunks[1] == (64,) and set(da.data.chunks[2]) == {16} and set(da.data.chunks[3]) == {8}
    with pytest.raises(errors.OptionError, match="64 embedding bands"):
        open_gse(temporal=Y2024, source=mirror.root, chunks={"embedding": 8})


def test_no_pixel_read_before_compute(mirror, monkeypatch):
    reads = []
    original = rasterio.io.DatasetReader.read

    def counting(self, *args, **kwargs):
        reads.append(self.name)
        return original(self, *args, **kwargs)

    monkeypatch.setattr(rasterio.io.DatasetReader, "read", counting)
    da = open_gse(spatial=BBox(500250, 5800100, 500400, 5800200, crs="EPSG:32631"), temporal=None, source=mirror.root)
    assert reads == []
    da.isel(time=-1).compute()
    assert reads  # computing reads the COG windows


# -- zones ----------------------------------------------------------------------------------------------


@pytest.fixture
def two_zones(tmp_path):
    """A 31N tile ending at 6°E and a 32N tile starting there (same latitude)."""
    lon, lat = 6.0, 52.35
    x31, y31 = Transformer.from_crs("EPSG:4326", "EPSG:32631", always_xy=True).transform(lon, lat)
    x32, y32 = Transformer.from_crs("EPSG:4326", "EPSG:32632", always_xy=True).transform(lon, lat)
    fx = Fixture(tmp_path / "annual")
    fx.tile("west", "31N", round(x31, -1) - 10 * N, round(y31, -1) - 160, 2024, seed=5)
    fx.tile("east", "32N", round(x32, -1), round(y32, -1) - 160, 2024, seed=6)
    fx.write_index()
    return fx, BBox(lon - 0.002, lat - 0.0005, lon + 0.002, lat + 0.0005)


def test_roi_over_two_utm_zones_is_an_error_naming_the_fix(two_zones):
    fx, roi = two_zones
    with pytest.raises(errors.OptionError, match=r"spans UTM zones \['31N', '32N'\].*utm_zone="):
        open_gse(spatial=roi, temporal=Y2024, source=fx.root)
    east = open_gse(spatial=roi, temporal=Y2024, source=fx.root, utm_zone="32N")
    west = open_gse(spatial=roi, temporal=Y2024, source=fx.root, utm_zone="EPSG:32631")
    assert east.rio.crs.to_epsg() == 32632 and west.rio.crs.to_epsg() == 32631
    assert np.isfinite(east.values).any() and np.isfinite(west.values).any()
    with pytest.raises(errors.OptionError, match="spans UTM zones"):
        open_gse(temporal=Y2024, source=fx.root)  # the whole source has two zones


# -- errors ---------------------------------------------------------------------------------------------


def test_coverage_errors(mirror):
    roi = BBox(500100, 5800100, 500200, 5800200, crs="EPSG:32631")
    with pytest.raises(errors.ProductCoverageError, match="2017..2025"):
        open_gse(spatial=roi, temporal=TemporalSpec.year(2016), source=mirror.root)
    with pytest.raises(errors.ProductCoverageError, match=r"\[2020\]"):
        open_gse(spatial=roi, temporal=TemporalSpec.year(2020), source=mirror.root)  # the product has it, the source not
    with pytest.raises(errors.NoDataInBoundsError, match="covers the ROI"):
        open_gse(spatial=BBox(10.0, 45.0, 10.1, 45.1), temporal=Y2024, source=mirror.root)
    with pytest.raises(errors.ProductCoverageError, match="covers the ROI"):  # tile B has no 2023
        open_gse(spatial=BBox(500400, 5800100, 500500, 5800200, crs="EPSG:32631"), temporal=TemporalSpec.year(2023),
                 source=mirror.root)


def test_source_that_is_not_the_product(mirror, tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(errors.XrembedError, match="aef_index.parquet"):
        open_gse(spatial=None, temporal=Y2024, source=empty)
    with pytest.raises(errors.XrembedError, match="does not exist"):
        open_gse(temporal=Y2024, source=tmp_path / "nowhere")
    other = tmp_path / "other.parquet"
    pq.write_table(pa.table({"id": [1], "href": ["x.tif"]}), other)
    with pytest.raises(errors.XrembedError, match="not a Google Satellite Embedding index"):
        open_gse(temporal=Y2024, source=other)
    # an index row pointing at a file that is not an AEF COG (3 uint16 bands)
    bad = Fixture(tmp_path / "bad")
    bad.tile("a", "31N", A_W, A_S, 2024, seed=1).write_index()
    path = next((tmp_path / "bad").rglob("*.tiff"))
    with rasterio.open(path, "w", driver="GTiff", width=4, height=4, count=3, dtype="uint16", crs="EPSG:32631",
                       transform=Affine(10, 0, A_W, 0, -10, A_S + 40)) as dst:
        dst.write(np.zeros((3, 4, 4), "uint16"))
    with pytest.raises(errors.XrembedError, match="64 int8 bands"):
        open_gse(temporal=Y2024, source=tmp_path / "bad")
    with pytest.raises(errors.OptionError, match="requester-pays"):
        open_gse(temporal=Y2024, source="gs://alphaearth_foundations/satellite_embedding/v1/annual/")
    with pytest.raises(errors.SpecError):
        open_gse(spatial=(0, 0, 1, 1), temporal=Y2024, source=mirror.root)


def test_default_source_and_paths():
    assert PRODUCT_INFO["default_source"] == "https://data.source.coop/tge-labs/aef/v1/annual/"
    root, index = gse._locate(None)
    assert index == "https://data.source.coop/tge-labs/aef/v1/annual/aef_index.parquet"
    assert gse._href(f"{SC}/2024/31N/abc-0000000000-0000008192.tiff", root) == (
        "https://data.source.coop/tge-labs/aef/v1/annual/2024/31N/abc-0000000000-0000008192.tiff")
    assert gse._locate("s3://us-west-2.opendata.source.coop/tge-labs/aef/v1/annual/aef_index.csv")[1] == (
        "https://data.source.coop/tge-labs/aef/v1/annual/aef_index.csv")
    assert PRODUCT_INFO["embed_dim"] == 64 and PRODUCT_INFO["years"] == tuple(range(2017, 2026))


# -- over HTTP (a local range-serving server stands in for data.source.coop) ------------------------------


class _RangeHandler(http.server.SimpleHTTPRequestHandler):
    """Serves files with HTTP Range support, as object stores do (GDAL /vsicurl/ needs it)."""

    def log_message(self, *args):
        pass

    def do_GET(self):
        path = self.translate_path(self.path)
        if not os.path.isfile(path):
            self.send_error(404)
            return
        size = os.path.getsize(path)
        rng = self.headers.get("Range")
        with open(path, "rb") as f:
            if rng and rng.startswith("bytes="):
                start, _, end = rng[6:].partition("-")
                start, end = int(start), min(int(end) if end else size - 1, size - 1)
                f.seek(start)
                body = f.read(end - start + 1)
                self.send_response(206)
                self.send_header("Content-Range", f"bytes {start}-{end}/{size}")
            else:
                body = f.read()
                self.send_response(200)
            self.send_header("Accept-Ranges", "bytes")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    def do_HEAD(self):
        path = self.translate_path(self.path)
        if not os.path.isfile(path):
            self.send_error(404)
            return
        self.send_response(200)
        self.send_header("Accept-Ranges", "bytes")
        self.send_header("Content-Length", str(os.path.getsize(path)))
        self.end_headers()


def test_remote_mirror_over_http(mirror, tmp_path, monkeypatch):
    for var in ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("XREMBED_CACHE", str(tmp_path / "cache"))
    handler = functools.partial(_RangeHandler, directory=str(tmp_path))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{httpd.server_address[1]}/v1/annual/"
        roi = BBox(500250, 5800100, 500400, 5800200, crs="EPSG:32631")
        remote = open_gse(spatial=roi, temporal=Y2024, source=url)
        assert remote.attrs["tiles"].startswith(url)
        assert list((tmp_path / "cache" / "gse").rglob("aef_index.parquet"))  # index downloaded once, cached
        local = open_gse(spatial=roi, temporal=Y2024, source=mirror.root)
        np.testing.assert_array_equal(remote.values, local.values)
    finally:
        httpd.shutdown()
        httpd.server_close()


@pytest.mark.network
def test_live_source_cooperative():  # pragma: no cover - opt-in
    da = open_gse(spatial=PointBuffer(5.1, 52.1, 100), temporal=Y2024)
    values = da.values
    assert values.shape[:2] == (1, 64)
    norms = np.linalg.norm(values[0], axis=0)
    assert np.nanmin(norms) > 0.95 and np.nanmax(norms) < 1.05


# -- Earth Engine (same RPC-boundary mocks as tests/sources/test_gee.py) ------------------------------------------

@needs_ee
def test_earth_engine_route_builds_the_mosaic_request(server):
    server.bands = list(BANDS)
    da = open_gse(spatial=EE_ROI, temporal=TemporalSpec.year(2022), source="ee")
    assert da.dims == ("time", "embedding", "y", "x") and da.shape == (1, 64, 64, 64)
    assert list(da.embedding_name.values) == list(BANDS) and list(da.embedding.values) == list(range(64))
    assert da.dtype == np.float32
    assert da.rio.crs.to_epsg() == 32629
    assert da.rio.transform() == Affine(10, 0, 449040, 0, -10, 2765550)
    assert da.year.values.tolist() == [2022] and da.time.values[0] == np.datetime64("2022-01-01")
    assert da.attrs["route"] == "earthengine" and da.attrs["attribution"] == PRODUCT_INFO["attribution"]
    (query,) = server.size_queries
    (load,) = _calls(query, "ImageCollection.load")
    assert load["args"]["id"] == "GOOGLE/SATELLITE_EMBEDDING/V1/ANNUAL"
    assert "2022-01-01" in json.dumps(query) and "2023-01-01" in json.dumps(query)  # the calendar year, half-open
    assert not _calls(query, "Filter.lessThan")  # no cloud filter on an embedding collection
    got = da.isel(embedding=[0, 63], y=slice(0, 2), x=slice(0, 2)).values
    tree = server.expressions[0]
    assert _calls(tree, "ImageCollection.mosaic")
    selected = [c["args"]["bandSelectors"] for c in _calls(tree, "Image.select")
                if isinstance(c["args"]["bandSelectors"], list)]
    assert list(BANDS) in selected  # all 64 bands, in order
    grids = {(g["crsCode"], g["affineTransform"]["scaleX"]) for g, *_ in server.pixel_requests}
    assert grids == {("EPSG:32629", 10.0)}
    assert {band for _, band, _, _ in server.pixel_requests} == {"A00", "A63"}  # only the bands computed
    x, y = 449045.0, 2765545.0
    assert got[0, 1, 0, 0] == pytest.approx(server.value(x, y, 63, 0))  # band A63 as served: no dequantisation
    assert got[0, 0, 0, 1] == pytest.approx(server.value(x + 10, y, 0, 0))


def test_earth_engine_needs_roi_and_time():
    with pytest.raises(errors.OptionError, match="spatial="):
        open_gse(temporal=Y2024, source="ee")
