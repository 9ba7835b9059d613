"""SatMAE fidelity (invariant 3) and input contract (invariant 4).

The reference (github.com/sustainlab-group/SatMAE) is GitHub-only code, so parity runs against goldens it
produced (``scripts/goldens_satmae.py --reference /path/to/SatMAE``): a small MAE in the official
pre-train file format and its encoder outputs, with the patch tokens put back in spatial order through
``ids_restore``.
"""

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
from affine import Affine

import xrembed
from xrembed import errors
from xrembed.models.base import Variant
from xrembed.models.registry import register_model
from xrembed.models.satmae import FMOW_MEAN, FMOW_STD, RGB_BANDS, SatMAE
from xrembed.models.weights import WeightsSource, load_module
from xrembed.testing import synthetic_raster


GOLDENS = Path(__file__).resolve().parents[1] / "goldens" / "satmae"
CHECKPOINT = GOLDENS / "mae_small_pretrain.pth"


@register_model
class SmallSatMAE(SatMAE):
    """The goldens' configuration: 32 px, patch 8, D=32, 2 blocks, 4 heads."""

    model_id = "satmae-small"
    aliases = ()
    variants = {"small": Variant(name="small", embed_dim=32, depth=2, num_heads=4, patch_size=8, image_size=32)}
    default_variant = "small"


def _outputs():
    return torch.load(GOLDENS / "mae_small_outputs.pt", weights_only=True)


def _rgb(shape=(32, 32), seed=0, **kwargs):
    return synthetic_raster(shape, bands=list(RGB_BANDS), seed=seed, **kwargs)


# -- fidelity ---------------------------------------------------------------------------------


def test_parity_with_reference_goldens():
    gold = _outputs()
    adapter = SmallSatMAE()
    module = load_module(adapter, WeightsSource(str(CHECKPOINT), "golden"))  # real format, strict after clean-up
    plan = adapter.plan_inputs(list(RGB_BANDS))
    x = gold["input"]
    with torch.no_grad():
        pooled = adapter.forward_pooled(module, x, plan)
        grid = adapter.forward_grid(module, x, plan)
    side = 32 // 8
    expected_grid = gold["patch_tokens_spatial"].transpose(1, 2).reshape(2, -1, side, side)
    assert (pooled - gold["cls"]).abs().max().item() <= 1e-4
    assert (pooled - gold["models_vit_cls"]).abs().max().item() <= 1e-4
    assert (grid - expected_grid).abs().max().item() <= 1e-4
    assert grid.shape == (2, 32, side, side)


def test_upstream_token_shuffle_is_not_copied():
    """The reference MAE encoder returns patch tokens in a random order even at mask ratio 0."""
    gold = _outputs()
    assert not torch.equal(gold["ids_restore"][0], torch.arange(16))  # the reference did shuffle
    module = load_module(SmallSatMAE(), WeightsSource(str(CHECKPOINT), "golden"))
    with torch.no_grad():
        tokens = module.forward_features(gold["input"])[:, 1:]
    assert (tokens - gold["patch_tokens_spatial"]).abs().max().item() <= 1e-4
    assert (tokens - gold["patch_tokens_shuffled"]).abs().max().item() > 1e-2


def test_official_file_format_loads_in_a_fresh_process():
    """``{'model', 'optimizer', 'epoch', 'scaler', 'args': Namespace}`` loads (argparse.Namespace allowed)."""
    code = textwrap.dedent(
        f"""
        import sys; sys.path.insert(0, {str(Path(__file__).parent)!r})
        from test_satmae import SmallSatMAE
        from xrembed.models.weights import WeightsSource, load_module
        load_module(SmallSatMAE(), WeightsSource({str(CHECKPOINT)!r}, "golden"))
        print("LOADED")
        """
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=Path(__file__).resolve().parents[2])
    assert "LOADED" in done.stdout, done.stderr[-2000:]


def test_checkpoint_keys_and_clean_up():
    raw = torch.load(CHECKPOINT, weights_only=False)
    assert {"model", "optimizer", "epoch", "args"} <= set(raw)
    state = raw["model"]
    assert {"mask_token", "decoder_embed.weight", "decoder_pred.weight", "decoder_pos_embed"} <= set(state)
    cleaned = SmallSatMAE().clean_state_dict(state)
    assert set(cleaned) == set(SmallSatMAE().build_module().state_dict())
    # the stored (perturbed) pos_embed is what the model uses
    module = load_module(SmallSatMAE(), WeightsSource(str(CHECKPOINT), "golden"))
    assert torch.equal(module.pos_embed, state["pos_embed"])


