"""A Slicer scene without the Slicer application: what the app wires at start-up, done with ``slicer-core``,
off-screen pictures of its 3D view and slice views, and stand-ins for the Qt-based parts of Slicer so the module
file (DiffuX2CT/DiffuX2CT.py) and its DiffuX2CTWidgets load on that scene.

Run as a script to make the extension's screenshot from the bundled sample pair:
``PYTHONPATH=. python Testing/slicer_scene.py Resources/Screenshots/DiffuX2CT.png [--steps N]``
"""

from __future__ import annotations

import importlib.util
import sys
import types
import unittest
from pathlib import Path

import slicer
import vtk

SAMPLE_DATA = Path(__file__).resolve().parent.parent / "Resources" / "SampleData"
MODULE_DIR = Path(__file__).resolve().parent.parent / "DiffuX2CT"
MODULE_FILE = MODULE_DIR / "DiffuX2CT.py"
SLICE_VIEWS = (("Red", "Axial"), ("Green", "Coronal"), ("Yellow", "Sagittal"))
THREE_D_MANAGERS = (
    "vtkMRMLCameraDisplayableManager",
    "vtkMRMLViewDisplayableManager",
    "vtkMRMLModelDisplayableManager",
    "vtkMRMLVolumeRenderingDisplayableManager",
    "vtkMRMLSegmentationsDisplayableManager3D",
)


