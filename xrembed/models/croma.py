"""CROMA: contrastive radar-optical masked autoencoders, with separate radar, optical and joint encoders.

Reference: Fuller, Millard and Green, *CROMA: Remote Sensing Representations with Contrastive
Radar-Optical Masked Autoencoders* (NeurIPS 2023, arXiv 2311.00566); code github.com/antofuller/CROMA
(MIT) and torchgeo ``torchgeo.models.croma`` (MIT), the runnable reference of the parity tests; weights
``CROMA_base.pt`` / ``CROMA_large.pt``, mirrored by torchgeo on the Hugging Face Hub (``torchgeo/croma``).

Choices made here, each deliberate (see ``docs/models/croma.md``):

* **Modality** ``"s2"`` (default; also ``"optical"``) runs the optical encoder on 12 Sentinel-2 bands,
  ``"s1"`` (``"sar"``; the default when the input has only VV/VH) the radar encoder on VV, VH in dB, and
  ``"joint"`` (``"both"``) the joint encoder on the radar tokens cross-attending to the optical ones: the
  input then holds VV, VH and the 12 optical bands on one grid (fed radar first).
* **Grid output** is the encoder's normed patch tokens (``*_encodings``), one per 8 x 8 px patch.
  **Pooled output** is the release's ``*_GAP``: the GAP-FFN head of the mean token for ``s1``/``s2``, the
  plain mean for ``joint``. In tile mode it is that head applied to the valid-pixel-weighted mean of the
  grid tokens, which equals the reference whenever the raster is one tile.
* **Tiles** are 120 px (15 x 15 patches), CROMA's pre-training size; the 2-D ALiBi bias is computed for
  that grid (the reference's ``image_size=120``).
* **Normalisation** is CROMA's own (its README, "taken from SatMAE and SeCo"): per channel, values are
  mapped linearly from ``[mean - 2 std, mean + 2 std]`` to 8 bits (``floor(clip(255 * t, 0, 255))``),
  then divided by 255. The README takes mean and std over the whole batch it is given; here they are
  those of each model-size image (one tile, or the whole raster before resizing in resize mode), so a
  result never depends on which other images share a batch or a chunk. Invalid pixels are left out of
  the statistics and then set to the value the channel mean maps to (127/255).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .base import BandRequest, Checkpoint, InputPlan, ModelAdapter, Variant
from .band_sets import S1_BANDS
from .checks import check_db_backscatter, check_raw_reflectance
from .sensors import EE_S2_12, S1_DB_SENSOR, S2_SR, SensorSpec

#: Model order of the 12 Sentinel-2 bands (B10, cirrus, is not used).
S2_BANDS = ("B01", "B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A", "B09", "B11", "B12")
#: The joint encoder's input: the radar bands, then the optical ones.
JOINT_BANDS = S1_BANDS + S2_BANDS

#: modality -> (bands, value scale, what the values are)
MODALITIES: dict[str, tuple[tuple[str, ...], str, str]] = {
    "s2": (S2_BANDS, "reflectance", "Sentinel-2 reflectance 0..10000 (L2A or L1C)"),
    "s1": (S1_BANDS, "db", "Sentinel-1 backscatter in dB (e.g. Earth Engine COPERNICUS/S1_GRD)"),
    "joint": (JOINT_BANDS, "joint", "VV, VH in dB and the 12 Sentinel-2 bands as reflectance, on one grid"),
}
_MODALITY_SPELLINGS = {"optical": "s2", "s2_l2a": "s2", "l2a": "s2", "s2_l1c": "s2", "l1c": "s2", "sar": "s1",
                       "both": "joint", "s1s2": "joint", "s1+s2": "joint"}

#: Half-width of CROMA's normalisation window, in standard deviations.
WINDOW_STDS = 2.0
#: Levels of the 8-bit quantisation.
LEVELS = 255.0

_HF_REPO = "torchgeo/croma"


class CROMA(ModelAdapter):
    model_id = "croma"
    aliases = ()
    title = "CROMA: contrastive radar-optical masked autoencoder (Sentinel-1, Sentinel-2, joint)"
    variants = {
        "base": Variant(
            name="base", embed_dim=768, depth=12, num_heads=16, patch_size=8, image_size=120,
            checkpoint=Checkpoint(repo_id=_HF_REPO, filename="CROMA_base-0238d814.pt",
                                  revision="387883f08af79d777167519c57cd826eda89a16f"),
        ),
        "large": Variant(
            name="large", embed_dim=1024, depth=24, num_heads=16, patch_size=8, image_size=120,
            checkpoint=Checkpoint(repo_id=_HF_REPO, filename="CROMA_large-921e69ad.pt",
                                  revision="92cb1a0f4e34c6c01558baf070197c01255382f6"),
        ),
    }
    default_variant = "base"
    sensors = {
        "s2": SensorSpec(S2_SR, EE_S2_12, scale_m=10, modality="s2"),
        "s1": S1_DB_SENSOR,  # CROMA's radar encoder reads dB (SSL4EO-S12 GRD)
    }
    reference = "torchgeo.models.croma (torchgeo 0.8.1, MIT; after github.com/antofuller/CROMA, MIT)"
    licence = (
        "code: MIT (antofuller/CROMA; torchgeo's port MIT); weights: released with the MIT-licensed code "
        "repository and mirrored by torchgeo (hf torchgeo/croma), no separate weights licence stated [unverified]"
    )
    #: Tiles of another size (``tile_size=``): see :mod:`xrembed.models.pos_embed`.
    other_tile_sizes = (
        "native: the 2-D ALiBi attention bias is computed for the tile's patch grid, as torchgeo's CROMA(image_size=N) does (CROMA has no position table)"
    )
    outputs = {
        "grid": "the encoder's normed patch tokens (s2: optical_encodings, s1: sar_encodings, joint: "
        "joint_encodings), one per 8 x 8 px patch",
        "pooled": "the release's GAP output: GAP-FFN of the mean token (s1, s2) or the mean token (joint); "
        "in tile mode the head is applied to the valid-pixel-weighted mean of the grid tokens",
    }
    default_bands = S2_BANDS
    band_order = ("model order: " + ",".join(S2_BANDS) + " (s2); VV,VH (s1); VV,VH then the 12 optical bands "
                  "(joint); picked by name")
    input_values = (
        "s2: raw reflectance 0..10000 (already-normalised [0, 1] rejected); s1: backscatter in dB (linear "
        "power rejected); joint: both, on one grid"
    )
    normalisation = {
        "every channel, per model-size image": "t = (x - (mean - 2 std)) / (4 std); x' = floor(clip(255 t, 0, 255)) / 255",
        "statistics": "mean and (unbiased) std of the image's valid pixels of that channel; CROMA's README "
        "takes them over the whole batch it is given",
        "invalid pixels": "left out of the statistics, then set to floor(127.5) / 255 (where the mean maps)",
    }

    # -- contract (plan_inputs is the base's, from this data and the hooks below) ----------------
    band_sets = {name: bands for name, (bands, _, _) in MODALITIES.items()}
    no_wavelengths_message = (
        "croma reads fixed bands and takes no wavelengths=; it reads the 12 Sentinel-2 bands, VV/VH, or both "
        "(modality='joint') by name. Drop wavelengths= and name the bands."
    )
    unnamed_message = (
        "the input's bands are not named; name them with bands=[...] in the input's order "
        "(croma with modality={modality!r} needs {wanted})."
    )
    missing_message = (
        "croma with modality={modality!r} needs bands {wanted}; the input lacks {missing} (it has {available}). "
        "Add the missing bands{hint} or choose another modality= ('s2', 's1' or 'joint')."
    )

    bands_reorder_only = True  # bands= names exactly the modality's bands, in any order
    modality_names = tuple(MODALITIES)
    modality_spellings = _MODALITY_SPELLINGS
    default_modality, sar_modality = "s2", "s1"
    modality_message = (
        "{model} takes modality='s2' (12 Sentinel-2 bands, the default), 's1' (Sentinel-1 VV/VH in dB) or "
        "'joint' (both on one grid), not {modality!r}."
    )
    exact_bands_message = (
        "{model} with modality={modality!r} reads exactly {count} bands {wanted}, but bands= names {given}: "
        "{bands}. Pass bands={wanted} (any order; they are fed in the model order), or choose another modality=."
    )

    def missing_text(self, req: BandRequest, wanted, missing: list[str]) -> str:
        hint = " (all 12 Sentinel-2 bands except B10)" if req.modality != "s1" else ""
        return self.say(self.missing_message, modality=req.modality, wanted=list(wanted), missing=missing,
                        available=req.available, hint=hint)

    def plan_options(self, chosen: list[str], req: BandRequest) -> tuple[tuple[str, Any], ...]:
        return (("modality", req.modality), ("scale", MODALITIES[req.modality][1]))

    def describe_extra(self) -> dict[str, Any]:
        # "joint" reads two sensors at once, so it has no single default sensor: it is listed apart.
        bands, _, values = MODALITIES["joint"]
        return {
            "modalities": {
                name: {"bands": list(b), "values": v} for name, (b, _, v) in MODALITIES.items() if name != "joint"
            },
            "joint_modality": {"joint": {"bands": list(bands), "values": values, "reads": ["s1", "s2"]}},
            "default_modality": "s2",
        }

    # -- weights -----------------------------------------------------------------------------
    def build_module(self):
        from .croma_net import CROMAEncoder

        v = self.variant
        return CROMAEncoder(v.embed_dim, v.depth, v.image_size, v.patch_size)

    def clean_state_dict(self, state_dict):
        """Flatten the release's nested ``{part: state_dict}`` into ``part.key`` (all five parts are kept).

        The computed ALiBi ``attn_bias`` (in torchgeo's module, never in the release) is dropped if present;
        anything else missing, extra or wrongly shaped is refused by the strict load.
        """
        flat: dict[str, Any] = {}
        for key, value in state_dict.items():
            if isinstance(value, dict):
                flat.update({f"{key}.{inner}": tensor for inner, tensor in value.items()})
            else:
                flat[key] = value
        flat.pop("attn_bias", None)
        return flat

    # -- run time ----------------------------------------------------------------------------
    def check_values(self, pixels: np.ndarray, plan: InputPlan) -> None:
        scale = plan.option("scale")
        if scale in ("db", "joint"):
            check_db_backscatter(pixels[:, : len(S1_BANDS)] if scale == "joint" else pixels,
                                 f"croma (modality={plan.option('modality')!r})")
        if scale in ("reflectance", "joint"):
            check_raw_reflectance(pixels[:, len(S1_BANDS):] if scale == "joint" else pixels,
                                  f"croma (modality={plan.option('modality')!r})")

    def normalise(self, pixels, plan):
        return croma_normalise(pixels)

    def forward_grid(self, module, x, plan):
        return module.grid(x, plan.option("modality"))

    def forward_pooled(self, module, x, plan):
        return module(x, plan.option("modality"))

    def pool_tokens(self, module, mean_tokens, plan):
        return module.pool(mean_tokens, plan.option("modality"))


def croma_normalise(pixels):
    """CROMA's per-channel ``mean +- 2 std`` window in 8 bits, per image ``(B, C, H, W)``; NaN pixels are
    left out of the statistics and then set to where the mean maps (``floor(127.5) / 255``).

    A channel with no spread (or no valid pixel) maps to 0, as the reference's ``0 / 0`` cast to uint8 does.
    """
    import torch

    valid = torch.isfinite(pixels)
    count = valid.sum(dim=(-2, -1), keepdim=True).to(pixels.dtype)
    zeros = torch.where(valid, pixels, torch.zeros_like(pixels))
    mean = zeros.sum(dim=(-2, -1), keepdim=True) / count.clamp(min=1)
    squares = torch.where(valid, (pixels - mean) ** 2, torch.zeros_like(pixels)).sum(dim=(-2, -1), keepdim=True)
    std = torch.sqrt(squares / (count - 1).clamp(min=1))
    low, high = mean - WINDOW_STDS * std, mean + WINDOW_STDS * std
    width = high - low  # in the README's order of operations, so 8-bit levels agree with it
    spread = width > 0
    scaled = torch.where(spread, (pixels - low) / torch.where(spread, width, torch.ones_like(width)), 0.0)
    levels = torch.floor(torch.clamp(scaled * LEVELS, 0, LEVELS)) / LEVELS
    return torch.where(valid, levels, torch.full_like(levels, float(np.floor(LEVELS / 2)) / LEVELS))
