"""What is not anatomy but is in real scans, and findings at low rates: the scanner table (carbon-fibre shells
around foam, with or without a pad), metal (pedicle screws and rods, sternotomy wires, ECG electrodes and leads),
lung nodules and a pleural effusion. Scoliosis and a vertebral compression fracture are drawn in
:mod:`.patient` and shaped in :mod:`.skeleton`."""

from __future__ import annotations

import numpy as np
import torch

from .body import Outline
from .labels import LABELS
from .lungs import Diaphragm
from .patient import Patient
from .shapes import Canvas, ellipsoid, tube
from .skeleton import Spine

METAL_HU = 3071.0


def _screws_and_rods(canvas: Canvas, spine: Spine, patient: Patient) -> None:
    """Bilateral pedicle screws at 2-4 consecutive levels joined by a rod on each side."""
    rng = patient.rng
    names = ["T11", "T12", "L1", "L2", "L3", "L4", "L5"]
    count = int(rng.integers(2, 5))
    first = int(rng.integers(0, len(names) - count + 1))
    heads = {-1.0: [], 1.0: []}
    for name in names[first : first + count]:
        lv = spine.levels[name]
        rx, ry = lv.radii
        for side in (-1.0, 1.0):
            entry = lv.center + lv.axes @ np.array([side * (0.6 * rx + 10.0), ry + 30.0, 0.0])
            tip = lv.center + lv.axes @ np.array([side * 0.2 * rx, -0.5 * ry, 0.0])
            tube(canvas, [entry, tip], [3.4, 2.8], METAL_HU, LABELS["metal"])
            head = entry + lv.axes @ np.array([side * 2.0, 6.0, 0.0])
            ellipsoid(canvas, head, (6.5, 6.5, 6.5), METAL_HU, LABELS["metal"])
            heads[side].append(head)
    for _side, points in heads.items():
        rod = np.array(points) + np.array([0.0, 3.0, 0.0])
        rod = np.vstack([rod[0] + (rod[0] - rod[1]) * 0.25, rod, rod[-1] + (rod[-1] - rod[-2]) * 0.25])
        tube(canvas, rod, 3.0, METAL_HU, LABELS["metal"])


def _sternal_wires(canvas: Canvas, spine: Spine, patient: Patient) -> None:
    """Five to seven wire loops around the sternum after a sternotomy."""
    top = spine.z("T2", -1.0)
    for k in range(int(patient.rng.integers(5, 8))):
        z = top - (15.0 + 20.0 * k) * patient.height
        x0, y0 = spine.at(z)
        y = y0 - spine.cage(z, patient)[1] - 9.0
        angle = np.linspace(0, 2 * np.pi, 13)
        loop = np.stack([x0 + 22.0 * np.cos(angle), y + 10.0 * np.sin(angle), np.full_like(angle, z)], axis=1)
        tube(canvas, loop, 1.0, METAL_HU, LABELS["metal"])


def _ecg_leads(canvas: Canvas, spine: Spine, patient: Patient, outline: Outline) -> None:
    """Electrodes on the anterior chest skin with their wires running off to the side."""
    rng = patient.rng
    for _ in range(int(rng.integers(3, 6))):
        z = spine.z("T" + str(int(rng.integers(3, 10))))
        at = outline.sample(z)
        x = at["x"] + rng.uniform(-0.7, 0.7) * at["half"]
        y = (
            at["y"]
            - (at["front"] + at["fat_front"])
            * np.sqrt(max(0.0, 1 - ((x - at["x"]) / (at["half"] + at["fat_side"])) ** 2))
            - 3.0
        )
        electrode = np.array([x, y, z])
        ellipsoid(canvas, electrode, (6.0, 2.0, 6.0), 1800.0, LABELS["metal"])
        end = electrode + np.array([np.sign(x - at["x"] + 1e-3) * 150.0, -10.0, rng.uniform(-60, 60)])
        tube(canvas, [electrode, end], 1.0, 1500.0, LABELS["metal"])


