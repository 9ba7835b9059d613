"""Prithvi-EO-2.0 encoder (torch): 3-D patch embedding, fixed 3-D sin-cos positions, optional
temporal and location encoders, and a ViT trunk.

Parameter names follow terratorch's ``PrithviViT`` (the encoder half of the official checkpoints once
their ``encoder.`` prefix is removed): ``patch_embed.proj.*``, ``cls_token``, ``pos_embed`` (a
buffer), ``temporal_embed_enc.scale``, ``location_embed_enc.scale`` (TL variants only), ``blocks.N.*``
and ``norm.*``. See :mod:`xrembed.models.prithvi` for the adapter around it.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from .layers import Block


def _sincos_1d_np(embed_dim: int, positions: np.ndarray) -> np.ndarray:
    """1-D sin-cos embedding in float64 (MAE convention: ``[sin, cos]`` halves)."""
    omega = np.arange(embed_dim // 2, dtype=np.float64) / (embed_dim / 2.0)
    omega = 1.0 / 10000**omega
    out = np.outer(positions.reshape(-1).astype(np.float64), omega)
    return np.concatenate([np.sin(out), np.cos(out)], axis=1)


def sincos_3d(embed_dim: int, frames: int, height: int, width: int, cls_token: bool = True) -> torch.Tensor:
    """Fixed 3-D sin-cos position embedding ``(1, [1 +] T*h*w, D)``, tokens in (t, h, w) order.

    The channels are split 6/16 for the column (w), 6/16 for the row (h) and 4/16 for the frame (t),
    concatenated in that order; the CLS row is zero. Computed in float64, returned as float32.
    """
    if embed_dim % 16:
        raise ValueError(f"Prithvi's 3-D position embedding needs a dim divisible by 16, got {embed_dim}")
    d_w = d_h = embed_dim // 16 * 6
    d_t = embed_dim // 16 * 4
    t_idx, h_idx, w_idx = np.meshgrid(np.arange(frames), np.arange(height), np.arange(width), indexing="ij")
    emb = np.concatenate(
        [_sincos_1d_np(d_w, w_idx), _sincos_1d_np(d_h, h_idx), _sincos_1d_np(d_t, t_idx)], axis=1
    )
    if cls_token:
        emb = np.concatenate([np.zeros((1, embed_dim)), emb], axis=0)
    return torch.from_numpy(emb).float().unsqueeze(0)


def sincos_values(embed_dim: int, values: torch.Tensor) -> torch.Tensor:
    """Sin-cos embedding ``(M, D)`` of arbitrary float values (years, days, degrees), in their dtype."""
    omega = torch.arange(embed_dim // 2, dtype=values.dtype, device=values.device)
    omega = 1.0 / 10000 ** (omega / (embed_dim / 2.0))
    out = torch.einsum("m,d->md", values.reshape(-1), omega)
    return torch.cat([torch.sin(out), torch.cos(out)], dim=1)


class PatchEmbed3D(nn.Module):
    """Conv3d patchify ``(B, C, T, H, W)`` -> tokens ``(B, T'*h*w, D)`` in (t, h, w) order."""

    def __init__(self, in_chans: int, embed_dim: int, patch_size: int, tubelet: int = 1) -> None:
        super().__init__()
        kernel = (tubelet, patch_size, patch_size)
        self.proj = nn.Conv3d(in_chans, embed_dim, kernel_size=kernel, stride=kernel, bias=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(x).flatten(2).transpose(1, 2)


class CoordsEncoder(nn.Module):
    """A pair of scalars embedded with half the channels each, times a learned ``scale``.

    Used twice: the temporal encoder embeds (year, day-of-year) per frame, the location encoder
    (latitude, longitude) in degrees once per image.
    """

    def __init__(self, embed_dim: int) -> None:
        super().__init__()
        self.first_dim = embed_dim // 2
        self.second_dim = embed_dim - self.first_dim
        self.scale = nn.Parameter(torch.full((1,), 0.1))

    def forward(self, coords: torch.Tensor) -> torch.Tensor:
        """``(..., 2)`` -> ``(..., D)``."""
        lead = coords.shape[:-1]
        first = sincos_values(self.first_dim, coords[..., 0]).reshape(*lead, -1)
        second = sincos_values(self.second_dim, coords[..., 1]).reshape(*lead, -1)
        return self.scale * torch.cat([first, second], dim=-1)


class PrithviEncoder(nn.Module):
    """Prithvi-EO ViT encoder.

    ``forward_tokens`` returns the final-normed patch tokens ``(B, T, h, w, D)`` (CLS dropped).
    ``pos_embed`` is a persistent buffer sized for ``num_frames`` (as in terratorch); inputs with another
    number of frames or another grid use the same fixed sin-cos function evaluated for their shape.
    """

    def __init__(
        self,
        embed_dim: int = 768,
        depth: int = 12,
        num_heads: int = 12,
        patch_size: int = 16,
        image_size: int = 224,
        in_chans: int = 6,
        num_frames: int = 1,
        mlp_ratio: float = 4.0,
        coords_encoding: bool = False,
    ) -> None:
        super().__init__()
        self.embed_dim = embed_dim
        self.patch_size = patch_size
        self.in_chans = in_chans
        self.num_frames = num_frames
        self.grid_size = image_size // patch_size
        self.coords_encoding = coords_encoding
        self.patch_embed = PatchEmbed3D(in_chans, embed_dim, patch_size)
        if coords_encoding:
            self.temporal_embed_enc = CoordsEncoder(embed_dim)
            self.location_embed_enc = CoordsEncoder(embed_dim)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, embed_dim))
        self.register_buffer("pos_embed", sincos_3d(embed_dim, num_frames, self.grid_size, self.grid_size))
        self.blocks = nn.ModuleList(
            Block(embed_dim, num_heads, mlp_ratio, qkv_bias=True, eps=1e-5) for _ in range(depth)
        )
        self.norm = nn.LayerNorm(embed_dim, eps=1e-5)
        self._pos_cache: dict[tuple, torch.Tensor] = {}
        nn.init.normal_(self.cls_token, std=0.02)

    def position_embedding(self, frames: int, height: int, width: int, device: torch.device) -> torch.Tensor:
        if (frames, height, width) == (self.num_frames, self.grid_size, self.grid_size):
            return self.pos_embed
        key = (frames, height, width, str(device))
        if key not in self._pos_cache:
            self._pos_cache[key] = sincos_3d(self.embed_dim, frames, height, width).to(device)
        return self._pos_cache[key]

    def forward_tokens(
        self,
        x: torch.Tensor,
        temporal_coords: torch.Tensor | None = None,
        location_coords: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Normed patch tokens ``(B, T, h, w, D)`` for ``x`` ``(B, C, T, H, W)``.

        ``temporal_coords`` ``(B, T, 2)`` = (year, day of year); ``location_coords`` ``(B, 2)`` = (lat, lon)
        in degrees, both embedded in float32 (a year does not survive bf16). Either is ignored by variants
        without coordinate encoders.
        """
        batch, _, frames, height, width = x.shape
        h, w = height // self.patch_size, width // self.patch_size
        tokens = self.patch_embed(x)
        pos = self.position_embedding(frames, h, w, x.device)
        tokens = tokens + pos[:, 1:, :]
        if self.coords_encoding and temporal_coords is not None:
            per_frame = self.temporal_embed_enc(temporal_coords.float())  # (B, T, D)
            tokens = tokens + per_frame.repeat_interleave(h * w, dim=1)
        if self.coords_encoding and location_coords is not None:
            tokens = tokens + self.location_embed_enc(location_coords.float()).unsqueeze(1)
        cls = (self.cls_token + pos[:, :1, :]).expand(batch, -1, -1)
        seq = torch.cat([cls, tokens], dim=1)
        for block in self.blocks:
            seq = block(seq)
        seq = self.norm(seq)
        return seq[:, 1:, :].reshape(batch, frames, h, w, self.embed_dim)

    def _apply(self, fn, recurse=True):  # moving/casting the module invalidates cached positions
        self._pos_cache.clear()
        return super()._apply(fn, recurse)

    def forward(self, x, temporal_coords=None, location_coords=None) -> torch.Tensor:
        """Pooled embedding ``(B, D)``: mean of the normed patch tokens over (T, h, w), CLS excluded."""
        return self.forward_tokens(x, temporal_coords, location_coords).mean(dim=(1, 2, 3))
