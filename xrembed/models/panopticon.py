"""Panopticon: one ViT-B/14 for any optical or SAR channels, fused per patch by cross-attention over channels.

Reference: Waldmann et al., *Panopticon: Advancing Any-Sensor Foundation Models for Earth Observation*
(CVPR 2025 EarthVision, arXiv 2503.10845); code github.com/Panopticon-FM/panopticon and torchgeo
``torchgeo.models.panopticon`` (MIT), the runnable reference of the parity tests; weights
``lewaldm/panopticon`` ``panopticon_vitb14_teacher.pth`` on the Hugging Face Hub.

Choices made here, each deliberate (see ``docs/models/panopticon.md``):

* **Channel ids** are what the reference wants: optical channels their centre wavelength in nm, floored
  (from xrembed's Sentinel-2 table, or ``wavelengths=`` in micrometres); SAR channels negative ids, VV
  ``-1``, VH ``-2``, HH ``-3``, HV ``-4`` (orbit direction unknown). Optical and SAR channels may be mixed.
* **Normalisation**: Panopticon standardises each channel ("standard normal") with pre-training
  statistics that are not published. Here each channel is standardised per model-size image (zero mean,
  unit std over its valid pixels; one tile, or the whole raster before resizing), so a result never
  depends on its batch or chunk. Invalid pixels become 0 (the mean).
* **Grid output** is the normed patch tokens (timm ``forward_features`` without the CLS), one per
  14 x 14 px patch. **Pooled output** in resize mode is the reference's output, the normed CLS token; in
  tile mode (a CLS cannot be assembled from tiles) the valid-pixel-weighted mean of the grid tokens.
* **Position embeddings** are stored at 518 px (37 x 37) and resized bicubic with antialias to the
  224 px tile (16 x 16), as torchgeo's loader does; ``mask_token`` is dropped.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from ..bands import SENTINEL2_WAVELENGTHS_UM
from ..errors import BandMismatchError
from .base import BandRequest, Checkpoint, InputPlan, ModelAdapter, Variant
from .band_sets import S1_BANDS
from .checks import check_db_backscatter, check_raw_reflectance
from .sensors import EE_S2_12, S1_DB_SENSOR, S2_SR, SensorSpec

#: The 12 Sentinel-2 bands read by default (B10, cirrus, is left out), in this order.
S2_BANDS = ("B01", "B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A", "B09", "B11", "B12")
#: SAR channel ids (Panopticon's Sentinel-1 convention: polarisation, orbit direction unknown).
SAR_CHANNEL_IDS = {"VV": -1.0, "VH": -2.0, "HH": -3.0, "HV": -4.0}
#: Position embeddings of the release are for 518 px (37 x 37 patches of 14 px).
RELEASE_GRID = 37


def channel_id_nm(wavelength_um: float) -> float:
    """An optical channel's id: its wavelength in nm, floored (rounded first to absorb float error)."""
    return float(math.floor(round(wavelength_um * 1000.0, 6)))


