"""Value mappings shared by the families: raw reflectance to [0, 1] and per-band standardisation.

Torch is imported inside the functions, so that importing a family module (``describe_model``) never
imports it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # pragma: no cover
    import torch

#: Sentinel-2 L2A / HLS digital numbers per unit reflectance.
REFLECTANCE_SCALE = 10000.0


def unit_reflectance(pixels: torch.Tensor) -> torch.Tensor:
    """Raw reflectance (0..10000) to ``clip(x / 10000, 0, 1)``; NaN stays NaN."""
    import torch

    return torch.clamp(pixels / REFLECTANCE_SCALE, 0, 1)


def standardise(pixels: torch.Tensor, mean: Sequence[float], std: Sequence[float]) -> torch.Tensor:
    """``(x - mean) / std`` per channel of ``(B, C, H, W)`` pixels, in their dtype and on their device."""
    import torch

    mean_t = torch.tensor(mean, dtype=pixels.dtype, device=pixels.device).view(1, -1, 1, 1)
    std_t = torch.tensor(std, dtype=pixels.dtype, device=pixels.device).view(1, -1, 1, 1)
    return (pixels - mean_t) / std_t
