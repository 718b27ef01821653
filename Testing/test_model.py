"""Shapes through every block, gradients to every parameter, and the conditioning/denoiser contract."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from DiffuX2CTLib.imaging.drr import DRRProjector, model_line_integrals
from DiffuX2CTLib.model.card import ModelError
from DiffuX2CTLib.model.conditioning import ImplicitDecoder, TriplaneGenerator, fourier_encoding
from DiffuX2CTLib.model.config import ModelConfig
from DiffuX2CTLib.model.denoiser import ShiftedWindowAttention
from DiffuX2CTLib.model.network import DiffuX2CTNet
from DiffuX2CTLib.model.weights import load_widened

TINY = ModelConfig(
    grid_size=16,
    unet_channels=(8, 16),
    attention_levels=(False, True),
    plane_channels=8,
    condition_channels=8,
    decoder_hidden=16,
    attention_heads=2,
)


@pytest.mark.parametrize(("perspective", "backprojection"), [(False, False), (True, False), (False, True)])
def test_shapes_and_dtypes_through_every_block(perspective: bool, backprojection: bool):
    torch.manual_seed(0)
    net = DiffuX2CTNet(dataclasses.replace(TINY, perspective_planes=perspective, backprojection=backprojection))
    radiographs = torch.rand(2, 2, 16, 16)
    coronal, sagittal, axial = net.conditioner.triplane(radiographs)
    assert coronal.shape == sagittal.shape == axial.shape == (2, 8, 16, 16)
    features, estimate = net.condition(radiographs)
    assert [f.shape for f in features] == [(2, 10 if backprojection else 8, 16, 16, 16), (2, 8, 8, 8, 8)]
    assert estimate.shape == (2, 1, 16, 16, 16) and estimate.abs().max() <= 1.0
    noise = net.denoise(torch.randn(2, 1, 16, 16, 16), torch.tensor([3, 900]), (features, estimate))
    assert noise.shape == (2, 1, 16, 16, 16) and noise.dtype == torch.float32


def test_a_gradient_reaches_every_parameter():
    torch.manual_seed(0)
    net = DiffuX2CTNet(TINY)
    with torch.no_grad():  # zero-initialised output layers (ours and MONAI's) block gradients at step 0 only
        for parameter in net.parameters():
            if parameter.dim() > 1 and not parameter.any():
                parameter.normal_(0, 0.1)
    features, estimate = net.condition(torch.rand(1, 2, 16, 16))
    loss = (
        net.denoise(torch.randn(1, 1, 16, 16, 16), torch.tensor([10]), (features, estimate)).square().mean()
        + estimate.mean()
    )
    loss = loss + sum(f.mean() for f in features)
    loss.backward()
    missing = [name for name, p in net.named_parameters() if p.grad is None or not torch.any(p.grad != 0)]
    assert not missing


def test_shifted_window_attention_keeps_shape_and_mixes_only_locally():
    torch.manual_seed(0)
    block = ShiftedWindowAttention(8, heads=2, window=4).eval()
    x = torch.randn(1, 8, 8, 8, 8)
    poked = x.clone()
    poked[0, :, 0, 0, 0] += 5.0
    with torch.no_grad():
        y = block(x)
        change = (block(poked) - y).abs().sum(1)[0]
    assert y.shape == x.shape
    assert change[0, 0, 0] > 0
    assert float(change[7, 7, 7]) == 0.0  # two window layers cannot reach the far corner


def test_views_land_on_their_planes():
    """The AP image drives the coronal plane and the lateral image the sagittal plane, with z flipped upwards."""
    torch.manual_seed(0)
    generator = TriplaneGenerator(4).eval()
    base = torch.zeros(1, 2, 16, 16)
    coronal0, sagittal0, _ = generator(base)
    changed = base.clone()
    changed[0, 0, 0, 0] = 1.0  # top-left pixel of the AP image: the head end, patient's right
    coronal1, sagittal1, _ = generator(changed)
    assert torch.equal(sagittal0, sagittal1)
    diff = (coronal1 - coronal0).abs().sum(1)[0]
    row, col = divmod(int(diff.argmax()), 16)
    assert row >= 12 and col <= 3  # plane row index is z upwards: the head is at the top rows


def _ball_shadows(config: ModelConfig, centre_mm: tuple[float, float, float], radius_mm: float):
    """DRR line integrals (scaled to [0, 1], rows flipped as the planes are) of a dense ball in air, and the index
    of the ball's centre voxel."""
    size, grid = config.grid_size, config.grid()
    axis = (np.arange(size) + 0.5) * grid.spacing_mm - config.field_of_view_mm / 2
    z, y, x = np.meshgrid(axis, axis, axis, indexing="ij")
    inside = (x - centre_mm[0]) ** 2 + (y - centre_mm[1]) ** 2 + (z - centre_mm[2]) ** 2 < radius_mm**2
    volume = torch.full((1, 1, size, size, size), -1.0)
    volume[0, 0][torch.from_numpy(inside)] = 1.0
    shadows = model_line_integrals(volume, DRRProjector(config.detector_pair()), grid, config.hu_window)
    shadows = (shadows - shadows.amin()) / (shadows.amax() - shadows.amin())
    return shadows.flip(-2), tuple(int(v) for v in np.argwhere(inside).mean(0).round())


