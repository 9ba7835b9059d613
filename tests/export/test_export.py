"""export_batch / load_export: layouts, formats, manifest, failures, streaming of large grids."""

import json
import sys
from pathlib import Path

import numpy as np
import pytest
import xarray as xr

import xrembed
import xrembed.testing
from xrembed import ExportConfig, ExportModelRequest, ExportTarget, OutputSpec
from xrembed.errors import ExportError, OptionError, OverwriteError
from xrembed.export import store

sys.path.insert(0, str(Path(__file__).parent))
from _export_scenario import spatials

TINY = [ExportModelRequest.configure("dofa-tiny", weights="random")]


def _export(target, output="pooled", fmt="zarr", models=TINY, n=3, **config):
    config = ExportConfig(format=fmt, show_progress=False, **{"continue_on_error": True, **config})
    return xrembed.export_batch(spatials=spatials(n), temporal=None, models=models, target=target,
                                output=OutputSpec(output), config=config, source=xrembed.sample_path())


def _alone(roi, output):
    return xrembed.get_embedding("dofa-tiny", spatial=roi, source=xrembed.sample_path(), weights="random",
                                 output=OutputSpec(output))


# GeoTIFF holds per-ROI grids only (the other combinations are refused: test_geotiff_refusals).
CASES = [
    (fmt, layout, output)
    for fmt in ("zarr", "netcdf", "npz", "geotiff")
    for layout in ("combined", "per_item")
    for output in ("grid", "pooled")
    if fmt != "geotiff" or (layout, output) == ("per_item", "grid")
]


@pytest.mark.parametrize(("fmt", "layout", "output"), CASES)
def test_every_format_reads_back_the_values_of_get_embedding(tmp_path, fmt, layout, output):
    target = ExportTarget.combined(tmp_path / f"emb.{fmt}") if layout == "combined" else ExportTarget.per_item(tmp_path / "out")
    manifest = _export(target, output, fmt)
    items = manifest["items"] if layout == "combined" else manifest
    assert [i["status"] for i in items] == ["ok", "ok", "ok", "failed"]  # the last ROI lies off the raster
    assert "does not overlap" in items[3]["models"]["dofa-tiny"]["error"]
    result = xrembed.load_export(target.path)
    assert result.status == "partial" and result.names == ["p00000", "p00001", "p00002", "p00003"]
    got = result.embedding("dofa-tiny")
    rois = spatials(3)
    if output == "pooled":
        assert got.dims == ("item", "embedding") and np.isnan(got.values[3]).all()
        for k, roi in enumerate(rois[:3]):
            np.testing.assert_allclose(got.values[k], _alone(roi, "pooled").data, atol=1e-5)
    else:
        assert got[3] is None
        for k, roi in enumerate(rois[:3]):
            want = _alone(roi, "grid").data
            assert got[k].rio.crs == want.rio.crs and got[k].rio.transform() == want.rio.transform()
            np.testing.assert_allclose(got[k].values, want.values, atol=1e-5)


def test_combined_zarr_layout_and_conventions(tmp_path):
    out = tmp_path / "emb.zarr"
    models = [*TINY, ExportModelRequest.configure("dofa-tiny", label="tiny_grid", weights="random", output="grid")]
    _export(ExportTarget.combined(out), "pooled", models=models)
    stack = xr.open_zarr(out, group="dofa-tiny", consolidated=False)
    assert stack["embeddings"].dims == ("item", "embedding") and str(stack["item"].values[0]) == "p00000"
    grid = xr.open_zarr(out, group="tiny_grid/p00001", consolidated=False, decode_coords="all")
    assert grid.attrs["proj:code"] == "EPSG:32629" and grid.attrs["spatial:dimensions"] == ["y", "x"]
    assert grid.attrs["spatial:transform"] == list(grid["embeddings"].rio.transform())[:6]
    manifest = json.loads((tmp_path / "emb.json").read_text())
    assert manifest["format"] == "zarr" and manifest["models"] == ["dofa-tiny", "tiny_grid"]


def test_geotiff_refusals(tmp_path):
    with pytest.raises(OptionError, match="per_item"):
        _export(ExportTarget.combined(tmp_path / "a.tif"), "grid", "geotiff")
    with pytest.raises(OptionError, match="OutputSpec.grid"):
        _export(ExportTarget.per_item(tmp_path / "b"), "pooled", "geotiff")


def test_first_failure_stops_without_continue_on_error(tmp_path):
    target = ExportTarget.combined(tmp_path / "emb.zarr")
    with pytest.raises(ExportError, match="p00003.*resume=True"):
        _export(target, continue_on_error=False)
    manifest = json.loads((tmp_path / "emb.json").read_text())
    assert manifest["status"] == "incomplete" and manifest["items"][3]["status"] == "failed"
    _export(target, resume=True)  # finishes the others
    assert [i["status"] for i in json.loads((tmp_path / "emb.json").read_text())["items"]] == ["ok"] * 3 + ["failed"]


def test_bad_requests_are_refused_before_any_work(tmp_path):
    with pytest.raises(OptionError, match="distinct labels"):
        _export(ExportTarget.combined(tmp_path / "e.zarr"), models=["dofa-tiny", "dofa-tiny"])
    with pytest.raises(xrembed.errors.SpecError, match="one name per ROI"):
        _export(ExportTarget.combined(tmp_path / "e.zarr", names=["a"]))
    with pytest.raises(OptionError, match="inputs only"):
        ExportConfig(save_inputs=True, save_embeddings=False)
    with pytest.raises(OptionError, match="format"):
        ExportConfig(format="parquet")
    (tmp_path / "notzarr.zarr").mkdir()
    (tmp_path / "notzarr.zarr" / "data.bin").write_bytes(b"mine")
    with pytest.raises(OverwriteError, match="did not write it"):
        _export(ExportTarget.combined(tmp_path / "notzarr.zarr"))


def test_names_name_the_items(tmp_path):
    names = ["lisbon", "porto", "faro", "nowhere"]
    _export(ExportTarget.per_item(tmp_path / "out", names=names))
    assert sorted(p.name for p in (tmp_path / "out").glob("*.zarr")) == ["faro.zarr", "lisbon.zarr", "porto.zarr"]
    assert xrembed.load_export(tmp_path / "out").names == names


def test_large_grids_are_written_band_by_band(tmp_path, monkeypatch):
    """A result bigger than max_stack_px stays lazy and goes to Zarr one band of chunk rows at a time."""
    from xrembed import batch

    monkeypatch.setattr(batch, "MAX_STACK_PX", 32 * 32)
    bands = []
    original = store.write_group
    monkeypatch.setattr(store, "write_group", lambda *a, **k: original(*a, on_band=lambda i, n: bands.append(n)))
    roi = spatials(1)[0]
    roi = xrembed.PointBuffer(roi.lon, roi.lat, 3200)  # 64 px: 2 x 2 tiles of 32 px, one per chunk
    xrembed.export_batch(
        spatials=[roi], temporal=None, target=ExportTarget.combined(tmp_path / "emb.zarr"), output=OutputSpec.grid(),
        models=[ExportModelRequest.configure("dofa-tiny", weights="random", tiles_per_chunk=1)],
        config=ExportConfig(show_progress=False), source=xrembed.sample_path(),
    )
    assert bands and bands[0] > 1  # several bands of rows, not one write of the whole grid
    got = xrembed.load_export(tmp_path / "emb.zarr").embedding("dofa-tiny")[0]
    np.testing.assert_allclose(got.values, _alone(roi, "grid").data.values, atol=1e-5)
