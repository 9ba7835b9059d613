"""Invariants 2, 4 (nodata) and 5: chunk invariance, edge tiles, NaN handling, laziness, one model load."""

import pickle

import dask
import dask.array as dsa
import numpy as np
import pytest
import rasterio
import xarray as xr

from xrembed import engine
from xrembed.testing import synthetic_raster

PATCH, TILE = 8, 32  # dofa-tiny


@pytest.fixture
def raster():
    # 150 x 170 px: neither a multiple of the patch nor of the tile, so edge tiles shift and pad
    return synthetic_raster((150, 170), seed=3)


@pytest.mark.parametrize("output", ["grid", "pooled"])
def test_chunkings_and_eager_agree(raster, tiny, output):
    eager = raster.rsembed.embed("dofa-tiny", output=output, input_prep="tile", **tiny)
    assert isinstance(eager.data, np.ndarray)
    results = [eager.values]
    for chunks, per_chunk in [({"y": 37, "x": 61}, 1), ({"y": 150, "x": 20}, 2), ({"band": 1, "y": 64, "x": 64}, 3)]:
        lazy = raster.chunk(chunks).rsembed.embed("dofa-tiny", output=output, input_prep="tile", tiles_per_chunk=per_chunk, **tiny)
        assert isinstance(lazy.data, dsa.Array)
        results.append(lazy.compute().values)
    for other in results[1:]:
        np.testing.assert_allclose(other, results[0], atol=1e-5)
    assert np.isfinite(results[0]).all()


def test_edge_tile_uses_real_neighbouring_pixels(tiny):
    # 40 px wide: 5 tokens, tiles of 4 -> the last tile starts at token 1 (pixel 8) and owns token 4
    da = synthetic_raster((32, 40), seed=5)
    full = da.rsembed.embed("dofa-tiny", **tiny).values
    window = da.isel(x=slice(8, 40)).rsembed.embed("dofa-tiny", **tiny).values  # exactly that tile
    np.testing.assert_allclose(full[:, :, 4], window[:, :, 3], atol=1e-5)
    # and the first tile is independent of the rest of the raster
    first = da.isel(x=slice(0, 32)).rsembed.embed("dofa-tiny", **tiny).values
    np.testing.assert_allclose(full[:, :, :4], first, atol=1e-5)


def test_raster_smaller_than_one_tile(tiny):
    da = synthetic_raster((13, 20))
    emb = da.rsembed.embed("dofa-tiny", **tiny)
    assert emb.shape == (32, 2, 3)
    assert np.isfinite(emb.values).all()
    pooled = da.rsembed.embed("dofa-tiny", output="pooled", **tiny)
    assert pooled.shape == (32,) and np.isfinite(pooled.values).all()


def test_nan_cells_are_nan_and_only_those(raster, tiny):
    data = raster.copy()
    data[:, 0:16, 0:24] = np.nan  # whole patches: rows 0-1, cols 0-2 have no valid pixel
    data[:, 40:44, 40:42] = np.nan  # part of one patch: that cell stays valid
    data[2, 96:104, 96:104] = np.nan  # one band missing: the pixels count as invalid
    emb = data.chunk({"y": 64, "x": 64}).rsembed.embed("dofa-tiny", input_prep="tile", **tiny).compute().values
    empty = np.zeros(emb.shape[1:], bool)
    empty[0:2, 0:3] = True
    empty[12, 12] = True
    assert np.isnan(emb[:, empty]).all()
    assert np.isfinite(emb[:, ~empty]).all()
    assert (np.abs(emb[:, ~empty]).sum(axis=0) > 0).all()  # no valid cell became zeros


def test_nodata_value_is_treated_like_nan(raster, tiny):
    with_nan = raster.copy()
    with_nan[:, :8, :8] = np.nan
    with_nodata = raster.copy()
    with_nodata[:, :8, :8] = 0
    with_nodata = with_nodata.rio.write_nodata(0)
    a = with_nan.rsembed.embed("dofa-tiny", **tiny).values
    b = with_nodata.rsembed.embed("dofa-tiny", **tiny).values
    np.testing.assert_allclose(a, b, atol=1e-6, equal_nan=True)
    assert np.isnan(b[:, 0, 0]).all()


def test_all_nan_pooled_is_nan(tiny):
    da = synthetic_raster((32, 32)) * np.nan
    pooled = da.rsembed.embed("dofa-tiny", output="pooled", input_prep="tile", **tiny)
    assert np.isnan(pooled.values).all()


