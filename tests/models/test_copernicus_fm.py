"""Copernicus-FM fidelity (invariant 3), input contract and metadata (invariant 4), and the real scenes.

The reference is torchgeo 0.8.1's ``models/copernicusfm.py`` (MIT), built with the authors' LayerNorm eps
(1e-6, their ``vit_base_patch16``; torchgeo's ``copernicusfm_base`` uses the torch default 1e-5, checked
below). Weights go through the release layout: flat, without ``fc_norm.*`` / ``head.*``.
"""

from __future__ import annotations

import dataclasses
import math
import warnings
from functools import partial

import numpy as np
import pytest
import torch
from affine import Affine
from pyproj import Transformer
from torch import nn

import xrembed
from xrembed import errors
from xrembed.models.base import InputContext, Variant
from xrembed.models.copernicus_fm import (
    BAND_TABLE, S2_BANDS, S2_L2A_BANDS, CopernicusFM, CopernicusMetadataWarning,
)
from xrembed.models.registry import register_model
from xrembed.models.weights import WeightsSource, load_module
from xrembed.testing import synthetic_raster, to_xee_dataset

from shared_paths import SHARED_DATA
from oracles import torchgeo_copernicusfm

TOL = 1e-4
S1_SCENE = SHARED_DATA / "S1A_IW_GRDH_1SDV_20180716T004042_FD5B" / "measurement"
UNKNOWN = (float("nan"),) * 4


@register_model
class TinyCopernicusFM(CopernicusFM):
    """Patch 8, 32 px tiles (4 x 4 tokens), D=64, 2 blocks, 4 heads (test only)."""

    model_id = "copernicus_fm-tiny"
    aliases = ()
    variants = {"tiny": Variant(name="tiny", embed_dim=64, depth=2, num_heads=4, patch_size=8, image_size=32)}
    default_variant = "tiny"


def reference_model(dim=64, depth=2, heads=4, patch=8, size=32, seed=0, eps=1e-6):
    """torchgeo's CopernicusFM with non-trivial random values everywhere: its own random init, plus noise on
    every tensor of up to 1M values (norms, biases, tokens; all of the tiny model), fc_norm excepted."""
    cfm = torchgeo_copernicusfm()
    torch.manual_seed(seed)
    model = cfm.CopernicusFM(img_size=size, patch_size=patch, embed_dim=dim, depth=depth, num_heads=heads,
                             norm_layer=partial(nn.LayerNorm, eps=eps)).eval()
    with torch.no_grad():
        for name, param in model.named_parameters():
            if param.numel() <= 1_000_000 and not name.startswith("fc_norm"):  # fc_norm: not in the release
                param.add_(torch.randn_like(param) * 0.02)
        model.pos_embed.add_(torch.randn_like(model.pos_embed) * 0.02)
    return model


def release_state(model) -> dict:
    """``model``'s weights as the release holds them: flat, no ``fc_norm.*`` / ``head.*``."""
    return {k: v for k, v in model.state_dict().items() if not k.startswith(("fc_norm.", "head."))}


def reference_outputs(model, x, bands, metadata):
    """``(grid tokens (B, N, D), pooled (B, D))`` of the reference for ``bands`` and metadata ``(4,)``."""
    captured = {}
    hook = model.blocks[-1].register_forward_hook(lambda m, i, out: captured.__setitem__("x", out))
    meta = torch.tensor([list(metadata)] * x.shape[0], dtype=torch.float32)
    try:
        with torch.no_grad():
            pooled = model(x, meta, wavelengths=[BAND_TABLE[b][0] for b in bands],
                           bandwidths=[BAND_TABLE[b][1] for b in bands])
    finally:
        hook.remove()
    return captured["x"][:, 1:], pooled


def with_metadata(plan, metadata):
    """``plan`` with its metadata options set to ``metadata`` (NaN: unknown)."""
    values = dict(zip(("lon", "lat", "time_days", "patch_area_km2"), metadata))
    options = tuple((k, None if k in values and math.isnan(values[k]) else values.get(k, v)) for k, v in plan.options)
    return dataclasses.replace(plan, options=options)


def as_grid(tokens: torch.Tensor, side: int) -> torch.Tensor:
    return tokens.transpose(1, 2).reshape(tokens.shape[0], -1, side, side)


