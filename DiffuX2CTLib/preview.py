"""A one-glance PNG: the two input radiographs beside axial, coronal and sagittal slices of a CT."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import SimpleITK as sitk  # noqa: E402

from .io import HUWindow  # noqa: E402


def _orthogonal_slices(ct: sitk.Image) -> list[tuple[str, np.ndarray, float]]:
    """Central axial, coronal and sagittal slices (radiological display: patient right on the left, head up)
    with each slice's pixel aspect ratio."""
    identity = sitk.Image(ct.GetSize(), sitk.sitkUInt8)
    identity.SetSpacing(ct.GetSpacing())
    identity.SetOrigin(ct.GetOrigin())
    array = sitk.GetArrayFromImage(sitk.Resample(ct, identity, sitk.Transform(), sitk.sitkLinear, -1000.0, sitk.sitkFloat32))
    sx, sy, sz = ct.GetSpacing()
    nz, ny, nx = array.shape
    return [
        ("axial", array[nz // 2], sy / sx),
        ("coronal", array[::-1, ny // 2, :], sz / sx),
        ("sagittal", array[::-1, :, nx // 2], sz / sy),
    ]


def save_preview(
    ct: sitk.Image,
    radiographs: Sequence[np.ndarray],
    path: str | os.PathLike,
    titles: Sequence[str] = ("AP input", "lateral input"),
    window: HUWindow | None = None,
    caption: str = "",
) -> Path:
    """Write the montage PNG atomically and return its path."""
    window = window or HUWindow()
    panels = [(title, image, 1.0, "radiograph") for title, image in zip(titles, radiographs)]
    panels += [(name, array, aspect, "ct") for name, array, aspect in _orthogonal_slices(ct)]
    figure, axes = plt.subplots(1, len(panels), figsize=(3.2 * len(panels), 3.6), dpi=100)
    for axis, (title, image, aspect, kind) in zip(np.atleast_1d(axes), panels):
        if kind == "ct":
            axis.imshow(image, cmap="gray", vmin=window.low, vmax=min(window.high, 1000.0), aspect=aspect, interpolation="bilinear")
        else:
            axis.imshow(image, cmap="gray", interpolation="bilinear")
        axis.set_title(title)
        axis.axis("off")
    if caption:
        figure.suptitle(caption, fontsize=9)
    figure.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.partial.png")
    figure.savefig(temporary)
    plt.close(figure)
    os.replace(temporary, path)
    return path
