"""Principal components of an embedding grid: fitted (scikit-learn) on a bounded, seeded sample of valid cells,
applied lazily chunk by chunk."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import xarray as xr

from ..errors import OptionError
from ._deps import require
from ._grid import EMBEDDING_DIM, embedding_grid, finish, map_cells, valid_cells
from ._sampling import sample_valid_cells

__all__ = ["FittedPCA", "fit_pca", "pca"]

#: Cells the fit sees by default (a seeded sample of valid cells, see ``_sampling``).
DEFAULT_SAMPLE_SIZE = 10_000


def _project(block: np.ndarray, mean: np.ndarray, components: np.ndarray) -> np.ndarray:
    """``(..., D)`` -> ``(..., n)``: the fitted projection of each valid cell; NaN where a cell is not valid."""
    out = np.full(block.shape[:-1] + (components.shape[0],), np.nan, dtype=np.float32)
    valid = valid_cells(block)
    if valid.any():
        out[valid] = ((block[valid].astype(np.float64) - mean) @ components.T).astype(np.float32)
    return out


@dataclass(frozen=True)
class FittedPCA:
    """A PCA fitted on a sample of an embedding grid; :meth:`transform` applies it to any grid of the same D.

    Attributes
    ----------
    mean, components
        The sample mean ``(D,)`` and the principal axes ``(n_components, D)`` (scikit-learn's ``mean_`` and
        ``components_``, whose sign convention makes them deterministic).
    explained_variance_ratio
        Share of the sample's variance along each component.
    sample_scores
        The sample's own projections ``(n, n_components)`` (used for :func:`~xrembed.analysis.to_rgb`'s stretch).
    """

    mean: np.ndarray
    components: np.ndarray
    explained_variance_ratio: np.ndarray
    sample_scores: np.ndarray = field(repr=False)
    seed: int = 0

    @property
    def n_components(self) -> int:
        return int(self.components.shape[0])

    def project(self, values: np.ndarray) -> np.ndarray:
        """Project cells ``(..., D)`` (NaN rows stay NaN)."""
        return _project(np.asarray(values), self.mean, self.components)

    def transform(self, emb: xr.DataArray) -> xr.DataArray:
        """Lazy ``(component, y, x)`` projection of ``emb``, chunk by chunk; NaN cells stay NaN.

        Examples
        --------
        >>> fitted = fit_pca(emb, 3)                       # doctest: +SKIP
        >>> fitted.transform(emb_other_year)               # doctest: +SKIP
        """
        emb = embedding_grid(emb, "PCA transform")
        if emb.sizes[EMBEDDING_DIM] != self.components.shape[1]:
            raise OptionError(
                f"this PCA was fitted on {self.components.shape[1]}-dimensional embeddings, but the grid has "
                f"{emb.sizes[EMBEDDING_DIM]}; fit it on the same model's output (`fit_pca(emb)`)."
            )
        out = map_cells(
            _project, emb, kwargs={"mean": self.mean, "components": self.components},
            new_dim="component", new_size=self.n_components,
        )
        out = out.assign_coords(component=np.arange(self.n_components))
        attrs = {
            "analysis": "pca",
            "explained_variance_ratio": [float(v) for v in self.explained_variance_ratio],
            "sample_size": int(self.sample_scores.shape[0]),
            "seed": int(self.seed),
        }
        return finish(out, emb, "pca", attrs)


def fit_pca(
    emb: xr.DataArray,
    n_components: int = 3,
    *,
    sample_size: int = DEFAULT_SAMPLE_SIZE,
    seed: int = 0,
) -> FittedPCA:
    """Fit a PCA (scikit-learn) on a bounded, seeded sample of ``emb``'s valid cells; reads only that sample.

    Parameters
    ----------
    emb
        An embedding grid ``(..., embedding, y, x)`` (a model's output or a precomputed product).
    n_components
        Number of components (at most the embedding size).
    sample_size
        Most cells the fit sees.
    seed
        Seeds the sample (and so the fit): the same seed gives the same components for any chunking.

    Raises
    ------
    OptionError
        ``n_components`` larger than the embedding size or than the valid cells found.
    xrembed.errors.NoDataInBoundsError
        Every cell is NaN.

    Examples
    --------
    >>> fitted = fit_pca(emb, 3)                  # doctest: +SKIP
    >>> fitted.explained_variance_ratio           # doctest: +SKIP
    array([0.41, 0.17, 0.08])
    """
    emb = embedding_grid(emb, "pca()")
    dim = emb.sizes[EMBEDDING_DIM]
    if not 1 <= int(n_components) <= dim:
        raise OptionError(f"n_components={n_components!r} must be between 1 and the embedding size ({dim}).")
    decomposition = require("sklearn.decomposition", "emb.rsembed.pca()")
    sample = sample_valid_cells(emb, size=sample_size, seed=seed, min_valid=int(n_components) + 1, what="pca()")
    if sample.values.shape[0] <= n_components:
        raise OptionError(
            f"pca() found only {sample.values.shape[0]} valid (non-NaN) cells, too few for {n_components} components; "
            "lower n_components or use a grid with more valid cells."
        )
    model = decomposition.PCA(n_components=int(n_components), svd_solver="full", random_state=seed).fit(sample.values)
    mean = model.mean_.astype(np.float64)
    components = model.components_.astype(np.float64)
    return FittedPCA(
        mean=mean,
        components=components,
        explained_variance_ratio=model.explained_variance_ratio_.astype(np.float64),
        sample_scores=_project(sample.values, mean, components),
        seed=int(seed),
    )


def pca(
    emb: xr.DataArray,
    n_components: int = 3,
    *,
    sample_size: int = DEFAULT_SAMPLE_SIZE,
    seed: int = 0,
) -> xr.DataArray:
    """Lazy principal components ``(component, y, x)`` of an embedding grid.

    Fitted with scikit-learn on at most ``sample_size`` valid cells drawn reproducibly (``seed``) from a few
    windows of the grid (only the chunks under them are read), then applied chunk by chunk; the result does not
    depend on the chunking. CRS and coordinates are kept; NaN cells stay NaN.

    Parameters
    ----------
    emb
        An embedding grid ``(..., embedding, y, x)``.
    n_components
        Number of components.
    sample_size
        Most cells the fit sees.
    seed
        Seeds the sample.

    Returns
    -------
    xarray.DataArray
        ``(component, y, x)`` float32 named ``pca``; ``attrs["explained_variance_ratio"]``.

    Examples
    --------
    >>> emb = xrembed.open_raster("sample").rsembed.embed("dofa", weights="random")   # doctest: +SKIP
    >>> emb.rsembed.pca(n_components=3).sizes                                        # doctest: +SKIP
    Frozen({'component': 3, 'y': 28, 'x': 28})
    """
    return fit_pca(emb, n_components, sample_size=sample_size, seed=seed).transform(emb)
