"""Checks before a run: pairs that cannot be two views of one patient are refused with a reason, unless the
user overrides the checks, and then the reasons travel with the result."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from DiffuX2CTLib.core.errors import InputError
from DiffuX2CTLib.imaging.geometry import default_pair
from DiffuX2CTLib.imaging.image_io import read_radiograph
from DiffuX2CTLib.inference.input_checks import pair_problems, polarity_problems
from DiffuX2CTLib.inference.options import ReconstructionOptions
from DiffuX2CTLib.inference.preprocess import prepare_pair
from DiffuX2CTLib.inference.reconstruct import reconstruct_pair

SAMPLE = Path(__file__).resolve().parent.parent / "Resources" / "SampleData"


def _problems(ap_path, lateral_path) -> list[str]:
    ap, lateral = read_radiograph(ap_path, "ap"), read_radiograph(lateral_path, "lateral")
    images, _ = prepare_pair(ap, lateral, default_pair()[0])
    return pair_problems(ap, lateral, images)


def _write_variant(path: Path, pixels: np.ndarray) -> Path:
    image = sitk.GetImageFromArray(pixels.astype(np.float32)[None])
    image.SetSpacing((1.6, 1.6, 1.0))
    sitk.WriteImage(image, str(path))
    return path


def _sample_pixels(view: str) -> np.ndarray:
    return sitk.GetArrayFromImage(sitk.ReadImage(str(SAMPLE / f"{view}.nrrd")))[0]


def test_the_sample_pair_passes():
    assert _problems(SAMPLE / "ap.nrrd", SAMPLE / "lateral.nrrd") == []


def test_a_second_frontal_view_is_caught(tmp_path):
    copy = _write_variant(tmp_path / "lateral.nrrd", _sample_pixels("ap"))
    assert any("looks like the frontal one" in p for p in _problems(SAMPLE / "ap.nrrd", copy))


def test_views_of_different_regions_are_caught(tmp_path):
    upside_down = _write_variant(tmp_path / "lateral.nrrd", _sample_pixels("lateral")[::-1])
    assert any("same body region" in p for p in _problems(SAMPLE / "ap.nrrd", upside_down))


def test_saturated_and_blank_images_are_caught(tmp_path):
    pixels = _sample_pixels("ap")
    saturated = _write_variant(tmp_path / "saturated.nrrd", np.minimum(pixels, np.percentile(pixels, 50)))
    assert any("saturated at its brightest value" in p for p in _problems(saturated, SAMPLE / "lateral.nrrd"))
    detector_noise = 5.0 + np.random.default_rng(1).normal(0.0, 0.01, pixels.shape)  # an exposure without a patient
    blank = _write_variant(tmp_path / "blank.nrrd", detector_noise)
    assert any("nearly blank" in p for p in _problems(blank, SAMPLE / "lateral.nrrd"))


def test_a_colour_photograph_is_caught(tmp_path):
    rng = np.random.default_rng(0)
    photo = sitk.GetImageFromArray(rng.integers(0, 255, (128, 128, 3), dtype=np.uint8), isVector=True)
    sitk.WriteImage(photo, str(tmp_path / "photo.png"))
    assert any("colour picture" in p for p in _problems(tmp_path / "photo.png", SAMPLE / "lateral.nrrd"))


def test_reconstruction_refuses_then_runs_when_overridden(tmp_path):
    copy = _write_variant(tmp_path / "lateral copy.nrrd", _sample_pixels("ap"))
    with pytest.raises(InputError, match="second frontal view.*turn the input checks off"):
        reconstruct_pair(SAMPLE / "ap.nrrd", copy, options=ReconstructionOptions(method="regression"))
    result = reconstruct_pair(
        SAMPLE / "ap.nrrd", copy, options=ReconstructionOptions(method="regression", check_inputs=False)
    )
    assert "input check overridden" in result.provenance["notes"]


def test_inverted_polarity_is_caught_in_either_view_even_when_cropped(tmp_path):
    """Air bright, bone dark: cleaning would take the bright air for collimation, so it is judged before."""
    for view in ("ap", "lateral"):
        pixels = _sample_pixels(view)
        _write_variant(tmp_path / f"{view}.nrrd", pixels.max() + pixels.min() - pixels)
    inverted = polarity_problems(
        read_radiograph(tmp_path / "ap.nrrd", "ap"), read_radiograph(tmp_path / "lateral.nrrd", "lateral")
    )
    assert inverted == [
        f"{view}.nrrd: the {role} image looks inverted (air bright, bone dark): "
        "its darkest pixels lie in the middle of the body, "
        "where a radiograph is brightest; invert it (for DICOM, check PhotometricInterpretation)"
        for view, role in (("ap", "frontal"), ("lateral", "lateral"))
    ]
    upright = [read_radiograph(SAMPLE / f"{view}.nrrd", view) for view in ("ap", "lateral")]
    assert polarity_problems(*upright) == []
    pixels = _sample_pixels("ap")[:, 64:192]  # cropped to the body: no air beside it, the lungs are the darkest
    cropped = _write_variant(tmp_path / "cropped.nrrd", pixels)
    flipped = _write_variant(tmp_path / "cropped-inverted.nrrd", pixels.max() + pixels.min() - pixels)
    assert polarity_problems(read_radiograph(cropped, "ap"), upright[1]) == []
    assert len(polarity_problems(read_radiograph(flipped, "ap"), upright[1])) == 1
    with pytest.raises(
        InputError, match="ap.nrrd: the frontal image looks inverted.*lateral.nrrd: the lateral image looks inverted"
    ):
        reconstruct_pair(
            tmp_path / "ap.nrrd", tmp_path / "lateral.nrrd", options=ReconstructionOptions(method="regression")
        )


def test_swapped_views_without_view_information_are_caught(tmp_path):
    """PNG files say nothing of their view: a frontal view is known by the body's width (a lateral shows its depth)."""
    for view in ("ap", "lateral"):
        pixels = _sample_pixels(view)
        sitk.WriteImage(
            sitk.GetImageFromArray(np.rint((pixels - pixels.min()) / np.ptp(pixels) * 255).astype(np.uint8)),
            str(tmp_path / f"{view}.png"),
        )
    assert _problems(tmp_path / "ap.png", tmp_path / "lateral.png") == []
    problems = _problems(tmp_path / "lateral.png", tmp_path / "ap.png")
    assert len(problems) == 1 and re.fullmatch(
        r"lateral.png and ap.png: the views look swapped: the body spans \d+ % of the frontal image's width "
        r"but \d+ % of the "
        r"lateral one's, and a frontal view shows the torso's width, wider than its depth",
        problems[0],
    )
    # files that say which view they are are judged by that (a header mismatch is its own error)
    assert _problems(SAMPLE / "ap.nrrd", SAMPLE / "lateral.nrrd") == []


