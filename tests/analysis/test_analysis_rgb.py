"""emb.rsembed.to_rgb(): (band=[r, g, b], y, x) uint8, robust stretch, nodata 0 kept, a georeferenced GeoTIFF.

Expected levels are computed here from the stretch formula (1 + round(254 * clip((v - low) / (high - low)))),
the percentiles from numpy over the same sample; the GeoTIFF is read back with rioxarray.
"""

from __future__ import annotations

import numpy as np
import pytest
import rioxarray

import xrembed  # noqa: F401
from xrembed import errors
from xrembed.analysis import fit_pca, to_rgb

from analysis_raster_helpers import make_grid

NAN_CELLS = [(0, 0), (5, 9), (23, 29)]


def _levels(values: np.ndarray, low: np.ndarray, high: np.ndarray) -> np.ndarray:
    unit = np.clip((values - low[:, None, None]) / (high - low)[:, None, None], 0, 1)
    return np.nan_to_num(1 + np.round(unit * 254)).astype(np.uint8)  # NaN cells are set by the caller


def test_fixed_range_on_chosen_bands_follows_the_formula():
    emb = make_grid(nan_cells=NAN_CELLS)
    rgb = emb.rsembed.to_rgb(bands=[2, 0, 5], value_range=(-1.0, 2.0)).values
    src = emb.isel(embedding=[2, 0, 5]).values.astype(np.float64)
    expected = _levels(src, np.full(3, -1.0), np.full(3, 2.0))
    for row, col in NAN_CELLS:
        expected[:, row, col] = 0
    np.testing.assert_array_equal(rgb, expected)


def test_pca_stretch_uses_the_samples_percentiles():
    emb = make_grid(nan_cells=NAN_CELLS)
    rgb = emb.rsembed.to_rgb(percentiles=(5, 95))
    fitted = fit_pca(emb, 3)
    low, high = np.percentile(fitted.sample_scores, [5, 95], axis=0)
    np.testing.assert_allclose(rgb.attrs["stretch_low"], low)
    np.testing.assert_allclose(rgb.attrs["stretch_high"], high)
    expected = _levels(fitted.transform(emb).values.astype(np.float64), low, high)
    valid = np.ones(emb.shape[1:], bool)
    for row, col in NAN_CELLS:
        valid[row, col] = False
    np.testing.assert_array_equal(rgb.values[:, valid], expected[:, valid])
    # about 5 % of the valid cells are saturated at each end of each channel
    for channel in rgb.values[:, valid]:
        assert 0.02 < np.mean(channel == 1) < 0.08 and 0.02 < np.mean(channel == 255) < 0.08


def test_layout_nodata_and_laziness():
    emb = make_grid(nan_cells=NAN_CELLS, chunks={"y": 7, "x": 11})
    rgb = emb.rsembed.to_rgb()
    assert rgb.chunks is not None
    assert rgb.dims == ("band", "y", "x") and list(rgb.band.values) == ["r", "g", "b"]
    assert rgb.dtype == np.uint8 and rgb.rio.nodata == 0
    assert rgb.rio.crs == emb.rio.crs and rgb.rio.transform() == emb.rio.transform()
    values = rgb.values
    nodata = (values == 0).all(axis=0)
    assert sorted(zip(*np.nonzero(nodata))) == NAN_CELLS
    assert (values[:, ~nodata] >= 1).all()  # a valid cell never takes the nodata value


def test_chunk_invariant():
    emb = make_grid(nan_cells=NAN_CELLS, shape=(30, 33))
    a = emb.rsembed.to_rgb().values
    b = emb.chunk({"y": 4, "x": 13}).rsembed.to_rgb().values
    np.testing.assert_array_equal(a, b)


def test_geotiff_round_trip_is_georeferenced(tmp_path):
    emb = make_grid(nan_cells=NAN_CELLS, chunks={"y": 10, "x": 10})
    rgb = emb.rsembed.to_rgb()
    path = tmp_path / "pca.tif"
    rgb.rio.to_raster(path)
    back = rioxarray.open_rasterio(path)
    assert back.rio.crs == emb.rio.crs
    assert back.rio.transform() == emb.rio.transform()
    assert back.rio.nodata == 0 and back.dtype == np.uint8 and back.sizes["band"] == 3
    np.testing.assert_array_equal(back.values, rgb.values)
    masked = rioxarray.open_rasterio(path, masked=True)
    assert np.isnan(masked.values[:, 5, 9]).all() and np.isfinite(masked.values[:, 6, 9]).all()


def test_a_pca_output_is_stretched_directly():
    emb = make_grid(nan_cells=NAN_CELLS)
    components = emb.rsembed.pca(3)
    np.testing.assert_array_equal(to_rgb(components).values, emb.rsembed.to_rgb().values)


def test_bad_options():
    emb = make_grid(shape=(5, 5))
    with pytest.raises(errors.OptionError, match="three embedding indices"):
        emb.rsembed.to_rgb(bands=[0, 1])
    with pytest.raises(errors.OptionError, match="low < high"):
        emb.rsembed.to_rgb(value_range=(1, 1))
    with pytest.raises(errors.OptionError, match="0 <= low < high <= 100"):
        emb.rsembed.to_rgb(percentiles=(50, 10))
    with pytest.raises(errors.OptionError, match="needs 3 components"):
        to_rgb(emb.rsembed.pca(2))
