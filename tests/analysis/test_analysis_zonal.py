"""emb.rsembed.zonal: exact area weights (partial cells, holes, multipolygons, tiny polygons), NaN handling,
exact roll-up, chunk invariance with only touched chunks read, reprojection, and real SCL polygons.

Expected values come from hand-computed rectangle overlaps or a fine supersampling of each cell, never from
the code under test."""

from __future__ import annotations

import dask.array as dsa
import geopandas as gpd
import numpy as np
import pytest
import rasterio
import shapely
import xarray as xr
from affine import Affine
from pyproj import Transformer
from rasterio import features

import xrembed
from xrembed.analysis.zonal import coverage_areas, zonal_sums
from xrembed.errors import MissingCRSError, OptionError, XrembedError

RES = 10.0
X0, Y0 = 500_000.0, 4_200_000.0


def grid_emb(values: np.ndarray, chunks=None) -> xr.DataArray:
    """(D, h, w) values on a 10 m UTM grid with its top-left corner at (X0, Y0)."""
    depth, height, width = values.shape
    da = xr.DataArray(
        values,
        dims=("embedding", "y", "x"),
        coords={"embedding": np.arange(depth), "y": Y0 - RES * (np.arange(height) + 0.5), "x": X0 + RES * (np.arange(width) + 0.5)},
    ).rio.write_crs("EPSG:32629")
    return da.chunk({"embedding": -1, "y": chunks[0], "x": chunks[1]}) if chunks else da


def rect(c0, r0, c1, r1):
    """A box from pixel-space corners (col, row), rows counted down from the top edge."""
    return shapely.box(X0 + c0 * RES, Y0 - r1 * RES, X0 + c1 * RES, Y0 - r0 * RES)


def rect_weights(shape, c0, r0, c1, r1) -> np.ndarray:
    """Hand-computed overlap area of a pixel-space rectangle with each cell (1-D overlaps multiplied)."""
    height, width = shape
    rows = np.clip(np.minimum(np.arange(height) + 1, r1) - np.maximum(np.arange(height), r0), 0, None)
    cols = np.clip(np.minimum(np.arange(width) + 1, c1) - np.maximum(np.arange(width), c0), 0, None)
    return np.outer(rows, cols) * RES * RES


def expected(values: np.ndarray, weights: np.ndarray) -> dict:
    valid = np.isfinite(values).all(axis=0)
    w = np.where(valid, weights, 0.0)
    v = np.where(valid, values, 0.0)
    area = w.sum()
    mean = (v * w).sum(axis=(1, 2)) / area
    unit = v / np.linalg.norm(v, axis=0).clip(1e-300)
    resultant = np.linalg.norm((unit * w).sum(axis=(1, 2)) / area)
    return {"area": area, "cells": int((w > 0).sum()), "mean": mean, "resultant": resultant}


def check_row(row, exp, depth, rtol=1e-9):
    assert row["area"] == pytest.approx(exp["area"], rel=rtol)
    assert row["cells"] == exp["cells"]
    mean = row[[f"e{i:03d}" for i in range(depth)]].to_numpy(float)
    np.testing.assert_allclose(mean, exp["mean"], rtol=rtol, atol=1e-12)
    direction = row[[f"d{i:03d}" for i in range(depth)]].to_numpy(float)
    np.testing.assert_allclose(direction, exp["mean"] / np.linalg.norm(exp["mean"]), rtol=rtol, atol=1e-12)
    assert row["resultant_length"] == pytest.approx(exp["resultant"], rel=rtol)
    assert row["coverage"] == pytest.approx(exp["area"] / RES**2, rel=rtol)


@pytest.fixture
def values():
    return np.random.default_rng(3).normal(size=(5, 12, 14))


def test_partial_cells_weighted_by_intersection_area(values):
    emb = grid_emb(values)
    corners = [(0.3, 0.25, 4.6, 3.1), (2.0, 1.0, 5.0, 4.0), (6.75, 2.5, 13.2, 11.9)]
    result = emb.rsembed.zonal([rect(*c) for c in corners])
    assert len(result) == len(corners)
    for (_, row), c in zip(result.iterrows(), corners):
        check_row(row, expected(values, rect_weights(values.shape[1:], *c)), values.shape[0])


