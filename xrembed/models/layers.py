"""Transformer building blocks with timm-compatible parameter names.

The encoders of DOFA, DOFA-CLIP, TerraFM, SatMAE, ScaleMAE and Prithvi all use timm's
``VisionTransformer`` block layout (``blocks.N.{norm1,attn.qkv,attn.proj,norm2,mlp.fc1,mlp.fc2}``).
timm itself cannot be a runtime dependency here (it imports torchvision), so this module re-creates
the few pieces needed, with the same keys and the same arithmetic (attention through
``scaled_dot_product_attention``, exact GELU).
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F


class Attention(nn.Module):
    """Multi-head self-attention (timm ``Attention``: one ``qkv`` projection, one ``proj``)."""

    def __init__(self, dim: int, num_heads: int, qkv_bias: bool = True) -> None:
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"embedding dim {dim} is not divisible by {num_heads} heads")
        self.num_heads = num_heads
        self.qkv = nn.Linear(dim, dim * 3, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, tokens, dim = x.shape
        qkv = self.qkv(x).reshape(batch, tokens, 3, self.num_heads, dim // self.num_heads)
        q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)
        x = F.scaled_dot_product_attention(q, k, v)
        return self.proj(x.transpose(1, 2).reshape(batch, tokens, dim))


class Mlp(nn.Module):
    """Two-layer MLP with exact GELU (timm ``Mlp``)."""

    def __init__(self, dim: int, hidden_dim: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden_dim)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden_dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))


class Block(nn.Module):
    """Pre-norm transformer block (timm ``Block`` without layer-scale or drop-path)."""

    def __init__(self, dim: int, num_heads: int, mlp_ratio: float = 4.0, qkv_bias: bool = True, eps: float = 1e-6):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=eps)
        self.attn = Attention(dim, num_heads, qkv_bias=qkv_bias)
        self.norm2 = nn.LayerNorm(dim, eps=eps)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


def sincos_1d(embed_dim: int, positions: torch.Tensor) -> torch.Tensor:
    """1-D sine/cosine embedding of ``positions`` (MAE convention: ``[sin, cos]`` halves)."""
    if embed_dim % 2:
        raise ValueError("sin-cos embedding dim must be even")
    omega = torch.arange(embed_dim // 2, dtype=torch.float32, device=positions.device)
    omega /= embed_dim / 2.0
    omega = 1.0 / 10000**omega
    out = torch.einsum("m,d->md", positions.reshape(-1).float(), omega)
    return torch.cat([torch.sin(out), torch.cos(out)], dim=1)


def sincos_2d(embed_dim: int, grid_size: int, cls_token: bool = True) -> torch.Tensor:
    """Fixed 2-D sin-cos position embedding ``(1, [1 +] grid_size**2, embed_dim)`` as in MAE."""
    coords = np.arange(grid_size, dtype=np.float32)
    grid_w, grid_h = np.meshgrid(coords, coords)  # MAE: w first
    emb_h = sincos_1d(embed_dim // 2, torch.from_numpy(grid_w.reshape(-1)))
    emb_w = sincos_1d(embed_dim // 2, torch.from_numpy(grid_h.reshape(-1)))
    emb = torch.cat([emb_h, emb_w], dim=1)
    if cls_token:
        emb = torch.cat([torch.zeros(1, embed_dim), emb], dim=0)
    return emb.unsqueeze(0)
