"""Copernicus-Embed reader, on fixtures in the product's real formats (no network).

* GeoTIFF: a window of the real global grid (rows 150-158, cols 720-732 of ``embed_map_310k.tif``), with
  the real profile: float32, 768 bands, EPSG:4326, no nodata, tiled 256, deflate, pixel interleave, and its
  origin at the real lattice offset ``(-180.125 + 0.25 * 720, 90.125 - 0.25 * 150)``.
* npz: the real member layout, full size: ``arr_0.npy`` C-order float32 ``(721, 1440, 768)``, deflated (written
  streaming, mostly zeros, about 15 MB); the same window holds the same values.
"""

from __future__ import annotations

import re
import threading
import zipfile
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import dask.array as dsa
import numpy as np
import pytest
import rasterio
import rasterio.io
import xarray as xr
from affine import Affine
from rasterio.crs import CRS

from xrembed.errors import NoDataInBoundsError, OptionError, ProductCoverageError, XrembedError
from xrembed.sources.precomputed import copernicus_embed as ce
from xrembed.sources.precomputed.copernicus_embed import (
    PRODUCT_INFO,
    open_copernicus_embed,
)
from xrembed.specs import BBox, PointBuffer, TemporalSpec

ROW0, COL0, HEIGHT, WIDTH, BANDS = 150, 720, 8, 12, 768
ZERO_CELLS = [(0, 0), (3, 5), (7, 11)]  # ocean / empty cells: all-zero vectors in the product


def _values() -> np.ndarray:
    """(band, row, col) float32 fixture values with a few all-zero (no-data) cells."""
    values = np.random.default_rng(0).normal(size=(BANDS, HEIGHT, WIDTH)).astype("float32")
    for r, c in ZERO_CELLS:
        values[:, r, c] = 0
    return values


def _expected(values: np.ndarray) -> np.ndarray:
    """The reference reading, computed here: float32 as stored, a cell is NaN iff all its 768 values are 0."""
    out = values.astype("float32").copy()
    out[:, np.all(values == 0, axis=0)] = np.nan
    return out


def _write_tif(path, values, *, row0=ROW0, col0=COL0, crs="EPSG:4326", res=0.25, dx=0.0):
    profile = {
        "driver": "GTiff", "dtype": "float32", "nodata": None, "width": values.shape[2],
        "height": values.shape[1], "count": values.shape[0], "crs": CRS.from_user_input(crs),
        "transform": Affine(res, 0.0, -180.125 + 0.25 * col0 + dx, 0.0, -res, 90.125 - 0.25 * row0),
        "blockxsize": 256, "blockysize": 256, "tiled": True, "compress": "deflate", "interleave": "pixel",
    }
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(values)
    return path


def _write_npz(path, window: np.ndarray | None, shape=(721, 1440, 768), member="arr_0.npy"):
    """An ``np.savez_compressed`` file written row by row (the real one is 3.2 GB uncompressed)."""
    with (
        zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=1) as archive,
        archive.open(member, "w", force_zip64=True) as fp,
    ):
        np.lib.format.write_array_header_1_0(fp, {"descr": "<f4", "fortran_order": False, "shape": shape})
        zero_row = np.zeros(shape[1:], "<f4")
        for r in range(shape[0]):
            if window is not None and ROW0 <= r < ROW0 + HEIGHT:
                row = zero_row.copy()
                row[COL0:COL0 + WIDTH, :] = window[:, r - ROW0, :].T
                fp.write(row.tobytes())
            else:
                fp.write(zero_row.tobytes())
    return path


@pytest.fixture(scope="module")
def values():
    return _values()


@pytest.fixture(scope="module")
def tif(tmp_path_factory, values):
    return _write_tif(tmp_path_factory.mktemp("copembed") / "embed_map_310k.tif", values)


@pytest.fixture(scope="module")
def npz(tmp_path_factory, values):
    return _write_npz(tmp_path_factory.mktemp("copembed") / "embed_map_310k.npz", values)


# --- fixture sanity: the writers produce the real formats --------------------------------------------------


