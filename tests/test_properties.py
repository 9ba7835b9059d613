"""Property tests (hypothesis) for invariants that hand-picked cases miss: tiling covers every output cell
exactly once, results do not depend on the chunking, grids round-trip through coordinates, and the pooled
vector is the valid-area-weighted mean of the grid. Expected values are computed here from first principles.
"""

from __future__ import annotations

import math

import numpy as np
import xarray as xr
from affine import Affine
from hypothesis import given, settings
from hypothesis import strategies as st
from pyproj import CRS

from xrembed import tiling
from xrembed.geo import Grid, assign_grid
from xrembed.models.registry import register_model
from xrembed.testing import TinyDOFA, synthetic_raster

# Runs of the model are the slow part: few examples there, more for the pure index arithmetic. No example
# database: nothing is written into the working tree, and a failure prints its reproducing example.
FAST = settings(max_examples=300, deadline=None, database=None)
GEO = settings(max_examples=100, deadline=None, database=None)
MODEL = settings(max_examples=8, deadline=None, database=None)
PATCH, TILE_PX = 8, 32  # dofa-tiny


@register_model
class MeanPooledTinyDOFA(TinyDOFA):
    """dofa-tiny whose pooling head is the identity, so its pooled vector is exactly the token mean."""

    model_id = "dofa-tiny-meanpool"
    title = "DOFA, tiny, identity pooling head (tests only)"

    def pool_tokens(self, module, mean_tokens, plan):
        return mean_tokens


# ------------------------------------------------------------------------------------------- tiling


def _owned(tokens: int, tile_tokens: int) -> np.ndarray:
    """How many tiles own each token (must be 1 everywhere)."""
    owners = np.zeros(tokens, int)
    for tile in tiling.tile_layout(tokens, tile_tokens):
        owners[tile.own_start : tile.own_stop] += 1
    return owners


@FAST
@given(pixels=st.integers(1, 5000), patch=st.integers(1, 32))
def test_token_count_is_the_ceiling(pixels, patch):
    tokens = tiling.token_count(pixels, patch)
    assert (tokens - 1) * patch < pixels <= tokens * patch


@FAST
@given(tokens=st.integers(1, 400), tile_tokens=st.integers(1, 40))
def test_each_token_is_owned_by_exactly_one_tile_whose_window_holds_it(tokens, tile_tokens):
    tiles = tiling.tile_layout(tokens, tile_tokens)
    assert (_owned(tokens, tile_tokens) == 1).all()
    assert [t.own_start for t in tiles] == sorted(t.own_start for t in tiles)
    for tile in tiles:
        # the tile reads [start, start + tile_tokens) and keeps a non-empty part of what it reads
        assert tile.start <= tile.own_start < tile.own_stop <= tile.start + tile_tokens
        assert tile.start >= 0
        if tokens >= tile_tokens:  # the window never reads past the raster's last token
            assert tile.start + tile_tokens <= tokens
        else:
            assert tile.start == 0
    # all but a shifted last tile sit on the lattice of multiples of tile_tokens
    assert all(t.start % tile_tokens == 0 for t in tiles[:-1])
    assert len(tiles) == max(1, math.ceil(tokens / tile_tokens))


@FAST
@given(pixels=st.integers(1, 6000), patch=st.integers(1, 16), tile_tokens=st.integers(1, 24),
       tiles_per_chunk=st.integers(1, 5))
def test_chunks_tile_themselves_as_the_whole_raster_would(pixels, patch, tile_tokens, tiles_per_chunk):
    tokens = tiling.token_count(pixels, patch)
    chunks = tiling.chunk_tokens(tokens, tile_tokens, tiles_per_chunk)
    assert sum(chunks) == tokens and all(c > 0 for c in chunks)
    starts = np.concatenate([[0], np.cumsum(chunks)[:-1]])
    # every chunk starts on the tile lattice, and holds at least a whole tile unless it is the only one
    assert all(s % tile_tokens == 0 for s in starts)
    assert len(chunks) == 1 or all(c >= tile_tokens for c in chunks)
    # each chunk laid out on its own gives exactly the tiles of the whole raster (shifted by its start)
    per_chunk = [
        (start + t.start, start + t.own_start, start + t.own_stop)
        for start, size in zip(starts, chunks)
        for t in tiling.tile_layout(size, tile_tokens)
    ]
    whole = [(t.start, t.own_start, t.own_stop) for t in tiling.tile_layout(tokens, tile_tokens)]
    assert per_chunk == whole
    # input chunks in pixels line up: same starts (in patches), they end at the raster's edge
    pixel = tiling.pixel_chunks(chunks, pixels, patch)
    assert sum(pixel) == pixels and all(p > 0 for p in pixel)
    assert [tiling.token_count(p, patch) for p in pixel] == list(chunks)
    assert list(np.cumsum(pixel)[:-1]) == [patch * int(s) for s in starts[1:]]


# ----------------------------------------------------------------------------------- chunk invariance


def _chunking(draw, height, width):
    return {"y": draw(st.integers(1, height)), "x": draw(st.integers(1, width)), "band": draw(st.sampled_from([1, 3, -1]))}


@MODEL
@given(data=st.data(), height=st.integers(5, 72), width=st.integers(5, 72), seed=st.integers(0, 2**16))
def test_two_random_chunkings_and_eager_agree(data, height, width, seed):
    raster = synthetic_raster((height, width), seed=seed)
    eager = raster.rsembed.embed("dofa-tiny", weights="random", input_prep="tile").values
    assert eager.shape == (32, math.ceil(height / PATCH), math.ceil(width / PATCH))
    for _ in range(2):
        chunks = _chunking(data.draw, height, width)
        per_chunk = data.draw(st.integers(1, 3))
        lazy = raster.chunk(chunks).rsembed.embed("dofa-tiny", weights="random", input_prep="tile",
                                                 tiles_per_chunk=per_chunk)
        np.testing.assert_allclose(lazy.compute().values, eager, atol=1e-5, err_msg=f"{chunks}, {per_chunk}")


