"""The module's Logic (DiffuX2CT/DiffuX2CT.py) outside the Slicer application.

slicer-core has no Qt, ScriptedLoadableModule or parameterNodeWrapper; small stand-ins for those let the module
file load, while the scene, the application logic and the background worker it drives are real.
"""

from __future__ import annotations

import importlib.util
import sys
import types
from dataclasses import dataclass
from pathlib import Path

import pytest
import slicer
from slicer_scene import SAMPLE_DATA, CoreApp

from DiffuX2CTLib.errors import InputError
from DiffuX2CTLib.modelcard import BUNDLED_MODEL_DIR

MODULE_FILE = Path(__file__).resolve().parent.parent / "DiffuX2CT" / "DiffuX2CT.py"


class _StandIn:
    def __init__(self, *args, **kwargs):
        pass


class _FakeDicomDatabase:
    """Answers tag look-ups like slicer.dicomDatabase for one instance."""

    def __init__(self, tags: dict[str, str], path: str | None = None) -> None:
        self.tags = tags
        self.path = path

    def fileForInstance(self, uid: str) -> str:  # noqa: N802 - Slicer's API name
        return self.path or f"/dicom/{uid}.dcm"

    def fileValue(self, path: str, tag: str) -> str:  # noqa: N802 - Slicer's API name
        return self.tags.get(tag, "")


@pytest.fixture()
def module(monkeypatch):
    """Load DiffuX2CT.py with stand-ins for the Qt-based parts of Slicer, on a real slicer-core scene."""
    app = CoreApp()
    qt = types.ModuleType("qt")
    qt.QTimer = _StandIn
    scripted = types.ModuleType("slicer.ScriptedLoadableModule")
    for name in ("ScriptedLoadableModule", "ScriptedLoadableModuleLogic", "ScriptedLoadableModuleTest", "ScriptedLoadableModuleWidget"):
        setattr(scripted, name, _StandIn)
    wrapper = types.ModuleType("slicer.parameterNodeWrapper")
    wrapper.parameterNodeWrapper = lambda cls: cls
    wrapper.Choice = wrapper.WithinRange = _StandIn
    monkeypatch.setitem(sys.modules, "qt", qt)
    monkeypatch.setitem(sys.modules, "slicer.ScriptedLoadableModule", scripted)
    monkeypatch.setitem(sys.modules, "slicer.parameterNodeWrapper", wrapper)
    monkeypatch.setattr(slicer, "app", types.SimpleNamespace(applicationLogic=lambda: app.app_logic), raising=False)
    monkeypatch.setattr(slicer, "mrmlScene", app.scene, raising=False)
    spec = importlib.util.spec_from_file_location("DiffuX2CT_module_under_test", MODULE_FILE)
    loaded = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(loaded)
    loaded.app = app
    return loaded


@dataclass
class _Parameters:
    apVolume: object = None
    lateralVolume: object = None
    outputVolume: object = None
    modelFolder: Path = BUNDLED_MODEL_DIR
    device: str = "auto"
    steps: int = 3
    seed: int = 0
    samples: int = 1
    checkInputs: bool = True
    sourceToDetectorMm: float = 1200.0
    sourceToIsocenterMm: float = 1000.0
    apPixelSpacingMm: float = 0.0
    lateralPixelSpacingMm: float = 0.0


def test_logic_runs_the_real_reconstruction_into_the_scene(module):
    app = module.app
    ap = app.load_volume(SAMPLE_DATA / "ap.nrrd", "AP")
    lateral = app.load_volume(SAMPLE_DATA / "lateral.nrrd", "Lateral")
    logic = module.DiffuX2CTLogic()
    job = logic.start(_Parameters(apVolume=ap, lateralVolume=lateral))
    ct = job.wait(interval_s=0.05).ct_node
    assert ct.GetScene() is app.scene and ct.GetImageData().GetDimensions() == (64, 64, 64)
    assert ct.GetAttribute("DiffuX2CT.steps") == "3"
    assert "PSNR" in logic.modelSummary(BUNDLED_MODEL_DIR) and "not for diagnosis" in logic.modelSummary(BUNDLED_MODEL_DIR)
    assert logic.modelSummary(Path("/nowhere")).startswith("Not a usable model")


