"""Helpers for tests and examples: synthetic georeferenced rasters, xee-style Datasets, a tiny model,
and checkpoints written in a model's official key layout (like ``odc.geo.testutils``).

Nothing here touches the network.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np
import xarray as xr
from affine import Affine

from .geo import pixel_centres
from .models.base import ModelAdapter, Variant
from .models.dofa import DEFAULT_BANDS, DOFA
from .models.registry import get_adapter, register_model

__all__ = [
    "TEST_MODELS",
    "TinyDOFA",
    "register_test_models",
    "synthetic_raster",
    "to_xee_dataset",
    "write_official_checkpoint",
]


def synthetic_raster(
    shape: tuple[int, int] = (64, 80),
    *,
    bands: Sequence[str] = DEFAULT_BANDS,
    resolution: float = 10.0,
    origin: tuple[float, float] = (500000.0, 4200000.0),
    crs: str | None = "EPSG:32629",
    times: int | None = None,
    chunks: dict | None = None,
    seed: int = 0,
) -> xr.DataArray:
    """A smooth random raster of raw reflectance (0..10000) with a rioxarray CRS: ``([time,] band, y, x)``.

    ``origin`` is the top-left corner; pixel-centre coordinates follow rioxarray's convention.

    Examples
    --------
    >>> from xrembed.testing import synthetic_raster
    >>> synthetic_raster((32, 48)).rio.transform()
    Affine(10.0, 0.0, 500000.0,
           0.0, -10.0, 4200000.0)
    """
    rng = np.random.default_rng(seed)
    height, width = shape
    steps = 1 if times is None else times
    # Low-frequency structure plus noise, so neighbouring tiles differ and edge effects show.
    yy, xx = np.meshgrid(np.linspace(0, 3, height), np.linspace(0, 3, width), indexing="ij")
    base = np.stack([np.sin(yy * (i + 1)) + np.cos(xx * (i + 2)) for i in range(len(bands))])
    values = 3000 + 1500 * base[None] + rng.normal(0, 400, size=(steps, len(bands), height, width))
    values = np.clip(values, 1, 10000).astype(np.float32)
    transform = Affine(resolution, 0, origin[0], 0, -resolution, origin[1])
    y, x = pixel_centres(transform, (height, width))
    dims = ("time", "band", "y", "x")
    coords = {"band": list(bands), "y": y, "x": x}
    if times is None:
        values, dims = values[0], dims[1:]
    else:
        coords["time"] = np.array([f"2020-0{1 + i % 9}-15" for i in range(times)], dtype="datetime64[ns]")
    da = xr.DataArray(values, dims=dims, coords=coords, name="reflectance")
    if crs is not None:
        da = da.rio.write_crs(crs).rio.write_transform(transform)
    if chunks is not None:
        da = da.chunk(chunks)
    return da


def to_xee_dataset(da: xr.DataArray, crs: str = "EPSG:32629") -> xr.Dataset:
    """Re-shape a ``([time,] band, y, x)`` raster the way xee returns it: one variable per band, dims
    ``(time, y, x)``, the CRS only in each variable's ``attrs["crs"]`` and no ``spatial_ref``."""
    if "time" not in da.dims:
        da = da.expand_dims(time=np.array(["2020-06-01"], dtype="datetime64[ns]"))
    da = da.drop_vars("spatial_ref", errors="ignore")
    variables = {}
    for band in da["band"].values:
        var = da.sel(band=band).drop_vars("band")
        var.attrs = {"crs": crs}
        var.encoding = {}
        variables[str(band)] = var.transpose("time", "y", "x")
    return xr.Dataset(variables)


class TinyDOFA(DOFA):
    """A small DOFA (dim 32, 2 blocks, patch 8, 32 px tiles) so engine tests run many tiles quickly.

    Not registered on import: call :func:`register_test_models` first to use it as ``"dofa-tiny"``.
    """

    model_id = "dofa-tiny"
    title = "DOFA, tiny test configuration (random weights only)"
    variants = {"tiny": Variant(name="tiny", embed_dim=32, depth=2, num_heads=2, patch_size=8, image_size=32)}
    default_variant = "tiny"


