"""End to end: the raster analyses on the bundled real Sentinel-2 sample embedded with a small random-weight
model (dofa-tiny: its embeddings carry no meaning, only the plumbing is tested), and on a precomputed product
(Copernicus-Embed, EPSG:4326, no-data cells) opened from a fixture in its real file format."""

from __future__ import annotations

import numpy as np
import pytest
import rioxarray
from pyproj import Transformer

import xrembed
from xrembed.specs import BBox

from test_copernicus_embed import ZERO_CELLS, _values, _write_tif


@pytest.fixture(scope="module")
def sample_emb():
    raster = xrembed.open_raster("sample")
    emb = raster.rsembed.embed("dofa-tiny", weights="random")
    return raster, emb


def test_on_the_real_sample(sample_emb, tmp_path):
    raster, emb = sample_emb
    assert emb.chunks is not None
    components = emb.rsembed.pca(3)
    rgb = emb.rsembed.to_rgb()
    labels = emb.rsembed.kmeans(4)
    for out in (components, rgb, labels):
        assert out.chunks is not None  # nothing but the fit's sample has been computed
        assert out.rio.crs == raster.rio.crs
        assert out.rio.transform() == emb.rio.transform()
    assert rgb.rio.bounds() == raster.rio.bounds()  # 448 px / patch 8 = 56 cells exactly

    path = tmp_path / "pca.tif"
    rgb.rio.to_raster(path)
    back = rioxarray.open_rasterio(path)
    assert back.rio.crs == raster.rio.crs and back.rio.transform() == emb.rio.transform() and back.rio.nodata == 0
    values = back.values
    assert values.dtype == np.uint8 and (values >= 1).all()  # the sample has no nodata: every cell is valid
    assert len(np.unique(values[0])) > 50  # a stretched picture, not a flat one

    row, col = 20, 31
    x, y = float(emb.x[col]), float(emb.y[row])
    lon, lat = Transformer.from_crs(emb.rio.crs, "EPSG:4326", always_xy=True).transform(x, y)
    sim = emb.rsembed.similarity((lon, lat)).values
    assert sim[row, col] == pytest.approx(1.0, abs=1e-5) and np.nanmax(sim) <= 1 + 1e-5
    assert set(np.unique(labels.values)) == {0.0, 1.0, 2.0, 3.0}
    # the same scene embedded from differently chunked input: no change anywhere
    again = raster.chunk({"y": 96, "x": 200}).rsembed.embed("dofa-tiny", weights="random")
    assert float(np.nanmax(xrembed.change(emb, again).values)) < 1e-5


def test_on_a_precomputed_product_in_lonlat(tmp_path):
    tif = _write_tif(tmp_path / "embed_map_310k.tif", _values())
    product = xrembed.open_precomputed(
        "copernicus_embed", spatial=BBox(-0.125, 50.625, 2.875, 52.625, crs="EPSG:4326"), source=str(tif)
    )
    assert product.rio.crs.to_epsg() == 4326 and product.sizes["y"] == 8 and product.sizes["x"] == 12
    nan = [(r, c) for r, c in ZERO_CELLS]
    sim = product.rsembed.similarity((float(product.x[4]), float(product.y[2])))  # lon/lat, the product's own CRS
    values = sim.values
    assert values[2, 4] == pytest.approx(1.0, abs=1e-5)
    assert sorted(zip(*np.nonzero(np.isnan(values)))) == nan
    for out in (product.rsembed.pca(2), product.rsembed.kmeans(3)):
        got = out.values
        nan_cells = np.isnan(got) if got.ndim == 2 else np.isnan(got).all(axis=0)
        assert sorted(zip(*np.nonzero(nan_cells))) == nan
        assert out.rio.crs.to_epsg() == 4326
    rgb = product.rsembed.to_rgb().values
    assert sorted(zip(*np.nonzero((rgb == 0).all(axis=0)))) == nan
