"""Training: procedural phantoms, real CTs or a folder of CTs, DRR pairs rendered on the fly, two stages.

Stage ``regression`` trains the conditioning network (tri-plane generator + implicit decoder) to predict the CT
directly; stage ``diffusion`` trains the denoiser on ``L_simple + L_proj / T`` conditioned on it (frozen by
default). Samples come from the data pipeline (:mod:`.samples`), made ahead in DataLoader workers on a CPU and on
the device on a GPU. Every run is resumable: the data of step ``s`` and its noise come from seeds derived from
``s``, and checkpoints (model, EMA, optimiser, step) are written atomically, so a resumed run sees the same data and
counters as an uninterrupted one; its float32 weights agree to rounding (the last bits of a float32 sum depend on
the CPU's kernels and thread count) and its exported half-precision weights within one float16 step. An interrupt
(SIGINT, or SIGTERM as schedulers and ``kill`` send it) or a failure writes a checkpoint of the steps done first.
Phantom seeds from ``HELD_OUT_SEED_START`` up are never used for training (they are the sample and the test set).
This module needs torch, numpy, MONAI and safetensors only; SimpleITK is imported only to read CT files.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import signal
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel
from torch.optim.swa_utils import AveragedModel

from ..core.device import network_arithmetic, resolve_device, resolve_precision
from ..core.errors import InputError
from ..diffusion.losses import diffusion_loss, regression_loss
from ..diffusion.schedule import training_scheduler
from ..imaging.drr import DRRProjector
from ..model.config import ModelConfig
from ..model.network import DiffuX2CTNet
from ..model.weights import load_model, load_widened
from .data_sources import parse_source
from .lr_schedule import learning_rate_at
from .phantom_bank import PhantomBank
from .real_source import MixedSource
from .run_folder import CHECKPOINT_NAME, LOG_NAME, append_log, export_run, forget_log_after, load_checkpoint
from .samples import CTSource, SampleMaker, batch_indices, batches, drr_grid
from .settings import TrainSettings, automatic_reuse, check_resume


class Trainer:
    """One training run: :meth:`set up <__init__>` (device, model, resumed state, data, optimiser), then :meth:`run`
    its steps, each a :meth:`step`, a :meth:`log` line and, now and then, a :meth:`checkpoint`."""

    def __init__(self, settings: TrainSettings, show_progress: bool = True) -> None:
        self.distributed = int(os.environ.get("WORLD_SIZE", "1")) > 1
        self.device = resolve_device(settings.device)
        if self.distributed:
            dist.init_process_group("nccl" if self.device.type == "cuda" else "gloo")
            if self.device.type == "cuda":
                self.device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))
        self.rank, self.world = (dist.get_rank(), dist.get_world_size()) if self.distributed else (0, 1)
        self.out, self.show_progress = Path(settings.out), show_progress
        self.bank_painting: dict[str, float] = {}  # phantoms painted into the bank before the first step, and time
        torch.manual_seed(settings.seed)  # a new model's initial weights follow the run's seed
        self.net = _initial_net(settings).to(self.device)
        path = self.out / CHECKPOINT_NAME
        self.resumed = load_checkpoint(path, self.device) if path.exists() else None
        self.settings, self.chosen = self._resolved(settings)
        if self.resumed is not None:  # a resumed run keeps the parametrisation it started with
            check_resume(self.resumed, self.settings, path)
            stored = ModelConfig.from_dict(json.loads(self.resumed["config"]))
            if stored != self.net.config:
                self.net = DiffuX2CTNet(stored).to(self.device)
        self.step_count = int(self.resumed["step"]) if self.resumed is not None else 0
        self.done = self.step_count == self.settings.steps and (self.out / "model").is_dir()

    def _resolved(self, settings: TrainSettings) -> tuple[TrainSettings, dict]:
        """The settings with ``auto`` choices made (precision, samples per volume, data workers) and why each."""
        stored = json.loads(self.resumed.get("settings", "{}")) if self.resumed is not None else {}
        precision = _run_precision(settings, self.resumed, self.device, self.distributed)
        if settings.reuse is not None:
            reuse, why = settings.reuse, "asked for"
        elif "reuse" in stored and self.resumed is not None:
            reuse, why = stored["reuse"], "the resumed run's"
        else:
            reuse, why = automatic_reuse(self.device)
        workers = settings.workers if settings.workers is not None else (0 if self.device.type == "cuda" else 1)
        chosen = {
            "precision": precision,
            "precision_why": "asked for" if settings.precision != "auto" else f"auto on {self.device.type}",
            "reuse": reuse,
            "reuse_why": why,
            "workers": workers,
            "workers_why": "asked for" if settings.workers is not None else "a GPU makes its samples itself"
            if self.device.type == "cuda" else "one process makes samples beside the training step",
        }  # fmt: skip
        return dataclasses.replace(settings, precision=precision, reuse=reuse), chosen

    def _set_up_training(self) -> None:
        """Data, optimiser, EMA, schedule and projector; the resumed state loaded into them."""
        settings, config = self.settings, self.net.config
        if self.distributed and self.rank != 0:
            dist.barrier()  # rank 0 prepares a CT folder's cache first; the others then only read it
        source = parse_source(
            settings.data, settings.seed, config, settings.cache or str(self.out / "ct-cache"), settings.real_share,
            phantom_bank=settings.phantom_bank,
        )  # fmt: skip
        self.maker = SampleMaker(config, source, settings.seed, settings.reuse, settings.batch, self.world)
        if self.rank == 0:
            self._top_up_phantom_bank(source)
        if self.distributed and self.rank == 0:
            dist.barrier()
        self.source_description = source.describe()
        self.out.mkdir(parents=True, exist_ok=True)
        if settings.stage == "regression":
            self.parameters = list(self.net.conditioner.parameters())
        else:
            frozen = settings.freeze_conditioner
            self.parameters = list(self.net.denoiser.parameters()) + (
                [] if frozen else list(self.net.conditioner.parameters())
            )
            self.net.conditioner.requires_grad_(not frozen)
        self.optimizer = torch.optim.AdamW(self.parameters, lr=settings.learning_rate, weight_decay=1e-4)
        self.ema = AveragedModel(self.net, avg_fn=_ema_with_warmup(settings.ema_decay), use_buffers=True)
        if self.resumed is not None:
            self.net.load_state_dict(self.resumed["model"])
            self.ema.load_state_dict(self.resumed["ema_averager"])
            self.optimizer.load_state_dict(self.resumed["optimizer"])
            if self.rank == 0:
                forget_log_after(self.out / LOG_NAME, self.step_count)
        wrapped = DistributedDataParallel(self.net, find_unused_parameters=True) if self.distributed else None
        self.replica = _Replica(wrapped) if wrapped is not None else self.net
        self.scheduler = training_scheduler(config)
        self.projector = DRRProjector(config.detector_pair()).to(self.device)

    def _top_up_phantom_bank(self, source: CTSource) -> None:
        """Paint the phantoms missing from the bank window the run starts in, with all the process's threads and a
        progress bar, recorded in the run's start line: once per machine and generator, before the first step. On
        a fresh machine a run then starts from a full bank instead of painting on the data worker's one thread while
        the step waits or fights it for cores."""
        bank = source.phantoms if isinstance(source, MixedSource) else source
        if not isinstance(bank, PhantomBank):
            return
        plan, settings = self.maker.plan, self.settings
        first = (
            plan.first_volume_of_step(self.step_count)
            if plan is not None
            else batch_indices(self.step_count, settings.batch, self.world)[0]
        )
        missing = bank.missing(first)
        if not missing:
            return
        from tqdm import tqdm

        started, grid = time.time(), drr_grid(self.net.config)
        for slot in tqdm(missing, disable=not self.show_progress, desc="painting the phantom bank"):
            bank.phantom(slot, grid, self.device)
        self.bank_painting = {"bank_painted": len(missing), "bank_painting_s": round(time.time() - started, 1)}

    def run(self) -> Path:
        """Train to ``settings.steps`` (or the time limit); returns the exported model folder."""
        if self.done:
            return self.out / "model"  # already trained that far: its model was exported at that step
        self._set_up_training()
        settings = self.settings
        if self.rank == 0:
            append_log(
                self.out / LOG_NAME,
                {
                    "event": "start",
                    "step": self.step_count,
                    "data": self.source_description,
                    **self.chosen,
                    **self.bank_painting,
                },
            )
            if self.show_progress:
                print(f"training from step {self.step_count}: {_chosen_line(self.chosen)}", file=sys.stderr)
        from tqdm import tqdm

        bar = tqdm(
            total=settings.steps,
            initial=self.step_count,
            disable=not self.show_progress or self.rank != 0,
            desc=settings.stage,
        )
        self.started, saved = time.time(), self.step_count
        try:
            with _sigterm_as_interrupt():
                for clean, radiographs, data_s in self._timed_batches():
                    losses, grad_norm = self.step(clean, radiographs)
                    bar.update(1)
                    self.log(losses, grad_norm, data_s)
                    out_of_time = _out_of_time(self.started, settings.time_limit_minutes, self.device, self.distributed)
                    snapshot = bool(settings.snapshot_every) and self.step_count % settings.snapshot_every == 0
                    if (
                        self.step_count % settings.checkpoint_every == 0
                        or self.step_count == settings.steps
                        or out_of_time
                        or snapshot
                    ):
                        self.checkpoint(snapshot)
                        saved = self.step_count
                    if out_of_time:
                        break
        except BaseException:
            if not self.distributed and self.step_count > saved:  # keep what was trained before an interrupt
                self.checkpoint()
            raise
        finally:
            bar.close()
        if self.distributed:
            dist.barrier()
            dist.destroy_process_group()
        return self.out / "model"

    def _timed_batches(self) -> Iterator[tuple[torch.Tensor, torch.Tensor, float]]:
        """The run's remaining batches, each with how long the step waited for it."""
        settings, workers = self.settings, self.chosen["workers"]
        steps = (self.step_count, settings.steps, settings.batch)
        waiting_since = time.perf_counter()
        for clean, radiographs in batches(self.maker, *steps, self.device, workers, self.world, self.rank):
            yield clean, radiographs, time.perf_counter() - waiting_since
            waiting_since = time.perf_counter()

    def step(self, clean: torch.Tensor, radiographs: torch.Tensor) -> tuple[dict[str, torch.Tensor], float]:
        """One optimiser step on a batch ``(B, 1, N, N, N)``, ``(B, 2, P, P)``: the losses and the gradient norm."""
        settings, net = self.settings, self.net
        noise_seed = settings.seed * 1_000_003 + self.step_count * self.world + self.rank
        generator = torch.Generator(device="cpu").manual_seed(noise_seed)
        net.train()
        with network_arithmetic(settings.precision, self.device):
            if settings.stage == "regression":
                losses = regression_loss(self.replica, clean, radiographs, self.projector)
            else:
                condition = None
                if settings.freeze_conditioner:
                    with torch.no_grad():
                        condition = net.condition(radiographs)
                losses = diffusion_loss(
                    self.replica, clean, radiographs, self.scheduler, self.projector, generator, condition,
                    settings.bone_weight,
                )  # fmt: skip
        self.optimizer.zero_grad(set_to_none=True)
        losses["total"].backward()
        grad_norm = float(torch.nn.utils.clip_grad_norm_(self.parameters, 1.0))
        for group in self.optimizer.param_groups:
            group["lr"] = learning_rate_at(
                settings.lr_schedule, settings.learning_rate, self.step_count, settings.steps
            )
        self.optimizer.step()
        self.ema.update_parameters(net)
        self.step_count += 1
        return losses, grad_norm

    def log(self, losses: dict[str, torch.Tensor], grad_norm: float, data_s: float) -> None:
        """The step's line in ``log.jsonl`` (rank 0): losses, gradient norm, time, time waited for data."""
        if self.rank != 0:
            return
        record = {
            "step": self.step_count,
            "stage": self.settings.stage,
            "loss": losses["total"].item(),
            "grad_norm": grad_norm,
            "lr": self.optimizer.param_groups[0]["lr"],
            "seconds": round(time.time() - self.started, 2),
            "data_s": round(data_s, 4),
        }
        record.update({k: v.item() for k, v in losses.items() if k != "total"})
        if self.device.type == "cuda":
            record["peak_gib"] = round(torch.cuda.max_memory_allocated(self.device) / 2**30, 2)
        append_log(self.out / LOG_NAME, record)

    def checkpoint(self, snapshot: bool = False) -> None:
        """Checkpoint and model export on rank 0 (with ``snapshot``, the model also kept under its step); with
        several ranks, first check every replica holds the same weights (a digest of each, logged)."""
        if self.distributed:
            digests = [torch.zeros(1, dtype=torch.float64, device=self.device) for _ in range(self.world)]
            mine = torch.tensor([_weights_digest(self.net)], dtype=torch.float64, device=self.device)
            dist.all_gather(digests, mine)
            values = [float(d) for d in digests]
            if self.rank == 0:
                check = {
                    "step": self.step_count,
                    "event": "replica_check",
                    "digests": values,
                    "in_sync": len(set(values)) == 1,
                }
                append_log(self.out / LOG_NAME, check)
            if len(set(values)) != 1:
                raise RuntimeError(f"replicas diverged at step {self.step_count}: {values}")
        if self.rank == 0:
            export_run(self.out, self.step_count, self.net, self.ema, self.optimizer, self.settings, snapshot)


