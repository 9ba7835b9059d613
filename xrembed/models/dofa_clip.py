"""DOFA-CLIP (GeoLangBind): a SigLIP-style vision-language model whose image tower takes any bands,
conditioned on their wavelengths (DOFA's hypernetwork patch embedding).

Reference: Xiong et al., *GeoLangBind: Unifying Earth Observation with Agglomerative Vision-Language
Foundation Models*; code github.com/xiong-zhitong/DOFA-CLIP, a fork of open_clip
(``open_clip/src/open_clip/timm_model.py`` ``GeoLB_VisionTransformer`` and ``dofa_patch_embed.py``).
Its README says MIT, its ``LICENSE`` file is Apache-2.0. Our parity test compares against goldens made
from that fork by ``scripts/goldens_dofa_clip.py``.

Choices made here, each deliberate (see ``docs/models/dofa_clip.md``):

* **Pooled output** (resize mode, or whenever the model sees the whole image) is upstream's
  ``visual.trunk(x, wvs)[0]`` = ``attn_pool(norm(tokens))``, the CLIP image embedding that text
  embeddings are compared with.
* **Grid output** is ``norm(tokens)``, the tokens the attention pool reads, one per 14 x 14 px patch
  (so400m) or 16 x 16 px (b16).
* **Pooled in tile mode**: the attention pool needs the whole token sequence, which tile mode does not
  have (a raster spans many tiles). We apply the head to the valid-area-weighted mean of the normed grid
  tokens, as a one-token sequence. Because attention over one token has weight 1 and the head's ``kv``
  and ``proj`` are affine, that is exactly the attention-pool head with its learned attention weights
  replaced by the area weights: same projection and MLP, so the vector stays in the CLIP embedding
  space. It is *not* the reference output even for a single tile; use ``input_prep="resize"`` for that.
* **Input scaling** is undocumented upstream for multispectral data. Raw Sentinel-2 L2A reflectance
  (0..10000) is mapped with ``clip(x / 10000, 0, 1)``, then standardised with the SigLIP constants
  mean = std = 0.5 (the fork's ``_slpcfg`` preprocessing) for every band.
* **No padding** in the patch convolution (unlike DOFA's ``padding=1``): at 384 px with patch 14 the
  last 6 px of a tile are not seen, as upstream.
* **Optical only**: GeoLangBind documents no Sentinel-1 wavelength or scaling, so VV/VH are refused
  (use the ``dofa`` model for SAR).
* **Text tower** (``encode_text``, ``classify``, ``space="joint"``; :mod:`xrembed.text`): each variant
  declares open_clip's SigLIP ``text_cfg`` in ``Variant.extra["text"]``; :meth:`clean_text_state_dict`
  keeps ``text.*``, ``logit_scale`` and ``logit_bias`` of the same file for a strict load of their own.
"""

from __future__ import annotations

from typing import Any

from ..errors import BandMismatchError
from .text_config import siglip_text
from .base import BandRequest, Checkpoint, ModelAdapter, Variant
from .band_sets import S1_BANDS, S2_RGB_BANDS
from .checks import check_raw_reflectance
from .normalise import REFLECTANCE_SCALE, unit_reflectance
from .sensors import S2_RGB
from .tokens import tokens_to_map

#: Default bands: true colour, as in the upstream examples (wavelengths 0.665, 0.56, 0.49 µm).
DEFAULT_BANDS = S2_RGB_BANDS

#: SigLIP preprocessing constants (open_clip ``INCEPTION_MEAN``/``INCEPTION_STD``), for every band.
SIGLIP_MEAN = 0.5
SIGLIP_STD = 0.5

#: Keys of the open_clip checkpoint outside the image trunk, dropped before the strict load.
_NON_VISUAL_PREFIXES = ("text.", "logit_scale", "logit_bias", "translators.")
TRUNK_PREFIX = "visual.trunk."


