"""TerraMind v1 encoder (torch): per-modality patch embeddings and a pre-norm ViT, encoder tokens only.

Parameter names follow the official any-to-any release (``TerraMind_v1_<size>.pt``, the flat state dict
of terratorch's ``TerraMind``), of which this module holds the encoder side for raw image modalities:

* ``encoder_embeddings.<key>`` per modality (``untok_sen2l2a@224``, ``untok_sen1grd@224``,
  ``untok_sen1rtc@224``): ``proj`` (a linear map without bias of each flattened patch, pixel-major then
  channel: ``(ph, pw, c)``), ``mod_emb`` ``(1, 1, D)`` and the buffer ``pos_emb`` ``(1, N, D)`` (a fixed 2-D
  sin-cos table, stored in the release and loaded from it);
* ``encoder.N``: ``norm1``, ``attn.qkv``, ``attn.proj``, ``norm2``, ``mlp.fc1``/``mlp.fc2`` (tiny, small:
  GELU MLP with biases) or ``mlp.fc1``/``mlp.fc2``/``mlp.fc3`` (base, large: SwiGLU,
  ``fc2(silu(fc1(x)) * fc3(x))``, hidden width ``int(2 * 4 * D / 3)``, no biases);
* ``encoder_norm``.

Every LayerNorm has eps 1e-6 and no bias: the release stores a zero ``*.bias`` buffer for each, which
:meth:`~xrembed.models.terramind.TerraMind.clean_state_dict` removes (refusing one that is not zero) before
the strict load.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from torch import nn
from torch.nn import functional as F

#: LayerNorm epsilon of every TerraMind norm.
NORM_EPS = 1e-6
#: Temperature of the sin-cos position table.
SINCOS_TEMPERATURE = 10000.0


def sincos_table(side: int, dim: int) -> torch.Tensor:
    """TerraMind's fixed 2-D position table ``(1, side * side, dim)`` for a square grid of row-major patches.

    Quarters ``[sin(r w), cos(r w), sin(c w), cos(c w)]`` with ``r`` the patch row, ``c`` its column and
    ``w = 1 / 10000 ** (k / (dim / 4))`` (MoCo-v3's table).
    """
    if dim % 4:
        raise ValueError(f"the sin-cos position table needs a width divisible by 4, got {dim}")
    quarter = dim // 4
    omega = 1.0 / SINCOS_TEMPERATURE ** (torch.arange(quarter, dtype=torch.float32) / quarter)
    index = torch.arange(side * side)
    rows = torch.outer((index // side).to(torch.float32), omega)
    cols = torch.outer((index % side).to(torch.float32), omega)
    return torch.cat([rows.sin(), rows.cos(), cols.sin(), cols.cos()], dim=1).unsqueeze(0)


class ImageEmbedding(nn.Module):
    """Patch tokens of one raw image modality: ``proj`` (no bias), plus ``pos_emb`` and ``mod_emb``."""

    def __init__(self, channels: int, dim: int, patch_size: int, image_size: int) -> None:
        super().__init__()
        self.channels = channels
        self.patch_size = patch_size
        self.side = image_size // patch_size
        self.proj = nn.Linear(channels * patch_size * patch_size, dim, bias=False)
        self.mod_emb = nn.Parameter(torch.zeros(1, 1, dim))
        self.register_buffer("pos_emb", sincos_table(self.side, dim))

    def position(self, rows: int, cols: int) -> torch.Tensor:
        """``pos_emb`` for a ``rows x cols`` patch grid: as stored, or resized bicubic (as the reference does)."""
        if (rows, cols) == (self.side, self.side):
            return self.pos_emb
        dim = self.pos_emb.shape[-1]
        table = self.pos_emb.reshape(1, self.side, self.side, dim).permute(0, 3, 1, 2)
        table = F.interpolate(table, size=(rows, cols), mode="bicubic", align_corners=False)
        return table.permute(0, 2, 3, 1).reshape(1, rows * cols, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, channels, height, width = x.shape
        p = self.patch_size
        if channels != self.channels or height % p or width % p:
            raise ValueError(
                f"expected {self.channels} channels and sides divisible by {p}, got {channels} x {height} x {width}"
            )
        rows, cols = height // p, width // p
        patches = x.reshape(batch, channels, rows, p, cols, p).permute(0, 2, 4, 3, 5, 1)
        tokens = self.proj(patches.reshape(batch, rows * cols, p * p * channels))
        return tokens + self.position(rows, cols) + self.mod_emb


class Attention(nn.Module):
    """Multi-head self-attention: one ``qkv`` projection, one ``proj`` (biases per variant)."""

    def __init__(self, dim: int, num_heads: int, bias: bool) -> None:
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"TerraMind width {dim} is not divisible by {num_heads} heads")
        self.num_heads = num_heads
        self.qkv = nn.Linear(dim, 3 * dim, bias=bias)
        self.proj = nn.Linear(dim, dim, bias=bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, tokens, dim = x.shape
        qkv = self.qkv(x).reshape(batch, tokens, 3, self.num_heads, dim // self.num_heads)
        q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)
        out = F.scaled_dot_product_attention(q, k, v)
        return self.proj(out.transpose(1, 2).reshape(batch, tokens, dim))


class Mlp(nn.Module):
    """``fc2(gelu(fc1(x)))`` (exact GELU), hidden width ``4 * dim`` (tiny, small)."""

    def __init__(self, dim: int, bias: bool) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, 4 * dim, bias=bias)
        self.fc2 = nn.Linear(4 * dim, dim, bias=bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(F.gelu(self.fc1(x)))


class SwiGLU(nn.Module):
    """``fc2(silu(fc1(x)) * fc3(x))``, hidden width ``int(2 * 4 * dim / 3)`` (base, large)."""

    def __init__(self, dim: int, bias: bool) -> None:
        super().__init__()
        hidden = int(2 * (4 * dim) / 3)
        self.fc1 = nn.Linear(dim, hidden, bias=bias)
        self.fc2 = nn.Linear(hidden, dim, bias=bias)
        self.fc3 = nn.Linear(dim, hidden, bias=bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(F.silu(self.fc1(x)) * self.fc3(x))


class Block(nn.Module):
    """Pre-norm transformer block: ``x + attn(norm1(x))``, then ``x + mlp(norm2(x))``."""

    def __init__(self, dim: int, num_heads: int, *, gated_mlp: bool, bias: bool) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=NORM_EPS, bias=False)
        self.attn = Attention(dim, num_heads, bias)
        self.norm2 = nn.LayerNorm(dim, eps=NORM_EPS, bias=False)
        self.mlp = SwiGLU(dim, bias) if gated_mlp else Mlp(dim, bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class TerraMindEncoder(nn.Module):
    """The TerraMind encoder for the raw image modalities ``modalities`` (release key -> channel count).

    :meth:`tokens` encodes one or more modalities on one grid together (their tokens are concatenated, as
    in the reference) and returns the normed patch tokens ``(B, N, D)``, row-major; with several
    modalities, the mean over them of each patch's token (the reference's ``merge_method="mean"``).
    """

    def __init__(
        self,
        embed_dim: int,
        depth: int,
        num_heads: int,
        patch_size: int,
        image_size: int,
        *,
        modalities: Mapping[str, int],
        gated_mlp: bool,
        bias: bool,
    ) -> None:
        super().__init__()
        self.patch_size = patch_size
        self.encoder_embeddings = nn.ModuleDict(
            {key: ImageEmbedding(channels, embed_dim, patch_size, image_size) for key, channels in modalities.items()}
        )
        self.encoder = nn.ModuleList(
            Block(embed_dim, num_heads, gated_mlp=gated_mlp, bias=bias) for _ in range(depth)
        )
        self.encoder_norm = nn.LayerNorm(embed_dim, eps=NORM_EPS, bias=False)

    def tokens(self, x: torch.Tensor, keys: Sequence[str]) -> torch.Tensor:
        """Normed patch tokens ``(B, N, D)`` of ``x``, whose channels are those of ``keys`` in that order."""
        parts, start = [], 0
        for key in keys:
            embedding = self.encoder_embeddings[key]
            parts.append(embedding(x[:, start : start + embedding.channels]))
            start += embedding.channels
        if start != x.shape[1]:
            raise ValueError(f"modalities {list(keys)} take {start} channels, the input has {x.shape[1]}")
        h = torch.cat(parts, dim=1)
        for block in self.encoder:
            h = block(h)
        h = self.encoder_norm(h)
        return h.reshape(h.shape[0], len(keys), -1, h.shape[-1]).mean(dim=1)

    def grid(self, x: torch.Tensor, keys: Sequence[str]) -> torch.Tensor:
        """Patch tokens as a map ``(B, D, h, w)``."""
        tokens = self.tokens(x, keys)
        rows, cols = x.shape[-2] // self.patch_size, x.shape[-1] // self.patch_size
        return tokens.transpose(1, 2).reshape(x.shape[0], -1, rows, cols)

    def forward(self, x: torch.Tensor, keys: Sequence[str]) -> torch.Tensor:
        """Pooled vector ``(B, D)``: the mean of the normed patch tokens."""
        return self.tokens(x, keys).mean(dim=1)

