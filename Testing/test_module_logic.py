"""The module (DiffuX2CT/DiffuX2CT.py) and its Slicer-side parts (DiffuX2CT/DiffuX2CTWidgets) outside the Slicer
application.

slicer-core has no Qt, ScriptedLoadableModule or parameterNodeWrapper; small stand-ins for those let the module
load, while the scene, the application logic and the background worker it drives are real.
"""

from __future__ import annotations

import ast
import re
import sys
import types
from dataclasses import dataclass
from pathlib import Path

import pytest
import slicer
from slicer_scene import MODULE_DIR, MODULE_FILE, SAMPLE_DATA, CoreApp, load_module, unload_module
from slicer_scene import Timer as _Timer

from DiffuX2CTLib.core.errors import InputError
from DiffuX2CTLib.model.card import BUNDLED_MODEL_DIR


class _FakeDicomDatabase:
    """Answers tag look-ups like slicer.dicomDatabase for one instance."""

    def __init__(self, tags: dict[str, str], path: str | None = None) -> None:
        self.tags = tags
        self.path = path

    def fileForInstance(self, uid: str) -> str:  # Slicer's API name
        return self.path or f"/dicom/{uid}.dcm"

    def fileValue(self, path: str, tag: str) -> str:  # Slicer's API name
        return self.tags.get(tag, "")


@pytest.fixture()
def module(monkeypatch):
    """Load DiffuX2CT.py with stand-ins for the Qt-based parts of Slicer, on a real slicer-core scene."""
    loaded = load_module(monkeypatch, CoreApp())
    yield loaded
    unload_module(loaded)


@dataclass
class _Parameters:
    apVolume: object = None
    lateralVolume: object = None
    outputVolume: object = None
    modelFolder: Path = Path("bundled")
    device: str = "auto"
    steps: int = 3
    seed: int = 0
    samples: int = 1
    guidance: float = 2.0
    checkInputs: bool = True
    sourceToDetectorMm: float = 1200.0
    sourceToIsocenterMm: float = 1000.0
    apPixelSpacingMm: float = 0.0
    lateralPixelSpacingMm: float = 0.0
    idleMinutes: int = 10
    preloadModel: bool = False
    torchBackend: str = ""


def test_logic_runs_the_real_reconstruction_into_the_scene(module):
    app = module.app
    ap = app.load_volume(SAMPLE_DATA / "ap.nrrd", "AP")
    lateral = app.load_volume(SAMPLE_DATA / "lateral.nrrd", "Lateral")
    logic = module.DiffuX2CTLogic()
    job = logic.start(_Parameters(apVolume=ap, lateralVolume=lateral, guidance=0.5))
    ct = job.wait(interval_s=0.05).ct_node
    assert ct.GetScene() is app.scene and ct.GetImageData().GetDimensions() == (64, 64, 64)
    assert (
        ct.GetAttribute("DiffuX2CT.steps") == "3" and ct.GetAttribute("DiffuX2CT.guidance") == "0.5"
    )  # the panel's weight reached the worker
    summary = module.widgets.panel.modelSummary
    assert "PSNR" in summary(BUNDLED_MODEL_DIR) and "not for diagnosis" in summary(BUNDLED_MODEL_DIR)
    assert summary(Path("/nowhere")).startswith("Not a usable model")


def test_the_console_reuses_the_panels_warm_worker(module):
    """Issue 15 item 5: DiffuX2CTLogic().reconstruct called twice uses one warm worker."""
    app = module.app
    ap = app.load_volume(SAMPLE_DATA / "ap.nrrd", "AP")
    lateral = app.load_volume(SAMPLE_DATA / "lateral.nrrd", "Lateral")
    module.DiffuX2CTLogic().reconstruct(ap, lateral, method="regression")
    logic = module.DiffuX2CTLogic()
    pid = logic.sceneLogic.session.pid
    logic.reconstruct(ap, lateral, method="regression")
    assert logic.sceneLogic.session.pid == pid and logic.sceneLogic.session.starts == 1