def standardised(pixels: np.ndarray, bands) -> torch.Tensor:
    mean = np.array([BAND_TABLE[b][2] for b in bands], "f4")[:, None, None]
    std = np.array([BAND_TABLE[b][3] for b in bands], "f4")[:, None, None]
    return torch.from_numpy((pixels - mean) / std)[None]


@pytest.fixture(scope="module")
def tiny_reference():
    return reference_model()


@pytest.fixture(scope="module")
def tiny_weights(tiny_reference, tmp_path_factory):
    """The release layout as the authors ship it: ``{'model': ...}``, with the pre-training's ``norm.*``."""
    state = release_state(tiny_reference)
    state["norm.weight"], state["norm.bias"] = torch.ones(64) * 2, torch.ones(64)
    path = tmp_path_factory.mktemp("cfm") / "CopernicusFM_tiny.pth"
    torch.save({"model": state}, path)
    return str(path)


# -- fidelity ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("metadata", [UNKNOWN, (-13.4, 24.9, 18311.0, 0.0064), (120.0, -33.0, float("nan"), 2.56)],
                         ids=["unknown", "known", "no-time"])
@pytest.mark.parametrize("bands", [S2_L2A_BANDS, S2_BANDS, ("VV", "VH"), ("B04", "B03", "B02")],
                         ids=["l2a", "l1c", "s1", "rgb"])
def test_parity_with_torchgeo_on_the_release_layout(bands, metadata, tiny_reference, tiny_weights):
    adapter = TinyCopernicusFM()
    ours = load_module(adapter, WeightsSource(tiny_weights, "test"))  # strict, after the documented clean-up
    torch.manual_seed(1)
    x = torch.randn(2, len(bands), 32, 32)
    tokens, pooled_ref = reference_outputs(tiny_reference, x, bands, metadata)
    plan = with_metadata(adapter.plan_inputs(list(bands), bands=list(bands)), metadata)
    with torch.no_grad():
        grid = adapter.forward_grid(ours, x, plan)
        pooled = adapter.forward_pooled(ours, x, plan)
        head = adapter.pool_tokens(ours, grid.mean(dim=(2, 3)), plan)
    assert grid.shape == (2, 64, 4, 4) and pooled.shape == (2, 64)
    grid_diff = (grid - as_grid(tokens, 4)).abs().max().item()
    pooled_diff = (pooled - pooled_ref).abs().max().item()
    print(f"copernicus_fm {len(bands)} bands, metadata {metadata}: grid {grid_diff:.2e}, pooled {pooled_diff:.2e}")
    assert grid_diff <= TOL and pooled_diff <= TOL
    assert (head - pooled_ref).abs().max().item() <= TOL


def test_metadata_reaches_the_tokens(tiny_reference):
    """Each metadata entry changes the reference's output; a wrong lon/lat/date/area would be visible."""
    torch.manual_seed(2)
    x = torch.randn(1, 3, 32, 32)
    bands = ("B04", "B03", "B02")
    known = (-13.4, 24.9, 18311.0, 0.0064)
    base = reference_outputs(tiny_reference, x, bands, known)[1]
    for i, other in enumerate((-13.0, 25.2, 18312.0, 0.01)):
        changed = list(known)
        changed[i] = other
        assert (reference_outputs(tiny_reference, x, bands, changed)[1] - base).abs().max() > 1e-4, i


def test_parity_at_real_size_base():
    """Copernicus-FM base (D=768, 12 blocks, 224 px, patch 16) against torchgeo on one L2A image."""
    reference = reference_model(768, 12, 12, 16, 224, seed=3)
    adapter = CopernicusFM()
    with torch.device("meta"):  # no random init of 139M weights that the load replaces
        ours = adapter.build_module().eval()
    ours.load_state_dict(adapter.clean_state_dict(release_state(reference)), strict=True, assign=True)
    torch.manual_seed(4)
    x = torch.randn(1, 12, 224, 224)
    metadata = (-13.4, 24.9, 18311.0, 0.0256)
    tokens, pooled = reference_outputs(reference, x, S2_L2A_BANDS, metadata)
    wavelengths = [BAND_TABLE[b][0] for b in S2_L2A_BANDS]
    bandwidths = [BAND_TABLE[b][1] for b in S2_L2A_BANDS]
    with torch.no_grad():
        grid = ours.grid(x, wavelengths, bandwidths, metadata)
        mine = ours(x, wavelengths, bandwidths, metadata)
    assert grid.shape == (1, 768, 14, 14)
    grid_diff, pooled_diff = (grid - as_grid(tokens, 14)).abs().max().item(), (mine - pooled).abs().max().item()
    print(f"copernicus_fm base: max |grid diff| {grid_diff:.2e}, max |pooled diff| {pooled_diff:.2e}")
    assert grid_diff <= TOL and pooled_diff <= TOL


