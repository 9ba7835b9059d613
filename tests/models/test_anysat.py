"""AnySat fidelity (invariant 3), time and patch-size handling, and input contract (invariant 4).

The reference (github.com/gastruc/AnySat, MIT) is GitHub-only code whose hub entry point drags in its
training stack, so it is not importable here: ``scripts/goldens_anysat.py`` ran its ``hubconf.AnySat`` once
on a small configuration (the release's layout with every modality's projector; D=64, 2 blocks, 4 heads)
with seeded random weights and stored its state dict, Sentinel-2 series, day numbers and outputs
(``output='patch'`` and ``'tile'``) in ``tests/goldens/anysat/``, with the released ``base`` key set, shapes
and parameter count. These tests load that state dict strictly into our module and compare.
"""

import datetime as dt
import json
from pathlib import Path

import numpy as np
import pytest
import torch

import xrembed
from xrembed import errors
from xrembed.models.anysat import S2_BANDS, S2_MEAN, S2_STD, AnySat, day_of_year
from xrembed.models.base import InputContext, InputPlan, Variant
from xrembed.models.registry import register_model
from xrembed.models.weights import WeightsSource, load_module
from xrembed.testing import synthetic_raster, to_xee_dataset, write_official_checkpoint

GOLDENS = Path(__file__).resolve().parents[1] / "goldens" / "anysat"
META = json.loads((GOLDENS / "meta.json").read_text())
CASES = torch.load(GOLDENS / "cases.pt", weights_only=True)
TOL = 1e-4


def _tiny(name: str, patch_m: int, image: int) -> Variant:
    return Variant(name=name, embed_dim=64, depth=2, num_heads=4, patch_size=patch_m // 10, image_size=image,
                   extra=(("patch_size_m", patch_m),))


@register_model
class TinyAnySat(AnySat):
    """The goldens' configuration (D=64, 2 blocks, 4 heads) at three patch sizes (test only)."""

    model_id = "anysat-tiny"
    aliases = ()
    variants = {
        "p10": _tiny("p10", 10, 6),  # 6 x 6 patches of 1 px
        "p20": _tiny("p20", 20, 8),  # 4 x 4 patches of 2 px
        "p40": _tiny("p40", 40, 16),  # 4 x 4 patches of 4 px
        "d32": Variant(name="d32", embed_dim=32, depth=2, num_heads=4, patch_size=2, image_size=8,
                       extra=(("patch_size_m", 20),)),  # another width: the goldens must not load into it
    }
    default_variant = "p20"


VARIANT_OF = {10: "p10", 20: "p20", 40: "p40"}


@pytest.fixture(scope="module")
def golden_weights(tmp_path_factory):
    """The reference's own state dict as float32, saved the way the release is: ``{'state_dict': ...}``."""
    state = torch.load(GOLDENS / "tiny_state_dict.pt", weights_only=True)
    path = tmp_path_factory.mktemp("anysat") / "AnySat-tiny.pth"
    torch.save({"state_dict": {k: v.float() for k, v in state.items()}}, path)
    return str(path)


@pytest.fixture(scope="module")
def tiny_module(golden_weights):
    return load_module(TinyAnySat(), WeightsSource(golden_weights, "goldens"))


def _plan(days) -> InputPlan:
    return InputPlan(bands=S2_BANDS, options=(("scale", "reflectance"), ("days", tuple(int(d) for d in days))))


def test_goldens_match_the_recorded_configuration():
    assert META["tiny"] == {"embed_dim": 64, "depth": 2, "num_heads": 4}
    assert set(CASES) == {"single_date_p20", "series_p20", "series_p40", "series_p10"}
    assert sum(p.stat().st_size for p in GOLDENS.iterdir()) < 2_000_000


