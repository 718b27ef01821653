"""Structure diagnostics: where a reconstruction differs from the truth, by anatomy rather than by one number.

PSNR says "worse"; these say where. Both volumes (HU, ``[z, y, x]``, the same grid) are split the same way:

- body: voxels above -500 HU, the largest connected piece (a couch or an arm apart from it is left out), holes
  filled slice by slice (so the lungs are inside it);
- lungs: body voxels below -400 HU in connected pieces of at least :data:`MIN_LUNG_ML` (bowel gas pockets are
  smaller);
- bone: body voxels from :data:`~.metrics.BONE_THRESHOLD_HU` up (the bone Dice threshold of :mod:`.metrics`);
- tissue classes of the truth, which partition the grid: outside the body, lung (and any air in the body, below
  -250 HU), fat (-250 to -30 HU), soft tissue (-30 to 250 HU) and bone.

Reported: Dice of body, lungs and bone; lung and body volumes; per truth class the HU bias (mean of prediction
minus truth), the share of the squared error that lies in it and its share of the volume; and the share of fat in
the body's soft tissue (fat / (fat + soft tissue)), truth and prediction.
"""

from __future__ import annotations

import numpy as np
import SimpleITK as sitk

from .metrics import BODY_THRESHOLD_HU, BONE_THRESHOLD_HU

LUNG_HU = -400.0
MIN_LUNG_ML = 30.0
CLASS_EDGES_HU = (-250.0, -30.0, BONE_THRESHOLD_HU)
"""Lung / fat / soft tissue / bone boundaries of the truth's classes inside the body."""
TISSUES = ("outside", "lung", "fat", "soft tissue", "bone")


def _largest_component(mask: np.ndarray) -> np.ndarray:
    if not mask.any():
        return mask
    labels = sitk.RelabelComponent(sitk.ConnectedComponent(sitk.GetImageFromArray(mask.astype(np.uint8))))
    return sitk.GetArrayFromImage(labels) == 1


def body_mask(hu: np.ndarray) -> np.ndarray:
    """The body of a ``[z, y, x]`` HU volume: the largest piece above -500 HU, holes filled slice by slice."""
    body = _largest_component(hu > BODY_THRESHOLD_HU)
    filled = [sitk.GetArrayFromImage(sitk.BinaryFillhole(sitk.GetImageFromArray(s.astype(np.uint8)))) for s in body]
    return np.stack(filled).astype(bool)


def lung_mask(hu: np.ndarray, body: np.ndarray, voxel_ml: float) -> np.ndarray:
    """Air-dense body voxels (below -400 HU) in pieces of at least :data:`MIN_LUNG_ML`."""
    candidates = body & (hu < LUNG_HU)
    if not candidates.any():
        return candidates
    minimum = max(1, int(np.ceil(MIN_LUNG_ML / voxel_ml)))
    image = sitk.GetImageFromArray(candidates.astype(np.uint8))
    labels = sitk.RelabelComponent(sitk.ConnectedComponent(image), minimumObjectSize=minimum)
    return sitk.GetArrayFromImage(labels) > 0


def tissue_classes(hu: np.ndarray, body: np.ndarray) -> np.ndarray:
    """Index into :data:`TISSUES` of every voxel: outside the body, then lung, fat, soft tissue, bone by HU."""
    inside = 1 + np.digitize(hu, CLASS_EDGES_HU)
    return np.where(body, inside, 0).astype(np.int8)


def _dice(a: np.ndarray, b: np.ndarray) -> float:
    total = int(a.sum() + b.sum())
    return 1.0 if total == 0 else float(2 * (a & b).sum() / total)


def _fat_share(classes: np.ndarray) -> float:
    fat, soft = int((classes == 2).sum()), int((classes == 3).sum())
    return float(fat / (fat + soft)) if fat + soft else 0.0


