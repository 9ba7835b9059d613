"""Clay v1.5 fidelity (invariant 3), its metadata read from the raster, the input contract (invariant 4) and
the real Sentinel-2 scene through the accessor.

The reference is terratorch 1.2.11's ``models/backbones/clay_v15/model.py`` ``Encoder`` (built directly:
the full ``ClayMAE`` downloads its teacher), run without masking (``mask_ratio=0``, ``shuffle=False``) as
Clay's embedding path does. Weights go through the release layout: a Lightning checkpoint whose
``state_dict`` holds ``model.encoder.*`` beside the decoder, teacher and projection.
"""

from __future__ import annotations

import datetime as dt
import math

import numpy as np
import pytest
import torch
from pyproj import Transformer

import xrembed
from xrembed import errors
from xrembed.models.base import InputContext, Variant
from xrembed.models.clay import S1_METADATA, S2_BANDS, S2_METADATA, Clay, time_code
from xrembed.models.clay_release import release_checkpoint
from xrembed.models.registry import register_model
from xrembed.models.weights import WeightsSource, load_module
from xrembed.testing import synthetic_raster, to_xee_dataset

from shared_paths import S2_SCENE
from oracles import import_torchvision_cpu_safe

TOL = 1e-4
#: Clay's metadata.yaml, sentinel-2-l2a, written out by hand from the file (blue .. swir22).
CLAY_S2_WAVES = [0.493, 0.56, 0.665, 0.704, 0.74, 0.783, 0.842, 0.865, 1.61, 2.19]
CLAY_S2_MEAN = [1105.0, 1355.0, 1552.0, 1887.0, 2422.0, 2630.0, 2743.0, 2785.0, 2388.0, 1835.0]
CLAY_S2_STD = [1809.0, 1757.0, 1888.0, 1870.0, 1732.0, 1697.0, 1742.0, 1648.0, 1470.0, 1379.0]


@register_model
class TinyClay(Clay):
    """Patch 8, 32 px tiles (4 x 4 tokens), D=64, depth 2, 4 heads of 16, MLP ratio 2 (test only)."""

    model_id = "clay-tiny"
    aliases = ()
    variants = {
        "tiny": Variant(name="tiny", embed_dim=64, depth=2, num_heads=4, patch_size=8, image_size=32,
                        extra=(("dim_head", 16), ("mlp_ratio", 2.0))),
        "wide": Variant(name="wide", embed_dim=96, depth=2, num_heads=4, patch_size=8, image_size=32,
                        extra=(("dim_head", 16), ("mlp_ratio", 2.0))),
    }
    default_variant = "tiny"


def terratorch_clay():
    """terratorch's Clay v1.5 model module (behind the torchvision shim); the matmul precision its import sets
    to "medium" is put back."""
    precision = torch.get_float32_matmul_precision()
    try:
        import_torchvision_cpu_safe()
        from terratorch.models.backbones.clay_v15 import model
    except Exception as err:  # pragma: no cover - depends on the test environment
        pytest.skip(f"terratorch reference unavailable: {err}")
    finally:
        torch.set_float32_matmul_precision(precision)
    return model


def reference_encoder(seed: int, dim=64, depth=2, heads=4, dim_head=16, mlp_ratio=2):
    """terratorch's ``Encoder`` without masking, every weight given a non-trivial random value."""
    clay = terratorch_clay()
    torch.manual_seed(seed)
    encoder = clay.Encoder(mask_ratio=0.0, patch_size=8, shuffle=False, dim=dim, depth=depth, heads=heads,
                           dim_head=dim_head, mlp_ratio=mlp_ratio).eval()
    with torch.no_grad():
        for param in encoder.parameters():
            param.add_(torch.randn_like(param) * 0.02)
    return encoder


def reference_tokens(encoder, x, waves, time, latlon, gsd):
    with torch.no_grad():
        tokens, unmasked, masked, _ = encoder(
            {"pixels": x, "time": time, "latlon": latlon, "gsd": torch.tensor(gsd), "waves": torch.tensor(waves)}
        )
    assert masked.numel() == 0 and torch.equal(unmasked[0], torch.arange(unmasked.shape[1]))  # no masking
    return tokens


