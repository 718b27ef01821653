"""Float32 3D convolutions on a CPU go through oneDNN (DiffuX2CTLib.core.cpu_convolution): the same results and
gradients as PyTorch's own path, and every call it must leave alone left alone."""

from __future__ import annotations

import contextlib

import pytest
import torch
import torch.nn.functional as F
from test_model import TINY

from DiffuX2CTLib.core.cpu_convolution import OneDNNConvolutions, onednn_convolutions
from DiffuX2CTLib.core.device import network_arithmetic
from DiffuX2CTLib.model.network import DiffuX2CTNet

pytestmark = pytest.mark.skipif(not torch.backends.mkldnn.is_available(), reason="this PyTorch has no oneDNN")


def _denoiser_call(net: DiffuX2CTNet) -> torch.Tensor:
    radiographs = torch.rand(
        1, 2, TINY.detector_pixels, TINY.detector_pixels, generator=torch.Generator().manual_seed(1)
    )
    noisy = torch.randn((1, 1) + (TINY.grid_size,) * 3, generator=torch.Generator().manual_seed(2))
    return net.denoise(noisy, torch.tensor([500]), net.condition(radiographs))


def test_the_denoiser_gives_the_same_output_and_gradients_through_onednn():
    """Batch 1 at the tiny grid is where PyTorch would take its slow reference kernel: every 3D convolution is
    routed, and the output and the weights' gradients agree with PyTorch's own path to float32 rounding."""
    torch.manual_seed(0)
    net = DiffuX2CTNet(TINY)
    plain = _denoiser_call(net)
    plain.square().mean().backward()
    plain_grads = [p.grad.clone() for p in net.parameters() if p.grad is not None]
    net.zero_grad()
    mode = OneDNNConvolutions()
    with mode:
        routed = _denoiser_call(net)
        routed.square().mean().backward()
    conv3d_layers = sum(isinstance(m, torch.nn.Conv3d) for m in net.modules())
    assert mode.routed == conv3d_layers  # each 3D convolution of the network runs once in the call
    torch.testing.assert_close(routed, plain, rtol=1e-4, atol=1e-4)
    grads = [p.grad for p in net.parameters() if p.grad is not None]
    assert len(grads) == len(plain_grads)
    for grad, expected in zip(grads, plain_grads):
        torch.testing.assert_close(grad, expected, rtol=1e-3, atol=1e-5)


def test_calls_it_must_not_take_run_as_they_would():
    """bfloat16 autocast (its own kernels), float64, string padding and 2D convolutions are left to PyTorch, and on
    a GPU there is no mode at all."""
    volume, weight = torch.randn(1, 2, 6, 6, 6), torch.randn(3, 2, 3, 3, 3)
    mode = OneDNNConvolutions()
    with mode:
        with torch.autocast("cpu", dtype=torch.bfloat16):
            assert F.conv3d(volume, weight, padding=1).dtype == torch.bfloat16
        assert F.conv3d(volume.double(), weight.double(), padding=1).dtype == torch.float64
        same = F.conv3d(volume, weight, padding="same")
        F.conv2d(torch.randn(1, 2, 6, 6), torch.randn(3, 2, 3, 3))
        assert mode.routed == 0
        strided = F.conv3d(volume, weight, None, 2, 1)
        assert mode.routed == 1
    torch.testing.assert_close(same, F.conv3d(volume, weight, padding=1))
    torch.testing.assert_close(strided, F.conv3d(volume, weight, stride=2, padding=1), rtol=1e-4, atol=1e-4)
    assert isinstance(onednn_convolutions(torch.device("cuda")), contextlib.nullcontext)
    assert isinstance(onednn_convolutions(torch.device("cpu")), OneDNNConvolutions)


def test_network_calls_take_autocast_in_bfloat16_and_onednn_in_float32_on_a_cpu():
    cpu = torch.device("cpu")
    assert isinstance(network_arithmetic("bfloat16", cpu), torch.autocast)
    assert isinstance(network_arithmetic("float32", cpu), OneDNNConvolutions)
    assert isinstance(network_arithmetic("float32", torch.device("cuda")), contextlib.nullcontext)
