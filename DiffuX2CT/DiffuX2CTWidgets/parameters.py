"""The panel's state, saved with the scene (Slicer's parameter node wrapper). No ``from __future__ import
annotations`` here: the wrapper reads the annotations as types."""

import re
from pathlib import Path
from typing import Annotated

from slicer import vtkMRMLScalarVolumeNode
from slicer.parameterNodeWrapper import Choice, WithinRange, parameterNodeWrapper

from DiffuX2CTLib.inference.options import DEFAULT_GUIDANCE
from DiffuX2CTLib.model.card import BUNDLED_MODEL_DIR

from . import dicom

BUNDLED_MODEL = Path("bundled")
"""What the parameter node stores for the model that comes with the extension: its folder differs between
installations and versions, so a saved scene must not hold that path."""


@parameterNodeWrapper
class DiffuX2CTParameterNode:
    """Inputs, geometry, model and options of a reconstruction, how long the background process keeps the model
    loaded when idle (minutes; 0: until Slicer closes), whether it loads the model as soon as the module opens,
    and which PyTorch build an installation asks for."""

    apVolume: vtkMRMLScalarVolumeNode
    lateralVolume: vtkMRMLScalarVolumeNode
    outputVolume: vtkMRMLScalarVolumeNode
    modelFolder: Path = BUNDLED_MODEL
    device: Annotated[str, Choice(["auto", "cuda", "cpu"])] = "auto"
    steps: Annotated[int, WithinRange(0, 1000)] = 0  # 0: the model's own default (its config's default_steps)
    seed: Annotated[int, WithinRange(0, 2147483647)] = 0
    samples: Annotated[int, WithinRange(0, 16)] = 0  # 0: the model's own default (its config's default_samples)
    guidance: Annotated[float, WithinRange(0.0, 100.0)] = DEFAULT_GUIDANCE["diffusion"]
    checkInputs: bool = True
    sourceToDetectorMm: Annotated[float, WithinRange(100.0, 5000.0)] = 1200.0
    sourceToIsocenterMm: Annotated[float, WithinRange(50.0, 5000.0)] = 1000.0
    apPixelSpacingMm: Annotated[float, WithinRange(0.0, 10.0)] = 0.0  # 0: the volume's own spacing
    lateralPixelSpacingMm: Annotated[float, WithinRange(0.0, 10.0)] = 0.0
    idleMinutes: Annotated[int, WithinRange(0, 1440)] = 10
    preloadModel: bool = False  # start the worker and load the model when the module opens
    torchBackend: str = ""  # PyTorch build to install (cpu, cu121, ...); empty: light-the-torch picks


def connectGui(parameterNode, ui) -> object:
    """``parameterNode.connectGui(ui)`` that returns the tag needed to disconnect. Slicer 5.8 forgets to return
    it (fixed in 5.10), so ``disconnectGui`` did nothing and every ``enter()`` added a set of connections; there
    the tag is the one connection that appeared. None only when it cannot be found: then the caller must not
    connect this node again."""
    before = set(getattr(parameterNode, "_parameterGUIs", {}) or {})
    tag = parameterNode.connectGui(ui)
    if tag is None:
        added = set(getattr(parameterNode, "_parameterGUIs", {}) or {}) - before
        tag = added.pop() if len(added) == 1 else None
    return tag


def isBundledModel(folder) -> bool:
    """Whether a stored model folder means the bundled model: the marker (or an empty field), or the absolute
    path an older version stored, from any installation (``.../Resources/Models/diffux2ct-64``, any OS)."""
    text = str(folder or "").strip()
    if text in ("", ".", str(BUNDLED_MODEL)):
        return True
    parts = re.split(r"[\\/]+", text.rstrip("\\/"))
    return parts[-3:] == ["Resources", "Models", BUNDLED_MODEL_DIR.name]


def modelFolderPath(folder) -> Path:
    """The folder a stored model folder stands for on this computer."""
    return BUNDLED_MODEL_DIR if isBundledModel(folder) else Path(folder)


def modelArgument(parameterNode):
    """The model folder to send to the worker: None for the bundled model."""
    return None if isBundledModel(parameterNode.modelFolder) else str(parameterNode.modelFolder)


def jobOptions(parameterNode) -> dict:
    """The keyword arguments of ``SceneLogic.start`` for the panel's parameters (besides the two radiographs);
    steps 0 and samples 0 leave the number of sampling steps and of averaged samples to the model, whose defaults
    are its measured best."""
    p = parameterNode
    options = {
        "steps": p.steps or None,
        "seed": p.seed,
        "samples": p.samples or None,
        "device": p.device,
        "guidance": p.guidance,
    }
    options.update(check_inputs=p.checkInputs, output_node=p.outputVolume, model=modelArgument(p))
    options.update(acquisition=dicom.acquisition(p), source_files=dicom.sourceFiles(p))
    return options
