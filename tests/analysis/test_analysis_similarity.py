"""emb.rsembed.similarity(query, negatives=None): lazy cosine maps for vector, point, points, polygon and text
queries; expected values are computed here with numpy (and shapely for which cells a polygon holds)."""

from __future__ import annotations

import sys
import types

import geopandas as gpd
import numpy as np
import pytest
import shapely
from pyproj import Transformer

import xrembed  # noqa: F401
from xrembed import errors
from xrembed.analysis import query_vector

from analysis_raster_helpers import ORIGIN, RESOLUTION, counting, make_grid, unit

NAN_CELLS = [(1, 1), (20, 3)]


def _cosine_map(emb, vector):
    cells = emb.transpose("y", "x", "embedding").values.astype(np.float64)
    return np.einsum("yxd,d->yx", unit(cells), unit(vector))


def _centre(emb, row, col):
    return float(emb.x.values[col]), float(emb.y.values[row])


def _lonlat(x, y):
    return Transformer.from_crs("EPSG:32629", "EPSG:4326", always_xy=True).transform(x, y)


def test_a_cell_is_most_similar_to_itself_lonlat_and_crs_xy():
    emb = make_grid(nan_cells=NAN_CELLS, chunks={"y": 7, "x": 9})
    x, y = _centre(emb, 12, 17)
    by_xy = emb.rsembed.similarity((x + 30.0, y - 50.0), crs=emb.rio.crs)  # anywhere inside the cell
    assert by_xy.chunks is not None and by_xy.dims == ("y", "x")
    values = by_xy.values
    assert values[12, 17] == pytest.approx(1.0, abs=1e-6)
    assert np.nanmax(values) == pytest.approx(1.0, abs=1e-6)
    by_lonlat = emb.rsembed.similarity(_lonlat(x, y)).values
    np.testing.assert_allclose(by_lonlat, values, atol=1e-6, equal_nan=True)
    np.testing.assert_allclose(values, _cosine_map(emb, emb.values[:, 12, 17]), atol=1e-5, equal_nan=True)
    assert by_xy.rio.crs == emb.rio.crs and by_xy.rio.transform() == emb.rio.transform()
    assert sorted(zip(*np.nonzero(np.isnan(values)))) == NAN_CELLS  # NaN stays NaN, nothing else is NaN


def test_a_vector_query_and_chunk_invariance():
    emb = make_grid(nan_cells=NAN_CELLS)
    vector = np.random.default_rng(3).normal(size=8)
    eager = emb.rsembed.similarity(vector).values
    np.testing.assert_allclose(eager, _cosine_map(emb, vector), atol=1e-6, equal_nan=True)
    for chunks in ({"y": 5, "x": 30}, {"y": 24, "x": 4, "embedding": 3}):
        np.testing.assert_allclose(emb.chunk(chunks).rsembed.similarity(vector).values, eager, atol=1e-6, equal_nan=True)


def test_several_points_with_negatives():
    emb = make_grid()
    pos = [(3, 4), (10, 20), (22, 2)]
    neg = [(15, 15), (0, 29)]
    query = [_lonlat(*_centre(emb, r, c)) for r, c in pos]
    negatives = [_lonlat(*_centre(emb, r, c)) for r, c in neg]
    out = emb.rsembed.similarity(query, negatives=negatives).values
    mean_pos = unit(np.stack([emb.values[:, r, c] for r, c in pos])).mean(axis=0)
    mean_neg = unit(np.stack([emb.values[:, r, c] for r, c in neg])).mean(axis=0)
    np.testing.assert_allclose(out, _cosine_map(emb, 2 * mean_pos - mean_neg), atol=1e-5)


def test_a_polygon_in_another_crs_is_reprojected_and_averaged_over_its_cells():
    emb = make_grid(nan_cells=[(5, 5)])
    # a UTM box over rows 4..7 and columns 3..8 (cell centres strictly inside), including the NaN cell (5, 5)
    box = shapely.box(ORIGIN[0] + 3 * RESOLUTION + 1, ORIGIN[1] - 8 * RESOLUTION + 1,
                      ORIGIN[0] + 9 * RESOLUTION - 1, ORIGIN[1] - 4 * RESOLUTION - 1)
    frame = gpd.GeoDataFrame(geometry=[box], crs="EPSG:32629").to_crs("EPSG:4326")
    out = emb.rsembed.similarity(frame).values
    xx, yy = np.meshgrid(emb.x.values, emb.y.values)
    inside = shapely.contains_xy(frame.to_crs("EPSG:32629").geometry[0], xx, yy)
    assert inside.sum() == 4 * 6
    cells = emb.transpose("y", "x", "embedding").values[inside]
    cells = cells[np.isfinite(cells).all(axis=1)]
    assert cells.shape[0] == 23  # the NaN cell drops out
    np.testing.assert_allclose(out, _cosine_map(emb, unit(cells).mean(axis=0)), atol=1e-5, equal_nan=True)


