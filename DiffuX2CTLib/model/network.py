"""The whole DiffuX2CT network: conditioning (run once per reconstruction) and denoiser (run every step)."""

from __future__ import annotations

import torch
import torch.nn as nn

from .conditioning import ConditionNet
from .config import ModelConfig
from .denoiser import SwinDenoiser


class DiffuX2CTNet(nn.Module):
    """Holds both parts; ``condition`` does not depend on the timestep, so samplers call it once."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.config = config
        self.conditioner = ConditionNet(config)
        self.denoiser = SwinDenoiser(config)

    def condition(self, radiographs: torch.Tensor) -> tuple[list[torch.Tensor], torch.Tensor]:
        """``(B, 2, P, P)`` radiographs in [0, 1] -> (condition features per level, CT estimate ``(B, 1, N, N, N)``)."""
        return self.conditioner(radiographs)

    def denoise(
        self, noisy: torch.Tensor, timesteps: torch.Tensor, condition: tuple[list[torch.Tensor], torch.Tensor]
    ) -> torch.Tensor:
        """Predicted noise for ``noisy`` ``(B, 1, N, N, N)`` at integer ``timesteps`` ``(B,)``."""
        features, estimate = condition
        return self.denoiser(noisy, timesteps, features, estimate)

    def forward(self, mode: str, *inputs: torch.Tensor):
        """``forward("condition", radiographs)`` or ``forward("denoise", noisy, timesteps, condition)``: one entry
        point so a ``DistributedDataParallel`` wrapper synchronises gradients of either part."""
        if mode == "condition":
            return self.condition(*inputs)
        if mode == "denoise":
            return self.denoise(*inputs)
        raise ValueError(f"unknown mode '{mode}'")
