"""Anatomy statistics: the procedural phantoms beside the real training patients, measured the same way.

Measures body size, subcutaneous fat, tissue densities, lung parenchyma and vessels, vertebral trabecular bone and
cortical bone, arms, couch and outline on

- the real CTs that may train (the patient split of :mod:`DiffuX2CTLib.realct.split`), exactly these files of the
  cache's ``real-ct/`` folder (``diffux2ct fetch-real``; ``$DIFFUX2CT_CACHE`` moves it):
  ``plastimatch-4dct-t0.nrrd`` and ``plastimatch-4dct-t5.nrrd`` (one patient; his left lung is consolidated by a
  mass, so lung statistics take his right lung only), ``pyradiomics-lung1.nrrd`` and ``pyradiomics-lung2.nrrd``
  (chests, laterally cropped), ``platipy-sample-chest.nrrd`` and ``lung-pet-ct-dx-a0001.nrrd`` (arms raised). No
  other real CT is read;
- phantoms: seeds 0..N-1 of the ``chest`` and ``abdomen`` regions on the training grid ``VolumeGrid(160, 2.5)``.

Real CTs are brought to 2.5 mm voxels as a 2.5 mm reconstruction would show them (a Gaussian whose width makes up
the difference between the voxel sizes, then linear resampling). Every statistic is also measured after 2x2x2
average pooling to the 5 mm voxels the 64^3 model sees. ``--before <commit>`` measures that commit's generator too
(its ``DiffuX2CTLib`` exported with ``git archive`` and run in a subprocess), so one command gives before, after
and real side by side:

    PYTHONPATH=. .venv/bin/python Testing/benchmarks/anatomy_statistics.py [--seeds 16] [--before <commit>] \\
        [--out Testing/benchmarks/results/anatomy-statistics.md]

``--montage PNG --seeds 4`` instead draws two real training chests above that many chest phantoms.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

import numpy as np
import SimpleITK as sitk
import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parents[2]
CODE = Path(os.environ.get("ANATOMY_STATISTICS_CODE", str(ROOT)))  # a commit's export for --before
sys.path.insert(0, str(CODE))

from DiffuX2CTLib.anatomy.phantom import generate_phantom
from DiffuX2CTLib.core.cache import cache_root
from DiffuX2CTLib.imaging.geometry import VolumeGrid
from DiffuX2CTLib.realct.cache import volumes_folder

SPACING_MM = 2.5
GRID = VolumeGrid(160, SPACING_MM)
REAL_FOLDER = volumes_folder(cache_root())
TRAINING_FILES = {
    # file: which lung to measure (None: both)
    "plastimatch-4dct-t0.nrrd": "right",
    "plastimatch-4dct-t5.nrrd": "right",
    "pyradiomics-lung1.nrrd": None,
    "pyradiomics-lung2.nrrd": None,
    "platipy-sample-chest.nrrd": None,
    "lung-pet-ct-dx-a0001.nrrd": None,
}
"""The only real CTs this script reads: the training patients of the split (validation ones are never read)."""
REGIONS = ("chest", "abdomen")

BODY_HU, LUNG_HU, VESSEL_HU = -500.0, -400.0, -500.0
FAT_HU = (-190.0, -30.0)  # adipose tissue (Mitsiopoulos 1998; Kvist 1986)
SOFT_HU = (-29.0, 150.0)  # skeletal muscle and other soft tissue (Mitsiopoulos 1998)
BONE_HU = 250.0  # the bone Dice threshold of the evaluation
DENSE_BONE_HU = 500.0
TRABECULAR_EDGE_HU = 70.0  # a vertebral body's extent along a profile (smoothed HU)
MIN_LUNG_ML = 30.0


# --- masks -----------------------------------------------------------------------------------------------------


def _image(mask: np.ndarray) -> sitk.Image:
    return sitk.GetImageFromArray(mask.astype(np.uint8))


def _array(image: sitk.Image) -> np.ndarray:
    return sitk.GetArrayFromImage(image).astype(bool)


def _morph(mask: np.ndarray, op: str, radius: int) -> np.ndarray:
    if radius <= 0 or not mask.any():
        return mask
    function = {
        "open": sitk.BinaryMorphologicalOpening,
        "close": sitk.BinaryMorphologicalClosing,
        "dilate": sitk.BinaryDilate,
        "erode": sitk.BinaryErode,
    }[op]
    return _array(function(_image(mask), [radius] * 3, sitk.sitkBall))


def _components(mask: np.ndarray, minimum: int = 0) -> np.ndarray:
    """Labels of the connected pieces, largest first (0 background), pieces under ``minimum`` voxels dropped."""
    labels = sitk.RelabelComponent(sitk.ConnectedComponent(_image(mask)), minimumObjectSize=max(minimum, 0))
    return sitk.GetArrayFromImage(labels)


def _fill_slices(mask: np.ndarray) -> np.ndarray:
    return np.stack([_array(sitk.BinaryFillhole(_image(s))) for s in mask])


def body_mask(hu: np.ndarray) -> np.ndarray:
    """The trunk: voxels above -500 HU with holes filled slice by slice (lungs and airways inside), the largest
    piece after a 5 mm opening (a couch shell or an arm that only touches it falls away), grown back to the unopened
    voxels."""
    raw = _fill_slices(hu > BODY_HU)
    core = _components(_morph(raw, "open", 2)) == 1
    trunk = _components(raw & _morph(core, "dilate", 2)) == 1
    return _fill_slices(trunk)


def lung_mask(hu: np.ndarray, body: np.ndarray, spacing: float, side: str | None) -> np.ndarray:
    """Air-dense body voxels (below -400 HU) in pieces of at least 30 mL; ``side`` 'right' keeps the patient's right
    half (LPS x below each slice's body centre)."""
    lung = _components(body & (hu < LUNG_HU), int(math.ceil(MIN_LUNG_ML * 1000.0 / spacing**3))) > 0
    if side == "right":
        xs = np.arange(hu.shape[2])
        for z in range(hu.shape[0]):
            if body[z].any():
                centre = float((body[z].sum(axis=0) * xs).sum() / body[z].sum())
                lung[z, :, xs >= centre] = False
    return lung


# --- per-slice measurements ------------------------------------------------------------------------------------


def _runs(flags: np.ndarray) -> list[tuple[int, int]]:
    """(start, stop) of the runs of True in a 1D boolean array."""
    padded = np.concatenate([[False], flags, [False]]).astype(np.int8)
    edges = np.flatnonzero(np.diff(padded))
    return list(zip(edges[::2].tolist(), edges[1::2].tolist()))


def _fat_run(profile: np.ndarray, spacing: float) -> float:
    """Subcutaneous fat thickness (mm) along ``profile`` (HU from the skin inwards): past at most 6 mm of skin
    (>= -30 HU), the run of fat (-190..-30 HU, gaps of one voxel bridged)."""
    skin = max(1, int(round(6.0 / spacing)))
    start = next((i for i in range(min(skin + 1, len(profile))) if profile[i] < FAT_HU[1]), None)
    if start is None:
        return 0.0
    end = start
    while end < len(profile):
        if profile[end] < FAT_HU[1] and profile[end] > BODY_HU:
            end += 1
        elif end + 1 < len(profile) and FAT_HU[0] - 60 < profile[end + 1] < FAT_HU[1]:
            end += 2
        else:
            break
    return (end - start) * spacing


def _hull_area(mask: np.ndarray) -> float:
    """Area (voxels) of the convex hull of a 2D mask's voxel squares (monotone chain on the squares' corners)."""
    edge = mask & ~_array(sitk.BinaryErode(_image(mask), [1, 1]))
    y, x = np.nonzero(edge)
    corners = np.concatenate([np.stack([x + dx, y + dy], 1) for dx in (-0.5, 0.5) for dy in (-0.5, 0.5)])
    points = np.unique(corners, axis=0)
    if len(points) < 3:
        return float(mask.sum())

    def half(pts):
        chain = []
        for p in pts:
            while len(chain) >= 2:
                (ax, ay), (bx, by) = chain[-2], chain[-1]
                if (bx - ax) * (p[1] - ay) - (by - ay) * (p[0] - ax) > 0:
                    break
                chain.pop()
            chain.append(tuple(p))
        return chain

    ordered = points[np.lexsort((points[:, 1], points[:, 0]))]
    hull = half(ordered)[:-1] + half(ordered[::-1])[:-1]
    hx, hy = np.array(hull).T
    return float(0.5 * abs(np.dot(hx, np.roll(hy, 1)) - np.dot(hy, np.roll(hx, 1))))


def _outline(hu: np.ndarray, body: np.ndarray, valid: np.ndarray, z: int, spacing: float) -> dict:
    """Width, depth, fat thickness front/side/back and solidity of one axial slice, from the body's centre."""
    mask = body[z]
    ys, xs = np.nonzero(mask)
    cy, cx = int(round(ys.mean())), int(round(xs.mean()))
    row, column = mask[cy], mask[:, cx]

    def touches(line: np.ndarray, field: np.ndarray) -> bool:
        """Whether the body's run along a row or column reaches the end of the scanned field."""
        first, last = np.flatnonzero(line)[[0, -1]]
        return bool(first == 0 or last == line.size - 1 or not field[first - 1] or not field[last + 1])

    front = np.flatnonzero(column)
    back = front.max()
    front = front.min()
    # Breadth: the widest row of the middle half of the depth (as a tape across the chest would measure it).
    middle = range(front + (back - front) // 4, back - (back - front) // 4 + 1)
    widest = max(middle, key=lambda y: int(mask[y].sum()))
    cropped = touches(row, valid[z][cy]) or touches(mask[widest], valid[z][widest])
    cropped_depth = touches(column, valid[z][:, cx])
    out = {"width": mask[widest].sum() * spacing, "depth": column.sum() * spacing, "cropped": cropped}
    out["cropped_depth"] = cropped_depth
    left, right = np.flatnonzero(row).max(), np.flatnonzero(row).min()
    image = hu[z]
    out["fat_front"] = _fat_run(image[front : cy + 1, cx], spacing)
    out["fat_back"] = float("nan") if cropped_depth else _fat_run(image[cy : back + 1, cx][::-1], spacing)
    sides = []
    if not cropped:
        sides = [_fat_run(image[cy, right : cx + 1], spacing), _fat_run(image[cy, cx : left + 1][::-1], spacing)]
    out["fat_side"] = float(np.mean(sides)) if sides else float("nan")
    out["solidity"] = float(mask.sum() / _hull_area(mask)) if not cropped else float("nan")
    box = (np.ptp(xs) + 1) * (np.ptp(ys) + 1)
    out["box_fill"] = float(mask.sum() / box) if not (cropped or cropped_depth) else float("nan")
    # Arms and couch: what lies above -500 HU outside the trunk, beside it or under it.
    rest = (image > BODY_HU) & ~mask & valid[z]
    pieces = _components(rest[None], int(15e2 / spacing**2))[0]  # 15 cm^2
    arms = 0
    for label in range(1, int(pieces.max()) + 1):
        py, px = np.nonzero(pieces == label)
        if py.min() < back and (px.max() < right or px.min() > left):
            arms += 1
    out["arms"] = arms > 0
    out["couch"] = bool(rest[back + 1 :].any(axis=0).sum() > 0.4 * (left - right))
    return out


def _smooth_plane(hu: np.ndarray) -> np.ndarray:
    """[1, 2, 1] / 4 smoothing in x and y of every slice."""
    padded = np.pad(hu, ((0, 0), (1, 1), (1, 1)), mode="edge")
    along_y = 0.25 * padded[:, :-2] + 0.5 * padded[:, 1:-1] + 0.25 * padded[:, 2:]
    return 0.25 * along_y[:, :, :-2] + 0.5 * along_y[:, :, 1:-1] + 0.25 * along_y[:, :, 2:]


def _vertebral_core(
    hu: np.ndarray, smooth: np.ndarray, body: np.ndarray, z: int, spacing: float
) -> tuple[slice, slice] | None:
    """(rows, columns) of the central trabecular part of the vertebral body in slice ``z`` (None when none is found).

    The spine's column is the centroid of the bone (> 200 HU) in the posterior half of the body within 60 mm of
    its centre (the arch is symmetric), or up to two voxels beside it. Along that column (smoothed in-plane) a
    vertebral body is a run above 70 HU of 10-60 mm with, posterior to it, a gap of 6-30 mm (the spinal canal) and
    bone again (the arch), 20-70 mm wide at its middle row (not a spinous process, not the heart); the most
    posterior such run. Its core is the middle half of the run in depth and width."""
    mask = body[z]
    ys, xs = np.nonzero(mask)
    cy, cx = ys.mean(), xs.mean()
    reach = int(60.0 / spacing)
    lo, hi = max(int(cx) - reach, 0), min(int(cx) + reach + 1, mask.shape[1])
    bone = (hu[z] > 200.0) & mask
    bone[: int(cy)] = False
    columns = np.nonzero(bone[:, lo:hi])[1]
    if columns.size < 3:
        return None
    centre = lo + int(round(columns.mean()))  # the arch is symmetric: its centroid is on the midline
    top = max(int(cy - 40.0 / spacing), 0)
    for column in (centre, centre - 1, centre + 1, centre - 2, centre + 2):
        found = _body_along(smooth[z], mask, column, top, spacing)
        if found is not None:
            return found
    return None


def _body_along(image: np.ndarray, mask: np.ndarray, column: int, top: int, spacing: float):
    """The vertebral body's core on one column of a smoothed slice (see :func:`_vertebral_core`), or None."""
    if not 0 <= column < image.shape[1]:
        return None
    runs = _runs((image[top:, column] > TRABECULAR_EDGE_HU) & mask[top:, column])

    def extent(row: int) -> tuple[int, int]:
        across = (image[row] > TRABECULAR_EDGE_HU) & mask[row]
        left = right = column
        while right + 1 < across.size and across[right + 1] and (right - column) * spacing < 60.0:
            right += 1
        while left > 0 and across[left - 1] and (column - left) * spacing < 60.0:
            left -= 1
        return left, right

    best = None
    for i in range(len(runs) - 1):
        (a, b), (c, _) = runs[i], runs[i + 1]
        depth, gap = (b - a) * spacing, (c - b) * spacing
        if not (10.0 <= depth <= 60.0 and 6.0 <= gap <= 30.0):
            continue
        y0, y1 = top + a + (b - a) // 4, top + b - (b - a) // 4
        y1 = max(y1, y0 + 1)
        left, right = extent((y0 + y1) // 2)
        width = (right - left + 1) * spacing
        if 20.0 <= width <= 70.0:  # a vertebral body: not a spinous process, not the heart
            x0, x1 = left + (right - left + 1) // 4, right + 1 - (right - left + 1) // 4
            best = slice(y0, y1), slice(x0, max(x1, x0 + 1))  # the most posterior one wins
    return best


# --- one volume --------------------------------------------------------------------------------------------------


def _percentiles(values: np.ndarray, prefix: str) -> dict[str, float]:
    if values.size == 0:
        return {f"{prefix}_p{q}": float("nan") for q in (10, 50, 90)}
    p = np.percentile(values, [10, 50, 90])
    return {f"{prefix}_p10": float(p[0]), f"{prefix}_p50": float(p[1]), f"{prefix}_p90": float(p[2])}


def measure(
    hu: np.ndarray,
    valid: np.ndarray,
    spacing: float,
    side: str | None,
    region: str,
    cores: np.ndarray | None = None,
) -> tuple[dict[str, float], np.ndarray]:
    """Every statistic of one ``[z, y, x]`` HU volume of ``spacing`` mm voxels, and the mask of the vertebral
    bodies' cores; ``valid`` marks the scanned field of view; ``region`` 'chest' measures at the lung slices,
    'abdomen' at the middle 40 % of the slices. ``cores`` given (the 5 mm grid) measures the vertebrae there
    instead of finding them (the 2.5 mm cores, pooled)."""
    hu = np.where(valid, hu, -1024.0).astype(np.float32)
    body = body_mask(hu) & valid
    out: dict[str, float] = {}
    if region == "chest":
        lung = lung_mask(hu, body, spacing, side)
        closed = _morph(lung, "close", max(1, int(round(5.0 / spacing)))) & body
        if side == "right":
            closed &= _morph(lung, "dilate", 2)
        area = closed.sum(axis=(1, 2))
        level = np.flatnonzero(area >= 0.5 * area.max())  # mid-lung: where the lung is at least half its widest
        chest = np.flatnonzero(area >= 0.2 * area.max())
        core = _morph(closed, "erode", 1)
        values = hu[core]
        out |= _percentiles(values, "lung")
        out["vessel_share"] = float((values > VESSEL_HU).mean() * 100.0) if values.size else float("nan")
        near_lung = _morph(lung_mask(hu, body, spacing, None), "dilate", 1)
    else:
        n = hu.shape[0]
        level = np.arange(int(0.3 * n), int(0.7 * n))
        chest = level
        near_lung = _morph(lung_mask(hu, body, spacing, None), "dilate", 1)
        out |= {k: float("nan") for k in ("lung_p10", "lung_p50", "lung_p90", "vessel_share")}
    slab = np.zeros_like(body)
    slab[chest] = True
    region_body = body & slab
    tissue = region_body & ~near_lung
    fat = tissue & (hu >= FAT_HU[0]) & (hu <= FAT_HU[1])
    soft = tissue & (hu > FAT_HU[1]) & (hu < BONE_HU)
    out["fat_share"] = float(fat.sum() / max(fat.sum() + soft.sum(), 1) * 100.0)
    out |= _percentiles(hu[fat], "fat")
    out |= _percentiles(hu[tissue & (hu >= SOFT_HU[0]) & (hu <= SOFT_HU[1])], "soft")
    bone = hu[region_body & (hu > BONE_HU)]
    out["bone_p95"] = float(np.percentile(bone, 95)) if bone.size else float("nan")
    out["share_250"] = float((bone.size / max(region_body.sum(), 1)) * 100.0)
    out["share_500"] = float((hu[region_body] > DENSE_BONE_HU).mean() * 100.0)
    # Whole volume, the structure diagnostics' classes: fat -250..-30, soft tissue -30..250 HU.
    inside = body & ~near_lung
    fat_d = inside & (hu >= -250.0) & (hu < -30.0)
    soft_d = inside & (hu >= -30.0) & (hu < BONE_HU)
    out["fat_share_diagnostics"] = float(fat_d.sum() / max(fat_d.sum() + soft_d.sum(), 1) * 100.0)
    # Vertebral bodies.
    if cores is None:
        smooth = _smooth_plane(hu)
        cores = np.zeros_like(body)
        for z in chest:
            found = _vertebral_core(hu, smooth, body, int(z), spacing)
            if found is not None:
                cores[(int(z), *found)] = True
    slices = [hu[z][cores[z]] for z in range(hu.shape[0]) if cores[z].any()]
    out["trabecular_p50"] = float(np.median([np.median(v) for v in slices])) if len(slices) >= 3 else float("nan")
    out["trabecular_slices"] = float(len(slices))
    # Noise: robust spread of neighbour differences in soft tissue, over sqrt(2).
    pair = soft[:, :, 1:] & soft[:, :, :-1]
    diffs = (hu[:, :, 1:] - hu[:, :, :-1])[pair]
    out["noise_sd"] = float(1.4826 * np.median(np.abs(diffs - np.median(diffs))) / math.sqrt(2)) if diffs.size else 0
    # Outline at mid-lung (or the abdomen's middle).
    if spacing <= SPACING_MM + 1e-6:
        rows = [_outline(hu, body, valid, int(z), spacing) for z in level if body[int(z)].any()]

        def median(key: str, cropped: str | None = None) -> float:
            """Median over the slices; where the field of view cuts the body, over the uncut slices if any."""
            whole = [r[key] for r in rows if not (cropped and r[cropped])]
            values = whole or [r[key] for r in rows]
            values = [v for v in values if np.isfinite(v)]
            return float(np.median(values)) if values else float("nan")

        for key in ("width", "fat_side", "solidity", "box_fill"):
            out[key] = median(key, "cropped")
        for key in ("depth", "fat_front", "fat_back"):
            out[key] = median(key, "cropped_depth")
        out["depth_width_ratio"] = out["depth"] / out["width"]
        out["width_cropped"] = float(np.mean([r["cropped"] for r in rows]) > 0.5)
        out["depth_cropped"] = float(np.mean([r["cropped_depth"] for r in rows]) > 0.5)
        if out["depth_cropped"] or out["width_cropped"]:
            out["depth_width_ratio"] = float("nan")
        out["arm_pieces"] = float(np.mean([r["arms"] for r in rows]) > 0.5)
        out["couch"] = float(np.mean([r["couch"] for r in rows]) > 0.5)
    return out, cores


def pooled(hu: np.ndarray, valid: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """2x2x2 average pooling (the 5 mm grid); a pooled voxel is valid when all eight were."""
    volume = torch.from_numpy(np.ascontiguousarray(hu, dtype=np.float32))[None, None]
    mask = torch.from_numpy(valid.astype(np.float32))[None, None]
    return F.avg_pool3d(volume, 2)[0, 0].numpy(), F.avg_pool3d(mask, 2)[0, 0].numpy() > 0.999


def both_scales(hu: np.ndarray, valid: np.ndarray, side: str | None, region: str) -> dict[str, dict[str, float]]:
    fine, cores = measure(hu, valid, SPACING_MM, side, region)
    coarse, coarse_valid = pooled(hu, valid)
    coarse_cores = pooled(cores.astype(np.float32), valid)[0] >= 0.5
    return {"2.5": fine, "5": measure(coarse, coarse_valid, 2 * SPACING_MM, side, region, coarse_cores)[0]}


def real_volume(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """A real CT at 2.5 mm as a 2.5 mm reconstruction would show it, and its field-of-view mask."""
    ct = sitk.ReadImage(str(path), sitk.sitkFloat32)
    if not np.allclose(np.asarray(ct.GetDirection()).reshape(3, 3), np.eye(3)):
        raise ValueError(f"{path.name}: expected an identity direction (the cache's LPS convention)")
    spacing = np.asarray(ct.GetSpacing())
    variance = np.maximum(SPACING_MM**2 - spacing**2, 0.0) / (2.0 * math.sqrt(2.0 * math.log(2.0))) ** 2
    smooth = sitk.DiscreteGaussian(ct, [float(v) for v in variance], 32, 0.01, True)
    size = np.asarray(ct.GetSize())
    extent = (size - 1) * spacing
    shape = np.floor(extent / SPACING_MM).astype(int) + 1
    reference = sitk.Image([int(v) for v in shape], sitk.sitkFloat32)
    reference.SetSpacing((SPACING_MM,) * 3)
    reference.SetOrigin(ct.GetOrigin())
    hu = sitk.Resample(smooth, reference, sitk.Transform(), sitk.sitkLinear, -1024.0, sitk.sitkFloat32)
    ones = sitk.Image(ct.GetSize(), sitk.sitkFloat32) + 1.0
    ones.CopyInformation(ct)
    valid = sitk.Resample(ones, reference, sitk.Transform(), sitk.sitkLinear, 0.0, sitk.sitkFloat32)
    # The scanner's reconstruction circle: padding far below air.
    array = sitk.GetArrayFromImage(hu)
    return array, (sitk.GetArrayFromImage(valid) > 0.999) & (array > -1500.0)


def phantom_statistics(seeds: int, regions: tuple[str, ...]) -> dict:
    """``{region: [{'seed', 'drawn', '2.5', '5'}...]}`` for seeds 0..seeds-1."""
    from DiffuX2CTLib.anatomy.patient import draw_patient

    torch.set_num_threads(1)
    out = {}
    for region in regions:
        rows = []
        for seed in range(seeds):
            started = time.perf_counter()
            hu = generate_phantom(seed, GRID, region).numpy()
            patient = draw_patient(seed)
            row = both_scales(hu, np.ones(hu.shape, dtype=bool), None, region)
            row["seed"] = seed
            row["drawn"] = {
                "trabecular": patient.tissue.trabecular,
                "fat_mm": patient.fat_mm,
                "bmi": getattr(patient, "bmi", float("nan")),  # not kept by older generators
                "age": patient.age,
                "contrast": patient.contrast,
                "arms_up": patient.arms_up,
                "arms_down": float(not patient.arms_up),
            }
            rows.append(row)
            print(f"  {region} seed {seed}: {time.perf_counter() - started:.1f} s", file=sys.stderr, flush=True)
        out[region] = rows
    return out


def real_statistics() -> dict:
    out = {}
    for name, side in TRAINING_FILES.items():
        hu, valid = real_volume(REAL_FOLDER / name)
        out[name] = both_scales(hu, valid, side, "chest")
        out[name]["drawn"] = {"arms_down": 0.0}  # seen: no training CT shows its arms beside the chest
        print(f"  {name} measured", file=sys.stderr, flush=True)
    return out


def _before(commit: str, seeds: int, regions: tuple[str, ...]) -> dict:
    """The phantom statistics of ``commit``'s generator: its DiffuX2CTLib exported and measured in a subprocess."""
    with tempfile.TemporaryDirectory() as folder:
        archive = subprocess.run(
            ["git", "-C", str(ROOT), "archive", commit, "DiffuX2CTLib"], check=True, capture_output=True
        ).stdout
        archive_path = Path(folder) / "code.tar"
        archive_path.write_bytes(archive)
        with tarfile.open(archive_path) as tar:
            tar.extractall(folder, filter="data")
        result = Path(folder) / "before.json"
        command = [sys.executable, __file__, "--phantoms-only", "--json", str(result), "--seeds", str(seeds)]
        subprocess.run(
            command + ["--regions", *regions], check=True, env=os.environ | {"ANATOMY_STATISTICS_CODE": folder}
        )
        return json.loads(result.read_text(encoding="utf-8"))


# --- the report --------------------------------------------------------------------------------------------------

ROWS = [
    # key, label, digits, scale ("2.5", "5", or "drawn": the phantoms' drawn patient), reference
    ("bmi", "Drawn BMI (phantoms)", 1, "drawn", "adults: median about 27, a third obese"),
    ("age", "Drawn age (phantoms)", 0, "drawn", "-"),
    ("trabecular", "Drawn trabecular HU (phantoms)", 0, "drawn", "-"),
    (
        "width",
        "Body width, left-right (mm)",
        0,
        "2.5",
        "chest 300-360 (ANSUR II breadth 32-36 cm incl. arms' soft tissue)",
    ),
    ("depth", "Body depth, front-back (mm)", 0, "2.5", "chest 220-270 (ANSUR II)"),
    ("depth_width_ratio", "Depth / width", 2, "2.5", "0.65-0.80"),
    ("fat_front", "Subcutaneous fat, front (mm)", 0, "2.5", "lean 2-5, obese 30+ (presternal)"),
    ("fat_side", "Subcutaneous fat, side (mm)", 0, "2.5", "lean 3-8, obese 40+"),
    ("fat_back", "Subcutaneous fat, back (mm)", 0, "2.5", "lean 3-8, obese 30+"),
    ("solidity", "Outline solidity (area / convex hull)", 3, "2.5", "-"),
    ("box_fill", "Outline fill of its box (area / width x depth)", 3, "2.5", "ellipse 0.785, rectangle 1"),
    ("arms_down", "Arms along the body (drawn; real: seen)", 0, "drawn", "-"),
    ("arm_pieces", "Arms beside the trunk, apart from it (1 yes)", 0, "2.5", "-"),
    ("couch", "Couch under the body (1 yes)", 0, "2.5", "-"),
    ("noise_sd", "Noise in soft tissue (HU sd)", 0, "2.5", "10-30 at 2.5 mm"),
    ("fat_share", "Fat share of non-lung, non-bone tissue (%)", 0, "2.5", "chest 20-45, abdomen 30-60"),
    ("fat_p10", "Fat HU p10", 0, "2.5", "-"),
    ("fat_p50", "Fat HU median", 0, "2.5", "-110 to -90 (SAT about -100, VAT about -90)"),
    ("fat_p90", "Fat HU p90", 0, "2.5", "-"),
    ("soft_p10", "Soft tissue HU p10", 0, "2.5", "-"),
    ("soft_p50", "Soft tissue HU median", 0, "2.5", "muscle 30-55 (lower when old or obese)"),
    ("soft_p90", "Soft tissue HU p90", 0, "2.5", "-"),
    ("lung_p10", "Lung HU p10", 0, "2.5", "-"),
    ("lung_p50", "Lung HU median", 0, "2.5", "-880 to -820 at inspiration"),
    ("lung_p90", "Lung HU p90", 0, "2.5", "-"),
    ("vessel_share", "Lung vessel share (% of lung > -500 HU)", 1, "2.5", "-"),
    ("trabecular_p50", "Vertebral trabecular HU (median)", 0, "2.5", "L1 226 +- 44 under 30 y, 89 +- 38 at 90+"),
    ("trabecular_slices", "  slices with a vertebral body found", 0, "2.5", "-"),
    ("bone_p95", "Bone HU p95 (voxels > 250 HU)", 0, "2.5", "-"),
    ("share_250", "Body voxels > 250 HU (%)", 2, "2.5", "-"),
    ("share_500", "Body voxels > 500 HU (%)", 2, "2.5", "-"),
    ("fat_share", "Fat share (%)", 0, "5", "-"),
    ("fat_share_diagnostics", "Fat share, diagnostics' classes, whole volume (%)", 0, "5", "-"),
    ("fat_p50", "Fat HU median", 0, "5", "-"),
    ("soft_p50", "Soft tissue HU median", 0, "5", "-"),
    ("lung_p10", "Lung HU p10", 0, "5", "-"),
    ("lung_p50", "Lung HU median", 0, "5", "-"),
    ("lung_p90", "Lung HU p90", 0, "5", "-"),
    ("vessel_share", "Lung vessel share (%)", 1, "5", "-"),
    ("trabecular_p50", "Vertebral trabecular HU (median)", 0, "5", "-"),
    ("bone_p95", "Bone HU p95 (voxels > 250 HU)", 0, "5", "-"),
    ("share_250", "Body voxels > 250 HU (%)", 2, "5", "-"),
    ("share_500", "Body voxels > 500 HU (%)", 2, "5", "-"),
]


def _fmt(value: float, digits: int) -> str:
    return "-" if value is None or not np.isfinite(value) else f"{value:.{digits}f}"


_CUT_BY = {"width": "width_cropped", "fat_side": "width_cropped", "solidity": "width_cropped"}
_CUT_BY |= {"depth": "depth_cropped", "fat_back": "depth_cropped", "depth_width_ratio": "width_cropped"}


def _group(rows: list[dict], scale: str, key: str, digits: int) -> str:
    """Median (min..max) over the seeds; sizes that the grid's edge cuts (arms along the body reaching it, or a
    broad patient) are left out and counted."""
    flag = _CUT_BY.get(key) if scale == "2.5" else None
    kept = [r for r in rows if not (flag and r[scale].get(flag))]
    values = np.array([r[scale].get(key, np.nan) for r in kept], dtype=float)
    values = values[np.isfinite(values)]
    if values.size == 0:
        return "-"
    if key in ("arm_pieces", "couch", "arms_down"):
        return f"{values.mean():.2f}"
    cut = f", {len(rows) - len(kept)} cut" if len(kept) < len(rows) else ""
    return f"{_fmt(np.median(values), digits)} ({_fmt(values.min(), digits)}..{_fmt(values.max(), digits)}{cut})"


def table(real: dict, phantoms: dict[str, dict], scale: str) -> list[str]:
    """Markdown rows: statistics by real CT, then by phantom set (median (min..max) over seeds)."""
    names = {
        "plastimatch-4dct-t0.nrrd": "plastimatch t0",
        "plastimatch-4dct-t5.nrrd": "plastimatch t5",
        "pyradiomics-lung1.nrrd": "pyradiomics lung1",
        "pyradiomics-lung2.nrrd": "pyradiomics lung2",
        "platipy-sample-chest.nrrd": "platipy chest",
        "lung-pet-ct-dx-a0001.nrrd": "Lung-PET-CT-Dx A0001",
    }
    head = ["Statistic"] + [names[n] for n in real] + list(phantoms) + ["Published adult range"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for key, label, digits, row_scale, reference in ROWS:
        if row_scale != scale and not (row_scale == "drawn" and scale == "2.5"):
            continue
        cells = [label]
        for values in real.values():
            v = values.get(row_scale, {}).get(key, float("nan"))
            text = _fmt(v, digits)
            if key in ("width", "solidity", "fat_side") and values[scale].get("width_cropped"):
                text = f">= {text}" if key == "width" else "cropped"
            if key in ("depth", "fat_back", "depth_width_ratio") and values[scale].get("depth_cropped"):
                text = f">= {text}" if key == "depth" else "cropped"
            cells.append(text)
        for rows in phantoms.values():
            cells.append(_group(rows, row_scale, key, digits))
        cells.append(reference)
        lines.append("| " + " | ".join(cells) + " |")
    return lines


DEFINITIONS = """\
Definitions (the same code for real CTs and phantoms):

- **Body**: voxels above -500 HU with holes filled slice by slice, the largest piece after a 5 mm opening (a couch
  or an arm that only touches it falls away), grown back to its own voxels. **Lung**: body voxels below -400 HU in
  pieces of at least 30 mL (plastimatch: the patient's right half only), closed with a 5 mm ball (vessels inside),
  eroded by one voxel for the HU statistics. **Mid-lung level**: the slices where the lung's cross-section is at
  least half its largest; **chest slices**: at least a fifth. Abdomen phantoms: the middle 40 % of the slices
  (about L1).
- **Width / depth**: the widest row in the middle half of the body's depth / the body's extent along the column
  through the slice's centroid, median over the mid-lung slices (">=" where the scan's field of view cuts the body;
  phantoms whose body the grid's edge cuts, mostly with their arms along the body, are left out and counted as
  "cut"). **Subcutaneous fat** front, back (at the
  centroid's column) and side (mean of left and right, at its row): from the skin inwards, past at most 6 mm of
  skin, the run of -190..-30 HU voxels (one-voxel gaps bridged).
- **Solidity**: body area over the area of its convex hull. **Arms apart**: a piece above -500 HU of at least 15
  cm^2 beside the trunk in most mid-lung slices (arms that touch the trunk join the body instead and widen it, so
  phantoms give the drawn share of arms along the body; none of the real training CTs shows its arms at the chest).
  **Couch**: voxels above -500 HU under the body across more than 40 % of its width. Width and side fat count only
  the slices where the body is not cut by the field of view (the grid's edge for phantoms), where there are any.
- **Fat share**: in the chest slices, body voxels outside the (one-voxel dilated) lung: -190..-30 HU over
  -190..250 HU. **Fat / soft tissue HU**: percentiles of those voxels in -190..-30 and -29..150 HU (adipose and
  muscle windows of Mitsiopoulos et al. 1998). **Diagnostics' fat share**: the evaluation's tissue classes (fat
  -250..-30, soft -30..250 HU) over the whole volume, as the structure diagnostics report it.
- **Lung HU**: percentiles of the eroded, closed lung (parenchyma and the vessels inside). **Vessel share**: its
  voxels above -500 HU.
- **Vertebral trabecular HU**: per chest slice, along the spine's column (the centroid of the bone > 200 HU in
  the posterior half of the body near its centre), a run above 70 HU (in-plane [1 2 1] smoothed) of 10-60 mm,
  20-70 mm wide, followed posteriorly by a 6-30 mm gap (the canal) and bone; the middle half of that run in depth
  and width is the core; median of the per-slice medians. Disc and endplate slices are not told apart, so real
  and phantom values both include some; at 5 mm the same cores, pooled.
- **Bone**: p95 of the HU of chest-slice body voxels above 250 HU; shares of body voxels above 250 and 500 HU.
- **Noise**: 1.4826 x the median absolute deviation of neighbouring soft-tissue voxels' differences, over sqrt(2).
- **5 mm**: the same on the 2x2x2 average-pooled volume (the 64^3 model's voxels; bone Dice is taken there at 250
  HU).
"""


def report(real: dict, phantoms: dict[str, dict], command: str, seeds: int) -> str:
    lines = [
        "# Anatomy statistics: procedural phantoms and the real training patients",
        "",
        f"Made by `{command}` ({time.strftime('%Y-%m-%d')}).",
        "",
        "Real CTs measured (training patients only, from the cache's `real-ct/` folder): "
        + ", ".join(f"`{n}`" for n in real)
        + ". No validation patient (`amos-0336`, `totalsegmentator-example`), elastix file or reserved CT was read.",
        f"Phantoms: seeds 0-{seeds - 1} per region on `VolumeGrid(160, 2.5)`; cells give the median (min..max) over "
        "the seeds; abdomen rows measure the cube's middle (no training patient shows an abdomen).",
        "",
        "## At 2.5 mm",
        "",
        *table(real, phantoms, "2.5"),
        "",
        "## At 5 mm (2x2x2 average pooling, the model's grid)",
        "",
        *table(real, phantoms, "5"),
        "",
        DEFINITIONS,
    ]
    return "\n".join(lines)


def montage(path: Path, seeds: list[int], real_names: tuple[str, ...]) -> Path:
    """A PNG of real training CTs above chest phantoms, all at 2.5 mm: axial mid-lung slice in a lung window and
    in a soft-tissue window (fat dark, muscle grey), and coronal and sagittal slices through the body's centre in a
    bone window (-200..1000 HU), so density, fat and bone can be compared by eye."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cases = []
    for name in real_names:
        hu, valid = real_volume(REAL_FOLDER / name)
        cases.append((name.removesuffix(".nrrd") + " (real)", np.where(valid, hu, -1024.0)))
    torch.set_num_threads(1)
    for seed in seeds:
        cases.append((f"phantom seed {seed}", generate_phantom(seed, GRID, "chest").numpy()))
    windows = ((-1000.0, 400.0), (-200.0, 300.0), (-200.0, 1000.0), (-200.0, 1000.0))
    figure, axes = plt.subplots(len(cases), 4, figsize=(7.2, 1.8 * len(cases)), dpi=72)
    for row, (name, hu) in enumerate(cases):
        body = body_mask(hu)
        lung = lung_mask(hu, body, SPACING_MM, None)
        area = lung.sum(axis=(1, 2))
        z = int(np.flatnonzero(area >= 0.5 * area.max()).mean())
        ys, xs = np.nonzero(body[z])
        y, x = int(ys.mean()), int(xs.mean())
        panels = (hu[z], hu[z], hu[::-1, y, :], hu[::-1, :, x])
        for col, (panel, (low, high)) in enumerate(zip(panels, windows)):
            axis = axes[row, col]
            axis.imshow(np.clip((panel - low) / (high - low), 0, 1), cmap="gray", interpolation="bilinear")
            axis.set_xticks([])
            axis.set_yticks([])
            if row == 0:
                axis.set_title(
                    ["axial, lung", "axial, soft tissue", "coronal, bone", "sagittal, bone"][col], fontsize=8
                )
            if col == 0:
                axis.set_ylabel(name, fontsize=6)
    figure.suptitle("real training chests and procedural chest phantoms, 2.5 mm voxels", fontsize=9)
    figure.tight_layout(pad=0.3, rect=(0.0, 0.0, 1.0, 1.0 - 0.3 / (1.8 * len(cases))))
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path)
    plt.close(figure)
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=16)
    parser.add_argument("--regions", nargs="*", default=list(REGIONS), choices=REGIONS)
    parser.add_argument("--before", help="also measure this commit's generator (before / after columns)")
    parser.add_argument(
        "--out", type=Path, default=ROOT / "Testing" / "benchmarks" / "results" / "anatomy-statistics.md"
    )
    parser.add_argument("--json", type=Path, help="also write every number as JSON here")
    parser.add_argument("--phantoms-only", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--montage", type=Path, help="only draw a PNG of real chests beside phantoms (--seeds of them)")
    args = parser.parse_args()
    regions = tuple(args.regions)
    if args.montage:
        real_names = ("plastimatch-4dct-t0.nrrd", "pyradiomics-lung2.nrrd")
        path = montage(args.montage, list(range(args.seeds)), real_names)
        print(f"{path} ({path.stat().st_size // 1024} KB)")
        return
    if args.phantoms_only:
        args.json.write_text(json.dumps(phantom_statistics(args.seeds, regions)))
        return
    phantoms = {}
    if args.before:
        before = _before(args.before, args.seeds, regions)
        phantoms |= {f"{r} phantoms before ({args.before[:7]})": before[r] for r in regions}
    now = phantom_statistics(args.seeds, regions)
    label = "after" if args.before else "now"
    phantoms |= {f"{r} phantoms {label}": now[r] for r in regions}
    if args.before:  # before and after of a region side by side
        phantoms = {k: phantoms[k] for r in regions for k in phantoms if k.startswith(r)}
    real = real_statistics()
    command = "PYTHONPATH=. .venv/bin/python Testing/benchmarks/anatomy_statistics.py " + " ".join(sys.argv[1:])
    text = report(real, phantoms, command.strip(), args.seeds)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text + "\n")
    if args.json:
        args.json.write_text(json.dumps({"real": real, "phantoms": phantoms}, indent=1))
    print(text)


if __name__ == "__main__":
    main()
