"""OlmoEarth fidelity (invariant 3), input contract (invariant 4) and the real scene through the accessor.

The reference is the authors' package ``olmoearth-pretrain-minimal`` 0.1.5, called with its own API: the
release folder (``config.json`` + ``weights.pth``) is loaded with its ``load_model_from_path``, inputs are
normalised with its ``Normalizer`` and its encoder's tokens are pooled with its ``pool_unmasked_tokens``.
xrembed's path (band picking and order, normalisation, dates, tiling, pooling, georeferencing) is checked
against that on identical random weights.
"""

from __future__ import annotations

import json
import math
import sys

import numpy as np
import pytest
import torch
from affine import Affine

import xrembed
from xrembed import errors
from xrembed.models.base import Variant
from xrembed.models.olmoearth import S2_BANDS, OlmoEarth, _variant
from xrembed.models.registry import register_model
from xrembed.testing import synthetic_raster, write_official_checkpoint

from shared_paths import SHARED_DATA

pytest.importorskip("olmoearth_pretrain_minimal")
import olmoearth_pretrain_minimal as oe  # noqa: E402
from olmoearth_pretrain_minimal.olmoearth_pretrain_v1.utils.constants import Modality  # noqa: E402
from olmoearth_pretrain_minimal.olmoearth_pretrain_v1.utils.datatypes import MaskedOlmoEarthSample  # noqa: E402

TOL = 1e-4
#: Encoder parameters stated in the package README (millions), per variant.
README_PARAMS_M = {"nano": 1.4, "tiny": 6.2, "base": 89, "large": 308, "v1.1-nano": 1.7, "v1.1-tiny": 12.5,
                   "v1.1-base": 114, "v1.2-nano": 1.7, "v1.2-tiny": 12.5, "v1.2-small": 35.6, "v1.2-base": 114}


def _small(name, size, version, repo):
    real = _variant(name, size, version, 128, 4, 8, repo)
    return Variant(name=name, embed_dim=128, depth=4, num_heads=8, patch_size=8, image_size=32,
                   checkpoint=None, extra=real.extra)


@register_model
class SmallTileOlmoEarth(OlmoEarth):
    """The real nano architectures (v1: 3 band sets, v1.1: 1, v1.2: 1 with RoPE) on 32 px tiles (4 x 4 tokens)."""

    model_id = "olmoearth-32px"
    aliases = ()
    variants = {
        "nano": _small("nano", "nano", "v1", "OlmoEarth-v1-Nano"),
        "v1.1-nano": _small("v1.1-nano", "nano", "v1.1", "OlmoEarth-v1_1-Nano"),
        "v1.2-nano": _small("v1.2-nano", "nano", "v1.2", "OlmoEarth-v1_2-Nano"),
    }
    default_variant = "nano"


@pytest.fixture(scope="module", params=["nano", "v1.1-nano", "v1.2-nano"])
def release(request, tmp_path_factory):
    """``(variant, weights.pth path, the package's own encoder loaded from the release folder)``."""
    folder = tmp_path_factory.mktemp(f"OlmoEarth-{request.param}")
    path = folder / "weights.pth"
    write_official_checkpoint(path, SmallTileOlmoEarth(request.param), seed=1)
    reference = oe.load_model_from_path(folder).eval()
    return request.param, str(path), reference.encoder


def _timestamps(dates):
    """(day, month - 1, year), written from the package's documented convention."""
    return [[int(str(d)[8:10]), int(str(d)[5:7]) - 1, int(str(d)[:4])] for d in dates]


def reference_tokens(encoder, raw, dates, modality=Modality.SENTINEL2_L2A, bands=S2_BANDS):
    """The package's encoder on raw ``(T, C, H, W)`` values whose channels are ``bands``: ``(h, w, T, S, D)``."""
    order = [list(bands).index(b.upper()) for b in modality.band_order]
    data = np.moveaxis(raw[:, order], 1, -1).transpose(1, 2, 0, 3)[None]  # (1, H, W, T, C)
    normed = oe.Normalizer(std_multiplier=2.0).normalize(modality, data.astype(np.float64))
    _, h, w, t, _ = data.shape
    name = modality.name
    sample = MaskedOlmoEarthSample(
        timestamps=torch.tensor([_timestamps(dates)], dtype=torch.long),
        **{name: torch.from_numpy(normed).float(),
           f"{name}_mask": torch.zeros((1, h, w, t, modality.num_band_sets), dtype=torch.long)},
    )
    with torch.no_grad():
        out = encoder(sample, patch_size=8, input_res=10, fast_pass=True)["tokens_and_masks"]
    return out


