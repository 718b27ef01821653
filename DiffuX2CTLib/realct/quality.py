"""Numbers that let a person (and the tests) trust a converted volume: HU statistics and an orientation check.

The orientation check needs no labels: in LPS the second array axis runs anterior to posterior, and in a trunk CT
the bone mass (mostly the spine) lies posterior of the body's centre, so the mean y index of bone voxels inside the
body exceeds the body's centroid. A volume stored with its front and back swapped fails it.
"""

from __future__ import annotations

import numpy as np
import SimpleITK as sitk

AIR_BELOW = -900
BODY_ABOVE = -400
BONE_ABOVE = 300


def hu_statistics(image: sitk.Image) -> dict[str, float]:
    """Minimum, 1st percentile, median, 99th percentile, maximum and the share of air voxels (< -900 HU)."""
    values = sitk.GetArrayViewFromImage(image)
    p1, median, p99 = np.percentile(values, [1, 50, 99])
    return {
        "min": float(values.min()),
        "p1": float(p1),
        "median": float(median),
        "p99": float(p99),
        "max": float(values.max()),
        "air_fraction": round(float((values < AIR_BELOW).mean()), 4),
    }


def body_mask(image: sitk.Image) -> np.ndarray:
    """The patient: the largest connected region above -400 HU (so not the couch), holes filled slice by slice
    (so the lungs count as body). A z, y, x boolean array."""
    top = max(float(sitk.GetArrayViewFromImage(image).max()), BODY_ABOVE)
    tissue = sitk.BinaryThreshold(image, BODY_ABOVE, top)
    largest = sitk.RelabelComponent(sitk.ConnectedComponent(tissue), sortByObjectSize=True) == 1
    slices = [sitk.BinaryFillhole(largest[:, :, k]) for k in range(image.GetSize()[2])]
    return sitk.GetArrayFromImage(sitk.JoinSeries(slices)).astype(bool)


def orientation_check(image: sitk.Image) -> dict[str, object]:
    """Whether bone lies posterior of the body centre in an LPS image (see the module note), with the numbers."""
    values = sitk.GetArrayViewFromImage(image)
    body = body_mask(image)
    bone = body & (values > BONE_ABOVE)
    if not body.any() or not bone.any():
        return {"check": "bone posterior of body centre", "passed": False, "reason": "no body or no bone found"}
    body_y, bone_y = float(np.nonzero(body)[1].mean()), float(np.nonzero(bone)[1].mean())
    spacing_y = image.GetSpacing()[1]
    return {
        "check": "bone posterior of body centre",
        "passed": bone_y > body_y,
        "body_centroid_y": round(body_y, 2),
        "bone_mean_y": round(bone_y, 2),
        "bone_posterior_mm": round((bone_y - body_y) * spacing_y, 1),
    }