class CoreApp:
    """A scene, Slicer's application logic, default colours, three slice views and the module logics DiffuX2CT
    uses. The logics are kept referenced here: the application logic does not own them."""

    def __init__(self) -> None:
        self.scene = slicer.vtkMRMLScene()
        self.app_logic = slicer.vtkSlicerApplicationLogic()
        self.app_logic.SetMRMLScene(self.scene)
        self.app_logic.GetColorLogic().SetMRMLScene(self.scene)
        self.app_logic.GetColorLogic().AddDefaultColorNodes()
        self.app_logic.SetSliceLogics(vtk.vtkCollection())
        self.app_logic.SetViewLogics(vtk.vtkCollection())
        self.logics = {
            "VolumeRendering": slicer.vtkSlicerVolumeRenderingLogic(),
            "Segmentations": slicer.vtkSlicerSegmentationsModuleLogic(),
            "Volumes": slicer.vtkSlicerVolumesLogic(),
        }
        for name, logic in self.logics.items():
            logic.SetMRMLScene(self.scene)
            logic.SetMRMLApplicationLogic(self.app_logic)
            self.app_logic.SetModuleLogic(name, logic)
        slicer.vtkMRMLSliceNode.AddDefaultSliceOrientationPresets(self.scene, True)
        self.slice_logics = []
        for layout_name, orientation in SLICE_VIEWS:
            slice_node = self.scene.CreateNodeByClass("vtkMRMLSliceNode")
            slice_node.SetName(layout_name)
            slice_node.SetLayoutName(layout_name)
            slice_node.SetDefaultOrientation(orientation)
            slice_node.SetOrientation(orientation)
            self.scene.AddNode(slice_node)
            slice_logic = slicer.vtkMRMLSliceLogic()
            slice_logic.SetMRMLApplicationLogic(self.app_logic)
            slice_logic.SetMRMLScene(self.scene)
            slice_logic.SetSliceNode(slice_node)
            self.app_logic.GetSliceLogics().AddItem(slice_logic)
            self.slice_logics.append(slice_logic)

    def load_volume(self, path: Path, name: str):
        """Read a volume file into a new node of the scene (what drag and drop does in Slicer)."""
        node = slicer.vtkMRMLScalarVolumeNode()
        node.SetName(name)
        storage = slicer.vtkMRMLVolumeArchetypeStorageNode()
        storage.SetFileName(str(path))
        assert storage.ReadData(node), path
        self.scene.AddNode(node)
        node.CreateDefaultDisplayNodes()
        hierarchy = slicer.vtkMRMLSubjectHierarchyNode.GetSubjectHierarchyNode(self.scene)
        hierarchy.CreateItem(hierarchy.GetSceneItemID(), node)  # in Slicer, its subject hierarchy plugins do this
        return node

    def node_ids(self) -> list[str]:
        """IDs of every node in the scene, to check that a failed run changed nothing."""
        nodes = self.scene.GetNodes()
        return sorted(nodes.GetItemAsObject(i).GetID() for i in range(nodes.GetNumberOfItems()))

    def render_3d(self, size: int) -> vtk.vtkImageData:
        """RGB picture of a Slicer 3D view (volume rendering and segmentation displayable managers) of the scene."""
        window = vtk.vtkRenderWindow()
        window.SetOffScreenRendering(1)
        window.SetSize(size, size)
        renderer = vtk.vtkRenderer()
        window.AddRenderer(renderer)
        interactor = vtk.vtkRenderWindowInteractor()  # the camera displayable manager needs one
        interactor.SetRenderWindow(window)
        view_node = self.scene.CreateNodeByClass("vtkMRMLViewNode")
        view_node.SetLayoutName("1")
        self.scene.AddNode(view_node)
        factory = slicer.vtkMRMLThreeDViewDisplayableManagerFactory.GetInstance()
        factory.SetMRMLApplicationLogic(self.app_logic)
        for name in THREE_D_MANAGERS:
            if not factory.IsDisplayableManagerRegistered(name):
                factory.RegisterDisplayableManager(name)
        managers = slicer.vtkMRMLDisplayableManagerGroup()
        managers.SetRenderer(renderer)
        managers.Initialize(factory, renderer)
        managers.SetMRMLDisplayableNode(view_node)
        renderer.ResetCamera()
        renderer.GetActiveCamera().Azimuth(30)
        renderer.GetActiveCamera().Elevation(15)
        window.Render()
        grab = vtk.vtkWindowToImageFilter()
        grab.SetInput(window)
        grab.SetInputBufferTypeToRGB()
        grab.Update()
        picture = vtk.vtkImageData()
        picture.DeepCopy(grab.GetOutput())
        window.Finalize()
        self.scene.RemoveNode(view_node)
        return picture

    def render_slices(self, size: int) -> list[vtk.vtkImageData]:
        """RGB pictures of the axial, coronal and sagittal slice views, fitted to their background volume."""
        pictures = []
        for slice_logic in self.slice_logics:
            slice_logic.GetSliceNode().SetDimensions(size, size, 1)
            slice_logic.FitSliceToAll()
            producer = slice_logic.GetImageDataConnection().GetProducer()
            producer.Update()
            rgb = vtk.vtkImageExtractComponents()
            rgb.SetInputData(producer.GetOutputDataObject(0))
            rgb.SetComponents(0, 1, 2)
            rgb.Update()
            pictures.append(rgb.GetOutput())
        return pictures

    def screenshot(self, path: Path, size: int = 384) -> Path:
        """The 3D view and the three slice views side by side, written as a PNG."""
        row = vtk.vtkImageAppend()
        row.SetAppendAxis(0)
        for picture in [self.render_3d(size), *self.render_slices(size)]:
            row.AddInputData(picture)
        writer = vtk.vtkPNGWriter()
        writer.SetFileName(str(path))
        writer.SetInputConnection(row.GetOutputPort())
        writer.Write()
        return path


# -- the module file outside the Slicer application ----------------------------------------------------------------
class StandIn:
    """Accepts any arguments and does nothing (ScriptedLoadableModule and friends, parameter validators)."""

    def __init__(self, *args, **kwargs):
        pass


class Timer:
    """qt.QTimer stand-in: records whether it runs; ticks only when a test calls the connected slot."""

    def __init__(self) -> None:
        self.running = False
        self.slot = None

    def setInterval(self, ms):  # Qt's API name
        pass

    def connect(self, signal, slot):
        self.slot = slot

    def start(self):
        self.running = True

    def stop(self):
        self.running = False


class ModuleTestStandIn(unittest.TestCase):
    """Slicer's ScriptedLoadableModuleTest is a unittest.TestCase whose ``delayDisplay`` shows a message; here the
    messages are collected in ``shown``."""

    shown: list[str] = []

    def delayDisplay(self, message, *args, **kwargs):  # Slicer's API name
        self.shown.append(message)