def as_grid(tokens: torch.Tensor, side: int) -> torch.Tensor:
    return tokens[:, 1:].transpose(1, 2).reshape(tokens.shape[0], -1, side, side)


@pytest.fixture(scope="module")
def tiny_reference():
    return reference_encoder(seed=0)


@pytest.fixture(scope="module")
def tiny_weights(tiny_reference, tmp_path_factory):
    path = tmp_path_factory.mktemp("clay") / "clay-tiny.ckpt"
    torch.save(release_checkpoint(tiny_reference.state_dict(), 64, torch), path)
    return str(path)


# -- fidelity ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("modality", ["s2", "s1"])
def test_parity_with_terratorch_on_the_release_layout(modality, tiny_reference, tiny_weights):
    adapter = TinyClay()
    ours = load_module(adapter, WeightsSource(tiny_weights, "test"))  # strict, after the documented clean-up
    bands = list(S2_BANDS) if modality == "s2" else ["VV", "VH"]
    context = InputContext(resolution_m=30.0, center_lonlat=(-13.2, 24.9), times=("2020-02-19",))
    plan = adapter.plan_inputs(bands, context=context)
    assert plan.option("modality") == modality and plan.option("gsd_m") == 30.0
    torch.manual_seed(5)
    x = torch.randn(2, len(bands), 32, 32)
    metadata = torch.tensor(plan.option("metadata")).expand(2, -1)
    waves = CLAY_S2_WAVES if modality == "s2" else [3.5, 4.0]
    tokens = reference_tokens(tiny_reference, x, waves, metadata[:, :4], metadata[:, 4:], 30.0)
    with torch.no_grad():
        grid = adapter.forward_grid(ours, x, plan)
        pooled = adapter.forward_pooled(ours, x, plan)
    assert grid.shape == (2, 64, 4, 4) and pooled.shape == (2, 64)
    grid_diff = (grid - as_grid(tokens, 4)).abs().max().item()
    pooled_diff = (pooled - tokens[:, 0]).abs().max().item()
    print(f"clay {modality}: max |grid diff| {grid_diff:.2e}, max |pooled diff| {pooled_diff:.2e}")
    assert grid_diff <= TOL and pooled_diff <= TOL


def test_parity_holds_for_any_band_subset_metadata_and_gsd(tiny_reference, tiny_weights):
    """Clay's embedding tutorial reads red, green, blue, nir: a subset in any order, other metadata, coarse GSD."""
    adapter = TinyClay()
    ours = load_module(adapter, WeightsSource(tiny_weights, "test"))
    bands = ["B04", "B03", "B02", "B08"]
    context = InputContext(resolution_m=100.0, center_lonlat=(77.0, 10.0), times=("2018-07-16",))
    plan = adapter.plan_inputs(["B02", "B03", "B04", "B08", "B11"], bands=bands, context=context)
    assert plan.bands == tuple(bands) and plan.option("wavelengths") == (0.665, 0.56, 0.493, 0.842)
    torch.manual_seed(6)
    x = torch.randn(1, 4, 48, 48)  # 6 x 6 patches: the encoder is not tied to the tile size
    meta = torch.tensor(plan.option("metadata"))[None]
    tokens = reference_tokens(tiny_reference, x, [0.665, 0.56, 0.493, 0.842], meta[:, :4], meta[:, 4:], 100.0)
    with torch.no_grad():
        assert (adapter.forward_grid(ours, x, plan) - as_grid(tokens, 6)).abs().max().item() <= TOL
        assert (adapter.forward_pooled(ours, x, plan) - tokens[:, 0]).abs().max().item() <= TOL


def test_other_tile_sizes_are_allowed_since_the_grid_code_is_computed():
    """The parity test above runs the encoder at 48 px (6 x 6 patches) against the reference."""
    assert Clay().check_tile_size(512) == 512 and Clay().check_tile_size(128) == 128
    with pytest.raises(errors.OptionError, match="multiple of 8"):
        Clay().check_tile_size(100)
    assert "computed for the tile's grid" in Clay().describe()["tile_sizes"]


