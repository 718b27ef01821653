"""What a run folder holds, written so that a kill at any moment leaves a usable run: the checkpoint (model, EMA,
optimiser, step, settings), the JSON-lines log, the loss curve and the exported model."""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path

import numpy as np
import torch
from torch.optim.swa_utils import AveragedModel

from ..core.atomic_write import write_text
from ..core.errors import InputError
from ..core.json_output import dumps
from ..model.network import DiffuX2CTNet
from ..model.weights import save_model
from .settings import TrainSettings

CHECKPOINT_NAME = "checkpoint.pt"
LOG_NAME = "log.jsonl"
SNAPSHOTS_NAME = "snapshots"


def load_checkpoint(path: Path, device: torch.device | str = "cpu", own: bool = True) -> dict:
    """A training checkpoint, loaded without unpickling code (``weights_only``); damage is a clear error, which for
    a run's ``own`` checkpoint says it can be deleted to start over (never for a user's ``--init`` file)."""
    try:
        checkpoint = torch.load(path, map_location=device, weights_only=True)
    except Exception as error:  # torch raises many types for damaged archives
        advice = "delete it to start the run over" if own else "give a model folder or a run's checkpoint.pt"
        first_line = str(error).splitlines()[0][:160] if str(error) else type(error).__name__
        raise InputError(f"{path.name}: unreadable training checkpoint ({first_line}); {advice}") from None
    missing = {"step", "model", "ema", "optimizer", "config"} - set(checkpoint)
    if missing:
        raise InputError(f"{path.name}: not a DiffuX2CT training checkpoint (missing {sorted(missing)})")
    return checkpoint


def save_checkpoint(
    path: Path,
    step: int,
    net: DiffuX2CTNet,
    ema: AveragedModel,
    optimizer: torch.optim.Optimizer,
    settings: TrainSettings,
) -> None:
    """The checkpoint of ``step``, written to a temporary sibling and renamed into place."""
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

    records = [json.loads(line) for line in log_path.read_text(encoding="utf-8").splitlines() if line.strip()]
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


def forget_log_after(log_path: Path, step: int) -> None:
    """Drop the log lines of steps a killed run did after its last checkpoint: the resumed run does them again."""
    if not log_path.is_file():
        return
    lines = log_path.read_text(encoding="utf-8").splitlines()
    kept = [line for line in lines if line.strip() and json.loads(line).get("step", 0) <= step]
    if len(kept) != len(lines):
        write_text("".join(line + "\n" for line in kept), log_path)


def append_log(log_path: Path, record: dict) -> None:
    """One line of the run's log (strict JSON: a non-finite loss is written as null with a note)."""
    with open(log_path, "a", encoding="utf-8") as handle:
        handle.write(dumps(record, indent=None) + "\n")


def export_run(
    out: Path,
    step: int,
    net: DiffuX2CTNet,
    ema: AveragedModel,
    optimizer: torch.optim.Optimizer,
    settings: TrainSettings,
    snapshot: bool = False,
) -> None:
    """Checkpoint, exported model (the EMA, with its training card), loss curve and progress file of ``step``; with
    ``snapshot``, also a copy of the model kept as ``snapshots/step-<step>``."""
    save_checkpoint(out / CHECKPOINT_NAME, step, net, ema, optimizer, settings)
    card = {"training": {"stage": settings.stage, "steps": step, "settings": dataclasses.asdict(settings)}}
    save_model(ema.module, out / "model", card)
    if snapshot:
        save_model(ema.module, out / SNAPSHOTS_NAME / f"step-{step}", card)
    plot_loss_curve(out / LOG_NAME, out / "loss.png")
    write_text(json.dumps({"step": step}) + "\n", out / "progress.json")
