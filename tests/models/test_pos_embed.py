"""Tiles of another size than the pretraining size (``tile_size=N``): the resampled position embedding equals
timm's ``resample_abs_pos_embed`` for every family layout, and each family's network run at N equals its
reference run at N (torchgeo's DOFA / ScaleMAE / CROMA / Panopticon, terratorch's Prithvi built at
``img_size=N``; for the families whose reference is not installable, the same network built at N with timm's
resampled table, which is what timm's checkpoint filter loads for ``img_size=N``)."""

from __future__ import annotations

import math
from functools import partial

import pytest
import torch
from torch import nn

from xrembed.models.base import InputContext, Variant
from xrembed.models.croma import CROMA, S2_BANDS
from xrembed.models.dofa import DEFAULT_BANDS, DOFA
from xrembed.models.dofa_clip_net import DOFACLIPEncoder
from xrembed.models.mae_net import MAEEncoder
from xrembed.models.panopticon import Panopticon
from xrembed.models.pos_embed import pos_embed_for, resample_abs_pos_embed
from xrembed.models.prithvi import DEFAULT_BANDS as HLS_BANDS
from xrembed.models.prithvi import Prithvi
from xrembed.models.remoteclip_net import CLIPVisionTransformer
from xrembed.models.satmae import RGB_BANDS
from xrembed.models.scalemae import ScaleMAE
from xrembed.models.terrafm_net import TerraFMEncoder
from xrembed.models.weights import WeightsSource, load_module

from oracles import import_torchvision_cpu_safe, torchgeo_croma, torchgeo_dofa, torchgeo_panopticon

TOL = 1e-4  # tokens (invariant 3)
CROMA_PARTS = ("s1_encoder", "s1_GAP_FFN", "s2_encoder", "s2_GAP_FFN", "joint_encoder")  # the release file
POS_TOL = 1e-5  # the position tables themselves


def timm_resample():
    try:
        import_torchvision_cpu_safe()
        from timm.layers import resample_abs_pos_embed as reference
    except Exception as err:  # pragma: no cover - depends on the test environment
        pytest.skip(f"timm reference unavailable: {err}")
    return reference


def _jitter(module: nn.Module, seed: int, scale: float = 0.02) -> nn.Module:
    torch.manual_seed(seed)
    with torch.no_grad():  # every weight a non-trivial value (zeros-initialised tables included)
        for param in module.parameters():
            param.add_(torch.randn_like(param) * scale)
    return module.eval()


# -- the table: timm's arithmetic ---------------------------------------------------------------

LAYOUTS = {
    # name: (prefix tokens, old grid, new grid)
    "dofa/satmae/terrafm CLS 14 -> 28": (1, (14, 14), (28, 28)),
    "CLS 14 -> 7 (downsampling: antialias matters)": (1, (14, 14), (7, 7)),
    "panopticon release 37 -> 16": (1, (37, 37), (16, 16)),
    "panopticon release 37 -> 32": (1, (37, 37), (32, 32)),
    "dofa_clip no prefix 27 -> 32": (0, (27, 27), (32, 32)),
    "non-square 4 x 6 -> 8 x 3": (1, (4, 6), (8, 3)),
}


@pytest.mark.parametrize("name", list(LAYOUTS))
def test_resampled_table_is_timms(name):
    reference = timm_resample()
    prefix, old, new = LAYOUTS[name]
    torch.manual_seed(0)
    table = torch.randn(1, prefix + old[0] * old[1], 24)
    ours = resample_abs_pos_embed(table, new, old_size=None if old[0] == old[1] else old, num_prefix_tokens=prefix)
    expected = reference(table, list(new), old_size=None if old[0] == old[1] else list(old), num_prefix_tokens=prefix)
    assert ours.shape == expected.shape == (1, prefix + new[0] * new[1], 24)
    assert (ours - expected).abs().max().item() <= POS_TOL
    if prefix:
        assert torch.equal(ours[:, :prefix], table[:, :prefix])  # CLS kept as it is