def test_real_size_keys_shapes_and_parameter_count_match_the_reference():
    clay = terratorch_clay()
    with torch.device("meta"):  # Clay v1.5 is the large configuration of configs/config.yaml
        reference = clay.Encoder(mask_ratio=0.0, patch_size=8, shuffle=False, dim=1024, depth=24, heads=16,
                                 dim_head=64, mlp_ratio=4)
        ours = Clay().build_module()
    expected = {k: tuple(t.shape) for k, t in reference.state_dict().items()}
    assert {k: tuple(t.shape) for k, t in ours.state_dict().items()} == expected
    count = sum(p.numel() for p in ours.parameters())
    assert count == sum(p.numel() for p in reference.parameters())
    assert expected["patch_embedding.weight_generator.fc_weight.weight"] == (8 * 8 * 1024, 128)
    assert expected["transformer.layers.23.0.to_qkv.weight"] == (3 * 16 * 64, 1024)
    assert expected["transformer.layers.23.1.net.1.weight"] == (4096, 1024)
    assert count == 311_442_944  # as docs/models/clay.md states


def test_release_layout_loads_strictly_and_refuses_mismatches(tiny_reference, tiny_weights, tmp_path):
    loaded = load_module(TinyClay(), WeightsSource(tiny_weights, "t"))
    for key, tensor in tiny_reference.state_dict().items():
        assert torch.equal(loaded.state_dict()[key], tensor), key
    release = torch.load(tiny_weights, weights_only=True)
    state = release["state_dict"]
    assert any(k.startswith("model.decoder.") for k in state) and "model.proj.weight" in state
    without_cls = dict(release, state_dict={k: v for k, v in state.items() if k != "model.encoder.cls_token"})
    extra = dict(release, state_dict=dict(state, **{"model.encoder.extra_head.weight": torch.zeros(3)}))
    with_mrl = dict(release, state_dict=dict(state, **{"model.mrl.layers.mrl_16.weight": torch.zeros(4, 16)}))
    for name, bad, match in (("missing", without_cls, "missing"), ("extra", extra, "unexpected")):
        path = tmp_path / f"{name}.ckpt"
        torch.save(bad, path)
        with pytest.raises(errors.WeightsError, match=match):
            load_module(TinyClay(), WeightsSource(str(path), "t"))
    path = tmp_path / "mrl.ckpt"
    torch.save(with_mrl, path)
    load_module(TinyClay(), WeightsSource(str(path), "t"))  # Matryoshka heads of earlier releases: dropped
    with pytest.raises(errors.WeightsError, match="wrong shape|missing"):
        load_module(TinyClay("wide"), WeightsSource(tiny_weights, "t"))


# -- metadata from the raster -----------------------------------------------------------------------------


def test_time_and_location_codes_are_clays():
    # 2020-02-19 is a Wednesday of ISO week 8 (2020-02-17 .. 23)
    week = 8 * 2 * math.pi / 52
    assert time_code("2020-02-19") == pytest.approx((math.sin(week), math.cos(week), 0.0, 1.0))
    hour = 10 * 2 * math.pi / 24
    assert time_code("2018-07-16T10:40:42")[2:] == pytest.approx((math.sin(hour), math.cos(hour)))
    assert time_code("2021-01-01")[:2] == pytest.approx((math.sin(53 * 2 * math.pi / 52), math.cos(53 * 2 * math.pi / 52)))
    assert time_code(None) == (0.0, 0.0, 0.0, 0.0)  # unknown: Clay's zeros
    plan = Clay().plan_inputs(list(S2_BANDS), context=InputContext(resolution_m=10.0, center_lonlat=(-90.0, 30.0)))
    assert plan.option("metadata")[:4] == (0.0, 0.0, 0.0, 0.0)
    assert plan.option("metadata")[4:] == pytest.approx((0.5, math.sqrt(3) / 2, -1.0, 0.0), abs=1e-12)


