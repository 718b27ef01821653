"""Device-independent random fields: a counter-based integer hash of (voxel index, seed) computed with int64 torch
ops, so a CPU and a GPU give the same noise, plus the scanner's look (noise level, then a mild blur or
sharpening standing in for the reconstruction kernel)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

_MASK = 0xFFFFFFFF


def _mix(h: torch.Tensor) -> torch.Tensor:
    """One 32-bit avalanche round (the 'lowbias32' integer hash), on int64 holding 32-bit values."""
    h = h ^ (h >> 16)
    h = (h * 0x7FEB352D) & _MASK
    h = h ^ (h >> 15)
    h = (h * 0x846CA68B) & _MASK
    return h ^ (h >> 16)


def hash_normal(shape: tuple[int, int, int], seed: int, stream: int, device: torch.device | str) -> torch.Tensor:
    """Approximately standard normal float32 noise ``shape`` (z, y, x) from the voxel index, ``seed`` and
    ``stream`` (independent fields per stream); identical on every device."""
    nz, ny, nx = shape
    zi = torch.arange(nz, device=device, dtype=torch.int64).view(-1, 1, 1)
    yi = torch.arange(ny, device=device, dtype=torch.int64).view(1, -1, 1)
    xi = torch.arange(nx, device=device, dtype=torch.int64).view(1, 1, -1)
    key = (seed * 0x9E3779B1 + stream * 0x85EBCA77) & _MASK
    h = _mix(((zi * 0x27D4EB2F) ^ (yi * 0x165667B1) ^ (xi * 0x1B873593) ^ key) & _MASK)
    # Sum of four 8-bit uniforms: mean 510, variance 4 * (256^2 - 1) / 12.
    total = (h & 255) + ((h >> 8) & 255) + ((h >> 16) & 255) + ((h >> 24) & 255)
    return (total.to(torch.float32) - 510.0) / 147.8


def smooth_field(shape: tuple[int, int, int], seed: int, stream: int, cell_voxels: int, device: torch.device | str) -> torch.Tensor:
    """Unit-variance-ish noise smooth over about ``cell_voxels`` voxels: coarse hash noise upsampled trilinearly."""
    coarse = tuple(max(2, -(-n // cell_voxels) + 1) for n in shape)
    field = hash_normal(coarse, seed, stream, device)
    return F.interpolate(field[None, None], size=shape, mode="trilinear", align_corners=True)[0, 0]


def scanner(hu: torch.Tensor, seed: int, noise_hu: float, kernel: float) -> torch.Tensor:
    """Add quantum noise of ``noise_hu`` (in place) and filter with the separable 3-tap kernel ``[k, 1 - 2k, k]`` on
    each axis (``k`` > 0 a soft kernel, < 0 a sharp one; the noise is filtered too, as in a reconstruction)."""
    out = hu.add_(hash_normal(tuple(hu.shape), seed, 7, hu.device).mul_(noise_hu))
    for dim in range(3):
        n = out.shape[dim]
        filtered = out * (1.0 - 2.0 * kernel)
        filtered.narrow(dim, 1, n - 1).add_(out.narrow(dim, 0, n - 1), alpha=kernel)
        filtered.narrow(dim, 0, n - 1).add_(out.narrow(dim, 1, n - 1), alpha=kernel)
        filtered.narrow(dim, 0, 1).add_(out.narrow(dim, 0, 1), alpha=kernel)  # edges repeat their outer voxel
        filtered.narrow(dim, n - 1, 1).add_(out.narrow(dim, n - 1, 1), alpha=kernel)
        out = filtered
    return out
