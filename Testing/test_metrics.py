"""Evaluation metrics compare in physical space and move the right way."""

from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk

from DiffuX2CTLib.core.errors import InputError
from DiffuX2CTLib.evaluation.metrics import compare
from DiffuX2CTLib.imaging.geometry import VolumeGrid
from DiffuX2CTLib.imaging.image_io import grid_image, resample_to_grid


def test_identical_volumes_score_perfectly(phantom_ct):
    metrics = compare(phantom_ct, phantom_ct)
    assert metrics["psnr_db"] == float("inf")
    assert metrics["psnr_db_note"] == "the volumes are identical within the HU window: PSNR is infinite"
    assert metrics["ssim"] == pytest.approx(1.0, abs=1e-4)
    assert metrics["mae_hu"] == 0.0 and metrics["bone_dice"] == pytest.approx(1.0)


def test_worse_predictions_score_worse(phantom_ct):
    array = sitk.GetArrayFromImage(phantom_ct)
    rng = np.random.default_rng(0)
    scores = []
    for sigma in (20.0, 200.0):
        noisy = grid_image(array + rng.normal(0, sigma, array.shape).astype(np.float32), VolumeGrid(48, 320.0 / 48))
        scores.append(compare(noisy, phantom_ct))
    assert scores[0]["psnr_db"] > scores[1]["psnr_db"] + 10
    assert scores[0]["ssim"] > scores[1]["ssim"]
    assert scores[0]["mae_hu"] < scores[1]["mae_hu"]
    assert scores[0]["bone_dice"] > scores[1]["bone_dice"]


def test_prediction_on_a_coarser_smaller_grid_is_compared_inside_its_field_of_view(phantom_ct):
    inner = VolumeGrid(20, 8.0)  # 160 mm cube in the middle of the 320 mm phantom
    prediction = grid_image(resample_to_grid(phantom_ct, inner), inner)
    metrics = compare(prediction, phantom_ct)
    assert metrics["voxels_compared"] < np.prod(phantom_ct.GetSize()) / 4
    assert metrics["psnr_db"] > 20


def test_disjoint_volumes_are_refused(phantom_ct):
    elsewhere = VolumeGrid(10, 5.0, center_lps=(1000.0, 0.0, 0.0))
    with pytest.raises(InputError, match="do not overlap in physical space"):
        compare(grid_image(np.zeros((10, 10, 10), np.float32), elsewhere), phantom_ct)


def _crop(image: sitk.Image, size: tuple[int, int, int]) -> sitk.Image:
    """The central ``size`` (x, y, z) voxels of ``image``, in place in physical space."""
    start = [(s - c) // 2 for s, c in zip(image.GetSize(), size)]
    return sitk.RegionOfInterest(image, size, start)


def test_the_covered_fraction_of_the_body_is_reported(phantom_ct):
    assert compare(phantom_ct, phantom_ct)["gt_body_covered"] == 1.0
    crop = compare(_crop(phantom_ct, (20, 20, 20)), phantom_ct)
    assert crop["mae_hu"] == 0.0 and crop["bone_dice"] == pytest.approx(1.0)  # a perfect score of a fragment...
    body = sitk.GetArrayFromImage(phantom_ct) > -500
    assert crop["gt_body_covered"] == pytest.approx(body[14:34, 14:34, 14:34].sum() / body.sum())  # ...is flagged
    assert crop["gt_body_covered"] < 0.3


def test_an_overlap_too_thin_for_ssim_is_a_clear_error(phantom_ct):
    with pytest.raises(
        InputError,
        match=r"overlap in only 48 x 48 x 1 voxels of the ground truth; scoring needs at least 7 along every axis",
    ):
        compare(_crop(phantom_ct, (48, 48, 1)), phantom_ct)


def test_a_finite_psnr_has_no_note(phantom_ct):
    assert "psnr_db_note" not in compare(phantom_ct + 10.0, phantom_ct)
