"""The Clay v1.5 encoder (torch): a ViT with a wavelength-driven patch embedding and metadata encodings.

Parameter names follow the release (``clay-v1.5.ckpt``: ``model.encoder.*``, which is also terratorch's
``clay_v15.model.Encoder``):

* ``cls_token`` ``(1, 1, D)``;
* ``patch_embedding`` (DOFA-style dynamic embedding): ``fclayer.l1`` / ``l2`` (a residual two-layer GELU
  block on the 128-wide sin/cos code of each wavelength), ``weight_generator.encoder.layers.0`` (one
  post-norm transformer layer of width 128, 4 heads, feed-forward 2048, exact GELU, torch's
  ``TransformerEncoderLayer`` names ``self_attn``, ``linear1``, ``linear2``, ``norm1``, ``norm2``),
  ``weight_generator.weight_tokens`` ``(128, 128)``, ``weight_generator.bias_token`` ``(1, 128)``,
  ``weight_generator.fc_weight`` (to ``P * P * D`` kernel values per channel) and ``weight_generator.fc_bias``
  (to the ``D`` biases);
* ``transformer.layers.N.0`` (pre-norm attention: ``norm``, ``to_qkv`` and ``to_out`` without bias, heads of
  ``dim_head`` channels), ``transformer.layers.N.1.net.{0: LayerNorm, 1: Linear, 3: Linear}`` (exact GELU
  between), then ``transformer.norm``.

Tokens get a fixed encoding: the first ``D - 8`` channels a 2-D sin/cos grid encoding whose frequencies are
scaled by the ground sample distance (metres), the last 8 the metadata
``(sin week, cos week, sin hour, cos hour, sin lat, cos lat, sin lon, cos lon)``. The class token is
prepended after the encodings. The kernel generator's output is scaled by 0.02, as in the release.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

#: Width of the wavelength code and of the kernel generator's transformer.
WAVE_DIM = 128
#: Learned tokens from which the kernel generator reads out (one per ``WAVE_DIM`` channel in the release).
LATENT_TOKENS = 128
#: Heads and feed-forward width of the kernel generator's transformer layer (torch's default width).
WAVE_HEADS = 4
WAVE_FFN = 2048
#: Metadata channels at the end of each token's encoding: time (4) then lat/lon (4).
METADATA_DIM = 8
#: Factor applied to the generated kernels and (not) to the bias, as the release does.
KERNEL_SCALE = 0.02
TEMPERATURE = 10000.0


def wavelength_code(waves_um: torch.Tensor, dim: int = WAVE_DIM) -> torch.Tensor:
    """``(C, dim)``: ``sin`` then ``cos`` of each wavelength (micrometres) times ``10000 ** (-k / (dim/2 - 1))``."""
    half = dim // 2
    exponent = torch.arange(half, dtype=torch.float32, device=waves_um.device) / (half - 1)
    angles = waves_um.to(torch.float32)[:, None] * (1.0 / TEMPERATURE**exponent)[None, :]
    return torch.cat([angles.sin(), angles.cos()], dim=1)


def grid_code(rows: int, cols: int, dim: int, gsd_m: torch.Tensor) -> torch.Tensor:
    """``(rows * cols, dim)`` row-major: ``sin, cos`` of the column, then of the row, times each frequency.

    Frequencies are ``gsd * 10000 ** (-2 k / (dim (dim/4 - 1)))`` for ``k < dim / 4``: the release's
    GSD-scaled variant of the 2-D sin/cos encoding (its exponent divides by ``dim`` twice; kept as is).
    """
    quarter = dim // 4
    if dim % 4:
        raise ValueError(f"Clay's position encoding needs a width divisible by 4, got {dim}")
    k = torch.arange(quarter, dtype=torch.float32) / (quarter - 1)
    # the order of the release's float32 operations: angles reach gsd * cols (thousands of radians)
    freq = 1.0 / TEMPERATURE ** (2 * k / dim) * gsd_m.to(torch.float32).cpu()
    row, col = torch.meshgrid(torch.arange(rows), torch.arange(cols), indexing="ij")
    col = col.reshape(-1, 1).to(torch.float32) * freq[None, :]
    row = row.reshape(-1, 1).to(torch.float32) * freq[None, :]
    return torch.cat([col.sin(), col.cos(), row.sin(), row.cos()], dim=1)


class ResidualGELU(nn.Module):
    """``x + gelu(l2(gelu(l1(x))))`` on the wavelength codes (the release's ``fclayer``)."""

    def __init__(self, width: int) -> None:
        super().__init__()
        self.l1 = nn.Linear(width, width)
        self.l2 = nn.Linear(width, width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + F.gelu(self.l2(F.gelu(self.l1(x))))


class PostNormLayer(nn.Module):
    """One post-norm transformer layer over an unbatched sequence ``(L, width)`` (torch's parameter names)."""

    def __init__(self, width: int = WAVE_DIM, heads: int = WAVE_HEADS, hidden: int = WAVE_FFN) -> None:
        super().__init__()
        self.self_attn = nn.MultiheadAttention(width, heads, batch_first=True)
        self.linear1 = nn.Linear(width, hidden)
        self.linear2 = nn.Linear(hidden, width)
        self.norm1 = nn.LayerNorm(width)
        self.norm2 = nn.LayerNorm(width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.norm1(x + self.self_attn(x, x, x, need_weights=False)[0])
        return self.norm2(x + self.linear2(F.gelu(self.linear1(x))))


class LayerStack(nn.Module):
    """``layers.N`` (the ``nn.TransformerEncoder`` layout, no final norm)."""

    def __init__(self, depth: int = 1) -> None:
        super().__init__()
        self.layers = nn.ModuleList(PostNormLayer() for _ in range(depth))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for layer in self.layers:
            x = layer(x)
        return x


class KernelGenerator(nn.Module):
    """Conv kernels ``(C, P * P * D)`` and biases ``(D,)`` from the channels' wavelength features ``(C, 128)``."""

    def __init__(self, out_values: int, embed_dim: int) -> None:
        super().__init__()
        self.encoder = LayerStack()
        self.fc_weight = nn.Linear(WAVE_DIM, out_values)
        self.fc_bias = nn.Linear(WAVE_DIM, embed_dim)
        self.weight_tokens = nn.Parameter(torch.zeros(LATENT_TOKENS, WAVE_DIM))
        self.bias_token = nn.Parameter(torch.zeros(1, WAVE_DIM))

    def forward(self, features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        sequence = torch.cat([self.weight_tokens, features, self.bias_token], dim=0)
        encoded = self.encoder(sequence)
        channels = slice(LATENT_TOKENS, LATENT_TOKENS + features.shape[0])
        return self.fc_weight(encoded[channels] + features), self.fc_bias(encoded[-1])


class WavelengthPatchEmbed(nn.Module):
    """Patchify ``(B, C, H, W)`` with a ``P x P`` stride-``P`` convolution generated from the C wavelengths."""

    def __init__(self, patch_size: int, embed_dim: int) -> None:
        super().__init__()
        self.patch_size = patch_size
        self.embed_dim = embed_dim
        self.weight_generator = KernelGenerator(patch_size * patch_size * embed_dim, embed_dim)
        self.fclayer = ResidualGELU(WAVE_DIM)

    def forward(self, x: torch.Tensor, waves_um: torch.Tensor) -> torch.Tensor:
        """Patch tokens ``(B, D, H / P, W / P)``."""
        features = self.fclayer(wavelength_code(waves_um.to(x.device)))
        kernels, bias = self.weight_generator(features)
        p, channels = self.patch_size, features.shape[0]
        # each channel's row holds (D, P, P) kernel values, D-major
        weight = kernels.reshape(channels, self.embed_dim, p, p).transpose(0, 1)
        return F.conv2d(x, weight * KERNEL_SCALE, bias, stride=p)


class Attention(nn.Module):
    """Pre-norm multi-head self-attention, ``to_qkv`` and ``to_out`` without bias."""

    def __init__(self, dim: int, heads: int, dim_head: int) -> None:
        super().__init__()
        self.heads = heads
        self.norm = nn.LayerNorm(dim)
        self.to_qkv = nn.Linear(dim, 3 * heads * dim_head, bias=False)
        self.to_out = nn.Linear(heads * dim_head, dim, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, tokens, _ = x.shape
        q, k, v = (
            t.reshape(batch, tokens, self.heads, -1).transpose(1, 2) for t in self.to_qkv(self.norm(x)).chunk(3, dim=-1)
        )
        out = F.scaled_dot_product_attention(q, k, v)
        return self.to_out(out.transpose(1, 2).reshape(batch, tokens, -1))


class FeedForward(nn.Module):
    """``net``: LayerNorm, Linear, exact GELU, Linear."""

    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.LayerNorm(dim), nn.Linear(dim, hidden), nn.GELU(), nn.Linear(hidden, dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class Transformer(nn.Module):
    """``layers.N.{0: Attention, 1: FeedForward}`` with residuals, then ``norm``."""

    def __init__(self, dim: int, depth: int, heads: int, dim_head: int, hidden: int) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(dim)
        self.layers = nn.ModuleList(
            nn.ModuleList([Attention(dim, heads, dim_head), FeedForward(dim, hidden)]) for _ in range(depth)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for attention, ffn in self.layers:
            x = attention(x) + x
            x = ffn(x) + x
        return self.norm(x)


class ClayEncoder(nn.Module):
    """Clay v1.5's encoder without masking: ``(B, C, H, W)`` images to the class token and patch grid."""

    def __init__(self, dim: int, depth: int, heads: int, dim_head: int, mlp_ratio: float, patch_size: int) -> None:
        super().__init__()
        self.dim = dim
        self.patch_size = patch_size
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.patch_embedding = WavelengthPatchEmbed(patch_size, dim)
        self.transformer = Transformer(dim, depth, heads, dim_head, int(dim * mlp_ratio))

    def tokens(self, x: torch.Tensor, waves_um: torch.Tensor, metadata: torch.Tensor, gsd_m: torch.Tensor):
        """Encoded tokens ``(B, 1 + h * w, D)`` (class token first) and the grid shape ``(h, w)``.

        ``metadata`` is ``(B, 8)``: week and hour, then latitude and longitude, each as (sin, cos).
        """
        patches = self.patch_embedding(x, waves_um)
        batch, dim, rows, cols = patches.shape
        patches = patches.flatten(2).transpose(1, 2)
        position = grid_code(rows, cols, dim - METADATA_DIM, gsd_m).to(patches)
        encoding = torch.cat(
            [position.expand(batch, -1, -1), metadata.to(patches)[:, None, :].expand(-1, rows * cols, -1)], dim=-1
        )
        sequence = torch.cat([self.cls_token.expand(batch, -1, -1), patches + encoding], dim=1)
        return self.transformer(sequence), (rows, cols)

    def grid(self, x, waves_um, metadata, gsd_m) -> torch.Tensor:
        """Patch tokens ``(B, D, h, w)``."""
        out, (rows, cols) = self.tokens(x, waves_um, metadata, gsd_m)
        return out[:, 1:].transpose(1, 2).reshape(out.shape[0], self.dim, rows, cols)

    def forward(self, x, waves_um, metadata, gsd_m) -> torch.Tensor:
        """The class token ``(B, D)``."""
        return self.tokens(x, waves_um, metadata, gsd_m)[0][:, 0]
