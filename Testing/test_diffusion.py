"""Losses and samplers: L_proj is differentiable and zero for a perfect prediction; sampling is seeded."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from test_model import TINY

from DiffuX2CTLib.diffusion.losses import diffusion_loss, projection_loss
from DiffuX2CTLib.diffusion.sampler import sample
from DiffuX2CTLib.diffusion.schedule import (
    denoiser_target,
    predicted_clean_volume,
    sampling_scheduler,
    training_scheduler,
)
from DiffuX2CTLib.imaging.drr import DRRProjector, render_model_radiographs
from DiffuX2CTLib.imaging.geometry import View
from DiffuX2CTLib.model.network import DiffuX2CTNet


def _projector():
    return DRRProjector([TINY.detector(v) for v in (View.AP, View.LATERAL)])


def test_projection_loss_is_zero_for_the_truth_and_differentiable():
    torch.manual_seed(0)
    truth = torch.rand(1, 1, 16, 16, 16) * 2 - 1
    projector = _projector()
    radiographs = render_model_radiographs(truth, projector, TINY.grid(), TINY.hu_window)
    assert float(projection_loss(truth, radiographs, projector, TINY.grid(), TINY.hu_window)) < 1e-10
    guess = torch.zeros_like(truth, requires_grad=True)
    loss = projection_loss(guess, radiographs, projector, TINY.grid(), TINY.hu_window)
    loss.backward()
    assert float(loss.detach()) > 1e-4 and guess.grad is not None and guess.grad.abs().sum() > 0


def test_predicted_clean_volume_inverts_the_forward_process():
    scheduler = training_scheduler(TINY)
    clean = torch.rand(2, 1, 4, 4, 4)
    noise = torch.randn_like(clean)
    t = torch.tensor([10, 700])
    noisy = scheduler.add_noise(clean, noise, t)
    assert torch.allclose(predicted_clean_volume(noisy, noise, t, scheduler), clean, atol=1e-4)


@pytest.mark.parametrize("prediction_type", ["epsilon", "v_prediction", "sample"])
def test_the_training_target_implies_the_true_clean_volume(prediction_type):
    scheduler = training_scheduler(dataclasses.replace(TINY, prediction_type=prediction_type))
    clean = torch.rand(2, 1, 4, 4, 4) * 2 - 1
    noise = torch.randn_like(clean)
    t = torch.tensor([10, 700])
    noisy = scheduler.add_noise(clean, noise, t)
    target = denoiser_target(clean, noise, t, scheduler)
    assert torch.allclose(predicted_clean_volume(noisy, target, t, scheduler), clean, atol=1e-4)
    assert not torch.allclose(predicted_clean_volume(noisy, target + 0.1, t, scheduler), clean, atol=1e-3)


def test_a_zero_denoiser_returns_the_estimate_whatever_the_residual_scale():
    """The denoiser's head starts at zero; predicting the clean residual, that means a zero residual, so DDIM
    must give back the regression estimate exactly: the scale cancels between diffusion and the result."""
    torch.manual_seed(0)
    radiographs = torch.rand(1, 2, 16, 16)
    for scale in (1.0, 5.0):
        net = DiffuX2CTNet(dataclasses.replace(TINY, prediction_type="sample", residual_scale=scale)).eval()
        with torch.no_grad():
            estimate = net.condition(radiographs)[1].clamp(-1, 1)
            volume = sample(
                net, radiographs, sampling_scheduler(net.config, "ddim", 3), generator=torch.Generator().manual_seed(0)
            )
        assert torch.allclose(volume, estimate, atol=1e-5)


def test_a_bad_prediction_type_or_scale_is_refused():
    with pytest.raises(ValueError, match="prediction_type"):
        dataclasses.replace(TINY, prediction_type="x0")
    with pytest.raises(ValueError, match="residual_scale"):
        dataclasses.replace(TINY, residual_scale=0.0)


def test_diffusion_loss_has_both_terms_with_lambda_one_over_t():
    torch.manual_seed(0)
    net = DiffuX2CTNet(TINY)
    clean = torch.rand(1, 1, 16, 16, 16) * 2 - 1
    radiographs = torch.rand(1, 2, 16, 16)
    losses = diffusion_loss(
        net, clean, radiographs, training_scheduler(TINY), _projector(), torch.Generator().manual_seed(1)
    )
    expected = losses["simple"] + losses["proj"] / TINY.timesteps + losses["regression"]  # the conditioner trains too
    assert torch.allclose(losses["total"], expected)
    losses["total"].backward()


def test_sampler_is_deterministic_for_a_seed_and_differs_across_seeds():
    torch.manual_seed(0)
    net = DiffuX2CTNet(TINY).eval()
    with torch.no_grad():
        net.denoiser.head[-1].weight.normal_(0, 0.05)
    radiographs = torch.rand(1, 2, 16, 16)
    calls = []
    a = sample(
        net,
        radiographs,
        sampling_scheduler(net.config, "ddim", 4),
        generator=torch.Generator().manual_seed(3),
        progress=lambda i, n: calls.append((i, n)),
    )
    b = sample(net, radiographs, sampling_scheduler(net.config, "ddim", 4), generator=torch.Generator().manual_seed(3))
    c = sample(net, radiographs, sampling_scheduler(net.config, "ddim", 4), generator=torch.Generator().manual_seed(4))
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert calls == [(1, 4), (2, 4), (3, 4), (4, 4)]
    assert a.shape == (1, 1, 16, 16, 16) and a.abs().max() <= 1.0


def test_ddpm_sampler_runs_all_timesteps():
    net = DiffuX2CTNet(TINY.__class__(**{**TINY.to_dict(), "timesteps": 12, "default_steps": 4})).eval()
    calls = []
    out = sample(
        net,
        torch.rand(1, 2, 16, 16),
        sampling_scheduler(net.config, "ddpm"),
        generator=torch.Generator().manual_seed(0),
        progress=lambda i, n: calls.append(n),
    )
    assert len(calls) == 12 and out.shape == (1, 1, 16, 16, 16)
