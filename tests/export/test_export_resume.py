"""An export killed with SIGKILL at random moments and resumed ends identical to an uninterrupted one."""

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
import xrembed.testing

sys.path.insert(0, str(Path(__file__).parent))
from _export_scenario import MODELS, OUTPUT, spatials

CHILD = Path(__file__).parent / "_export_child.py"


def _reference(out: Path, fmt: str, layout: str):
    target = xrembed.ExportTarget.combined(out) if layout == "combined" else xrembed.ExportTarget.per_item(out)
    xrembed.export_batch(
        spatials=spatials(), temporal=None, models=MODELS, target=target, output=OUTPUT,
        config=xrembed.ExportConfig(format=fmt, continue_on_error=True, show_progress=False),
        source=xrembed.sample_path(),
    )
    return xrembed.load_export(out)


def _marks(state: Path) -> int:
    return len(list((state / "marks").rglob("*.json"))) if state.exists() else 0


def _run_child(out: Path, fmt: str, layout: str, resume: bool, kill_after: float | None, slow: float,
               state: Path | None = None):
    """Run the export in a child; SIGKILL it ``kill_after`` seconds after it starts exporting, or, with
    ``state``, ``kill_after`` seconds after it next marks a unit done (so that a slow machine, where the
    first unit takes longer than the random delay, is still killed in the middle)."""
    proc = subprocess.Popen(
        [sys.executable, str(CHILD), str(out), fmt, layout, "1" if resume else "0", str(slow)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env={**os.environ, "PYTHONWARNINGS": "ignore"},
    )
    assert proc.stdout.readline().strip() == "READY", proc.stderr.read()
    if kill_after is None:
        _out_text, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, err
        return proc.returncode
    if state is not None:
        before, deadline = _marks(state), time.monotonic() + 120
        while _marks(state) <= before and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.02)
    time.sleep(kill_after)
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=60)
    return proc.returncode


def _assert_same(result, reference):
    assert result.status == reference.status == "partial"  # the off-raster ROI fails in both
    assert result.names == reference.names
    for model in reference.models:
        got, want = result.models[model], reference.models[model]
        assert got.status == want.status and got.errors.keys() == want.errors.keys()
        if isinstance(want.embeddings, xr.DataArray):
            np.testing.assert_allclose(got.embeddings.values, want.embeddings.values, atol=1e-5, equal_nan=True)
        else:
            assert len(got.embeddings) == len(want.embeddings)
            for g, w in zip(got.embeddings, want.embeddings):
                assert (g is None) == (w is None)
                if w is not None:
                    assert g.rio.crs == w.rio.crs and g.rio.transform() == w.rio.transform()
                    np.testing.assert_allclose(g.values, w.values, atol=1e-5, equal_nan=True)
    got_units = [(i["name"], m, e["status"], e["fingerprint"]) for i in result.manifest["items"] for m, e in i["models"].items()]
    want_units = [(i["name"], m, e["status"], e["fingerprint"]) for i in reference.manifest["items"] for m, e in i["models"].items()]
    assert got_units == want_units


def _files(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*") if ".xrembed" not in str(p) and p.is_file()}


@pytest.mark.parametrize(("fmt", "layout", "seed"), [("zarr", "combined", 0), ("npz", "per_item", 1)])
def test_sigkill_at_random_points_then_resume_is_identical(tmp_path, fmt, layout, seed):
    suffix = ".zarr" if layout == "combined" else ""
    reference = _reference(tmp_path / f"reference{suffix}", fmt, layout)
    out = tmp_path / f"killed{suffix}"
    state = out.parent / f".{out.name}.xrembed" if layout == "combined" else out / ".xrembed"
    total = len(spatials()) * len(MODELS)
    rng = random.Random(seed)
    interrupted_midway = 0
    for attempt in range(3):
        # The first kill falls anywhere from the start; the others at a random moment after new progress.
        code = _run_child(out, fmt, layout, resume=attempt > 0, slow=0.05, state=state if attempt else None,
                          kill_after=rng.uniform(0.5, 5.0) if attempt == 0 else rng.uniform(0.0, 1.0))
        marked = _marks(state)
        interrupted_midway += code == -signal.SIGKILL and 0 < marked < total
    assert interrupted_midway, "no run was killed in the middle of the export; the kill points missed it"
    _run_child(out, fmt, layout, resume=True, kill_after=None, slow=0.0)
    _assert_same(xrembed.load_export(out), reference)
    if layout == "per_item":
        assert _files(out) == _files(tmp_path / "reference")
    assert not list(tmp_path.rglob("*.tmp"))


def test_resume_skips_complete_units_and_redoes_changed_ones(tmp_path, monkeypatch):
    out = tmp_path / "emb.zarr"
    rois = spatials(4)
    kwargs = {"temporal": None, "target": xrembed.ExportTarget.combined(out), "output": OUTPUT, "source": xrembed.sample_path()}
    config = xrembed.ExportConfig(resume=True, continue_on_error=True, show_progress=False)
    xrembed.export_batch(spatials=rois, models=MODELS[:1], config=config, **kwargs)

    from xrembed.export import store

    written = []
    original = store.write_stack_row
    monkeypatch.setattr(store, "write_stack_row", lambda *a, **k: (written.append(a[2]), original(*a, **k)))
    xrembed.export_batch(spatials=rois, models=MODELS[:1], config=config, **kwargs)
    assert written == []  # complete and unchanged: nothing recomputed (the failed ROI is retried, and fails again)
    changed = [rois[0], xrembed.PointBuffer(rois[1].lon, rois[1].lat, 2400.0), *rois[2:]]
    xrembed.export_batch(spatials=changed, models=MODELS[:1], config=config, **kwargs)
    assert written == [1]  # only the ROI whose request changed
