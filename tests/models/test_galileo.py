"""Galileo fidelity (invariant 3), input contract (invariant 4), time and place, and the real scenes.

The reference (github.com/nasaharvest/galileo ``single_file_galileo.py``, MIT) is GitHub-only, so it is not
importable here: ``scripts/goldens_galileo.py`` ran it once on a small configuration (D=64, 2 blocks) with
seeded random weights, on raw inputs prepared by the reference's own pre-training ``Normalizer``,
``to_cartesian`` and NDVI, and stored its release-layout ``encoder.pt``, the inputs and outputs in
``tests/goldens/galileo/``, with the real-size key sets, shapes and parameter counts (and the key set of the
published nano ``encoder.pt``). These tests load that file strictly into our module and compare: the network
on the reference's normalised inputs, and the whole accessor path (band order, normalisation, NDVI, months
from the ``time`` coordinate, location from the raster centre, resolution) on the raw ones.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from affine import Affine
from pyproj import Transformer

import xrembed
from xrembed import errors
from xrembed.models.base import InputContext, Variant
from xrembed.models.galileo import BAND_MEAN, BAND_STD, DEFAULT_MONTH, RELEASE_NAMES, S1S2_BANDS, S2_BANDS, Galileo
from xrembed.models.registry import register_model
from xrembed.models.weights import WeightsSource, load_module
from xrembed.testing import synthetic_raster, to_xee_dataset

from shared_paths import SHARED_DATA

GOLDENS = Path(__file__).resolve().parents[1] / "goldens" / "galileo"
META = json.loads((GOLDENS / "meta.json").read_text())
CASES = torch.load(GOLDENS / "cases.pt", weights_only=True)
TOL = 1e-4
S1_SCENE = SHARED_DATA / "S1A_IW_GRDH_1SDV_20180716T004042_FD5B" / "measurement"
EXTRA = Galileo.variants["nano"].extra


@register_model
class TinyGalileo(Galileo):
    """The goldens' configuration: D=64, 2 blocks, 4 heads, patch 8, 32 px tiles (test only)."""

    model_id = "galileo-tiny"
    variants = {"tiny": Variant(name="tiny", embed_dim=64, depth=2, num_heads=4, patch_size=8, image_size=32,
                                extra=EXTRA)}
    default_variant = "tiny"


@register_model
class TinyGalileoP4(Galileo):
    """The goldens' configuration on 4 px patches (its 8 x 8 kernels resampled), 32 px tiles (test only)."""

    model_id = "galileo-tiny-p4"
    variants = {"tiny": Variant(name="tiny", embed_dim=64, depth=2, num_heads=4, patch_size=4, image_size=32,
                                extra=EXTRA)}
    default_variant = "tiny"


@pytest.fixture(scope="module")
def golden_weights(tmp_path_factory):
    """The reference's release-layout ``encoder.pt`` (float32), with its ``config.json`` beside it."""
    folder = tmp_path_factory.mktemp("galileo-tiny")
    state = torch.load(GOLDENS / "encoder.pt", weights_only=True)
    torch.save({k: v.float() for k, v in state.items()}, folder / "encoder.pt")
    (folder / "config.json").write_text((GOLDENS / "config.json").read_text())
    return str(folder / "encoder.pt")


@pytest.fixture(scope="module")
def tiny_module(golden_weights):
    return load_module(TinyGalileo(), WeightsSource(golden_weights, "goldens"))


def dates(months):
    return [f"2020-{m + 1:02d}-15" for m in months]


def context_of(case):
    return InputContext(resolution_m=case["resolution_m"], center_lonlat=tuple(case["lonlat"]),
                        times=tuple(dates(case["months"])))


def reference_layout(case, plan):
    """The stored normalised input ``(H, W, T, 13)`` in our channel layout ``(1, T * C', H, W)``."""
    spelled = list(META["space_time_bands"])
    names = list(plan.bands) + (["NDVI"] if plan.option("ndvi") else [])
    x = case["normalised"][..., [spelled.index(RELEASE_NAMES.get(n, n)) for n in names]]
    h, w = x.shape[:2]
    return x.permute(2, 3, 0, 1).reshape(1, -1, h, w)


