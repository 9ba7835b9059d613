"""TerraFM fidelity (invariant 3) and input contract (invariant 4).

The reference (github.com/mbzuai-oryx/TerraFM ``terrafm.py``) is GitHub-only code without a licence, so it
is not importable here: ``scripts/goldens_terrafm.py`` ran it once on a small configuration with seeded
random weights and stored its state dict, inputs and outputs in ``tests/goldens/terrafm/``, together with
the real-size key sets, shapes and parameter counts. These tests load that state dict strictly into our
module and compare, and check the contract through the accessor.
"""

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

import xrembed
from xrembed import errors
from xrembed.models.base import Variant
from xrembed.models.registry import register_model
from xrembed.models.terrafm import S1_BANDS, S2_BANDS, TerraFM
from xrembed.models.weights import WeightsSource, load_module
from xrembed.testing import synthetic_raster


GOLDENS = Path(__file__).resolve().parents[1] / "goldens" / "terrafm"
META = json.loads((GOLDENS / "meta.json").read_text())
CASES = torch.load(GOLDENS / "cases.pt", weights_only=True)
MODALITY_OF = {"s2_l2a": "s2", "s2_l1c": "s2_l1c", "s1": "s1"}
TOL = 1e-4


@register_model
class TinyTerraFM(TerraFM):
    """The goldens' configuration: patch 16, 64 px tiles, D=32, 2 blocks, 4 heads (test only)."""

    model_id = "terrafm-tiny"
    aliases = ()
    variants = {"tiny": Variant(name="tiny", embed_dim=32, depth=2, num_heads=4, patch_size=16, image_size=64)}
    default_variant = "tiny"


@pytest.fixture(scope="module")
def golden_weights(tmp_path_factory):
    """The reference's own state dict (its key layout), as float32, in a checkpoint file."""
    state = torch.load(GOLDENS / "tiny_state_dict.pt", weights_only=True)
    path = tmp_path_factory.mktemp("terrafm") / "TerraFM-tiny.pth"
    torch.save({k: v.float() for k, v in state.items()}, path)
    return path


@pytest.fixture(scope="module")
def tiny_module(golden_weights):
    return load_module(TinyTerraFM(), WeightsSource(str(golden_weights), "goldens"))


def test_goldens_match_the_recorded_configuration():
    assert META["tiny"] == {"image_size": 64, "patch_size": 16, "embed_dim": 32, "depth": 2, "num_heads": 4, "mlp_ratio": 4.0}
    assert sum(p.stat().st_size for p in GOLDENS.iterdir()) < 2_000_000


@pytest.mark.parametrize("sensor", ["s2_l2a", "s2_l1c", "s1"])
def test_parity_with_the_reference_on_each_stem(sensor, tiny_module):
    adapter = TinyTerraFM()
    case = CASES[sensor]
    bands = S1_BANDS if sensor == "s1" else S2_BANDS
    plan = adapter.plan_inputs(list(bands), modality=MODALITY_OF[sensor])
    assert plan.option("sensor") == sensor
    x = case["input"].float()
    with torch.no_grad():
        pooled = adapter.forward_pooled(tiny_module, x, plan)
        grid = adapter.forward_grid(tiny_module, x, plan)
    assert pooled.shape == case["pooled"].shape == (2, 32)
    assert grid.shape == case["grid"].shape == (2, 32, 4, 4)
    pooled_diff = (pooled - case["pooled"]).abs().max().item()
    grid_diff = (grid - case["grid"]).abs().max().item()
    print(f"terrafm {sensor}: max |pooled diff| {pooled_diff:.2e}, max |grid diff| {grid_diff:.2e}")
    assert pooled_diff <= TOL and grid_diff <= TOL


def test_stems_are_selected_explicitly(tiny_module):
    """The L2A stem is reachable (unlike upstream forward()), and L2A and L1C give different results."""
    adapter = TinyTerraFM()
    x = CASES["s2_l2a"]["input"].float()
    with torch.no_grad():
        l2a = adapter.forward_pooled(tiny_module, x, adapter.plan_inputs(list(S2_BANDS)))
        l1c = adapter.forward_pooled(tiny_module, x, adapter.plan_inputs(list(S2_BANDS), modality="s2_l1c"))
    assert (l2a - CASES["s2_l2a"]["pooled"]).abs().max() <= TOL
    assert (l2a - l1c).abs().max() > 1e-2