#: The test models :func:`register_test_models` adds to the registry.
TEST_MODELS: tuple[type, ...] = (TinyDOFA,)


def register_test_models() -> list[str]:
    """Register the test models (``dofa-tiny``: random weights, runs in milliseconds); idempotent.

    Importing :mod:`xrembed.testing` registers nothing: a test suite, example or script that uses
    ``"dofa-tiny"`` calls this once. Returns the ids registered.

    Examples
    --------
    >>> import xrembed, xrembed.testing
    >>> xrembed.testing.register_test_models()
    ['dofa-tiny']
    >>> "dofa-tiny" in xrembed.list_models()
    True
    """
    for adapter in TEST_MODELS:
        register_model(adapter)
    return [adapter.model_id for adapter in TEST_MODELS]


def _adapter(model, variant):
    return model if isinstance(model, ModelAdapter) else get_adapter(model, variant)


def _mae_decoder(torch, prefix: str, tokens: int, pixels_per_token: int, dim: int = 16) -> dict:
    """A one-block MAE decoder (``decoder_embed``, ``decoder_blocks.0``, ``decoder_norm``, ``decoder_pred``)
    fed by an encoder of width ``embed_dim``: the keys of the MAE pre-training files, at a small width."""
    out = {f"{prefix}decoder_pos_embed": torch.zeros(1, tokens, dim)}
    block = {
        "norm1.weight": (dim,), "norm1.bias": (dim,), "attn.qkv.weight": (3 * dim, dim), "attn.qkv.bias": (3 * dim,),
        "attn.proj.weight": (dim, dim), "attn.proj.bias": (dim,), "norm2.weight": (dim,), "norm2.bias": (dim,),
        "mlp.fc1.weight": (4 * dim, dim), "mlp.fc1.bias": (4 * dim,), "mlp.fc2.weight": (dim, 4 * dim),
        "mlp.fc2.bias": (dim,),
    }
    for key, shape in block.items():
        out[f"{prefix}decoder_blocks.0.{key}"] = torch.randn(shape) * 0.02
    out[f"{prefix}decoder_norm.weight"] = torch.ones(dim)
    out[f"{prefix}decoder_norm.bias"] = torch.zeros(dim)
    out[f"{prefix}decoder_pred.weight"] = torch.randn(pixels_per_token, dim) * 0.02
    out[f"{prefix}decoder_pred.bias"] = torch.zeros(pixels_per_token)
    return out


