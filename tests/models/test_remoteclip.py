"""RemoteCLIP fidelity (invariant 3): parity with open_clip's CLIP image tower on identical random weights,
strict loading of the official (whole-CLIP) key layout, real-size key sets and parameter counts, the RGB
input contract, and the accessor on the real Sentinel-2 scene."""


import numpy as np
import pytest
import torch
from affine import Affine

import xrembed
import xrembed.embedding
from xrembed import errors
from xrembed.models.remoteclip import CLIP_MEAN, CLIP_STD, DEFAULT_BANDS, RemoteCLIP
from xrembed.models.weights import WeightsSource, load_module
from xrembed.testing import synthetic_raster, write_official_checkpoint

from oracles import import_torchvision_cpu_safe


OPEN_CLIP_NAMES = {"vit_b32": "ViT-B-32", "vit_l14": "ViT-L-14"}



def open_clip_module():
    try:
        import_torchvision_cpu_safe()
        import open_clip
    except Exception as err:  # pragma: no cover - depends on the test environment
        pytest.skip(f"open_clip reference unavailable: {err}")
    return open_clip


def reference_clip(variant: str, seed: int):
    """open_clip's whole CLIP for ``variant``, every image-tower weight given a non-trivial random value
    (the LayerNorms and biases start at 1 and 0)."""
    open_clip = open_clip_module()
    torch.manual_seed(seed)
    model = open_clip.create_model(OPEN_CLIP_NAMES[variant]).eval()
    with torch.no_grad():
        for param in model.visual.parameters():
            param.add_(torch.randn_like(param) * 0.02)
    return model


def reference_outputs(model, x):
    """open_clip's ``encode_image`` and its ``output_tokens=True`` patch tokens as ``(B, D, h, w)``."""
    with torch.no_grad():
        pooled = model.encode_image(x)
        model.visual.output_tokens = True
        try:
            _, tokens = model.visual(x)
        finally:
            model.visual.output_tokens = False
    side = model.visual.grid_size[0]
    return pooled, tokens.transpose(1, 2).reshape(x.shape[0], -1, side, side)


def uint8_clip_input(raw: np.ndarray) -> torch.Tensor:
    """The documented preprocessing written independently: uint8 cast, ToTensor (/255), CLIP Normalize."""
    eight_bit = (np.clip(raw / 10000.0, 0, 1) * 255).astype(np.uint8)
    x = torch.from_numpy(eight_bit.astype(np.float32) / 255.0)
    mean = torch.tensor(CLIP_MEAN).view(-1, 1, 1)
    std = torch.tensor(CLIP_STD).view(-1, 1, 1)
    return ((x - mean) / std)[None]


# -- fidelity ----------------------------------------------------------------------------------


@pytest.mark.parametrize("variant", ["vit_b32", "vit_l14"])
def test_official_layout_real_size_keys_parameters_and_parity(variant, tmp_path):
    """The whole open_clip CLIP state dict (RemoteCLIP's file layout) loads strictly after the clean-up;
    the image tower's keys, shapes and parameter count are open_clip's; outputs match to 1e-4."""
    reference = reference_clip(variant, seed=1)
    adapter = RemoteCLIP(variant)
    if variant == "vit_b32":  # through a file, as the engine loads it
        path = tmp_path / f"RemoteCLIP-{OPEN_CLIP_NAMES[variant]}.pt"
        torch.save(reference.state_dict(), path)  # what open_clip's strict load_state_dict accepts
        ours = load_module(adapter, WeightsSource(str(path), "test"))
    else:  # the same clean-up and strict load in memory (a 1.7 GB file is not worth writing)
        ours = adapter.build_module().eval()
        ours.load_state_dict(adapter.clean_state_dict(reference.state_dict()), strict=True)

    shapes = lambda sd: {k: tuple(v.shape) for k, v in sd.items()}  # noqa: E731
    visual = {k[len("visual.") :]: v for k, v in reference.state_dict().items() if k.startswith("visual.")}
    assert shapes(ours.state_dict()) == shapes(visual)
    count = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
    assert count(ours) == count(reference.visual)
    expected_count = {"vit_b32": 87_849_216, "vit_l14": 303_966_208}[variant]
    assert count(ours) == expected_count
    assert shapes(visual)["proj"] == (adapter.variant.embed_dim, adapter.pooled_dim)

    batch = 2 if variant == "vit_b32" else 1  # a real-size L/14 forward takes a few seconds on CPU
    x = torch.randn(batch, 3, 224, 224)
    expected_pooled, expected_grid = reference_outputs(reference, x)
    plan = adapter.plan_inputs(list(DEFAULT_BANDS))
    with torch.no_grad():
        pooled = adapter.forward_pooled(ours, x, plan)
        grid = adapter.forward_grid(ours, x, plan)
    side = 224 // adapter.variant.patch_size
    assert grid.shape == (batch, adapter.variant.embed_dim, side, side)
    assert pooled.shape == (batch, adapter.pooled_dim)
    assert (pooled - expected_pooled).abs().max().item() <= 1e-4
    assert (grid - expected_grid).abs().max().item() <= 1e-4


