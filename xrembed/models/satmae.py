"""SatMAE (fMoW-RGB ViT-L/16 pre-train): a masked-autoencoder ViT encoder on RGB.

Reference: Cong et al., *SatMAE: Pre-training Transformers for Temporal and Multi-Spectral Satellite
Imagery* (NeurIPS 2022); code github.com/sustainlab-group/SatMAE (``models_mae.py``, ``models_vit.py``),
**CC BY-NC 4.0** (non-commercial). Weights: Zenodo record 7369797, ``fmow_pretrain.pth`` (not on the
Hugging Face Hub, so there is no automatic download: pass the file with ``weights="/path/fmow_pretrain.pth"``).

Choices made here, each deliberate:

* **Bands**: Sentinel-2 B4, B3, B2 (red, green, blue), in this order, picked by name.
* **Input scaling**: fMoW-RGB images are 8-bit JPEGs that ``ToTensor`` maps to [0, 1]. Raw Sentinel-2 L2A
  reflectance (0..10000) is mapped to [0, 1] with ``clip(x / 10000, 0, 1)`` and then standardised with
  the fMoW mean/std of ``util/datasets.py``. Data already in [0, 1] is rejected (``InputRangeError``).
* **Pooled output** is the reference's ``global_pool=False`` output: the CLS token after the final
  ``norm``. In tile mode the engine pools the grid instead (valid-area-weighted mean of the normed patch
  tokens), because a CLS token cannot be stitched across tiles; use ``input_prep="resize"`` for CLS.
* **Grid output** is the normed patch tokens **in spatial order**. The upstream MAE
  ``forward_encoder(x, mask_ratio=0)`` still shuffles the patch tokens (``random_masking`` draws a random
  permutation even when nothing is masked); the tokens are only spatially ordered after a
  ``gather(..., ids_restore)``. rs-embed's SatMAE grid skips that step and is scrambled; we never shuffle.
* **Key clean-up**: the pre-train checkpoint holds the whole MAE; ``decoder_*`` and ``mask_token`` are
  dropped, which leaves exactly the timm ViT-L/16 encoder keys.
"""

from __future__ import annotations

from typing import Any, ClassVar

from ..errors import BandMismatchError
from .base import BandRequest, InputContext, InputPlan, ModelAdapter, UrlCheckpoint, Variant
from .band_sets import S1_BANDS, S2_RGB_BANDS
from .checks import check_raw_reflectance
from .normalise import standardise, unit_reflectance
from .sensors import S2_RGB

RGB_BANDS = S2_RGB_BANDS

#: fMoW-RGB statistics on the [0, 1] scale (SatMAE ``util/datasets.py``).
FMOW_MEAN = (0.4182007312774658, 0.4214799106121063, 0.3991275727748871)
FMOW_STD = (0.28774282336235046, 0.27541765570640564, 0.2764017581939697)


def rgb_normalisation(mean, std, statistics: str) -> dict[str, Any]:
    """``describe_model``'s normalisation entry of an RGB MAE-style ViT with these statistics."""
    return {
        "reflectance": "clip(x / 10000, 0, 1), then (x - mean) / std per band",
        "mean": list(mean),
        "std": list(std),
        "statistics": statistics,
    }


