"""Aligning a precomputed product onto an input raster's grid: lazy nearest-neighbour, CRS-correct."""

import dask.array as dsa
import numpy as np
import pytest
import xarray as xr
from affine import Affine
from pyproj import CRS

import xrembed
from xrembed import errors
from xrembed.geo import Grid
from xrembed.sources.precomputed import align_to_grid
from xrembed.testing import synthetic_raster


def _product(shape=(60, 80), res=10.0, origin=(500000.0, 4200000.0), dim=4):
    """A product whose vector at cell (i, j) is (i, j, i + j, 1): any resampling error shows."""
    i, j = np.meshgrid(np.arange(shape[0]), np.arange(shape[1]), indexing="ij")
    values = np.stack([i, j, i + j, np.ones_like(i)][:dim]).astype("f4")
    da = xr.DataArray(
        dsa.from_array(values, chunks=(dim, 32, 32)), dims=("embedding", "y", "x"),
        coords={"y": origin[1] - res * (np.arange(shape[0]) + 0.5), "x": origin[0] + res * (np.arange(shape[1]) + 0.5)},
        name="embeddings", attrs={"product": "fake"},
    )
    return da.rio.write_crs("EPSG:32629").rio.write_transform(Affine(res, 0, origin[0], 0, -res, origin[1]))


def test_nearest_alignment_takes_the_vector_at_each_cell_centre():
    product = _product()
    grid = Grid((12, 15), Affine(40, 0, 500005, 0, -40, 4199995), CRS.from_epsg(32629))
    out = align_to_grid(product, grid)
    assert isinstance(out.data, dsa.Array)  # still lazy
    assert out.rio.transform() == grid.transform and out.rio.crs.to_epsg() == 32629
    values = out.values
    centres_x = grid.transform.c + 40 * (np.arange(15) + 0.5)
    centres_y = grid.transform.f - 40 * (np.arange(12) + 0.5)
    rows = np.floor((4200000 - centres_y) / 10).astype(int)
    cols = np.floor((centres_x - 500000) / 10).astype(int)
    np.testing.assert_array_equal(values[0], np.broadcast_to(rows[:, None], (12, 15)))
    np.testing.assert_array_equal(values[1], np.broadcast_to(cols[None, :], (12, 15)))


def test_cells_outside_the_product_are_nan():
    product = _product(shape=(20, 20))
    grid = Grid((10, 10), Affine(40, 0, 500000, 0, -40, 4200000), CRS.from_epsg(32629))
    values = align_to_grid(product, grid).values
    assert np.isfinite(values[:, :5, :5]).all() and np.isnan(values[:, 5:, :]).all()


def test_products_are_listed_and_options_are_product_only():
    assert xrembed.list_products() == ["copernicus_embed", "gse", "tessera"]
    with pytest.raises(errors.OptionError, match="precomputed products"):
        synthetic_raster((32, 32)).rsembed.embed("dofa-tiny", weights="random", temporal=xrembed.TemporalSpec.year(2024))
    with pytest.raises(errors.UnknownModelError, match="available"):
        xrembed.open_precomputed("clay_embeddings")


def test_alignment_keeps_the_product_years():
    product = _product()
    yearly = xr.concat([product, product + 100], dim="time").assign_coords(
        time=np.array(["2023-01-01", "2024-01-01"], dtype="datetime64[ns]")
    )
    grid = Grid((12, 15), Affine(40, 0, 500005, 0, -40, 4199995), CRS.from_epsg(32629))
    out = align_to_grid(yearly, grid)
    assert out.dims == ("time", "embedding", "y", "x")
    np.testing.assert_array_equal(out.time.values, yearly.time.values)
    values = out.values
    np.testing.assert_array_equal(values[1], values[0] + 100)
    np.testing.assert_array_equal(values[0], align_to_grid(product, grid).values)