def test_layer_norm_eps_is_the_authors_not_torchgeos_default():
    """The authors' vit_base_patch16 uses eps 1e-6 (their pre-training too); torchgeo's copernicusfm_base 1e-5."""
    cfm = torchgeo_copernicusfm()
    with torch.device("meta"):
        reference = cfm.copernicusfm_base()
        ours = CopernicusFM().build_module()
    assert reference.blocks[0].norm1.eps == 1e-5
    assert ours.blocks[0].norm1.eps == 1e-6 and ours.fc_norm.eps == 1e-6


def test_real_size_keys_shapes_and_parameter_count_match_the_reference():
    cfm = torchgeo_copernicusfm()
    with torch.device("meta"):
        reference = cfm.copernicusfm_base()
        ours = CopernicusFM().build_module()
    expected = {k: tuple(t.shape) for k, t in reference.state_dict().items()}
    assert {k: tuple(t.shape) for k, t in ours.state_dict().items()} == expected
    count = sum(p.numel() for p in ours.parameters())
    assert count == sum(p.numel() for p in reference.parameters()) == 139_452_544
    assert expected["patch_embed_spectral.weight_generator.fc_weight.weight"] == (16 * 16 * 768, 128)
    assert expected["patch_embed_variable.language_proj.weight"] == (128, 2048)
    assert expected["pos_embed"] == (1, 1 + 14 * 14, 768) and "blocks.11.mlp.fc2.weight" in expected


def test_write_official_checkpoint_writes_the_release_layout(tmp_path):
    from xrembed.testing import write_official_checkpoint

    path = tmp_path / "CopernicusFM_tiny.pth"
    written = write_official_checkpoint(path, "copernicus_fm-tiny", seed=2)
    state = torch.load(path, weights_only=True)
    assert not any(k.startswith(("fc_norm.", "head.", "norm.")) for k in state)  # flat, as the release
    assert "patch_embed_variable.language_proj.weight" in state and "time_token" in state
    loaded = load_module(TinyCopernicusFM(), WeightsSource(str(path), "t"))
    for key, tensor in written.state_dict().items():
        assert torch.equal(loaded.state_dict()[key], tensor), key
    assert torch.equal(loaded.fc_norm.weight, torch.ones(64))  # at its default, as the official loader leaves it


def test_release_layout_loads_strictly_and_refuses_mismatches(tiny_reference, tiny_weights, tmp_path):
    loaded = load_module(TinyCopernicusFM(), WeightsSource(tiny_weights, "t"))
    for key, tensor in release_state(tiny_reference).items():
        assert torch.equal(loaded.state_dict()[key], tensor), key
    assert torch.equal(loaded.fc_norm.weight, torch.ones(64)) and torch.equal(loaded.fc_norm.bias, torch.zeros(64))
    flat = tmp_path / "flat.pth"  # torchgeo's own state_dict (with fc_norm) loads too
    torch.save(tiny_reference.state_dict(), flat)
    load_module(TinyCopernicusFM(), WeightsSource(str(flat), "t"))
    state = release_state(tiny_reference)
    missing = {k: v for k, v in state.items() if k != "time_token"}
    extra = dict(state, decoder_embed=torch.zeros(4, 4))
    for name, bad, match in (("missing", missing, "missing.*time_token"), ("extra", extra, "unexpected.*decoder")):
        path = tmp_path / f"{name}.pth"
        torch.save(bad, path)
        with pytest.raises(errors.WeightsError, match=match):
            load_module(TinyCopernicusFM(), WeightsSource(str(path), "t"))
    with pytest.raises(errors.WeightsError, match="wrong shape|missing"):
        load_module(CopernicusFM(), WeightsSource(tiny_weights, "t"))


# -- metadata ---------------------------------------------------------------------------------------------


