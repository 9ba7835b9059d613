"""k-means clusters of an embedding grid: fitted (scikit-learn) on a bounded, seeded sample of valid cells,
predicted lazily chunk by chunk."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import xarray as xr

from ..errors import OptionError
from ._deps import require
from ._grid import EMBEDDING_DIM, embedding_grid, finish, map_cells, valid_cells
from ._sampling import sample_valid_cells
from .pca import DEFAULT_SAMPLE_SIZE

__all__ = ["FittedKMeans", "fit_kmeans", "kmeans"]


def _unit(values: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(values, axis=-1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(norms > 0, values / norms, 0.0)


def _predict(block: np.ndarray, model, normalise: bool) -> np.ndarray:
    """``(..., D)`` -> ``(...)``: the cluster of each valid cell (as float32), NaN where the cell has no data."""
    out = np.full(block.shape[:-1], np.nan, dtype=np.float32)
    valid = valid_cells(block)
    if valid.any():
        rows = block[valid].astype(np.float64)
        out[valid] = model.predict(_unit(rows) if normalise else rows).astype(np.float32)
    return out


@dataclass(frozen=True)
class FittedKMeans:
    """A scikit-learn ``KMeans`` fitted on a sample of an embedding grid; :meth:`predict` labels any grid."""

    model: object
    normalise: bool
    sample_size: int
    seed: int

    @property
    def k(self) -> int:
        return int(self.model.n_clusters)

    @property
    def centroids(self) -> np.ndarray:
        return np.asarray(self.model.cluster_centers_)

    def predict(self, emb: xr.DataArray) -> xr.DataArray:
        """Lazy ``(y, x)`` cluster labels ``0..k-1`` of ``emb`` (float32, NaN where a cell has no data)."""
        emb = embedding_grid(emb, "kmeans predict")
        if emb.sizes[EMBEDDING_DIM] != self.centroids.shape[1]:
            raise OptionError(
                f"these clusters were fitted on {self.centroids.shape[1]}-dimensional embeddings, but the grid has "
                f"{emb.sizes[EMBEDDING_DIM]}; fit on the same model's output."
            )
        out = map_cells(_predict, emb, kwargs={"model": self.model, "normalise": self.normalise})
        attrs = {
            "analysis": "kmeans",
            "k": self.k,
            "normalise": self.normalise,
            "sample_size": self.sample_size,
            "seed": self.seed,
            "inertia": float(self.model.inertia_),
        }
        return finish(out, emb, "cluster", attrs)


def fit_kmeans(
    emb: xr.DataArray,
    k: int,
    *,
    normalise: bool = True,
    sample_size: int = DEFAULT_SAMPLE_SIZE,
    seed: int = 0,
    n_init: int = 4,
) -> FittedKMeans:
    """Fit scikit-learn's ``KMeans`` with ``k`` clusters on a bounded, seeded sample of valid cells.

    Parameters
    ----------
    emb
        An embedding grid ``(..., embedding, y, x)``.
    k
        Number of clusters.
    normalise
        Cluster unit vectors (directions, as cosine similarity compares them; default) instead of raw vectors.
    sample_size, seed
        The sample the fit sees, and its seed (also ``KMeans``'s ``random_state``).
    n_init
        ``KMeans`` restarts.

    Raises
    ------
    OptionError
        ``k < 1``, or fewer valid cells than ``k`` in the whole grid.
    xrembed.errors.NoDataInBoundsError
        Every cell is NaN.

    Examples
    --------
    >>> fitted = fit_kmeans(emb, 5)          # doctest: +SKIP
    >>> fitted.predict(emb_other_year)       # doctest: +SKIP
    """
    emb = embedding_grid(emb, "kmeans()")
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
        raise OptionError(f"k={k!r} must be a whole number of clusters, at least 1.")
    cluster = require("sklearn.cluster", "emb.rsembed.kmeans()")
    sample = sample_valid_cells(emb, size=sample_size, seed=seed, min_valid=int(k), what="kmeans()")
    count = sample.values.shape[0]
    if count < k:
        raise OptionError(
            f"kmeans() found only {count} valid (non-NaN) cells in the whole grid, fewer than k={k} clusters; "
            "lower k or use a grid with more valid cells."
        )
    values = _unit(sample.values) if normalise else sample.values
    model = cluster.KMeans(n_clusters=int(k), random_state=seed, n_init=n_init).fit(values)
    return FittedKMeans(model=model, normalise=bool(normalise), sample_size=int(count), seed=int(seed))


def kmeans(
    emb: xr.DataArray,
    k: int,
    *,
    normalise: bool = True,
    sample_size: int = DEFAULT_SAMPLE_SIZE,
    seed: int = 0,
    n_init: int = 4,
) -> xr.DataArray:
    """Lazy k-means label map ``(y, x)``: fitted on a seeded sample of valid cells, predicted chunk by chunk.

    Labels are ``0..k-1`` stored as float32 so cells with no data stay NaN (``labels.fillna(-1).astype("int16")``
    gives integers with -1 for no data). The result does not depend on the chunking; CRS and coordinates are kept.

    Parameters
    ----------
    emb
        An embedding grid ``(..., embedding, y, x)``.
    k
        Number of clusters.
    normalise, sample_size, seed, n_init
        See :func:`fit_kmeans`.

    Returns
    -------
    xarray.DataArray
        ``(y, x)`` float32 named ``cluster``.

    Examples
    --------
    >>> labels = emb.rsembed.kmeans(5)       # doctest: +SKIP
    """
    fitted = fit_kmeans(emb, k, normalise=normalise, sample_size=sample_size, seed=seed, n_init=n_init)
    return fitted.predict(emb)
