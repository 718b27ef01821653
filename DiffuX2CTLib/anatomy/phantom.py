"""The public entry: a seed (and a region) in, a HU volume out.

``generate_phantom`` draws the patient, poses it so the region's field of view is centred on the grid, paints
every organ system into bounding-box views, then adds scanner noise and the reconstruction kernel's blur or
sharpening. ``whole_trunk`` renders the same patient from the neck (C5) to the proximal femora as one tall volume.
"""

from __future__ import annotations

import numpy as np
import torch

from ..imaging.geometry import VolumeGrid
from .abdomen import paint_abdomen
from .body import Outline, paint_body
from .extras import paint_extras, paint_table
from .heart import paint_heart
from .lungs import Diaphragm, paint_lungs
from .patient import Patient, draw_patient
from .shapes import Canvas, frame
from .skeleton import Spine, build_spine, glenoids, paint_skeleton
from .texture import scanner, smooth_field

REGIONS = ("chest", "abdomen", "lumbar", "pelvis", "trunk")
AIR_HU, MAX_HU = -1024.0, 3071.0
_DEFORMATION_BOX = (np.array([-260.0, -260.0, -700.0]), np.array([260.0, 260.0, 800.0]))


def _focus(region: str, spine: Spine, patient: Patient, outline: Outline, rng: np.random.Generator) -> np.ndarray:
    """Body-frame point the region's field of view is centred on (seeded jitter of a few cm)."""
    if region not in REGIONS:
        raise ValueError(f"region must be one of {REGIONS}, got {region!r}")
    z = {
        "chest": lambda: spine.z("T7") + rng.uniform(-25, 25),
        "abdomen": lambda: spine.z("L1") + rng.uniform(-30, 20),
        "lumbar": lambda: spine.z("L3") + rng.uniform(-25, 25),
        "pelvis": lambda: -55.0 * patient.height + rng.uniform(-25, 25),
        "trunk": lambda: rng.uniform(-100.0 * patient.height, spine.z("C6")),
    }[region]()
    at = outline.sample(z)
    if region == "lumbar":  # spine CTs are centred on the vertebrae (body to spinous processes), not the belly
        y = spine.at(z)[1] + 10.0
    else:
        y = at["y"] + 0.5 * (at["back"] + at["fat_back"] - at["front"] - at["fat_front"])
    return np.array([at["x"] + rng.uniform(-10, 10), y + rng.uniform(-10, 10), z])


def _canvas(
    shape: tuple[int, int, int],
    origin_lps: np.ndarray,
    spacing: float,
    patient: Patient,
    focus_world: np.ndarray,
    focus_body: np.ndarray,
    labels: bool,
    device: torch.device,
) -> Canvas:
    """Voxel grid -> body-frame coordinates: inverse rigid pose, then the smooth deformation warp."""
    rotation = frame(patient.yaw, patient.pitch, patient.roll)
    translation = focus_world - rotation @ focus_body
    # World axes relative to the body origin; the rigid body point of a voxel is rotation^T times that.
    axes = [
        torch.arange(n, device=device, dtype=torch.float32) * spacing + float(o - t)
        for n, o, t in zip(shape[::-1], origin_lps, translation)
    ]
    views = (axes[0].view(1, 1, -1), axes[1].view(1, -1, 1), axes[2].view(-1, 1, 1))
    # The warp: trilinear interpolation of the control displacements, separable along the axes (the few-degree
    # rotation is ignored for this low-frequency field, which stays attached to the body).
    low, high = _DEFORMATION_BOX
    weights = [_hat_weights(a, float(low[i]), float(high[i]), patient.deformation.shape[1]) for i, a in enumerate(axes)]
    control = torch.as_tensor(patient.deformation, dtype=torch.float32, device=device)  # (3, z, y, x) control points
    coords = torch.empty((3, *shape), dtype=torch.float32, device=device)
    for i in range(3):
        along_x = torch.einsum("abc,xc->abx", control[i], weights[0])
        along_xy = torch.einsum("abx,yb->ayx", along_x, weights[1])
        warp = (weights[2] @ along_xy.reshape(along_xy.shape[0], -1)).reshape(shape)
        coords[i] = (
            warp.add_(views[0] * float(rotation[0, i]))
            .add_(views[1] * float(rotation[1, i]))
            .add_(views[2] * float(rotation[2, i]))
        )
    return Canvas(
        hu=torch.full(shape, AIR_HU, dtype=torch.float32, device=device),
        labels=torch.zeros(shape, dtype=torch.uint8, device=device) if labels else None,
        coords=coords,
        rotation=rotation,
        translation=translation,
        origin_lps=np.asarray(origin_lps, dtype=np.float64),
        spacing_mm=float(spacing),
        slack_mm=float(np.abs(patient.deformation).max()),
    )