@pytest.mark.parametrize("times", [1, 3])
def test_accessor_matches_the_package_on_the_release_layout(release, times):
    variant, path, encoder = release
    da = synthetic_raster((64, 32), bands=list(S2_BANDS), times=times, seed=2)
    shuffled = da.isel(band=np.random.default_rng(0).permutation(12))  # picked by name, fed in model order
    kw = dict(variant=variant, weights=path)
    grid = shuffled.rsembed.embed("olmoearth-32px", **kw)
    assert grid.dims == ("embedding", "y", "x") and grid.shape == (128, 8, 4)
    assert grid.rio.crs == da.rio.crs and grid.rio.transform() == da.rio.transform() @ Affine.scale(8)
    raw = da.values
    dates = da.time.values.astype("datetime64[D]")
    for row in (0, 1):  # two 32 px tiles, one above the other
        tokens = reference_tokens(encoder, raw[:, :, 32 * row: 32 * (row + 1)], dates)
        want = tokens.pool_unmasked_tokens("mean", spatial_pooling=True)[0].permute(2, 0, 1).numpy()
        np.testing.assert_allclose(grid.values[:, 4 * row: 4 * (row + 1)], want, atol=TOL)
    one_tile = shuffled.isel(y=slice(0, 32))
    pooled = one_tile.rsembed.embed("olmoearth-32px", output="pooled", **kw)
    want = reference_tokens(encoder, raw[:, :, :32], dates).pool_unmasked_tokens("mean").numpy()[0]
    np.testing.assert_allclose(pooled.values, want, atol=TOL)
    resized = one_tile.rsembed.embed("olmoearth-32px", output="pooled", input_prep="resize", **kw)
    np.testing.assert_allclose(resized.values, want, atol=TOL)


def test_sentinel1_matches_the_package(release):
    variant, path, encoder = release
    rng = np.random.default_rng(5)
    da = synthetic_raster((32, 32), bands=["VH", "VV"], times=2).copy(
        data=rng.uniform(-25, -5, (2, 2, 32, 32)).astype("f4"))
    grid = da.rsembed.embed("olmoearth-32px", variant=variant, weights=path)  # VV/VH alone: modality s1
    assert grid.attrs["bands"] == ["VV", "VH"]
    tokens = reference_tokens(encoder, da.values, da.time.values.astype("datetime64[D]"), Modality.SENTINEL1,
                              ("VH", "VV"))
    want = tokens.pool_unmasked_tokens("mean", spatial_pooling=True)[0].permute(2, 0, 1).numpy()
    np.testing.assert_allclose(grid.values, want, atol=TOL)


def test_dates_change_the_embedding(release):
    variant, path, _ = release
    da = synthetic_raster((32, 32), bands=list(S2_BANDS), times=1, seed=3)
    june = da.assign_coords(time=[np.datetime64("2020-06-15")])
    a = da.rsembed.embed("olmoearth-32px", variant=variant, weights=path).values
    b = june.rsembed.embed("olmoearth-32px", variant=variant, weights=path).values
    assert np.abs(a - b).max() > 1e-3


def test_release_layout_loads_strictly_and_refuses_mismatches(release, tmp_path):
    variant, path, encoder = release
    state = torch.load(path, weights_only=True)
    assert any(k.startswith("decoder.") for k in state) and any(k.startswith("target_encoder.") for k in state)
    cleaned = SmallTileOlmoEarth(variant).clean_state_dict(state)
    assert set(cleaned) == set(encoder.state_dict())
    bad = dict(state)
    bad["encoder.extra_head.weight"] = torch.zeros(3)
    torch.save(bad, tmp_path / "weights.pth")
    da = synthetic_raster((32, 32), bands=list(S2_BANDS), times=1)
    with pytest.raises(errors.WeightsError, match="unexpected keys"):
        da.rsembed.embed("olmoearth-32px", variant=variant, weights=str(tmp_path / "weights.pth")).compute()
    other = "v1.1-nano" if variant == "nano" else "nano"  # v1.1 and v1.2 nano share a key set
    with pytest.raises(errors.WeightsError, match="does not match"):
        da.rsembed.embed("olmoearth-32px", variant=other, weights=path).compute()


