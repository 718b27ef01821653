"""The body wall: skin, subcutaneous fat and muscle of the trunk, neck, thighs and arms, the abdominopelvic
cavity's visceral fat, psoas and paraspinal muscles, and breasts.

The trunk's cross-section is a superellipse around the spine's centre line whose half width and front/back depth
follow height (neck, shoulders, chest, waist, hips), with habitus scaling and subcutaneous fat thicker over the
abdomen and hips (more so in women). Arms hang beside the trunk or are raised above the head (chest CT position).
Layers are painted outermost first for all parts together (all skin, then all fat, then all muscle), so where
parts overlap the union of each layer wins. Reference outline sizes from the ANSUR II anthropometric survey
(Gordon CC et al., "2012 Anthropometric Survey of U.S. Army Personnel", 2014): chest breadth about 32-36 cm,
chest depth 22-27 cm, hip breadth 33-38 cm.
"""

from __future__ import annotations

import numpy as np
import torch

from .labels import LABELS
from .patient import Patient
from .shapes import (
    Canvas,
    ellipsoid,
    frame,
    intersect,
    shelled_ellipsoid,
    shelled_tube,
    smooth_curve,
    tube,
    tube_distance,
)
from .skeleton import Spine

_STEP_MM = 1.0
SEPTUM_DEPTH_MM = 6.0


class Outline:
    """Per-height trunk profile (lookup tables on a 1 mm z raster) and its distance functions."""

    def __init__(self, spine: Spine, patient: Patient, device: torch.device) -> None:
        h, w, d, fat = patient.height, patient.width, patient.depth, patient.fat_mm
        self.power = patient.outline_power
        self.z0 = -700.0
        zs = np.arange(self.z0, 900.0, _STEP_MM)
        top = spine.z("C7", 1.0)
        shoulders = spine.z("T1")
        # Thighs, crotch, hips, iliac crests, waist, lower/mid/upper chest, shoulders, neck. Below the crotch the
        # section splits into two lobes ``split`` mm either side of the midline (the thighs).
        keys = [
            -400 * h,
            -175 * h,
            -130 * h,
            -100 * h,
            0.0,
            spine.z("L3"),
            spine.z("L1"),
            spine.z("T10"),
            spine.z("T6"),
            spine.z("T3"),
            shoulders,
            top + 12 * h,
            top + 60 * h,
        ]
        cage = [spine.cage(z, patient) for z in keys[7:10]]
        # The chest's entries follow the rib cage, which is already scaled to the patient: only the muscle over it
        # is scaled here, so every patient keeps about the same muscle over the ribs.
        half = (
            [70, 80, 130, 170, 152, 134, 140]
            + [c[0] / w + 22 for c in cage]
            + [182 if not patient.arms_up else 160, 62, 56]
        )
        front = [70, 80, 100, 108, 122, 122, 126] + [c[1] / d + 26 for c in cage] + [70, 55, 50]
        back = [70, 80, 105, 108, 95, 88, 86, 88, 90, 92, 90, 70, 66]
        split = np.interp(zs, keys[:4], [82.0 * w, 88.0 * w, 40.0 * w, 0.0])
        forward = np.interp(zs, keys[:4], [45.0, 45.0, 15.0, 0.0])
        if patient.female:
            half[3] *= 1.06
            half[9:11] = [h_ * 0.94 for h_ in half[9:11]]
        self.half = np.interp(zs, keys, np.array(half) * np.array([w] * 11 + [1, 1]))
        self.front = np.interp(zs, keys, np.array(front) * d)
        self.back = np.interp(zs, keys, np.array(back) * d)
        # Subcutaneous fat by height, relative to the flank: thickest over the lower abdomen and hips, about as
        # thick over the lower chest, thinner towards the shoulders and neck.
        fat_scale = np.interp(zs, keys, [1.0, 1.1, 1.2, 1.3, 1.3, 1.4, 1.25, 1.1, 1.0, 0.85, 0.6, 0.25, 0.2]) * (
            1.15 if patient.female else 1.0
        )
        self.fat_side = fat * fat_scale
        self.fat_front = (
            fat * fat_scale * np.interp(zs, keys, [1.0, 1.0, 1.0, 1.0, 1.5, 1.5, 1.3, 1.0, 0.8, 0.8, 0.8, 0.6, 0.6])
        )
        self.fat_back = fat * fat_scale * 0.8
        # Fat between the chest wall's muscle layers (pectoral, serratus, latissimus, trapezius): a sheet
        # SEPTUM_DEPTH_MM inside the lean outline, thicker with adiposity, only at the chest.
        self.septum = (1.0 + 0.12 * fat) * np.interp(zs, keys, [0, 0, 0, 0, 0, 0, 0, 0.8, 1.0, 1.0, 0.7, 0, 0])
        self.septum_z = (keys[6], keys[11])  # where it can be non-zero
        xref, yref = spine.at(np.maximum(zs, 0.0))
        self.xref, self.yref = xref, yref - forward
        self.neck_top = top + 80.0 * h
        table = np.stack(
            [
                self.xref,
                self.yref,
                self.half,
                self.front,
                self.back,
                self.half + self.fat_side,
                self.front + self.fat_front,
                self.back + self.fat_back,
                split,
                self.septum,
            ]
        )
        self.table = torch.as_tensor(table, dtype=torch.float32, device=device)
        self.zs = zs

    def sample(self, z: float) -> dict[str, float]:
        """Profile values at one height (mm)."""
        i = int(np.clip(round((z - self.z0) / _STEP_MM), 0, len(self.zs) - 1))
        return {
            "x": self.xref[i],
            "y": self.yref[i],
            "half": self.half[i],
            "front": self.front[i],
            "back": self.back[i],
            "fat_side": self.fat_side[i],
            "fat_front": self.fat_front[i],
            "fat_back": self.fat_back[i],
        }

    def septum_width(self, z: torch.Tensor) -> torch.Tensor:
        """Thickness (mm) of the intermuscular fat sheet of the chest wall at heights ``z`` (0 off the chest)."""
        index = ((z - self.z0) / _STEP_MM).round_().clamp_(0, len(self.zs) - 1).long()
        return self.table[9][index]

    def distances(
        self, x: torch.Tensor, y: torch.Tensor, z: torch.Tensor, insets: tuple[float, ...]
    ) -> list[torch.Tensor]:
        """Approximate signed distances (mm) of the trunk's skin (inset < 0: the outline with its fat) and of its
        lean (muscle) outline shrunk by each inset >= 0 (mm).

        The cross-section is the superellipse ``|u/a|^n + |v/b|^n = 1`` with the patient's power ``n`` (front and
        back depths differ); the distance is its first-order estimate ``(F - 1) / n * sqrt(a b)``, exact enough near
        the surface where the partial-volume ramp needs it; far away only its sign matters."""
        index = ((z - self.z0) / _STEP_MM).round_().clamp_(0, len(self.zs) - 1).long()
        xr, yr = self.table[0][index], self.table[1][index]
        u, v = (x - xr).abs_().sub_(self.table[8][index]).abs_(), y - yr
        posterior = v > 0
        v.abs_()
        ends = z - self.neck_top
        out = []
        for inset in insets:
            rows = (5, 6, 7) if inset < 0 else (2, 3, 4)
            a = self.table[rows[0]][index]
            b = torch.where(posterior, self.table[rows[2]][index], self.table[rows[1]][index])
            if inset > 0:
                a, b = (a - inset).clamp_(min=5.0), (b - inset).clamp_(min=5.0)
            f = (u / a).pow_(self.power).add_((v / b).pow_(self.power))
            out.append(torch.maximum(f.sub_(1.0).mul_(torch.sqrt(a * b)).div_(self.power), ends))
        return out


