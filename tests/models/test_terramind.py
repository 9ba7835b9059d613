"""TerraMind fidelity (invariant 3), input contract (invariant 4) and the real scenes through the accessor.

The reference is terratorch 1.2.11's ``TerraMindViT`` (``models/backbones/terramind/``, Apache-2.0), built
at random init with the three raw modalities and every weight given a non-trivial random value. Weights go
through the release layout: the whole any-to-any model, flat, with zero LayerNorm bias buffers.
"""

from __future__ import annotations

import math
from functools import partial
from unittest import mock

import numpy as np
import pytest
import torch
from affine import Affine

import xrembed
from xrembed import errors
from xrembed.models.base import Variant
from xrembed.models.registry import register_model
from xrembed.models.terramind import MODALITIES, S2_BANDS, TerraMind
from xrembed.models.terramind_release import release_state
from xrembed.models.weights import WeightsSource, load_module
from xrembed.testing import synthetic_raster, to_xee_dataset

from shared_paths import SHARED_DATA
from oracles import import_torchvision_cpu_safe

TOL = 1e-4
S1_SCENE = SHARED_DATA / "S1A_IW_GRDH_1SDV_20180716T004042_FD5B" / "measurement"
REFERENCE_MODALITIES = {"s2l2a": "S2L2A", "s1grd": "S1GRD", "s1rtc": "S1RTC"}
SIZE = 64  # test tiles: 4 x 4 patches of 16 px (terratorch takes the patch size of a named modality from its table)


def terratorch_terramind():
    """terratorch's ``terramind_register`` module (behind the torchvision shim), or skip the test. Importing
    terratorch sets ``torch.set_float32_matmul_precision("medium")``: the previous setting is put back."""
    precision = torch.get_float32_matmul_precision()
    try:
        import_torchvision_cpu_safe()
        from terratorch.models.backbones.terramind.model import terramind_register
    except Exception as err:  # pragma: no cover - depends on the test environment
        pytest.skip(f"terratorch reference unavailable: {err}")
    finally:
        torch.set_float32_matmul_precision(precision)
    return terramind_register


def _tiny(name: str, gated: bool) -> Variant:
    return Variant(name=name, embed_dim=48, depth=2, num_heads=3, patch_size=16, image_size=SIZE,
                   extra=(("gated_mlp", gated), ("bias", not gated)))


@register_model
class TinyTerraMind(TerraMind):
    """D=48, depth 2, 3 heads, patch 16, 64 px tiles: 'gelu' (tiny/small's MLP with biases), 'swiglu' (base/large's)."""

    model_id = "terramind-test"
    aliases = ()
    variants = {"gelu": _tiny("gelu", False), "swiglu": _tiny("swiglu", True)}
    default_variant = "gelu"


def perturb(model, seed: int):
    """Every parameter (not the buffers: zero norm biases, sin-cos tables) moved by a seeded random amount."""
    torch.manual_seed(seed)
    with torch.no_grad():
        for param in model.parameters():
            param.add_(torch.randn_like(param) * 0.02)
    return model.eval()


def reference_tiny(gated: bool, seed: int):
    terratorch_terramind()
    from terratorch.models.backbones.terramind.model.terramind_vit import TerraMindViT
    from terratorch.models.backbones.terramind.model.tm_utils import LayerNorm

    torch.manual_seed(seed)
    model = TerraMindViT(
        img_size=SIZE, modalities=list(REFERENCE_MODALITIES.values()), patch_size=16, dim=48, encoder_depth=2,
        num_heads=3, qkv_bias=not gated, proj_bias=not gated, mlp_bias=not gated,
        norm_layer=partial(LayerNorm, eps=1e-6, bias=False), act_layer=torch.nn.SiLU if gated else torch.nn.GELU,
        gated_mlp=gated,
    )
    return perturb(model, seed)