def _hat_weights(positions: torch.Tensor, low: float, high: float, knots: int) -> torch.Tensor:
    """``(len(positions), knots)`` linear-interpolation weights of evenly spaced knots over ``[low, high]``
    (clamped at the ends)."""
    u = ((positions - low) / (high - low) * (knots - 1)).clamp(0, knots - 1)
    return (1.0 - (u[:, None] - torch.arange(knots, device=positions.device, dtype=positions.dtype)).abs()).clamp(
        min=0.0
    )


def _paint(canvas: Canvas, patient: Patient, spine: Spine, outline: Outline) -> torch.Tensor:
    """Every organ system in painting order (outer to inner, soft tissue before bone), then the scanner."""
    texture = smooth_field(
        tuple(canvas.hu.shape), patient.seed, 1, max(2, round(6.0 / canvas.spacing_mm)), canvas.hu.device
    )
    paint_body(canvas, spine, patient, outline, glenoids(spine, patient), texture)
    diaphragm = Diaphragm(spine, patient)
    paint_abdomen(canvas, spine, patient, outline, diaphragm, texture)
    paint_lungs(canvas, spine, patient, diaphragm, texture)
    paint_heart(canvas, spine, patient, diaphragm)
    paint_skeleton(canvas, spine, patient, texture)
    paint_extras(canvas, spine, patient, outline, diaphragm)
    paint_table(canvas, patient, outline)
    hu = scanner(canvas.hu, patient.seed, patient.noise_hu, patient.kernel)
    return hu.clamp_(AIR_HU, MAX_HU)


def generate_phantom(
    seed: int,
    grid: VolumeGrid | None = None,
    region: str = "trunk",
    implant: bool | None = None,
    device: str | torch.device = "cpu",
    labels: bool = False,
) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    """A procedural adult CT in HU, float32 ``[z, y, x]`` on ``grid`` (default 128^3 at 2.5 mm, LPS).

    Args:
        seed: decides everything (sex, habitus, posture, organs, extras, noise); equal seeds give equal volumes.
        grid: output grid; the region's field of view is centred on its centre.
        region: one of :data:`REGIONS`; ``trunk`` centres the view anywhere from the neck to the hips (seeded).
        implant: spinal screws and rods on or off; None lets the seed decide.
        device: where to paint; CPU and GPU agree to float tolerance.
        labels: also return the uint8 label map (table in :mod:`.labels`).
    """
    grid = grid or VolumeGrid(128, 2.5)
    device = torch.device(device)
    patient = draw_patient(seed, implant)
    spine = build_spine(patient)
    outline = Outline(spine, patient, device)
    focus = _focus(region, spine, patient, outline, np.random.default_rng([seed, REGIONS.index(region)]))
    shape = (grid.size,) * 3
    canvas = _canvas(
        shape,
        grid.origin_lps,
        grid.spacing_mm,
        patient,
        np.asarray(grid.center_lps, dtype=np.float64),
        focus,
        labels,
        device,
    )
    hu = _paint(canvas, patient, spine, outline)
    return (hu, canvas.labels) if labels else hu


def generate_batch(
    seeds: list[int], grid: VolumeGrid, regions: list[str], device: str | torch.device = "cpu"
) -> torch.Tensor:
    """``(B, N, N, N)`` HU volumes, one :func:`generate_phantom` per (seed, region)."""
    if len(seeds) != len(regions):
        raise ValueError(f"{len(seeds)} seeds but {len(regions)} regions")
    return torch.stack([generate_phantom(s, grid, r, device=device) for s, r in zip(seeds, regions)])


def whole_trunk(
    seed: int,
    spacing_mm: float = 2.5,
    in_plane_voxels: int = 128,
    device: str | torch.device = "cpu",
    labels: bool = False,
    implant: bool | None = None,
) -> tuple[torch.Tensor, tuple[float, float, float]] | tuple[torch.Tensor, tuple[float, float, float], torch.Tensor]:
    """The seed's patient from C5 to the proximal femora as a tall ``[z, y, x]`` HU volume and its origin (LPS mm
    of voxel (0, 0, 0)), with the label map when ``labels``; in-plane centred on the body at the chest, z from
    about 10 cm below the femoral heads to 3 cm above C5, centred on z = 0."""
    device = torch.device(device)
    patient = draw_patient(seed, implant)
    spine = build_spine(patient)
    outline = Outline(spine, patient, device)
    bottom, top = -190.0 * patient.height, spine.z("C5", 1.0) + 30.0
    nz = int(np.ceil((top - bottom) / spacing_mm))
    focus = _focus("chest", spine, patient, outline, np.random.default_rng([seed, 99]))
    focus[2] = 0.5 * (top + bottom)
    half = (in_plane_voxels - 1) / 2.0 * spacing_mm
    origin = np.array([-half, -half, -(nz - 1) / 2.0 * spacing_mm])
    canvas = _canvas(
        (nz, in_plane_voxels, in_plane_voxels), origin, spacing_mm, patient, np.zeros(3), focus, labels, device
    )
    hu = _paint(canvas, patient, spine, outline)
    origin_lps = tuple(float(v) for v in origin)
    return (hu, origin_lps, canvas.labels) if labels else (hu, origin_lps)