def raster_at(case, *, chunks=None):
    """The case's raw ``(T, C, H, W)`` values on a UTM grid whose centre is the case's (lon, lat), at its
    pixel size, with a ``time`` coordinate of its months."""
    raw = case["raw"].numpy()
    frames, _, size, _ = raw.shape
    lon, lat = case["lonlat"]
    crs = f"EPSG:{32600 + int((lon + 180) // 6) + 1}"
    x0, y0 = Transformer.from_crs("EPSG:4326", crs, always_xy=True).transform(lon, lat)
    res = case["resolution_m"]
    da = synthetic_raster((size, size), bands=case["bands"], resolution=res, times=frames, crs=crs,
                          origin=(x0 - size / 2 * res, y0 + size / 2 * res))
    da = da.copy(data=raw).assign_coords(time=np.array(dates(case["months"]), dtype="datetime64[ns]"))
    return da.chunk(chunks) if chunks is not None else da


MODALITY = {"s2": "s2", "s1": "s1", "s1s2": "s1s2"}


# -- fidelity ---------------------------------------------------------------------------------------------


def test_goldens_match_the_recorded_configuration():
    assert META["tiny"]["embedding_size"] == 64 and META["tiny"]["depth"] == 2 and META["tiny"]["num_heads"] == 4
    assert json.loads((GOLDENS / "config.json").read_text())["model"]["encoder"] == META["tiny"]
    assert sum(p.stat().st_size for p in GOLDENS.iterdir()) < 2_000_000
    assert [CASES[c]["months"] for c in ("s2", "s1", "s1s2")] == [[0, 6, 11], [3, 4], [5]]
    assert set(CASES) == {"s2", "s1", "s1s2", "s2_p4", "release_nano_s2"} and len(META["release_nano_sha256"]) == 64


@pytest.mark.parametrize("case", ["s2", "s1", "s1s2"])
def test_network_parity_with_the_reference(case, tiny_module):
    """Our encoder on the reference's normalised input equals its per-patch and pooled means."""
    adapter, c = TinyGalileo(), CASES[case]
    plan = adapter.plan_inputs(c["bands"], modality=MODALITY[case], context=context_of(c))
    assert plan.option("months") == tuple(c["months"]) and plan.option("input_resolution_m") == c["resolution_m"]
    x = reference_layout(c, plan)
    with torch.no_grad():
        grid = adapter.forward_grid(tiny_module, x, plan)
        pooled = adapter.forward_pooled(tiny_module, x, plan)
    assert grid.shape == (1, 64, 4, 4) and pooled.shape == (1, 64)
    grid_diff = (grid[0] - c["grid"]).abs().max().item()
    pooled_diff = (pooled[0] - c["pooled"]).abs().max().item()
    print(f"galileo {case}: max |grid diff| {grid_diff:.2e}, max |pooled diff| {pooled_diff:.2e}")
    assert grid_diff <= TOL and pooled_diff <= TOL


def test_four_pixel_patches_resample_the_kernels_as_the_reference(golden_weights):
    """The same weights on 4 px patches (FlexiPatchEmbed's pseudo-inverse kernel resize) equal the reference's
    patch_size=4 run, in the network and through the accessor (8 x 8 cells of 4 px, the pixel size x 4)."""
    adapter, c, expected = TinyGalileoP4(), CASES["s2"], CASES["s2_p4"]
    module = load_module(adapter, WeightsSource(golden_weights, "goldens"))
    plan = adapter.plan_inputs(c["bands"], context=context_of(c))
    with torch.no_grad():
        grid = adapter.forward_grid(module, reference_layout(c, plan), plan)
        pooled = adapter.forward_pooled(module, reference_layout(c, plan), plan)
    assert grid.shape == (1, 64, 8, 8)
    assert (grid[0] - expected["grid"]).abs().max().item() <= TOL
    assert (pooled[0] - expected["pooled"]).abs().max().item() <= TOL
    da = raster_at(c)
    emb = da.rsembed.embed("galileo-tiny-p4", weights=golden_weights)
    np.testing.assert_allclose(emb.values, expected["grid"].numpy(), atol=TOL)
    assert emb.rio.transform() == da.rio.transform(recalc=True) * Affine.scale(4)
    assert (expected["grid"] - c["grid"].repeat_interleave(2, 1).repeat_interleave(2, 2)).abs().max() > 1e-2


