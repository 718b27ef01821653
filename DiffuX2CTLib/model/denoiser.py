"""The denoiser: a 3D U-Net with timestep embedding whose lower levels use shifted-window self-attention.

Each level is a MONAI ``DiffusionUNetResnetBlock`` (timestep-conditioned), then, where enabled, a pair of MONAI
``SwinTransformerBlock``s (window, then shifted window) so attention stays local and fits in memory at 128^3.
The condition features of the same level are added through a 1x1x1 projection at every level, on the way down
and on the way up; the input also carries the conditioning network's CT estimate.
"""

from __future__ import annotations

import torch
import torch.nn as nn
from monai.networks.nets.diffusion_model_unet import (
    DiffusionUNetResnetBlock,
    get_timestep_embedding,
)
from monai.networks.nets.swin_unetr import SwinTransformerBlock, compute_mask

from .conditioning import condition_channels_at
from .config import ModelConfig


def _groups(channels: int) -> int:
    return min(8, channels // 4) or 1


class ShiftedWindowAttention(nn.Module):
    """Two Swin blocks (regular then shifted windows) on ``(B, C, D, H, W)`` features."""

    def __init__(self, channels: int, heads: int, window: int) -> None:
        super().__init__()
        self.window = (window,) * 3
        self.shift = (window // 2,) * 3
        self.blocks = nn.ModuleList(
            SwinTransformerBlock(channels, heads, self.window, shift, mlp_ratio=2.0)
            for shift in ((0, 0, 0), self.shift)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        tokens = x.permute(0, 2, 3, 4, 1)  # channels last, as MONAI's Swin blocks expect
        mask = compute_mask(list(tokens.shape[1:4]), self.window, self.shift, x.device)
        for block in self.blocks:
            tokens = block(tokens, mask)
        return tokens.permute(0, 4, 1, 2, 3).contiguous()


class _Level(nn.Module):
    """Resnet block (timestep) + condition injection + optional shifted-window attention."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        time_channels: int,
        condition_channels: int,
        config: ModelConfig,
        attention: bool,
    ) -> None:
        super().__init__()
        self.resnet = DiffusionUNetResnetBlock(
            3, in_channels, time_channels, out_channels, norm_num_groups=_groups(min(in_channels, out_channels))
        )
        self.condition = nn.Conv3d(condition_channels, out_channels, 1)
        self.attention = (
            ShiftedWindowAttention(out_channels, config.attention_heads, config.window_size) if attention else None
        )

    def forward(self, x: torch.Tensor, time: torch.Tensor, condition: torch.Tensor) -> torch.Tensor:
        x = self.resnet(x, time) + self.condition(condition)
        return self.attention(x) if self.attention is not None else x


class SwinDenoiser(nn.Module):
    """Noise prediction ``eps(y_t, t | condition)``: ``(B, 1, N, N, N)`` -> ``(B, 1, N, N, N)``."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        channels, attention = config.unet_channels, config.attention_levels
        c_cond = [condition_channels_at(config, level) for level in range(len(channels))]
        self.time_channels = 4 * channels[0]
        self.time_mlp = nn.Sequential(
            nn.Linear(channels[0], self.time_channels), nn.SiLU(), nn.Linear(self.time_channels, self.time_channels)
        )
        self.stem = nn.Conv3d(2 + c_cond[0], channels[0], 3, padding=1)  # y_t, CT estimate, finest condition
        self.down = nn.ModuleList()
        self.downsample = nn.ModuleList()
        previous = channels[0]
        for level, (width, attend) in enumerate(zip(channels, attention)):
            self.down.append(_Level(previous, width, self.time_channels, c_cond[level], config, attend))
            if level < len(channels) - 1:
                self.downsample.append(nn.Conv3d(width, width, 3, stride=2, padding=1))
            previous = width
        self.up = nn.ModuleList()
        self.upsample = nn.ModuleList()
        for level in reversed(range(len(channels) - 1)):
            self.upsample.append(nn.ConvTranspose3d(channels[level + 1], channels[level], 2, stride=2))
            self.up.append(
                _Level(
                    2 * channels[level], channels[level], self.time_channels, c_cond[level], config, attention[level]
                )
            )
        self.head = nn.Sequential(
            nn.GroupNorm(_groups(channels[0]), channels[0]), nn.SiLU(), nn.Conv3d(channels[0], 1, 3, padding=1)
        )
        nn.init.zeros_(self.head[-1].weight)
        nn.init.zeros_(self.head[-1].bias)

    def forward(
        self, noisy: torch.Tensor, timesteps: torch.Tensor, conditions: list[torch.Tensor], estimate: torch.Tensor
    ) -> torch.Tensor:
        time = self.time_mlp(get_timestep_embedding(timesteps, self.time_mlp[0].in_features).to(noisy.dtype))
        x = self.stem(torch.cat([noisy, estimate, conditions[0]], 1))
        skips = []
        for level, block in enumerate(self.down):
            x = block(x, time, conditions[level])
            if level < len(self.downsample):
                skips.append(x)
                x = self.downsample[level](x)
        for up, block in zip(self.upsample, self.up):
            skip = skips.pop()
            level = len(skips)
            x = block(torch.cat([up(x), skip], 1), time, conditions[level])
        return self.head(x)