def paint_extras(canvas: Canvas, spine: Spine, patient: Patient, outline: Outline, diaphragm: Diaphragm) -> None:
    """Metal and findings, each only when the patient's draws call for it."""
    rng, t = patient.rng, patient.tissue
    if patient.effusion:
        side = 1.0 if patient.effusion == "left" else -1.0
        level = diaphragm.y0 + rng.uniform(-10.0, 50.0)
        peak = diaphragm.left if side > 0 else diaphragm.right
        top = peak + rng.uniform(0.0, 60.0)
        low, high = diaphragm.box(side)

        def effusion(x, y, z):
            return torch.maximum(diaphragm.lung_distance(x, y, z, side), torch.maximum(level - y, z - top))

        canvas.paint(low, high, effusion, t.fluid, LABELS["effusion"], below=300.0)
    for _ in range(patient.nodules):
        side = 1.0 if rng.random() < 0.5 else -1.0
        center = diaphragm.sample_points(side, 1, rng)[0]
        r = rng.uniform(3.0, 12.0)
        ellipsoid(
            canvas,
            center,
            (r, r * rng.uniform(0.8, 1.2), r * rng.uniform(0.8, 1.2)),
            rng.uniform(10, 60),
            LABELS["nodule"],
        )
    if patient.implant:
        _screws_and_rods(canvas, spine, patient)
    if patient.wires:
        _sternal_wires(canvas, spine, patient)
    if patient.ecg_leads:
        _ecg_leads(canvas, spine, patient, outline)


def paint_table(canvas: Canvas, patient: Patient, outline: Outline) -> None:
    """The couch under the patient's back (posterior, +y), fixed in the scanner frame: a curved carbon-fibre
    cradle (two thin dense shells around foam) and sometimes a pad."""
    if not patient.table:
        return
    rng = patient.rng
    nz, ny, nx = canvas.hu.shape
    centre_world = canvas.origin_lps + 0.5 * canvas.spacing_mm * (np.array([nx, ny, nz]) - 1)
    centre_body = canvas.rotation.T @ (centre_world - canvas.translation)  # rigid pose only: no device sync
    at = outline.sample(float(centre_body[2]))
    back = canvas.world([at["x"], at["y"] + at["back"] + at["fat_back"], centre_body[2]])
    pad = rng.uniform(0.0, 40.0) if rng.random() < 0.6 else 0.0
    top = back[1] + pad + rng.uniform(0.0, 6.0)
    half_width, curve, core = rng.uniform(200, 250), rng.uniform(1 / 3000, 1 / 1200), rng.uniform(25, 50)
    x0 = float(back[0])
    z_lo = float(canvas.origin_lps[2]) - 10.0
    z_hi = z_lo + nz * canvas.spacing_mm + 20.0
    low, high = (
        (x0 - half_width - 5, top - curve * half_width**2 - 5.0, z_lo),
        (x0 + half_width + 5, top + core + 10.0, z_hi),
    )

    def sheet(offset: float, thickness: float):
        def distance(x, y, z):
            surface = top + offset - curve * (x - x0) ** 2
            return torch.maximum((y - surface - 0.5 * thickness).abs() - 0.5 * thickness, (x - x0).abs() - half_width)

        return distance

    if pad > 0.0:
        canvas.paint_world(
            (low[0], top - pad - 2, z_lo),
            (high[0], top + 1, z_hi),
            lambda x, y, z: torch.maximum(
                (y - (top - 0.5 * pad)).abs() - 0.5 * pad, (x - x0).abs() - half_width + 20.0
            ),
            rng.uniform(-900, -750),
            LABELS["table"],
        )
    canvas.paint_world(low, high, sheet(core * 0.5, core), rng.uniform(-950, -850), LABELS["table"])
    shell = rng.uniform(150, 500)
    canvas.paint_world(low, high, sheet(0.0, 2.0), shell, LABELS["table"])
    canvas.paint_world(low, high, sheet(core, 2.5), shell, LABELS["table"])
