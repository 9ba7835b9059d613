"""Every model and every product describes its output the same way, and products align to any grid (``like=``).

* ``embedding`` is the integers ``0..D-1`` for all of them (GSE's band names ride along as ``embedding_name``);
* ``attrs`` are plain JSON values (str, int, float, bool, None, lists of them): ``json.dumps`` needs no default;
* a grid carries its nodata as NaN where rioxarray reads it (``rio.nodata``; kept in ``encoding["_FillValue"]``,
  so no NaN sits in ``attrs`` and two equal results' attrs compare equal), and ``model`` / ``gsd`` attrs equal
  the ``geoemb:model`` / ``geoemb:gsd`` the exporters write (plus ``geoemb:chip_layout`` from ``image_size``);
* ``like=`` puts a product on exactly another grid (CRS, transform, shape, coordinates), nearest neighbour,
  whatever that grid's CRS: each cell takes the product vector under its centre.

Models run with random weights on one tiny dask-backed raster each (the smallest variant): their outputs' metadata
is checked lazily, before any forward pass, and one small model's output is also computed.
"""

from __future__ import annotations

import json
import math
import warnings

import numpy as np
import pytest
import xarray as xr
from affine import Affine
from pyproj import CRS, Transformer

import xrembed
from xrembed import errors
from xrembed.export.conventions import zarr_convention_attrs
from xrembed.geo import Grid, assign_grid
from xrembed.specs import BBox, TemporalSpec
from xrembed.testing import synthetic_raster

from test_copernicus_embed import COL0, ROW0, _expected, _values, _write_tif
from test_gse import Fixture as GSEFixture
from test_tessera import tile_source  # noqa: F401  (module fixture in the real Tessera tile layout)

Y2024 = TemporalSpec.year(2024)
PLAIN = (str, int, float, bool, type(None))


# --- shared checks -------------------------------------------------------------------------------------------


def _assert_plain(value, where):
    if isinstance(value, list):
        for item in value:
            _assert_plain(item, where)
        return
    assert type(value) in PLAIN, f"{where}: {type(value).__name__} {value!r} is not a plain JSON value"


def check_output(emb: xr.DataArray, *, grid: bool) -> None:
    """The conventions every embedding output honours (model or product, grid or pooled)."""
    assert emb.name == "embeddings"
    dim = emb.sizes["embedding"]
    coord = emb["embedding"]
    assert np.issubdtype(coord.dtype, np.integer), coord.dtype
    np.testing.assert_array_equal(coord.values, np.arange(dim))
    json.dumps(emb.attrs, allow_nan=False)  # no default= needed, and no NaN (which breaks attrs equality)
    for key, value in emb.attrs.items():
        _assert_plain(value, key)
    exported = zarr_convention_attrs(emb)
    assert exported["geoemb:model"] == emb.attrs["model"]
    assert exported["geoemb:dimensions"] == dim
    assert emb.attrs["output"] == ("grid" if grid else "pooled")
    if grid:
        assert exported["geoemb:type"] == "pixel"
        nodata = emb.rio.nodata
        assert nodata is not None and math.isnan(float(nodata)), nodata  # rioxarray may give it the array's dtype
        assert emb.attrs["gsd"] == pytest.approx(exported["geoemb:gsd"], rel=1e-9)
        if emb.attrs.get("image_size") is not None and emb.attrs.get("input_prep") == "tile":
            size = emb.attrs["image_size"]
            assert exported["geoemb:chip_layout"]["chip_size"] == [size, size]
    else:
        assert exported["geoemb:type"] == "chip"
        assert "gsd" not in emb.attrs and "_FillValue" not in emb.encoding


