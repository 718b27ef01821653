"""Model files: safetensors weights (never pickle), a JSON config, and a SHA-256 the loader verifies.

A model is a folder holding ``config.json`` and ``model.safetensors``. ``config.json`` has the architecture
(``model``), the ``weights_sha256`` of the weights file, and free-form ``training``/``metrics`` sections that form
the model card. The bundled model lives in ``Resources/Models/``.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save

from ..core.atomic_write import write_together
from ..core.json_output import dumps
from .card import BUNDLED_MODEL_DIR, CONFIG_NAME, WEIGHTS_NAME, ModelError, read_model_card
from .config import ModelConfig
from .network import DiffuX2CTNet


def file_sha256(path: Path) -> str:
    """Hex SHA-256 of a file, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def save_model(net: DiffuX2CTNet, folder: str | os.PathLike, card: dict | None = None, half: bool = True) -> Path:
    """Write ``net`` (fp16 by default, a few MB) with its config and checksum into ``folder``, weights and config
    as one unit: an interrupted save leaves the previous model whole, never new weights beside an old checksum."""
    folder = Path(folder)
    dtype = torch.float16 if half else torch.float32
    tensors = {
        name: value.detach().to("cpu", dtype if value.is_floating_point() else value.dtype).contiguous()
        for name, value in net.state_dict().items()
    }
    weights = save(tensors)
    config = {
        "format": "diffux2ct-model-1",
        "model": net.config.to_dict(),
        "weights_sha256": hashlib.sha256(weights).hexdigest(),
    }
    config.update(card or {})
    text = dumps(config) + "\n"
    write_together(
        {
            folder / WEIGHTS_NAME: lambda path: path.write_bytes(weights),
            folder / CONFIG_NAME: lambda path: path.write_text(text, encoding="utf-8"),
        }
    )
    return folder


def load_widened(net: torch.nn.Module, state: dict[str, torch.Tensor], zero_new: bool = True) -> None:
    """Load ``state`` into ``net`` where some layers of ``net`` take more input channels (dimension 1) than the
    state's: those keep the state's weights for the channels it had and zero for the new ones, so the network
    computes what it did until training teaches it the new inputs (``zero_new=False``: the new ones keep ``net``'s
    own initialisation). Any other mismatch is refused."""
    target = net.state_dict()
    carried = {}
    for name, value in state.items():
        wanted = target.get(name)
        if wanted is not None and wanted.shape != value.shape:
            same_but_inputs = (
                value.dim() > 1 and value.shape[0] == wanted.shape[0] and value.shape[2:] == wanted.shape[2:]
            )
            if not (same_but_inputs and wanted.shape[1] > value.shape[1]):
                raise ModelError(f"{name}: weights of shape {tuple(value.shape)} do not fit {tuple(wanted.shape)}")
            new = wanted[:, value.shape[1] :].to(value.dtype)
            value = torch.cat([value, torch.zeros_like(new) if zero_new else new], 1)
        carried[name] = value
    net.load_state_dict(carried)


def load_model(
    folder: str | os.PathLike | None = None, device: str | torch.device = "cpu"
) -> tuple[DiffuX2CTNet, dict]:
    """Load and verify a model folder (the bundled model when ``folder`` is None); returns (net in eval mode, card)."""
    folder = Path(folder) if folder is not None else BUNDLED_MODEL_DIR
    card = read_model_card(folder)
    weights = folder / WEIGHTS_NAME
    if not weights.is_file():
        raise ModelError(f"{folder.name}: {WEIGHTS_NAME} is missing")
    expected = card.get("weights_sha256")
    if not expected:
        raise ModelError(f"{folder.name}/{CONFIG_NAME}: no weights_sha256; refusing an unverifiable model")
    if file_sha256(weights) != expected:
        raise ModelError(f"{folder.name}/{WEIGHTS_NAME}: checksum mismatch, the file is corrupted or was modified")
    try:
        config = ModelConfig.from_dict(card["model"])
    except (KeyError, TypeError, ValueError) as error:
        raise ModelError(f"{folder.name}/{CONFIG_NAME}: invalid model section ({error})") from None
    try:
        tensors = load_file(str(weights))
    except (SafetensorError, OSError) as error:
        raise ModelError(f"{folder.name}/{WEIGHTS_NAME}: not a readable safetensors file ({error})") from None
    net = DiffuX2CTNet(config)
    try:
        net.load_state_dict(
            {name: value.float() if value.is_floating_point() else value for name, value in tensors.items()}
        )
    except RuntimeError as error:
        first = str(error).splitlines()[1].strip() if len(str(error).splitlines()) > 1 else str(error)
        raise ModelError(f"{folder.name}: weights do not fit the architecture in its config ({first[:200]})") from None
    return net.to(device).eval(), card