def _limbs(
    spine: Spine, patient: Patient, outline: Outline, glenoids: dict[float, np.ndarray]
) -> list[tuple[np.ndarray, float, float]]:
    """Centre lines of the upper arms and forearms with their lean radius and fat thickness (mm)."""
    h, fat = patient.height, patient.fat_mm
    limbs = []
    for side, glenoid in glenoids.items():
        if patient.arms_up:
            elbow = glenoid + np.array([-side * 25.0, 10.0, 290.0 * h])
            wrist = elbow + np.array([-side * 90.0, -40.0, 60.0 * h])
        else:
            at = outline.sample(glenoid[2] - 280.0 * h)
            gap = at["half"] + at["fat_side"] + 48.0 + 0.55 * fat
            elbow = np.array([at["x"] + side * gap, at["y"] - 5.0, glenoid[2] - 290.0 * h])
            at = outline.sample(elbow[2] - 250.0 * h)
            wrist = np.array(
                [
                    at["x"] + side * (at["half"] + at["fat_side"] + 38.0 + 0.4 * fat),
                    at["y"] - 30.0,
                    elbow[2] - 250.0 * h,
                ]
            )
        limbs.append((np.array([glenoid + np.array([side * 8.0, 0, 0]), elbow]), 40.0 * patient.width, 0.5 * fat))
        limbs.append((np.array([elbow, wrist]), 30.0 * patient.width, 0.35 * fat))
    return limbs


