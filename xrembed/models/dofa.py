"""DOFA (Dynamic One-For-All): one ViT for any set of bands, conditioned on their wavelengths.

Reference: Xiong et al., *Neural Plasticity-Inspired Multimodal Foundation Model for Earth Observation*;
code github.com/zhu-xlab/DOFA (MIT) and torchgeo ``torchgeo.models.dofa`` (MIT), which is the runnable
reference our parity test compares against.

Choices made here, each deliberate:

* **Pooled output** is the reference's global-pool head: ``fc_norm(mean of last-block patch tokens)``,
  CLS excluded, final ``norm`` not applied. The official checkpoints contain no ``fc_norm``; the official
  loader leaves it at its default initialisation (weight 1, bias 0), so we do the same (rs-embed instead
  copies ``norm.*`` into ``fc_norm``, which does not reproduce the official output).
* **Grid output** is the last block's patch tokens without a norm, the tokens the pooled head averages.
  In tile mode the pooled vector is ``fc_norm`` of the valid-area-weighted mean of those tokens, which
  equals the reference output whenever the raster is exactly one tile.
* **Input scaling**: DOFA's published statistics are for 8-bit images. Raw Sentinel-2 L2A reflectance
  (0..10000) is mapped to that scale with ``clip(x / 10000, 0, 1) * 255`` and then standardised with the
  per-band mean/std (as rs-embed does). Bands without published statistics borrow those of the nearest
  band in wavelength (B01 <- B02, B8A/B09 <- B08, B10 <- B11).
* **Sentinel-1** VV/VH use DOFA's S1 convention: both at wavelength 5.405 (a placeholder, not a
  physical micrometre value). Input must be backscatter in dB; it is mapped to 8 bits linearly over
  [-30, 0] dB. The upstream demo lists the S1 statistics as (vh, vv) = (166.4, 88.5); with that mapping
  those means sit at -10.4 dB and -19.6 dB, typical of VV and VH respectively, so we give the brighter
  statistics to VV (an adapter choice, documented in ``docs/models/dofa.md``).
* The patch convolution keeps the reference's ``padding=1``: each token sees its 16 x 16 patch shifted
  by one pixel up and left.
"""

from __future__ import annotations

from typing import Any

from ..bands import SENTINEL2_WAVELENGTHS_UM
from ..errors import BandMismatchError
from .base import BandRequest, Checkpoint, ModelAdapter, Variant
from .band_sets import S1_BANDS
from .checks import check_db_backscatter, check_raw_reflectance
from .normalise import REFLECTANCE_SCALE, standardise
from .sensors import S1_DB_SENSOR, S2_SR, SensorSpec
from .tokens import tokens_to_map

DEFAULT_BANDS = ("B04", "B03", "B02", "B05", "B06", "B07", "B08", "B11", "B12")

#: DOFA wavelength placeholder for Sentinel-1 (reference/models.md §2).
S1_WAVELENGTH = 5.405

# Per-band statistics on the 8-bit scale (official README demo).
_STATS_8BIT: dict[str, tuple[float, float]] = {
    "B04": (114.1099739, 77.84352553),
    "B03": (114.81779093, 69.96844919),
    "B02": (126.63977424, 67.42465279),
    "B05": (84.33539309, 64.57022983),
    "B06": (97.84789168, 61.72545487),
    "B07": (103.94461911, 61.34187099),
    "B08": (101.435633, 60.29744676),
    "B11": (72.32804172, 47.88519516),
    "B12": (56.66528851, 42.55886798),
    "VV": (166.36275909, 64.83126309),
    "VH": (88.45542715, 43.07350145),
}
_BORROWED_STATS = {"B01": "B02", "B8A": "B08", "B09": "B08", "B10": "B11"}

DB_RANGE = (-30.0, 0.0)


def _stats_for(band: str, wavelength: float) -> tuple[float, float]:
    if band in _STATS_8BIT:
        return _STATS_8BIT[band]
    if band in _BORROWED_STATS:
        return _STATS_8BIT[_BORROWED_STATS[band]]
    # A band we do not know by name: borrow the optical band nearest in wavelength.
    nearest = min(
        (b for b in _STATS_8BIT if b.startswith("B")),
        key=lambda b: abs(SENTINEL2_WAVELENGTHS_UM[b] - wavelength),
    )
    return _STATS_8BIT[nearest]


