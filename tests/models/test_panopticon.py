"""Panopticon fidelity (invariant 3), input contract (invariant 4) and the real scenes through the accessor.

The reference is torchgeo 0.8.1's ``models/panopticon.py`` (MIT): timm's ``vit_base_patch14_dinov2`` with
its ``pos_embed`` and ``patch_embed`` replaced by a ``PanopticonPE``. The small reference is built by the
same recipe with smaller sizes (torchgeo's ``Panopticon`` fixes them); the real-size one is torchgeo's own
class, on the meta device (its per-channel 2304-wide cross-attention is slow on a shared CPU).
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

import xrembed
from xrembed import errors
from xrembed.models.base import Variant
from xrembed.models.panopticon import S2_BANDS, Panopticon, channel_id_nm, standardise_per_image
from xrembed.models.panopticon_net import resize_pos_embed
from xrembed.models.registry import register_model
from xrembed.models.weights import WeightsSource, load_module
from xrembed.testing import synthetic_raster

from shared_paths import SHARED_DATA
from oracles import torchgeo_panopticon

TOL = 1e-4
S1_SCENE = SHARED_DATA / "S1A_IW_GRDH_1SDV_20180716T004042_FD5B" / "measurement"


@register_model
class TinyPanopticon(Panopticon):
    """Patch 14, 56 px tiles (4 x 4 tokens), D=32, 2 blocks, 4 heads, channel attention width 48 (test only)."""

    model_id = "panopticon-tiny"
    variants = {"tiny": Variant(name="tiny", embed_dim=32, depth=2, num_heads=4, patch_size=14, image_size=56,
                                extra=(("attn_dim", 48), ("release_grid", 6)))}
    default_variant = "tiny"


def _references():
    panopticon = torchgeo_panopticon()  # imports timm behind the torchvision shim
    import timm

    return timm, panopticon


def tiny_reference(seed: int = 0, image_size: int = 56):
    """torchgeo's Panopticon recipe at the tiny size, every weight given a random value."""
    timm, panopticon = _references()
    torch.manual_seed(seed)
    vit = timm.create_model("vit_base_patch14_dinov2", img_size=image_size, embed_dim=32, depth=2, num_heads=4)
    vit.patch_embed = panopticon.PanopticonPE(attn_dim=48, embed_dim=32, patch_size=14, img_size=image_size,
                                              chnfus_cfg={"attn_cfg": {"num_heads": 16}})
    vit.pos_embed = torch.nn.Parameter(torch.randn(1, 1 + (image_size // 14) ** 2, 32))
    vit.eval()
    with torch.no_grad():
        for name, param in vit.named_parameters():
            if name.endswith(".gamma"):  # layer scale at its 1e-5 init would hide the blocks from the CLS
                param.fill_(1.0)
            param.add_(torch.randn_like(param) * 0.02)
    return vit


def release_file(vit, path, release_grid: int = 6) -> str:
    """``vit``'s weights as the release holds them: flat, plus ``mask_token``, ``pos_embed`` on a larger grid
    (the release's 37 x 37; here ``release_grid``), so the loader's resize is exercised."""
    state = {k: v.clone() for k, v in vit.state_dict().items()}
    cls, grid = state["pos_embed"][:, :1], state["pos_embed"][:, 1:]
    side = int(math.isqrt(grid.shape[1]))
    big = torch.nn.functional.interpolate(grid.reshape(1, side, side, -1).permute(0, 3, 1, 2),
                                          size=(release_grid, release_grid), mode="bilinear")
    state["pos_embed"] = torch.cat([cls, big.permute(0, 2, 3, 1).reshape(1, release_grid**2, -1)], dim=1)
    state["mask_token"] = torch.zeros(1, 32)
    torch.save(state, path)
    return str(path)


def reference_loaded(vit, path):
    """The reference with the release file loaded by torchgeo's own steps (pop mask_token, resize pos_embed)."""
    from torchgeo.models.copernicusfm import resize_abs_pos_embed

    state = torch.load(path, weights_only=True)
    state.pop("mask_token")
    old = int(math.isqrt(state["pos_embed"].shape[1] - 1))
    state["pos_embed"] = resize_abs_pos_embed(state["pos_embed"], vit.patch_embed.grid_size[0], old)
    vit.load_state_dict(state, strict=True)
    return vit


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    vit = tiny_reference()
    path = release_file(vit, tmp_path_factory.mktemp("panopticon") / "panopticon_tiny_teacher.pth")
    return reference_loaded(vit, path), path


def as_grid(tokens: torch.Tensor) -> torch.Tensor:
    side = math.isqrt(tokens.shape[1])
    return tokens.transpose(1, 2).reshape(tokens.shape[0], -1, side, side)


# -- fidelity ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("bands", [list(S2_BANDS), ["VV", "VH"], ["B04", "VV", "B08", "VH"]], ids=["s2", "s1", "mixed"])
def test_parity_with_torchgeo_on_the_release_layout(bands, tiny):
    reference, path = tiny
    adapter = TinyPanopticon()
    ours = load_module(adapter, WeightsSource(path, "test"))  # strict, after the documented clean-up
    plan = adapter.plan_inputs(bands, bands=bands)
    ids = torch.tensor(plan.option("channel_ids"))
    torch.manual_seed(3)
    x = torch.randn(2, len(bands), 56, 56)
    chn_ids = ids.expand(2, -1).clone()
    with torch.no_grad():
        expected_pooled = reference({"imgs": x, "chn_ids": chn_ids.clone()})
        expected_tokens = reference.forward_features({"imgs": x, "chn_ids": chn_ids.clone()})[:, 1:]
        pooled = adapter.forward_pooled(ours, x, plan)
        grid = adapter.forward_grid(ours, x, plan)
    assert grid.shape == (2, 32, 4, 4) and pooled.shape == (2, 32)
    grid_diff = (grid - as_grid(expected_tokens)).abs().max().item()
    pooled_diff = (pooled - expected_pooled).abs().max().item()
    print(f"panopticon {'/'.join(bands)}: max |grid diff| {grid_diff:.2e}, max |pooled diff| {pooled_diff:.2e}")
    assert grid_diff <= TOL and pooled_diff <= TOL
    assert torch.equal(ids, torch.tensor(plan.option("channel_ids")))  # our forward leaves the ids alone


def test_channel_ids_are_the_references():
    mixed = ["B02", "B8A", "B11", "VV", "VH"]
    plan = Panopticon().plan_inputs(mixed, bands=mixed)
    assert plan.option("channel_ids") == (490.0, 865.0, 1610.0, -1.0, -2.0)
    assert plan.option("scale") == "mixed"
    assert Panopticon().plan_inputs(["HH", "HV"], bands=["HH", "HV"]).option("channel_ids") == (-3.0, -4.0)
    custom = Panopticon().plan_inputs(None, bands=["a", "b"], wavelengths=[0.4429, 2.2])
    assert custom.option("channel_ids") == (442.0, 2200.0)  # floored nm
    assert channel_id_nm(0.945) == 945.0 and channel_id_nm(0.5599999999) == 560.0


def test_release_pos_embed_is_resized_as_torchgeo_does():
    _references()
    torch.manual_seed(0)
    pos = torch.randn(1, 1 + 37 * 37, 24)
    from torchgeo.models.copernicusfm import resize_abs_pos_embed

    torch.testing.assert_close(resize_pos_embed(pos, 16), resize_abs_pos_embed(pos, 16, 37), rtol=0, atol=0)
    assert resize_pos_embed(pos, 37) is pos


def test_real_size_keys_shapes_and_parameter_count_match_the_reference():
    _, panopticon = _references()
    with torch.device("meta"):
        reference = panopticon.Panopticon()
        ours = Panopticon().build_module()
    shapes = lambda m: {k: tuple(v.shape) for k, v in m.state_dict().items()}  # noqa: E731
    # pos_embed is kept at the release's 37 x 37 (resampled per tile size at run time); the reference at
    # img_size=224 holds it resized to 16 x 16
    assert shapes(ours) == {**shapes(reference.model), "pos_embed": (1, 1 + 37 * 37, 768)}
    count = sum(p.numel() for p in ours.parameters())
    assert sum(p.numel() for p in reference.model.parameters()) == 98_120_448
    assert count == 98_120_448 + (37 * 37 - 16 * 16) * 768
    s = shapes(ours)
    assert s["patch_embed.conv3d.conv3d.weight"] == (2304, 1, 1, 14, 14)
    assert s["patch_embed.chnfus.xattn.inproj_k.weight"] == (2304, 2304)
    assert s["blocks.11.ls2.gamma"] == (768,)


def test_release_layout_loads_strictly_and_refuses_mismatches(tiny, tmp_path):
    _, path = tiny
    state = torch.load(path, weights_only=True)
    assert "mask_token" in state and state["pos_embed"].shape[1] == 1 + 36
    for name, bad, match in (
        ("extra", dict(state, **{"head.weight": torch.zeros(10, 32)}), "unexpected"),
        ("missing", {k: v for k, v in state.items() if k != "patch_embed.chnfus.query"}, "missing"),
    ):
        bad_path = tmp_path / f"{name}.pth"
        torch.save(bad, bad_path)
        with pytest.raises(errors.WeightsError, match=match):
            load_module(TinyPanopticon(), WeightsSource(str(bad_path), "t"))
    with pytest.raises(errors.WeightsError, match="variant|wrong shape|missing"):
        load_module(Panopticon(), WeightsSource(path, "t"))


def test_accessor_reproduces_the_reference_on_one_tile(tiny):
    """One 56 px tile through the accessor: per-image standardisation + engine = the reference's grid and CLS."""
    reference, path = tiny
    rng = np.random.default_rng(4)
    optical = rng.uniform(200, 6000, (4, 56, 56)).astype(np.float32)
    radar = rng.uniform(-25, -5, (2, 56, 56)).astype(np.float32)
    bands = ["B02", "B03", "B04", "B08", "VV", "VH"]
    da = synthetic_raster((56, 56), bands=bands).copy(data=np.concatenate([optical, radar]))
    x = torch.from_numpy(da.values)[None].double()
    mean = x.mean(dim=(2, 3), keepdim=True)
    std = x.std(dim=(2, 3), keepdim=True)
    x = ((x - mean) / std).float()
    ids = torch.tensor([[490.0, 560.0, 665.0, 842.0, -1.0, -2.0]])
    with torch.no_grad():
        pooled = reference({"imgs": x, "chn_ids": ids.clone()})[0].numpy()
        tokens = reference.forward_features({"imgs": x, "chn_ids": ids.clone()})[:, 1:]
    grid = da.rsembed.embed("panopticon-tiny", weights=path, bands=bands)
    np.testing.assert_allclose(grid.values, as_grid(tokens)[0].numpy(), atol=TOL)
    resized = da.rsembed.embed("panopticon-tiny", weights=path, bands=bands, output="pooled", input_prep="resize")
    np.testing.assert_allclose(resized.values, pooled, atol=TOL)
    tiled = da.rsembed.embed("panopticon-tiny", weights=path, bands=bands, output="pooled", input_prep="tile")
    np.testing.assert_allclose(tiled.values, as_grid(tokens)[0].numpy().mean(axis=(1, 2)), atol=TOL)


def test_standardisation_is_per_image_and_channel():
    x = torch.tensor([1.0, 2.0, 3.0, 4.0, float("nan")]).view(1, 1, 1, 5)
    out = standardise_per_image(torch.cat([x, x * 100 - 5]))
    expected = (np.array([1, 2, 3, 4]) - 2.5) / np.std([1, 2, 3, 4], ddof=1)
    np.testing.assert_allclose(out[0, 0, 0, :4].numpy(), expected, rtol=1e-6)
    np.testing.assert_allclose(out[1, 0, 0, :4].numpy(), expected, rtol=1e-5)  # each image on its own
    assert out[0, 0, 0, 4].item() == 0.0  # invalid pixel: the mean
    assert torch.equal(standardise_per_image(torch.full((1, 1, 3, 3), 7.0)), torch.zeros(1, 1, 3, 3))


# -- contract ---------------------------------------------------------------------------------------------


def test_describe_model_gives_the_contract():
    info = xrembed.describe_model("panopticon")
    assert (info["variant"], info["variants"]) == ("vitb14", ["vitb14"])
    assert info["bands"] == list(S2_BANDS) and info["wavelengths_um"][0] == 0.443
    assert info["channel_ids_nm"][:3] == [443.0, 490.0, 560.0] and info["sar_channel_ids"]["VH"] == -2.0
    assert (info["image_size"], info["patch_size"], info["embed_dim"]) == (224, 14, 768)
    assert info["weights"] == (
        "hf://lewaldm/panopticon/panopticon_vitb14_teacher.pth@c8c2bb9555819e8b2bcedf5b3b00e3bf531554e7"
    )
    assert "unverified" in info["licence"] and "not published" in info["normalisation"]["why"]
    assert info["default_sensors"]["s1"]["collection"] == "COPERNICUS/S1_GRD"
    assert set(info["outputs"]) == {"grid", "pooled"}


def test_bad_requests_name_the_fix():
    da = synthetic_raster((56, 56), bands=["B02", "B03", "B04"])
    with pytest.raises(errors.BandMismatchError, match="lacks .*B01"):
        da.rsembed.embed("panopticon-tiny", weights="random")
    ok = da.rsembed.embed("panopticon-tiny", bands=["B04", "B03", "B02"], weights="random")
    assert ok.attrs["bands"] == ["B04", "B03", "B02"]
    with pytest.raises(errors.WavelengthError, match="one wavelength"):
        da.rsembed.embed("panopticon-tiny", wavelengths=[0.49, 0.56], weights="random")
    with pytest.raises(errors.WavelengthError, match="nanometres"):
        da.rsembed.embed("panopticon-tiny", wavelengths=[490, 560, 665], weights="random")
    with pytest.raises(errors.WavelengthError, match="VV, VH, HH, HV"):
        synthetic_raster((56, 56), bands=["PAN"]).rsembed.embed("panopticon-tiny", bands=["PAN"], weights="random")
    with pytest.raises(errors.OptionError, match="'s1'"):
        da.rsembed.embed("panopticon-tiny", modality="s3", weights="random")
    with pytest.raises(errors.BandMismatchError, match="SAR"):
        da.rsembed.embed("panopticon-tiny", modality="s1", bands=["B04", "B03", "B02"], weights="random")


def test_values_on_the_wrong_scale_are_refused():
    rng = np.random.default_rng(0)
    db = synthetic_raster((56, 56), bands=["VV", "VH"]).copy(data=rng.uniform(-25, -5, (2, 56, 56)).astype("f4"))
    assert np.isfinite(db.rsembed.embed("panopticon-tiny", weights="random").values).all()
    with pytest.raises(errors.InputRangeError, match="dB"):
        (10 ** (db / 10)).chunk().rsembed.embed("panopticon-tiny", weights="random").compute()
    with pytest.raises(errors.InputRangeError, match="10000"):
        (synthetic_raster((56, 56), bands=list(S2_BANDS)) / 10000).rsembed.embed("panopticon-tiny", weights="random")


def test_nodata_cells_are_nan_and_chunking_changes_nothing(tiny):
    _, path = tiny
    da = synthetic_raster((100, 130), bands=list(S2_BANDS), seed=5).copy()
    da[:, :14, :14] = np.nan
    eager = da.rsembed.embed("panopticon-tiny", weights=path).values
    assert np.isnan(eager[:, 0, 0]).all() and np.isfinite(eager[:, 1:, 1:]).all()
    lazy = da.chunk({"y": 56, "x": 70}).rsembed.embed("panopticon-tiny", weights=path)
    np.testing.assert_allclose(lazy.values, eager, atol=1e-5, equal_nan=True)


# -- the real scenes --------------------------------------------------------------------------------------


def test_real_sentinel2_scene_tile_and_resize(s2_scene):
    da = xrembed.open_raster(s2_scene).isel(y=slice(0, 300), x=slice(0, 300))
    # the real size, lazily (its 2304-wide channel attention is slow on a shared CPU; values: the tiny one)
    emb = da.rsembed.embed("panopticon", weights="random")
    assert emb.shape == (768, math.ceil(300 / 14), math.ceil(300 / 14)) and emb.rio.crs == da.rio.crs
    t_in, t_out = da.rio.transform(), emb.rio.transform()
    assert (t_out.a, t_out.e) == pytest.approx((t_in.a * 14, t_in.e * 14))
    assert (t_out.c, t_out.f) == pytest.approx((t_in.c, t_in.f))
    assert emb.attrs["bands"] == list(S2_BANDS)
    small = xrembed.open_raster(s2_scene).isel(y=slice(0, 150), x=slice(0, 170))
    resized = small.rsembed.embed("panopticon-tiny", weights="random", input_prep="resize")
    assert resized.shape == (32, 4, 4) and resized.rio.bounds() == pytest.approx(small.rio.bounds())
    tiled = small.rsembed.embed("panopticon-tiny", weights="random")
    assert tiled.shape == (32, math.ceil(150 / 14), math.ceil(170 / 14)) and np.isfinite(tiled.values).all()


def test_real_sentinel1_scene_in_db(s2_scene):
    if not S1_SCENE.is_dir():
        pytest.fail(f"the shared Sentinel-1 scene is missing at {S1_SCENE}")
    dn = xrembed.open_raster(S1_SCENE, bands=["VV", "VH"])
    db = 10 * np.log10(dn.astype("float32") ** 2 / 1e6)  # sigma0-like power ~ DN^2 / 1e6 (data README), in dB
    crop = db.isel(y=slice(300, 440), x=slice(500, 640))
    emb = crop.rsembed.embed("panopticon-tiny", weights="random")
    assert emb.rio.crs.to_epsg() == 32643 and emb.shape == (32, 10, 10)
    assert emb.attrs["bands"] == ["VV", "VH"] and np.isfinite(emb.values).any()
    resized = crop.rsembed.embed("panopticon-tiny", weights="random", input_prep="resize", output="pooled")
    assert resized.shape == (32,) and np.isfinite(resized.values).all()