# --- models ----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("model", xrembed.list_models())
def test_every_model_output_is_consistent(model):
    info = xrembed.describe_model(model)
    variant = info["variants"][0]  # the smallest
    # One small dask-backed raster (a time step, for the date-encoding models): the outputs are lazy, and their
    # coordinates, attrs, CRS and nodata are all known before any model runs (ViT-L random inits are slow on CPU).
    raster = synthetic_raster((32, 32), bands=info["bands"], times=1, chunks={})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "random weights"
        grid = raster.rsembed.embed(model, variant=variant, weights="random", device="cpu")
        pooled = raster.rsembed.embed(model, variant=variant, weights="random", device="cpu", output="pooled")
    check_output(grid, grid=True)
    check_output(pooled, grid=False)
    assert grid.attrs["model"] == pooled.attrs["model"]


def test_a_computed_model_output_keeps_the_conventions():
    """Computing changes none of it (eager numpy input, the smallest registered model)."""
    model = "dofa-tiny" if "dofa-tiny" in xrembed.list_models() else "remoteclip"
    info = xrembed.describe_model(model)
    raster = synthetic_raster((32, 32), bands=info["bands"])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        grid = raster.rsembed.embed(model, variant=info["variants"][0], weights="random", device="cpu")
        pooled = raster.rsembed.embed(model, variant=info["variants"][0], weights="random", output="pooled")
    check_output(grid.compute(), grid=True)
    check_output(pooled.compute(), grid=False)


def test_models_refuse_like():
    raster = synthetic_raster((32, 32))
    with pytest.raises(errors.OptionError, match="like="):
        raster.rsembed.embed("dofa", weights="random", like=raster)


# --- products --------------------------------------------------------------------------------------------------


def _utm31_raster(lon, lat, shape, resolution):
    x0, y0 = Transformer.from_crs("EPSG:4326", "EPSG:32631", always_xy=True).transform(lon, lat)
    return synthetic_raster(shape, resolution=resolution, origin=(x0, y0), crs="EPSG:32631")


@pytest.fixture
def product_case(request, tmp_path, tile_source):  # noqa: F811
    """``(product, raster, keywords)``: the product's fixture in its real format, and a raster inside it."""
    product = request.param
    if product == "copernicus_embed":
        tif = _write_tif(tmp_path / "embed_map_310k.tif", _values())
        return product, _utm31_raster(1.0, 51.8, (32, 32), 100.0), {"source": str(tif)}
    if product == "gse":
        root = tmp_path / "v1" / "annual"
        GSEFixture(root).tile("a", "31N", 500000.0, 5800000.0, 2024, seed=2).write_index()
        raster = synthetic_raster((16, 16), origin=(500040.0, 5800300.0), crs="EPSG:32631")
        return product, raster, {"source": root, "temporal": Y2024}
    if product == "tessera":
        return product, _utm31_raster(0.02, 52.07, (8, 8), 100.0), {"source": tile_source["root"], "temporal": Y2024}
    raise AssertionError(f"no fixture for the product {product!r}: add one here")


@pytest.mark.parametrize("product_case", xrembed.list_products(), indirect=True)
def test_every_product_output_is_consistent(product_case):
    name, raster, kw = product_case
    left, bottom, right, top = Grid.from_xarray(raster).bounds
    box = BBox(left, bottom, right, top, crs="EPSG:32631")
    native = xrembed.open_precomputed(name, spatial=box, temporal=kw.get("temporal"), source=kw["source"])
    assert native.attrs["model"] == name and native.attrs["product"] == name
    check_output(native, grid=True)
    aligned = raster.rsembed.embed(name, **kw)
    check_output(aligned, grid=True)
    assert np.isfinite(aligned.values).any()
    check_output(raster.rsembed.embed(name, output="pooled", **kw), grid=False)
    if name == "gse":
        assert list(native.embedding_name.values) == [f"A{i:02d}" for i in range(64)]
        assert list(aligned.embedding_name.values) == list(native.embedding_name.values)


# --- like= -----------------------------------------------------------------------------------------------------


@pytest.fixture
def copernicus(tmp_path):
    values = _values()
    return values, str(_write_tif(tmp_path / "embed_map_310k.tif", values))


