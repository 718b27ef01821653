"""Diffusion over CT volumes in [-1, 1]: noise schedule, training losses and samplers.

Forward process ``q(y_t | y_0) = N(sqrt(a_t) y_0, (1 - a_t) I)`` with ``a_t = prod(1 - beta_i)`` (MONAI's DDPM
scheduler holds the schedule). The diffused variable is the residual ``y - e`` between the CT and the conditioning
network's estimate ``e``, so the denoiser only has to add what the direct estimate misses (texture, what the two
views leave open), and an uncertain denoiser falls back towards ``e`` instead of drifting from pure noise. The
residual is multiplied by the config's ``residual_scale`` before diffusion: residuals are small (standard
deviation about 0.14), and at unit scale the noise drowns them at almost every step. The denoiser predicts what
the config's ``prediction_type`` says (noise, velocity or the residual).
Training minimises ``L_simple + lambda * L_proj`` with ``lambda = 1 / T``: the noise-prediction MSE plus the
agreement of the DRRs of the implied clean volume ``y0_hat = e + r0_hat`` with the input radiographs.
Sampling runs DDPM over all T steps (the paper's sampler) or DDIM over a few steps; both call the conditioning
network once and report each step through a callback.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

import numpy as np
import torch
import torch.nn.functional as F
from monai.networks.schedulers import DDIMScheduler, DDPMScheduler

from .data.drr import DRRProjector, hu_to_attenuation, normalize_radiograph
from .data.geometry import VolumeGrid
from .data.hounsfield import HUWindow
from .device import autocast, resolve_precision
from .model import DiffuX2CTNet, ModelConfig

if TYPE_CHECKING:
    from .guidance import ProjectionGuidance
    from .job import ReconstructionOptions

ProgressCallback = Callable[[int, int], None]


ACTIVATIONS_PER_VOXEL_CHANNEL = 24
"""Rough count of live float tensors of the denoiser's finest width per voxel while sampling (peak of 0.73 GiB for
one 64^3 sample of the bundled model, with the model itself), for :func:`sample_batch_size` on a GPU."""

RESIDUAL_CLIP = 2.0
"""Residuals of volumes in [-1, 1] lie in [-2, 2] (before scaling); the schedulers clip their clean-sample
estimate there."""


def _scheduler(kind: type, config: ModelConfig):
    limit = RESIDUAL_CLIP * config.residual_scale
    return kind(
        num_train_timesteps=config.timesteps, schedule=config.beta_schedule, prediction_type=config.prediction_type,
        clip_sample=True, clip_sample_min=-limit, clip_sample_max=limit,
    )


def training_scheduler(config: ModelConfig) -> DDPMScheduler:
    """The forward-process schedule the model is trained with."""
    return _scheduler(DDPMScheduler, config)


def unit_to_hu(volume: torch.Tensor, window: HUWindow) -> torch.Tensor:
    """[-1, 1] -> HU, differentiable (no clipping, so gradients reach values outside the window)."""
    return (volume + 1.0) / 2.0 * (window.high - window.low) + window.low


def render_model_radiographs(volume_unit: torch.Tensor, projector: DRRProjector, grid: VolumeGrid, window: HUWindow) -> torch.Tensor:
    """Normalised DRR pair ``(B, 2, P, P)`` of a ``(B, 1, N, N, N)`` volume in [-1, 1]."""
    return normalize_radiograph(projector(hu_to_attenuation(unit_to_hu(volume_unit, window)), grid))


def projection_loss(volume_unit: torch.Tensor, radiographs: torch.Tensor, projector: DRRProjector, grid: VolumeGrid, window: HUWindow) -> torch.Tensor:
    """L_proj: MSE between the DRRs of ``volume_unit`` and the (normalised) input radiographs."""
    return F.mse_loss(render_model_radiographs(volume_unit, projector, grid, window), radiographs)


def predicted_clean_volume(noisy: torch.Tensor, output: torch.Tensor, timesteps: torch.Tensor, scheduler: DDPMScheduler) -> torch.Tensor:
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


def denoiser_target(residual: torch.Tensor, noise: torch.Tensor, timesteps: torch.Tensor, scheduler: DDPMScheduler) -> torch.Tensor:
    """What the denoiser is trained to output for the scheduler's prediction type."""
    if scheduler.prediction_type == "sample":
        return residual
    if scheduler.prediction_type == "v_prediction":
        return scheduler.get_velocity(residual, noise, timesteps)
    return noise


