"""Panopticon encoder (torch): a per-channel patch embedding fused by cross-attention over channels, then a
DINOv2 ViT-B/14 trunk with layer scale.

Parameter names follow the official teacher checkpoint (``panopticon_vitb14_teacher.pth``: timm's DINOv2
``VisionTransformer`` names, with torchgeo's ``PanopticonPE`` as ``patch_embed``):

* ``patch_embed.conv3d.conv3d`` ``Conv3d(1, A, (1, 14, 14))``: every channel is patchified on its own to
  ``A`` (= 2304) features;
* ``patch_embed.chnfus.chnemb.{embed_transmit, embed_receive, embed_orbit}`` (SAR polarisation / orbit
  embeddings, ``A // 3`` each, the last ``A - 2 * (A // 3)``); optical channels get a fixed 1-D sin-cos
  embedding of their wavelength in nm, floored;
* ``patch_embed.chnfus.query`` ``(1, 1, A)``, ``patch_embed.chnfus.xattn.{inproj_k, inproj_v}`` (no bias,
  16 heads; the query is not projected, there is no output projection): one learned query attends over
  the channels of each patch;
* ``patch_embed.proj`` ``Linear(A, D)``; ``cls_token``, ``pos_embed`` ``(1, 1 + N, D)``;
* ``blocks.N.{norm1, attn.qkv, attn.proj, ls1.gamma, norm2, mlp.fc1, mlp.fc2, ls2.gamma}`` and ``norm``
  (LayerNorm eps 1e-6).

Channel ids (``chn_ids``): optical channels their wavelength in nm; SAR channels a negative id, ``-1`` VV,
``-2`` VH, ``-3`` HH, ``-4`` HV (orbit unknown); ``-5..-8`` the same on an ascending and ``-9..-12`` on a
descending orbit.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from .layers import Attention, Mlp
from .pos_embed import pos_embed_for

#: Heads of the channel cross-attention.
CHANNEL_HEADS = 16


class LayerScale(nn.Module):
    """``x * gamma`` (timm ``LayerScale``)."""

    def __init__(self, dim: int, init_values: float = 1e-5) -> None:
        super().__init__()
        self.gamma = nn.Parameter(init_values * torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.gamma


class ScaledBlock(nn.Module):
    """Pre-norm transformer block with layer scale (timm ``Block`` with ``init_values``)."""

    def __init__(self, dim: int, num_heads: int, mlp_ratio: float = 4.0) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        self.attn = Attention(dim, num_heads, qkv_bias=True)
        self.ls1 = LayerScale(dim)
        self.norm2 = nn.LayerNorm(dim, eps=1e-6)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))
        self.ls2 = LayerScale(dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.ls1(self.attn(self.norm1(x)))
        return x + self.ls2(self.mlp(self.norm2(x)))


def sincos_1d(embed_dim: int, positions: torch.Tensor) -> torch.Tensor:
    """``[sin(p * w), cos(p * w)]`` with ``w = 10000 ** (-i / (D / 2))``: ``(M,)`` -> ``(M, D)``."""
    half = embed_dim // 2
    omega = 1.0 / (10000 ** (torch.arange(half, dtype=torch.float32, device=positions.device) / half))
    out = torch.outer(positions.reshape(-1).to(torch.float32), omega)
    return torch.cat([out.sin(), out.cos()], dim=1)


class ChannelEmbedding(nn.Module):
    """Per-channel embeddings from channel ids: sin-cos of ``floor(nm)`` (optical) or learned SAR vectors."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.dim = dim
        third = dim // 3
        self.embed_transmit = nn.Parameter(torch.zeros(2, third))  # 0: V, 1: H
        self.embed_receive = nn.Parameter(torch.zeros(2, third))  # 0: V, 1: H
        self.embed_orbit = nn.Parameter(torch.zeros(2, dim - 2 * third))  # 0: ascending, 1: descending

    def sar_table(self) -> torch.Tensor:
        """The 12 SAR embeddings, row ``-(id + 1)``: (VV, VH, HH, HV) x (any, ascending, descending) orbit."""
        t, r, o = self.embed_transmit, self.embed_receive, self.embed_orbit
        transmit = torch.stack([t[0], t[0], t[1], t[1]]).repeat(3, 1)
        receive = torch.stack([r[0], r[1], r[1], r[0]]).repeat(3, 1)
        orbit = torch.stack([o.mean(dim=0), o[0], o[1]]).repeat_interleave(4, dim=0)
        return torch.cat([transmit, receive, orbit], dim=1)

    def forward(self, channel_ids: torch.Tensor) -> torch.Tensor:
        """``(C,)`` channel ids -> ``(C, dim)`` embeddings (the ids are not modified)."""
        sar = channel_ids < 0
        out = torch.zeros(channel_ids.shape + (self.dim,), dtype=self.embed_transmit.dtype, device=channel_ids.device)
        if (~sar).any():
            out[~sar] = sincos_1d(self.dim, torch.floor(channel_ids[~sar])).to(out.dtype)
        if sar.any():
            out[sar] = self.sar_table()[(-(channel_ids[sar] + 1)).to(torch.long)]
        return out