def test_accessor_reproduces_the_reference_through_the_documented_scaling(golden_weights):
    """One 64 px tile through the accessor (scaling + engine) gives the reference's grid and CLS."""
    for sensor, bands in (("s2_l2a", S2_BANDS), ("s2_l1c", S2_BANDS), ("s1", S1_BANDS)):
        x = CASES[sensor]["input"][0].double().numpy()
        # invert the documented scaling: reflectance x * 10000; linear power 2**x - 1
        raw = (2.0**x - 1.0) if sensor == "s1" else x * 10000.0
        da = synthetic_raster((64, 64), bands=list(bands)).copy(data=raw.astype(np.float32))
        kw = {"weights": str(golden_weights), "modality": MODALITY_OF[sensor]}
        grid = da.rsembed.embed("terrafm-tiny", **kw)
        pooled = da.rsembed.embed("terrafm-tiny", output="pooled", input_prep="resize", **kw)
        np.testing.assert_allclose(grid.values, CASES[sensor]["grid"][0].numpy(), atol=TOL)
        np.testing.assert_allclose(pooled.values, CASES[sensor]["pooled"][0].numpy(), atol=TOL)
        # tile mode: pooled = valid-weighted mean of the normed grid tokens (documented; not the CLS)
        tiled = da.rsembed.embed("terrafm-tiny", output="pooled", input_prep="tile", **kw)
        np.testing.assert_allclose(tiled.values, CASES[sensor]["grid"][0].numpy().mean(axis=(1, 2)), atol=TOL)


@pytest.mark.parametrize("variant", ["base", "large"])
def test_real_size_keys_shapes_and_parameter_count_match_the_reference(variant):
    expected = META["real_size"][variant]
    with torch.device("meta"):
        ours = TerraFM(variant).build_module()
    shapes = {k: list(v.shape) for k, v in ours.state_dict().items()}
    assert shapes == expected["shapes"]
    assert sum(p.numel() for p in ours.parameters()) == expected["parameters"]
    dim = {"base": 768, "large": 1024}[variant]
    assert shapes["patch_embed.conv2d_s2_l2a.weight"] == [3 * dim, 12, 16, 16]
    assert shapes["patch_embed.conv2d_s1.weight"] == [3 * dim, 2, 16, 16]
    assert shapes["pos_embed"] == [1, 197, dim]
    if variant == "base":
        assert expected["parameters"] == 112_951_296


def test_official_layout_loads_strictly_and_clean_up_is_documented(golden_weights, tmp_path):
    state = torch.load(golden_weights, weights_only=True)
    reference = load_module(TinyTerraFM(), WeightsSource(str(golden_weights), "t"))
    # a DINO-style `backbone.` prefix and a classifier head are cleaned up
    path = tmp_path / "wrapped.pth"
    wrapped = {f"backbone.{k}": v for k, v in state.items()}
    wrapped["backbone.head.weight"] = torch.zeros(10, 32)
    torch.save({"model": wrapped}, path)
    loaded = load_module(TinyTerraFM(), WeightsSource(str(path), "t"))
    for (k, a), b in zip(reference.state_dict().items(), loaded.state_dict().values()):
        assert torch.equal(a, b), k


def test_unexpected_missing_or_misshapen_keys_are_refused(golden_weights, tmp_path):
    state = torch.load(golden_weights, weights_only=True)
    extra = dict(state, **{"patch_embed.s3_embed": torch.zeros(1, 96)})
    missing = {k: v for k, v in state.items() if k != "patch_embed.s1_embed"}
    for name, bad, match in (("extra", extra, "unexpected"), ("missing", missing, "missing")):
        path = tmp_path / f"{name}.pth"
        torch.save(bad, path)
        with pytest.raises(errors.WeightsError, match=match):
            load_module(TinyTerraFM(), WeightsSource(str(path), "t"))
    path = tmp_path / "tiny_for_base.pth"
    torch.save(state, path)
    with pytest.raises(errors.WeightsError, match="variant|wrong shape|missing"):
        load_module(TerraFM("base"), WeightsSource(str(path), "t"))