def test_fixture_formats_match_the_release(tmp_path, tif):
    with rasterio.open(tif) as src:
        assert (src.count, src.dtypes[0], src.nodata, src.crs.to_epsg()) == (768, "float32", None, 4326)
        assert src.profile["tiled"] and src.profile["blockxsize"] == 256 and src.profile["compress"] == "deflate"
        assert src.profile["interleave"] == "pixel"
        assert src.transform == Affine(0.25, 0, -180.125, 0, -0.25, 90.125) * Affine.translation(COL0, ROW0)
    small = np.arange(2 * 3 * 768, dtype="<f4").reshape(2, 3, 768)
    np.savez_compressed(tmp_path / "numpy.npz", small)  # what numpy itself writes
    with zipfile.ZipFile(tmp_path / "numpy.npz") as archive:
        assert archive.namelist() == ["arr_0.npy"]
    path = tmp_path / "ours.npz"
    with (
        zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as archive,
        archive.open("arr_0.npy", "w", force_zip64=True) as fp,
    ):
        np.lib.format.write_array_header_1_0(fp, {"descr": "<f4", "fortran_order": False, "shape": small.shape})
        fp.write(small.tobytes())
    np.testing.assert_array_equal(np.load(path)["arr_0"], small)


# --- GeoTIFF -------------------------------------------------------------------------------------------------


def test_product_info():
    assert PRODUCT_INFO["product"] == "copernicus_embed"
    assert PRODUCT_INFO["embed_dim"] == 768 and PRODUCT_INFO["resolution"] == 0.25
    assert PRODUCT_INFO["crs"] == "EPSG:4326" and PRODUCT_INFO["years"] == (2021,)
    assert PRODUCT_INFO["licence"] == "CC-BY-4.0"
    assert PRODUCT_INFO["default_source"].startswith("https://huggingface.co/datasets/torchgeo/copernicus_embed/")
    assert PRODUCT_INFO["default_source"].endswith("/embed_map_310k.tif")
    for key in ("title", "dequantisation", "nodata", "attribution", "reference"):
        assert PRODUCT_INFO[key]


def test_geotiff_whole_source(tif, values):
    da = open_copernicus_embed(source=tif)
    assert da.name == "embeddings" and da.dims == ("embedding", "y", "x") and da.dtype == np.float32
    assert isinstance(da.data, dsa.Array)
    assert da.sizes == {"embedding": 768, "y": HEIGHT, "x": WIDTH}
    assert da.rio.crs.to_epsg() == 4326
    assert da.rio.transform() == Affine(0.25, 0, -0.125, 0, -0.25, 52.625)
    # pixel centres of the ERA5 grid: lon -180 + 0.25 * col, lat 90 - 0.25 * row
    np.testing.assert_array_equal(da.x, -180 + 0.25 * np.arange(COL0, COL0 + WIDTH))
    np.testing.assert_array_equal(da.y, 90 - 0.25 * np.arange(ROW0, ROW0 + HEIGHT))
    assert (float(da.x[0]), float(da.y[0])) == (0.0, 52.5)
    np.testing.assert_array_equal(da.embedding, np.arange(768))
    out = da.values
    np.testing.assert_array_equal(out, _expected(values))
    assert np.isnan(out[:, 3, 5]).all() and not np.isnan(out[:, 3, 4]).any()
    for key in ("product", "licence", "attribution", "dequantisation"):
        assert da.attrs[key] == PRODUCT_INFO[key]
    assert da.attrs["year"] == 2021
    assert "time" not in da.dims


def test_geotiff_crop_snaps_outwards(tif, values):
    # lon 0.3 is in the cell [0.125, 0.375) (col 1 of the window), 1.1 in [0.875, 1.125) (col 4);
    # lat 52.2 is in (52.125, 52.375] (row 1), 51.1 in (50.875, 51.125] (row 6).
    da = open_copernicus_embed(spatial=BBox(0.3, 51.1, 1.1, 52.2), source=tif)
    assert da.sizes == {"embedding": 768, "y": 6, "x": 4}
    assert da.rio.transform() == Affine(0.25, 0, 0.125, 0, -0.25, 52.375)
    np.testing.assert_array_equal(da.x, [0.25, 0.5, 0.75, 1.0])
    np.testing.assert_array_equal(da.y, 52.25 - 0.25 * np.arange(6))
    np.testing.assert_array_equal(da.values, _expected(values)[:, 1:7, 1:5])


def test_geotiff_crop_on_cell_edges_takes_no_extra_cell(tif):
    da = open_copernicus_embed(spatial=BBox(0.125, 51.875, 0.625, 52.375), source=tif)
    assert da.sizes["x"] == 2 and da.sizes["y"] == 2
    assert da.rio.bounds() == (0.125, 51.875, 0.625, 52.375)


