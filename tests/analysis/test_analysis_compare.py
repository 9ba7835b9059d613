"""xrembed.compare: the same labelled locations for every model, a raw-band baseline row, spatially blocked
folds with a buffer (checked point by point against brute-force distances), seeded probes, clear errors, and
real SCL labels (bare soil, thin cirrus, cloud) on the real scene with small random-weight models."""

from __future__ import annotations

import sys

import geopandas as gpd
import numpy as np
import pytest
import rioxarray
import xarray as xr

import xrembed
from xrembed.analysis._cv import spatial_blocks, spatial_splits
from xrembed.analysis.compare import BASELINE, compare
from xrembed.errors import NoDataInBoundsError, OptionError, XrembedError

SCL_CLASSES = {5: "bare soil", 10: "thin cirrus", 8: "cloud", 9: "cloud"}


def open_scene():
    from pathlib import Path

    root = Path(__file__).resolve().parents[3] / "shared" / "data" / "S2A_29RKH_20200219_0_L2A"
    if not root.is_dir():
        pytest.fail(f"the shared Sentinel-2 scene is missing at {root}")
    # the cloudy north-east corner: 448 x 448 px at 100 m, all three classes present
    raster = xrembed.open_raster(root).isel(y=slice(0, 448), x=slice(650, 1098))
    scl = rioxarray.open_rasterio(root / "SCL.tif").squeeze("band", drop=True)
    return raster, scl


@pytest.fixture(scope="module")
def real():
    """One comparison on the real scene: the tiny DOFA and RemoteCLIP ViT-B/32 (the smallest real variant: 7 x 7
    tokens per 224 px tile), random weights, 40 points per class."""
    raster, scl = open_scene()
    result = compare(
        raster,
        ["dofa-tiny", ("remoteclip", {"variant": "vit_b32"})],
        scl,
        classes=SCL_CLASSES,
        points_per_class=40,
        n_splits=3,
        embed_kwargs={"weights": "random"},
    )
    return raster, scl, result


def test_table_has_the_baseline_and_every_model(real):
    _, _, result = real
    table = result.table
    assert list(table["model"]) == [BASELINE, BASELINE, "dofa-tiny", "dofa-tiny", "remoteclip (vit_b32)", "remoteclip (vit_b32)"]
    assert list(table["probe"]) == ["knn", "logreg"] * 3
    for column in ("accuracy_mean", "accuracy_sd", "macro_f1_mean", "macro_f1_sd", "time_s"):
        assert np.isfinite(table[column]).all(), column
    assert (table["time_s"] > 0).all() and (table["n_points"] == 120).all()
    # three balanced classes: chance is 1/3; the raw bands separate cloud, cirrus and soil well, and a probe on
    # each random-weight model still scores clearly above chance
    best = table.groupby("model")["accuracy_mean"].max()
    assert best[BASELINE] > 0.7
    assert (best > 0.45).all(), best
    assert set(result.assignment["label"]) == {"bare soil", "thin cirrus", "cloud"}


def test_every_model_sees_the_same_points_and_splits(real):
    _, _, result = real
    scores = result.scores
    per_model = scores.groupby(["model", "probe"])[["n_train", "n_test", "n_buffer"]].apply(lambda f: tuple(map(tuple, f.to_numpy())))
    assert per_model.nunique() == 1  # identical train/test/buffer sizes for every model and probe
    assert ((scores["n_train"] + scores["n_test"] + scores["n_buffer"]) == len(result.assignment)).all()


def test_folds_are_spatial_blocks_with_a_buffer(real):
    _, _, result = real
    a = result.assignment
    splits = [c for c in a.columns if c.startswith("split_")]
    assert len(splits) == 3
    assert ((a[splits] == "test").sum(axis=1) == 1).all()  # every point is tested exactly once
    buffer = result.settings["buffer"]
    assert buffer == pytest.approx(3200.0)  # one cell of the coarsest grid: RemoteCLIP ViT-B/32, 32 px x 100 m
    xy = a[["x", "y"]].to_numpy()
    chebyshev = np.abs(xy[:, None, :] - xy[None, :, :]).max(axis=2)
    for split in splits:
        state = a[split].to_numpy()
        test, train, left_out = state == "test", state == "train", state == "buffer"
        near_test = (chebyshev[:, test] <= buffer).any(axis=1)
        assert not (train & near_test).any()  # no training point within one cell of a test point
        assert (near_test[left_out]).all()  # and only those were left out
        assert left_out.any()
        # folds are whole blocks: no block has both test and training points
        assert not set(a.loc[test, "block"]) & set(a.loc[~test, "block"])


def test_plot(real):
    _, _, result = real
    from matplotlib.figure import Figure

    fig = result.plot()
    assert isinstance(fig, Figure)
    (ax,) = fig.axes
    assert len(ax.patches) == 6 and [t.get_text() for t in ax.get_yticklabels()] == [BASELINE, "dofa-tiny", "remoteclip (vit_b32)"]
    widths = sorted(round(p.get_width(), 6) for p in ax.patches)
    assert widths == sorted(round(v, 6) for v in result.table["macro_f1_mean"])
    with pytest.raises(OptionError):
        result.plot("auc")