def test_a_polygon_inside_one_cell_takes_that_cell():
    emb = make_grid()
    x, y = _centre(emb, 9, 9)
    tiny = shapely.box(x - 10, y - 10, x + 10, y + 10)
    out = emb.rsembed.similarity(tiny, crs="EPSG:32629").values
    assert out[9, 9] == pytest.approx(1.0, abs=1e-6)


def test_text_queries_go_through_xrembed_text(monkeypatch):
    emb = make_grid()
    seen = {}

    def fake_query_vector(grid, text):
        seen["text"] = text
        return np.arange(8, dtype=float) - 3.5

    fake = types.ModuleType("xrembed.text")
    fake.query_vector = fake_query_vector
    monkeypatch.setitem(sys.modules, "xrembed.text", fake)
    out = emb.rsembed.similarity("a harbour").values
    assert seen["text"] == "a harbour"
    np.testing.assert_allclose(out, _cosine_map(emb, np.arange(8) - 3.5), atol=1e-6)


def test_errors_outside_nan_wrong_length_and_cancelling():
    emb = make_grid(nan_cells=NAN_CELLS)
    with pytest.raises(errors.NoDataInBoundsError, match="outside the raster.*crs=emb.rio.crs"):
        emb.rsembed.similarity((0.0, 0.0))
    with pytest.raises(errors.NoDataInBoundsError, match="outside the raster"):
        emb.rsembed.similarity((ORIGIN[0] - 5.0, ORIGIN[1] - 5.0), crs=emb.rio.crs)
    far = gpd.GeoDataFrame(geometry=[shapely.box(0, 0, 1, 1)], crs="EPSG:4326")
    with pytest.raises(errors.NoDataInBoundsError, match="polygon 0"):
        emb.rsembed.similarity(far)
    with pytest.raises(errors.NoDataInBoundsError, match="no data"):
        emb.rsembed.similarity(_centre(emb, *NAN_CELLS[0]), crs=emb.rio.crs)
    with pytest.raises(errors.OptionError, match="length 8"):
        emb.rsembed.similarity(np.ones(5))
    with pytest.raises(errors.OptionError, match="no CRS"):
        emb.rsembed.similarity(gpd.GeoDataFrame(geometry=[shapely.Point(ORIGIN[0] + 100, ORIGIN[1] - 100)]))
    vector = emb.values[:, 4, 4]
    with pytest.raises(errors.OptionError, match="no direction"):
        emb.rsembed.similarity(np.stack([vector, -vector]))  # opposite examples average to zero
    with pytest.raises(errors.OptionError, match="no direction"):
        emb.rsembed.similarity(np.zeros(8))


def test_query_vector_is_the_mean_unit_vector():
    emb = make_grid()
    vectors = np.stack([emb.values[:, 2, 3], emb.values[:, 7, 1]])
    np.testing.assert_allclose(query_vector(emb, vectors), unit(vectors).mean(axis=0))


def test_many_places_read_each_chunk_once_and_only_those_under_them():
    emb = make_grid(shape=(40, 40), chunks={"y": 10, "x": 10})  # 16 chunks
    watched, seen = counting(emb)
    cell = RESOLUTION
    places = [shapely.Point(ORIGIN[0] + (2 + i) * cell, ORIGIN[1] - 3 * cell) for i in range(5)]  # chunk (0, 0)
    places += [shapely.box(ORIGIN[0] + 12 * cell, ORIGIN[1] - 8 * cell, ORIGIN[0] + 18 * cell, ORIGIN[1] - 2 * cell)]
    places += [shapely.box(ORIGIN[0] + 3 * cell, ORIGIN[1] - 9 * cell, ORIGIN[0] + 9 * cell, ORIGIN[1] - 1 * cell)]
    frame = gpd.GeoDataFrame(geometry=places, crs="EPSG:32629")
    vector = query_vector(watched, frame)
    assert sorted(seen) == [(0, 0, 0), (0, 0, 1)]  # two chunks, each computed once
    np.testing.assert_allclose(vector, query_vector(emb.compute(), frame))


def test_geoseries_and_multipoint_equal_the_same_points_as_tuples():
    emb = make_grid()
    cells = [(3, 4), (10, 20)]
    lonlat = [_lonlat(*_centre(emb, r, c)) for r, c in cells]
    expected = emb.rsembed.similarity(lonlat).values
    series = gpd.GeoSeries([shapely.Point(p) for p in lonlat], crs="EPSG:4326")
    np.testing.assert_allclose(emb.rsembed.similarity(series).values, expected, atol=1e-6)
    multi = shapely.MultiPoint([_centre(emb, r, c) for r, c in cells])
    np.testing.assert_allclose(emb.rsembed.similarity(multi, crs="EPSG:32629").values, expected, atol=1e-6)
    with pytest.raises(errors.OptionError, match="LineString"):
        emb.rsembed.similarity(shapely.LineString(lonlat))
