"""emb.rsembed.kmeans(k): scikit-learn KMeans fitted on a seeded sample, predicted lazily per chunk, NaN kept."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import adjusted_rand_score

import xrembed  # noqa: F401
from xrembed import errors
from xrembed.analysis import fit_kmeans

from analysis_raster_helpers import make_grid, unit

NAN_CELLS = [(0, 3), (7, 7), (11, 0)]


def _blocks(shape=(12, 16), dim=6, seed=0):
    """Four quadrants, each a tight cloud around its own direction: the true clusters are known."""
    rng = np.random.default_rng(seed)
    height, width = shape
    centres = rng.normal(size=(4, dim)) * 5
    truth = (np.arange(height)[:, None] >= height // 2) * 2 + (np.arange(width)[None, :] >= width // 2)
    values = centres[truth].transpose(2, 0, 1) + rng.normal(0, 0.05, size=(dim, height, width))
    return values, truth


def test_recovers_separable_clusters_and_keeps_nan():
    values, truth = _blocks()
    emb = make_grid(shape=truth.shape, dim=values.shape[0], values=values, nan_cells=NAN_CELLS, chunks={"y": 5, "x": 7})
    labels = emb.rsembed.kmeans(4)
    assert labels.chunks is not None and labels.dims == ("y", "x")
    assert labels.rio.crs == emb.rio.crs and labels.rio.transform() == emb.rio.transform()
    out = labels.values
    nan = np.isnan(out)
    assert sorted(zip(*np.nonzero(nan))) == NAN_CELLS
    assert set(np.unique(out[~nan])) == {0.0, 1.0, 2.0, 3.0}
    assert adjusted_rand_score(truth[~nan], out[~nan]) == 1.0


def test_labels_are_sklearn_predictions_and_chunk_invariant():
    emb = make_grid(shape=(30, 26), nan_cells=NAN_CELLS)
    fitted = fit_kmeans(emb, 5, seed=1)
    cells = emb.transpose("y", "x", "embedding").values.reshape(-1, 8).astype(np.float64)
    valid = np.isfinite(cells).all(axis=1)
    expected = np.full(cells.shape[0], np.nan)
    expected[valid] = fitted.model.predict(unit(cells[valid]))
    eager = fitted.predict(emb).values
    np.testing.assert_array_equal(eager.ravel(), expected)
    for chunks in ({"y": 4, "x": 26}, {"y": 30, "x": 3, "embedding": 2}):
        np.testing.assert_array_equal(emb.chunk(chunks).rsembed.kmeans(5, seed=1).values, eager)


def test_raw_vectors_when_not_normalised():
    emb = make_grid(shape=(10, 10))
    fitted = fit_kmeans(emb, 3, normalise=False)
    cells = emb.transpose("y", "x", "embedding").values.reshape(-1, 8).astype(np.float64)
    np.testing.assert_array_equal(fitted.predict(emb).values.ravel(), fitted.model.predict(cells))


def test_too_few_valid_cells_and_bad_k():
    nan = [(r, c) for r in range(6) for c in range(6) if (r, c) not in ((0, 0), (5, 5))]
    emb = make_grid(shape=(6, 6), nan_cells=nan)
    with pytest.raises(errors.OptionError, match="only 2 valid .* fewer than k=3"):
        emb.rsembed.kmeans(3)
    with pytest.raises(errors.OptionError, match="at least 1"):
        emb.rsembed.kmeans(0)
    with pytest.raises(errors.NoDataInBoundsError, match="NaN"):
        emb.where(False).rsembed.kmeans(2)