def test_other_tile_sizes_are_native(golden_weights):
    """A 16 px tile variant run on the goldens' 32 px input is the reference at 32 px: the spatial embedding is
    computed for the grid it gets, so other tile sizes need no resampling (``other_tile_sizes``)."""

    class Small(TinyGalileo):
        variants = {"tiny": Variant(name="tiny", embed_dim=64, depth=2, num_heads=4, patch_size=8, image_size=16,
                                    extra=EXTRA)}

    adapter, c = Small(), CASES["s2"]
    assert adapter.check_tile_size(32) == 32 and adapter.other_tile_sizes.startswith("native")
    assert xrembed.describe_model("galileo")["tile_sizes"].startswith("any multiple of 8 px")
    with pytest.raises(errors.OptionError, match="whole number of its 8 px patches"):
        adapter.check_tile_size(36)
    module = load_module(adapter, WeightsSource(golden_weights, "goldens"))
    plan = adapter.plan_inputs(c["bands"], context=context_of(c))
    with torch.no_grad():
        grid = adapter.forward_grid(module, reference_layout(c, plan), plan)
    assert (grid[0] - c["grid"]).abs().max().item() <= TOL


@pytest.mark.parametrize("case", ["s2", "s1", "s1s2"])
def test_normalisation_and_ndvi_are_the_pretraining_ones(case):
    """Raw values through our normalise equal the reference Normalizer's output, NDVI's 0 / 0 corner included."""
    adapter, c = TinyGalileo(), CASES[case]
    plan = adapter.plan_inputs(c["bands"], modality=MODALITY[case], context=context_of(c))
    raw = c["raw"]
    ours = adapter.normalise(raw.reshape(1, -1, *raw.shape[2:]), plan)
    np.testing.assert_allclose(ours.numpy(), reference_layout(c, plan).numpy(), atol=1e-5)
    if plan.option("ndvi"):
        assert ours.shape[1] == raw.shape[0] * (raw.shape[1] + 1)
        assert torch.all(ours[0, raw.shape[1], :2, :2] == 0)  # B8 + B4 == 0: NDVI is 0 there, as the reference's


def test_statistics_are_the_references_file():
    stats, bands = META["normalization_13"], META["space_time_bands"]
    for name, release in RELEASE_NAMES.items():
        assert BAND_MEAN[name] == stats["mean"][bands.index(release)], name
        assert BAND_STD[name] == stats["std"][bands.index(release)], name
    assert bands[-1] == "NDVI" and len(bands) == 13


@pytest.mark.parametrize("case", ["s2", "s1", "s1s2"])
def test_accessor_reproduces_the_reference_from_raw_values(case, golden_weights):
    """The raw raster, its dates, centre and pixel size through embed() give the reference's outputs."""
    c = CASES[case]
    da = raster_at(c)
    kw = {"weights": golden_weights, "modality": MODALITY[case]}
    grid = da.rsembed.embed("galileo-tiny", **kw)
    assert "time" not in grid.dims and grid.shape == (64, 4, 4)  # the series is one sample
    assert grid.attrs["plan_month_ids"] == ",".join(map(str, c["months"]))
    assert (grid.attrs["plan_center_lon"], grid.attrs["plan_center_lat"]) == pytest.approx(tuple(c["lonlat"]), abs=1e-9)
    np.testing.assert_allclose(grid.values, c["grid"].numpy(), atol=TOL)
    pooled = da.rsembed.embed("galileo-tiny", output="pooled", input_prep="resize", **kw)
    np.testing.assert_allclose(pooled.values, c["pooled"].numpy(), atol=TOL)
    # tile mode: the valid-weighted mean of the grid cells (documented; not average_tokens)
    tiled = da.rsembed.embed("galileo-tiny", output="pooled", input_prep="tile", **kw)
    np.testing.assert_allclose(tiled.values, c["grid"].numpy().mean(axis=(1, 2)), atol=TOL)


