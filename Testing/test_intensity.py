"""Clinical intensities towards the DRR domain: linear detector images, collimation, burned-in markers, the
DICOM field-of-view tags and VOI LUT, and the same cleaning in training as in inference."""

from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk
from conftest import write_dicom_radiograph

from DiffuX2CTLib.anatomy.phantom import generate_phantom
from DiffuX2CTLib.core.errors import InputError
from DiffuX2CTLib.imaging.geometry import VolumeGrid, default_pair
from DiffuX2CTLib.imaging.image_io import grid_image, read_radiograph, write_image
from DiffuX2CTLib.imaging.intensity import (
    add_collimation_and_marker,
    clean_radiograph,
    collimation_bands,
    linear_to_line_integral,
    remove_markers,
)
from DiffuX2CTLib.imaging.synthesize import pair_for_ct, render_pair
from DiffuX2CTLib.inference.options import ReconstructionOptions
from DiffuX2CTLib.inference.reconstruct import reconstruct_pair

SAMPLE = __import__("pathlib").Path(__file__).resolve().parent.parent / "Resources" / "SampleData"


@pytest.fixture(scope="module")
def drr_pair() -> np.ndarray:
    grid = VolumeGrid(48, 320.0 / 48)
    ct = grid_image(generate_phantom(11, grid, "chest").numpy(), grid)
    geometries = tuple(
        g.__class__(**{**g.__dict__, "detector_pixels": (96, 96), "pixel_spacing_mm": (4.0, 4.0)})
        for g in default_pair()
    )
    return render_pair(ct, pair_for_ct(ct, geometries))


def _correlation(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.corrcoef(a.ravel(), b.ravel())[0, 1])


def test_a_clean_drr_passes_unchanged(drr_pair):
    for view in drr_pair:
        cleaned, notes = clean_radiograph(view)
        assert notes == [] and np.array_equal(cleaned, view)


def test_bright_collimation_is_masked_as_air_and_dark_air_borders_are_kept(drr_pair):
    view = drr_pair[0].copy()
    bright = view.max() * 1.2
    view[:10] = bright
    view[:, -7:] = bright
    assert collimation_bands(view) == (10, 0, 0, 7)
    cleaned, notes = clean_radiograph(view)
    assert "top 10" in notes[0] and "right 7" in notes[0]
    assert cleaned[:10].max() <= np.percentile(drr_pair[0], 5) and np.array_equal(
        cleaned[10:, :-7], drr_pair[0][10:, :-7]
    )
    air = drr_pair[0].copy()
    air[:10] = 0.0  # flat but dark: air, as in a DRR
    assert collimation_bands(air)[0] == 0


def test_markers_are_filled_from_their_surroundings_but_border_plateaus_are_not_markers(drr_pair):
    view = drr_pair[1].copy()
    view[40:46, 30:35] = view.max() * 2
    cleaned, note = remove_markers(view)
    assert "1 burned-in marker" in note
    assert np.abs(cleaned[40:46, 30:35] - drr_pair[1][40:46, 30:35]).max() < 0.25 * drr_pair[1].max()
    border = drr_pair[1].copy()
    border[0:3, 0:5] = border.max() * 2
    assert remove_markers(border)[1] is None


def test_training_augmentation_is_undone_by_the_cleaning_where_the_image_is_kept(drr_pair):
    rng = np.random.default_rng(0)
    changed = 0
    for _ in range(20):
        augmented = add_collimation_and_marker(drr_pair[0], rng)
        changed += not np.array_equal(augmented, drr_pair[0])
        cleaned, _ = clean_radiograph(augmented)
        top, bottom, left, right = collimation_bands(augmented)
        inner = (slice(top, 96 - bottom), slice(left, 96 - right))
        # Outside the masked borders, only marker pixels may differ, and they are filled back from neighbours.
        assert np.mean(np.abs(cleaned[inner] - drr_pair[0][inner])) < 0.01 * drr_pair[0].max()
        assert cleaned.max() <= drr_pair[0].max() * 1.0001
    assert changed >= 5