def spy_on_options(monkeypatch) -> dict:
    """The plan options of the next embed() call, as a dict filled when embed() plans its inputs."""
    seen: dict = {}
    original = Clay.plan_options

    def spy(self, chosen, req):
        options = original(self, chosen, req)
        seen.update(dict(options))
        return options

    monkeypatch.setattr(Clay, "plan_options", spy)
    return seen


def test_embed_reads_gsd_centre_and_date_from_the_raster(monkeypatch):
    """What embed() hands the model: the raster's pixel size, its centre in WGS84 and its date."""
    seen = spy_on_options(monkeypatch)
    da = synthetic_raster((48, 64), bands=list(S2_BANDS), resolution=20.0, times=1)  # 2020-01-15, EPSG:32629
    da.rsembed.embed("clay-tiny", weights="random")
    centre = (500000.0 + 64 * 20.0 / 2, 4200000.0 - 48 * 20.0 / 2)
    lon, lat = Transformer.from_crs("EPSG:32629", "EPSG:4326", always_xy=True).transform(*centre)
    week = dt.date(2020, 1, 15).isocalendar().week * 2 * math.pi / 52
    expected = (math.sin(week), math.cos(week), 0.0, 1.0, math.sin(math.radians(lat)), math.cos(math.radians(lat)),
                math.sin(math.radians(lon)), math.cos(math.radians(lon)))
    assert seen["gsd_m"] == pytest.approx(20.0)
    assert seen["metadata"] == pytest.approx(expected, abs=1e-9)
    assert seen["wavelengths"] == tuple(CLAY_S2_WAVES)
    assert (seen["date"], seen["latitude"], seen["longitude"]) == ("2020-01-15", pytest.approx(lat), pytest.approx(lon))


def test_the_metadata_change_the_embedding(tiny_weights):
    da = synthetic_raster((32, 32), bands=list(S2_BANDS), times=1, seed=1)
    base = da.rsembed.embed("clay-tiny", weights=tiny_weights).values
    later = da.assign_coords(time=np.array(["2020-08-15"], dtype="datetime64[ns]"))
    coarse = synthetic_raster((32, 32), bands=list(S2_BANDS), times=1, seed=1, resolution=30.0)
    for other in (later, coarse, da.isel(time=0, drop=True)):
        assert np.abs(other.rsembed.embed("clay-tiny", weights=tiny_weights).values - base).max() > 1e-3


# -- the accessor against the reference -------------------------------------------------------------------


def test_accessor_reproduces_the_reference_with_clays_normalisation(tiny_reference, tiny_weights):
    """One 32 px tile: Clay's per-band standardisation, the raster's date, centre and GSD, then the reference."""
    da = synthetic_raster((32, 32), bands=list(S2_BANDS), times=1, seed=3).isel(time=0)
    da = da.expand_dims(time=np.array(["2020-02-19T00:00"], dtype="datetime64[ns]"))
    pixels = torch.from_numpy(da.values[0])
    x = ((pixels - torch.tensor(CLAY_S2_MEAN)[:, None, None]) / torch.tensor(CLAY_S2_STD)[:, None, None])[None]
    lon, lat = Transformer.from_crs("EPSG:32629", "EPSG:4326", always_xy=True).transform(500160.0, 4199840.0)
    week = 8 * 2 * math.pi / 52
    time = torch.tensor([[math.sin(week), math.cos(week), 0.0, 1.0]])
    latlon = torch.tensor([[math.sin(math.radians(lat)), math.cos(math.radians(lat)),
                            math.sin(math.radians(lon)), math.cos(math.radians(lon))]])
    tokens = reference_tokens(tiny_reference, x, CLAY_S2_WAVES, time, latlon, 10.0)
    grid = da.rsembed.embed("clay-tiny", weights=tiny_weights)
    assert grid.dims == ("time", "embedding", "y", "x")
    np.testing.assert_allclose(grid.values[0], as_grid(tokens, 4)[0].numpy(), atol=TOL)
    pooled = da.rsembed.embed("clay-tiny", weights=tiny_weights, output="pooled", input_prep="resize")
    np.testing.assert_allclose(pooled.values[0], tokens[0, 0].numpy(), atol=TOL)  # the class token
    tiled = da.rsembed.embed("clay-tiny", weights=tiny_weights, output="pooled", input_prep="tile")
    np.testing.assert_allclose(tiled.values[0], as_grid(tokens, 4)[0].mean(dim=(1, 2)).numpy(), atol=TOL)