def test_coverage_of_a_triangle_matches_supersampling():
    transform = Affine(RES, 0, X0, 0, -RES, Y0)
    triangle = shapely.Polygon([(X0 + 3, Y0 - 2), (X0 + 71, Y0 - 15), (X0 + 20, Y0 - 58)])
    got = coverage_areas(triangle, transform, (7, 8))
    n = 200  # sub-cells per side: the supersampled area is good to ~1e-2 of a cell
    sub = (np.arange(7 * n) + 0.5) / n, (np.arange(8 * n) + 0.5) / n
    rows, cols = np.meshgrid(*sub, indexing="ij")
    xs, ys = transform * (cols, rows)
    inside = shapely.contains_xy(triangle, xs, ys).reshape(7, n, 8, n).sum(axis=(1, 3)) / n**2 * RES**2
    np.testing.assert_allclose(got, inside, atol=0.5)
    assert got.sum() == pytest.approx(triangle.area, rel=1e-10)


def test_hole_is_left_out(values):
    outer, hole = (1.5, 1.5, 10.5, 9.25), (3.0, 3.0, 7.5, 6.0)
    donut = rect(*outer).difference(rect(*hole))
    assert len(donut.interiors) == 1
    weights = rect_weights(values.shape[1:], *outer) - rect_weights(values.shape[1:], *hole)
    row = grid_emb(values).rsembed.zonal([donut]).iloc[0]
    check_row(row, expected(values, weights), values.shape[0])


def test_multipolygon_is_both_parts(values):
    a, b = (0.5, 0.5, 2.5, 3.0), (9.2, 7.0, 13.0, 11.5)
    multi = shapely.MultiPolygon([rect(*a), rect(*b)])
    weights = rect_weights(values.shape[1:], *a) + rect_weights(values.shape[1:], *b)
    check_row(grid_emb(values).rsembed.zonal([multi]).iloc[0], expected(values, weights), values.shape[0])


def test_polygon_inside_one_cell_is_that_cell(values):
    tiny = shapely.Point(X0 + 4 * RES + 3.0, Y0 - 6 * RES - 4.0).buffer(1.5)
    row = grid_emb(values).rsembed.zonal([tiny]).iloc[0]
    assert row["cells"] == 1 and row["area"] == pytest.approx(tiny.area, rel=1e-12)
    mean = row[[f"e{i:03d}" for i in range(5)]].to_numpy(float)
    np.testing.assert_allclose(mean, values[:, 6, 4], rtol=1e-12)
    assert row["resultant_length"] == pytest.approx(1.0)


def test_nan_cells_count_for_nothing(values):
    values = values.copy()
    values[:, 0:4, 0:5] = np.nan  # a nodata corner
    emb = grid_emb(values)
    only_nan, partly = (0.5, 0.5, 4.5, 3.5), (2.0, 2.0, 8.0, 6.0)
    result = emb.rsembed.zonal([rect(*only_nan), rect(*partly)])
    nan_row = result.iloc[0]
    assert nan_row["area"] == 0 and nan_row["cells"] == 0
    assert np.isnan(nan_row[["e000", "d000", "resultant_length"]].to_numpy(float)).all()
    check_row(result.iloc[1], expected(values, rect_weights(values.shape[1:], *partly)), 5)


def test_polygon_off_the_raster_is_an_empty_row(values):
    row = grid_emb(values).rsembed.zonal([rect(20, 20, 25, 25)]).iloc[0]
    assert row["area"] == 0 and np.isnan(row["e000"])


def test_resultant_length_of_opposite_and_equal_vectors():
    values = np.zeros((2, 1, 4))
    values[:, 0, 0], values[:, 0, 1] = (1.0, 0.0), (-2.0, 0.0)  # opposite directions
    values[:, 0, 2], values[:, 0, 3] = (0.0, 1.0), (0.0, 3.0)  # one direction, two lengths
    emb = grid_emb(values)
    result = emb.rsembed.zonal([rect(0, 0, 2, 1), rect(2, 0, 4, 1)])
    assert result.iloc[0]["resultant_length"] == pytest.approx(0.0, abs=1e-12)
    assert result.iloc[1]["resultant_length"] == pytest.approx(1.0)
    assert result.iloc[1][["d000", "d001"]].tolist() == pytest.approx([0.0, 1.0])


