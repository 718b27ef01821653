"""Any CT becomes a radiograph pair: DRRs rendered in the CT's own patient frame."""

from __future__ import annotations

import dataclasses
import itertools

import numpy as np
import SimpleITK as sitk
import torch

from ..core.errors import InputError
from .drr import default_samples_per_ray, hu_to_attenuation, project
from .geometry import ProjectionGeometry, default_pair
from .image_io import image_center_lps, world_to_index_matrix


def source_reach_mm(ct: sitk.Image, geometry: ProjectionGeometry) -> float:
    """How far the CT's box (the outer faces of its outer voxels) reaches from ``geometry``'s isocentre towards its
    X-ray source, in mm: the source must lie farther than that, outside the CT, or the rays would start inside the
    patient and the DRR would show only what lies between the source and the detector."""
    towards_source = -geometry.ray_axis
    isocentre = np.asarray(geometry.isocenter_lps, dtype=np.float64)
    corners = itertools.product(*[(-0.5, n - 0.5) for n in ct.GetSize()])
    return max(
        float(np.dot(np.asarray(ct.TransformContinuousIndexToPhysicalPoint(c)) - isocentre, towards_source))
        for c in corners
    )


def deepest_source(
    ct: sitk.Image, geometries: tuple[ProjectionGeometry, ...]
) -> tuple[ProjectionGeometry, float] | None:
    """The geometry whose source lies inside the CT's box, deepest first, and how far the box reaches towards it
    (:func:`source_reach_mm`); None when every source lies outside."""
    inside = [(g, source_reach_mm(ct, g)) for g in geometries]
    inside = [(g, reach) for g, reach in inside if g.source_to_isocenter_mm <= reach]
    return max(inside, key=lambda pair: pair[1] - pair[0].source_to_isocenter_mm) if inside else None


def centred_on(ct: sitk.Image, template: tuple[ProjectionGeometry, ...]) -> tuple[ProjectionGeometry, ...]:
    """The ``template`` geometries with their isocentre at the CT's centre."""
    centre = image_center_lps(ct)
    return tuple(dataclasses.replace(g, isocenter_lps=centre) for g in template)


def pair_for_ct(
    ct: sitk.Image, template: tuple[ProjectionGeometry, ProjectionGeometry] | None = None
) -> tuple[ProjectionGeometry, ProjectionGeometry]:
    """(AP, lateral) geometries with their isocentre at the CT's centre; a source that would lie inside the CT is
    refused with the distance it needs."""
    geometries = centred_on(ct, template or default_pair())
    deepest = deepest_source(ct, geometries)
    if deepest is not None:
        geometry, reach = deepest
        raise InputError(
            f"the X-ray source lies inside the CT: {geometry.source_to_isocenter_mm:g} mm from its centre, but the CT "
            f"reaches {reach:.0f} mm towards the {geometry.view.value} source; the source-to-isocentre distance must "
            f"exceed {reach:.0f} mm"
        )
    return geometries


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
