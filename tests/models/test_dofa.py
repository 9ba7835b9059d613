"""DOFA fidelity (invariant 3): parity with torchgeo's DOFA on identical random weights, strict loading
of the official key layout, band naming and wavelength rules, and the input value contract."""

import numpy as np
import pytest
import torch

import xrembed
from xrembed import errors
from xrembed.models.dofa import DEFAULT_BANDS, DOFA
from xrembed.models.weights import WeightsSource, load_module
from xrembed.testing import synthetic_raster, write_official_checkpoint

from oracles import torchgeo_dofa

S2_9_WAVELENGTHS = [0.665, 0.56, 0.49, 0.705, 0.74, 0.783, 0.842, 1.61, 2.19]


@pytest.mark.parametrize("variant", ["base", "large"])
def test_parity_with_torchgeo(variant, tmp_path):
    dofa = torchgeo_dofa()
    torch.manual_seed(1)
    reference = getattr(dofa, f"dofa_{variant}_patch16_224")(num_classes=0).eval()
    with torch.no_grad():  # the reference leaves pos_embed at zeros; give every weight a value
        for param in reference.parameters():
            param.add_(torch.randn_like(param) * 0.02)
    path = tmp_path / "torchgeo_layout.pth"
    torch.save(reference.state_dict(), path)

    adapter = DOFA(variant)
    ours = load_module(adapter, WeightsSource(str(path), "test"))  # strict, after the documented clean-up
    x = torch.randn(2, 9, 224, 224)
    with torch.no_grad():
        expected_pooled = reference.forward_features(x, S2_9_WAVELENGTHS)
        # the reference's patch tokens: run its own layers up to the last block
        tokens, _ = reference.patch_embed(x, torch.tensor(S2_9_WAVELENGTHS))
        tokens = tokens + reference.pos_embed[:, 1:, :]
        cls = (reference.cls_token + reference.pos_embed[:, :1, :]).expand(2, -1, -1)
        seq = torch.cat([cls, tokens], dim=1)
        for block in reference.blocks:
            seq = block(seq)
        expected_grid = seq[:, 1:, :].transpose(1, 2).reshape(2, -1, 14, 14)

        plan = adapter.plan_inputs(list(DEFAULT_BANDS))
        pooled = adapter.forward_pooled(ours, x, plan)
        grid = adapter.forward_grid(ours, x, plan)
    assert plan.option("wavelengths") == tuple(S2_9_WAVELENGTHS)
    assert (pooled - expected_pooled).abs().max().item() <= 1e-4
    assert (grid - expected_grid).abs().max().item() <= 1e-4
    assert grid.shape == (2, adapter.variant.embed_dim, 14, 14)


def test_accessor_matches_the_reference_on_one_tile(tmp_path):
    """Through the accessor (normalisation + engine), a 224 px raster gives the reference's outputs."""
    dofa = torchgeo_dofa()
    torch.manual_seed(2)
    reference = dofa.dofa_base_patch16_224(num_classes=0).eval()
    path = tmp_path / "w.pth"
    torch.save(reference.state_dict(), path)
    da = synthetic_raster((224, 224), seed=4)
    grid = da.rsembed.embed("dofa", weights=str(path))
    pooled = da.rsembed.embed("dofa", weights=str(path), output="pooled", input_prep="tile")
    pooled_resize = da.rsembed.embed("dofa", weights=str(path), output="pooled", input_prep="resize")

    mean = torch.tensor([114.1099739, 114.81779093, 126.63977424, 84.33539309, 97.84789168,
                         103.94461911, 101.435633, 72.32804172, 56.66528851]).view(1, -1, 1, 1)
    std = torch.tensor([77.84352553, 69.96844919, 67.42465279, 64.57022983, 61.72545487,
                        61.34187099, 60.29744676, 47.88519516, 42.55886798]).view(1, -1, 1, 1)
    x = (torch.clamp(torch.from_numpy(da.values)[None] / 10000, 0, 1) * 255 - mean) / std
    with torch.no_grad():
        expected = reference.forward_features(x, S2_9_WAVELENGTHS)[0].numpy()
    np.testing.assert_allclose(pooled.values, expected, atol=1e-4)
    np.testing.assert_allclose(pooled_resize.values, expected, atol=1e-4)  # 224 px: resize is the identity
    assert grid.shape == (768, 14, 14)


