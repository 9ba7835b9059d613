"""AnySat encoder (torch): per-pixel temporal projectors, a per-patch spatial transformer and a ViT with a
cross-attention read-out, with image relative position encoding (iRPE) on the keys.

Parameter names follow the official release (``models/AnySat.pth`` on ``g-astruc/AnySat``: the reference's
``AnyModule`` state dict in ``{'state_dict': ...}``), which holds a projector for *every* pre-training
modality, so all of them are built here (a strict load needs them), while xrembed runs the temporal ones:

* ``projector_<modality>`` for the time series (``s2``, ``s1-asc``, ``s1``, ``alos``, ``l7``, ``l8``,
  ``modis``): an L-TAE applied to each pixel's series, ``patch_embed.{inconv, in_norm, attention_heads.{Q,
  fc1_k}, mlp, out_norm}``, and ``pad_parameter``; for the single-date VHR images (``aerial``,
  ``aerial-flair``, ``spot``, ``naip``): ``patch_embed`` (a strided convolution) and ``mlp``. The VHR
  projectors are loaded but not run: xrembed reads one raster grid, and those sensors are not on it.
* ``spatial_encoder``: ``cls_token``, ``predictor_blocks.N`` (pre-norm blocks whose attention adds a
  contextual iRPE on the keys, ``attn.rpe_k.lookup_table_weight``) and ``predictor_norm``, run on the
  sub-patches (pixels) of each patch; its normed class token is the patch token.
* ``cls_token``, ``blocks.0 .. blocks.{depth-1}`` (timm-style ViT blocks, LayerNorm eps 1e-6), then
  ``blocks.{depth}``: the cross-attention read-out (one learned query ``attn.q_learned`` plus a 2-D sin-cos
  position per output token, keys ``attn.wk``, values ``attn.wv``, iRPE on the keys, no residual around the
  attention, then an MLP with a residual).

Position embeddings are fixed 2-D sin-cos tables (MAE layout: column then row halves): on the sub-patch
grid in metres (``res = 10`` m steps for Sentinel-2) inside the spatial encoder, on the patch grid in
steps of ``scale`` (patch size in metres / 10) for the main tokens. The iRPE buckets are the Euclidean
distance between positions (in grid steps), rounded, through iRPE's piecewise index (alpha 1.9, beta 3.8,
gamma 15.2), with one extra bucket for the class token.
"""

from __future__ import annotations

import math
from functools import lru_cache

import torch
from torch import nn

from .layers import Block, Mlp, sincos_1d

#: Heads and key width of every L-TAE (all modalities, all sizes).
LTAE_HEADS = 16
LTAE_KEY_DIM = 8
#: Temporal projectors: modality -> (input channels, in_norm, period of the date encoding, reduce_scale).
TEMPORAL_PROJECTORS: dict[str, tuple[int, bool, int, int]] = {
    "s2": (10, True, 367, 1),
    "s1-asc": (2, False, 367, 1),
    "s1": (3, False, 367, 1),
    "alos": (3, False, 367, 1),
    "l7": (6, False, 367, 1),
    "l8": (11, False, 366, 1),
    "modis": (7, False, 367, 12),
}
#: Single-date VHR projectors: modality -> (input channels, convolution patch size in pixels).
IMAGE_PROJECTORS: dict[str, tuple[int, int]] = {
    "aerial": (4, 10),
    "aerial-flair": (5, 10),
    "spot": (3, 10),
    "naip": (4, 8),
}
#: Ground resolution (m) the spatial encoder's position table assumes per temporal modality.
INPUT_RES_M: dict[str, float] = {"s2": 10, "s1-asc": 10, "s1": 10, "l8": 10, "l7": 30, "alos": 30, "modis": 250}
#: iRPE's piecewise index (ratio 1.9): exact below alpha, logarithmic up to gamma, capped at beta.
RPE_ALPHA, RPE_BETA, RPE_GAMMA = 1.9, 3.8, 15.2
#: Buckets of the Euclidean iRPE: 2 * int(beta) + 1 distances, plus one for the class token.
RPE_BUCKETS = 2 * int(RPE_BETA) + 1 + 1
#: Pixel-dates run through an L-TAE at once (bounds memory to ~200 MB per layer at D=768; pixels are
#: independent, so chunking changes nothing).
LTAE_CHUNK = 32768