def test_dicom_tags_fill_the_geometry_and_set_the_acquisition(module, monkeypatch):
    app = module.app
    dicom = module.widgets.dicom
    ap = app.load_volume(SAMPLE_DATA / "ap.nrrd", "AP")
    lateral = app.load_volume(SAMPLE_DATA / "lateral.nrrd", "Lateral")
    ap.SetAttribute("DICOM.instanceUIDs", "1.2.3")
    tags = {"0018,1164": "0.148\\0.148", "0018,1110": "1800", "0018,1111": "1650", "0028,0004": "MONOCHROME1"}
    monkeypatch.setattr(slicer, "dicomDatabase", _FakeDicomDatabase(tags), raising=False)
    parameters = _Parameters(apVolume=ap, lateralVolume=lateral)
    message = dicom.fillGeometryFromDicom(parameters)
    assert "From DICOM tags: AP pixel spacing, AP distances" in message
    assert (parameters.sourceToDetectorMm, parameters.sourceToIsocenterMm, parameters.apPixelSpacingMm) == (
        1800.0,
        1650.0,
        0.148,
    )
    assert parameters.lateralPixelSpacingMm == 0.0
    acquisition = dicom.acquisition(parameters)
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
    dicom = module.widgets.dicom
    pixels = sitk.GetArrayFromImage(sitk.ReadImage(str(SAMPLE_DATA / "ap.nrrd")))[0]
    stored = 65535 - np.rint(pixels / pixels.max() * 60000)  # MONOCHROME1: dense = low stored value
    path = tmp_path / "ap.dcm"
    write_dicom_radiograph(
        path,
        stored[:, ::-1],
        "MONOCHROME1",
        ImagerPixelSpacing=[1.6, 1.6],
        DistanceSourceToDetector="1200",
        DistanceSourceToPatient="1000",
        ViewPosition="AP",
        PatientOrientation="R\\F",
    )
    ap = app.load_volume(SAMPLE_DATA / "ap.nrrd", "AP")
    lateral = app.load_volume(SAMPLE_DATA / "lateral.nrrd", "Lateral")
    ap.SetAttribute("DICOM.instanceUIDs", "1.2.3")
    monkeypatch.setattr(
        slicer, "dicomDatabase", _FakeDicomDatabase({"0028,0004": "MONOCHROME1"}, str(path)), raising=False
    )
    parameters = _Parameters(apVolume=ap, lateralVolume=lateral)
    assert dicom.sourceFiles(parameters) == {"ap": str(path)}
    assert not dicom.acquisition(parameters)["ap"].bone_dark
    ct = module.DiffuX2CTLogic().start(parameters).wait(interval_s=0.05).ct_node
    notes = ct.GetAttribute("DiffuX2CT.notes")
    assert "ap.dcm: image mirrored left-right (PatientOrientation R\\F)" in notes
    assert float(ct.GetAttribute("DiffuX2CT.agreement_ap")) > 0.9


def test_without_dicom_tags_the_model_defaults_are_used(module):
    parameters = _Parameters(apVolume=module.app.load_volume(SAMPLE_DATA / "ap.nrrd", "AP"))
    assert "No DICOM geometry tags" in module.widgets.dicom.fillGeometryFromDicom(parameters)
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


# -- installation ------------------------------------------------------------------------------------------------
class _PyTorchUtilsLogic:
    """The PyTorch extension's PyTorchUtilsLogic as far as DiffuX2CT may use it: its light-the-torch arguments and
    light-the-torch install; the methods that import torch into Slicer's process must not be called."""

    installed_light_the_torch = 0

    @staticmethod
    def _getPipInstallArguments(
        forceComputationBackend=None, torchVersionRequirement=None, torchvisionVersionRequirement=None
    ):  # PyTorchUtils' signature
        args = [
            "install",
            "torch" + (torchVersionRequirement or ""),
            "torchvision" + (torchvisionVersionRequirement or ""),
        ]
        if forceComputationBackend is not None:
            args.append(f"--pytorch-computation-backend={forceComputationBackend}")
        return args

    @classmethod
    def _installLightTheTorch(cls):
        cls.installed_light_the_torch += 1

    def installTorch(self, *args, **kwargs):
        raise AssertionError("PyTorchUtilsLogic.installTorch imports torch into Slicer's process")

    @staticmethod
    def torchInstalled():
        raise AssertionError("PyTorchUtilsLogic.torchInstalled imports torch into Slicer's process")


class _ExtensionsManager:
    def __init__(self, installed=False):
        self.installed, self.requests = installed, []

    def isExtensionInstalled(self, name):  # Slicer's API name
        return self.installed

    def installExtensionFromServer(self, name, restart=True):  # Slicer's API name
        self.requests.append((name, restart))
        self.installed = True
        return True


