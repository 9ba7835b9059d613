"""Scale-MAE fidelity (invariant 3) and input contract (invariant 4): parity with torchgeo 0.8.1's
``ScaleMAE`` on identical random weights at several GSDs, strict loading of the timm-style and the
official MAE key layouts, and the metres -> ``res`` mapping."""

import argparse
from functools import partial

import numpy as np
import pytest
import torch
from affine import Affine
from torch import nn

import xrembed
import xrembed.testing
from xrembed import errors
from xrembed.models.base import InputContext, Variant
from xrembed.models.registry import register_model
from xrembed.models.satmae import RGB_BANDS
from xrembed.models.scalemae import IMAGENET_MEAN, IMAGENET_STD, ScaleMAE
from xrembed.models.weights import WeightsSource, load_module
from xrembed.testing import synthetic_raster

from oracles import import_torchvision_cpu_safe


SMALL = dict(img_size=32, patch_size=8, embed_dim=32, depth=2, num_heads=4)


@register_model
class SmallScaleMAE(ScaleMAE):
    model_id = "scalemae-small"
    aliases = ()
    variants = {"small": Variant(name="small", embed_dim=32, depth=2, num_heads=4, patch_size=8, image_size=32)}
    default_variant = "small"


def torchgeo_scale_mae():
    try:
        import_torchvision_cpu_safe()
        from torchgeo.models import scale_mae
    except Exception as err:  # pragma: no cover - depends on the test environment
        pytest.skip(f"torchgeo reference unavailable: {err}")
    return scale_mae


def _reference(res: float, seed: int = 1):
    scale_mae = torchgeo_scale_mae()
    torch.manual_seed(seed)
    ref = scale_mae.ScaleMAE(
        res=res, mlp_ratio=4, qkv_bias=True, norm_layer=partial(nn.LayerNorm, eps=1e-6), num_classes=0, **SMALL
    ).eval()
    with torch.no_grad():  # give every weight (norms, biases, cls_token) a non-trivial value
        for param in ref.parameters():
            param.add_(torch.randn_like(param) * 0.05)
    return ref


def _rgb(shape=(32, 32), seed=0, **kwargs):
    return synthetic_raster(shape, bands=list(RGB_BANDS), seed=seed, **kwargs)


# -- fidelity ---------------------------------------------------------------------------------


@pytest.mark.parametrize("res", [0.3, 1.0, 2.5, 10.0, 100.0])
def test_parity_with_torchgeo(res, tmp_path):
    ref = _reference(res)
    path = tmp_path / "torchgeo_layout.pth"
    torch.save(ref.state_dict(), path)
    adapter = SmallScaleMAE()
    ours = load_module(adapter, WeightsSource(str(path), "test"))  # strict
    plan = adapter.plan_inputs(list(RGB_BANDS), context=InputContext(resolution_m=res, center_lonlat=(0.0, 0.0)))
    assert plan.option("res") == res
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        expected_pooled = ref(x)  # num_classes=0: the normed CLS token
        expected_grid = ref.forward_features(x)[:, 1:].transpose(1, 2).reshape(2, -1, 4, 4)
        pooled = adapter.forward_pooled(ours, x, plan)
        grid = adapter.forward_grid(ours, x, plan)
    assert (pooled - expected_pooled).abs().max().item() <= 1e-4
    assert (grid - expected_grid).abs().max().item() <= 1e-4


def test_res_changes_the_output_and_stored_pos_embed_is_unused(tmp_path):
    ref = _reference(1.0)
    state = ref.state_dict()
    path = tmp_path / "w.pth"
    torch.save(state, path)
    module = load_module(SmallScaleMAE(), WeightsSource(str(path), "t"))
    x = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        a, b = module(x, 1.0), module(x, 10.0)
        module.pos_embed.add_(torch.randn_like(module.pos_embed))
        c = module(x, 1.0)
    assert (a - b).abs().max().item() > 1e-3
    assert torch.equal(a, c)


def test_official_mae_layout_loads_after_clean_up(tmp_path):
    """The GitHub release is the whole MAE (decoder, FPN/FCN heads) in ``{'model', 'args': Namespace}``."""
    ref = _reference(1.0)
    state = dict(ref.state_dict())
    state.update(xrembed.testing.scalemae_release_extras(32, 17))
    path = tmp_path / "scalemae-vitlarge-800.pth"
    torch.save({"model": state, "epoch": 799, "args": argparse.Namespace(base_resolution=2.5)}, path)
    module = load_module(SmallScaleMAE(), WeightsSource(str(path), "t"))
    x = torch.randn(1, 3, 32, 32)
    ref.res = 2.5
    with torch.no_grad():
        assert (module(x, 2.5) - ref(x)).abs().max().item() <= 1e-4


def test_unknown_key_is_refused(tmp_path):
    state = dict(_reference(1.0).state_dict())
    state["blocks.0.ls1.gamma"] = torch.ones(32)
    torch.save(state, tmp_path / "x.pth")
    with pytest.raises(errors.WeightsError, match="unexpected"):
        load_module(SmallScaleMAE(), WeightsSource(str(tmp_path / "x.pth"), "t"))