def train(settings: TrainSettings, show_progress: bool = True) -> Path:
    """Run (or resume) a training run in ``settings.out``; returns the exported model folder."""
    return Trainer(settings, show_progress).run()


def _chosen_line(chosen: dict) -> str:
    return ", ".join(f"{k} {chosen[k]} ({chosen[k + '_why']})" for k in ("precision", "reuse", "workers"))


@contextlib.contextmanager
def _sigterm_as_interrupt() -> Iterator[None]:
    """SIGTERM (what ``kill`` and job schedulers send) raises KeyboardInterrupt, as SIGINT does, so a terminated run
    writes its checkpoint first; only in the main thread, where signal handlers can be set."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def interrupt(_signum, _frame):
        raise KeyboardInterrupt("terminated (SIGTERM)")

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _weights_digest(net: torch.nn.Module) -> float:
    return float(sum(p.detach().double().sum() * (i + 1) for i, p in enumerate(net.parameters())))


def _ema_with_warmup(decay: float):
    """EMA whose decay ramps up as ``(1 + n) / (10 + n)``, so short runs are not dominated by early weights."""

    def average(averaged: torch.Tensor, current: torch.Tensor, count: torch.Tensor) -> torch.Tensor:
        rate = min(decay, (1.0 + float(count)) / (10.0 + float(count)))
        return averaged * rate + current * (1.0 - rate)

    return average


def _initial_net(settings: TrainSettings) -> DiffuX2CTNet:
    """A new model, or the one named by ``--init``, with the run's diffusion parametrisation (prediction type,
    residual scale) and perspective plane reading when it sets them: these change what the network computes with
    its weights, not which weights it has; back-projected condition channels, which add input channels whose
    weights start at zero."""
    if settings.init:
        init = Path(settings.init)
        if init.is_dir():
            net = load_model(init)[0].train()
        else:
            checkpoint = load_checkpoint(init, "cpu", own=False)
            net = DiffuX2CTNet(ModelConfig.from_dict(json.loads(checkpoint["config"])))
            net.load_state_dict(checkpoint["ema"] if "ema" in checkpoint else checkpoint["model"])
    else:
        net = DiffuX2CTNet(settings.new_model_config())
    parametrisation = (("prediction_type", settings.prediction_type), ("residual_scale", settings.residual_scale))
    changes = {k: v for k, v in parametrisation if v is not None}
    for switch in ("perspective_planes", "backprojection"):
        if getattr(settings, switch):
            changes[switch] = True
    if not changes:
        return net
    try:
        config = dataclasses.replace(net.config, **changes)
    except ValueError as error:
        raise InputError(str(error)) from None
    reparametrised = DiffuX2CTNet(config)
    load_widened(reparametrised, net.state_dict())
    return reparametrised


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


class _Replica:
    """The loss functions' view of a ``DistributedDataParallel`` model: calls go through the wrapper so gradients
    are averaged across processes."""

    def __init__(self, wrapped: DistributedDataParallel) -> None:
        self.wrapped, self.config = wrapped, wrapped.module.config

    def condition(self, radiographs: torch.Tensor):
        return self.wrapped("condition", radiographs)

    def denoise(self, noisy: torch.Tensor, timesteps: torch.Tensor, condition):
        return self.wrapped("denoise", noisy, timesteps, condition)
