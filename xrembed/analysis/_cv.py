"""Spatially blocked cross-validation with a buffer, for :func:`xrembed.compare`.

Labelled points are grouped into square spatial blocks; folds are sets of whole blocks (stratified by class
where the blocks allow, seeded). For each split, training points within ``buffer`` (in x and in y) of any test
point are left out of training, so a model is never tested on a cell whose near-duplicate neighbour it was
trained on. Random k-fold over raster cells leaks exactly that way.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from ..errors import OptionError
from ._deps import require

__all__ = ["spatial_blocks", "spatial_splits"]


def spatial_blocks(x: np.ndarray, y: np.ndarray, block_size: float) -> np.ndarray:
    """Integer id of the ``block_size`` square (from the points' lower-left corner) holding each point.

    Examples
    --------
    >>> spatial_blocks(np.array([0.0, 9.0, 11.0, 0.0]), np.array([0.0, 0.0, 0.0, 25.0]), 10.0).tolist()
    [0, 0, 1, 4]
    """
    cols = np.floor((x - x.min()) / block_size).astype("int64")
    rows = np.floor((y - y.min()) / block_size).astype("int64")
    return rows * (int(cols.max()) + 1) + cols


def spatial_splits(
    x: np.ndarray,
    y: np.ndarray,
    labels: np.ndarray,
    *,
    n_splits: int,
    block_size: float,
    buffer: float,
    seed: int,
    geometries: np.ndarray | None = None,
) -> tuple[np.ndarray, pd.DataFrame]:
    """Blocks and the per-split assignment (``"train"``, ``"test"`` or ``"buffer"``) of every point.

    Blocks are taken at ``(x, y)``. The buffer is measured between the points (the larger of the x and y
    distances), or, with ``geometries`` (polygon labels), between the shapes: a training polygon that
    meets a test polygon grown by a square of half-side ``buffer`` is left out.

    Returns ``(blocks, assignment)``; ``assignment`` has one column ``split_0 ... split_{n-1}``.

    Raises
    ------
    OptionError
        Too few labelled points of a class for ``n_splits`` folds, fewer spatial blocks than folds, or a split
        whose training set (after the buffer) holds fewer than two classes; each message names the fix.
    """
    model_selection = require("sklearn.model_selection", "xrembed.compare")
    from scipy.spatial import cKDTree

    if n_splits < 2:
        raise OptionError(f"n_splits={n_splits}: cross-validation needs at least 2 folds.")
    classes, counts = np.unique(labels, return_counts=True)
    short = {str(c): int(n) for c, n in zip(classes, counts) if n < n_splits}
    if len(classes) < 2 or short:
        what = f"classes with fewer labelled cells than folds: {short}" if short else f"only one class ({classes.tolist()})"
        raise OptionError(
            f"too few labelled cells per class for {n_splits} folds ({what}; counts "
            f"{ {str(c): int(n) for c, n in zip(classes, counts)} }). Lower n_splits=, add labelled points "
            "(points_per_class= for a label raster), or drop the rare classes (classes=)."
        )
    blocks = spatial_blocks(x, y, block_size)
    if np.unique(blocks).size < n_splits:
        raise OptionError(
            f"the labelled points fall in only {np.unique(blocks).size} spatial blocks of {block_size:g} CRS units, "
            f"fewer than n_splits={n_splits}; pass a smaller block_size= or fewer n_splits=."
        )
    splitter = model_selection.StratifiedGroupKFold(n_splits=n_splits, shuffle=True, random_state=seed)
    tree = cKDTree(np.column_stack([x, y])) if geometries is None else None
    if geometries is not None:
        shapely = require("shapely", "xrembed.compare")
        shape_tree = shapely.STRtree(geometries)
    columns = {}
    codes = np.unique(labels, return_inverse=True)[1]
    for k, (train, test) in enumerate(splitter.split(np.zeros(len(labels)), codes, groups=blocks)):
        state = np.full(len(labels), "train", dtype=object)
        state[test] = "test"
        if tree is not None:
            near = tree.query_ball_point(np.column_stack([x[test], y[test]]), r=buffer, p=np.inf)
            near = np.unique(np.concatenate([np.asarray(n, dtype="int64") for n in near])) if len(near) else np.array([], int)
        else:
            grown = shapely.buffer(geometries[test], buffer, cap_style="square", join_style="mitre")
            near = np.unique(shape_tree.query(grown, predicate="intersects")[1])
        state[near[state[near] == "train"]] = "buffer"
        kept = labels[state == "train"]
        if np.unique(kept).size < 2 or not (state == "test").any():
            raise OptionError(
                f"split {k}: after leaving out the {int((state == 'buffer').sum())} training points within the buffer "
                f"({buffer:g} CRS units) of the test points, training holds classes {np.unique(kept).tolist()} only; "
                "add labelled points spread over more of the raster, or pass a larger block_size= or fewer n_splits=."
            )
        columns[f"split_{k}"] = state
    return blocks, pd.DataFrame(columns)
