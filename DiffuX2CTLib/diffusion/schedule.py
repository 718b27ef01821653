"""The forward process and its arithmetic: ``q(y_t | y_0) = N(sqrt(a_t) y_0, (1 - a_t) I)`` with
``a_t = prod(1 - beta_i)``, held by MONAI's DDPM/DDIM schedulers built from the model config, and the conversions
between what the denoiser outputs (noise, velocity or the sample, the config's ``prediction_type``) and the clean
residual it implies.
"""

from __future__ import annotations

import torch
from monai.networks.schedulers import DDIMScheduler, DDPMScheduler

from ..model.config import ModelConfig

RESIDUAL_CLIP = 2.0
"""Residuals of volumes in [-1, 1] lie in [-2, 2] (before scaling); the schedulers clip their clean-sample
estimate there."""


SCHEDULERS = {"ddim": DDIMScheduler, "ddpm": DDPMScheduler}
"""The samplers by name: DDIM takes a few deterministic steps, DDPM all T stochastic steps (the paper's)."""


def _scheduler(kind: type, config: ModelConfig) -> DDPMScheduler | DDIMScheduler:
    limit = RESIDUAL_CLIP * config.residual_scale
    return kind(
        num_train_timesteps=config.timesteps,
        schedule=config.beta_schedule,
        prediction_type=config.prediction_type,
        clip_sample=True,
        clip_sample_min=-limit,
        clip_sample_max=limit,
    )


def training_scheduler(config: ModelConfig) -> DDPMScheduler:
    """The forward-process schedule the model is trained with."""
    return _scheduler(DDPMScheduler, config)


def sampling_scheduler(
    config: ModelConfig, sampler: str = "ddim", steps: int | None = None, device: torch.device | str = "cpu"
) -> DDPMScheduler | DDIMScheduler:
    """The scheduler a sampler named ``sampler`` runs, with its timesteps set: DDIM over ``steps`` (default: the
    config's), DDPM over all of the model's T steps (``steps`` does not apply)."""
    if sampler not in SCHEDULERS:
        raise ValueError(f"unknown sampler '{sampler}' (use {' or '.join(SCHEDULERS)})")
    scheduler = _scheduler(SCHEDULERS[sampler], config)
    count = config.timesteps if sampler == "ddpm" else (steps or config.default_steps)
    scheduler.set_timesteps(count, device=device)
    return scheduler


def is_stochastic(scheduler: DDPMScheduler | DDIMScheduler) -> bool:
    """Whether the scheduler's steps draw noise (DDPM), so that each batch item needs its own noise stream."""
    return isinstance(scheduler, DDPMScheduler)


def predicted_clean_volume(
    noisy: torch.Tensor, output: torch.Tensor, timesteps: torch.Tensor, scheduler: DDPMScheduler
) -> torch.Tensor:
    """The clean sample implied by the denoiser's ``output`` at ``timesteps``, for the scheduler's prediction type:
    ``(y_t - sqrt(1 - a) eps) / sqrt(a)``, ``sqrt(a) y_t - sqrt(1 - a) v`` or the output itself."""
    alpha = scheduler.alphas_cumprod.to(noisy.device)[timesteps].view(-1, 1, 1, 1, 1).to(noisy.dtype)
    if scheduler.prediction_type == "sample":
        return output
    if scheduler.prediction_type == "v_prediction":
        return torch.sqrt(alpha) * noisy - torch.sqrt(1.0 - alpha) * output
    return (noisy - torch.sqrt(1.0 - alpha) * output) / torch.sqrt(alpha)


def output_for_clean(noisy: torch.Tensor, clean: torch.Tensor, timesteps: torch.Tensor, scheduler) -> torch.Tensor:
    """The denoiser output that implies ``clean`` at ``timesteps`` (the inverse of :func:`predicted_clean_volume`),
    so that a scheduler's own step continues from a corrected clean estimate."""
    alpha = scheduler.alphas_cumprod.to(noisy.device)[timesteps].view(-1, 1, 1, 1, 1).to(noisy.dtype)
    if scheduler.prediction_type == "sample":
        return clean
    if scheduler.prediction_type == "v_prediction":
        return (torch.sqrt(alpha) * noisy - clean) / torch.sqrt(1.0 - alpha)
    return (noisy - torch.sqrt(alpha) * clean) / torch.sqrt(1.0 - alpha)


def denoiser_target(
    residual: torch.Tensor, noise: torch.Tensor, timesteps: torch.Tensor, scheduler: DDPMScheduler
) -> torch.Tensor:
    """What the denoiser is trained to output for the scheduler's prediction type."""
    if scheduler.prediction_type == "sample":
        return residual
    if scheduler.prediction_type == "v_prediction":
        return scheduler.get_velocity(residual, noise, timesteps)
    return noise
