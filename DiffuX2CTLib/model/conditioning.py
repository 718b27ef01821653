"""Implicit conditioning: tri-plane decoupling generator + implicit neural decoder (DiffuX2CT, section 3.2).

The AP radiograph is a projection along y, so its features become the coronal (z, x) plane; the lateral one,
a projection along x, becomes the sagittal (z, y) plane; the axial (y, x) plane has no view of its own and is
fused from both views' features collapsed along z. For every voxel the decoder reads the three planes with
bilinear interpolation, adds a Fourier encoding of the voxel position and runs a point-wise MLP; it does this
on the grid of each denoiser level, and a small head turns the finest features into a direct CT estimate (the
regression baseline and the denoiser's prior).
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F
from monai.networks.nets import BasicUNet

from .config import ModelConfig


def fourier_encoding(size: int, frequencies: int, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    """Sines and cosines of voxel centre coordinates in [-1, 1]: ``(1, 6 * frequencies, size, size, size)``."""
    axis = (torch.arange(size, device=device, dtype=dtype) + 0.5) / size * 2.0 - 1.0
    z, y, x = torch.meshgrid(axis, axis, axis, indexing="ij")
    coords = torch.stack([x, y, z])  # (3, D, H, W)
    bands = [fn(coords * math.pi * 2**k) for k in range(frequencies) for fn in (torch.sin, torch.cos)]
    return torch.cat(bands)[None]


class TriplaneGenerator(nn.Module):
    """Two radiographs ``(B, 2, P, P)`` (AP, lateral; rows towards the feet) -> coronal ``(B, C, Z, X)``,
    sagittal ``(B, C, Z, Y)`` and axial ``(B, C, Y, X)`` feature planes on the detector grid, with z upwards."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        features = (channels, channels, 2 * channels, 4 * channels, 8 * channels, channels)
        self.ap_encoder = BasicUNet(
            spatial_dims=2, in_channels=1, out_channels=channels, features=features, norm=("group", {"num_groups": 4})
        )
        self.lateral_encoder = BasicUNet(
            spatial_dims=2, in_channels=1, out_channels=channels, features=features, norm=("group", {"num_groups": 4})
        )
        self.axial_fusion = nn.Sequential(
            nn.Conv2d(4 * channels, 2 * channels, 3, padding=1),
            nn.GroupNorm(4, 2 * channels),
            nn.GELU(),
            nn.Conv2d(2 * channels, channels, 3, padding=1),
        )

    def forward(self, radiographs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        coronal = self.ap_encoder(radiographs[:, 0:1]).flip(-2)  # rows ran towards the feet; planes have z up
        sagittal = self.lateral_encoder(radiographs[:, 1:2]).flip(-2)
        # Collapse each view along z (mean and max) and spread across the missing axis: (B, 2C, Y, X) each.
        ap_profile = torch.cat([coronal.mean(-2), coronal.amax(-2)], 1)  # (B, 2C, X)
        lateral_profile = torch.cat([sagittal.mean(-2), sagittal.amax(-2)], 1)  # (B, 2C, Y)
        size_y, size_x = lateral_profile.shape[-1], ap_profile.shape[-1]
        axial_input = torch.cat(
            [
                ap_profile[:, :, None, :].expand(-1, -1, size_y, -1),
                lateral_profile[:, :, :, None].expand(-1, -1, -1, size_x),
            ],
            1,
        )
        return coronal, sagittal, self.axial_fusion(axial_input)


class ImplicitDecoder(nn.Module):
    """Tri-plane features + Fourier position -> per-voxel condition features on a cube of any size.

    ``plane_extent`` is the part of the detector plane (in [-1, 1] units) that the volume's field of view
    covers at the isocentre, so plane and volume coordinates line up physically.
    """

    def __init__(self, plane_channels: int, out_channels: int, hidden: int, frequencies: int) -> None:
        super().__init__()
        self.frequencies = frequencies
        self.mlp = nn.Sequential(
            nn.Conv3d(3 * plane_channels + 6 * frequencies, hidden, 1),
            nn.GELU(),
            nn.Conv3d(hidden, hidden, 1),
            nn.GELU(),
            nn.Conv3d(hidden, out_channels, 1),
        )

    @staticmethod
    def _sample_plane(plane: torch.Tensor, size: int, extent: float) -> torch.Tensor:
        """Bilinear read of a ``(B, C, A, B)`` plane at ``size x size`` voxel centres within ``extent``."""
        axis = ((torch.arange(size, device=plane.device, dtype=plane.dtype) + 0.5) / size * 2.0 - 1.0) * extent
        rows, cols = torch.meshgrid(axis, axis, indexing="ij")
        grid = torch.stack([cols, rows], -1)[None].expand(plane.shape[0], -1, -1, -1)
        return F.grid_sample(plane, grid, mode="bilinear", padding_mode="border", align_corners=False)

    def forward(
        self, planes: tuple[torch.Tensor, torch.Tensor, torch.Tensor], size: int, plane_extent: float
    ) -> torch.Tensor:
        coronal, sagittal, axial = (self._sample_plane(p, size, plane_extent) for p in planes)
        batch = coronal.shape[0]
        volume = torch.cat(
            [
                coronal[:, :, :, None, :].expand(-1, -1, -1, size, -1),  # (B, C, Z, Y, X)
                sagittal[:, :, :, :, None].expand(-1, -1, -1, -1, size),
                axial[:, :, None, :, :].expand(-1, -1, size, -1, -1),
                fourier_encoding(size, self.frequencies, coronal.device, coronal.dtype).expand(batch, -1, -1, -1, -1),
            ],
            1,
        )
        return self.mlp(volume)


class ConditionNet(nn.Module):
    """Radiograph pair ``(B, 2, P, P)`` -> condition features at every denoiser level (finest first) and a
    direct CT estimate ``(B, 1, N, N, N)`` in [-1, 1]."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.grid_size = config.grid_size
        self.levels = len(config.unet_channels)
        # fraction of the detector plane covered by the volume's field of view, seen at the isocentre
        iso_detector_mm = config.detector_size_mm * config.source_to_isocenter_mm / config.source_to_detector_mm
        self.plane_extent = config.field_of_view_mm / iso_detector_mm
        self.triplane = TriplaneGenerator(config.plane_channels)
        self.decoders = nn.ModuleList(
            ImplicitDecoder(
                config.plane_channels, config.condition_channels, config.decoder_hidden, config.fourier_frequencies
            )
            for _ in range(self.levels)
        )
        c = config.condition_channels
        self.ct_head = nn.Sequential(
            nn.Conv3d(c, c, 3, padding=1), nn.GroupNorm(4, c), nn.GELU(), nn.Conv3d(c, 1, 3, padding=1)
        )

    def forward(self, radiographs: torch.Tensor) -> tuple[list[torch.Tensor], torch.Tensor]:
        planes = self.triplane(radiographs)
        features = [
            decoder(planes, self.grid_size // 2**level, self.plane_extent)
            for level, decoder in enumerate(self.decoders)
        ]
        return features, torch.tanh(self.ct_head(features[0]))