class _Recorder:
    def __init__(self) -> None:
        self.pip: list[list[str]] = []
        self.modules: list[tuple[str, list[str]]] = []
        self.questions: list[tuple[str, str]] = []

    def install_logic(self, install_module, confirm=True, on_pip=None, torch_logic=_PyTorchUtilsLogic, manager=None):
        def pip(arguments):
            self.pip.append(list(arguments))
            if on_pip:
                on_pip()

        def ask(text, details):
            self.questions.append((text, details))
            return confirm

        return install_module.InstallLogic(
            pip,
            lambda name, args: self.modules.append((name, list(args))),
            ask,
            torch_logic=lambda: torch_logic() if torch_logic else None,
            extensions_manager=lambda: manager,
        )


def _names_torch(argument: str) -> bool:
    return re.match(r"torch(\W|$)", argument) is not None


def test_torch_comes_through_pytorch_utils_with_the_version_requirement_never_through_pip(module):
    install = module.widgets.install
    recorder = _Recorder()
    assert recorder.install_logic(install).install(["monai", "safetensors"], "Install?")
    assert recorder.pip == [["--no-deps", "monai>=1.4", "safetensors>=0.4"]] and recorder.modules == []
    recorder = _Recorder()
    assert recorder.install_logic(install).install(["torch", "monai"], "Install?")
    assert not any(_names_torch(argument) for command in recorder.pip for argument in command)
    assert recorder.pip == [["--no-deps", "monai>=1.4"]]
    # PyTorchUtils' own arguments, with DiffuX2CT's requirement, in a child process (torch is never imported here)
    assert recorder.modules == [("light_the_torch", ["install", "torch>=2.2", "torchvision"])]
    recorder = _Recorder()
    recorder.install_logic(install).install(["torch"], "Install?", backend="cu121")
    assert recorder.modules == [
        ("light_the_torch", ["install", "torch>=2.2", "torchvision", "--pytorch-computation-backend=cu121"])
    ]


def test_outdated_packages_are_upgraded_in_place_and_slicers_own_are_not(module):
    """Issue 32 point 4: versions are checked; an upgrade needs no Slicer restart (Slicer never imports them)."""
    install = module.widgets.install
    recorder = _Recorder()
    outdated = [
        {"name": "monai", "installed": "1.3.2", "required": ">=1.4"},
        {"name": "torch", "installed": "2.1.0", "required": ">=2.2"},
    ]
    assert recorder.install_logic(install).install([], "Upgrade?", outdated)
    assert recorder.pip == [["--upgrade", "--no-deps", "monai>=1.4"]]
    assert recorder.modules == [("light_the_torch", ["install", "torch>=2.2", "torchvision"])]
    assert "Too old: monai 1.3.2 (DiffuX2CT needs monai>=1.4)" in recorder.questions[0][1]
    numpy = [{"name": "numpy", "installed": "1.21.0", "required": ">=1.24"}]
    with pytest.raises(InputError, match=r"Slicer's own numpy 1.21.0 is older than DiffuX2CT needs \(>=1.24\)"):
        recorder.install_logic(install).install([], "Upgrade?", numpy)
    assert len(recorder.pip) == 1


def test_the_pytorch_extension_is_offered_when_it_is_missing(module):
    """Issue 32 point 5: torch is installed through the PyTorch extension; without it, installing it is offered."""
    install = module.widgets.install
    recorder, manager = _Recorder(), _ExtensionsManager()
    logic = recorder.install_logic(install, torch_logic=None, manager=manager)
    with pytest.raises(install.RestartRequired, match="restart Slicer"):
        logic.install(["torch", "monai"], "Install?")
    assert manager.requests == [("PyTorch", False)] and "PyTorch extension" in recorder.questions[0][0]
    assert recorder.pip == [] and recorder.modules == []  # nothing else before the restart
    declined = _Recorder().install_logic(install, confirm=False, torch_logic=None, manager=_ExtensionsManager())
    assert declined.install(["torch"], "Install?") is False
    with pytest.raises(install.RestartRequired):  # installed, but Slicer was not restarted yet
        _Recorder().install_logic(install, torch_logic=None, manager=_ExtensionsManager(installed=True)).install(
            ["torch"], "Install?"
        )