def test_grid_layout_matches_open_clip_forward_intermediates(tmp_path):
    """Our (D, y, x) grid is open_clip's NCHW last-block map with ln_post applied (row-major patches)."""
    reference = reference_clip("vit_b32", seed=5)
    path = tmp_path / "w.pt"
    torch.save(reference.state_dict(), path)
    adapter = RemoteCLIP()
    ours = load_module(adapter, WeightsSource(str(path), "test"))
    x = torch.randn(1, 3, 224, 224)
    with torch.no_grad():
        out = reference.visual.forward_intermediates(x, indices=1, normalize_intermediates=True)
        grid = adapter.forward_grid(ours, x, adapter.plan_inputs(list(DEFAULT_BANDS)))
    expected = out["image_intermediates"][-1]
    assert expected.shape == grid.shape == (1, 768, 7, 7)
    assert (grid - expected).abs().max().item() <= 1e-4
    # the tile-mode pooled head is proj of the (mean) ln_post token
    mean = grid.mean(dim=(2, 3))
    torch.testing.assert_close(adapter.pool_tokens(ours, mean, None), mean @ reference.visual.proj)


def test_open_clip_builds_exact_gelu():
    """RemoteCLIP's official loader uses the plain ``ViT-B-32`` config: exact GELU, not QuickGELU."""
    open_clip = open_clip_module()
    model = open_clip.create_model("ViT-B-32")
    assert type(model.visual.transformer.resblocks[0].mlp.gelu) is torch.nn.GELU
    ours = RemoteCLIP().build_module()
    assert type(ours.transformer.resblocks[0].mlp.gelu) is torch.nn.GELU
    assert ours.ln_pre.eps == model.visual.ln_pre.eps == 1e-5


# -- weights and key clean-up (no open_clip needed) ---------------------------------------------


def write_official_layout(path, variant="vit_b32", seed=0, mutate=None):
    """A whole-CLIP state dict in open_clip's layout (``visual.*``, text tower, logit_scale), through
    ``xrembed.testing.write_official_checkpoint``; ``mutate`` edits the state dict before it is saved."""
    module = write_official_checkpoint(path, "remoteclip", variant, seed=seed)
    if mutate is not None:
        state = torch.load(path, weights_only=True)
        mutate(state)
        torch.save(state, path)
    return module


def test_clean_up_drops_the_text_tower_and_loads_strictly(tmp_path):
    path = tmp_path / "RemoteCLIP-ViT-B-32.pt"
    written = write_official_layout(path)
    loaded = load_module(RemoteCLIP(), WeightsSource(str(path), "test"))
    x = torch.randn(1, 3, 224, 224)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), written(x))
    # an image tower saved on its own (no "visual." prefix) loads too
    torch.save(written.state_dict(), tmp_path / "visual_only.pt")
    load_module(RemoteCLIP(), WeightsSource(str(tmp_path / "visual_only.pt"), "test"))


@pytest.mark.parametrize(
    "mutate, match",
    [
        (lambda s: s.pop("visual.proj"), "missing"),
        (lambda s: s.__setitem__("visual.attnpool.weight", torch.zeros(3)), "unexpected"),
        (lambda s: s.__setitem__("bogus_head.weight", torch.zeros(3)), "unexpected"),
        (lambda s: s.__setitem__("visual.proj", torch.zeros(768, 768)), "wrong shape"),
    ],
)
def test_unknown_missing_or_misshaped_keys_are_refused(tmp_path, mutate, match):
    path = tmp_path / "bad.pt"
    write_official_layout(path, mutate=mutate)
    with pytest.raises(errors.WeightsError, match=match):
        load_module(RemoteCLIP(), WeightsSource(str(path), "test"))