def diffusion_loss(
    net: DiffuX2CTNet,
    clean: torch.Tensor,
    radiographs: torch.Tensor,
    scheduler: DDPMScheduler,
    projector: DRRProjector,
    generator: torch.Generator,
    condition: tuple[list[torch.Tensor], torch.Tensor] | None = None,
) -> dict[str, torch.Tensor]:
    """One training evaluation: returns ``total``, ``simple`` and ``proj`` losses.

    ``condition`` may be passed pre-computed (e.g. under ``no_grad`` with a frozen conditioning network).
    """
    config = net.config
    batch = clean.shape[0]
    timesteps = torch.randint(0, config.timesteps, (batch,), generator=generator, device=generator.device).to(clean.device)
    noise = torch.randn(clean.shape, generator=generator, device=generator.device).to(clean.device, clean.dtype)
    condition = condition if condition is not None else net.condition(radiographs)
    estimate = condition[1]
    scale = config.residual_scale
    residual = (clean - estimate) * scale
    noisy = scheduler.add_noise(residual, noise, timesteps)
    output = net.denoise(noisy, timesteps, condition)
    simple = F.mse_loss(output, denoiser_target(residual, noise, timesteps, scheduler))
    residual_hat = predicted_clean_volume(noisy, output, timesteps, scheduler).clamp(-RESIDUAL_CLIP * scale, RESIDUAL_CLIP * scale) / scale
    clean_hat = (estimate + residual_hat).clamp(-1.5, 1.5)
    proj = projection_loss(clean_hat, radiographs, projector, config.grid(), config.hu_window)
    return {"total": simple + proj / config.timesteps, "simple": simple, "proj": proj}


def regression_loss(net: DiffuX2CTNet, clean: torch.Tensor, radiographs: torch.Tensor, projector: DRRProjector) -> dict[str, torch.Tensor]:
    """Training of the conditioning network alone (the regression baseline): L1 to the CT plus L_proj."""
    _, estimate = net.condition(radiographs)
    voxel = F.l1_loss(estimate, clean)
    proj = projection_loss(estimate, radiographs, projector, net.config.grid(), net.config.hu_window)
    return {"total": voxel + 0.1 * proj, "voxel": voxel, "proj": proj}


def sample_seed(seed: int, index: int) -> int:
    """The seed of sample ``index`` of a run seeded ``seed``: the run's own seed for the first, so one sample is
    what it always was, and an independent stream for each other one, whatever batch it is drawn in."""
    if index == 0:
        return seed
    return int(np.random.SeedSequence([seed, index]).generate_state(1, np.uint64)[0])


