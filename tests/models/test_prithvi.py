"""Prithvi-EO-2.0 fidelity (invariant 3): parity with terratorch's PrithviViT on identical random weights
(T = 1 and 3, with and without date/location coordinates), strict loading of the official MAE checkpoint
layout, real-size key sets and parameter counts, the band / time / value contract, and the accessor on
the real Sentinel-2 scene."""

import numpy as np
import pytest
import torch
import xarray as xr

import xrembed
from xrembed import errors
from xrembed.models.base import InputContext, Variant
from xrembed.models.prithvi import DEFAULT_BANDS, HLS_BANDS, MEAN, STD, Prithvi
from xrembed.models.registry import register_model
from xrembed.models.weights import WeightsSource, load_module
from xrembed.testing import synthetic_raster

from oracles import import_torchvision_cpu_safe



class TinyPrithvi(Prithvi):
    """Prithvi with a small trunk (D=64, 2 blocks, 64 px tiles) so parity and engine tests run fast."""

    model_id = "prithvi-tiny-test"
    aliases = ()
    variants = {
        "tiny": Variant(
            name="tiny", embed_dim=64, depth=2, num_heads=4, patch_size=16, image_size=64,
            extra=(("coords", False), ("max_frames", 4)),
        ),
        "tiny_tl": Variant(
            name="tiny_tl", embed_dim=64, depth=2, num_heads=4, patch_size=16, image_size=64,
            extra=(("coords", True), ("max_frames", 4)),
        ),
    }
    default_variant = "tiny_tl"


register_model(TinyPrithvi)

LONLAT = (-15.2, 28.5)
DATES = ("2020-02-19", "2020-03-10", "2021-12-31")
DOY = ((2020, 50), (2020, 70), (2021, 365))


def terratorch_prithvi():
    """terratorch's ``prithvi_mae`` and ``prithvi_vit`` modules, or skip if they cannot be imported."""
    try:
        import_torchvision_cpu_safe()
        from terratorch.models.backbones import prithvi_mae, prithvi_vit
    except Exception as err:  # pragma: no cover - depends on the test environment
        pytest.skip(f"terratorch reference unavailable: {err}")
    return prithvi_mae, prithvi_vit


def _jitter(module, seed):
    torch.manual_seed(seed)
    with torch.no_grad():  # give every weight (cls_token, scales, norms) a non-default value
        for param in module.parameters():
            param.add_(torch.randn_like(param) * 0.02)
    return module.eval()