def test_metadata_comes_from_the_raster_centre_date_and_pixel_size():
    da = synthetic_raster((32, 48), bands=list(S2_L2A_BANDS), times=1, resolution=20.0)
    from xrembed.embedding import _prepare
    from xrembed.options import EmbedOptions

    plan = _prepare(da, "copernicus_fm", EmbedOptions(weights="random"), resolve=False).plan
    left, bottom, right, top = da.rio.bounds()
    lon, lat = Transformer.from_crs("EPSG:32629", "EPSG:4326", always_xy=True).transform((left + right) / 2,
                                                                                       (bottom + top) / 2)
    assert plan.option("lon") == pytest.approx(lon, abs=1e-9) and plan.option("lat") == pytest.approx(lat, abs=1e-9)
    assert plan.option("time_days") == 18276  # 2020-01-15 - 1970-01-01
    assert plan.option("patch_area_km2") == pytest.approx((16 * 20 / 1000) ** 2)
    assert plan.bands == S2_L2A_BANDS and plan.option("modality") == "s2"


def test_unknown_metadata_uses_the_learned_tokens():
    adapter = CopernicusFM()
    plan = adapter.plan_inputs(list(S2_L2A_BANDS))  # no context (no raster): everything unknown
    assert [plan.option(k) for k in ("lon", "lat", "time_days", "patch_area_km2")] == [None] * 4
    context = InputContext(resolution_m=10.0, center_lonlat=(5.0, 50.0), times=None)
    plan = adapter.plan_inputs(list(S2_L2A_BANDS), context=context)
    assert plan.option("time_days") is None and plan.option("lon") == 5.0
    with pytest.warns(CopernicusMetadataWarning, match="one acquisition date"):
        several = adapter.plan_inputs(list(S2_L2A_BANDS), context=InputContext(
            resolution_m=10.0, center_lonlat=(5.0, 50.0), times=("2020-01-01", "2020-02-01")))
    assert several.option("time_days") is None
    same = adapter.plan_inputs(list(S2_L2A_BANDS), context=InputContext(
        resolution_m=10.0, center_lonlat=(5.0, 50.0), times=("2020-01-02", "2020-01-02")))
    assert same.option("time_days") == 18263
    with pytest.warns(CopernicusMetadataWarning, match="area token"):
        fine = adapter.plan_inputs(list(S2_L2A_BANDS), context=InputContext(resolution_m=0.5, center_lonlat=(5.0, 50.0)))
    assert fine.option("patch_area_km2") is None


def test_accessor_reproduces_the_reference_with_the_rasters_metadata(tiny_reference, tiny_weights):
    """One 32 px tile through the accessor equals the reference fed the pre-training normalisation and the
    raster's (lon, lat, days, area); without a time coordinate, the reference with an unknown date."""
    da = synthetic_raster((32, 32), bands=list(S2_L2A_BANDS), times=1, seed=5)
    left, bottom, right, top = da.rio.bounds()
    lon, lat = Transformer.from_crs("EPSG:32629", "EPSG:4326", always_xy=True).transform((left + right) / 2,
                                                                                       (bottom + top) / 2)
    x = standardised(da.values[0], S2_L2A_BANDS)
    dated = (lon, lat, 18276.0, (8 * 10 / 1000) ** 2)
    for raster, metadata in ((da, dated), (da.isel(time=0, drop=True), (lon, lat, float("nan"), dated[3]))):
        tokens, pooled = reference_outputs(tiny_reference, x, S2_L2A_BANDS, metadata)
        grid = raster.rsembed.embed("copernicus_fm-tiny", weights=tiny_weights)
        np.testing.assert_allclose(grid.values.reshape(64, 4, 4), as_grid(tokens, 4)[0].numpy(), atol=TOL)
        for prep in ("tile", "resize"):  # one tile: fc_norm of the mean token is the reference's output
            out = raster.rsembed.embed("copernicus_fm-tiny", output="pooled", input_prep=prep, weights=tiny_weights)
            np.testing.assert_allclose(out.values.reshape(64), pooled[0].numpy(), atol=TOL, err_msg=prep)
    assert "plan_time_days" not in grid.attrs  # the undated raster: the learned time token
    assert da.rsembed.embed("copernicus_fm-tiny", weights=tiny_weights).attrs["plan_time_days"] == 18276