class DOFA(ModelAdapter):
    model_id = "dofa"
    title = "DOFA: wavelength-conditioned ViT for any multispectral or SAR bands"
    variants = {
        "base": Variant(
            name="base", embed_dim=768, depth=12, num_heads=12, patch_size=16, image_size=224,
            checkpoint=Checkpoint(repo_id="earthflow/DOFA", filename="DOFA_ViT_base_e100.pth"),
        ),
        "large": Variant(
            name="large", embed_dim=1024, depth=24, num_heads=16, patch_size=16, image_size=224,
            checkpoint=Checkpoint(repo_id="earthflow/DOFA", filename="DOFA_ViT_large_e100.pth"),
        ),
    }
    default_variant = "base"
    sensors = {
        "s2": SensorSpec(S2_SR, ("B4", "B3", "B2", "B5", "B6", "B7", "B8", "B11", "B12"), scale_m=10, modality="s2"),
        "s1": S1_DB_SENSOR,  # DOFA's SAR convention reads backscatter in dB
    }
    reference = "https://github.com/zhu-xlab/DOFA (parity: torchgeo 0.8.1 torchgeo.models.dofa)"
    licence = "code MIT; weights CC-BY-4.0 (Hugging Face model card, unverified)"
    #: Tiles of another size (``tile_size=``): see :mod:`xrembed.models.pos_embed`.
    other_tile_sizes = (
        "the fixed sin-cos pos_embed table resampled to the tile's patch grid as timm does (bicubic, antialiased, CLS row kept); torchgeo's DOFA(img_size=N) holds a table of that size"
    )
    outputs = {
        "grid": "last-block patch tokens (no final norm), one per 16 x 16 px patch",
        "pooled": "fc_norm(mean of patch tokens), the reference global-pool output; in tile mode the mean "
        "is weighted by each cell's valid pixel count",
    }
    default_bands = DEFAULT_BANDS
    band_order = "model order: " + ",".join(DEFAULT_BANDS) + " (any bands with known wavelengths accepted)"
    lists_wavelengths = True
    input_values = (
        "raw Sentinel-2 L2A reflectance 0..10000 (already-normalised [0, 1] rejected); Sentinel-1 sigma0 in dB"
    )
    #: The plan's ``scale`` (optical reflectance or SAR dB, from the bands) picks the check.
    value_checks = {"reflectance": check_raw_reflectance, "db": check_db_backscatter}
    normalisation = {
        "reflectance": "clip(x / 10000, 0, 1) * 255, then (x - mean) / std per band",
        "db": "clip((x + 30) / 30, 0, 1) * 255, then (x - mean) / std per band",
        "mean_8bit": {b: s[0] for b, s in _STATS_8BIT.items()},
        "std_8bit": {b: s[1] for b, s in _STATS_8BIT.items()},
    }

    # -- contract (plan_inputs is the base's, from this data and the hooks below) ----------------
    band_sets = {"s2": DEFAULT_BANDS, "s1": S1_BANDS}
    accepted_modalities = (None, "s2", "s1", "optical", "sar")
    modality_message = "dofa takes modality='s2' (optical) or 's1' (SAR), not {modality!r}."
    takes_wavelengths = True
    band_wavelengths = {**SENTINEL2_WAVELENGTHS_UM, **{b: S1_WAVELENGTH for b in S1_BANDS}}
    unknown_wavelength_message = (
        "no wavelength is known for band {band!r}; name it as a Sentinel-2 band (B01..B12, B8A) or "
        "Sentinel-1 band (VV, VH), or pass wavelengths=[...] in micrometres, one per band."
    )
    unnamed_message = (
        "the input's bands are not named; name them with bands=[...] (e.g. bands=['B04', 'B03', 'B02', ...])."
    )
    sar_input_means_s1 = True  # VV/VH alone are Sentinel-1 unless modality= says otherwise
    missing_message = {
        "s1": "dofa with Sentinel-1 input needs bands VV and VH; missing {missing}.",
        None: "dofa's default bands are {wanted}; the input lacks {missing} (it has {available}). "
        "DOFA accepts any bands with known wavelengths: choose some with bands=[...], "
        "or describe every input band with wavelengths=[...].",
    }

    def plan_options(self, chosen: list[str], req: BandRequest) -> tuple[tuple[str, Any], ...]:
        self.refuse_duplicates(chosen)
        waves = self.wavelengths_of(chosen, req.wavelengths)
        sar = [b in S1_BANDS for b in chosen]
        if any(sar) and not all(sar):
            raise BandMismatchError(
                f"bands {chosen} mix Sentinel-1 (VV/VH) and optical bands; embed them separately."
            )
        scale = "db" if all(sar) else "reflectance"
        if req.modality == "s1" and scale != "db":
            raise BandMismatchError(f"modality='s1' needs VV/VH bands, the input gives {chosen}.")
        stats = [_stats_for(b, w) for b, w in zip(chosen, waves)]
        return (
            ("wavelengths", waves),
            ("mean", tuple(s[0] for s in stats)),
            ("std", tuple(s[1] for s in stats)),
            ("scale", scale),
        )

    def describe_extra(self) -> dict[str, Any]:
        return {"sentinel1": {"bands": list(S1_BANDS), "wavelengths_um": [S1_WAVELENGTH] * 2, "units": "dB"}}

    # -- weights -----------------------------------------------------------------------------
    def build_module(self):
        from .dofa_net import DOFAEncoder

        v = self.variant
        return DOFAEncoder(v.embed_dim, v.depth, v.num_heads, v.patch_size, v.image_size, conv_padding=1)

    def clean_state_dict(self, state_dict):
        """Drop what the reference's global-pool encoder does not use; supply the absent ``fc_norm``.

        Official files carry ``mask_token``, ``projector.*`` (pre-training) and ``norm.*`` (unused by the
        global-pool head); torchgeo's files may carry ``head.*``. ``fc_norm`` is absent from the official
        files and left at its default initialisation, as the official loader does.
        """
        import torch

        unused = ("mask_token", "projector.", "norm.", "head.")
        cleaned = {k: v for k, v in state_dict.items() if not k.startswith(unused)}
        dim = self.variant.embed_dim
        cleaned.setdefault("fc_norm.weight", torch.ones(dim))
        cleaned.setdefault("fc_norm.bias", torch.zeros(dim))
        return cleaned

    # -- run time ----------------------------------------------------------------------------
    def normalise(self, pixels, plan):
        import torch

        if plan.option("scale") == "reflectance":
            scaled = torch.clamp(pixels / REFLECTANCE_SCALE, 0, 1) * 255.0
        else:
            low, high = DB_RANGE
            scaled = torch.clamp((pixels - low) / (high - low), 0, 1) * 255.0
        return standardise(scaled, plan.option("mean"), plan.option("std"))

    def forward_grid(self, module, x, plan):
        return tokens_to_map(module.forward_tokens(x, plan.option("wavelengths")), x.shape[-1] // module.patch_size)

    def forward_pooled(self, module, x, plan):
        return module(x, plan.option("wavelengths"))

    def pool_tokens(self, module, mean_tokens, plan):
        return module.pool(mean_tokens)
