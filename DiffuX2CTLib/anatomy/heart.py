"""Mediastinum: the heart (pericardial fat, myocardium, four chambers) lying left of the midline on the left
dome, the aorta (root, ascending, arch with its three branches, descending, abdominal, iliac arteries), the
pulmonary trunk and arteries, the venae cavae, and the oesophagus.

Sizes: aortic diameters ascending about 30-35 mm, descending 24-28 mm, growing with age (Hager A et al.,
"Diameters of the thoracic aorta throughout life as measured with helical computed tomography", J Thorac
Cardiovasc Surg 2002); abdominal aorta about 20 mm; pulmonary trunk below 29 mm; heart about 12 cm long and a
cardiothoracic ratio below 0.5 (Danzer CS, "The cardiothoracic ratio", Am J Med Sci 1919). Blood is about 40-50 HU
unenhanced; with contrast the left heart and aorta reach 250-400 HU in the arterial phase (Bae KT, Radiology 2010).
"""

from __future__ import annotations

import numpy as np

from .labels import LABELS
from .lungs import Diaphragm
from .patient import Patient
from .shapes import Canvas, cylinder, ellipsoid, smooth_curve, tube
from .skeleton import Spine


def _basis(u: np.ndarray) -> np.ndarray:
    """Orthonormal axes (columns) whose first column is ``u``."""
    u = u / np.linalg.norm(u)
    v = np.cross([0.0, 0.0, 1.0], u)
    v /= np.linalg.norm(v)
    return np.stack([u, v, np.cross(u, v)], axis=1)


def _front(spine: Spine, name: str, gap: float) -> np.ndarray:
    """A point ``gap`` mm in front of the vertebral body of level ``name``, at its centre height."""
    level = spine.levels[name]
    return level.center + np.array([0.0, -level.radii[1] - gap, 0.0])


def aorta_path(spine: Spine, patient: Patient, heart_base: np.ndarray) -> np.ndarray:
    """Centre line (K, 3) of the aorta from the root to the bifurcation (root, ascending, arch, descending)."""
    h = patient.height
    control = np.array(
        [
            heart_base + np.array([-8.0, -12.0, 8.0]),
            _front(spine, "T5", 58.0 * patient.depth) + np.array([-22.0, 0.0, 0.0]),
            _front(spine, "T3", 38.0 * patient.depth) + np.array([2.0, 0.0, -4.0 * h]),
            _front(spine, "T3", 8.0) + np.array([22.0, 0.0, -12.0 * h]),
            _front(spine, "T5", -4.0) + np.array([26.0, 0.0, 0.0]),
            _front(spine, "T8", -2.0) + np.array([22.0, 0.0, 0.0]),
            _front(spine, "T11", 2.0) + np.array([12.0, 0.0, 0.0]),
            _front(spine, "L1", 8.0) + np.array([10.0, 0.0, 0.0]),
            _front(spine, "L3", 10.0) + np.array([8.0, 0.0, 0.0]),
            _front(spine, "L4", 12.0) + np.array([4.0, 0.0, 0.0]),
        ]
    )
    return smooth_curve(control, 40)


