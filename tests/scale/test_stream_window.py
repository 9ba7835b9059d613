"""xrembed.to_zarr of an EmbedRequest: the graph is built one window of regions at a time (only windows with
a region to do), the store equals the one the whole graph writes, whatever the window, and a windowed run
killed with SIGKILL at random moments resumes to that same store."""

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import xarray as xr

import xrembed
from xrembed import stream
from xrembed.errors import OptionError
from xrembed.stream import EmbedRequest, to_zarr

sys.path.insert(0, str(Path(__file__).parent))
from _stream_scenario import OPTIONS, embeddings, raster, request

CHILD = Path(__file__).parent / "_stream_child.py"
REGIONS = 49


def _state(store: Path) -> Path:
    return store.parent / f".{store.name}.xrembed-stream"


def _recorded(store: Path) -> int:
    regions = _state(store) / "regions"
    return len(list(regions.iterdir())) if regions.is_dir() else 0


def _files(store: Path) -> set[str]:
    return {str(p.relative_to(store)) for p in store.rglob("*")}


def _meta(store: Path, path: str = "zarr.json") -> dict:
    return json.loads((store / path).read_text())


def _without_graph(meta: dict) -> dict:
    """Root metadata minus what names the graph (a request's token stands for a graph never built whole)."""
    meta = json.loads(json.dumps(meta))
    record = meta["attributes"]["xrembed_stream"]
    record.pop("fingerprint")
    record["identity"].pop("graph")
    return meta


def assert_same_store(got: Path, want: Path) -> None:
    a, b = xr.open_zarr(got), xr.open_zarr(want)
    np.testing.assert_array_equal(a["embeddings"].values, b["embeddings"].values)  # bit for bit, NaN == NaN
    for name in b.coords:
        np.testing.assert_array_equal(a[name].values, b[name].values)
    assert a["embeddings"].rio.crs == b["embeddings"].rio.crs
    assert a["embeddings"].rio.transform() == b["embeddings"].rio.transform()
    assert _files(got) == _files(want)
    assert _meta(got, "embeddings/zarr.json") == _meta(want, "embeddings/zarr.json")
    assert _without_graph(_meta(got)) == _without_graph(_meta(want))


@pytest.fixture(scope="module")
def whole(tmp_path_factory):
    return to_zarr(embeddings(), tmp_path_factory.mktemp("whole") / "whole.zarr", show_progress=False)


@pytest.mark.parametrize("window", [1, 3, 100])
def test_a_windowed_store_equals_the_whole_graphs(tmp_path, whole, window):
    store = to_zarr(request(), tmp_path / "windowed.zarr", window=window, show_progress=False)
    assert_same_store(store, whole)
    assert not _state(store).exists()


def test_windows_lie_on_the_whole_grids_chunks_with_a_merged_short_edge(tmp_path):
    # 8 px patches, 32 px tiles, one tile a chunk: 150 px = 19 tokens (the last partly outside) -> chunks (4, 4, 4, 7): the
    # last tokens (fewer than a tile) join the last chunk, so a window never ends inside it.
    source = xrembed.testing.synthetic_raster((150, 100), seed=21).chunk({"y": 48, "x": 40})
    emb = source.rsembed.embed("dofa-tiny", weights="random", tiles_per_chunk=1)
    req = EmbedRequest(source, "dofa-tiny", weights="random", tiles_per_chunk=1)
    assert req.token_chunks == ((4, 4, 4, 7), (4, 4, 5))  # 100 px = 13 tokens: 4 + 4 + (4 + 1)
    windows = list(req.windows(2))
    assert [(r.start, r.stop, c.start, c.stop) for r, c in windows] == [
        (0, 8, 0, 8), (0, 8, 8, 13), (8, 19, 0, 8), (8, 19, 8, 13)]
    want = to_zarr(emb, tmp_path / "whole.zarr", show_progress=False)
    for window in (1, 2):
        assert_same_store(to_zarr(req, tmp_path / f"w{window}.zarr", window=window, show_progress=False), want)