def test_open_clip_two_dimensional_table_and_bf16_are_timms():
    """RemoteCLIP's ``positional_embedding`` is ``(1 + n * n, D)``; bf16 tables are resampled in float32."""
    reference = timm_resample()
    torch.manual_seed(1)
    table = torch.randn(1 + 7 * 7, 16)
    ours = pos_embed_for(table, 14, 14)
    assert ours.shape == (1 + 14 * 14, 16)
    assert (ours - reference(table[None], [14, 14])[0]).abs().max().item() <= POS_TOL
    half = torch.randn(1, 1 + 6 * 6, 16).to(torch.bfloat16)
    ours = resample_abs_pos_embed(half, (9, 9))
    assert ours.dtype == torch.bfloat16
    assert torch.equal(ours, reference(half, [9, 9]))


def test_own_size_is_the_table_itself():
    table = torch.randn(1, 1 + 16, 8)
    assert resample_abs_pos_embed(table, (4, 4)) is table
    assert pos_embed_for(table, 4, 4) is table
    with pytest.raises(ValueError, match="prefix"):
        resample_abs_pos_embed(torch.randn(1, 1 + 15, 8), (4, 4), old_size=(4, 4))


# -- DOFA: torchgeo's DOFA(img_size=N) with timm's table ---------------------------------------


class SmallDOFA(DOFA):
    model_id = "dofa-posembed-test"
    aliases = ()
    variants = {"small": Variant(name="small", embed_dim=64, depth=2, num_heads=4, patch_size=16, image_size=32)}
    default_variant = "small"


def test_dofa_at_another_size_is_torchgeos_at_that_size(tmp_path):
    dofa = torchgeo_dofa()
    resample = timm_resample()
    small = dict(patch_size=16, embed_dim=64, depth=2, num_heads=4, num_classes=0)
    torch.manual_seed(0)
    native = _jitter(dofa.DOFA(img_size=32, **small), 1)
    path = tmp_path / "dofa.pth"
    torch.save(native.state_dict(), path)
    adapter = SmallDOFA()
    ours = load_module(adapter, WeightsSource(str(path), "test"))
    plan = adapter.plan_inputs(list(DEFAULT_BANDS))
    waves = list(plan.option("wavelengths"))

    at_n = dofa.DOFA(img_size=80, **small).eval()  # 5 x 5 patches
    state = dict(native.state_dict(), pos_embed=resample(native.pos_embed.detach(), [5, 5]))
    at_n.load_state_dict(state, strict=True)
    x = torch.randn(2, len(waves), 80, 80)
    with torch.no_grad():
        expected_pooled = at_n.forward_features(x, waves)
        tokens, _ = at_n.patch_embed(x, torch.tensor(waves))
        seq = torch.cat([(at_n.cls_token + at_n.pos_embed[:, :1]).expand(2, -1, -1), tokens + at_n.pos_embed[:, 1:]], 1)
        for block in at_n.blocks:
            seq = block(seq)
        expected_grid = seq[:, 1:].transpose(1, 2).reshape(2, -1, 5, 5)
        grid = adapter.forward_grid(ours, x, plan)
        pooled = adapter.forward_pooled(ours, x, plan)
        native_grid = adapter.forward_grid(ours, x[..., :32, :32], plan)
    assert grid.shape == (2, 64, 5, 5)
    assert (grid - expected_grid).abs().max().item() <= TOL
    assert (pooled - expected_pooled).abs().max().item() <= TOL
    assert native_grid.shape == (2, 64, 2, 2)  # the own size still runs, from the table as stored


# -- ScaleMAE: torchgeo's ScaleMAE(img_size=N) evaluates its GSD sin-cos there ---------------------


class SmallScaleMAE(ScaleMAE):
    model_id = "scalemae-posembed-test"
    aliases = ()
    variants = {"small": Variant(name="small", embed_dim=32, depth=2, num_heads=4, patch_size=8, image_size=32)}
    default_variant = "small"


