"""TerraMind v1: IBM and ESA's any-to-any generative foundation model, used here as an encoder of raw inputs.

Reference: Jakubik et al., *TerraMind: Large-Scale Generative Multimodality for Earth Observation*
(arXiv 2504.11171); code and the runnable reference of the parity tests: terratorch 1.2.11
(Apache-2.0) ``terratorch/models/backbones/terramind/`` (``TerraMindViT``, built by
``terramind_v1_<size>``); weights ``ibm-esa-geospatial/TerraMind-1.0-<size>`` on the Hugging Face Hub
(``TerraMind_v1_<size>.pt``, the whole any-to-any model).

Choices made here, each deliberate (see ``docs/models/terramind.md``):

* **Modality** ``"s2l2a"`` (default; also ``"s2"``, ``"optical"``) reads the 12 Sentinel-2 L2A bands,
  ``"s1grd"`` (``"s1"``, ``"sar"``; the default when the input has only VV/VH) and ``"s1rtc"``
  Sentinel-1 VV, VH in dB (GRD, or radiometrically terrain-corrected). ``"s2l2a+s1grd"`` and
  ``"s2l2a+s1rtc"`` encode both on one grid together, as the reference does with two input modalities.
* **Grid output** is the encoder's normed patch tokens, one per 16 x 16 px patch (with two modalities, the
  mean of the two tokens of each patch: the reference's ``merge_method="mean"``). The reference defines no
  pooled vector; the **pooled output** is the mean of the grid tokens (in tile mode, valid-pixel-weighted).
* **Normalisation** is ``(x - mean) / std`` per band with the v1 pre-training statistics terratorch ships
  (``v1_pretraining_mean`` / ``v1_pretraining_std`` in ``terramind/model/terramind_register.py``).
* **Weights**: of the whole any-to-any release only the encoder side of the three raw modalities is kept
  (``encoder.*``, ``encoder_norm.*``, ``encoder_embeddings.untok_sen2l2a@224`` / ``untok_sen1grd@224`` /
  ``untok_sen1rtc@224``); the LayerNorms' zero ``*.bias`` buffers are dropped (one that is not zero is
  refused). Anything else missing or wrongly shaped is refused by the strict load.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..errors import WeightsError
from .base import BandRequest, Checkpoint, InputPlan, ModelAdapter, Variant
from .band_sets import S1_BANDS
from .checks import check_db_backscatter, check_raw_reflectance
from .sensors import EE_S2_12, S1_DB_SENSOR, S2_SR, SensorSpec

#: Model order of the 12 Sentinel-2 L2A bands (terratorch's ``PRETRAINED_BANDS["untok_sen2l2a@224"]``: coastal
#: aerosol, blue, green, red, red edge 1-3, NIR broad, NIR narrow, water vapour, SWIR 1, SWIR 2; no B10).
S2_BANDS = ("B01", "B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A", "B09", "B11", "B12")


@dataclass(frozen=True)
class Modality:
    """One raw input modality: its release key, bands, value scale and pre-training statistics."""

    key: str
    bands: tuple[str, ...]
    scale: str
    values: str
    mean: tuple[float, ...]
    std: tuple[float, ...]


#: terratorch 1.2.11 ``terramind_register.py``: ``v1_pretraining_mean`` / ``v1_pretraining_std``.
MODALITIES: dict[str, Modality] = {
    "s2l2a": Modality(
        "untok_sen2l2a@224", S2_BANDS, "reflectance", "Sentinel-2 L2A reflectance 0..10000",
        (1390.458, 1503.317, 1718.197, 1853.91, 2199.1, 2779.975, 2987.011, 3083.234, 3132.22, 3162.988,
         2424.884, 1857.648),
        (2106.761, 2141.107, 2038.973, 2134.138, 2085.321, 1889.926, 1820.257, 1871.918, 1753.829, 1797.379,
         1434.261, 1334.311),
    ),
    "s1grd": Modality(
        "untok_sen1grd@224", S1_BANDS, "db", "Sentinel-1 GRD backscatter in dB (e.g. Earth Engine COPERNICUS/S1_GRD)",
        (-12.599, -20.293), (5.195, 5.890),
    ),
    "s1rtc": Modality(
        "untok_sen1rtc@224", S1_BANDS, "db", "Sentinel-1 RTC (radiometrically terrain-corrected) backscatter in dB",
        (-10.93, -17.329), (4.391, 4.459),
    ),
}
#: Two modalities on one grid: the optical bands, then VV, VH.
JOINT_MODALITIES: dict[str, tuple[str, ...]] = {"s2l2a+s1grd": ("s2l2a", "s1grd"), "s2l2a+s1rtc": ("s2l2a", "s1rtc")}
_SPELLINGS = {
    "s2": "s2l2a", "s2_l2a": "s2l2a", "l2a": "s2l2a", "optical": "s2l2a", "sen2l2a": "s2l2a",
    "s1": "s1grd", "sar": "s1grd", "s1_grd": "s1grd", "grd": "s1grd", "sen1grd": "s1grd",
    "s1_rtc": "s1rtc", "rtc": "s1rtc", "sen1rtc": "s1rtc",
    "s2l2a+s1": "s2l2a+s1grd", "s1grd+s2l2a": "s2l2a+s1grd", "s1rtc+s2l2a": "s2l2a+s1rtc", "joint": "s2l2a+s1grd",
}
#: The LayerNorm biases the release stores as zero buffers (TerraMind's norms have none).
_NORM_BIAS = re.compile(r"^(encoder\.\d+\.norm[12]|encoder_norm)\.bias$")


def modality_parts(modality: str) -> tuple[str, ...]:
    """The raw modalities a (resolved) modality reads, in feed order."""
    return JOINT_MODALITIES.get(modality, (modality,))


def _variant(name: str, dim: int, depth: int, heads: int, *, gated: bool) -> Variant:
    return Variant(
        name=name, embed_dim=dim, depth=depth, num_heads=heads, patch_size=16, image_size=224,
        checkpoint=Checkpoint(repo_id=f"ibm-esa-geospatial/TerraMind-1.0-{name}", filename=f"TerraMind_v1_{name}.pt"),
        extra=(("gated_mlp", gated), ("bias", not gated)),
    )


class TerraMind(ModelAdapter):
    model_id = "terramind"
    aliases = ("terramind_v1",)
    title = "TerraMind v1: any-to-any multimodal foundation model (encoder of raw S2 L2A, S1 GRD, S1 RTC)"
    variants = {
        "tiny": _variant("tiny", 192, 12, 3, gated=False),
        "small": _variant("small", 384, 12, 6, gated=False),
        "base": _variant("base", 768, 12, 12, gated=True),
        "large": _variant("large", 1024, 24, 16, gated=True),
    }
    default_variant = "base"
    sensors = {
        "s2l2a": SensorSpec(S2_SR, EE_S2_12, scale_m=10, modality="s2"),
        # dB. Earth Engine holds no RTC collection: S1_GRD (orthorectified, not terrain-flattened) is the nearest.
        "s1grd": S1_DB_SENSOR,
        "s1rtc": S1_DB_SENSOR,
    }
    modality_aliases = dict(_SPELLINGS)
    reference = "terratorch.models.backbones.terramind (terratorch 1.2.11, Apache-2.0): TerraMindViT"
    licence = (
        "code: Apache-2.0 (terratorch); weights: hf ibm-esa-geospatial/TerraMind-1.0-<size>, Apache-2.0 per "
        "the model card [unverified: the card could not be read offline]"
    )
    #: Tiles of another size (``tile_size=``, where the engine offers it): the stored table is resized.
    other_tile_sizes = (
        "the stored 14 x 14 sin-cos position table resized bicubic (align_corners=False, no antialias), as "
        "terratorch's TerraMindViT does for other image sizes"
    )
    outputs = {
        "grid": "the encoder's normed patch tokens, one per 16 x 16 px patch (two modalities: the mean of each "
        "patch's two tokens, the reference's merge_method='mean')",
        "pooled": "the mean of the grid tokens (the reference defines no pooled vector); in tile mode the "
        "valid-pixel-weighted mean",
    }
    default_bands = S2_BANDS
    band_order = ("model order: " + ",".join(S2_BANDS) + " (s2l2a); VV,VH (s1grd, s1rtc); the 12 optical bands "
                  "then VV,VH (s2l2a+s1grd, s2l2a+s1rtc); picked by name")
    lists_wavelengths = True
    input_values = (
        "s2l2a: raw L2A reflectance 0..10000 (already-normalised [0, 1] rejected); s1grd, s1rtc: backscatter "
        "in dB (linear power rejected)"
    )
    normalisation = {
        "every band": "(x - mean) / std with TerraMind v1's pre-training statistics (terratorch 1.2.11 "
        "terramind_register.py v1_pretraining_mean / v1_pretraining_std)",
        **{name: {"mean": list(m.mean), "std": list(m.std)} for name, m in MODALITIES.items()},
        "invalid pixels": "0 after normalisation (the pre-training mean)",
    }

    # -- contract (plan_inputs is the base's, from this data and the hooks below) ----------------
    band_sets = {
        **{name: m.bands for name, m in MODALITIES.items()},
        **{name: sum((MODALITIES[p].bands for p in parts), ()) for name, parts in JOINT_MODALITIES.items()},
    }
    no_wavelengths_message = (
        "terramind reads fixed bands and takes no wavelengths=; it reads the 12 Sentinel-2 L2A bands or VV/VH "
        "by name. Drop wavelengths= and name the bands."
    )
    unnamed_message = (
        "the input's bands are not named; name them with bands=[...] in the input's order "
        "(terramind with modality={modality!r} needs {wanted})."
    )
    missing_message = (
        "terramind with modality={modality!r} needs bands {wanted}; the input lacks {missing} (it has {available}). "
        "Add the missing bands or choose another modality= ('s2l2a', 's1grd', 's1rtc', 's2l2a+s1grd', 's2l2a+s1rtc')."
    )
    bands_reorder_only = True
    # named modalities (the base-class policy): any case or spelling; VV/VH alone mean "s1grd"
    modality_names = (*MODALITIES, *JOINT_MODALITIES)
    modality_spellings = _SPELLINGS
    default_modality, sar_modality = "s2l2a", "s1grd"
    modality_message = (
        "{model} takes modality='s2l2a' (12 Sentinel-2 L2A bands, the default), 's1grd' or 's1rtc' (Sentinel-1 "
        "VV/VH in dB), or 's2l2a+s1grd' / 's2l2a+s1rtc' (both on one grid), not {modality!r}."
    )
    exact_bands_message = (
        "{model} with modality={modality!r} reads exactly {count} bands {wanted}, but bands= names {given}: "
        "{bands}. Pass bands={wanted} (any order; they are fed in the model order), or choose another modality=."
    )

    def plan_options(self, chosen: list[str], req: BandRequest) -> tuple[tuple[str, Any], ...]:
        parts = modality_parts(req.modality)
        scale = MODALITIES[parts[0]].scale if len(parts) == 1 else "joint"
        return (("modality", req.modality), ("scale", scale))

    def describe_extra(self) -> dict[str, Any]:
        return {
            "modalities": {
                name: {"bands": list(m.bands), "values": m.values, "release_key": m.key}
                for name, m in MODALITIES.items()
            },
            "joint_modalities": {
                name: {"bands": list(self.band_sets[name]), "reads": list(parts)}
                for name, parts in JOINT_MODALITIES.items()
            },
            "default_modality": "s2l2a",
        }

    # -- weights -----------------------------------------------------------------------------
    def build_module(self):
        from .terramind_net import TerraMindEncoder

        v = self.variant
        extra = dict(v.extra)
        return TerraMindEncoder(
            v.embed_dim, v.depth, v.num_heads, v.patch_size, v.image_size,
            modalities={m.key: len(m.bands) for m in MODALITIES.values()},
            gated_mlp=bool(extra["gated_mlp"]), bias=bool(extra["bias"]),
        )

    def clean_state_dict(self, state_dict):
        """Keep the encoder side of the raw modalities; drop the norms' zero bias buffers.

        Kept: ``encoder.*``, ``encoder_norm.*`` and ``encoder_embeddings.<key>.*`` of the three modalities
        (terratorch's ``checkpoint_filter_fn`` likewise keeps what its ``TerraMindViT`` has); dropped: the
        decoder, the other modalities' embeddings and tokenizers, and the LayerNorms' ``*.bias`` buffers,
        which must be zero (TerraMind's norms have no bias; a non-zero one is refused).
        """
        keys = tuple(f"encoder_embeddings.{m.key}." for m in MODALITIES.values())
        cleaned = {}
        for key, tensor in state_dict.items():
            if not (key.startswith(("encoder.", "encoder_norm.")) or key.startswith(keys)):
                continue
            if _NORM_BIAS.match(key):
                if bool((tensor != 0).any()):
                    raise WeightsError(
                        f"the checkpoint's {key} is not zero: TerraMind's LayerNorms have no bias, so this is not a "
                        "TerraMind v1 release file. Pass the official TerraMind_v1_<size>.pt."
                    )
                continue
            cleaned[key] = tensor
        return cleaned

    # -- run time ----------------------------------------------------------------------------
    def check_values(self, pixels: np.ndarray, plan: InputPlan) -> None:
        modality = plan.option("modality")
        start = 0
        for name in modality_parts(modality):
            m = MODALITIES[name]
            part = pixels[:, start : start + len(m.bands)]
            who = f"terramind (modality={modality!r})"
            if m.scale == "db":
                check_db_backscatter(part, who)
            else:
                check_raw_reflectance(part, who)
            start += len(m.bands)

    def normalise(self, pixels, plan):
        from .normalise import standardise

        parts = modality_parts(plan.option("modality"))
        mean = sum((MODALITIES[p].mean for p in parts), ())
        std = sum((MODALITIES[p].std for p in parts), ())
        return standardise(pixels, mean, std)

    def _keys(self, plan: InputPlan) -> tuple[str, ...]:
        return tuple(MODALITIES[p].key for p in modality_parts(plan.option("modality")))

    def forward_grid(self, module, x, plan):
        return module.grid(x, self._keys(plan))

    def forward_pooled(self, module, x, plan):
        return module(x, self._keys(plan))