def test_real_sentinel2_scene_through_the_accessor(s2_scene):
    da = xrembed.open_raster(s2_scene).isel(y=slice(0, 300), x=slice(0, 300))
    emb = da.rsembed.embed("terrafm", weights="random")
    assert emb.shape == (768, math.ceil(300 / 16), math.ceil(300 / 16))
    assert emb.rio.crs == da.rio.crs
    t_in, t_out = da.rio.transform(), emb.rio.transform()
    assert t_out.a == pytest.approx(t_in.a * 16) and t_out.e == pytest.approx(t_in.e * 16)
    assert (t_out.c, t_out.f) == pytest.approx((t_in.c, t_in.f))
    assert emb.attrs["bands"] == list(S2_BANDS)
    values = emb.values
    assert np.isfinite(values).any()
    resized = da.rsembed.embed("terrafm_b", weights="random", input_prep="resize")
    assert resized.shape == (768, 14, 14) and resized.rio.crs == da.rio.crs
    pooled = da.rsembed.embed("terrafm", weights="random", output="pooled", input_prep="resize")
    assert pooled.shape == (768,) and np.isfinite(pooled.values).all()


def test_bands_are_picked_by_name_in_model_order():
    shuffled = ["B12", "B01", "B10", "B8A", "B02", "B03", "B04", "B11", "B05", "B09", "B06", "B07", "B08"]
    plan = TerraFM().plan_inputs(shuffled)
    assert plan.bands == S2_BANDS and plan.option("sensor") == "s2_l2a"
    ee_names = ["B1", "B2", "B3", "B4", "B5", "B6", "B7", "B8", "B8A", "B9", "B11", "B12"]
    assert TerraFM().plan_inputs(ee_names, modality="s2_l1c").option("sensor") == "s2_l1c"
    s1 = TerraFM().plan_inputs(["vh", "vv"])
    assert s1.bands == ("VV", "VH") and s1.option("sensor") == "s1"


def test_picking_bands_through_the_accessor(golden_weights):
    bands = ["B12", "B01", "B10", "B8A", "B02", "B03", "B04", "B11", "B05", "B09", "B06", "B07", "B08"]
    da = synthetic_raster((64, 64), bands=bands, seed=3)
    kw = {"weights": str(golden_weights)}
    a = da.rsembed.embed("terrafm-tiny", **kw).values
    b = da.sel(band=list(S2_BANDS)).rsembed.embed("terrafm-tiny", **kw).values
    np.testing.assert_array_equal(a, b)


def test_missing_band_names_the_fix():
    da = synthetic_raster((64, 64), bands=["B02", "B03", "B04", "B08"])
    with pytest.raises(errors.BandMismatchError, match="lacks .*B01"):
        da.rsembed.embed("terrafm-tiny", weights="random")
    with pytest.raises(errors.BandMismatchError, match="VH"):
        synthetic_raster((64, 64), bands=["VV"]).rsembed.embed("terrafm-tiny", modality="s1", weights="random")


def test_wrong_channel_count_for_the_modality():
    adapter = TerraFM()
    with pytest.raises(errors.BandMismatchError, match="exactly 2 bands"):
        adapter.plan_inputs(["VV", "VH", "B02"], bands=["VV", "VH", "B02"], modality="s1")
    with pytest.raises(errors.BandMismatchError, match="exactly 12 bands"):
        adapter.plan_inputs(list(S2_BANDS), bands=["B02", "B03", "B04"])
    # unnamed input: bands= must name all 12 (or 2)
    unnamed = synthetic_raster((64, 64), bands=["B02", "B03", "B04"]).drop_vars("band")
    with pytest.raises(errors.BandMismatchError):
        unnamed.rsembed.embed("terrafm-tiny", weights="random")


