"""Training: procedural phantoms or a folder of CTs, DRR pairs rendered on the fly, two stages.

Stage ``regression`` trains the conditioning network (tri-plane generator + implicit decoder) to predict the CT
directly; stage ``diffusion`` trains the denoiser on ``L_simple + L_proj / T`` conditioned on it (frozen by
default). Every run is resumable exactly: the data of step ``s`` and its noise come from seeds derived from
``s``, and checkpoints (model, EMA, optimiser, step) are written atomically. Phantom seeds from
``HELD_OUT_SEED_START`` up are never used for training (they are the sample and the test set).
"""

from __future__ import annotations

import dataclasses
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import SimpleITK as sitk
import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel
from torch.optim.swa_utils import AveragedModel

from .data.drr import DRRProjector, normalize_radiograph
from .data.geometry import View, VolumeGrid
from .data.intensity import add_collimation_and_marker, clean_radiograph
from .data.io import (
    InputError,
    find_ct_volumes,
    grid_image,
    image_center_lps,
    read_ct,
    resample_to_grid,
)
from .data.synthesize import render_pair
from .device import resolve_device
from .diffusion import diffusion_loss, regression_loss, training_scheduler
from .files import write_text
from .model import DiffuX2CTNet, ModelConfig
from .modelfile import load_model, save_model
from .phantom import generate_phantom

HELD_OUT_SEED_START = 900_000
CHECKPOINT_NAME = "checkpoint.pt"


@dataclass
class TrainSettings:
    """What one training run does; stored in the checkpoint and the model card."""

    out: str
    stage: str = "regression"
    data: str = "phantoms"
    steps: int = 1000
    batch: int = 1
    learning_rate: float = 5e-4
    grid_size: int = 64
    checkpoint_every: int = 50
    seed: int = 0
    init: str | None = None
    prediction_type: str | None = None
    residual_scale: float | None = None
    freeze_conditioner: bool = True
    ema_decay: float = 0.995
    device: str = "auto"


def fine_grid(config: ModelConfig) -> VolumeGrid:
    """The model's field of view at twice its resolution: training volumes carry finer detail than the model
    resolves, as a real CT does."""
    return VolumeGrid(2 * config.grid_size, config.field_of_view_mm / (2 * config.grid_size))


def phantom_ct(seed: int, config: ModelConfig) -> sitk.Image:
    """Phantom ``seed`` as a HU image on :func:`fine_grid`."""
    fine = fine_grid(config)
    return grid_image(generate_phantom(seed, fine), fine)


