"""The skeleton: vertebrae C5-L5 (cortical shell, trabecular body, pedicles, laminae, processes, spinal canal)
with discs, the sacrum, twelve rib pairs with costal cartilage, sternum, clavicles, scapulae, hip bones and
proximal femora; and :class:`Spine`, the landmark frame every other organ is placed against.

Body frame: z = 0 at the top of S1 (the promontory), levels stacked upwards. Reference sizes (adult male, scaled
by ``Patient.height``/``width``): vertebral body heights and widths from Panjabi MM et al., "Cervical human
vertebrae" (Spine 1991), "Thoracic human vertebrae" (Spine 1991) and "Human lumbar vertebrae" (Spine 1992);
lumbar discs about 10-12 mm (Pfirrmann CWA et al., "Effect of aging and degeneration on disc volume and shape",
Spine 2006); rib course and slope after Kindig MW & Kent RW, "Characterization of the centroidal geometry of human
ribs", J Biomech Eng 2013, and Weaver AA et al., "Morphometric analysis of variation in the ribs with age and
sex", J Anat 2014. Full table: ``Resources/Anatomy/REFERENCES.md``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from .labels import LABELS
from .patient import Patient
from .shapes import Canvas, Value, cylinder, ellipsoid, frame, shelled_ellipsoid, shelled_tube, smooth_curve, tube

# name, body height (mm), disc below (mm), half width, half depth — bottom (L5) to top (C5).
_LEVELS = (
    [
        ("L5", 27.5, 11.0, 25.0, 17.5),
        ("L4", 27.5, 12.0, 24.5, 17.5),
        ("L3", 27.0, 11.5, 24.0, 17.0),
        ("L2", 26.5, 11.0, 23.0, 16.5),
        ("L1", 25.5, 10.0, 22.0, 16.0),
    ]
    + [
        (
            f"T{k}",
            16.0 + (k - 1) * 7.5 / 11,
            4.0 + (k - 1) * 3.5 / 11,
            13.5 + (k - 1) * 7.0 / 11,
            8.0 + (k - 1) * 7.5 / 11,
        )
        for k in range(12, 0, -1)
    ]
    + [("C7", 15.0, 5.0, 11.0, 8.0), ("C6", 14.0, 5.0, 9.5, 7.5), ("C5", 14.0, 5.0, 9.0, 7.5)]
)
_DISC_ABOVE_L1 = 8.0  # T12/L1 disc height replaces the thoracic formula for T12's lower disc
# Cortex thicknesses (mm). Painted at the cortical HU with partial-volume edges, a shell adds about HU x thickness
# / voxel to its voxels, so these set how bright bone is at 2.5-5 mm. The vertebral body's shell and endplates are
# porous, 0.25-0.5 mm (Silva MJ et al., Bone 1994: about 0.35 mm; Ritzel H et al., J Bone Miner Res 1997: 0.24-0.29
# mm). A rib's cortex is about 0.5-1.5 mm, thickest on its pleural side (Holcombe SA et al., J Anat 2019) and
# thinning with age (Holcombe & Derstine, J Anat 2022); the round rib here stands in for a flat one with two such
# cortices, so its single shell is thinner (checked against the real training CTs' ribs: 330-440 HU at most at
# 2.5 mm). Flat bones (scapula, sternum, sacrum) about 1 mm, the ilium a little more.
_BODY_SHELL, _ENDPLATE = 0.4, 0.5
_ARCH_SHELL = 0.9  # pedicles, laminae, processes
_RIB_SHELL = 0.4
_FLAT_SHELL = 0.9


@dataclass(frozen=True)
class Level:
    """One vertebra: centre and local frame (z along the spine's tangent), height, half width/depth."""

    name: str
    center: np.ndarray
    axes: np.ndarray
    height: float
    disc_below: float
    radii: tuple[float, float]


@dataclass(frozen=True)
class Spine:
    """The spinal column's centre line and levels; every organ is placed relative to it."""

    levels: dict[str, Level]
    curve: np.ndarray  # (K, 3) centre line from below the sacrum to above C5, every 2 mm in z

    def at(self, z):
        """(x, y) of the vertebral-body centre line at height ``z`` (a float or an array of heights)."""
        x, y = np.interp(z, self.curve[:, 2], self.curve[:, 0]), np.interp(z, self.curve[:, 2], self.curve[:, 1])
        return (float(x), float(y)) if np.ndim(z) == 0 else (x, y)

    def z(self, name: str, where: float = 0.0) -> float:
        """Height of a level's centre, or ``where`` (-1 bottom, 1 top) along its body."""
        level = self.levels[name]
        return float(level.center[2] + 0.5 * where * level.height)

    def cage(self, z, patient: Patient):
        """Inner rib cage at height ``z`` (a float or an array): half width, depth in front of and behind the
        vertebral-body centre (mm)."""
        top, bottom = self.z("T1", 1.0), self.z("T12")
        t = (z - top) / (bottom - top)
        knots = [-0.12, 0.0, 0.08, 0.18, 0.3, 0.5, 0.7, 0.85, 1.0, 1.15]
        half = np.interp(t, knots, [21, 55, 85, 104, 119, 131, 138, 139, 135, 127]) * patient.width
        front = np.interp(t, knots, [26, 50, 74, 92, 105, 116, 122, 124, 122, 113]) * patient.depth
        back = np.interp(t, knots, [25, 33, 40, 43, 45, 46, 46, 45, 43, 40]) * patient.depth
        return (float(half), float(front), float(back)) if np.ndim(z) == 0 else (half, front, back)


def build_spine(patient: Patient) -> Spine:
    """Stack the levels upwards from the promontory along a curve with lumbar lordosis, thoracic kyphosis and
    (rarely) scoliosis."""
    rng = patient.rng
    h = patient.height
    z, placed = 0.0, []
    for name, height, disc, rx, ry in _LEVELS:
        disc = _DISC_ABOVE_L1 if name == "T12" else disc
        jitter = rng.normal(1.0, 0.03)
        z += disc * h * (1.0 - 0.15 * (patient.age > 60) * (name[0] == "L"))
        placed.append(
            (
                name,
                z + 0.5 * height * h * jitter,
                height * h * jitter,
                disc * h,
                rx * patient.width**0.5,
                ry * patient.depth**0.5,
            )
        )
        z += height * h * jitter
    centers = {name: zc for name, zc, *_ in placed}
    zs = np.arange(-160.0, z + 80.0, 2.0)

    def bump(zc: float, width: float) -> np.ndarray:
        return np.exp(-(((zs - zc) / width) ** 2))

    y = (
        -patient.lordosis_mm * bump(centers["L3"], 90 * h)
        + patient.kyphosis_mm * bump(centers["T7"], 140 * h)
        - 12.0 * bump(centers["C5"], 60 * h)
    )
    # Below the promontory the sacrum turns backwards (sacral slope about 40 degrees).
    y = y + np.where(zs < 0, -0.75 * zs, 0.0)
    lumbar_to_t1 = (zs - centers["L5"]) / (centers["T1"] - centers["L5"])
    x = (
        patient.scoliosis_mm
        * np.sin(np.pi * np.clip(lumbar_to_t1, 0, 1))
        * (1 + 0.3 * np.sin(2 * np.pi * np.clip(lumbar_to_t1, 0, 1)))
    )
    curve = np.stack([x, y, zs], axis=1)
    dx, dy = np.gradient(x, zs), np.gradient(y, zs)
    levels = {}
    for name, zc, height, disc, rx, ry in placed:
        i = int(np.argmin(np.abs(zs - zc)))
        axes = frame(0.0, -np.degrees(np.arctan(dy[i])), np.degrees(np.arctan(dx[i])))
        levels[name] = Level(name, curve[i].copy(), axes, height, disc, (rx, ry))
    return Spine(levels, curve)


def _vertebra(canvas: Canvas, level: Level, patient: Patient, label: int, compressed: bool, trabecular: Value) -> None:
    """Body (cortical shell, trabecular core), disc below, canal, pedicles, laminae, spinous and transverse
    processes."""
    t = patient.tissue
    c, m = level.center, level.axes
    rx, ry = level.radii
    half = 0.5 * level.height * (0.6 if compressed else 1.0)
    kind = level.name[0]

    def at(u: float, v: float, w: float) -> np.ndarray:
        return c + m @ np.array([u, v, w])

    cylinder(
        canvas,
        at(0, 0, -0.5 * level.height - 0.5 * level.disc_below),
        (rx * 0.97, ry * 0.97),
        0.5 * level.disc_below + 0.6,
        t.disc,
        LABELS["disc"],
        power=2.4,
        axes=m,
    )
    cylinder(canvas, at(0, 0, -0.5 * level.height + half), (rx, ry), half, t.cortical, label, power=2.4, axes=m)
    cylinder(
        canvas,
        at(0, 0, -0.5 * level.height + half),
        (rx - _BODY_SHELL, ry - _BODY_SHELL),
        half - _ENDPLATE,
        trabecular,
        None,
        power=2.4,
        axes=m,
    )
    canal = {"L": (11.5, 9.0), "T": (8.5, 8.0), "C": (12.0, 7.5)}[kind]
    pedicle_r = {"L": 5.0, "T": 3.8, "C": 3.0}[kind]
    cylinder(
        canvas, at(0, ry + canal[1] + 1.0, 0), canal, 0.5 * level.height + 0.5 * level.disc_below, t.csf, 0, axes=m
    )
    back = ry + 2 * canal[1] + 3.0
    spinous = {"L": (30.0, -4.0, 5.0), "T": (32.0, -24.0, 4.0), "C": (18.0, -4.0, 3.5)}[kind]
    transverse = {"L": (rx + 26.0, ry + 8.0, 4.5), "T": (rx + 16.0, ry + 20.0, 4.5), "C": (rx + 12.0, ry - 2.0, 3.5)}[
        kind
    ]
    for side in (-1.0, 1.0):
        root = at(side * 0.62 * rx, ry - 2.0, 0.1 * level.height)
        joint = at(side * (canal[0] + 2.0), back - 3.0, 0)
        shelled_tube(canvas, [root, joint], pedicle_r, _ARCH_SHELL, t.cortical, trabecular, label)
        shelled_tube(
            canvas,
            [joint, at(0, back + 2.0, -0.1 * level.height)],
            pedicle_r * 0.8,
            _ARCH_SHELL,
            t.cortical,
            trabecular,
            label,
        )  # lamina
        shelled_tube(
            canvas,
            [joint, at(side * transverse[0], transverse[1], 0.15 * level.height)],
            [transverse[2], transverse[2] * 0.7],
            _ARCH_SHELL,
            t.cortical,
            trabecular,
            label,
        )
        # Facet joints: upper and lower articular processes.
        shelled_tube(
            canvas,
            [
                at(side * (canal[0] + 3.0), back - 4.0, 0.55 * level.height),
                at(side * (canal[0] + 3.0), back - 2.0, -0.55 * level.height),
            ],
            pedicle_r * 0.9,
            _ARCH_SHELL,
            t.cortical,
            trabecular,
            label,
        )
    shelled_tube(
        canvas,
        [at(0, back + 2.0, 0), at(0, back + spinous[0], spinous[1])],
        [spinous[2], spinous[2] * 0.8],
        _ARCH_SHELL,
        t.cortical,
        trabecular,
        label,
    )


def _sacrum(canvas: Canvas, spine: Spine, patient: Patient, trabecular: Value) -> None:
    """S1-S5 and the coccyx along the sacral curve, with the alae reaching the sacroiliac joints."""
    t, label = patient.tissue, LABELS["sacrum"]
    h, w = patient.height, patient.width
    x0, y0 = spine.at(0.0)
    pts = np.array(
        [
            [x0, y0 + 2, -12],
            [x0, y0 + 14, -38],
            [x0, y0 + 28, -60],
            [x0, y0 + 40, -80],
            [x0, y0 + 48, -96],
            [x0, y0 + 50, -115],
        ]
    )
    pts[:, 2] *= h
    radii = [(25, 17), (20, 14), (16, 11), (12, 9), (9, 7), (6, 5)]
    for p, (rx, ry) in zip(pts, radii):
        shelled_ellipsoid(canvas, p, (rx * w**0.5, ry, 14 * h), _FLAT_SHELL, t.cortical, trabecular, label)
    # Lateral masses (alae at S1-S2, narrowing to S4) reaching the sacroiliac joints.
    for p, reach, height in zip(pts[:4], (40.0, 34.0, 24.0, 14.0), (22.0, 19.0, 16.0, 12.0)):
        for side in (-1.0, 1.0):
            shelled_ellipsoid(
                canvas,
                p + np.array([side * reach * w, 6.0, 0.0]),
                (reach * 0.9 * w, 16.0, height * h),
                _FLAT_SHELL,
                t.cortical,
                trabecular,
                label,
                axes=frame(side * 15, 25, side * 12),
            )
    cylinder(canvas, (x0, y0 + 30, -40 * h), (10, 6), 40 * h, t.csf, 0, axes=frame(0, 30, 0))


def _rib_path(spine: Spine, patient: Patient, k: int, side: float) -> tuple[np.ndarray, np.ndarray | None]:
    """Centre line of rib ``k`` (1-12) on ``side`` (+1 left), and of its costal cartilage (None for 11, 12)."""
    level = spine.levels[f"T{k}"]
    xs, ys, zs = level.center
    rx, ry = level.radii
    h = patient.height
    drop = np.array([32, 52, 68, 78, 84, 88, 90, 88, 84, 76, 52, 36])[k - 1] * h * (1.12 - 0.2 * patient.inspiration)
    end = np.array([2.55, 2.62, 2.66, 2.66, 2.64, 2.6, 2.52, 2.38, 2.2, 2.0, 1.55, 1.15])[k - 1]
    head = np.array([xs + side * (rx + 2.0), ys + 0.4 * ry, zs + 0.3 * level.height])
    tubercle = np.array([xs + side * (rx + 16.0), ys + ry + 16.0, zs + 0.1 * level.height])
    theta = np.linspace(0.55, end, 12)
    pts = [head, tubercle]
    for th in theta:
        frac = (th - 0.55) / (2.7 - 0.55)
        z = zs - 3.0 - drop * (frac**1.25)
        half, front, back = spine.cage(z, patient)
        x0, y0 = spine.at(z)
        y = y0 + (back if np.cos(th) > 0 else front) * np.cos(th)
        pts.append([x0 + side * (half + 4.0) * np.sin(th), y + 6.0 * np.cos(th), z])
    rib = smooth_curve(np.array(pts), 22)
    if k > 10:
        return rib, None
    tip = rib[-1]
    sternum_z = {1: -14.0, 2: -30.0, 3: -46.0, 4: -62.0, 5: -76.0, 6: -90.0, 7: -102.0}
    top = spine.z("T2", -1.0)
    if k <= 7:
        z_end = top + sternum_z[k] * h
        x0, y0 = spine.at(z_end)
        target = np.array([x0 + side * 14.0, y0 - spine.cage(z_end, patient)[1] - 4.0, z_end])
    else:
        z_end = top - (110.0 + 12.0 * (k - 8)) * h
        x0, y0 = spine.at(z_end)
        target = np.array([x0 + side * (35.0 + 18.0 * (k - 8)), y0 - spine.cage(z_end, patient)[1] * 0.95, z_end])
    mid = 0.5 * (tip + target) + np.array([side * 8.0, -6.0, 0.0])
    return rib, smooth_curve(np.array([tip, mid, target]), 6)


def _ribs_and_sternum(canvas: Canvas, spine: Spine, patient: Patient, trabecular: Value) -> None:
    t = patient.tissue
    for side in (-1.0, 1.0):
        label = LABELS["rib_left" if side > 0 else "rib_right"]
        for k in range(1, 13):
            rib, cartilage = _rib_path(spine, patient, k, side)
            # A round stand-in for the flat rib (about 12 x 6 mm at mid-shaft): the same cross-section area.
            radius = np.linspace(3.3 if k == 1 else 3.6, 4.2, len(rib))
            shelled_tube(canvas, rib, radius, _RIB_SHELL, t.cortical, trabecular, label)
            if cartilage is not None:
                tube(canvas, cartilage, 4.5, t.cartilage, LABELS["costal_cartilage"])
    top = spine.z("T2", -1.0)
    h = patient.height
    pts = []
    for dz in (0.0, -30.0, -60.0, -95.0, -125.0, -145.0):
        z = top + dz * h
        x0, y0 = spine.at(z)
        pts.append([x0, y0 - spine.cage(z, patient)[1] - 9.0, z])
    pts = np.array(pts)
    manubrium = 0.5 * (pts[0] + pts[1])
    shelled_ellipsoid(
        canvas,
        manubrium,
        (26 * patient.width, 7.5, 20 * h),
        _FLAT_SHELL,
        t.cortical,
        trabecular,
        LABELS["sternum"],
        axes=_along(pts[1] - pts[0]),
    )
    for a, b, width in ((pts[1], pts[4], 15.0), (pts[4], pts[5], 9.0)):
        center, half = 0.5 * (a + b), 0.5 * float(np.linalg.norm(b - a))
        cylinder(
            canvas,
            center,
            (width, 7.0),
            half,
            t.cortical if width > 10 else t.cartilage + 100.0,
            LABELS["sternum"],
            axes=_along(b - a),
        )
        if width > 10:
            cylinder(
                canvas,
                center,
                (width - _FLAT_SHELL, 7.0 - _FLAT_SHELL),
                half - _FLAT_SHELL,
                trabecular,
                None,
                axes=_along(b - a),
            )


def _along(direction: np.ndarray) -> np.ndarray:
    """Axes (columns) with local z along ``direction`` and local x as close to the body's x as possible."""
    w = direction / np.linalg.norm(direction)
    u = np.array([1.0, 0.0, 0.0]) - w[0] * w
    u /= np.linalg.norm(u)
    return np.stack([u, np.cross(w, u), w], axis=1)


def glenoids(spine: Spine, patient: Patient) -> dict[float, np.ndarray]:
    """Centre of each shoulder joint (side +1 left, -1 right); raised arms lift the shoulders a little."""
    z2 = spine.z("T2", -1.0)
    x0, y0 = spine.at(spine.z("T1"))
    half = spine.cage(spine.z("T3"), patient)[0]
    lift = 25.0 if patient.arms_up else 0.0
    return {side: np.array([x0 + side * (half + 48.0), y0, z2 - 5.0 * patient.height + lift]) for side in (-1.0, 1.0)}


def _shoulder_girdle(canvas: Canvas, spine: Spine, patient: Patient, trabecular: Value) -> None:
    """Clavicles and scapulae."""
    t, h = patient.tissue, patient.height
    z2 = spine.z("T2", -1.0)
    x0, y0 = spine.at(spine.z("T1"))
    back = spine.cage(spine.z("T3"), patient)[2]
    half = spine.cage(spine.z("T3"), patient)[0]
    raise_mm = 25.0 if patient.arms_up else 0.0
    for side, glenoid in glenoids(spine, patient).items():
        medial = np.array([x0 + side * 22.0, y0 - spine.cage(z2, patient)[1] - 12.0, z2 + 4.0])
        lateral = glenoid + np.array([-side * 5.0, 6.0, 28.0])
        clavicle = smooth_curve(
            np.array(
                [
                    medial,
                    medial + np.array([side * 55.0, -12.0, 14.0]),
                    0.5 * (medial + lateral) + [side * 20, 4, 10],
                    lateral,
                ]
            ),
            12,
        )
        shelled_tube(canvas, clavicle, np.linspace(7.0, 5.5, 12), 1.4, t.cortical, trabecular, LABELS["clavicle"])
        blade_center = np.array(
            [x0 + side * (0.55 * half + 28.0), y0 + back + 28.0, spine.z("T4") - 8.0 * h + 0.5 * raise_mm]
        )
        tilt = side * (28.0 + (18.0 if patient.arms_up else 0.0))
        shelled_ellipsoid(
            canvas,
            blade_center,
            (42.0, 3.0, 70.0 * h),
            _FLAT_SHELL,
            t.cortical,
            trabecular,
            LABELS["scapula"],
            axes=frame(-side * 35.0, 0.0, tilt),
        )
        spine_of_scapula = [blade_center + np.array([-side * 35.0, 12.0, 50.0 * h]), lateral + np.array([0, 8.0, 0])]
        shelled_tube(canvas, spine_of_scapula, 6.0, _FLAT_SHELL, t.cortical, trabecular, LABELS["scapula"])
        shelled_ellipsoid(
            canvas,
            glenoid - np.array([side * 6.0, 0, 0]),
            (9.0, 14.0, 18.0),
            1.0,
            t.cortical,
            trabecular,
            LABELS["scapula"],
        )


def pelvic_landmarks(spine: Spine, patient: Patient) -> dict[str, np.ndarray]:
    """Femoral head centres (``head_right``, ``head_left``) and the pubic symphysis: heads about 17-18 cm apart,
    level with the top of the symphysis, which lies about 10 cm in front of and 9 cm below the promontory."""
    x0, y0 = spine.at(0.0)
    w = patient.width * (1.08 if patient.female else 1.0)
    heads = {
        f"head_{name}": np.array([x0 + side * 88.0 * w, y0 - 50.0 * patient.depth, -88.0 * patient.height])
        for side, name in ((-1.0, "right"), (1.0, "left"))
    }
    return heads | {"symphysis": np.array([x0, y0 - 95.0 * patient.depth, -102.0 * patient.height])}


def _pelvis(canvas: Canvas, spine: Spine, patient: Patient, trabecular: Value) -> None:
    """Iliac wings, acetabula, pubic and ischial rami, femoral heads, necks, trochanters and shafts."""
    t, h = patient.tissue, patient.height
    w = patient.width * (1.08 if patient.female else 1.0)
    x0, y0 = spine.at(0.0)
    label = LABELS["hip_bone"]
    landmarks = pelvic_landmarks(spine, patient)
    for side in (-1.0, 1.0):
        cx, cy = x0 + side * 48.0 * w, y0 - 68.0 * patient.depth

        def semi_axes(z):
            return (35.0 + (z / h + 75.0) * 0.32) * w, (58.0 + (z / h + 75.0) * 0.48) * patient.depth

        def crest(phi):
            return (52.0 - 18.0 * (phi - 1.1) ** 2) * h

        def wing(x, y, z, side=side, cx=cx, cy=cy):
            """A flaring plate: part of a cone of elliptic sections, from the sacroiliac joint round to the anterior
            superior spine, thin in the iliac fossa and thick towards the acetabulum."""
            a, b = semi_axes(z)
            u, v = side * (x - cx), y - cy
            k = torch.sqrt((u / a) ** 2 + (v / b) ** 2)
            d = (k - 1.0) * torch.minimum(a, b)
            phi = torch.atan2(u, v)
            thickness = 4.0 + 6.0 * ((-20.0 - z / h) / 55.0).clamp(0.0, 1.0)
            return torch.maximum(
                torch.maximum(d.abs() - thickness, z - crest(phi)),
                torch.maximum(-75.0 * h - z, torch.maximum(-30.0 - phi * 60.0, (phi - 1.85) * 60.0)),
            )

        low = (min(side * 140 * w, x0 + side * 10), cy - 130, -90 * h)
        high = (max(side * 140 * w, x0 + side * 10), y0 + 70, 65 * h)
        canvas.paint(low, high, wing, t.cortical, label, shells=[(1.2, trabecular, None)])
        phis = np.linspace(-0.4, 1.85, 10)
        rim_z = crest(phis) - 4.0 * h
        a, b = semi_axes(rim_z)
        rim = np.stack([cx + side * a * np.sin(phis), cy + b * np.cos(phis), rim_z], axis=1)
        shelled_tube(canvas, rim, 7.0, 1.2, t.cortical, trabecular, label)
        head = landmarks["head_left" if side > 0 else "head_right"]
        ellipsoid(
            canvas, head, (31.0, 31.0, 31.0), t.cortical, label, clip=lambda x, y, z, c=head: c[2] - 6.0 - z
        )  # acetabular roof
        shelled_ellipsoid(
            canvas, head + np.array([-side * 14.0, 0.0, 22.0]), (24.0, 30.0, 26.0), 2.0, t.cortical, trabecular, label
        )
        ellipsoid(canvas, head, (26.5, 26.5, 26.5), t.cartilage - 60.0, 0)
        symphysis = landmarks["symphysis"] + np.array([side * 6.0, 0.0, 0.0])
        tuberosity = np.array([x0 + side * 58.0 * w, head[1] + 18.0, head[2] - 52.0 * h])
        shelled_tube(
            canvas,
            [head + np.array([-side * 18.0, -20.0, 4.0]), symphysis + np.array([side * 10.0, 0, 8.0]), symphysis],
            [10.0, 8.5, 9.0],
            1.1,
            t.cortical,
            trabecular,
            label,
        )
        shelled_tube(
            canvas,
            [symphysis + np.array([0, 4.0, -12.0]), tuberosity, head + np.array([-side * 10.0, 26.0, -8.0])],
            [8.0, 12.0, 11.0],
            1.1,
            t.cortical,
            trabecular,
            label,
        )
        femur = LABELS["femur"]
        trochanter = head + np.array([side * 46.0 * w, 12.0, -26.0 * h])
        shelled_ellipsoid(canvas, head, (24.0, 24.0, 24.0), 1.2, t.cortical, trabecular, femur)
        shelled_tube(canvas, [head, trochanter], [17.0, 19.0], 1.5, t.cortical, trabecular, femur)
        shelled_ellipsoid(
            canvas,
            trochanter + np.array([side * 4.0, 6.0, 4.0]),
            (16.0, 20.0, 24.0),
            1.2,
            t.cortical,
            trabecular,
            femur,
        )
        shaft = [
            trochanter + np.array([0, 0, -10.0]),
            trochanter + np.array([-side * 8.0, -6.0, -120.0 * h]),
            trochanter + np.array([-side * 22.0, -4.0, -360.0 * h]),
        ]
        shelled_tube(canvas, shaft, [16.0, 13.5, 13.0], 5.0, t.cortical, t.marrow, femur)


def paint_skeleton(canvas: Canvas, spine: Spine, patient: Patient, texture: torch.Tensor) -> None:
    """Paint every bone of the axial skeleton, shoulder girdle, pelvis and proximal femora; ``texture`` (the
    volume's smooth noise field) mottles the trabecular bone."""
    base = patient.tissue.trabecular

    def trabecular(box, *_):
        return base + 45.0 * texture[box]

    for name, level in spine.levels.items():
        label = LABELS[{"C": "vertebra_cervical", "T": "vertebra_thoracic", "L": "vertebra_lumbar"}[name[0]]]
        _vertebra(canvas, level, patient, label, name == patient.fracture_level, trabecular)
    _sacrum(canvas, spine, patient, trabecular)
    _ribs_and_sternum(canvas, spine, patient, trabecular)
    _shoulder_girdle(canvas, spine, patient, trabecular)
    _pelvis(canvas, spine, patient, trabecular)
