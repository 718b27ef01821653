"""Abdomen and pelvis: liver (right, under the right dome) with gallbladder and portal vein, spleen (left,
posterior), stomach with an air-fluid level, duodenum, pancreas, kidneys (cortex, medulla, sinus fat, perirenal
fat; the left higher), colon with gas and stool, small-bowel loops, bladder, and uterus or prostate.

Volumes aimed for (adult reference values, ICRP Publication 89, 2002; Geraghty EM et al., "Normal organ volume
assessment from abdominal CT", Abdom Imaging 2004: mean liver 1.41 L in women and 1.71 L in men, spleen 0.18 and
0.24 L, kidney 0.16 and 0.19 L): liver about 1.2-1.8 L, spleen 0.15-0.25 L, each kidney 0.12-0.19 L (length
10-12 cm, Emamian SA et al., "Kidney dimensions at sonography", AJR 1993). Supine, gas rises to the anterior
(non-dependent, -y) side of the stomach and colon.
"""

from __future__ import annotations

import numpy as np
import torch

from .body import Outline
from .labels import LABELS
from .lungs import Diaphragm
from .patient import Patient
from .shapes import Canvas, ellipsoid, frame, plane_distance, smooth_curve, tube
from .skeleton import Spine, pelvic_landmarks


def _hollow(
    canvas: Canvas,
    path: np.ndarray,
    radius,
    wall: float,
    content: float,
    gas_fraction: float,
    label: int,
    t_wall: float,
) -> None:
    """A hollow viscus along ``path``: wall, fluid or stool content, and a gas layer on top (anterior)."""
    radius = np.broadcast_to(np.asarray(radius, dtype=np.float64), (len(path),))
    tube(canvas, path, radius, t_wall, label)
    tube(canvas, path, np.maximum(radius - wall, 1.0), content, label)
    if gas_fraction > 0.0:
        level = path[:, 1].mean() + radius.mean() * (1.0 - 2.0 * gas_fraction)
        tube(
            canvas,
            path,
            np.maximum(radius - wall, 1.0),
            -1000.0,
            label,
            clip=plane_distance((0.0, level, 0.0), (0.0, 1.0, 0.0)),
        )


