"""Every runtime feature of xrembed, from a plain install (``pip install -e .``, no extras).

``.ci/run`` runs this in a virtualenv without the test extras, so that a runtime dependency that only a
test extra pulls in (h5py for NetCDF, pyarrow for Parquet, aiohttp for HTTP Zarr) fails CI instead of a
user. Any exception, ImportError included, exits non-zero. No network: remote reads go to a loopback
HTTP server. Earth Engine is the one extra (``xrembed[gee]``); without it ``open_gee`` must say so.

    python .ci/plain_install_check.py
"""

from __future__ import annotations

import functools
import importlib.util
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
import warnings
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # random weights only: nothing may reach the Hub

# A check that passes because a test extra happens to be installed proves nothing.
_TEST_ONLY = ["pytest", "hypothesis", "torchgeo", "terratorch", "open_clip", "ee", "xee", "sklearn", "geopandas",
              "matplotlib", "sentencepiece", "mkdocs"]
_present = [name for name in _TEST_ONLY if importlib.util.find_spec(name) is not None]
if _present:
    sys.exit(f"plain install check: not a plain install, test extras are importable: {_present}")

import numpy as np  # noqa: E402
import xarray as xr  # noqa: E402
from pyproj import Transformer  # noqa: E402

import xrembed  # noqa: E402
import xrembed.testing  # noqa: E402
from xrembed import ExportConfig, ExportModelRequest, ExportTarget, OutputSpec  # noqa: E402

warnings.simplefilter("ignore", xrembed.errors.RandomWeightsWarning)
xrembed.testing.register_test_models()  # dofa-tiny: a random-weights model that runs in ms
TINY = "dofa-tiny"
SAMPLE_CRS = "EPSG:32629"
LEFT, BOTTOM, RIGHT, TOP = 199980.0, 2755220.0, 244780.0, 2800020.0  # the bundled sample's bounds


def step(fn):
    """Run one check, print its time; any exception ends the script with a traceback and exit code 1."""

    @functools.wraps(fn)
    def run(*args, **kwargs):
        start = time.perf_counter()
        result = fn(*args, **kwargs)
        print(f"ok  {fn.__name__} ({time.perf_counter() - start:.1f} s)", flush=True)
        return result

    return run


def rois() -> list[xrembed.PointBuffer]:
    to_lonlat = Transformer.from_crs(SAMPLE_CRS, "EPSG:4326", always_xy=True)
    points = [(0.3, 0.4), (0.7, 0.6)]
    return [
        xrembed.PointBuffer(*to_lonlat.transform(LEFT + (RIGHT - LEFT) * fx, BOTTOM + (TOP - BOTTOM) * fy), 1600)
        for fx, fy in points
    ]


@step
def embed_sample() -> None:
    raster = xrembed.open_raster("sample")
    assert raster.rio.crs.to_string() == SAMPLE_CRS, raster.rio.crs
    eager = raster.rsembed.embed(TINY, weights="random", input_prep="tile")
    lazy = raster.chunk({"y": 160, "x": 160}).rsembed.embed(TINY, weights="random", input_prep="tile").compute()
    np.testing.assert_allclose(lazy.values, eager.values, atol=1e-5)
    assert eager.rio.crs == raster.rio.crs and np.isfinite(eager.values).all()
    pooled = raster.rsembed.embed(TINY, weights="random", output="pooled", input_prep="tile")
    assert pooled.shape == (eager.sizes["embedding"],) and np.isfinite(pooled.values).all()


@step
def exports(tmp: Path) -> None:
    spatials = rois()
    models = [ExportModelRequest.configure(TINY, weights="random")]
    alone = [
        xrembed.get_embedding(TINY, spatial=s, source=xrembed.sample_path(), weights="random",
                              output=OutputSpec.grid())
        for s in spatials
    ]
    cases = [("zarr", "combined", "emb.zarr"), ("netcdf", "combined", "emb.nc"), ("npz", "combined", "emb.npz"),
             ("netcdf", "per_item", "nc"), ("geotiff", "per_item", "tif")]
    for fmt, layout, name in cases:
        path = tmp / f"{fmt}_{layout}" / name
        target = ExportTarget.combined(path) if layout == "combined" else ExportTarget.per_item(path)
        xrembed.export_batch(
            spatials=spatials, temporal=None, models=models, target=target, output=OutputSpec.grid(),
            config=ExportConfig(format=fmt, show_progress=False), source=xrembed.sample_path(),
        )
        result = xrembed.load_export(path)
        assert result.ok_models == [TINY], (fmt, layout, result.models)
        grids = result.embedding(TINY)
        assert len(grids) == len(spatials), (fmt, layout, grids)
        for got, want in zip(grids, alone):
            np.testing.assert_allclose(np.asarray(got.values), want.data.values, atol=1e-5, err_msg=f"{fmt} {layout}")
            assert got.rio.crs == want.data.rio.crs, (fmt, layout, got.rio.crs)
            assert got.rio.transform() == want.data.rio.transform(), (fmt, layout)
    # pooled vectors stack into one (item, embedding) array
    path = tmp / "pooled" / "emb.nc"
    xrembed.export_batch(spatials=spatials, temporal=None, models=models, target=ExportTarget.combined(path),
                         config=ExportConfig(format="netcdf", show_progress=False), source=xrembed.sample_path())
    stacked = xrembed.load_export(path).embedding(TINY)
    assert stacked.shape[0] == len(spatials) and np.isfinite(stacked.values).all()


