"""Procedural phantoms are deterministic, varied and anatomically plausible."""

from __future__ import annotations

import numpy as np

from DiffuX2CTLib.data.geometry import VolumeGrid
from DiffuX2CTLib.phantom import generate_phantom

GRID = VolumeGrid(48, 320.0 / 48)


def test_same_seed_same_volume_other_seed_other_volume():
    a, b, c = generate_phantom(11, GRID), generate_phantom(11, GRID), generate_phantom(12, GRID)
    assert np.array_equal(a, b)
    assert np.abs(a - c).mean() > 50.0


def test_tissue_classes_are_present_in_plausible_amounts():
    volume = generate_phantom(5, VolumeGrid(64, 5.0), implant=False)
    total = volume.size
    air = (volume < -950).mean()
    lung = ((volume > -920) & (volume < -700)).mean()
    soft = ((volume > -150) & (volume < 100)).mean()
    bone = (volume > 250).mean()
    assert 0.1 < air < 0.6
    assert 0.03 < lung < 0.3
    assert soft > 0.2
    assert 0.005 < bone < 0.1
    assert volume.max() < 1500 and total == 64**3


def test_implant_is_metal_dense_and_optional():
    with_screws = generate_phantom(3, GRID, implant=True)
    without = generate_phantom(3, GRID, implant=False)
    assert (with_screws > 2000).sum() > 5
    assert (without > 2000).sum() == 0


def test_spine_is_posterior_and_on_the_midline():
    volume = generate_phantom(21, VolumeGrid(64, 5.0), implant=False)
    bone = volume > 300
    z, y, x = np.nonzero(bone)
    assert abs(np.median(x) - 31.5) < 6  # midline (x)
    assert np.median(y) > 36  # posterior half (LPS +y), spine dominates the bone count


def test_supersampling_gives_partial_volume_values():
    coarse = generate_phantom(4, GRID, supersample=2)
    assert coarse.shape == (48, 48, 48)
    assert ((coarse > -700) & (coarse < -200)).sum() > 50  # air/tissue edges averaged
