"""Strong augmentation of real training CTs: a different body from each draw of the same patient.

A handful of real patients cannot teach real anatomy's variety on their own, so every time a real CT is drawn it is
reshaped and re-densified on the training device: a random affine (body size and habitus: isotropic scale, wider or
narrower, flatter or deeper, a small turn about the long axis) composed with a smooth random elastic field, then a
random monotone HU curve (lung density, fat and soft-tissue level, bone density). The result stays a plausible CT:
air stays air, the order of tissues is kept, and the deformation is smooth on the scale of organs.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

SCALE_RANGE = 0.08
"""Isotropic size change, +-8 %."""
HABITUS_RANGE = 0.07
"""Extra width (left-right) and depth (front-back) change, each +-7 %: broad and slim, flat and deep bodies."""
TURN_DEGREES = 4.0
"""Largest turn about the head-foot axis."""
ELASTIC_CONTROL_POINTS = 5
"""Control points of the elastic field along each axis (one every 8 cm of a 40 cm volume: organ-scale bends)."""
ELASTIC_MM = 6.0
"""Standard deviation of the elastic displacement at a control point, mm."""
HU_KNOTS = (-1024.0, -900.0, -600.0, -150.0, -60.0, 20.0, 80.0, 250.0, 700.0, 3071.0)
"""Where the random HU curve may bend: air, lung parenchyma, fat, soft tissue, trabecular and cortical bone."""
HU_KNOT_JITTER = (0.0, 25.0, 40.0, 20.0, 15.0, 10.0, 10.0, 30.0, 90.0, 0.0)
"""How far (HU, standard deviation) each knot moves; air and the top of the range stay fixed."""


def deformed(volume_hu: torch.Tensor, rng: np.random.Generator, spacing_mm: float) -> torch.Tensor:
    """``volume_hu`` (``[z, y, x]``, any device) under a random affine about its centre composed with a smooth
    elastic field; outside the volume is air."""
    depth, height, width = volume_hu.shape
    scale = 1.0 + rng.uniform(-SCALE_RANGE, SCALE_RANGE)
    widen, deepen = 1.0 + rng.uniform(-HABITUS_RANGE, HABITUS_RANGE, 2)
    turn = np.radians(rng.uniform(-TURN_DEGREES, TURN_DEGREES))
    cos, sin = np.cos(turn), np.sin(turn)
    # affine_grid's output point (x, y, z) reads the input at matrix @ point: a bigger body reads closer to the centre.
    turned = np.array([[cos, -sin, 0.0], [sin, cos, 0.0], [0.0, 0.0, 1.0]])
    matrix = turned @ np.diag([1.0 / (scale * widen), 1.0 / (scale * deepen), 1.0 / scale])
    theta = torch.as_tensor(np.concatenate([matrix, np.zeros((3, 1))], axis=1)[None], dtype=torch.float32)
    grid = F.affine_grid(theta.to(volume_hu.device), [1, 1, depth, height, width], align_corners=False)
    extent_mm = np.array([width, height, depth]) * spacing_mm / 2.0  # normalised units -> mm, per axis (x, y, z)
    control = rng.normal(0.0, ELASTIC_MM, (1, 3, *(ELASTIC_CONTROL_POINTS,) * 3)) / extent_mm[None, :, None, None, None]
    field = F.interpolate(
        torch.as_tensor(control, dtype=torch.float32, device=volume_hu.device),
        size=(depth, height, width),
        mode="trilinear",
        align_corners=True,
    )
    grid = grid + field.permute(0, 2, 3, 4, 1)
    above_air = (volume_hu.float() + 1024.0)[None, None]
    return F.grid_sample(above_air, grid, mode="bilinear", padding_mode="zeros", align_corners=False)[0, 0] - 1024.0


def hu_curve(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """A random monotone piecewise-linear HU mapping: knots :data:`HU_KNOTS` moved by :data:`HU_KNOT_JITTER`,
    kept in order (each at least 5 HU above the previous)."""
    moved = np.asarray(HU_KNOTS) + rng.normal(0.0, 1.0, len(HU_KNOTS)) * np.asarray(HU_KNOT_JITTER)
    for k in range(1, len(moved)):
        moved[k] = max(moved[k], moved[k - 1] + 5.0)
    return np.asarray(HU_KNOTS), moved


def remapped(volume_hu: torch.Tensor, knots: np.ndarray, values: np.ndarray) -> torch.Tensor:
    """``volume_hu`` through the piecewise-linear curve ``knots -> values`` (flat beyond the last knots)."""
    x = torch.as_tensor(knots, dtype=torch.float32, device=volume_hu.device)
    y = torch.as_tensor(values, dtype=torch.float32, device=volume_hu.device)
    clamped = volume_hu.float().clamp(float(x[0]), float(x[-1]))
    index = torch.bucketize(clamped, x[1:-1])
    x0, x1, y0, y1 = x[index], x[index + 1], y[index], y[index + 1]
    return y0 + (clamped - x0) * (y1 - y0) / (x1 - x0)


def augmented(volume_hu: torch.Tensor, rng: np.random.Generator, spacing_mm: float) -> torch.Tensor:
    """A real CT as a new plausible body: :func:`deformed`, then a random HU curve (:func:`hu_curve`)."""
    knots, values = hu_curve(rng)
    return remapped(deformed(volume_hu, rng, spacing_mm), knots, values)