def test_unknown_and_missing_keys_are_refused(tmp_path):
    state = torch.load(CHECKPOINT, weights_only=False)["model"]
    extra = dict(state, **{"blocks.0.attn.q_norm.weight": torch.ones(8)})
    torch.save(extra, tmp_path / "extra.pth")
    with pytest.raises(errors.WeightsError, match="unexpected"):
        load_module(SmallSatMAE(), WeightsSource(str(tmp_path / "extra.pth"), "t"))
    missing = {k: v for k, v in state.items() if k != "norm.weight"}
    torch.save(missing, tmp_path / "missing.pth")
    with pytest.raises(errors.WeightsError, match="missing"):
        load_module(SmallSatMAE(), WeightsSource(str(tmp_path / "missing.pth"), "t"))


def test_real_size_keys_shapes_and_parameter_count_match_the_reference():
    reference = json.loads((GOLDENS / "mae_vit_large_keys.json").read_text())  # mae_vit_large_patch16 (MAE)
    encoder = {k: tuple(v) for k, v in reference.items() if not k.startswith(("decoder_", "mask_token"))}
    ours = SatMAE("large").build_module()
    shapes = {k: tuple(v.shape) for k, v in ours.state_dict().items()}
    assert shapes == encoder
    assert len(shapes) == 294
    assert sum(p.numel() for p in ours.parameters()) == sum(int(np.prod(s)) for s in encoder.values())
    assert shapes["patch_embed.proj.weight"] == (1024, 3, 16, 16) and shapes["pos_embed"] == (1, 197, 1024)


# -- through the accessor ---------------------------------------------------------------------


