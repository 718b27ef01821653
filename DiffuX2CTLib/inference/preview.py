"""One-glance PNGs: the two input radiographs beside axial, coronal and sagittal slices of a CT, and the
evaluation montage of reconstructions beside their ground truth."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import SimpleITK as sitk

from ..core.atomic_write import WriteFile, write_file
from ..imaging.hounsfield import HUWindow


def orthogonal_slices(ct: sitk.Image) -> list[tuple[str, np.ndarray, float]]:
    """Central axial, coronal and sagittal slices (radiological display: patient right on the left, head up)
    with each slice's pixel aspect ratio."""
    oriented = sitk.DICOMOrient(ct, "LPS")  # same voxels in space, axes in LPS order (a CT stored RAS, e.g. NIfTI)
    identity = sitk.Image(oriented.GetSize(), sitk.sitkUInt8)
    identity.SetSpacing(oriented.GetSpacing())
    identity.SetOrigin(oriented.GetOrigin())
    array = sitk.GetArrayFromImage(
        sitk.Resample(oriented, identity, sitk.Transform(), sitk.sitkLinear, -1000.0, sitk.sitkFloat32)
    )
    sx, sy, sz = oriented.GetSpacing()
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
    return write_file(path, preview_writer(ct, radiographs, titles, window, caption))


def preview_writer(
    ct: sitk.Image,
    radiographs: Sequence[np.ndarray],
    titles: Sequence[str] = ("AP input", "lateral input"),
    window: HUWindow | None = None,
    caption: str = "",
) -> WriteFile:
    """A writer of the montage (the radiographs, then axial, coronal and sagittal slices of ``ct``) as a PNG, for
    writing it in one unit with the CT (:func:`DiffuX2CTLib.core.atomic_write.write_together`)."""
    window = window or HUWindow()
    panels = [(title, image, 1.0, "radiograph") for title, image in zip(titles, radiographs)]
    panels += [(name, array, aspect, "ct") for name, array, aspect in orthogonal_slices(ct)]
    figure, axes = plt.subplots(1, len(panels), figsize=(3.2 * len(panels), 3.6), dpi=100)
    for axis, (title, image, aspect, kind) in zip(np.atleast_1d(axes), panels):
        if kind == "ct":
            axis.imshow(
                image,
                cmap="gray",
                vmin=window.low,
                vmax=min(window.high, 1000.0),
                aspect=aspect,
                interpolation="bilinear",
            )
        else:
            axis.imshow(image, cmap="gray", interpolation="bilinear")
        axis.set_title(title)
        axis.axis("off")
    if caption:
        figure.suptitle(caption, fontsize=9)
    figure.tight_layout()
    return _figure_writer(figure)


def save_comparison_montage(
    truth: sitk.Image,
    reconstructions: dict[str, sitk.Image],
    error_of: str,
    path: str | os.PathLike,
    window: HUWindow | None = None,
    caption: str = "",
) -> Path:
    """Rows axial, coronal, sagittal; columns ground truth, each reconstruction, and the absolute HU error of
    ``error_of``. Reconstructions are resampled onto the truth's grid so every column shows the same anatomy."""
    window = window or HUWindow()
    images = {"ground truth": truth}
    images.update(
        {
            name: sitk.Resample(image, truth, sitk.Transform(), sitk.sitkLinear, window.low, sitk.sitkFloat32)
            for name, image in reconstructions.items()
        }
    )
    slices = {name: orthogonal_slices(image) for name, image in images.items()}
    errors = [
        (plane, np.abs(a - b), aspect)
        for (plane, a, aspect), (_, b, _) in zip(slices[error_of], slices["ground truth"])
    ]
    columns = list(slices.items()) + [(f"|{error_of} - truth| (HU)", errors)]
    figure, axes = plt.subplots(3, len(columns), figsize=(2.8 * len(columns), 8.4), dpi=100, squeeze=False)
    for col, (title, planes) in enumerate(columns):
        is_error = col == len(columns) - 1
        for row, (plane, array, aspect) in enumerate(planes):
            axis = axes[row, col]
            shown = axis.imshow(
                array,
                cmap="inferno" if is_error else "gray",
                vmin=0 if is_error else window.low,
                vmax=500.0 if is_error else min(window.high, 1000.0),
                aspect=aspect,
                interpolation="nearest",
            )
            axis.set_xticks([])
            axis.set_yticks([])
            if row == 0:
                axis.set_title(title, fontsize=9)
            if col == 0:
                axis.set_ylabel(plane)
        if is_error:
            figure.colorbar(shown, ax=axes[:, col].tolist(), shrink=0.6)
    if caption:
        figure.suptitle(caption, fontsize=9)
    return write_file(path, _figure_writer(figure))


def _figure_writer(figure) -> WriteFile:
    """A writer of ``figure`` as a PNG; the figure is closed once it is written (or fails to be)."""

    def write(path: Path) -> None:
        try:
            figure.savefig(path, format="png")
        finally:
            plt.close(figure)

    return write