@step
def stac_item(tmp: Path) -> None:
    import pystac
    import rasterio

    sample = Path(xrembed.sample_path())
    assets = {}
    for band in ("B02", "B03", "B04"):
        with rasterio.open(sample / f"{band}.tif") as src:
            shape, transform, epsg = [src.height, src.width], list(src.transform)[:6], src.crs.to_epsg()
        assets[band] = {"href": str(sample / f"{band}.tif"), "type": "image/tiff; application=geotiff",
                        "proj:shape": shape, "proj:transform": transform, "proj:epsg": epsg}
    to_lonlat = Transformer.from_crs(SAMPLE_CRS, "EPSG:4326", always_xy=True)
    (w, s), (e, n) = to_lonlat.transform(LEFT, BOTTOM), to_lonlat.transform(RIGHT, TOP)
    item = {
        "type": "Feature", "stac_version": "1.0.0", "id": "sample", "bbox": [w, s, e, n],
        "geometry": {"type": "Polygon", "coordinates": [[[w, s], [e, s], [e, n], [w, n], [w, s]]]},
        "properties": {"datetime": "2020-02-19T11:00:00Z", "proj:epsg": epsg},
        "stac_extensions": ["https://stac-extensions.github.io/projection/v1.1.0/schema.json"],
        "links": [], "assets": assets,
    }
    path = tmp / "item.json"
    path.write_text(json.dumps(item))
    da = xrembed.open_stac(pystac.Item.from_file(str(path)), bands=["B04", "B03", "B02"])
    direct = xrembed.open_raster("sample").sel(band=["B04", "B03", "B02"])
    np.testing.assert_array_equal(np.asarray(da.isel(time=0).values, np.float64), direct.values.astype(np.float64))


@step
def cli(tmp: Path) -> None:
    exe = Path(sys.executable).with_name("xrembed")
    out = tmp / "cli.zarr"
    subprocess.run([str(exe), "embed", "sample", "--model", "dofa", "--weights", "random", "--out", str(out),
                    "--quiet"], check=True)
    grid = xr.open_zarr(out, decode_coords="all")["embeddings"]
    assert grid.rio.crs.to_string() == SAMPLE_CRS and np.isfinite(grid.values).all()
    listing = subprocess.run([str(exe), "models"], check=True, capture_output=True, text=True).stdout
    assert "dofa" in listing.split(), listing


def _tessera_store(path: Path) -> np.ndarray:
    """A small Tessera Zarr store in the public store's layout (geoemb attrs, a ``utmNN`` group)."""
    import zarr

    x0, y0, size, res = 290870.0, 5698580.0, 16, 10.0
    rng = np.random.default_rng(0)
    q = rng.integers(-127, 128, size=(1, 128, size, size), dtype=np.int8)
    s = rng.uniform(0.001, 0.05, size=(1, size, size)).astype(np.float32)
    root = zarr.open_group(str(path), mode="w", zarr_format=3)
    root.attrs.update({
        "geoemb:dimensions": 128, "geoemb:data_type": "int8", "geoemb:gsd": res, "geoemb:spatial_layout": "utm_zones",
        "geoemb:quantization": {"method": "per_pixel_scale", "scale": {"array_name": "scales", "nodata": "+inf"}},
    })
    group = root.create_group("utm31")
    group.attrs.update({
        "proj:code": "EPSG:32631", "spatial:dimensions": ["y", "x"], "spatial:shape": [size, size],
        "spatial:transform": [res, 0.0, x0, 0.0, -res, y0], "spatial:bbox": [x0, y0 - size * res, x0 + size * res, y0],
    })
    group.create_array("embeddings", shape=q.shape, dtype="int8", chunks=(1, 128, 8, 8), fill_value=0,
                       dimension_names=("time", "band", "y", "x"))[:] = q
    group.create_array("scales", shape=s.shape, dtype="float32", chunks=(1, 8, 8), fill_value=np.inf,
                       dimension_names=("time", "y", "x"))[:] = s
    coords = {"x": x0 + (np.arange(size) + 0.5) * res, "y": y0 - (np.arange(size) + 0.5) * res,
              "time": np.array([2024], np.int32), "band": np.arange(128, dtype=np.int32)}
    for name, values in coords.items():
        group.create_array(name, shape=values.shape, dtype=values.dtype, dimension_names=(name,))[:] = values
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # consolidated metadata is a v3 extension; the public store has it
        zarr.consolidate_metadata(str(path))
    return q[0].astype(np.float64) * s[0].astype(np.float64)