def _official_layout(adapter, module, torch):
    """``(checkpoint object, format)`` of ``module``'s weights in the upstream release file's layout."""
    from .models.dofa_clip import DOFACLIP
    from .models.prithvi import Prithvi
    from .models.remoteclip import RemoteCLIP
    from .models.satmae import SatMAE
    from .models.scalemae import ScaleMAE
    from .models.terrafm import TerraFM

    v = adapter.variant
    state = {k: v_.clone() for k, v_ in module.state_dict().items()}
    tokens = 1 + (v.image_size // v.patch_size) ** 2
    if isinstance(adapter, DOFA):
        # earthflow/DOFA: no fc_norm, plus the pre-training leftovers mask_token, norm.*, projector.*.
        dim = v.embed_dim
        state.pop("fc_norm.weight")
        state.pop("fc_norm.bias")
        state["mask_token"] = torch.zeros(1, 1, dim)
        state["norm.weight"] = torch.ones(dim)
        state["norm.bias"] = torch.zeros(dim)
        state["projector.weight"] = torch.randn(dim, dim) * 0.02
        state["projector.bias"] = torch.zeros(dim)
        return state, "torch"
    if isinstance(adapter, DOFACLIP):
        # The whole open_clip model: visual.trunk.*, the text tower, logit_scale/bias, distillation heads
        # (stand-ins at a small width, as scripts/goldens_dofa_clip.py writes them).
        state = {f"visual.trunk.{k}": t for k, t in state.items()}
        state["text.token_embedding.weight"] = torch.randn(8, 4)
        state["text.transformer.resblocks.0.attn.in_proj_weight"] = torch.randn(12, 4)
        state["logit_scale"] = torch.tensor([2.3])
        state["logit_bias"] = torch.tensor([-10.0])
        state["translators.dinov2_vitl14_reg.proj.weight"] = torch.randn(4, 4)
        return state, "safetensors"
    if isinstance(adapter, Prithvi):
        # Prithvi_EO_V2_*.pt: the flat MAE state dict, encoder.* (pos_embed sized for the frames it was
        # saved with) and decoder.* (terratorch's PrithviMAE keys, at a small decoder width).
        from .models.prithvi_net import sincos_3d

        frames = int(dict(v.extra).get("max_frames", 4))
        side = v.image_size // v.patch_size
        state["pos_embed"] = sincos_3d(v.embed_dim, frames, side, side)
        state = {f"encoder.{k}": t for k, t in state.items()}
        state["decoder.mask_token"] = torch.zeros(1, 1, 16)
        state["decoder.decoder_embed.weight"] = torch.randn(16, v.embed_dim) * 0.02
        state["decoder.decoder_embed.bias"] = torch.zeros(16)
        if adapter.coords_encoding:
            state["decoder.temporal_embed_dec.scale"] = torch.tensor([0.1])
            state["decoder.location_embed_dec.scale"] = torch.tensor([0.1])
        channels = len(adapter.default_bands)
        state.update(_mae_decoder(torch, "decoder.", 1 + frames * side * side, channels * v.patch_size**2))
        return state, "torch"
    if isinstance(adapter, RemoteCLIP):
        # RemoteCLIP-*.pt: a flat open_clip CLIP state dict, visual.* plus the text tower and logit_scale.
        width = adapter.pooled_dim
        state = {f"visual.{k}": t for k, t in state.items()}
        state["token_embedding.weight"] = torch.zeros(49408, width)
        state["positional_embedding"] = torch.zeros(77, width)
        for i in range(2):
            state[f"transformer.resblocks.{i}.attn.in_proj_weight"] = torch.zeros(3 * width, width)
            state[f"transformer.resblocks.{i}.mlp.c_fc.weight"] = torch.zeros(4 * width, width)
        state["ln_final.weight"] = torch.ones(width)
        state["ln_final.bias"] = torch.zeros(width)
        state["text_projection"] = torch.zeros(width, adapter.pooled_dim)
        state["logit_scale"] = torch.tensor(4.6052)
        return state, "torch"
    if isinstance(adapter, ScaleMAE):
        # scalemae-vitlarge-800.pth: the whole MAE (decoder, FPN and FCN heads) in {'model', 'args'}.
        import argparse

        state.update(scalemae_release_extras(v.embed_dim, tokens))
        return {"model": state, "epoch": 799, "args": argparse.Namespace(base_resolution=2.5)}, "torch"
    if isinstance(adapter, SatMAE):
        # fmow_pretrain.pth: {'model', 'optimizer', 'epoch', 'scaler', 'args': Namespace}, the MAE's
        # encoder plus mask_token and decoder_*.
        import argparse

        state["mask_token"] = torch.zeros(1, 1, 16)
        state["decoder_embed.weight"] = torch.randn(16, v.embed_dim) * 0.02
        state["decoder_embed.bias"] = torch.zeros(16)
        state.update(_mae_decoder(torch, "", tokens, 3 * v.patch_size**2))
        args = argparse.Namespace(model=f"mae_vit_{v.name}", input_size=v.image_size, patch_size=v.patch_size)
        return {"model": state, "optimizer": {}, "epoch": 0, "scaler": {}, "args": args}, "torch"
    if isinstance(adapter, TerraFM):
        # TerraFM-B.pth: the reference module's flat state dict.
        return state, "torch"
    from .models.croma import CROMA

    if isinstance(adapter, CROMA):
        # CROMA_base.pt: one state dict per part, {s1_encoder, s1_GAP_FFN, s2_encoder, s2_GAP_FFN, joint_encoder}.
        parts: dict = {}
        for key, tensor in state.items():
            part, _, inner = key.partition(".")
            parts.setdefault(part, {})[inner] = tensor
        return parts, "torch"
    from .models.panopticon import RELEASE_GRID, Panopticon

    if isinstance(adapter, Panopticon):
        # panopticon_vitb14_teacher.pth: flat timm DINOv2 names plus mask_token, pos_embed at 518 px (37 x 37).
        from torch.nn import functional as F

        side = int(round((state["pos_embed"].shape[1] - 1) ** 0.5))
        if side != RELEASE_GRID:  # a module holding its own grid: the release's table is 37 x 37
            grid = state["pos_embed"][:, 1:].reshape(1, side, side, -1).permute(0, 3, 1, 2)
            grid = F.interpolate(grid, size=(RELEASE_GRID, RELEASE_GRID), mode="bilinear")
            grid = grid.permute(0, 2, 3, 1).reshape(1, RELEASE_GRID**2, -1)
            state["pos_embed"] = torch.cat([state["pos_embed"][:, :1], grid], dim=1)
        state["mask_token"] = torch.zeros(1, v.embed_dim)
        return state, "torch"
    from .models.olmoearth import OlmoEarth

    if isinstance(adapter, OlmoEarth):
        # weights.pth: the whole pre-training model (encoder.*, decoder.*, target_encoder.*); config.json beside.
        from .models.olmoearth_release import release_state

        return release_state(adapter, state, torch), "torch"
    from .models.galileo import Galileo

    if isinstance(adapter, Galileo):
        # models/<size>/encoder.pt: the encoder's flat state dict; config.json beside it (written below).
        return state, "torch"
    from .models.terramind import TerraMind

    if isinstance(adapter, TerraMind):
        # TerraMind_v1_<size>.pt: the whole any-to-any model, flat (decoder and other modalities as stand-ins),
        # with a zero *.bias buffer beside every LayerNorm weight.
        from .models.terramind_release import release_state

        return release_state(state, v.embed_dim, v.patch_size, torch), "torch"
    from .models.clay import Clay

    if isinstance(adapter, Clay):
        # v1.5/clay-v1.5.ckpt: a Lightning checkpoint; state_dict holds model.encoder/decoder/teacher/proj.*.
        from .models.clay_release import release_checkpoint

        return release_checkpoint(state, v.embed_dim, torch), "torch"
    from .models.copernicus_fm import CopernicusFM

    if isinstance(adapter, CopernicusFM):
        # CopernicusFM_ViT_base_varlang-085350e4.pth: flat, without fc_norm.* / head.* (fc_norm stays at its default).
        state.pop("fc_norm.weight")
        state.pop("fc_norm.bias")
        return state, "torch"
    from .models.anysat import AnySat

    if isinstance(adapter, AnySat):
        # models/AnySat.pth: the reference's AnyModule state dict (every modality's projector_*) in {'state_dict'}.
        return {"state_dict": state}, "torch"
    raise NotImplementedError(f"no official checkpoint layout known for {adapter.model_id!r} ({type(adapter).__name__})")


def write_official_checkpoint(path: str | os.PathLike, model="dofa", variant: str | None = None, *, seed: int = 0):
    """Write random weights for ``model``/``variant`` in the official checkpoint's key layout.

    ``model`` is a registered id (or an adapter instance). Every family writes what its upstream release
    file holds, including what xrembed's documented clean-up drops: DOFA (``earthflow/DOFA``: no
    ``fc_norm``; ``mask_token``, ``norm.*``, ``projector.*``), DOFA-CLIP (whole open_clip model:
    ``visual.trunk.*``, text tower, ``logit_scale``/``logit_bias``, ``translators.*``; safetensors when
    ``path`` ends in ``.safetensors``), Prithvi (``encoder.*``/``decoder.*``), RemoteCLIP (``visual.*`` and
    the text tower), SatMAE and ScaleMAE (``{'model': ..., 'args': Namespace}`` with the MAE decoder),
    TerraFM (flat), CROMA (nested: one state dict per encoder and head), Panopticon (flat, plus
    ``mask_token``, ``pos_embed`` at the release's 37 x 37 grid), OlmoEarth (the whole pre-training model,
    ``encoder.*``/``decoder.*``/``target_encoder.*``, with ``config.json`` written beside ``path``, which
    should then be named ``weights.pth``), Galileo (flat ``encoder.pt``, ``config.json`` written beside
    it), TerraMind (the whole any-to-any model, flat, with a zero ``*.bias`` buffer per LayerNorm),
    Clay (a Lightning checkpoint: ``state_dict`` with ``model.encoder.*`` beside the decoder, teacher and
    projection), Copernicus-FM (flat, without ``fc_norm.*`` / ``head.*``). Returns
    the module as xrembed loads that
    file (strictly, after the clean-up), so a test can compare against it.
    """
    import torch

    from .models.weights import strip_wrapper_prefixes

    adapter = _adapter(model, variant)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        module = adapter.build_module().eval()
        with torch.no_grad():
            for param in module.parameters():  # non-trivial values everywhere, norms and biases included
                param.add_(torch.randn_like(param) * 0.02)
        checkpoint, fmt = _official_layout(adapter, module, torch)
    if fmt == "safetensors" and str(path).endswith(".safetensors"):
        from safetensors.torch import save_file

        save_file({k: t.contiguous() for k, t in checkpoint.items()}, str(path))
    else:
        torch.save(checkpoint, path)
    from .models.olmoearth import OlmoEarth

    if isinstance(adapter, OlmoEarth):
        from .models.olmoearth_release import write_config

        write_config(adapter, path)  # OlmoEarth's release is a folder: config.json beside weights.pth
    from .models.galileo import Galileo

    if isinstance(adapter, Galileo):
        from .models.galileo import write_config as write_galileo_config

        write_galileo_config(adapter, path)  # Galileo's release is a folder too: config.json beside encoder.pt
    state = checkpoint["model"] if isinstance(checkpoint, dict) and "model" in checkpoint else checkpoint
    state = state["state_dict"] if isinstance(state.get("state_dict"), dict) else state  # {'state_dict': ...} (Clay's Lightning file, AnySat)
    # What the official loader leaves (e.g. DOFA's absent fc_norm at its default): the module as loaded.
    module.load_state_dict(adapter.clean_state_dict(strip_wrapper_prefixes(dict(state))), strict=True)
    return module


def scalemae_release_extras(embed_dim: int, tokens: int) -> dict:
    """Keys of ScaleMAE's release file beyond the encoder (decoder, FPN/FCN heads; dropped by the clean-up),
    as small stand-ins: ``embed_dim`` of the encoder, ``tokens`` including the class token."""
    import torch

    return {
        "mask_token": torch.zeros(1, 1, 16),
        "mask_token_decoder": torch.zeros(1, 1, 16),
        "decoder_embed.weight": torch.zeros(16, embed_dim),
        "decoder_pos_embed": torch.zeros(1, tokens, 16),
        "decoder_blocks.0.norm1.weight": torch.ones(16),
        "decoder_norm.weight": torch.ones(16),
        "pos_emb_projection.weight": torch.zeros(16, 16),
        "fpn.fpn1.0.weight": torch.zeros(16, 16, 2, 2),
        "fcn_high.conv.weight": torch.zeros(3, 16, 1, 1),
        "fcn_low.conv.weight": torch.zeros(3, 16, 1, 1),
    }
