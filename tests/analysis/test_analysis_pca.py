"""emb.rsembed.pca(): scikit-learn fitted on a bounded, seeded sample of valid cells, applied lazily chunk by chunk.

The fit is checked against numpy's SVD of the same sample, the output against the projection of every cell
computed here in numpy; chunk invariance across two chunkings and the eager path; NaN cells stay NaN; CRS and
coordinates survive; the sample reads a bounded number of chunks of a large lazy grid.
"""

from __future__ import annotations

import sys

import numpy as np
import pytest

import xrembed  # noqa: F401  (registers .rsembed)
from xrembed import errors
from xrembed.analysis import fit_pca, pca
from xrembed.analysis._deps import MissingDependencyError
from xrembed.analysis._sampling import sample_valid_cells

from analysis_raster_helpers import counting, make_grid

NAN_CELLS = [(0, 0), (3, 7), (10, 11), (23, 29)]


def _sign_align(reference: np.ndarray, other: np.ndarray) -> np.ndarray:
    """Flip rows of ``other`` (components) to the sign of ``reference``'s rows."""
    signs = np.sign(np.sum(reference * other, axis=1))
    return other * signs[:, None]


def test_pca_matches_numpy_svd_of_the_same_sample():
    emb = make_grid(nan_cells=NAN_CELLS)
    sample = sample_valid_cells(emb, size=10_000, seed=0, min_valid=4).values
    assert sample.shape == (24 * 30 - len(NAN_CELLS), 8)  # small grid: every valid cell, no NaN ones
    centred = sample - sample.mean(axis=0)
    _, singular, vt = np.linalg.svd(centred, full_matrices=False)
    fitted = fit_pca(emb, 3, seed=0)
    components = _sign_align(fitted.components, vt[:3])
    np.testing.assert_allclose(fitted.components, components, atol=1e-8)
    variance = singular**2
    np.testing.assert_allclose(fitted.explained_variance_ratio, variance[:3] / variance.sum(), rtol=1e-8)

    out = emb.rsembed.pca(n_components=3).values
    cells = emb.transpose("y", "x", "embedding").values.astype(np.float64)
    expected = np.einsum("yxd,kd->kyx", cells - sample.mean(axis=0), components)
    valid = np.isfinite(expected)
    np.testing.assert_allclose(out[valid], expected[valid], rtol=1e-5, atol=1e-5)


def test_pca_is_lazy_keeps_the_grid_and_nan_cells():
    emb = make_grid(nan_cells=NAN_CELLS, chunks={"y": 7, "x": 11})
    out = emb.rsembed.pca(n_components=2)
    assert out.chunks is not None  # lazy
    assert out.dims == ("component", "y", "x") and out.sizes["component"] == 2
    assert out.rio.crs == emb.rio.crs
    assert out.rio.transform() == emb.rio.transform()
    np.testing.assert_array_equal(out.x.values, emb.x.values)
    np.testing.assert_array_equal(out.y.values, emb.y.values)
    assert np.isnan(float(out.rio.nodata))
    values = out.values
    for row, col in NAN_CELLS:
        assert np.isnan(values[:, row, col]).all()
    assert np.isnan(values).sum() == 2 * len(NAN_CELLS)  # no other cell became NaN, none of them a number


def test_pca_is_chunk_invariant():
    eager = make_grid(nan_cells=NAN_CELLS, shape=(40, 36))
    results = [
        eager.rsembed.pca(n_components=3).values,
        eager.chunk({"y": 7, "x": 11}).rsembed.pca(n_components=3).values,
        eager.chunk({"y": 40, "x": 5, "embedding": 3}).rsembed.pca(n_components=3).values,
    ]
    for other in results[1:]:
        np.testing.assert_allclose(other, results[0], atol=1e-5, equal_nan=True)


def test_the_sample_is_seeded_and_only_valid_cells():
    emb = make_grid(shape=(200, 150), nan_cells=[(r, c) for r in range(0, 200, 3) for c in range(150)])
    a = sample_valid_cells(emb, size=500, seed=1).values
    b = sample_valid_cells(emb, size=500, seed=1).values
    c = sample_valid_cells(emb, size=500, seed=2).values
    assert a.shape == (500, 8) and np.isfinite(a).all()
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)


def test_the_fit_reads_a_bounded_number_of_chunks_of_a_large_lazy_grid():
    emb = make_grid(shape=(600, 600), dim=4, chunks={"y": 50, "x": 50})  # 144 chunks
    watched, seen = counting(emb)
    fitted = fit_pca(watched, 2, sample_size=1000, seed=0)
    assert fitted.sample_scores.shape == (1000, 2)
    chunks_read = len(set(seen))
    assert 0 < chunks_read <= 16 * 4  # at most 4 chunks under each of the 16 first-round windows
    assert chunks_read < 144 / 2


def test_a_mostly_nan_grid_is_searched_until_valid_cells_are_found():
    nan = [(r, c) for r in range(60) for c in range(60) if (r, c) != (59, 58) and (r, c) != (2, 3)]
    emb = make_grid(shape=(60, 60), nan_cells=nan)
    sample = sample_valid_cells(emb, size=1000, seed=0, windows=4, min_valid=2)
    assert sample.values.shape[0] == 2


def test_errors_all_nan_and_too_many_components():
    emb = make_grid(shape=(6, 5))
    with pytest.raises(errors.OptionError, match="between 1 and the embedding size"):
        emb.rsembed.pca(n_components=9)
    all_nan = emb.where(False)
    with pytest.raises(errors.NoDataInBoundsError, match="every cell .* is NaN"):
        all_nan.rsembed.pca()
    pooled = emb.isel(y=0, x=0, drop=True)
    with pytest.raises(errors.OptionError, match="output='grid'"):
        pooled.rsembed.pca()


def test_without_scikit_learn_the_error_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "sklearn.decomposition", None)  # import raises ImportError
    with pytest.raises(MissingDependencyError, match=r'pip install "xrembed\[analysis\]"') as info:
        make_grid(shape=(6, 5)).rsembed.pca()
    assert isinstance(info.value, errors.XrembedError)
