"""Many ROIs at once: shared forward passes give the values of one ROI at a time; failures stay per item."""

import threading

import numpy as np
import pytest

import xrembed
import xrembed.testing  # noqa: F401  (dofa-tiny: registered by conftest.py)
from xrembed import engine
from xrembed.batch import BatchItemError, embed_many, iter_embed
from xrembed.errors import BandMismatchError, InputRangeError, UnknownModelError
from xrembed.testing import synthetic_raster


def _rasters():
    """Rasters in two CRSs and three shapes, so some stack and some do not."""
    same = [synthetic_raster((70, 50), origin=(500000 + 1000 * i, 4200000 + 500 * i), seed=i) for i in range(5)]
    other_crs = synthetic_raster((70, 50), crs="EPSG:32630", seed=7)
    other_shape = synthetic_raster((40, 40), seed=9)
    return [*same, other_crs, other_shape]


@pytest.fixture
def tile_calls(monkeypatch):
    """Number of tiles in each forward pass of the model."""
    calls = []
    original = engine.Runtime._run

    def run(self, fn, images, *args, **kwargs):
        def counted(module, x, plan):
            calls.append(x.shape[0])
            return fn(module, x, plan)

        return original(self, counted, images, *args, **kwargs)

    monkeypatch.setattr(engine.Runtime, "_run", run)
    return calls


@pytest.mark.parametrize("output", ["grid", "pooled"])
@pytest.mark.parametrize("input_prep", ["tile", "resize"])
def test_batched_rois_equal_one_at_a_time(output, input_prep, tile_calls):
    rasters = _rasters()
    kwargs = {"weights": "random", "output": output, "input_prep": input_prep, "batch_size": 64}
    outcomes = embed_many([lambda r=r: r for r in rasters], "dofa-tiny", **kwargs)
    batched_calls = len(tile_calls)
    for raster, outcome in zip(rasters, outcomes):
        alone = raster.rsembed.embed("dofa-tiny", **kwargs)
        assert outcome.ok and outcome.result.dims == alone.dims and outcome.result.attrs == alone.attrs
        np.testing.assert_allclose(outcome.result.values, alone.values, atol=1e-5)
        if output == "grid":
            assert outcome.result.rio.crs == alone.rio.crs
            assert outcome.result.rio.transform() == alone.rio.transform()
            np.testing.assert_array_equal(outcome.result.x, alone.x)
    # Six rasters share a shape: they go through the model together, not one forward each.
    assert batched_calls < len(rasters)
    assert max(tile_calls[:batched_calls]) > max(tile_calls[batched_calls:])


def test_forward_batches_are_filled_across_rois(tile_calls):
    rasters = [synthetic_raster((32, 32), seed=i) for i in range(16)]  # one 32 px tile each
    embed_many([lambda r=r: r for r in rasters], "dofa-tiny", weights="random", batch_size=8, input_prep="tile")
    assert sum(tile_calls) == 16 and max(tile_calls) == 8


def test_time_series_rasters_stack_too():
    rasters = [synthetic_raster((40, 40), times=3, seed=i) for i in range(3)]
    outcomes = embed_many([lambda r=r: r for r in rasters], "dofa-tiny", weights="random")
    for raster, outcome in zip(rasters, outcomes):
        alone = raster.rsembed.embed("dofa-tiny", weights="random")
        assert outcome.result.dims == ("time", "embedding", "y", "x")
        np.testing.assert_allclose(outcome.result.values, alone.values, atol=1e-5)


def test_a_bad_raster_fails_alone_and_is_reported():
    rasters = _rasters()[:4]
    normalised = rasters[2] / 10000.0  # already in [0, 1]: the model wants raw reflectance
    openers = [lambda r=r: r for r in rasters[:2]] + [lambda: normalised, lambda: rasters[3]]
    outcomes = embed_many(openers, "dofa-tiny", weights="random", continue_on_error=True)
    assert [o.ok for o in outcomes] == [True, True, False, True]
    assert isinstance(outcomes[2].error, InputRangeError)
    alone = rasters[3].rsembed.embed("dofa-tiny", weights="random")
    np.testing.assert_allclose(outcomes[3].result.values, alone.values, atol=1e-5)
    with pytest.raises(BatchItemError, match="ROI 2 failed.*continue_on_error=True") as info:
        embed_many(openers, "dofa-tiny", weights="random")
    assert info.value.index == 2


def test_transient_errors_are_retried_with_backoff(monkeypatch):
    raster = synthetic_raster((40, 40))
    failures = {"left": 2}
    sleeps = []
    monkeypatch.setattr("xrembed.batch.time.sleep", sleeps.append)

    def flaky():
        if failures["left"]:
            failures["left"] -= 1
            raise ConnectionError("Earth Engine: too many concurrent requests")
        return raster

    outcome = embed_many([flaky], "dofa-tiny", weights="random", max_retries=3, retry_backoff_s=0.5)[0]
    assert outcome.ok and outcome.attempts == 3
    assert sleeps == [0.5, 1.0]  # doubling backoff

    failures["left"] = 5
    outcome = embed_many([flaky], "dofa-tiny", weights="random", max_retries=1, continue_on_error=True)[0]
    assert not outcome.ok and outcome.attempts == 2 and isinstance(outcome.error, ConnectionError)


def test_contract_errors_are_not_retried():
    raster = synthetic_raster((40, 40), bands=["B04", "B03"])
    calls = []
    outcome = embed_many([lambda: calls.append(1) or raster], "dofa-tiny", weights="random", max_retries=3,
                         continue_on_error=True)[0]
    assert isinstance(outcome.error, BandMismatchError) and calls == [1]


def test_model_errors_raise_once_before_any_fetch():
    opened = []
    with pytest.raises(UnknownModelError):
        embed_many([lambda: opened.append(1)], "no-such-model")
    assert opened == []


def test_large_rasters_stay_lazy_and_match():
    raster = synthetic_raster((96, 96), chunks={"y": 64, "x": 64})
    outcome = next(iter_embed([lambda: raster], "dofa-tiny", weights="random", max_stack_px=64 * 64))
    assert outcome.streamed and outcome.result.chunks is not None
    alone = raster.rsembed.embed("dofa-tiny", weights="random")
    np.testing.assert_allclose(outcome.result.values, alone.values, atol=1e-5)


def test_prefetch_bounds_what_is_held_in_memory(monkeypatch):
    opened, consumed = [], []
    lock = threading.Lock()

    def opener(i):
        def open_():
            with lock:
                opened.append(i)
            return synthetic_raster((32, 32), seed=i)
        return open_

    gen = iter_embed([opener(i) for i in range(40)], "dofa-tiny", weights="random", num_workers=2, prefetch=4,
                     batch_size=1)
    for outcome in gen:
        consumed.append(outcome.index)
        assert len(opened) - len(consumed) <= 4 + 4  # a stack of 4 one-tile rasters being filled + 4 in flight
    assert sorted(consumed) == list(range(40))
