"""``InputPrepSpec.tile(tile_size=N)`` / ``embed(tile_size=N)`` with N other than the model's own size: the model
runs on N px tiles on the global patch lattice (position embedding resampled), the output grid is the same
(cell = patch, CRS, transform), values are chunk-invariant, overlap works at N, and refusals name the fix;
through the accessor, ``get_embedding`` and ``export_batch``.

The expected value of every cell is computed here independently: the tile holding it is cut by hand from the
raster and run through the model alone (the runtime's own forward, no engine tiling).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from affine import Affine
from pyproj import Transformer

import xrembed
from xrembed import InputPrepSpec, OutputSpec, PointBuffer, errors
from xrembed.embedding import _prepare
from xrembed.engine import get_runtime
from xrembed.models.registry import register_model
from xrembed.options import EmbedOptions
from xrembed.testing import TinyDOFA, synthetic_raster

MODEL = "dofa-tiny"  # patch 8 px, own tiles 32 px (4 x 4 patches)
TINY = {"weights": "random"}
N = 64  # 8 x 8 patches


@register_model
class FixedSizeTiny(TinyDOFA):
    """A family that does not take other sizes (the base-class default)."""

    model_id = "dofa-tiny-fixed-size"
    aliases = ()
    other_tile_sizes = None
    fixed_size_reason = "its reference fixes the input size (test family)"


def run_alone(da, y0: int, x0: int, size: int) -> np.ndarray:
    """The model's grid tokens ``(D, size/8, size/8)`` of the window ``[y0, y0+size) x [x0, x0+size)`` of ``da``,
    through the runtime's forward (normalisation + network) with no engine tiling."""
    req = _prepare(da, MODEL, EmbedOptions(**TINY, input_prep="tile"))
    runtime = get_runtime(req.key)
    window = np.asarray(req.data.values[:, y0:y0 + size, x0:x0 + size], dtype=np.float32)[None]
    assert window.shape[-2:] == (size, size)
    with torch.no_grad():
        tokens = runtime.adapter.forward_grid(runtime.module, runtime.prepare(torch.from_numpy(window), req.plan), req.plan)
    return tokens[0].numpy()


def test_one_tile_of_n_pixels_is_the_model_run_at_n():
    da = synthetic_raster((N, N), seed=1)
    grid = da.rsembed.embed(MODEL, tile_size=N, **TINY)
    assert grid.shape == (32, 8, 8)
    np.testing.assert_allclose(grid.values, run_alone(da, 0, 0, N), atol=1e-5)
    own = da.rsembed.embed(MODEL, **TINY)  # 32 px tiles: four independent tiles, other values
    assert own.shape == grid.shape and not np.allclose(own.values, grid.values, atol=1e-3)
    assert grid.attrs["tile_size"] == N and grid.attrs["image_size"] == N and grid.attrs["pretraining_image_size"] == 32


def test_tiles_of_n_lie_on_the_global_lattice_and_the_edge_tile_reads_real_pixels():
    da = synthetic_raster((144, 136), seed=2)  # 18 x 17 patches: tiles at 0, 8 and an edge tile shifted back
    grid = da.rsembed.embed(MODEL, tile_size=N, **TINY).values
    starts_y = {0: range(0, 8), 8: range(8, 16), 10: range(16, 18)}  # tile start (patches) -> the cells it owns
    starts_x = {0: range(0, 8), 8: range(8, 16), 9: range(16, 17)}
    for sy, own_y in starts_y.items():
        for sx, own_x in starts_x.items():
            alone = run_alone(da, sy * 8, sx * 8, N)
            for cy in own_y:
                for cx in own_x:
                    np.testing.assert_allclose(grid[:, cy, cx], alone[:, cy - sy, cx - sx], atol=1e-5)


def test_grid_geometry_at_n_is_the_input_grid_zoomed_out_by_the_patch():
    da = synthetic_raster((150, 130), resolution=10.0, origin=(500_000.0, 4_200_000.0), crs="EPSG:32633", seed=3)
    assert da.rio.transform() == Affine(10.0, 0.0, 500_000.0, 0.0, -10.0, 4_200_000.0)
    grid = da.rsembed.embed(MODEL, tile_size=N, **TINY)
    assert grid.rio.crs.to_epsg() == 32633
    assert grid.rio.transform() == Affine(80.0, 0.0, 500_000.0, 0.0, -80.0, 4_200_000.0)
    assert grid.sizes == {"embedding": 32, "y": 19, "x": 17}  # ceil(150 / 8), ceil(130 / 8)
    np.testing.assert_allclose(grid.x.values, 500_000.0 + (np.arange(17) + 0.5) * 80.0)
    np.testing.assert_allclose(grid.y.values, 4_200_000.0 - (np.arange(19) + 0.5) * 80.0)
    assert grid.attrs["cell_size"] == [80.0, 80.0]
    own = da.rsembed.embed(MODEL, **TINY)
    assert own.rio.transform() == grid.rio.transform() and own.sizes == grid.sizes


