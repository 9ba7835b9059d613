"""The GPU feeding path: what runs on CPU is exercised here (batching views, the free-memory batch limit
with a mocked probe, the torch.compile opt-in, CPU results bit-identical to a plain forward, the raw
storage-dtype upload branch forced on CPU); what needs CUDA is skipped without a device."""

import numpy as np
import pytest
import torch

from xrembed import engine
from xrembed.testing import synthetic_raster

cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


def _images(n=5, seed=0):
    return np.random.default_rng(seed).uniform(200, 6000, (n, 9, 32, 32)).astype(np.float32)


def test_cpu_batches_are_views_of_the_images_in_order():
    images = _images(5)
    batches = list(engine.host_batches(images, 2, "cpu"))
    assert [b.shape[0] for b in batches] == [2, 2, 1]
    np.testing.assert_array_equal(torch.cat(batches).numpy(), images)
    assert np.shares_memory(batches[0].numpy(), images)  # no copy on CPU
    assert list(engine.host_batches(images[:0], 2, "cpu")) == []


def test_the_batch_limit_follows_free_memory_probed_once(monkeypatch):
    assert engine.device_batch_limit("cpu", (9, 224, 224), 768) >= 2**31 - 1  # no limit on CPU
    calls = []
    free = {"bytes": 8 * 2**30}

    def mem_get_info(device):
        calls.append(device)
        return free["bytes"], 16 * 2**30

    monkeypatch.setattr(torch.cuda, "mem_get_info", mem_get_info)
    monkeypatch.setattr(engine, "_FREE_MEMORY", {})
    big = engine.device_batch_limit("cuda", (9, 224, 224), 768)
    again = engine.device_batch_limit("cuda", (9, 224, 224), 768)
    assert big == again and len(calls) == 1  # probed once per process and device
    assert 8 <= big <= 512  # a ViT-B tile needs tens of MB of activations
    assert engine.device_batch_limit("cuda", (9, 224, 224), 1024) <= big  # wider models fit fewer
    monkeypatch.setattr(engine, "_FREE_MEMORY", {})
    free["bytes"] = 2**20
    assert engine.device_batch_limit("cuda", (9, 224, 224), 768) == 1  # never zero


def test_torch_compile_is_opt_in_and_applies_to_models_loaded_next(monkeypatch, tiny):
    compiled = []
    monkeypatch.setattr(torch, "compile", lambda module, **kw: (compiled.append(kw), module)[1])
    key = engine.ModelKey("dofa-tiny", "tiny", "xrembed.testing:TinyDOFA", None, "random(seed=0)", "cpu")
    engine.Runtime(key)
    assert compiled == []  # off by default
    try:
        engine.set_compile(True)
        engine.Runtime(key)
        assert compiled == [{"dynamic": True}]
    finally:
        engine.set_compile(False)


def test_cpu_results_equal_a_plain_batched_forward_bit_for_bit(tiny):
    raster = synthetic_raster((64, 64), seed=11)
    emb = raster.rsembed.embed("dofa-tiny", batch_size=3, **tiny)
    (key,) = list(engine._RUNTIMES)
    runtime = engine.get_runtime(key)
    from xrembed import embedding
    from xrembed.options import EmbedOptions

    plan = embedding._prepare(raster, "dofa-tiny", EmbedOptions(**tiny)).plan
    tiles = np.stack([raster.values[:, r : r + 32, c : c + 32] for r in (0, 32) for c in (0, 32)])
    with torch.inference_mode():
        plain = torch.cat([
            runtime.adapter.forward_grid(runtime.module, runtime.prepare(torch.from_numpy(tiles[i : i + 3]), plan), plan)
            for i in range(0, 4, 3)
        ]).numpy()
    got = runtime.grid(tiles, plan, 3)
    np.testing.assert_array_equal(got, plain)
    np.testing.assert_array_equal(emb.values[:, :4, :4], plain[0])


def test_raw_uploads_only_narrow_integers_to_cuda():
    assert engine.raw_uploads(np.uint16, "cuda") and engine.raw_uploads(np.uint8, "cuda:1")
    assert engine.raw_uploads(np.int16, torch.device("cuda"))
    assert not engine.raw_uploads(np.float32, "cuda")  # no smaller than float32: cast on the host as before
    assert not engine.raw_uploads(np.float16, "cuda") and not engine.raw_uploads(np.int32, "cuda")
    assert not engine.raw_uploads(np.uint16, "cpu")  # no copy to save on CPU: the host path stays


