"""xrembed.change(a, b): lazy 1 - cosine per cell; misaligned grids are refused naming the fix."""

from __future__ import annotations

import numpy as np
import pytest

import xrembed
from xrembed import errors

from analysis_raster_helpers import ORIGIN, make_grid, unit


def test_one_minus_cosine_per_cell_lazy_and_nan():
    a = make_grid(seed=0, nan_cells=[(2, 2)], chunks={"y": 5, "x": 8})
    b = make_grid(seed=1, nan_cells=[(9, 4)], chunks={"y": 12, "x": 3})  # other chunks than a
    out = xrembed.change(a, b)
    assert out.chunks is not None and out.dims == ("y", "x") and out.name == "change"
    assert out.rio.crs == a.rio.crs and out.rio.transform() == a.rio.transform()
    cells_a = a.transpose("y", "x", "embedding").values
    cells_b = b.transpose("y", "x", "embedding").values
    expected = 1 - np.einsum("yxd,yxd->yx", unit(cells_a), unit(cells_b))
    values = out.values
    np.testing.assert_allclose(values, expected, atol=1e-5, equal_nan=True)
    assert sorted(zip(*np.nonzero(np.isnan(values)))) == [(2, 2), (9, 4)]
    assert np.nanmax(np.abs(xrembed.change(a, a).values)) < 1e-6
    np.testing.assert_allclose(xrembed.change(a.compute(), b.compute()).values, values, atol=1e-6, equal_nan=True)


def test_opposite_vectors_change_by_two():
    a = make_grid(seed=0)
    np.testing.assert_allclose(xrembed.change(a, -a).values, 2.0, atol=1e-5)


def test_misaligned_grids_are_refused_naming_the_fix():
    a = make_grid()
    with pytest.raises(errors.CRSError, match=r"one CRS.*like=a.*reproject_match"):
        xrembed.change(a, make_grid(crs="EPSG:32630"))
    with pytest.raises(errors.SpatialDimensionError, match=r"one shape.*reproject_match"):
        xrembed.change(a, make_grid(shape=(24, 31)))
    with pytest.raises(errors.SpatialDimensionError, match=r"one transform.*reproject_match"):
        xrembed.change(a, make_grid(origin=(ORIGIN[0] + 80.0, ORIGIN[1])))
    with pytest.raises(errors.SpatialDimensionError, match="one transform"):
        xrembed.change(a, make_grid(resolution=100.0))
    with pytest.raises(errors.OptionError, match="same model"):
        xrembed.change(a, make_grid(dim=6))