def test_perspective_planes_read_each_voxel_where_its_rays_cast_it():
    """A ball 130 mm left, 130 mm towards the AP source and 120 mm up casts its shadows 15-20 mm further out than
    the isocentre's scale puts it: read along each voxel's ray, the ball's voxel finds its own shadow on both
    planes and on the axial profiles; read at the isocentre's scale (parallel beams) it misses them."""
    config = ModelConfig(perspective_planes=True)
    planes, (k, j, i) = _ball_shadows(config, (130.0, -130.0, 120.0), 12.0)
    iso_detector = config.detector_size_mm * config.source_to_isocenter_mm / config.source_to_detector_mm
    extent = config.field_of_view_mm / iso_detector
    perspective = ImplicitDecoder(1, 1, 4, 1, config.field_of_view_mm / 2 / config.source_to_isocenter_mm)
    parallel = ImplicitDecoder(1, 1, 4, 1, None)
    for decoder, hits in ((perspective, True), (parallel, False)):
        coronal, sagittal = decoder.read_view_planes(planes[:, 0:1], planes[:, 1:2], config.grid_size, extent)
        for read in (coronal, sagittal):
            assert (float(read[0, 0, k, j, i]) > 0.9) is hits
    generator = TriplaneGenerator(4, iso_detector / 2 / config.source_to_isocenter_mm)
    ap_spread, lateral_spread = generator._perspective_spread(planes[:, 0:1].amax(-2), planes[:, 1:2].amax(-2))
    size = config.detector_pixels  # the axial plane lies on the detector grid, 341 mm wide at the isocentre
    row, col = (int(round((c / (iso_detector / 2) + 1) / 2 * size - 0.5)) for c in (-130.0, 130.0))
    assert float(ap_spread[0, 0, row, col]) > 0.9 and float(lateral_spread[0, 0, row, col]) > 0.9


def test_perspective_planes_keep_the_weights_and_old_configs_read_parallel():
    """The switch changes where planes are read, not which weights exist; a config file from before it loads as
    the parallel reading its weights were trained with."""
    assert ModelConfig.from_dict({k: v for k, v in TINY.to_dict().items() if k != "perspective_planes"}) == TINY
    assert not TINY.perspective_planes
    parallel = DiffuX2CTNet(TINY)
    switched = DiffuX2CTNet(dataclasses.replace(TINY, perspective_planes=True))
    switched.load_state_dict(parallel.state_dict())
    radiographs = torch.rand(1, 2, 16, 16)
    with torch.no_grad():
        assert not torch.allclose(parallel.condition(radiographs)[1], switched.condition(radiographs)[1])
    with pytest.raises(ValueError, match="perspective_planes must be true or false"):
        dataclasses.replace(TINY, perspective_planes="yes")