def sample_batch_size(samples: int, config: ModelConfig, device: torch.device) -> int:
    """How many samples to draw at once: on a GPU as many as half the free memory holds, by an estimate of the
    denoiser's activations per sample; on a CPU one, as batches are slower there (16 samples of the 64^3 model took
    143 s as one batch and 84 s one after another on 2 cores, ``Testing/benchmarks/sampling.py``)."""
    if device.type != "cuda":
        return 1
    per_sample = 4 * config.grid_size**3 * config.unet_channels[0] * ACTIVATIONS_PER_VOXEL_CHANNEL
    return max(1, min(samples, int(0.5 * torch.cuda.mem_get_info(device)[0] // per_sample)))


@torch.no_grad()
def sample(
    net: DiffuX2CTNet,
    radiographs: torch.Tensor,
    steps: int | None = None,
    sampler: str = "ddim",
    generator: torch.Generator | None = None,
    progress: ProgressCallback | None = None,
    condition: tuple[list[torch.Tensor], torch.Tensor] | None = None,
    seeds: Sequence[int] | None = None,
    guidance: ProjectionGuidance | None = None,
    precision: str = "float32",
) -> torch.Tensor:
    """Draw one volume per radiograph pair: ``(B, 2, P, P)`` -> ``(B, 1, N, N, N)`` in [-1, 1] (the estimate plus
    a sampled residual).

    ``sampler`` is ``"ddim"`` (``steps`` steps, default from the config, deterministic given the seed) or
    ``"ddpm"`` (all T steps, as in the paper). The conditioning network runs once, outside the loop. The noise
    comes from ``generator`` (one stream for the batch), or, with ``seeds`` (one per batch item), from a stream
    per item, so an item's result does not depend on the batch it is drawn in. With ``guidance``, each step's clean
    estimate is first moved towards agreement with ``radiographs`` (:mod:`DiffuX2CTLib.guidance`). ``precision``
    (``float32``, the default here, or ``bfloat16``; callers resolve ``auto`` with
    :func:`~DiffuX2CTLib.device.resolve_precision`) is the arithmetic of the denoiser's calls; the scheduler and
    guidance stay float32.
    """
    config = net.config
    device = radiographs.device
    if sampler == "ddpm":
        scheduler = _scheduler(DDPMScheduler, config)
        scheduler.set_timesteps(config.timesteps, device=device)
    elif sampler == "ddim":
        scheduler = _scheduler(DDIMScheduler, config)
        scheduler.set_timesteps(steps or config.default_steps, device=device)
    else:
        raise ValueError(f"unknown sampler '{sampler}' (use ddim or ddpm)")
    condition = condition if condition is not None else net.condition(radiographs)
    shape = (radiographs.shape[0], 1) + (config.grid_size,) * 3
    if seeds is not None:
        if len(seeds) != shape[0]:
            raise ValueError(f"{len(seeds)} seeds for a batch of {shape[0]}")
        volume = torch.cat([torch.randn((1, *shape[1:]), generator=torch.Generator().manual_seed(s)) for s in seeds]).to(device)
        step_generators = [torch.Generator(device=device).manual_seed(s) for s in seeds]
    else:
        sample_generator = generator if generator is not None else torch.Generator(device="cpu").manual_seed(0)
        volume = torch.randn(shape, generator=sample_generator, device=sample_generator.device).to(device)
        step_generators = [sample_generator if sample_generator.device == device else None]
    timesteps = scheduler.timesteps
    for index, t in enumerate(timesteps):
        t_batch = torch.full((shape[0],), int(t), device=device, dtype=torch.long)
        with autocast(precision, device):
            output = net.denoise(volume, t_batch, condition)
        output = output.float()
        if guidance is not None:
            output = _guided_output(volume, output, t_batch, scheduler, condition[1], radiographs, guidance, config)
        if sampler == "ddpm" and seeds is not None:  # each item's noise from its own stream
            volume = torch.cat([scheduler.step(output[k : k + 1], int(t), volume[k : k + 1], generator=g)[0] for k, g in enumerate(step_generators)])
        elif sampler == "ddpm":
            volume, _ = scheduler.step(output, int(t), volume, generator=step_generators[0])
        else:
            volume, _ = scheduler.step(output, int(t), volume)
        if progress is not None:
            progress(index + 1, len(timesteps))
    return (condition[1] + volume / config.residual_scale).clamp(-1.0, 1.0)


def _guided_output(noisy: torch.Tensor, output: torch.Tensor, timesteps: torch.Tensor, scheduler, estimate: torch.Tensor,
                   radiographs: torch.Tensor, guidance: ProjectionGuidance, config: ModelConfig) -> torch.Tensor:
    """The denoiser output with its implied clean volume (estimate + residual) moved one guidance step."""
    limit = RESIDUAL_CLIP * config.residual_scale
    residual = predicted_clean_volume(noisy, output, timesteps, scheduler).clamp(-limit, limit)
    clean = guidance.step((estimate + residual / config.residual_scale).clamp(-1.0, 1.0), radiographs)
    return output_for_clean(noisy, (clean - estimate) * config.residual_scale, timesteps, scheduler)


def draw_samples(net: DiffuX2CTNet, radiographs: torch.Tensor, condition: tuple[list[torch.Tensor], torch.Tensor],
                 options: ReconstructionOptions, progress: ProgressCallback | None = None) -> list[torch.Tensor]:
    """``options.samples`` diffusion samples of one pair ``(1, 2, P, P)``, in batches as large as memory allows
    (:func:`sample_batch_size`); sample ``k`` has its own noise stream (:func:`sample_seed`), so the result is the
    same whatever the batch size; projection guidance as ``options.guidance`` says, and the denoiser's arithmetic as
    ``options.precision`` (:func:`~DiffuX2CTLib.device.resolve_precision`)."""
    from .guidance import ProjectionGuidance  # guidance builds on this module

    config = net.config
    seeds = [sample_seed(options.seed, k) for k in range(options.samples)]
    batch = options.batch_size or sample_batch_size(options.samples, config, radiographs.device)
    batches = [seeds[first : first + batch] for first in range(0, len(seeds), batch)]
    steps = config.timesteps if options.sampler == "ddpm" else (options.steps or config.default_steps)
    guidance = ProjectionGuidance(config, options.guidance, radiographs.device) if options.guidance > 0 else None
    precision = resolve_precision(options.precision, radiographs.device)
    volumes = []
    for number, chunk in enumerate(batches):
        report = (lambda i, n, number=number: progress(number * steps + i, len(batches) * steps)) if progress else None
        repeated = ([f.expand(len(chunk), *f.shape[1:]) for f in condition[0]], condition[1].expand(len(chunk), *condition[1].shape[1:]))
        volumes += list(sample(net, radiographs.expand(len(chunk), *radiographs.shape[1:]), options.steps, options.sampler, None, report, repeated, chunk, guidance, precision).split(1))
    return volumes