def test_bands_are_picked_by_name_in_any_order(tiny_weights):
    shuffled = ["B12", "B01", "B8A", "B02", "B03", "B04", "B11", "B05", "B09", "B06", "B07", "B08"]
    da = synthetic_raster((40, 40), bands=shuffled, seed=3)
    a = da.rsembed.embed("clay-tiny", weights=tiny_weights)
    assert a.attrs["bands"] == list(S2_BANDS)  # Clay's sentinel-2-l2a bands: no B01, B09
    b = da.sel(band=list(S2_BANDS)).rsembed.embed("clay-tiny", weights=tiny_weights)
    np.testing.assert_array_equal(a.values, b.values)
    plan = Clay().plan_inputs(["vh", "vv"])
    assert plan.bands == ("VV", "VH") and plan.option("modality") == "s1" and plan.option("scale") == "db"
    assert plan.option("mean") == (S1_METADATA["VV"][2], S1_METADATA["VH"][2])
    rgb = Clay().plan_inputs(shuffled, bands=["B04", "B03", "B02"])
    assert rgb.option("mean") == (1552.0, 1355.0, 1105.0) and rgb.option("std") == (1888.0, 1757.0, 1809.0)


def test_normalisation_is_clays_and_nan_stays_nan():
    plan = Clay().plan_inputs(list(S2_BANDS))
    x = torch.full((1, 10, 2, 2), 3000.0)
    x[0, 0, 0, 0] = float("nan")
    out = Clay().normalise(x, plan)
    expected = (3000.0 - torch.tensor(CLAY_S2_MEAN)) / torch.tensor(CLAY_S2_STD)
    torch.testing.assert_close(out[0, :, 1, 1], expected)
    assert torch.isnan(out[0, 0, 0, 0])
    assert [S2_METADATA[b][1:] for b in S2_BANDS] == list(zip(CLAY_S2_WAVES, CLAY_S2_MEAN, CLAY_S2_STD))


# -- contract ---------------------------------------------------------------------------------------------


def test_describe_model_gives_the_contract():
    info = xrembed.describe_model("clay")
    assert (info["model"], info["variant"], info["variants"]) == ("clay", "v1.5", ["v1.5"])
    assert info["bands"] == list(S2_BANDS) and "B01" not in info["bands"]
    assert info["wavelengths_um"] == CLAY_S2_WAVES
    assert (info["image_size"], info["patch_size"], info["embed_dim"]) == (256, 8, 1024)
    assert info["modalities"]["s1"]["bands"] == ["VV", "VH"] and "dB" in info["modalities"]["s1"]["values"]
    assert info["modalities"]["s2"]["clay_platform"] == "sentinel-2-l2a"
    assert info["weights"] == "hf://made-with-clay/Clay/v1.5/clay-v1.5.ckpt"
    assert "Apache-2.0" in info["licence"]
    assert info["normalisation"]["s2 mean"]["B02"] == 1105.0 and info["normalisation"]["s1 std"]["VH"] == 8.017
    assert set(info["outputs"]) == {"grid", "pooled"} and "class token" in info["outputs"]["pooled"]
    assert "raster centre" in info["metadata"]["latlon"] and "metres" in info["metadata"]["gsd"]
    assert info["default_sensors"]["s2"]["bands"] == ("B2", "B3", "B4", "B5", "B6", "B7", "B8", "B8A", "B11", "B12")
    assert info["default_sensors"]["s1"]["collection"] == "COPERNICUS/S1_GRD"  # dB
    assert xrembed.describe_model("clay-v1.5")["model"] == "clay"


