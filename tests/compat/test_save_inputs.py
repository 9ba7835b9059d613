"""``ExportConfig(save_inputs=True)``: the exact model input is stored beside the embeddings in every format and
layout, ``load_export`` gives it back georeferenced, and resume and ownership marks cover it.

The expected inputs are the sample's band files read directly with rioxarray over the unit's bounds; the
expected embeddings are those of the same export without ``save_inputs``.
"""

from __future__ import annotations

import numpy as np
import pytest
import rioxarray
from pyproj import Transformer

import xrembed
from xrembed import ExportConfig, ExportModelRequest, ExportTarget, OutputSpec, PointBuffer, errors

MODEL = "dofa-tiny"
REQUEST = ExportModelRequest.configure(MODEL, weights="random")
SAMPLE = xrembed.sample_path()  # 448 x 448 px at 100 m, EPSG:32629, origin (199980, 2800020)
DOFA_ORDER = ["B04", "B03", "B02", "B05", "B06", "B07", "B08", "B11", "B12"]
_LONLAT = Transformer.from_crs("EPSG:32629", "EPSG:4326", always_xy=True)
LON, LAT = _LONLAT.transform(222380.0, 2777620.0)
SPATIALS = [PointBuffer(LON, LAT, 1600), PointBuffer(LON + 0.05, LAT + 0.03, 1600)]
CASES = [("zarr", "combined"), ("zarr", "per_item"), ("netcdf", "combined"), ("netcdf", "per_item"),
         ("npz", "combined"), ("npz", "per_item"), ("geotiff", "per_item")]


def _bands_over(bounds):
    """The source's DOFA bands over ``bounds`` (NaN where outside): the 100 m bands straight from their files,
    the 200 m ones as ``open_raster`` puts them on the 100 m grid (the source the export reads)."""
    left, bottom, right, top = bounds
    xs = left + 100.0 * (np.arange(round((right - left) / 100)) + 0.5)
    ys = top - 100.0 * (np.arange(round((top - bottom) / 100)) + 0.5)
    opened = xrembed.open_raster(SAMPLE, bands=DOFA_ORDER)
    out = []
    for band in DOFA_ORDER:
        tif = rioxarray.open_rasterio(SAMPLE / f"{band}.tif").squeeze("band", drop=True)
        if tif.rio.resolution()[0] != 100.0:
            tif = opened.sel(band=band)
        out.append(tif.astype("float64").reindex(x=xs, y=ys, method="nearest", tolerance=1.0).values)
    return np.stack(out)


def _export(tmp_path, fmt, layout, *, save_inputs=True, spatials=SPATIALS, resume=False, sub="out"):
    target = (ExportTarget.combined(tmp_path / sub / "run") if layout == "combined"
              else ExportTarget.per_item(tmp_path / sub))
    xrembed.export_batch(
        spatials=spatials, temporal=None, models=[REQUEST], target=target, source=SAMPLE,
        output=OutputSpec.grid() if fmt == "geotiff" else OutputSpec.pooled(),
        config=ExportConfig(format=fmt, save_inputs=save_inputs, save_embeddings=True, chunk_size=32, num_workers=8,
                            resume=resume, show_progress=False),
    )
    return xrembed.load_export(target.path_for(fmt) if layout == "combined" else tmp_path / sub)


@pytest.mark.parametrize("fmt, layout", CASES)
def test_inputs_in_every_format_and_layout(tmp_path, fmt, layout):
    spatials = SPATIALS[1:]  # one ROI keeps the file quick; two items are checked by the resume test
    result = _export(tmp_path, fmt, layout, spatials=spatials)
    inputs = result.inputs(MODEL)
    assert len(inputs) == 1 and result.models[MODEL].inputs is inputs
    plain = _export(tmp_path, fmt, layout, save_inputs=False, spatials=spatials, sub="plain")
    with pytest.raises(errors.OptionError, match="save_inputs=True"):
        plain.inputs(MODEL)
    for i, inp in enumerate(inputs):
        assert inp.name == "inputs" and inp.dims == ("band", "y", "x") and inp.shape == (9, 32, 32)
        assert [str(b) for b in inp["band"].values] == DOFA_ORDER  # model order, not file order
        assert inp.rio.crs.to_epsg() == 32629
        t = inp.rio.transform()
        assert (t.a, t.e) == (100.0, -100.0)
        np.testing.assert_allclose(inp.x.values, t.c + 100.0 * (np.arange(32) + 0.5))
        bounds = (t.c, t.f - 3200.0, t.c + 3200.0, t.f)
        np.testing.assert_array_equal(np.asarray(inp.values, dtype="float64"), _bands_over(bounds))  # raw DN
    # the embeddings are those of the export without inputs
    emb, ref = result.embedding(MODEL), plain.embedding(MODEL)
    if isinstance(emb, list):
        for a, b in zip(emb, ref):
            np.testing.assert_allclose(a.values, b.values, atol=1e-6)
            assert a.rio.transform() == b.rio.transform()
            # the input's grid is the one the embedding grid zooms out from (patch 8)
        assert inputs[0].rio.transform().c == emb[0].rio.transform().c
    else:
        np.testing.assert_allclose(emb.values, ref.values, atol=1e-6)