def test_real_size_keys_shapes_and_parameter_count_match_torchgeo():
    scale_mae = torchgeo_scale_mae()
    reference = scale_mae.scalemae_large_patch16(num_classes=0)
    ours = ScaleMAE("large").build_module()
    shapes = lambda m: {k: tuple(v.shape) for k, v in m.state_dict().items()}  # noqa: E731
    assert shapes(ours) == shapes(reference)
    assert len(shapes(ours)) == 294
    count = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
    assert count(ours) == count(reference)


# -- GSD ----------------------------------------------------------------------------------------


def test_res_follows_the_input_pixel_size():
    adapter = ScaleMAE()
    assert adapter.plan_inputs(list(RGB_BANDS), context=InputContext(resolution_m=10.0, center_lonlat=(0.0, 0.0))).option("res") == 10.0
    assert adapter.plan_inputs(list(RGB_BANDS), context=InputContext(resolution_m=0.5, center_lonlat=(0.0, 0.0))).option("res") == 0.5
    assert adapter.plan_inputs(list(RGB_BANDS)).option("res") == 1.0  # no context: torchgeo's default


@pytest.mark.parametrize("resolution", [2.5, 30.0])
def test_accessor_one_tile_uses_the_raster_gsd(resolution, tmp_path):
    ref = _reference(resolution, seed=4)
    path = tmp_path / "w.pth"
    torch.save(ref.state_dict(), path)
    da = _rgb((32, 32), seed=6, resolution=resolution)
    grid = da.rsembed.embed("scalemae-small", weights=str(path))
    pooled = da.rsembed.embed("scalemae-small", weights=str(path), output="pooled", input_prep="resize")
    mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    x = (torch.clamp(torch.from_numpy(da.values)[None] / 10000, 0, 1) - mean) / std
    with torch.no_grad():
        tokens = ref.forward_features(x)
    np.testing.assert_allclose(grid.values, tokens[0, 1:].T.reshape(32, 4, 4).numpy(), atol=1e-4)
    np.testing.assert_allclose(pooled.values, tokens[0, 0].numpy(), atol=1e-4)


def test_real_sentinel2_scene_tile_and_resize(s2_scene):
    da = xrembed.open_raster(s2_scene).isel(y=slice(0, 300), x=slice(0, 300))
    assert ScaleMAE().plan_inputs(list(da.band.values), context=_context(da)).option("res") == pytest.approx(100.0)
    with pytest.warns(errors.RandomWeightsWarning):
        grid = da.rsembed.embed("scalemae", weights="random", input_prep="tile")
    assert grid.shape == (1024, 19, 19)
    assert grid.rio.crs == da.rio.crs
    assert grid.rio.transform() == da.rio.transform() * Affine.scale(16)
    assert np.isfinite(grid.values).all()
    with pytest.warns(errors.RandomWeightsWarning):
        pooled = da.rsembed.embed("scalemae", weights="random", output="pooled", input_prep="resize")
    assert pooled.shape == (1024,) and np.isfinite(pooled.values).all()


def _context(da):
    from xrembed.embedding import input_context
    from xrembed.geo import Grid

    return input_context(da, Grid.from_xarray(da))


# -- input contract ---------------------------------------------------------------------------


def test_band_errors_raised_at_embed_time():
    da = synthetic_raster((32, 32), bands=["B04", "B03", "B08"]).chunk()
    with pytest.raises(errors.BandMismatchError, match="B02"):
        da.rsembed.embed("scalemae-small", weights="random")
    with pytest.raises(errors.BandMismatchError, match="exactly 3"):
        _rgb().rsembed.embed("scalemae-small", bands=["B04", "B03"], weights="random")
    with pytest.raises(errors.OptionError, match="modality"):
        _rgb().rsembed.embed("scalemae-small", modality="s1", weights="random")


def test_normalised_reflectance_is_rejected_at_compute_time():
    emb = (_rgb() / 10000.0).chunk().rsembed.embed("scalemae-small", weights="random")
    with pytest.raises(errors.InputRangeError, match="10000"):
        emb.compute()


def test_offline_official_weights_name_the_fix():
    with pytest.raises(errors.WeightsError, match="vit_large_patch16_224_fmow_rgb_scalemae-98ed9821.pth"):
        _rgb().rsembed.embed("scalemae")


def test_describe_gives_the_contract():
    info = xrembed.describe_model("scalemae")
    assert info["bands"] == ["B04", "B03", "B02"]
    assert (info["image_size"], info["patch_size"], info["embed_dim"]) == (224, 16, 1024)
    assert info["normalisation"]["mean"] == list(IMAGENET_MEAN) and info["normalisation"]["std"] == list(IMAGENET_STD)
    assert info["weights"].startswith(
        "hf://isaaccorley/vit_large_patch16_224_fmow_rgb_scalemae/vit_large_patch16_224_fmow_rgb_scalemae-98ed9821.pth"
    )
    assert info["gsd"]["reference_gsd_m"] == 1.0
    assert "CC BY-NC 4.0" in info["licence"]
    assert xrembed.describe_model("scale-mae")["model"] == "scalemae"


def test_gsd_ratio_is_recorded_in_the_output_attrs():
    from xrembed.testing import synthetic_raster

    da = synthetic_raster((32, 32), bands=["B04", "B03", "B02"], resolution=20)
    emb = da.rsembed.embed("scalemae-small", weights="random", input_prep="resize")
    assert emb.attrs["plan_res"] == pytest.approx(20.0)