def _nearest(values, like: xr.DataArray) -> np.ndarray:
    """Eager nearest-neighbour lookup of the Copernicus fixture at ``like``'s cell centres (pyproj + numpy)."""
    xx, yy = np.meshgrid(like.x.values, like.y.values)
    lon, lat = Transformer.from_crs(like.rio.crs, "EPSG:4326", always_xy=True).transform(xx, yy)
    rows = np.floor((90.125 - lat) / 0.25).astype(int) - ROW0
    cols = np.floor((lon + 180.125) / 0.25).astype(int) - COL0
    return _expected(values)[:, rows, cols]


def _assert_same_grid(out, like):
    assert out.rio.crs == like.rio.crs
    assert out.rio.transform() == like.rio.transform()
    assert (out.sizes["y"], out.sizes["x"]) == (like.sizes["y"], like.sizes["x"])
    np.testing.assert_array_equal(out.x.values, like.x.values)
    np.testing.assert_array_equal(out.y.values, like.y.values)


def test_like_a_model_output_lines_up_cell_for_cell(copernicus):
    values, tif = copernicus
    raster = _utm31_raster(1.0, 51.8, (96, 128), 100.0)
    emb = raster.rsembed.embed("dofa", weights="random")  # lazy: only its grid is used, the model never runs
    out = raster.rsembed.embed("copernicus_embed", source=tif, like=emb)
    _assert_same_grid(out, emb)
    assert out.attrs["aligned_to"] == "like grid"
    check_output(out, grid=True)
    np.testing.assert_array_equal(out.values, _nearest(values, emb))


def test_like_a_grid_in_another_crs_than_the_input(copernicus):
    """The input is in UTM 31N, ``like`` in ETRS89-LAEA (EPSG:3035) and the product in EPSG:4326: it works,
    every cell takes the product vector under its centre."""
    values, tif = copernicus
    raster = _utm31_raster(1.0, 51.8, (32, 32), 100.0)
    x0, y0 = Transformer.from_crs("EPSG:4326", "EPSG:3035", always_xy=True).transform(0.6, 52.3)
    grid = Grid((13, 11), Affine(5000.0, 0.0, x0, 0.0, -5000.0, y0), CRS.from_epsg(3035))
    like = assign_grid(xr.DataArray(np.zeros(grid.shape, "float32"), dims=("y", "x")), grid)
    out = raster.rsembed.embed("copernicus_embed", source=tif, like=like)
    _assert_same_grid(out, like)
    expected = _nearest(values, like)
    assert np.isfinite(expected).any() and np.isnan(expected).any()  # valid cells and the product's no-data cells
    np.testing.assert_array_equal(out.values, expected)
    pooled = raster.rsembed.embed("copernicus_embed", source=tif, like=like, output="pooled")
    valid = np.isfinite(expected).all(axis=0)
    np.testing.assert_allclose(pooled.values, expected[:, valid].mean(axis=1), rtol=1e-5, atol=1e-6)


def test_like_a_dataset(copernicus):
    values, tif = copernicus
    raster = _utm31_raster(1.0, 51.8, (64, 64), 100.0)
    like = raster.isel(y=slice(8, 40, 2), x=slice(4, 60, 2)).to_dataset(dim="band")
    out = raster.rsembed.embed("copernicus_embed", source=tif, like=like)
    assert (out.sizes["y"], out.sizes["x"]) == (16, 28)
    np.testing.assert_array_equal(out.x.values, like.x.values)
    np.testing.assert_array_equal(out.values, _nearest(values, out))


def test_like_with_patch_size_or_not_a_grid_is_refused(copernicus):
    _, tif = copernicus
    raster = _utm31_raster(1.0, 51.8, (32, 32), 100.0)
    with pytest.raises(errors.OptionError, match="like= and patch_size="):
        raster.rsembed.embed("copernicus_embed", source=tif, like=raster, patch_size=16)
    with pytest.raises(errors.OptionError, match="like= must be an xarray"):
        raster.rsembed.embed("copernicus_embed", source=tif, like=np.zeros((4, 4)))