class RGBViTAdapter(ModelAdapter):
    """Shared contract of the RGB MAE-style ViTs (SatMAE, ScaleMAE): B4, B3, B2 reflectance, CLS pooled."""

    default_bands = RGB_BANDS
    band_order = "model order: B04 (red), B03 (green), B02 (blue); picked by name from the input"
    input_values = "raw Sentinel-2 L2A reflectance 0..10000 (already-normalised [0, 1] data rejected)"

    mean: ClassVar[tuple[float, float, float]]
    std: ClassVar[tuple[float, float, float]]
    #: Checkpoint keys (prefixes) dropped before the strict load.
    dropped_keys: ClassVar[tuple[str, ...]] = ()

    value_checks = {"reflectance": check_raw_reflectance}

    # -- contract (plan_inputs is the base's, from this data and the hooks below) ----------------
    accepted_modalities = (None, "s2", "optical", "rgb")
    modality_message = (
        "{model} is an RGB model: modality={modality!r} is not accepted; leave it out (or use 's2') and "
        "give Sentinel-2 bands B04, B03, B02."
    )
    no_wavelengths_message = (
        "{model} reads fixed RGB bands and takes no wavelengths=; drop it and name the bands instead, "
        "e.g. bands=['B04', 'B03', 'B02']."
    )
    unnamed_message = (
        "the input's bands are not named; {model} needs red, green, blue: name them with "
        "bands=['B04', 'B03', 'B02'] (in the input's order)."
    )
    duplicates_message = "{source} {chosen} contains duplicates; list B04, B03, B02 once each."
    missing_message = (
        "{model} reads Sentinel-2 bands {wanted} (red, green, blue); the input lacks {missing} "
        "(it has {given_available}). Add them, or rename the input's RGB bands "
        "(e.g. `da.assign_coords(band=['B04', 'B03', 'B02'])`)."
    )

    def check_bands(self, req: BandRequest) -> list[str]:
        """``bands=`` must name B04, B03, B02 (any order; they are fed in model order)."""
        mid, chosen, source = self.model_id, req.bands, "bands="
        self.refuse_duplicates(chosen, source=source)
        if any(b in S1_BANDS for b in chosen):
            raise BandMismatchError(
                f"{mid} is an optical RGB model and cannot read Sentinel-1 bands {chosen}; use dofa or another "
                "SAR-capable model, or give Sentinel-2 bands B04, B03, B02."
            )
        if len(chosen) != 3:
            raise BandMismatchError(
                f"{mid} takes exactly 3 bands (red, green, blue) but {source} gives {len(chosen)}: {chosen}. "
                "Use bands=['B04', 'B03', 'B02']."
            )
        if sorted(chosen) != sorted(RGB_BANDS):
            raise BandMismatchError(
                f"{mid} reads red, green, blue = Sentinel-2 {list(RGB_BANDS)}; {source} gives {chosen}. "
                "Use bands=['B04', 'B03', 'B02'] (RGB inputs from other sensors: name their bands so)."
            )
        return list(RGB_BANDS)

    def plan_options(self, chosen: list[str], req: BandRequest) -> tuple[tuple[str, Any], ...]:
        return (
            ("scale", self.scale),
            ("mean", tuple(self.mean)),
            ("std", tuple(self.std)),
            *self._extra_options(req.context),
        )

    def _extra_options(self, context: InputContext | None) -> tuple[tuple[str, Any], ...]:
        return ()

    # -- weights -----------------------------------------------------------------------------
    def build_module(self):
        from .mae_net import MAEEncoder

        v = self.variant
        return MAEEncoder(v.embed_dim, v.depth, v.num_heads, v.patch_size, v.image_size, in_chans=3)

    def clean_state_dict(self, state_dict):
        return {k: v for k, v in state_dict.items() if not k.startswith(self.dropped_keys)}

    # -- run time ----------------------------------------------------------------------------
    def normalise(self, pixels, plan):
        return standardise(unit_reflectance(pixels), plan.option("mean"), plan.option("std"))

    def _res(self, plan: InputPlan) -> float | None:
        return None

    def forward_grid(self, module, x, plan):
        return module.forward_grid(x, self._res(plan))

    def forward_pooled(self, module, x, plan):
        return module(x, self._res(plan))


class SatMAE(RGBViTAdapter):
    model_id = "satmae"
    aliases = ("satmae_rgb",)
    title = "SatMAE: masked-autoencoder ViT-L/16 pre-trained on fMoW-RGB"
    variants = {
        "large": Variant(
            name="large", embed_dim=1024, depth=24, num_heads=16, patch_size=16, image_size=224,
            checkpoint=UrlCheckpoint(
                url="https://zenodo.org/record/7369797/files/fmow_pretrain.pth", filename="fmow_pretrain.pth"
            ),
        )
    }
    default_variant = "large"
    sensors = {"s2": S2_RGB}
    reference = "https://github.com/sustainlab-group/SatMAE (models_mae.py / models_vit.py)"
    licence = "CC BY-NC 4.0 (code and, presumably, weights): non-commercial use only"
    #: Tiles of another size (``tile_size=``): see :mod:`xrembed.models.pos_embed`.
    other_tile_sizes = (
        "the stored sin-cos pos_embed table resampled to the tile's patch grid as timm does (bicubic, antialiased, CLS row kept), as MAE-style fine-tuning at another img_size does"
    )
    mean = FMOW_MEAN
    std = FMOW_STD
    normalisation = rgb_normalisation(FMOW_MEAN, FMOW_STD, "fMoW-RGB (SatMAE util/datasets.py)")
    dropped_keys = ("decoder_", "mask_token")
    outputs = {
        "grid": "normed patch tokens (after the final norm), one per 16 x 16 px patch, in spatial order "
        "(the upstream MAE encoder's token shuffle is not reproduced)",
        "pooled": "resize mode: the normed CLS token (reference global_pool=False); tile mode: the "
        "valid-area-weighted mean of the normed patch tokens",
    }

    def describe_extra(self) -> dict[str, Any]:
        return {
            "weights_note": "the official checkpoint is on Zenodo, not the Hugging Face Hub: weights=None downloads "
            "it once into xrembed's cache (XREMBED_CACHE); offline, download it elsewhere and pass "
            "weights='/path/to/fmow_pretrain.pth'. Its decoder_* and mask_token keys are dropped before the strict load.",
            "preprocessing_note": "upstream eval resizes to 256 (bicubic) and centre-crops 224; xrembed tiles "
            "224 px windows (tile mode) or resizes the whole raster to 224 px (resize mode) instead",
        }