def test_bad_requests_name_the_fix():
    da = synthetic_raster((32, 32), bands=list(S2_BANDS))
    with pytest.raises(errors.OptionError, match="'s1'"):
        da.rsembed.embed("clay-tiny", modality="s3", weights="random")
    with pytest.raises(errors.OptionError, match="no wavelengths="):
        da.rsembed.embed("clay-tiny", wavelengths=[0.5] * 10, weights="random")
    with pytest.raises(errors.BandMismatchError, match="lacks .*B11"):
        synthetic_raster((32, 32), bands=["B02", "B03", "B04"]).rsembed.embed("clay-tiny", weights="random")
    with pytest.raises(errors.BandMismatchError, match="not \\['B01'\\]"):
        synthetic_raster((32, 32), bands=["B01", "B02"]).rsembed.embed("clay-tiny", bands=["B01", "B02"], weights="random")
    with pytest.raises(errors.BandMismatchError, match="lacks .*VV"):
        da.rsembed.embed("clay-tiny", modality="s1", weights="random")
    with pytest.raises(errors.BandMismatchError, match="more than once|duplicates"):
        da.rsembed.embed("clay-tiny", bands=["B02", "B02"], weights="random")
    unnamed = synthetic_raster((32, 32), bands=["B02", "B03"]).drop_vars("band")
    with pytest.raises(errors.BandMismatchError, match="not named"):
        unnamed.rsembed.embed("clay-tiny", weights="random")
    series = synthetic_raster((32, 32), bands=list(S2_BANDS), times=3, chunks={})
    with pytest.raises(errors.OptionError, match="one acquisition at a time.*isel"):
        series.rsembed.embed("clay-tiny", weights="random")  # refused at call time, before any pixel is read


def test_values_on_the_wrong_scale_are_refused():
    normalised = synthetic_raster((32, 32), bands=list(S2_BANDS)) / 10000.0
    with pytest.raises(errors.InputRangeError, match="10000"):
        normalised.chunk().rsembed.embed("clay-tiny", weights="random").compute()
    rng = np.random.default_rng(0)
    db = synthetic_raster((32, 32), bands=["VV", "VH"]).copy(data=rng.uniform(-25, -5, (2, 32, 32)).astype("f4"))
    assert np.isfinite(db.rsembed.embed("clay-tiny", weights="random").values).all()
    with pytest.raises(errors.InputRangeError, match="dB"):
        (10 ** (db / 10)).chunk().rsembed.embed("clay-tiny", weights="random").compute()  # linear power


def test_nodata_cells_are_nan_and_the_rest_unchanged_by_chunking(tiny_weights):
    da = synthetic_raster((72, 88), bands=list(S2_BANDS), seed=4).copy()
    da[:, :8, :8] = np.nan
    eager = da.rsembed.embed("clay-tiny", weights=tiny_weights).values
    assert np.isnan(eager[:, 0, 0]).all() and np.isfinite(eager[:, 1:, 1:]).all()
    for chunks in ({"y": 32, "x": 40}, {"y": 64, "x": 24}):
        lazy = da.chunk(chunks).rsembed.embed("clay-tiny", weights=tiny_weights)
        np.testing.assert_allclose(lazy.values, eager, atol=1e-5, equal_nan=True)


def test_an_xee_style_dataset_gives_the_same_embedding(tiny_weights):
    da = synthetic_raster((32, 32), bands=list(S2_BANDS), seed=6)
    ds = to_xee_dataset(da)  # adds a time step (2020-06-01) and keeps the CRS in attrs only
    from_ds = ds.rsembed.embed("clay-tiny", weights=tiny_weights)
    dated = da.expand_dims(time=np.array(["2020-06-01"], dtype="datetime64[ns]"))
    np.testing.assert_allclose(from_ds.values, dated.rsembed.embed("clay-tiny", weights=tiny_weights).values, atol=1e-5)


# -- the real scene ---------------------------------------------------------------------------------------


