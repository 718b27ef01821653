"""The preview PNG read back pixel by pixel: an asymmetric volume must appear the way a radiologist expects
(axial and coronal with the patient's right on the image's left, coronal and sagittal head up, sagittal anterior
on the left), whatever the direction matrix the CT was stored with."""

from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk

from DiffuX2CTLib.imaging.geometry import VolumeGrid
from DiffuX2CTLib.imaging.image_io import grid_image
from DiffuX2CTLib.inference.preview import save_preview

N = 32
LOW, MID, HIGH = slice(2, 9), slice(13, 19), slice(23, 30)  # voxel ranges on each axis, [z, y, x] order below


def _asymmetric_ct() -> sitk.Image:
    """Air, with one bright block in each central slice: left (+x) and head (+z) in the coronal slice, left and
    anterior (-y) in the axial slice, anterior and head in the sagittal slice."""
    array = np.full((N, N, N), -1000.0, np.float32)
    array[HIGH, MID, HIGH] = 1000.0  # coronal: z head, y central, x left
    array[MID, LOW, HIGH] = 1000.0  # axial: z central, y anterior, x left
    array[HIGH, LOW, MID] = 1000.0  # sagittal: z head, y anterior, x central
    return grid_image(array, VolumeGrid(N, 10.0))


def _panels(png: np.ndarray) -> list[np.ndarray]:
    """The image area of each panel, left to right: the dark (air-filled) boxes of the figure."""
    dark = png < 60
    columns = dark.sum(axis=0) > 100
    edges = np.flatnonzero(np.diff(np.r_[0, columns.astype(int), 0]))
    panels = []
    for start, stop in zip(edges[::2], edges[1::2]):
        rows = np.flatnonzero(dark[:, start:stop].sum(axis=1) > 0.5 * (stop - start))
        panels.append(png[rows[0] : rows[-1] + 1, start:stop])
    return panels


def _bright_centre(panel: np.ndarray) -> tuple[float, float]:
    """Centre of the bright pixels as fractions of the panel's height (0 top) and width (0 left)."""
    rows, cols = np.nonzero(panel > 200)
    return rows.mean() / panel.shape[0], cols.mean() / panel.shape[1]


@pytest.mark.parametrize("orientation", ["LPS", "RAS", "LPI"])
def test_preview_shows_an_asymmetric_phantom_the_right_way_round(tmp_path, orientation):
    ct = sitk.DICOMOrient(_asymmetric_ct(), orientation)  # same anatomy in space, stored in another voxel order
    radiograph = np.zeros((40, 40), np.float32)
    radiograph[2:10, 30:38] = 1.0  # top right of the image as given
    path = save_preview(ct, [radiograph, radiograph], tmp_path / "preview.png")
    png = sitk.GetArrayFromImage(sitk.ReadImage(str(path)))[..., :3].mean(axis=-1)
    panels = _panels(png)
    assert len(panels) == 5
    ap_input, _, axial, coronal, sagittal = panels
    row, col = _bright_centre(ap_input)
    assert row < 0.3 and col > 0.7  # radiographs are shown as they are
    row, col = _bright_centre(axial)
    assert row < 0.3 and col > 0.7  # anterior up, patient's left on the right
    row, col = _bright_centre(coronal)
    assert row < 0.3 and col > 0.7  # head up, patient's left on the right
    row, col = _bright_centre(sagittal)
    assert row < 0.3 and col < 0.3  # head up, anterior on the left
