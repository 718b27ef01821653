"""The preview PNG read back pixel by pixel: an asymmetric volume must appear the way a radiologist expects
(axial and coronal with the patient's right on the image's left, coronal and sagittal head up, sagittal anterior
on the left), whatever the direction matrix the CT was stored with."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pytest
import SimpleITK as sitk
import torch
from PIL import Image

from DiffuX2CTLib.diffusion.guidance import ProjectionGuidance
from DiffuX2CTLib.imaging.drr import render_model_radiographs
from DiffuX2CTLib.imaging.geometry import VolumeGrid
from DiffuX2CTLib.imaging.image_io import grid_image
from DiffuX2CTLib.inference.preview import NOT_FOR_DIAGNOSIS, preview_figure, save_preview
from DiffuX2CTLib.model.config import ModelConfig

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


def _figure_panels(png: np.ndarray) -> list[np.ndarray]:
    """The image area of each panel, left to right: the boxes that are not the figure's white background (a panel
    with white columns of its own comes out in pieces: the CT panels here stay below white)."""
    ink = png < 250
    columns = ink.sum(axis=0) > 0.5 * png.shape[0]
    edges = np.flatnonzero(np.diff(np.r_[0, columns.astype(int), 0]))
    panels = []
    for start, stop in zip(edges[::2], edges[1::2]):
        rows = np.flatnonzero(ink[:, start:stop].sum(axis=1) > 0.9 * (stop - start))
        panels.append(png[rows[0] : rows[-1] + 1, start:stop])
    return panels


def _row_spikes(panel: np.ndarray) -> np.ndarray:
    """Per inner image row, the mean over the row of how far each pixel stands out from both its upper and lower
    neighbour in the same direction (a thin line across the panel scores high; edges and gradients do not)."""
    panel = panel.astype(np.float64)
    up, down = panel[1:-1] - panel[:-2], panel[1:-1] - panel[2:]
    return (np.minimum(np.abs(up), np.abs(down)) * (np.sign(up) == np.sign(down))).mean(axis=1)


def test_a_guided_volume_of_smooth_anatomy_shows_no_stray_line_across_a_slice_panel(tmp_path):
    """Projection guidance refines a smooth body (an elliptic cylinder with a spine) towards the DRRs of the same
    body with a denser spine, and no row of the preview's axial, coronal or sagittal panel may stand out from both
    of its neighbours: a thin line across the panel.

    The line seen in the sample pair's preview was such a guidance artefact: the gradient through the DRRs'
    percentile scaling gathered on the one or two pixels each percentile was read from (the brightest AP pixel lies
    on the spine), and every step painted those pixels' rays into the volume."""
    config = ModelConfig(grid_size=32)
    n = config.grid_size
    z, y, x = np.meshgrid(*[np.linspace(-1.0, 1.0, n)] * 3, indexing="ij")

    def body(spine_hu: float) -> torch.Tensor:
        hu = np.where((x / 0.7) ** 2 + (y / 0.5) ** 2 < 1.0, 0.0, -1000.0)
        hu[(x / 0.1) ** 2 + ((y - 0.3) / 0.1) ** 2 < 1.0] = spine_hu  # posterior (+y), on the midline
        return torch.from_numpy(config.hu_window.to_unit(hu)).float()[None, None]

    guidance = ProjectionGuidance(config, 2.0, torch.device("cpu"))
    with torch.no_grad():
        target = render_model_radiographs(body(600.0), guidance.projector, config.grid(), config.hu_window)
    refined = guidance.refine(body(300.0), target, steps=4)
    ct = grid_image(config.hu_window.to_hu(refined[0, 0].numpy()), config.grid())
    path = save_preview(ct, list(target[0].numpy()), tmp_path / "preview.png")
    png = sitk.GetArrayFromImage(sitk.ReadImage(str(path)))[..., :3].mean(axis=-1)
    for name, panel in zip(("axial", "coronal", "sagittal"), _figure_panels(png)[-3:]):
        assert 0.9 < panel.shape[0] / panel.shape[1] < 1.1 and panel.shape[0] > 200, name  # the whole panel
        spikes = _row_spikes(panel)  # the old guidance: 1.2 to 1.9 in the sagittal panel; now under 0.05
        assert spikes.max() < 0.5, (name, int(spikes.argmax()), float(spikes.max()))


def test_the_preview_is_marked_not_for_diagnosis_in_its_pixels_and_its_text(tmp_path):
    radiograph = np.random.default_rng(0).random((40, 40)).astype(np.float32)
    path = save_preview(_asymmetric_ct(), [radiograph, radiograph], tmp_path / "preview.png", caption="a caption")
    with Image.open(path) as png:
        assert png.text["Description"] == f"{NOT_FOR_DIAGNOSIS}. a caption" and png.text["Software"] == "DiffuX2CT"
        rgb = np.asarray(png.convert("RGB")).astype(int)
    red = (rgb[..., 0] > 120) & (rgb[..., 1] < 60) & (rgb[..., 2] < 60)  # the mark's colour; nothing else is red
    rows = np.flatnonzero(red.sum(axis=1))
    assert red.sum() > 100 and rows.min() > 0.85 * rgb.shape[0]  # a line of red text under the panels


@pytest.mark.parametrize("assumed", [(False, False), (True, False), (True, True)])
def test_every_panel_names_the_patient_direction_at_each_edge(assumed):
    radiograph = np.zeros((40, 40), np.float32)
    figure = preview_figure(_asymmetric_ct(), [radiograph, radiograph], orientation_assumed=assumed)
    try:
        axes = figure.get_axes()
        assert len(axes) == 5
        expected = [("R", "L", "S", "I"), ("A", "P", "S", "I"), ("R", "L", "A", "P"), ("R", "L", "S", "I")]
        expected.append(("A", "P", "S", "I"))
        for axis, edges, guessed in zip(axes, expected, [*assumed, False, False, False]):
            labels = {text.get_text(): text.get_position() for text in axis.texts}
            left, right, top, bottom = (labels[letter] for letter in edges)
            assert left[0] < 0 < 1 < right[0] and abs(left[1] - 0.5) < 0.01 and abs(right[1] - 0.5) < 0.01
            assert top[1] > 1 and bottom[1] < 0 and abs(top[0] - 0.5) < 0.01 and abs(bottom[0] - 0.5) < 0.01
            assert ("orientation assumed" in axis.get_title()) == guessed
        mark = [text.get_text() for text in figure.texts]
        assert mark[-1].startswith(NOT_FOR_DIAGNOSIS)
        assert ("assumed orientation of the inputs" in mark[-1]) == any(assumed)
    finally:
        plt.close(figure)