def test_wrong_variant_checkpoint_names_the_fix(tmp_path):
    path = tmp_path / "b32.pt"
    write_official_layout(path)
    with pytest.raises(errors.WeightsError, match="variant"):
        load_module(RemoteCLIP("vit_l14"), WeightsSource(str(path), "test"))


# -- preprocessing and the input contract --------------------------------------------------------


def test_normalise_is_a_uint8_cast_then_clip_normalize():
    adapter = RemoteCLIP()
    plan = adapter.plan_inputs(list(DEFAULT_BANDS))
    rng = np.random.default_rng(0)
    raw = rng.uniform(0, 12000, (3, 16, 16)).astype(np.float32)
    raw[0, 0, 0] = 10000 * 100.9 / 255  # 100.9 on the 8-bit scale: the cast truncates to 100
    ours = adapter.normalise(torch.from_numpy(raw)[None], plan)
    torch.testing.assert_close(ours, uint8_clip_input(raw), atol=1e-6, rtol=0)
    assert ours[0, 0, 0, 0].item() == pytest.approx((100 / 255 - CLIP_MEAN[0]) / CLIP_STD[0], abs=1e-6)
    nan = adapter.normalise(torch.full((1, 3, 2, 2), float("nan")), plan)
    assert torch.isnan(nan).all()  # NaN passes through; the engine masks it


def test_accessor_matches_the_reference_on_one_tile(tmp_path):
    """Through the accessor (normalisation + engine), a 224 px raster gives open_clip's outputs."""
    reference = reference_clip("vit_b32", seed=2)
    path = tmp_path / "w.pt"
    torch.save(reference.state_dict(), path)
    da = synthetic_raster((224, 224), bands=DEFAULT_BANDS, seed=4)
    expected_pooled, expected_grid = reference_outputs(reference, uint8_clip_input(da.values))
    grid = da.rsembed.embed("remoteclip", weights=str(path))
    np.testing.assert_allclose(grid.values, expected_grid[0].numpy(), atol=1e-4)
    pooled = da.rsembed.embed("remoteclip", weights=str(path), output="pooled", input_prep="resize")
    np.testing.assert_allclose(pooled.values, expected_pooled[0].numpy(), atol=1e-4)  # 224 px: no resampling
    tiled = da.rsembed.embed("remoteclip", weights=str(path), output="pooled", input_prep="tile")
    expected_tiled = expected_grid[0].mean(dim=(1, 2)) @ reference.visual.proj.detach()
    np.testing.assert_allclose(tiled.values, expected_tiled.numpy(), atol=1e-4)
    assert grid.shape == (768, 7, 7) and pooled.shape == tiled.shape == (512,)


def test_grid_through_the_accessor_matches_the_reference_on_one_tile(tmp_path):
    reference = reference_clip("vit_b32", seed=2)
    path = tmp_path / "w.pt"
    torch.save(reference.state_dict(), path)
    da = synthetic_raster((224, 224), bands=["B02", "B08", "B03", "B04"], seed=4)  # picked and reordered by name
    _, expected_grid = reference_outputs(reference, uint8_clip_input(da.sel(band=list(DEFAULT_BANDS)).values))
    grid = da.chunk({"x": 100}).rsembed.embed("remoteclip", weights=str(path))
    assert grid.attrs["bands"] == list(DEFAULT_BANDS)
    np.testing.assert_allclose(grid.values, expected_grid[0].numpy(), atol=1e-4)


@pytest.fixture
def s2_crop(s2_scene):
    return xrembed.open_raster(s2_scene).isel(y=slice(0, 300), x=slice(0, 300))