def test_the_panel_upgrades_what_the_probe_reports_too_old_and_restarts_only_the_worker(module):
    recorder = _Recorder()
    outdated = {"missing": [], "outdated": [{"name": "monai", "installed": "1.3.2", "required": ">=1.4"}]}
    panel, logic = _panel(module, [outdated, {"missing": [], "outdated": []}], recorder)
    panel.onReconstruct()
    panel.onPoll()  # the probe: monai too old -> asked, upgraded, the worker restarted, checked again
    question = recorder.questions[0][0]
    assert "missing or too old: monai" in question and "Slicer does not need to restart" in question
    assert recorder.pip == [["--upgrade", "--no-deps", "monai>=1.4"]] and logic.sceneLogic.session.shutdowns == 1
    panel.onPoll()
    assert logic.started == 1


def test_declined_failed_and_slicer_bundled_installs(module):
    install = module.widgets.install
    recorder = _Recorder()
    assert not recorder.install_logic(install, confirm=False).install(["monai"], "Install?") and recorder.pip == []
    with pytest.raises(InputError, match="Slicer's own SimpleITK cannot be imported; reinstall Slicer"):
        recorder.install_logic(install).install(["SimpleITK", "monai"], "Install?")

    def broken(arguments):
        raise RuntimeError("pip exited with 1")

    logic = install.InstallLogic(broken, lambda *a: None, lambda *a: True)
    with pytest.raises(InputError, match=r"installation failed \(pip exited with 1\)"):
        logic.install(["monai"], "Install?")
    assert not logic.installing


def test_the_slicer_side_never_imports_torch_or_monai():
    for path in MODULE_DIR.rglob("*.py"):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        imported = {
            alias.name.split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names
        }
        imported |= {
            node.module.split(".")[0]
            for node in ast.walk(tree)
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0
        }
        assert not imported & {"torch", "monai"}, path


# -- the panel ---------------------------------------------------------------------------------------------------
class _Widget(types.SimpleNamespace):
    def show(self):
        self.visible = True

    def hide(self):
        self.visible = False

    def setRange(self, low, high):  # Qt's API name
        self.range = (low, high)

    def setStyleSheet(self, sheet):  # Qt's API name
        self.sheet = sheet


def _ui():
    names = (
        "reconstructButton",
        "cancelButton",
        "progressBar",
        "statusLabel",
        "deviceInfoLabel",
        "modelCardLabel",
        "geometrySourceLabel",
        "exportDicomButton",
    )
    return types.SimpleNamespace(**{name: _Widget(enabled=False, text="", toolTip="", value=0) for name in names})


class _Probe:
    def __init__(self, report):
        self.report = report

    def poll(self):
        return self.report

    def cancel(self):
        pass


class _FakeSession:
    shutdowns = 0

    def set_idle_timeout(self, seconds):
        self.idle = seconds

    def shutdown(self):
        self.shutdowns += 1


class _FakeLogic:
    """Probe reports in order, and jobs that never end (the panel's flow is what is tested)."""

    def __init__(self, reports):
        self.reports = list(reports)
        self.sceneLogic = types.SimpleNamespace(start_probe=lambda: _Probe(self.reports.pop(0)), session=_FakeSession())
        self.started = 0
        self.preloads = 0

    def preload(self, parameters):
        self.preloads += 1

    def start(self, parameters):
        self.started += 1
        return types.SimpleNamespace(
            poll=lambda: types.SimpleNamespace(state="running", total=0, step=0, eta_s=None, message=""),
            cancel=lambda: None,
        )


def _panel(module, reports, recorder, on_pip=None):
    logic = _FakeLogic(reports)
    parameters = _Parameters(
        apVolume=module.app.load_volume(SAMPLE_DATA / "ap.nrrd", "AP"),
        lateralVolume=module.app.load_volume(SAMPLE_DATA / "lateral.nrrd", "Lateral"),
    )
    logic.sceneLogic.scene = module.app.scene
    errors = []
    panel = module.widgets.panel.ReconstructionPanel(
        _ui(),
        logic,
        recorder.install_logic(module.widgets.install, on_pip=on_pip),
        _Timer(),
        errorDisplay=lambda text, details: errors.append((text, details)),
    )
    panel.errors = errors
    panel.setParameterNode(parameters)
    return panel, logic