def test_geotiff_crop_point_buffer(tif):
    region = PointBuffer(1.0, 51.5, 20_000)
    da = open_copernicus_embed(spatial=region, source=tif)
    left, bottom, right, top = region.bounds_in("EPSG:4326")
    b = da.rio.bounds()
    assert b[0] <= left < b[0] + 0.25 and b[2] - 0.25 < right <= b[2]
    assert b[1] <= bottom < b[1] + 0.25 and b[3] - 0.25 < top <= b[3]


def test_geotiff_crop_partly_outside_is_clipped(tif):
    da = open_copernicus_embed(spatial=BBox(-5.0, 50.0, 0.3, 60.0), source=tif)
    assert da.rio.bounds() == (-0.125, 50.625, 0.375, 52.625)


def test_geotiff_is_lazy(tif, monkeypatch):
    reads = []
    original = rasterio.io.DatasetReader.read

    def counting_read(self, *args, **kwargs):
        reads.append(1)
        return original(self, *args, **kwargs)

    monkeypatch.setattr(rasterio.io.DatasetReader, "read", counting_read)
    da = open_copernicus_embed(spatial=BBox(0.3, 51.1, 1.1, 52.2), source=tif)
    assert reads == []
    da.compute()
    assert reads


def test_chunks(tif):
    da = open_copernicus_embed(source=tif, chunks={"y": 4, "x": 5})
    assert da.chunks == ((768,), (4, 4), (5, 5, 2))
    with pytest.raises(OptionError, match="768"):
        open_copernicus_embed(source=tif, chunks={"embedding": 1})
    with pytest.raises(OptionError, match="chunks"):
        open_copernicus_embed(source=tif, chunks="auto")


# --- errors ----------------------------------------------------------------------------------------------------


def test_temporal(tif):
    for ok in (None, 2021, TemporalSpec.year(2021), TemporalSpec.range("2020-06-01", "2021-02-01"),
               TemporalSpec.range("2021-03-01", "2021-04-01")):
        open_copernicus_embed(source=tif, temporal=ok)
    for bad in (TemporalSpec.year(2020), TemporalSpec.range("2022-01-01", "2023-01-01"), 2024):
        with pytest.raises(ProductCoverageError, match="TemporalSpec.year\\(2021\\)"):
            open_copernicus_embed(source=tif, temporal=bad)
    with pytest.raises(OptionError):
        open_copernicus_embed(source=tif, temporal="2021")


def test_region_outside_coverage(tif):
    with pytest.raises(NoDataInBoundsError, match="outside"):
        open_copernicus_embed(spatial=BBox(10.0, 10.0, 11.0, 11.0), source=tif)


def test_region_across_antimeridian(tif):
    with pytest.raises(OptionError, match="antimeridian"):
        open_copernicus_embed(spatial=PointBuffer(179.9, 0.0, 50_000), source=tif)


def test_missing_source(tmp_path):
    with pytest.raises(XrembedError, match="does not exist"):
        open_copernicus_embed(source=tmp_path / "nope.tif")


@pytest.mark.parametrize(
    "kwargs, why",
    [
        ({"bands": 3}, "3 bands"),
        ({"crs": "EPSG:3857"}, "EPSG:4326"),
        ({"res": 0.1}, "pixel size"),
        ({"dx": 0.1}, "lattice"),
    ],
)
def test_not_the_product(tmp_path, kwargs, why):
    bands = kwargs.pop("bands", 768)
    path = _write_tif(tmp_path / "other.tif", np.ones((bands, 2, 2), "float32"), **kwargs)
    with pytest.raises(XrembedError, match=why):
        open_copernicus_embed(source=path)


def test_npz_not_the_product(tmp_path):
    small = _write_npz(tmp_path / "small.npz", None, shape=(4, 4, 768))
    with pytest.raises(XrembedError, match=r"not Copernicus-Embed.*\(4, 4, 768\)"):
        open_copernicus_embed(source=small)
    other = _write_npz(tmp_path / "other.npz", None, shape=(4, 4, 768), member="embeddings.npy")
    with pytest.raises(XrembedError, match="no member 'arr_0'"):
        open_copernicus_embed(source=other)
    (tmp_path / "junk.npz").write_bytes(b"not a zip")
    with pytest.raises(XrembedError, match="not a zip"):
        open_copernicus_embed(source=tmp_path / "junk.npz")
    with pytest.raises(OptionError, match="download it first"):
        open_copernicus_embed(source="https://example.org/embed_map_310k.npz")


# --- the original .npz ---------------------------------------------------------------------------------------------


