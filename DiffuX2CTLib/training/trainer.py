"""Training: procedural phantoms or a folder of CTs, DRR pairs rendered on the fly, two stages.

Stage ``regression`` trains the conditioning network (tri-plane generator + implicit decoder) to predict the CT
directly; stage ``diffusion`` trains the denoiser on ``L_simple + L_proj / T`` conditioned on it (frozen by
default). Samples come from the data pipeline (:mod:`DiffuX2CTLib.training.samples`), made ahead in DataLoader
workers on a CPU and on the device on a GPU. Every run is resumable: the data of step ``s`` and its noise come
from seeds derived from ``s``, and checkpoints (model, EMA, optimiser, step) are written atomically, so a resumed
run sees the same data and counters as an uninterrupted one; its float32 weights agree to rounding (the last bits
of a float32 sum depend on the CPU's kernels and thread count) and its exported half-precision weights within one
float16 step. Phantom
seeds from ``HELD_OUT_SEED_START`` up are never used for training (they are the sample and the test set).
This module needs torch, numpy, MONAI and safetensors only; SimpleITK is imported only to read a CT folder.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel
from torch.optim.swa_utils import AveragedModel

from ..core.atomic_write import write_text
from ..core.device import autocast, resolve_device, resolve_precision
from ..core.errors import InputError
from ..core.seeds import MAX_SEED
from ..diffusion.losses import diffusion_loss, regression_loss
from ..diffusion.schedule import training_scheduler
from ..imaging.drr import DRRProjector
from ..inference.options import PRECISIONS
from ..model.config import PRESETS, ModelConfig
from ..model.network import DiffuX2CTNet
from ..model.weights import load_model, save_model
from .data_sources import parse_source
from .real_source import DEFAULT_REAL_SHARE
from .samples import SampleMaker, batches

CHECKPOINT_NAME = "checkpoint.pt"
STAGES = ("regression", "diffusion")


@dataclass
class TrainSettings:
    """What one training run does; stored in the checkpoint and the model card. ``preset`` names the architecture
    of a new model (:data:`~DiffuX2CTLib.model.config.PRESETS`; ``grid_size`` alone changes only the grid of the
    default one); ``workers`` is the number of DataLoader processes making samples (None: 1 on a CPU, 0 on a GPU,
    where samples are made on the device); ``cache`` is where a CT folder is preprocessed (default: next to the
    run); ``time_limit_minutes`` stops the run at the first step past that wall-clock time (from its start), with a
    checkpoint and an exported model, so a rented GPU's minutes can be used to the end; a later run resumes it."""

    out: str
    stage: str = "regression"
    data: str = "phantoms"
    steps: int = 1000
    batch: int = 1
    learning_rate: float = 5e-4
    grid_size: int | None = None
    preset: str | None = None
    checkpoint_every: int = 50
    seed: int = 0
    init: str | None = None
    prediction_type: str | None = None
    residual_scale: float | None = None
    freeze_conditioner: bool = True
    ema_decay: float = 0.995
    device: str = "auto"
    workers: int | None = None
    cache: str | None = None
    time_limit_minutes: float | None = None
    reuse: int = 1
    precision: str = "auto"
    real_share: float = DEFAULT_REAL_SHARE

    def __post_init__(self) -> None:
        problems = []
        if self.stage not in STAGES:
            problems.append(f"unknown training stage '{self.stage}' (use regression or diffusion)")
        for name in ("steps", "batch", "checkpoint_every", "reuse"):
            if not isinstance(getattr(self, name), int) or getattr(self, name) < 1:
                problems.append(f"{name} must be a whole number of at least 1, not {getattr(self, name)!r}")
        if not (isinstance(self.seed, int) and 0 <= self.seed <= MAX_SEED):
            problems.append(f"seed must be a whole number from 0, not {self.seed!r}")
        if not (math.isfinite(self.learning_rate) and self.learning_rate > 0):
            problems.append(f"learning rate must be a positive number, not {self.learning_rate!r}")
        if not 0.0 < self.ema_decay < 1.0:
            problems.append(f"EMA decay must lie between 0 and 1, not {self.ema_decay!r}")
        if self.time_limit_minutes is not None and not (
            math.isfinite(self.time_limit_minutes) and self.time_limit_minutes > 0
        ):
            problems.append(f"time limit must be a positive number of minutes, not {self.time_limit_minutes!r}")
        if self.precision not in PRECISIONS:
            problems.append(f"unknown precision '{self.precision}' (use {', '.join(PRECISIONS)})")
        if not (isinstance(self.real_share, (int, float)) and 0.0 < self.real_share <= 1.0):
            problems.append(f"the share of real CTs must lie above 0 and at most 1, not {self.real_share!r}")
        if self.workers is not None and self.workers < 0:
            problems.append(f"workers must be 0 or more, not {self.workers}")
        if self.preset is not None and self.preset not in PRESETS:
            problems.append(f"unknown preset '{self.preset}' (use {', '.join(PRESETS)})")
        if self.grid_size is not None:
            try:
                dataclasses.replace(
                    PRESETS[self.preset] if self.preset in PRESETS else ModelConfig(), grid_size=self.grid_size
                )
            except ValueError as error:
                problems.append(f"grid {self.grid_size}: {error}")
        if problems:
            raise InputError("; ".join(problems))

    def new_model_config(self) -> ModelConfig:
        """The architecture of a model trained from scratch: the preset's (default ``cpu-64``), on ``grid_size``
        when it is given."""
        config = PRESETS[self.preset or "cpu-64"]
        return dataclasses.replace(config, grid_size=self.grid_size) if self.grid_size is not None else config


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
        net = DiffuX2CTNet(settings.new_model_config())
    changes = {
        k: v
        for k, v in (("prediction_type", settings.prediction_type), ("residual_scale", settings.residual_scale))
        if v is not None
    }
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
        raise InputError(
            f"{path.name}: unreadable training checkpoint ({str(error).splitlines()[0][:160]}); delete it to start over"
        ) from None
    missing = {"step", "model", "ema", "optimizer", "config"} - set(checkpoint)
    if missing:
        raise InputError(f"{path.name}: not a DiffuX2CT training checkpoint (missing {sorted(missing)})")
    return checkpoint


