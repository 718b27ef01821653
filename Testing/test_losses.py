"""The training losses train what they claim: the projection loss L_proj sends gradient to the denoiser (and to
the conditioning network where it is trained), and each stage's loss reaches its own parameters."""

from __future__ import annotations

import torch
from test_model import TINY

from DiffuX2CTLib.diffusion.losses import bone_weighted_mse, diffusion_loss, regression_loss
from DiffuX2CTLib.diffusion.schedule import training_scheduler
from DiffuX2CTLib.imaging.drr import DRRProjector
from DiffuX2CTLib.imaging.geometry import View
from DiffuX2CTLib.model.network import DiffuX2CTNet


def _setup():
    torch.manual_seed(0)
    net = DiffuX2CTNet(TINY)
    with torch.no_grad():
        net.denoiser.head[-1].weight.normal_(
            0, 0.05
        )  # a trained head is not zero; the fresh one would block every gradient
    clean = torch.rand(2, 1, 16, 16, 16) * 2 - 1
    radiographs = torch.rand(2, 2, 16, 16)
    projector = DRRProjector([TINY.detector(v) for v in (View.AP, View.LATERAL)])
    return net, clean, radiographs, projector


def _gradient_norm(parameters) -> float:
    return float(sum(p.grad.abs().sum() for p in parameters if p.grad is not None))


def test_the_projection_loss_reaches_the_denoiser_and_a_trained_conditioner():
    net, clean, radiographs, projector = _setup()
    losses = diffusion_loss(
        net, clean, radiographs, training_scheduler(TINY), projector, torch.Generator().manual_seed(1)
    )
    losses["proj"].backward()  # L_proj alone
    assert _gradient_norm(net.denoiser.parameters()) > 0
    assert _gradient_norm(net.conditioner.parameters()) > 0


def test_with_a_frozen_conditioner_the_projection_loss_still_trains_the_denoiser():
    net, clean, radiographs, projector = _setup()
    with torch.no_grad():
        condition = net.condition(radiographs)
    losses = diffusion_loss(
        net, clean, radiographs, training_scheduler(TINY), projector, torch.Generator().manual_seed(1), condition
    )
    losses["proj"].backward()
    assert _gradient_norm(net.denoiser.parameters()) > 0
    assert _gradient_norm(net.conditioner.parameters()) == 0
    assert torch.allclose(losses["total"], losses["simple"] + losses["proj"] / TINY.timesteps)


def test_a_conditioner_trained_with_the_denoiser_learns_every_level_and_keeps_its_estimate_loss():
    """End to end (``--finetune-conditioner``): the diffusion loss reaches the decoders of the coarser levels, which
    the regression stage never trains (only the finest level feeds the estimate), and the estimate keeps the
    regression stage's loss, so it does not drift away from a CT."""
    net, clean, radiographs, projector = _setup()
    losses = diffusion_loss(
        net, clean, radiographs, training_scheduler(TINY), projector, torch.Generator().manual_seed(1)
    )
    assert torch.allclose(losses["regression"], regression_loss(net, clean, radiographs, projector)["total"])
    assert torch.allclose(losses["total"], losses["simple"] + losses["proj"] / TINY.timesteps + losses["regression"])
    losses["simple"].backward()
    assert all(_gradient_norm(decoder.parameters()) > 0 for decoder in net.conditioner.decoders)
    net.zero_grad()
    regression_loss(net, clean, radiographs, projector)["total"].backward()
    assert all(_gradient_norm(decoder.parameters()) == 0 for decoder in net.conditioner.decoders[1:])


def test_the_regression_stage_trains_the_conditioner_through_both_terms():
    net, clean, radiographs, projector = _setup()
    losses = regression_loss(net, clean, radiographs, projector)
    losses["proj"].backward()
    projected = _gradient_norm(net.conditioner.parameters())
    net.zero_grad()
    regression_loss(net, clean, radiographs, projector)["voxel"].backward()
    assert projected > 0 and _gradient_norm(net.conditioner.parameters()) > 0
    assert _gradient_norm(net.denoiser.parameters()) == 0


def test_the_bone_weight_counts_bone_voxels_more_and_keeps_the_plain_mse_at_one():
    window = TINY.hu_window
    clean = torch.full((1, 1, 4, 4, 4), float(window.to_unit(40.0)))  # soft tissue
    clean[..., :1, :, :] = float(window.to_unit(700.0))  # one slab of bone: 16 of 64 voxels
    target = torch.zeros_like(clean)
    output = torch.zeros_like(clean)
    output[..., :1, :, :] = 1.0  # the error lies in the bone only
    plain = bone_weighted_mse(output, target, clean, window, 1.0)
    assert torch.isclose(plain, torch.nn.functional.mse_loss(output, target))
    weighted = bone_weighted_mse(output, target, clean, window, 4.0)
    assert torch.isclose(weighted, torch.tensor(4 * 16 / (4 * 16 + 48)))  # mean(w e) / mean(w)
    output = 1.0 - output  # the error now in the soft tissue only: it counts less than unweighted
    assert bone_weighted_mse(output, target, clean, window, 4.0) < torch.nn.functional.mse_loss(output, target)


def test_the_bone_weight_changes_the_diffusion_loss_where_the_ct_has_bone():
    net, clean, radiographs, projector = _setup()
    schedule, seed = training_scheduler(TINY), 1
    losses = [
        diffusion_loss(net, clean, radiographs, schedule, projector, torch.Generator().manual_seed(seed), None, w)
        for w in (1.0, 5.0)
    ]
    assert not torch.isclose(losses[0]["simple"], losses[1]["simple"])
    assert torch.isclose(losses[0]["proj"], losses[1]["proj"])  # only L_simple is weighted
