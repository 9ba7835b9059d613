"""RemoteCLIP image tower (torch): the CLIP ``VisionTransformer`` with open_clip's parameter names.

RemoteCLIP checkpoints are flat open_clip CLIP state dicts. Their image tower lives under ``visual.``;
after the adapter strips that prefix the keys of this module are exactly those of open_clip's
``VisionTransformer`` (``class_embedding``, ``positional_embedding``, ``conv1``, ``ln_pre``,
``transformer.resblocks.N.{ln_1,attn.in_proj_weight,attn.in_proj_bias,attn.out_proj,ln_2,mlp.c_fc,
mlp.c_proj}``, ``ln_post``, ``proj``). Our own code, written from the architecture facts; see
:mod:`xrembed.models.remoteclip` for the adapter around it.

Arithmetic, as open_clip builds ``ViT-B-32``/``ViT-L-14`` (no ``-quickgelu`` suffix): LayerNorm eps 1e-5,
exact GELU (``nn.GELU``, not OpenAI's QuickGELU), attention through ``scaled_dot_product_attention``.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from .pos_embed import pos_embed_for


class CLIPAttention(nn.Module):
    """Multi-head self-attention with ``nn.MultiheadAttention``'s parameter names (packed ``in_proj``)."""

    def __init__(self, dim: int, num_heads: int) -> None:
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"embedding dim {dim} is not divisible by {num_heads} heads")
        self.num_heads = num_heads
        self.in_proj_weight = nn.Parameter(torch.empty(3 * dim, dim))
        self.in_proj_bias = nn.Parameter(torch.zeros(3 * dim))
        self.out_proj = nn.Linear(dim, dim)
        nn.init.xavier_uniform_(self.in_proj_weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, tokens, dim = x.shape
        qkv = F.linear(x, self.in_proj_weight, self.in_proj_bias)
        qkv = qkv.reshape(batch, tokens, 3, self.num_heads, dim // self.num_heads)
        q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)
        x = F.scaled_dot_product_attention(q, k, v)
        return self.out_proj(x.transpose(1, 2).reshape(batch, tokens, dim))


class CLIPMlp(nn.Module):
    """``c_fc`` -> GELU -> ``c_proj`` (open_clip's ``mlp`` Sequential; the activation has no parameters)."""

    def __init__(self, dim: int, hidden_dim: int) -> None:
        super().__init__()
        self.c_fc = nn.Linear(dim, hidden_dim)
        self.gelu = nn.GELU()
        self.c_proj = nn.Linear(hidden_dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.c_proj(self.gelu(self.c_fc(x)))


class ResidualAttentionBlock(nn.Module):
    """Pre-norm CLIP block: ``x + attn(ln_1(x))``, then ``x + mlp(ln_2(x))``."""

    def __init__(self, dim: int, num_heads: int, mlp_ratio: float = 4.0, eps: float = 1e-5) -> None:
        super().__init__()
        self.ln_1 = nn.LayerNorm(dim, eps=eps)
        self.attn = CLIPAttention(dim, num_heads)
        self.ln_2 = nn.LayerNorm(dim, eps=eps)
        self.mlp = CLIPMlp(dim, int(dim * mlp_ratio))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.ln_1(x))
        return x + self.mlp(self.ln_2(x))


class Transformer(nn.Module):
    def __init__(self, dim: int, depth: int, num_heads: int, mlp_ratio: float = 4.0) -> None:
        super().__init__()
        self.resblocks = nn.ModuleList(ResidualAttentionBlock(dim, num_heads, mlp_ratio) for _ in range(depth))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for block in self.resblocks:
            x = block(x)
        return x


class CLIPVisionTransformer(nn.Module):
    """CLIP image encoder: patch conv (no bias), CLS, learned positions, ``ln_pre``, blocks, ``ln_post``, ``proj``.

    ``forward_tokens`` returns ``ln_post`` of every token (CLS first), the tokens open_clip returns with
    ``output_tokens=True``; ``project`` maps width-``D`` vectors into the joint image-text space.
    """

    def __init__(
        self,
        width: int = 768,
        depth: int = 12,
        num_heads: int = 12,
        patch_size: int = 32,
        image_size: int = 224,
        output_dim: int = 512,
        mlp_ratio: float = 4.0,
    ) -> None:
        super().__init__()
        self.patch_size = patch_size
        self.grid_size = image_size // patch_size
        scale = width**-0.5
        self.conv1 = nn.Conv2d(3, width, kernel_size=patch_size, stride=patch_size, bias=False)
        self.class_embedding = nn.Parameter(scale * torch.randn(width))
        self.positional_embedding = nn.Parameter(scale * torch.randn(self.grid_size**2 + 1, width))
        self.ln_pre = nn.LayerNorm(width, eps=1e-5)
        self.transformer = Transformer(width, depth, num_heads, mlp_ratio)
        self.ln_post = nn.LayerNorm(width, eps=1e-5)
        self.proj = nn.Parameter(scale * torch.randn(width, output_dim))

    def forward_tokens(self, x: torch.Tensor) -> torch.Tensor:
        """``ln_post`` of all tokens ``(B, 1 + N, D)`` after the last block (CLS first).

        Images of another size than ``grid_size`` patches use the table resampled as timm does
        (:func:`~xrembed.models.pos_embed.pos_embed_for`; the class row kept).
        """
        pos = pos_embed_for(self.positional_embedding, x.shape[-2] // self.patch_size, x.shape[-1] // self.patch_size)
        x = self.conv1(x).flatten(2).transpose(1, 2)
        cls = self.class_embedding.to(x.dtype).view(1, 1, -1).expand(x.shape[0], -1, -1)
        x = torch.cat([cls, x], dim=1) + pos.to(x.dtype)
        x = self.transformer(self.ln_pre(x))
        return self.ln_post(x)

    def project(self, features: torch.Tensor) -> torch.Tensor:
        """Width-``D`` features ``(..., D)`` into the joint embedding space ``(..., output_dim)``."""
        return features @ self.proj.to(features.dtype)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The CLIP image embedding ``ln_post(CLS) @ proj`` (open_clip ``encode_image``, not L2-normalised)."""
        return self.project(self.forward_tokens(x)[:, 0])
