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

NOT_FOR_DIAGNOSIS = "Research use only - not for diagnosis"
"""The mark every preview carries: drawn under the panels and written into the PNG's Description text."""
PANEL_EDGES = {
    "axial": ("R", "L", "A", "P"),
    "coronal": ("R", "L", "S", "I"),
    "sagittal": ("A", "P", "S", "I"),
}
"""The patient direction at the (left, right, top, bottom) edge of each slice panel (radiological display)."""
RADIOGRAPH_EDGES = (("R", "L", "S", "I"), ("A", "P", "S", "I"))
"""The same for the AP and the lateral input as the model takes them (see :mod:`DiffuX2CTLib.imaging.geometry`)."""
_MARK_COLOUR = (0.7, 0.0, 0.0)


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
    orientation_assumed: Sequence[bool] = (),
) -> Path:
    """Write the montage PNG atomically and return its path."""
    return write_file(path, preview_writer(ct, radiographs, titles, window, caption, orientation_assumed))


def preview_writer(
    ct: sitk.Image,
    radiographs: Sequence[np.ndarray],
    titles: Sequence[str] = ("AP input", "lateral input"),
    window: HUWindow | None = None,
    caption: str = "",
    orientation_assumed: Sequence[bool] = (),
) -> WriteFile:
    """A writer of the montage (the radiographs, then axial, coronal and sagittal slices of ``ct``) as a PNG, for
    writing it in one unit with the CT (:func:`DiffuX2CTLib.core.atomic_write.write_together`)."""
    figure = preview_figure(ct, radiographs, titles, window, caption, orientation_assumed)
    return _figure_writer(figure, description=f"{NOT_FOR_DIAGNOSIS}. {caption}".strip())


def preview_figure(
    ct: sitk.Image,
    radiographs: Sequence[np.ndarray],
    titles: Sequence[str] = ("AP input", "lateral input"),
    window: HUWindow | None = None,
    caption: str = "",
    orientation_assumed: Sequence[bool] = (),
):
    """The montage as a matplotlib figure: every panel labelled with the patient direction at each of its edges
    (R/L, A/P, S/I), and :data:`NOT_FOR_DIAGNOSIS` under the panels. ``orientation_assumed`` (per radiograph)
    says which inputs carried no patient orientation: their labels are the model's convention, assumed, and their
    titles say so."""
    window = window or HUWindow()
    assumed = list(orientation_assumed) + [False] * len(radiographs)
    panels = [
        (f"{title}\n(orientation assumed)" if assumed[i] else title, image, 1.0, "radiograph", edges, assumed[i])
        for i, (title, image, edges) in enumerate(zip(titles, radiographs, RADIOGRAPH_EDGES))
    ]
    panels += [(name, array, aspect, "ct", PANEL_EDGES[name], False) for name, array, aspect in orthogonal_slices(ct)]
    figure, axes = plt.subplots(1, len(panels), figsize=(3.2 * len(panels), 3.9), dpi=100)
    for axis, (title, image, aspect, kind, edges, guessed) in zip(np.atleast_1d(axes), panels):
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
        axis.set_title(title, fontsize=10 if guessed else 12, pad=14)
        _label_edges(axis, edges, assumed=guessed)
        axis.axis("off")
    if caption:
        figure.suptitle(caption, fontsize=9)
    mark = NOT_FOR_DIAGNOSIS + ("; R/L and A/P rest on the assumed orientation of the inputs" if any(assumed) else "")
    figure.text(0.5, 0.012, mark, ha="center", va="bottom", fontsize=9, color=_MARK_COLOUR)
    figure.tight_layout(rect=(0.0, 0.06, 1.0, 0.94 if caption else 1.0))
    return figure


def _label_edges(axis, edges: Sequence[str], assumed: bool) -> None:
    """Write the patient directions (left, right, top, bottom) just outside the panel's image, where they cover no
    pixel of it; italic grey when the orientation was assumed."""
    style = {"fontsize": 9, "color": "0.45" if assumed else "0.0", "style": "italic" if assumed else "normal"}
    left, right, top, bottom = edges
    axis.text(-0.015, 0.5, left, transform=axis.transAxes, ha="right", va="center", **style)
    axis.text(1.015, 0.5, right, transform=axis.transAxes, ha="left", va="center", **style)
    axis.text(0.5, 1.005, top, transform=axis.transAxes, ha="center", va="bottom", **style)
    axis.text(0.5, -0.01, bottom, transform=axis.transAxes, ha="center", va="top", **style)


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


def _figure_writer(figure, description: str | None = None) -> WriteFile:
    """A writer of ``figure`` as a PNG (``description`` in its Description text); the figure is closed once it is
    written (or fails to be)."""
    metadata = {"Software": "DiffuX2CT"} | ({"Description": description} if description else {})

    def write(path: Path) -> None:
        try:
            figure.savefig(path, format="png", metadata=metadata)
        finally:
            plt.close(figure)

    return write
