"""``InputPrepSpec.tile(tile_stride=...)`` below the tile size: overlapping tiles on the global lattice, each output
cell from the tile whose centre is nearest; chunk-invariant; through get_embedding and export_batch.

The expected value of every cell is computed here independently: all tiles of the stride lattice are listed
by brute force, the nearest-centre one is picked, and that tile's pixels are embedded alone.
"""

from __future__ import annotations

import numpy as np
import pytest
from pyproj import Transformer

import xrembed
from xrembed import InputPrepSpec, OutputSpec, PointBuffer, errors
from xrembed.overlap import embed_overlapping
from xrembed.testing import synthetic_raster

MODEL = "dofa-tiny"  # patch 8 px, tiles of 32 px = 4 patches
TINY = {"weights": "random"}
PATCH, TILE = 8, 4


def nearest_tile_starts(tokens: int, stride: int = 2) -> list[int]:
    """Per cell, the start (in patches) of the tile of the stride lattice whose centre is nearest."""
    if tokens <= TILE:
        return [0] * tokens
    starts = sorted({k * stride for k in range(tokens) if k * stride + TILE <= tokens} | {tokens - TILE})
    out = []
    for cell in range(tokens):
        holding = [s for s in starts if s <= cell < s + TILE]
        out.append(min(holding, key=lambda s: (abs(cell + 0.5 - (s + TILE / 2)), s)))
    return out


def test_each_cell_comes_from_its_nearest_centre_tile():
    da = synthetic_raster((80, 74))  # 10 x 10 patches, the last column of patches partial
    grid = embed_overlapping(da, MODEL, tile_stride=16, **TINY)
    assert grid.dims == ("embedding", "y", "x") and grid.shape == (32, 10, 10)
    plain = da.rsembed.embed(MODEL, **TINY)
    assert grid.rio.crs == plain.rio.crs and grid.rio.transform() == plain.rio.transform()
    np.testing.assert_allclose(grid.x.values, plain.x.values)
    rows, cols = nearest_tile_starts(10), nearest_tile_starts(10)
    assert set(rows) == {0, 2, 4, 6}  # overlapping tiles are really used
    values = grid.values
    cache = {}
    for cy in range(10):
        for cx in range(10):
            sy, sx = rows[cy], cols[cx]
            if (sy, sx) not in cache:  # the tile alone: its own pixels (26 px at the right edge), one forward
                window = da.isel(y=slice(sy * PATCH, sy * PATCH + 32), x=slice(sx * PATCH, sx * PATCH + 32))
                cache[(sy, sx)] = window.rsembed.embed(MODEL, **TINY).values
            np.testing.assert_allclose(values[:, cy, cx], cache[(sy, sx)][:, cy - sy, cx - sx], atol=1e-5)
    assert not np.allclose(values, plain.values, atol=1e-3)  # not the abutting tiles' grid


def test_overlapping_tiles_are_chunk_invariant_and_lazy():
    da = synthetic_raster((96, 88))
    eager = embed_overlapping(da, MODEL, tile_stride=8, **TINY)  # stride of one patch: four offsets per axis
    for chunks in ({"y": 40, "x": 24}, {"y": 96, "x": 32}, {"y": 17, "x": 88}):
        lazy = embed_overlapping(da.chunk(chunks), MODEL, tile_stride=8, **TINY)
        assert lazy.chunks is not None  # a graph, not values
        np.testing.assert_allclose(lazy.values, eager.values, atol=1e-5)


def test_nan_cells_stay_nan_with_overlap():
    da = synthetic_raster((64, 64))
    da[:, :16, :16] = np.nan  # a 2 x 2 patch block with no data
    grid = embed_overlapping(da, MODEL, tile_stride=16, **TINY).values
    assert np.isnan(grid[:, :2, :2]).all() and np.isfinite(grid[:, 2:, :]).all() and np.isfinite(grid[:, :, 2:]).all()


