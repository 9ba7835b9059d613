"""DOFA-CLIP / GeoLangBind fidelity (invariant 3) and input contract (invariant 4).

The reference (github.com/xiong-zhitong/DOFA-CLIP, an open_clip fork) is GitHub-only, so parity runs
against goldens that ``scripts/goldens_dofa_clip.py`` made from it: a small ``GeoLB_VisionTransformer``
with random weights in the official open_clip layout, its pooled output and normed tokens, and the key
sets of the real so400m and b16 trunks. timm (a test-only oracle) checks the trunk's blocks, final norm
and attention pool live.
"""

import json
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

import xrembed
from xrembed import errors
from xrembed.models.base import Variant
from xrembed.models.dofa_clip import DEFAULT_BANDS, DOFACLIP
from xrembed.models.registry import register_model
from xrembed.models.weights import WeightsSource, load_module, read_state_dict
from xrembed.testing import synthetic_raster


GOLDENS = Path(__file__).resolve().parents[1] / "goldens" / "dofa_clip"
WEIGHTS = GOLDENS / "open_clip_model.safetensors"
LAYOUT = json.loads((GOLDENS / "real_size_layout.json").read_text())
SMALL = LAYOUT["provenance"]["small_config"]


class SmallDOFACLIP(DOFACLIP):
    """The goldens' configuration: 32 px, patch 7 (4 x 4 tokens, a 4 px remainder), D=32, 2 blocks."""

    model_id = "dofa_clip-golden"
    aliases = ()
    variants = {
        "small": Variant(
            name="small", embed_dim=SMALL["embed_dim"], depth=SMALL["depth"], num_heads=SMALL["num_heads"],
            patch_size=SMALL["patch_size"], image_size=SMALL["img_size"],
            extra=(("mlp_ratio", SMALL["mlp_ratio"]),),
        )
    }
    default_variant = "small"


@register_model
class TinyDOFACLIP(DOFACLIP):
    """Patch 14 like so400m, 44 px tiles (3 x 3 tokens, a 2 px remainder), for fast accessor tests."""

    model_id = "dofa_clip-tiny"
    aliases = ()
    variants = {"tiny": Variant(name="tiny", embed_dim=32, depth=2, num_heads=4, patch_size=14, image_size=44, extra=(("mlp_ratio", 3.7362),))}
    default_variant = "tiny"


RANDOM = {"weights": "random"}


@pytest.fixture(autouse=True)
def _quiet_random_weights():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", errors.RandomWeightsWarning)
        yield


def _golden_module():
    return load_module(SmallDOFACLIP(), WeightsSource(str(WEIGHTS), "goldens"))  # strict, after the clean-up


# -- fidelity -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("case", ["rgb", "s2_9"])
def test_parity_with_the_fork_on_identical_random_weights(case):
    golden = np.load(GOLDENS / "reference_outputs.npz")
    adapter = SmallDOFACLIP()
    module = _golden_module()
    x = torch.from_numpy(golden[f"{case}_x"])
    waves = tuple(float(w) for w in golden[f"{case}_wavelengths"])
    bands = ["B04", "B03", "B02"] if case == "rgb" else ["B04", "B03", "B02", "B05", "B06", "B07", "B08", "B11", "B12"]
    plan = adapter.plan_inputs(bands, bands=bands, wavelengths=waves)
    with torch.no_grad():
        pooled = adapter.forward_pooled(module, x, plan).numpy()
        grid = adapter.forward_grid(module, x, plan).numpy()
    side = SMALL["img_size"] // SMALL["patch_size"]
    expected_grid = golden[f"{case}_tokens"].transpose(0, 2, 1).reshape(x.shape[0], -1, side, side)
    assert grid.shape == (x.shape[0], SMALL["embed_dim"], 4, 4)
    assert np.abs(pooled - golden[f"{case}_pooled"]).max() <= 1e-4
    assert np.abs(grid - expected_grid).max() <= 1e-4


