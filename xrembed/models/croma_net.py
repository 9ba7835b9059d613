"""CROMA encoders (torch): a radar ViT, an optical ViT and a joint cross-attention encoder, with 2-D ALiBi.

Parameter names follow the official release (``CROMA_base.pt`` / ``CROMA_large.pt``, also torchgeo's
``models/croma.py``), flattened from its nested ``{part: state_dict}`` layout into ``part.key``:

* ``s1_encoder`` (2 channels, ``depth // 2`` layers) and ``s2_encoder`` (12 channels, ``depth`` layers):
  ``linear_input`` (a linear map of each flattened ``c x 8 x 8`` patch, channel-major) and
  ``transformer.layers.N.{0: attention, 1: FFN}``, then ``transformer.norm_out``;
* attention: ``input_norm`` (pre-norm), ``to_qkv`` (no bias), ``to_out``; FFN: ``input_norm``,
  ``net.0`` / ``net.3`` (exact GELU between them); LayerNorms with the torch default eps 1e-5;
* ``s1_GAP_FFN`` / ``s2_GAP_FFN``: ``0`` (LayerNorm), ``1``, ``3`` (Linear, GELU between), applied to the
  mean of the encodings;
* ``joint_encoder.layers.N.{0: self-attention, 1: cross-attention (to_q, to_k, to_v, to_out, input_norm
  shared by query and context), 2: FFN}``, then ``joint_encoder.norm_out``.

There is no position embedding: every attention adds the same 2-D ALiBi bias, ``-slope_h * distance``
between patch centres (in patches), with ALiBi's geometric head slopes. It is computed for the token
grid of the input, not stored. Every attention has 16 heads, as in the release.
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F

#: Heads of every CROMA attention (base and large).
NUM_HEADS = 16
#: Pixels per patch side (base and large).
PATCH_SIZE = 8


def alibi_slopes(num_heads: int) -> torch.Tensor:
    """ALiBi's head slopes: ``r, r**2, ..., r**n`` with ``r = 2 ** (-8 / n)`` (``n`` a power of two)."""
    ratio = 2.0 ** (-8.0 / num_heads)
    return torch.tensor([ratio ** (i + 1) for i in range(num_heads)], dtype=torch.float32)


def alibi_2d(num_heads: int, side: int) -> torch.Tensor:
    """The 2-D ALiBi bias ``(1, heads, side**2, side**2)``: ``-slope * euclidean distance`` of row-major patches."""
    rows, cols = torch.meshgrid(torch.arange(side), torch.arange(side), indexing="ij")
    points = torch.stack([rows.reshape(-1), cols.reshape(-1)], dim=1).to(torch.float64)
    distance = torch.cdist(points, points).to(torch.float32)
    return (-alibi_slopes(num_heads)[:, None, None] * distance).unsqueeze(0)


