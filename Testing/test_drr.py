"""The DRR projector against analytic path lengths, the parallel-beam limit and autograd."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from DiffuX2CTLib.imaging.drr import MU_WATER_PER_MM, DRRProjector, hu_to_attenuation, normalize_radiograph, project
from DiffuX2CTLib.imaging.geometry import ProjectionGeometry, View, VolumeGrid, default_pair

MU = 0.02


def _partial_volume(grid: VolumeGrid, inside, supersample: int = 4) -> torch.Tensor:
    """Fraction of each voxel inside a shape (supersampled), as (1, 1, D, H, W) attenuation MU."""
    n = grid.size
    offsets = (np.arange(n * supersample) + 0.5) / supersample - 0.5
    axis = grid.origin_lps[0] + offsets * grid.spacing_mm
    z, y, x = np.meshgrid(axis, axis, axis, indexing="ij")
    fraction = (
        inside(x, y, z).astype(np.float32).reshape(n, supersample, n, supersample, n, supersample).mean(axis=(1, 3, 5))
    )
    return torch.from_numpy(fraction)[None, None] * MU


def _fine_pair(pixels: int = 33, spacing: float = 1.2):
    return [
        dataclasses.replace(g, detector_pixels=(pixels, pixels), pixel_spacing_mm=(spacing, spacing))
        for g in default_pair()
    ]


def test_uniform_sphere_gives_chord_lengths_within_one_percent():
    grid = VolumeGrid(64, 2.0)
    radius = 40.0
    volume = _partial_volume(grid, lambda x, y, z: x**2 + y**2 + z**2 < radius**2)
    geometries = _fine_pair()
    drr = DRRProjector(geometries)(volume, grid)[0] / MU
    for view, geometry in enumerate(geometries):
        pixels = torch.as_tensor(geometry.pixel_positions_lps())
        source = torch.as_tensor(geometry.source_lps)
        for row, col in [(16, 16), (16, 24), (8, 16), (20, 10)]:
            direction = pixels[row, col] - source
            direction = direction / direction.norm()
            distance = torch.linalg.norm(torch.linalg.cross(-source, direction))  # ray to sphere centre
            expected = 2.0 * torch.sqrt(radius**2 - distance**2)
            assert float(drr[view, row, col]) == pytest.approx(float(expected), rel=0.01)


def test_uniform_cube_gives_its_edge_length_within_one_percent():
    grid = VolumeGrid(40, 2.0)
    half = 30.0
    volume = _partial_volume(grid, lambda x, y, z: (np.abs(x) < half) & (np.abs(y) < half) & (np.abs(z) < half))
    drr = DRRProjector(_fine_pair())(volume, grid)[0] / MU
    assert float(drr[0, 16, 16]) == pytest.approx(2 * half, rel=0.01)
    assert float(drr[1, 16, 16]) == pytest.approx(2 * half, rel=0.01)
    # an oblique ray through the cube: the source-to-pixel line crosses the y = +-half faces
    geometry = _fine_pair()[0]
    pixel = geometry.pixel_positions_lps()[16, 26]
    direction = (pixel - geometry.source_lps) / np.linalg.norm(pixel - geometry.source_lps)
    assert float(drr[0, 16, 26]) == pytest.approx(2 * half / direction[1], rel=0.01)


def test_parallel_beam_limit_equals_the_sum_along_the_axis():
    grid = VolumeGrid(24, 4.0)
    generator = torch.Generator().manual_seed(0)
    volume = torch.rand(1, 1, 24, 24, 24, generator=generator, dtype=torch.float64) * MU
    far = [
        dataclasses.replace(
            g,
            source_to_isocenter_mm=1e7,
            source_to_detector_mm=1e7 + 200.0,
            detector_pixels=(24, 24),
            pixel_spacing_mm=(4.0, 4.0),
        )
        for g in default_pair()
    ]
    ap, lateral = DRRProjector(far, samples_per_ray=24 * 8)(volume, grid)[0]
    # AP: rays along +y (array dim H); rows run along -z, columns along +x
    expected_ap = volume[0, 0].sum(dim=1).flip(0) * grid.spacing_mm
    expected_lateral = volume[0, 0].sum(dim=2).flip(0) * grid.spacing_mm
    assert torch.allclose(ap.double(), expected_ap, rtol=0.01, atol=1e-3)
    assert torch.allclose(lateral.double(), expected_lateral, rtol=0.01, atol=1e-3)


def test_gradcheck_on_a_tiny_volume():
    grid = VolumeGrid(4, 10.0)
    geometries = [dataclasses.replace(g, detector_pixels=(3, 3), pixel_spacing_mm=(12.0, 12.0)) for g in default_pair()]
    sources = torch.as_tensor(np.stack([g.source_lps for g in geometries]))[None]
    pixels = torch.as_tensor(np.stack([g.pixel_positions_lps() for g in geometries]))[None]
    world_to_index = torch.as_tensor(grid.world_to_index())
    volume = (torch.rand(1, 1, 4, 4, 4, dtype=torch.float64) * MU).requires_grad_(True)
    assert torch.autograd.gradcheck(
        lambda v: project(v, world_to_index, sources, pixels, 6), (volume,), eps=1e-6, atol=1e-6
    )


def test_batched_views_match_single_view_renders():
    grid = VolumeGrid(16, 10.0)
    volume = torch.rand(2, 1, 16, 16, 16) * MU
    geometries = [g.with_detector(16) for g in default_pair()]
    both = DRRProjector(geometries)(volume, grid)
    for view, geometry in enumerate(geometries):
        single = DRRProjector([geometry])(volume, grid)
        assert torch.allclose(both[:, view], single[:, 0], atol=1e-6)
    assert both.shape == (2, 2, 16, 16)


def test_hu_to_attenuation_and_normalisation():
    assert float(hu_to_attenuation(torch.tensor(0.0))) == pytest.approx(MU_WATER_PER_MM)
    assert float(hu_to_attenuation(torch.tensor(-1000.0))) == 0.0
    assert float(hu_to_attenuation(torch.tensor(-1500.0))) == 0.0
    image = torch.linspace(0, 10, 400).reshape(20, 20)
    normalised = normalize_radiograph(image)
    assert float(normalised.min()) == 0.0 and float(normalised.max()) == 1.0
    assert torch.allclose(normalize_radiograph(image * 3.0 + 7.0), normalised, atol=1e-5)  # gain invariant


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_cuda_matches_cpu():
    grid = VolumeGrid(16, 10.0)
    volume = torch.rand(1, 1, 16, 16, 16) * MU
    projector = DRRProjector([g.with_detector(16) for g in default_pair()])
    cpu = projector(volume, grid)
    gpu = projector.cuda()(volume.cuda(), grid).cpu()
    assert torch.allclose(cpu, gpu, atol=1e-5)


def test_projector_refuses_mixed_detector_shapes():
    with pytest.raises(ValueError, match="share one detector shape"):
        DRRProjector(
            [ProjectionGeometry(View.AP).with_detector(32), ProjectionGeometry(View.LATERAL).with_detector(16)]
        )


def test_normalisation_within_a_mask_ignores_the_pixels_outside_it():
    image = torch.linspace(0.0, 1.0, 64).reshape(8, 8)
    within = torch.zeros(8, 8, dtype=torch.bool)
    within[2:6, 2:6] = True
    changed = image.clone()
    changed[~within] = torch.where(torch.rand(48) < 0.5, -50.0, 50.0)  # what lies outside sets no scale
    scaled = normalize_radiograph(image, within=within)[within]
    assert torch.equal(scaled, normalize_radiograph(changed, within=within)[within])
    assert scaled.min() == 0.0 and scaled.max() == 1.0
