"""CROMA fidelity (invariant 3), input contract (invariant 4) and the real scenes through the accessor.

The reference is torchgeo 0.8.1's ``models/croma.py`` (MIT). torchgeo's two-modality module cannot encode
one modality alone, so the radar and optical references are taken from one two-modality instance's parts,
run on their own. Weights go through the release layout: a nested ``{part: state_dict}`` file.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from affine import Affine

import xrembed
from xrembed import errors
from xrembed.models.base import Variant
from xrembed.models.croma import CROMA, JOINT_BANDS, S2_BANDS, croma_normalise
from xrembed.models.registry import register_model
from xrembed.models.weights import WeightsSource, load_module
from xrembed.testing import synthetic_raster, to_xee_dataset

from shared_paths import SHARED_DATA
from oracles import torchgeo_croma

TOL = 1e-4
PARTS = ("s1_encoder", "s1_GAP_FFN", "s2_encoder", "s2_GAP_FFN", "joint_encoder")
S1_SCENE = SHARED_DATA / "S1A_IW_GRDH_1SDV_20180716T004042_FD5B" / "measurement"


@register_model
class TinyCROMA(CROMA):
    """Patch 8, 32 px tiles (4 x 4 tokens), D=64, optical depth 2 (radar and joint 1), 16 heads (test only)."""

    model_id = "croma-tiny"
    variants = {"tiny": Variant(name="tiny", embed_dim=64, depth=2, num_heads=16, patch_size=8, image_size=32)}
    default_variant = "tiny"


def reference_model(dim: int, depth: int, image_size: int, seed: int):
    """torchgeo's two-modality CROMA with every weight given a non-trivial random value."""
    croma = torchgeo_croma()
    torch.manual_seed(seed)
    model = croma.CROMA(["sar", "optical"], encoder_dim=dim, encoder_depth=depth, num_heads=16, patch_size=8,
                        image_size=image_size).eval()
    with torch.no_grad():
        for param in model.parameters():
            param.add_(torch.randn_like(param) * 0.02)
    return model


def release_file(model, path) -> str:
    """``model``'s weights as the release file holds them: one state dict per part."""
    torch.save({part: getattr(model, part).state_dict() for part in PARTS}, path)
    return str(path)


def reference_outputs(model, x_sar, x_optical):
    """``{modality: (tokens, pooled)}`` of the reference (radar and optical encoders run alone)."""
    with torch.no_grad():
        sar = model.s1_encoder(imgs=x_sar, attn_bias=model.attn_bias)
        optical = model.s2_encoder(imgs=x_optical, attn_bias=model.attn_bias)
        both = model(x_sar, x_optical)
    torch.testing.assert_close(both["sar_encodings"], sar)  # the parts run alone are the module's own
    return {
        "s1": (both["sar_encodings"], both["sar_GAP"]),
        "s2": (both["optical_encodings"], both["optical_GAP"]),
        "joint": (both["joint_encodings"], both["joint_GAP"]),
    }


def as_grid(tokens: torch.Tensor, side: int) -> torch.Tensor:
    return tokens.transpose(1, 2).reshape(tokens.shape[0], -1, side, side)


def readme_normalise(x: torch.Tensor) -> torch.Tensor:
    """CROMA's README normalisation (8-bit, then / 255), statistics over the batch it is given."""
    out = []
    for c in range(x.shape[1]):
        channel = x[:, c]
        low, high = channel.mean() - 2 * channel.std(), channel.mean() + 2 * channel.std()
        img = torch.clip((channel - low) / (high - low) * 255.0, 0, 255).to(torch.uint8)
        out.append(img.unsqueeze(1))
    return torch.cat(out, dim=1).float() / 255


@pytest.fixture(scope="module")
def tiny_reference():
    return reference_model(64, 2, 32, seed=0)


@pytest.fixture(scope="module")
def tiny_weights(tiny_reference, tmp_path_factory):
    return release_file(tiny_reference, tmp_path_factory.mktemp("croma") / "CROMA_tiny.pt")