@pytest.mark.parametrize("photometric", ["MONOCHROME2", "MONOCHROME1"])
def test_linear_detector_dicom_becomes_line_integrals(tmp_path, drr_pair, photometric):
    line = drr_pair[0]
    intensity = 4000.0 * np.exp(-line / line.max() * 3.0) + 20.0  # I0 = 4000, a little dark current
    # MONOCHROME1 stores full scale minus the intensity (dense = bright value = white on a MONOCHROME1 display),
    # so its values fall with the intensity: sign -1.
    stored = intensity if photometric == "MONOCHROME2" else 65535.0 - intensity
    sign = 1 if photometric == "MONOCHROME2" else -1
    write_dicom_radiograph(
        tmp_path / "lin.dcm",
        stored,
        photometric,
        PixelIntensityRelationship="LIN",
        PixelIntensityRelationshipSign=sign,
        ViewPosition="AP",
    )
    radiograph = read_radiograph(tmp_path / "lin.dcm", "ap")
    assert _correlation(radiograph.pixels, line) > 0.99
    assert any("PixelIntensityRelationship LIN" in note for note in radiograph.notes)
    write_dicom_radiograph(tmp_path / "log.dcm", stored, photometric, ViewPosition="AP")  # no tag: taken as is
    assert _correlation(read_radiograph(tmp_path / "log.dcm", "ap").pixels, line) < 0.99


def test_linear_to_line_integral_inverts_beer_lambert():
    line = np.linspace(0.0, 4.0, 200).reshape(10, 20)
    recovered = linear_to_line_integral(1000.0 * np.exp(-line))
    assert np.allclose(recovered, line, atol=1e-3)


def test_field_of_view_rotation_and_flip_are_undone_without_patient_orientation(tmp_path):
    detector = np.arange(40 * 60, dtype=np.float64).reshape(40, 60) + 100.0
    shown = np.rot90(detector, -1)[:, ::-1]  # 90 degrees clockwise, then a horizontal flip
    write_dicom_radiograph(
        tmp_path / "fov.dcm",
        shown,
        FieldOfViewRotation="90",
        FieldOfViewHorizontalFlip="YES",
        ImagerPixelSpacing=[0.2, 0.3],
    )
    radiograph = read_radiograph(tmp_path / "fov.dcm", "ap")
    assert np.array_equal(radiograph.pixels, detector)
    assert radiograph.pixel_spacing_mm == pytest.approx((0.3, 0.2))
    assert any("rotation 90 degrees and horizontal flip undone" in note for note in radiograph.notes)
    # PatientOrientation describes the stored pixels themselves: the field-of-view tags are then not applied.
    write_dicom_radiograph(tmp_path / "oriented.dcm", shown, FieldOfViewRotation="90", PatientOrientation="L\\F")
    assert np.array_equal(read_radiograph(tmp_path / "oriented.dcm", "ap").pixels, shown)
    write_dicom_radiograph(tmp_path / "odd.dcm", shown, FieldOfViewRotation="45")
    with pytest.raises(InputError, match="FieldOfViewRotation 45"):
        read_radiograph(tmp_path / "odd.dcm", "ap")


def test_voi_lut_is_noted_and_not_applied(tmp_path):
    pixels = np.tile(np.linspace(100, 3000, 64), (48, 1))
    write_dicom_radiograph(tmp_path / "voi.dcm", pixels, WindowCenter="1000", WindowWidth="500", ViewPosition="AP")
    radiograph = read_radiograph(tmp_path / "voi.dcm", "ap")
    assert np.allclose(radiograph.pixels, pixels.astype(np.uint16))
    assert any("VOI LUT" in note and "not applied" in note for note in radiograph.notes)