def reference_tokens(model, inputs: dict) -> torch.Tensor:
    """The reference's last output ``(B, N, D)`` (merge_method='mean': the mean over the image modalities)."""
    with torch.no_grad():
        return model(dict(inputs))[-1]


def release_file(model, path, dim: int, patch: int) -> str:
    torch.save(release_state(model.state_dict(), dim, patch, torch), path)
    return str(path)


def as_grid(tokens: torch.Tensor, side: int) -> torch.Tensor:
    return tokens.transpose(1, 2).reshape(tokens.shape[0], -1, side, side)


@pytest.fixture(scope="module")
def references():
    return {"gelu": reference_tiny(False, seed=0), "swiglu": reference_tiny(True, seed=1)}


@pytest.fixture(scope="module")
def weights(references, tmp_path_factory):
    folder = tmp_path_factory.mktemp("terramind")
    return {name: release_file(model, folder / f"TerraMind_{name}.pt", 48, 16) for name, model in references.items()}


# -- fidelity ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("variant", ["gelu", "swiglu"])
@pytest.mark.parametrize("modality", ["s2l2a", "s1grd", "s1rtc", "s2l2a+s1grd", "s2l2a+s1rtc"])
def test_parity_with_terratorch_on_the_release_layout(variant, modality, references, weights):
    adapter = TinyTerraMind(variant)
    ours = load_module(adapter, WeightsSource(weights[variant], "test"))  # strict, after the clean-up
    torch.manual_seed(7)
    optical, radar = torch.randn(2, 12, SIZE, SIZE), torch.randn(2, 2, SIZE, SIZE)
    parts = modality.split("+")
    inputs = {REFERENCE_MODALITIES[p]: optical if p == "s2l2a" else radar for p in parts}
    expected = reference_tokens(references[variant], inputs)
    x = torch.cat([optical if p == "s2l2a" else radar for p in parts], dim=1)
    names = [b for p in parts for b in MODALITIES[p].bands]
    plan = adapter.plan_inputs(names, modality=modality)
    assert plan.option("modality") == modality
    with torch.no_grad():
        grid = adapter.forward_grid(ours, x, plan)
        pooled = adapter.forward_pooled(ours, x, plan)
    assert grid.shape == (2, 48, 4, 4) and pooled.shape == (2, 48)
    grid_diff = (grid - as_grid(expected, 4)).abs().max().item()
    pooled_diff = (pooled - expected.mean(dim=1)).abs().max().item()
    print(f"terramind {variant} {modality}: max |grid diff| {grid_diff:.2e}, max |pooled diff| {pooled_diff:.2e}")
    assert grid_diff <= TOL and pooled_diff <= TOL
    # the pooled vector is the plain mean of the grid tokens: tile mode's mean of the grid is the same
    assert (adapter.pool_tokens(ours, grid.mean(dim=(2, 3)), plan) - pooled).abs().max().item() <= 1e-5


def test_position_table_is_the_references_and_resizes_as_it_does(references, weights):
    terratorch_terramind()
    from terratorch.models.backbones.terramind.model.tm_utils import build_2d_sincos_posemb

    from xrembed.models.terramind_net import sincos_table

    assert torch.allclose(sincos_table(14, 768), build_2d_sincos_posemb(14, 14, 768), atol=1e-6)
    fresh = TinyTerraMind("gelu").build_module()  # computed, not loaded
    for key in ("untok_sen2l2a@224", "untok_sen1grd@224"):
        assert torch.allclose(fresh.encoder_embeddings[key].pos_emb,
                              references["gelu"].encoder_embeddings[key].pos_emb, atol=1e-6)
    # another image size: the stored table is resized bicubic, as the reference does
    ours = load_module(TinyTerraMind("gelu"), WeightsSource(weights["gelu"], "t"))
    x = torch.randn(1, 12, 96, 96)
    with torch.no_grad():
        diff = (ours.tokens(x, ["untok_sen2l2a@224"]) - reference_tokens(references["gelu"], {"S2L2A": x})).abs().max()
    assert diff.item() <= TOL
    assert torch.get_float32_matmul_precision() == "highest"  # terratorch's import changed it: put back