class TrainingData:
    """Paired (CT in [-1, 1], normalised DRR pair) batches, a pure function of the sample index.

    ``source`` is ``phantoms`` (a new phantom per sample), ``phantom:SEED`` (always the same phantom, for
    overfitting checks) or a folder of CT volumes.
    """

    def __init__(self, config: ModelConfig, source: str, seed: int) -> None:
        self.config = config
        self.seed = seed
        self.files: list[Path] = []
        self.fixed_seed: int | None = None
        if source.startswith("phantom:"):
            self.fixed_seed = int(source.split(":", 1)[1])
        elif source != "phantoms":
            if not Path(source).is_dir():
                raise InputError(f"{Path(source).name}: training data must be 'phantoms' or a folder of CT volumes")
            self.files = find_ct_volumes(source)

    def phantom_seed(self, index: int) -> int:
        """The phantom seed of sample ``index`` (never a held-out seed)."""
        return self.fixed_seed if self.fixed_seed is not None else (self.seed * 7919 + index) % HELD_OUT_SEED_START

    def _volume(self, index: int, rng: np.random.Generator) -> sitk.Image:
        if not self.files:
            return phantom_ct(self.phantom_seed(index), self.config)
        fine = fine_grid(self.config)
        ct = read_ct(self.files[index % len(self.files)])
        centre = np.asarray(image_center_lps(ct)) + rng.uniform(-15, 15, 3)
        moved = VolumeGrid(fine.size, fine.spacing_mm, tuple(centre))
        return grid_image(resample_to_grid(ct, moved), moved)

    def sample(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        """``(1, N, N, N)`` target and ``(2, P, P)`` radiographs of sample ``index``, with geometry jitter,
        intensity augmentation, collimation and markers so the model does not rely on a perfect DRR."""
        rng = np.random.default_rng([self.seed, index])
        volume = self._volume(index, rng)
        centre = image_center_lps(volume)
        geometries = []
        for view in (View.AP, View.LATERAL):
            nominal = self.config.detector(view, centre)
            geometries.append(dataclasses.replace(
                nominal,
                source_to_detector_mm=nominal.source_to_detector_mm * rng.uniform(0.97, 1.03),
                source_to_isocenter_mm=nominal.source_to_isocenter_mm * rng.uniform(0.97, 1.03),
                isocenter_lps=tuple(np.asarray(centre) + rng.uniform(-4, 4, 3)),
            ))
        drrs = torch.from_numpy(render_pair(volume, geometries, samples_per_ray=2 * self.config.grid_size))
        gamma = torch.from_numpy(rng.uniform(0.8, 1.25, (2, 1, 1))).float()
        drrs = drrs.clamp(min=0) ** gamma
        drrs = drrs + torch.from_numpy(rng.normal(0, 0.01, drrs.shape)).float() * drrs.amax(dim=(-2, -1), keepdim=True)
        # Clinical borders and markers, then the cleaning inference applies: the model learns from what it is fed.
        drrs = torch.from_numpy(np.stack([clean_radiograph(add_collimation_and_marker(view, rng))[0] for view in drrs.numpy()]))
        radiographs = normalize_radiograph(drrs)
        grid = self.config.grid(centre)
        target = self.config.hu_window.to_unit(resample_to_grid(volume, grid))
        return torch.from_numpy(target.astype(np.float32))[None], radiographs.float()

    def batch(self, first_index: int, size: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Stacked samples ``first_index .. first_index + size - 1``."""
        pairs = [self.sample(first_index + k) for k in range(size)]
        return torch.stack([p[0] for p in pairs]), torch.stack([p[1] for p in pairs])


def _ema_with_warmup(decay: float):
    """EMA whose decay ramps up as ``(1 + n) / (10 + n)``, so short runs are not dominated by early weights."""

    def average(averaged: torch.Tensor, current: torch.Tensor, count: torch.Tensor) -> torch.Tensor:
        rate = min(decay, (1.0 + float(count)) / (10.0 + float(count)))
        return averaged * rate + current * (1.0 - rate)

    return average


def _initial_net(settings: TrainSettings) -> DiffuX2CTNet:
    """A new model, or the one named by ``--init``, with the run's diffusion parametrisation (prediction type,
    residual scale) when it sets one: these change what the denoiser learns, not its architecture."""
    if settings.init:
        init = Path(settings.init)
        if init.is_dir():
            net = load_model(init)[0].train()
        else:
            checkpoint = _load_checkpoint(init)
            net = DiffuX2CTNet(ModelConfig.from_dict(json.loads(checkpoint["config"])))
            net.load_state_dict(checkpoint["ema"] if "ema" in checkpoint else checkpoint["model"])
    else:
        net = DiffuX2CTNet(ModelConfig(grid_size=settings.grid_size))
    changes = {k: v for k, v in (("prediction_type", settings.prediction_type), ("residual_scale", settings.residual_scale)) if v is not None}
    if not changes:
        return net
    try:
        config = dataclasses.replace(net.config, **changes)
    except ValueError as error:
        raise InputError(str(error)) from None
    reparametrised = DiffuX2CTNet(config)
    reparametrised.load_state_dict(net.state_dict())
    return reparametrised


def _load_checkpoint(path: Path, device: torch.device | str = "cpu") -> dict:
    """A training checkpoint, loaded without unpickling code (``weights_only``); damage is a clear error."""
    try:
        checkpoint = torch.load(path, map_location=device, weights_only=True)
    except Exception as error:  # torch raises many types for damaged archives
        raise InputError(f"{path.name}: unreadable training checkpoint ({str(error).splitlines()[0][:160]}); delete it to start over") from None
    missing = {"step", "model", "ema", "optimizer", "config"} - set(checkpoint)
    if missing:
        raise InputError(f"{path.name}: not a DiffuX2CT training checkpoint (missing {sorted(missing)})")
    return checkpoint


def _save_checkpoint(path: Path, step: int, net: DiffuX2CTNet, ema: AveragedModel, optimizer: torch.optim.Optimizer, settings: TrainSettings) -> None:
    temporary = path.with_name(f".{path.name}.partial")
    torch.save(
        {
            "step": step,
            "model": net.state_dict(),
            "ema": ema.module.state_dict(),
            "ema_averager": ema.state_dict(),
            "optimizer": optimizer.state_dict(),
            "config": json.dumps(net.config.to_dict()),
            "settings": json.dumps(dataclasses.asdict(settings)),
        },
        temporary,
    )
    os.replace(temporary, path)


def plot_loss_curve(log_path: Path, png_path: Path) -> None:
    """Loss per step (raw and smoothed) from the JSON-lines log."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    records = [json.loads(line) for line in log_path.read_text().splitlines() if line.strip()]
    records = [r for r in records if "loss" in r]
    if not records:
        return
    steps = np.array([r["step"] for r in records])
    losses = np.array([r["loss"] for r in records])
    window = max(1, len(losses) // 20)
    smooth = np.convolve(losses, np.ones(window) / window, mode="valid")
    figure, axis = plt.subplots(figsize=(6, 3.5), dpi=100)
    axis.plot(steps, losses, alpha=0.3, label="loss")
    axis.plot(steps[window - 1:], smooth, label=f"mean of {window}")
    axis.set_yscale("log")
    axis.set_xlabel("step")
    axis.set_title(f"{records[-1].get('stage', '')} training loss")
    axis.legend()
    figure.tight_layout()
    temporary = png_path.with_name(f".{png_path.name}.partial.png")
    figure.savefig(temporary)
    plt.close(figure)
    os.replace(temporary, png_path)


def _weights_digest(net: torch.nn.Module) -> float:
    return float(sum(p.detach().double().sum() * (i + 1) for i, p in enumerate(net.parameters())))


def train(settings: TrainSettings, show_progress: bool = True) -> Path:
    """Run (or resume) a training run in ``settings.out``; returns the exported model folder."""
    distributed = int(os.environ.get("WORLD_SIZE", "1")) > 1
    device = resolve_device(settings.device)
    if distributed:
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
        if device.type == "cuda":
            device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))
    rank, world = (dist.get_rank(), dist.get_world_size()) if distributed else (0, 1)
    if settings.stage not in ("regression", "diffusion"):
        raise InputError(f"unknown training stage '{settings.stage}' (use regression or diffusion)")
    out = Path(settings.out)
    out.mkdir(parents=True, exist_ok=True)
    checkpoint_path, log_path = out / CHECKPOINT_NAME, out / "log.jsonl"

    torch.manual_seed(settings.seed)  # a new model's initial weights follow the run's seed
    net = _initial_net(settings).to(device)
    checkpoint = _load_checkpoint(checkpoint_path, device) if checkpoint_path.exists() else None
    if checkpoint is not None:  # a resumed run keeps the parametrisation it started with
        stored = ModelConfig.from_dict(json.loads(checkpoint["config"]))
        if stored != net.config:
            net = DiffuX2CTNet(stored).to(device)
    config = net.config
    data = TrainingData(config, settings.data, settings.seed)
    if settings.stage == "regression":
        parameters = list(net.conditioner.parameters())
    else:
        parameters = list(net.denoiser.parameters()) + ([] if settings.freeze_conditioner else list(net.conditioner.parameters()))
        net.conditioner.requires_grad_(not settings.freeze_conditioner)
    optimizer = torch.optim.AdamW(parameters, lr=settings.learning_rate, weight_decay=1e-4)
    ema = AveragedModel(net, avg_fn=_ema_with_warmup(settings.ema_decay), use_buffers=True)
    step = 0
    if checkpoint is not None:
        net.load_state_dict(checkpoint["model"])
        ema.load_state_dict(checkpoint["ema_averager"])
        optimizer.load_state_dict(checkpoint["optimizer"])
        step = int(checkpoint["step"])
    replica = _Replica(DistributedDataParallel(net, find_unused_parameters=True)) if distributed else net
    scheduler = training_scheduler(config)
    projector = DRRProjector([config.detector(v) for v in (View.AP, View.LATERAL)]).to(device)
    autocast = torch.autocast("cuda", dtype=torch.bfloat16) if device.type == "cuda" else torch.autocast("cpu", enabled=False)

    from tqdm import tqdm

    bar = tqdm(total=settings.steps, initial=step, disable=not show_progress or rank != 0, desc=settings.stage)
    started = time.time()
    while step < settings.steps:
        clean, radiographs = data.batch((step * world + rank) * settings.batch, settings.batch)
        clean, radiographs = clean.to(device), radiographs.to(device)
        generator = torch.Generator(device="cpu").manual_seed(settings.seed * 1_000_003 + step * world + rank)
        net.train()
        with autocast:
            if settings.stage == "regression":
                losses = regression_loss(replica, clean, radiographs, projector)
            else:
                condition = None
                if settings.freeze_conditioner:
                    with torch.no_grad():
                        condition = net.condition(radiographs)
                losses = diffusion_loss(replica, clean, radiographs, scheduler, projector, generator, condition)
        optimizer.zero_grad(set_to_none=True)
        losses["total"].backward()
        grad_norm = torch.nn.utils.clip_grad_norm_(parameters, 1.0)
        optimizer.step()
        ema.update_parameters(net)
        step += 1
        bar.update(1)
        if rank == 0:
            record = {"step": step, "stage": settings.stage, "loss": losses["total"].item(), "grad_norm": float(grad_norm), "seconds": round(time.time() - started, 2)}
            record.update({k: v.item() for k, v in losses.items() if k != "total"})
            with open(log_path, "a", encoding="utf-8") as handle:
                handle.write(json.dumps(record) + "\n")
        if step % settings.checkpoint_every == 0 or step == settings.steps:
            _checkpoint_all(step, net, ema, optimizer, settings, out, distributed, rank, world)
    bar.close()
    if distributed:
        dist.barrier()
        dist.destroy_process_group()
    return out / "model"


