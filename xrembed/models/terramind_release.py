"""The layout of TerraMind's release file (``TerraMind_v1_<size>.pt``), for :func:`xrembed.testing.write_official_checkpoint`.

The release is the flat state dict of terratorch's whole any-to-any ``TerraMind``: the encoder
(``encoder.*``, ``encoder_norm.*``), an ``encoder_embeddings.<key>`` per pre-training modality (raw
images, tokenised images, captions, coordinates), the decoder (``decoder_embeddings.*``, ``decoder.*``,
``decoder_norm.*``, ``decoder_proj_context.*``, ``mask_token``), and for every LayerNorm a zero ``*.bias``
buffer. The full key list of the real file could not be checked offline; the names here are those of
terratorch 1.2.11's ``TerraMind`` module, the decoder and other modalities as small stand-ins.
"""

from __future__ import annotations

from typing import Any


def release_state(state: dict[str, Any], embed_dim: int, patch_size: int, torch) -> dict[str, Any]:
    """``state`` (the encoder as xrembed builds it) as the release file holds it, with what the clean-up drops."""
    out = dict(state)
    for key, tensor in state.items():  # every norm: a zero bias buffer beside its weight
        stem = key[: -len(".weight")]
        if key.endswith(".weight") and stem.rsplit(".", 1)[-1] in ("norm1", "norm2", "encoder_norm"):
            out[f"{stem}.bias"] = torch.zeros_like(tensor)
    dim, pixels = embed_dim, patch_size * patch_size
    tokens = next(t for k, t in state.items() if k.endswith(".pos_emb")).shape[1]
    for key, channels in (("untok_sen2l1c@224", 13), ("untok_sen2rgb@224", 3), ("untok_dem@224", 1)):
        out[f"encoder_embeddings.{key}.proj.weight"] = torch.randn(dim, channels * pixels) * 0.02
        out[f"encoder_embeddings.{key}.mod_emb"] = torch.randn(1, 1, dim) * 0.02
        out[f"encoder_embeddings.{key}.pos_emb"] = torch.zeros(1, tokens, dim)
    out["encoder_embeddings.tok_lulc@224.token_emb.weight"] = torch.randn(16, dim) * 0.02
    out["encoder_embeddings.tok_lulc@224.mod_emb"] = torch.randn(1, 1, dim) * 0.02
    out["encoder_embeddings.caption.token_emb.weight"] = torch.randn(16, dim) * 0.02
    out["decoder_embeddings.tok_sen2l2a@224.token_emb.weight"] = torch.randn(16, dim) * 0.02
    out["decoder_embeddings.tok_sen2l2a@224.to_logits.weight"] = torch.randn(16, dim) * 0.02
    out["decoder_embeddings.tok_sen2l2a@224.mod_emb"] = torch.randn(1, 1, dim) * 0.02
    out["decoder.0.norm1.weight"] = torch.ones(dim)
    out["decoder.0.norm1.bias"] = torch.zeros(dim)
    out["decoder.0.self_attn.qkv.weight"] = torch.randn(3 * dim, dim) * 0.02
    out["decoder.0.cross_attn.q.weight"] = torch.randn(dim, dim) * 0.02
    out["decoder_norm.weight"] = torch.ones(dim)
    out["decoder_norm.bias"] = torch.zeros(dim)
    out["decoder_proj_context.weight"] = torch.randn(dim, dim) * 0.02
    out["decoder_proj_context.bias"] = torch.zeros(dim)
    out["mask_token"] = torch.zeros(1, 1, dim)
    return out