def structure_diagnostics(prediction_hu: np.ndarray, truth_hu: np.ndarray, voxel_mm: float) -> dict:
    """Diagnostics of ``prediction_hu`` against ``truth_hu`` (same ``[z, y, x]`` grid of ``voxel_mm`` voxels)."""
    if prediction_hu.shape != truth_hu.shape:
        raise ValueError(f"prediction {prediction_hu.shape} and truth {truth_hu.shape} are on different grids")
    voxel_ml = voxel_mm**3 / 1000.0
    pred_body, true_body = body_mask(prediction_hu), body_mask(truth_hu)
    pred_lung, true_lung = lung_mask(prediction_hu, pred_body, voxel_ml), lung_mask(truth_hu, true_body, voxel_ml)
    pred_bone = pred_body & (prediction_hu >= BONE_THRESHOLD_HU)
    true_bone = true_body & (truth_hu >= BONE_THRESHOLD_HU)
    true_classes, pred_classes = tissue_classes(truth_hu, true_body), tissue_classes(prediction_hu, pred_body)
    error = prediction_hu.astype(np.float64) - truth_hu
    squared_total = float((error**2).sum()) or 1.0
    per_class = {}
    for index, name in enumerate(TISSUES):
        where = true_classes == index
        per_class[name] = {
            "volume_share": float(where.mean()),
            "hu_bias": float(error[where].mean()) if where.any() else 0.0,
            "error_share": float((error[where] ** 2).sum() / squared_total),
        }
    return {
        "body_dice": _dice(pred_body, true_body),
        "lung_dice": _dice(pred_lung, true_lung),
        "bone_dice": _dice(pred_bone, true_bone),
        "lung_volume_l": {
            "prediction": float(pred_lung.sum() * voxel_ml / 1000),
            "truth": float(true_lung.sum() * voxel_ml / 1000),
        },
        "body_volume_l": {
            "prediction": float(pred_body.sum() * voxel_ml / 1000),
            "truth": float(true_body.sum() * voxel_ml / 1000),
        },
        "fat_share_of_soft_tissue": {"prediction": _fat_share(pred_classes), "truth": _fat_share(true_classes)},
        "tissues": per_class,
    }


SUMMARY_FIELDS = {
    "body Dice": lambda d: d["body_dice"],
    "lung Dice": lambda d: d["lung_dice"],
    "bone Dice": lambda d: d["bone_dice"],
    "lung volume ratio": lambda d: _ratio(d["lung_volume_l"]),
    "lung HU bias": lambda d: d["tissues"]["lung"]["hu_bias"],
    "fat HU bias": lambda d: d["tissues"]["fat"]["hu_bias"],
    "bone HU bias": lambda d: d["tissues"]["bone"]["hu_bias"],
    "fat share (pred / true)": lambda d: _ratio(d["fat_share_of_soft_tissue"]),
    "error outside body": lambda d: d["tissues"]["outside"]["error_share"],
    "error in lungs": lambda d: d["tissues"]["lung"]["error_share"],
    "error in bone": lambda d: d["tissues"]["bone"]["error_share"],
}
"""What the report's structure table shows per method (mean over the cases that have the structure)."""


def _ratio(pair: dict) -> float | None:
    """Prediction / truth, or None where the truth has none of it (a cube without lungs)."""
    return pair["prediction"] / pair["truth"] if pair["truth"] > 0 else None


def summarise_structures(diagnostics: list[dict]) -> dict[str, float | None]:
    """The mean of each :data:`SUMMARY_FIELDS` entry over the cases where it is defined."""
    summary = {}
    for name, read in SUMMARY_FIELDS.items():
        values = [v for v in (read(d) for d in diagnostics) if v is not None]
        summary[name] = float(np.mean(values)) if values else None
    return summary


def structure_table(summaries: dict[str, dict[str, float | None]]) -> list[str]:
    """A markdown table: one row per method, one column per :data:`SUMMARY_FIELDS` entry."""
    columns = list(SUMMARY_FIELDS)
    lines = ["| method | " + " | ".join(columns) + " |", "|---" * (len(columns) + 1) + "|"]
    for method, summary in summaries.items():
        cells = []
        for column in columns:
            value = summary[column]
            cells.append("-" if value is None else f"{value:+.0f}" if "HU" in column else f"{value:.2f}")
        lines.append(f"| {method} | " + " | ".join(cells) + " |")
    return lines