def _save_checkpoint(
    path: Path,
    step: int,
    net: DiffuX2CTNet,
    ema: AveragedModel,
    optimizer: torch.optim.Optimizer,
    settings: TrainSettings,
) -> None:
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
    axis.plot(steps[window - 1 :], smooth, label=f"mean of {window}")
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
    out = Path(settings.out)
    checkpoint_path, log_path = out / CHECKPOINT_NAME, out / "log.jsonl"

    torch.manual_seed(settings.seed)  # a new model's initial weights follow the run's seed
    net = _initial_net(settings).to(device)
    checkpoint = _load_checkpoint(checkpoint_path, device) if checkpoint_path.exists() else None
    settings = dataclasses.replace(settings, precision=_run_precision(settings, checkpoint, device, distributed))
    if checkpoint is not None:  # a resumed run keeps the parametrisation it started with
        _check_resume(checkpoint, settings, checkpoint_path)
        stored = ModelConfig.from_dict(json.loads(checkpoint["config"]))
        if stored != net.config:
            net = DiffuX2CTNet(stored).to(device)
        if int(checkpoint["step"]) == settings.steps and (out / "model").is_dir():
            return out / "model"  # already trained that far: its model was exported at that step
    config = net.config
    if distributed and rank != 0:
        dist.barrier()  # rank 0 brings a CT folder's cache up to date first; the others then only read it
    source = parse_source(
        settings.data, settings.seed, config, settings.cache or str(out / "ct-cache"), settings.real_share
    )
    if distributed and rank == 0:
        dist.barrier()
    maker = SampleMaker(config, source, settings.seed, settings.reuse, settings.batch, world)
    out.mkdir(parents=True, exist_ok=True)
    if settings.stage == "regression":
        parameters = list(net.conditioner.parameters())
    else:
        parameters = list(net.denoiser.parameters()) + (
            [] if settings.freeze_conditioner else list(net.conditioner.parameters())
        )
        net.conditioner.requires_grad_(not settings.freeze_conditioner)
    optimizer = torch.optim.AdamW(parameters, lr=settings.learning_rate, weight_decay=1e-4)
    ema = AveragedModel(net, avg_fn=_ema_with_warmup(settings.ema_decay), use_buffers=True)
    step = 0
    if checkpoint is not None:
        net.load_state_dict(checkpoint["model"])
        ema.load_state_dict(checkpoint["ema_averager"])
        optimizer.load_state_dict(checkpoint["optimizer"])
        step = int(checkpoint["step"])
        if rank == 0:
            _forget_log_after(log_path, step)
    replica = _Replica(DistributedDataParallel(net, find_unused_parameters=True)) if distributed else net
    scheduler = training_scheduler(config)
    projector = DRRProjector(config.detector_pair()).to(device)
    workers = settings.workers if settings.workers is not None else (0 if device.type == "cuda" else 1)

    from tqdm import tqdm

    bar = tqdm(total=settings.steps, initial=step, disable=not show_progress or rank != 0, desc=settings.stage)
    started = time.time()
    saved = step
    waiting_since = time.perf_counter()
    try:
        for clean, radiographs in batches(maker, step, settings.steps, settings.batch, device, workers, world, rank):
            data_s = time.perf_counter() - waiting_since  # how long the model waited for this batch
            generator = torch.Generator(device="cpu").manual_seed(settings.seed * 1_000_003 + step * world + rank)
            net.train()
            with autocast(settings.precision, device):
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
                record = {
                    "step": step,
                    "stage": settings.stage,
                    "loss": losses["total"].item(),
                    "grad_norm": float(grad_norm),
                    "seconds": round(time.time() - started, 2),
                    "data_s": round(data_s, 4),
                }
                record.update({k: v.item() for k, v in losses.items() if k != "total"})
                if device.type == "cuda":
                    record["peak_gib"] = round(torch.cuda.max_memory_allocated(device) / 2**30, 2)
                with open(log_path, "a", encoding="utf-8") as handle:
                    handle.write(json.dumps(record) + "\n")
            out_of_time = _out_of_time(started, settings.time_limit_minutes, device, distributed)
            if step % settings.checkpoint_every == 0 or step == settings.steps or out_of_time:
                _checkpoint_all(step, net, ema, optimizer, settings, out, distributed, rank, world)
                saved = step
            if out_of_time:
                break
            waiting_since = time.perf_counter()
    except BaseException:
        if not distributed and step > saved:  # keep what was trained before an interrupt or a failure
            _checkpoint_all(step, net, ema, optimizer, settings, out, False, 0, 1)
        raise
    finally:
        bar.close()
    if distributed:
        dist.barrier()
        dist.destroy_process_group()
    return out / "model"