def test_scalemae_at_another_size_is_torchgeos_at_that_size(tmp_path):
    import_torchvision_cpu_safe()
    from torchgeo.models import scale_mae

    kwargs = dict(res=2.5, patch_size=8, embed_dim=32, depth=2, num_heads=4, mlp_ratio=4, qkv_bias=True,
                  norm_layer=partial(nn.LayerNorm, eps=1e-6), num_classes=0)
    torch.manual_seed(0)
    native = _jitter(scale_mae.ScaleMAE(img_size=32, **kwargs), 1, 0.05)
    path = tmp_path / "scalemae.pth"
    torch.save(native.state_dict(), path)
    adapter = SmallScaleMAE()
    ours = load_module(adapter, WeightsSource(str(path), "test"))
    plan = adapter.plan_inputs(list(RGB_BANDS), context=InputContext(resolution_m=2.5, center_lonlat=(0.0, 0.0)))

    at_n = scale_mae.ScaleMAE(img_size=56, **kwargs).eval()  # 7 x 7 patches
    at_n.load_state_dict(scale_mae.interpolate_pos_embed(at_n, dict(native.state_dict())), strict=True)
    x = torch.randn(2, 3, 56, 56)
    with torch.no_grad():
        expected_pooled = at_n(x)
        expected_grid = at_n.forward_features(x)[:, 1:].transpose(1, 2).reshape(2, -1, 7, 7)
        grid = adapter.forward_grid(ours, x, plan)
        pooled = adapter.forward_pooled(ours, x, plan)
    assert grid.shape == (2, 32, 7, 7)
    assert (grid - expected_grid).abs().max().item() <= TOL
    assert (pooled - expected_pooled).abs().max().item() <= TOL


# -- CROMA: torchgeo's CROMA(image_size=N) computes its ALiBi bias there -----------------------------


class SmallCROMA(CROMA):
    model_id = "croma-posembed-test"
    aliases = ()
    variants = {"tiny": Variant(name="tiny", embed_dim=64, depth=2, num_heads=16, patch_size=8, image_size=32)}
    default_variant = "tiny"


def test_croma_at_another_size_is_torchgeos_at_that_size(tmp_path):
    croma = torchgeo_croma()
    torch.manual_seed(3)
    at_n = croma.CROMA(["sar", "optical"], encoder_dim=64, encoder_depth=2, num_heads=16, patch_size=8,
                       image_size=48).eval()  # 6 x 6 patches; the weights do not depend on the size
    _jitter(at_n, 4)
    path = tmp_path / "croma.pt"
    torch.save({part: getattr(at_n, part).state_dict() for part in CROMA_PARTS}, path)
    adapter = SmallCROMA()
    ours = load_module(adapter, WeightsSource(str(path), "test"))
    x = torch.rand(2, 12, 48, 48)
    plan = adapter.plan_inputs(list(S2_BANDS), modality="s2")
    with torch.no_grad():
        expected = at_n.s2_encoder(imgs=x, attn_bias=at_n.attn_bias)
        grid = adapter.forward_grid(ours, x, plan)
    assert grid.shape == (2, 64, 6, 6)
    assert (grid - expected.transpose(1, 2).reshape(2, -1, 6, 6)).abs().max().item() <= TOL


# -- Panopticon: torchgeo's recipe at img_size=N resamples the release table once ---------------------


class SmallPanopticon(Panopticon):
    model_id = "panopticon-posembed-test"
    aliases = ()
    variants = {"tiny": Variant(name="tiny", embed_dim=32, depth=2, num_heads=4, patch_size=14, image_size=56,
                                extra=(("attn_dim", 48), ("release_grid", 7)))}
    default_variant = "tiny"