def test_normalisation_statistics_are_terratorchs():
    tm = terratorch_terramind()
    for name, key in (("s2l2a", "untok_sen2l2a@224"), ("s1grd", "untok_sen1grd@224"), ("s1rtc", "untok_sen1rtc@224")):
        assert list(MODALITIES[name].mean) == tm.v1_pretraining_mean[key], name
        assert list(MODALITIES[name].std) == tm.v1_pretraining_std[key], name
        assert MODALITIES[name].key == key
    assert list(S2_BANDS) == ["B01", "B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A", "B09", "B11", "B12"]
    assert len(tm.PRETRAINED_BANDS["untok_sen2l2a@224"]) == 12 and "CIRRUS" not in tm.PRETRAINED_BANDS["untok_sen2l2a@224"]
    assert tm.PRETRAINED_BANDS["untok_sen2l2a@224"][8] == "NIR_NARROW"  # B8A after B08
    x = torch.tensor([1390.458 + 2106.761, float("nan")]).view(1, 1, 1, 2).expand(1, 12, 1, 2)
    plan = TerraMind().plan_inputs(list(S2_BANDS))
    out = TerraMind().normalise(x, plan)
    assert out[0, 0, 0, 0].item() == pytest.approx(1.0) and math.isnan(out[0, 0, 0, 1].item())


def _reference_at_real_size(tm, variant: str, seed: int):
    torch.manual_seed(seed)
    model = getattr(tm, f"terramind_v1_{variant}")(modalities=list(REFERENCE_MODALITIES.values()))
    return perturb(model, seed)


@pytest.mark.parametrize("variant", ["tiny", "base"])
def test_parity_at_real_size(variant):
    """The registered tiny (GELU) and base (SwiGLU) configurations against terratorch's, one 224 px image."""
    tm = terratorch_terramind()
    reference = _reference_at_real_size(tm, variant, seed=3)
    adapter = TerraMind(variant)
    with torch.device("meta"):  # every tensor comes from the release layout
        ours = adapter.build_module().eval()
    release = release_state(reference.state_dict(), adapter.variant.embed_dim, 16, torch)
    ours.load_state_dict(adapter.clean_state_dict(release), strict=True, assign=True)
    torch.manual_seed(4)
    x = torch.randn(1, 12, 224, 224)
    with torch.no_grad():
        diff = (ours.grid(x, ["untok_sen2l2a@224"]) - as_grid(reference_tokens(reference, {"S2L2A": x}), 14)).abs().max()
    assert diff.item() <= TOL


def _reference_on_meta(tm, variant: str):
    """terratorch's module on the meta device (its drop-path schedule calls ``.item()``: computed on the CPU)."""
    linspace = torch.linspace
    with mock.patch.object(torch, "linspace", lambda *a, **k: linspace(*a, **{**k, "device": "cpu"})):
        with torch.device("meta"):
            return getattr(tm, f"terramind_v1_{variant}")(modalities=list(REFERENCE_MODALITIES.values()))


