"""TerraFM encoder (torch): a three-stem patch embedding, a token projection and a ViT trunk.

Parameter names follow the reference ``terrafm.py`` (github.com/mbzuai-oryx/TerraFM) so the official
checkpoints (``MBZUAI/TerraFM``) load strictly:

* ``cls_token`` ``(1, 1, D)``, ``pos_embed`` ``(1, 1 + N, D)`` (learned);
* ``patch_embed.conv2d_s2_l2a`` / ``conv2d_s2_l1c`` (12 channels) and ``patch_embed.conv2d_s1``
  (2 channels), each a ``patch x patch`` convolution to ``3 * D`` channels;
* ``patch_embed.s2_l2a_embed`` / ``s2_l1c_embed`` / ``s1_embed`` ``(1, 3 * D)``, learned sensor vectors;
* ``patch_embed.projection.{proj1 (no bias), norm_input (LayerNorm, eps 1e-5), proj2, proj3}``;
* ``blocks.N.*`` (timm layout, LayerNorm eps 1e-6) and the final ``norm``.

Unlike the reference ``forward()`` (which routes every 12-channel input to the L1C stem), the stem is
chosen explicitly by the caller through ``sensor``. See :mod:`xrembed.models.terrafm` for the adapter.
"""

from __future__ import annotations

import torch
from torch import nn

from .layers import Block
from .pos_embed import pos_embed_for

#: Sensor name -> (stem attribute, sensor-vector attribute, channel count).
SENSORS: dict[str, tuple[str, str, int]] = {
    "s2_l2a": ("conv2d_s2_l2a", "s2_l2a_embed", 12),
    "s2_l1c": ("conv2d_s2_l1c", "s2_l1c_embed", 12),
    "s1": ("conv2d_s1", "s1_embed", 2),
}


class TokenProjection(nn.Module):
    """``proj1`` (no bias) -> LayerNorm -> ``proj2`` -> ``proj3`` (from ``3 * D`` to ``D``)."""

    def __init__(self, embed_dim: int, attn_dim: int) -> None:
        super().__init__()
        self.proj1 = nn.Linear(attn_dim, attn_dim, bias=False)
        self.norm_input = nn.LayerNorm(attn_dim)  # default eps 1e-5, as in the reference
        self.proj2 = nn.Linear(attn_dim, attn_dim)
        self.proj3 = nn.Linear(attn_dim, embed_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj3(self.proj2(self.norm_input(self.proj1(x))))


class SensorPatchEmbed(nn.Module):
    """One patch convolution per sensor, plus that sensor's learned vector, then a shared projection."""

    def __init__(self, embed_dim: int, patch_size: int, s2_channels: int = 12, s1_channels: int = 2) -> None:
        super().__init__()
        attn_dim = 3 * embed_dim
        self.patch_size = patch_size
        self.conv2d_s2_l2a = nn.Conv2d(s2_channels, attn_dim, kernel_size=patch_size, stride=patch_size)
        self.conv2d_s2_l1c = nn.Conv2d(s2_channels, attn_dim, kernel_size=patch_size, stride=patch_size)
        self.conv2d_s1 = nn.Conv2d(s1_channels, attn_dim, kernel_size=patch_size, stride=patch_size)
        self.projection = TokenProjection(embed_dim, attn_dim)
        self.s2_l2a_embed = nn.Parameter(torch.zeros(1, attn_dim))
        self.s2_l1c_embed = nn.Parameter(torch.zeros(1, attn_dim))
        self.s1_embed = nn.Parameter(torch.zeros(1, attn_dim))

    def forward(self, x: torch.Tensor, sensor: str) -> torch.Tensor:
        """Patch tokens ``(B, N, D)`` of ``x`` ``(B, C, H, W)`` through the stem of ``sensor``."""
        if sensor not in SENSORS:
            raise ValueError(f"unknown TerraFM sensor {sensor!r}; expected one of {sorted(SENSORS)}")
        stem_name, vector_name, channels = SENSORS[sensor]
        if x.shape[1] != channels:
            raise ValueError(f"TerraFM sensor {sensor!r} takes {channels} channels, got {x.shape[1]}")
        tokens = getattr(self, stem_name)(x).flatten(2).transpose(1, 2)
        return self.projection(tokens + getattr(self, vector_name))


class TerraFMEncoder(nn.Module):
    """TerraFM ViT: sensor patch embedding, CLS token, learned positions, pre-norm blocks, final norm.

    ``forward_tokens`` returns all tokens after the final ``norm`` (CLS first); the reference's pooled
    output is the CLS (``forward``), its ``extract_feature`` maps are the normed patch tokens (``grid``).
    """

    def __init__(
        self,
        embed_dim: int = 768,
        depth: int = 12,
        num_heads: int = 12,
        patch_size: int = 16,
        image_size: int = 224,
        mlp_ratio: float = 4.0,
    ) -> None:
        super().__init__()
        self.patch_size = patch_size
        self.grid_size = image_size // patch_size
        self.patch_embed = SensorPatchEmbed(embed_dim, patch_size)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, embed_dim))
        self.pos_embed = nn.Parameter(torch.zeros(1, self.grid_size**2 + 1, embed_dim))
        self.blocks = nn.ModuleList(Block(embed_dim, num_heads, mlp_ratio, qkv_bias=True, eps=1e-6) for _ in range(depth))
        self.norm = nn.LayerNorm(embed_dim, eps=1e-6)
        nn.init.trunc_normal_(self.pos_embed, std=0.02)
        nn.init.trunc_normal_(self.cls_token, std=0.02)

    def forward_tokens(self, x: torch.Tensor, sensor: str) -> torch.Tensor:
        """All tokens ``(B, 1 + N, D)`` after the last block and the final norm (CLS first).

        Images of another size than ``grid_size`` patches (a multiple of the patch size) use the learned
        table resampled as timm does (:func:`~xrembed.models.pos_embed.pos_embed_for`; CLS row kept).
        """
        height, width = x.shape[-2:]
        if height % self.patch_size or width % self.patch_size:
            raise ValueError(f"TerraFM here takes images of whole {self.patch_size} px patches, got {height} x {width}")
        pos = pos_embed_for(self.pos_embed, height // self.patch_size, width // self.patch_size)
        tokens = self.patch_embed(x, sensor)
        x = torch.cat([self.cls_token.expand(tokens.shape[0], -1, -1), tokens], dim=1) + pos
        for block in self.blocks:
            x = block(x)
        return self.norm(x)

    def grid(self, x: torch.Tensor, sensor: str) -> torch.Tensor:
        """Normed last-layer patch tokens as a map ``(B, D, h, w)`` (reference ``extract_feature``)."""
        tokens = self.forward_tokens(x, sensor)[:, 1:]
        return tokens.transpose(1, 2).reshape(x.shape[0], -1, x.shape[-2] // self.patch_size, x.shape[-1] // self.patch_size)

    def forward(self, x: torch.Tensor, sensor: str) -> torch.Tensor:
        """Pooled embedding ``(B, D)``: the CLS token after the final norm (reference ``forward``)."""
        return self.forward_tokens(x, sensor)[:, 0]
