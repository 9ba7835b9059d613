"""Copernicus-FM encoder (torch): a spectral hypernetwork patch embedding, metadata tokens and a ViT trunk.

Parameter names follow the official release (``CopernicusFM_ViT_base_varlang_e100.pth``, mirrored by
torchgeo as ``CopernicusFM_ViT_base_varlang-085350e4.pth``) and torchgeo's ``CopernicusFM``:

* ``patch_embed_spectral.{weight_generator, fclayer}.*``: DOFA's hypernetwork (a one-layer transformer
  over 128 weight tokens, the band tokens and a bias token, then ``fc_weight`` / ``fc_bias``), fed by the
  Fourier encodings of each band's central wavelength and bandwidth in nanometres, summed;
* ``patch_embed_variable.{language_proj, weight_generator, fclayer}.*``: the hypernetwork for variables
  named by a language embedding (Sentinel-5P, DEM). It is part of the release and loaded, but not run
  here: xrembed embeds spectral bands only;
* ``cls_token``, ``pos_embed`` (stored fixed 2-D sin-cos, ``1 + 14 x 14`` at 224 px);
* ``coord_fc`` / ``scale_fc`` / ``time_fc`` (Linear ``D -> D``) applied to the Fourier encodings of the
  image's (lon + 180, lat + 90), patch area in km\u00b2 and days since 1970-01-01, or to the learned
  ``coord_token`` / ``scale_token`` / ``time_token`` when that metadata is unknown; the three are added
  to every position embedding;
* ``blocks.N.*`` (timm ``Block``, pre-norm, exact GELU, LayerNorm eps 1e-6 as the authors'
  ``vit_base_patch16``) and ``fc_norm.*`` (absent from the release, left at its default init).

The patch convolution keeps the reference's ``padding=1`` (stride 16): each token sees its 16 x 16 patch
shifted one pixel up and left, the first row/column of a tile reading zeros.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn
from torch.nn import functional as F

from .dofa_net import FCResLayer, TransformerWeightGenerator
from .layers import Block
from .pos_embed import pos_embed_for

#: Width of the hypernetwork's band tokens (the reference's ``hyper_dim`` / ``wv_planes``).
HYPER_DIM = 128
#: Width of the language embeddings the variable hypernetwork projects (Llama 3.2 1B).
LANGUAGE_DIM = 2048
#: Scale applied to the generated kernel and bias (the reference's ``scaler``).
KERNEL_SCALE = 0.01

# Ranges of the Fourier expansions ``(lower, upper)``, in the units the reference encodes.
CENTRAL_WAVELENGTH_RANGE_NM = (100.0, 1e9)
BANDWIDTH_RANGE_NM = (1.0, 1e9)
COORDINATE_RANGE_DEG = (0.0001, 720.0)  # lon + 180 and lat + 90
AREA_RANGE_KM2 = (0.001, 5.1e8)
TIME_RANGE_DAYS = (1.0, 365.25)  # not range-checked upstream: dates beyond a year wrap around


class FloatLinear(nn.Linear):
    """An ``nn.Linear`` that ``precision="int8"`` leaves in float32 (dynamic quantisation picks exact
    ``nn.Linear`` layers only): the hypernetworks run on a few 1-D band tokens, a negligible share of the
    work, and quantisation error there would reach every token (as the engine keeps DOFA's patch_embed)."""


def keep_float(module: nn.Module) -> nn.Module:
    """Mark every ``nn.Linear`` under ``module`` as a :class:`FloatLinear` (same parameters and keys)."""
    for layer in module.modules():
        if type(layer) is nn.Linear:
            layer.__class__ = FloatLinear
    return module


def fourier_expansion(x: torch.Tensor, lower: float, upper: float, dim: int) -> torch.Tensor:
    """Sine/cosine features of ``x`` (``(..., n)`` -> ``(..., n, dim)``) at ``dim // 2`` wavelengths spaced
    logarithmically from ``lower`` to ``upper`` (Aurora's expansion): ``[sin(2 pi x / l), cos(2 pi x / l)]``.

    Computed in float64 and returned as float32, as the reference does; the range is checked by the adapter.
    """
    if dim % 2:
        raise ValueError(f"the Fourier expansion needs an even dimension, got {dim}")
    x = x.double()
    wavelengths = torch.logspace(math.log10(lower), math.log10(upper), dim // 2, base=10,
                                 device=x.device, dtype=torch.float64)
    phase = x.unsqueeze(-1) * (2 * math.pi / wavelengths)
    return torch.cat([torch.sin(phase), torch.cos(phase)], dim=-1).float()


class SpectralPatchEmbed(nn.Module):
    """Patch embedding whose ``k x k`` kernel per band is generated from its wavelength and bandwidth (nm).

    The kernel depends only on the band table, so it is computed once per table and cached (inference).
    """

    def __init__(self, embed_dim: int, kernel_size: int = 16, hyper_dim: int = HYPER_DIM, padding: int = 1) -> None:
        super().__init__()
        self.embed_dim = embed_dim
        self.kernel_size = kernel_size
        self.hyper_dim = hyper_dim
        self.padding = padding
        self.weight_generator = TransformerWeightGenerator(hyper_dim, kernel_size * kernel_size * embed_dim, embed_dim)
        self.fclayer = FCResLayer(hyper_dim)
        self._kernel_cache: dict[tuple, tuple[torch.Tensor, torch.Tensor]] = {}
        keep_float(self)

    def band_tokens(self, wavelengths_nm: Sequence[float], bandwidths_nm: Sequence[float], device) -> torch.Tensor:
        """The hypernetwork's input per band ``(C, hyper_dim)``: Fourier(wavelength) + Fourier(bandwidth)."""
        waves = torch.tensor(list(wavelengths_nm), dtype=torch.float32, device=device)
        widths = torch.tensor(list(bandwidths_nm), dtype=torch.float32, device=device)
        return (fourier_expansion(waves, *CENTRAL_WAVELENGTH_RANGE_NM, self.hyper_dim)
                + fourier_expansion(widths, *BANDWIDTH_RANGE_NM, self.hyper_dim))

    def kernel(self, wavelengths_nm: Sequence[float], bandwidths_nm: Sequence[float], device) -> tuple[torch.Tensor, torch.Tensor]:
        """Conv weight ``(D, C, k, k)`` and bias ``(D,)`` for the bands described by the two lists."""
        key = (tuple(map(float, wavelengths_nm)), tuple(map(float, bandwidths_nm)), str(device))
        cached = None if self.training else self._kernel_cache.get(key)
        if cached is not None:
            return cached
        weight, bias = self.weight_generator(self.fclayer(self.band_tokens(wavelengths_nm, bandwidths_nm, device)))
        k = self.kernel_size
        weight = weight.view(len(key[0]), k, k, self.embed_dim).permute(3, 0, 1, 2) * KERNEL_SCALE
        bias = bias.view(self.embed_dim) * KERNEL_SCALE
        if not self.training:
            self._kernel_cache[key] = (weight, bias)
        return weight, bias

    def forward(self, x: torch.Tensor, wavelengths_nm: Sequence[float], bandwidths_nm: Sequence[float]) -> torch.Tensor:
        """Patch tokens ``(B, N, D)`` of images ``x`` ``(B, C, H, W)``, row-major."""
        if x.shape[1] != len(wavelengths_nm) or len(wavelengths_nm) != len(bandwidths_nm):
            raise ValueError(
                f"{x.shape[1]} channels for {len(wavelengths_nm)} wavelengths and {len(bandwidths_nm)} bandwidths"
            )
        weight, bias = self.kernel(wavelengths_nm, bandwidths_nm, x.device)
        out = F.conv2d(x, weight.to(x.dtype), bias.to(x.dtype), stride=self.kernel_size, padding=self.padding)
        return out.flatten(2).transpose(1, 2)

    def _apply(self, fn, recurse=True):  # moving or casting the module invalidates cached kernels
        self._kernel_cache.clear()
        return super()._apply(fn, recurse)

    def train(self, mode: bool = True):
        self._kernel_cache.clear()
        return super().train(mode)


class VariablePatchEmbed(nn.Module):
    """The release's hypernetwork for language-named variables (``language_proj``, ``weight_generator``,
    ``fclayer``): loaded with the checkpoint, never run by xrembed (spectral input only)."""

    def __init__(self, embed_dim: int, kernel_size: int = 16, hyper_dim: int = HYPER_DIM) -> None:
        super().__init__()
        self.language_proj = nn.Linear(LANGUAGE_DIM, hyper_dim)
        self.weight_generator = TransformerWeightGenerator(hyper_dim, kernel_size * kernel_size * embed_dim, embed_dim)
        self.fclayer = FCResLayer(hyper_dim)
        keep_float(self)


class CopernicusFMEncoder(nn.Module):
    """Copernicus-FM ViT for spectral input.

    ``metadata`` is ``(lon, lat, days since 1970-01-01, patch area in km2)``, each ``None`` (or NaN) when
    unknown, the same for every image of the batch. ``forward_tokens`` returns the last block's patch
    tokens (no final norm), which the reference's global-pool head averages; ``pool`` applies that head
    (``fc_norm`` of the mean patch token), ``forward`` both (torchgeo's ``forward_features``).
    """

    def __init__(
        self,
        embed_dim: int = 768,
        depth: int = 12,
        num_heads: int = 12,
        patch_size: int = 16,
        image_size: int = 224,
        mlp_ratio: float = 4.0,
        norm_eps: float = 1e-6,
        conv_padding: int = 1,
    ) -> None:
        super().__init__()
        if embed_dim % 4:
            raise ValueError(f"Copernicus-FM's coordinate encoding needs a width divisible by 4, got {embed_dim}")
        self.embed_dim = embed_dim
        self.patch_size = patch_size
        self.grid_size = image_size // patch_size
        self.patch_embed_spectral = SpectralPatchEmbed(embed_dim, patch_size, padding=conv_padding)
        self.patch_embed_variable = VariablePatchEmbed(embed_dim, patch_size)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, embed_dim))
        # Stored in the release (fixed 2-D sin-cos there); loaded as it is, never recomputed.
        self.pos_embed = nn.Parameter(torch.zeros(1, 1 + self.grid_size**2, embed_dim), requires_grad=False)
        self.coord_fc = nn.Linear(embed_dim, embed_dim)
        self.scale_fc = nn.Linear(embed_dim, embed_dim)
        self.time_fc = nn.Linear(embed_dim, embed_dim)
        self.coord_token = nn.Parameter(torch.zeros(1, 1, embed_dim))
        self.scale_token = nn.Parameter(torch.zeros(1, 1, embed_dim))
        self.time_token = nn.Parameter(torch.zeros(1, 1, embed_dim))
        self.blocks = nn.ModuleList(
            Block(embed_dim, num_heads, mlp_ratio, qkv_bias=True, eps=norm_eps) for _ in range(depth)
        )
        self.fc_norm = nn.LayerNorm(embed_dim, eps=norm_eps)

    def metadata_embedding(self, metadata: Sequence[float | None], like: torch.Tensor) -> torch.Tensor:
        """The sum of the location, area and time embeddings ``(1, 1, D)`` added to every position.

        Values are taken as float32 (the reference's metadata tensor), each unknown one replaced by its
        learned token.
        """
        lon, lat, days, area = (_known(v) for v in metadata)
        dim, device = self.embed_dim, like.device

        def scalar(value: float) -> torch.Tensor:
            return torch.tensor([value], dtype=torch.float32, device=device)

        if lon is None or lat is None:
            coord = self.coord_token
        else:
            coord = torch.cat([
                fourier_expansion(scalar(lon) + 180, *COORDINATE_RANGE_DEG, dim // 2),
                fourier_expansion(scalar(lat) + 90, *COORDINATE_RANGE_DEG, dim // 2),
            ], dim=-1).view(1, 1, dim)
        scale = self.scale_token if area is None else fourier_expansion(scalar(area), *AREA_RANGE_KM2, dim).view(1, 1, dim)
        time = self.time_token if days is None else fourier_expansion(scalar(days), *TIME_RANGE_DAYS, dim).view(1, 1, dim)
        return self.coord_fc(coord) + self.scale_fc(scale) + self.time_fc(time)

    def forward_tokens(
        self, x: torch.Tensor, wavelengths_nm: Sequence[float], bandwidths_nm: Sequence[float],
        metadata: Sequence[float | None] = (None, None, None, None),
    ) -> torch.Tensor:
        """Patch tokens ``(B, N, D)`` after the last block (CLS dropped, no final norm)."""
        height, width = x.shape[-2:]
        if height != width or height % self.patch_size:
            raise ValueError(
                f"Copernicus-FM takes square images of whole {self.patch_size} px patches, got {tuple(x.shape[-2:])}"
            )
        tokens = self.patch_embed_spectral(x, wavelengths_nm, bandwidths_nm)
        side = height // self.patch_size
        # At another tile size the stored table is resampled (bicubic, antialiased, CLS row kept), as the
        # reference's own resize_abs_pos_embed does for any input size; at 224 px it is used as stored.
        table = pos_embed_for(self.pos_embed, side, side)
        positions = table + self.metadata_embedding(metadata, x).to(x.dtype)
        cls = (self.cls_token + positions[:, :1]).expand(x.shape[0], -1, -1)
        x = torch.cat([cls, tokens + positions[:, 1:]], dim=1)
        for block in self.blocks:
            x = block(x)
        return x[:, 1:]

    def pool(self, mean_tokens: torch.Tensor) -> torch.Tensor:
        """The reference's global-pool head: ``fc_norm`` of the (weighted) mean patch token ``(B, D)``."""
        return self.fc_norm(mean_tokens)

    def grid(self, x, wavelengths_nm, bandwidths_nm, metadata=(None, None, None, None)) -> torch.Tensor:
        """Patch tokens as a map ``(B, D, h, w)``."""
        tokens = self.forward_tokens(x, wavelengths_nm, bandwidths_nm, metadata)
        side = x.shape[-1] // self.patch_size
        return tokens.transpose(1, 2).reshape(x.shape[0], -1, side, side)

    def forward(self, x, wavelengths_nm, bandwidths_nm, metadata=(None, None, None, None)) -> torch.Tensor:
        """Pooled embedding ``(B, D)``: ``fc_norm`` of the mean patch token (torchgeo's ``forward_features``)."""
        return self.pool(self.forward_tokens(x, wavelengths_nm, bandwidths_nm, metadata).mean(dim=1))


def _known(value: float | None) -> float | None:
    """``None`` for unknown metadata (``None`` or NaN), the float otherwise."""
    if value is None:
        return None
    value = float(value)
    return None if math.isnan(value) else value