def test_a_mirrored_lateral_is_caught_by_where_its_spine_lies(tmp_path):
    """The spine lies on the posterior side of a lateral view, the right of the image as the model takes it: in a
    lateral mirrored left-right it lies on the left, anterior side: the pair is refused when the file gave no
    orientation, and noted with a warning when it did (the frontal view's mirror has no such landmark and is not
    judged)."""
    from DiffuX2CTLib.imaging.image_io import detector_image, write_image
    from DiffuX2CTLib.inference.input_checks import orientation_notes, spine_position, spine_side

    ap, lateral = read_radiograph(SAMPLE / "ap.nrrd", "ap"), read_radiograph(SAMPLE / "lateral.nrrd", "lateral")
    images, _ = prepare_pair(ap, lateral, default_pair()[0].with_detector(64))
    assert spine_position(images[1]) > 0.7 and spine_position(images[1][:, ::-1]) < 0.3
    assert spine_side(images[1])[0] == "posterior" and spine_side(images[1][:, ::-1])[0] == "anterior"
    pixels = _sample_pixels("lateral")
    mirrored = _write_variant(tmp_path / "lateral.nrrd", pixels[:, ::-1])
    problems = _problems(SAMPLE / "ap.nrrd", mirrored)
    assert len(problems) == 1 and re.fullmatch(
        r"lateral.nrrd: the lateral image looks mirrored left-right: its densest vertical band, the spine, lies at "
        r"\d+ % of the body's depth from the image's left, but the model takes laterals with anterior on the left "
        r"and the spine on the posterior, right side; mirror it \(a pelvic view can mislead this check, and an "
        r"image that is no lateral view fails it too\)",
        problems[0],
    )
    assert _problems(SAMPLE / "ap.nrrd", _write_variant(tmp_path / "upright.nrrd", pixels)) == []
    with pytest.raises(InputError, match="lateral.nrrd: the lateral image looks mirrored left-right"):
        reconstruct_pair(SAMPLE / "ap.nrrd", mirrored, options=ReconstructionOptions(method="regression"))
    # a file that gives its orientation is trusted: the mirror is a warning in the notes, not a refusal
    header = read_radiograph(SAMPLE / "lateral.nrrd", "lateral").geometry
    oriented = write_image(detector_image(pixels[:, ::-1].copy(), header), tmp_path / "oriented.nrrd")
    assert _problems(SAMPLE / "ap.nrrd", oriented) == []
    notes = orientation_notes(ap, read_radiograph(oriented, "lateral"), images[:, :, ::-1])
    assert len(notes) == 1 and notes[0].startswith("oriented.nrrd: the lateral image looks mirrored left-right")
    assert notes[0].endswith("; its file gives this orientation, so check the file")