def _run_precision(settings: TrainSettings, checkpoint: dict | None, device: torch.device, distributed: bool) -> str:
    """The precision a run trains in: a resumed run keeps its own (checkpoints from before the setting: what their
    loop used, bfloat16 on a GPU and float32 on a CPU), a new one resolves ``auto`` on this device, and with
    several processes rank 0's choice holds for all."""
    if checkpoint is not None and settings.precision == "auto":
        stored = json.loads(checkpoint.get("settings", "{}"))
        return stored.get("precision", "bfloat16" if device.type == "cuda" else "float32")
    precision = resolve_precision(settings.precision, device)
    if distributed:
        choice = torch.tensor([float(precision == "bfloat16")], device=device)
        dist.broadcast(choice, src=0)
        precision = "bfloat16" if choice.item() else "float32"
    return precision


def _out_of_time(started: float, limit_minutes: float | None, device: torch.device, distributed: bool) -> bool:
    """Whether the run has used its wall-clock budget; with several processes, rank 0's clock decides for all, so
    every rank stops at the same step."""
    if limit_minutes is None:
        return False
    over = time.time() - started >= 60.0 * limit_minutes
    if not distributed:  # no device tensor, so no GPU synchronisation per step
        return over
    decision = torch.tensor([float(over)], device=device)
    dist.broadcast(decision, src=0)
    return bool(decision.item())


def _forget_log_after(log_path: Path, step: int) -> None:
    """Drop the log lines of steps a killed run did after its last checkpoint: the resumed run does them again."""
    if not log_path.is_file():
        return
    lines = log_path.read_text(encoding="utf-8").splitlines()
    kept = [line for line in lines if line.strip() and json.loads(line).get("step", 0) <= step]
    if len(kept) != len(lines):
        write_text("".join(line + "\n" for line in kept), log_path)