@pytest.mark.parametrize(("variant", "count"), [("tiny", None), ("small", None), ("base", 88_101_888), ("large", None)])
def test_real_size_keys_shapes_and_parameter_count_match_the_reference(variant, count):
    tm = terratorch_terramind()
    reference = _reference_on_meta(tm, variant)
    adapter = TerraMind(variant)
    with torch.device("meta"):
        ours = adapter.build_module()
    expected = {k: tuple(t.shape) for k, t in reference.state_dict().items() if not (k.endswith(".bias") and "norm" in k)}
    assert {k: tuple(t.shape) for k, t in ours.state_dict().items()} == expected
    n = sum(p.numel() for p in ours.parameters())
    assert n == sum(p.numel() for p in reference.parameters())
    if count is not None:
        assert n == count
    dim = adapter.variant.embed_dim
    assert expected["encoder_embeddings.untok_sen2l2a@224.proj.weight"] == (dim, 12 * 16 * 16)
    assert expected["encoder_embeddings.untok_sen1rtc@224.pos_emb"] == (1, 196, dim)
    assert f"encoder.{adapter.variant.depth - 1}.mlp.fc2.weight" in expected
    assert ("encoder.0.mlp.fc3.weight" in expected) == (variant in ("base", "large"))
    assert ("encoder.0.attn.qkv.bias" in expected) == (variant in ("tiny", "small"))
    # the reference's norm biases are zero buffers (what the clean-up drops), not parameters
    assert {k for k, _ in reference.named_buffers() if k.endswith(".bias")} == {
        k for k in reference.state_dict() if k.endswith(".bias") and "norm" in k
    }


def test_release_layout_loads_strictly_and_refuses_mismatches(references, weights, tmp_path):
    loaded = load_module(TinyTerraMind("gelu"), WeightsSource(weights["gelu"], "t"))
    reference = references["gelu"].state_dict()
    for key, tensor in loaded.state_dict().items():
        assert torch.equal(tensor, reference[key]), key
    release = torch.load(weights["gelu"], weights_only=True)
    assert any(k.startswith("decoder.") for k in release) and "encoder_norm.bias" in release
    bad_bias = dict(release, **{"encoder.0.norm1.bias": torch.full((48,), 0.1)})
    missing = {k: v for k, v in release.items() if k != "encoder.1.attn.proj.weight"}
    for name, bad, error, match in (
        ("bias", bad_bias, errors.WeightsError, "encoder.0.norm1.bias is not zero"),
        ("missing", missing, errors.WeightsError, "missing"),
    ):
        path = tmp_path / f"{name}.pt"
        torch.save(bad, path)
        with pytest.raises(error, match=match):
            load_module(TinyTerraMind("gelu"), WeightsSource(str(path), "t"))
    with pytest.raises(errors.WeightsError, match="missing|unexpected|wrong shape"):
        load_module(TinyTerraMind("swiglu"), WeightsSource(weights["gelu"], "t"))  # the other MLP


def test_write_official_checkpoint_writes_the_release_layout(tmp_path):
    from xrembed.testing import write_official_checkpoint

    path = tmp_path / "TerraMind_v1_test.pt"
    written = write_official_checkpoint(path, "terramind-test", "swiglu", seed=2)
    release = torch.load(path, weights_only=True)
    assert {"encoder_norm.bias", "decoder_norm.weight", "mask_token", "encoder_embeddings.untok_sen2l1c@224.proj.weight"} <= set(release)
    assert not torch.count_nonzero(release["encoder.1.norm2.bias"])
    loaded = load_module(TinyTerraMind("swiglu"), WeightsSource(str(path), "t"))
    for key, tensor in written.state_dict().items():
        assert torch.equal(loaded.state_dict()[key], tensor), key
    da = synthetic_raster((SIZE, SIZE), bands=list(S2_BANDS))
    pooled = da.rsembed.embed("terramind-test", variant="swiglu", weights=str(path), output="pooled")
    assert np.isfinite(pooled.values).all()