class Panopticon(ModelAdapter):
    model_id = "panopticon"
    title = "Panopticon: any-sensor ViT-B/14 (channel cross-attention patch embedding, DINOv2 trunk)"
    variants = {
        "vitb14": Variant(
            name="vitb14", embed_dim=768, depth=12, num_heads=12, patch_size=14, image_size=224,
            checkpoint=Checkpoint(repo_id="lewaldm/panopticon", filename="panopticon_vitb14_teacher.pth",
                                  revision="c8c2bb9555819e8b2bcedf5b3b00e3bf531554e7"),
            extra=(("attn_dim", 2304),),
        ),
    }
    default_variant = "vitb14"
    sensors = {
        "s2": SensorSpec(S2_SR, EE_S2_12, scale_m=10, modality="s2"),
        "s1": S1_DB_SENSOR,
    }
    reference = "torchgeo.models.panopticon (torchgeo 0.8.1, MIT; after github.com/Panopticon-FM/panopticon)"
    licence = (
        "code: torchgeo's port MIT (upstream Panopticon-FM/panopticon builds on DINOv2, Apache-2.0 [unverified]); "
        "weights: hf lewaldm/panopticon, licence not stated in torchgeo's weight enum and the model card "
        "could not be checked offline [unverified]"
    )
    #: Tiles of another size (``tile_size=``): see :mod:`xrembed.models.pos_embed`.
    other_tile_sizes = (
        "the release's 37 x 37 pos_embed table resampled to the tile's patch grid as torchgeo's panopticon_vitb14(img_size=N) does (bicubic, antialiased, CLS row kept; timm's arithmetic)"
    )
    outputs = {
        "grid": "normed patch tokens of the last block, one per 14 x 14 px patch",
        "pooled": "resize mode: the normed CLS token (the reference's output); tile mode: the valid-pixel-"
        "weighted mean of the normed grid tokens (a CLS cannot be assembled from tiles)",
    }
    default_bands = S2_BANDS
    band_order = ("the input's order (any optical bands with known wavelengths, and VV/VH/HH/HV); default "
                  + ",".join(S2_BANDS) + " (s2) or VV,VH (s1)")
    lists_wavelengths = True
    input_values = (
        "optical: raw reflectance 0..10000 (already-normalised [0, 1] rejected); SAR: backscatter in dB "
        "(linear power rejected); both may be mixed"
    )
    normalisation = {
        "every channel, per model-size image": "(x - mean) / std over the image's valid pixels of that channel",
        "why": "Panopticon standardises channels with pre-training statistics that are not published",
        "invalid pixels": "0 (the channel mean)",
        "channel ids": "optical: floor(wavelength in nm); SAR: VV -1, VH -2, HH -3, HV -4",
    }

    # -- contract ---------------------------------------------------------------------------
    band_sets = {"s2": S2_BANDS, "s1": S1_BANDS}
    accepted_modalities = (None, "s2", "s1", "optical", "sar")
    modality_message = "panopticon takes modality='s2' (optical) or 's1' (SAR), not {modality!r}."
    takes_wavelengths = True
    unknown_wavelength_message = (
        "no wavelength is known for band {band!r}; name it as a Sentinel-2 band (B01..B12, B8A) or a SAR "
        "polarisation (VV, VH, HH, HV), or pass wavelengths=[...] in micrometres, one per (optical) band."
    )
    unnamed_message = "the input's bands are not named; name them with bands=[...] (e.g. bands=['B04', 'B03', 'B02'])."
    sar_input_means_s1 = True  # VV/VH alone are Sentinel-1 unless modality= says otherwise
    missing_message = {
        "s1": "panopticon with Sentinel-1 input needs bands VV and VH; missing {missing}.",
        None: "panopticon's default bands are {wanted}; the input lacks {missing} (it has {available}). "
        "Panopticon reads any bands with known wavelengths: choose some with bands=[...], "
        "or describe every input band with wavelengths=[...].",
    }

    def plan_options(self, chosen: list[str], req: BandRequest) -> tuple[tuple[str, Any], ...]:
        self.refuse_duplicates(chosen)
        if req.wavelengths is not None:  # the caller describes every band as optical light
            ids = tuple(channel_id_nm(w) for w in self.wavelengths_of(chosen, req.wavelengths))
        else:
            optical = [b for b in chosen if b not in SAR_CHANNEL_IDS]
            waves = iter(self.wavelengths_of(optical, None))
            ids = tuple(SAR_CHANNEL_IDS[b] if b in SAR_CHANNEL_IDS else channel_id_nm(next(waves)) for b in chosen)
        if req.modality == "s1" and any(i >= 0 for i in ids):
            raise BandMismatchError(f"modality='s1' needs SAR bands (VV/VH), the input gives {chosen}.")
        sar = [i < 0 for i in ids]
        scale = "db" if all(sar) else ("reflectance" if not any(sar) else "mixed")
        return (("channel_ids", ids), ("scale", scale))

    def describe_extra(self) -> dict[str, Any]:
        return {
            "channel_ids_nm": [channel_id_nm(SENTINEL2_WAVELENGTHS_UM[b]) for b in S2_BANDS],
            "sar_channel_ids": dict(SAR_CHANNEL_IDS),
            "modalities": {
                "s2": {"bands": list(S2_BANDS), "values": "Sentinel-2 reflectance 0..10000"},
                "s1": {"bands": list(S1_BANDS), "values": "Sentinel-1 backscatter in dB"},
            },
        }

    # -- weights -----------------------------------------------------------------------------
    def build_module(self):
        from .panopticon_net import PanopticonEncoder

        v = self.variant
        return PanopticonEncoder(v.embed_dim, v.depth, v.num_heads, v.patch_size, v.image_size,
                                 attn_dim=int(dict(v.extra).get("attn_dim", 3 * v.embed_dim)),
                                 pos_grid=int(dict(v.extra).get("release_grid", RELEASE_GRID)))

    def clean_state_dict(self, state_dict):
        """Drop ``mask_token`` (DINOv2 pre-training). ``pos_embed`` stays at the release's 37 x 37 patch grid:
        the encoder resamples it to each tile's grid (bicubic, antialiased; 16 x 16 at 224 px), as the loader
        torchgeo ships does once for its ``img_size``, so every tile size resamples the release table once."""
        return {k: v for k, v in state_dict.items() if k != "mask_token"}

    # -- run time ----------------------------------------------------------------------------
    def check_values(self, pixels: np.ndarray, plan: InputPlan) -> None:
        ids = np.asarray(plan.option("channel_ids"))
        if (ids < 0).any():
            check_db_backscatter(pixels[:, ids < 0], "panopticon (SAR channels)")
        if (ids >= 0).any():
            check_raw_reflectance(pixels[:, ids >= 0], "panopticon")

    def normalise(self, pixels, plan):
        return standardise_per_image(pixels)

    def _ids(self, x, plan):
        import torch

        return torch.tensor(plan.option("channel_ids"), dtype=torch.float32, device=x.device)

    def forward_grid(self, module, x, plan):
        return module.grid(x, self._ids(x, plan))

    def forward_pooled(self, module, x, plan):
        return module(x, self._ids(x, plan))


def standardise_per_image(pixels):
    """``(x - mean) / std`` per channel of each image ``(B, C, H, W)`` over its valid pixels (unbiased std);
    invalid pixels become 0. A channel without spread becomes 0."""
    import torch

    valid = torch.isfinite(pixels)
    count = valid.sum(dim=(-2, -1), keepdim=True).to(pixels.dtype)
    mean = torch.where(valid, pixels, 0.0).sum(dim=(-2, -1), keepdim=True) / count.clamp(min=1)
    squares = torch.where(valid, (pixels - mean) ** 2, 0.0).sum(dim=(-2, -1), keepdim=True)
    std = torch.sqrt(squares / (count - 1).clamp(min=1))
    spread = std > 0
    out = torch.where(spread, (pixels - mean) / torch.where(spread, std, torch.ones_like(std)), 0.0)
    return torch.where(valid, out, 0.0)