# -- fidelity ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("modality", ["s1", "s2", "joint"])
def test_parity_with_torchgeo_on_the_release_layout(modality, tiny_reference, tiny_weights):
    adapter = TinyCROMA()
    ours = load_module(adapter, WeightsSource(tiny_weights, "test"))  # strict, after flattening the parts
    torch.manual_seed(5)
    x_sar, x_optical = torch.rand(2, 2, 32, 32), torch.rand(2, 12, 32, 32)
    tokens, pooled_ref = reference_outputs(tiny_reference, x_sar, x_optical)[modality]
    x = {"s1": x_sar, "s2": x_optical, "joint": torch.cat([x_sar, x_optical], dim=1)}[modality]
    names = {"s1": ["VV", "VH"], "s2": list(S2_BANDS), "joint": list(JOINT_BANDS)}[modality]
    plan = adapter.plan_inputs(names, modality=modality)
    assert plan.option("modality") == modality
    with torch.no_grad():
        grid = adapter.forward_grid(ours, x, plan)
        pooled = adapter.forward_pooled(ours, x, plan)
        head = adapter.pool_tokens(ours, grid.mean(dim=(2, 3)), plan)  # tile mode's head on the mean token
    assert grid.shape == (2, 64, 4, 4) and pooled.shape == (2, 64)
    grid_diff = (grid - as_grid(tokens, 4)).abs().max().item()
    pooled_diff = (pooled - pooled_ref).abs().max().item()
    print(f"croma {modality}: max |grid diff| {grid_diff:.2e}, max |pooled diff| {pooled_diff:.2e}")
    assert grid_diff <= TOL and pooled_diff <= TOL
    assert (head - pooled_ref).abs().max().item() <= TOL


def test_alibi_bias_at_the_tile_size_is_the_references():
    from xrembed.models.croma_net import CROMAEncoder

    expected = torchgeo_croma().get_2dalibi(num_heads=16, num_patches=15 * 15)
    assert torch.equal(CROMAEncoder(64, 2).attention_bias(15, torch.zeros(1)), expected)


def test_parity_at_real_size_base():
    """CROMA-base widths and depths (at 48 px, to keep the reference's Python ALiBi loop short): all three
    encoders against torchgeo's, one image each."""
    reference = reference_model(768, 12, 48, seed=1)
    ours = CROMA("base").build_module().eval()
    ours.load_state_dict(CROMA("base").clean_state_dict({p: getattr(reference, p).state_dict() for p in PARTS}), strict=True)
    torch.manual_seed(2)
    x_sar, x_optical = torch.rand(1, 2, 48, 48), torch.rand(1, 12, 48, 48)
    expected = reference_outputs(reference, x_sar, x_optical)
    with torch.no_grad():
        for modality, x in (("s1", x_sar), ("s2", x_optical), ("joint", torch.cat([x_sar, x_optical], dim=1))):
            tokens, pooled = expected[modality]
            assert (ours.grid(x, modality) - as_grid(tokens, 6)).abs().max().item() <= TOL, modality
            assert (ours(x, modality) - pooled).abs().max().item() <= TOL, modality


@pytest.mark.parametrize("variant", ["base", "large"])
def test_real_size_keys_shapes_and_parameter_count_match_the_reference(variant):
    croma = torchgeo_croma()
    with torch.device("meta"):  # image_size only sizes the computed attn_bias buffer, not the weights
        reference = getattr(croma, f"croma_{variant}")(image_size=8)
        ours = CROMA(variant).build_module()
    expected = {f"{p}.{k}": tuple(t.shape) for p in PARTS for k, t in getattr(reference, p).state_dict().items()}
    assert {k: tuple(t.shape) for k, t in ours.state_dict().items()} == expected
    count = sum(p.numel() for p in ours.parameters())
    assert count == sum(p.numel() for p in reference.parameters())
    dim = {"base": 768, "large": 1024}[variant]
    assert expected["s2_encoder.linear_input.weight"] == (dim, 12 * 8 * 8)
    assert expected["s1_encoder.linear_input.weight"] == (dim, 2 * 8 * 8)
    depth = {"base": 12, "large": 24}[variant]
    assert f"s2_encoder.transformer.layers.{depth - 1}.1.net.3.weight" in expected
    assert f"s1_encoder.transformer.layers.{depth // 2 - 1}.0.to_qkv.weight" in expected
    assert f"joint_encoder.layers.{depth // 2 - 1}.1.to_k.weight" in expected
    assert not any("attn_bias" in k for k in expected)  # computed, never stored
    if variant == "base":
        assert count == 194_365_440


