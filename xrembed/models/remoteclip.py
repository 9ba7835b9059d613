"""RemoteCLIP: a CLIP model (open_clip ViT) continually pre-trained on remote-sensing image-text pairs.

Reference: Liu et al., *RemoteCLIP: A Vision Language Foundation Model for Remote Sensing* (2024); code
github.com/ChenDelong1999/RemoteCLIP (Apache-2.0). The weights are open_clip CLIP state dicts loaded with
``open_clip.create_model('ViT-B-32')`` + a strict ``load_state_dict``; open_clip 3.3.0 is the runnable
reference our parity test compares against.

Choices made here, each deliberate:

* **Two strict loads from one file.** The checkpoint is a whole CLIP (image and text towers).
  :meth:`clean_state_dict` keeps ``visual.*`` (prefix stripped) for the image tower and drops the *known*
  text-tower keys; :meth:`clean_text_state_dict` keeps the text tower and ``logit_scale`` for
  :mod:`xrembed.text` (``encode_text``, ``classify``). Anything else stays in both and makes the strict
  loads fail.
* **Activation.** open_clip's ``ViT-B-32``/``ViT-L-14`` configs (without ``-quickgelu``), which the official
  loading code uses, build exact ``nn.GELU``; we do the same (not OpenAI's QuickGELU).
* **Pooled output** is the CLIP image embedding ``ln_post(CLS) @ proj`` (512-d for B/32, 768-d for L/14),
  exactly open_clip's ``encode_image`` (not L2-normalised).
* **Grid output** is the patch tokens after ``ln_post``, not projected (width 768 for B/32, 1024 for L/14):
  the tokens open_clip returns with ``output_tokens=True``. ``ln_post`` makes them the same kind of
  feature that ``proj`` expects.
* **Pooled in tile mode** cannot use the CLS token of a larger raster. It is ``proj`` applied to the
  valid-area-weighted mean of the grid tokens (``mean(ln_post(patch tokens)) @ proj``), so it lies in the
  same joint space and has the same size as the resize-mode pooled vector. It is *not* ``encode_image``,
  even for a raster of exactly one tile; use ``input_prep="resize"`` for the reference's own vector.
* **Input scaling.** RemoteCLIP expects 8-bit RGB. Raw Sentinel-2 L2A reflectance B04, B03, B02 is mapped
  to 8 bits like rs-embed does, ``uint8(clip(x / 10000, 0, 1) * 255)`` (the cast truncates, so we floor),
  then ``/ 255`` and the CLIP mean/std. open_clip's ``Resize(224, bicubic)`` + ``CenterCrop(224)`` is not
  applied: tiles are already 224 px, and resize mode uses the engine's resampling.
"""

from __future__ import annotations

from typing import Any

from ..errors import BandMismatchError
from .text_config import clip_text
from .base import BandRequest, Checkpoint, ModelAdapter, Variant
from .band_sets import S1_BANDS, S2_RGB_BANDS
from .checks import check_raw_reflectance
from .normalise import standardise, unit_reflectance
from .sensors import S2_RGB
from .tokens import tokens_to_map

DEFAULT_BANDS = S2_RGB_BANDS

#: open_clip's OPENAI_DATASET_MEAN / OPENAI_DATASET_STD (the ``ViT-B-32`` transform), on the [0, 1] scale.
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


#: Top-level keys of the open_clip text tower (and the shared logit scale), dropped before the strict load.
_TEXT_TOWER_PREFIXES = ("token_embedding.", "transformer.", "ln_final.")
_TEXT_TOWER_KEYS = ("positional_embedding", "text_projection", "logit_scale", "logit_bias", "attn_mask")

_HF_REPO = "chendelong/RemoteCLIP"