def test_backprojection_gives_each_voxel_the_pixels_its_rays_reach():
    """Both radiographs of a ball 130 mm left, 130 mm towards the AP source and 120 mm up, read along every voxel's
    rays: the ball's voxel reads the dark of both shadows; a voxel on the same AP ray but 100 mm deeper reads only
    the AP shadow, which is how the two channels together place a structure in depth."""
    config = ModelConfig(backprojection=True)
    planes, (k, j, i) = _ball_shadows(config, (130.0, -130.0, 120.0), 12.0)
    net = DiffuX2CTNet(config)
    with torch.no_grad():
        views = net.conditioner.backprojected(planes.flip(-2))  # back to radiograph rows, towards the feet
    assert views.shape == (1, 2, 64, 64, 64) and views.amin() >= -1.0 and views.amax() <= 1.0
    assert float(views[0, 0, k, j, i]) > 0.8 and float(views[0, 1, k, j, i]) > 0.8
    deeper = j + 20  # 100 mm further along +y, the AP ray's direction, where that ray has spread 11 % wider
    x_mm, z_mm, y_ball_mm, y_deeper_mm = (np.array([i, k, j, deeper]) + 0.5) * 5.0 - 160.0
    spread = (1000.0 + y_deeper_mm) / (1000.0 + y_ball_mm)
    i_ray, k_ray = (int(round((mm * spread + 160.0) / 5.0 - 0.5)) for mm in (x_mm, z_mm))
    assert (i_ray, k_ray) == (i + 3, k + 3)  # 15 mm further out than parallel beams would place it
    assert float(views[0, 0, k_ray, deeper, i_ray]) > 0.8 and float(views[0, 1, k_ray, deeper, i_ray]) < -0.8


def test_backprojection_starts_from_the_older_models_output():
    """A model switched to back-projection keeps every weight it had and starts its new input channels at zero:
    it computes what it did (to rounding); weights that fit in no such way are refused by name."""
    torch.manual_seed(0)
    assert ModelConfig.from_dict({k: v for k, v in TINY.to_dict().items() if k != "backprojection"}) == TINY
    older = DiffuX2CTNet(TINY).eval()
    switched = DiffuX2CTNet(dataclasses.replace(TINY, backprojection=True)).eval()
    load_widened(switched, older.state_dict())
    radiographs, noisy, timestep = torch.rand(1, 2, 16, 16), torch.randn(1, 1, 16, 16, 16), torch.tensor([500])
    with torch.no_grad():
        for net in (older, switched):  # a non-zero output layer, so the denoisers' outputs are not all zero
            net.denoiser.head[-1].weight.fill_(0.01)
        before, after = older.condition(radiographs), switched.condition(radiographs)
        assert after[0][0].shape[1] == before[0][0].shape[1] + 2 and torch.allclose(after[1], before[1], atol=1e-6)
        assert torch.allclose(
            older.denoise(noisy, timestep, before), switched.denoise(noisy, timestep, after), atol=1e-6
        )
    kept = DiffuX2CTNet(dataclasses.replace(TINY, backprojection=True))
    own = kept.denoiser.stem.weight.detach().clone()
    load_widened(kept, older.state_dict(), zero_new=False)  # as the architecture benchmark starts its two models
    stem = kept.denoiser.stem.weight.detach()
    assert torch.equal(stem[:, -2:], own[:, -2:]) and stem[:, -2:].any()
    assert torch.equal(stem[:, :-2], older.denoiser.stem.weight.detach())
    wider = DiffuX2CTNet(dataclasses.replace(TINY, condition_channels=12))
    with pytest.raises(ModelError, match="do not fit"):
        load_widened(wider, older.state_dict())
    with pytest.raises(ValueError, match="backprojection must be true or false"):
        dataclasses.replace(TINY, backprojection=1)


def test_fourier_encoding_shape_and_range():
    encoding = fourier_encoding(8, 3, torch.device("cpu"), torch.float32)
    assert encoding.shape == (1, 18, 8, 8, 8)
    assert encoding.abs().max() <= 1.0


def test_config_round_trip_and_validation():
    assert ModelConfig.from_dict(TINY.to_dict()) == TINY
    with pytest.raises(ValueError, match="unknown model config keys"):
        ModelConfig.from_dict({**TINY.to_dict(), "colour": "blue"})
    with pytest.raises(
        ValueError,
        match=r"grid_size 20 must be a multiple of 8 "
        r"\(halved at each of the 1 U-Net downsamplings, with attention windows of 4 voxels\)",
    ):
        ModelConfig(grid_size=20, unet_channels=(8, 16), attention_levels=(False, True))