def test_official_layout_loads_strictly_and_reproduces(tmp_path):
    path = tmp_path / "DOFA_ViT_base_e100.pth"
    written = write_official_checkpoint(path, "dofa", "base", seed=3)
    keys = set(torch.load(path, weights_only=True))
    assert {"mask_token", "norm.weight", "projector.weight"} <= keys and "fc_norm.weight" not in keys
    loaded = load_module(DOFA("base"), WeightsSource(str(path), "test"))
    # the absent fc_norm stays at its default (weight 1, bias 0), as with the official loader
    assert torch.equal(loaded.fc_norm.weight, torch.ones(768)) and torch.equal(loaded.fc_norm.bias, torch.zeros(768))
    x = torch.randn(1, 9, 224, 224)
    with torch.no_grad():
        np.testing.assert_allclose(loaded(x, tuple(S2_9_WAVELENGTHS)), written(x, tuple(S2_9_WAVELENGTHS)), atol=1e-6)


@pytest.mark.parametrize("variant", ["base", "large"])
def test_real_size_keys_shapes_and_parameter_count_match_the_reference(variant):
    dofa = torchgeo_dofa()
    reference = getattr(dofa, f"dofa_{variant}_patch16_224")(num_classes=0)
    ours = DOFA(variant).build_module()
    shapes = lambda m: {k: tuple(v.shape) for k, v in m.state_dict().items()}  # noqa: E731
    assert shapes(ours) == shapes(reference)
    count = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
    assert count(ours) == count(reference)
    dim = {"base": 768, "large": 1024}[variant]
    assert shapes(ours)["patch_embed.weight_generator.fc_weight.weight"] == (16 * 16 * dim, 128)


def test_truncated_checkpoint_is_a_clear_error(tmp_path):
    path = tmp_path / "DOFA_ViT_base_e100.pth"
    write_official_checkpoint(path, "dofa", "base")
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 3])
    da = synthetic_raster((32, 32))
    emb = da.chunk().rsembed.embed("dofa", weights=str(path))  # metadata is fine: raised at compute
    with pytest.raises(errors.WeightsError, match="truncated"):
        emb.compute()


def test_wrong_variant_checkpoint_names_the_fix(tmp_path):
    path = tmp_path / "base.pth"
    write_official_checkpoint(path, "dofa", "base")
    with pytest.raises(errors.WeightsError, match="variant"):
        load_module(DOFA("large"), WeightsSource(str(path), "test"))


def test_unexpected_key_is_refused(tmp_path):
    path = tmp_path / "extra.pth"
    write_official_checkpoint(path, "dofa-tiny")
    state = torch.load(path, weights_only=True)
    state["blocks.7.attn.qkv.weight"] = torch.zeros(3)
    torch.save(state, path)
    with pytest.raises(errors.WeightsError, match="unexpected"):
        load_module(xrembed.models.registry.get_adapter("dofa-tiny"), WeightsSource(str(path), "test"))


def test_wrapped_checkpoint_is_unwrapped(tmp_path):
    path = tmp_path / "wrapped.pth"
    write_official_checkpoint(path, "dofa-tiny")
    state = torch.load(path, weights_only=True)
    torch.save({"model": {f"module.{k}": v for k, v in state.items()}, "epoch": 3}, path)
    load_module(xrembed.models.registry.get_adapter("dofa-tiny"), WeightsSource(str(path), "test"))


def test_both_sentinel2_spellings_give_identical_results(tiny):
    da = synthetic_raster((32, 32))
    ee_names = da.assign_coords(band=["B4", "B3", "B2", "B5", "B6", "B7", "B8", "B11", "B12"])
    a = da.rsembed.embed("dofa-tiny", **tiny).values
    b = ee_names.rsembed.embed("dofa-tiny", **tiny).values
    np.testing.assert_array_equal(a, b)


def test_bands_are_picked_by_name_in_model_order(tiny):
    bands = ["B01", "B12", "B02", "B8A", "B03", "B04", "B11", "B05", "B09", "B06", "B07", "B08"]
    da = synthetic_raster((32, 32), bands=bands, seed=9)
    ordered = da.sel(band=list(DEFAULT_BANDS))
    expected = ordered.rsembed.embed("dofa-tiny", **tiny).values
    np.testing.assert_array_equal(da.rsembed.embed("dofa-tiny", **tiny).values, expected)
    from xrembed.testing import to_xee_dataset

    ds = to_xee_dataset(da)
    np.testing.assert_allclose(ds.rsembed.embed("dofa-tiny", **tiny).values[0], expected, atol=1e-6)
    emb = ds.rsembed.embed("dofa-tiny", **tiny)
    assert emb.attrs["bands"] == list(DEFAULT_BANDS)


