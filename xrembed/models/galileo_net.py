"""The Galileo encoder (nasaharvest/galileo), written for xrembed with the release's parameter names.

Galileo tokenises its inputs per *channel group*: each space-time group (Sentinel-1, Sentinel-2 RGB, red
edge, NIR 10 m, NIR 20 m, SWIR, NDVI) gets its own patch embedding per time step, space-only, time-only
and static groups (SRTM, Dynamic World, ..., location) their own linear or patch projections. Every token
carries a quarter of its width each of: a learned channel-group embedding, a position-in-time sin-cos
embedding, a month embedding and a 2-D sin-cos position in space scaled by the token's ground size (the
last two zero where a group has no time or no space). Groups that are absent are masked: they make no
token at all. The tokens of one sample attend to each other in a plain pre-norm transformer (separate
``q``/``k``/``v`` projections) and leave through a final LayerNorm.

Only the groups a caller passes are built into the sequence (the reference builds all and drops the
masked ones before attention, which gives the same set of tokens in the same order). Parameter names,
shapes and the two fixed tables stored in the release (``pos_embed``, ``month_embed.weight``) are the
release's, so its ``encoder.pt`` loads strictly.
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F

#: Space-time channel groups in the release's order, with the bands (release spelling) of each.
SPACE_TIME_GROUPS: dict[str, tuple[str, ...]] = {
    "S1": ("VV", "VH"),
    "S2_RGB": ("B2", "B3", "B4"),
    "S2_Red_Edge": ("B5", "B6", "B7"),
    "S2_NIR_10m": ("B8",),
    "S2_NIR_20m": ("B8A",),
    "S2_SWIR": ("B11", "B12"),
    "NDVI": ("NDVI",),
}
#: Space-only groups (patch embeddings), with their channel counts.
SPACE_GROUPS: dict[str, int] = {"SRTM": 2, "DW": 9, "WC": 5}
#: Time-only groups (linear embeddings), with their channel counts.
TIME_GROUPS: dict[str, int] = {"ERA5": 2, "TC": 3, "VIIRS": 1}
#: Static groups (linear embeddings), with their channel counts; ``location`` is (x, y, z) on the unit sphere.
STATIC_GROUPS: dict[str, int] = {"LS": 1, "location": 3, "DW_static": 9, "WC_static": 5}
#: Ground sample distance (m) at which a token of ``patch_size`` pixels has spatial scale ``patch_size``.
BASE_GSD_M = 10.0
#: Months of the month table (0-based: January is 0).
MONTHS = 12


def sincos_1d(dim: int, positions: torch.Tensor) -> torch.Tensor:
    """``[sin, cos]`` embedding ``(M, dim)`` of ``positions``, with Galileo's frequencies.

    Galileo's frequencies are ``1 / 10000 ** (i / dim / 2)``, i.e. the exponent runs over ``[0, 1/4)``
    (MAE's run over ``[0, 1)``); the spatial embedding is computed, so this must be Galileo's own.
    """
    if dim % 2:
        raise ValueError("sin-cos embedding dim must be even")
    omega = torch.arange(dim // 2, device=positions.device) / dim / 2.0
    omega = 1.0 / 10000**omega
    out = positions.reshape(-1).to(omega.dtype)[:, None] * omega[None, :]
    return torch.cat([torch.sin(out), torch.cos(out)], dim=1)


def spatial_embedding(dim: int, side: int, scale: float, device=None) -> torch.Tensor:
    """2-D sin-cos embedding ``(side, side, dim)`` of a ``side x side`` token grid, positions times ``scale``.

    The first half encodes the column, the second the row (Galileo's order).
    """
    coords = torch.arange(side, device=device, dtype=torch.float32) * scale
    cols = coords[None, :].expand(side, side)
    rows = coords[:, None].expand(side, side)
    emb = torch.cat([sincos_1d(dim // 2, cols), sincos_1d(dim // 2, rows)], dim=1)
    return emb.reshape(side, side, dim)


def month_table(dim: int) -> torch.Tensor:
    """The fixed month embedding ``(12, dim)``: ``[sin, cos]`` of ``2 pi m / 12`` repeated over each half."""
    angles = torch.arange(MONTHS, dtype=torch.float32) * (2 * math.pi / MONTHS)
    half = dim // 2
    sin, cos = torch.sin(angles)[:, None], torch.cos(angles)[:, None]
    return torch.cat([sin.expand(MONTHS, half), cos.expand(MONTHS, half)], dim=1)


def kernel_resampler(old: int, new: int) -> torch.Tensor:
    """``(new**2, old**2)`` map of FlexiViT's kernel resizing (Galileo's ``FlexiPatchEmbed``): the pseudo-inverse
    of bicubic, antialiased resizing of ``old x old`` kernels to ``new x new``, so that a resized kernel on a
    resized patch gives (in the least-squares sense) the original kernel's response.

    Examples
    --------
    >>> kernel_resampler(8, 4).shape
    torch.Size([16, 64])
    """
    basis = torch.eye(old * old).reshape(old * old, 1, old, old)
    resized = F.interpolate(basis, size=(new, new), mode="bicubic", antialias=True)
    return torch.linalg.pinv(resized.reshape(old * old, new * new))


class PatchEmbed(nn.Module):
    """One group's patch embedding (``proj``: a ``patch x patch`` stride-``patch`` convolution).

    Smaller patches use the kernel resampled by :func:`kernel_resampler` (the release's ``patch_size=``).
    """

    def __init__(self, channels: int, dim: int, patch_size: int) -> None:
        super().__init__()
        self.patch_size = patch_size
        self.proj = nn.Conv2d(channels, dim, kernel_size=patch_size, stride=patch_size)
        self._resamplers: dict[int, torch.Tensor] = {}

    def forward(self, x: torch.Tensor, patch_size: int | None = None) -> torch.Tensor:
        """``(N, C, H, W)`` -> ``(N, H/p, W/p, D)``."""
        size = self.patch_size if patch_size is None else int(patch_size)
        if size == self.patch_size:
            return self.proj(x).permute(0, 2, 3, 1)
        if size not in self._resamplers:
            self._resamplers[size] = kernel_resampler(self.patch_size, size)
        weight = self.proj.weight
        resampler = self._resamplers[size].to(device=weight.device, dtype=weight.dtype)
        flat = weight.reshape(weight.shape[0], weight.shape[1], -1)
        kernel = torch.einsum("qk,oik->oiq", resampler, flat).reshape(*weight.shape[:2], size, size)
        return F.conv2d(x, kernel, self.proj.bias, stride=size).permute(0, 2, 3, 1)


class Attention(nn.Module):
    """Multi-head self-attention with separate ``q``, ``k``, ``v`` projections (the release's names)."""

    def __init__(self, dim: int, num_heads: int) -> None:
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"embedding dim {dim} is not divisible by {num_heads} heads")
        self.num_heads = num_heads
        self.q = nn.Linear(dim, dim)
        self.k = nn.Linear(dim, dim)
        self.v = nn.Linear(dim, dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, tokens, dim = x.shape

        def heads(t: torch.Tensor) -> torch.Tensor:
            return t.reshape(batch, tokens, self.num_heads, dim // self.num_heads).transpose(1, 2)

        out = F.scaled_dot_product_attention(heads(self.q(x)), heads(self.k(x)), heads(self.v(x)))
        return self.proj(out.transpose(1, 2).reshape(batch, tokens, dim))


class Mlp(nn.Module):
    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(F.gelu(self.fc1(x)))


class Block(nn.Module):
    """Pre-norm transformer block (LayerNorm eps 1e-5, as the release's ``nn.LayerNorm`` default)."""

    def __init__(self, dim: int, num_heads: int, mlp_ratio: float) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attn = Attention(dim, num_heads)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class GalileoEncoder(nn.Module):
    """Galileo's encoder with the release's parameters (``encoder.pt``, after stripping ``.backbone``).

    Parameters
    ----------
    embed_dim, depth, num_heads, mlp_ratio
        Width, blocks, heads and MLP ratio (release config ``embedding_size``, ``depth``, ...).
    max_sequence_length
        Rows of the position-in-time table (24 in every release).
    max_patch_size
        Kernel size of the patch embeddings (8 in every release); tokens here are always of that size.
    """

    def __init__(self, embed_dim: int, depth: int, num_heads: int, mlp_ratio: float = 4.0,
                 max_sequence_length: int = 24, max_patch_size: int = 8) -> None:
        super().__init__()
        if embed_dim % 8:
            raise ValueError("Galileo's embedding width must be a multiple of 8 (four sin-cos quarters)")
        quarter = embed_dim // 4
        self.embed_dim = embed_dim
        self.patch_size = max_patch_size
        self.max_sequence_length = max_sequence_length
        self.pos_embed = nn.Parameter(sincos_1d(quarter, torch.arange(max_sequence_length)), requires_grad=False)
        self.month_embed = nn.Embedding.from_pretrained(month_table(quarter), freeze=True)
        self.s_t_channel_embed = nn.Parameter(torch.zeros(len(SPACE_TIME_GROUPS), quarter))
        self.sp_channel_embed = nn.Parameter(torch.zeros(len(SPACE_GROUPS), quarter))
        self.t_channel_embed = nn.Parameter(torch.zeros(len(TIME_GROUPS), quarter))
        self.st_channel_embed = nn.Parameter(torch.zeros(len(STATIC_GROUPS), quarter))
        self.blocks = nn.ModuleList(Block(embed_dim, num_heads, mlp_ratio) for _ in range(depth))
        self.space_time_embed = nn.ModuleDict(
            {name: PatchEmbed(len(bands), embed_dim, max_patch_size) for name, bands in SPACE_TIME_GROUPS.items()}
        )
        self.space_embed = nn.ModuleDict(
            {name: PatchEmbed(n, embed_dim, max_patch_size) for name, n in SPACE_GROUPS.items()}
        )
        self.time_embed = nn.ModuleDict({name: nn.Linear(n, embed_dim) for name, n in TIME_GROUPS.items()})
        self.static_embed = nn.ModuleDict({name: nn.Linear(n, embed_dim) for name, n in STATIC_GROUPS.items()})
        self.norm = nn.LayerNorm(embed_dim)

    def forward(
        self,
        space_time: dict[str, torch.Tensor],
        months: torch.Tensor,
        location: torch.Tensor | None = None,
        input_resolution_m: float = BASE_GSD_M,
        patch_size: int | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Encode the given space-time groups (and the location token, if given).

        Parameters
        ----------
        space_time
            ``{group: (B, T, C_g, H, W)}`` normalised values of each present space-time group, in any
            order; groups not given are masked. ``H`` and ``W`` must be equal multiples of the patch size.
        months
            ``(B, T)`` 0-based months of the time steps.
        location
            ``(B, 3)`` unit-sphere (x, y, z) of the sample, or ``None`` to mask the location group.
        input_resolution_m
            Pixel size in metres; scales the spatial position embedding (``* res * patch / 10``).
        patch_size
            Pixels per token side, 1 to the kernel size (default); smaller ones resample the kernels.

        Returns
        -------
        tokens, static
            ``(B, T, G, h, w, D)`` normed tokens of the given groups in the release's group order, and
            ``(B, D)`` the normed location token (``None`` without a location).
        """
        names = [name for name in SPACE_TIME_GROUPS if name in space_time]
        unknown = set(space_time) - set(SPACE_TIME_GROUPS)
        if unknown or not names:
            raise ValueError(f"space-time groups must be among {list(SPACE_TIME_GROUPS)}, got {sorted(space_time)}")
        first = space_time[names[0]]
        b, t, _, height, width = first.shape
        patch = self.patch_size if patch_size is None else int(patch_size)
        if not 1 <= patch <= self.patch_size:
            raise ValueError(f"Galileo's patch size is 1 to {self.patch_size}, got {patch}")
        if height != width or height % patch:
            raise ValueError(f"Galileo needs square inputs, a multiple of {patch} px; got {height} x {width}")
        if t > self.max_sequence_length:
            raise ValueError(f"Galileo reads at most {self.max_sequence_length} time steps, got {t}")
        side = height // patch
        quarter = self.embed_dim // 4
        group_index = list(SPACE_TIME_GROUPS)

        per_group = []
        for name in names:
            x = space_time[name]
            tok = self.space_time_embed[name](x.reshape(b * t, *x.shape[2:]), patch).reshape(b, t, side, side, -1)
            channel = self.s_t_channel_embed[group_index.index(name)]
            per_group.append((tok, channel))
        gsd_ratio = float(input_resolution_m) * patch / BASE_GSD_M
        spatial = spatial_embedding(quarter, side, gsd_ratio, device=first.device).to(first.dtype)  # (h, w, q)
        time_pos = self.pos_embed[:t].to(first.dtype)  # (T, q)
        month = self.month_embed(months.long()).to(first.dtype)  # (B, T, q)
        g = len(names)
        tokens = torch.stack([tok for tok, _ in per_group], dim=4)  # (B, T, h, w, G, D)
        channels = torch.stack([c for _, c in per_group]).to(first.dtype)  # (G, q)
        encoding = torch.cat(
            [
                channels.view(1, 1, 1, 1, g, quarter).expand(b, t, side, side, g, quarter),
                time_pos.view(1, t, 1, 1, 1, quarter).expand(b, t, side, side, g, quarter),
                month.view(b, t, 1, 1, 1, quarter).expand(b, t, side, side, g, quarter),
                spatial.view(1, 1, side, side, 1, quarter).expand(b, t, side, side, g, quarter),
            ],
            dim=-1,
        )
        tokens = tokens + encoding
        # The release's sequence order: space-time tokens as (h, w, t, group), then the static tokens.
        sequence = tokens.permute(0, 2, 3, 1, 4, 5).reshape(b, side * side * t * g, self.embed_dim)
        if location is not None:
            loc = self.static_embed["location"](location.to(first.dtype))
            st_channel = self.st_channel_embed[list(STATIC_GROUPS).index("location")].to(first.dtype)
            loc = loc + torch.cat([st_channel.expand(b, quarter), loc.new_zeros(b, 3 * quarter)], dim=-1)
            sequence = torch.cat([sequence, loc[:, None]], dim=1)
        for block in self.blocks:
            sequence = block(sequence)
        sequence = self.norm(sequence)
        static = sequence[:, -1] if location is not None else None
        n = side * side * t * g
        tokens = sequence[:, :n].reshape(b, side, side, t, g, self.embed_dim).permute(0, 3, 4, 1, 2, 5)
        return tokens, static
