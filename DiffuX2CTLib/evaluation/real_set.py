"""The real-patient validation set: the validation patients' CTs (:mod:`DiffuX2CTLib.realct.split`) cut into the
model's region cubes, each as the volume its DRR pair is rendered from.

A trunk scan gives a chest cube (centred on the lungs) and an abdomen cube (its top a little above the lung
bases, so it holds the diaphragm domes and the liver); a chest scan gives the chest cube; any other scan (abdomen
and pelvis) gives one cube at its middle. In the plane each cube is centred on the body. The volume around
a cube is the one training renders DRRs from (:func:`~DiffuX2CTLib.training.samples.drr_grid`, a quarter wider than
the cube), with a short scan's end slices continued beyond it as in training. No validation patient ever trains.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import SimpleITK as sitk

from ..core.cache import cache_root
from ..core.errors import InputError
from ..imaging.geometry import VolumeGrid
from ..imaging.image_io import grid_image
from ..model.config import ModelConfig
from ..realct.cache import volumes_folder
from ..realct.split import unreadable_message, validation_cts
from ..training.ct_cache import CachedCT, prepare_volumes
from ..training.samples import drr_grid, fine_spacing
from .structures import body_mask, lung_mask

REAL_SET = "real"
MIN_CHEST_LUNG_ML = 500.0
"""A scan with less lung than this has no chest cube (an abdomen scan shows only the lung bases)."""
ABDOMEN_OVERLAP_MM = 30.0
"""How far the abdomen cube reaches above the lowest lung slice: the diaphragm domes and the top of the liver."""


@dataclass(frozen=True)
class RealCase:
    """One validation cube: the patient's CT id, the region and the volume its DRRs are rendered from."""

    name: str
    region: str
    ct: sitk.Image


def cube_centres(ct: CachedCT, region: str, cube_mm: float) -> dict[str, tuple[float, float, float]]:
    """LPS centres of the region cubes of one prepared CT (see the module's description)."""
    array = np.asarray(np.load(ct.array, mmap_mode="r"))
    voxel_ml = ct.spacing_mm**3 / 1000.0
    body = body_mask(array)
    lungs = lung_mask(array, body, voxel_ml)
    origin, spacing = np.asarray(ct.origin_lps), ct.spacing_mm

    def in_plane_centre(z_lps: float) -> tuple[float, float]:
        """The body's centroid in the slices of a cube centred at ``z_lps``."""
        rows = np.arange(array.shape[0]) * spacing + origin[2]
        slab = body[np.abs(rows - z_lps) <= cube_mm / 2]
        points = np.argwhere(slab if slab.any() else body)
        return tuple(float(v) for v in origin[:2] + points[:, [2, 1]].mean(axis=0) * spacing)

    centres = {}
    if region in ("chest", "trunk") and lungs.sum() * voxel_ml >= MIN_CHEST_LUNG_ML:
        lung_z = np.argwhere(lungs)[:, 0] * spacing + origin[2]
        chest_z = float(lung_z.mean())
        centres["chest"] = (*in_plane_centre(chest_z), chest_z)
        if region == "trunk":
            abdomen_z = float(lung_z.min() + ABDOMEN_OVERLAP_MM - cube_mm / 2)
            centres["abdomen"] = (*in_plane_centre(abdomen_z), abdomen_z)
    else:
        middle_z = float(np.mean(ct.z_range_lps))
        centres["abdomen"] = (*in_plane_centre(middle_z), middle_z)
    return centres


def real_cases(config: ModelConfig, cache: str | os.PathLike | None = None) -> Iterator[RealCase]:
    """The validation cubes of every validation patient's CT, prepared once at the training voxel size in the
    cache (``bank/validation-*``, apart from the training bank)."""
    root = cache_root(cache)
    cts = validation_cts(volumes_folder(root))
    if not cts:
        raise InputError("no real validation CT in the cache: fetch them first (`diffux2ct fetch-real`)")
    spacing = fine_spacing(config)
    prepared = prepare_volumes([ct.path for ct in cts], root / "bank" / f"validation-{spacing:g}mm", spacing)
    if not prepared:
        raise InputError(unreadable_message(len(cts), "validation", volumes_folder(root)))
    by_name = {ct.path.name: ct for ct in cts}
    for cached in prepared:
        real = by_name[cached.name]
        for region, centre in cube_centres(cached, real.region, config.field_of_view_mm).items():
            grid: VolumeGrid = drr_grid(config, centre)
            yield RealCase(f"{real.id}-{region}", region, grid_image(cached.crop(grid, extend_ends=True), grid))