def test_release_layout_loads_strictly_and_refuses_mismatches(tiny_reference, tiny_weights, tmp_path):
    loaded = load_module(TinyCROMA(), WeightsSource(tiny_weights, "t"))
    for part in PARTS:
        for key, tensor in getattr(tiny_reference, part).state_dict().items():
            assert torch.equal(loaded.state_dict()[f"{part}.{key}"], tensor), (part, key)
    # torchgeo's own flat state_dict (with its computed attn_bias buffer) loads too
    flat = tmp_path / "flat.pt"
    torch.save(tiny_reference.state_dict(), flat)
    load_module(TinyCROMA(), WeightsSource(str(flat), "t"))
    nested = torch.load(tiny_weights, weights_only=True)
    without_joint = {p: sd for p, sd in nested.items() if p != "joint_encoder"}
    extra = dict(nested, s3_encoder={"linear_input.weight": torch.zeros(64, 10)})
    for name, bad, match in (("missing", without_joint, "missing"), ("extra", extra, "unexpected")):
        path = tmp_path / f"{name}.pt"
        torch.save(bad, path)
        with pytest.raises(errors.WeightsError, match=match):
            load_module(TinyCROMA(), WeightsSource(str(path), "t"))
    with pytest.raises(errors.WeightsError, match="variant|wrong shape|missing"):
        load_module(CROMA("base"), WeightsSource(tiny_weights, "t"))


def test_accessor_reproduces_the_reference_with_the_readme_normalisation(tiny_reference, tiny_weights):
    """One 32 px tile per modality through the accessor equals the reference fed the README's normalisation."""
    rng = np.random.default_rng(3)
    optical = rng.uniform(200, 6000, (12, 32, 32)).astype(np.float32)
    radar = rng.uniform(-25, -5, (2, 32, 32)).astype(np.float32)
    x_sar, x_optical = readme_normalise(torch.from_numpy(radar)[None]), readme_normalise(torch.from_numpy(optical)[None])
    expected = reference_outputs(tiny_reference, x_sar, x_optical)
    rasters = {
        "s1": synthetic_raster((32, 32), bands=["VV", "VH"]).copy(data=radar),
        "s2": synthetic_raster((32, 32), bands=list(S2_BANDS)).copy(data=optical),
        "joint": synthetic_raster((32, 32), bands=list(JOINT_BANDS)).copy(data=np.concatenate([radar, optical])),
    }
    for modality, da in rasters.items():
        kw = {"weights": tiny_weights, "modality": modality}
        tokens, pooled = expected[modality]
        grid = da.rsembed.embed("croma-tiny", **kw)
        np.testing.assert_allclose(grid.values, as_grid(tokens, 4)[0].numpy(), atol=TOL, err_msg=modality)
        for prep in ("tile", "resize"):  # one tile: the head of the mean token is the reference's GAP
            out = da.rsembed.embed("croma-tiny", output="pooled", input_prep=prep, **kw)
            np.testing.assert_allclose(out.values, pooled[0].numpy(), atol=TOL, err_msg=f"{modality} {prep}")


def test_normalisation_is_the_documented_one():
    x = torch.tensor([0.0, 1.0, 2.0, 3.0, 4.0, 100.0, float("nan")]).view(1, 1, 1, 7)
    valid = x[torch.isfinite(x)]
    mean, std = valid.mean().item(), valid.std().item()  # unbiased, as torch's (and the README's) std
    expected = [math.floor(min(max((v - (mean - 2 * std)) / (4 * std) * 255, 0), 255)) / 255 for v in valid.tolist()]
    out = croma_normalise(x)
    np.testing.assert_allclose(out[0, 0, 0, :6].numpy(), expected, rtol=1e-6)
    assert out[0, 0, 0, 6].item() == pytest.approx(127 / 255)  # invalid pixel: where the mean maps, not 0
    # per image and per channel: another image in the batch changes nothing
    pair = torch.cat([x, x * 50 + 7])
    np.testing.assert_array_equal(croma_normalise(pair)[:1].numpy(), out.numpy())
    np.testing.assert_allclose(croma_normalise(pair)[1].numpy(), out[0].numpy(), atol=1e-6)  # affine-invariant
    flat = torch.full((1, 2, 4, 4), 3.0)
    assert torch.equal(croma_normalise(flat), torch.zeros_like(flat))  # no spread: 0, as the README's 0 / 0


# -- contract ---------------------------------------------------------------------------------------------


