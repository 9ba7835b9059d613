"""A bounded, seeded random sample of valid (non-NaN) cells of a lazy ``(..., embedding, y, x)`` grid.

The fits of :func:`~xrembed.analysis.pca` and :func:`~xrembed.analysis.kmeans` see only this sample, so they
must not depend on how the grid is chunked and must not read the whole raster. Cells are taken from square
windows on a fixed lattice over the grid (``side`` cells wide); which windows is a seeded permutation of the
lattice. Everything depends on the grid's shape, the seed and the values only, never on the dask chunks, and
each round reads only the chunks its windows touch. A first round reads ``windows`` windows (about twice
``size`` cells); more rounds (doubling) run only while fewer than half of ``size`` valid cells were found,
up to ``max_windows``, and beyond that only while fewer than ``min_valid`` (what the fit cannot do without).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import xarray as xr

from ..errors import NoDataInBoundsError
from ..geo import spatial_dims
from ._grid import EMBEDDING_DIM, valid_cells

__all__ = ["CellSample", "sample_valid_cells"]


@dataclass(frozen=True)
class CellSample:
    """The sampled cells: ``values`` ``(n, D)`` float64, and how much of the grid was read to find them."""

    values: np.ndarray
    cells_read: int
    windows_read: int
    valid_found: int


def _windows(shape: tuple[int, int], side: int, seed: int) -> list[tuple[slice, slice]]:
    height, width = shape
    rows, cols = math.ceil(height / side), math.ceil(width / side)
    order = np.random.default_rng(seed).permutation(rows * cols)
    out = []
    for index in order:
        r, c = divmod(int(index), cols)
        out.append((slice(r * side, min((r + 1) * side, height)), slice(c * side, min((c + 1) * side, width))))
    return out


def _read(emb: xr.DataArray, windows: list[tuple[slice, slice]], dim: str) -> list[np.ndarray]:
    y_dim, x_dim = spatial_dims(emb)
    order = [d for d in emb.dims if d != dim] + [dim]
    parts = [emb.isel({y_dim: ys, x_dim: xs}).transpose(*order).data for ys, xs in windows]
    if any(hasattr(part, "dask") for part in parts):
        import dask

        parts = dask.compute(*parts)  # one graph: a chunk under several windows is computed once
    return [np.asarray(part).reshape(-1, emb.sizes[dim]) for part in parts]


def sample_valid_cells(
    emb: xr.DataArray,
    *,
    size: int = 10_000,
    seed: int = 0,
    windows: int = 16,
    max_windows: int = 64,
    min_valid: int = 1,
    dim: str = EMBEDDING_DIM,
    what: str = "the analysis",
) -> CellSample:
    """Up to ``size`` valid cells of ``emb`` (all values finite), drawn reproducibly from a few windows.

    Parameters
    ----------
    emb
        ``(..., dim, y, x)``; extra dimensions (time) count as more cells.
    size
        Most cells returned (a seeded subsample when more valid cells were read).
    seed
        Seeds the choice of windows and the subsample.
    windows
        Windows read in the first round; their side is ``ceil(sqrt(2 * size / windows))`` cells.
    max_windows
        Rounds stop here once ``min_valid`` cells are found (more are read only to reach ``min_valid``).
    min_valid
        Fewest valid cells the caller needs; the whole grid is searched before giving up on them.
    dim
        The vector dimension (``"embedding"``; ``"component"`` for a PCA output).
    what
        The caller, for the error message.

    Raises
    ------
    NoDataInBoundsError
        When every cell of the grid is NaN.

    Examples
    --------
    >>> from xrembed.analysis._sampling import sample_valid_cells
    >>> sample_valid_cells(emb, size=1000).values.shape     # doctest: +SKIP
    (1000, 768)
    """
    y_dim, x_dim = spatial_dims(emb)
    shape = (emb.sizes[y_dim], emb.sizes[x_dim])
    side = max(1, math.ceil(math.sqrt(2 * size / max(windows, 1))))
    lattice = _windows(shape, side, seed)
    found: list[np.ndarray] = []
    count = cells = start = 0
    batch = max(windows, 1)
    while start < len(lattice):
        chosen = lattice[start : start + batch]
        start += len(chosen)
        for values in _read(emb, chosen, dim):
            cells += values.shape[0]
            keep = values[valid_cells(values)]
            if keep.size:
                found.append(keep.astype(np.float64))
                count += keep.shape[0]
        enough = count >= min_valid and (count >= size // 2 or start >= max_windows)
        if enough:
            break
        batch *= 2
    if count == 0:
        raise NoDataInBoundsError(
            f"{what}: every cell of the embedding grid ({shape[0]} x {shape[1]}) is NaN (no data). Check the input "
            "raster's nodata and extent, or embed a region that holds valid pixels."
        )
    values = np.concatenate(found)
    if values.shape[0] > size:
        pick = np.sort(np.random.default_rng(seed).choice(values.shape[0], size=size, replace=False))
        values = values[pick]
    return CellSample(values=values, cells_read=cells, windows_read=start, valid_found=count)