@step
def precomputed_over_http(tmp: Path) -> None:
    """Tessera's public store is Zarr over HTTP (fsspec + aiohttp); its tile layout has a Parquet manifest."""
    expected = _tessera_store(tmp / "tessera.zarr")
    handler = functools.partial(type("Quiet", (SimpleHTTPRequestHandler,), {"log_message": lambda *a: None}),
                                directory=str(tmp))
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/tessera.zarr"
        remote = xrembed.open_precomputed("tessera", temporal=xrembed.TemporalSpec.year(2024), source=url)
        np.testing.assert_allclose(remote.isel(time=0).values, expected, rtol=1e-6)
    finally:
        server.shutdown()
        server.server_close()
    import pandas as pd

    # The tile layout's manifest is Parquet (pyarrow): a year it lacks is refused after reading it.
    manifest = tmp / "manifest.parquet"
    pd.DataFrame({"lat": [52.05], "lon": [0.05], "year": [2024]}).to_parquet(manifest)
    try:
        xrembed.open_precomputed("tessera", temporal=xrembed.TemporalSpec.year(2023), source=manifest)
    except xrembed.errors.ProductCoverageError as err:
        assert "[2024]" in str(err), err
    else:
        raise AssertionError("a manifest without 2023 gave Tessera embeddings for 2023")


@step
def text_towers_offline() -> None:
    """RemoteCLIP's CLIP tokenizer ships with xrembed (ftfy cleaning): text and zero-shot maps need no extra."""
    texts = xrembed.encode_text("remoteclip", ["a harbour", "sand dunes"], weights="random")
    assert texts.dims == ("text", "embedding"), texts.dims
    np.testing.assert_allclose(np.linalg.norm(texts.values, axis=1), 1.0, rtol=1e-5)
    raster = xrembed.open_raster("sample")
    probs = raster.rsembed.classify(["water", "sand dunes"], model="remoteclip", weights="random")
    assert probs.dims == ("label", "y", "x") and probs.rio.crs == raster.rio.crs, (probs.dims, probs.rio.crs)
    np.testing.assert_allclose(probs.sum("label").values, 1.0, rtol=1e-5)  # CLIP: softmax over the labels
    import tokenizers  # noqa: F401  (SigLIP's tokenizer.json reader, a runtime dependency)


@step
def stream_to_zarr(tmp: Path) -> None:
    """The kill-safe streaming writer (zarr, dask): a lazy grid to a store, read back with its CRS."""
    raster = xrembed.open_raster("sample").chunk({"y": 160, "x": 160})
    emb = raster.rsembed.embed(TINY, weights="random", input_prep="tile")
    store = xrembed.to_zarr(emb, tmp / "stream.zarr", show_progress=False)
    back = xr.open_zarr(store, decode_coords="all")["embeddings"]
    np.testing.assert_allclose(back.values, emb.values, atol=1e-6)
    assert back.rio.crs == raster.rio.crs, back.rio.crs


@step
def analysis_needs_its_extra() -> None:
    """change() is numpy only; the fitted analyses (scikit-learn) say which extra to install."""
    emb = xrembed.open_raster("sample").rsembed.embed(TINY, weights="random")
    delta = xrembed.change(emb, emb).values
    assert np.nanmax(np.abs(delta)) < 1e-5, np.nanmax(np.abs(delta))
    try:
        emb.rsembed.pca()
    except xrembed.errors.XrembedError as err:
        assert 'pip install "xrembed[analysis]"' in str(err), err
    else:
        raise AssertionError("pca() ran without scikit-learn installed")


@step
def gee_needs_its_extra() -> None:
    try:
        xrembed.open_gee("dofa", spatial=rois()[0], temporal=xrembed.TemporalSpec.year(2022))
    except xrembed.errors.XrembedError as err:
        assert 'pip install "xrembed[gee]"' in str(err), err
    else:
        raise AssertionError("open_gee ran without earthengine-api/xee installed")


def main() -> int:
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as folder:
        tmp = Path(folder)
        embed_sample()
        exports(tmp)
        stac_item(tmp)
        cli(tmp)
        precomputed_over_http(tmp)
        text_towers_offline()
        stream_to_zarr(tmp)
        analysis_needs_its_extra()
        gee_needs_its_extra()
    print(f"plain install check: every runtime feature works without extras ({time.perf_counter() - start:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
