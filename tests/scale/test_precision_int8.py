"""precision="int8": dynamic int8 quantisation of the Linear layers on CPU, close to fp32, refused on a GPU
naming the alternative; fp32 results do not change."""

import numpy as np
import pytest
import torch

from xrembed import engine
from xrembed.errors import OptionError
from xrembed.testing import synthetic_raster


def _cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a, b = a.reshape(a.shape[0], -1).astype(np.float64), b.reshape(b.shape[0], -1).astype(np.float64)
    return (a * b).sum(0) / (np.linalg.norm(a, axis=0) * np.linalg.norm(b, axis=0))


def test_int8_quantises_every_linear_layer_and_stays_close_to_fp32(tiny):
    raster = synthetic_raster((64, 96), seed=7).chunk({"y": 32, "x": 32})
    fp32 = raster.rsembed.embed("dofa-tiny", **tiny).values
    emb = raster.rsembed.embed("dofa-tiny", precision="int8", **tiny)
    assert emb.attrs["precision"] == "int8"
    int8 = emb.values
    (key,) = [k for k in engine._RUNTIMES if k.precision == "int8"]
    module = engine.get_runtime(key).module
    from torch.ao.nn.quantized.dynamic import Linear as DynamicLinear

    kinds = [type(m) for m in module.modules()]
    assert DynamicLinear in kinds
    left = [n for n, m in module.named_modules() if type(m) is torch.nn.Linear]
    assert left and all(n.startswith("patch_embed.") for n in left)  # only the kernel generator stays float
    assert sum(type(m) is DynamicLinear for m in module.modules()) == 8  # 2 blocks x (qkv, proj, fc1, fc2)
    assert not np.array_equal(int8, fp32)  # the quantised layers really ran
    assert np.isfinite(int8).all()
    assert _cosines(int8, fp32).min() > 0.99


def test_int8_keeps_nan_cells_and_chunk_invariance(tiny):
    raster = synthetic_raster((64, 64), seed=8)
    raster[:, :16, :16] = np.nan
    a = raster.chunk({"y": 32, "x": 32}).rsembed.embed("dofa-tiny", precision="int8", tiles_per_chunk=1, **tiny).values
    b = raster.rsembed.embed("dofa-tiny", precision="int8", **tiny).values
    assert np.isnan(a[:, :2, :2]).all() and np.isfinite(a[:, 2:, 2:]).all()
    np.testing.assert_allclose(a, b, atol=1e-5, equal_nan=True)


def test_fp32_is_unchanged_by_the_int8_path(tiny):
    raster = synthetic_raster((64, 64), seed=9)
    before = raster.rsembed.embed("dofa-tiny", **tiny).values
    raster.rsembed.embed("dofa-tiny", precision="int8", **tiny).values
    after = raster.rsembed.embed("dofa-tiny", **tiny).values
    np.testing.assert_array_equal(before, after)  # quantisation works on a copy, never the fp32 model


def test_int8_is_refused_on_a_gpu_naming_the_alternative(monkeypatch, tiny):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    raster = synthetic_raster((64, 64), seed=1)
    with pytest.raises(OptionError, match=r"int8.*CPU only.*precision='fp16' or 'bf16'"):
        raster.rsembed.embed("dofa-tiny", device="cuda", precision="int8", **tiny)
    # The engine refuses it too (a key built by hand, e.g. for a worker plugin).
    key = engine.ModelKey("dofa-tiny", "tiny", "xrembed.testing:TinyDOFA", None, "random(seed=0)", "cuda", "int8")
    with pytest.raises(OptionError, match="int8"):
        engine.Runtime(key)