def test_only_windows_with_a_region_to_do_are_built(tmp_path, monkeypatch):
    store = to_zarr(request(), tmp_path / "emb.zarr", window=2, show_progress=False)
    built = []
    original = EmbedRequest.window_data
    monkeypatch.setattr(EmbedRequest, "window_data", lambda self, r, c: (built.append((r, c)), original(self, r, c))[1])
    to_zarr(request(), store, window=2, show_progress=False)  # complete: nothing built
    assert built == []
    # Undo one region (as a kill right before its record would): only its window is built again.
    import zarr

    from xrembed.export.ownership import mark_state

    state = _state(store)
    mark_state(state)
    (state / "regions").mkdir(parents=True)
    for i in range(7):
        for j in range(7):
            if (i, j) != (5, 2):
                (state / "regions" / f"0.{i}.{j}").touch()
    root = zarr.open_group(store, mode="r+")
    record = dict(root.attrs["xrembed_stream"])
    record["complete"] = False
    root.attrs["xrembed_stream"] = record
    written = []
    write = stream._write_region
    monkeypatch.setattr(stream, "_write_region", lambda *a, **k: (written.append(k["region"]), write(*a, **k))[1])
    to_zarr(request(), store, window=2, show_progress=False)
    step = 8  # tokens per region side
    assert [(r.start // step, c.start // step) for r, c in built] == [(4, 2)]  # the window holding region (5, 2)
    assert written == [(0, 5, 2)]


def test_a_run_resumes_with_another_window(tmp_path, whole, monkeypatch):
    """The window is not part of the request: a store started with one window finishes with another."""
    store = tmp_path / "emb.zarr"
    write = stream._write_region
    count = {"n": 0}

    def dies_after_ten(*args, **kwargs):
        if count["n"] == 10:
            raise RuntimeError("stopped")  # a job stopped midway
        count["n"] += 1
        return write(*args, **kwargs)

    monkeypatch.setattr(stream, "_write_region", dies_after_ten)
    with pytest.raises(RuntimeError, match="stopped"):
        to_zarr(request(), store, window=1, batch_regions=1, show_progress=False)
    assert 0 < _recorded(store) < REGIONS
    monkeypatch.setattr(stream, "_write_region", write)
    to_zarr(request(), store, window=4, show_progress=False)
    assert_same_store(store, whole)
    with pytest.raises(stream.ResumeMismatchError, match="precision"):
        to_zarr(request(precision="bf16"), store, show_progress=False)


def test_bad_requests_are_clear_errors(tmp_path):
    with pytest.raises(OptionError, match="EmbedRequest"):
        to_zarr(embeddings(), tmp_path / "x.zarr", window=2)
    for bad in (0, -1, 2.5, True):
        with pytest.raises(OptionError, match="window must be a positive integer"):
            to_zarr(request(), tmp_path / "x.zarr", window=bad)
    with pytest.raises(OptionError, match="output='grid'"):
        request(output="pooled", input_prep="tile")
    with pytest.raises(OptionError, match="overlapping"):
        EmbedRequest(raster(), "dofa-tiny", **OPTIONS, input_prep=xrembed.InputPrepSpec.tile(tile_stride=16))
    with pytest.raises(OptionError, match="precomputed product"):
        EmbedRequest(raster(), "tessera")
    with pytest.raises(xrembed.errors.BandMismatchError):  # embed()'s own checks, before any graph
        request(bands=["B04", "B99"])
    assert not (tmp_path / "x.zarr").exists()


def test_embed_request_is_public():
    assert xrembed.EmbedRequest is EmbedRequest and "EmbedRequest" in xrembed.__all__


def test_an_eager_raster_is_windowed_too(tmp_path):
    source = xrembed.testing.synthetic_raster((64, 96), seed=22)
    want = to_zarr(source.chunk({"y": 32, "x": 32}).rsembed.embed("dofa-tiny", weights="random", tiles_per_chunk=1),
                   tmp_path / "whole.zarr", show_progress=False)
    got = to_zarr(EmbedRequest(source, "dofa-tiny", weights="random", tiles_per_chunk=1), tmp_path / "w.zarr",
                  window=1, show_progress=False)
    # Other input chunks batch other tiles together: equal to the engine's 1e-5 (chunk invariance).
    np.testing.assert_allclose(xr.open_zarr(got)["embeddings"].values, xr.open_zarr(want)["embeddings"].values,
                               rtol=0, atol=1e-5)


def _run_child(store: Path, resume: bool, kill_after: float | None, window: int, after_progress: bool = False):
    proc = subprocess.Popen(
        [sys.executable, str(CHILD), str(store), "1" if resume else "0", "0.03" if kill_after else "0", str(window)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={**os.environ, "PYTHONWARNINGS": "ignore", "OMP_NUM_THREADS": "1"},
    )
    assert proc.stdout.readline().strip() == "READY", proc.stderr.read()
    if kill_after is None:
        _out, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, err
        return 0
    before, deadline = _recorded(store), time.monotonic() + 120
    while after_progress and _recorded(store) <= before and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    time.sleep(kill_after)
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=60)
    return proc.returncode


def test_a_windowed_run_killed_at_random_moments_resumes_to_the_whole_graphs_store(tmp_path):
    # The reference comes from the same child script (same torch threads), through the whole graph.
    reference = tmp_path / "reference.zarr"
    proc = subprocess.run([sys.executable, str(CHILD), str(reference), "0", "0"], capture_output=True, text=True,
                          env={**os.environ, "PYTHONWARNINGS": "ignore", "OMP_NUM_THREADS": "1"}, timeout=300)
    assert proc.returncode == 0, proc.stderr
    store = tmp_path / "killed.zarr"
    rng = random.Random(41)
    midway, recorded = 0, []
    for attempt in range(2):
        code = _run_child(store, resume=attempt > 0, window=2, after_progress=attempt > 0,
                          kill_after=rng.uniform(0.3, 2.0) if attempt == 0 else rng.uniform(0.0, 0.5))
        recorded.append((code, _recorded(store)))
        midway += code == -signal.SIGKILL and 0 < _recorded(store) < REGIONS
    assert midway >= 1, f"no run was killed in the middle of the job; the kill points missed it: {recorded}"
    _run_child(store, resume=True, kill_after=None, window=3)
    assert_same_store(store, reference)
    assert not _state(store).exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["killed.zarr", "reference.zarr"]  # no temporaries


def test_a_request_at_another_tile_size_refuses_to_resume(tmp_path):
    """A raster within one chunk has the same output grid and chunks at any tile size (a cell is a patch):
    only the request tells them apart."""
    small = raster().isel(y=slice(0, 24), x=slice(0, 24))
    store = to_zarr(EmbedRequest(small, "dofa-tiny", **OPTIONS), tmp_path / "emb.zarr", show_progress=False)
    with pytest.raises(stream.ResumeMismatchError, match="tile_size: None -> 16"):
        to_zarr(EmbedRequest(small, "dofa-tiny", tile_size=16, **OPTIONS), store, show_progress=False)