def test_blocks_norm_and_attention_pool_match_timm():
    """timm's own VisionTransformer (class_token=False, global_pool='map') on our weights and patch tokens."""
    from oracles import import_torchvision_cpu_safe

    try:
        import_torchvision_cpu_safe()
        from timm.models.vision_transformer import VisionTransformer
    except Exception as err:  # pragma: no cover - depends on the test environment
        pytest.skip(f"timm unavailable: {err}")
    ours = _golden_module()
    reference = VisionTransformer(
        img_size=SMALL["img_size"], patch_size=SMALL["patch_size"], embed_dim=SMALL["embed_dim"], depth=SMALL["depth"],
        num_heads=SMALL["num_heads"], mlp_ratio=SMALL["mlp_ratio"], class_token=False, global_pool="map", num_classes=0,
    ).eval()
    trunk = {k: v for k, v in ours.state_dict().items() if not k.startswith("patch_embed.")}
    missing, unexpected = reference.load_state_dict(trunk, strict=False)
    assert unexpected == [] and all(k.startswith("patch_embed.") for k in missing)
    x = torch.randn(2, 4, SMALL["img_size"], SMALL["img_size"])
    waves = (0.49, 0.56, 0.665, 0.842)
    with torch.no_grad():
        tokens = reference.norm(reference.blocks(reference._pos_embed(ours.patch_embed(x, waves))))
        pooled = reference.attn_pool(tokens)
        assert (ours.forward_tokens(x, waves) - tokens).abs().max() <= 1e-5
        assert (ours(x, waves) - pooled).abs().max() <= 1e-5


def test_official_layout_loads_strictly_after_the_documented_cleanup(tmp_path):
    state = read_state_dict(str(WEIGHTS))
    assert {"logit_scale", "logit_bias"} <= set(state)
    assert any(k.startswith("text.") for k in state) and any(k.startswith("translators.") for k in state)
    cleaned = SmallDOFACLIP().clean_state_dict(state)
    assert set(cleaned) == set(SmallDOFACLIP().build_module().state_dict())

    from safetensors.torch import save_file

    # a trunk-only file (prefix already stripped) loads as it is
    trunk_only = tmp_path / "trunk.safetensors"
    save_file({k: v.contiguous() for k, v in cleaned.items()}, str(trunk_only))
    load_module(SmallDOFACLIP(), WeightsSource(str(trunk_only), "test"))

    # an unknown visual key is not silently dropped
    extra = dict(state, **{"visual.head.proj.weight": torch.zeros(4, 4, dtype=torch.float16)})
    save_file(extra, str(tmp_path / "extra.safetensors"))
    with pytest.raises(errors.WeightsError, match="unexpected"):
        load_module(SmallDOFACLIP(), WeightsSource(str(tmp_path / "extra.safetensors"), "test"))

    # a missing trunk key is an error
    missing = {k: v for k, v in state.items() if k != "visual.trunk.attn_pool.latent"}
    torch.save(missing, tmp_path / "missing.bin")
    with pytest.raises(errors.WeightsError, match="missing"):
        load_module(SmallDOFACLIP(), WeightsSource(str(tmp_path / "missing.bin"), "test"))

    # the real-size variants refuse the small file and say which variants exist
    with pytest.raises(errors.WeightsError, match="variant"):
        load_module(DOFACLIP("b16"), WeightsSource(str(WEIGHTS), "test"))