def test_pooled_is_area_weighted_mean_of_valid_tokens(raster, tiny):
    data = raster.copy()
    data[:, 0:20, :] = np.nan
    grid = data.rsembed.embed("dofa-tiny", input_prep="tile", **tiny).values
    pooled = data.rsembed.embed("dofa-tiny", output="pooled", input_prep="tile", **tiny).values
    valid = np.isfinite(data.values).all(axis=0)
    counts = engine.valid_counts(valid[None], PATCH)[0].astype(float)
    mean = np.nansum(grid * counts, axis=(1, 2)) / counts.sum()
    # the DOFA head is a LayerNorm: compare against its formula, independent of the engine
    expected = (mean - mean.mean()) / np.sqrt(mean.var() + 1e-6)
    runtime = engine._RUNTIMES[next(iter(engine._RUNTIMES))]
    weight = runtime.module.fc_norm.weight.numpy()
    bias = runtime.module.fc_norm.bias.numpy()
    np.testing.assert_allclose(pooled, expected * weight + bias, atol=1e-4)


def test_extra_dims_are_embedded_step_by_step(tiny):
    da = synthetic_raster((40, 40), times=3, seed=1)
    emb = da.chunk({"time": 1}).rsembed.embed("dofa-tiny", **tiny)
    assert emb.dims == ("time", "embedding", "y", "x")
    values = emb.compute()
    for t in range(3):
        single = da.isel(time=t).rsembed.embed("dofa-tiny", **tiny)
        np.testing.assert_allclose(values.isel(time=t).values, single.values, atol=1e-5)
    assert not np.allclose(values.isel(time=0), values.isel(time=1))


def test_band_first_extra_dim_order_is_accepted(tiny):
    da = synthetic_raster((32, 32), times=2)
    a = da.rsembed.embed("dofa-tiny", **tiny)
    b = da.transpose("band", "time", "y", "x").rsembed.embed("dofa-tiny", **tiny)
    np.testing.assert_allclose(a.values, b.values)


def test_embed_reads_no_pixels(tiny):
    reads = []

    def source(block):
        reads.append(block.shape)
        return block

    base = synthetic_raster((64, 64))
    lazy = xr.DataArray(
        dsa.map_blocks(source, dsa.from_array(base.values, chunks=(9, 32, 32)), dtype=np.float32,
                       meta=np.empty((0, 0, 0), np.float32)),
        dims=base.dims, coords=base.coords,
    )
    emb = lazy.rsembed.embed("dofa-tiny", **tiny)
    pooled = lazy.rsembed.embed("dofa-tiny", output="pooled", input_prep="tile", **tiny)
    resized = lazy.rsembed.embed("dofa-tiny", input_prep="resize", **tiny)
    assert reads == [] and engine.load_count() == 0  # nothing read, no model loaded
    emb.compute(), pooled.compute(), resized.compute()
    assert reads


def test_model_loads_once_per_process_and_is_not_in_the_graph(raster, tiny, monkeypatch):
    loads = []
    original = engine.Runtime.__init__

    def counting_init(self, key):
        loads.append(key)
        original(self, key)

    monkeypatch.setattr(engine.Runtime, "__init__", counting_init)
    emb = raster.chunk({"y": 32, "x": 32}).rsembed.embed("dofa-tiny", tiles_per_chunk=1, **tiny)
    assert emb.data.npartitions > 10
    layers = emb.data.__dask_graph__().layers
    embed_layer = dict(next(layer for name, layer in layers.items() if name.startswith("embed-")))
    assert len(embed_layer) >= 16  # one task per chunk of tiles
    assert len(pickle.dumps(embed_layer)) < 200_000  # the tiny model's weights alone are > 1 MB
    assert b"torch" not in pickle.dumps(embed_layer)
    with dask.config.set(scheduler="threads", num_workers=2):
        emb.compute()
    assert len(loads) == 1


def test_tiles_of_a_chunk_run_in_batches(tiny, monkeypatch):
    calls = []
    original = engine.Runtime._run

    def spy(self, fn, images, plan, batch_size, prepared):
        calls.append(images.shape[0])
        return original(self, fn, images, plan, batch_size, prepared)

    monkeypatch.setattr(engine.Runtime, "_run", spy)
    da = synthetic_raster((96, 128))  # 3 x 4 = 12 tiles of 32 px
    da.rsembed.embed("dofa-tiny", batch_size=5, **tiny)
    assert calls == [12]  # one call for the block, which runs ceil(12 / 5) = 3 forward passes


