"""DOFA encoder (torch): the wavelength-conditioned patch embedding and a ViT trunk.

Parameter names follow the official checkpoints (``earthflow/DOFA``) and torchgeo's ``DOFA``:
``patch_embed.weight_generator.*``, ``patch_embed.fclayer.*``, ``cls_token``, ``pos_embed``,
``blocks.N.*`` and ``fc_norm.*``. See :mod:`xrembed.models.dofa` for the adapter around it.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from .layers import Block, sincos_1d, sincos_2d
from .pos_embed import pos_embed_for


class FCResLayer(nn.Module):
    """Residual two-layer MLP applied to the wavelength encodings."""

    def __init__(self, size: int = 128) -> None:
        super().__init__()
        self.w1 = nn.Linear(size, size)
        self.w2 = nn.Linear(size, size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + F.relu(self.w2(F.relu(self.w1(x))))


class TransformerWeightGenerator(nn.Module):
    """Turns per-band wavelength encodings into conv weights and a bias (DOFA's hypernetwork)."""

    def __init__(self, input_dim: int, output_dim: int, embed_dim: int, num_heads: int = 4) -> None:
        super().__init__()
        layer = nn.TransformerEncoderLayer(
            d_model=input_dim, nhead=num_heads, activation="gelu", norm_first=False, batch_first=False, dropout=0.0
        )
        self.transformer_encoder = nn.TransformerEncoder(layer, num_layers=1, enable_nested_tensor=False)
        self.fc_weight = nn.Linear(input_dim, output_dim)
        self.fc_bias = nn.Linear(input_dim, embed_dim)
        self.weight_tokens = nn.Parameter(torch.randn(128, input_dim) * 0.02)
        self.bias_token = nn.Parameter(torch.randn(1, input_dim) * 0.02)

    def forward(self, waves: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        sequence = torch.cat([self.weight_tokens, waves, self.bias_token], dim=0)
        out = self.transformer_encoder(sequence)
        weights = self.fc_weight(out[self.weight_tokens.shape[0] : -1] + waves)
        bias = self.fc_bias(out[-1])
        return weights, bias


class WavelengthPatchEmbed(nn.Module):
    """Patch embedding whose conv kernel is generated from the bands' wavelengths.

    ``padding`` is 1 for DOFA (so each 16 px window is shifted by one pixel, as upstream) and 0 for
    DOFA-CLIP. The generated kernel depends only on the wavelengths, so it is computed once per
    wavelength list and cached (inference only).
    """

    scaler = 0.01

    def __init__(self, embed_dim: int, kernel_size: int, wv_planes: int = 128, padding: int = 1) -> None:
        super().__init__()
        self.embed_dim = embed_dim
        self.kernel_size = kernel_size
        self.wv_planes = wv_planes
        self.padding = padding
        self.weight_generator = TransformerWeightGenerator(wv_planes, kernel_size * kernel_size * embed_dim, embed_dim)
        self.fclayer = FCResLayer(wv_planes)
        self._kernel_cache: dict[tuple, tuple[torch.Tensor, torch.Tensor]] = {}

    def kernel(self, wavelengths_um: tuple[float, ...], device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        """Conv weight ``(D, C, k, k)`` and bias ``(D,)`` for bands at ``wavelengths_um`` (micrometres)."""
        key = (tuple(float(w) for w in wavelengths_um), str(device), self.training)
        cached = None if self.training else self._kernel_cache.get(key)
        if cached is not None:
            return cached
        waves = torch.tensor(wavelengths_um, dtype=torch.float32, device=device)
        encoded = self.fclayer(sincos_1d(self.wv_planes, waves * 1000))
        weight, bias = self.weight_generator(encoded)
        k = self.kernel_size
        weight = weight.view(len(wavelengths_um), k, k, self.embed_dim).permute(3, 0, 1, 2) * self.scaler
        bias = bias.view(self.embed_dim) * self.scaler
        if not self.training:
            self._kernel_cache[key] = (weight, bias)
        return weight, bias

    def forward(self, x: torch.Tensor, wavelengths_um: tuple[float, ...]) -> torch.Tensor:
        weight, bias = self.kernel(wavelengths_um, x.device)
        out = F.conv2d(x, weight.to(x.dtype), bias.to(x.dtype), stride=self.kernel_size, padding=self.padding)
        return out.flatten(2).transpose(1, 2)

    def _apply(self, fn, recurse=True):  # moving/casting the module invalidates cached kernels
        self._kernel_cache.clear()
        return super()._apply(fn, recurse)

    def train(self, mode: bool = True):
        self._kernel_cache.clear()
        return super().train(mode)


class DOFAEncoder(nn.Module):
    """DOFA ViT: wavelength patch embedding, CLS token, fixed sin-cos positions, pre-norm blocks.

    ``forward_tokens`` returns the last block's patch tokens (no final norm), which is what the
    reference's global-pool head averages; ``pool`` applies that head (``fc_norm`` of the mean).
    """

    def __init__(
        self,
        embed_dim: int = 768,
        depth: int = 12,
        num_heads: int = 12,
        patch_size: int = 16,
        image_size: int = 224,
        mlp_ratio: float = 4.0,
        conv_padding: int = 1,
    ) -> None:
        super().__init__()
        self.patch_size = patch_size
        self.grid_size = image_size // patch_size
        self.patch_embed = WavelengthPatchEmbed(embed_dim, patch_size, padding=conv_padding)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, embed_dim))
        self.pos_embed = nn.Parameter(sincos_2d(embed_dim, self.grid_size), requires_grad=False)
        self.blocks = nn.ModuleList(Block(embed_dim, num_heads, mlp_ratio, qkv_bias=True, eps=1e-6) for _ in range(depth))
        self.fc_norm = nn.LayerNorm(embed_dim, eps=1e-6)

    def forward_tokens(self, x: torch.Tensor, wavelengths_um: tuple[float, ...]) -> torch.Tensor:
        """Patch tokens ``(B, N, D)`` after the last block (CLS dropped, no final norm).

        Tiles of another size than ``grid_size`` patches use the stored table resampled as timm does
        (:func:`~xrembed.models.pos_embed.pos_embed_for`; CLS row kept).
        """
        pos = pos_embed_for(self.pos_embed, x.shape[-2] // self.patch_size, x.shape[-1] // self.patch_size)
        tokens = self.patch_embed(x, wavelengths_um) + pos[:, 1:, :]
        cls = (self.cls_token + pos[:, :1, :]).expand(tokens.shape[0], -1, -1)
        x = torch.cat([cls, tokens], dim=1)
        for block in self.blocks:
            x = block(x)
        return x[:, 1:, :]

    def pool(self, mean_tokens: torch.Tensor) -> torch.Tensor:
        """The reference's pooled head: ``fc_norm`` of the (weighted) mean patch token."""
        return self.fc_norm(mean_tokens)

    def forward(self, x: torch.Tensor, wavelengths_um: tuple[float, ...]) -> torch.Tensor:
        """Pooled embedding ``(B, D)``, as torchgeo's ``DOFA.forward_features``."""
        return self.pool(self.forward_tokens(x, wavelengths_um).mean(dim=1))
