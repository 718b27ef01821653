"""Any CT becomes a radiograph pair: DRRs rendered in the CT's own patient frame."""

from __future__ import annotations

import dataclasses

import numpy as np
import SimpleITK as sitk
import torch

from .drr import default_samples_per_ray, hu_to_attenuation, project
from .geometry import ProjectionGeometry, default_pair
from .image_io import image_center_lps, world_to_index_matrix


def pair_for_ct(
    ct: sitk.Image, template: tuple[ProjectionGeometry, ProjectionGeometry] | None = None
) -> tuple[ProjectionGeometry, ProjectionGeometry]:
    """(AP, lateral) geometries with their isocentre at the CT's centre."""
    template = template or default_pair()
    centre = image_center_lps(ct)
    return tuple(dataclasses.replace(g, isocenter_lps=centre) for g in template)


def render_pair(
    ct: sitk.Image, geometries: tuple[ProjectionGeometry, ...], samples_per_ray: int | None = None, device: str = "cpu"
) -> np.ndarray:
    """Line-integral DRRs ``(V, rows, cols)`` of a HU image (any spacing and direction) for each geometry."""
    hu = torch.from_numpy(sitk.GetArrayFromImage(sitk.Cast(ct, sitk.sitkFloat32))).to(device)
    attenuation = hu_to_attenuation(hu)[None, None]
    sources = torch.as_tensor(np.stack([g.source_lps for g in geometries]))[None]
    pixels = torch.as_tensor(np.stack([g.pixel_positions_lps() for g in geometries]))[None]
    samples = samples_per_ray or default_samples_per_ray(max(ct.GetSize()))
    with torch.no_grad():
        drr = project(attenuation, torch.as_tensor(world_to_index_matrix(ct)), sources, pixels, samples)
    return drr[0].cpu().numpy()