# ------------------------------------------------------------------------------------------ transforms


# Projected origins stay out of the degree range: metre coordinates that look like degrees are refused.
coordinate = st.floats(1000, 5e6) | st.floats(-5e6, -1000)
resolution = st.floats(0.01, 5000)
PROJECTED = [CRS.from_epsg(32629), CRS.from_epsg(3857), CRS.from_epsg(32755)]
projected = st.tuples(coordinate, coordinate, resolution, resolution, st.sampled_from(PROJECTED))
# lon/lat grids: at most 60 cells of at most 0.1 degree, so they stay on the globe
geographic = st.tuples(st.floats(-180, 170), st.floats(-80, 90), st.floats(1e-5, 0.1), st.floats(1e-5, 0.1),
                       st.just(CRS.from_epsg(4326)))


@GEO
@given(place=projected | geographic, height=st.integers(1, 60), width=st.integers(1, 60))
def test_grid_round_trips_through_coordinates(place, height, width):
    x0, y0, res_x, res_y, crs = place
    grid = Grid((height, width), Affine(res_x, 0, x0, 0, -res_y, y0), crs)
    da = assign_grid(xr.DataArray(np.zeros((2, height, width), np.float32), dims=("embedding", "y", "x")), grid)
    tolerance = 1e-9 * max(abs(x0), abs(y0), res_x * width, res_y * height)
    for transform in (Grid.from_xarray(da).transform, da.rio.transform()):
        assert np.allclose(tuple(transform)[:6], tuple(grid.transform)[:6], rtol=1e-9, atol=tolerance)
    back = Grid.from_xarray(da)
    assert back.shape == (height, width) and back.crs == crs
    assert da.rio.crs == crs
    # pixel centres sit half a cell inside the outer edges
    np.testing.assert_allclose(da.x.values, x0 + (np.arange(width) + 0.5) * res_x, rtol=1e-12, atol=tolerance)
    np.testing.assert_allclose(da.y.values, y0 - (np.arange(height) + 0.5) * res_y, rtol=1e-12, atol=tolerance)


@FAST
@given(x0=coordinate, y0=coordinate, res=resolution, height=st.integers(1, 500), width=st.integers(1, 500),
       patch=st.integers(1, 32))
def test_zoom_out_cells_are_patch_blocks_from_the_origin(x0, y0, res, height, width, patch):
    grid = Grid((height, width), Affine(res, 0, x0, 0, -res, y0), CRS.from_epsg(32629))
    out = grid.zoom_out(patch)
    assert out.shape == (-(-height // patch), -(-width // patch))
    centres = out.coords()
    tolerance = 1e-9 * max(abs(x0), abs(y0), res * patch * max(height, width))
    np.testing.assert_allclose(centres["x"], x0 + (np.arange(out.shape[1]) + 0.5) * patch * res, atol=tolerance)
    np.testing.assert_allclose(centres["y"], y0 - (np.arange(out.shape[0]) + 0.5) * patch * res, atol=tolerance)
    # same top-left corner; the last cell reaches at most one patch less a pixel past the raster
    left, bottom, right, top = out.bounds
    assert math.isclose(left, x0, abs_tol=tolerance) and math.isclose(top, y0, abs_tol=tolerance)
    assert -tolerance <= right - (x0 + width * res) <= (patch - 1) * res + tolerance
    assert -tolerance <= (y0 - height * res) - bottom <= (patch - 1) * res + tolerance


# ------------------------------------------------------------------------------------------- pooling


def _valid_counts(values: np.ndarray, patch: int) -> np.ndarray:
    """Valid pixels (finite in every band) in each patch x patch cell, by explicit loops over cells."""
    valid = np.isfinite(values).all(axis=0)
    ny, nx = -(-valid.shape[0] // patch), -(-valid.shape[1] // patch)
    return np.array([[valid[i * patch : (i + 1) * patch, j * patch : (j + 1) * patch].sum() for j in range(nx)]
                     for i in range(ny)], dtype=np.float64)


@MODEL
@given(height=st.integers(5, 64), width=st.integers(5, 64), seed=st.integers(0, 2**16),
       holes=st.floats(0.0, 0.9), lazy=st.booleans())
def test_pooled_is_the_valid_area_weighted_mean_of_the_grid(height, width, seed, holes, lazy):
    raster = synthetic_raster((height, width), seed=seed)
    rng = np.random.default_rng(seed)
    values = raster.values.copy()
    values[rng.random(values.shape) < holes / values.shape[0]] = np.nan  # one band missing invalidates a pixel
    values[:, rng.random((height, width)) < holes] = np.nan
    values[:, 0, 0] = raster.values[:, 0, 0]  # at least one valid pixel
    raster = raster.copy(data=values)
    if lazy:
        raster = raster.chunk({"y": 24, "x": 40})
    kwargs = {"weights": "random", "input_prep": "tile"}
    grid = raster.rsembed.embed("dofa-tiny-meanpool", output="grid", **kwargs).values.astype(np.float64)
    pooled = raster.rsembed.embed("dofa-tiny-meanpool", output="pooled", **kwargs).values
    counts = _valid_counts(values, PATCH)
    assert np.isnan(grid[:, counts == 0]).all() and np.isfinite(grid[:, counts > 0]).all()
    expected = (grid[:, counts > 0] * counts[counts > 0]).sum(axis=1) / counts.sum()
    np.testing.assert_allclose(pooled, expected, rtol=1e-5, atol=1e-6)
