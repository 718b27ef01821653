"""The first procedural torso phantoms, kept because the bundled model ``diffux2ct-64`` was trained on them (its
model card and training commands refer to this generator); new training and evaluation use
:mod:`DiffuX2CTLib.anatomy`. Remove this module when the bundled model is replaced by one trained on that.

A phantom is built from analytic shapes in a body frame (LPS mm, origin at the torso centre): skin, fat and muscle
of a super-elliptic trunk; lungs, heart, liver, kidneys and bowel gas; a curved spine of lumbar and lower thoracic
vertebrae (body with cortical shell, pedicles, lamina, spinous and transverse processes) with discs between; ribs on
the thoracic levels; iliac wings and sacrum; optionally a pair of pedicle screws with a rod. Every size, density,
curvature, the posture and the noise are drawn from one seed, so the same seed always gives the same volume.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from .data.geometry import VolumeGrid

AIR_HU = -1000.0


@dataclass(frozen=True)
class Tissue:
    """Densities (HU) of one phantom, drawn per seed."""

    skin: float
    fat: float
    muscle: float
    lung: float
    blood: float
    liver: float
    kidney: float
    disc: float
    cortical: float
    cancellous: float
    metal: float = 3000.0


class _Canvas:
    """A volume plus its body-frame voxel coordinates; primitives paint into bounding-box views of it."""

    def __init__(self, grid: VolumeGrid, rotation: np.ndarray, z_shift: float) -> None:
        n = grid.size
        axis = (np.arange(n, dtype=np.float32) - (n - 1) / 2.0) * grid.spacing_mm
        self.axis = axis
        self.hu = np.full((n, n, n), AIR_HU, dtype=np.float32)
        self.rotation = rotation.astype(np.float32)  # world = rotation @ body
        self.z_shift = z_shift

    def _region(self, low: np.ndarray, high: np.ndarray):
        """Voxel slices (z, y, x) covering the body-frame box [low, high], and body coordinates inside them."""
        corners = np.array([[x, y, z] for x in (low[0], high[0]) for y in (low[1], high[1]) for z in (low[2], high[2])])
        corners[:, 2] += self.z_shift
        world = corners @ self.rotation.T
        w_low, w_high = world.min(axis=0), world.max(axis=0)
        spacing = float(self.axis[1] - self.axis[0])
        first = self.axis[0]
        slices = []
        for d in (2, 1, 0):
            lo = int(max(0, math.floor((w_low[d] - first) / spacing)))
            hi = int(min(len(self.axis), math.ceil((w_high[d] - first) / spacing) + 1))
            if hi <= lo:
                return None, None
            slices.append(slice(lo, hi))
        zw, yw, xw = np.meshgrid(self.axis[slices[0]], self.axis[slices[1]], self.axis[slices[2]], indexing="ij")
        world_pts = np.stack([xw, yw, zw], axis=-1)
        body = world_pts @ self.rotation  # inverse rotation: body = R^T world
        body[..., 2] -= self.z_shift
        return tuple(slices), (body[..., 0], body[..., 1], body[..., 2])

    def paint(self, low, high, inside, hu: float | np.ndarray) -> None:
        """Set voxels where ``inside(x, y, z)`` holds (body coords in the box [low, high]) to ``hu``."""
        slices, coords = self._region(np.asarray(low, dtype=np.float32), np.asarray(high, dtype=np.float32))
        if slices is None:
            return
        mask = inside(*coords)
        view = self.hu[slices]
        view[mask] = hu if np.isscalar(hu) else hu[slices][mask]


def _ellipsoid(canvas: _Canvas, center, radii, hu: float) -> None:
    c, r = np.asarray(center, dtype=np.float32), np.asarray(radii, dtype=np.float32)
    canvas.paint(c - r, c + r, lambda x, y, z: ((x - c[0]) / r[0]) ** 2 + ((y - c[1]) / r[1]) ** 2 + ((z - c[2]) / r[2]) ** 2 <= 1.0, hu)


def _elliptic_cylinder(canvas: _Canvas, center_xy, radii_xy, z_range, hu: float) -> None:
    (cx, cy), (rx, ry), (z0, z1) = center_xy, radii_xy, z_range
    canvas.paint(
        (cx - rx, cy - ry, z0), (cx + rx, cy + ry, z1),
        lambda x, y, z: (((x - cx) / rx) ** 2 + ((y - cy) / ry) ** 2 <= 1.0) & (z >= z0) & (z <= z1), hu,
    )


def _capsule(canvas: _Canvas, p0, p1, radius: float, hu: float) -> None:
    """Cylinder with round ends between two points (screws, rods, processes)."""
    a, b = np.asarray(p0, dtype=np.float32), np.asarray(p1, dtype=np.float32)
    ab = b - a
    denom = float(ab @ ab) or 1.0

    def inside(x, y, z):
        t = np.clip(((x - a[0]) * ab[0] + (y - a[1]) * ab[1] + (z - a[2]) * ab[2]) / denom, 0.0, 1.0)
        return (x - a[0] - t * ab[0]) ** 2 + (y - a[1] - t * ab[1]) ** 2 + (z - a[2] - t * ab[2]) ** 2 <= radius**2

    canvas.paint(np.minimum(a, b) - radius, np.maximum(a, b) + radius, inside, hu)


def _bone(canvas: _Canvas, shape, args, tissue: Tissue, shell_mm: float = 2.5) -> None:
    """Paint a bone as a cortical shape with a cancellous core ``shell_mm`` thinner on every side."""
    center, radii = args[0], np.asarray(args[1], dtype=np.float32)
    shape(canvas, center, radii, tissue.cortical)
    shape(canvas, center, np.maximum(radii - shell_mm, 0.5), tissue.cancellous)


def _vertebra_body(canvas: _Canvas, center, radii, tissue: Tissue) -> None:
    cx, cy, cz = center
    rx, ry, rz = radii
    _elliptic_cylinder(canvas, (cx, cy), (rx, ry), (cz - rz, cz + rz), tissue.cortical)
    _elliptic_cylinder(canvas, (cx, cy), (rx - 2.5, ry - 2.5), (cz - rz + 2.0, cz + rz - 2.0), tissue.cancellous)


def _vertebra(canvas: _Canvas, center, body_radii, tissue: Tissue, thoracic: bool) -> None:
    """Vertebral body, pedicles, lamina, spinous and transverse processes of one level."""
    cx, cy, cz = center
    rx, ry, rz = body_radii
    _vertebra_body(canvas, center, body_radii, tissue)
    arch_y = cy + ry + 7.0
    for side in (-1.0, 1.0):
        _bone(canvas, _ellipsoid, ((cx + side * 0.62 * rx, cy + ry + 4.0, cz), (5.0, 9.0, 0.45 * rz + 3.0)), tissue, 1.5)
        _capsule(canvas, (cx + side * 0.62 * rx, arch_y + 5.0, cz), (cx + side * 4.0, arch_y + 14.0, cz - 2.0), 3.5, tissue.cortical)
        reach = 32.0 if thoracic else 38.0
        _capsule(canvas, (cx + side * 0.62 * rx, arch_y + 4.0, cz), (cx + side * reach, arch_y + (12.0 if thoracic else 4.0), cz + 2.0), 4.0, tissue.cortical)
    spine_len = 26.0 if thoracic else 30.0
    droop = 14.0 if thoracic else 4.0
    _capsule(canvas, (cx, arch_y + 14.0, cz - 2.0), (cx, arch_y + 14.0 + spine_len, cz - 2.0 - droop), 4.5, tissue.cortical)


def _rib(canvas: _Canvas, side: float, z0: float, axes, drop: float, tissue: Tissue, radius: float = 5.5) -> None:
    """One rib: an elliptic arc from the spine around to the front, descending by ``drop`` mm."""
    a_axis, b_axis, cy = axes
    theta0, theta1 = math.radians(12.0), math.radians(140.0)

    def inside(x, y, z):
        xs = side * x
        theta = np.arctan2(xs, y - cy)
        rho = np.sqrt((xs / a_axis) ** 2 + ((y - cy) / b_axis) ** 2)
        radial = (rho - 1.0) * np.hypot(a_axis * np.sin(theta), b_axis * np.cos(theta))
        zc = z0 - drop * np.clip((theta - theta0) / (theta1 - theta0), 0.0, 1.0)
        return (theta >= theta0) & (theta <= theta1) & (radial**2 / radius**2 + (z - zc) ** 2 / (0.8 * radius) ** 2 <= 1.0)

    low = (-a_axis - radius if side < 0 else -radius, cy - b_axis - radius, z0 - drop - radius)
    high = (radius if side < 0 else a_axis + radius, cy + b_axis + radius, z0 + radius)
    canvas.paint(low, high, inside, tissue.cortical)


def _draw_tissue(rng: np.random.Generator) -> Tissue:
    return Tissue(
        skin=float(rng.uniform(10, 50)),
        fat=float(rng.uniform(-120, -80)),
        muscle=float(rng.uniform(30, 60)),
        lung=float(rng.uniform(-900, -760)),
        blood=float(rng.uniform(30, 55)),
        liver=float(rng.uniform(50, 75)),
        kidney=float(rng.uniform(25, 40)),
        disc=float(rng.uniform(70, 110)),
        cortical=float(rng.uniform(650, 1100)),
        cancellous=float(rng.uniform(130, 320)),
    )


def _rotation(rng: np.random.Generator) -> np.ndarray:
    """Small patient rotation about the long axis plus forward/sideways lean."""
    yaw, pitch, roll = (math.radians(rng.uniform(-lim, lim)) for lim in (6.0, 4.0, 3.0))
    rz = np.array([[math.cos(yaw), -math.sin(yaw), 0], [math.sin(yaw), math.cos(yaw), 0], [0, 0, 1]])
    rx = np.array([[1, 0, 0], [0, math.cos(pitch), -math.sin(pitch)], [0, math.sin(pitch), math.cos(pitch)]])
    ry = np.array([[math.cos(roll), 0, math.sin(roll)], [0, 1, 0], [-math.sin(roll), 0, math.cos(roll)]])
    return rz @ rx @ ry


def generate_phantom(seed: int, grid: VolumeGrid | None = None, implant: bool | None = None, supersample: int = 1) -> np.ndarray:
    """A torso phantom in HU on ``grid`` (default 128^3 at 2.5 mm), array indexed ``[z, y, x]`` (LPS).

    Args:
        seed: every random choice derives from it; equal seeds give identical volumes.
        grid: output grid; its centre is the torso's centre.
        implant: add pedicle screws and a rod; ``None`` lets the seed decide (about one phantom in four).
        supersample: draw on a grid this many times finer and average down, for partial-volume edges.
    """
    grid = grid or VolumeGrid(128, 2.5)
    rng = np.random.default_rng(seed)
    tissue = _draw_tissue(rng)
    fine = VolumeGrid(grid.size * supersample, grid.spacing_mm / supersample)
    canvas = _Canvas(fine, _rotation(rng), z_shift=float(rng.uniform(-30, 30)))
    if implant is None:
        implant = bool(rng.random() < 0.25)

    half_len = 0.5 * grid.field_of_view_mm + 40.0
    a_body, b_body = rng.uniform(125, 160), rng.uniform(90, 120)
    power = rng.uniform(2.0, 3.2)
    taper = rng.uniform(-0.08, 0.08)
    fat_mm = rng.uniform(6, 28)

    def trunk(shrink: float):
        def inside(x, y, z):
            scale = 1.0 + taper * z / half_len
            return np.abs(x / (a_body * scale - shrink)) ** power + np.abs(y / (b_body * scale - shrink)) ** power <= 1.0
        return inside

    box = (-a_body * 1.1, -b_body * 1.1, -half_len), (a_body * 1.1, b_body * 1.1, half_len)
    canvas.paint(*box, trunk(0.0), tissue.skin)
    canvas.paint(*box, trunk(2.0), tissue.fat)
    canvas.paint(*box, trunk(2.0 + fat_mm), tissue.muscle)

    # Spine: levels stacked upwards from the sacrum along a curved centre line.
    spine_y0 = 0.38 * b_body
    lordosis, scoliosis = rng.uniform(5, 18), rng.uniform(0, 14)
    phase = rng.uniform(0, 2 * math.pi)

    def spine_xy(z: float) -> tuple[float, float]:
        return scoliosis * math.sin(z / 120.0 + phase), spine_y0 - lordosis * math.cos(z / 110.0)

    size_scale = rng.uniform(0.9, 1.12)
    z_sacrum = rng.uniform(-150, -110)
    z_diaphragm = z_sacrum + rng.uniform(150, 190)

    # Organs first, so bones and lungs paint over them.
    _ellipsoid(canvas, (-0.35 * a_body, -0.1 * b_body, z_diaphragm - 45), (0.5 * a_body, 0.6 * b_body, 70), tissue.liver)
    for side in (-1.0, 1.0):
        _ellipsoid(canvas, (side * 0.42 * a_body, 0.42 * b_body, z_diaphragm - 90 + side * 8), (24, 18, 48), tissue.kidney)
    for _ in range(int(rng.integers(3, 8))):
        centre = (rng.uniform(-0.5, 0.5) * a_body, rng.uniform(-0.6, 0.0) * b_body, rng.uniform(z_sacrum + 20, z_diaphragm - 100))
        _ellipsoid(canvas, centre, rng.uniform(6, 20, size=3), AIR_HU + 100)
    lung_height = rng.uniform(140, 200)
    for side in (-1.0, 1.0):
        _ellipsoid(canvas, (side * 0.45 * a_body, 0.05 * b_body, z_diaphragm + lung_height * 0.55),
                   (0.38 * a_body, 0.72 * b_body, lung_height * 0.6), tissue.lung)
    _ellipsoid(canvas, (0.18 * a_body, -0.35 * b_body, z_diaphragm + 35), (55, 45, 52), tissue.blood)
    aorta_x, aorta_y = spine_xy(z_diaphragm)
    _elliptic_cylinder(canvas, (aorta_x + 20, aorta_y - 38), (11, 11), (z_sacrum + 40, z_diaphragm + 80), tissue.blood)

    z = z_sacrum + 8.0
    level = 0
    screw_levels = set()
    if implant:
        first = int(rng.integers(1, 4))
        screw_levels = {first, first + 1}
    screw_heads: dict[float, list[np.ndarray]] = {-1.0: [], 1.0: []}
    while z < half_len:
        thoracic = z > z_diaphragm - 40
        height = (11.0 if thoracic else 13.5) * size_scale
        disc = (4.0 if thoracic else 5.0) * size_scale
        zc = z + height
        cx, cy = spine_xy(zc)
        radii = ((18.0 if thoracic else 24.0) * size_scale, (15.0 if thoracic else 18.0) * size_scale, height)
        _elliptic_cylinder(canvas, (cx, cy), (radii[0] * 0.96, radii[1] * 0.96), (zc + height, zc + height + 2 * disc), tissue.disc)
        _vertebra(canvas, (cx, cy, zc), radii, tissue, thoracic)
        if thoracic:
            axes = (0.92 * (a_body - fat_mm), 0.9 * (b_body - fat_mm), cy - 0.55 * b_body)
            for side in (-1.0, 1.0):
                _rib(canvas, side, zc + 2.0, axes, drop=rng.uniform(30, 55), tissue=tissue)
        if level in screw_levels:
            for side in (-1.0, 1.0):
                head = np.array([cx + side * 0.75 * radii[0], cy + radii[1] + 24.0, zc])
                tip = np.array([cx + side * 0.2 * radii[0], cy - 0.4 * radii[1], zc])
                _capsule(canvas, head, tip, 3.0, tissue.metal)
                screw_heads[side].append(head)
        z = zc + height + 2 * disc
        level += 1
    for side, heads in screw_heads.items():
        if len(heads) >= 2:
            _capsule(canvas, heads[0] + [side * 4.0, 4.0, -8.0], heads[-1] + [side * 4.0, 4.0, 8.0], 2.8, tissue.metal)

    # Pelvis: sacrum below the lowest disc, iliac wings as curved plates either side.
    sx, sy = spine_xy(z_sacrum)
    _bone(canvas, _ellipsoid, ((sx, sy + 6.0, z_sacrum - 30.0), (42.0 * size_scale, 20.0, 38.0)), tissue)
    wing_radii = np.array([55.0, 65.0, 70.0]) * size_scale
    for side in (-1.0, 1.0):
        c = np.array([side * 0.52 * a_body, 0.05 * b_body, z_sacrum - 25.0], dtype=np.float32)

        def wing(x, y, z, c=c, side=side):
            rho = np.sqrt(((x - c[0]) / wing_radii[0]) ** 2 + ((y - c[1]) / wing_radii[1]) ** 2 + ((z - c[2]) / wing_radii[2]) ** 2)
            return (rho <= 1.0) & (rho >= 1.0 - 8.0 / wing_radii.min()) & (side * (x - c[0]) > -10.0) & (z > c[2] - 20.0)

        canvas.paint(c - wing_radii, c + wing_radii, wing, tissue.cortical)
        _bone(canvas, _ellipsoid, ((side * 0.55 * a_body, -0.05 * b_body, z_sacrum - 110.0), (24.0, 24.0, 24.0)), tissue)

    volume = canvas.hu + rng.normal(0.0, rng.uniform(5.0, 20.0), size=canvas.hu.shape).astype(np.float32)
    if supersample > 1:
        volume = F.avg_pool3d(torch.from_numpy(volume)[None, None], supersample)[0, 0].numpy()
    return volume.astype(np.float32)