def test_npz_matches_geotiff(npz, tif, values, monkeypatch):
    reads = []
    original = ce._read_npz_rows

    def counting(*args):
        reads.append(args[3])
        return original(*args)

    monkeypatch.setattr(ce, "_read_npz_rows", counting)
    region = BBox(-0.1, 50.8, 2.8, 52.6)
    from_npz = open_copernicus_embed(spatial=region, source=npz)
    assert reads == [] and isinstance(from_npz.data, dsa.Array)
    assert from_npz.sizes == {"embedding": 768, "y": HEIGHT, "x": WIDTH}
    assert from_npz.rio.crs.to_epsg() == 4326
    assert from_npz.rio.transform() == Affine(0.25, 0, -0.125, 0, -0.25, 52.625)
    np.testing.assert_array_equal(from_npz.x, -180 + 0.25 * np.arange(COL0, COL0 + WIDTH))
    np.testing.assert_array_equal(from_npz.y, 90 - 0.25 * np.arange(ROW0, ROW0 + HEIGHT))
    out = from_npz.values
    assert out.dtype == np.float32 and len(reads) == 1
    np.testing.assert_array_equal(out, _expected(values))
    xr.testing.assert_identical(
        from_npz.drop_attrs().drop_vars("spatial_ref"),
        open_copernicus_embed(spatial=region, source=tif).compute().drop_attrs().drop_vars("spatial_ref"),
    )


def test_npz_row_chunks_and_ocean(npz, values):
    region = BBox(-1.0, 50.0, 3.0, 53.0)  # a margin of all-zero (ocean) cells around the data
    da = open_copernicus_embed(spatial=region, source=npz, chunks={"y": 5, "x": 7})
    assert da.chunks[0] == (768,) and set(da.chunks[1][:-1]) == {5} and set(da.chunks[2][:-1]) == {7}
    out = da.values
    r0 = round((90.125 - da.rio.bounds()[3]) / 0.25)
    c0 = round((da.rio.bounds()[0] + 180.125) / 0.25)
    expected = np.full(out.shape, np.nan, "float32")
    expected[:, ROW0 - r0:ROW0 - r0 + HEIGHT, COL0 - c0:COL0 - c0 + WIDTH] = _expected(values)
    np.testing.assert_array_equal(out, expected)


# --- over HTTP (GDAL /vsicurl/ range reads against a local stand-in for the Hub) ------------------------------------


class _RangeServer:
    """Serves files with HTTP Range support and counts the bytes it sends: the network boundary."""

    def __init__(self, files: dict[str, bytes]):
        served = self.served = []

        class Handler(BaseHTTPRequestHandler):
            def do_HEAD(self):
                self._reply(head=True)

            def do_GET(self):
                self._reply(head=False)

            def _reply(self, head):
                body = files.get(self.path)
                if body is None:
                    self.send_response(404)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                match = re.match(r"bytes=(\d+)-(\d*)", self.headers.get("Range", ""))
                if match:
                    start = int(match.group(1))
                    end = min(int(match.group(2) or len(body) - 1), len(body) - 1)
                    self.send_response(206)
                    self.send_header("Content-Range", f"bytes {start}-{end}/{len(body)}")
                    body = body[start:end + 1]
                else:
                    self.send_response(200)
                self.send_header("Accept-Ranges", "bytes")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if not head:
                    self.wfile.write(body)
                    served.append(len(body))

            def log_message(self, *args):
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


def test_default_source_is_read_by_http_ranges(tif, values, monkeypatch):
    body = tif.read_bytes()
    server = _RangeServer({"/embed_map_310k.tif": body})
    try:
        monkeypatch.setenv("GDAL_DISABLE_READDIR_ON_OPEN", "EMPTY_DIR")
        monkeypatch.setattr(ce, "DEFAULT_SOURCE", f"{server.url}/embed_map_310k.tif")
        da = open_copernicus_embed(spatial=BBox(0.3, 51.1, 1.1, 52.2))
        before = sum(server.served)
        assert 0 < before < len(body) / 4  # the header only
        np.testing.assert_array_equal(da.values, _expected(values)[:, 1:7, 1:5])
        assert sum(server.served) > before
        assert da.attrs["source"] == ce.DEFAULT_SOURCE
    finally:
        server.close()


@pytest.mark.network
def test_live_hugging_face_header():
    da = open_copernicus_embed()
    assert da.sizes == {"embedding": 768, "y": 721, "x": 1440}
    assert da.rio.transform() == Affine(0.25, 0, -180.125, 0, -0.25, 90.125)
    assert (float(da.x[0]), float(da.y[0]), float(da.y[-1])) == (-180.0, 90.0, -90.0)
