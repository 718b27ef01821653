"""The evaluation's figure per case: slices of the truth and of each reconstruction, and where they differ."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import SimpleITK as sitk

from ..core.atomic_write import write_file
from ..imaging.hounsfield import HUWindow

ERROR_RANGE_HU = 500.0
"""The error maps' colour range, +-HU (red: reconstruction denser than the truth, blue: lighter)."""


def _slices(volume: np.ndarray) -> list[np.ndarray]:
    """Coronal, sagittal and axial central slices of ``[z, y, x]`` (LPS arrays: head at the top of the first two,
    the patient's right on the left of the coronal and axial ones, anterior on the left of the sagittal one)."""
    depth, height, width = volume.shape
    return [volume[::-1, height // 2, :], volume[::-1, :, width // 2], volume[depth // 2]]


def save_error_figure(
    truth: sitk.Image, reconstructions: dict[str, sitk.Image], path: Path, window: HUWindow, title: str
) -> Path:
    """Rows: the truth, then each reconstruction; columns: its coronal, sagittal and axial slices, then its
    coronal and sagittal error (reconstruction minus truth). Written atomically as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    truth_hu = sitk.GetArrayFromImage(sitk.Cast(truth, sitk.sitkFloat32))
    rows = [("truth", truth_hu)]
    for name, image in reconstructions.items():
        resampled = sitk.Resample(image, truth, sitk.Transform(), sitk.sitkLinear, window.low, sitk.sitkFloat32)
        rows.append((name, sitk.GetArrayFromImage(resampled)))
    figure, axes = plt.subplots(len(rows), 5, figsize=(12.5, 2.6 * len(rows)), squeeze=False)
    for axis_row, (name, volume) in zip(axes, rows):
        for axis, picture in zip(axis_row[:3], _slices(np.clip(volume, window.low, window.high))):
            axis.imshow(picture, cmap="gray", vmin=-1000, vmax=1000)
        errors = _slices(volume - truth_hu)[:2] if name != "truth" else []
        for axis, picture in zip(axis_row[3:], errors):
            axis.imshow(picture, cmap="RdBu_r", vmin=-ERROR_RANGE_HU, vmax=ERROR_RANGE_HU)
        axis_row[0].set_ylabel(name, fontsize=8)
        for axis in axis_row:
            axis.set_xticks([])
            axis.set_yticks([])
    for axis, heading in zip(axes[0], ("coronal", "sagittal", "axial", "error, coronal", "error, sagittal")):
        axis.set_title(heading, fontsize=9)
    figure.suptitle(
        f"{title} (HU -1000..1000; errors +-{ERROR_RANGE_HU:g} HU, red denser); research use only", fontsize=9
    )
    figure.tight_layout()
    write_file(path, lambda temporary: figure.savefig(temporary, dpi=80, format="png"))
    plt.close(figure)
    return Path(path)