class ChannelKV(nn.Module):
    """Key and value projections of the channel cross-attention (no bias; the query is a parameter)."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.inproj_k = nn.Linear(dim, dim, bias=False)
        self.inproj_v = nn.Linear(dim, dim, bias=False)


class ChannelFusion(nn.Module):
    """One learned query per patch attends over that patch's channel tokens (plus their channel embeddings)."""

    def __init__(self, dim: int, num_heads: int = CHANNEL_HEADS) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.chnemb = ChannelEmbedding(dim)
        self.query = nn.Parameter(torch.randn(1, 1, dim))
        self.xattn = ChannelKV(dim)

    def forward(self, x: torch.Tensor, channel_ids: torch.Tensor) -> torch.Tensor:
        """``(B, C, L, A)`` channel tokens -> ``(B, L, A)``."""
        batch, channels, length, dim = x.shape
        x = (x + self.chnemb(channel_ids)[None, :, None, :]).permute(0, 2, 1, 3).reshape(batch * length, channels, dim)
        heads, head_dim = self.num_heads, dim // self.num_heads
        k = self.xattn.inproj_k(x).reshape(batch * length, channels, heads, head_dim).transpose(1, 2)
        v = self.xattn.inproj_v(x).reshape(batch * length, channels, heads, head_dim).transpose(1, 2)
        q = self.query.reshape(1, heads, 1, head_dim).expand(batch * length, -1, -1, -1)
        out = F.scaled_dot_product_attention(q, k, v)  # (BL, heads, 1, head_dim)
        return out.reshape(batch, length, dim)


class ChannelPatchify(nn.Module):
    """``conv3d``: each channel patchified on its own, ``(B, C, H, W)`` -> ``(B, C, L, A)``."""

    def __init__(self, patch_size: int, dim: int) -> None:
        super().__init__()
        self.conv3d = nn.Conv3d(1, dim, kernel_size=(1, patch_size, patch_size), stride=(1, patch_size, patch_size))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv3d(x.unsqueeze(1))  # (B, A, C, h, w)
        return out.flatten(3).permute(0, 2, 3, 1)


class PanopticonPatchEmbed(nn.Module):
    """``conv3d`` per channel, channel fusion by cross-attention, then ``proj`` to the trunk width."""

    def __init__(self, attn_dim: int, embed_dim: int, patch_size: int) -> None:
        super().__init__()
        self.conv3d = ChannelPatchify(patch_size, attn_dim)
        self.chnfus = ChannelFusion(attn_dim)
        self.proj = nn.Linear(attn_dim, embed_dim)

    def forward(self, x: torch.Tensor, channel_ids: torch.Tensor) -> torch.Tensor:
        return self.proj(self.chnfus(self.conv3d(x), channel_ids))


class PanopticonEncoder(nn.Module):
    """Panopticon: channel-fused patch tokens, CLS, learned positions, 12 layer-scaled blocks, final norm.

    ``forward_tokens(x, channel_ids)`` returns all normed tokens (CLS first); the reference's output (timm
    ``forward`` with ``global_pool='token'`` and no head) is the normed CLS.

    ``pos_embed`` holds a ``pos_grid x pos_grid`` table (default: ``image_size // patch_size``; the adapter
    keeps the release's 37 x 37) and each forward pass resamples it to the image's patch grid (bicubic,
    antialiased, CLS row kept), the table torchgeo's ``panopticon_vitb14(img_size=N)`` loads for N px images.
    """

    def __init__(self, embed_dim: int = 768, depth: int = 12, num_heads: int = 12, patch_size: int = 14,
                 image_size: int = 224, attn_dim: int = 2304, mlp_ratio: float = 4.0,
                 pos_grid: int | None = None) -> None:
        super().__init__()
        self.patch_size = patch_size
        self.grid_size = image_size // patch_size
        self.patch_embed = PanopticonPatchEmbed(attn_dim, embed_dim, patch_size)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, embed_dim))
        side = self.grid_size if pos_grid is None else pos_grid
        self.pos_embed = nn.Parameter(torch.randn(1, 1 + side**2, embed_dim) * 0.02)
        self.blocks = nn.ModuleList(ScaledBlock(embed_dim, num_heads, mlp_ratio) for _ in range(depth))
        self.norm = nn.LayerNorm(embed_dim, eps=1e-6)

    def forward_tokens(self, x: torch.Tensor, channel_ids: torch.Tensor) -> torch.Tensor:
        height, width = x.shape[-2:]
        if height % self.patch_size or width % self.patch_size:
            raise ValueError(f"Panopticon here takes images of whole {self.patch_size} px patches, got {height} x {width}")
        pos = pos_embed_for(self.pos_embed, height // self.patch_size, width // self.patch_size)
        tokens = self.patch_embed(x, channel_ids)
        x = torch.cat([self.cls_token.expand(tokens.shape[0], -1, -1), tokens], dim=1) + pos
        for block in self.blocks:
            x = block(x)
        return self.norm(x)

    def grid(self, x: torch.Tensor, channel_ids: torch.Tensor) -> torch.Tensor:
        """Normed patch tokens as a map ``(B, D, h, w)``."""
        tokens = self.forward_tokens(x, channel_ids)[:, 1:]
        return tokens.transpose(1, 2).reshape(x.shape[0], -1, x.shape[-2] // self.patch_size, x.shape[-1] // self.patch_size)

    def forward(self, x: torch.Tensor, channel_ids: torch.Tensor) -> torch.Tensor:
        """The normed CLS token ``(B, D)`` (the reference's output)."""
        return self.forward_tokens(x, channel_ids)[:, 0]


def resize_pos_embed(pos_embed: torch.Tensor, side: int) -> torch.Tensor:
    """``(1, 1 + n * n, D)`` position embeddings resized to ``side x side`` (bicubic, antialiased; the CLS
    position kept), as torchgeo's loader does for the 518 px release."""
    old = int(round((pos_embed.shape[1] - 1) ** 0.5))
    if old == side:
        return pos_embed
    prefix, grid = pos_embed[:, :1], pos_embed[:, 1:]
    grid = grid.reshape(1, old, old, -1).permute(0, 3, 1, 2)
    grid = F.interpolate(grid, size=(side, side), mode="bicubic", antialias=True)
    return torch.cat([prefix, grid.permute(0, 2, 3, 1).reshape(1, side * side, -1)], dim=1)
