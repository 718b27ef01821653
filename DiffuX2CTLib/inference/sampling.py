"""The samples of one reconstruction, drawn in batches as large as memory allows (no SimpleITK here, so the
sampling benchmark and the GPU machines can call it)."""

from __future__ import annotations

import torch

from ..core.device import resolve_precision
from ..diffusion.guidance import ProjectionGuidance
from ..diffusion.sampler import ProgressCallback, sample, sample_batch_size, sample_seed
from ..diffusion.schedule import sampling_scheduler
from ..model.config import ModelConfig
from ..model.network import DiffuX2CTNet
from .options import ReconstructionOptions


def sampling_temperature(options: ReconstructionOptions, config: ModelConfig) -> float:
    """The scale of the starting noise: the options' temperature, or the model's when they name none."""
    return config.sampling_temperature if options.temperature is None else float(options.temperature)


def sample_count(options: ReconstructionOptions, default_samples: int) -> int:
    """How many volumes a reconstruction averages: one regression estimate, or the options' number of diffusion
    samples, or when they name none the model's ``default_samples`` for DDIM (the number measured with its
    default sampler) and one for DDPM (a hundred times slower per sample already)."""
    if options.method == "regression":
        return 1
    if options.samples is not None:
        return options.samples
    return default_samples if options.sampler == "ddim" else 1


def draw_samples(
    net: DiffuX2CTNet,
    radiographs: torch.Tensor,
    condition: tuple[list[torch.Tensor], torch.Tensor],
    options: ReconstructionOptions,
    progress: ProgressCallback | None = None,
) -> list[torch.Tensor]:
    """:func:`sample_count` diffusion samples of one pair ``(1, 2, P, P)``, in batches as large as memory allows
    (:func:`~DiffuX2CTLib.diffusion.sampler.sample_batch_size`); sample ``k`` has its own noise stream
    (:func:`~DiffuX2CTLib.diffusion.sampler.sample_seed`), so the result is the same whatever the batch size;
    projection guidance as ``options.guidance`` says, the denoiser's arithmetic as ``options.precision``
    (:func:`~DiffuX2CTLib.core.device.resolve_precision`) and the temperature as :func:`sampling_temperature`."""
    config = net.config
    device = radiographs.device
    count = sample_count(options, config.default_samples)
    seeds = [sample_seed(options.seed, k) for k in range(count)]
    batch = options.batch_size or sample_batch_size(count, config, device)
    batches = [seeds[first : first + batch] for first in range(0, len(seeds), batch)]
    scheduler = sampling_scheduler(config, options.sampler, options.steps, device)
    steps = len(scheduler.timesteps)
    guidance = ProjectionGuidance(config, options.guidance, device) if options.guidance > 0 else None
    precision = resolve_precision(options.precision, device)
    temperature = sampling_temperature(options, config)
    volumes = []
    for number, chunk in enumerate(batches):
        report = (lambda i, n, number=number: progress(number * steps + i, len(batches) * steps)) if progress else None
        features, estimate = condition
        repeated = (
            [f.expand(len(chunk), *f.shape[1:]) for f in features],
            estimate.expand(len(chunk), *estimate.shape[1:]),
        )
        pairs = radiographs.expand(len(chunk), *radiographs.shape[1:])
        drawn = sample(net, pairs, scheduler, None, report, repeated, chunk, guidance, precision, temperature)
        volumes += list(drawn.split(1))
    return volumes
