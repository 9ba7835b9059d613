"""device="cuda" from a CPU-only client: refused at embed() without a cluster; with a dask.distributed client
active it is deferred to where the model runs, and a worker without CUDA raises the same clear error at task
time. The boundary (torch.cuda.is_available / device_count) is monkeypatched; no GPU maths is faked."""

import pytest
import torch

from xrembed import engine
from xrembed.errors import OptionError
from xrembed.testing import synthetic_raster

distributed = pytest.importorskip("distributed")


@pytest.fixture
def no_cuda(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)


@pytest.fixture
def client():
    with distributed.Client(processes=False, n_workers=1, threads_per_worker=1, dashboard_address=None) as c:
        yield c


def test_without_a_cluster_cuda_is_refused_at_embed_time(no_cuda, tiny):
    raster = synthetic_raster((32, 32), seed=0).chunk({"y": 32, "x": 32})
    with pytest.raises(OptionError, match="no CUDA device is available on this machine; use device='cpu'"):
        raster.rsembed.embed("dofa-tiny", device="cuda", **tiny)


def test_with_a_client_cuda_is_deferred_to_the_workers(no_cuda, client, tiny):
    raster = synthetic_raster((32, 32), seed=0).chunk({"y": 32, "x": 32})
    emb = raster.rsembed.embed("dofa-tiny", device="cuda", **tiny)  # no refusal on the CPU-only client
    from xrembed.distributed import model_keys

    (key,) = model_keys(emb)
    assert key.device == "cuda" and engine.load_count() == 0
    assert raster.rsembed.embed("dofa-tiny", device="cuda:1", **tiny) is not None  # the index is the worker's to check
    # The (in-process) worker has no CUDA either: the same clear error, raised where the model runs.
    with pytest.raises(OptionError, match="no CUDA device is available on the process running the model; use device='cpu' or run the model tasks on GPU workers"):
        client.compute(emb.data).result()
    # What needs no model still refuses at once: int8 is CPU only, on any worker.
    with pytest.raises(OptionError, match="int8"):
        raster.rsembed.embed("dofa-tiny", device="cuda", precision="int8", **tiny)


def test_auto_and_cpu_are_still_resolved_on_the_client(no_cuda, client, tiny):
    raster = synthetic_raster((32, 32), seed=0).chunk({"y": 32, "x": 32})
    from xrembed.distributed import model_keys

    assert [k.device for k in model_keys(raster.rsembed.embed("dofa-tiny", **tiny))] == ["cpu"]
    assert [k.device for k in model_keys(raster.rsembed.embed("dofa-tiny", device="cpu", **tiny))] == ["cpu"]
    with pytest.raises(OptionError, match="not a torch device"):
        raster.rsembed.embed("dofa-tiny", device="gpu0", **tiny)


def test_a_worker_resolves_cuda_to_its_own_device(monkeypatch):
    """Where CUDA is present, "cuda" is the worker's current device (dask-cuda sets CUDA_VISIBLE_DEVICES per
    worker, so each sees its GPU as device 0); an index beyond its devices is refused naming the count."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    assert engine.check_device("cuda", where="this worker") == "cuda"
    assert engine.check_device("cuda:0", where="this worker") == "cuda:0"
    with pytest.raises(OptionError, match="this worker has 1 CUDA device"):
        engine.check_device("cuda:1", where="this worker")
    assert engine.check_device("cpu") == "cpu"


def test_an_eager_raster_with_a_client_fails_clearly_on_this_machine(no_cuda, client, tiny):
    # A numpy raster is computed at once, here: the deferred check runs here, as the same clear error.
    raster = synthetic_raster((32, 32), seed=0)
    with pytest.raises(OptionError, match="no CUDA device is available"):
        raster.rsembed.embed("dofa-tiny", device="cuda", **tiny)


def test_client_elsewhere_sees_only_an_active_client():
    assert not engine.client_elsewhere()  # distributed is imported here, but no client is active
    with distributed.Client(processes=False, n_workers=1, threads_per_worker=1, dashboard_address=None):
        assert engine.client_elsewhere()
