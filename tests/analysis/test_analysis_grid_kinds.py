"""The raster analyses on every kind of embedding grid: an extra time dimension survives, an xee-style grid (CRS
only in ``attrs["crs"]``) gives outputs rioxarray reads the CRS of, and a Dataset holding ``embeddings`` works."""

from __future__ import annotations

import numpy as np
import pytest
import xarray as xr

import xrembed
from xrembed import errors

from analysis_raster_helpers import make_grid


def _two_years():
    years = xr.DataArray(np.array(["2021-01-01", "2024-01-01"], dtype="datetime64[ns]"), dims="time")
    return xr.concat([make_grid(seed=0), make_grid(seed=1)], dim=years).chunk({"time": 1, "y": 10})


def test_an_extra_time_dimension_survives():
    emb = _two_years()
    assert emb.rsembed.pca(3).dims == ("time", "component", "y", "x")
    assert emb.rsembed.to_rgb().dims == ("time", "band", "y", "x")
    assert emb.rsembed.kmeans(3).dims == ("time", "y", "x")
    vector = emb.isel(time=1, y=3, x=4).values
    sim = emb.rsembed.similarity(vector)
    assert sim.dims == ("time", "y", "x") and float(sim.isel(time=1, y=3, x=4)) == pytest.approx(1.0, abs=1e-6)
    # each year is projected with the same fitted axes: the per-year slices equal a transform of that year alone
    fitted = xrembed.analysis.fit_pca(emb, 2)
    np.testing.assert_allclose(fitted.transform(emb).isel(time=0).values, fitted.transform(emb.isel(time=0)).values)
    delta = xrembed.change(emb.isel(time=0), emb.isel(time=1))
    assert delta.dims == ("y", "x") and "time" not in delta.coords  # a difference belongs to neither year
    with pytest.raises(errors.OptionError, match=r"emb.isel\(time=0\)"):
        emb.rsembed.similarity((-9.0, 37.9))


def test_an_xee_style_grid_keeps_its_crs():
    emb = make_grid().drop_vars("spatial_ref")
    emb.attrs["crs"] = "EPSG:32629"
    outputs = [emb.rsembed.pca(2), emb.rsembed.to_rgb(), emb.rsembed.kmeans(2),
               emb.rsembed.similarity(np.ones(8)), xrembed.change(emb, emb)]
    for out in outputs:
        assert out.rio.crs == "EPSG:32629", out.name
        assert out.rio.transform() == make_grid().rio.transform()


def test_a_dataset_with_embeddings_and_refusals():
    emb = make_grid()
    np.testing.assert_array_equal(emb.to_dataset().rsembed.to_rgb().values, emb.rsembed.to_rgb().values)
    two = xr.Dataset({"a": emb, "b": emb})
    with pytest.raises(errors.OptionError, match=r"ds\['a'\]"):
        two.rsembed.pca()
    bands = emb.rename(embedding="band")
    with pytest.raises(errors.OptionError, match="Embed it first"):
        bands.rsembed.kmeans(2)
    with pytest.raises(errors.MissingCRSError, match="write_crs"):
        emb.drop_vars("spatial_ref").rsembed.pca()