def _panopticon_reference(image_size: int):
    panopticon = torchgeo_panopticon()
    import timm

    torch.manual_seed(0)
    vit = timm.create_model("vit_base_patch14_dinov2", img_size=image_size, embed_dim=32, depth=2, num_heads=4)
    vit.patch_embed = panopticon.PanopticonPE(attn_dim=48, embed_dim=32, patch_size=14, img_size=image_size,
                                              chnfus_cfg={"attn_cfg": {"num_heads": 16}})
    vit.pos_embed = nn.Parameter(torch.zeros(1, 1 + (image_size // 14) ** 2, 32))
    with torch.no_grad():
        for name, param in vit.named_parameters():
            if name.endswith(".gamma"):
                param.fill_(1.0)
    return _jitter(vit, 1)


@pytest.mark.parametrize("tile", [56, 112])
def test_panopticon_at_any_size_is_torchgeos_loader_at_that_size(tile, tmp_path):
    from torchgeo.models.copernicusfm import resize_abs_pos_embed

    at_n = _panopticon_reference(tile)
    torch.manual_seed(2)
    release = {k: v.clone() for k, v in at_n.state_dict().items()}
    release["pos_embed"] = torch.randn(1, 1 + 7 * 7, 32) * 0.02  # the release's own (here 7 x 7) table
    release["mask_token"] = torch.zeros(1, 32)
    path = tmp_path / "panopticon_teacher.pth"
    torch.save(release, path)
    # torchgeo's loader: pop mask_token, resize the release table to img_size // 14, strict load
    state = {k: v for k, v in release.items() if k != "mask_token"}
    state["pos_embed"] = resize_abs_pos_embed(state["pos_embed"], tile // 14, 7)
    at_n.load_state_dict(state, strict=True)
    adapter = SmallPanopticon()
    ours = load_module(adapter, WeightsSource(str(path), "test"))
    plan = adapter.plan_inputs(["B04", "B03", "B02", "B08"], bands=["B04", "B03", "B02", "B08"])
    ids = torch.tensor(plan.option("channel_ids"), dtype=torch.float32)
    x = torch.randn(2, 4, tile, tile)
    with torch.no_grad():
        expected = at_n.forward_features({"imgs": x, "chn_ids": ids.expand(2, -1).clone()})
        grid = adapter.forward_grid(ours, x, plan)
    side = tile // 14
    assert grid.shape == (2, 32, side, side)
    expected_grid = expected[:, 1:].transpose(1, 2).reshape(2, -1, side, side)
    assert (grid - expected_grid).abs().max().item() <= TOL


# -- Prithvi: terratorch's PrithviViT(img_size=N) evaluates its sin-cos there ----------------------------


class SmallPrithvi(Prithvi):
    model_id = "prithvi-posembed-test"
    aliases = ()
    variants = {"tiny": Variant(name="tiny", embed_dim=64, depth=2, num_heads=4, patch_size=16, image_size=64,
                                extra=(("coords", False), ("max_frames", 4)))}
    default_variant = "tiny"


def test_prithvi_at_another_size_is_terratorchs_at_that_size(tmp_path):
    try:
        import_torchvision_cpu_safe()
        from terratorch.models.backbones import prithvi_mae
    except Exception as err:  # pragma: no cover
        pytest.skip(f"terratorch reference unavailable: {err}")

    def build(size):
        torch.manual_seed(0)
        vit = prithvi_mae.PrithviViT(img_size=size, patch_size=(1, 16, 16), num_frames=2, in_chans=6, embed_dim=64,
                                     depth=2, num_heads=4)
        return _jitter(vit, 1)

    native, at_n = build(64), build(96)  # pos_embed is a computed buffer: the parameters are the same
    assert all(torch.equal(a, b) for a, b in zip(native.parameters(), at_n.parameters()))
    path = tmp_path / "prithvi.pt"
    torch.save(native.state_dict(), path)
    adapter = SmallPrithvi()
    ours = load_module(adapter, WeightsSource(str(path), "test"))
    plan = adapter.plan_inputs(list(HLS_BANDS), context=InputContext(
        resolution_m=30.0, center_lonlat=(0.0, 0.0), times=("2020-01-01", "2020-02-01")))
    x = torch.randn(1, 6, 2, 96, 96)
    with torch.no_grad():
        expected = at_n.forward_features(x)[-1][:, 1:].reshape(1, 2, 6, 6, 64).mean(dim=1).permute(0, 3, 1, 2)
        grid = adapter.forward_grid(ours, x.transpose(1, 2).reshape(1, 12, 96, 96), plan)
    assert grid.shape == (1, 64, 6, 6)
    assert (grid - expected).abs().max().item() <= TOL


# -- learned / stored tables without an installable reference: the network built at N with timm's table ------


def _static_vs_dynamic(build, table_name: str, prefix: int, forward, native: int, tile: int, patch: int):
    """``build(image_size)`` at ``native`` px, run at ``tile`` px, equals the network built at ``tile`` px holding
    timm's resampled table (what timm's checkpoint filter loads for ``img_size=tile``)."""
    resample = timm_resample()
    torch.manual_seed(0)
    small = _jitter(build(native), 1)
    big = build(tile).eval()
    state = small.state_dict()
    table = state[table_name]
    as_3d = table[None] if table.ndim == 2 else table
    side = tile // patch
    resampled = resample(as_3d, [side, side], num_prefix_tokens=prefix)
    state = dict(state, **{table_name: resampled[0] if table.ndim == 2 else resampled})
    big.load_state_dict(state, strict=True)
    torch.manual_seed(5)
    x = torch.randn(2, 3, tile, tile)
    with torch.no_grad():
        ours, expected = forward(small, x), forward(big, x)
    assert (ours - expected).abs().max().item() <= TOL
    return ours


def test_terrafm_resampled_table_equals_the_network_built_at_that_size():
    out = _static_vs_dynamic(
        lambda size: TerraFMEncoder(embed_dim=32, depth=2, num_heads=4, patch_size=16, image_size=size),
        "pos_embed", 1, lambda m, x: m.grid(x.repeat(1, 4, 1, 1), "s2_l2a"), native=32, tile=64, patch=16)
    assert out.shape == (2, 32, 4, 4)


def test_satmae_resampled_table_equals_the_network_built_at_that_size():
    out = _static_vs_dynamic(
        lambda size: MAEEncoder(embed_dim=32, depth=2, num_heads=4, patch_size=16, image_size=size, in_chans=3),
        "pos_embed", 1, lambda m, x: m.forward_grid(x), native=32, tile=80, patch=16)
    assert out.shape == (2, 32, 5, 5)


def test_remoteclip_resampled_table_equals_the_network_built_at_that_size():
    out = _static_vs_dynamic(
        lambda size: CLIPVisionTransformer(width=32, depth=2, num_heads=4, patch_size=16, image_size=size, output_dim=16),
        "positional_embedding", 1, lambda m, x: m.forward_tokens(x), native=32, tile=64, patch=16)
    assert out.shape == (2, 1 + 16, 32)


def test_dofa_clip_resampled_table_equals_the_network_built_at_that_size():
    out = _static_vs_dynamic(
        lambda size: DOFACLIPEncoder(embed_dim=32, depth=2, num_heads=4, patch_size=14, image_size=size, mlp_ratio=2.0),
        "pos_embed", 0, lambda m, x: m.forward_tokens(x, (0.665, 0.56, 0.49)), native=42, tile=84, patch=14)
    assert out.shape == (2, 36, 32)


def test_every_family_says_how_it_takes_other_sizes():
    import xrembed

    for model in ["croma", "dofa", "dofa_clip", "olmoearth", "panopticon", "prithvi", "remoteclip", "satmae",
                  "scalemae", "terrafm"]:
        info = xrembed.describe_model(model)
        assert info["tile_sizes"].startswith(f"any multiple of {info['patch_size']} px"), model
    assert math.isclose(DOFA().check_tile_size(448), 448)