def test_std_is_the_area_weighted_spread(values):
    c = (0.5, 0.5, 6.5, 4.0)
    weights = rect_weights(values.shape[1:], *c)
    row = grid_emb(values).rsembed.zonal([rect(*c)], stats=("mean", "std")).iloc[0]
    mean = (values * weights).sum(axis=(1, 2)) / weights.sum()
    std = np.sqrt((((values - mean[:, None, None]) ** 2) * weights).sum(axis=(1, 2)) / weights.sum())
    np.testing.assert_allclose(row[[f"s{i:03d}" for i in range(5)]].to_numpy(float), std, rtol=1e-9)


def test_rollup_of_parts_equals_the_whole(values):
    left, right, whole = rect(1.2, 0.7, 6.4, 9.9), rect(6.4, 0.7, 12.6, 9.9), rect(1.2, 0.7, 12.6, 9.9)
    emb = grid_emb(values, chunks=(5, 4))
    rolled = emb.rsembed.zonal([left, right], by=["field", "field"]).iloc[0]
    direct = emb.rsembed.zonal([whole]).iloc[0]
    assert rolled["cells"] == direct["cells"] + 10  # the 10 cells cut by x = 6.4 are in both halves
    np.testing.assert_allclose(rolled.drop("cells").to_numpy(float), direct.drop("cells").to_numpy(float), rtol=1e-12)
    # the same through the public sums: zonal_sums(...).rollup(keys)
    sums = zonal_sums(emb, [left, right, whole])
    merged = sums.rollup(["halves", "halves", "whole"]).to_frame()
    np.testing.assert_allclose(merged.loc["halves", "e000":].to_numpy(float), merged.loc["whole", "e000":].to_numpy(float), rtol=1e-12)
    # by= a column of a GeoDataFrame: one row per key
    gdf = gpd.GeoDataFrame({"farm": ["a", "b", "a"]}, geometry=[left, whole, right], crs="EPSG:32629")
    by_farm = emb.rsembed.zonal(gdf, by="farm")
    assert list(by_farm.index) == ["a", "b"]
    np.testing.assert_allclose(by_farm.loc["a", "e000"], by_farm.loc["b", "e000"], rtol=1e-12)


def test_chunk_invariant_and_only_touched_chunks_are_read(values):
    polygons = [rect(0.3, 0.25, 4.6, 3.1), rect(6.75, 2.5, 13.2, 11.9), rect(2, 5, 9, 8).buffer(3.0)]
    eager = grid_emb(values).rsembed.zonal(polygons)
    for chunks in ((12, 14), (5, 4), (1, 3), (7, 13)):
        lazy = grid_emb(values, chunks=chunks).rsembed.zonal(polygons)
        np.testing.assert_allclose(lazy.to_numpy(float), eager.to_numpy(float), rtol=1e-10)

    # a lazy raster whose lower-right chunk fails when read: polygons elsewhere never touch it
    def block(block_info=None):
        (_, _), (r0, _), (c0, _) = block_info[None]["array-location"]
        if r0 >= 6 and c0 >= 7:
            raise RuntimeError("this chunk must not be read")
        return values[:, r0:r0 + 6, c0:c0 + 7]

    lazy = dsa.map_blocks(block, chunks=((5,), (6, 6), (7, 7)), dtype=float, meta=np.array((), dtype=float))
    emb = grid_emb(values).copy(data=lazy)
    assert lazy.npartitions == 4
    got = emb.rsembed.zonal([rect(0.3, 0.25, 4.6, 3.1), rect(8, 1, 13, 5.5)])
    check_row(got.iloc[1], expected(values, rect_weights(values.shape[1:], 8, 1, 13, 5.5)), 5)


