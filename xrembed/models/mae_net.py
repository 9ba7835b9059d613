"""A plain ViT encoder with timm ``VisionTransformer`` key names, shared by SatMAE and ScaleMAE.

Parameter names are those of timm's ``VisionTransformer`` (and of the MAE encoders SatMAE and Scale-MAE
derive from): ``patch_embed.proj.{weight,bias}``, ``cls_token``, ``pos_embed``, ``blocks.N.*`` and
``norm.*``. Two ways to position the tokens:

* ``pos_embed`` (SatMAE, any MAE/timm ViT): the stored, fixed 2-D sin-cos table, CLS row included;
* ``res`` (ScaleMAE): a GSD-scaled 2-D sin-cos table recomputed at every forward pass, the grid
  coordinates ``0, 1, ..., n-1`` multiplied by ``res`` and zeros for CLS. The stored ``pos_embed`` is then
  unused (it is kept so that checkpoints load strictly).

:meth:`MAEEncoder.forward_features` returns every token after the final ``norm``, in spatial (row-major)
order, CLS first; it never shuffles tokens (the MAE pre-training encoder does, even at mask ratio 0).
"""

from __future__ import annotations

import torch
from torch import nn

from .layers import Block, sincos_1d, sincos_2d
from .pos_embed import pos_embed_for


class PatchEmbed(nn.Module):
    """Non-overlapping ``patch_size`` convolution, flattened to ``(B, N, D)`` (timm ``PatchEmbed``)."""

    def __init__(self, in_chans: int, embed_dim: int, patch_size: int) -> None:
        super().__init__()
        self.patch_size = patch_size
        self.proj = nn.Conv2d(in_chans, embed_dim, kernel_size=patch_size, stride=patch_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(x).flatten(2).transpose(1, 2)


def gsd_sincos_2d(embed_dim: int, grid_size: int, res: float, *, device=None, dtype=torch.float32) -> torch.Tensor:
    """Scale-MAE position embedding ``(1, 1 + grid_size**2, embed_dim)``: MAE 2-D sin-cos of ``k * res``.

    The first half of the channels encodes the column (x) coordinate, the second half the row (y), as in
    MAE's ``get_2d_sincos_pos_embed``; the CLS row is zeros. Computed in ``dtype`` (float32 by default),
    like the reference, which computes it in the input's dtype.
    """
    coords = torch.arange(grid_size, dtype=dtype, device=device) * torch.tensor(res, dtype=dtype, device=device)
    rows, cols = torch.meshgrid(coords, coords, indexing="ij")
    emb = torch.cat(
        [sincos_1d(embed_dim // 2, cols.reshape(-1)).to(dtype), sincos_1d(embed_dim // 2, rows.reshape(-1)).to(dtype)],
        dim=1,
    )
    emb = torch.cat([torch.zeros(1, embed_dim, dtype=dtype, device=device), emb], dim=0)
    return emb.unsqueeze(0)


class MAEEncoder(nn.Module):
    """ViT encoder: patch conv, CLS token, 2-D sin-cos positions, pre-norm blocks, final LayerNorm."""

    def __init__(
        self,
        embed_dim: int = 1024,
        depth: int = 24,
        num_heads: int = 16,
        patch_size: int = 16,
        image_size: int = 224,
        in_chans: int = 3,
        mlp_ratio: float = 4.0,
        eps: float = 1e-6,
    ) -> None:
        super().__init__()
        if image_size % patch_size:
            raise ValueError(f"image size {image_size} is not a multiple of the patch size {patch_size}")
        self.embed_dim = embed_dim
        self.patch_size = patch_size
        self.grid_size = image_size // patch_size
        self.patch_embed = PatchEmbed(in_chans, embed_dim, patch_size)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, embed_dim))
        self.pos_embed = nn.Parameter(sincos_2d(embed_dim, self.grid_size), requires_grad=False)
        self.blocks = nn.ModuleList(Block(embed_dim, num_heads, mlp_ratio, qkv_bias=True, eps=eps) for _ in range(depth))
        self.norm = nn.LayerNorm(embed_dim, eps=eps)
        with torch.no_grad():  # MAE init for the CLS token (weights are normally loaded over it)
            nn.init.normal_(self.cls_token, std=0.02)

    def position_embedding(self, x: torch.Tensor, res: float | None = None, side: int | None = None) -> torch.Tensor:
        """The table added to ``[CLS, patches]`` of a ``side x side`` patch grid (default ``grid_size``):
        stored (``res=None``; resampled as timm does at another side) or GSD-scaled (``res``; the sin-cos
        function evaluated on the grid, as torchgeo's ScaleMAE does at any ``img_size``)."""
        side = self.grid_size if side is None else side
        if res is None:
            return pos_embed_for(self.pos_embed, side, side).to(x.dtype)
        return gsd_sincos_2d(self.embed_dim, side, float(res), device=x.device, dtype=torch.float32).to(x.dtype)

    def forward_features(self, x: torch.Tensor, res: float | None = None) -> torch.Tensor:
        """All tokens ``(B, 1 + N, D)`` after the final norm: CLS first, then patches row by row."""
        height, width = x.shape[-2:]
        if height != width or height % self.patch_size:
            raise ValueError(
                f"input of {tuple(x.shape[-2:])} px: the model takes square images of whole {self.patch_size} px "
                f"patches ({self.grid_size * self.patch_size} px at its pretraining size)"
            )
        tokens = self.patch_embed(x)
        x = torch.cat([self.cls_token.expand(tokens.shape[0], -1, -1).to(tokens.dtype), tokens], dim=1)
        x = x + self.position_embedding(x, res, height // self.patch_size)
        for block in self.blocks:
            x = block(x)
        return self.norm(x)

    def forward_grid(self, x: torch.Tensor, res: float | None = None) -> torch.Tensor:
        """Normed patch tokens as a map ``(B, D, n, n)`` in spatial order."""
        tokens = self.forward_features(x, res)[:, 1:, :]
        side = x.shape[-1] // self.patch_size
        return tokens.transpose(1, 2).reshape(x.shape[0], -1, side, side)

    def forward(self, x: torch.Tensor, res: float | None = None) -> torch.Tensor:
        """Pooled embedding ``(B, D)``: the normed CLS token."""
        return self.forward_features(x, res)[:, 0]