def test_accessor_reproduces_the_reference_with_the_documented_normalisation(references, weights):
    """One 64 px tile per modality through the accessor equals the reference fed (x - mean) / std."""
    rng = np.random.default_rng(3)
    optical = rng.uniform(200, 6000, (12, SIZE, SIZE)).astype(np.float32)
    radar = rng.uniform(-25, -5, (2, SIZE, SIZE)).astype(np.float32)

    def standard(values, name):
        m = MODALITIES[name]
        return ((torch.from_numpy(values) - torch.tensor(m.mean).view(-1, 1, 1)) / torch.tensor(m.std).view(-1, 1, 1))[None]

    cases = {
        "s2l2a": (optical, list(S2_BANDS), {"S2L2A": standard(optical, "s2l2a")}),
        "s1rtc": (radar, ["VV", "VH"], {"S1RTC": standard(radar, "s1rtc")}),
        "s2l2a+s1grd": (np.concatenate([optical, radar]), [*S2_BANDS, "VV", "VH"],
                        {"S2L2A": standard(optical, "s2l2a"), "S1GRD": standard(radar, "s1grd")}),
    }
    for modality, (values, bands, inputs) in cases.items():
        expected = reference_tokens(references["gelu"], inputs)
        da = synthetic_raster((SIZE, SIZE), bands=bands).copy(data=values)
        kw = {"weights": weights["gelu"], "modality": modality}
        grid = da.rsembed.embed("terramind-test", **kw)
        np.testing.assert_allclose(grid.values, as_grid(expected, 4)[0].numpy(), atol=TOL, err_msg=modality)
        for prep in ("tile", "resize"):
            pooled = da.rsembed.embed("terramind-test", output="pooled", input_prep=prep, **kw)
            np.testing.assert_allclose(pooled.values, expected.mean(dim=1)[0].numpy(), atol=TOL,
                                       err_msg=f"{modality} {prep}")


def test_other_tile_sizes_resize_the_stored_table_as_the_reference(references, weights):
    """Tiles of 128 px on the 64 px test variant: the adapter's path (normalise, forward_grid) is the reference run
    at 128 px (its stored 4 x 4 table resized bicubic to 8 x 8)."""
    adapter = TinyTerraMind("gelu")
    assert adapter.check_tile_size(128) == 128 and "bicubic" in adapter.other_tile_sizes
    assert xrembed.describe_model("terramind")["tile_sizes"].startswith("any multiple of 16 px")
    with pytest.raises(errors.OptionError, match="whole number of its 16 px patches"):
        adapter.check_tile_size(120)
    rng = np.random.default_rng(9)
    optical = torch.from_numpy(rng.uniform(200, 6000, (1, 12, 128, 128)).astype(np.float32))
    m = MODALITIES["s2l2a"]
    x = (optical - torch.tensor(m.mean).view(1, -1, 1, 1)) / torch.tensor(m.std).view(1, -1, 1, 1)
    expected = reference_tokens(references["gelu"], {"S2L2A": x})
    module = load_module(adapter, WeightsSource(weights["gelu"], "t"))
    plan = adapter.plan_inputs(list(S2_BANDS))
    with torch.no_grad():
        grid = adapter.forward_grid(module, adapter.normalise(optical, plan), plan)
    assert grid.shape == (1, 48, 8, 8)
    assert (grid - as_grid(expected, 8)).abs().max().item() <= TOL


@pytest.mark.network
@pytest.mark.parametrize("variant", ["tiny", "base"])
def test_published_weights_load_strictly_and_match_the_reference(variant, monkeypatch):
    """Opt-in (XREMBED_NETWORK_TESTS=1; downloads TerraMind_v1_<size>.pt): the real release file loads strictly
    after the clean-up (which checks that its norm biases are zero), and our module with it equals terratorch's
    TerraMindViT loaded through its own checkpoint_filter_fn, for each raw modality."""
    import huggingface_hub.constants

    from xrembed.models.weights import read_state_dict, resolve_weights, strip_wrapper_prefixes

    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
    tm = terratorch_terramind()
    adapter = TerraMind(variant)
    path = resolve_weights(adapter, None).path
    ours = load_module(adapter, WeightsSource(path, "hub"))  # strict: raises on any missing or extra key
    raw = strip_wrapper_prefixes(read_state_dict(path))
    assert set(adapter.clean_state_dict(dict(raw))) == set(ours.state_dict())
    reference = getattr(tm, f"terramind_v1_{variant}")(modalities=list(REFERENCE_MODALITIES.values()))
    reference.load_state_dict(tm.checkpoint_filter_fn(torch.load(path, map_location="cpu", weights_only=True),
                                                      reference), strict=True)
    reference.eval()
    torch.manual_seed(11)
    for name, key in REFERENCE_MODALITIES.items():
        x = torch.randn(1, len(MODALITIES[name].bands), 224, 224)
        with torch.no_grad():
            diff = (ours.tokens(x, [MODALITIES[name].key]) - reference_tokens(reference, {key: x})).abs().max()
        assert diff.item() <= TOL, name


