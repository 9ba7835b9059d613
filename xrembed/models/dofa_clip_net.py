"""DOFA-CLIP / GeoLangBind image tower (torch): the trunk that ``model.visual.trunk`` is upstream.

A timm-style ViT without class token: DOFA's wavelength-conditioned patch embedding (conv *without*
padding), a learned absolute position embedding, pre-norm blocks, a final ``norm`` and a SigLIP-style
attention-pool head (timm ``AttentionPoolLatent``). Parameter names follow the official checkpoints
once their ``visual.trunk.`` prefix is stripped: ``pos_embed``, ``patch_embed.*``, ``blocks.N.*``,
``norm.*`` and ``attn_pool.{latent,q,kv,proj,norm,mlp.fc1,mlp.fc2}.*``. See :mod:`xrembed.models.dofa_clip`.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from .dofa_net import WavelengthPatchEmbed
from .layers import Block, Mlp
from .pos_embed import pos_embed_for


class AttentionPoolLatent(nn.Module):
    """Attention pooling with one learned latent query (timm ``AttentionPoolLatent``, ``pool_type='token'``).

    ``out = proj(attention(q(latent), kv(tokens)))`` then ``out + mlp(norm(out))``: the latent itself is
    not added back, as in timm and big_vision's MAP head.
    """

    def __init__(self, dim: int, num_heads: int, mlp_ratio: float = 4.0, eps: float = 1e-6) -> None:
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"embedding dim {dim} is not divisible by {num_heads} heads")
        self.num_heads = num_heads
        self.latent = nn.Parameter(torch.randn(1, 1, dim) * dim**-0.5)
        self.q = nn.Linear(dim, dim)
        self.kv = nn.Linear(dim, dim * 2)
        self.proj = nn.Linear(dim, dim)
        self.norm = nn.LayerNorm(dim, eps=eps)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, N, D)`` tokens -> ``(B, D)`` pooled vector."""
        batch, tokens, dim = x.shape
        head_dim = dim // self.num_heads
        q = self.q(self.latent.expand(batch, -1, -1)).reshape(batch, 1, self.num_heads, head_dim).transpose(1, 2)
        k, v = self.kv(x).reshape(batch, tokens, 2, self.num_heads, head_dim).permute(2, 0, 3, 1, 4).unbind(0)
        out = F.scaled_dot_product_attention(q, k, v)
        out = self.proj(out.transpose(1, 2).reshape(batch, 1, dim))
        out = out + self.mlp(self.norm(out))
        return out[:, 0]


class DOFACLIPEncoder(nn.Module):
    """GeoLangBind vision trunk.

    ``forward_tokens`` returns the normed patch tokens (the input of the attention pool, upstream's
    ``forward_features`` output); ``forward`` returns ``attn_pool`` of those, the CLIP image embedding
    (upstream ``visual.trunk(x, wvs)[0]``). The patch convolution has stride = kernel = patch size and no
    padding, so an image of ``image_size`` px gives ``image_size // patch_size`` tokens per side and
    ignores the remainder (6 px at 384 / 14), as upstream.
    """

    def __init__(
        self,
        embed_dim: int = 1152,
        depth: int = 27,
        num_heads: int = 16,
        patch_size: int = 14,
        image_size: int = 384,
        mlp_ratio: float = 3.7362,
    ) -> None:
        super().__init__()
        self.patch_size = patch_size
        self.grid_size = image_size // patch_size
        self.patch_embed = WavelengthPatchEmbed(embed_dim, patch_size, padding=0)
        self.pos_embed = nn.Parameter(torch.randn(1, self.grid_size**2, embed_dim) * 0.02)
        self.blocks = nn.ModuleList(Block(embed_dim, num_heads, mlp_ratio, qkv_bias=True, eps=1e-6) for _ in range(depth))
        self.norm = nn.LayerNorm(embed_dim, eps=1e-6)
        self.attn_pool = AttentionPoolLatent(embed_dim, num_heads, mlp_ratio, eps=1e-6)

    def forward_tokens(self, x: torch.Tensor, wavelengths_um: tuple[float, ...]) -> torch.Tensor:
        """Normed patch tokens ``(B, N, D)``, row-major over the ``H // patch`` x ``W // patch`` grid (the
        table resampled as timm does for another size than ``grid_size``; no prefix tokens)."""
        pos = pos_embed_for(self.pos_embed, x.shape[-2] // self.patch_size, x.shape[-1] // self.patch_size, 0)
        x = self.patch_embed(x, wavelengths_um) + pos
        for block in self.blocks:
            x = block(x)
        return self.norm(x)

    def pool(self, tokens: torch.Tensor) -> torch.Tensor:
        """The attention-pool head on normed tokens ``(B, N, D)`` -> ``(B, D)``."""
        return self.attn_pool(tokens)

    def pool_mean(self, mean_tokens: torch.Tensor) -> torch.Tensor:
        """The head applied to one (weighted) mean token ``(B, D)``.

        Attention over a single token gives it weight 1, and ``kv`` and ``proj`` are affine, so
        ``attn_pool([mean of t_i])`` equals the head with the learned attention weights replaced by the
        weights of the mean: the same projection and MLP, uniform (valid-area) attention.
        """
        return self.attn_pool(mean_tokens[:, None, :])

    def forward(self, x: torch.Tensor, wavelengths_um: tuple[float, ...]) -> torch.Tensor:
        """The CLIP image embedding ``(B, D)``."""
        return self.pool(self.forward_tokens(x, wavelengths_um))