def test_accessor_one_tile_reproduces_the_module():
    """32 px raster = one tile: grid = normed patch tokens, resize pooled = CLS, tile pooled = token mean."""
    da = _rgb((32, 32), seed=3)
    kw = dict(weights=str(CHECKPOINT))
    grid = da.rsembed.embed("satmae-small", **kw)
    pooled_resize = da.rsembed.embed("satmae-small", output="pooled", input_prep="resize", **kw)
    pooled_tile = da.rsembed.embed("satmae-small", output="pooled", input_prep="tile", **kw)

    module = load_module(SmallSatMAE(), WeightsSource(str(CHECKPOINT), "golden"))
    mean = torch.tensor(FMOW_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(FMOW_STD).view(1, 3, 1, 1)
    x = (torch.clamp(torch.from_numpy(da.values)[None] / 10000, 0, 1) - mean) / std
    with torch.no_grad():
        tokens = module.forward_features(x)
    np.testing.assert_allclose(grid.values, tokens[0, 1:].T.reshape(32, 4, 4).numpy(), atol=1e-5)
    np.testing.assert_allclose(pooled_resize.values, tokens[0, 0].numpy(), atol=1e-5)
    np.testing.assert_allclose(pooled_tile.values, tokens[0, 1:].mean(0).numpy(), atol=1e-5)
    assert grid.attrs["bands"] == list(RGB_BANDS)


def test_real_sentinel2_scene_tile_and_resize(s2_scene):
    da = xrembed.open_raster(s2_scene).isel(y=slice(0, 300), x=slice(0, 300))
    with pytest.warns(errors.RandomWeightsWarning):
        grid = da.rsembed.embed("satmae", weights="random", input_prep="tile")
    assert grid.shape == (1024, 19, 19)
    assert grid.rio.crs == da.rio.crs
    assert grid.rio.transform() == da.rio.transform() * Affine.scale(16)
    with pytest.warns(errors.RandomWeightsWarning):
        pooled = da.rsembed.embed("satmae", weights="random", output="pooled", input_prep="resize")
    values = pooled.values
    assert values.shape == (1024,) and np.isfinite(values).all()
    assert np.isfinite(grid.values).all()


def test_band_order_and_spelling_do_not_matter():
    da = synthetic_raster((32, 32), bands=["B02", "B08", "B04", "B03"], seed=5)
    expected = da.sel(band=list(RGB_BANDS)).rsembed.embed("satmae-small", weights=str(CHECKPOINT)).values
    np.testing.assert_array_equal(da.rsembed.embed("satmae-small", weights=str(CHECKPOINT)).values, expected)
    ee = da.assign_coords(band=["B2", "B8", "B4", "B3"])
    np.testing.assert_array_equal(ee.rsembed.embed("satmae-small", weights=str(CHECKPOINT)).values, expected)


# -- input contract ---------------------------------------------------------------------------


def test_missing_band_raised_at_embed_time():
    da = synthetic_raster((32, 32), bands=["B04", "B03", "B08"]).chunk()
    with pytest.raises(errors.BandMismatchError, match="B02"):
        da.rsembed.embed("satmae-small", weights="random")


def test_wrong_channel_count_and_foreign_bands():
    adapter = SatMAE()
    with pytest.raises(errors.BandMismatchError, match="exactly 3"):
        adapter.plan_inputs(["B04", "B03"], bands=["B04", "B03"])
    with pytest.raises(errors.BandMismatchError, match="B04"):
        adapter.plan_inputs(["B08", "B04", "B03"], bands=["B08", "B04", "B03"])
    with pytest.raises(errors.BandMismatchError, match="Sentinel-1"):
        adapter.plan_inputs(["VV", "VH", "B04"], bands=["VV", "VH", "B04"])
    unnamed = _rgb().drop_vars("band")
    with pytest.raises(errors.BandMismatchError, match="bands="):
        unnamed.rsembed.embed("satmae-small", weights="random")
    four = synthetic_raster((32, 32), bands=["B04", "B03", "B02", "B08"]).drop_vars("band")
    with pytest.raises(errors.BandMismatchError):
        four.rsembed.embed("satmae-small", bands=["B04", "B03", "B02"], weights="random")


def test_unnamed_rgb_with_bands_argument_works():
    da = _rgb(seed=2)
    named = da.rsembed.embed("satmae-small", weights=str(CHECKPOINT)).values
    unnamed = da.drop_vars("band").rsembed.embed("satmae-small", bands=["B04", "B03", "B02"], weights=str(CHECKPOINT))
    np.testing.assert_array_equal(unnamed.values, named)


def test_modality_and_wavelengths_are_refused():
    da = _rgb()
    with pytest.raises(errors.OptionError, match="modality"):
        da.rsembed.embed("satmae-small", modality="s1", weights="random")
    with pytest.raises(errors.OptionError, match="wavelengths"):
        da.rsembed.embed("satmae-small", wavelengths=[0.665, 0.56, 0.49], weights="random")


def test_normalised_reflectance_is_rejected_at_compute_time():
    da = _rgb() / 10000.0
    emb = da.chunk().rsembed.embed("satmae-small", weights=str(CHECKPOINT))  # lazy: metadata is fine
    with pytest.raises(errors.InputRangeError, match="10000"):
        emb.compute()
    with pytest.raises(errors.InputRangeError):
        da.rsembed.embed("satmae-small", weights=str(CHECKPOINT))  # eager: at once


def test_offline_official_download_names_the_path_fix(tmp_path, monkeypatch):
    monkeypatch.setenv("XREMBED_CACHE", str(tmp_path))  # nothing cached; tests run offline
    with pytest.raises(errors.WeightsError, match="zenodo.org.*weights='/path/to/fmow_pretrain.pth'"):
        _rgb().rsembed.embed("satmae")


def test_describe_gives_the_contract():
    info = xrembed.describe_model("satmae")
    assert info["bands"] == ["B04", "B03", "B02"]
    assert (info["image_size"], info["patch_size"], info["embed_dim"]) == (224, 16, 1024)
    assert info["normalisation"]["mean"] == list(FMOW_MEAN) and info["normalisation"]["std"] == list(FMOW_STD)
    assert info["weights"] == "https://zenodo.org/record/7369797/files/fmow_pretrain.pth"
    assert "weights='/path/to/fmow_pretrain.pth'" in info["weights_note"]
    assert "CC BY-NC 4.0" in info["licence"] and "non-commercial" in info["licence"]
    assert set(info["outputs"]) == {"grid", "pooled"} and "10000" in info["input_values"]