def _ours(name: str) -> bool:
    return name.split(".")[0] in ("DiffuX2CTWidgets", "DiffuX2CT")


def install_module_stand_ins(monkeypatch, app: CoreApp) -> None:
    """Put stand-ins for qt, slicer.ScriptedLoadableModule and slicer.parameterNodeWrapper in place, point
    ``slicer.mrmlScene`` and ``slicer.app`` at ``app``, and make ``import DiffuX2CT`` load the module file fresh
    (as ``slicer.testing.runUnitTest`` imports it). ``monkeypatch`` (pytest's) undoes all of it."""
    qt = types.ModuleType("qt")
    qt.QTimer = Timer
    scripted = types.ModuleType("slicer.ScriptedLoadableModule")
    for name in ("ScriptedLoadableModule", "ScriptedLoadableModuleLogic", "ScriptedLoadableModuleWidget"):
        setattr(scripted, name, type(name, (StandIn,), {}))
    scripted.ScriptedLoadableModuleTest = type("ScriptedLoadableModuleTest", (ModuleTestStandIn,), {"shown": []})
    wrapper = types.ModuleType("slicer.parameterNodeWrapper")
    wrapper.parameterNodeWrapper = lambda cls: cls
    wrapper.Choice = wrapper.WithinRange = StandIn
    monkeypatch.setitem(sys.modules, "qt", qt)
    monkeypatch.setitem(sys.modules, "slicer.ScriptedLoadableModule", scripted)
    monkeypatch.setitem(sys.modules, "slicer.parameterNodeWrapper", wrapper)
    monkeypatch.setattr(slicer, "app", types.SimpleNamespace(applicationLogic=lambda: app.app_logic), raising=False)
    monkeypatch.setattr(slicer, "mrmlScene", app.scene, raising=False)
    monkeypatch.syspath_prepend(str(MODULE_DIR))
    forget_module()


def forget_module() -> None:
    """Drop the module file and DiffuX2CTWidgets from ``sys.modules`` (the next import loads them fresh)."""
    for name in [n for n in sys.modules if _ours(n)]:
        del sys.modules[name]


def load_module(monkeypatch, app: CoreApp) -> types.ModuleType:
    """The module file loaded with :func:`install_module_stand_ins`; ``.app`` is ``app`` and ``.widgets`` holds the
    DiffuX2CTWidgets modules it imported (``module.widgets.panel``, ...). Call :func:`unload_module` after."""
    install_module_stand_ins(monkeypatch, app)
    spec = importlib.util.spec_from_file_location("DiffuX2CT_module_under_test", MODULE_FILE)
    loaded = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(loaded)
    loaded.app = app
    names = [n for n in sys.modules if n.startswith("DiffuX2CTWidgets.")]
    loaded.widgets = types.SimpleNamespace(**{n.split(".")[-1]: sys.modules[n] for n in names})
    return loaded


def unload_module(loaded: types.ModuleType) -> None:
    """End the module's shared worker and forget the module's files."""
    loaded.endSharedSceneLogic()
    forget_module()


def main(argv: list[str]) -> None:
    """Reconstruct the sample pair (default steps, or ``--steps N``) and save the screenshot to ``argv[0]``."""
    from DiffuX2CTLib.app.scene import SceneLogic

    options = {"steps": int(argv[2])} if argv[1:2] == ["--steps"] else {}
    app = CoreApp()
    ap = app.load_volume(SAMPLE_DATA / "ap.nrrd", "AP")
    lateral = app.load_volume(SAMPLE_DATA / "lateral.nrrd", "Lateral")
    result = SceneLogic(app.scene, app.app_logic).start(ap, lateral, name="DiffuX2CT", **options).wait()
    Path(argv[0]).parent.mkdir(parents=True, exist_ok=True)
    print(app.screenshot(Path(argv[0])), result.agreement)


if __name__ == "__main__":
    main(sys.argv[1:])