def sincos_grid(embed_dim: int, side: int, step: float) -> torch.Tensor:
    """2-D sin-cos table ``(1, 1 + side**2, D)`` of a ``side x side`` grid with positions ``k * step``; row 0
    (the class token) is zero. Row-major cells; the first half encodes the column, the second the row."""
    coords = torch.arange(side, dtype=torch.float32) * float(step)
    rows, cols = torch.meshgrid(coords, coords, indexing="ij")
    emb = torch.cat([sincos_1d(embed_dim // 2, cols.reshape(-1)), sincos_1d(embed_dim // 2, rows.reshape(-1))], dim=1)
    return torch.cat([torch.zeros(1, embed_dim), emb], dim=0).unsqueeze(0)


@lru_cache(maxsize=32)
def rpe_buckets(side: int) -> torch.Tensor:
    """iRPE bucket of every token pair ``(1 + side**2, 1 + side**2)`` (long) for a ``side x side`` grid plus a
    leading class token (bucket ``RPE_BUCKETS - 1`` on its row and column)."""
    rows, cols = torch.meshgrid(torch.arange(side), torch.arange(side), indexing="ij")
    points = torch.stack([rows.reshape(-1), cols.reshape(-1)], dim=1)
    diff = points[:, None, :] - points[None, :, :]
    distance = diff.square().sum(-1).float().sqrt().round()
    far = distance > RPE_ALPHA
    # the piecewise index of iRPE (Wu et al. 2021, eq. 18) for distances beyond alpha, in float32
    log_index = (RPE_ALPHA + torch.log(distance / RPE_ALPHA) / math.log(RPE_GAMMA / RPE_ALPHA) * (RPE_BETA - RPE_ALPHA))
    index = torch.where(far, log_index.round().clip(max=RPE_BETA), distance).to(torch.long) + int(RPE_BETA)
    size = side * side + 1
    buckets = torch.full((size, size), RPE_BUCKETS - 1, dtype=torch.long)
    buckets[1:, 1:] = index
    return buckets


class KeyRPE(nn.Module):
    """Contextual iRPE on the keys, one table shared by all heads: ``bias[i, j] = q_i . W[:, bucket(i, j)]``.

    As in the reference (its pure-torch gather, the path its mask-aware bucket layout runs on and the one
    the release was trained with), the bias is computed from the *first* head's queries and added to every
    head: changing that would change what the released weights compute.
    """

    def __init__(self, head_dim: int) -> None:
        super().__init__()
        self.lookup_table_weight = nn.Parameter(torch.zeros(1, head_dim, RPE_BUCKETS))

    def forward(self, q: torch.Tensor, side: int) -> torch.Tensor:
        """Bias ``(B, 1, L, L)`` (broadcast over heads) for queries ``q`` ``(B, H, L, head_dim)`` on a ``side``
        grid plus a class token."""
        per_bucket = torch.matmul(q[:, :1], self.lookup_table_weight[0])  # (B, 1, L, buckets)
        buckets = rpe_buckets(side).to(q.device)
        return per_bucket.gather(-1, buckets.expand(q.shape[0], 1, -1, -1))


class RPESelfAttention(nn.Module):
    """Self-attention whose logits add a key iRPE of the *scaled* queries (the spatial encoder's)."""

    def __init__(self, dim: int, num_heads: int) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.scale = (dim // num_heads) ** -0.5
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        self.rpe_k = KeyRPE(dim // num_heads)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, d = x.shape
        q, k, v = self.qkv(x).reshape(b, n, 3, self.num_heads, d // self.num_heads).permute(2, 0, 3, 1, 4).unbind(0)
        q = q * self.scale
        side = math.isqrt(n - 1)
        logits = q @ k.transpose(-2, -1) + self.rpe_k(q, side)
        out = logits.softmax(dim=-1) @ v
        return self.proj(out.transpose(1, 2).reshape(b, n, d))


class RPEBlock(nn.Module):
    """Pre-norm block of the spatial encoder (torch-default LayerNorm eps 1e-5)."""

    def __init__(self, dim: int, num_heads: int, mlp_ratio: float = 4.0) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attn = RPESelfAttention(dim, num_heads)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class SpatialEncoder(nn.Module):
    """Transformer over the sub-patches of each patch; the normed class token summarises the patch."""

    def __init__(self, dim: int, depth: int, num_heads: int) -> None:
        super().__init__()
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.predictor_blocks = nn.ModuleList(RPEBlock(dim, num_heads) for _ in range(depth))
        self.predictor_norm = nn.LayerNorm(dim)

    def forward(self, subpatches: torch.Tensor, res_m: float) -> torch.Tensor:
        """Patch tokens ``(N, D)`` of sub-patch tokens ``(N, s*s, D)`` on a grid of ``res_m`` metre steps."""
        n, count, dim = subpatches.shape
        side = math.isqrt(count)
        x = torch.cat([self.cls_token.expand(n, -1, -1), subpatches], dim=1)
        x = x + sincos_grid(dim, side, res_m).to(x)
        for block in self.predictor_blocks:
            x = block(x)
        return self.predictor_norm(x)[:, 0]


class CrossRPEAttention(nn.Module):
    """Read-out attention: one learned query per output token (plus its sin-cos position) over all tokens."""

    def __init__(self, dim: int, num_heads: int) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.scale = (dim // num_heads) ** -0.5
        self.q_learned = nn.Parameter(torch.zeros(1, 1, dim))
        self.wk = nn.Linear(dim, dim)
        self.wv = nn.Linear(dim, dim)
        self.proj = nn.Linear(dim, dim)
        self.rpe_k = KeyRPE(dim // num_heads)

    def forward(self, x: torch.Tensor, modalities: int, scale: int) -> torch.Tensor:
        """``(B, 1 + P, D)`` for ``x`` = class token then ``modalities`` blocks of ``P`` patch tokens."""
        b, n, d = x.shape
        patches = (n - 1) // modalities
        side = math.isqrt(patches)
        heads, width = self.num_heads, d // self.num_heads
        q = (self.q_learned + sincos_grid(d, side, scale).to(x)).expand(b, -1, -1)
        q = q.reshape(b, patches + 1, heads, width).transpose(1, 2)
        k = self.wk(x).reshape(b, n, heads, width).transpose(1, 2)
        v = self.wv(x).reshape(b, n, heads, width).transpose(1, 2)
        bias = self.rpe_k(q, side)  # unscaled queries here
        bias = torch.cat([bias[..., :1], bias[..., 1:].repeat(1, 1, 1, modalities)], dim=-1)  # keys of each modality
        logits = (q @ k.transpose(-2, -1)) * self.scale + bias
        out = (logits.softmax(dim=-1) @ v).transpose(1, 2).reshape(b, patches + 1, d)
        return self.proj(out)


class CrossBlock(nn.Module):
    """The last block: read-out attention (no residual), then a residual MLP; LayerNorm eps 1e-6."""

    def __init__(self, dim: int, num_heads: int, mlp_ratio: float = 4.0) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        self.attn = CrossRPEAttention(dim, num_heads)
        self.norm2 = nn.LayerNorm(dim, eps=1e-6)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))

    def forward(self, x: torch.Tensor, modalities: int, scale: int) -> torch.Tensor:
        x = self.attn(self.norm1(x), modalities, scale)
        return x + self.mlp(self.norm2(x))


def _mlp_layers(widths: list[int], norm, dropout: bool) -> nn.Sequential:
    """Linear -> norm -> ReLU (-> Dropout, a no-op at inference, kept for the release's indices) per step."""
    layers: list[nn.Module] = []
    for fan_in, fan_out in zip(widths[:-1], widths[1:]):
        layers += [nn.Linear(fan_in, fan_out), norm(fan_out), nn.ReLU()]
        if dropout:
            layers.append(nn.Dropout(0.0))
    return nn.Sequential(*layers)


class TemporalKeys(nn.Module):
    """The L-TAE's attention: a learned query per head against keys computed from each date's features."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.Q = nn.Parameter(torch.zeros(LTAE_HEADS, LTAE_KEY_DIM))
        self.fc1_k = nn.Linear(dim, LTAE_HEADS * LTAE_KEY_DIM)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Per-head weighted sum over dates of ``x`` ``(N, T, D)`` (head ``h`` reads channel slice ``h``)."""
        n, t, d = x.shape
        keys = self.fc1_k(x).view(n, t, LTAE_HEADS, LTAE_KEY_DIM)
        weights = (torch.einsum("nthk,hk->nht", keys, self.Q) / math.sqrt(LTAE_KEY_DIM)).softmax(dim=-1)
        values = x.view(n, t, LTAE_HEADS, d // LTAE_HEADS)
        return torch.einsum("nht,nthc->nhc", weights, values).reshape(n, d)


class LTAE(nn.Module):
    """Lightweight temporal attention encoder (Garnot & Landrieu 2020) applied to every pixel's series."""

    def __init__(self, in_channels: int, dim: int, in_norm: bool, period: int) -> None:
        super().__init__()
        self.inconv = _mlp_layers([in_channels, dim // 8, dim // 2, dim, 2 * dim, dim], lambda c: nn.GroupNorm(4, c), True)
        self.in_norm = nn.GroupNorm(LTAE_HEADS, dim) if in_norm else nn.Identity()
        self.attention_heads = TemporalKeys(dim)
        self.mlp = _mlp_layers([dim, dim], lambda c: nn.GroupNorm(4, c), False)
        self.out_norm = nn.GroupNorm(LTAE_HEADS, dim)
        self.period = period
        self.dim = dim

    def date_encoding(self, days: torch.Tensor) -> torch.Tensor:
        """Sinusoidal encoding ``(B, T, D)`` of day numbers ``(B, T)``: one ``D / heads`` table per head."""
        width = self.dim // LTAE_HEADS
        denom = torch.pow(float(self.period), 2 * (torch.arange(width, device=days.device) // 2).float() / width)
        table = days.float()[..., None] / denom
        table = torch.where(torch.arange(width, device=days.device) % 2 == 0, torch.sin(table), torch.cos(table))
        return table.repeat(1, 1, LTAE_HEADS)

    def encode(self, series: torch.Tensor, dates: torch.Tensor) -> torch.Tensor:
        """``(N, D)`` for pixel series ``(N, T, C)`` with their date encodings ``(N, T, D)``."""
        n, t, c = series.shape
        x = self.inconv(series.reshape(n * t, c)).view(n, t, -1)
        x = self.in_norm(x.transpose(1, 2)).transpose(1, 2) + dates
        return self.out_norm(self.mlp(self.attention_heads(x)))

    def forward(self, x: torch.Tensor, days: torch.Tensor) -> torch.Tensor:
        """Feature map ``(B, D, H, W)`` of series ``x`` ``(B, T, C, H, W)`` dated ``days`` ``(B, T)``."""
        b, t, c, h, w = x.shape
        series = x.permute(0, 3, 4, 1, 2).reshape(b * h * w, t, c)
        dates = self.date_encoding(days).repeat_interleave(h * w, dim=0)
        step = max(1, LTAE_CHUNK // t)
        out = torch.cat([self.encode(series[i : i + step], dates[i : i + step]) for i in range(0, series.shape[0], step)])
        return out.view(b, h, w, -1).permute(0, 3, 1, 2)


class TemporalProjector(nn.Module):
    """A time-series modality's projector: the L-TAE, then the patches cut into sub-patch tokens."""

    def __init__(self, in_channels: int, dim: int, in_norm: bool, period: int, reduce_scale: int) -> None:
        super().__init__()
        self.patch_embed = LTAE(in_channels, dim, in_norm, period)
        self.reduce_scale = reduce_scale
        # the release's fill for masked inputs; xrembed fills invalid pixels before the network instead
        self.pad_parameter = nn.Parameter(torch.tensor(0.0), requires_grad=False)

    def forward(self, x: torch.Tensor, days: torch.Tensor, scale: int) -> torch.Tensor:
        """Sub-patch tokens ``(B * h * w, s * s, D)``, row-major patches of ``s x s`` pixels."""
        s = max(scale // self.reduce_scale, 1)
        feats = self.patch_embed(x, days)
        b, d, height, width = feats.shape
        h, w = height // s, width // s
        feats = feats[:, :, : h * s, : w * s].reshape(b, d, h, s, w, s)
        return feats.permute(0, 2, 4, 3, 5, 1).reshape(b * h * w, s * s, d)


class ImageProjector(nn.Module):
    """A single-date VHR projector (strided convolution and MLP): loaded with the release, not run here."""

    def __init__(self, in_channels: int, dim: int, patch: int) -> None:
        super().__init__()
        self.patch_embed = nn.Conv2d(in_channels, dim, kernel_size=patch, stride=patch, bias=False)
        self.mlp = _mlp_layers([dim, 2 * dim, dim], nn.LayerNorm, False)


class AnySatEncoder(nn.Module):
    """The release's ``AnyModule``: projectors for every modality, the spatial encoder and the ViT."""

    def __init__(self, dim: int, depth: int, num_heads: int) -> None:
        super().__init__()
        self.embed_dim = dim
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim))
        for name in sorted({*TEMPORAL_PROJECTORS, *IMAGE_PROJECTORS}):
            if name in TEMPORAL_PROJECTORS:
                channels, in_norm, period, reduce = TEMPORAL_PROJECTORS[name]
                projector = TemporalProjector(channels, dim, in_norm, period, reduce)
            else:
                channels, patch = IMAGE_PROJECTORS[name]
                projector = ImageProjector(channels, dim, patch)
            self.add_module(f"projector_{name}", projector)
        self.spatial_encoder = SpatialEncoder(dim, depth, num_heads)
        self.blocks = nn.ModuleList([*(Block(dim, num_heads) for _ in range(depth)), CrossBlock(dim, num_heads)])

    def projector(self, modality: str) -> TemporalProjector:
        return self.get_submodule(f"projector_{modality}")

    def forward(self, x: torch.Tensor, days: torch.Tensor, scale: int, modality: str = "s2") -> torch.Tensor:
        """Tokens ``(B, 1 + n * n, D)`` (the read-out's class token, then row-major patches) of one square
        time series ``x`` ``(B, T, C, H, W)`` with day numbers ``days`` ``(B, T)``; ``scale`` is the patch
        size in units of 10 m (the reference's ``patch_size // 10``)."""
        batch = x.shape[0]
        subpatches = self.projector(modality)(x, days, scale)
        patches = self.spatial_encoder(subpatches, INPUT_RES_M[modality]).view(batch, -1, self.embed_dim)
        side = math.isqrt(patches.shape[1])
        if side * side != patches.shape[1]:
            raise ValueError(f"AnySat needs a square patch grid, got {patches.shape[1]} patches")
        pos = sincos_grid(self.embed_dim, side, scale).to(patches)
        cls = (self.cls_token + pos[:, :1]).expand(batch, -1, -1)
        tokens = torch.cat([cls, patches + pos[:, 1:]], dim=1)
        for block in self.blocks[:-1]:
            tokens = block(tokens)
        return self.blocks[-1](tokens, 1, scale)