# -- contract ---------------------------------------------------------------------------------------------


def test_describe_model_gives_the_contract():
    info = xrembed.describe_model("terramind")
    assert (info["model"], info["variant"], info["variants"]) == ("terramind", "base", ["base", "large", "small", "tiny"])
    assert info["bands"] == list(S2_BANDS) and len(info["wavelengths_um"]) == 12
    assert (info["image_size"], info["patch_size"], info["embed_dim"]) == (224, 16, 768)
    assert info["modalities"]["s1grd"]["bands"] == ["VV", "VH"] and "dB" in info["modalities"]["s1rtc"]["values"]
    assert info["joint_modalities"]["s2l2a+s1grd"]["bands"] == [*S2_BANDS, "VV", "VH"]
    assert info["weights"] == "hf://ibm-esa-geospatial/TerraMind-1.0-base/TerraMind_v1_base.pt"
    assert info["normalisation"]["s1grd"] == {"mean": [-12.599, -20.293], "std": [5.195, 5.890]}
    assert "Apache-2.0" in info["licence"] and set(info["outputs"]) == {"grid", "pooled"}
    for variant, dim in (("tiny", 192), ("small", 384), ("large", 1024)):
        other = xrembed.describe_model("terramind", variant=variant)
        assert other["embed_dim"] == dim and other["weights"].endswith(f"TerraMind-1.0-{variant}/TerraMind_v1_{variant}.pt")
    assert info["default_sensors"]["s2l2a"]["collection"] == "COPERNICUS/S2_SR_HARMONIZED"
    assert TerraMind.default_sensor("s1").collection == "COPERNICUS/S1_GRD"  # dB
    assert TerraMind.default_sensor("S1RTC").use_float_linear is False
    assert TerraMind.default_sensor().bands == ("B1", "B2", "B3", "B4", "B5", "B6", "B7", "B8", "B8A", "B9", "B11", "B12")


def test_bands_are_picked_by_name_and_the_modality_inferred():
    shuffled = ["B12", "B01", "B10", "B8A", "B02", "B03", "B04", "B11", "B05", "B09", "B06", "B07", "B08"]
    plan = TerraMind().plan_inputs(shuffled)
    assert plan.bands == S2_BANDS and plan.option("modality") == "s2l2a" and plan.option("scale") == "reflectance"
    s1 = TerraMind().plan_inputs(["vh", "vv"])
    assert s1.bands == ("VV", "VH") and s1.option("modality") == "s1grd" and s1.option("scale") == "db"
    assert TerraMind().plan_inputs(["VV", "VH"], modality="S1RTC").option("modality") == "s1rtc"
    assert TerraMind().plan_inputs(shuffled, modality="S2L2A").option("modality") == "s2l2a"
    joint = TerraMind().plan_inputs(shuffled + ["VH", "VV"], modality="s2l2a+s1rtc")
    assert joint.bands == (*S2_BANDS, "VV", "VH") and joint.option("scale") == "joint"
    assert TerraMind().plan_inputs(shuffled + ["VV", "VH"]).bands == S2_BANDS  # optical unless asked


def test_picking_bands_through_the_accessor(weights):
    shuffled = ["B12", "B01", "B10", "B8A", "B02", "B03", "B04", "B11", "B05", "B09", "B06", "B07", "B08"]
    da = synthetic_raster((80, 80), bands=shuffled, seed=3)
    a = da.rsembed.embed("terramind-test", weights=weights["gelu"]).values
    b = da.sel(band=list(S2_BANDS)).rsembed.embed("terramind-test", weights=weights["gelu"]).values
    np.testing.assert_array_equal(a, b)


