"""Lungs (filling the rib cage above the diaphragm domes, apices above the clavicles), the trachea and bronchi,
and the pulmonary artery and vein trees, with a textured, gravity-dependent parenchyma.

Sizes: right lung about 55 % of a 4.5-6.5 L total at full inspiration (ICRP Publication 89, "Basic anatomical and
physiological data for use in radiological protection: reference values", 2002); right dome 1.5-2.5 cm above
the left; trachea about 15-25 mm wide (Breatnach E et al., "Dimensions of the normal human trachea", AJR 1984);
parenchyma about -850 to -900 HU at inspiration, denser in dependent (posterior) lung (Gevenois PA et al.,
AJRCCM 1996). The vessel and airway trees split their lung's volume recursively (median cuts of sample points),
so branches fill the lung the way a real tree does, with radii shrinking by about 0.75 a generation.
"""

from __future__ import annotations

import numpy as np
import torch

from .labels import LABELS
from .patient import Patient
from .shapes import Canvas, tube, tube_distance
from .skeleton import Spine
from .texture import smooth_field

_STEP_MM = 1.0


class Diaphragm:
    """Dome heights (right higher than left) and the cage profile the lungs fill, as lookup tables."""

    def __init__(self, spine: Spine, patient: Patient) -> None:
        rng = patient.rng
        self.right = spine.z("T10") + (0.6 - patient.inspiration) * 35.0 * patient.height + rng.normal(0, 8)
        self.left = self.right - rng.uniform(14, 30)
        self.apex = spine.z("T1", 1.0) + rng.uniform(5, 20) * patient.height
        self.z0 = self.left - 160.0
        zs = np.arange(self.z0, self.apex + 40.0, _STEP_MM)
        self.zs = zs
        half, front, back = spine.cage(zs, patient)
        self.table = np.stack([*spine.at(zs), half, front, back])
        self.width = float(half.max())
        self.x0, self.y0 = spine.at(self.right)
        self._torch: dict[torch.device, torch.Tensor] = {}

    def _rows(self, z, xp):
        table = (
            self.table
            if xp is np
            else self._torch.setdefault(z.device, torch.as_tensor(self.table, dtype=torch.float32, device=z.device))
        )
        index = (z - self.z0) / _STEP_MM
        index = (
            np.clip(np.round(index), 0, len(self.zs) - 1).astype(int)
            if xp is np
            else index.round().clamp(0, len(self.zs) - 1).long()
        )
        return table[:, index]

    def dome(self, x, y, xp=torch):
        """Height (mm) of the diaphragm under (x, y): domes peaking at mid-hemithorax, deepest in the posterior
        costophrenic recess."""
        peak = xp.where(x > self.x0, self.left, self.right)
        u = (xp.abs(x - self.x0) - 0.42 * self.width) / (0.55 * self.width)
        v = (y - (self.y0 - 30.0)) / 110.0
        drop = 40.0 * u * u + xp.where(v > 0, 70.0, 25.0) * v * v
        return peak - drop

    def lung_distance(self, x, y, z, side: float, xp=torch):
        """Approximate signed distance (mm) of the ``side`` lung (+1 left): inside the cage, off the midline,
        above the dome and below the apex."""
        xs, ys, half, front, back = self._rows(z, xp)
        u = side * (x - xs)
        v = y - ys
        depth = xp.where(v > 0, back, front)
        a, b = (half - 2.0) * (0.93 if side > 0 else 1.0), depth - 4.0
        p, q = u / a, v / b
        wall = (p * p + q * q - 1.0) * xp.sqrt(a * b) * 0.5  # first-order distance to the elliptic section
        medial = 7.0 - u
        floor = self.dome(x, y, xp) - z
        return xp.maximum(xp.maximum(wall, medial), xp.maximum(floor, z - self.apex))

    def sample_points(self, side: float, count: int, rng: np.random.Generator) -> np.ndarray:
        """``count`` random points (N, 3) inside the ``side`` lung."""
        found = []
        while sum(len(f) for f in found) < count:
            p = rng.uniform(
                [-self.width - 10, -150, self.left - 80], [self.width + 10, 80, self.apex], size=(4 * count, 3)
            )
            p[:, 0] = self.x0 + side * np.abs(p[:, 0] - self.x0)
            p[:, 1] += self.y0
            inside = self.lung_distance(p[:, 0], p[:, 1], p[:, 2], side, xp=np) < -4.0
            found.append(p[inside])
        return np.concatenate(found)[:count]

    def box(self, side: float) -> tuple[np.ndarray, np.ndarray]:
        """Body-frame bounding box of the ``side`` lung."""
        xs = [self.x0, self.x0 + side * (self.width + 5)]
        return (
            np.array([min(xs), self.y0 - 170.0, self.left - 110.0]),
            np.array([max(xs), self.y0 + 80.0, self.apex + 2.0]),
        )