@pytest.mark.parametrize("variant", ["so400m", "b16"])
def test_real_size_keys_shapes_and_parameter_count_match_the_fork(variant):
    expected = LAYOUT[variant]
    module = DOFACLIP(variant).build_module()
    shapes = {k: list(v.shape) for k, v in module.state_dict().items()}
    assert shapes == expected["keys"]
    assert sum(p.numel() for p in module.parameters()) == expected["param_count"]
    v = DOFACLIP(variant).variant
    tokens = (v.image_size // v.patch_size) ** 2
    assert shapes["pos_embed"] == [1, tokens, v.embed_dim] and "cls_token" not in shapes
    assert shapes["patch_embed.weight_generator.fc_weight.weight"] == [v.patch_size**2 * v.embed_dim, 128]
    if variant == "so400m":  # reference/models.md: visual 457.5 M, pos_embed (1, 729, 1152), fc_weight (225792, 128)
        assert expected["param_count"] == 457_465_408 and tokens == 729


def test_tile_mode_head_is_the_attention_pool_with_uniform_attention():
    module = _golden_module()
    pool = module.attn_pool
    tokens = torch.randn(2, 16, SMALL["embed_dim"])
    with torch.no_grad():
        values = pool.kv(tokens)[..., SMALL["embed_dim"] :]  # kv = [k, v]
        out = pool.proj(values.mean(dim=1))
        expected = out + pool.mlp(pool.norm(out))
        got = module.pool_mean(tokens.mean(dim=1))
    assert (got - expected).abs().max() <= 1e-5


# -- through the accessor -----------------------------------------------------------------------------


def _normalised(values: np.ndarray) -> torch.Tensor:
    return (torch.clamp(torch.from_numpy(values)[None] / 10000, 0, 1) - 0.5) / 0.5


def test_accessor_reproduces_the_module_on_one_tile():
    """Normalisation + engine: a one-tile raster gives the module's outputs on the documented input."""
    adapter = TinyDOFACLIP()
    module = load_module(adapter, WeightsSource(None, "random"))
    da = synthetic_raster((44, 44), bands=["B02", "B03", "B04", "B08"], seed=3)
    pooled = da.rsembed.embed("dofa_clip-tiny", output="pooled", input_prep="resize", **RANDOM)
    grid = da.isel(y=slice(0, 42), x=slice(0, 42)).rsembed.embed("dofa_clip-tiny", **RANDOM)
    x = _normalised(da.sel(band=list(DEFAULT_BANDS)).values)
    waves = (0.665, 0.56, 0.49)
    with torch.no_grad():
        expected_pooled = module(x, waves)[0].numpy()
        expected_grid = module.forward_tokens(x, waves)[0].T.reshape(32, 3, 3).numpy()
    np.testing.assert_allclose(pooled.values, expected_pooled, atol=1e-5)  # 44 px: resize is the identity
    np.testing.assert_allclose(grid.values, expected_grid, atol=1e-5)  # 42 px + 2 px edge fill, never seen
    assert pooled.attrs["bands"] == list(DEFAULT_BANDS) and grid.attrs["wavelengths_um"] == list(waves)


def test_tile_pooled_is_the_head_on_the_mean_grid_token():
    da = synthetic_raster((70, 84), bands=["B04", "B03", "B02"], seed=5)
    grid = da.rsembed.embed("dofa_clip-tiny", **RANDOM).values
    pooled = da.rsembed.embed("dofa_clip-tiny", output="pooled", input_prep="tile", **RANDOM).values
    module = load_module(TinyDOFACLIP(), WeightsSource(None, "random"))
    with torch.no_grad():
        expected = module.pool_mean(torch.from_numpy(grid.reshape(32, -1).mean(axis=1))[None])[0].numpy()
    np.testing.assert_allclose(pooled, expected, atol=1e-5)


def _check_grid(emb, da, cell_px: float):
    assert emb.rio.crs == da.rio.crs
    t, expected = emb.rio.transform(), da.rio.transform() * __import__("affine").Affine.scale(cell_px)
    assert t.almost_equals(expected, precision=1e-6), (t, expected)
    assert np.isfinite(emb.values).all()


def test_real_sentinel2_scene_b16_tile_and_resize(s2_scene):
    da = xrembed.open_raster(s2_scene).isel(y=slice(0, 300), x=slice(0, 300))
    grid = da.rsembed.embed("dofa_clip", variant="b16", **RANDOM)
    assert grid.shape == (768, 19, 19) and grid.attrs["bands"] == ["B04", "B03", "B02"]
    _check_grid(grid, da, 16)
    resized = da.rsembed.embed("dofa_clip", variant="b16", input_prep="resize", **RANDOM)
    assert resized.shape == (768, 14, 14)
    _check_grid(resized, da, 300 * 16 / 224)
    for prep in ("tile", "resize"):
        pooled = da.rsembed.embed("dofa_clip", variant="b16", output="pooled", input_prep=prep, **RANDOM)
        assert pooled.shape == (768,) and np.isfinite(pooled.values).all()
    nine = da.rsembed.embed("geolangbind", variant="b16", bands=["B04", "B03", "B02", "B05", "B06", "B07", "B08", "B11", "B12"], **RANDOM)
    assert nine.attrs["wavelengths_um"] == [0.665, 0.56, 0.49, 0.705, 0.74, 0.783, 0.842, 1.61, 2.19]


def test_real_sentinel2_scene_so400m_384_px_tiles_of_27_tokens(s2_scene):
    """384 px tiles with patch 14: 27 tokens per tile side, the last 6 px of each tile unseen."""
    da = xrembed.open_raster(s2_scene).isel(y=slice(0, 300), x=slice(0, 300)).chunk({"y": 150, "x": 150})
    emb = da.rsembed.embed("dofa_clip", **RANDOM)  # so400m by default
    assert emb.shape == (1152, 22, 22)  # ceil(300 / 14)
    _check_grid(emb.compute(), da, 14)


# -- input contract ---------------------------------------------------------------------------------


def test_default_bands_are_picked_by_name_in_model_order():
    bands = ["B01", "B02", "B03", "B04", "B08"]
    da = synthetic_raster((28, 28), bands=bands, seed=2)
    a = da.rsembed.embed("dofa_clip-tiny", **RANDOM).values
    b = da.sel(band=["B04", "B03", "B02"]).rsembed.embed("dofa_clip-tiny", **RANDOM).values
    np.testing.assert_array_equal(a, b)
    ee = da.assign_coords(band=["B1", "B2", "B3", "B4", "B8"])  # Earth Engine spelling
    np.testing.assert_array_equal(ee.rsembed.embed("dofa_clip-tiny", **RANDOM).values, b)


def test_missing_default_band_names_the_fix():
    da = synthetic_raster((28, 28), bands=["B02", "B03", "B08"])
    with pytest.raises(errors.BandMismatchError, match="bands=") as err:
        da.rsembed.embed("dofa_clip-tiny", **RANDOM)
    assert "B04" in str(err.value)


def test_sar_is_refused():
    da = synthetic_raster((28, 28), bands=["VV", "VH"])
    with pytest.raises(errors.OptionError, match="dofa"):
        da.rsembed.embed("dofa_clip-tiny", modality="s1", **RANDOM)
    with pytest.raises(errors.BandMismatchError, match="optical"):
        da.rsembed.embed("dofa_clip-tiny", bands=["VV", "VH"], **RANDOM)


def test_wavelengths_for_unnamed_bands_and_their_length():
    named = synthetic_raster((28, 28), bands=["B04", "B03", "B02"])
    unnamed = named.drop_vars("band")
    emb = unnamed.rsembed.embed("dofa_clip-tiny", wavelengths=[0.665, 0.56, 0.49], **RANDOM)
    np.testing.assert_allclose(emb.values, named.rsembed.embed("dofa_clip-tiny", **RANDOM).values, atol=1e-6)
    with pytest.raises(errors.WavelengthError, match="one wavelength"):
        named.rsembed.embed("dofa_clip-tiny", wavelengths=[0.665, 0.56], **RANDOM)
    with pytest.raises(errors.BandMismatchError, match="bands="):
        unnamed.rsembed.embed("dofa_clip-tiny", **RANDOM)
    with pytest.raises(errors.WavelengthError, match="wavelengths="):
        synthetic_raster((28, 28), bands=["PAN", "B03"]).rsembed.embed("dofa_clip-tiny", bands=["PAN", "B03"], **RANDOM)


def test_normalised_reflectance_is_rejected_at_compute_time():
    da = synthetic_raster((28, 28), bands=["B04", "B03", "B02"]) / 10000.0
    emb = da.chunk().rsembed.embed("dofa_clip-tiny", **RANDOM)  # metadata is fine: no pixels read yet
    with pytest.raises(errors.InputRangeError, match="10000"):
        emb.compute()


def test_official_weights_offline_name_the_file():
    da = synthetic_raster((28, 28), bands=["B04", "B03", "B02"])
    with pytest.raises(errors.WeightsError, match="open_clip_model.safetensors"):
        da.rsembed.embed("dofa_clip")


def test_describe_model_gives_the_contract():
    info = xrembed.describe_model("dofa_clip")
    assert info["variant"] == "so400m" and info["variants"] == ["b16", "so400m"]
    assert info["bands"] == ["B04", "B03", "B02"] and info["wavelengths_um"] == [0.665, 0.56, 0.49]
    assert (info["image_size"], info["patch_size"], info["embed_dim"], info["tokens_per_side"]) == (384, 14, 1152, 27)
    assert info["ignored_pixels_per_tile"] == 6 and info["patch_conv_padding"] == 0
    assert info["normalisation"]["mean"] == 0.5 and info["normalisation"]["std"] == 0.5
    assert info["weights"] == "hf://earthflow/GeoLB-ViT-14-SigLIP-so400m-384-EO/open_clip_model.safetensors"
    assert set(info["outputs"]) == {"grid", "pooled"}
    assert "MIT" in info["licence"] and "Apache-2.0" in info["licence"]
    b16 = xrembed.describe_model("geolangbind", variant="b16")
    assert (b16["image_size"], b16["patch_size"], b16["embed_dim"]) == (224, 16, 768)


def test_goldens_stand_in_text_keys_are_refused_strictly_when_text_is_asked():
    """The goldens file holds stand-in text keys (not a real tower): the strict text load names them."""
    import xrembed.text.encode as text_encode

    state = read_state_dict(str(WEIGHTS))
    text = DOFACLIP().clean_text_state_dict(state)
    assert text["logit_scale"].shape == () and "token_embedding.weight" in text  # [1] scalars taken as []
    with pytest.raises(errors.WeightsError, match=r"text tower .* does not match .*missing keys"):
        text_encode.load_text_tower(SmallDOFACLIP(), text_encode.text_config(DOFACLIP("b16")), WeightsSource(str(WEIGHTS), "t"))
