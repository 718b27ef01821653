"""DICOM radiographs: ViewPosition checked against the slot, PatientOrientation turned into the model's
orientation, and every assumption noted."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import write_dicom_radiograph

from DiffuX2CTLib.core.errors import InputError
from DiffuX2CTLib.imaging.image_io import read_radiograph

# An asymmetric image: bright top-left corner, so every flip and transpose is visible.
PIXELS = np.full((40, 60), 100, dtype=np.uint16)
PIXELS[:10, :5] = 3000


def _read(tmp_path, view="ap", **tags):
    path = tmp_path / "x.dcm"
    write_dicom_radiograph(path, PIXELS, ImagerPixelSpacing=[0.2, 0.3], **tags)
    return read_radiograph(path, view)


def test_model_orientation_is_kept(tmp_path):
    radiograph = _read(
        tmp_path,
        PatientOrientation=["L", "F"],
        ViewPosition="AP",
        DistanceSourceToDetector="1200",
        DistanceSourceToPatient="1000",
    )
    assert np.array_equal(radiograph.pixels, PIXELS) and radiograph.pixel_spacing_mm == (0.2, 0.3)
    assert radiograph.notes == []


@pytest.mark.parametrize(
    ("view", "orientation", "expected", "note"),
    [
        ("ap", ["R", "F"], PIXELS[:, ::-1], "mirrored left-right"),
        ("ap", ["L", "H"], PIXELS[::-1], "flipped head-feet"),
        ("lateral", ["A", "F"], PIXELS[:, ::-1], "mirrored left-right"),
        ("ap", ["F", "L"], PIXELS.T, "transposed"),
    ],
)
def test_patient_orientation_is_turned_into_the_models(tmp_path, view, orientation, expected, note):
    radiograph = _read(tmp_path, view, PatientOrientation=orientation)
    assert np.array_equal(radiograph.pixels, expected)
    assert any(note in n for n in radiograph.notes)
    if note == "transposed":
        assert radiograph.pixel_spacing_mm == (0.3, 0.2)


def test_missing_orientation_and_pa_are_noted(tmp_path):
    radiograph = _read(tmp_path, ViewPosition="PA")
    assert any("no PatientOrientation tag; assumed columns run towards L" in n for n in radiograph.notes)
    assert any("PA view used as AP" in n for n in radiograph.notes)


@pytest.mark.parametrize(
    ("view", "tags", "message"),
    [
        ("ap", {"ViewPosition": "LL"}, "ViewPosition says LL, a lateral view, but it was given as the frontal view"),
        (
            "lateral",
            {"ViewPosition": "AP"},
            "ViewPosition says AP, a frontal view, but it was given as the lateral view",
        ),
        ("lateral", {"PatientOrientation": ["L", "F"]}, "PatientOrientation L\\\\F does not fit a lateral view"),
        ("ap", {"PatientOrientation": ["Q", "F"]}, "unreadable DICOM PatientOrientation"),
    ],
)
def test_views_that_do_not_fit_their_slot_are_refused(tmp_path, view, tags, message):
    with pytest.raises(InputError, match=message):
        _read(tmp_path, view, **tags)
