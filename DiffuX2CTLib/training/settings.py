"""What one training run does: its settings, checked before any work, what they default to on this machine, and
which of them a resumed run must keep."""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass
from pathlib import Path

import torch

from ..core.errors import InputError
from ..core.seeds import MAX_SEED
from ..inference.options import PRECISIONS
from ..model.config import PRESETS, ModelConfig
from .lr_schedule import LR_SCHEDULES
from .phantom_bank import BANK_SIZE
from .real_source import DEFAULT_REAL_SHARE

STAGES = ("regression", "diffusion")
AUTO_REUSE = {"cpu": 4, "cuda": 8}
"""Samples made of each volume when ``reuse`` is not given, by device: a volume (a banked phantom's read, or a real
CT's deformation) costs several DRR pairs, so a few views of it keep data making ahead of the step (see
``docs/training.md`` for the throughput measured with each)."""


@dataclass
class TrainSettings:
    """What one training run does; stored in the checkpoint and the model card. ``preset`` names the architecture
    of a new model (:data:`~DiffuX2CTLib.model.config.PRESETS`; ``grid_size`` alone changes only the grid of the
    default one); ``workers`` is the number of DataLoader processes making samples (None: 1 on a CPU, 0 on a GPU,
    where samples are made on the device); ``cache`` is where a CT folder is preprocessed (default: next to the
    run); ``time_limit_minutes`` stops the run at the first step past that wall-clock time (from its start), with a
    checkpoint and an exported model, so a rented GPU's minutes can be used to the end; a later run resumes it.
    ``reuse`` is the number of samples made of each volume (None: :func:`automatic_reuse`); ``phantom_bank`` the
    number of phantoms a sample draws from (:mod:`.phantom_bank`; 0 paints a new phantom for every volume);
    ``bone_weight`` how many times a bone voxel counts in the diffusion stage's L_simple (1: plain MSE);
    ``lr_schedule`` is one of :data:`~.lr_schedule.LR_SCHEDULES`; ``snapshot_every`` keeps the exported model of every
    that many steps in ``snapshots/step-<N>`` (None: only the latest), so the step can be chosen afterwards on the
    validation patients. ``perspective_planes`` switches a
    model from ``init`` that reads its planes at the isocentre's scale to reading them along each voxel's ray;
    ``backprojection`` gives a model from ``init`` the back-projected radiographs as condition channels (their new
    weights start at zero, so it starts out computing what it did)."""

    out: str
    stage: str = "regression"
    data: str = "phantoms"
    steps: int = 1000
    batch: int = 1
    learning_rate: float = 5e-4
    lr_schedule: str = "constant"
    grid_size: int | None = None
    preset: str | None = None
    checkpoint_every: int = 50
    seed: int = 0
    init: str | None = None
    prediction_type: str | None = None
    residual_scale: float | None = None
    perspective_planes: bool = False
    backprojection: bool = False
    freeze_conditioner: bool = True
    ema_decay: float = 0.995
    device: str = "auto"
    workers: int | None = None
    cache: str | None = None
    time_limit_minutes: float | None = None
    reuse: int | None = None
    precision: str = "auto"
    real_share: float = DEFAULT_REAL_SHARE
    phantom_bank: int = BANK_SIZE
    bone_weight: float = 1.0
    snapshot_every: int | None = None

    def __post_init__(self) -> None:
        problems = []
        if self.stage not in STAGES:
            problems.append(f"unknown training stage '{self.stage}' (use regression or diffusion)")
        for name in ("steps", "batch", "checkpoint_every"):
            if not isinstance(getattr(self, name), int) or getattr(self, name) < 1:
                problems.append(f"{name} must be a whole number of at least 1, not {getattr(self, name)!r}")
        if self.snapshot_every is not None and not (isinstance(self.snapshot_every, int) and self.snapshot_every >= 1):
            problems.append(
                f"snapshot_every must be a whole number of at least 1 (or None), not {self.snapshot_every!r}"
            )
        if self.reuse is not None and not (isinstance(self.reuse, int) and self.reuse >= 1):
            problems.append(f"reuse must be a whole number of at least 1 (or None: automatic), not {self.reuse!r}")
        if not (isinstance(self.phantom_bank, int) and self.phantom_bank >= 0):
            problems.append(
                f"the phantom bank must hold 0 (paint every volume) or more phantoms, not {self.phantom_bank!r}"
            )
        if not (isinstance(self.seed, int) and 0 <= self.seed <= MAX_SEED):
            problems.append(f"seed must be a whole number from 0, not {self.seed!r}")
        if not (math.isfinite(self.learning_rate) and self.learning_rate > 0):
            problems.append(f"learning rate must be a positive number, not {self.learning_rate!r}")
        if self.lr_schedule not in LR_SCHEDULES:
            problems.append(f"unknown learning-rate schedule '{self.lr_schedule}' (use {', '.join(LR_SCHEDULES)})")
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
        if not (
            isinstance(self.bone_weight, (int, float)) and math.isfinite(self.bone_weight) and self.bone_weight >= 1
        ):
            problems.append(f"the bone weight must be a number of at least 1, not {self.bone_weight!r}")
        if self.bone_weight != 1 and self.stage == "regression":
            problems.append("--bone-weight weighs the diffusion stage's L_simple; the regression stage has none")
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


def automatic_reuse(device: torch.device) -> tuple[int, str]:
    """The number of samples per volume a run on ``device`` makes when none is asked for, and why."""
    reuse = AUTO_REUSE.get(device.type, AUTO_REUSE["cpu"])
    return reuse, f"automatic on {device.type}: each volume costs several DRR pairs to make"


RESUME_MUST_MATCH = {
    "data": ("--data", "draws its samples from"),
    "batch": ("--batch", "trains with batches of"),
    "seed": ("--seed", "draws its data and noise from seed"),
    "learning_rate": ("--lr", "trains at learning rate"),
    "lr_schedule": ("--lr-schedule", "follows the learning-rate schedule"),
    "real_share": ("--real-share", "draws real CTs at share"),
    "reuse": ("--reuse", "makes this many samples of each volume:"),
    "phantom_bank": ("--phantom-bank", "draws from a phantom bank of"),
    "bone_weight": ("--bone-weight", "weighs bone voxels by"),
}
"""Settings a resumed run must keep, else its data, noise or optimiser would not be the run's (or its recorded
settings would be false): with the flag and how the refusal names the stored value."""


def check_resume(checkpoint: dict, settings: TrainSettings, path: Path) -> None:
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