def test_bad_requests_name_the_fix():
    da = synthetic_raster((SIZE, SIZE), bands=list(S2_BANDS))
    with pytest.raises(errors.OptionError, match="'s1rtc'"):
        da.rsembed.embed("terramind-test", modality="dem", weights="random")
    with pytest.raises(errors.OptionError, match="wavelengths"):
        da.rsembed.embed("terramind-test", wavelengths=[0.5] * 12, weights="random")
    with pytest.raises(errors.BandMismatchError, match="lacks .*VV"):
        da.rsembed.embed("terramind-test", modality="s2l2a+s1grd", weights="random")
    with pytest.raises(errors.BandMismatchError, match="lacks .*B01"):
        synthetic_raster((SIZE, SIZE), bands=["B02", "B03", "B04"]).rsembed.embed("terramind-test", weights="random")
    with pytest.raises(errors.BandMismatchError, match="exactly 2 bands"):
        TerraMind().plan_inputs(["VV", "VH", "B02"], bands=["VV", "VH", "B02"], modality="s1grd")
    unnamed = synthetic_raster((SIZE, SIZE), bands=["VV", "VH"]).drop_vars("band")
    with pytest.raises(errors.BandMismatchError, match="not named"):
        unnamed.rsembed.embed("terramind-test", weights="random")
    with pytest.raises(errors.UnknownModelError, match="variant"):
        da.rsembed.embed("terramind", variant="huge", weights="random")


def test_values_on_the_wrong_scale_are_refused():
    rng = np.random.default_rng(0)
    db = synthetic_raster((SIZE, SIZE), bands=["VV", "VH"]).copy(data=rng.uniform(-25, -5, (2, SIZE, SIZE)).astype("f4"))
    assert np.isfinite(db.rsembed.embed("terramind-test", weights="random").values).all()
    with pytest.raises(errors.InputRangeError, match="dB"):
        (10 ** (db / 10)).chunk().rsembed.embed("terramind-test", modality="s1rtc", weights="random").compute()
    normalised = synthetic_raster((SIZE, SIZE), bands=list(S2_BANDS)) / 10000.0
    with pytest.raises(errors.InputRangeError, match="10000"):
        normalised.chunk().rsembed.embed("terramind-test", weights="random").compute()
    joint = synthetic_raster((SIZE, SIZE), bands=[*S2_BANDS, "VV", "VH"])  # radar bands as reflectance: not dB
    with pytest.raises(errors.InputRangeError, match="dB"):
        joint.rsembed.embed("terramind-test", modality="s2l2a+s1grd", weights="random")


def test_nodata_cells_are_nan_and_the_rest_unchanged_by_chunking(weights):
    da = synthetic_raster((144, 176), bands=list(S2_BANDS), seed=4).copy()
    da[:, :16, :16] = np.nan
    eager = da.rsembed.embed("terramind-test", weights=weights["swiglu"], variant="swiglu").values
    assert np.isnan(eager[:, 0, 0]).all() and np.isfinite(eager[:, 1:, 1:]).all()
    for chunks in ({"y": 64, "x": 80}, {"y": 128, "x": 48}):
        lazy = da.chunk(chunks).rsembed.embed("terramind-test", weights=weights["swiglu"], variant="swiglu")
        np.testing.assert_allclose(lazy.values, eager, atol=1e-5, equal_nan=True)


