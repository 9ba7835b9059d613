"""Points drawn from a label raster by ``xrembed.compare``: read window by window (bounded memory), the same
points whatever the windows or chunks, every valid cell when unsampled, and a uniform draw when sampled."""

from __future__ import annotations

import numpy as np
import pytest
import xarray as xr

pytest.importorskip("sklearn")

from xrembed.analysis import compare as compare_module  # noqa: E402
from xrembed.geo import Grid  # noqa: E402

NODATA = 0


def label_raster(height=37, width=45, seed=3) -> xr.DataArray:
    """Classes 1..4 (class 4 rare) and nodata 0, on a 10 m UTM grid."""
    rng = np.random.default_rng(seed)
    values = rng.choice([0, 1, 2, 3, 4], size=(height, width), p=[0.1, 0.4, 0.3, 0.17, 0.03]).astype(np.uint8)
    y = 5_000_000 - 10 * (np.arange(height) + 0.5)
    x = 600_000 + 10 * (np.arange(width) + 0.5)
    da = xr.DataArray(values, dims=("y", "x"), coords={"y": y, "x": x}).rio.write_crs("EPSG:32633")
    return da.rio.write_nodata(NODATA)


def draw(labels, grid=None, classes=None, points_per_class=None, seed=0):
    grid = grid or Grid.from_xarray(labels)
    x, y, label, shapes = compare_module._labelled_points(labels, grid, None, classes, points_per_class, seed)
    assert shapes is None
    return x, y, label


def brute_force_cells(labels, classes=None):
    """Every valid cell ``(x, y, label)`` in raster order, from the whole array at once."""
    values = labels.values
    ok = values != NODATA
    if classes is not None:
        ok &= np.isin(values, list(classes))
    rows, cols = np.nonzero(ok)
    names = values[rows, cols] if classes is None else np.array([classes[v] for v in values[rows, cols]], dtype=object)
    return labels.x.values[cols], labels.y.values[rows], names


def test_unsampled_gives_every_valid_cell_in_raster_order(monkeypatch):
    labels = label_raster()
    monkeypatch.setattr(compare_module, "LABEL_WINDOW", 8)  # many windows, some partial
    x, y, label = draw(labels)
    bx, by, blabel = brute_force_cells(labels)
    np.testing.assert_allclose(x, bx)
    np.testing.assert_allclose(y, by)
    np.testing.assert_array_equal(label, blabel)


@pytest.mark.parametrize("window", [5, 16, 4096])
def test_sample_does_not_depend_on_windows_or_chunks(monkeypatch, window):
    labels = label_raster()
    reference = draw(labels, points_per_class=25, seed=7)
    monkeypatch.setattr(compare_module, "LABEL_WINDOW", window)
    for obj in (labels, labels.chunk({"y": 11, "x": 13})):
        got = draw(obj, points_per_class=25, seed=7)
        for a, b in zip(got, reference):
            np.testing.assert_array_equal(a, b)


def test_sample_is_per_class_name_and_within_the_valid_cells():
    labels = label_raster()
    classes = {1: "common", 2: "common", 4: "rare"}  # two values share a name: the cap is per name
    x, y, label = draw(labels, classes=classes, points_per_class=30, seed=1)
    bx, by, blabel = brute_force_cells(labels, classes)
    assert (label == "common").sum() == 30
    assert (label == "rare").sum() == min(30, (blabel == "rare").sum())
    valid = set(zip(bx.round(3), by.round(3), blabel))
    assert set(zip(x.round(3), y.round(3), label)) <= valid
    other = draw(labels, classes=classes, points_per_class=30, seed=2)
    assert not np.array_equal(other[0], x), "another seed draws other cells"


def test_sample_is_uniform_over_seeds():
    labels = label_raster(height=12, width=10)
    k = 5
    cells = brute_force_cells(labels)
    class1 = {(a, b) for a, b, c in zip(*cells) if c == 1}
    counts = dict.fromkeys(class1, 0)
    draws = 400
    for seed in range(draws):
        x, y, label = draw(labels, points_per_class=k, seed=seed)
        for a, b in zip(x[label == 1], y[label == 1]):
            counts[(a, b)] += 1
    expected = draws * k / len(class1)
    freq = np.array(list(counts.values()))
    # Binomial(draws, k/n) per cell: a biased draw (e.g. always the first cells) is far outside 5 sd.
    sd = np.sqrt(draws * (k / len(class1)) * (1 - k / len(class1)))
    assert np.all(np.abs(freq - expected) < 5 * sd), (freq.min(), freq.max(), expected)


def test_cells_off_the_embedding_grid_are_left_out():
    labels = label_raster()
    grid = Grid.from_xarray(labels.isel(y=slice(0, 20), x=slice(0, 25)))
    x, y, label = draw(labels, grid=grid)
    bx, by, _ = brute_force_cells(labels.isel(y=slice(0, 20), x=slice(0, 25)))
    assert len(x) == len(bx) and set(zip(x, y)) == set(zip(bx, by))
