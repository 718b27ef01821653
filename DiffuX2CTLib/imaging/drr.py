"""Differentiable cone-beam digitally reconstructed radiographs (DRRs) in torch.

A DRR is the line integral of linear attenuation along the ray from the source to each detector pixel,
``p = -ln(I / I0) = integral of mu dl``: the log-domain intensity a radiograph has after the detector's log
transform. Rays are sampled at evenly spaced points between where they enter and leave the volume and the volume
is read there with trilinear interpolation (``grid_sample``), so gradients flow back to the volume; this is what
the projection loss of the diffusion model trains through.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from .geometry import ProjectionGeometry, VolumeGrid
from .hounsfield import HUWindow, unit_to_hu

MU_WATER_PER_MM = 0.02
"""Linear attenuation of water at about 70 keV (1/mm); HU are defined relative to it."""

_MAX_SAMPLES_PER_CHUNK = 1 << 22


def hu_to_attenuation(hu: torch.Tensor) -> torch.Tensor:
    """Convert Hounsfield units to linear attenuation in 1/mm (air 0, water ``MU_WATER_PER_MM``)."""
    return torch.clamp(MU_WATER_PER_MM * (1.0 + hu / 1000.0), min=0.0)


def _ray_segments(sources: torch.Tensor, pixels: torch.Tensor, world_to_index: torch.Tensor, shape_zyx: Sequence[int]):
    """Where each ray enters and leaves the volume box, in voxel-index space.

    The box reaches one voxel beyond the outer voxel centres, where trilinear interpolation with zero padding has
    fallen to zero, so the integral of a uniform block equals its true edge length.
    Returns (start index point, direction in index space, t_near, t_far, ray length in mm), t in [0, 1] from source
    to pixel.
    """
    rotation, translation = world_to_index[..., :3, :3], world_to_index[..., :3, 3]
    start = torch.einsum("bij,bvj->bvi", rotation, sources) + translation[:, None, :]
    end = torch.einsum("bij,bvrcj->bvrci", rotation, pixels) + translation[:, None, None, None, :]
    start = start[:, :, None, None, :].expand_as(end)
    direction = end - start
    size_xyz = torch.tensor([shape_zyx[2], shape_zyx[1], shape_zyx[0]], dtype=direction.dtype, device=direction.device)
    low, high = -torch.ones_like(size_xyz), size_xyz
    safe = torch.where(direction.abs() < 1e-12, torch.full_like(direction, 1e-12), direction)
    t_low, t_high = (low - start) / safe, (high - start) / safe
    t_near = torch.minimum(t_low, t_high).amax(dim=-1).clamp(min=0.0)
    t_far = torch.maximum(t_low, t_high).amin(dim=-1).clamp(max=1.0)
    t_far = torch.maximum(t_far, t_near)
    length_mm = torch.linalg.norm(pixels - sources[:, :, None, None, :], dim=-1)
    return start, direction, t_near, t_far, length_mm


def project(
    attenuation: torch.Tensor,
    world_to_index: torch.Tensor,
    sources: torch.Tensor,
    pixels: torch.Tensor,
    samples_per_ray: int,
) -> torch.Tensor:
    """Line integrals of ``attenuation`` along cone-beam rays.

    Args:
        attenuation: ``(B, 1, D, H, W)`` linear attenuation in 1/mm, indexed ``[z, y, x]``.
        world_to_index: ``(B, 4, 4)`` or ``(4, 4)`` map from LPS mm to continuous ``(x, y, z)`` voxel indices.
        sources: ``(B, V, 3)`` source positions (LPS mm), one per view.
        pixels: ``(B, V, R, C, 3)`` detector pixel centres (LPS mm).
        samples_per_ray: evenly spaced samples between the ray's entry and exit (midpoint rule).

    Returns:
        ``(B, V, R, C)`` line integrals (dimensionless, ``-ln(I/I0)``).
    """
    if attenuation.dim() != 5 or attenuation.shape[1] != 1:
        raise ValueError(f"attenuation must be (B, 1, D, H, W), got {tuple(attenuation.shape)}")
    batch = attenuation.shape[0]
    dtype, device = attenuation.dtype, attenuation.device
    world_to_index = world_to_index.to(dtype=dtype, device=device)
    if world_to_index.dim() == 2:
        world_to_index = world_to_index.expand(batch, 4, 4)
    sources, pixels = sources.to(dtype=dtype, device=device), pixels.to(dtype=dtype, device=device)
    shape_zyx = attenuation.shape[2:]
    with torch.no_grad():
        start, direction, t_near, t_far, length_mm = _ray_segments(sources, pixels, world_to_index, shape_zyx)
        fractions = (torch.arange(samples_per_ray, dtype=dtype, device=device) + 0.5) / samples_per_ray
        step_mm = (t_far - t_near) * length_mm / samples_per_ray
        scale = torch.tensor(
            [2.0 / max(shape_zyx[2] - 1, 1), 2.0 / max(shape_zyx[1] - 1, 1), 2.0 / max(shape_zyx[0] - 1, 1)],
            dtype=dtype,
            device=device,
        )

    views, rows, cols = pixels.shape[1:4]
    rows_per_chunk = max(1, _MAX_SAMPLES_PER_CHUNK // max(1, batch * views * cols * samples_per_ray))
    chunks = []
    for row0 in range(0, rows, rows_per_chunk):
        sl = slice(row0, row0 + rows_per_chunk)
        with torch.no_grad():
            t = t_near[:, :, sl, :, None] + fractions * (t_far - t_near)[:, :, sl, :, None]
            points = start[:, :, sl, :, None, :] + t[..., None] * direction[:, :, sl, :, None, :]
            grid = points * scale - 1.0
            n_rows = grid.shape[2]
            grid = grid.reshape(batch, views * n_rows, cols, samples_per_ray, 3)
        samples = F.grid_sample(attenuation, grid, mode="bilinear", padding_mode="zeros", align_corners=True)
        integral = samples.sum(dim=-1).reshape(batch, views, n_rows, cols)
        chunks.append(integral * step_mm[:, :, sl, :])
    return torch.cat(chunks, dim=2)


def default_samples_per_ray(grid_size: int) -> int:
    """About two samples per voxel crossed, enough for sub-percent error of trilinear line integrals."""
    return int(2 * grid_size)


class DRRProjector(torch.nn.Module):
    """Renders the radiograph pair of a volume on a :class:`VolumeGrid` for fixed view geometries.

    Example: ``DRRProjector(default_pair())(hu_to_attenuation(ct_hu), grid)`` gives ``(B, 2, 256, 256)``.
    """

    def __init__(self, geometries: Sequence[ProjectionGeometry], samples_per_ray: int | None = None) -> None:
        super().__init__()
        shapes = {g.detector_pixels for g in geometries}
        if len(shapes) != 1:
            raise ValueError(f"All views must share one detector shape to be batched, got {sorted(shapes)}")
        self.geometries = tuple(geometries)
        self.samples_per_ray = samples_per_ray
        self.register_buffer(
            "sources",
            torch.as_tensor(np.stack([g.source_lps for g in geometries]), dtype=torch.float32),
            persistent=False,
        )
        self.register_buffer(
            "pixels",
            torch.as_tensor(np.stack([g.pixel_positions_lps() for g in geometries]), dtype=torch.float32),
            persistent=False,
        )

    def forward(self, attenuation: torch.Tensor, grid: VolumeGrid) -> torch.Tensor:
        """``(B, 1, D, H, W)`` attenuation (1/mm) on ``grid`` -> ``(B, V, R, C)`` line integrals."""
        batch = attenuation.shape[0]
        samples = self.samples_per_ray or default_samples_per_ray(max(attenuation.shape[2:]))
        world_to_index = torch.as_tensor(grid.world_to_index())
        return project(
            attenuation,
            world_to_index,
            self.sources.expand(batch, -1, -1),
            self.pixels.expand(batch, -1, -1, -1, -1),
            samples,
        )


def normalize_radiograph(
    image: torch.Tensor,
    low_percentile: float = 0.5,
    high_percentile: float = 99.5,
    scale_gradient: bool = True,
    within: torch.Tensor | None = None,
) -> torch.Tensor:
    """Robust per-image scaling of log-domain radiographs to [0, 1] (``(..., R, C)`` -> same shape).

    Real radiographs have an unknown detector gain and post-processing, so the absolute scale of the log
    image is not trusted: DRRs and real images both pass through this percentile scaling before the model sees
    them, which keeps the two domains comparable.

    ``scale_gradient=False`` holds the two percentiles constant for autograd. A percentile's gradient reaches
    only the one or two pixels it was read from, so a loss summed over the whole image pours its share of the
    scale's gradient into those pixels' rays: back-projected, that is a thin line through the volume (the
    brightest AP pixel lies on the spine, so its ray runs along the mid-sagittal plane).

    ``within``, an ``(R, C)`` boolean mask, reads the percentiles from those pixels only.
    """
    flat = image.reshape(*image.shape[:-2], -1) if within is None else image[..., within]
    low = torch.quantile(flat, low_percentile / 100.0, dim=-1, keepdim=True)[..., None]
    high = torch.quantile(flat, high_percentile / 100.0, dim=-1, keepdim=True)[..., None]
    if not scale_gradient:
        low, high = low.detach(), high.detach()
    return torch.clamp((image - low) / torch.clamp(high - low, min=1e-6), 0.0, 1.0)


def model_line_integrals(
    volume_unit: torch.Tensor, projector: DRRProjector, grid: VolumeGrid, window: HUWindow
) -> torch.Tensor:
    """Line integrals ``(B, 2, P, P)`` of a ``(B, 1, N, N, N)`` volume in the model's [-1, 1] units."""
    return projector(hu_to_attenuation(unit_to_hu(volume_unit, window)), grid)


def render_model_radiographs(
    volume_unit: torch.Tensor,
    projector: DRRProjector,
    grid: VolumeGrid,
    window: HUWindow,
    scale_gradient: bool = True,
) -> torch.Tensor:
    """Normalised DRR pair ``(B, 2, P, P)`` of a ``(B, 1, N, N, N)`` volume in [-1, 1]; ``scale_gradient`` as in
    :func:`normalize_radiograph`."""
    line_integrals = model_line_integrals(volume_unit, projector, grid, window)
    return normalize_radiograph(line_integrals, scale_gradient=scale_gradient)
