"""Precomputed products through ``.rsembed.embed`` and the functional API: the model keywords they honour
(``output="pooled"``), those they refuse, and chunks like a model's (few, all embedding values in one)."""

import numpy as np
import pytest
from pyproj import Transformer

import xrembed
from xrembed import errors
from xrembed.specs import BBox, OutputSpec, TemporalSpec
from xrembed.testing import synthetic_raster

from test_copernicus_embed import COL0, ROW0, ZERO_CELLS, _expected, _values, _write_tif


@pytest.fixture(scope="module")
def values():
    return _values()


@pytest.fixture(scope="module")
def tif(tmp_path_factory, values):
    return _write_tif(tmp_path_factory.mktemp("products") / "embed_map_310k.tif", values)


def _utm_raster(shape, resolution):
    """A raster whose top-left corner is at lon 1.0, lat 51.8: it spans the fixture's no-data cell (3, 5)."""
    x0, y0 = Transformer.from_crs("EPSG:4326", "EPSG:32631", always_xy=True).transform(1.0, 51.8)
    return synthetic_raster(shape, resolution=resolution, origin=(x0, y0), crs="EPSG:32631")


def _nearest_reference(values, emb):
    """Eager nearest-neighbour sampling of the fixture at ``emb``'s cell centres (numpy + pyproj only)."""
    to_lonlat = Transformer.from_crs("EPSG:32631", "EPSG:4326", always_xy=True)
    xx, yy = np.meshgrid(emb.x.values, emb.y.values)
    lon, lat = to_lonlat.transform(xx, yy)
    rows = np.floor((90.125 - lat) / 0.25).astype(int) - ROW0
    cols = np.floor((lon + 180.125) / 0.25).astype(int) - COL0
    return _expected(values)[:, rows, cols]


def _valid_mean(grid):
    """Mean over the cells whose vector is valid (equal-area cells, so area-weighted), computed here."""
    flat = grid.reshape(grid.shape[0], -1)
    valid = np.isfinite(flat).all(axis=0)
    assert 0 < valid.sum() < valid.size  # the test needs both valid and no-data cells
    return flat[:, valid].mean(axis=1)


# --- output="pooled" ------------------------------------------------------------------------------------------


def test_accessor_pooled_is_the_valid_mean_of_the_aligned_grid(tif, values):
    raster = _utm_raster((96, 128), 100)
    grid = raster.rsembed.embed("copernicus_embed", source=str(tif), patch_size=16)
    pooled = raster.rsembed.embed("copernicus_embed", source=str(tif), patch_size=16, output="pooled")
    assert pooled.dims == ("embedding",) and pooled.sizes["embedding"] == 768
    assert pooled.attrs["output"] == "pooled" and grid.attrs["output"] == "grid"
    expected = _valid_mean(_nearest_reference(values, grid))
    np.testing.assert_allclose(pooled.values, expected, rtol=1e-5, atol=1e-6)


def test_functional_pooled_is_the_valid_mean_of_the_native_cells(tif, values):
    roi = BBox(0.1, 51.1, 1.2, 51.9)  # cells rows 2..6, cols 0..5 of the fixture, (3, 5) is no data
    assert (3, 5) in ZERO_CELLS
    emb = xrembed.get_embedding("copernicus_embed", spatial=roi, source=str(tif), output=OutputSpec.pooled())
    expected = _valid_mean(_expected(values)[:, 2:7, 0:6])
    np.testing.assert_allclose(emb.data, expected, rtol=1e-5, atol=1e-6)


def test_an_all_nodata_extent_pools_to_nan(tif):
    # the fixture's cell (0, 0) is no data: a raster inside it has no valid vector to average
    x0, y0 = Transformer.from_crs("EPSG:4326", "EPSG:32631", always_xy=True).transform(-0.1, 52.6)
    raster = synthetic_raster((8, 8), resolution=100, origin=(x0, y0), crs="EPSG:32631")
    pooled = raster.rsembed.embed("copernicus_embed", source=str(tif), output="pooled").values
    assert pooled.shape == (768,) and np.isnan(pooled).all()


# --- keywords without meaning for a product ---------------------------------------------------------------