def test_bf16_precision_runs_and_is_close(raster, tiny):
    fp32 = raster.rsembed.embed("dofa-tiny", **tiny).values
    bf16 = raster.rsembed.embed("dofa-tiny", precision="bf16", **tiny)
    assert bf16.attrs["precision"] == "bf16"
    a, b = fp32.reshape(32, -1), bf16.values.reshape(32, -1)
    cosine = (a * b).sum(0) / np.linalg.norm(a, axis=0) / np.linalg.norm(b, axis=0)
    assert cosine.min() > 0.99


def test_attrs_record_the_run(raster, tiny):
    emb = raster.rsembed.embed("dofa-tiny", **tiny)
    for key, value in {"model": "dofa-tiny", "variant": "tiny", "patch_size": 8, "input_prep": "tile", "precision": "fp32"}.items():
        assert emb.attrs[key] == value
    assert emb.attrs["weights"].startswith("random")


def test_two_embeddings_in_one_graph_do_not_collide(tiny):
    a = synthetic_raster((40, 40), seed=1).chunk()
    b = synthetic_raster((40, 40), seed=2).chunk()
    ea, eb = a.rsembed.embed("dofa-tiny", **tiny), b.rsembed.embed("dofa-tiny", **tiny)
    pa = a.rsembed.embed("dofa-tiny", output="pooled", input_prep="tile", **tiny)
    together = dask.compute(ea, eb, pa)
    np.testing.assert_allclose(together[0].values, ea.compute().values)
    np.testing.assert_allclose(together[1].values, eb.compute().values)
    np.testing.assert_allclose(together[2].values, pa.compute().values)
    assert not np.allclose(together[0].values, together[1].values)


def test_file_opened_without_chunks_is_embedded_lazily(tmp_path, tiny):
    import rioxarray

    path = tmp_path / "stack.tif"
    synthetic_raster((40, 48)).rio.to_raster(path)
    da = rioxarray.open_rasterio(path).assign_coords(band=list(synthetic_raster((2, 2)).band.values))
    emb = da.rsembed.embed("dofa-tiny", **tiny)
    assert isinstance(emb.data, dsa.Array)
    np.testing.assert_allclose(emb.values, synthetic_raster((40, 48)).rsembed.embed("dofa-tiny", **tiny).values, atol=1e-5)


def test_rasterio_engine_datasets(tmp_path, tiny):
    path = tmp_path / "stack.tif"
    raster = synthetic_raster((40, 48))
    raster.rio.to_raster(path)
    with rasterio.open(path, "r+") as dst:
        for i, name in enumerate(raster.band.values, start=1):
            dst.set_band_description(i, str(name))
    expected = raster.rsembed.embed("dofa-tiny", **tiny).values
    one_variable = xr.open_dataset(path, engine="rasterio")  # band_data (band, y, x)
    per_band = xr.open_dataset(path, engine="rasterio", band_as_variable=True)  # band_1 ... with descriptions
    for ds in (one_variable, per_band):
        np.testing.assert_allclose(ds.rsembed.embed("dofa-tiny", **tiny).values, expected, atol=1e-5)


def test_lazy_grid_chunks_are_zarr_compatible(tmp_path, tiny):
    # 72 px = 9 tokens of 8 px, tiles of 4 tokens: the engine merges the 1-token remainder into the last
    # chunk, and the output is evened out again so that Zarr can store it
    da = synthetic_raster((72, 72), seed=4)
    emb = da.chunk({"y": 32, "x": 32}).rsembed.embed("dofa-tiny", tiles_per_chunk=1, **tiny)
    assert emb.chunks[1:] == ((4, 4, 1), (4, 4, 1))
    emb.to_dataset().to_zarr(tmp_path / "e.zarr", mode="w")
    back = xr.open_zarr(tmp_path / "e.zarr", decode_coords="all")["embeddings"]
    np.testing.assert_allclose(back.values, da.rsembed.embed("dofa-tiny", **tiny).values, atol=1e-5)
    assert back.rio.transform() == emb.rio.transform()


def test_resize_mode_marks_empty_cells_nan(tiny):
    da = synthetic_raster((64, 64), seed=6)
    da[:, :16, :16] = np.nan  # exactly the raster area of output cell (0, 0) once resized to 32 px
    for emb in (da.rsembed.embed("dofa-tiny", input_prep="resize", **tiny),
                da.chunk({"y": 16}).rsembed.embed("dofa-tiny", input_prep="resize", **tiny).compute()):
        values = emb.values
        assert np.isnan(values[:, 0, 0]).all()
        values[:, 0, 0] = 0
        assert np.isfinite(values).all()
