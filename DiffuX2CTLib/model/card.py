"""A model folder's card without torch: where the bundled model lives, reading ``config.json``, and the short
summary the Slicer panel shows before any reconstruction runs."""

from __future__ import annotations

import json
import os
from pathlib import Path

from ..core.errors import InputError

WEIGHTS_NAME = "model.safetensors"
CONFIG_NAME = "config.json"
BUNDLED_MODEL_DIR = Path(__file__).resolve().parents[2] / "Resources" / "Models" / "diffux2ct-64"


class ModelError(InputError):
    """A model folder is missing, corrupted, or does not fit the code."""


def read_model_card(folder: str | os.PathLike | None = None) -> dict:
    """The parsed ``config.json`` of a model folder (the bundled model when None): architecture, checksum,
    training and metrics."""
    folder = Path(folder) if folder is not None else BUNDLED_MODEL_DIR
    if not folder.is_dir():
        raise ModelError(f"{folder.name}: model not found (expected a folder with {CONFIG_NAME} and {WEIGHTS_NAME})")
    config_path = folder / CONFIG_NAME
    if not config_path.is_file():
        raise ModelError(f"{folder.name}: not a DiffuX2CT model folder ({CONFIG_NAME} is missing)")
    try:
        card = json.loads(config_path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise ModelError(f"{folder.name}/{CONFIG_NAME}: unreadable model config ({error})") from None
    if not isinstance(card, dict) or not isinstance(card.get("model"), dict):
        raise ModelError(f"{folder.name}/{CONFIG_NAME}: no model section; not a DiffuX2CT model")
    return card


def summarize_model_card(card: dict) -> str:
    """A few lines for the panel: name, grid, training, measured quality on held-out data, intended use."""
    model = card["model"]
    lines = [
        f"{card.get('name', 'unnamed model')}: {model.get('grid_size')}^3 voxels "
        f"over {model.get('field_of_view_mm')} mm, "
        f"default {model.get('default_steps')} sampling steps"
        + (f", mean of {model['default_samples']} samples" if model.get("default_samples", 1) != 1 else ""),
    ]
    stages = card.get("training", {}).get("stages", [])
    if stages:
        lines.append("trained: " + ", ".join(f"{s.get('stage')} {s.get('steps')} steps" for s in stages))
    data = card.get("training", {}).get("data")
    if data:
        lines.append("data: " + data.split(";")[0].split(",")[0])
    for label, summary, default in _measured_sets(card.get("metrics", {})):
        for method, values in summary.items():
            if _is_default(method, default, model) and "psnr_db" in values:
                lines.append(f"{label} ({method}): PSNR {values['psnr_db'][0]:.1f} dB, SSIM {values['ssim'][0]:.2f}")
    lines.append("intended use: " + card.get("intended_use", "research only, not for diagnosis"))
    return "\n".join(lines)


def _is_default(method: str, default: str | None, model: dict) -> bool:
    """Whether a row of a card's metrics is the default reconstruction: the row its evaluation named so, or, in a
    card written before evaluations named it, the one-sample DDIM row at the model's default steps."""
    if default is not None:
        return method == default
    return method.split(",")[0] == f"diffusion DDIM-{model.get('default_steps')}" and "mean of" not in method


def _measured_sets(metrics: dict) -> list[tuple[str, dict, str | None]]:
    """(label, summary by method, name of the default reconstruction's row if the evaluation gave it) of the test
    sets a card reports: the real patients and the held-out phantoms of today's generator, or the held-out summary
    of a card written before those."""
    sets = [
        (label, metrics[key]["summary"], metrics[key].get("default_method"))
        for key, label in (("real_patients", "real patients"), ("current_generator", "held-out phantoms"))
        if isinstance(metrics.get(key), dict) and isinstance(metrics[key].get("summary"), dict)
    ]
    return sets or [("held-out quality", metrics.get("summary", {}), metrics.get("default_method"))]