@pytest.fixture(scope="module")
def tiny_grid():
    raster, scl = open_scene()
    emb = raster.rsembed.embed("dofa-tiny", weights="random").compute()
    return raster.compute(), scl, emb


def test_cells_without_valid_data_drop_out_for_all_models(tiny_grid):
    raster, scl, emb = tiny_grid
    holed = emb.copy()
    holed[:, :20, :20] = np.nan  # a nodata corner in one model only (20 cells of 800 m)
    x_edge, y_edge = float(emb.x[0]) - 400 + 20 * 800, float(emb.y[0]) + 400 - 20 * 800
    kwargs = dict(classes=SCL_CLASSES, points_per_class=60, n_splits=3)
    full = compare(raster, {"a": emb, "b": emb}, scl, **kwargs)
    result = compare(raster, {"a": emb, "b": holed}, scl, **kwargs)
    in_hole = (full.assignment["x"] < x_edge) & (full.assignment["y"] > y_edge)
    assert in_hole.sum() > 0
    assert result.dropped == full.dropped + in_hole.sum()
    assert len(result.assignment) == len(full.assignment) - in_hole.sum()
    assert not ((result.assignment["x"] < x_edge) & (result.assignment["y"] > y_edge)).any()
    assert (result.table["n_points"] == len(result.assignment)).all()  # model "a" lost them too
    assert result.settings["dropped_by_model"]["b"] == full.dropped + in_hole.sum()
    assert result.settings["dropped_by_model"]["a"] == full.dropped
    with pytest.raises(NoDataInBoundsError, match="all NaN"):
        compare(raster, {"a": emb, "empty": emb * np.nan}, scl, **kwargs)


def test_seeded(tiny_grid):
    raster, scl, emb = tiny_grid
    kwargs = dict(classes=SCL_CLASSES, points_per_class=30, n_splits=3)
    one, two = compare(raster, [emb], scl, **kwargs), compare(raster, [emb], scl, **kwargs)
    cols = ["accuracy_mean", "accuracy_sd", "macro_f1_mean", "macro_f1_sd"]
    assert one.table[cols].equals(two.table[cols]) and one.assignment.equals(two.assignment)
    other = compare(raster, [emb], scl, seed=1, **kwargs)
    assert not other.assignment[["x", "y"]].equals(one.assignment[["x", "y"]])