class DOFACLIP(ModelAdapter):
    model_id = "dofa_clip"
    aliases = ("dofa-clip", "dofaclip", "geolangbind", "geolb")
    title = "DOFA-CLIP / GeoLangBind: wavelength-conditioned SigLIP image tower for any optical bands"
    variants = {
        "so400m": Variant(
            name="so400m", embed_dim=1152, depth=27, num_heads=16, patch_size=14, image_size=384,
            checkpoint=Checkpoint(
                repo_id="earthflow/GeoLB-ViT-14-SigLIP-so400m-384-EO", filename="open_clip_model.safetensors"
            ),
            extra=(
                ("mlp_ratio", 3.7362),
                ("text", siglip_text(1152, 27, 16, 3.7362, repos=("earthflow/GeoLB-ViT-14-SigLIP-so400m-384-EO",))),
            ),
        ),
        "b16": Variant(
            name="b16", embed_dim=768, depth=12, num_heads=12, patch_size=16, image_size=224,
            checkpoint=Checkpoint(repo_id="XShadow/GeoLB-ViT-B-16-SigLIP", filename="open_clip_model.safetensors"),
            extra=(("mlp_ratio", 4.0), ("text", siglip_text(768, 12, 12, 4.0, repos=("XShadow/GeoLB-ViT-B-16-SigLIP",)))),
        ),
    }
    default_variant = "so400m"
    sensors = {"s2": S2_RGB}
    reference = (
        "https://github.com/xiong-zhitong/DOFA-CLIP (open_clip fork: timm_model.GeoLB_VisionTransformer; "
        "parity goldens from scripts/goldens_dofa_clip.py)"
    )
    licence = (
        "code: README says MIT, LICENSE file says Apache-2.0; weights: the B/16 Hub repo "
        "(earthflow/GeoLB-ViT-B-16-SigLIP) says CC BY-NC 4.0 (non-commercial); so400m model card not verified"
    )
    #: Tiles of another size (``tile_size=``): see :mod:`xrembed.models.pos_embed`.
    other_tile_sizes = (
        "the learned pos_embed table (no class token) resampled to the tile's patch grid as timm does (bicubic, antialiased), as timm's SigLIP ViT with dynamic_img_size does"
    )
    outputs = {
        "grid": "final-norm patch tokens (the attention pool's input), one per patch; no class token",
        "pooled": "resize mode: attn_pool(norm(tokens)), the CLIP image embedding (upstream visual.trunk(x, wvs)[0]); "
        "tile mode: the same head applied to the valid-area-weighted mean of the grid tokens (uniform "
        "instead of learned attention)",
    }
    default_bands = DEFAULT_BANDS
    band_order = (
        "model order: " + ",".join(DEFAULT_BANDS) + " (any optical bands with known wavelengths accepted, in the order given)"
    )
    lists_wavelengths = True
    input_values = "raw Sentinel-2 L2A reflectance 0..10000 (already-normalised [0, 1] rejected)"
    normalisation = {
        "reflectance": f"clip(x / {REFLECTANCE_SCALE:g}, 0, 1), then (x - {SIGLIP_MEAN}) / {SIGLIP_STD} "
        "for every band (SigLIP constants; upstream documents no multispectral scaling)",
        "mean": SIGLIP_MEAN,
        "std": SIGLIP_STD,
    }

    value_checks = {"reflectance": check_raw_reflectance}

    # -- contract (plan_inputs is the base's, from this data and the hooks below) ----------------
    accepted_modalities = (None, "s2", "optical", "rgb", "multispectral")
    takes_wavelengths = True
    unknown_wavelength_message = (
        "no wavelength is known for band {band!r}; name it as a Sentinel-2 band (B01..B12, B8A), "
        "or pass wavelengths=[...] in micrometres, one per band."
    )
    unnamed_message = (
        "the input's bands are not named; name them with bands=['B04', 'B03', 'B02'] or describe "
        "each one with wavelengths=[...] (micrometres)."
    )
    missing_message = (
        "dofa_clip's default bands are {wanted} (true colour); the input lacks {missing} "
        "(it has {available}). Choose bands with known wavelengths with bands=[...], or describe "
        "every input band with wavelengths=[...]."
    )

    def modality_refusal(self, modality: Any) -> str:
        hint = " For Sentinel-1 use model 'dofa'." if str(modality).lower() in ("s1", "sar") else ""
        return f"dofa_clip reads optical bands only (modality='s2' or None), not modality={modality!r}.{hint}"

    def plan_options(self, chosen: list[str], req: BandRequest) -> tuple[tuple[str, Any], ...]:
        if not chosen:
            raise BandMismatchError("no bands selected; pass bands=[...] with at least one band.")
        self.refuse_duplicates(chosen)
        sar = [b for b in chosen if b in S1_BANDS]
        if sar:
            raise BandMismatchError(
                f"dofa_clip reads optical bands only; {sar} are Sentinel-1 bands. Drop them, or use model 'dofa' for SAR."
            )
        return (("wavelengths", self.wavelengths_of(chosen, req.wavelengths)), ("scale", "reflectance"))

    def describe_extra(self) -> dict[str, Any]:
        v = self.variant
        return {
            "tokens_per_side": v.tile_tokens,
            "depth": v.depth,
            "num_heads": v.num_heads,
            "mlp_ratio": dict(v.extra)["mlp_ratio"],
            "class_token": False,
            "patch_conv_padding": 0,
            "ignored_pixels_per_tile": v.image_size - v.tile_tokens * v.patch_size,
            "text": self.text_description(),
            "weights_keys": f"image: '{TRUNK_PREFIX}*' (prefix stripped); text (encode_text, classify): "
            "'text.*' (prefix stripped) with logit_scale and logit_bias, each loaded strictly; translators.* "
            "(distillation heads) are dropped",
        }

    # -- weights -----------------------------------------------------------------------------
    def build_module(self):
        from .dofa_clip_net import DOFACLIPEncoder

        v = self.variant
        return DOFACLIPEncoder(v.embed_dim, v.depth, v.num_heads, v.patch_size, v.image_size, dict(v.extra)["mlp_ratio"])

    def clean_state_dict(self, state_dict):
        """Keep the image trunk of an open_clip checkpoint.

        Official files are whole open_clip models: ``visual.trunk.*`` (the image tower), ``text.*``,
        ``logit_scale``, ``logit_bias`` and ``translators.*`` (distillation heads). The documented
        non-visual keys are dropped and ``visual.trunk.`` is stripped; any other key is kept as it is, so
        that the strict load reports it. A file holding only the trunk (no ``visual.trunk.`` prefix)
        loads as it is.
        """
        if not any(k.startswith(TRUNK_PREFIX) for k in state_dict):
            return dict(state_dict)
        cleaned = {}
        for key, value in state_dict.items():
            if key.startswith(TRUNK_PREFIX):
                cleaned[key[len(TRUNK_PREFIX) :]] = value
            elif not key.startswith(_NON_VISUAL_PREFIXES):
                cleaned[key] = value
        return cleaned

    def text_description(self):
        """``describe_model()["text"]``: the variant's text tower, or ``None``."""
        cfg = dict(self.variant.extra).get("text")
        return cfg.describe() if cfg is not None else None

    def clean_text_state_dict(self, state_dict):
        """The text tower and zero-shot scalars of a whole open_clip checkpoint: ``text.*`` (prefix
        stripped), ``logit_scale`` and ``logit_bias``; everything else (image trunk, translators) is left
        out. A file without any ``text.`` key has no text tower: an empty dict."""
        if not any(k.startswith("text.") for k in state_dict):
            return {}
        cleaned = {k[len("text.") :]: v for k, v in state_dict.items() if k.startswith("text.")}
        # Scalars of shape [] in open_clip; a one-element [1] (older writers) is the same value.
        cleaned.update({k: v.reshape(()) if v.numel() == 1 else v for k, v in state_dict.items() if k in ("logit_scale", "logit_bias")})
        return cleaned

    # -- run time ----------------------------------------------------------------------------
    def normalise(self, pixels, plan):
        return (unit_reflectance(pixels) - SIGLIP_MEAN) / SIGLIP_STD

    def forward_grid(self, module, x, plan):
        return tokens_to_map(module.forward_tokens(x, plan.option("wavelengths")), x.shape[-1] // module.patch_size)

    def forward_pooled(self, module, x, plan):
        return module(x, plan.option("wavelengths"))

    def pool_tokens(self, module, mean_tokens, plan):
        return module.pool_mean(mean_tokens)