def paint_abdomen(
    canvas: Canvas, spine: Spine, patient: Patient, outline: Outline, diaphragm: Diaphragm, texture: torch.Tensor
) -> None:
    """All abdominal and pelvic organs, in the visceral fat the body painted."""
    t, rng, h = patient.tissue, patient.rng, patient.height
    x0, y0 = spine.at(spine.z("L1"))
    cage_half, cage_front, cage_back = spine.cage(diaphragm.right, patient)

    def inside_wall(x, y, z):
        return outline.distances(x, y, z, (18.0,))[0]

    # Liver: right lobe under the right dome, left lobe across the midline in front of the stomach.
    s = rng.uniform(0.9, 1.06) * (0.96 if patient.female else 1.0)
    right = np.array([x0 - 0.48 * cage_half, y0 - 0.30 * cage_front, diaphragm.right - 62.0 * s])
    ellipsoid(
        canvas,
        right,
        np.array([76.0, 92.0, 82.0]) * s,
        t.liver,
        LABELS["liver"],
        axes=frame(-10, 0, -12),
        clip=inside_wall,
    )
    left_lobe = np.array([x0 + 18.0, y0 - 0.72 * cage_front, diaphragm.right - 50.0 * s])
    ellipsoid(
        canvas,
        left_lobe,
        np.array([62.0, 30.0, 36.0]) * s,
        t.liver,
        LABELS["liver"],
        axes=frame(20, 0, 15),
        clip=inside_wall,
    )
    ellipsoid(canvas, right + np.array([8.0, -52.0, -70.0]) * s, (15.0, 14.0, 34.0), t.fluid, 0, axes=frame(0, 25, 0))
    portal = [
        np.array([x0 + 8.0, y0 - 40.0, spine.z("L1")]),
        np.array([x0 - 30.0, y0 - 48.0, spine.z("T12")]),
        right + np.array([10.0, -10.0, 10.0]),
    ]
    tube(canvas, portal, [7.0, 7.0, 4.0], t.blood, 0)

    spleen = np.array([x0 + 0.78 * cage_half, y0 + 0.75 * cage_back, diaphragm.left - 70.0])

    # Stomach: fundus under the left dome down to the antrum and pylorus, gas on top, then the duodenal C-loop.
    d = diaphragm.left
    stomach = smooth_curve(
        np.array(
            [
                [x0 + 45.0, y0 - 10.0, d - 30.0],
                [x0 + 62.0, y0 - 0.5 * cage_front, d - 85.0],
                [x0 + 20.0, y0 - 0.75 * cage_front, d - 125.0],
                [x0 - 25.0, y0 - 0.6 * cage_front, d - 110.0],
            ]
        ),
        10,
    )
    fill = rng.uniform(0.5, 1.1)
    _hollow(
        canvas,
        stomach,
        np.array([34, 34, 32, 29, 26, 23, 20, 17, 14, 12]) * fill,
        4.0,
        t.fluid,
        rng.uniform(0.05, 0.45),
        LABELS["stomach"],
        t.bowel_wall,
    )
    duodenum = smooth_curve(
        np.array(
            [
                stomach[-1],
                [x0 - 50.0, y0 - 25.0, spine.z("L2")],
                [x0 - 20.0, y0 - 22.0, spine.z("L3")],
                [x0 + 30.0, y0 - 30.0, spine.z("L2")],
            ]
        ),
        10,
    )
    _hollow(canvas, duodenum, 12.0, 3.0, t.fluid, 0.0, LABELS["bowel"], t.bowel_wall)
    pancreas = smooth_curve(
        np.array(
            [
                [x0 - 38.0, y0 - 38.0, spine.z("L2", 1.0)],
                [x0 + 10.0, y0 - 45.0, spine.z("L1")],
                spleen + np.array([-35.0, -15.0, -5.0]),
            ]
        ),
        8,
    )
    tube(canvas, pancreas, np.linspace(15.0, 9.0, 8), t.pancreas, LABELS["pancreas"])

    # Kidneys in their perirenal fat, the left about 1-2 cm higher.
    for side, name, level in ((-1.0, "kidney_right", "L2"), (1.0, "kidney_left", "L1")):
        s = rng.uniform(0.9, 1.08)
        lv = spine.levels[level]
        c = lv.center + np.array([side * 62.0 * patient.width, lv.radii[1] + 12.0, 8.0 * h])
        axes = frame(-side * 30.0, 10.0, -side * 14.0)
        r = np.array([30.0, 25.0, 60.0]) * s
        ellipsoid(canvas, c, r + 12.0, t.fat, 0, axes=axes)
        ellipsoid(canvas, c, r, t.kidney, LABELS[name], axes=axes)
        ellipsoid(canvas, c, r - np.array([8.0, 7.0, 12.0]), t.kidney_medulla, LABELS[name], axes=axes)
        ellipsoid(
            canvas, c + axes @ np.array([-side * 12.0, -6.0, 0.0]), (8.0, 8.0, 22.0), t.fat, LABELS[name], axes=axes
        )
        ellipsoid(
            canvas, c + axes @ np.array([-side * 16.0, -8.0, 0.0]), (6.0, 5.0, 10.0), t.urine, LABELS[name], axes=axes
        )

    # Spleen behind the stomach along ribs 9-11, lateral to the left kidney's upper pole.
    s = rng.uniform(0.9, 1.12)
    ellipsoid(
        canvas,
        spleen,
        np.array([26.0, 54.0, 56.0]) * s,
        t.spleen,
        LABELS["spleen"],
        axes=frame(-35, 0, 10),
        clip=inside_wall,
    )

    # Colon: caecum, ascending, transverse, descending, sigmoid, rectum; then small-bowel loops in the middle.
    xs, ys = spine.at(0.0)
    front = outline.sample(spine.z("L3"))["front"]
    colon = smooth_curve(
        np.array(
            [
                [x0 - 78.0, ys - 50.0, -10.0 * h],
                [x0 - 90.0, y0 - 25.0, spine.z("L3")],
                [x0 - 80.0, y0 - 45.0, spine.z("L2", 1.0)],
                [x0 - 30.0, y0 - 0.85 * front, spine.z("L3") - rng.uniform(0, 40)],
                [x0 + 40.0, y0 - 0.8 * front, spine.z("L2")],
                [x0 + 80.0, y0 - 30.0, spine.z("L1")],
                [x0 + 92.0, y0 - 15.0, spine.z("L3")],
                [x0 + 70.0, ys - 25.0, -10.0 * h],
                [x0 + 20.0, ys - 55.0, -45.0 * h],
                [xs, ys + 38.0, -75.0 * h],
                [xs, ys + 30.0, -115.0 * h],
            ]
        ),
        33,
    )
    radius = np.interp(np.arange(33), [0, 3, 10, 20, 26, 29, 32], [26, 22, 20, 18, 15, 20, 16])
    for part in range(0, 33, 6):
        piece = colon[part : part + 7]
        if len(piece) > 1:
            stool = rng.uniform(-250, 0)
            _hollow(
                canvas, piece, radius[part : part + 7], 3.0, stool, rng.uniform(0.0, 0.7), LABELS["bowel"], t.bowel_wall
            )
    loops = _small_bowel(np.array([x0 + 25.0, y0 - 35.0, spine.z("L2")]), spine, outline, rng)
    for i in range(0, len(loops) - 1, 6):
        _hollow(
            canvas,
            loops[i : i + 7],
            rng.uniform(10, 14),
            2.5,
            t.fluid if rng.random() < 0.8 else -1000.0,
            0.0,
            LABELS["bowel"],
            t.bowel_wall,
        )

    # Pelvic organs: bladder behind the symphysis, uterus above and behind it or the prostate below it.
    fill = patient.bladder_fill
    symphysis = pelvic_landmarks(spine, patient)["symphysis"]
    bladder = symphysis + np.array([0.0, 30.0 + 10.0 * fill, 22.0 + 22.0 * fill])
    r = np.array([28.0 + 24.0 * fill, 22.0 + 16.0 * fill, 20.0 + 22.0 * fill])
    ellipsoid(canvas, bladder, r + 3.0, t.bowel_wall, LABELS["bladder"])
    ellipsoid(canvas, bladder, r, t.urine, LABELS["bladder"])
    if patient.female:
        ellipsoid(
            canvas,
            bladder + np.array([0.0, r[1] + 22.0, r[2] + 10.0]),
            (28.0, 22.0, 38.0),
            t.muscle + 10.0 * (patient.contrast != "none"),
            0,
            axes=frame(0, -30, 0),
        )
    else:
        ellipsoid(canvas, symphysis + np.array([0.0, 32.0, -8.0]), (20.0, 16.0, 17.0), t.muscle, 0)


def _small_bowel(
    start: np.ndarray, spine: Spine, outline: Outline, rng: np.random.Generator, steps: int = 42
) -> np.ndarray:
    """A random walk of about 1 m of small bowel, kept inside the mid-abdomen (L2 to the pelvic brim)."""
    top, bottom = spine.z("L2"), -60.0 * spine.levels["L5"].height / 27.5
    x0, y0 = spine.at(0.5 * (top + bottom))
    front = outline.sample(0.5 * (top + bottom))["front"]
    center = np.array([x0, y0 - 0.45 * front, 0.5 * (top + bottom)])
    radii = np.array([80.0, 0.35 * front, 0.5 * (top - bottom)])
    points, direction = [start], rng.normal(size=3)
    for _ in range(steps):
        direction = direction / np.linalg.norm(direction) + rng.normal(0, 0.8, 3)
        step = points[-1] + 24.0 * direction / np.linalg.norm(direction)
        offset = (step - center) / radii
        if np.linalg.norm(offset) > 1.0:
            step = center + offset / np.linalg.norm(offset) * radii * 0.95
            direction = center - step
        points.append(step)
    return smooth_curve(np.array(points), 2 * steps)
