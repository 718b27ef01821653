"""The training losses: ``L_simple + lambda * L_proj`` with ``lambda = 1 / T`` for the denoiser (the
prediction MSE plus the agreement of the DRRs of the implied clean volume ``y0_hat = e + r0_hat`` with the input
radiographs), and L1 + L_proj for the conditioning network's direct estimate: alone in the regression stage, and
beside the denoiser's loss when the two train end to end.

The diffused variable is the residual ``y - e`` between the CT and the conditioning network's estimate ``e``, so
the denoiser only has to add what the direct estimate misses (texture, what the two views leave open). The residual
is multiplied by the config's ``residual_scale`` before diffusion: residuals are small (standard deviation about
0.14), and at unit scale the noise drowns them at almost every step.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from monai.networks.schedulers import DDPMScheduler

from ..imaging.drr import DRRProjector, render_model_radiographs
from ..imaging.geometry import VolumeGrid
from ..imaging.hounsfield import HUWindow
from ..model.config import ModelConfig
from ..model.network import DiffuX2CTNet
from .schedule import RESIDUAL_CLIP, denoiser_target, predicted_clean_volume

BONE_HU = 250.0
"""Voxels of the clean CT above this HU count as bone for :func:`bone_weighted_mse`."""


def projection_loss(
    volume_unit: torch.Tensor, radiographs: torch.Tensor, projector: DRRProjector, grid: VolumeGrid, window: HUWindow
) -> torch.Tensor:
    """L_proj: MSE between the DRRs of ``volume_unit`` and the (normalised) input radiographs. The DRRs' percentile
    scaling is held fixed for the gradient, which otherwise lands on the one or two rays through the percentile
    pixels and pulls thin lines into the volume (see :func:`~DiffuX2CTLib.imaging.drr.normalize_radiograph`)."""
    rendered = render_model_radiographs(volume_unit, projector, grid, window, scale_gradient=False)
    return F.mse_loss(rendered, radiographs)


def bone_weighted_mse(
    output: torch.Tensor, target: torch.Tensor, clean: torch.Tensor, window: HUWindow, bone_weight: float
) -> torch.Tensor:
    """MSE in which voxels where the clean CT is bone (above :data:`BONE_HU`) count ``bone_weight`` times, normalised
    by the mean weight so the loss keeps the plain MSE's scale. Bone is a few percent of a patient's voxels, so an
    unweighted fine-tune can trade it away for the soft tissue around it; ``bone_weight`` 1 is the plain MSE."""
    squared = (output - target).square()
    if bone_weight == 1.0:
        return squared.mean()
    bone = clean > float(window.to_unit(BONE_HU))
    weight = torch.where(bone, torch.full_like(squared, bone_weight), torch.ones_like(squared))
    return (weight * squared).mean() / weight.mean()


def diffusion_loss(
    net: DiffuX2CTNet,
    clean: torch.Tensor,
    radiographs: torch.Tensor,
    scheduler: DDPMScheduler,
    projector: DRRProjector,
    generator: torch.Generator,
    condition: tuple[list[torch.Tensor], torch.Tensor] | None = None,
    bone_weight: float = 1.0,
) -> dict[str, torch.Tensor]:
    """One training evaluation: returns ``total``, ``simple`` and ``proj`` losses.

    ``condition`` may be passed pre-computed (e.g. under ``no_grad`` with a frozen conditioning network). Without
    it the conditioning network trains with the denoiser (end to end, as in the paper): its features at every level
    learn what the denoiser needs, and its direct estimate keeps the regression stage's loss (added to ``total``
    and returned as ``regression``), so the estimate stays a CT and the regression method stays usable.
    ``bone_weight`` weighs the bone voxels of L_simple (:func:`bone_weighted_mse`).
    """
    config = net.config
    batch = clean.shape[0]
    timesteps = torch.randint(0, config.timesteps, (batch,), generator=generator, device=generator.device).to(
        clean.device
    )
    noise = torch.randn(clean.shape, generator=generator, device=generator.device).to(clean.device, clean.dtype)
    trains_conditioner = condition is None
    condition = net.condition(radiographs) if trains_conditioner else condition
    estimate = condition[1]
    scale = config.residual_scale
    residual = (clean - estimate) * scale
    noisy = scheduler.add_noise(residual, noise, timesteps)
    output = net.denoise(noisy, timesteps, condition)
    target = denoiser_target(residual, noise, timesteps, scheduler)
    simple = bone_weighted_mse(output, target, clean, config.hu_window, bone_weight)
    residual_hat = (
        predicted_clean_volume(noisy, output, timesteps, scheduler).clamp(-RESIDUAL_CLIP * scale, RESIDUAL_CLIP * scale)
        / scale
    )
    clean_hat = (estimate + residual_hat).clamp(-1.5, 1.5)
    proj = projection_loss(clean_hat, radiographs, projector, config.grid(), config.hu_window)
    losses = {"total": simple + proj / config.timesteps, "simple": simple, "proj": proj}
    if trains_conditioner:
        losses["regression"] = _estimate_loss(estimate, clean, radiographs, projector, config)["total"]
        losses["total"] = losses["total"] + losses["regression"]
    return losses


def regression_loss(
    net: DiffuX2CTNet, clean: torch.Tensor, radiographs: torch.Tensor, projector: DRRProjector
) -> dict[str, torch.Tensor]:
    """Training of the conditioning network alone (the regression baseline): L1 to the CT plus L_proj."""
    _, estimate = net.condition(radiographs)
    return _estimate_loss(estimate, clean, radiographs, projector, net.config)


def _estimate_loss(
    estimate: torch.Tensor, clean: torch.Tensor, radiographs: torch.Tensor, projector: DRRProjector, config: ModelConfig
) -> dict[str, torch.Tensor]:
    """The direct estimate's loss: L1 to the CT plus a tenth of L_proj."""
    voxel = F.l1_loss(estimate, clean)
    proj = projection_loss(estimate, radiographs, projector, config.grid(), config.hu_window)
    return {"total": voxel + 0.1 * proj, "voxel": voxel, "proj": proj}
