"""The graph runs on a distributed cluster of worker processes: each loads the model at most once (at
start with the preload plugin), model tasks honour resource annotations, Earth Engine is initialised on
workers, a worker killed mid-job still gives the values of a local run, to_zarr keeps the annotations of the
tasks it submits, and a windowed EmbedRequest streams on the cluster to the local store's values."""

import os
import signal
import time

import dask
import numpy as np
import pytest
import xarray as xr

from xrembed.testing import synthetic_raster

distributed = pytest.importorskip("distributed")

from xrembed import distributed as xdist  # noqa: E402
from xrembed.stream import to_zarr  # noqa: E402


def _load_count():
    return __import__("xrembed.engine").engine.load_count()


def _register():
    __import__("xrembed.testing").testing.register_test_models()


def _cluster(**kwargs):
    options = {"n_workers": 2, "threads_per_worker": 1, "processes": True, "dashboard_address": None}
    return distributed.LocalCluster(**{**options, **kwargs})


@pytest.mark.slow
def test_process_workers_load_the_model_once_each(tiny):
    from xrembed import engine

    raster = synthetic_raster((96, 128), seed=2)
    expected = raster.rsembed.embed("dofa-tiny", **tiny).values
    engine.clear_runtimes()
    emb = raster.chunk({"y": 32, "x": 32}).rsembed.embed("dofa-tiny", tiles_per_chunk=1, **tiny)
    assert emb.data.npartitions == 12
    with _cluster(threads_per_worker=2) as cluster:
        with distributed.Client(cluster) as client:
            values = client.compute(emb).result().values
            loads = client.run(_load_count)
    np.testing.assert_allclose(values, expected, atol=1e-5)
    assert all(count <= 1 for count in loads.values()) and sum(loads.values()) >= 1
    assert engine.load_count() == 0  # the client process never loaded it


def test_model_keys_are_found_without_materialising(tiny):
    raster = synthetic_raster((64, 64), seed=1).chunk()
    keys = xdist.model_keys(raster.rsembed.embed("dofa-tiny", **tiny))
    assert [(k.model_id, k.device, k.precision) for k in keys] == [("dofa-tiny", "cpu", "fp32")]
    pooled = xdist.model_keys(raster.rsembed.embed("dofa-tiny", output="pooled", **tiny))
    assert [k.model_id for k in pooled] == ["dofa-tiny"]
    with pytest.raises(TypeError, match="lazy"):
        xdist.model_keys(synthetic_raster((64, 64)).rsembed.embed("dofa-tiny", **tiny))


def test_preload_plugin_loads_models_and_earth_engine_on_every_worker_at_start(tmp_path, monkeypatch, tiny):
    from xrembed import engine

    # A stand-in ``ee`` module on the workers' path records its Initialize call (no network, no credentials).
    fake = tmp_path / "fake_ee"
    fake.mkdir()
    (fake / "ee.py").write_text("CALLS = []\ndef Initialize(**kwargs):\n    CALLS.append(kwargs)\n")
    monkeypatch.syspath_prepend(str(fake))  # worker processes start with the parent's sys.path
    emb = synthetic_raster((64, 64), seed=3).chunk({"y": 32, "x": 32}).rsembed.embed("dofa-tiny", tiles_per_chunk=1, **tiny)
    expected = emb.values
    engine.clear_runtimes()
    plugin = xdist.ModelPreload([emb], ee_init_kwargs={"project": "demo-project"})
    with _cluster() as cluster, distributed.Client(cluster) as client:
        client.run(_register)
        client.register_plugin(plugin)
        assert set(client.run(_load_count).values()) == {1}  # loaded before any task ran
        assert list(client.run(lambda: __import__("ee").CALLS).values()) == [[{"project": "demo-project"}]] * 2
        values = client.compute(emb).result().values
        assert set(client.run(_load_count).values()) == {1}  # and not again
        client.restart()  # fresh worker processes get the plugin too
        assert set(client.run(_load_count).values()) == {1}
    np.testing.assert_allclose(values, expected, atol=1e-5)
    assert engine.load_count() == 0


def test_model_tasks_run_only_on_gpu_workers_when_annotated(tiny):
    from distributed import Nanny, Scheduler, SpecCluster

    emb = synthetic_raster((64, 96), seed=4).chunk({"y": 32, "x": 32}).rsembed.embed("dofa-tiny", tiles_per_chunk=1, **tiny)
    expected = emb.values
    annotated = xdist.annotate_model_tasks(emb, resources={"GPU": 1})
    layers = annotated.data.__dask_graph__().layers
    model_layers = [n for n in layers if n.startswith("embed-")]
    assert model_layers and all(layers[n].annotations == {"resources": {"GPU": 1}} for n in model_layers)
    assert all(not layers[n].annotations for n in layers if n not in model_layers)  # reads run anywhere
    workers = {
        "gpu": {"cls": Nanny, "options": {"nthreads": 1, "resources": {"GPU": 1}}},
        "cpu": {"cls": Nanny, "options": {"nthreads": 2}},
    }
    with SpecCluster(scheduler={"cls": Scheduler, "options": {"dashboard_address": None}}, workers=workers) as cluster:
        with distributed.Client(cluster) as client:
            client.wait_for_workers(2)
            names = {addr: info["name"] for addr, info in client.scheduler_info()["workers"].items()}
            # Blockwise fusion drops layer annotations (dask 2026.8): keep the model layers unfused.
            with distributed.get_task_stream(client) as stream, dask.config.set({"optimization.fuse.active": False}):
                values = client.compute(annotated).result().values
            loads = {names[a]: n for a, n in client.run(_load_count).items()}
    np.testing.assert_allclose(values, expected, atol=1e-5)
    assert loads == {"gpu": 1, "cpu": 0}
    ran_model = {names[t["worker"]] for t in stream.data if str(t["key"]).startswith(("('embed-", "embed-"))}
    assert ran_model == {"gpu"}


