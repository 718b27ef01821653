"""The HU window a model works in: CT values clipped to it and scaled linearly to [-1, 1] (pure numpy)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import torch


@dataclass(frozen=True)
class HUWindow:
    """HU range the model works in: values are clipped to it and scaled linearly to [-1, 1].

    -1000 (air) to 1500 keeps lung, soft tissue and cortical bone; denser metal saturates at the top.
    The model config stores the window it was trained with; this default is only for data preparation.
    """

    low: float = -1000.0
    high: float = 1500.0

    def to_unit(self, hu: np.ndarray) -> np.ndarray:
        """HU -> [-1, 1]."""
        return (np.clip(hu, self.low, self.high) - self.low) / (self.high - self.low) * 2.0 - 1.0

    def to_hu(self, unit: np.ndarray) -> np.ndarray:
        """[-1, 1] -> HU."""
        return (np.clip(unit, -1.0, 1.0) + 1.0) / 2.0 * (self.high - self.low) + self.low


def unit_to_hu(volume: torch.Tensor, window: HUWindow) -> torch.Tensor:
    """[-1, 1] -> HU, differentiable (no clipping, so gradients reach values outside the window)."""
    return (volume + 1.0) / 2.0 * (window.high - window.low) + window.low