def test_a_time_series_keeps_its_time_dimension_with_a_warning(tiny_weights):
    da = synthetic_raster((32, 32), bands=list(S2_L2A_BANDS), times=2, seed=6)
    with pytest.warns(CopernicusMetadataWarning, match="2 dates"):
        emb = da.rsembed.embed("copernicus_fm-tiny", weights=tiny_weights)
    assert emb.dims == ("time", "embedding", "y", "x") and emb.sizes["time"] == 2
    with warnings.catch_warnings():
        warnings.simplefilter("error", CopernicusMetadataWarning)
        first = da.isel(time=[0]).rsembed.embed("copernicus_fm-tiny", weights=tiny_weights)  # its own date
    assert first.attrs["plan_time_days"] == 18276
    assert not np.allclose(first.values[0], emb.values[0], atol=1e-5)  # the date changes the tokens


# -- contract ---------------------------------------------------------------------------------------------


def test_describe_model_gives_the_contract():
    info = xrembed.describe_model("copernicus_fm")
    assert (info["model"], info["variant"], info["variants"]) == ("copernicus_fm", "base", ["base"])
    assert info["bands"] == list(S2_BANDS) and len(info["bands"]) == 13
    assert (info["image_size"], info["patch_size"], info["embed_dim"]) == (224, 16, 768)
    s2 = info["modalities"]["s2"]
    assert s2["wavelengths_nm"][:4] == [440.0, 490.0, 560.0, 665.0] and s2["bandwidths_nm"][-1] == 180.0
    assert info["wavelengths_um"][10] == pytest.approx(1.37)  # the authors' B10, not xrembed's 1.375
    assert info["modalities"]["s1"]["wavelengths_nm"] == [5e7, 5e7] and "dB" in info["modalities"]["s1"]["values"]
    assert info["normalisation"]["mean"]["B04"] == 1373.1 and info["normalisation"]["std"]["VH"] == 5.91
    assert "da95635d" in info["band_table_source"] and "engine_pretrain.py" in info["band_table_source"]
    assert info["weights"] == ("hf://torchgeo/copernicus-fm/CopernicusFM_ViT_base_varlang-085350e4.pth"
                               "@f395812cc990ba25a451dbb9c9e6d95c8482947e")
    assert "CC-BY-4.0" in info["licence"] and "Apache-2.0" in info["licence"]
    assert set(info["outputs"]) == {"grid", "pooled"} and "raster centre" in info["metadata"]["location"]
    assert info["default_sensors"]["s2"]["collection"] == "COPERNICUS/S2_HARMONIZED"  # pre-trained on L1C
    assert info["default_sensors"]["s2"]["bands"][10] == "B10"
    assert info["default_sensors"]["s1"]["collection"] == "COPERNICUS/S1_GRD"  # dB
    assert xrembed.describe_model("copernicusfm")["model"] == "copernicus_fm"


def test_bands_are_picked_by_name():
    adapter = CopernicusFM()
    shuffled = ["B12", "B01", "B10", "B8A", "B02", "B03", "B04", "B11", "B05", "B09", "B06", "B07", "B08"]
    plan = adapter.plan_inputs(shuffled)
    assert plan.bands == S2_BANDS and plan.option("wavelengths_nm")[10] == 1370.0  # L1C: all 13
    l2a = adapter.plan_inputs([b for b in shuffled if b != "B10"] + ["SCL"])
    assert l2a.bands == S2_L2A_BANDS and l2a.option("modality") == "s2" and l2a.option("scale") == "reflectance"
    assert adapter.plan_inputs(["B02", "B10"] + list(S2_L2A_BANDS), modality="s2_l2a").bands == S2_BANDS
    assert adapter.plan_inputs(shuffled, modality="L2A").bands == S2_BANDS  # any case; B10 read when present
    assert adapter.plan_inputs(shuffled, modality="S2_L1C").bands == S2_BANDS
    s1 = adapter.plan_inputs(["vh", "vv"])
    assert s1.bands == ("VV", "VH") and s1.option("scale") == "db" and s1.option("mean") == (-12.59, -20.26)
    rgb = adapter.plan_inputs(shuffled, bands=["red", "B3", "B02"])  # any subset, in the order given
    assert rgb.bands == ("B04", "B03", "B02") and rgb.option("bandwidths_nm") == (30.0, 35.0, 65.0)


