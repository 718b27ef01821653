"""A radiograph pair mapped onto the model's detector keeps its physical scale and its isocentre."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from DiffuX2CTLib.core.errors import InputError
from DiffuX2CTLib.imaging.geometry import View, default_pair
from DiffuX2CTLib.imaging.image_io import Radiograph, detector_image, read_radiograph, write_image
from DiffuX2CTLib.imaging.synthesize import pair_for_ct, render_pair
from DiffuX2CTLib.inference.preprocess import prepare_pair


def _correlation(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.corrcoef(a.ravel(), b.ravel())[0, 1])


def test_full_resolution_drr_resampled_to_model_detector_matches_a_direct_render(tmp_path, phantom_ct):
    full = pair_for_ct(phantom_ct)
    drrs = render_pair(phantom_ct, full)
    paths = [write_image(detector_image(d, g), tmp_path / f"{g.view.value}.nrrd") for d, g in zip(drrs, full)]
    ap, lateral = (read_radiograph(p, v) for p, v in zip(paths, (View.AP, View.LATERAL)))
    model_detector = default_pair()[0].with_detector(32)
    images, geometries = prepare_pair(ap, lateral, model_detector)
    assert images.shape == (2, 32, 32) and images.min() >= 0.0 and images.max() <= 1.0
    assert geometries[0].isocenter_lps == pytest.approx(full[0].isocenter_lps)
    direct = render_pair(
        phantom_ct,
        [
            dataclasses.replace(model_detector, view=v, isocenter_lps=full[0].isocenter_lps)
            for v in (View.AP, View.LATERAL)
        ],
    )
    for view in range(2):
        assert _correlation(images[view], direct[view]) > 0.98


def test_a_radiograph_with_a_different_magnification_is_rescaled(phantom_ct):
    """The same anatomy imaged with a longer source-detector distance (more magnification) and smaller pixels
    must land at the same scale on the model detector."""
    standard = pair_for_ct(phantom_ct)
    magnified = tuple(
        dataclasses.replace(g, source_to_detector_mm=1400.0, pixel_spacing_mm=(1.4, 1.4), detector_pixels=(360, 360))
        for g in standard
    )
    model_detector = default_pair()[0].with_detector(32)
    pairs = []
    for geometries in (standard, magnified):
        drrs = render_pair(phantom_ct, geometries)
        radiographs = [Radiograph(d, g.pixel_spacing_mm, g, f"{g.view.value}.nrrd") for d, g in zip(drrs, geometries)]  # type: ignore[arg-type]
        pairs.append(prepare_pair(*radiographs, model_detector)[0])
    for view in range(2):
        assert _correlation(pairs[0][view], pairs[1][view]) > 0.97


def test_views_from_different_set_ups_are_refused(phantom_ct):
    from pathlib import Path

    ap_geometry, lateral_geometry = pair_for_ct(phantom_ct)
    far = dataclasses.replace(lateral_geometry, isocenter_lps=(0.0, 0.0, 300.0))
    pixels = np.random.rand(*ap_geometry.detector_pixels).astype(np.float32)
    ap = Radiograph(pixels, ap_geometry.pixel_spacing_mm, ap_geometry, Path("ap.nrrd"))
    lateral = Radiograph(pixels, far.pixel_spacing_mm, far, Path("lat.nrrd"))
    with pytest.raises(InputError, match=r"ap.nrrd and lat.nrrd: mismatched views, their isocentres are \d+ mm apart"):
        prepare_pair(ap, lateral, default_pair()[0].with_detector(32))
    swapped = Radiograph(pixels, ap_geometry.pixel_spacing_mm, ap_geometry, Path("ap.nrrd"))
    with pytest.raises(InputError, match=r"ap.nrrd: is a ap view, given as lateral"):
        prepare_pair(swapped, swapped, default_pair()[0].with_detector(32))