def test_missing_pixels_stay_nan_in_the_saved_input(tmp_path):
    """A ROI past the raster's edge: the input holds NaN there (never a fill value)."""
    edge_lon, edge_lat = _LONLAT.transform(199980.0 + 800.0, 2777620.0)  # 800 m inside the west edge
    result = _export(tmp_path, "zarr", "combined", spatials=[PointBuffer(edge_lon, edge_lat, 1600)])
    (inp,) = result.inputs(MODEL)
    values = np.asarray(inp.values)
    t = inp.rio.transform()
    outside = inp.x.values < 199980.0
    assert outside.any() and np.isnan(values[:, :, outside]).all()
    assert np.isfinite(values[:, :, ~outside]).all()
    assert t.c == pytest.approx(199980.0 + 800.0 - 1600.0, abs=100)


def test_resume_counts_the_inputs(tmp_path, monkeypatch):
    from xrembed.export import runner

    embedded = []
    real = runner.batch.iter_embed

    def counting(openers, model, **kwargs):
        embedded.append(len(openers))
        return real(openers, model, **kwargs)

    monkeypatch.setattr(runner.batch, "iter_embed", counting)
    _export(tmp_path, "zarr", "per_item", save_inputs=False)
    assert embedded == [2]
    # units done without their inputs are not done for an export that saves them
    _export(tmp_path, "zarr", "per_item", resume=True)
    assert embedded == [2, 2]
    _export(tmp_path, "zarr", "per_item", resume=True)
    assert embedded == [2, 2]  # complete, inputs included: nothing re-run
    # a deleted input group is missing data: that unit alone is redone
    import shutil

    shutil.rmtree(tmp_path / "out" / "p00001.zarr" / f"{MODEL}.input")
    result = _export(tmp_path, "zarr", "per_item", resume=True)
    assert embedded == [2, 2, 1]
    assert all(i is not None and i.shape == (9, 32, 32) for i in result.inputs(MODEL))


def test_input_files_carry_the_mark_and_foreign_ones_are_refused(tmp_path):
    from xrembed.export import ownership

    _export(tmp_path, "geotiff", "per_item", spatials=SPATIALS[:1])
    saved = tmp_path / "out" / f"p00000__{MODEL}.input.tif"
    assert saved.is_file() and ownership.is_owned(saved)
    _export(tmp_path, "geotiff", "per_item", spatials=SPATIALS[:1])  # xrembed's own files are replaced
    foreign = tmp_path / "other"
    foreign.mkdir()
    (foreign / f"p00000__{MODEL}.input.tif").write_bytes(b"not ours")
    with pytest.raises(errors.OverwriteError, match="overwrite=True"):
        _export(tmp_path, "geotiff", "per_item", spatials=SPATIALS[:1], sub="other")
    assert (foreign / f"p00000__{MODEL}.input.tif").read_bytes() == b"not ours"


def test_export_config_takes_rs_embeds_example():
    config = ExportConfig(save_inputs=True, save_embeddings=True, chunk_size=32, num_workers=8, resume=True)
    assert config.save_inputs and config.resume and config.chunk_size == 32
    assert ExportConfig().save_inputs is False  # off by default here (rs-embed: on), see docs/migration.md
    with pytest.raises(errors.OptionError, match="save_inputs must be True or False"):
        ExportConfig(save_inputs="yes")
    with pytest.raises(errors.OptionError, match="inputs only"):
        ExportConfig(save_inputs=True, save_embeddings=False)
    with pytest.raises(errors.OptionError, match="not ending in '.input'"):
        xrembed.export_batch(spatials=SPATIALS, temporal=None, source=SAMPLE,
                             models=[ExportModelRequest.configure(MODEL, label="x.input", weights="random")],
                             target=ExportTarget.combined("unused.zarr"))