def test_bad_requests_name_the_fix():
    da = synthetic_raster((32, 32), bands=list(S2_L2A_BANDS))
    with pytest.raises(errors.OptionError, match="modality='s2'"):
        da.rsembed.embed("copernicus_fm-tiny", modality="s5p", weights="random")
    with pytest.raises(errors.OptionError, match="bandwidth"):
        da.rsembed.embed("copernicus_fm-tiny", wavelengths=[0.5] * 12, weights="random")
    with pytest.raises(errors.BandMismatchError, match="lacks \\['B01'\\]"):
        da.sel(band=list(S2_L2A_BANDS[1:])).rsembed.embed("copernicus_fm-tiny", weights="random")
    with pytest.raises(errors.BandMismatchError, match="lacks \\['B10'\\]"):
        da.rsembed.embed("copernicus_fm-tiny", modality="s2_l1c", weights="random")
    with pytest.raises(errors.BandMismatchError, match="VV and VH"):
        da.rsembed.embed("copernicus_fm-tiny", modality="s1", weights="random")
    mixed = synthetic_raster((32, 32), bands=["B04", "VV"])
    with pytest.raises(errors.BandMismatchError, match="mix Sentinel-1"):
        mixed.rsembed.embed("copernicus_fm-tiny", bands=["B04", "VV"], weights="random")
    odd = synthetic_raster((32, 32), bands=["B04", "HH"])
    with pytest.raises(errors.BandMismatchError, match="HH"):
        odd.rsembed.embed("copernicus_fm-tiny", bands=["B04", "HH"], weights="random")
    unnamed = synthetic_raster((32, 32), bands=list(S2_L2A_BANDS)).drop_vars("band")
    with pytest.raises(errors.BandMismatchError, match="not named"):
        unnamed.rsembed.embed("copernicus_fm-tiny", weights="random")


def test_values_on_the_wrong_scale_are_refused():
    rng = np.random.default_rng(0)
    db = synthetic_raster((32, 32), bands=["VV", "VH"]).copy(data=rng.uniform(-25, -5, (2, 32, 32)).astype("f4"))
    assert np.isfinite(db.rsembed.embed("copernicus_fm-tiny", weights="random").values).all()
    with pytest.raises(errors.InputRangeError, match="dB"):
        (10 ** (db / 10)).chunk().rsembed.embed("copernicus_fm-tiny", weights="random").compute()
    normalised = synthetic_raster((32, 32), bands=list(S2_L2A_BANDS)) / 10000.0
    with pytest.raises(errors.InputRangeError, match="10000"):
        normalised.chunk().rsembed.embed("copernicus_fm-tiny", weights="random").compute()


def test_nodata_cells_are_nan_and_the_rest_unchanged_by_chunking(tiny_weights):
    da = synthetic_raster((72, 88), bands=list(S2_L2A_BANDS), seed=4).copy()
    da[:, :8, :8] = np.nan
    eager = da.rsembed.embed("copernicus_fm-tiny", weights=tiny_weights).values
    assert np.isnan(eager[:, 0, 0]).all() and np.isfinite(eager[:, 1:, 1:]).all()
    for chunks in ({"y": 32, "x": 40}, {"y": 64, "x": 24}):
        lazy = da.chunk(chunks).rsembed.embed("copernicus_fm-tiny", weights=tiny_weights)
        np.testing.assert_allclose(lazy.values, eager, atol=1e-5, equal_nan=True)
    pooled = da.chunk({"y": 32, "x": 40}).rsembed.embed("copernicus_fm-tiny", output="pooled", input_prep="tile",
                                                        weights=tiny_weights)
    eager_pooled = da.rsembed.embed("copernicus_fm-tiny", output="pooled", input_prep="tile", weights=tiny_weights)
    np.testing.assert_allclose(pooled.values, eager_pooled.values, atol=1e-5)


def test_an_xee_style_dataset_gives_the_same_embedding(tiny_weights):
    da = synthetic_raster((32, 32), bands=list(S2_L2A_BANDS), seed=7)
    ds = to_xee_dataset(da)  # adds a one-date time dimension (2020-06-01): that date is encoded
    from_ds = ds.rsembed.embed("copernicus_fm-tiny", weights=tiny_weights)
    dated = da.expand_dims(time=np.array(["2020-06-01"], dtype="datetime64[ns]"))
    np.testing.assert_allclose(from_ds.values, dated.rsembed.embed("copernicus_fm-tiny", weights=tiny_weights).values,
                               atol=1e-6)


# -- the real scenes --------------------------------------------------------------------------------------