RESUME_MUST_MATCH = {
    "data": ("--data", "draws its samples from"),
    "batch": ("--batch", "trains with batches of"),
    "seed": ("--seed", "draws its data and noise from seed"),
    "learning_rate": ("--lr", "trains at learning rate"),
    "real_share": ("--real-share", "draws real CTs at share"),
    "reuse": ("--reuse", "makes this many samples of each volume:"),
}
"""Settings a resumed run must keep, else its data, noise or optimiser would not be the run's (or its recorded
settings would be false): with the flag and how the refusal names the stored value."""


def _check_resume(checkpoint: dict, settings: TrainSettings, path: Path) -> None:
    """A clear error when the settings cannot continue the run in ``path``: another stage, fewer steps than it
    already has, another precision or grid, or any of :data:`RESUME_MUST_MATCH` changed."""
    run = path.parent.name
    stored = json.loads(checkpoint.get("settings", "{}"))
    stage = stored.get("stage", settings.stage)
    if stage != settings.stage:
        raise InputError(
            f"{run}: holds a {stage} run; train the {settings.stage} stage into a new --out folder "
            f"(with --init {run}/model)"
        )
    if settings.steps < int(checkpoint["step"]):
        raise InputError(
            f"{run}: the run is already at step {checkpoint['step']}; give --steps above that to continue it"
        )
    precision = stored.get("precision", settings.precision)
    if precision != settings.precision:
        raise InputError(
            f"{run}: the run trains in {precision}; --precision {settings.precision} would change its arithmetic, "
            f"so resume it with --precision {precision} (or auto)"
        )
    defaults = {f.name: f.default for f in dataclasses.fields(TrainSettings)}
    for name, (flag, what) in RESUME_MUST_MATCH.items():
        before, now = stored.get(name, defaults[name]), getattr(settings, name)
        if before != now:
            raise InputError(
                f"{run}: the run {what} {before}; {flag} {now} cannot continue it "
                f"(resume with {flag} {before}, or train into a new --out folder with --init {run}/model)"
            )
    grid = json.loads(checkpoint["config"])["grid_size"]
    if settings.grid_size is not None and settings.grid_size != grid:
        raise InputError(f"{run}: the run's model has a {grid}^3 grid; --grid {settings.grid_size} cannot resume it")


class _Replica:
    """The loss functions' view of a ``DistributedDataParallel`` model: calls go through the wrapper so gradients
    are averaged across processes."""

    def __init__(self, wrapped: DistributedDataParallel) -> None:
        self.wrapped, self.config = wrapped, wrapped.module.config

    def condition(self, radiographs: torch.Tensor):
        return self.wrapped("condition", radiographs)

    def denoise(self, noisy: torch.Tensor, timesteps: torch.Tensor, condition):
        return self.wrapped("denoise", noisy, timesteps, condition)


def _checkpoint_all(
    step: int,
    net: DiffuX2CTNet,
    ema: AveragedModel,
    optimizer: torch.optim.Optimizer,
    settings: TrainSettings,
    out: Path,
    distributed: bool,
    rank: int,
    world: int,
) -> None:
    """Checkpoint + model export on rank 0; with several ranks, first check every replica holds the same weights."""
    if distributed:
        device = next(net.parameters()).device
        digests = [torch.zeros(1, dtype=torch.float64, device=device) for _ in range(world)]
        dist.all_gather(digests, torch.tensor([_weights_digest(net)], dtype=torch.float64, device=device))
        values = [float(d) for d in digests]
        if rank == 0:
            with open(out / "log.jsonl", "a", encoding="utf-8") as handle:
                handle.write(
                    json.dumps(
                        {"step": step, "event": "replica_check", "digests": values, "in_sync": len(set(values)) == 1}
                    )
                    + "\n"
                )
        if len(set(values)) != 1:
            raise RuntimeError(f"replicas diverged at step {step}: {values}")
    if rank != 0:
        return
    _save_checkpoint(out / CHECKPOINT_NAME, step, net, ema, optimizer, settings)
    card = {"training": {"stage": settings.stage, "steps": step, "settings": dataclasses.asdict(settings)}}
    save_model(ema.module, out / "model", card)
    plot_loss_curve(out / "log.jsonl", out / "loss.png")
    write_text(json.dumps({"step": step}) + "\n", out / "progress.json")
