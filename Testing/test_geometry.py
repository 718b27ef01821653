"""Patient-coordinate conventions of the two views, checked with an asymmetric phantom."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from DiffuX2CTLib.imaging.drr import DRRProjector
from DiffuX2CTLib.imaging.geometry import ProjectionGeometry, View, VolumeGrid, default_pair


def test_ap_source_is_anterior_and_lateral_source_is_at_patient_right():
    ap, lateral = default_pair()
    assert ap.source_lps[1] == pytest.approx(-1000.0)  # LPS: -y is anterior
    assert ap.detector_origin_lps[1] == pytest.approx(200.0)  # detector behind the patient
    assert lateral.source_lps[0] == pytest.approx(-1000.0)  # LPS: -x is the patient's right
    assert np.all(lateral.pixel_positions_lps()[..., 0] == pytest.approx(200.0))


def test_detector_centre_lies_on_the_central_ray():
    geometry = ProjectionGeometry(View.AP, isocenter_lps=(10.0, -5.0, 30.0), detector_pixels=(5, 7))
    centre = geometry.pixel_positions_lps()[2, 3]
    ray = centre - geometry.source_lps
    assert np.allclose(np.cross(ray, geometry.ray_axis), 0.0)
    assert np.linalg.norm(ray) == pytest.approx(geometry.source_to_detector_mm)


def test_detector_direction_is_a_rotation():
    for geometry in default_pair():
        direction = geometry.detector_direction
        assert np.allclose(direction.T @ direction, np.eye(3))
        assert np.linalg.det(direction) == pytest.approx(1.0)


def test_with_detector_keeps_physical_size():
    geometry = ProjectionGeometry(View.AP).with_detector(64)
    assert geometry.detector_size_mm == pytest.approx((409.6, 409.6))
    assert geometry.pixel_spacing_mm == pytest.approx((6.4, 6.4))


def test_invalid_geometry_is_refused_with_a_reason():
    with pytest.raises(ValueError, match="source-to-detector distance > source-to-isocenter"):
        ProjectionGeometry(View.AP, source_to_detector_mm=900, source_to_isocenter_mm=1000)


def test_round_trip_through_dict():
    geometry = ProjectionGeometry(View.LATERAL, source_to_detector_mm=1500, isocenter_lps=(1.0, 2.0, 3.0))
    assert ProjectionGeometry.from_dict(geometry.to_dict()) == geometry


def test_asymmetric_phantom_lands_where_a_radiologist_expects():
    """A dense block at the patient's left, anterior, superior corner: on the AP image it must appear on the
    viewer's right and at the top; on the lateral image at the top and on the anterior (left) side."""
    grid = VolumeGrid(32, 8.0)
    volume = torch.zeros(1, 1, 32, 32, 32)
    # [z, y, x]: superior = high z, anterior = low y, left = high x
    volume[0, 0, 24:30, 4:10, 22:28] = 0.05
    geometries = [g.with_detector(32) for g in default_pair()]
    ap, lateral = DRRProjector(geometries)(volume, grid)[0]
    ap_row, ap_col = np.unravel_index(int(ap.argmax()), ap.shape)
    lat_row, lat_col = np.unravel_index(int(lateral.argmax()), lateral.shape)
    assert ap_col > 16 and ap_row < 16
    assert lat_col < 16 and lat_row < 16