def test_reconstruct_cannot_be_clicked_again_while_dependencies_install(module):
    """pip processes GUI events while it runs: a click then must do nothing and the button must be disabled."""
    recorder = _Recorder()
    seen = []

    def click_during_install():
        seen.append((panel.ui.reconstructButton.enabled, panel.phase, panel._timer.running))
        panel.onReconstruct()

    missing = {"missing": ["monai"], "cuda": False}
    complete = {"missing": [], "cuda": False}
    panel, logic = _panel(module, [missing, complete], recorder, on_pip=click_during_install)
    assert panel.ui.reconstructButton.enabled
    panel.onReconstruct()
    assert panel.phase == module.widgets.panel.Phase.CHECKING and not panel.ui.reconstructButton.enabled
    panel.onPoll()  # the probe reports monai missing: install (the click inside does nothing), then check again
    assert seen == [(False, module.widgets.panel.Phase.INSTALLING, False)]
    assert recorder.pip == [["--no-deps", "monai>=1.4"]] and logic.started == 0
    assert panel.phase == module.widgets.panel.Phase.CHECKING
    panel.onPoll()  # the second probe: everything is there, the job starts
    assert logic.started == 1 and panel.phase == module.widgets.panel.Phase.RUNNING
    panel.onReconstruct()
    assert logic.started == 1


def test_opening_the_panel_starts_nothing_unless_preloading_is_asked_for(module):
    """Issue 32 point 7: opening the module started the worker, imported torch and loaded the model (holding a
    CUDA context for 10 minutes) before the user asked for anything."""
    assert module.widgets.parameters.DiffuX2CTParameterNode.preloadModel is False
    panel, logic = _panel(module, [{"missing": [], "cuda": False}], _Recorder())
    panel.warmUp()  # enter(): nothing is checked, started or loaded
    assert panel.phase == module.widgets.panel.Phase.IDLE and panel.probeJob is None and logic.reports
    assert logic.preloads == 0 and not panel._timer.running
    panel.onReconstruct()  # the first Reconstruct checks, then runs
    panel.onPoll()
    assert logic.started == 1


def test_opening_the_panel_checks_in_the_background_and_preloads_without_installing(module):
    recorder = _Recorder()
    complete = {"missing": [], "cuda": False}
    panel, logic = _panel(module, [complete], recorder)
    panel.parameterNode.preloadModel = True  # the setting "Load the model when the module opens"
    assert logic.sceneLogic.session.idle == 600.0  # the panel's "Keep model loaded" (10 min) reaches the session
    panel.warmUp()
    assert panel.phase == module.widgets.panel.Phase.CHECKING and not panel.ui.reconstructButton.enabled
    panel.onPoll()
    assert panel.phase == module.widgets.panel.Phase.IDLE and logic.preloads == 1 and logic.started == 0
    assert panel.ui.reconstructButton.enabled and "Ready" in panel.ui.statusLabel.text
    panel.warmUp()  # entering the module again: the check is known, only the (cheap) preload is repeated
    assert logic.preloads == 2 and panel.phase == module.widgets.panel.Phase.IDLE
    panel.onReconstruct()  # known complete: the job starts at once
    assert logic.started == 1

    missing = {"missing": ["monai"], "cuda": False}
    panel, logic = _panel(module, [missing, missing, complete], recorder)
    panel.parameterNode.preloadModel = True
    panel.warmUp()
    panel.onPoll()
    assert panel.phase == module.widgets.panel.Phase.IDLE and recorder.pip == [] and logic.preloads == 0
    assert (
        "Reconstruct will offer to install or upgrade what the background process lacks: monai"
        in panel.ui.statusLabel.text
    )
    panel.onReconstruct()  # now the check runs again and the install is offered; then the job starts
    panel.onPoll()
    panel.onPoll()
    assert recorder.pip == [["--no-deps", "monai>=1.4"]] and logic.started == 1


def test_still_missing_after_installing_is_an_error_not_a_loop(module):
    recorder = _Recorder()
    missing = {"missing": ["monai"], "cuda": False}
    panel, logic = _panel(module, [missing, missing], recorder)
    panel.onReconstruct()
    panel.onPoll()
    panel.onPoll()
    assert (
        panel.phase == module.widgets.panel.Phase.IDLE
        and "Still missing or too old after installation: monai" in panel.ui.statusLabel.text
    )
    assert len(recorder.pip) == 1 and logic.started == 0 and panel.ui.reconstructButton.enabled


# -- Slicer conventions ------------------------------------------------------------------------------------------
class _Slicer58Node:
    """A parameter node as in Slicer 5.8: connectGui keeps its connections under a tag it does not return."""

    def __init__(self, record: bool = True) -> None:
        self._parameterGUIs = {}
        self.record = record

    def connectGui(self, ui):  # Slicer's API name
        if self.record:
            self._parameterGUIs[len(self._parameterGUIs)] = {"steps": ui}
        return None