def test_modality_and_option_errors():
    da = synthetic_raster((64, 64), bands=list(S2_BANDS))
    with pytest.raises(errors.OptionError, match="s2_l1c"):
        da.rsembed.embed("terrafm-tiny", modality="s3", weights="random")
    with pytest.raises(errors.OptionError, match="wavelengths"):
        da.rsembed.embed("terrafm-tiny", wavelengths=[0.5] * 12, weights="random")
    with pytest.raises(errors.BandMismatchError, match="modality='s1'"):
        da.rsembed.embed("terrafm-tiny", modality="s1", weights="random")


def test_normalised_reflectance_is_rejected_at_compute_time():
    da = synthetic_raster((64, 64), bands=list(S2_BANDS)) / 10000.0
    emb = da.chunk().rsembed.embed("terrafm-tiny", weights="random")  # metadata fine: raised at compute
    with pytest.raises(errors.InputRangeError, match="10000"):
        emb.compute()


def test_sentinel1_linear_power_accepted_db_and_amplitude_rejected():
    rng = np.random.default_rng(0)
    db = rng.uniform(-25, -5, (2, 64, 64)).astype("f4")
    base = synthetic_raster((64, 64), bands=["VV", "VH"])
    linear = base.copy(data=10 ** (db / 10))
    emb = linear.rsembed.embed("terrafm-tiny", weights="random")
    assert emb.attrs["bands"] == ["VV", "VH"] and np.isfinite(emb.values).all()
    with pytest.raises(errors.InputRangeError, match=r"10 \*\* \(x / 10\)"):
        base.copy(data=db).chunk().rsembed.embed("terrafm-tiny", weights="random").compute()
    amplitude = base.copy(data=rng.uniform(50, 600, (2, 64, 64)).astype("f4"))  # GRD amplitude DN
    with pytest.raises(errors.InputRangeError, match="amplitude DN"):
        amplitude.rsembed.embed("terrafm-tiny", weights="random")


def test_nodata_cells_are_nan_not_zero(golden_weights):
    da = synthetic_raster((64, 64), bands=list(S2_BANDS)).copy()
    da[:, :16, :16] = np.nan
    emb = da.rsembed.embed("terrafm-tiny", weights=str(golden_weights))
    assert np.isnan(emb.values[:, 0, 0]).all() and np.isfinite(emb.values[:, 1:, 1:]).all()


def test_scaling_is_the_documented_one():
    adapter = TerraFM()
    s2 = adapter.plan_inputs(list(S2_BANDS))
    s1 = adapter.plan_inputs(list(S1_BANDS))
    x = torch.tensor([[[[-5.0, 0.0, 5000.0, 20000.0, float("nan")]]]])
    out = adapter.normalise(x, s2)
    assert out[0, 0, 0, :4].tolist() == [0.0, 0.0, 0.5, 1.0] and torch.isnan(out[0, 0, 0, 4])
    p = torch.tensor([[[[0.0, 1.0, 0.25, 9.0, float("nan")]]]])
    out = adapter.normalise(p, s1)
    expected = [0.0, 1.0, math.log1p(0.25) / math.log(2), 1.0]
    np.testing.assert_allclose(out[0, 0, 0, :4].numpy(), expected, rtol=1e-6)
    assert torch.isnan(out[0, 0, 0, 4])


def test_describe_model_gives_the_contract():
    info = xrembed.describe_model("terrafm_b")
    assert info["model"] == "terrafm" and info["variant"] == "base" and info["variants"] == ["base", "large"]
    assert info["bands"] == list(S2_BANDS) and info["modalities"]["s1"]["bands"] == ["VV", "VH"]
    assert set(info["modalities"]) == {"s2", "s2_l1c", "s1"} and info["default_modality"] == "s2"
    assert (info["image_size"], info["patch_size"], info["embed_dim"]) == (224, 16, 768)
    assert info["weights"] == "hf://MBZUAI/TerraFM/TerraFM-B.pth"
    assert xrembed.describe_model("terrafm", variant="large")["weights"] == "hf://MBZUAI/TerraFM/TerraFM-L.pth"
    assert "licence" in info and "none stated" in info["licence"]
    assert set(info["outputs"]) == {"grid", "pooled"} and "normalisation" in info
