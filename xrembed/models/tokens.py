"""Token layouts shared by the families."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:  # pragma: no cover
    import torch


def tokens_to_map(tokens: torch.Tensor, side: int) -> torch.Tensor:
    """Patch tokens ``(B, side * side, D)`` in row-major order to a map ``(B, D, side, side)``."""
    return tokens.transpose(1, 2).reshape(tokens.shape[0], -1, side, side)