def test_describe_model_gives_the_contract():
    info = xrembed.describe_model("croma")
    assert (info["model"], info["variant"], info["variants"]) == ("croma", "base", ["base", "large"])
    assert info["bands"] == list(S2_BANDS) and "B10" not in info["bands"]
    assert (info["image_size"], info["patch_size"], info["embed_dim"]) == (120, 8, 768)
    assert info["modalities"]["s1"]["bands"] == ["VV", "VH"] and "dB" in info["modalities"]["s1"]["values"]
    assert info["joint_modality"]["joint"]["bands"] == ["VV", "VH", *S2_BANDS]
    assert info["weights"] == "hf://torchgeo/croma/CROMA_base-0238d814.pt@387883f08af79d777167519c57cd826eda89a16f"
    large = xrembed.describe_model("croma", variant="large")
    assert large["embed_dim"] == 1024 and large["weights"].startswith("hf://torchgeo/croma/CROMA_large-921e69ad.pt")
    assert "MIT" in info["licence"] and "unverified" in info["licence"]
    assert set(info["outputs"]) == {"grid", "pooled"} and "mean - 2 std" in str(info["normalisation"])
    assert info["default_sensors"]["s1"]["collection"] == "COPERNICUS/S1_GRD"  # dB
    assert info["default_sensors"]["s2"]["bands"] == ("B1", "B2", "B3", "B4", "B5", "B6", "B7", "B8", "B8A", "B9", "B11", "B12")


def test_bands_are_picked_by_name_and_the_modality_inferred():
    shuffled = ["B12", "B01", "B10", "B8A", "B02", "B03", "B04", "B11", "B05", "B09", "B06", "B07", "B08"]
    plan = CROMA().plan_inputs(shuffled)
    assert plan.bands == S2_BANDS and plan.option("modality") == "s2"
    s1 = CROMA().plan_inputs(["vh", "vv"])
    assert s1.bands == ("VV", "VH") and s1.option("modality") == "s1" and s1.option("scale") == "db"
    joint = CROMA().plan_inputs(shuffled + ["VH", "VV"], modality="both")
    assert joint.bands == JOINT_BANDS and joint.option("modality") == "joint"
    assert CROMA().plan_inputs(shuffled + ["VV", "VH"]).bands == S2_BANDS  # optical unless asked


def test_picking_bands_through_the_accessor(tiny_weights):
    shuffled = ["B12", "B01", "B10", "B8A", "B02", "B03", "B04", "B11", "B05", "B09", "B06", "B07", "B08"]
    da = synthetic_raster((40, 40), bands=shuffled, seed=3)
    a = da.rsembed.embed("croma-tiny", weights=tiny_weights).values
    b = da.sel(band=list(S2_BANDS)).rsembed.embed("croma-tiny", weights=tiny_weights).values
    np.testing.assert_array_equal(a, b)


def test_bad_requests_name_the_fix():
    da = synthetic_raster((32, 32), bands=list(S2_BANDS))
    with pytest.raises(errors.OptionError, match="'joint'"):
        da.rsembed.embed("croma-tiny", modality="s3", weights="random")
    with pytest.raises(errors.OptionError, match="wavelengths"):
        da.rsembed.embed("croma-tiny", wavelengths=[0.5] * 12, weights="random")
    with pytest.raises(errors.BandMismatchError, match="lacks .*VV"):
        da.rsembed.embed("croma-tiny", modality="joint", weights="random")
    with pytest.raises(errors.BandMismatchError, match="lacks .*B01"):
        synthetic_raster((32, 32), bands=["B02", "B03", "B04"]).rsembed.embed("croma-tiny", weights="random")
    with pytest.raises(errors.BandMismatchError, match="exactly 2 bands"):
        CROMA().plan_inputs(["VV", "VH", "B02"], bands=["VV", "VH", "B02"], modality="s1")
    unnamed = synthetic_raster((32, 32), bands=["VV", "VH"]).drop_vars("band")
    with pytest.raises(errors.BandMismatchError, match="not named"):
        unnamed.rsembed.embed("croma-tiny", weights="random")


def test_values_on_the_wrong_scale_are_refused():
    rng = np.random.default_rng(0)
    db = synthetic_raster((32, 32), bands=["VV", "VH"]).copy(data=rng.uniform(-25, -5, (2, 32, 32)).astype("f4"))
    assert np.isfinite(db.rsembed.embed("croma-tiny", weights="random").values).all()
    with pytest.raises(errors.InputRangeError, match="dB"):
        (10 ** (db / 10)).chunk().rsembed.embed("croma-tiny", weights="random").compute()  # linear power
    normalised = synthetic_raster((32, 32), bands=list(S2_BANDS)) / 10000.0
    with pytest.raises(errors.InputRangeError, match="10000"):
        normalised.chunk().rsembed.embed("croma-tiny", weights="random").compute()
    joint = synthetic_raster((32, 32), bands=list(JOINT_BANDS))  # radar bands as reflectance: not dB
    with pytest.raises(errors.InputRangeError, match="dB"):
        joint.rsembed.embed("croma-tiny", modality="joint", weights="random")


