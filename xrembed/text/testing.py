"""Test helpers for the text towers: small vision-language models with text, whole checkpoints in the
official layout with a real text tower, and a tiny SigLIP tokenizer trained offline in the Hub layout.

The companion of :mod:`xrembed.testing` for :mod:`xrembed.text`. Nothing here touches the network.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np

from ..models.base import Variant
from ..models.dofa_clip import DOFACLIP as _DOFACLIP
from ..models.registry import register_model
from ..models.remoteclip import RemoteCLIP as _RemoteCLIP
from ..testing import _adapter, _official_layout
from ..models.text_config import clip_text as _clip_text, siglip_text as _siglip_text


class TextTinyDOFACLIP(_DOFACLIP):
    """A small DOFA-CLIP *with a text tower*: patch 14, 44 px tiles (3 x 3 tokens), D=32, and a SigLIP
    text tower of width 32, 2 layers, context 64. Not registered on import (see
    :func:`tiny_vision_language_models`)."""

    model_id = "dofa_clip-text-tiny"
    aliases = ()
    variants = {
        "tiny": Variant(
            name="tiny", embed_dim=32, depth=2, num_heads=4, patch_size=14, image_size=44,
            extra=(("mlp_ratio", 3.7362), ("text", _siglip_text(32, 2, 4, 3.7362))),
        )
    }
    default_variant = "tiny"


class TextTinyRemoteCLIP(_RemoteCLIP):
    """A small RemoteCLIP *with a text tower*: patch 8, 32 px tiles (4 x 4 tokens), width 32, joint space
    16, and a CLIP text tower of width 32, 2 layers, context 77."""

    model_id = "remoteclip-text-tiny"
    aliases = ()
    variants = {
        "tiny": Variant(
            name="tiny", embed_dim=32, depth=2, num_heads=4, patch_size=8, image_size=32,
            extra=(("output_dim", 16), ("text", _clip_text(32, 4, 16, layers=2))),
        )
    }
    default_variant = "tiny"


def tiny_vision_language_models() -> tuple[type, type]:
    """Register and return the small vision-language test models :class:`TextTinyDOFACLIP`
    (``"dofa_clip-text-tiny"``) and :class:`TextTinyRemoteCLIP` (``"remoteclip-text-tiny"``); idempotent.

    Examples
    --------
    >>> from xrembed.text.testing import tiny_vision_language_models
    >>> [m.model_id for m in tiny_vision_language_models()]        # doctest: +SKIP
    ['dofa_clip-text-tiny', 'remoteclip-text-tiny']
    """
    for adapter in (TextTinyDOFACLIP, TextTinyRemoteCLIP):
        register_model(adapter)
    return TextTinyDOFACLIP, TextTinyRemoteCLIP


def write_vision_language_checkpoint(
    path: str | os.PathLike, model="dofa_clip", variant: str | None = None, *, seed: int = 0, text: bool = True
):
    """Write a whole vision-language checkpoint in the official layout, with a *real* text tower.

    As :func:`write_official_checkpoint` (image tower, documented extras), but the text keys are those of
    a random text tower of the variant's ``TextTowerConfig`` (DOFA-CLIP: ``text.*``, ``logit_scale`` and
    ``logit_bias`` of shape ``[]``; RemoteCLIP: top-level ``token_embedding``, ``positional_embedding``,
    ``transformer.*``, ``ln_final``, ``text_projection``, ``logit_scale``). ``text=False`` writes an
    image-only file (the trunk / ``visual.*`` alone). Returns ``(image module, text tower)`` as xrembed
    loads them (the text tower is ``None`` with ``text=False``).
    """
    import torch

    from .encode import text_config
    from .tower import TextTower

    adapter = _adapter(model, variant)
    cfg = text_config(adapter)
    if cfg is None:
        raise ValueError(f"{adapter.model_id} has no text tower")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        image = adapter.build_module().eval()
        tower = TextTower(cfg).eval()
        with torch.no_grad():
            for param in list(image.parameters()) + list(tower.parameters()):
                param.add_(torch.randn_like(param) * 0.02)
            tower.logit_scale.fill_(float(np.log(1 / 0.07)) + 0.3)
            if cfg.logit_bias:
                tower.logit_bias.fill_(-3.5)
        checkpoint, _ = _official_layout(adapter, image, torch)
    visual = "visual.trunk." if cfg.key_prefix else "visual."
    if cfg.key_prefix:  # DOFA-CLIP: drop the writer's stand-ins; keep visual.trunk.* and translators.*
        checkpoint = {k: t for k, t in checkpoint.items() if not k.startswith(("text.", "logit_"))}
    else:
        checkpoint = {k: t for k, t in checkpoint.items() if k.startswith("visual.")}
    if text:
        for key, value in tower.state_dict().items():
            top = key.startswith("logit_")
            checkpoint[key if top else cfg.key_prefix + key] = value.clone()
    else:
        checkpoint = {k: t for k, t in checkpoint.items() if k.startswith(visual)}
    if str(path).endswith(".safetensors"):
        from safetensors.torch import save_file

        save_file({k: t.contiguous() for k, t in checkpoint.items()}, str(path))
    else:
        torch.save(checkpoint, path)
    image.load_state_dict(adapter.clean_state_dict(dict(checkpoint)), strict=True)
    return image, (tower if text else None)


def write_siglip_tokenizer(folder: str | os.PathLike, corpus: Sequence[str] | None = None, *, vocab_size: int = 120) -> str:
    """Train a tiny SigLIP-style sentencepiece model offline and write it in the Hub layout.

    Writes ``spiece.model`` (for a sentencepiece oracle), ``tokenizer.json`` (a T5 Unigram tokenizer:
    the model's precompiled normalizer, Metaspace with the dummy prefix, post-processor ``$A </s>``),
    ``special_tokens_map.json`` and ``tokenizer_config.json`` (pad token ``</s>``), with ids
    pad 0, ``</s>`` 1, ``<unk>`` 2 as SigLIP's vocabulary. Returns the ``tokenizer.json`` path.
    Needs ``sentencepiece`` (a test dependency).
    """
    import json
    from pathlib import Path

    import sentencepiece as spm
    from sentencepiece import sentencepiece_model_pb2
    from tokenizers import Regex, Tokenizer, decoders, normalizers, pre_tokenizers, processors
    from tokenizers.models import Unigram

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    if corpus is None:
        words = ["water", "sand", "dunes", "harbour", "town", "forest", "field", "river", "a", "satellite",
                 "image", "of", "the", "coast", "near", "crop", "urban", "snow", "cloud", "lake"]
        rng = np.random.default_rng(0)
        corpus = [" ".join(rng.choice(words, size=6)) for _ in range(3000)]
    text_file = folder / "corpus.txt"
    text_file.write_text("\n".join(corpus), encoding="utf-8")
    prefix = str(folder / "spiece")
    spm.SentencePieceTrainer.train(
        input=str(text_file), model_prefix=prefix, model_type="unigram", vocab_size=vocab_size,
        hard_vocab_limit=False, pad_id=0, eos_id=1, unk_id=2, bos_id=-1, pad_piece="<pad>", eos_piece="</s>",
        unk_piece="<unk>", character_coverage=1.0, num_threads=1, minloglevel=2,
    )
    proto = sentencepiece_model_pb2.ModelProto()
    proto.ParseFromString((folder / "spiece.model").read_bytes())
    vocab = [(p.piece, p.score) for p in proto.pieces]
    tok = Tokenizer(Unigram(vocab, proto.trainer_spec.unk_id, False))
    tok.normalizer = normalizers.Sequence(
        [normalizers.Precompiled(proto.normalizer_spec.precompiled_charsmap), normalizers.Replace(Regex(" {2,}"), " ")]
    )
    tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="always")
    tok.decoder = decoders.Metaspace(replacement="▁", prepend_scheme="always")
    tok.post_processor = processors.TemplateProcessing(single="$A </s>", special_tokens=[("</s>", 1)])
    path = folder / "tokenizer.json"
    tok.save(str(path))
    (folder / "special_tokens_map.json").write_text(
        json.dumps({"eos_token": "</s>", "pad_token": "</s>", "unk_token": "<unk>"}), encoding="utf-8"
    )
    (folder / "tokenizer_config.json").write_text(
        json.dumps({"tokenizer_class": "T5Tokenizer", "extra_ids": 0, "legacy": False, "pad_token": "</s>",
                    "model_max_length": 64}), encoding="utf-8"
    )
    text_file.unlink()
    return str(path)
