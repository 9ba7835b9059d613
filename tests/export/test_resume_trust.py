"""Resume never reports stale or missing results as done; a damaged store never reads back silently."""

import glob
import sys
from pathlib import Path

import numpy as np
import pytest

import xrembed
import xrembed.testing
from xrembed import ExportConfig, ExportModelRequest, ExportTarget, OutputSpec
from xrembed.errors import StoreError

sys.path.insert(0, str(Path(__file__).parent))
from _export_scenario import spatials


def _export(target, weights, output="pooled", resume=True):
    models = [ExportModelRequest.configure("dofa-tiny", weights=str(weights))]
    config = ExportConfig(show_progress=False, continue_on_error=True, resume=resume)
    return xrembed.export_batch(spatials=spatials(2), temporal=None, models=models, target=target,
                                output=OutputSpec(output), config=config, source=xrembed.sample_path())


def _vectors(path):
    return xrembed.load_export(path).embedding("dofa-tiny").values[:2]


def test_a_replaced_checkpoint_is_not_resumed_into(tmp_path):
    weights = tmp_path / "tiny.pth"
    xrembed.testing.write_official_checkpoint(weights, "dofa-tiny", seed=0)
    target = ExportTarget.combined(tmp_path / "emb.zarr")
    _export(target, weights)
    first = _vectors(target.path)
    xrembed.testing.write_official_checkpoint(weights, "dofa-tiny", seed=1)  # same path, other weights
    _export(target, weights)
    second = _vectors(target.path)
    assert np.isfinite(second).all() and not np.allclose(first, second, atol=1e-4)
    fresh = tmp_path / "fresh.zarr"
    _export(ExportTarget.combined(fresh), weights, resume=False)
    np.testing.assert_allclose(second, _vectors(fresh), atol=1e-6)


@pytest.mark.parametrize("output", ["pooled", "grid"])
def test_a_deleted_store_is_redone_not_reported_ok(tmp_path, output):
    import shutil

    weights = tmp_path / "tiny.pth"
    xrembed.testing.write_official_checkpoint(weights, "dofa-tiny")
    target = ExportTarget.combined(tmp_path / "emb.zarr")
    _export(target, weights, output)
    before = xrembed.load_export(target.path)
    shutil.rmtree(target.path)  # the state folder and the manifest stay
    manifest = _export(target, weights, output)
    assert [i["status"] for i in manifest["items"]] == ["ok", "ok", "failed"]
    after = xrembed.load_export(target.path)
    if output == "pooled":
        np.testing.assert_allclose(after.embedding("dofa-tiny").values[:2], before.embedding("dofa-tiny").values[:2])
    else:
        for a, b in zip(after.embedding("dofa-tiny")[:2], before.embedding("dofa-tiny")[:2]):
            np.testing.assert_allclose(a.values, b.values)


def test_a_torn_chunk_raises_a_store_error_on_reload(tmp_path):
    weights = tmp_path / "tiny.pth"
    xrembed.testing.write_official_checkpoint(weights, "dofa-tiny")
    target = ExportTarget.combined(tmp_path / "emb.zarr")
    _export(target, weights, "grid")
    chunk = sorted(glob.glob(str(target.path / "dofa-tiny" / "p00000" / "embeddings" / "c" / "**" / "*"), recursive=True))
    chunk = [c for c in chunk if Path(c).is_file()][0]
    with open(chunk, "r+b") as f:
        f.truncate(7)
    grid = xrembed.load_export(target.path).embedding("dofa-tiny")[0]
    with pytest.raises(StoreError, match=r"emb\.zarr.*damaged"):
        grid.values