def test_months_location_and_resolution_come_from_the_metadata(golden_weights):
    c = CASES["s2"]
    kw = {"weights": golden_weights}
    base = raster_at(c).rsembed.embed("galileo-tiny", output="pooled", input_prep="resize", **kw).values
    later = raster_at(c).assign_coords(time=np.array(dates([1, 6, 11]), dtype="datetime64[ns]"))
    at_later = later.rsembed.embed("galileo-tiny", output="pooled", input_prep="resize", **kw).values
    assert np.abs(at_later - base).max() > 1e-3
    # the location is one token of 289 in the pooled mean, one of 19 in each cell: compare cells
    base_grid = raster_at(c).rsembed.embed("galileo-tiny", **kw).values
    moved = raster_at(dict(c, lonlat=[c["lonlat"][0] + 60.0, c["lonlat"][1]]))  # same pixels, far east
    assert np.abs(moved.rsembed.embed("galileo-tiny", **kw).values - base_grid).max() > 1e-3
    at_moved = moved.rsembed.embed("galileo-tiny", output="pooled", input_prep="resize", **kw).values
    coarser = synthetic_raster((32, 32), bands=list(S2_BANDS), resolution=20.0, times=3, crs=str(moved.rio.crs),
                               origin=(float(moved.x[0]) - 10, float(moved.y[0]) + 10)).copy(data=moved.values)
    coarser = coarser.assign_coords(time=moved.time)
    at_20m = coarser.rsembed.embed("galileo-tiny", output="pooled", input_prep="resize", **kw).values
    assert np.abs(at_20m - at_moved).max() > 1e-3  # same pixels and centre, twice the pixel size
    plan = TinyGalileo().plan_inputs(list(S2_BANDS), context=context_of(c))
    lon, lat = c["lonlat"]
    expected = (math.cos(math.radians(lat)) * math.cos(math.radians(lon)),
                math.cos(math.radians(lat)) * math.sin(math.radians(lon)), math.sin(math.radians(lat)))
    assert plan.option("location") == pytest.approx(expected, abs=1e-12)
    coarse = TinyGalileo().plan_inputs(list(S2_BANDS), context=InputContext(resolution_m=100.0, center_lonlat=(0, 0)))
    assert coarse.option("input_resolution_m") == 100.0


def test_without_a_time_dimension_the_month_is_june(golden_weights):
    c = CASES["s1s2"]  # one time step, in month 5
    assert c["months"] == [DEFAULT_MONTH] == [5]
    single = raster_at(c).isel(time=0, drop=True)
    assert "time" not in single.dims
    out = single.rsembed.embed("galileo-tiny", modality="s1s2", weights=golden_weights)
    assert out.attrs["plan_month_ids"] == "5 (no dates: June)"
    np.testing.assert_allclose(out.values, c["grid"].numpy(), atol=TOL)
    plan = TinyGalileo().plan_inputs(list(S1S2_BANDS), modality="s1s2")
    assert plan.option("months") is None and plan.option("location") is None  # no context: no date, no place


def test_time_steps_without_dates_or_too_many_are_refused(golden_weights):
    da = raster_at(CASES["s2"])
    undated = da.assign_coords(time=[0, 1, 2])
    with pytest.raises(errors.BandMismatchError, match="datetime 'time' coordinate"):
        undated.rsembed.embed("galileo-tiny", weights=golden_weights).values
    long = synthetic_raster((32, 32), bands=list(S2_BANDS), times=25)
    with pytest.raises(errors.OptionError, match="at most 24 time steps"):
        long.rsembed.embed("galileo-tiny", weights="random")