def paint_body(
    canvas: Canvas,
    spine: Spine,
    patient: Patient,
    outline: Outline,
    glenoids: dict[float, np.ndarray],
    texture: torch.Tensor,
) -> None:
    """Skin, fat and muscle of trunk and limbs, the visceral fat of the abdominopelvic cavity, psoas muscles,
    breasts and the bones of the arms; ``texture`` (the volume's smooth noise field) breaks the cavity's filling
    into fat and soft-tissue strands."""
    t = patient.tissue
    limbs = _limbs(spine, patient, outline, glenoids)
    full = ((-400.0, -400.0, -800.0), (400.0, 400.0, 1000.0))
    box = canvas.box(*full)
    dome = spine.z("T11", 1.0)
    # Limbs: one distance per limb (to its skin), reused for every layer.
    limb_boxes = []
    for line, radius, fat in limbs:
        outer = radius + fat
        limb_box = canvas.box(line.min(axis=0) - outer, line.max(axis=0) + outer)
        if limb_box is not None:
            limb_boxes.append((limb_box, tube_distance(line, np.full(len(line), outer)), fat))
    subcutaneous, muscle = LABELS["subcutaneous"], LABELS["muscle"]
    layers = (
        (0, 0.0, t.skin, subcutaneous, lambda fat: 0.0),
        (0, 2.5, t.fat, subcutaneous, lambda fat: 2.5),
        (1, 0.0, t.muscle, muscle, lambda fat: fat),
    )
    whole = tuple(slice(0, n) for n in canvas.hu.shape)
    spacing = canvas.spacing_mm
    septum_box = canvas.box((-400.0, -400.0, outline.septum_z[0]), (400.0, 400.0, outline.septum_z[1]))
    for slab in canvas.slabs(whole):  # each voxel still gets the layers in order: trunk then limbs, layer by layer
        trunk = intersect(box, slab) if box is not None else None
        trunk_d = (
            outline.distances(*canvas.coords[(slice(None),) + trunk].unbind(0), (-1.0, 0.0))
            if trunk is not None
            else None
        )
        limb_fields = []
        for limb_box, distance, fat in limb_boxes:
            part = intersect(limb_box, slab)
            if part is not None:
                limb_fields.append((part, distance(*canvas.coords[(slice(None),) + part].unbind(0)), fat))
        for which, shift, value, label, limb_inset in layers:
            if trunk_d is not None:
                canvas.blend(trunk, trunk_d[which] + shift, value, label)
            for part, d, fat in limb_fields:
                canvas.blend(part, d + limb_inset(fat), value, label)
        chest = intersect(septum_box, trunk) if trunk is not None and septum_box is not None else None
        if chest is not None:
            # The septum: a sheet of width w (broken up where the smooth field is low) centred w / 2 inside the
            # inset outline; its coverage is the sheet's share of each voxel (w / spacing for a thin one).
            # (The lean outline's distance plus the depth stands in for the inset outline's: they agree near it.)
            within = tuple(slice(c.start - b.start, c.stop - b.start) for c, b in zip(chest, trunk))
            width = outline.septum_width(canvas.coords[2][chest]).mul_(((texture[chest] + 0.3) * 2.0).clamp_(0.0, 1.0))
            centre = (trunk_d[1][within] + SEPTUM_DEPTH_MM).add_(0.5 * width).abs_()
            cover = ((0.5 * (width + spacing) - centre) / spacing).clamp_(min=0.0)
            cover = torch.minimum(cover, (width / spacing).clamp_(max=1.0))
            canvas.blend(chest, (0.5 - cover).mul_(spacing), t.fat, 0)
    # Abdominopelvic cavity: the lean outline shrunk by the wall, kept in front of the back muscles and below the domes.
    back_cut = torch.as_tensor(outline.yref, dtype=torch.float32, device=canvas.hu.device)
    wall_mm = 14.0

    def cavity(x, y, z):
        index = ((z - outline.z0) / _STEP_MM).round().clamp(0, len(outline.zs) - 1).long()
        posterior_limit = y - (back_cut[index] + 30.0)
        pelvic_floor = -135.0 * patient.height + 0.003 * (x - float(outline.xref[0])) ** 2  # a funnel, lowest mid-line
        return torch.maximum(
            torch.maximum(outline.distances(x, y, z, (wall_mm,))[0], posterior_limit),
            torch.maximum(z - dome, pelvic_floor - z),
        )

    # What the organs leave of the cavity: fat (mesentery, omentum) with soft-tissue strands (vessels, collapsed
    # bowel), the fat's share growing with the visceral fat drawn; each voxel is one or the other (a steep ramp of
    # the smooth field), as on CT, not a grey mixture.
    share = 0.3 + 0.65 * patient.visceral
    cut = 0.75 * float(torch.special.ndtri(torch.tensor(share, dtype=torch.float64)))

    def visceral(box, *_):
        fat = texture[box].sub(cut).mul_(-2.0).add_(0.5).clamp_(0.0, 1.0)  # ramps within +-0.25 of the cut
        return fat.mul_(t.visceral_fat - 30.0).add_(30.0)

    canvas.paint((-250, -300, -140 * patient.height), (250, 200, dome + 10), cavity, visceral, 0)
    _muscle_groups(canvas, spine, patient)
    if patient.female:
        _breasts(canvas, spine, patient, outline)
    _arm_bones(canvas, patient, limbs)


