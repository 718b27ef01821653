"""Shapes through every block, gradients to every parameter, and the conditioning/denoiser contract."""

from __future__ import annotations

import pytest
import torch

from DiffuX2CTLib.model.conditioning import TriplaneGenerator, fourier_encoding
from DiffuX2CTLib.model.config import ModelConfig
from DiffuX2CTLib.model.denoiser import ShiftedWindowAttention
from DiffuX2CTLib.model.network import DiffuX2CTNet

TINY = ModelConfig(
    grid_size=16,
    unet_channels=(8, 16),
    attention_levels=(False, True),
    plane_channels=8,
    condition_channels=8,
    decoder_hidden=16,
    attention_heads=2,
)


def test_shapes_and_dtypes_through_every_block():
    torch.manual_seed(0)
    net = DiffuX2CTNet(TINY)
    radiographs = torch.rand(2, 2, 16, 16)
    coronal, sagittal, axial = net.conditioner.triplane(radiographs)
    assert coronal.shape == sagittal.shape == axial.shape == (2, 8, 16, 16)
    features, estimate = net.condition(radiographs)
    assert [f.shape for f in features] == [(2, 8, 16, 16, 16), (2, 8, 8, 8, 8)]
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
