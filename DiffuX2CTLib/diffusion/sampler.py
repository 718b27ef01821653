"""Sampling: the reverse process run by a scheduler object (MONAI's DDIM over a few steps, or DDPM over all T
steps as in the paper), the conditioning network called once, each step reported through a callback.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

import numpy as np
import torch
from monai.networks.schedulers import DDIMScheduler, DDPMScheduler

from ..core.device import network_arithmetic
from ..model.config import ModelConfig
from ..model.network import DiffuX2CTNet
from .schedule import RESIDUAL_CLIP, is_stochastic, output_for_clean, predicted_clean_volume

if TYPE_CHECKING:
    from .guidance import ProjectionGuidance

ProgressCallback = Callable[[int, int], None]


ACTIVATIONS_PER_VOXEL_CHANNEL = 24
"""Rough count of live float tensors of the denoiser's finest width per voxel while sampling (peak of 0.73 GiB for
one 64^3 sample of the bundled model, with the model itself), for :func:`sample_batch_size` on a GPU."""


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
    scheduler: DDPMScheduler | DDIMScheduler,
    generator: torch.Generator | None = None,
    progress: ProgressCallback | None = None,
    condition: tuple[list[torch.Tensor], torch.Tensor] | None = None,
    seeds: Sequence[int] | None = None,
    guidance: ProjectionGuidance | None = None,
    precision: str = "float32",
    temperature: float = 1.0,
) -> torch.Tensor:
    """Draw one volume per radiograph pair: ``(B, 2, P, P)`` -> ``(B, 1, N, N, N)`` in [-1, 1] (the estimate plus
    a sampled residual), running ``scheduler``'s timesteps
    (:func:`~DiffuX2CTLib.diffusion.schedule.sampling_scheduler`).

    The conditioning network runs once, outside the loop. The noise comes from ``generator`` (one stream for the
    batch), or, with ``seeds`` (one per batch item), from a stream per item, so an item's result does not depend on
    the batch it is drawn in. With ``guidance``, each step's clean estimate is first moved towards agreement with
    ``radiographs`` (:mod:`DiffuX2CTLib.diffusion.guidance`). ``precision`` (``float32``, the default here, or
    ``bfloat16``; callers resolve ``auto`` with :func:`~DiffuX2CTLib.core.device.resolve_precision`) is the
    arithmetic of the denoiser's calls; the scheduler and guidance stay float32.

    ``temperature`` scales the starting noise, DDIM's only randomness (DDPM adds full-scale noise at every step
    after it): below 1 each sample lies nearer the model's most likely volume, which trades the variety of samples
    (and the width of their std-dev) for fidelity; 0 gives one volume whatever the seed.
    """
    config = net.config
    device = radiographs.device
    condition = condition if condition is not None else net.condition(radiographs)
    shape = (radiographs.shape[0], 1) + (config.grid_size,) * 3
    if seeds is not None:
        if len(seeds) != shape[0]:
            raise ValueError(f"{len(seeds)} seeds for a batch of {shape[0]}")
        volume = torch.cat([torch.randn((1, *shape[1:]), generator=torch.Generator().manual_seed(s)) for s in seeds])
        volume = volume.to(device) * temperature
        step_generators = [torch.Generator(device=device).manual_seed(s) for s in seeds]
    else:
        shared = generator if generator is not None else torch.Generator(device="cpu").manual_seed(0)
        volume = torch.randn(shape, generator=shared, device=shared.device).to(device) * temperature
        step_generators = [shared if shared.device == device else None]
    if not is_stochastic(scheduler):
        step_generators = [None]  # deterministic steps draw no noise: one step for the whole batch
    timesteps = scheduler.timesteps
    for index, t in enumerate(timesteps):
        t_batch = torch.full((shape[0],), int(t), device=device, dtype=torch.long)
        with network_arithmetic(precision, device):
            output = net.denoise(volume, t_batch, condition).float()
        if guidance is not None:
            output = _guided_output(volume, output, t_batch, scheduler, condition[1], radiographs, guidance, config)
        volume = _reverse_step(scheduler, output, int(t), volume, step_generators)
        if progress is not None:
            progress(index + 1, len(timesteps))
    return (condition[1] + volume / config.residual_scale).clamp(-1.0, 1.0)


def _reverse_step(
    scheduler: DDPMScheduler | DDIMScheduler,
    output: torch.Tensor,
    t: int,
    volume: torch.Tensor,
    generators: list[torch.Generator | None],
) -> torch.Tensor:
    """One scheduler step of the batch: with one generator per item, item by item from its own noise stream."""
    if len(generators) > 1:
        items = [
            scheduler.step(output[k : k + 1], t, volume[k : k + 1], generator=g)[0] for k, g in enumerate(generators)
        ]
        return torch.cat(items)
    return scheduler.step(output, t, volume, generator=generators[0])[0]


def _guided_output(
    noisy: torch.Tensor,
    output: torch.Tensor,
    timesteps: torch.Tensor,
    scheduler,
    estimate: torch.Tensor,
    radiographs: torch.Tensor,
    guidance: ProjectionGuidance,
    config: ModelConfig,
) -> torch.Tensor:
    """The denoiser output with its implied clean volume (estimate + residual) moved one guidance step."""
    limit = RESIDUAL_CLIP * config.residual_scale
    residual = predicted_clean_volume(noisy, output, timesteps, scheduler).clamp(-limit, limit)
    clean = guidance.step((estimate + residual / config.residual_scale).clamp(-1.0, 1.0), radiographs)
    return output_for_clean(noisy, (clean - estimate) * config.residual_scale, timesteps, scheduler)