def test_joint_modality_from_an_xee_style_dataset(weights):
    da = synthetic_raster((SIZE, SIZE), bands=[*S2_BANDS, "VV", "VH"], seed=6).copy()
    da[12:] = -12.0 + da[12:] / 1000.0  # radar in dB
    ds = to_xee_dataset(da)
    from_ds = ds.rsembed.embed("terramind-test", modality="s2l2a+s1grd", weights=weights["gelu"])
    from_da = da.rsembed.embed("terramind-test", modality="s2l2a+s1grd", weights=weights["gelu"])
    np.testing.assert_allclose(from_ds.values[0], from_da.values, atol=1e-6)
    assert from_da.attrs["bands"] == [*S2_BANDS, "VV", "VH"]


def test_reduced_precisions_run_and_stay_close(weights):
    da = synthetic_raster((SIZE, SIZE), bands=list(S2_BANDS), seed=8)
    full = da.rsembed.embed("terramind-test", variant="swiglu", weights=weights["swiglu"]).values.reshape(48, -1)
    for precision in ("bf16", "int8"):
        out = da.rsembed.embed("terramind-test", variant="swiglu", weights=weights["swiglu"], precision=precision)
        low = out.values.reshape(48, -1)
        cosine = (full * low).sum(0) / np.linalg.norm(full, axis=0) / np.linalg.norm(low, axis=0)
        assert np.isfinite(low).all() and cosine.min() > 0.99, precision


# -- the real scenes --------------------------------------------------------------------------------------


def _check_grid(emb, da, patch=16):
    t_in, t_out = da.rio.transform(recalc=True), emb.rio.transform()
    assert emb.rio.crs == da.rio.crs
    assert t_out.a == pytest.approx(t_in.a * patch) and t_out.e == pytest.approx(t_in.e * patch)
    assert (t_out.c, t_out.f) == pytest.approx((t_in.c, t_in.f))


def test_real_sentinel2_scene_tile_and_resize(s2_scene):
    da = xrembed.open_raster(s2_scene).isel(y=slice(0, 250), x=slice(0, 250))
    emb = da.rsembed.embed("terramind", variant="tiny", weights="random")
    assert emb.shape == (192, math.ceil(250 / 16), math.ceil(250 / 16))
    _check_grid(emb, da)
    assert emb.attrs["bands"] == list(S2_BANDS)
    assert np.isfinite(emb.values).all()
    resized = da.rsembed.embed("terramind", variant="tiny", weights="random", input_prep="resize")
    assert resized.shape == (192, 14, 14) and resized.rio.crs == da.rio.crs
    assert resized.rio.bounds() == pytest.approx(da.rio.bounds())
    pooled = da.rsembed.embed("terramind", variant="tiny", weights="random", output="pooled", input_prep="resize")
    assert pooled.shape == (192,) and np.isfinite(pooled.values).all()


def test_real_sentinel2_scene_is_chunk_invariant(s2_scene):
    da = xrembed.open_raster(s2_scene, chunks=None).isel(y=slice(100, 260), x=slice(40, 200))
    eager = da.rsembed.embed("terramind-test", weights="random").values
    lazy = da.chunk({"y": 64, "x": 96}).rsembed.embed("terramind-test", weights="random")
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
    emb = crop.rsembed.embed("terramind", variant="tiny", modality="s1grd", weights="random")
    assert emb.rio.crs.to_epsg() == 32643 and emb.shape == (192, 15, 15)
    assert emb.rio.transform() == crop.rio.transform(recalc=True) @ Affine.scale(16)
    assert np.isfinite(emb.compute().values).any()
    resized = crop.rsembed.embed("terramind", variant="tiny", modality="s1rtc", weights="random", input_prep="resize")
    assert resized.shape == (192, 14, 14) and resized.rio.bounds() == pytest.approx(crop.rio.bounds())
    pooled = crop.rsembed.embed("terramind", variant="tiny", weights="random", output="pooled")  # VV/VH: s1grd
    assert pooled.attrs["bands"] == ["VV", "VH"] and np.isfinite(pooled.values).all()
    assert (pooled.attrs["plan_modality"], resized.attrs["plan_modality"]) == ("s1grd", "s1rtc")