@pytest.mark.parametrize("tile", [48, N])
def test_values_at_n_do_not_depend_on_the_chunking(tile):
    da = synthetic_raster((150, 130), seed=4)
    eager = da.rsembed.embed(MODEL, tile_size=tile, **TINY)
    for chunks in ({"y": 40, "x": 24}, {"y": 150, "x": 64}, {"y": 17, "x": 130}):
        lazy = da.chunk(chunks).rsembed.embed(MODEL, tile_size=tile, tiles_per_chunk=1, **TINY)
        assert lazy.chunks is not None  # a graph, not values
        np.testing.assert_allclose(lazy.values, eager.values, atol=1e-5)
        assert lazy.rio.transform() == eager.rio.transform()


def test_nodata_cells_stay_nan_at_n():
    da = synthetic_raster((N, N), seed=5)
    da[:, :16, :8] = np.nan
    grid = da.rsembed.embed(MODEL, tile_size=N, **TINY).values
    assert np.isnan(grid[:, :2, :1]).all() and np.isfinite(grid[:, 2:, :]).all() and np.isfinite(grid[:, :, 1:]).all()


def test_keyword_and_input_prep_spec_are_the_same_request():
    da = synthetic_raster((96, 80), seed=6)
    by_keyword = da.rsembed.embed(MODEL, tile_size=N, **TINY)
    by_spec = da.rsembed.embed(MODEL, input_prep=InputPrepSpec.tile(tile_size=N), **TINY)
    np.testing.assert_allclose(by_keyword.values, by_spec.values, atol=0)
    # pooled with a tile size: tiles of that size (not one resized image), weighted mean of their cells
    pooled = da.rsembed.embed(MODEL, output="pooled", tile_size=N, **TINY)
    assert pooled.attrs["input_prep"] == "tile" and pooled.attrs["tile_size"] == N
    with pytest.raises(errors.OptionError, match="two tile sizes"):
        da.rsembed.embed(MODEL, tile_size=48, input_prep=InputPrepSpec.tile(tile_size=N), **TINY)
    with pytest.raises(errors.OptionError, match="input_prep='tile' with tile_size="):
        da.rsembed.embed(MODEL, tile_size=N, input_prep="resize", **TINY)


def test_overlapping_tiles_at_n():
    da = synthetic_raster((128, 120), seed=7)  # 16 x 15 patches
    plain = da.rsembed.embed(MODEL, tile_size=N, **TINY)
    overlap = da.rsembed.embed(MODEL, input_prep=InputPrepSpec.tile(tile_size=N, tile_stride=32), **TINY)
    assert overlap.attrs["tile_stride"] == 32 and overlap.attrs["tile_size"] == N
    assert overlap.rio.transform() == plain.rio.transform() and overlap.shape == plain.shape
    # cell 1 is nearest the centre of the tile at 0 (centre 4); cell 6 nearest the tile at 4 (centre 8)
    np.testing.assert_allclose(overlap.values[:, 1, 1], plain.values[:, 1, 1], atol=1e-5)
    np.testing.assert_allclose(overlap.values[:, 6, 6], run_alone(da, 32, 32, N)[:, 2, 2], atol=1e-5)
    lazy = da.chunk({"y": 48, "x": 40}).rsembed.embed(
        MODEL, input_prep=InputPrepSpec.tile(tile_size=N, tile_stride=32), **TINY)
    np.testing.assert_allclose(lazy.values, overlap.values, atol=1e-5)
    with pytest.raises(errors.OptionError, match=r"pass a stride in \[8, 16, 32\]"):
        da.rsembed.embed(MODEL, input_prep=InputPrepSpec.tile(tile_size=N, tile_stride=24), **TINY)