@pytest.mark.parametrize(
    "kwargs, named",
    [
        ({"bands": ["B04"]}, "bands"),
        ({"wavelengths": [0.665]}, "wavelengths"),
        ({"modality": "s2"}, "modality"),
        ({"variant": "base"}, "variant"),
        ({"weights": "random"}, "weights"),
        ({"weights": "/some/checkpoint.pth"}, "weights"),
        ({"device": "cpu"}, "device"),
        ({"batch_size": 8}, "batch_size"),
        ({"precision": "bf16"}, "precision"),
        ({"input_prep": "resize"}, "input_prep"),
        ({"nodata": 0}, "nodata"),
        ({"tiles_per_chunk": 2}, "tiles_per_chunk"),
        ({"output": "vectors"}, "output"),
    ],
)
def test_model_keywords_are_refused_before_the_product_is_opened(kwargs, named):
    raster = synthetic_raster((16, 16))
    # a missing source would be a SourceError/XrembedError: the keyword must be refused first
    with pytest.raises(errors.OptionError, match=rf"{named}=.*(precomputed|product)"):
        raster.rsembed.embed("copernicus_embed", source="/no/such/embed_map_310k.tif", **kwargs)


def test_default_keywords_are_accepted(tif):
    raster = _utm_raster((8, 8), 10)
    emb = raster.rsembed.embed("copernicus_embed", source=str(tif), device="auto", input_prep="auto",
                               precision="fp32", weights=None, output="grid")
    assert emb.dims == ("embedding", "y", "x")


@pytest.mark.parametrize(
    "kwargs, named",
    [
        ({"weights": "/some/checkpoint.pth"}, "weights"),
        ({"variant": "large"}, "variant"),
        ({"batch_size": 8}, "batch_size"),
        ({"batchsize": 8}, "batchsize"),
        ({"bands": ["B04"]}, "bands"),
        ({"device": "cuda"}, "device"),
        ({"input_prep": "resize"}, "input_prep"),
        ({"modality": "s1"}, "modality"),
    ],
)
def test_functional_api_refuses_model_keywords_for_products(kwargs, named):
    with pytest.raises(errors.OptionError, match=rf"{named}="):
        xrembed.get_embedding("tessera", spatial=BBox(0.1, 52.1, 0.2, 52.2), temporal=TemporalSpec.year(2024),
                              source="/no/such/tessera/", **kwargs)


# --- chunks like a model's --------------------------------------------------------------------------------------


def test_default_zoom_has_few_chunks_and_one_embedding_chunk(tif, values):
    raster = _utm_raster((32, 32), 10)  # 10 m cells: one 0.25-degree product cell covers them all
    emb = raster.rsembed.embed("copernicus_embed", source=str(tif))
    assert emb.shape == (768, 32, 32)
    assert emb.chunks[0] == (768,)  # all embedding values of a cell in one chunk
    assert emb.data.npartitions <= 4
    np.testing.assert_array_equal(emb.values, _nearest_reference(values, emb))


def test_output_chunks_follow_the_dask_chunk_size_and_keep_the_values(tif, values):
    import dask

    raster = _utm_raster((96, 128), 100)  # 9.6 x 12.8 km: several product cells
    with dask.config.set({"array.chunk-size": "4MiB"}):  # small chunks, so that a small grid has several
        emb = raster.rsembed.embed("copernicus_embed", source=str(tif))
    assert emb.chunks[0] == (768,)
    assert len(emb.chunks[1]) > 1 and len(emb.chunks[2]) > 1
    assert max(emb.chunks[1]) * max(emb.chunks[2]) * 768 * 4 <= 4 * 2**20
    np.testing.assert_array_equal(emb.values, _nearest_reference(values, emb))


# --- a missing source -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("product", ["tessera", "gse", "copernicus_embed"])
def test_a_missing_product_source_is_a_source_error(product, tmp_path):
    with pytest.raises(errors.SourceError, match="does not exist"):
        xrembed.open_precomputed(product, spatial=BBox(0.1, 52.1, 0.2, 52.2), source=str(tmp_path / "missing"),
                                 temporal=TemporalSpec.year(2021 if product == "copernicus_embed" else 2024))
