"""Device-independent random fields: a counter-based integer hash of (voxel index, seed), so a CPU and a GPU give
the same noise, plus the scanner's look (noise level, then a mild blur or sharpening standing in for the
reconstruction kernel)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .shapes import slab_depth

_MASK = 0xFFFFFFFF


def _int32(value: int) -> int:
    """A 32-bit pattern as the int32 value with the same bits."""
    value &= _MASK
    return value - (1 << 32) if value >= 1 << 31 else value


def _mix(h: torch.Tensor) -> torch.Tensor:
    """One 32-bit avalanche round (the 'lowbias32' integer hash) on int32 tensors: products wrap modulo 2^32 and
    the shifts are made logical by masking off the copied sign bits, so the bits are those of the unsigned hash
    (int32 rather than int64 halves the memory traffic)."""
    h = h ^ ((h >> 16) & 0xFFFF)
    h = h * _int32(0x7FEB352D)
    h = h ^ ((h >> 15) & 0x1FFFF)
    h = h * _int32(0x846CA68B)
    return h ^ ((h >> 16) & 0xFFFF)


def hash_normal(
    shape: tuple[int, int, int],
    seed: int,
    stream: int,
    device: torch.device | str,
    start: tuple[int, int, int] = (0, 0, 0),
) -> torch.Tensor:
    """Approximately standard normal float32 noise ``shape`` (z, y, x) from the voxel index, ``seed`` and
    ``stream`` (independent fields per stream); identical on every device. ``start`` is the index of the first
    voxel, so a block of a larger field can be made on its own."""
    axes = []
    for n, first, factor in zip(shape, start, (0x27D4EB2F, 0x165667B1, 0x1B873593)):
        index = torch.arange(first, first + n, device=device, dtype=torch.int64)
        axes.append(((index * factor) & _MASK).to(torch.int32))
    key = _int32(seed * 0x9E3779B1 + stream * 0x85EBCA77)
    h = _mix(axes[0].view(-1, 1, 1) ^ axes[1].view(1, -1, 1) ^ (axes[2] ^ key).view(1, 1, -1))
    # Sum of four 8-bit uniforms: mean 510, variance 4 * (256^2 - 1) / 12.
    total = (h & 255) + ((h >> 8) & 255) + ((h >> 16) & 255) + ((h >> 24) & 255)
    return (total.to(torch.float32) - 510.0) / 147.8


def smooth_field(
    shape: tuple[int, int, int], seed: int, stream: int, cell_voxels: int, device: torch.device | str
) -> torch.Tensor:
    """Unit-variance-ish noise smooth over about ``cell_voxels`` voxels: coarse hash noise upsampled trilinearly."""
    coarse = tuple(max(2, -(-n // cell_voxels) + 1) for n in shape)
    field = hash_normal(coarse, seed, stream, device)
    return F.interpolate(field[None, None], size=shape, mode="trilinear", align_corners=True)[0, 0]


def _three_tap(volume: torch.Tensor, dim: int, kernel: float) -> torch.Tensor:
    """``volume`` filtered along ``dim`` with ``[k, 1 - 2k, k]``, the edges repeating their outer voxel."""
    n = volume.shape[dim]
    filtered = volume * (1.0 - 2.0 * kernel)
    filtered.narrow(dim, 1, n - 1).add_(volume.narrow(dim, 0, n - 1), alpha=kernel)
    filtered.narrow(dim, 0, n - 1).add_(volume.narrow(dim, 1, n - 1), alpha=kernel)
    filtered.narrow(dim, 0, 1).add_(volume.narrow(dim, 0, 1), alpha=kernel)
    filtered.narrow(dim, n - 1, 1).add_(volume.narrow(dim, n - 1, 1), alpha=kernel)
    return filtered


def scanner(hu: torch.Tensor, seed: int, noise_hu: float, kernel: float) -> torch.Tensor:
    """Add quantum noise of ``noise_hu`` (in place) and filter with the separable 3-tap kernel ``[k, 1 - 2k, k]`` on
    each axis (``k`` > 0 a soft kernel, < 0 a sharp one; the noise is filtered too, as in a reconstruction).
    Returns a new volume. On a CPU both passes go slab by slab along z (see :mod:`.shapes`)."""
    depth = hu.shape[0]
    step = slab_depth(hu.shape, hu.device)
    for first in range(0, depth, step):
        slab = hu[first : first + step]
        slab.add_(hash_normal(tuple(slab.shape), seed, 7, hu.device, (first, 0, 0)).mul_(noise_hu))
    if step >= depth:
        return _three_tap(_three_tap(_three_tap(hu, 0, kernel), 1, kernel), 2, kernel)
    out = torch.empty_like(hu)
    for first in range(0, depth, step):
        last = min(first + step, depth)
        # The slab with one slice either side (the volume's edge slices repeated), filtered along z, then y and x.
        low, high = max(first - 1, 0), min(last + 1, depth)
        padded = torch.cat([hu[0:1]] * (first == 0) + [hu[low:high]] + [hu[depth - 1 : depth]] * (last == depth))
        along_z = padded[1:-1] * (1.0 - 2.0 * kernel)
        along_z.add_(padded[:-2], alpha=kernel).add_(padded[2:], alpha=kernel)
        out[first:last] = _three_tap(_three_tap(along_z, 1, kernel), 2, kernel)
    return out