@pytest.mark.parametrize("variant", sorted(OlmoEarth.variants))
def test_real_size_keys_and_parameter_count(variant):
    adapter = OlmoEarth(variant)
    with torch.device("meta"):
        module = adapter.build_module()
        full = oe.OlmoEarthPretrain_v1(adapter.size, adapter.version).model.state_dict()
    assert set(adapter.clean_state_dict(full)) == set(module.state_dict())
    count = sum(p.numel() for p in module.parameters())
    assert count == pytest.approx(README_PARAMS_M[variant] * 1e6, rel=0.05)
    v = adapter.variant
    assert module.embedding_size == v.embed_dim and len(module.blocks) == v.depth


def test_normalisation_statistics_are_the_packages():
    computed = json.loads((oe.olmoearth_pretrain_v1.data.normalize.files(
        "olmoearth_pretrain_minimal.olmoearth_pretrain_v1.data.norm_configs") / "computed.json").read_text())
    norm = OlmoEarth().describe()["normalisation"]
    for ours, theirs, bands in (("s2", "sentinel2_l2a", S2_BANDS), ("s1", "sentinel1", ("VV", "VH"))):
        for band in bands:
            assert norm[f"{ours} mean"][band] == computed[theirs][band.lower() if ours == "s1" else band]["mean"]
            assert norm[f"{ours} std"][band] == computed[theirs][band.lower() if ours == "s1" else band]["std"]
    assert list(S2_BANDS) == Modality.SENTINEL2_L2A.band_order


def test_describe_model_gives_the_contract():
    info = xrembed.describe_model("olmoearth")
    assert info["variant"] == "base" and info["embed_dim"] == 768 and info["patch_size"] == 8
    assert info["bands"] == list(S2_BANDS) and len(info["wavelengths_um"]) == 12
    assert info["modalities"]["s1"]["bands"] == ["VV", "VH"]
    assert info["weights"] == "hf://allenai/OlmoEarth-v1-Base/weights.pth"
    assert "Artifact License" in info["licence"]
    assert info["temporal"]["requires_time_coordinate"] is True
    assert xrembed.describe_model("olmoearth", variant="nano")["band_sets"] == 3
    assert xrembed.describe_model("olmoearth", variant="v1.1-nano")["band_sets"] == 1


def test_bad_requests_name_the_fix():
    da = synthetic_raster((32, 32), bands=list(S2_BANDS), times=1)
    with pytest.raises(errors.OptionError, match="expand_dims"):
        da.isel(time=0).rsembed.embed("olmoearth-32px", weights="random")
    with pytest.raises(errors.OptionError, match="at most 12"):
        synthetic_raster((32, 32), bands=list(S2_BANDS), times=13).rsembed.embed("olmoearth-32px", weights="random")
    with pytest.raises(errors.OptionError, match="'s2'"):
        da.rsembed.embed("olmoearth-32px", modality="landsat", weights="random")
    with pytest.raises(errors.OptionError, match="wavelengths"):
        da.rsembed.embed("olmoearth-32px", wavelengths=[0.5] * 12, weights="random")
    with pytest.raises(errors.BandMismatchError, match="lacks"):
        da.sel(band=["B02", "B03", "B04"]).rsembed.embed("olmoearth-32px", weights="random")
    with pytest.raises(errors.BandMismatchError, match="exactly 12"):
        da.rsembed.embed("olmoearth-32px", bands=["B02", "B03"], weights="random")
    with pytest.raises(errors.UnknownModelError):
        xrembed.describe_model("olmoearth", variant="huge")