def test_to_zarr_keeps_model_tasks_on_gpu_workers_and_windows_run_on_the_cluster(tmp_path, tiny):
    from distributed import Nanny, Scheduler, SpecCluster

    from xrembed.stream import EmbedRequest

    raster = synthetic_raster((64, 96), seed=4).chunk({"y": 32, "x": 32})
    emb = raster.rsembed.embed("dofa-tiny", tiles_per_chunk=1, **tiny)
    local = xr.open_zarr(to_zarr(emb, tmp_path / "local.zarr", show_progress=False))["embeddings"].values
    annotated = xdist.annotate_model_tasks(emb, resources={"GPU": 1})
    workers = {
        "gpu": {"cls": Nanny, "options": {"nthreads": 1, "resources": {"GPU": 1}}},
        "cpu": {"cls": Nanny, "options": {"nthreads": 2}},
    }
    with SpecCluster(scheduler={"cls": Scheduler, "options": {"dashboard_address": None}}, workers=workers) as cluster:
        with distributed.Client(cluster) as client:
            client.wait_for_workers(2)
            client.run(_register)
            names = {addr: info["name"] for addr, info in client.scheduler_info()["workers"].items()}
            with distributed.get_task_stream(client) as stream:  # fusion left at its default: to_zarr never fuses
                store = to_zarr(annotated, tmp_path / "annotated.zarr", show_progress=False, batch_regions=2)
            loads = {names[a]: n for a, n in client.run(_load_count).items()}
            ran_model = {names[t["worker"]] for t in stream.data if str(t["key"]).startswith(("('embed-", "embed-"))}
            windowed = to_zarr(EmbedRequest(raster, "dofa-tiny", tiles_per_chunk=1, **tiny), tmp_path / "windowed.zarr",
                               window=1, show_progress=False, batch_regions=2)
    assert loads == {"gpu": 1, "cpu": 0} and ran_model == {"gpu"}
    for path in (store, windowed):
        got = xr.open_zarr(path)["embeddings"].values
        assert np.array_equal(np.isnan(got), np.isnan(local))
        np.testing.assert_allclose(got, local, rtol=0, atol=1e-5)  # workers' torch threads round sums their way


@pytest.mark.slow
def test_a_worker_killed_mid_job_still_gives_the_local_values(tmp_path, tiny):
    raster = synthetic_raster((160, 160), seed=5)
    emb = raster.chunk({"y": 32, "x": 32}).rsembed.embed("dofa-tiny", tiles_per_chunk=1, **tiny)
    local = to_zarr(emb, tmp_path / "local.zarr", show_progress=False)
    regions = tmp_path / ".cluster.zarr.xrembed-stream" / "regions"
    with _cluster() as cluster, distributed.Client(cluster) as client:
        client.run(_register)
        pids = client.run(os.getpid)
        victim = max(pids.values())

        def slow_write():  # a worker-side delay so the kill lands mid-job
            from xrembed import stream

            write = stream._write_region

            def slowed(*args, **kwargs):
                time.sleep(0.1)
                return write(*args, **kwargs)

            stream._write_region = slowed

        client.run(slow_write)
        future = client.submit(lambda: None)  # the cluster is up and answering
        future.result()
        import threading

        def killer():
            deadline = time.monotonic() + 120
            while (not regions.is_dir() or len(list(regions.iterdir())) < 3) and time.monotonic() < deadline:
                time.sleep(0.01)
            os.kill(victim, signal.SIGKILL)

        thread = threading.Thread(target=killer)
        thread.start()
        to_zarr(emb, tmp_path / "cluster.zarr", show_progress=False, batch_regions=4)
        thread.join()
        assert victim not in client.run(os.getpid).values()  # the worker was really replaced
    got = xr.open_zarr(tmp_path / "cluster.zarr", consolidated=False)["embeddings"].values
    want = xr.open_zarr(local, consolidated=False)["embeddings"].values
    # Workers run torch with their own thread count, so sums may round differently: equal to the engine's
    # 1e-5 (as chunkings are), and no cell missing or NaN where the local run has a value.
    assert np.array_equal(np.isnan(got), np.isnan(want))
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-5)