def paint_heart(canvas: Canvas, spine: Spine, patient: Patient, diaphragm: Diaphragm) -> None:
    """Mediastinal fat, heart, great vessels and the oesophagus (after the lungs, which they carve)."""
    t, rng, h = patient.tissue, patient.rng, patient.height
    x7, y7 = spine.at(spine.z("T8"))
    cage_front = spine.cage(spine.z("T8"), patient)[1]
    size = rng.uniform(0.9, 1.1) * (0.92 if patient.female else 1.0) * (1 + 0.002 * max(patient.age - 50, 0))
    radii = np.array([68.0, 53.0, 45.0]) * size
    center = np.array(
        [x7 + rng.uniform(18, 34) * patient.width, y7 - 0.52 * cage_front, diaphragm.left + 0.8 * radii[2] + 10.0]
    )
    axes = _basis(np.array([0.62 + rng.normal(0, 0.06), -0.5, -0.55]))
    base = center - axes[:, 0] * 0.62 * radii[0]

    # Mediastinal fat between the lungs, from the thoracic inlet down to the heart.
    top = spine.z("T1", 1.0)
    xm, ym = spine.at(spine.z("T4"))
    # Mediastinal and epicardial fat: fat on CT (about -90 HU), the vessels and nodes inside it painted later; the
    # epicardial layer thickens with adiposity (about 2-3 mm lean, 10+ mm obese).
    mediastinal_fat = t.visceral_fat
    epicardial_mm = float(np.clip(3.0 + 0.2 * patient.fat_mm, 3.0, 12.0))
    cylinder(
        canvas,
        (xm + 2.0, ym - spine.levels["T4"].radii[1] - 28.0, 0.5 * (top + center[2])),
        np.array([26.0, 30.0]) * (0.85 + 0.4 * patient.visceral),  # more mediastinal fat with more visceral fat
        0.5 * (top - center[2]),
        mediastinal_fat,
        0,
        power=2.0,
    )
    ellipsoid(canvas, center, radii + epicardial_mm, mediastinal_fat, 0, axes=axes)
    ellipsoid(canvas, center, radii, t.myocardium, LABELS["heart"], axes=axes)

    def local(u, v, w):
        return center + axes @ np.array([u, v, w]) * size

    chambers = [
        (local(8, 12, 6), (40, 20, 19), t.arterial),  # left ventricle
        (local(2, -22, -8), (40, 20, 13), t.blood),  # right ventricle
        (local(-40, 18, 14), (22, 22, 18), t.arterial),  # left atrium
        (local(-34, -26, 4), (24, 20, 24), t.blood),  # right atrium
    ]
    for c, r, value in chambers:
        ellipsoid(canvas, c, np.array(r) * size, value, LABELS["heart"], axes=axes)

    aorta = aorta_path(spine, patient, base)
    grow = 1 + 0.004 * max(patient.age - 40, 0)
    radius = (
        np.interp(np.arange(len(aorta)), [0, 8, 16, 24, 39], [15.5, 16.0, 13.5, 12.0, 9.5])
        * grow
        * (0.92 if patient.female else 1.0)
    )
    tube(canvas, aorta, radius, t.arterial, LABELS["aorta"])
    arch_top = aorta[int(np.argmax(aorta[:, 2]))]
    for dx, r in ((-16.0, 6.5), (-2.0, 4.5), (12.0, 5.0)):
        start = arch_top + np.array([dx, 0.0, 0.0])
        end = start + np.array([dx * 1.6 + (16.0 if dx > 0 else 0.0), -6.0 if dx < 0 else 4.0, 75.0 * h])
        tube(canvas, [start, end], r, t.arterial)
    bifurcation = aorta[-1]
    x0, y0 = spine.at(0.0)
    for side in (-1.0, 1.0):
        iliac = [
            bifurcation,
            np.array([x0 + side * 42.0, y0 - 28.0, -25.0 * h]),
            np.array([x0 + side * 75.0, y0 - 70.0, -85.0 * h]),
        ]
        tube(canvas, iliac, [8.0, 6.5, 5.5], t.arterial, LABELS["aorta"])
        vein = [
            bifurcation + np.array([-14.0, 6.0, -10.0]),
            np.array([x0 + side * 36.0, y0 - 20.0, -25.0 * h]),
            np.array([x0 + side * 70.0, y0 - 60.0, -85.0 * h]),
        ]
        tube(canvas, vein, [9.0, 7.5, 6.5], t.blood, LABELS["vena_cava"])

    # Pulmonary trunk from the right ventricle's outflow to the bifurcation below the arch, then to the hila.
    carina = _front(spine, "T5", 24.0) + np.array([0.0, 0.0, 0.5 * spine.levels["T5"].height])
    outflow = local(-20, -18, -22)
    split = carina + np.array([10.0, -22.0, -14.0])
    tube(
        canvas,
        smooth_curve(np.array([outflow, 0.5 * (outflow + split) + np.array([8.0, -6.0, 0.0]), split]), 6),
        13.0 * size,
        t.blood,
        LABELS["pulmonary_artery"],
    )
    for side in (-1.0, 1.0):
        hilum = carina + np.array([side * 50.0, 2.0, -12.0])
        tube(canvas, [split, hilum], [10.5, 8.5], t.blood, LABELS["pulmonary_artery"])
        pulmonary_vein = carina + np.array([side * 40.0, 8.0, -45.0])
        tube(canvas, [pulmonary_vein, local(-44, 18, 14)], 6.0, t.arterial, LABELS["heart"])

    # Venae cavae: superior into the right atrium, inferior from the pelvis through the liver.
    ra = chambers[3][0]
    svc = [
        np.array([xm - 28.0, ym - 45.0, top + 20.0]),
        np.array([xm - 30.0, ym - 48.0, spine.z("T4")]),
        ra + np.array([0.0, 0.0, 20.0]),
    ]
    tube(canvas, svc, 10.0, t.blood, LABELS["vena_cava"])
    ivc = [
        ra,
        np.array([x7 - 30.0, y7 - 20.0, diaphragm.right - 25.0]),
        _front(spine, "L1", 14.0) + np.array([-24.0, 0, 0]),
        _front(spine, "L4", 16.0) + np.array([-16.0, 0, 0]),
        bifurcation + np.array([-14.0, 6.0, -10.0]),
    ]
    tube(canvas, smooth_curve(np.array(ivc), 12), 11.0, t.blood, LABELS["vena_cava"])

    # Oesophagus behind the trachea and the left atrium, to the stomach's cardia left of T11.
    oesophagus = [
        _front(spine, "C6", 4.0),
        _front(spine, "T4", 4.0) + np.array([4.0, 0, 0]),
        _front(spine, "T8", 6.0) + np.array([10.0, 0, 0]),
        _front(spine, "T11", 20.0) + np.array([35.0, 0, 0]),
    ]
    tube(canvas, smooth_curve(np.array(oesophagus), 10), 8.0, t.muscle)
