"""Scale-MAE (fMoW-RGB ViT-L/16): a ViT whose position embedding is scaled by the ground sample distance.

Reference: Reed et al., *Scale-MAE: A Scale-Aware Masked Autoencoder for Multiscale Geospatial
Representation Learning* (ICCV 2023); code github.com/bair-climate-initiative/scale-mae (**CC BY-NC 4.0**,
non-commercial). torchgeo 0.8.1 ``torchgeo.models.scale_mae.ScaleMAE`` (MIT) is the runnable reference
our parity test compares against; its converted checkpoint (timm keys) on the Hugging Face Hub,
``isaaccorley/vit_large_patch16_224_fmow_rgb_scalemae``, is the official weights source here.

Choices made here, each deliberate:

* **GSD -> ``res``**. The encoder adds a 2-D sin-cos embedding of the patch grid coordinates
  ``k * res`` (``k = 0 .. 13``), recomputed at each forward pass; the stored ``pos_embed`` is unused.
  ``res`` is a *relative* GSD: Scale-MAE pre-trained on fMoW with ``res = crop ratio x 2.5``
  (``base_resolution``), its kNN evaluation uses ``1.0``, torchgeo defaults to ``1.0`` and documents it
  as metres, rs-embed passes metres. xrembed follows the metre convention of torchgeo and rs-embed:
  ``res = resolution_m / REFERENCE_GSD_M`` with ``REFERENCE_GSD_M = 1.0`` m, where ``resolution_m`` is the
  input raster's pixel size (``InputContext.resolution_m``). A 10 m Sentinel-2 raster runs at
  ``res = 10``. The value is fixed when ``embed()`` is called and recorded in the plan (``res``).
  When ``plan_inputs`` is called without a context, ``res = 1.0`` (torchgeo's default).
* In resize mode the whole raster is resampled to 224 px, so its effective GSD differs from the input's;
  the adapter cannot see the raster size, so ``res`` still follows the input pixel size (documented
  limitation; see ``docs/models/scalemae.md``).
* **Bands / scaling**: Sentinel-2 B4, B3, B2; ``clip(x / 10000, 0, 1)``, then ImageNet mean/std (the
  statistics of Scale-MAE's ``config/fmow.yaml`` and torchgeo's transform, which divides 8-bit values by
  255 first).
* **Outputs** as for SatMAE: pooled = the normed CLS token (resize mode); grid = the normed patch
  tokens in spatial order; tile-mode pooled = valid-area-weighted mean of those tokens.
* **Key clean-up**: ``decoder_*``, ``mask_token*``, ``pos_emb_projection*``, ``fpn.*``, ``fcn*`` (the
  official GitHub MAE release) and ``head.*`` (a classifier) are dropped; ``pos_embed`` is kept and loads
  strictly, although the forward pass recomputes it.
"""

from __future__ import annotations

from typing import Any

from .base import Checkpoint, InputContext, InputPlan, Variant
from .satmae import RGBViTAdapter, rgb_normalisation
from .sensors import S2_RGB

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

#: Ground sample distance (metres) that maps to ``res = 1``.
REFERENCE_GSD_M = 1.0
#: ``res`` used when no input context is given (torchgeo's default).
DEFAULT_RES = 1.0


class ScaleMAE(RGBViTAdapter):
    model_id = "scalemae"
    aliases = ("scalemae_rgb", "scale-mae")
    title = "Scale-MAE: GSD-aware masked-autoencoder ViT-L/16 pre-trained on fMoW-RGB"
    variants = {
        "large": Variant(
            name="large", embed_dim=1024, depth=24, num_heads=16, patch_size=16, image_size=224,
            checkpoint=Checkpoint(
                repo_id="isaaccorley/vit_large_patch16_224_fmow_rgb_scalemae",
                filename="vit_large_patch16_224_fmow_rgb_scalemae-98ed9821.pth",
                revision="9dc7f569424baeb780698352cf6e87638c882123",
            ),
        )
    }
    default_variant = "large"
    sensors = {"s2": S2_RGB}
    reference = (
        "https://github.com/bair-climate-initiative/scale-mae (parity: torchgeo 0.8.1 torchgeo.models.scale_mae)"
    )
    licence = "CC BY-NC 4.0 (Scale-MAE code and, presumably, weights): non-commercial use only"
    #: Tiles of another size (``tile_size=``): see :mod:`xrembed.models.pos_embed`.
    other_tile_sizes = (
        "native: the GSD-scaled sin-cos position grid is evaluated for the tile's patch grid, as torchgeo's ScaleMAE(img_size=N) does (nothing is interpolated)"
    )
    mean = IMAGENET_MEAN
    std = IMAGENET_STD
    normalisation = rgb_normalisation(IMAGENET_MEAN, IMAGENET_STD, "ImageNet (Scale-MAE config/fmow.yaml)")
    reference_gsd_m = REFERENCE_GSD_M
    dropped_keys = ("decoder_", "mask_token", "pos_emb_projection", "fpn.", "fcn", "head.")
    outputs = {
        "grid": "normed patch tokens (after the final norm), one per 16 x 16 px patch, in spatial order",
        "pooled": "resize mode: the normed CLS token; tile mode: the valid-area-weighted mean of the normed "
        "patch tokens",
    }

    def _extra_options(self, context: InputContext | None) -> tuple[tuple[str, Any], ...]:
        return (("res", self.res_for(context)),)

    def res_for(self, context: InputContext | None) -> float:
        """The model's relative GSD ``res`` for an input described by ``context``."""
        if context is None or not context.resolution_m or context.resolution_m <= 0:
            return DEFAULT_RES
        return float(context.resolution_m) / self.reference_gsd_m

    def _res(self, plan: InputPlan) -> float:
        return float(plan.option("res", DEFAULT_RES))

    def describe_extra(self) -> dict[str, Any]:
        return {"gsd": {
            "res": f"res = input pixel size in metres / {self.reference_gsd_m:g} m (relative GSD that scales the "
            "sin-cos position grid; recomputed every forward, stored pos_embed unused)",
            "reference_gsd_m": self.reference_gsd_m,
            "default_res": DEFAULT_RES,
            "resize_mode": "res follows the input pixel size, not the resampled one",
        }}