def test_real_sentinel2_scene_tile_and_resize():
    da = xrembed.open_raster(S2_SCENE).isel(y=slice(0, 100), x=slice(0, 100))
    emb = da.rsembed.embed("clay-tiny", weights="random")
    assert emb.shape == (64, math.ceil(100 / 8), math.ceil(100 / 8))
    t_in, t_out = da.rio.transform(recalc=True), emb.rio.transform()
    assert emb.rio.crs == da.rio.crs and emb.rio.crs.to_epsg() == 32629
    assert (t_out.a, t_out.e) == pytest.approx((t_in.a * 8, t_in.e * 8))
    assert (t_out.c, t_out.f) == pytest.approx((t_in.c, t_in.f))
    assert emb.attrs["bands"] == list(S2_BANDS) and emb.attrs["wavelengths_um"] == CLAY_S2_WAVES
    assert emb.attrs["plan_gsd_m"] == pytest.approx(100.0)  # the metadata the model read, as provenance
    assert np.isfinite(emb.values).all()
    resized = da.rsembed.embed("clay-tiny", weights="random", input_prep="resize")
    assert resized.shape == (64, 4, 4) and resized.rio.bounds() == pytest.approx(da.rio.bounds())
    pooled = da.rsembed.embed("clay-tiny", weights="random", output="pooled", input_prep="resize")
    assert pooled.shape == (64,) and np.isfinite(pooled.values).all()


def test_real_sentinel2_scene_metadata_and_chunk_invariance(monkeypatch):
    seen = spy_on_options(monkeypatch)
    da = xrembed.open_raster(S2_SCENE, chunks=None).isel(y=slice(100, 196), x=slice(40, 136))
    eager = da.rsembed.embed("clay-tiny", weights="random").values
    left, bottom, right, top = da.rio.bounds()
    lon, lat = Transformer.from_crs(da.rio.crs, "EPSG:4326", always_xy=True).transform((left + right) / 2, (bottom + top) / 2)
    assert seen["gsd_m"] == pytest.approx(100.0)  # the shared scene is resampled to 100 m
    assert seen["metadata"][4:] == pytest.approx(
        (math.sin(math.radians(lat)), math.cos(math.radians(lat)), math.sin(math.radians(lon)), math.cos(math.radians(lon)))
    )
    assert 24.0 < lat < 26.0 and -13.5 < lon < -11.0  # MGRS 29RKH, Western Sahara
    lazy = da.chunk({"y": 40, "x": 56}).rsembed.embed("clay-tiny", weights="random")
    np.testing.assert_allclose(lazy.values, eager, atol=1e-5, equal_nan=True)


def test_real_sentinel1_scene_through_the_radar_platform():
    """VV/VH alone are Clay's sentinel-1-rtc platform; the GCP-only scene is warped to its UTM zone."""
    from shared_paths import SHARED_DATA

    dn = xrembed.open_raster(SHARED_DATA / "S1A_IW_GRDH_1SDV_20180716T004042_FD5B" / "measurement", bands=["VV", "VH"])
    db = 10 * np.log10(dn.astype("float32") ** 2 / 1e6)  # uncalibrated amplitude DN as sigma0-like dB
    crop = db.isel(y=slice(300, 396), x=slice(500, 596))
    emb = crop.rsembed.embed("clay-tiny", weights="random")
    assert emb.attrs["bands"] == ["VV", "VH"] and emb.rio.crs.to_epsg() == 32643 and emb.shape == (64, 12, 12)
    assert emb.rio.transform().a == pytest.approx(crop.rio.transform(recalc=True).a * 8)
    assert np.isfinite(emb.compute().values).any()
    pooled = crop.rsembed.embed("clay-tiny", weights="random", output="pooled", input_prep="resize")
    assert pooled.shape == (64,) and np.isfinite(pooled.values).all()


def test_band_order_does_not_change_the_embedding(tiny_weights):
    """The kernel generator attends over the channels without positions: feeding them in another order (with
    their own wavelengths and statistics) gives the same tokens, as docs/models/clay.md says."""
    da = synthetic_raster((32, 32), bands=list(S2_BANDS), seed=8)
    forward = da.rsembed.embed("clay-tiny", weights=tiny_weights).values
    reversed_bands = list(reversed(S2_BANDS))
    backward = da.rsembed.embed("clay-tiny", weights=tiny_weights, bands=reversed_bands)
    assert backward.attrs["bands"] == reversed_bands
    np.testing.assert_allclose(backward.values, forward, atol=1e-4)
