"""The panel's state, saved with the scene (Slicer's parameter node wrapper). No ``from __future__ import
annotations`` here: the wrapper reads the annotations as types."""

from pathlib import Path
from typing import Annotated

from slicer import vtkMRMLScalarVolumeNode
from slicer.parameterNodeWrapper import Choice, WithinRange, parameterNodeWrapper

from DiffuX2CTLib.inference.options import DEFAULT_GUIDANCE
from DiffuX2CTLib.model.card import BUNDLED_MODEL_DIR

from . import dicom


@parameterNodeWrapper
class DiffuX2CTParameterNode:
    """Inputs, geometry, model and options of a reconstruction, and how long the background process keeps the
    model loaded when idle (minutes; 0: until Slicer closes)."""

    apVolume: vtkMRMLScalarVolumeNode
    lateralVolume: vtkMRMLScalarVolumeNode
    outputVolume: vtkMRMLScalarVolumeNode
    modelFolder: Path = BUNDLED_MODEL_DIR
    device: Annotated[str, Choice(["auto", "cuda", "cpu"])] = "auto"
    steps: Annotated[int, WithinRange(1, 1000)] = 20
    seed: Annotated[int, WithinRange(0, 2147483647)] = 0
    samples: Annotated[int, WithinRange(1, 16)] = 1
    guidance: Annotated[float, WithinRange(0.0, 100.0)] = DEFAULT_GUIDANCE["diffusion"]
    checkInputs: bool = True
    sourceToDetectorMm: Annotated[float, WithinRange(100.0, 5000.0)] = 1200.0
    sourceToIsocenterMm: Annotated[float, WithinRange(50.0, 5000.0)] = 1000.0
    apPixelSpacingMm: Annotated[float, WithinRange(0.0, 10.0)] = 0.0  # 0: the volume's own spacing
    lateralPixelSpacingMm: Annotated[float, WithinRange(0.0, 10.0)] = 0.0
    idleMinutes: Annotated[int, WithinRange(0, 1440)] = 10


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


def modelArgument(parameterNode):
    """The model folder to send to the worker: None for the bundled model."""
    folder = Path(parameterNode.modelFolder)
    return None if folder == BUNDLED_MODEL_DIR else str(folder)


def jobOptions(parameterNode) -> dict:
    """The keyword arguments of ``SceneLogic.start`` for the panel's parameters (besides the two radiographs)."""
    p = parameterNode
    options = {"steps": p.steps, "seed": p.seed, "samples": p.samples, "device": p.device, "guidance": p.guidance}
    options.update(check_inputs=p.checkInputs, output_node=p.outputVolume, model=modelArgument(p))
    options.update(acquisition=dicom.acquisition(p), source_files=dicom.sourceFiles(p))
    return options