@pytest.mark.parametrize("variant", ["nano", "tiny", "base"])
def test_real_size_keys_shapes_and_parameter_count_match_the_reference(variant):
    expected = META["real_size"][variant]
    with torch.device("meta"):
        ours = Galileo(variant).build_module()
    shapes = {k: list(v.shape) for k, v in ours.state_dict().items()}
    assert shapes == expected["shapes"]
    assert sum(p.numel() for p in ours.parameters()) == expected["parameters"]
    dim = {"nano": 128, "tiny": 192, "base": 768}[variant]
    assert shapes["space_time_embed.S2_RGB.proj.weight"] == [dim, 3, 8, 8]
    assert shapes["pos_embed"] == [24, dim // 4] and shapes["month_embed.weight"] == [12, dim // 4]
    if variant == "nano":
        assert shapes == META["release_nano"] and len(shapes) == 106  # the published nano encoder.pt, key for key
    with torch.device("meta"):
        four = Galileo(f"{variant}-p4")
        assert {k: list(v.shape) for k, v in four.build_module().state_dict().items()} == shapes  # same file
    assert four.variant.checkpoint == Galileo(variant).variant.checkpoint
    assert (four.variant.patch_size, four.variant.image_size) == (4, 48)


def test_release_layout_loads_strictly_and_refuses_mismatches(golden_weights, tmp_path):
    state = torch.load(golden_weights, weights_only=True)
    loaded = load_module(TinyGalileo(), WeightsSource(golden_weights, "t")).state_dict()
    assert set(loaded) == set(state) and all(torch.equal(loaded[k], state[k]) for k in state)
    # the reference loader's clean-up: an extra ".backbone" in key names is dropped
    backbone = {k.replace("space_time_embed.", "space_time_embed.backbone.", 1): v for k, v in state.items()}
    assert any(".backbone" in k for k in backbone)
    path = tmp_path / "backbone.pt"
    torch.save(backbone, path)
    again = load_module(TinyGalileo(), WeightsSource(str(path), "t")).state_dict()
    assert all(torch.equal(again[k], state[k]) for k in state)
    extra = dict(state, **{"decoder.mask_token": torch.zeros(64)})
    missing = {k: v for k, v in state.items() if k != "static_embed.location.weight"}
    for name, bad, match in (("extra", extra, "unexpected"), ("missing", missing, "missing")):
        path = tmp_path / f"{name}.pt"
        torch.save(bad, path)
        with pytest.raises(errors.WeightsError, match=match):
            load_module(TinyGalileo(), WeightsSource(str(path), "t"))
    with pytest.raises(errors.WeightsError, match="variant|wrong shape|missing"):
        load_module(Galileo("nano"), WeightsSource(golden_weights, "t"))


def test_official_weights_come_from_a_folder_of_the_hub_repository(tmp_path):
    """``models/nano/encoder.pt`` from the Hub cache: the label names the snapshot's commit, not the folder."""
    from unittest import mock

    from xrembed.models.weights import resolve_weights

    snapshot = tmp_path / "models--nasaharvest--galileo" / "snapshots" / "0123abc"
    path = snapshot / "models" / "nano" / "encoder.pt"
    path.parent.mkdir(parents=True)
    path.write_bytes(b"not read here")
    with mock.patch("huggingface_hub.hf_hub_download", return_value=str(path)) as download:
        source = resolve_weights(Galileo("nano"), None)
    assert download.call_args.args[:2] == ("nasaharvest/galileo", "models/nano/encoder.pt")
    assert source.path == str(path)
    assert source.label == "hf://nasaharvest/galileo/models/nano/encoder.pt@0123abc"


@register_model
class SmallTileGalileo(Galileo):
    """The real nano architecture on 32 px tiles (for the published weights on the goldens' 32 px case)."""

    model_id = "galileo-nano-32px"
    variants = {"nano": Variant(name="nano", embed_dim=128, depth=4, num_heads=8, patch_size=8, image_size=32,
                                extra=EXTRA)}
    default_variant = "nano"


@pytest.mark.network
def test_published_nano_weights_give_the_references_outputs():
    """Opt-in (XREMBED_NETWORK_TESTS=1): the Hub's models/nano/encoder.pt through embed() equals the reference
    run with the published nano file (recorded by the goldens script) on the s2 case."""
    import hashlib

    from xrembed.models.weights import resolve_weights

    c, expected = CASES["s2"], CASES["release_nano_s2"]
    path = resolve_weights(Galileo("nano"), None).path
    note = f"downloaded sha256 {hashlib.sha256(Path(path).read_bytes()).hexdigest()}, goldens made with " \
           f"{META['release_nano_sha256']}"
    da = raster_at(c)
    grid = da.rsembed.embed("galileo-nano-32px", weights=path)
    pooled = da.rsembed.embed("galileo-nano-32px", weights=path, output="pooled", input_prep="resize")
    np.testing.assert_allclose(grid.values, expected["grid"].numpy(), atol=TOL, err_msg=note)
    np.testing.assert_allclose(pooled.values, expected["pooled"].numpy(), atol=TOL, err_msg=note)


# -- contract ---------------------------------------------------------------------------------------------


def test_describe_model_gives_the_contract():
    info = xrembed.describe_model("galileo")
    assert (info["model"], info["variant"], info["variants"]) == (
        "galileo", "base", ["base", "base-p4", "nano", "nano-p4", "tiny", "tiny-p4"])
    assert info["bands"] == list(S2_BANDS) and "B01" not in info["bands"] and len(info["wavelengths_um"]) == 10
    assert (info["image_size"], info["patch_size"], info["embed_dim"]) == (96, 8, 768)
    assert info["weights"] == "hf://nasaharvest/galileo/models/base/encoder.pt"
    nano = xrembed.describe_model("galileo", variant="nano")
    assert nano["weights"] == "hf://nasaharvest/galileo/models/nano/encoder.pt" and nano["embed_dim"] == 128
    assert xrembed.describe_model("galileo", variant="tiny")["embed_dim"] == 192
    assert info["modalities"]["s2"]["derived"] == ["NDVI"] and "dB" in info["modalities"]["s1"]["values"]
    assert info["joint_modality"]["s1s2"]["bands"] == ["VV", "VH", *S2_BANDS]
    assert "MIT" in info["licence"] and "unverified" in info["licence"]
    assert "mean - 2 std" in str(info["normalisation"]) and "NDVI" in info["normalisation"]
    assert "June" in info["temporal"]["without_time"] and "0-based" in info["temporal"]["date_encoding"]
    assert set(info["outputs"]) == {"grid", "pooled"} and "average_tokens" in info["outputs"]["pooled"]
    assert info["default_sensors"]["s2"]["collection"] == "COPERNICUS/S2_HARMONIZED"  # pre-training data: L1C TOA
    assert info["default_sensors"]["s1"]["collection"] == "COPERNICUS/S1_GRD"  # dB
    p4 = xrembed.describe_model("galileo", variant="base-p4")
    assert (p4["patch_size"], p4["image_size"]) == (4, 48) and p4["weights"] == info["weights"]


def test_bands_are_picked_by_name_and_the_modality_inferred():
    shuffled = ["B12", "B01", "B10", "B8A", "B02", "B03", "B04", "B11", "B05", "B09", "B06", "B07", "B08"]
    plan = Galileo().plan_inputs(shuffled)
    assert plan.bands == S2_BANDS and plan.option("modality") == "s2" and plan.option("ndvi") is True
    s1 = Galileo().plan_inputs(["vh", "vv"])
    assert s1.bands == ("VV", "VH") and s1.option("modality") == "s1" and s1.option("ndvi") is False
    both = Galileo().plan_inputs(shuffled + ["VH", "VV"], modality="joint")
    assert both.bands == S1S2_BANDS and both.option("modality") == "s1s2"
    assert Galileo().plan_inputs(shuffled + ["VV", "VH"]).bands == S2_BANDS  # optical unless asked


def test_picking_bands_through_the_accessor(golden_weights):
    shuffled = ["B12", "B01", "B8A", "B02", "B03", "B04", "B11", "B05", "B09", "B06", "B07", "B08"]
    da = synthetic_raster((40, 40), bands=shuffled, seed=3)
    a = da.rsembed.embed("galileo-tiny", weights=golden_weights).values
    b = da.sel(band=list(S2_BANDS)).rsembed.embed("galileo-tiny", weights=golden_weights).values
    np.testing.assert_array_equal(a, b)


def test_bad_requests_name_the_fix():
    da = synthetic_raster((32, 32), bands=list(S2_BANDS))
    with pytest.raises(errors.OptionError, match="'s1s2'"):
        da.rsembed.embed("galileo-tiny", modality="landsat", weights="random")
    with pytest.raises(errors.OptionError, match="wavelengths"):
        da.rsembed.embed("galileo-tiny", wavelengths=[0.5] * 10, weights="random")
    with pytest.raises(errors.BandMismatchError, match="lacks .*VV"):
        da.rsembed.embed("galileo-tiny", modality="s1s2", weights="random")
    with pytest.raises(errors.BandMismatchError, match="lacks .*B08"):
        synthetic_raster((32, 32), bands=["B02", "B03", "B04"]).rsembed.embed("galileo-tiny", weights="random")
    with pytest.raises(errors.BandMismatchError, match="exactly 2 bands"):
        Galileo().plan_inputs(["VV", "VH", "B02"], bands=["VV", "VH", "B02"], modality="s1")
    unnamed = synthetic_raster((32, 32), bands=["VV", "VH"]).drop_vars("band")
    with pytest.raises(errors.BandMismatchError, match="not named"):
        unnamed.rsembed.embed("galileo-tiny", weights="random")
    with pytest.raises(errors.UnknownModelError, match="nano"):
        da.rsembed.embed("galileo", variant="huge", weights="random")


def test_values_on_the_wrong_scale_are_refused():
    rng = np.random.default_rng(0)
    db = synthetic_raster((32, 32), bands=["VV", "VH"]).copy(data=rng.uniform(-25, -5, (2, 32, 32)).astype("f4"))
    assert np.isfinite(db.rsembed.embed("galileo-tiny", weights="random").values).all()
    with pytest.raises(errors.InputRangeError, match="dB"):
        (10 ** (db / 10)).chunk().rsembed.embed("galileo-tiny", weights="random").compute()  # linear power
    normalised = synthetic_raster((32, 32), bands=list(S2_BANDS)) / 10000.0
    with pytest.raises(errors.InputRangeError, match="10000"):
        normalised.chunk().rsembed.embed("galileo-tiny", weights="random").compute()
    joint = synthetic_raster((32, 32), bands=list(S1S2_BANDS))  # radar bands as reflectance: not dB
    with pytest.raises(errors.InputRangeError, match="dB"):
        joint.rsembed.embed("galileo-tiny", modality="s1s2", weights="random").values


def test_nodata_cells_are_nan_and_the_rest_unchanged_by_chunking(golden_weights):
    da = synthetic_raster((72, 88), bands=list(S2_BANDS), times=2, seed=4).copy()
    da[:, :, :8, :8] = np.nan
    eager = da.rsembed.embed("galileo-tiny", weights=golden_weights).values
    assert np.isnan(eager[:, 0, 0]).all() and np.isfinite(eager[:, 1:, 1:]).all()
    for chunks in ({"y": 32, "x": 40}, {"y": 64, "x": 24}):
        lazy = da.chunk(chunks).rsembed.embed("galileo-tiny", weights=golden_weights)
        np.testing.assert_allclose(lazy.values, eager, atol=1e-5, equal_nan=True)


@pytest.mark.parametrize("precision", ["bf16", "int8"])
def test_lower_precisions_run_and_stay_close(precision, golden_weights):
    da = raster_at(CASES["s2"])
    ref = da.rsembed.embed("galileo-tiny", weights=golden_weights).values.reshape(64, -1)
    out = da.rsembed.embed("galileo-tiny", weights=golden_weights, precision=precision).values.reshape(64, -1)
    cosine = (out * ref).sum(0) / np.linalg.norm(out, axis=0) / np.linalg.norm(ref, axis=0)
    assert cosine.min() > 0.99, cosine.min()


def test_an_xee_style_dataset_reads_its_time_dimension(golden_weights):
    da = raster_at(CASES["s2"])
    ds = to_xee_dataset(da, crs=str(da.rio.crs))
    from_ds = ds.rsembed.embed("galileo-tiny", weights=golden_weights)
    assert "time" not in from_ds.dims
    np.testing.assert_allclose(from_ds.values, CASES["s2"]["grid"].numpy(), atol=TOL)


# -- the real scenes --------------------------------------------------------------------------------------


def _check_grid(emb, da, patch=8):
    t_in, t_out = da.rio.transform(recalc=True), emb.rio.transform()
    assert emb.rio.crs == da.rio.crs
    assert t_out.a == pytest.approx(t_in.a * patch) and t_out.e == pytest.approx(t_in.e * patch)
    assert (t_out.c, t_out.f) == pytest.approx((t_in.c, t_in.f))


def test_real_sentinel2_scene_tile_and_resize(s2_scene):
    da = xrembed.open_raster(s2_scene).isel(y=slice(0, 200), x=slice(0, 200))
    da = da.expand_dims(time=np.array(["2020-02-19"], dtype="datetime64[ns]"))  # the scene's date: February
    emb = da.rsembed.embed("galileo", variant="nano", weights="random")
    assert emb.shape == (128, 25, 25)
    _check_grid(emb, da)
    assert emb.attrs["bands"] == list(S2_BANDS)
    assert np.isfinite(emb.values).all()
    resized = da.rsembed.embed("galileo", variant="nano", weights="random", input_prep="resize")
    assert resized.shape == (128, 12, 12) and resized.rio.crs == da.rio.crs
    assert resized.rio.bounds() == pytest.approx(da.rio.bounds())
    pooled = da.rsembed.embed("galileo", variant="nano", weights="random", output="pooled")
    assert pooled.shape == (128,) and np.isfinite(pooled.values).all()


def test_real_sentinel2_scene_is_chunk_invariant(s2_scene, golden_weights):
    da = xrembed.open_raster(s2_scene, chunks=None).isel(y=slice(100, 260), x=slice(40, 200))
    eager = da.rsembed.embed("galileo-tiny", weights=golden_weights).values
    lazy = da.chunk({"y": 64, "x": 96}).rsembed.embed("galileo-tiny", weights=golden_weights)
    np.testing.assert_allclose(lazy.values, eager, atol=1e-5, equal_nan=True)
    assert np.isfinite(eager).all()


def test_real_sentinel1_scene_in_db(golden_weights):
    if not S1_SCENE.is_dir():
        pytest.fail(f"the shared Sentinel-1 scene is missing at {S1_SCENE}")
    dn = xrembed.open_raster(S1_SCENE, bands=["VV", "VH"])  # GCP-only: warped lazily to its UTM zone
    db = 10 * np.log10(dn.astype("float32") ** 2 / 1e6)  # sigma0-like power ~ DN^2 / 1e6, in dB
    crop = db.isel(y=slice(300, 396), x=slice(500, 596))
    emb = crop.rsembed.embed("galileo-tiny", weights=golden_weights)  # VV/VH alone: modality s1
    assert emb.attrs["bands"] == ["VV", "VH"] and emb.rio.crs.to_epsg() == 32643 and emb.shape == (64, 12, 12)
    assert emb.rio.transform() == crop.rio.transform(recalc=True) @ Affine.scale(8)
    assert np.isfinite(emb.values).any()