def _tree(root: np.ndarray, points: np.ndarray, radius: float, generations: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """Branch chains (points (K, 3), radii (K,)) of a tree from ``root`` splitting the sample ``points`` by median
    cuts along their longest axis; each chain follows the larger half, the other half starts a new chain."""
    chains = []

    def grow(start: np.ndarray, pts: np.ndarray, r: float, gen: int, chain: list, radii: list) -> None:
        target = pts.mean(axis=0)
        end = start + 0.55 * (target - start) if gen < generations else target
        chain.append(end)
        radii.append(r)
        if gen >= generations or len(pts) < 4:
            chains.append((np.array(chain), np.array(radii)))
            return
        spread = pts - target
        axis = np.linalg.svd(spread, full_matrices=False)[2][0]
        order = np.argsort(spread @ axis)
        halves = (pts[order[len(pts) // 2 :]], pts[order[: len(pts) // 2]])
        grow(end, halves[0], r * 0.78, gen + 1, chain, radii)
        grow(end, halves[1], r * 0.78, gen + 1, [end], [r * 0.78])

    grow(root, points, radius, 0, [root], [radius])
    return chains


def paint_lungs(canvas: Canvas, spine: Spine, patient: Patient, diaphragm: Diaphragm, texture: torch.Tensor) -> None:
    """Lungs, then vessels and airways inside them (painted only where the voxel is still lung)."""
    t, rng = patient.tissue, patient.rng
    base = t.lung
    # Sub-resolution vessels: bright specks where a fine random field peaks (about 5 mm blobs).
    fine = smooth_field(
        tuple(canvas.hu.shape), patient.seed, 2, max(2, round(5.0 / canvas.spacing_mm)), canvas.hu.device
    )
    specks = ((fine - 0.9) * 400.0).clamp_(0.0, 400.0)

    def parenchyma(box, x, y, z):
        return base + 0.35 * (y - diaphragm.y0) + 40.0 * texture[box] + specks[box]

    for side in (-1.0, 1.0):
        low, high = diaphragm.box(side)
        canvas.paint(
            low,
            high,
            lambda x, y, z, s=side: diaphragm.lung_distance(x, y, z, s),
            parenchyma,
            LABELS["lung_left" if side > 0 else "lung_right"],
        )
    carina_z = spine.z("T5", 1.0)
    xc, yc = spine.at(carina_z)
    ry = spine.levels["T5"].radii[1]
    carina = np.array([xc - 3.0, yc - ry - 24.0, carina_z])
    x6, y6 = spine.at(spine.z("C6"))
    radius = (8.0 if patient.female else 9.5) * rng.uniform(0.9, 1.1)
    trachea = np.array(
        [
            [x6, y6 - spine.levels["C6"].radii[1] - 22.0, spine.z("C5", 1.0) + 60.0],
            [x6, y6 - spine.levels["C6"].radii[1] - 22.0, spine.z("C6")],
            carina + np.array([0, 0, 10.0]),
        ]
    )
    tube(canvas, trachea, radius + 2.0, t.muscle, LABELS["airway"], segments_per_box=1)
    tube(canvas, trachea, radius, -1000.0, LABELS["airway"], segments_per_box=1)
    for side in (-1.0, 1.0):
        lung_points = diaphragm.sample_points(side, 384, rng)
        hilum = carina + np.array([side * (38.0 if side > 0 else 30.0), 8.0, -22.0 if side > 0 else -14.0])
        tube(canvas, [carina, hilum], [radius * 0.8 + 2.0, radius * 0.7 + 2.0], t.muscle, LABELS["airway"])
        tube(canvas, [carina, hilum], [radius * 0.8, radius * 0.7], -1000.0, LABELS["airway"])
        for chain, radii in _tree(hilum, lung_points, radius * 0.65, 4):
            lumen = tube_distance(chain, radii)
            tube(canvas, chain, radii + 1.5, t.muscle, below=-500.0, clip=lambda x, y, z, d=lumen: -d(x, y, z))
            tube(canvas, chain, radii, -1000.0, LABELS["airway"], below=-500.0)
        artery_root = hilum + np.array([side * 6.0, -14.0, 10.0])
        vein_root = hilum + np.array([-side * 4.0, -6.0, -38.0])
        for root, value, r0 in ((artery_root, t.blood, 7.0), (vein_root, t.arterial, 6.0)):
            for chain, radii in _tree(root, lung_points + rng.normal(0, 6.0, lung_points.shape), r0, 5):
                tube(canvas, chain, radii, value, below=-300.0)
