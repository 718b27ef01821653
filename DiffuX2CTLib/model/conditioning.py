"""Implicit conditioning: tri-plane decoupling generator + implicit neural decoder (DiffuX2CT, section 3.2).

The AP radiograph is a projection along y, so its features become the coronal (z, x) plane; the lateral one,
a projection along x, becomes the sagittal (z, y) plane; the axial (y, x) plane has no view of its own and is
fused from both views' features collapsed along z. For every voxel the decoder reads the three planes with
bilinear interpolation, adds a Fourier encoding of the voxel position and runs a point-wise MLP; it does this
on the grid of each denoiser level, and a small head turns the finest features into a direct CT estimate (the
regression baseline and the denoiser's prior).

The radiographs are cone-beam projections: a point nearer the source casts its shadow further from the detector's
centre (at 1 m from the source, a point 160 mm in front of the isocentre is magnified 19 % more than one at the
isocentre). With ``perspective_planes`` the decoder reads each plane where the voxel's own ray meets the detector,
so an off-centre rib or the body's edge reads the pixels it cast; without it (models trained before) it reads
every depth at the isocentre's scale, parallel-beam style.
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F
from monai.networks.nets import BasicUNet

from .config import ModelConfig


def cell_centres(size: int, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    """Centres of ``size`` equal cells spanning [-1, 1] (grid_sample's ``align_corners=False`` convention)."""
    return (torch.arange(size, device=device, dtype=dtype) + 0.5) / size * 2.0 - 1.0


def fourier_encoding(size: int, frequencies: int, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    """Sines and cosines of voxel centre coordinates in [-1, 1]: ``(1, 6 * frequencies, size, size, size)``."""
    axis = cell_centres(size, device, dtype)
    z, y, x = torch.meshgrid(axis, axis, axis, indexing="ij")
    coords = torch.stack([x, y, z])  # (3, D, H, W)
    bands = [fn(coords * math.pi * 2**k) for k in range(frequencies) for fn in (torch.sin, torch.cos)]
    return torch.cat(bands)[None]


def perspective_scale(depth: torch.Tensor, depth_ratio: float) -> torch.Tensor:
    """Detector-plane scale of points at ``depth`` (in [-1, 1] units of half an extent, positive towards the
    detector) relative to the isocentre's: ``SOD / (SOD + depth_mm)``, with ``depth_ratio`` = half extent / SOD."""
    return 1.0 / (1.0 + depth * depth_ratio)


def _read_profile(profile: torch.Tensor, columns: torch.Tensor) -> torch.Tensor:
    """Linear read of a ``(B, C, L)`` profile at ``columns`` ``(A, B)`` in [-1, 1] units: ``(B, C, A, B)``."""
    grid = torch.stack([columns, torch.zeros_like(columns)], -1)[None].expand(profile.shape[0], -1, -1, -1)
    return F.grid_sample(profile[:, :, None], grid, mode="bilinear", padding_mode="border", align_corners=False)


def read_along_rays(
    coronal: torch.Tensor, sagittal: torch.Tensor, size: int, extent: float, depth_ratio: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """Coronal and sagittal planes ``(B, C, Z, A)`` (z up) read at every voxel of a ``size``^3 cube where the
    voxel's AP and lateral rays meet the detector: two ``(B, C, Z, Y, X)``. ``extent`` is the part of the plane the
    cube covers at the isocentre, ``depth_ratio`` half the cube / source-to-isocentre distance."""
    axis = cell_centres(size, coronal.device, coronal.dtype)
    z, y, x = torch.meshgrid(axis, axis, axis, indexing="ij")
    read = []
    for plane, across, depth in ((coronal, x, y), (sagittal, y, x)):  # AP rays run along +y, lateral along +x
        scale = extent * perspective_scale(depth, depth_ratio)
        grid = torch.stack([across * scale, z * scale], -1).reshape(1, size, size * size, 2)
        values = F.grid_sample(
            plane, grid.expand(plane.shape[0], -1, -1, -1), mode="bilinear", padding_mode="border", align_corners=False
        )
        read.append(values.reshape(*values.shape[:2], size, size, size))
    return read[0], read[1]


class TriplaneGenerator(nn.Module):
    """Two radiographs ``(B, 2, P, P)`` (AP, lateral; rows towards the feet) -> coronal ``(B, C, Z, X)``,
    sagittal ``(B, C, Z, Y)`` and axial ``(B, C, Y, X)`` feature planes on the detector grid, with z upwards.

    ``depth_ratio`` (half the detector's width at the isocentre / source-to-isocentre distance) places each axial
    position's view profiles where its rays cross the detectors; None spreads them parallel-beam style."""

    def __init__(self, channels: int, depth_ratio: float | None = None) -> None:
        super().__init__()
        self.depth_ratio = depth_ratio
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
        if self.depth_ratio is None:
            size_y, size_x = lateral_profile.shape[-1], ap_profile.shape[-1]
            spread = (
                ap_profile[:, :, None, :].expand(-1, -1, size_y, -1),
                lateral_profile[:, :, :, None].expand(-1, -1, -1, size_x),
            )
        else:
            spread = self._perspective_spread(ap_profile, lateral_profile)
        return coronal, sagittal, self.axial_fusion(torch.cat(spread, 1))

    def _perspective_spread(
        self, ap_profile: torch.Tensor, lateral_profile: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Each axial position (y, x) reads the AP profile where its AP ray lands (x scaled by its depth y) and
        the lateral profile where its lateral ray lands (y scaled by its depth x)."""
        size = ap_profile.shape[-1]
        axis = cell_centres(size, ap_profile.device, ap_profile.dtype)
        y, x = torch.meshgrid(axis, axis, indexing="ij")
        return (
            _read_profile(ap_profile, x * perspective_scale(y, self.depth_ratio)),
            _read_profile(lateral_profile, y * perspective_scale(x, self.depth_ratio)),
        )


class ImplicitDecoder(nn.Module):
    """Tri-plane features + Fourier position -> per-voxel condition features on a cube of any size.

    ``plane_extent`` is the part of the detector plane (in [-1, 1] units) that the volume's field of view
    covers at the isocentre, so plane and volume coordinates line up physically. ``depth_ratio`` (half the field
    of view / source-to-isocentre distance) reads the coronal and sagittal planes where each voxel's ray meets the
    detector; None reads every depth at the isocentre's scale.
    """

    def __init__(
        self, plane_channels: int, out_channels: int, hidden: int, frequencies: int, depth_ratio: float | None = None
    ) -> None:
        super().__init__()
        self.frequencies = frequencies
        self.depth_ratio = depth_ratio
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
        axis = cell_centres(size, plane.device, plane.dtype) * extent
        rows, cols = torch.meshgrid(axis, axis, indexing="ij")
        grid = torch.stack([cols, rows], -1)[None].expand(plane.shape[0], -1, -1, -1)
        return F.grid_sample(plane, grid, mode="bilinear", padding_mode="border", align_corners=False)

    def read_view_planes(
        self, coronal: torch.Tensor, sagittal: torch.Tensor, size: int, extent: float
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The coronal and sagittal planes read at every voxel of a ``size``^3 cube: two ``(B, C, Z, Y, X)``."""
        if self.depth_ratio is None:
            return (
                self._sample_plane(coronal, size, extent)[:, :, :, None, :].expand(-1, -1, -1, size, -1),
                self._sample_plane(sagittal, size, extent)[:, :, :, :, None].expand(-1, -1, -1, -1, size),
            )
        return read_along_rays(coronal, sagittal, size, extent, self.depth_ratio)

    def forward(
        self, planes: tuple[torch.Tensor, torch.Tensor, torch.Tensor], size: int, plane_extent: float
    ) -> torch.Tensor:
        coronal, sagittal = self.read_view_planes(planes[0], planes[1], size, plane_extent)
        axial = self._sample_plane(planes[2], size, plane_extent)
        batch = coronal.shape[0]
        volume = torch.cat(
            [
                coronal,  # (B, C, Z, Y, X)
                sagittal,
                axial[:, :, None, :, :].expand(-1, -1, size, -1, -1),
                fourier_encoding(size, self.frequencies, coronal.device, coronal.dtype).expand(batch, -1, -1, -1, -1),
            ],
            1,
        )
        return self.mlp(volume)


BACKPROJECTED_CHANNELS = 2
"""Channels a ``backprojection`` model adds to its finest condition features: the AP and the lateral radiograph."""


def condition_channels_at(config: ModelConfig, level: int) -> int:
    """Channels of the condition features at denoiser ``level`` (0 = finest)."""
    extra = BACKPROJECTED_CHANNELS if config.backprojection and level == 0 else 0
    return config.condition_channels + extra


class ConditionNet(nn.Module):
    """Radiograph pair ``(B, 2, P, P)`` -> condition features at every denoiser level (finest first) and a
    direct CT estimate ``(B, 1, N, N, N)`` in [-1, 1].

    With ``backprojection`` the finest features also carry both radiographs back-projected: every voxel reads the
    pixel its own AP and lateral rays reach, so the networks after it see the views' full detail (a vertebra's
    edge, a rib) at the voxels it can come from, not only what the 16-channel planes kept of it."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.grid_size = config.grid_size
        self.levels = len(config.unet_channels)
        # fraction of the detector plane covered by the volume's field of view, seen at the isocentre
        iso_detector_mm = config.detector_size_mm * config.source_to_isocenter_mm / config.source_to_detector_mm
        self.plane_extent = config.field_of_view_mm / iso_detector_mm
        self.half_volume = config.field_of_view_mm / 2.0 / config.source_to_isocenter_mm
        self.backprojection = config.backprojection
        perspective = config.perspective_planes
        half_detector = iso_detector_mm / 2.0 / config.source_to_isocenter_mm if perspective else None
        self.triplane = TriplaneGenerator(config.plane_channels, half_detector)
        self.decoders = nn.ModuleList(
            ImplicitDecoder(
                config.plane_channels,
                config.condition_channels,
                config.decoder_hidden,
                config.fourier_frequencies,
                self.half_volume if perspective else None,
            )
            for _ in range(self.levels)
        )
        c, c_fine = config.condition_channels, condition_channels_at(config, 0)
        self.ct_head = nn.Sequential(
            nn.Conv3d(c_fine, c, 3, padding=1), nn.GroupNorm(4, c), nn.GELU(), nn.Conv3d(c, 1, 3, padding=1)
        )

    def backprojected(self, radiographs: torch.Tensor) -> torch.Tensor:
        """The two radiographs read along every voxel's rays, scaled to [-1, 1]: ``(B, 2, N, N, N)``."""
        views = radiographs.flip(-2) * 2.0 - 1.0  # rows ran towards the feet; planes have z up
        ap, lateral = read_along_rays(views[:, 0:1], views[:, 1:2], self.grid_size, self.plane_extent, self.half_volume)
        return torch.cat([ap, lateral], 1)

    def forward(self, radiographs: torch.Tensor) -> tuple[list[torch.Tensor], torch.Tensor]:
        planes = self.triplane(radiographs)
        features = [
            decoder(planes, self.grid_size // 2**level, self.plane_extent)
            for level, decoder in enumerate(self.decoders)
        ]
        if self.backprojection:
            features[0] = torch.cat([features[0], self.backprojected(radiographs)], 1)
        return features, torch.tanh(self.ct_head(features[0]))