def test_polygons_in_another_crs_are_reprojected(values):
    emb = grid_emb(values)
    utm = [rect(0.3, 0.25, 4.6, 3.1), rect(6.75, 2.5, 13.2, 11.9)]
    to_lonlat = Transformer.from_crs("EPSG:32629", "EPSG:4326", always_xy=True)
    lonlat = [shapely.Polygon(np.column_stack(to_lonlat.transform(*np.asarray(p.exterior.coords).T))) for p in utm]
    got = emb.rsembed.zonal(gpd.GeoDataFrame({"name": ["a", "b"]}, geometry=lonlat, crs="EPSG:4326"))
    want = emb.rsembed.zonal(utm)
    assert isinstance(got, gpd.GeoDataFrame) and got.crs.to_epsg() == 4326 and list(got["name"]) == ["a", "b"]
    np.testing.assert_allclose(got[want.columns].to_numpy(float), want.to_numpy(float), rtol=1e-6)
    # shapely geometries with crs= go the same way
    np.testing.assert_allclose(emb.rsembed.zonal(lonlat, crs="EPSG:4326").to_numpy(float), want.to_numpy(float), rtol=1e-6)


def test_errors_name_the_fix(values):
    emb = grid_emb(values)
    with pytest.raises(OptionError, match="stats="):
        emb.rsembed.zonal([rect(0, 0, 1, 1)], stats=("median",))
    with pytest.raises(MissingCRSError, match="set_crs"):
        emb.rsembed.zonal(gpd.GeoDataFrame(geometry=[rect(0, 0, 1, 1)]))
    with pytest.raises(OptionError, match="isel"):
        emb.expand_dims(time=2).rsembed.zonal([rect(0, 0, 1, 1)])
    with pytest.raises(OptionError, match="GeoDataFrame"):
        emb.rsembed.zonal("not polygons")


def test_missing_shapely_names_the_extra(values, monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "shapely", None)
    with pytest.raises(XrembedError, match=r'pip install "xrembed\[analysis\]"'):
        coverage_areas(None, Affine(RES, 0, X0, 0, -RES, Y0), (2, 2))


def test_real_scl_polygons(s2_scene):
    """Cloud and thin-cirrus regions vectorised from the scene's SCL: zonal means of each class's indicator
    over its own polygons are 1, over the other class's 0, and the areas are the pixel counts x 200 m x 200 m."""
    with rasterio.open(s2_scene / "SCL.tif") as src:
        scl, transform = src.read(1)[:160, 360:], src.transform * Affine.translation(360, 0)
    classes = {"cloud": np.isin(scl, (8, 9)), "cirrus": scl == 10, "bare": scl == 5}
    shapes = [
        (name, shapely.geometry.shape(geom))
        for name in ("cloud", "cirrus")
        for geom, value in features.shapes(classes[name].astype("uint8"), mask=classes[name], transform=transform)
    ]
    gdf = gpd.GeoDataFrame({"cls": [n for n, _ in shapes]}, geometry=[g for _, g in shapes], crs="EPSG:32629")
    indicators = np.stack([classes[n].astype("float64") for n in ("cloud", "cirrus", "bare")])
    height, width = scl.shape
    emb = xr.DataArray(
        indicators,
        dims=("band", "y", "x"),
        coords={
            "band": ["cloud", "cirrus", "bare"],
            "y": transform.f + transform.e * (np.arange(height) + 0.5),
            "x": transform.c + transform.a * (np.arange(width) + 0.5),
        },
    ).rio.write_crs("EPSG:32629").chunk({"y": 64, "x": 64})
    rows = emb.rsembed.zonal(gdf, by="cls")
    assert rows.loc["cloud", "area"] == pytest.approx(classes["cloud"].sum() * 200.0**2)
    assert rows.loc["cirrus", "area"] == pytest.approx(classes["cirrus"].sum() * 200.0**2)
    assert rows.loc["cloud", "cloud"] == pytest.approx(1.0) and rows.loc["cloud", "cirrus"] == pytest.approx(0.0)
    assert rows.loc["cirrus", "cirrus"] == pytest.approx(1.0) and rows.loc["cirrus", "bare"] == pytest.approx(0.0)
    # the same polygons over a lazy random-weight embedding of the real scene: one row per polygon, finite
    da = xrembed.open_raster(s2_scene).isel(y=slice(0, 320), x=slice(720, 1040))
    vectors = da.rsembed.embed("dofa-tiny", weights="random").rsembed.zonal(gdf)
    assert len(vectors) == len(gdf) and isinstance(vectors, gpd.GeoDataFrame)
    inside = vectors["area"] > 0
    assert inside.sum() >= len(gdf) // 2 and np.isfinite(vectors.loc[inside, "e000"]).all()