def test_values_on_the_wrong_scale_are_refused():
    normalised = synthetic_raster((32, 32), bands=list(S2_BANDS), times=1) / 10000.0
    with pytest.raises(errors.InputRangeError, match="10000"):
        normalised.chunk().rsembed.embed("olmoearth-32px", weights="random").compute()
    rng = np.random.default_rng(1)
    db = synthetic_raster((32, 32), bands=["VV", "VH"], times=1).copy(data=rng.uniform(-25, -5, (1, 2, 32, 32)))
    with pytest.raises(errors.InputRangeError, match="dB"):
        (10 ** (db / 10)).chunk().rsembed.embed("olmoearth-32px", weights="random").compute()


def test_a_missing_package_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "olmoearth_pretrain_minimal", None)
    assert xrembed.describe_model("olmoearth")["model"] == "olmoearth"  # the contract needs no package
    da = synthetic_raster((32, 32), bands=list(S2_BANDS), times=1)
    with pytest.raises(errors.MissingDependencyError, match=r'pip install "xrembed\[olmoearth\]"'):
        da.rsembed.embed("olmoearth-32px", variant="v1.1-nano", weights="random")  # at embed(), before compute


def test_nodata_cells_are_nan_and_the_rest_chunk_invariant():
    da = synthetic_raster((72, 88), bands=list(S2_BANDS), times=2, seed=4).copy()
    da[:, :, :10, :12] = np.nan
    eager = da.rsembed.embed("olmoearth-32px", weights="random").values
    assert np.isnan(eager[:, 0, 0]).all() and np.isfinite(eager[:, 2:, 2:]).all()
    lazy = da.chunk({"y": 40, "x": 48}).rsembed.embed("olmoearth-32px", weights="random")
    np.testing.assert_allclose(lazy.values, eager, atol=1e-5, equal_nan=True)


def test_real_sentinel2_scene_tile_and_resize(s2_scene):
    da = xrembed.open_raster(s2_scene).isel(y=slice(0, 200), x=slice(0, 200))
    da = da.expand_dims(time=[np.datetime64("2020-02-19")])
    emb = da.rsembed.embed("olmoearth", variant="nano", weights="random")
    assert emb.shape == (128, math.ceil(200 / 8), math.ceil(200 / 8)) and emb.attrs["bands"] == list(S2_BANDS)
    t_in, t_out = da.rio.transform(recalc=True), emb.rio.transform()
    assert emb.rio.crs == da.rio.crs and t_out == t_in @ Affine.scale(8)
    assert np.isfinite(emb.values).all()
    resized = da.rsembed.embed("olmoearth", variant="nano", weights="random", input_prep="resize")
    assert resized.shape == (128, 16, 16) and resized.rio.bounds() == pytest.approx(da.rio.bounds())
    pooled = da.rsembed.embed("olmoearth", variant="nano", weights="random", output="pooled")
    assert pooled.shape == (128,) and np.isfinite(pooled.values).all()


def test_real_sentinel1_scene_in_db():
    scene = SHARED_DATA / "S1A_IW_GRDH_1SDV_20180716T004042_FD5B" / "measurement"
    if not scene.is_dir():
        pytest.fail(f"the shared Sentinel-1 scene is missing at {scene}")
    dn = xrembed.open_raster(scene, bands=["VV", "VH"])  # GCP-only: warped lazily to its UTM zone
    # uncalibrated amplitude DN; sigma0-like power ~ DN^2 / 1e6 (see tests/sources/test_sentinel1_scene.py), in dB
    db = (10 * np.log10(dn.astype("float32") ** 2 / 1e6)).isel(y=slice(300, 428), x=slice(500, 628))
    db = db.expand_dims(time=[np.datetime64("2018-07-16")])
    emb = db.rsembed.embed("olmoearth", variant="nano", weights="random")  # VV/VH alone: modality s1
    assert emb.attrs["bands"] == ["VV", "VH"] and emb.shape == (128, 16, 16)
    assert emb.rio.crs.to_epsg() == 32643 and emb.rio.transform() == db.rio.transform(recalc=True) @ Affine.scale(8)
    assert np.isfinite(emb.compute().values).any()