def test_real_sentinel2_scene_tile_and_resize(s2_scene):
    da = xrembed.open_raster(s2_scene).isel(y=slice(0, 250), x=slice(0, 250))
    emb = da.rsembed.embed("copernicus_fm", weights="random")
    assert emb.shape == (768, math.ceil(250 / 16), math.ceil(250 / 16))
    assert emb.rio.crs == da.rio.crs and emb.attrs["bands"] == list(S2_L2A_BANDS)
    assert emb.rio.transform() == da.rio.transform(recalc=True) * Affine.scale(16)
    assert emb.attrs["plan_patch_area_km2"] == pytest.approx((16 * 100 / 1000) ** 2)  # 100 m pixels
    assert emb.attrs["wavelengths_um"] == [BAND_TABLE[b][0] / 1000 for b in S2_L2A_BANDS]  # the authors' table
    left, bottom, right, top = da.rio.bounds()
    centre = Transformer.from_crs(da.rio.crs, "EPSG:4326", always_xy=True).transform((left + right) / 2,
                                                                                  (bottom + top) / 2)
    assert (emb.attrs["plan_lon"], emb.attrs["plan_lat"]) == pytest.approx(centre, abs=1e-9)
    assert -13 < centre[0] < -11 and 25 < centre[1] < 26  # the crop's centre, MGRS 29RKH (Western Sahara)
    assert np.isfinite(emb.values).all()
    resized = da.rsembed.embed("copernicus_fm", weights="random", input_prep="resize")
    assert resized.shape == (768, 14, 14) and resized.rio.crs == da.rio.crs
    assert resized.rio.bounds() == pytest.approx(da.rio.bounds())
    pooled = da.rsembed.embed("copernicus_fm", weights="random", output="pooled", input_prep="resize")
    assert pooled.shape == (768,) and np.isfinite(pooled.values).all()


def test_real_sentinel2_scene_is_chunk_invariant(s2_scene):
    da = xrembed.open_raster(s2_scene, chunks=None).isel(y=slice(100, 260), x=slice(40, 200))
    eager = da.rsembed.embed("copernicus_fm-tiny", weights="random").values
    lazy = da.chunk({"y": 64, "x": 96}).rsembed.embed("copernicus_fm-tiny", weights="random")
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
    emb = crop.rsembed.embed("copernicus_fm", weights="random")  # VV/VH alone: Sentinel-1
    assert emb.attrs["bands"] == ["VV", "VH"] and emb.attrs["plan_modality"] == "s1"
    assert emb.rio.crs.to_epsg() == 32643 and emb.shape == (768, 15, 15)
    assert emb.rio.transform() == crop.rio.transform(recalc=True) * Affine.scale(16)
    assert 75 < emb.attrs["plan_lon"] < 79 and 9 < emb.attrs["plan_lat"] < 12  # southern India
    assert np.isfinite(emb.compute().values).any()
    resized = crop.rsembed.embed("copernicus_fm", modality="sar", weights="random", input_prep="resize")
    assert resized.shape == (768, 14, 14) and resized.rio.bounds() == pytest.approx(crop.rio.bounds())
    pooled = crop.rsembed.embed("copernicus_fm", weights="random", output="pooled")
    assert pooled.shape == (768,) and np.isfinite(pooled.values).all()


def test_int8_keeps_the_hypernetworks_in_float32_and_stays_close():
    """precision='int8' quantises the trunk's Linear layers only; the kernel generators (1-D band tokens)
    stay float32, as the engine keeps DOFA's patch_embed (a quantised fc_bias fails on its 1-D input)."""
    from xrembed import engine

    quantised = engine.quantize_linear(TinyCopernicusFM().build_module().eval())
    generator = quantised.patch_embed_spectral.weight_generator
    assert type(generator.fc_weight).__module__ == "xrembed.models.copernicus_fm_net"
    assert type(quantised.patch_embed_variable.language_proj).__module__ == "xrembed.models.copernicus_fm_net"
    assert "quantized" in type(quantised.blocks[0].attn.qkv).__module__
    da = synthetic_raster((64, 64), bands=list(S2_L2A_BANDS), seed=8)
    fp32 = da.rsembed.embed("copernicus_fm-tiny", weights="random").values.reshape(64, -1)
    int8 = da.rsembed.embed("copernicus_fm-tiny", weights="random", precision="int8").values.reshape(64, -1)
    cosine = (fp32 * int8).sum(0) / (np.linalg.norm(fp32, axis=0) * np.linalg.norm(int8, axis=0))
    assert cosine.min() > 0.99