@pytest.mark.parametrize("name", sorted(CASES))
def test_parity_with_the_reference(name, tiny_module):
    """The network on the reference's inputs, and the adapter on each sample with its own dates."""
    case = CASES[name]
    x, days, patch_m = case["input"].float(), case["days"], case["patch_size_m"]
    batch, frames, channels, side, _ = x.shape
    with torch.no_grad():
        tokens = tiny_module(x, days.float(), patch_m // 10)
    n = side // (patch_m // 10)
    grid_diff = (tokens[:, 1:].reshape(batch, n, n, -1) - case["grid"]).abs().max().item()
    tile_diff = (tokens[:, 0] - case["tile"]).abs().max().item()
    print(f"anysat {name}: max |grid diff| {grid_diff:.2e}, max |tile diff| {tile_diff:.2e}")
    assert grid_diff <= TOL and tile_diff <= TOL
    adapter = TinyAnySat(VARIANT_OF[patch_m])
    for i in range(batch):
        folded = x[i : i + 1].reshape(1, frames * channels, side, side)
        with torch.no_grad():
            grid = adapter.forward_grid(tiny_module, folded, _plan(days[i]))
            pooled = adapter.forward_pooled(tiny_module, folded, _plan(days[i]))
        assert grid.shape == (1, 64, n, n) and pooled.shape == (1, 64)
        assert (grid[0] - case["grid"][i].permute(2, 0, 1)).abs().max() <= TOL
        assert (pooled[0] - case["tile"][i]).abs().max() <= TOL


def test_pixel_chunks_of_the_temporal_encoder_change_nothing(tiny_module, monkeypatch):
    from xrembed.models import anysat_net

    case = CASES["series_p20"]
    monkeypatch.setattr(anysat_net, "LTAE_CHUNK", 7)  # 1 pixel (4 dates) per chunk, instead of all at once
    with torch.no_grad():
        tokens = tiny_module(case["input"].float(), case["days"].float(), 2)
    assert (tokens[:, 0] - case["tile"]).abs().max() <= TOL


def test_dates_and_patch_size_matter(tiny_module):
    """A wrong date or a wrong patch size would be caught: both change the output well beyond TOL."""
    case = CASES["series_p20"]
    x = case["input"][:1].float().reshape(1, -1, 8, 8)
    adapter = TinyAnySat("p20")
    with torch.no_grad():
        right = adapter.forward_pooled(tiny_module, x, _plan(case["days"][0]))
        shifted = adapter.forward_pooled(tiny_module, x, _plan(case["days"][0] + 1))
        other_patch = TinyAnySat("p40").forward_pooled(tiny_module, torch.nn.functional.pad(x, (0, 8, 0, 8)), _plan(case["days"][0]))
    assert (right - case["tile"][0]).abs().max() <= TOL
    assert (shifted - right).abs().max() > 10 * TOL
    assert (other_patch - right).abs().max() > 10 * TOL


def _dates(days, year=2021):
    return np.array([np.datetime64(dt.date(year, 1, 1) + dt.timedelta(days=int(d) - 1)) for d in days], dtype="datetime64[ns]")


def test_accessor_reproduces_the_reference_through_the_documented_normalisation(golden_weights):
    """One tile of a dated series through the accessor (normalisation, dates, engine) gives the reference's
    patch grid, and its tile vector in resize mode."""
    for name in ("series_p20", "single_date_p20", "series_p40"):
        case = CASES[name]
        x, days, patch_m = case["input"][0].double().numpy(), case["days"][0], case["patch_size_m"]
        frames, _, side, _ = x.shape
        raw = x * np.array(S2_STD)[None, :, None, None] + np.array(S2_MEAN)[None, :, None, None]
        da = synthetic_raster((side, side), bands=list(S2_BANDS), times=frames)
        da = da.copy(data=raw.astype(np.float32)).assign_coords(time=_dates(days))
        assert [day_of_year(str(t)) for t in da.time.values.astype("datetime64[D]")] == days.tolist()
        kw = {"weights": golden_weights, "variant": VARIANT_OF[patch_m]}
        grid = da.rsembed.embed("anysat-tiny", **kw)
        expected = case["grid"][0].permute(2, 0, 1).numpy()
        np.testing.assert_allclose(grid.values, expected, atol=TOL, err_msg=name)
        pooled = da.rsembed.embed("anysat-tiny", output="pooled", input_prep="resize", **kw)
        np.testing.assert_allclose(pooled.values, case["tile"][0].numpy(), atol=TOL, err_msg=name)
        # tile mode: the valid-pixel-weighted mean of the grid tokens (documented; not the class token)
        tiled = da.rsembed.embed("anysat-tiny", output="pooled", input_prep="tile", **kw)
        np.testing.assert_allclose(tiled.values, expected.mean(axis=(1, 2)), atol=TOL, err_msg=name)
        assert "time" not in grid.dims and grid.attrs["bands"] == list(S2_BANDS)


def test_day_of_year_is_the_loaders_one_based_number():
    assert day_of_year("2021-01-01") == 1 and day_of_year("2021-12-31") == 365
    assert day_of_year("2020-12-31T10:00:00") == 366  # leap year
    context = InputContext(resolution_m=10.0, center_lonlat=(0.0, 45.0), times=("2020-02-19", "2020-07-01"))
    plan = AnySat().plan_inputs(list(S2_BANDS), context=context)
    assert plan.option("days") == (50, 183) and plan.bands == S2_BANDS


@pytest.mark.parametrize("variant", ["base", "base-10m", "base-20m", "base-80m"])
def test_real_size_keys_shapes_and_parameter_count_match_the_reference(variant):
    expected = META["real_size"]["base"]
    with torch.device("meta"):
        ours = AnySat(variant).build_module()
    shapes = {k: list(v.shape) for k, v in ours.state_dict().items()}
    assert shapes == expected["shapes"]
    count = sum(p.numel() for p in ours.parameters())
    assert count == expected["parameters"] == 125_905_447
    assert shapes["projector_s2.patch_embed.inconv.0.weight"] == [96, 10]
    assert shapes["projector_s2.patch_embed.attention_heads.Q"] == [16, 8]
    assert shapes["spatial_encoder.predictor_blocks.5.attn.rpe_k.lookup_table_weight"] == [1, 64, 8]
    assert shapes["blocks.6.attn.q_learned"] == [1, 1, 768] and "blocks.7.norm1.weight" not in shapes
    assert {k.split(".")[0] for k in shapes if k.startswith("projector_")} == {
        f"projector_{m}" for m in ("aerial", "aerial-flair", "alos", "l7", "l8", "modis", "naip", "s1", "s1-asc", "s2", "spot")
    }


def test_release_layout_loads_strictly_and_refuses_mismatches(golden_weights, tmp_path):
    state = torch.load(golden_weights, weights_only=True)["state_dict"]
    loaded = load_module(TinyAnySat(), WeightsSource(golden_weights, "t"))
    for key, tensor in state.items():
        assert torch.equal(loaded.state_dict()[key], tensor), key
    without_aerial = {k: v for k, v in state.items() if not k.startswith("projector_aerial.")}
    extra = dict(state, **{"projector_planet.patch_embed.weight": torch.zeros(64, 4, 10, 10)})
    for name, bad, match in (("missing", without_aerial, "missing .*projector_aerial"), ("extra", extra, "unexpected")):
        path = tmp_path / f"{name}.pth"
        torch.save({"state_dict": bad}, path)
        with pytest.raises(errors.WeightsError, match=match):
            load_module(TinyAnySat(), WeightsSource(str(path), "t"))
    with pytest.raises(errors.WeightsError, match="wrong shape"):
        load_module(TinyAnySat("d32"), WeightsSource(golden_weights, "t"))


def test_official_layout_writer_round_trips(tmp_path):
    path = tmp_path / "AnySat.pth"
    module = write_official_checkpoint(path, TinyAnySat())
    raw = torch.load(path, weights_only=True)
    assert set(raw) == {"state_dict"} and "projector_spot.patch_embed.weight" in raw["state_dict"]
    loaded = load_module(TinyAnySat(), WeightsSource(str(path), "t"))
    for (key, a), b in zip(module.state_dict().items(), loaded.state_dict().values()):
        assert torch.equal(a, b), key


# -- contract ---------------------------------------------------------------------------------------------


def test_describe_model_gives_the_contract():
    info = xrembed.describe_model("anysat")
    assert (info["model"], info["variant"]) == ("anysat", "base")
    assert info["variants"] == ["base", "base-10m", "base-20m", "base-80m"]
    assert info["bands"] == list(S2_BANDS) and "B01" not in info["bands"]
    assert info["wavelengths_um"][0] == pytest.approx(0.49, abs=0.01)
    assert (info["patch_size"], info["image_size"], info["embed_dim"]) == (4, 128, 768)
    assert (info["patch_size_m"], info["pixel_size_m"]) == (40, 10)
    assert xrembed.describe_model("anysat", variant="base-10m")["patch_size"] == 1
    assert xrembed.describe_model("anysat", variant="base-80m")["image_size"] == 256
    assert info["weights"] == "hf://g-astruc/AnySat/models/AnySat.pth"
    assert "MIT" in info["licence"] and "unverified" in info["licence"]
    assert info["normalisation"]["mean"]["B02"] == pytest.approx(4304.33, abs=0.01)
    assert "TreeSatAI" in info["normalisation"]["statistics"]
    assert info["temporal"]["requires_time_coordinate"] is True and "1 for 1 January" in info["temporal"]["date_encoding"]
    assert set(info["outputs"]) == {"grid", "pooled"}
    assert info["default_sensors"]["s2"]["collection"] == "COPERNICUS/S2_SR_HARMONIZED"
    assert info["default_sensors"]["s2"]["bands"] == ("B2", "B3", "B4", "B5", "B6", "B7", "B8", "B8A", "B11", "B12")


def test_bands_are_picked_by_name():
    shuffled = ["B12", "B01", "B8A", "B02", "B03", "B04", "B11", "B05", "B09", "B06", "B07", "B08"]
    dated = synthetic_raster((8, 8), bands=shuffled, times=2, seed=3)
    a = dated.rsembed.embed("anysat-tiny", weights="random").values
    b = dated.sel(band=list(S2_BANDS)).rsembed.embed("anysat-tiny", weights="random").values
    np.testing.assert_array_equal(a, b)
    assert AnySat().plan_inputs(shuffled, bands=list(reversed(S2_BANDS)), context=_context()).bands == S2_BANDS


def _context(times=("2020-06-15",)):
    return InputContext(resolution_m=10.0, center_lonlat=(0.0, 45.0), times=times)


def test_bad_requests_name_the_fix():
    dated = synthetic_raster((8, 8), bands=list(S2_BANDS), times=1)
    with pytest.raises(errors.OptionError, match="expand_dims"):
        dated.isel(time=0).rsembed.embed("anysat-tiny", weights="random")
    undated = dated.assign_coords(time=np.array(["NaT"], dtype="datetime64[ns]"))
    with pytest.raises(errors.OptionError, match="missing date"):
        undated.rsembed.embed("anysat-tiny", weights="random")
    with pytest.raises(errors.OptionError, match="modality='s2'"):
        dated.rsembed.embed("anysat-tiny", modality="s1", weights="random")
    with pytest.raises(errors.OptionError, match="wavelengths"):
        dated.rsembed.embed("anysat-tiny", wavelengths=[0.5] * 10, weights="random")
    with pytest.raises(errors.BandMismatchError, match="lacks .*B8A"):
        dated.sel(band=["B02", "B03", "B04"]).rsembed.embed("anysat-tiny", weights="random")
    with pytest.raises(errors.BandMismatchError, match="exactly 10 bands"):
        AnySat().plan_inputs(list(S2_BANDS), bands=["B02", "B03", "B04"], context=_context())
    with pytest.raises(errors.UnknownModelError, match="base-20m"):
        dated.rsembed.embed("anysat", variant="base-30m", weights="random")


def test_values_on_the_wrong_scale_are_refused():
    normalised = synthetic_raster((8, 8), bands=list(S2_BANDS), times=1) / 10000.0
    with pytest.raises(errors.InputRangeError, match="10000"):
        normalised.chunk().rsembed.embed("anysat-tiny", weights="random").compute()


def test_dates_change_the_embedding_through_the_accessor():
    da = synthetic_raster((8, 8), bands=list(S2_BANDS), times=1, seed=2)
    winter = da.rsembed.embed("anysat-tiny", output="pooled", input_prep="resize", weights="random").values
    summer = da.assign_coords(time=[np.datetime64("2020-07-15")])
    summer = summer.rsembed.embed("anysat-tiny", output="pooled", input_prep="resize", weights="random").values
    assert np.abs(winter - summer).max() > 1e-3


def test_nodata_cells_are_nan_and_the_rest_chunk_invariant():
    da = synthetic_raster((20, 28), bands=list(S2_BANDS), times=3, seed=4).copy()
    da[:, :, :2, :2] = np.nan  # one whole 2 x 2 px patch, every date
    eager = da.rsembed.embed("anysat-tiny", weights="random").values
    assert eager.shape == (64, 10, 14)
    assert np.isnan(eager[:, 0, 0]).all() and np.isfinite(eager[:, 1:, 1:]).all()
    for chunks in ({"y": 8, "x": 16}, {"y": 16, "x": 8, "time": 1}):
        lazy = da.chunk(chunks).rsembed.embed("anysat-tiny", weights="random")
        np.testing.assert_allclose(lazy.values, eager, atol=1e-5, equal_nan=True)


def test_an_xee_style_dataset_reads_its_time_dimension():
    da = synthetic_raster((8, 8), bands=list(S2_BANDS), times=2, seed=6)
    ds = to_xee_dataset(da)  # one variable per band, dims (time, y, x), CRS only in attrs
    from_ds = ds.rsembed.embed("anysat-tiny", weights="random")
    from_da = da.rsembed.embed("anysat-tiny", weights="random")
    assert from_ds.dims == ("embedding", "y", "x")
    np.testing.assert_allclose(from_ds.values, from_da.values, atol=1e-6)
    assert from_ds.attrs["bands"] == list(S2_BANDS)


# -- the real scene ---------------------------------------------------------------------------------------


def test_real_sentinel2_scene_tile_and_resize(s2_scene):
    da = xrembed.open_raster(s2_scene).isel(y=slice(0, 50), x=slice(0, 42))
    da = da.expand_dims(time=[np.datetime64("2020-02-19")])
    emb = da.rsembed.embed("anysat-tiny", weights="random")
    assert emb.shape == (64, 25, 21) and emb.attrs["bands"] == list(S2_BANDS)
    t_in, t_out = da.rio.transform(recalc=True), emb.rio.transform()
    assert emb.rio.crs == da.rio.crs
    assert (t_out.a, t_out.e) == pytest.approx((t_in.a * 2, t_in.e * 2))
    assert (t_out.c, t_out.f) == pytest.approx((t_in.c, t_in.f))
    assert np.isfinite(emb.values).all()
    chunked = da.chunk({"y": 16, "x": 24}).rsembed.embed("anysat-tiny", weights="random")
    np.testing.assert_allclose(chunked.values, emb.values, atol=1e-5)
    resized = da.rsembed.embed("anysat-tiny", variant="p40", weights="random", input_prep="resize")
    assert resized.shape == (64, 4, 4) and resized.rio.bounds() == pytest.approx(da.rio.bounds())
    pooled = da.rsembed.embed("anysat-tiny", weights="random", output="pooled", input_prep="resize")
    assert pooled.shape == (64,) and np.isfinite(pooled.values).all()