def test_connect_gui_finds_the_tag_that_slicer_5_8_does_not_return(module):
    connect = module.widgets.parameters.connectGui
    node = _Slicer58Node()
    assert connect(node, "ui") == 0 and connect(node, "ui") == 1
    assert connect(_Slicer58Node(record=False), "ui") is None
    tagged = types.SimpleNamespace(connectGui=lambda ui: "tag-5.10")
    assert connect(tagged, "ui") == "tag-5.10"


def test_the_self_test_says_clearly_when_torch_or_monai_are_missing(module, monkeypatch):
    logic = module.sharedSceneLogic()
    monkeypatch.setattr(logic, "probe", lambda: {"missing": ["torch", "monai"]})
    test = module.DiffuX2CTTest()
    shown = []
    test.delayDisplay = shown.append
    test.test_reconstruct_sample_pair = lambda: pytest.fail("must not run without torch")
    test.runTest()
    assert shown == [
        "Skipped: the background process's Python lacks torch, monai; install them from the module's panel."
    ]


def test_reload_also_reloads_the_engine_and_ends_the_worker(module, monkeypatch):
    reloaded = []
    base = module.ScriptedLoadableModuleWidget
    monkeypatch.setattr(
        base,
        "onReload",
        lambda self: reloaded.append(
            sorted(n for n in sys.modules if n.split(".")[0] in ("DiffuX2CTLib", "DiffuX2CTWidgets"))
        ),
        raising=False,
    )
    ended = []
    monkeypatch.setattr(module, "endSharedSceneLogic", lambda: ended.append(True))
    saved = {
        name: mod for name, mod in sys.modules.items() if name.split(".")[0] in ("DiffuX2CTLib", "DiffuX2CTWidgets")
    }
    widget = module.DiffuX2CTWidget()
    widget.removeObservers = lambda: None
    try:
        widget.onReload()
    finally:
        sys.modules.update(saved)  # the rest of the test session keeps its module objects
    assert ended == [True] and reloaded == [[]]


def test_module_metadata_follows_slicer_conventions(module):
    parent = types.SimpleNamespace()
    monkeypatch_app = slicer.app
    monkeypatch_app.connect = lambda *args: None
    instance = module.DiffuX2CT.__new__(module.DiffuX2CT)
    instance.parent = parent
    module.DiffuX2CT.__init__(instance, parent)
    del monkeypatch_app.connect
    assert all(re.fullmatch(r"[^()]+ \([^()]+\)", name) for name in parent.contributors)
    source = MODULE_FILE.read_text(encoding="utf-8")
    assert "self.parent.helpText = _(" in source and "self.parent.title = _(" in source
    assert len(source.splitlines()) <= 200


def test_the_panel_refuses_an_output_volume_that_is_one_of_the_radiographs(module):
    """Issue 32 point 2: the Output selector offers the radiographs too; choosing one must not overwrite it."""
    panel, logic = _panel(module, [{"missing": [], "cuda": False}], _Recorder())
    panel.parameterNode.outputVolume = panel.parameterNode.lateralVolume
    panel.refresh()
    assert not panel.ui.reconstructButton.enabled
    assert "output volume is one of the input radiographs" in panel.ui.reconstructButton.toolTip
    panel.onReconstruct()
    assert logic.started == 0 and panel.phase == module.widgets.panel.Phase.IDLE
    assert "output volume is one of the input radiographs" in panel.ui.statusLabel.text


def test_the_bundled_model_is_stored_as_a_marker_and_old_absolute_paths_read_as_bundled(module, tmp_path):
    """Issue 32 point 3: a saved scene held the bundled model's absolute path, which an extension update or another
    computer does not have ("model folder not found")."""
    parameters = module.widgets.parameters
    marker = parameters.BUNDLED_MODEL
    assert parameters.DiffuX2CTParameterNode.modelFolder == marker and marker.parts == ("bundled",)
    old_installs = [
        "/opt/Slicer-5.6.2/lib/Slicer-5.6/qt-scripted-modules/Resources/Models/diffux2ct-64",
        r"C:\Users\me\AppData\Local\slicer.org\Slicer 5.8.1\slicer.org\Extensions-33216\DiffuX2CT"
        r"\lib\Slicer-5.8\qt-scripted-modules\Resources\Models\diffux2ct-64",
    ]
    panel, _ = _panel(module, [], _Recorder())
    for old in old_installs:
        p = panel.parameterNode
        p.modelFolder = Path(old)
        assert parameters.modelArgument(p) is None and parameters.jobOptions(p)["model"] is None
        panel.setParameterNode(p)  # an old scene is opened: the next save stores the marker
        assert p.modelFolder == marker and "PSNR" in panel.ui.modelCardLabel.text
    custom = tmp_path / "my model"
    panel.parameterNode.modelFolder = custom
    assert parameters.modelArgument(panel.parameterNode) == str(custom)
    panel.onUseBundledModel()
    assert panel.parameterNode.modelFolder == marker


