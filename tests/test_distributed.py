"""The graph runs on a distributed cluster of worker processes: each loads the model at most once, and
the values equal the local computation."""

import numpy as np
import pytest

from xrembed.testing import synthetic_raster

distributed = pytest.importorskip("distributed")


@pytest.mark.slow
def test_process_workers_load_the_model_once_each(tiny):
    from xrembed import engine

    raster = synthetic_raster((96, 128), seed=2)
    expected = raster.rsembed.embed("dofa-tiny", **tiny).values
    engine.clear_runtimes()
    emb = raster.chunk({"y": 32, "x": 32}).rsembed.embed("dofa-tiny", tiles_per_chunk=1, **tiny)
    assert emb.data.npartitions == 12
    with distributed.LocalCluster(n_workers=2, threads_per_worker=2, processes=True, dashboard_address=None) as cluster:
        with distributed.Client(cluster) as client:
            values = client.compute(emb).result().values
            loads = client.run(lambda: __import__("xrembed.engine").engine.load_count())
    np.testing.assert_allclose(values, expected, atol=1e-5)
    assert all(count <= 1 for count in loads.values()) and sum(loads.values()) >= 1
    assert engine.load_count() == 0  # the client process never loaded it
