"""Turning a radiograph pair into what the model sees: both views on the model's detector grid, normalised.

The model was trained on DRRs of a fixed geometry (see :mod:`DiffuX2CTLib.imaging.geometry`). An input image is cleaned
of collimation borders and burned-in markers (:mod:`DiffuX2CTLib.imaging.intensity`, as in training), scaled so that its
pixels at the isocentre plane have the model's physical size (magnification corrected), centred, resampled, and
passed through the same percentile normalisation as the training DRRs.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import SimpleITK as sitk
import torch

from ..core.errors import InputError
from ..imaging.drr import normalize_radiograph
from ..imaging.geometry import ProjectionGeometry, View
from ..imaging.image_io import Radiograph
from ..imaging.intensity import clean_radiograph

ISOCENTER_TOLERANCE_MM = 10.0


def _isocentre_spacing(radiograph: Radiograph, target: ProjectionGeometry) -> tuple[float, float]:
    """(row, column) pixel size of the radiograph projected back to the isocentre plane."""
    cols = radiograph.pixels.shape[1]
    if radiograph.pixel_spacing_mm is None:  # unknown: assume the image spans the detector's width, square pixels
        width = target.detector_size_mm[1]
        spacing = (width / cols, width / cols)
    else:
        spacing = radiograph.pixel_spacing_mm
    source = radiograph.geometry or target
    shrink = source.source_to_isocenter_mm / source.source_to_detector_mm
    return spacing[0] * shrink, spacing[1] * shrink


def fit_to_detector(radiograph: Radiograph, target: ProjectionGeometry) -> np.ndarray:
    """Resample ``radiograph`` onto ``target``'s detector grid (same physical scale at the isocentre),
    then normalise to [0, 1]. Returns ``(rows, cols)`` float32."""
    in_spacing = _isocentre_spacing(radiograph, target)
    out_spacing = tuple(
        s * target.source_to_isocenter_mm / target.source_to_detector_mm for s in target.pixel_spacing_mm
    )
    image = sitk.GetImageFromArray(radiograph.pixels.astype(np.float32))
    image.SetSpacing((in_spacing[1], in_spacing[0]))
    rows, cols = radiograph.pixels.shape
    image.SetOrigin((-(cols - 1) / 2.0 * in_spacing[1], -(rows - 1) / 2.0 * in_spacing[0]))
    out_rows, out_cols = target.detector_pixels
    reference = sitk.Image(out_cols, out_rows, sitk.sitkFloat32)
    reference.SetSpacing((out_spacing[1], out_spacing[0]))
    reference.SetOrigin((-(out_cols - 1) / 2.0 * out_spacing[1], -(out_rows - 1) / 2.0 * out_spacing[0]))
    if min(in_spacing) < 0.5 * min(out_spacing):  # anti-alias before down-sampling
        sigma = [0.5 * o for o in (out_spacing[1], out_spacing[0])]
        image = sitk.SmoothingRecursiveGaussian(image, sigma)
    background = float(np.percentile(radiograph.pixels, 0.5))
    resampled = sitk.GetArrayFromImage(sitk.Resample(image, reference, sitk.Transform(), sitk.sitkLinear, background))
    return normalize_radiograph(torch.from_numpy(resampled)).numpy().astype(np.float32)


def pair_isocenter(ap: Radiograph, lateral: Radiograph) -> tuple[float, float, float]:
    """Shared isocentre of the pair: from the headers when they carry geometry, else the origin.

    Raises :class:`InputError` when the two views disagree, i.e. were not taken of the same set-up.
    """
    known = [r.geometry.isocenter_lps for r in (ap, lateral) if r.geometry is not None]
    if not known:
        return (0.0, 0.0, 0.0)
    if len(known) == 2 and np.linalg.norm(np.subtract(*known)) > ISOCENTER_TOLERANCE_MM:
        raise InputError(
            f"{ap.path.name} and {lateral.path.name}: mismatched views, their isocentres are "
            f"{np.linalg.norm(np.subtract(*known)):.0f} mm apart (expected the same patient position)"
        )
    return tuple(float(v) for v in np.mean(known, axis=0))


def cleaned(radiograph: Radiograph) -> Radiograph:
    """``radiograph`` without collimation borders and burned-in markers, with notes saying what was removed."""
    pixels, removed = clean_radiograph(radiograph.pixels)
    if not removed:
        return radiograph
    return dataclasses.replace(
        radiograph, pixels=pixels, notes=radiograph.notes + [f"{radiograph.path.name}: {note}" for note in removed]
    )


def prepare_pair(
    ap: Radiograph, lateral: Radiograph, detector: ProjectionGeometry
) -> tuple[np.ndarray, tuple[ProjectionGeometry, ProjectionGeometry]]:
    """Both views on the model's detector: ``(2, P, P)`` float32 in [0, 1] and the (AP, lateral) model geometries
    placed at the pair's isocentre (where the reconstruction goes)."""
    for radiograph, view in ((ap, View.AP), (lateral, View.LATERAL)):
        if radiograph.geometry is not None and radiograph.geometry.view != view:
            raise InputError(
                f"{radiograph.path.name}: is a {radiograph.geometry.view.value} view, given as {view.value}"
            )
    isocenter = pair_isocenter(ap, lateral)
    geometries = tuple(
        dataclasses.replace(detector, view=view, isocenter_lps=isocenter) for view in (View.AP, View.LATERAL)
    )
    images = np.stack([fit_to_detector(r, g) for r, g in zip((ap, lateral), geometries)])
    return images, geometries