@pytest.mark.parametrize("input_prep", ["tile", "resize"])
def test_real_scene_grid_is_georeferenced(s2_crop, input_prep):
    emb = s2_crop.rsembed.embed("remoteclip", weights="random", input_prep=input_prep)
    assert emb.rio.crs == s2_crop.rio.crs
    src = s2_crop.rio.transform()
    if input_prep == "tile":
        assert emb.shape == (768, 10, 10)  # ceil(300 / 32)
        assert emb.rio.transform() == src * Affine.scale(32)
    else:
        assert emb.shape == (768, 7, 7)  # each token covers 32 px of the 224 px resized image
        np.testing.assert_allclose(tuple(emb.rio.transform()), tuple(src * Affine.scale(300 * 32 / 224)), rtol=1e-12)
    values = emb.values
    assert np.isfinite(values).all() and values.std() > 0
    assert emb.attrs["bands"] == list(DEFAULT_BANDS) and emb.attrs["model"] == "remoteclip"


@pytest.mark.parametrize("input_prep", ["tile", "resize"])
def test_real_scene_pooled(s2_crop, input_prep):
    vec = s2_crop.rsembed.embed("remoteclip", weights="random", output="pooled", input_prep=input_prep)
    assert vec.shape == (512,) and vec.dims == ("embedding",)
    assert np.isfinite(vec.values).all()


def test_missing_rgb_band_is_raised_at_embed_time():
    da = synthetic_raster((32, 32), bands=["B03", "B02", "B08"]).chunk()
    with pytest.raises(errors.BandMismatchError, match="B04"):
        da.rsembed.embed("remoteclip", weights="random")


def test_wrong_channel_count_and_unnamed_bands():
    da = synthetic_raster((32, 32), bands=["B04", "B03", "B02", "B08"])
    with pytest.raises(errors.BandMismatchError, match="exactly 3"):
        da.rsembed.embed("remoteclip", bands=["B04", "B03", "B02", "B08"], weights="random")
    unnamed = synthetic_raster((32, 32), bands=DEFAULT_BANDS).drop_vars("band")
    with pytest.raises(errors.BandMismatchError, match="bands="):
        unnamed.rsembed.embed("remoteclip", weights="random")
    # naming them (in the input's order) works
    emb = unnamed.rsembed.embed("remoteclip", bands=["B04", "B03", "B02"], weights="random")
    assert emb.shape == (768, 1, 1)


def test_sar_modality_and_wavelengths_are_refused():
    s1 = synthetic_raster((32, 32), bands=["VV", "VH"])
    with pytest.raises(errors.BandMismatchError, match="Sentinel-1"):
        s1.rsembed.embed("remoteclip", weights="random")
    rgb = synthetic_raster((32, 32), bands=DEFAULT_BANDS)
    with pytest.raises(errors.OptionError, match="modality"):
        rgb.rsembed.embed("remoteclip", modality="s1", weights="random")
    with pytest.raises(errors.OptionError, match="wavelengths"):
        rgb.rsembed.embed("remoteclip", wavelengths=[0.665, 0.56, 0.49], weights="random")


def test_normalised_reflectance_is_rejected():
    da = synthetic_raster((32, 32), bands=DEFAULT_BANDS) / 10000.0
    emb = da.chunk().rsembed.embed("remoteclip", weights="random")  # metadata is fine: raised at compute
    with pytest.raises(errors.InputRangeError, match="10000"):
        emb.compute()
    with pytest.raises(errors.InputRangeError):
        da.rsembed.embed("remoteclip", weights="random")  # eager: raised at once


def test_describe_model_gives_the_contract():
    info = xrembed.describe_model("remoteclip")
    assert info["bands"] == ["B04", "B03", "B02"]
    assert (info["image_size"], info["patch_size"], info["embed_dim"], info["pooled_dim"]) == (224, 32, 768, 512)
    assert info["weights"] == "hf://chendelong/RemoteCLIP/RemoteCLIP-ViT-B-32.pt"
    assert info["normalisation"]["mean"] == list(CLIP_MEAN) and info["normalisation"]["std"] == list(CLIP_STD)
    assert set(info["outputs"]) == {"grid", "pooled"} and "Apache-2.0" in info["licence"]
    large = xrembed.describe_model("remoteclip", variant="vit_l14")
    assert (large["patch_size"], large["embed_dim"], large["pooled_dim"]) == (14, 1024, 768)
    assert large["weights"] == "hf://chendelong/RemoteCLIP/RemoteCLIP-ViT-L-14.pt"
    with pytest.raises(errors.UnknownModelError, match="vit_b32"):
        xrembed.describe_model("remoteclip", variant="rn50")