class SelfAttention(nn.Module):
    """Pre-norm multi-head self-attention with an additive bias (``input_norm``, ``to_qkv``, ``to_out``)."""

    def __init__(self, dim: int, num_heads: int = NUM_HEADS) -> None:
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"CROMA width {dim} is not divisible by {num_heads} heads")
        self.num_heads = num_heads
        self.input_norm = nn.LayerNorm(dim)
        self.to_qkv = nn.Linear(dim, 3 * dim, bias=False)
        self.to_out = nn.Linear(dim, dim)

    def _heads(self, t: torch.Tensor) -> torch.Tensor:
        batch, tokens, dim = t.shape
        return t.reshape(batch, tokens, self.num_heads, dim // self.num_heads).transpose(1, 2)

    def _merge(self, t: torch.Tensor) -> torch.Tensor:
        batch, _, tokens, _ = t.shape
        return self.to_out(t.transpose(1, 2).reshape(batch, tokens, -1))

    def forward(self, x: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
        q, k, v = self.to_qkv(self.input_norm(x)).chunk(3, dim=-1)
        out = F.scaled_dot_product_attention(self._heads(q), self._heads(k), self._heads(v), attn_mask=bias)
        return self._merge(out)


class CrossAttention(SelfAttention):
    """Pre-norm cross-attention of ``x`` to ``context`` (one ``input_norm`` for both; ``to_q/k/v`` without bias)."""

    def __init__(self, dim: int, num_heads: int = NUM_HEADS) -> None:
        nn.Module.__init__(self)
        if dim % num_heads:
            raise ValueError(f"CROMA width {dim} is not divisible by {num_heads} heads")
        self.num_heads = num_heads
        self.to_q = nn.Linear(dim, dim, bias=False)
        self.to_k = nn.Linear(dim, dim, bias=False)
        self.to_v = nn.Linear(dim, dim, bias=False)
        self.to_out = nn.Linear(dim, dim)
        self.input_norm = nn.LayerNorm(dim)

    def forward(self, x: torch.Tensor, context: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        x, context = self.input_norm(x), self.input_norm(context)
        q, k, v = self._heads(self.to_q(x)), self._heads(self.to_k(context)), self._heads(self.to_v(context))
        return self._merge(F.scaled_dot_product_attention(q, k, v, attn_mask=bias))


class FeedForward(nn.Module):
    """Pre-norm MLP: ``input_norm``, ``net.0`` (to ``4 * dim``), exact GELU, ``net.3``."""

    def __init__(self, dim: int, mult: int = 4) -> None:
        super().__init__()
        self.input_norm = nn.LayerNorm(dim)
        self.net = nn.Sequential(nn.Linear(dim, mult * dim), nn.GELU(), nn.Dropout(0.0), nn.Linear(mult * dim, dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(self.input_norm(x))


class Transformer(nn.Module):
    """``layers.N.{0: SelfAttention, 1: FeedForward}`` with residuals, then ``norm_out``."""

    def __init__(self, dim: int, depth: int) -> None:
        super().__init__()
        self.layers = nn.ModuleList(nn.ModuleList([SelfAttention(dim), FeedForward(dim)]) for _ in range(depth))
        self.norm_out = nn.LayerNorm(dim)

    def forward(self, x: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
        for attention, ffn in self.layers:
            x = attention(x, bias) + x
            x = ffn(x) + x
        return self.norm_out(x)


class JointTransformer(nn.Module):
    """``layers.N.{0: SelfAttention, 1: CrossAttention, 2: FeedForward}``, then ``norm_out``."""

    def __init__(self, dim: int, depth: int) -> None:
        super().__init__()
        self.layers = nn.ModuleList(
            nn.ModuleList([SelfAttention(dim), CrossAttention(dim), FeedForward(dim)]) for _ in range(depth)
        )
        self.norm_out = nn.LayerNorm(dim)

    def forward(self, x: torch.Tensor, context: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
        for attention, cross, ffn in self.layers:
            x = attention(x, bias) + x
            x = cross(x, context, bias) + x
            x = ffn(x) + x
        return self.norm_out(x)


class PatchViT(nn.Module):
    """``linear_input`` over flattened ``(c, i, j)`` patches, then a :class:`Transformer` (no position embedding)."""

    def __init__(self, dim: int, depth: int, in_channels: int, patch_size: int = PATCH_SIZE) -> None:
        super().__init__()
        self.patch_size = patch_size
        self.linear_input = nn.Linear(in_channels * patch_size * patch_size, dim)
        self.transformer = Transformer(dim, depth)

    def forward(self, x: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
        batch, channels, height, width = x.shape
        p = self.patch_size
        patches = x.reshape(batch, channels, height // p, p, width // p, p).permute(0, 2, 4, 1, 3, 5)
        return self.transformer(self.linear_input(patches.reshape(batch, -1, channels * p * p)), bias)


def gap_ffn(dim: int) -> nn.Sequential:
    """The head on the mean encoding: ``0`` LayerNorm, ``1`` Linear to ``4 * dim``, GELU, ``3`` Linear."""
    return nn.Sequential(nn.LayerNorm(dim), nn.Linear(dim, 4 * dim), nn.GELU(), nn.Linear(4 * dim, dim))


class CROMAEncoder(nn.Module):
    """All CROMA encoders of one size (the release file holds all five parts; they load together).

    ``encodings(x, modality)`` gives the normed patch tokens ``(B, N, D)`` of ``"s1"`` (2 channels), ``"s2"``
    (12 channels) or ``"joint"`` (the 2 radar channels then the 12 optical ones); ``pool(tokens, modality)``
    the release's pooled vector of their mean (the modality's GAP-FFN; the plain mean for ``"joint"``).
    """

    def __init__(self, embed_dim: int = 768, depth: int = 12, image_size: int = 120, patch_size: int = PATCH_SIZE):
        super().__init__()
        self.patch_size = patch_size
        self.grid_size = image_size // patch_size
        self.s1_encoder = PatchViT(embed_dim, depth // 2, 2, patch_size)
        self.s1_GAP_FFN = gap_ffn(embed_dim)
        self.s2_encoder = PatchViT(embed_dim, depth, 12, patch_size)
        self.s2_GAP_FFN = gap_ffn(embed_dim)
        self.joint_encoder = JointTransformer(embed_dim, depth // 2)
        self._bias: dict[tuple[int, str, torch.dtype], torch.Tensor] = {}

    def attention_bias(self, side: int, like: torch.Tensor) -> torch.Tensor:
        key = (side, str(like.device), like.dtype)
        if key not in self._bias:
            self._bias[key] = alibi_2d(NUM_HEADS, side).to(device=like.device, dtype=like.dtype)
        return self._bias[key]

    def encodings(self, x: torch.Tensor, modality: str) -> torch.Tensor:
        """Normed patch tokens ``(B, N, D)``, row-major, for ``modality`` ``"s1"``, ``"s2"`` or ``"joint"``."""
        height, width = x.shape[-2:]
        if height != width or height % self.patch_size:
            raise ValueError(f"CROMA takes square images with a side divisible by {self.patch_size}, got {height} x {width}")
        bias = self.attention_bias(height // self.patch_size, x)
        if modality == "s1":
            return self.s1_encoder(x, bias)
        if modality == "s2":
            return self.s2_encoder(x, bias)
        if modality == "joint":
            radar = self.s1_encoder(x[:, :2], bias)
            optical = self.s2_encoder(x[:, 2:], bias)
            return self.joint_encoder(radar, optical, bias)
        raise ValueError(f"unknown CROMA modality {modality!r}; expected 's1', 's2' or 'joint'")

    def pool(self, tokens: torch.Tensor, modality: str) -> torch.Tensor:
        """Pooled vector ``(B, D)`` of mean tokens ``(B, D)`` (or of a token sequence ``(B, N, D)``)."""
        mean = tokens.mean(dim=1) if tokens.ndim == 3 else tokens
        if modality == "joint":
            return mean
        return (self.s1_GAP_FFN if modality == "s1" else self.s2_GAP_FFN)(mean)

    def grid(self, x: torch.Tensor, modality: str) -> torch.Tensor:
        """Patch tokens as a map ``(B, D, h, w)``."""
        tokens = self.encodings(x, modality)
        side = x.shape[-1] // self.patch_size
        return tokens.transpose(1, 2).reshape(x.shape[0], -1, side, side)

    def forward(self, x: torch.Tensor, modality: str) -> torch.Tensor:
        """The release's pooled output: ``*_GAP`` (GAP-FFN of the mean encoding; the mean for ``"joint"``)."""
        return self.pool(self.encodings(x, modality), modality)