@pytest.mark.parametrize("name, chosen", [("steps", 7), ("samples", 1)])
def test_the_panel_leaves_sampling_steps_and_samples_to_the_model_unless_set(module, name, chosen):
    """The panel used to send 20 steps and 1 sample whatever the model's measured defaults (10 steps, the mean of 4
    samples for the bundled model); both spin boxes now start at "model's default" (0), which reaches the worker as
    no choice, so the panel gets what the command line gets, and a number set there is still sent as it is."""
    parameters = module.widgets.parameters
    assert getattr(parameters.DiffuX2CTParameterNode, name) == 0
    panel, _ = _panel(module, [], _Recorder())
    p = panel.parameterNode
    setattr(p, name, 0)
    assert parameters.jobOptions(p)[name] is None
    setattr(p, name, chosen)
    assert parameters.jobOptions(p)[name] == chosen
    ui = (Path(module.__file__).parent / "Resources" / "UI" / "DiffuX2CT.ui").read_text(encoding="utf-8")
    spin = ui[ui.index(f'name="{name}SpinBox"') :].split("</widget>")[0]
    assert "<string>model's default</string>" in spin and "<number>0</number>" in spin


class _CancellableJob:
    """A job the way the panel sees it: cancel() only asks; the state says when it really ended."""

    def __init__(self):
        self.state, self.cancels = "running", 0

    def cancel(self):
        self.cancels += 1
        self.state = "cancelling"

    def poll(self):
        return types.SimpleNamespace(state=self.state, total=0, step=0, eta_s=None, message="")


def test_cancel_does_not_wait_the_timer_polls_until_the_job_stopped(module):
    """Issue 32 point 6: Cancel (also on scene close) returns at once; the panel shows it and keeps polling."""
    panel, logic = _panel(module, [{"missing": [], "cuda": False}], _Recorder())
    job = _CancellableJob()
    logic.start = lambda parameters: job
    panel.onReconstruct()
    panel.onPoll()  # the probe passes: the job starts
    assert panel.phase == module.widgets.panel.Phase.RUNNING
    panel.onCancel()
    assert job.cancels == 1 and panel.phase == module.widgets.panel.Phase.CANCELLING and panel._timer.running
    assert not panel.ui.cancelButton.enabled and not panel.ui.reconstructButton.enabled
    assert "Cancelling" in panel.ui.statusLabel.text
    panel.onPoll()  # still stopping
    assert panel.phase == module.widgets.panel.Phase.CANCELLING
    job.state = "cancelled"
    panel.onPoll()
    assert panel.phase == module.widgets.panel.Phase.IDLE and not panel._timer.running
    assert panel.ui.statusLabel.text == "Cancelled." and panel.ui.reconstructButton.enabled


# -- messages ----------------------------------------------------------------------------------------------------
class _ScriptedJob:
    """A job that reports the given statuses one poll after another (the last one stays)."""

    def __init__(self, statuses, result=None, note=""):
        self.statuses, self.result, self.note = list(statuses), result, note
        self.elapsed_s = 12.34

    def poll(self):
        return self.statuses.pop(0) if len(self.statuses) > 1 else self.statuses[0]

    def cancel(self):
        pass


def _status(state, message="", step=0, total=0, eta_s=None, error_kind=None, details=""):
    return types.SimpleNamespace(
        state=state, message=message, step=step, total=total, eta_s=eta_s, error_kind=error_kind, details=details
    )


def _run(module, job, errors=None):
    panel, logic = _panel(module, [{"missing": [], "cuda": False}], _Recorder())
    logic.start = lambda parameters: job
    if errors is not None:
        panel.errorDisplay = lambda text, details: errors.append((text, details))
    panel.onReconstruct()
    panel.onPoll()  # the check passes: the job starts
    return panel