def _muscle_groups(canvas: Canvas, spine: Spine, patient: Patient) -> None:
    """Erector spinae either side of the spinous processes, each in a thin fat sheath (the planes that outline the
    back muscles on CT), and the psoas muscles beside the lumbar spine, running down to the groin."""
    t = patient.tissue
    sheath = [(2.5, t.muscle, None)]
    for side in (-1.0, 1.0):
        back = []
        for name, r in (("L5", 20.0), ("L3", 24.0), ("L1", 22.0), ("T10", 18.0), ("T6", 15.0), ("T2", 13.0)):
            lv = spine.levels[name]
            offset = lv.radii[1] + 20.0 + 0.8 * r
            back.append(lv.center + np.array([side * (r + 8.0), offset, 0.0]))
        radii = np.array([20.0, 24.0, 22.0, 18.0, 15.0, 13.0]) * patient.width**0.5
        tube(
            canvas,
            smooth_curve(np.array(back), 10),
            np.interp(np.linspace(0, 5, 10), np.arange(6), radii),
            t.fat,
            LABELS["muscle"],
            shells=sheath,
        )
        pts = []
        for name, r in (("T12", 8.0), ("L2", 14.0), ("L4", 22.0), ("L5", 24.0)):
            lv = spine.levels[name]
            pts.append((lv.center + np.array([side * (lv.radii[0] + 0.6 * r), 2.0, 0.0]), r))
        x0, y0 = spine.at(0.0)
        pts.append((np.array([x0 + side * 62.0, y0 - 40.0, -50.0 * patient.height]), 22.0))
        pts.append((np.array([x0 + side * 78.0, y0 - 82.0, -110.0 * patient.height]), 18.0))
        tube(
            canvas,
            np.array([p for p, _ in pts]),
            np.array([r for _, r in pts]) * patient.width**0.5,
            t.muscle,
            LABELS["muscle"],
        )


def _breasts(canvas: Canvas, spine: Spine, patient: Patient, outline: Outline) -> None:
    rng = patient.rng
    t = patient.tissue
    size = rng.uniform(0.7, 1.3) * (0.8 + 0.01 * patient.fat_mm)
    z = spine.z("T5") - 10.0
    at = outline.sample(z)
    glandular = rng.uniform(0.15, 0.6)
    value = t.fat * (1 - glandular) + 40.0 * glandular
    for side in (-1.0, 1.0):
        center = np.array([at["x"] + side * 0.5 * at["half"], at["y"] - at["front"] - at["fat_front"] + 10.0, z])
        ellipsoid(
            canvas, center, (62 * size, 48 * size, 55 * size), t.skin, LABELS["breast"], axes=frame(side * 25.0, 0, 0)
        )
        ellipsoid(
            canvas, center, (60 * size, 46 * size, 53 * size), value, LABELS["breast"], axes=frame(side * 25.0, 0, 0)
        )


def _arm_bones(canvas: Canvas, patient: Patient, limbs: list) -> None:
    """Humerus (head, shaft) and the forearm bones along the arms' centre lines."""
    t = patient.tissue
    label = LABELS["arm_bone"]
    for arm in (0, 2):
        upper, fore = limbs[arm][0], limbs[arm + 1][0]
        # Humerus: head (thin cortex), metaphysis, then the shaft's 3-4 mm cortex round the marrow cavity.
        shelled_ellipsoid(canvas, upper[0], (23.0, 23.0, 23.0), 1.0, t.cortical, t.trabecular, label)
        neck = upper[0] + 0.2 * (upper[1] - upper[0])
        shelled_tube(canvas, [upper[0], neck], [17.0, 12.0], 1.2, t.cortical, t.trabecular, label)
        shelled_tube(canvas, [neck, upper[1]], [11.5, 10.0], 3.5, t.cortical, t.marrow, label)
        side_offset = np.cross(fore[1] - fore[0], [0.0, 1.0, 0.0])
        side_offset = 7.0 * side_offset / max(np.linalg.norm(side_offset), 1e-6)
        for offset in (side_offset, -side_offset):  # radius and ulna
            shelled_tube(canvas, fore + offset, 6.0, 2.2, t.cortical, t.marrow, label)
