"""xrembed.to_zarr: a grid streamed region by region, killed with SIGKILL at random moments and resumed,
ends identical to an uninterrupted run (consolidated, opening without a warning); a changed request refuses
to resume, naming what changed."""

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
from xrembed.errors import OverwriteError
from xrembed.stream import to_zarr

sys.path.insert(0, str(Path(__file__).parent))
from _stream_scenario import embeddings

CHILD = Path(__file__).parent / "_stream_child.py"
REGIONS = 49


def _state(store: Path) -> Path:
    return store.parent / f".{store.name}.xrembed-stream"


def _recorded(store: Path) -> int:
    regions = _state(store) / "regions"
    return len(list(regions.iterdir())) if regions.is_dir() else 0


def _run_child(store: Path, resume: bool, kill_after: float | None, slow: float, after_progress: bool = False) -> int:
    """Stream in a child; SIGKILL it ``kill_after`` s after READY or, with ``after_progress``, ``kill_after`` s
    after it records a new region (so that a slow, busy machine is still killed in the middle of the job)."""
    proc = subprocess.Popen(
        [sys.executable, str(CHILD), str(store), "1" if resume else "0", str(slow)],
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


def _files(store: Path) -> set[str]:
    return {str(p.relative_to(store)) for p in store.rglob("*")}


def _zarr_json(store: Path) -> dict:
    return json.loads((store / "zarr.json").read_text())


def test_sigkill_at_random_moments_then_resume_is_identical(tmp_path):
    # The uninterrupted run is made by the same child (same torch threads), so the stores can be bit-identical.
    reference = tmp_path / "reference.zarr"
    _run_child(reference, resume=False, kill_after=None, slow=0.0)
    store = tmp_path / "killed.zarr"
    rng = random.Random(14)
    midway, recorded = 0, []
    for attempt in range(4):
        # The first kill falls anywhere from the start; the others at a random moment after new progress.
        code = _run_child(store, resume=attempt > 0, slow=0.03, after_progress=attempt > 0,
                          kill_after=rng.uniform(0.3, 3.0) if attempt == 0 else rng.uniform(0.0, 0.6))
        recorded.append((code, _recorded(store)))
        midway += code == -signal.SIGKILL and 0 < _recorded(store) < REGIONS
    assert midway >= 2, f"fewer than two runs were killed in the middle of the job; the kill points missed it: {recorded}"
    _run_child(store, resume=True, kill_after=None, slow=0.0)

    got = xr.open_zarr(store, consolidated=False)
    want = xr.open_zarr(reference, consolidated=False)
    np.testing.assert_array_equal(got["embeddings"].values, want["embeddings"].values)  # NaN == NaN here
    assert got.attrs == want.attrs and got["embeddings"].attrs == want["embeddings"].attrs
    assert _files(store) == _files(reference)  # the same chunks, no *.partial, no state inside
    assert _zarr_json(store) == _zarr_json(reference)
    assert not _state(store).exists() and not _state(reference).exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["killed.zarr", "reference.zarr"]  # no temporaries


def test_a_finished_store_is_consolidated_and_opens_without_a_warning(tmp_path, recwarn):
    store = to_zarr(embeddings(), tmp_path / "emb.zarr", show_progress=False)
    meta = _zarr_json(store)
    assert meta["attributes"]["xrembed_stream"]["complete"] is True
    consolidated = meta["consolidated_metadata"]["metadata"]
    assert {"embeddings", "x", "y", "spatial_ref"} <= set(consolidated)
    assert consolidated["embeddings"]["chunk_grid"]["configuration"]["chunk_shape"] == [32, 8, 8]
    recwarn.clear()
    ds = xr.open_zarr(store)  # consolidated=None: tries the consolidated metadata first, warns without it
    assert [str(w.message) for w in recwarn] == []
    assert ds["embeddings"].rio.crs == embeddings().rio.crs


def test_a_kill_between_completion_and_consolidation_is_consolidated_on_rerun(tmp_path, monkeypatch):
    store = tmp_path / "emb.zarr"
    monkeypatch.setattr(stream, "_consolidate", lambda path: (_ for _ in ()).throw(SystemExit("killed")))
    with pytest.raises(SystemExit):
        to_zarr(embeddings(), store, show_progress=False)
    assert _zarr_json(store)["attributes"]["xrembed_stream"]["complete"] is True
    assert "consolidated_metadata" not in _zarr_json(store) and _state(store).exists()
    with pytest.warns(RuntimeWarning, match="consolidated"):  # what users saw before
        xr.open_zarr(store)
    monkeypatch.undo()
    written = []
    original = stream._write_region
    monkeypatch.setattr(stream, "_write_region", lambda *a, **k: (written.append(k["region"]), original(*a, **k))[1])
    to_zarr(embeddings(), store, show_progress=False)
    assert written == [] and "consolidated_metadata" in _zarr_json(store) and not _state(store).exists()
    # The consolidated metadata describes the store as it is (nothing changes after it is written).
    import zarr

    live = zarr.open_group(store, mode="r", use_consolidated=False)
    assert dict(live.attrs) == _zarr_json(store)["attributes"]


def test_an_unfinished_store_is_not_consolidated(tmp_path, monkeypatch):
    write = stream._write_region

    def stops_after_five(*args, **kwargs):
        if len(list((_state(tmp_path / "emb.zarr") / "regions").iterdir())) >= 5:
            raise RuntimeError("stopped")
        return write(*args, **kwargs)

    monkeypatch.setattr(stream, "_write_region", stops_after_five)
    with pytest.raises(RuntimeError, match="stopped"):
        to_zarr(embeddings(), tmp_path / "emb.zarr", show_progress=False, batch_regions=1)
    assert "consolidated_metadata" not in _zarr_json(tmp_path / "emb.zarr")  # metadata of a store still growing


def test_store_carries_crs_conventions_and_values(tmp_path):
    emb = embeddings()
    store = to_zarr(emb, tmp_path / "emb.zarr", show_progress=False)
    ds = xr.open_zarr(store, consolidated=False)
    out = ds["embeddings"]
    assert out.rio.crs == emb.rio.crs and out.rio.transform() == emb.rio.transform()
    np.testing.assert_array_equal(out.values, emb.values)
    assert ds.attrs["proj:code"] == "EPSG:32629" and ds.attrs["geoemb:model"] == "dofa-tiny"
    assert ds.attrs["geoemb:dimensions"] == 32 and ds.attrs["spatial:shape"] == [56, 56]
    meta = json.loads((store / "embeddings" / "zarr.json").read_text())
    assert meta["chunk_grid"]["configuration"]["chunk_shape"] == [32, 8, 8]  # one region = one dask chunk
    assert np.isnan(out.encoding["_FillValue"])
    assert json.loads(ds.attrs["xrembed_export"])["kind"] == "stream"


def test_resume_of_a_complete_store_computes_nothing(tmp_path, monkeypatch):
    store = tmp_path / "emb.zarr"
    to_zarr(embeddings(), store, show_progress=False)
    written = []
    original = stream._write_region
    monkeypatch.setattr(stream, "_write_region", lambda *a, **k: (written.append(k["region"]), original(*a, **k))[1])
    to_zarr(embeddings(), store, show_progress=False)
    assert written == []
    # Regions not recorded are the only ones computed again.
    state = _state(store)
    (state / "regions").mkdir(parents=True)
    from xrembed.export.ownership import mark_state

    mark_state(state)
    import zarr

    root = zarr.open_group(store, mode="r+")
    record = dict(root.attrs["xrembed_stream"])
    record["complete"] = False
    root.attrs["xrembed_stream"] = record
    done = [f"0.{i}.{j}" for i in range(7) for j in range(7) if (i, j) not in ((0, 0), (3, 4))]
    for name in done:
        (state / "regions" / name).touch()
    to_zarr(embeddings(), store, show_progress=False)
    assert sorted(written) == [(0, 0, 0), (0, 3, 4)]
    assert not state.exists()


@pytest.mark.parametrize(
    ("change", "named"),
    [
        ({"precision": "bf16"}, "the options changed (precision: 'fp32' -> 'bf16')"),
        ({"tiles_per_chunk": 1}, "the grid changed (chunks"),
        ({"bands": ["B04", "B03", "B02", "B08"]}, "the options changed (bands"),
    ],
)
def test_a_changed_request_refuses_to_resume_naming_why(tmp_path, change, named):
    store = tmp_path / "emb.zarr"
    to_zarr(embeddings(), store, show_progress=False)
    before = _zarr_json(store)
    with pytest.raises(stream.ResumeMismatchError) as info:
        to_zarr(embeddings(**change), store, show_progress=False)
    assert named in str(info.value) and "resume=False" in str(info.value)
    assert _zarr_json(store) == before  # untouched
    to_zarr(embeddings(**change), store, resume=False, show_progress=False)  # the way out
    assert _zarr_json(store)["attributes"]["precision"] == change.get("precision", "fp32")


def test_changed_weights_file_and_input_refuse(tmp_path):
    ckpt = tmp_path / "tiny.pth"
    xrembed.testing.write_official_checkpoint(ckpt, "dofa-tiny", seed=1)
    store = tmp_path / "emb.zarr"
    raster = xrembed.testing.synthetic_raster((64, 64), seed=3)
    to_zarr(raster.rsembed.embed("dofa-tiny", weights=str(ckpt)), store, show_progress=False)
    xrembed.testing.write_official_checkpoint(ckpt, "dofa-tiny", seed=2)  # same path, other weights
    with pytest.raises(stream.ResumeMismatchError, match="the weights changed"):
        to_zarr(raster.rsembed.embed("dofa-tiny", weights=str(ckpt)), store, show_progress=False)
    with pytest.raises(stream.ResumeMismatchError, match="the weights changed"):
        to_zarr(raster.rsembed.embed("dofa-tiny", weights="random"), store, show_progress=False)
    other = xrembed.testing.synthetic_raster((64, 64), seed=4)  # same grid and bands, other pixels
    store2 = tmp_path / "emb2.zarr"
    to_zarr(raster.chunk().rsembed.embed("dofa-tiny", weights="random"), store2, show_progress=False)
    with pytest.raises(stream.ResumeMismatchError, match="the input changed"):
        to_zarr(other.chunk().rsembed.embed("dofa-tiny", weights="random"), store2, show_progress=False)


def test_a_folder_xrembed_did_not_write_is_never_touched(tmp_path):
    store = tmp_path / "mine.zarr"
    store.mkdir()
    (store / "notes.txt").write_text("keep me")
    with pytest.raises(OverwriteError, match="overwrite=True"):
        to_zarr(embeddings(), store, show_progress=False)
    assert (store / "notes.txt").read_text() == "keep me"
    # An empty folder (users often mkdir the target first) is fine.
    empty = tmp_path / "empty.zarr"
    empty.mkdir()
    to_zarr(embeddings(), empty, show_progress=False)
    assert (empty / "zarr.json").is_file()


def test_an_export_store_is_not_resumed_as_a_stream(tmp_path):
    from xrembed.export.ownership import mark_zarr

    store = tmp_path / "export.zarr"
    mark_zarr(store, "export")
    with pytest.raises(stream.ResumeMismatchError, match="not by to_zarr"):
        to_zarr(embeddings(), store, show_progress=False)


def test_progress_bar_counts_regions_and_area(tmp_path, capsys):
    to_zarr(embeddings(), tmp_path / "emb.zarr", show_progress=True)
    err = capsys.readouterr().err
    last = err.replace("\r", "\n").strip().splitlines()[-1]
    assert f"{REGIONS}/{REGIONS}" in last and "region" in last and "km²/h" in last


def test_irregular_chunks_are_made_regular(tmp_path):
    emb = embeddings().chunk({"y": (20, 36), "x": (8, 16, 32)})
    plan = stream.plan_regions(emb)
    assert plan.zarr_chunks == (32, 20, 8)
    assert all(len(set(c[:-1])) <= 1 and c[-1] <= c[0] for c in plan.chunks)
    store = to_zarr(emb, tmp_path / "emb.zarr", show_progress=False)
    np.testing.assert_array_equal(xr.open_zarr(store, consolidated=False)["embeddings"].values, emb.values)


def test_an_eager_grid_streams_too(tmp_path):
    raster = xrembed.testing.synthetic_raster((64, 96), seed=5)
    emb = raster.rsembed.embed("dofa-tiny", weights="random")
    assert emb.chunks is None
    store = to_zarr(emb, tmp_path / "emb.zarr", show_progress=False)
    got = xr.open_zarr(store, consolidated=False)["embeddings"]
    np.testing.assert_array_equal(got.values, emb.values)
    assert got.rio.crs == emb.rio.crs


def test_bad_arguments_are_clear_errors(tmp_path):
    with pytest.raises(xrembed.errors.OptionError, match="DataArray"):
        to_zarr(embeddings().to_dataset(), tmp_path / "x.zarr")
    with pytest.raises(xrembed.errors.OptionError, match="batch_regions"):
        to_zarr(embeddings(), tmp_path / "x.zarr", batch_regions=0)


def test_the_accessor_streams_the_same_store(tmp_path):
    emb = embeddings()
    store = emb.rsembed.to_zarr(tmp_path / "emb.zarr", show_progress=False)
    assert store == tmp_path / "emb.zarr"
    np.testing.assert_array_equal(xr.open_zarr(store, consolidated=False)["embeddings"].values, emb.values)
    with pytest.raises(stream.ResumeMismatchError, match="precision"):
        embeddings(precision="bf16").rsembed.to_zarr(store, show_progress=False)


def test_to_zarr_is_public():
    assert xrembed.to_zarr is to_zarr and "to_zarr" in xrembed.__all__


def test_time_steps_and_pooled_vectors_stream_too(tmp_path):
    raster = xrembed.testing.synthetic_raster((64, 64), seed=6).chunk({"y": 32, "x": 32})
    series = xr.concat([raster, raster * 1.01], dim="time").assign_coords(
        time=np.array(["2020-01-01", "2020-02-01"], dtype="datetime64[ns]"))
    emb = series.rsembed.embed("dofa-tiny", weights="random", tiles_per_chunk=1)
    assert stream.plan_regions(emb).total == 2 * 2 * 2  # time x y x x chunks
    got = xr.open_zarr(to_zarr(emb, tmp_path / "series.zarr", show_progress=False), consolidated=False)["embeddings"]
    assert got.dims == ("time", "embedding", "y", "x") and got.rio.crs == emb.rio.crs
    np.testing.assert_array_equal(got.values, emb.values)
    np.testing.assert_array_equal(got["time"].values, series["time"].values)
    pooled = raster.rsembed.embed("dofa-tiny", weights="random", output="pooled", input_prep="tile")
    vec = xr.open_zarr(to_zarr(pooled, tmp_path / "pooled.zarr", show_progress=False), consolidated=False)
    np.testing.assert_array_equal(vec["embeddings"].values, pooled.values)
    assert vec.attrs["geoemb:type"] == "chip"