def test_a_collimated_pair_with_a_marker_reconstructs_closer_to_the_clean_one_for_the_cleaning(tmp_path, monkeypatch):
    image = sitk.ReadImage(str(SAMPLE / "ap.nrrd"))
    pixels = sitk.GetArrayFromImage(image)[0].copy()
    rows, cols = pixels.shape
    pixels[: rows // 12] = pixels.max() * 1.3
    pixels[rows // 2 : rows // 2 + 6, cols // 5 : cols // 5 + 5] = pixels.max() * 1.5
    marked = sitk.GetImageFromArray(pixels[None].astype(np.float32))
    marked.CopyInformation(image)
    for key in image.GetMetaDataKeys():
        marked.SetMetaData(key, image.GetMetaData(key))
    write_image(marked, tmp_path / "ap.nrrd")
    options = ReconstructionOptions(method="regression", check_inputs=False)  # uncleaned, the pair fails the checks
    clean = sitk.GetArrayFromImage(reconstruct_pair(SAMPLE / "ap.nrrd", SAMPLE / "lateral.nrrd", options=options).ct)
    dirty = reconstruct_pair(tmp_path / "ap.nrrd", SAMPLE / "lateral.nrrd", options=options)
    assert "collimation borders masked" in dirty.provenance["notes"] and "burned-in marker" in dirty.provenance["notes"]
    monkeypatch.setattr("DiffuX2CTLib.inference.reconstruct.cleaned", lambda radiograph: radiograph)
    uncleaned = sitk.GetArrayFromImage(
        reconstruct_pair(tmp_path / "ap.nrrd", SAMPLE / "lateral.nrrd", options=options).ct
    )
    error_with, error_without = (
        float(np.mean(np.abs(clean - sitk.GetArrayFromImage(dirty.ct)))),
        float(np.mean(np.abs(clean - uncleaned))),
    )
    assert error_with < 0.7 * error_without, (error_with, error_without)


def test_dicom_source_distances_set_the_magnification(tmp_path):
    """The sample AP as DICOM: with twice the distances and twice the pixel size it is the same image at the
    isocentre, so the model must see the same input; without the distance tags the model's are assumed."""
    from DiffuX2CTLib.inference.preprocess import fit_to_detector
    from DiffuX2CTLib.model.config import ModelConfig

    pixels = sitk.GetArrayFromImage(sitk.ReadImage(str(SAMPLE / "ap.nrrd")))[0]
    stored = np.rint(pixels / pixels.max() * 60000)
    common = {"ViewPosition": "AP", "PatientOrientation": "L\\F"}
    write_dicom_radiograph(
        tmp_path / "near.dcm",
        stored,
        ImagerPixelSpacing=[1.6, 1.6],
        DistanceSourceToDetector="1200",
        DistanceSourceToPatient="1000",
        **common,
    )
    write_dicom_radiograph(
        tmp_path / "far.dcm",
        stored,
        ImagerPixelSpacing=[3.2, 3.2],
        DistanceSourceToDetector="2400",
        DistanceSourceToPatient="1000",
        **common,
    )
    write_dicom_radiograph(tmp_path / "untagged.dcm", stored, ImagerPixelSpacing=[3.2, 3.2], **common)
    target = ModelConfig().detector()
    near, far, untagged = (read_radiograph(tmp_path / f"{name}.dcm", "ap") for name in ("near", "far", "untagged"))
    assert (far.geometry.source_to_detector_mm, far.geometry.source_to_isocenter_mm) == (2400.0, 1000.0)
    assert untagged.geometry is None and any("assumed the model's distances" in note for note in untagged.notes)
    seen = {name: fit_to_detector(r, target) for name, r in (("near", near), ("far", far), ("untagged", untagged))}
    assert np.abs(seen["near"] - seen["far"]).mean() < 0.01
    assert np.abs(seen["near"] - seen["untagged"]).mean() > 0.05
    write_dicom_radiograph(
        tmp_path / "bad.dcm", stored, DistanceSourceToDetector="900", DistanceSourceToPatient="1000", **common
    )
    with pytest.raises(InputError, match="invalid DICOM source distances"):
        read_radiograph(tmp_path / "bad.dcm", "ap")