def _uint16_block(seed=13):
    """A (2 frames, 9 bands, 72 x 80 px) uint16 block with nodata pixels in two bands and one empty patch."""
    rng = np.random.default_rng(seed)
    block = rng.integers(200, 6000, (2, 9, 72, 80), dtype=np.uint16)
    block[0, 2, 5:9, 10:20] = 0  # band 2's nodata
    block[1, 7, 40:41, 3:60] = 65535  # band 7's nodata
    block[:, :, 16:24, 32:40] = 0  # one whole patch at band 2's nodata: a NaN cell
    return block


def test_the_raw_upload_branch_on_cpu_is_bit_identical_and_sends_storage_dtype(monkeypatch, tiny):
    """The CUDA branch (tiles cut from the stored uint16 values, cast and nodata-masked on the device) forced
    on CPU gives exactly the host path's embeddings; what reaches the device copy is uint16."""
    raster = synthetic_raster((32, 32), seed=1)
    raster.rsembed.embed("dofa-tiny", **tiny).values  # loads the runtime
    (key,) = list(engine._RUNTIMES)
    from xrembed import embedding
    from xrembed.options import EmbedOptions

    plan = embedding._prepare(raster, "dofa-tiny", EmbedOptions(**tiny)).plan
    block = _uint16_block()
    nodata = (None, None, 0.0, None, None, None, None, 65535.0, None)
    kwargs = dict(key=key, plan=plan, patch_size=8, image_size=32, batch_size=4, nodata=nodata)
    host = engine.tile_grid_block(block, **kwargs)
    assert np.isnan(host).any() and np.isfinite(host).any()

    seen = []
    prepare = engine.Runtime.prepare

    def spy(self, images, plan, nodata=None):
        seen.append((images.dtype, nodata))
        return prepare(self, images, plan, nodata)

    monkeypatch.setattr(engine.Runtime, "prepare", spy)
    monkeypatch.setattr(engine, "raw_uploads", lambda dtype, device: np.dtype(dtype) == np.uint16)
    raw = engine.tile_grid_block(block, **kwargs)
    assert seen and all(dtype == torch.uint16 and got == nodata for dtype, got in seen)
    np.testing.assert_array_equal(raw, host)  # NaN where NaN, every other bit equal
    seen.clear()
    floats = engine.tile_grid_block(block.astype(np.float32), **kwargs)  # float input: the host path
    assert seen and all(dtype == torch.float32 and got is None for dtype, got in seen)
    np.testing.assert_array_equal(floats, host)


def test_the_device_mask_equals_the_host_mask():
    rng = np.random.default_rng(3)
    values = rng.integers(0, 5, (2, 3, 4, 5)).astype(np.float32)
    nodata = (0.0, None, 4.0)
    host = engine.mask_nodata(values, nodata)
    device = engine._mask_tensor(torch.from_numpy(values.copy()), nodata).numpy()
    np.testing.assert_array_equal(device, host)
    assert np.isnan(host[:, 0][values[:, 0] == 0]).all() and not np.isnan(host[:, 1]).any()
    np.testing.assert_array_equal(engine._mask_tensor(torch.from_numpy(values), 4.0).isnan().numpy(), values == 4)


@cuda
def test_cuda_batches_arrive_on_the_device_unchanged():
    images = _images(5)
    batches = list(engine.host_batches(images, 2, "cuda"))
    assert all(b.is_cuda for b in batches)
    np.testing.assert_array_equal(torch.cat(batches).cpu().numpy(), images)


@cuda
def test_cuda_embeddings_match_cpu(tiny):
    raster = synthetic_raster((64, 96), seed=12)
    cpu = raster.rsembed.embed("dofa-tiny", device="cpu", **tiny).values
    gpu = raster.rsembed.embed("dofa-tiny", device="cuda", **tiny).values
    np.testing.assert_allclose(gpu, cpu, atol=1e-4, equal_nan=True)