def test_nodata_cells_are_nan_and_the_rest_unchanged_by_chunking(tiny_weights):
    da = synthetic_raster((72, 88), bands=list(S2_BANDS), seed=4).copy()
    da[:, :8, :8] = np.nan
    eager = da.rsembed.embed("croma-tiny", weights=tiny_weights).values
    assert np.isnan(eager[:, 0, 0]).all() and np.isfinite(eager[:, 1:, 1:]).all()
    for chunks in ({"y": 32, "x": 40}, {"y": 64, "x": 24}):
        lazy = da.chunk(chunks).rsembed.embed("croma-tiny", weights=tiny_weights)
        np.testing.assert_allclose(lazy.values, eager, atol=1e-5, equal_nan=True)


def test_joint_modality_from_an_xee_style_dataset(tiny_weights):
    da = synthetic_raster((32, 32), bands=list(JOINT_BANDS), seed=6).copy()
    da[:2] = -12.0 + da[:2] / 1000.0  # radar in dB
    ds = to_xee_dataset(da)
    from_ds = ds.rsembed.embed("croma-tiny", modality="joint", weights=tiny_weights)
    from_da = da.rsembed.embed("croma-tiny", modality="joint", weights=tiny_weights)
    np.testing.assert_allclose(from_ds.values[0], from_da.values, atol=1e-6)
    assert from_da.attrs["bands"] == list(JOINT_BANDS)


# -- the real scenes --------------------------------------------------------------------------------------


def _check_grid(emb, da, patch=8):
    t_in, t_out = da.rio.transform(recalc=True), emb.rio.transform()
    assert emb.rio.crs == da.rio.crs
    assert t_out.a == pytest.approx(t_in.a * patch) and t_out.e == pytest.approx(t_in.e * patch)
    assert (t_out.c, t_out.f) == pytest.approx((t_in.c, t_in.f))


def test_real_sentinel2_scene_tile_and_resize(s2_scene):
    da = xrembed.open_raster(s2_scene).isel(y=slice(0, 250), x=slice(0, 250))
    emb = da.rsembed.embed("croma", weights="random")
    assert emb.shape == (768, math.ceil(250 / 8), math.ceil(250 / 8))
    _check_grid(emb, da)
    assert emb.attrs["bands"] == list(S2_BANDS)
    values = emb.values
    assert np.isfinite(values).all()
    resized = da.rsembed.embed("croma", weights="random", input_prep="resize")
    assert resized.shape == (768, 15, 15) and resized.rio.crs == da.rio.crs
    assert resized.rio.bounds() == pytest.approx(da.rio.bounds())
    pooled = da.rsembed.embed("croma", weights="random", output="pooled", input_prep="resize")
    assert pooled.shape == (768,) and np.isfinite(pooled.values).all()


def test_real_sentinel2_scene_is_chunk_invariant(s2_scene):
    da = xrembed.open_raster(s2_scene, chunks=None).isel(y=slice(100, 260), x=slice(40, 200))
    eager = da.rsembed.embed("croma-tiny", weights="random").values
    lazy = da.chunk({"y": 64, "x": 96}).rsembed.embed("croma-tiny", weights="random")
    np.testing.assert_allclose(lazy.values, eager, atol=1e-5, equal_nan=True)


@pytest.fixture(scope="module")
def s1_db():
    if not S1_SCENE.is_dir():
        pytest.fail(f"the shared Sentinel-1 scene is missing at {S1_SCENE}")
    dn = xrembed.open_raster(S1_SCENE, bands=["VV", "VH"])  # GCP-only: warped lazily to its UTM zone
    # uncalibrated amplitude DN; sigma0-like power ~ DN^2 / 1e6 (see tests/sources/test_sentinel1_scene.py), in dB
    return 10 * np.log10(dn.astype("float32") ** 2 / 1e6)


def test_real_sentinel1_scene_tile_and_resize(s1_db):
    crop = s1_db.isel(y=slice(300, 540), x=slice(500, 740))
    emb = crop.rsembed.embed("croma", modality="s1", weights="random")
    assert emb.rio.crs.to_epsg() == 32643 and emb.shape == (768, 30, 30)
    assert emb.rio.transform() == crop.rio.transform(recalc=True) @ Affine.scale(8)
    values = emb.compute().values
    assert np.isfinite(values).any()
    resized = crop.rsembed.embed("croma", modality="sar", weights="random", input_prep="resize")
    assert resized.shape == (768, 15, 15) and resized.rio.bounds() == pytest.approx(crop.rio.bounds())
    pooled = crop.rsembed.embed("croma", weights="random", output="pooled")  # VV/VH alone: the radar encoder
    assert pooled.attrs["bands"] == ["VV", "VH"] and np.isfinite(pooled.values).all()
