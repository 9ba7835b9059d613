"""The CLIP-style text transformer (torch), with open_clip's parameter names.

Our own code, written from the architecture facts (``reference/text-towers.md``): token embedding plus
learned positions, pre-norm blocks with packed ``in_proj`` attention and exact GELU, ``ln_final`` on every
position, pooling at the last position (SigLIP) or at the end-of-text token (CLIP, the highest id), then
the projection. The zero-shot scalars ``logit_scale`` (and ``logit_bias`` for SigLIP) are parameters of
this module, so that one strict load checks them together with the tower.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from ..models.text_config import TextTowerConfig


class _Attention(nn.Module):
    """Multi-head self-attention with ``nn.MultiheadAttention``'s parameter names (packed ``in_proj``)."""

    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.in_proj_weight = nn.Parameter(torch.empty(3 * dim, dim))
        self.in_proj_bias = nn.Parameter(torch.zeros(3 * dim))
        self.out_proj = nn.Linear(dim, dim)
        nn.init.xavier_uniform_(self.in_proj_weight)

    def forward(self, x: torch.Tensor, causal: bool) -> torch.Tensor:
        batch, tokens, dim = x.shape
        qkv = F.linear(x, self.in_proj_weight, self.in_proj_bias).reshape(batch, tokens, 3, self.heads, dim // self.heads)
        q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)
        out = F.scaled_dot_product_attention(q, k, v, is_causal=causal)
        return self.out_proj(out.transpose(1, 2).reshape(batch, tokens, dim))


class _Mlp(nn.Module):
    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.c_fc = nn.Linear(dim, hidden)
        self.gelu = nn.GELU()  # exact erf GELU, as both open_clip configs build it
        self.c_proj = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.c_proj(self.gelu(self.c_fc(x)))


class _Block(nn.Module):
    def __init__(self, dim: int, heads: int, hidden: int, eps: float) -> None:
        super().__init__()
        self.ln_1 = nn.LayerNorm(dim, eps=eps)
        self.attn = _Attention(dim, heads)
        self.ln_2 = nn.LayerNorm(dim, eps=eps)
        self.mlp = _Mlp(dim, hidden)

    def forward(self, x: torch.Tensor, causal: bool) -> torch.Tensor:
        x = x + self.attn(self.ln_1(x), causal)
        return x + self.mlp(self.ln_2(x))


class _Transformer(nn.Module):
    def __init__(self, cfg: TextTowerConfig) -> None:
        super().__init__()
        self.resblocks = nn.ModuleList(_Block(cfg.width, cfg.heads, cfg.mlp_hidden, cfg.eps) for _ in range(cfg.layers))


class TextTower(nn.Module):
    """A text tower and its zero-shot scalars.

    ``forward(ids)`` maps token ids ``(B, context_length)`` to unnormalised text embeddings
    ``(B, output_dim)``, as open_clip's ``encode_text(ids, normalize=False)``.
    """

    def __init__(self, cfg: TextTowerConfig) -> None:
        super().__init__()
        if cfg.width % cfg.heads:
            raise ValueError(f"text width {cfg.width} is not divisible by {cfg.heads} heads")
        self.cfg = cfg
        self.token_embedding = nn.Embedding(cfg.vocab_size, cfg.width)
        self.positional_embedding = nn.Parameter(torch.randn(cfg.context_length, cfg.width) * 0.01)
        self.transformer = _Transformer(cfg)
        self.ln_final = nn.LayerNorm(cfg.width, eps=cfg.eps)
        if cfg.proj_bias:
            self.text_projection = nn.Linear(cfg.width, cfg.output_dim)
        else:
            self.text_projection = nn.Parameter(torch.randn(cfg.width, cfg.output_dim) * cfg.width**-0.5)
        # open_clip's initial values; a checkpoint holds the trained ones.
        self.logit_scale = nn.Parameter(torch.tensor(2.6592))
        if cfg.logit_bias:
            self.logit_bias = nn.Parameter(torch.tensor(-10.0))

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        x = self.token_embedding(ids) + self.positional_embedding[: ids.shape[1]]
        for block in self.transformer.resblocks:
            x = block(x, self.cfg.causal)
        x = self.ln_final(x)
        if self.cfg.pool == "last":
            pooled = x[:, -1]
        else:  # the end-of-text token has the highest id
            pooled = x[torch.arange(x.shape[0], device=x.device), ids.argmax(dim=-1)]
        if self.cfg.proj_bias:
            return self.text_projection(pooled)
        return pooled @ self.text_projection

    def scalars(self) -> tuple[float, float | None]:
        """``(logit_scale, logit_bias)`` as floats (``logit_bias`` is ``None`` for CLIP)."""
        bias = float(self.logit_bias.detach().reshape(())) if self.cfg.logit_bias else None
        return float(self.logit_scale.detach().reshape(())), bias