def _reference_tokens(reference, x, frames, temporal, location):
    """The reference's final-normed patch tokens ``(B, T, h, w, D)`` (CLS dropped)."""
    with torch.no_grad():
        out = reference.forward_features(x, temporal, location)[-1][:, 1:]
    b, n, d = out.shape
    side = int(round((n // frames) ** 0.5))
    return out.reshape(b, frames, side, side, d)


@pytest.mark.parametrize("frames", [1, 3])
@pytest.mark.parametrize("coords", [False, True])
def test_parity_with_terratorch(frames, coords, tmp_path):
    prithvi_mae, _ = terratorch_prithvi()
    torch.manual_seed(0)
    reference = prithvi_mae.PrithviViT(
        img_size=64, patch_size=(1, 16, 16), num_frames=frames, in_chans=6, embed_dim=64, depth=2, num_heads=4,
        coords_encoding=["time", "location"] if coords else None, coords_scale_learn=coords,
    )
    _jitter(reference, 1)
    path = tmp_path / "terratorch_vit.pt"
    torch.save(reference.state_dict(), path)  # pos_embed sized for `frames`: the clean-up replaces it

    adapter = TinyPrithvi("tiny_tl" if coords else "tiny")
    ours = load_module(adapter, WeightsSource(str(path), "test"))
    plan = adapter.plan_inputs(list(DEFAULT_BANDS), context=InputContext(resolution_m=10.0, center_lonlat=LONLAT, times=DATES[:frames]))
    assert plan.option("frames") == frames
    if coords:
        assert plan.option("temporal_coords") == DOY[:frames]
        assert plan.option("location_coords") == (LONLAT[1], LONLAT[0])

    x = torch.randn(2, 6, frames, 64, 64)
    temporal = torch.tensor([DOY[:frames]] * 2, dtype=torch.float32) if coords else None
    location = torch.tensor([[LONLAT[1], LONLAT[0]]] * 2, dtype=torch.float32) if coords else None
    expected = _reference_tokens(reference, x, frames, temporal, location)
    folded = x.transpose(1, 2).reshape(2, frames * 6, 64, 64)  # the engine's frame-major layout
    with torch.no_grad():
        grid = adapter.forward_grid(ours, folded, plan)
        pooled = adapter.forward_pooled(ours, folded, plan)
    expected_grid = expected.mean(dim=1).permute(0, 3, 1, 2)
    expected_pooled = expected.mean(dim=(1, 2, 3))
    assert grid.shape == (2, 64, 4, 4) and pooled.shape == (2, 64)
    assert (grid - expected_grid).abs().max().item() <= 1e-4
    assert (pooled - expected_pooled).abs().max().item() <= 1e-4


def test_coordinates_change_the_output_of_tl_variants_only():
    x = torch.randn(1, 12, 64, 64)
    a_ctx = InputContext(resolution_m=10.0, center_lonlat=LONLAT, times=DATES[:2])
    b_ctx = InputContext(resolution_m=10.0, center_lonlat=(10.0, 50.0), times=("2019-07-01", "2019-08-01"))
    for variant, differs in (("tiny_tl", True), ("tiny", False)):
        adapter = TinyPrithvi(variant)
        module = _jitter(adapter.build_module(), 2)
        with torch.no_grad():
            a = adapter.forward_pooled(module, x, adapter.plan_inputs(list(DEFAULT_BANDS), context=a_ctx))
            b = adapter.forward_pooled(module, x, adapter.plan_inputs(list(DEFAULT_BANDS), context=b_ctx))
        assert (a - b).abs().max().item() > 1e-4 if differs else torch.equal(a, b)


def _official_layout(reference_mae) -> dict:
    """An official Prithvi-EO-2.0 ``.pt``: the MAE's flat state dict (``encoder.``/``decoder.`` keys)."""
    return {k: v.clone() for k, v in reference_mae.state_dict().items()}


def test_official_mae_layout_loads_strictly_and_reproduces(tmp_path):
    prithvi_mae, _ = terratorch_prithvi()
    torch.manual_seed(3)
    mae = prithvi_mae.PrithviMAE(
        img_size=64, patch_size=(1, 16, 16), num_frames=4, in_chans=6, embed_dim=64, depth=2, num_heads=4,
        decoder_embed_dim=32, decoder_depth=1, decoder_num_heads=4,
        coords_encoding=["time", "location"], coords_scale_learn=True,
    )
    _jitter(mae, 4)
    state = _official_layout(mae)
    assert {"encoder.pos_embed", "decoder.mask_token", "decoder.decoder_pos_embed"} <= set(state)
    assert state["encoder.pos_embed"].shape == (1, 1 + 4 * 16, 64)  # saved with 4 frames
    path = tmp_path / "Prithvi_EO_V2_tiny.pt"
    torch.save(state, path)

    adapter = TinyPrithvi("tiny_tl")
    ours = load_module(adapter, WeightsSource(str(path), "test"))
    assert ours.pos_embed.shape == (1, 17, 64)
    x = torch.randn(1, 6, 4, 64, 64)
    dates = ("2020-01-01", "2020-04-01", "2020-07-01", "2020-10-01")
    plan = adapter.plan_inputs(list(DEFAULT_BANDS), context=InputContext(resolution_m=30.0, center_lonlat=LONLAT, times=dates))
    temporal = torch.tensor([plan.option("temporal_coords")], dtype=torch.float32)
    location = torch.tensor([plan.option("location_coords")], dtype=torch.float32)
    expected = _reference_tokens(mae.encoder, x, 4, temporal, location)
    with torch.no_grad():
        grid = adapter.forward_grid(ours, x.transpose(1, 2).reshape(1, 24, 64, 64), plan)
    assert (grid - expected.mean(dim=1).permute(0, 3, 1, 2)).abs().max().item() <= 1e-4

    # the same file into a variant without coordinate encoders: the scales are dropped, the rest loads
    load_module(TinyPrithvi("tiny"), WeightsSource(str(path), "test"))


def test_unexpected_or_missing_keys_are_refused(tmp_path):
    adapter = TinyPrithvi("tiny_tl")
    state = {f"encoder.{k}": v for k, v in adapter.build_module().state_dict().items()}
    extra = dict(state, **{"encoder.blocks.9.attn.qkv.weight": torch.zeros(3)})
    torch.save(extra, tmp_path / "extra.pt")
    with pytest.raises(errors.WeightsError, match="unexpected"):
        load_module(adapter, WeightsSource(str(tmp_path / "extra.pt"), "test"))
    missing = {k: v for k, v in state.items() if k != "encoder.temporal_embed_enc.scale"}
    torch.save(missing, tmp_path / "missing.pt")
    with pytest.raises(errors.WeightsError, match="missing"):
        load_module(adapter, WeightsSource(str(tmp_path / "missing.pt"), "test"))


@pytest.mark.parametrize(("name", "variant"), [("prithvi_eo_v2_100_tl", "100m_tl"), ("prithvi_eo_v2_300", "300m")])
def test_real_size_keys_shapes_and_parameter_count_match_the_reference(name, variant):
    _, prithvi_vit = terratorch_prithvi()
    reference = getattr(prithvi_vit, name)()  # build only: no real-size forward
    ours = Prithvi(variant).build_module()
    shapes = lambda m: {k: tuple(v.shape) for k, v in m.state_dict().items()}  # noqa: E731
    assert shapes(ours) == shapes(reference)
    count = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
    assert count(ours) == count(reference)
    assert count(ours) == {"100m_tl": 86_237_186, "300m": 303_886_336}[variant]


def test_real_size_official_layout_cleans_to_our_keys():
    """terratorch's 100M-TL MAE (the official file's layout) loads strictly after our clean-up."""
    _, prithvi_vit = terratorch_prithvi()
    mae = prithvi_vit.prithvi_eo_v2_100_tl_mae(num_frames=4)
    adapter = Prithvi("100m_tl")
    module = adapter.build_module()
    cleaned = adapter.clean_state_dict(_official_layout(mae))
    module.load_state_dict(cleaned, strict=True)
    assert torch.equal(module.patch_embed.proj.weight, mae.encoder.patch_embed.proj.weight)
    assert module.patch_embed.proj.weight.shape == (768, 6, 1, 16, 16)


def test_variants_match_terratorch_configs():
    _, prithvi_vit = terratorch_prithvi()
    names = {"100m_tl": "prithvi_eo_v2_100_tl", "300m": "prithvi_eo_v2_300", "300m_tl": "prithvi_eo_v2_300_tl",
             "600m": "prithvi_eo_v2_600", "600m_tl": "prithvi_eo_v2_600_tl"}
    for variant, name in names.items():
        cfg, adapter = prithvi_vit.prithvi_cfgs[name], Prithvi(variant)
        v = adapter.variant
        assert (v.embed_dim, v.depth, v.num_heads, v.image_size) == (cfg["embed_dim"], cfg["depth"], cfg["num_heads"], cfg["img_size"])
        assert [1, v.patch_size, v.patch_size] == list(cfg["patch_size"])
        assert adapter.coords_encoding == bool(cfg["coords_encoding"]) and adapter.max_frames == cfg["num_frames"]
        assert list(MEAN) == cfg["mean"] and list(STD) == cfg["std"]
        weights = prithvi_vit.pretrained_weights[name]
        assert (v.checkpoint.repo_id, v.checkpoint.filename) == (weights["hf_hub_id"], weights["hf_hub_filename"])


# -- through the accessor -------------------------------------------------------------------------


def _series(da, dates):
    return xr.concat([da] * len(dates), dim="time").assign_coords(time=np.array(dates, dtype="datetime64[ns]"))


def test_accessor_matches_the_reference_on_one_tile(tmp_path):
    """Normalisation + engine on a 64 px, 2-step raster reproduce terratorch's tokens with dates and place."""
    from pyproj import Transformer

    prithvi_mae, _ = terratorch_prithvi()
    torch.manual_seed(5)
    reference = prithvi_mae.PrithviViT(
        img_size=64, patch_size=(1, 16, 16), num_frames=2, in_chans=6, embed_dim=64, depth=2, num_heads=4,
        coords_encoding=["time", "location"], coords_scale_learn=True,
    )
    _jitter(reference, 6)
    path = tmp_path / "w.pt"
    torch.save(reference.state_dict(), path)
    da = synthetic_raster((64, 64), bands=DEFAULT_BANDS, times=2, seed=7)  # times 2020-01-15, 2020-02-15
    grid = da.rsembed.embed("prithvi-tiny-test", weights=str(path))
    pooled_tile = da.rsembed.embed("prithvi-tiny-test", weights=str(path), output="pooled", input_prep="tile")
    pooled_resize = da.rsembed.embed("prithvi-tiny-test", weights=str(path), output="pooled", input_prep="resize")

    mean, std = torch.tensor(MEAN).view(1, 6, 1, 1, 1), torch.tensor(STD).view(1, 6, 1, 1, 1)
    x = (torch.from_numpy(da.values).transpose(0, 1)[None] - mean) / std  # (1, C, T, H, W)
    lon, lat = Transformer.from_crs("EPSG:32629", "EPSG:4326", always_xy=True).transform(500320.0, 4199680.0)
    temporal = torch.tensor([[[2020.0, 15.0], [2020.0, 46.0]]])
    expected = _reference_tokens(reference, x, 2, temporal, torch.tensor([[lat, lon]], dtype=torch.float32))[0]
    assert grid.dims == ("embedding", "y", "x") and "time" not in grid.coords
    np.testing.assert_allclose(grid.values, expected.mean(dim=0).permute(2, 0, 1).numpy(), atol=1e-4)
    np.testing.assert_allclose(pooled_tile.values, expected.mean(dim=(0, 1, 2)).numpy(), atol=1e-4)
    np.testing.assert_allclose(pooled_resize.values, expected.mean(dim=(0, 1, 2)).numpy(), atol=1e-4)


def test_real_scene_time_series_through_the_accessor(s2_scene):
    da = xrembed.open_raster(s2_scene).isel(y=slice(0, 300), x=slice(0, 300))
    series = _series(da, ["2020-02-19", "2020-03-10"])
    emb = series.rsembed.embed("prithvi", weights="random")  # 100m_tl, tile mode, lazy
    assert emb.dims == ("embedding", "y", "x") and emb.shape == (768, 19, 19)
    assert emb.rio.crs == da.rio.crs
    t = da.rio.transform()
    assert tuple(emb.rio.transform()) == tuple(t * t.scale(16))
    assert emb.attrs["bands"] == list(DEFAULT_BANDS)
    values = emb.values
    assert np.isfinite(values).all() and values.std() > 0

    resized = series.rsembed.embed("prithvi", weights="random", input_prep="resize")
    assert resized.shape == (768, 14, 14) and resized.rio.crs == da.rio.crs
    pooled = series.rsembed.embed("prithvi", weights="random", output="pooled", input_prep="tile")
    assert pooled.dims == ("embedding",) and np.isfinite(pooled.values).all()
    # pooled in tile mode is the mean of the grid weighted by valid pixels per cell (edge cells: 12 of 16 px)
    side = np.array([16.0] * 18 + [300 - 18 * 16])
    weights = np.outer(side, side)
    np.testing.assert_allclose(pooled.values, (values * weights).sum(axis=(1, 2)) / weights.sum(), atol=1e-4)


def test_a_single_scene_runs_on_non_tl_variants_and_names_the_fix_on_tl():
    da = synthetic_raster((64, 64), bands=DEFAULT_BANDS)
    emb = da.rsembed.embed("prithvi-tiny-test", variant="tiny", weights="random")
    assert emb.shape == (64, 4, 4) and np.isfinite(emb.values).all()
    with pytest.raises(errors.OptionError, match="time"):
        da.rsembed.embed("prithvi-tiny-test", weights="random")  # TL without dates, raised at embed()
    dated = da.expand_dims(time=[np.datetime64("2020-02-19")])
    assert dated.rsembed.embed("prithvi-tiny-test", weights="random").dims == ("embedding", "y", "x")


# -- the input contract ---------------------------------------------------------------------------


def test_too_many_time_steps_is_refused_at_embed_time():
    da = synthetic_raster((32, 32), bands=DEFAULT_BANDS, times=5, chunks={"x": 16})
    with pytest.raises(errors.OptionError, match=r"time=slice\(0, 4\)"):
        da.rsembed.embed("prithvi-tiny-test", weights="random")


def test_hls_band_names_and_other_band_orders_give_identical_results():
    da = synthetic_raster((64, 64), bands=DEFAULT_BANDS, times=1, seed=2)
    hls = da.assign_coords(band=list(HLS_BANDS))
    shuffled = synthetic_raster((64, 64), bands=["B12", "B01", "B8A", "B02", "B08", "B04", "B11", "B03"], times=1)
    shuffled = shuffled.copy(data=np.zeros(shuffled.shape, "f4") + 1)
    shuffled.loc[{"band": list(DEFAULT_BANDS)}] = da.values
    a = da.rsembed.embed("prithvi-tiny-test", weights="random").values
    np.testing.assert_array_equal(hls.rsembed.embed("prithvi-tiny-test", weights="random").values, a)
    emb = shuffled.rsembed.embed("prithvi-tiny-test", weights="random")
    np.testing.assert_array_equal(emb.values, a)
    assert emb.attrs["bands"] == list(DEFAULT_BANDS)


def test_band_errors_name_the_fix():
    with_b08 = synthetic_raster((32, 32), bands=["B02", "B03", "B04", "B08", "B11", "B12"], times=1)
    with pytest.raises(errors.BandMismatchError, match="B8A"):
        with_b08.rsembed.embed("prithvi-tiny-test", weights="random")
    five = ["B02", "B03", "B04", "B08", "B11"]
    with pytest.raises(errors.BandMismatchError, match="exactly 6"):
        with_b08.rsembed.embed("prithvi-tiny-test", bands=five, weights="random")
    # the broad NIR, chosen explicitly, is accepted in place of B8A
    chosen = ["B02", "B03", "B04", "B08", "B11", "B12"]
    assert with_b08.rsembed.embed("prithvi-tiny-test", bands=chosen, weights="random").shape == (64, 2, 2)
    unnamed = with_b08.drop_vars("band")
    with pytest.raises(errors.BandMismatchError, match="bands="):
        unnamed.rsembed.embed("prithvi-tiny-test", weights="random")
    with pytest.raises(errors.WavelengthError, match="no wavelengths"):
        with_b08.rsembed.embed("prithvi-tiny-test", bands=chosen, wavelengths=[0.49] * 6, weights="random")
    with pytest.raises(errors.OptionError, match="modality"):
        with_b08.rsembed.embed("prithvi-tiny-test", modality="s1", weights="random")


def test_normalised_reflectance_is_rejected():
    da = synthetic_raster((32, 32), bands=DEFAULT_BANDS, times=2) / 10000.0
    emb = da.chunk().rsembed.embed("prithvi-tiny-test", weights="random")
    with pytest.raises(errors.InputRangeError, match="10000"):
        emb.compute()
    with pytest.raises(errors.InputRangeError):
        da.rsembed.embed("prithvi-tiny-test", weights="random")  # eager: raised at once


def test_describe_model_gives_the_contract():
    info = xrembed.describe_model("prithvi")
    assert info["variant"] == "100m_tl" and info["bands"] == list(DEFAULT_BANDS)
    assert info["hls_bands"] == list(HLS_BANDS)
    assert (info["image_size"], info["patch_size"], info["embed_dim"]) == (224, 16, 768)
    assert info["weights"] == "hf://ibm-nasa-geospatial/Prithvi-EO-2.0-100M-TL/Prithvi_EO_V2_100M_TL.pt"
    assert info["temporal"]["requires_time_coordinate"] is True
    assert info["normalisation"]["mean"]["B8A"] == 2734.0 and info["normalisation"]["std"]["B12"] == 1049.0
    assert set(info["outputs"]) == {"grid", "pooled"} and info["licence"]
    big = xrembed.describe_model("prithvi", variant="600m")
    assert (big["patch_size"], big["embed_dim"]) == (14, 1280) and big["temporal"]["requires_time_coordinate"] is False