def test_a_dataset_is_read_through_its_embeddings_variable(values):
    emb = grid_emb(values)
    polygons = [rect(0.3, 0.25, 4.6, 3.1)]
    got = emb.to_dataset(name="embeddings").rsembed.zonal(polygons)
    np.testing.assert_array_equal(got.to_numpy(float), emb.rsembed.zonal(polygons).to_numpy(float))


def test_large_zones_are_summed_in_batches(values, monkeypatch):
    """A zone bigger than one float64 batch gives the same sums as in one go."""
    import xrembed.analysis.zonal as zonal_module

    polygons = [rect(0.3, 0.25, 13.6, 11.1)]
    whole = grid_emb(values).rsembed.zonal(polygons, stats=("mean", "std"))
    monkeypatch.setattr(zonal_module, "_BATCH_VALUES", 7)  # 7 // 5 components: one cell per batch
    batched = grid_emb(values).rsembed.zonal(polygons, stats=("mean", "std"))
    np.testing.assert_allclose(batched.to_numpy(float), whole.to_numpy(float), rtol=1e-12)
    check_row(batched.iloc[0], expected(values, rect_weights(values.shape[1:], 0.3, 0.25, 13.6, 11.1)), 5)


from hypothesis import given, settings, strategies as st  # noqa: E402

_corner = st.floats(-3.0, 17.0, allow_nan=False)


@settings(max_examples=30, deadline=None)
@given(c0=_corner, c1=_corner, r0=_corner, r1=_corner, chunk_y=st.integers(1, 12), chunk_x=st.integers(1, 14))
def test_any_rectangle_any_chunking(c0, c1, r0, r1, chunk_y, chunk_x):
    """Rectangles anywhere (also partly or wholly off the grid), any chunking: the hand-computed overlaps."""
    c0, c1, r0, r1 = min(c0, c1), max(c0, c1) + 0.05, min(r0, r1), max(r0, r1) + 0.05
    values = np.random.default_rng(7).normal(size=(3, 12, 14))
    row = grid_emb(values, chunks=(chunk_y, chunk_x)).rsembed.zonal([rect(c0, r0, c1, r1)]).iloc[0]
    weights = rect_weights(values.shape[1:], c0, r0, c1, r1)
    if weights.sum() == 0:
        assert row["area"] == 0 and row["cells"] == 0 and np.isnan(row["e000"])
    else:
        check_row(row, expected(values, weights), 3, rtol=1e-8)


def test_polygons_over_many_chunks_in_threads():
    """Big polygons shared by many chunks, computed by dask's threads: the same as eager, no crash (one
    shapely geometry prepared by two threads at once used to crash GEOS) and no rasterio warning."""
    import warnings

    from rasterio.errors import NotGeoreferencedWarning

    values = np.random.default_rng(0).normal(size=(5, 120, 140))
    emb = grid_emb(values)
    polygons = [shapely.Point(X0 + 500 + 3 * i, Y0 - 500 - 2 * i).buffer(300, quad_segs=8) for i in range(30)]
    eager = emb.rsembed.zonal(polygons).to_numpy(float)
    with warnings.catch_warnings():
        warnings.simplefilter("error", NotGeoreferencedWarning)
        for _ in range(2):
            lazy = emb.chunk({"y": 7, "x": 9}).rsembed.zonal(polygons).to_numpy(float)
            np.testing.assert_allclose(lazy, eager, rtol=1e-10)