def test_refusals_name_the_fix():
    da = synthetic_raster((64, 64))
    with pytest.raises(errors.OptionError, match=r"whole number of its 8 px patches.*multiple of 8"):
        da.rsembed.embed(MODEL, tile_size=36, **TINY)
    with pytest.raises(errors.OptionError, match=r"whole number of its 8 px patches"):
        xrembed.tiling.check_input_prep(MODEL, InputPrepSpec.tile(tile_size=36))
    with pytest.raises(errors.OptionError, match="positive number of pixels"):
        da.rsembed.embed(MODEL, tile_size="64", **TINY)
    message = r"runs only on its pretraining size of 32 px: its reference fixes the input size.*tile_size=32"
    with pytest.raises(errors.OptionError, match=message):
        da.rsembed.embed(FixedSizeTiny.model_id, tile_size=N, **TINY)
    with pytest.raises(errors.OptionError, match=message):
        xrembed.tiling.check_input_prep(FixedSizeTiny.model_id, InputPrepSpec.tile(tile_size=N))
    # its own size still runs
    assert da.rsembed.embed(FixedSizeTiny.model_id, tile_size=32, **TINY).sizes["y"] == 8
    assert xrembed.describe_model(FixedSizeTiny.model_id)["tile_sizes"].startswith("32 px only: its reference")
    assert "resampled to the tile's patch grid as timm does" in xrembed.describe_model("dofa")["tile_sizes"]


_LON, _LAT = Transformer.from_crs("EPSG:32629", "EPSG:4326", always_xy=True).transform(222380.0, 2777620.0)


def test_get_embedding_and_export_batch_honour_tile_size(tmp_path):
    pb = PointBuffer(_LON, _LAT, 4000)  # 80 x 80 px of the bundled sample
    prep = InputPrepSpec.tile(tile_size=N)
    emb = xrembed.get_embedding(MODEL, spatial=pb, source=xrembed.sample_path(), output=OutputSpec.grid(),
                                input_prep=prep, **TINY)
    opened = xrembed.requests.crop_to(xrembed.open_raster(xrembed.sample_path()), pb)
    expected = opened.rsembed.embed(MODEL, tile_size=N, **TINY)
    np.testing.assert_allclose(emb.data.values, expected.values, atol=1e-5)
    np.testing.assert_allclose(emb.data.values[:, :8, :8], run_alone(opened, 0, 0, N), atol=1e-5)
    assert emb.data.attrs["tile_size"] == N
    # batched ROIs share forward passes only with equal tile sizes; each equals its single call
    (batched,) = xrembed.get_embeddings_batch(MODEL, spatials=[pb], source=xrembed.sample_path(),
                                              output=OutputSpec.grid(), input_prep=prep, **TINY)
    np.testing.assert_allclose(batched.data.values, expected.values, atol=1e-5)

    target = xrembed.ExportTarget.combined(tmp_path / "run.zarr")
    common = {"spatials": [pb], "temporal": None, "target": target, "source": xrembed.sample_path(),
              "output": OutputSpec.grid(), "models": [xrembed.ExportModelRequest.configure(MODEL, **TINY)]}
    xrembed.export_batch(input_prep=prep, config=xrembed.ExportConfig(show_progress=False), **common)
    (saved,) = xrembed.load_export(target.out_file).embedding(MODEL)
    np.testing.assert_allclose(saved.values, expected.values, atol=1e-5)
    per_model = {**common, "target": xrembed.ExportTarget.combined(tmp_path / "per_model.zarr"),
                 "models": [xrembed.ExportModelRequest.configure(MODEL, input_prep=prep, **TINY)]}
    xrembed.export_batch(config=xrembed.ExportConfig(show_progress=False), **per_model)
    (saved,) = xrembed.load_export(tmp_path / "per_model.zarr").embedding(MODEL)
    np.testing.assert_allclose(saved.values, expected.values, atol=1e-5)
    # resume with the model's own tile size is another request (the fingerprint holds the tile size)
    xrembed.export_batch(input_prep="tile", config=xrembed.ExportConfig(resume=True, show_progress=False), **common)
    (redone,) = xrembed.load_export(target.out_file).embedding(MODEL)
    assert not np.allclose(redone.values, expected.values, atol=1e-3)


def test_unrunnable_tile_size_is_refused_before_any_fetch(tmp_path):
    pb = PointBuffer(_LON, _LAT, 1600)
    with pytest.raises(errors.OptionError, match="its reference fixes the input size"):
        xrembed.get_embedding(FixedSizeTiny.model_id, spatial=pb, source=tmp_path / "missing.tif",
                              input_prep=InputPrepSpec.tile(tile_size=N), **TINY)
    with pytest.raises(errors.OptionError, match="its reference fixes the input size"):
        xrembed.export_batch(spatials=[pb], temporal=None, target=xrembed.ExportTarget.combined(tmp_path / "x.zarr"),
                             source=tmp_path / "missing.tif", output=OutputSpec.grid(), input_prep=InputPrepSpec.tile(tile_size=N),
                             models=[xrembed.ExportModelRequest.configure(FixedSizeTiny.model_id, **TINY)])
    assert not (tmp_path / "x.zarr").exists()