def test_separable_synthetic_labels_score_one():
    """Two classes whose cells point in orthogonal directions: both probes are perfect on every model."""
    rng = np.random.default_rng(0)
    h = w = 40
    cls = (np.arange(w)[None, :] // 5 % 2).repeat(h, axis=0)  # stripes 5 cells wide
    vec = np.where(cls[None] == 0, np.array([1.0, 0.1, 0.0])[:, None, None], np.array([0.0, 0.1, 1.0])[:, None, None])
    coords = {"y": 1000.0 - 10 * (np.arange(h) + 0.5), "x": 10 * (np.arange(w) + 0.5)}
    emb = xr.DataArray(vec * rng.uniform(0.5, 2.0, size=(1, h, w)), dims=("embedding", "y", "x"), coords=coords).rio.write_crs("EPSG:32633")
    raster = xr.DataArray(vec * 1000 + 500, dims=("band", "y", "x"), coords={"band": ["B02", "B03", "B04"], **coords}).rio.write_crs("EPSG:32633")
    px, py = rng.uniform(0, 400, 300), rng.uniform(600, 1000, 300)
    label = np.where((px // 10).astype(int) // 5 % 2 == 0, "left", "right")
    gdf = gpd.GeoDataFrame({"kind": label}, geometry=gpd.points_from_xy(px, py), crs="EPSG:32633").to_crs("EPSG:4326")
    result = compare(raster, {"stripes": emb}, gdf, n_splits=4, block_size=100.0)
    assert set(result.table["model"]) == {BASELINE, "stripes"}
    np.testing.assert_allclose(result.table.loc[result.table["model"] == "stripes", "accuracy_mean"], 1.0)
    assert result.settings["buffer"] == 10.0


def test_too_few_labelled_cells_per_class(tiny_grid):
    raster, scl, emb = tiny_grid
    with pytest.raises(OptionError, match="too few labelled cells per class"):
        compare(raster, [emb], scl, classes=SCL_CLASSES, points_per_class=2, n_splits=3)
    with pytest.raises(OptionError, match="too few labelled cells per class"):
        compare(raster, [emb], scl, classes={5: "bare soil"}, points_per_class=20, n_splits=3)


def test_errors_name_the_fix(tiny_grid):
    raster, scl, emb = tiny_grid
    with pytest.raises(OptionError, match="probe="):
        compare(raster, [emb], scl, probe="svm")
    with pytest.raises(OptionError, match="leak"):
        compare(raster, [emb], scl, cv="random")
    with pytest.raises(OptionError, match="label raster"):
        compare(raster, [emb], [1, 2, 3])
    with pytest.raises(OptionError, match="models entry"):
        compare(raster, [42], scl)
    with pytest.raises(OptionError, match="block_size="):
        compare(raster, [emb], scl, classes=SCL_CLASSES, points_per_class=30, n_splits=3, block_size=1e6)


def test_missing_scikit_learn_names_the_extra(tiny_grid, monkeypatch):
    raster, scl, emb = tiny_grid
    monkeypatch.setitem(sys.modules, "sklearn", None)
    with pytest.raises(XrembedError, match=r'pip install "xrembed\[analysis\]"'):
        compare(raster, [emb], scl)


def test_spatial_splits_unit():
    x = np.array([0.0, 1.0, 10.0, 11.0, 20.0, 21.0, 30.0, 31.0])
    y = np.zeros_like(x)
    labels = np.array(["a", "b"] * 4)
    assert spatial_blocks(x, y, 10.0).tolist() == [0, 0, 1, 1, 2, 2, 3, 3]
    blocks, assignment = spatial_splits(x, y, labels, n_splits=2, block_size=10.0, buffer=9.5, seed=0)
    for column in assignment:
        state = assignment[column].to_numpy()
        test = np.flatnonzero(state == "test")
        for i in np.flatnonzero(state == "train"):
            assert np.abs(x[test] - x[i]).min() > 9.5
        for i in np.flatnonzero(state == "buffer"):
            assert np.abs(x[test] - x[i]).min() <= 9.5


def test_polygon_labels_use_zonal_means_and_a_shape_buffer():
    """Labelled squares inside 50 m stripes: zonal means on each grid, squares over one model's NaN
    columns dropped for both, and no training square within one cell (x or y gap) of a test square."""
    import shapely

    rng = np.random.default_rng(1)
    h = w = 40
    cls = (np.arange(w)[None, :] // 5 % 2).repeat(h, axis=0)
    vec = np.where(cls[None] == 0, np.array([1.0, 0.1, 0.0])[:, None, None], np.array([0.0, 0.1, 1.0])[:, None, None])
    coords = {"y": 1000.0 - 10 * (np.arange(h) + 0.5), "x": 10 * (np.arange(w) + 0.5)}
    emb = xr.DataArray(vec, dims=("embedding", "y", "x"), coords=coords).rio.write_crs("EPSG:32633")
    holed = emb.copy()
    holed[:, :, :10] = np.nan  # x < 100 m has no data in this model
    raster = (emb * 1000 + 500).rename(embedding="band").assign_coords(band=["B02", "B03", "B04"])
    stripe = rng.integers(0, 8, 160)
    cx, cy = 50 * stripe + rng.uniform(8, 42, 160), rng.uniform(606, 994, 160)
    squares = shapely.box(cx - 6, cy - 6, cx + 6, cy + 6)
    gdf = gpd.GeoDataFrame({"label": np.where(stripe % 2 == 0, "even", "odd")}, geometry=squares, crs="EPSG:32633")
    result = compare(raster, {"plain": emb, "holed": holed}, gdf, n_splits=4, block_size=100.0, points_per_class=None)
    np.testing.assert_allclose(result.table.loc[result.table["model"] != BASELINE, "accuracy_mean"], 1.0)
    assert result.dropped == int((cx + 6 <= 100).sum()) and result.dropped > 0
    assert (result.assignment["x"] > 94).all()
    # the buffer between shapes, by brute force: gaps between the kept squares' edges
    kept = result.assignment[["x", "y"]].to_numpy()
    order = [int(np.flatnonzero((np.abs(cx - px) < 1e-6) & (np.abs(cy - py) < 1e-6))[0]) for px, py in kept]
    x0, x1, y0, y1 = cx[order] - 6, cx[order] + 6, cy[order] - 6, cy[order] + 6
    gap = np.maximum(np.maximum(x0[:, None] - x1[None], x0[None] - x1[:, None]), np.maximum(y0[:, None] - y1[None], y0[None] - y1[:, None]))
    for split in [c for c in result.assignment.columns if c.startswith("split_")]:
        state = result.assignment[split].to_numpy()
        near_test = (gap[:, state == "test"] <= 10.0).any(axis=1)
        assert not (near_test & (state == "train")).any()
        assert near_test[state == "buffer"].all()


def test_a_grid_in_another_crs_is_sampled_on_its_own_grid(tiny_grid):
    """A product-like grid in lon/lat beside the UTM one: the same points, each sampled on its own grid."""
    raster, scl, emb = tiny_grid
    lonlat = emb.rio.reproject("EPSG:4326")
    result = compare(raster, {"utm": emb, "lonlat": lonlat}, scl, classes=SCL_CLASSES, points_per_class=30, n_splits=3)
    assert set(result.table["model"]) == {BASELINE, "utm", "lonlat"}
    assert np.isfinite(result.table["accuracy_mean"]).all() and result.table["n_points"].nunique() == 1
    # the buffer is the coarsest cell in the raster's metres: the lon/lat cells, converted
    lon_cell = max(abs(v) for v in lonlat.rio.resolution()) * 111_320.0
    assert result.settings["buffer"] == pytest.approx(max(lon_cell, 800.0))
