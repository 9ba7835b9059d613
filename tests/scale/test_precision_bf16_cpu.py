"""bf16 on a CPU without bfloat16 instructions is emulated and slower than fp32: xrembed says so, naming the
faster choice, and runs it anyway (the values are still right); elsewhere it stays silent."""

from __future__ import annotations

import warnings

import pytest
import torch

import xrembed
from xrembed.errors import SlowPrecisionWarning
from xrembed.testing import register_test_models


@pytest.fixture(scope="module")
def raster():
    register_test_models()
    return xrembed.open_raster("sample").isel(y=slice(0, 64), x=slice(0, 64))


@pytest.mark.parametrize("capability", ["AVX2", "DEFAULT"])
def test_bf16_on_a_cpu_without_bf16_warns_naming_int8(raster, monkeypatch, capability):
    monkeypatch.setattr(torch.backends.cpu, "get_cpu_capability", lambda: capability)
    with pytest.warns(SlowPrecisionWarning, match="precision='int8'") as record:
        raster.rsembed.embed("dofa-tiny", weights="random", precision="bf16")
    slow = [w for w in record if issubclass(w.category, SlowPrecisionWarning)]
    assert len(slow) == 1 and capability in str(slow[0].message)
    assert slow[0].filename == __file__, "the warning points at the caller's line"


@pytest.mark.parametrize("precision, capability", [("bf16", "AVX512"), ("fp32", "AVX2"), ("int8", "AVX2")])
def test_no_warning_where_the_precision_is_not_slow(raster, monkeypatch, precision, capability):
    monkeypatch.setattr(torch.backends.cpu, "get_cpu_capability", lambda: capability)
    with warnings.catch_warnings():
        warnings.simplefilter("error", SlowPrecisionWarning)
        raster.rsembed.embed("dofa-tiny", weights="random", precision=precision)
