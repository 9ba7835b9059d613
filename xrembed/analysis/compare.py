"""A fair comparison of models and products on the same labelled locations: ``xrembed.compare``.

Fairness, in order:

1. **Same locations.** Labelled points (from a GeoDataFrame, or drawn from a label raster, seeded) are
   sampled on each model's own grid; a point whose cell has no valid data in *any* model (or in the
   baseline) is dropped for *all* of them.
2. **A baseline.** The input bands averaged over each cell of the coarsest model grid ("no model") are
   always in the table.
3. **Spatially blocked CV with a buffer.** Folds are whole spatial blocks; for each split the training
   points within one cell of the coarsest model grid of any test point are left out (see ``_cv.py``).
   The per-split train/test/buffer assignment of every point is returned.
4. **Cheap, seeded probes.** scikit-learn k-NN on cosine distance and logistic regression on standardised
   features, the same splits for every model.
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import xarray as xr

from ..errors import NoDataInBoundsError, OptionError
from ..geo import Grid, assign_grid, metres_per_unit, spatial_dims
from ._cv import spatial_splits
from ._deps import require
from ._points import _reproject_xy, cell_index, read_geometries, read_points
from .sample import sample_values
from .zonal import zonal_sums

__all__ = ["ComparisonResult", "compare", "BASELINE"]

#: The name of the raw-band baseline row.
BASELINE = "baseline (bands)"
_PROBES = ("knn", "logreg")


@dataclass
class ComparisonResult:
    """What :func:`compare` returns: the table, per-split scores, the fold assignment, and a plot.

    Attributes
    ----------
    table
        One row per (model, probe): ``accuracy_mean``, ``accuracy_sd``, ``macro_f1_mean``, ``macro_f1_sd``
        (over the splits), ``embed_s`` (computing the model at the points), ``probe_s`` (fitting and
        predicting over all splits), ``time_s`` (their sum), ``n_points``, ``n_splits``.
    scores
        One row per (model, probe, split): ``accuracy``, ``macro_f1``, ``n_train``, ``n_test``, ``n_buffer``.
    assignment
        One row per labelled point used: ``x``, ``y`` (in the raster's CRS), ``label``, ``block``, and
        ``split_0 ...``: ``"train"``, ``"test"`` or ``"buffer"`` (left out of training for that split).
    dropped
        How many labelled points were dropped for all models: off the raster, or no valid data in some
        model's cell.
    """

    table: pd.DataFrame
    scores: pd.DataFrame
    assignment: pd.DataFrame
    dropped: int = 0
    settings: dict = field(default_factory=dict)

    def plot(self, metric: str = "macro_f1"):
        """Bar chart of ``metric`` (``"macro_f1"`` or ``"accuracy"``), mean ± sd per model and probe.

        Returns
        -------
        matplotlib.figure.Figure
        """
        if metric not in ("macro_f1", "accuracy"):
            raise OptionError(f"metric={metric!r} is not one of 'macro_f1', 'accuracy'.")
        require("matplotlib", "ComparisonResult.plot()")
        from matplotlib.figure import Figure

        models = list(dict.fromkeys(self.table["model"]))
        probes = list(dict.fromkeys(self.table["probe"]))
        fig = Figure(figsize=(6.4, 0.5 + 0.45 * len(models) * max(1, len(probes)) ** 0.5), layout="constrained")
        ax = fig.add_subplot()
        height = 0.8 / len(probes)
        for k, probe in enumerate(probes):
            rows = self.table[self.table["probe"] == probe].set_index("model").reindex(models)
            ax.barh(
                np.arange(len(models)) + (k - (len(probes) - 1) / 2) * height,
                rows[f"{metric}_mean"],
                height=height,
                xerr=rows[f"{metric}_sd"],
                label=probe,
                capsize=2,
            )
        ax.set_yticks(np.arange(len(models)), models)
        ax.invert_yaxis()
        ax.set_xlim(0, 1)
        ax.set_xlabel(f"{metric.replace('_', '-')} (mean ± sd over {self.table['n_splits'].iloc[0]} spatial folds)")
        ax.legend(loc="lower right", fontsize="small")
        ax.set_title(f"{self.table['n_points'].iloc[0]} labelled points, the same for every model", fontsize="medium")
        return fig

    def __repr__(self) -> str:
        return f"ComparisonResult(dropped={self.dropped})\n{self.table.to_string(index=False)}"

    def _repr_html_(self) -> str:
        return self.table.to_html(index=False)


def compare(
    raster: xr.DataArray,
    models: Sequence | Mapping,
    labels,
    *,
    probe: str | Sequence[str] = ("knn", "logreg"),
    cv: str = "spatial",
    n_splits: int = 5,
    block_size: float | None = None,
    label_column: str | None = None,
    classes: Mapping | Sequence | None = None,
    points_per_class: int | None = 200,
    embed_kwargs: Mapping | None = None,
    n_neighbors: int = 5,
    seed: int = 0,
) -> ComparisonResult:
    """Evaluate models (and products) on the same labelled locations with spatially blocked CV.

    Parameters
    ----------
    raster
        The input ``(band, y, x)`` raster with a CRS (raw bands; the baseline averages them per cell).
    models
        Model ids (``"dofa"``), ``(model_id, {embed keywords})`` pairs, or ready embedding grids (a
        product from ``open_precomputed``, an ``emb`` you computed); or a mapping ``{name: any of those}``.
        Each model id is embedded with ``raster.rsembed.embed(model_id, **embed_kwargs, **its keywords)``.
    labels
        A GeoDataFrame of labelled points or polygons (reprojected onto the raster's CRS; the label in
        ``label_column``), or a label raster ``(y, x)`` (e.g. a scene classification layer, on any grid): points
        are drawn at its cell centres, up to ``points_per_class`` per class (seeded). A point is represented by
        the cell under it on each grid; a polygon by its valid-area-weighted mean vector on each grid
        (:func:`xrembed.analysis.zonal`), and it drops out when it holds no valid area on some grid.
    probe
        ``"knn"`` (k-nearest neighbours, cosine distance, ``n_neighbors``) and/or ``"logreg"`` (logistic
        regression on standardised features).
    cv
        ``"spatial"``: spatially blocked folds with a buffer (the only choice: random k-fold over raster
        cells leaks between near-duplicate neighbours).
    n_splits
        Number of folds.
    block_size
        Side of the spatial blocks, in the raster's CRS units. Default: a sixth of the labelled points'
        extent, at least four cells of the coarsest model grid.
    label_column
        The GeoDataFrame column holding the labels (default ``"label"``, or the only non-geometry column).
    classes
        Which label values to use: a list, or a mapping ``{value: name}`` (several values may share a name,
        e.g. ``{8: "cloud", 9: "cloud"}``). Default: every value (a label raster's nodata and NaN excluded).
    points_per_class
        At most this many points per class (seeded random choice); ``None`` for all.
    embed_kwargs
        Keywords for every ``embed`` call (e.g. ``{"weights": "random"}`` in tests).
    n_neighbors
        ``k`` of the k-NN probe (at most the training size).
    seed
        Seeds the choice of points, the fold assignment and the logistic regression.

    Returns
    -------
    ComparisonResult
        ``.table`` (model, probe, accuracy and macro-F1 mean ± sd, time), ``.scores`` per split,
        ``.assignment`` per point and split, ``.plot()``.

    Raises
    ------
    xrembed.errors.OptionError
        Unknown probe or cv; too few labelled cells per class for the folds (after dropping invalid cells);
        fewer spatial blocks than folds.
    xrembed.analysis._deps.MissingDependencyError
        scikit-learn (or geopandas, matplotlib) missing: ``pip install "xrembed[analysis]"``.

    Examples
    --------
    >>> result = xrembed.compare(da, models=["dofa", "terrafm"], labels=scl, classes={5: "soil", 10: "cirrus"})  # doctest: +SKIP
    >>> result.table                                                                                          # doctest: +SKIP
    >>> result.plot()                                                                                         # doctest: +SKIP
    """
    probes = _check_probes(probe)
    if cv != "spatial":
        raise OptionError(
            f"cv={cv!r}: only 'spatial' (blocked folds with a buffer) is offered; random folds over raster cells "
            "leak between neighbouring cells and inflate scores."
        )
    require("sklearn", "xrembed.compare")
    if not isinstance(raster, xr.DataArray):
        raise OptionError(f"compare needs the input raster as an xarray DataArray (band, y, x), not {type(raster).__name__}.")
    y_dim, x_dim = spatial_dims(raster)
    grid = Grid.from_xarray(raster)
    x, y, label, shapes = _labelled_points(labels, grid, label_column, classes, points_per_class, seed)

    embeddings = _embeddings(raster, models, dict(embed_kwargs or {}))
    cells = {name: _cell_size(emb, grid) for name, emb in embeddings.items()}
    coarsest = max(cells.values()) if cells else max(abs(grid.transform.a), abs(grid.transform.e))
    factor = max(1, int(round(coarsest / max(abs(grid.transform.a), abs(grid.transform.e)))))
    embeddings = {BASELINE: _band_means(raster, grid, factor, y_dim, x_dim), **embeddings}

    features, embed_s, dropped_by = {}, {}, {}
    valid = np.ones(len(x), dtype=bool)
    for name, emb in embeddings.items():
        start = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN cells of the baseline
            if shapes is None:
                ex, ey = _reproject_xy(x, y, grid.crs, Grid.from_xarray(emb).crs)
                values, inside, _ = sample_values(emb, ex, ey)
            else:
                values, inside = _zone_means(emb, shapes, grid.crs)
        embed_s[name] = time.perf_counter() - start
        features[name] = values
        usable = inside & np.isfinite(values).all(axis=1)
        dropped_by[name] = int((~usable).sum())
        valid &= usable
    dropped = int((~valid).sum())
    if not valid.any():
        raise NoDataInBoundsError(
            f"none of the {len(valid)} labelled locations has valid data on every grid (without valid data, per "
            f"model: {dropped_by}); check that the labels and the models cover the same place, and that no model's "
            "grid is all NaN."
        )
    x, y, label = x[valid], y[valid], label[valid]
    shapes = shapes[valid] if shapes is not None else None
    features = {name: values[valid] for name, values in features.items()}

    if block_size is None:
        extent = max(np.ptp(x), np.ptp(y)) if len(x) else 0.0
        block_size = max(extent / 6, 4 * coarsest)
    blocks, assignment = spatial_splits(
        x, y, label, n_splits=n_splits, block_size=block_size, buffer=coarsest, seed=seed, geometries=shapes
    )

    table_rows, score_rows = _evaluate(features, label, assignment, probes, n_neighbors, seed, embed_s)
    points = pd.DataFrame({"x": x, "y": y, "label": label, "block": blocks})
    return ComparisonResult(
        table=pd.DataFrame(table_rows),
        scores=pd.DataFrame(score_rows),
        assignment=pd.concat([points, assignment], axis=1),
        dropped=dropped,
        settings={"block_size": float(block_size), "buffer": float(coarsest), "baseline_cell_px": factor, "seed": seed,
                  "dropped_by_model": dropped_by},
    )


def _evaluate(features: dict, label: np.ndarray, assignment: pd.DataFrame, probes, n_neighbors: int, seed: int, embed_s: dict):
    """Fit and score every probe on every model's features over the same splits: (table rows, score rows)."""
    n_splits = assignment.shape[1]
    score_rows, table_rows = [], []
    for name, values in features.items():
        for probe_name in probes:
            start = time.perf_counter()
            split_scores = []
            for column in assignment.columns:
                state = assignment[column].to_numpy()
                train, test = state == "train", state == "test"
                accuracy, macro_f1 = _fit_score(probe_name, values[train], label[train], values[test], label[test], n_neighbors, seed)
                split_scores.append(
                    {
                        "model": name,
                        "probe": probe_name,
                        "split": column,
                        "accuracy": accuracy,
                        "macro_f1": macro_f1,
                        "n_train": int(train.sum()),
                        "n_test": int(test.sum()),
                        "n_buffer": int((state == "buffer").sum()),
                    }
                )
            probe_s = time.perf_counter() - start
            score_rows += split_scores
            acc = np.array([s["accuracy"] for s in split_scores])
            f1 = np.array([s["macro_f1"] for s in split_scores])
            table_rows.append(
                {
                    "model": name,
                    "probe": probe_name,
                    "accuracy_mean": acc.mean(),
                    "accuracy_sd": acc.std(ddof=1),
                    "macro_f1_mean": f1.mean(),
                    "macro_f1_sd": f1.std(ddof=1),
                    "embed_s": embed_s[name],
                    "probe_s": probe_s,
                    "time_s": embed_s[name] + probe_s,
                    "n_points": len(label),
                    "n_splits": n_splits,
                }
            )
    return table_rows, score_rows


def _check_probes(probe) -> tuple[str, ...]:
    probes = (probe,) if isinstance(probe, str) else tuple(probe)
    unknown = [p for p in probes if p not in _PROBES]
    if unknown or not probes:
        raise OptionError(f"probe={probe!r}: {unknown or 'nothing'} is not one of {_PROBES}.")
    return probes


def _zone_means(emb: xr.DataArray, shapes: np.ndarray, crs) -> tuple[np.ndarray, np.ndarray]:
    """Each polygon's valid-area-weighted mean vector on ``emb``'s grid, and whether it holds valid area."""
    sums = zonal_sums(emb, list(shapes), crs=crs)
    with np.errstate(invalid="ignore", divide="ignore"):
        means = sums.vector_sum / np.where(sums.area > 0, sums.area, np.nan)[:, None]
    return means, sums.area > 0


def _labelled_points(labels, grid: Grid, label_column, classes, points_per_class, seed: int):
    """``(x, y, label, polygons)`` in the raster's CRS, on the raster, at most ``points_per_class`` per class.

    ``polygons`` is None for points; for polygon labels ``x``/``y`` are their representative points."""
    shapes = None
    if isinstance(labels, xr.DataArray):
        return (*_raster_points(labels, grid, _class_mapping(classes), points_per_class, seed), None)
    if type(labels).__module__.startswith("geopandas") and hasattr(labels, "geometry"):
        column = label_column or ("label" if "label" in labels.columns else None)
        others = [c for c in labels.columns if c != labels.geometry.name]
        if column is None and len(others) == 1:
            column = others[0]
        if column not in labels.columns:
            raise OptionError(f"cannot tell which column holds the labels among {others}; pass label_column=.")
        values = labels[column].to_numpy()
        kinds = set(labels.geometry.geom_type.dropna())
        if kinds <= {"Point"}:
            loc = read_points(labels, grid.crs, what="the labelled points")
            x, y = loc.x, loc.y
        elif kinds <= {"Polygon", "MultiPolygon"}:
            shapes, _ = read_geometries(labels, grid.crs, what="the labelled polygons")
            shapes = np.asarray(shapes, dtype=object)
            anchor = require("shapely", "xrembed.compare").point_on_surface(shapes)
            x, y = np.asarray([p.x for p in anchor]), np.asarray([p.y for p in anchor])
        else:
            raise OptionError(
                f"labels mix geometry types {sorted(kinds)}; pass points or polygons (e.g. split the frame by "
                "`gdf.geom_type`)."
            )
    else:
        raise OptionError(
            f"labels must be a GeoDataFrame of labelled points or a label raster (y, x) DataArray, not "
            f"{type(labels).__name__}."
        )
    keep = cell_index(grid, x, y)[2] & pd.notna(values)
    mapping = _class_mapping(classes)
    if mapping is not None:
        keep &= pd.Series(values).isin(list(mapping)).to_numpy()
        values = np.array([mapping.get(v, v) for v in values], dtype=object)
    x, y, values = x[keep], y[keep], np.asarray(values[keep])
    shapes = shapes[keep] if shapes is not None else None
    if points_per_class is not None:
        rng = np.random.default_rng(seed)
        chosen = []
        for value in pd.unique(values):
            idx = np.flatnonzero(values == value)
            chosen.append(idx if idx.size <= points_per_class else np.sort(rng.choice(idx, points_per_class, replace=False)))
        order = np.sort(np.concatenate(chosen)) if chosen else np.array([], dtype=int)
        x, y, values = x[order], y[order], values[order]
        shapes = shapes[order] if shapes is not None else None
    return x, y, values, shapes


def _class_mapping(classes) -> dict | None:
    """``classes=`` as ``{label value: name}`` (None: every value, under its own name)."""
    if classes is None:
        return None
    return dict(classes) if isinstance(classes, Mapping) else {c: c for c in classes}


#: Rows and columns of a label raster read at a time: memory stays bounded whatever the raster's size.
LABEL_WINDOW = 2048


def _raster_points(labels: xr.DataArray, grid: Grid, mapping: dict | None, points_per_class: int | None, seed: int):
    """``(x, y, label)`` of a label raster's cells on ``grid`` (in its CRS), at most ``points_per_class`` per class.

    The raster is read window by window. Its nodata and NaN cells, and values outside ``mapping``, are left
    out. The sample keeps, per class, the cells with the smallest seeded hash of their position: a uniform
    draw without replacement that depends on neither the windows nor the raster's chunks. Points come in
    raster order.
    """
    y_dim, x_dim = spatial_dims(labels)
    extra = [d for d in labels.dims if d not in (y_dim, x_dim)]
    if any(labels.sizes[d] != 1 for d in extra):
        raise OptionError(f"a label raster must be (y, x) (one band), but it has dims {dict(labels.sizes)}; pick one band.")
    labels = labels.squeeze(extra, drop=True) if extra else labels
    label_grid = Grid.from_xarray(labels)
    nodata = labels.rio.nodata if hasattr(labels, "rio") else None
    if nodata is not None and isinstance(nodata, float) and np.isnan(nodata):
        nodata = None
    height, width = labels.sizes[y_dim], labels.sizes[x_dim]
    parts = []  # per window: flat position, hash key, x, y, label of the cells kept so far
    for row0 in range(0, height, LABEL_WINDOW):
        for col0 in range(0, width, LABEL_WINDOW):
            window = {y_dim: slice(row0, row0 + LABEL_WINDOW), x_dim: slice(col0, col0 + LABEL_WINDOW)}
            values = np.asarray(labels.isel(window).values)
            ok = pd.notna(values)
            if nodata is not None:
                ok &= values != nodata
            if mapping is not None:
                ok &= pd.Series(values.ravel()).isin(list(mapping)).to_numpy().reshape(values.shape)
            rows, cols = np.nonzero(ok)
            rows, cols = rows + row0, cols + col0
            cx, cy = label_grid.transform * (cols + 0.5, rows + 0.5)
            x, y = _reproject_xy(np.asarray(cx, float), np.asarray(cy, float), label_grid.crs, grid.crs)
            on = cell_index(grid, x, y)[2]
            value = values[rows[on] - row0, cols[on] - col0]
            if mapping is not None:
                value = np.array([mapping[v] for v in value], dtype=object)
            flat = rows[on].astype(np.uint64) * np.uint64(width) + cols[on].astype(np.uint64)
            part = (flat, _cell_keys(flat, seed), x[on], y[on], value)
            parts = _keep_smallest(parts + [part], points_per_class)
    flat, _, x, y, value = (np.concatenate([p[i] for p in parts]) if parts else np.array([]) for i in range(5))
    order = np.argsort(flat, kind="stable")
    return x[order], y[order], np.asarray(value[order])


def _keep_smallest(parts: list, k: int | None) -> list:
    """``parts`` merged, keeping per class the ``k`` cells with the smallest keys (all of them when ``k`` is None)."""
    if k is None or not parts:
        return parts
    flat, keys, x, y, value = (np.concatenate([p[i] for p in parts]) for i in range(5))
    keep = []
    for label in pd.unique(value):
        idx = np.flatnonzero(value == label)
        keep.append(idx[np.argsort(keys[idx], kind="stable")[:k]])
    keep = np.concatenate(keep)
    return [(flat[keep], keys[keep], x[keep], y[keep], value[keep])]


def _cell_keys(flat: np.ndarray, seed: int) -> np.ndarray:
    """A seeded pseudo-random uint64 per cell position (splitmix64): the same cell gets the same key however
    the raster is read."""
    with np.errstate(over="ignore"):
        z = flat.astype(np.uint64) + np.uint64(seed % 2**64) * np.uint64(0x9E3779B97F4A7C15) + np.uint64(0x632BE59BD9B4E019)
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        return z ^ (z >> np.uint64(31))


def _embeddings(raster, models, embed_kwargs) -> dict[str, xr.DataArray]:
    items = list(models.items()) if isinstance(models, Mapping) else [(None, m) for m in models]
    if not items:
        raise OptionError("compare needs at least one model, e.g. models=['dofa'].")
    out = {}
    for name, item in items:
        if isinstance(item, xr.DataArray):
            emb, default = item, str(item.attrs.get("model") or item.name or f"model {len(out)}")
        elif isinstance(item, str):
            emb, default = raster.rsembed.embed(item, **embed_kwargs), item
        elif isinstance(item, tuple) and len(item) == 2 and isinstance(item[0], str) and isinstance(item[1], Mapping):
            emb = raster.rsembed.embed(item[0], **{**embed_kwargs, **item[1]})
            default = item[0] + (f" ({item[1]['variant']})" if "variant" in item[1] else "")
        else:
            raise OptionError(
                f"models entry {item!r} is not a model id, a (model_id, {{keywords}}) pair or an embedding DataArray."
            )
        key = str(name) if name is not None else default
        while key in out or key == BASELINE:
            key += "'"
        out[key] = emb
    return out


def _cell_size(emb: xr.DataArray, grid: Grid) -> float:
    """The larger side of ``emb``'s cells, in the raster's CRS units."""
    own = Grid.from_xarray(emb)
    size = max(abs(own.transform.a), abs(own.transform.e))
    if own.crs != grid.crs:
        size *= metres_per_unit(own.crs) / metres_per_unit(grid.crs)
    return size


def _band_means(raster: xr.DataArray, grid: Grid, factor: int, y_dim: str, x_dim: str) -> xr.DataArray:
    """The input bands averaged over each ``factor`` x ``factor`` cell (NaN pixels skipped; lazy for dask)."""
    others = [d for d in raster.dims if d not in (y_dim, x_dim)]
    data = raster.transpose(*others, y_dim, x_dim).astype("float32")
    coarse = grid.zoom_out(factor)
    pad = {y_dim: (0, coarse.shape[0] * factor - grid.shape[0]), x_dim: (0, coarse.shape[1] * factor - grid.shape[1])}
    plain = xr.DataArray(data.data, dims=data.dims, coords={d: data[d] for d in others if d in data.coords})
    padded = plain.pad(pad, constant_values=np.nan) if any(p[1] for p in pad.values()) else plain
    means = padded.coarsen({y_dim: factor, x_dim: factor}).mean()
    if (y_dim, x_dim) != ("y", "x"):
        means = means.rename({y_dim: "y", x_dim: "x"})
    return assign_grid(means, coarse)


def _fit_score(probe: str, x_train, y_train, x_test, y_test, n_neighbors: int, seed: int) -> tuple[float, float]:
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import accuracy_score, f1_score
    from sklearn.neighbors import KNeighborsClassifier
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    if probe == "knn":
        model = KNeighborsClassifier(n_neighbors=min(n_neighbors, len(y_train)), metric="cosine")
    else:
        model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000, random_state=seed))
    model.fit(x_train, y_train)
    predicted = model.predict(x_test)
    return float(accuracy_score(y_test, predicted)), float(f1_score(y_test, predicted, average="macro", zero_division=0))