class RemoteCLIP(ModelAdapter):
    model_id = "remoteclip"
    aliases = ("remote-clip", "remoteclip_s2rgb")
    title = "RemoteCLIP: CLIP image encoder tuned on remote-sensing image-text data (RGB)"
    variants = {
        "vit_b32": Variant(
            name="vit_b32", embed_dim=768, depth=12, num_heads=12, patch_size=32, image_size=224,
            checkpoint=Checkpoint(repo_id=_HF_REPO, filename="RemoteCLIP-ViT-B-32.pt"), extra=(("output_dim", 512), ("text", clip_text(512, 8, 512))),
        ),
        "vit_l14": Variant(
            name="vit_l14", embed_dim=1024, depth=24, num_heads=16, patch_size=14, image_size=224,
            checkpoint=Checkpoint(repo_id=_HF_REPO, filename="RemoteCLIP-ViT-L-14.pt"), extra=(("output_dim", 768), ("text", clip_text(768, 12, 768))),
        ),
    }
    default_variant = "vit_b32"
    sensors = {"s2": S2_RGB}
    reference = "https://github.com/ChenDelong1999/RemoteCLIP (parity: open_clip 3.3.0 ViT-B-32 / ViT-L-14)"
    licence = "Apache-2.0 (code and weights)"
    #: Tiles of another size (``tile_size=``): see :mod:`xrembed.models.pos_embed`.
    other_tile_sizes = (
        "the learned positional_embedding resampled to the tile's patch grid as timm does (bicubic, antialiased, class row kept)"
    )
    outputs = {
        "grid": "last-block patch tokens after ln_post, not projected (width D), one per patch "
        "(32 x 32 px for vit_b32, 14 x 14 px for vit_l14)",
        "pooled": "CLIP image embedding ln_post(CLS) @ proj (open_clip encode_image, not L2-normalised) in "
        "resize mode; in tile mode proj applied to the valid-area-weighted mean of the grid tokens",
    }
    default_bands = DEFAULT_BANDS
    band_order = "model order: B04,B03,B02 (red, green, blue); bands=[...] may name any 3 bands in R, G, B order"
    lists_wavelengths = True  # which light the model reads; the values themselves are not used
    input_values = "raw Sentinel-2 L2A reflectance 0..10000 (already-normalised [0, 1] rejected)"
    normalisation = {
        "to_8bit": "floor(clip(x / 10000, 0, 1) * 255), i.e. a uint8 cast (truncation)",
        "then": "x / 255, then (x - mean) / std per channel",
        "mean": list(CLIP_MEAN),
        "std": list(CLIP_STD),
    }

    @property
    def pooled_dim(self) -> int:
        """Size of the pooled vector (the joint image-text space), which differs from the grid's ``embed_dim``."""
        return int(dict(self.variant.extra)["output_dim"])

    value_checks = {"reflectance": check_raw_reflectance}

    # -- contract (plan_inputs is the base's, from this data and the hooks below) ----------------
    accepted_modalities = (None, "s2", "optical", "rgb")
    modality_message = (
        "remoteclip reads optical RGB only (modality='s2'), not modality={modality!r}; "
        "embed SAR with a model that takes Sentinel-1 (e.g. 'dofa')."
    )
    no_wavelengths_message = (
        "remoteclip reads three RGB bands and takes no wavelengths=; drop wavelengths= and name the "
        "red, green and blue bands with bands=['B04', 'B03', 'B02']."
    )
    unnamed_message = (
        "the input's bands are not named; name them with bands=['B04', 'B03', 'B02'] "
        "(red, green, blue, in the input's band order)."
    )
    duplicates_message = "bands {chosen} contain duplicates; list red, green and blue once each."
    missing_message = (
        "remoteclip reads Sentinel-2 B04, B03, B02 (red, green, blue); the input lacks {missing} "
        "(it has {available}).{hint}"
    )

    def check_bands(self, req: BandRequest) -> list[str]:
        """Any three bands, fed in the order given (R, G, B)."""
        if len(req.bands) != 3:
            raise BandMismatchError(
                f"remoteclip reads exactly 3 bands (red, green, blue), but bands= names {len(req.bands)}: "
                f"{req.given_bands}. Pass bands=['B04', 'B03', 'B02'] (Sentinel-2) or three bands in R, G, B order."
            )
        self.refuse_duplicates(req.bands)
        return list(req.bands)

    def missing_text(self, req: BandRequest, wanted, missing: list[str]) -> str:
        hint = (
            " remoteclip is an RGB model: Sentinel-1 input cannot be embedded with it."
            if set(req.available) <= set(S1_BANDS)
            else " Add them, or choose three bands in R, G, B order with bands=[...]."
        )
        return self.say(self.missing_message, missing=missing, available=req.available, hint=hint)

    def describe_extra(self) -> dict[str, Any]:
        v = self.variant
        return {
            "wavelengths_used": False, "pooled_dim": self.pooled_dim, "depth": v.depth, "num_heads": v.num_heads,
            "text": self.text_description(),
        }

    # -- weights -----------------------------------------------------------------------------
    def build_module(self):
        from .remoteclip_net import CLIPVisionTransformer

        v = self.variant
        return CLIPVisionTransformer(v.embed_dim, v.depth, v.num_heads, v.patch_size, v.image_size, self.pooled_dim)

    def clean_state_dict(self, state_dict):
        """Keep the image tower of a full open_clip CLIP state dict, without its ``visual.`` prefix.

        The text tower (``token_embedding``, ``positional_embedding``, ``transformer.*``, ``ln_final``,
        ``text_projection``) and ``logit_scale``/``logit_bias`` are dropped. Any other key is kept, so the
        strict load reports it. A dict without any ``visual.*`` key is taken to be an image tower already
        (e.g. ``model.visual.state_dict()``) and passes unchanged.
        """
        if not any(k.startswith("visual.") for k in state_dict):
            return state_dict
        cleaned = {}
        for key, value in state_dict.items():
            if key.startswith("visual."):
                cleaned[key[len("visual.") :]] = value
            elif key.startswith(_TEXT_TOWER_PREFIXES) or key in _TEXT_TOWER_KEYS:
                continue
            else:
                cleaned[key] = value
        return cleaned

    def text_description(self):
        """``describe_model()["text"]``: the variant's text tower, or ``None``."""
        cfg = dict(self.variant.extra).get("text")
        return cfg.describe() if cfg is not None else None

    def clean_text_state_dict(self, state_dict):
        """The text tower and ``logit_scale`` of a whole open_clip CLIP state dict (top-level keys
        ``token_embedding``, ``positional_embedding``, ``transformer.*``, ``ln_final``, ``text_projection``);
        the non-persistent ``attn_mask`` is tolerated and dropped, ``visual.*`` left out, and any other key
        kept so the strict load reports it. A file without ``token_embedding.weight`` has no text tower:
        an empty dict."""
        if "token_embedding.weight" not in state_dict:
            return {}
        cleaned = {k: v for k, v in state_dict.items() if not k.startswith("visual.") and k != "attn_mask"}
        for key in ("logit_scale", "logit_bias"):  # shape [] in open_clip; a one-element [1] is the same value
            if key in cleaned and cleaned[key].numel() == 1:
                cleaned[key] = cleaned[key].reshape(())
        return cleaned

    # -- run time ----------------------------------------------------------------------------
    def normalise(self, pixels, plan):
        import torch

        eight_bit = torch.floor(unit_reflectance(pixels) * 255.0)  # the uint8 cast of rs-embed truncates
        return standardise(eight_bit / 255.0, CLIP_MEAN, CLIP_STD)

    def forward_grid(self, module, x, plan):
        return tokens_to_map(module.forward_tokens(x)[:, 1:, :], x.shape[-1] // module.patch_size)  # CLS dropped

    def forward_pooled(self, module, x, plan):
        return module(x)

    def pool_tokens(self, module, mean_tokens, plan):
        return module.project(mean_tokens)
