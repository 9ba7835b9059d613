"""x.rsembed.embed(<product>): a precomputed product resampled lazily (nearest) onto an input raster's grid,
so that products and on-the-fly embeddings line up cell for cell."""

import dask.array as dsa
import numpy as np
from affine import Affine
from pyproj import Transformer

import xrembed
from xrembed.testing import synthetic_raster

from test_copernicus_embed import COL0, ROW0, _expected, _values, _write_tif


def test_copernicus_embed_on_a_utm_raster_grid(tmp_path):
    values = _values()
    tif = _write_tif(tmp_path / "embed_map_310k.tif", values)
    x0, y0 = Transformer.from_crs("EPSG:4326", "EPSG:32631", always_xy=True).transform(1.0, 51.8)
    raster = synthetic_raster((96, 128), resolution=100, origin=(x0, y0), crs="EPSG:32631")
    emb = raster.rsembed.embed("copernicus_embed", source=str(tif), patch_size=16)
    assert isinstance(emb.data, dsa.Array)
    assert emb.dims == ("embedding", "y", "x") and emb.shape == (768, 6, 8)
    assert emb.rio.crs.to_epsg() == 32631
    assert emb.rio.transform() == raster.rio.transform() @ Affine.scale(16)  # a patch-16 model's grid
    # each cell holds the product vector of the 0.25-degree cell containing its centre
    to_lonlat = Transformer.from_crs("EPSG:32631", "EPSG:4326", always_xy=True)
    xx, yy = np.meshgrid(emb.x.values, emb.y.values)
    lon, lat = to_lonlat.transform(xx, yy)
    rows = np.floor((90.125 - lat) / 0.25).astype(int) - ROW0
    cols = np.floor((lon + 180.125) / 0.25).astype(int) - COL0
    expected = _expected(values)[:, rows, cols]
    np.testing.assert_array_equal(emb.values, expected)
    assert emb.attrs["product"] == "copernicus_embed" and emb.attrs["resampling"] == "nearest"


def test_describe_model_knows_the_products():
    for product in xrembed.list_products():
        info = xrembed.describe_model(product)
        assert info["product"] == product and info["licence"] and info["attribution"]


def test_a_south_up_input_gets_the_same_north_up_product_grid(tmp_path):
    tif = _write_tif(tmp_path / "embed_map_310k.tif", _values())
    x0, y0 = Transformer.from_crs("EPSG:4326", "EPSG:32631", always_xy=True).transform(1.0, 51.8)
    raster = synthetic_raster((96, 128), resolution=100, origin=(x0, y0), crs="EPSG:32631")
    flipped = raster.isel(y=slice(None, None, -1))
    flipped = flipped.rio.write_transform(Affine(100, 0, x0, 0, 100, y0 - 96 * 100))
    north = raster.rsembed.embed("copernicus_embed", source=str(tif), patch_size=16)
    south = flipped.rsembed.embed("copernicus_embed", source=str(tif), patch_size=16)
    assert south.rio.transform() == north.rio.transform() and south.rio.transform().e < 0
    np.testing.assert_array_equal(south.values, north.values)
