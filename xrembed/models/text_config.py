"""What a text tower is, as data: sizes, masking, pooling, checkpoint layout, tokenizer and scoring.

A vision-language family (DOFA-CLIP, RemoteCLIP) declares one :class:`TextTowerConfig` per variant in its
:class:`~xrembed.models.base.Variant` ``extra`` under ``"text"``. Pure data: importing this module imports
neither torch nor a tokenizer.
"""

from __future__ import annotations

from dataclasses import dataclass

#: The Hub repo whose ``tokenizer.json`` open_clip names (``hf_tokenizer_name``) for the SigLIP towers.
SIGLIP_TOKENIZER_REPO = "timm/ViT-B-16-SigLIP"


@dataclass(frozen=True, kw_only=True)
class TextTowerConfig:
    """Architecture, checkpoint layout, tokenizer and zero-shot head of a CLIP-style text tower.

    Attributes
    ----------
    width, layers, heads, mlp_hidden, context_length, vocab_size
        Transformer sizes (``mlp_hidden`` is ``int(width * mlp_ratio)``, as open_clip computes it).
    output_dim
        Size of the projected text embedding (the joint image-text space).
    eps
        LayerNorm epsilon (1e-6 SigLIP, 1e-5 CLIP).
    causal
        Causal attention mask (CLIP) or none at all (SigLIP: padding tokens attend and are attended to).
    pool
        ``"last"`` (SigLIP: the last position) or ``"argmax"`` (CLIP: the end-of-text token, the highest id).
    proj_bias
        ``text_projection`` is an ``nn.Linear`` with bias (SigLIP) or a bare ``(width, output_dim)`` matrix
        applied as ``x @ W`` (CLIP).
    key_prefix
        Prefix of the tower's keys in the whole-model checkpoint (``"text."`` for open_clip's
        ``CustomTextCLIP``; ``""`` for CLIP, whose text keys sit at the top level).
    logit_bias
        Whether the checkpoint holds ``logit_bias``. With it, each label gets an independent sigmoid
        probability (SigLIP); without it, a softmax over the labels (CLIP).
    tokenizer
        ``"siglip"`` (a Hub ``tokenizer.json``, padded with 1) or ``"clip"`` (the shipped BPE vocabulary).
    tokenizer_repos
        Hub repos searched (cache first) for ``tokenizer.json`` when ``tokenizer=`` is not given.
    """

    width: int
    layers: int
    heads: int
    mlp_hidden: int
    context_length: int
    vocab_size: int
    output_dim: int
    eps: float
    causal: bool
    pool: str
    proj_bias: bool
    key_prefix: str
    logit_bias: bool
    tokenizer: str
    tokenizer_repos: tuple[str, ...] = ()

    def describe(self) -> dict:
        """Plain-JSON summary for ``describe_model()["text"]``."""
        if self.tokenizer == "siglip":
            tokenizer = (
                f"SigLIP sentencepiece (tokenizer.json from {list(self.tokenizer_repos)} or tokenizer=), "
                f"canonicalised text, {self.context_length} ids padded with 1 (</s>)"
            )
            formula = "sigmoid(cos(img, txt) * exp(logit_scale) + logit_bias), one probability per label"
        else:
            tokenizer = f"CLIP BPE (vocabulary shipped with xrembed), {self.context_length} ids padded with 0"
            formula = "softmax over labels of exp(logit_scale) * cos(img, txt)"
        return {
            "width": self.width, "layers": self.layers, "heads": self.heads, "context_length": self.context_length,
            "vocab_size": self.vocab_size, "embed_dim": self.output_dim,
            "attention_mask": "causal" if self.causal else "none (padding tokens attend)",
            "pool": "end-of-text token" if self.pool == "argmax" else "last position",
            "tokenizer": tokenizer, "scoring": formula,
        }

    @property
    def scoring(self) -> str:
        """``"sigmoid"`` (independent per-label probabilities) or ``"softmax"`` (over the labels)."""
        return "sigmoid" if self.logit_bias else "softmax"


def siglip_text(width: int, layers: int, heads: int, mlp_ratio: float, repos: tuple[str, ...] = ()) -> TextTowerConfig:
    """open_clip's SigLIP ``text_cfg`` (context 64, vocabulary 32000, no mask, last-token pool, biased
    projection, eps 1e-6) at the given size; ``repos`` are searched for ``tokenizer.json`` before
    :data:`SIGLIP_TOKENIZER_REPO`."""
    return TextTowerConfig(
        width=width, layers=layers, heads=heads, mlp_hidden=int(width * mlp_ratio), context_length=64,
        vocab_size=32000, output_dim=width, eps=1e-6, causal=False, pool="last", proj_bias=True,
        key_prefix="text.", logit_bias=True, tokenizer="siglip",
        tokenizer_repos=tuple(repos) + (SIGLIP_TOKENIZER_REPO,),
    )


def clip_text(width: int, heads: int, output_dim: int, layers: int = 12) -> TextTowerConfig:
    """open_clip's CLIP ``text_cfg`` (context 77, vocabulary 49408, causal mask, end-of-text pool,
    ``x @ text_projection`` without bias, eps 1e-5, MLP ratio 4)."""
    return TextTowerConfig(
        width=width, layers=layers, heads=heads, mlp_hidden=4 * width, context_length=77, vocab_size=49408,
        output_dim=output_dim, eps=1e-5, causal=True, pool="argmax", proj_bias=False, key_prefix="",
        logit_bias=False, tokenizer="clip",
    )