def test_dicom_tags_fill_the_geometry_and_set_the_acquisition(module, monkeypatch):
    app = module.app
    ap = app.load_volume(SAMPLE_DATA / "ap.nrrd", "AP")
    lateral = app.load_volume(SAMPLE_DATA / "lateral.nrrd", "Lateral")
    ap.SetAttribute("DICOM.instanceUIDs", "1.2.3")
    tags = {"0018,1164": "0.148\\0.148", "0018,1110": "1800", "0018,1111": "1650", "0028,0004": "MONOCHROME1"}
    monkeypatch.setattr(slicer, "dicomDatabase", _FakeDicomDatabase(tags), raising=False)
    logic = module.DiffuX2CTLogic()
    parameters = _Parameters(apVolume=ap, lateralVolume=lateral)
    message = logic.fillGeometryFromDicom(parameters)
    assert "From DICOM tags: AP pixel spacing, AP distances" in message
    assert (parameters.sourceToDetectorMm, parameters.sourceToIsocenterMm, parameters.apPixelSpacingMm) == (1800.0, 1650.0, 0.148)
    assert parameters.lateralPixelSpacingMm == 0.0
    acquisition = logic.acquisition(parameters)
    assert acquisition["ap"].bone_dark and acquisition["ap"].pixel_spacing_mm == (0.148, 0.148)
    assert not acquisition["lateral"].bone_dark and acquisition["lateral"].pixel_spacing_mm is None
    assert acquisition["lateral"].source_to_detector_mm == 1800.0


def test_a_node_from_a_dicom_file_is_read_by_the_worker_from_that_file(module, monkeypatch, tmp_path):
    """Slicer's DICOM loader drops PatientOrientation; the worker reads the original file, so a mirrored
    radiograph is turned back and said so, and MONOCHROME1 is not inverted twice."""
    import numpy as np
    import SimpleITK as sitk
    from conftest import write_dicom_radiograph

    app = module.app
    pixels = sitk.GetArrayFromImage(sitk.ReadImage(str(SAMPLE_DATA / "ap.nrrd")))[0]
    stored = 65535 - np.rint(pixels / pixels.max() * 60000)  # MONOCHROME1: dense = low stored value
    path = tmp_path / "ap.dcm"
    write_dicom_radiograph(path, stored[:, ::-1], "MONOCHROME1", ImagerPixelSpacing=[1.6, 1.6], DistanceSourceToDetector="1200", DistanceSourceToPatient="1000", ViewPosition="AP", PatientOrientation="R\\F")
    ap = app.load_volume(SAMPLE_DATA / "ap.nrrd", "AP")
    lateral = app.load_volume(SAMPLE_DATA / "lateral.nrrd", "Lateral")
    ap.SetAttribute("DICOM.instanceUIDs", "1.2.3")
    monkeypatch.setattr(slicer, "dicomDatabase", _FakeDicomDatabase({"0028,0004": "MONOCHROME1"}, str(path)), raising=False)
    logic = module.DiffuX2CTLogic()
    parameters = _Parameters(apVolume=ap, lateralVolume=lateral)
    assert logic.sourceFiles(parameters) == {"ap": str(path)}
    assert not logic.acquisition(parameters)["ap"].bone_dark
    ct = logic.start(parameters).wait(interval_s=0.05).ct_node
    notes = ct.GetAttribute("DiffuX2CT.notes")
    assert "ap.dcm: image mirrored left-right (PatientOrientation R\\F)" in notes
    assert float(ct.GetAttribute("DiffuX2CT.agreement_ap")) > 0.9


def test_without_dicom_tags_the_model_defaults_are_used(module):
    app = module.app
    parameters = _Parameters(apVolume=app.load_volume(SAMPLE_DATA / "ap.nrrd", "AP"))
    assert "No DICOM geometry tags" in module.DiffuX2CTLogic().fillGeometryFromDicom(parameters)
    assert parameters.sourceToDetectorMm == 1200.0


def test_panel_and_console_share_one_run_at_a_time(module):
    app = module.app
    ap = app.load_volume(SAMPLE_DATA / "ap.nrrd", "AP")
    lateral = app.load_volume(SAMPLE_DATA / "lateral.nrrd", "Lateral")
    panel, console = module.DiffuX2CTLogic(), module.DiffuX2CTLogic()
    job = panel.start(_Parameters(apVolume=ap, lateralVolume=lateral, steps=200))
    try:
        with pytest.raises(InputError, match="already running"):
            console.reconstruct(ap, lateral, steps=2)
    finally:
        job.cancel()