def test_other_tile_sizes_match_the_reference_run_at_that_size(tiny_reference, tiny_weights):
    """A 48 px image (6 x 6 patches) on the 32 px model: the reference resizes its position table itself."""
    adapter = TinyCopernicusFM()
    assert adapter.check_tile_size(48) == 48 and "resize_abs_pos_embed" in adapter.other_tile_sizes
    ours = load_module(adapter, WeightsSource(tiny_weights, "t"))
    torch.manual_seed(9)
    x = torch.randn(1, 12, 48, 48)
    metadata = (-13.4, 24.9, 18311.0, 0.0064)
    tokens, pooled = reference_outputs(tiny_reference, x, S2_L2A_BANDS, metadata)
    plan = with_metadata(adapter.plan_inputs(list(S2_L2A_BANDS)), metadata)
    with torch.no_grad():
        grid = adapter.forward_grid(ours, x, plan)
        assert (adapter.forward_pooled(ours, x, plan) - pooled).abs().max().item() <= TOL
    assert grid.shape == (1, 64, 6, 6) and (grid - as_grid(tokens, 6)).abs().max().item() <= TOL


def test_vv_and_vh_share_one_kernel_since_the_authors_give_them_one_wavelength():
    """The docs' claim: identical band tokens through the (position-free) weight generator give identical
    kernels, so the radar input is seen through VV's and VH's statistics only."""
    module = TinyCopernicusFM().build_module().eval()
    with torch.no_grad():
        weight, _ = module.patch_embed_spectral.kernel((5e7, 5e7), (1e9, 1e9), torch.device("cpu"))
        optical, _ = module.patch_embed_spectral.kernel((665.0, 560.0), (30.0, 35.0), torch.device("cpu"))
    assert torch.allclose(weight[:, 0], weight[:, 1], atol=1e-6)
    assert not torch.allclose(optical[:, 0], optical[:, 1], atol=1e-4)


@pytest.mark.network
@pytest.mark.parametrize("source", ["torchgeo", "authors"])
def test_published_weights_load_strictly_and_match_the_reference(source, monkeypatch):
    """Opt-in (XREMBED_NETWORK_TESTS=1; downloads ~560 MB): torchgeo's mirror (the default weights) and the
    authors' own file (hf wangyi111/Copernicus-FM, maybe {'model': ...} with norm.*) load strictly after the
    clean-up, and our module with them equals torchgeo's CopernicusFM (authors' eps) loaded as torchgeo does."""
    import huggingface_hub
    import huggingface_hub.constants

    from xrembed.models.weights import read_state_dict, resolve_weights, strip_wrapper_prefixes

    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
    adapter = CopernicusFM()
    if source == "torchgeo":
        path = resolve_weights(adapter, None).path
    else:
        path = huggingface_hub.hf_hub_download("wangyi111/Copernicus-FM", "CopernicusFM_ViT_base_varlang_e100.pth")
    ours = load_module(adapter, WeightsSource(path, "hub"))  # strict: raises on any missing or extra key
    raw = strip_wrapper_prefixes(read_state_dict(path))
    assert not any(k.startswith(("fc_norm.", "head.")) for k in raw)  # as torchgeo's loader asserts
    cfm = torchgeo_copernicusfm()
    reference = cfm.CopernicusFM(embed_dim=768, depth=12, num_heads=12, norm_layer=partial(nn.LayerNorm, eps=1e-6))
    missing, unexpected = reference.load_state_dict({k: v for k, v in raw.items() if not k.startswith("norm.")},
                                                    strict=False)
    assert set(missing) <= {"fc_norm.weight", "fc_norm.bias"} and not unexpected
    reference.eval()
    torch.manual_seed(12)
    x = torch.randn(1, 12, 224, 224)
    metadata = (-13.4, 24.9, 18311.0, 0.0256)
    tokens, pooled = reference_outputs(reference, x, S2_L2A_BANDS, metadata)
    with torch.no_grad():
        grid = ours.grid(x, [BAND_TABLE[b][0] for b in S2_L2A_BANDS], [BAND_TABLE[b][1] for b in S2_L2A_BANDS],
                         metadata)
    assert (grid - as_grid(tokens, 14)).abs().max().item() <= TOL
    assert (ours.pool(grid.mean(dim=(2, 3))) - pooled).abs().max().item() <= TOL
