"""Reconstruction quality against a ground-truth CT, compared in physical space.

The prediction is resampled onto the ground truth's grid and both are cropped to the box where the
prediction exists (its field of view), then compared on the HU window scaled to [-1, 1] as the paper does.
"""

from __future__ import annotations

import math

import numpy as np
import SimpleITK as sitk
import torch
from monai.metrics import DiceMetric, SSIMMetric

from ..core.errors import InputError
from ..imaging.hounsfield import HUWindow

BONE_THRESHOLD_HU = 250.0
BODY_THRESHOLD_HU = -500.0  # air outside the body is about -1000 HU, soft tissue above -100
IDENTICAL_NOTE = "the volumes are identical within the HU window: PSNR is infinite"
SSIM_WINDOW = 7  # voxels along each axis of MONAI's 3D SSIM window: the overlap must hold one


def _covered(prediction: sitk.Image, reference: sitk.Image) -> np.ndarray:
    """Mask ``(z, y, x)`` of the ``reference`` voxels that lie inside ``prediction``'s grid."""
    ones = sitk.Image(prediction.GetSize(), sitk.sitkUInt8) + 1
    ones.CopyInformation(prediction)
    return sitk.GetArrayFromImage(sitk.Resample(ones, reference, sitk.Transform(), sitk.sitkNearestNeighbor, 0)).astype(
        bool
    )


def _field_of_view_box(covered: np.ndarray) -> tuple[slice, slice, slice]:
    """Index box (z, y, x) around the covered voxels, refused when it cannot hold the SSIM window."""
    if not covered.any():
        raise InputError("prediction and ground truth do not overlap in physical space (check origin and spacing)")
    box = tuple(slice(int(w.min()), int(w.max()) + 1) for w in np.nonzero(covered))
    shape = tuple(b.stop - b.start for b in box)
    if min(shape) < SSIM_WINDOW:
        raise InputError(
            f"prediction and ground truth overlap in only {shape[2]} x {shape[1]} x {shape[0]} voxels of the ground "
            "truth; "
            f"scoring needs at least {SSIM_WINDOW} along every axis (check origin and spacing)"
        )
    return box


def compare(prediction: sitk.Image, ground_truth: sitk.Image, window: HUWindow | None = None) -> dict[str, float | str]:
    """PSNR (dB), 3D SSIM, MAE (HU) and bone Dice of ``prediction`` against ``ground_truth`` (both HU images) where
    the prediction exists, and the fraction of the ground truth's body it covers (``gt_body_covered``). Volumes
    identical within the window have an infinite PSNR, said in ``psnr_db_note`` (JSON writes it as null)."""
    window = window or HUWindow()
    resampled = sitk.Resample(prediction, ground_truth, sitk.Transform(), sitk.sitkLinear, window.low, sitk.sitkFloat32)
    covered = _covered(prediction, ground_truth)
    box = _field_of_view_box(covered)
    truth = sitk.GetArrayFromImage(sitk.Cast(ground_truth, sitk.sitkFloat32))
    pred_hu = np.clip(sitk.GetArrayFromImage(resampled)[box], window.low, window.high)
    true_hu = np.clip(truth[box], window.low, window.high)
    pred_unit, true_unit = window.to_unit(pred_hu), window.to_unit(true_hu)
    mse = float(np.mean((pred_unit - true_unit) ** 2))
    psnr = 10.0 * math.log10(4.0 / mse) if mse > 0 else float("inf")
    ssim = float(
        SSIMMetric(spatial_dims=3, data_range=2.0, win_size=SSIM_WINDOW)(
            as_tensor(pred_unit), as_tensor(true_unit)
        ).mean()
    )
    pred_bone, true_bone = pred_hu >= BONE_THRESHOLD_HU, true_hu >= BONE_THRESHOLD_HU
    dice = float(
        DiceMetric(include_background=True, reduction="mean", ignore_empty=False)(
            as_tensor(pred_bone), as_tensor(true_bone)
        ).mean()
    )
    note = {} if math.isfinite(psnr) else {"psnr_db_note": IDENTICAL_NOTE}
    return {
        "psnr_db": psnr,
        **note,
        "ssim": ssim,
        "mae_hu": float(np.mean(np.abs(pred_hu - true_hu))),
        "bone_dice": dice,
        "voxels_compared": int(pred_hu.size),
        "gt_body_covered": _body_covered(truth, covered),
    }


def as_tensor(array: np.ndarray) -> torch.Tensor:
    """A ``[z, y, x]`` array as a float32 ``(1, 1, D, H, W)`` tensor, as MONAI's metrics take it."""
    return torch.from_numpy(np.ascontiguousarray(array, dtype=np.float32))[None, None]


def _body_covered(truth_hu: np.ndarray, covered: np.ndarray) -> float:
    """Fraction of the ground truth's body voxels (above -500 HU) that the prediction's grid covers (1 without body)."""
    body = truth_hu > BODY_THRESHOLD_HU
    return float((body & covered).sum() / body.sum()) if body.any() else 1.0