def test_wavelengths_inferred_for_every_sentinel2_band_and_s1():
    adapter = DOFA()
    names = ["B1", "B2", "B3", "B4", "B5", "B6", "B7", "B8", "B8A", "B9", "B10", "B11", "B12"]
    plan = adapter.plan_inputs(names, bands=names)
    expected = [0.443, 0.49, 0.56, 0.665, 0.705, 0.74, 0.783, 0.842, 0.865, 0.945, 1.375, 1.61, 2.19]
    assert list(plan.option("wavelengths")) == expected
    s1 = adapter.plan_inputs(["VV", "VH"])
    assert s1.option("wavelengths") == (5.405, 5.405) and s1.option("scale") == "db"


def test_custom_wavelengths_for_unnamed_bands(tiny):
    da = synthetic_raster((32, 32), bands=["B04", "B03", "B02"]).drop_vars("band")
    emb = da.rsembed.embed("dofa-tiny", wavelengths=[0.665, 0.56, 0.49], **tiny)
    named = synthetic_raster((32, 32), bands=["B04", "B03", "B02"]).rsembed.embed("dofa-tiny", bands=["B04", "B03", "B02"], **tiny)
    np.testing.assert_allclose(emb.values, named.values, atol=1e-6)
    assert emb.attrs["wavelengths_um"] == [0.665, 0.56, 0.49]


def test_wavelength_list_of_wrong_length(tiny):
    da = synthetic_raster((32, 32), bands=["B04", "B03", "B02"])
    with pytest.raises(errors.WavelengthError, match="one wavelength"):
        da.rsembed.embed("dofa-tiny", wavelengths=[0.665, 0.56], **tiny)


def test_unknown_band_without_wavelengths(tiny):
    da = synthetic_raster((32, 32), bands=["PAN", "B03"])
    with pytest.raises(errors.WavelengthError, match="wavelengths="):
        da.rsembed.embed("dofa-tiny", bands=["PAN", "B03"], **tiny)


def test_normalised_reflectance_is_rejected(tiny):
    da = synthetic_raster((32, 32)) / 10000.0
    emb = da.chunk().rsembed.embed("dofa-tiny", **tiny)
    with pytest.raises(errors.InputRangeError, match="10000"):
        emb.compute()
    with pytest.raises(errors.InputRangeError):
        da.rsembed.embed("dofa-tiny", **tiny)  # eager: raised at once


def test_sentinel1_in_db_and_linear_rejected(tiny):
    rng = np.random.default_rng(0)
    db = synthetic_raster((32, 32), bands=["VV", "VH"]).copy(data=rng.uniform(-25, -5, (2, 32, 32)).astype("f4"))
    emb = db.rsembed.embed("dofa-tiny", **tiny)
    assert emb.attrs["wavelengths_um"] == [5.405, 5.405] and np.isfinite(emb.values).all()
    with pytest.raises(errors.InputRangeError, match="dB"):
        (10 ** (db / 10)).rsembed.embed("dofa-tiny", **tiny)


def test_describe_model_gives_the_contract():
    info = xrembed.describe_model("dofa", variant="large")
    assert info["bands"] == list(DEFAULT_BANDS)
    assert info["wavelengths_um"] == S2_9_WAVELENGTHS
    assert (info["image_size"], info["patch_size"], info["embed_dim"]) == (224, 16, 1024)
    assert info["weights"] == "hf://earthflow/DOFA/DOFA_ViT_large_e100.pth"
    assert set(info["outputs"]) == {"grid", "pooled"} and "normalisation" in info


def test_describe_model_names_default_sensors():
    info = xrembed.describe_model("dofa")
    assert info["default_sensors"]["s2"]["collection"] == "COPERNICUS/S2_SR_HARMONIZED"
    assert info["default_sensors"]["s2"]["bands"] == ("B4", "B3", "B2", "B5", "B6", "B7", "B8", "B11", "B12")
    assert info["default_sensors"]["s1"]["collection"] == "COPERNICUS/S1_GRD"  # DOFA reads dB
    terrafm = xrembed.describe_model("terrafm")["default_sensors"]
    assert set(terrafm) == {"s2", "s2_l1c", "s1"} and terrafm["s1"]["collection"] == "COPERNICUS/S1_GRD_FLOAT"
    for model in xrembed.list_models():
        assert xrembed.describe_model(model)["default_sensors"], model