_LON, _LAT = Transformer.from_crs("EPSG:32629", "EPSG:4326", always_xy=True).transform(222380.0, 2777620.0)


def test_get_embedding_and_export_honour_tile_stride(tmp_path):
    pb = PointBuffer(_LON, _LAT, 4000)  # 80 x 80 px of the bundled sample
    prep = InputPrepSpec.tile(tile_size=32, tile_stride=16)
    emb = xrembed.get_embedding(MODEL, spatial=pb, source=xrembed.sample_path(), output=OutputSpec.grid(),
                                input_prep=prep, **TINY)
    opened = xrembed.requests.crop_to(xrembed.open_raster(xrembed.sample_path()), pb)
    expected = embed_overlapping(opened, MODEL, tile_stride=16, **TINY)
    np.testing.assert_allclose(emb.data.values, expected.values, atol=1e-5)
    assert emb.data.attrs["tile_stride"] == 16
    target = xrembed.ExportTarget.combined(tmp_path / "run.zarr")
    common = {"spatials": [pb], "temporal": None, "target": target, "source": xrembed.sample_path(),
              "output": OutputSpec.grid(), "models": [xrembed.ExportModelRequest.configure(MODEL, **TINY)]}
    xrembed.export_batch(input_prep=prep, config=xrembed.ExportConfig(show_progress=False), **common)
    (saved,) = xrembed.load_export(target.out_file).embedding(MODEL)
    np.testing.assert_allclose(saved.values, expected.values, atol=1e-5)
    # the same stride given per model
    per_model = {**common, "target": xrembed.ExportTarget.combined(tmp_path / "per_model.zarr"),
                 "models": [xrembed.ExportModelRequest.configure(MODEL, input_prep=prep, **TINY)]}
    xrembed.export_batch(config=xrembed.ExportConfig(show_progress=False), **per_model)
    (saved,) = xrembed.load_export(tmp_path / "per_model.zarr").embedding(MODEL)
    np.testing.assert_allclose(saved.values, expected.values, atol=1e-5)
    # resume: an abutting-tile request is another request (its fingerprint holds the stride)
    xrembed.export_batch(input_prep="tile", config=xrembed.ExportConfig(resume=True, show_progress=False), **common)
    (redone,) = xrembed.load_export(target.out_file).embedding(MODEL)
    assert not np.allclose(redone.values, expected.values, atol=1e-3)


def test_bad_strides_are_refused_with_the_reason():
    pb = PointBuffer(_LON, _LAT, 1600)
    with pytest.raises(errors.OptionError, match=r"pass a stride in \[8, 16\]"):
        xrembed.get_embedding(MODEL, spatial=pb, source=xrembed.sample_path(), output=OutputSpec.grid(),
                              input_prep=InputPrepSpec.tile(tile_stride=12), **TINY)
    with pytest.raises(errors.OptionError, match="pooled vector has no cells"):
        xrembed.get_embedding(MODEL, spatial=pb, source=xrembed.sample_path(),
                              input_prep=InputPrepSpec.tile(tile_stride=16), **TINY)


def test_accessor_honours_the_input_prep_spec():
    da = synthetic_raster((64, 56))
    via_accessor = da.rsembed.embed(MODEL, input_prep=InputPrepSpec.tile(tile_stride=16), **TINY)
    np.testing.assert_allclose(via_accessor.values, embed_overlapping(da, MODEL, tile_stride=16, **TINY).values,
                               atol=1e-6)
    assert via_accessor.attrs["tile_stride"] == 16
    same = da.rsembed.embed(MODEL, input_prep=InputPrepSpec.tile(tile_size=32, tile_stride=32), **TINY)
    np.testing.assert_allclose(same.values, da.rsembed.embed(MODEL, **TINY).values, atol=1e-6)
    with pytest.raises(errors.OptionError, match="multiple of 8"):  # other sizes: tests/compat/test_tile_size.py
        da.rsembed.embed(MODEL, input_prep=InputPrepSpec.tile(tile_size=36), **TINY)