class _Replica:
    """The loss functions' view of a ``DistributedDataParallel`` model: calls go through the wrapper so gradients
    are averaged across processes."""

    def __init__(self, wrapped: DistributedDataParallel) -> None:
        self.wrapped, self.config = wrapped, wrapped.module.config

    def condition(self, radiographs: torch.Tensor):
        return self.wrapped("condition", radiographs)

    def denoise(self, noisy: torch.Tensor, timesteps: torch.Tensor, condition):
        return self.wrapped("denoise", noisy, timesteps, condition)


def _checkpoint_all(step: int, net: DiffuX2CTNet, ema: AveragedModel, optimizer: torch.optim.Optimizer, settings: TrainSettings, out: Path, distributed: bool, rank: int, world: int) -> None:
    """Checkpoint + model export on rank 0; with several ranks, first check every replica holds the same weights."""
    if distributed:
        device = next(net.parameters()).device
        digests = [torch.zeros(1, dtype=torch.float64, device=device) for _ in range(world)]
        dist.all_gather(digests, torch.tensor([_weights_digest(net)], dtype=torch.float64, device=device))
        values = [float(d) for d in digests]
        if rank == 0:
            with open(out / "log.jsonl", "a", encoding="utf-8") as handle:
                handle.write(json.dumps({"step": step, "event": "replica_check", "digests": values, "in_sync": len(set(values)) == 1}) + "\n")
        if len(set(values)) != 1:
            raise RuntimeError(f"replicas diverged at step {step}: {values}")
    if rank != 0:
        return
    _save_checkpoint(out / CHECKPOINT_NAME, step, net, ema, optimizer, settings)
    card = {"training": {"stage": settings.stage, "steps": step, "settings": dataclasses.asdict(settings)}}
    save_model(ema.module, out / "model", card)
    plot_loss_curve(out / "log.jsonl", out / "loss.png")
    write_text(json.dumps({"step": step}) + "\n", out / "progress.json")
