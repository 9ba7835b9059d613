"""TerraFM: one ViT for Sentinel-1 SAR and Sentinel-2 L1C/L2A, with one patch stem per sensor.

Reference: Danish et al., *TerraFM: A Scalable Foundation Model for Unified Multisensor Earth
Observation* (arXiv 2506.06281); code github.com/mbzuai-oryx/TerraFM (single file ``terrafm.py``,
DINO-derived; **no licence stated**), weights Hugging Face ``MBZUAI/TerraFM``.

Choices made here, each deliberate (see ``docs/models/terrafm.md``):

* **The stem is chosen by ``modality``**: ``"s2"`` (default, also ``"s2_l2a"``) uses the L2A stem,
  ``"s2_l1c"`` the L1C stem and ``"s1"`` the SAR stem. The reference ``forward()`` never passes
  ``is_l2a=True``, so upstream every 12-channel input goes through the L1C stem; we do not copy that.
* **Pooled output** is the reference's: the CLS token after the final norm. A CLS cannot be assembled
  from tiles, so in tile mode the pooled vector is the valid-pixel-weighted mean of the normed grid tokens
  (``pool_tokens`` is the identity); in resize mode (the default for pooled output of rasters up to four
  tiles a side) it is the CLS of the resized image.
* **Grid output** is the reference's ``extract_feature(x, out_indices=[last])``: the last block's patch
  tokens after the final norm.
* **Sentinel-2**: 12 bands B1, B2, B3, B4, B5, B6, B7, B8, B8A, B9, B11, B12, raw reflectance (0..10000)
  mapped with ``clip(x / 10000, 0, 1)`` (the authors publish no normalisation; rs-embed's choice).
* **Sentinel-1**: VV, VH as *linear* backscatter power (Earth Engine ``COPERNICUS/S1_GRD_FLOAT``,
  Major-TOM S1RTC). Mapped with ``clip(log1p(x) / log(2), 0, 1)``: rs-embed's ``log1p`` compression,
  but with a fixed divisor (linear power 1, i.e. 0 dB, maps to 1) instead of rs-embed's per-image 99th
  percentile, so that a pixel's value never depends on its tile, chunk or neighbours. dB input
  (negative values) and uncalibrated amplitude DN (median far above 1) are rejected.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from .base import BandRequest, Checkpoint, InputPlan, ModelAdapter, Variant
from .band_sets import S1_BANDS
from .checks import check_linear_power, check_raw_reflectance
from .normalise import unit_reflectance
from .sensors import EE_S2_12, S1_LINEAR_SENSOR, S2_SR, S2_TOA, SensorSpec

#: Model order of the 12 Sentinel-2 bands (B10 is not used).
S2_BANDS = ("B01", "B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A", "B09", "B11", "B12")

#: modality keyword -> (sensor stem, bands, scaling)
MODALITIES: dict[str, tuple[str, tuple[str, ...], str]] = {
    "s2": ("s2_l2a", S2_BANDS, "reflectance"),
    "s2_l2a": ("s2_l2a", S2_BANDS, "reflectance"),
    "s2_l1c": ("s2_l1c", S2_BANDS, "reflectance"),
    "s1": ("s1", S1_BANDS, "linear_power"),
}

#: ``log1p`` of linear power divided by this: linear power 1 (0 dB) maps to 1.
S1_LOG_DIVISOR = math.log(2.0)
#: A median linear power above this (+3 dB) means the data are not calibrated linear backscatter.
S1_MAX_MEDIAN = 2.0

_HF_REPO = "MBZUAI/TerraFM"


class TerraFM(ModelAdapter):
    model_id = "terrafm"
    aliases = ("terrafm_b",)
    title = "TerraFM: unified Sentinel-1 / Sentinel-2 (L1C, L2A) ViT"
    variants = {
        "base": Variant(
            name="base", embed_dim=768, depth=12, num_heads=12, patch_size=16, image_size=224,
            checkpoint=Checkpoint(repo_id=_HF_REPO, filename="TerraFM-B.pth"),
        ),
        "large": Variant(
            name="large", embed_dim=1024, depth=24, num_heads=16, patch_size=16, image_size=224,
            checkpoint=Checkpoint(repo_id=_HF_REPO, filename="TerraFM-L.pth"),
        ),
    }
    default_variant = "base"
    sensors = {
        "s2": SensorSpec(S2_SR, EE_S2_12, scale_m=10, modality="s2"),
        "s2_l1c": SensorSpec(S2_TOA, EE_S2_12, scale_m=10, modality="s2_l1c"),
        "s1": S1_LINEAR_SENSOR,  # TerraFM's SAR stem reads linear power
    }
    reference = "https://github.com/mbzuai-oryx/TerraFM (terrafm.py; parity via scripts/goldens_terrafm.py)"
    licence = "none stated upstream (no LICENSE file in the code repository; weights licence unverified)"
    #: Tiles of another size (``tile_size=``): see :mod:`xrembed.models.pos_embed`.
    other_tile_sizes = (
        "the learned pos_embed table resampled to the tile's patch grid as timm does (bicubic, antialiased, CLS row kept)"
    )
    outputs = {
        "grid": "last-block patch tokens after the final norm (reference extract_feature, last index), "
        "one per 16 x 16 px patch",
        "pooled": "resize mode: the CLS token after the final norm (reference forward()); tile mode: the "
        "valid-pixel-weighted mean of the normed grid tokens (a CLS cannot be assembled from tiles)",
    }
    default_bands = S2_BANDS
    band_order = "model order: " + ",".join(S2_BANDS) + " (s2, s2_l1c); VV,VH (s1); picked by name"
    input_values = (
        "s2/s2_l1c: raw reflectance 0..10000 (already-normalised [0, 1] rejected); "
        "s1: linear power, e.g. Earth Engine COPERNICUS/S1_GRD_FLOAT (dB and amplitude DN rejected)"
    )
    normalisation = {
        "reflectance": "clip(x / 10000, 0, 1)",
        "linear_power": "clip(log1p(max(x, 0)) / log(2), 0, 1)",
    }

    # -- contract (plan_inputs is the base's, from this data and the hooks below) ----------------
    band_sets = {name: bands for name, (_, bands, _) in MODALITIES.items()}
    wavelengths_checked_first = True
    no_wavelengths_message = (
        "terrafm does not take wavelengths=; it reads Sentinel-2 bands or Sentinel-1 VV/VH by name. "
        "Drop wavelengths= and name the bands (bands=[...] or the input's band coordinate)."
    )
    unnamed_message = (
        "the input's bands are not named; name them with bands=[...] in the input's order "
        "(terrafm with modality={modality!r} needs {wanted})."
    )
    missing_message = (
        "terrafm with modality={modality!r} needs bands {wanted}; the input lacks {missing} "
        "(it has {available}). Add the missing bands{hint} or choose another modality= ('s2', 's2_l1c' or 's1')."
    )

    bands_reorder_only = True  # bands= names exactly the modality's bands, in any order
    modality_names = tuple(MODALITIES)
    modality_spellings = {"sar": "s1", "optical": "s2", "l2a": "s2_l2a", "l1c": "s2_l1c"}  # TerraFM's own aliases
    default_modality, sar_modality = "s2", "s1"
    modality_message = (
        "{model} takes modality='s2' (Sentinel-2 L2A, the default), 's2_l1c' (Sentinel-2 L1C) "
        "or 's1' (Sentinel-1 VV/VH), not {modality!r}."
    )

    def missing_text(self, req: BandRequest, wanted, missing: list[str]) -> str:
        hint = " (all 12 Sentinel-2 bands except B10)" if req.modality != "s1" else ""
        return self.say(self.missing_message, modality=req.modality, wanted=list(wanted), missing=missing,
                        available=req.available, hint=hint)

    def plan_options(self, chosen: list[str], req: BandRequest) -> tuple[tuple[str, Any], ...]:
        sensor, _, scale = MODALITIES[req.modality]
        return (("modality", req.modality), ("sensor", sensor), ("scale", scale))

    def describe_extra(self) -> dict[str, Any]:
        return {
            "aliases": list(self.aliases),
            "modalities": {
                "s2": {"stem": "s2_l2a", "bands": list(S2_BANDS), "values": "Sentinel-2 L2A reflectance 0..10000"},
                "s2_l1c": {"stem": "s2_l1c", "bands": list(S2_BANDS), "values": "Sentinel-2 L1C TOA reflectance 0..10000"},
                "s1": {"stem": "s1", "bands": list(S1_BANDS), "values": "Sentinel-1 linear backscatter power (not dB)"},
            },
            "default_modality": "s2",
        }

    # -- weights -----------------------------------------------------------------------------
    def build_module(self):
        from .terrafm_net import TerraFMEncoder

        v = self.variant
        return TerraFMEncoder(v.embed_dim, v.depth, v.num_heads, v.patch_size, v.image_size)

    def clean_state_dict(self, state_dict):
        """Strip a DINO ``backbone.`` prefix present on every key and drop the classifier ``head.*``.

        The reference model's own ``state_dict()`` (what ``TerraFM-B.pth`` is loaded into) needs no change;
        anything else missing, extra or wrongly shaped is refused by the strict load.
        """
        if state_dict and all(k.startswith("backbone.") for k in state_dict):
            state_dict = {k[len("backbone.") :]: v for k, v in state_dict.items()}
        return {k: v for k, v in state_dict.items() if not k.startswith("head.")}

    # -- run time ----------------------------------------------------------------------------
    def check_values(self, pixels: np.ndarray, plan: InputPlan) -> None:
        if plan.option("scale") == "reflectance":
            check_raw_reflectance(pixels, f"terrafm (modality={plan.option('modality')!r})")
        else:
            check_linear_power(pixels, "terrafm (modality='s1')", S1_MAX_MEDIAN)

    def normalise(self, pixels, plan):
        import torch

        if plan.option("scale") == "reflectance":
            return unit_reflectance(pixels)
        # NaN stays NaN through clamp/log1p, so invalid pixels still reach the engine's mask.
        return torch.clamp(torch.log1p(torch.clamp(pixels, min=0)) / S1_LOG_DIVISOR, 0, 1)

    def forward_grid(self, module, x, plan):
        return module.grid(x, plan.option("sensor"))

    def forward_pooled(self, module, x, plan):
        return module(x, plan.option("sensor"))