def test_a_failure_is_shown_in_an_error_dialog_with_its_details(module):
    """Issue 32 point 9: a failure was only a red status line."""
    errors = []
    failed = _status("failed", "the reconstruction process ended unexpectedly", error_kind="internal", details="tail")
    panel = _run(module, _ScriptedJob([_status("running", "starting"), failed]), errors)
    panel.onPoll()
    panel.onPoll()
    assert errors == [("Reconstruction failed: the reconstruction process ended unexpectedly", "tail")]
    assert panel.ui.statusLabel.text == errors[0][0] and panel.ui.statusLabel.sheet
    assert panel.phase == module.widgets.panel.Phase.IDLE


def test_the_research_use_notice_stays_visible():
    """The status line held the notice, and the first status message replaced it."""
    import xml.etree.ElementTree as ET

    tree = ET.parse(MODULE_DIR / "Resources" / "UI" / "DiffuX2CT.ui")
    texts = {
        w.get("name"): (w.findtext("property[@name='text']/string") or "") for w in tree.iter("widget") if w.get("name")
    }
    assert "Research use only, not for diagnosis" in texts["noticeLabel"] and texts["statusLabel"] == ""
    for path in (MODULE_DIR / "DiffuX2CTWidgets").glob("*.py"):
        assert "noticeLabel" not in path.read_text(encoding="utf-8"), path  # nothing writes over it


def test_status_messages_go_through_slicers_translation(module, monkeypatch):
    """What the panel says about a run is translatable, not the engine's English passed through."""
    monkeypatch.setattr(module.widgets.panel, "_", lambda text: "«" + text + "»")
    result = types.SimpleNamespace(agreement={"ap": 0.91, "lateral": 0.88}, low_agreement_views=["lateral"], warning="")
    statuses = [
        _status("running", "loading model"),
        _status("running", "step 3 of 20", step=3, total=20, eta_s=5.0),
        _status("done", "done in 12.3 s; re-projection NCC ap 0.91, lateral 0.88"),
    ]
    panel = _run(module, _ScriptedJob(statuses, result))
    seen = []
    for _ in statuses:
        panel.onPoll()
        seen.append(panel.ui.statusLabel.text)
    assert all(text.startswith("«") for text in seen), seen
    assert "12.3" in seen[-1] and "0.91" in seen[-1] and "lateral" in seen[-1]


# -- metadata ----------------------------------------------------------------------------------------------------
class _App(types.SimpleNamespace):
    """slicer.app's signal connections, counted."""

    def connect(self, signal, slot):
        self.connections.setdefault(signal, []).append(slot)

    def disconnect(self, signal, slot):
        self.connections[signal].remove(slot)


def _module_metadata(module, monkeypatch):
    app = _App(applicationLogic=slicer.app.applicationLogic, connections={})
    monkeypatch.setattr(slicer, "app", app)
    parent = types.SimpleNamespace()
    instance = module.DiffuX2CT.__new__(module.DiffuX2CT)
    instance.parent = parent
    module.DiffuX2CT.__init__(instance, parent)
    return parent, app


def test_module_metadata_names_the_contributors_and_links_the_documentation(module, monkeypatch):
    """Issue 32 point 10: a placeholder contributor line and no link to the documentation."""
    parent, _ = _module_metadata(module, monkeypatch)
    cmake = (MODULE_DIR.parent / "CMakeLists.txt").read_text(encoding="utf-8")
    contributors = re.search(r'set\(EXTENSION_CONTRIBUTORS "([^"]+)"\)', cmake).group(1)
    assert parent.contributors == [contributors] == ["DiffuX2CT contributors (open source, Apache-2.0)"]
    homepage = re.search(r'set\(EXTENSION_HOMEPAGE "([^"#]+)', cmake).group(1)
    assert f'href="{homepage}/blob/main/docs/slicer.md"' in parent.helpText


def test_quitting_ends_the_worker_once_however_often_the_module_reloads(module, monkeypatch):
    """Each reload connected another aboutToQuit slot (to a logic that was already shut down)."""
    _, app = _module_metadata(module, monkeypatch)
    shared = module.widgets.shared
    for _reload in range(3):
        shared.sharedSceneLogic()
        shared.endSharedSceneLogic()  # what a reload does
    shared.sharedSceneLogic()
    assert len(app.connections["aboutToQuit()"]) == 1
