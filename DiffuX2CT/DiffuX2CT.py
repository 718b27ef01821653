"""DiffuX2CT scripted module: the Slicer panel, a thin logic and the self-test.

The panel never runs the model itself: DiffuX2CTLib.app.scene.SceneLogic writes the radiographs to a private folder
and starts DiffuX2CTLib.app.worker in a background process (Slicer's Python, with torch), which this widget polls
with a timer, so the GUI stays responsive, shows progress and can cancel.
"""

import shutil
import sys
from pathlib import Path
from typing import Annotated

import qt
import slicer
import vtk
from slicer import vtkMRMLScalarVolumeNode
from slicer.parameterNodeWrapper import Choice, WithinRange, parameterNodeWrapper
from slicer.ScriptedLoadableModule import (
    ScriptedLoadableModule,
    ScriptedLoadableModuleLogic,
    ScriptedLoadableModuleTest,
    ScriptedLoadableModuleWidget,
)
from slicer.util import VTKObservationMixin

from DiffuX2CTLib.app.scene import JobState, SceneLogic
from DiffuX2CTLib.errors import InputError
from DiffuX2CTLib.job import Acquisition
from DiffuX2CTLib.modelcard import (
    BUNDLED_MODEL_DIR,
    read_model_card,
    summarize_model_card,
)

SAMPLE_DIR = BUNDLED_MODEL_DIR.parent.parent / "SampleData"
# pip names of what the worker needs beyond Slicer's own Python; torch comes from the PyTorch extension when present.
PIP_REQUIREMENTS = {"monai": "monai>=1.4", "safetensors": "safetensors>=0.4", "numpy": "numpy", "SimpleITK": "SimpleITK"}
POLL_INTERVAL_MS = 200
DICOM_TAGS = {
    "pixel_spacing": ("0018,1164", "0028,0030"),  # ImagerPixelSpacing, else PixelSpacing
    "source_to_detector": ("0018,1110",),  # DistanceSourceToDetector
    "source_to_patient": ("0018,1111",),  # DistanceSourceToPatient
    "view_position": ("0018,5101",),  # ViewPosition
    "photometric": ("0028,0004",),  # PhotometricInterpretation
}


class DiffuX2CT(ScriptedLoadableModule):
    """Module metadata shown in Slicer's module list and help panel."""

    def __init__(self, parent):
        ScriptedLoadableModule.__init__(self, parent)
        self.parent.title = "DiffuX2CT"
        self.parent.categories = ["Reconstruction"]
        self.parent.dependencies = []
        self.parent.contributors = ["DiffuX2CT developers"]
        self.parent.helpText = (
            "Reconstructs a 3D CT volume from a frontal and a lateral radiograph with a 3D conditional diffusion "
            "model (DiffuX2CT, Liu et al. 2024). Research use only: the output is a plausible volume consistent "
            "with the two views, not a measurement, and must not be used for diagnosis."
        )
        self.parent.acknowledgementText = (
            "Method: Liu et al., DiffuX2CT: Diffusion Learning to Reconstruct CT Images from Biplanar X-Rays, 2024."
        )
        slicer.app.connect("startupCompleted()", registerSampleData)


def loadSamplePair(source=None):
    """Load the bundled sample radiographs (a held-out phantom) as "DiffuX2CT AP" and "DiffuX2CT lateral"."""
    return [slicer.util.loadVolume(str(SAMPLE_DIR / f"{view}.nrrd"), {"name": f"DiffuX2CT {view}"}) for view in ("ap", "lateral")]


def registerSampleData():
    """Offer the sample radiograph pair in the Sample Data module: it ships with the extension, nothing is
    downloaded."""
    import SampleData

    views = ("ap", "lateral")
    SampleData.SampleDataLogic.registerCustomSampleDataSource(
        category="DiffuX2CT",
        sampleName="DiffuX2CT biplanar radiographs",
        uris=[(SAMPLE_DIR / f"{view}.nrrd").as_uri() for view in views],
        fileNames=[f"DiffuX2CT-{view}.nrrd" for view in views],
        nodeNames=[f"DiffuX2CT {view}" for view in views],
        thumbnailFileName=str(Path(__file__).parent / "Resources" / "Icons" / "DiffuX2CT.png"),
        customDownloader=loadSamplePair,
    )


@parameterNodeWrapper
class DiffuX2CTParameterNode:
    """The panel's state, saved with the scene."""

    apVolume: vtkMRMLScalarVolumeNode
    lateralVolume: vtkMRMLScalarVolumeNode
    outputVolume: vtkMRMLScalarVolumeNode
    modelFolder: Path = BUNDLED_MODEL_DIR
    device: Annotated[str, Choice(["auto", "cuda", "cpu"])] = "auto"
    steps: Annotated[int, WithinRange(1, 1000)] = 20
    seed: Annotated[int, WithinRange(0, 2147483647)] = 0
    samples: Annotated[int, WithinRange(1, 16)] = 1
    checkInputs: bool = True
    sourceToDetectorMm: Annotated[float, WithinRange(100.0, 5000.0)] = 1200.0
    sourceToIsocenterMm: Annotated[float, WithinRange(50.0, 5000.0)] = 1000.0
    apPixelSpacingMm: Annotated[float, WithinRange(0.0, 10.0)] = 0.0  # 0: the volume's own spacing
    lateralPixelSpacingMm: Annotated[float, WithinRange(0.0, 10.0)] = 0.0


class DiffuX2CTWidget(ScriptedLoadableModuleWidget, VTKObservationMixin):
    """The panel: inputs, geometry, model, options, Reconstruct/Cancel with progress, status."""

    def __init__(self, parent=None):
        ScriptedLoadableModuleWidget.__init__(self, parent)
        VTKObservationMixin.__init__(self)
        self.logic = None
        self.ui = None
        self._parameterNode = None
        self._parameterNodeGuiTag = None
        self._job = None
        self._geometryNodes = None
        self._summarisedModel = None
        self._timer = qt.QTimer()
        self._timer.setInterval(POLL_INTERVAL_MS)
        self._timer.connect("timeout()", self.onPoll)

    def setup(self):
        ScriptedLoadableModuleWidget.setup(self)
        panel = slicer.util.loadUI(self.resourcePath("UI/DiffuX2CT.ui"))
        self.layout.addWidget(panel)
        self.ui = slicer.util.childWidgetVariables(panel)
        panel.setMRMLScene(slicer.mrmlScene)
        self.logic = DiffuX2CTLogic()
        self.ui.progressBar.hide()
        self.ui.reconstructButton.connect("clicked(bool)", self.onReconstruct)
        self.ui.cancelButton.connect("clicked(bool)", self.onCancel)
        self.ui.swapViewsButton.connect("clicked(bool)", self.onSwapViews)
        self.ui.bundledModelButton.connect("clicked(bool)", self.onUseBundledModel)
        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.StartCloseEvent, self.onSceneStartClose)
        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.EndCloseEvent, self.onSceneEndClose)
        self.initializeParameterNode()

    def cleanup(self):
        if self._job is not None:
            self._job.cancel()
        self._timer.stop()
        self.removeObservers()

    def enter(self):
        self.initializeParameterNode()

    def exit(self):
        self.setParameterNode(None)

    def onSceneStartClose(self, caller, event):
        self.onCancel()  # results must not arrive in a scene that is being closed
        self.setParameterNode(None)

    def onSceneEndClose(self, caller, event):
        if self.parent.isEntered:
            self.initializeParameterNode()

    def initializeParameterNode(self):
        self.setParameterNode(self.logic.getParameterNode())

    def setParameterNode(self, parameterNode):
        if self._parameterNode:
            self._parameterNode.disconnectGui(self._parameterNodeGuiTag)
            self.removeObserver(self._parameterNode, vtk.vtkCommand.ModifiedEvent, self.onParameterChanged)
        self._parameterNode = parameterNode
        if self._parameterNode:
            self._parameterNodeGuiTag = self._parameterNode.connectGui(self.ui)
            self.addObserver(self._parameterNode, vtk.vtkCommand.ModifiedEvent, self.onParameterChanged)
            self.onParameterChanged()

    def onParameterChanged(self, caller=None, event=None):
        """Keep the model card, the DICOM geometry and the button states in step with the parameters."""
        p = self._parameterNode
        if p is None:  # the module is not shown; enter() refreshes the panel
            return
        if p.modelFolder != self._summarisedModel:  # read the model card only when the folder changes
            self._summarisedModel = p.modelFolder
            self.ui.modelCardLabel.text = self.logic.modelSummary(p.modelFolder)
        if (p.apVolume, p.lateralVolume) != self._geometryNodes:  # filling the geometry modifies p: do it once
            self._geometryNodes = (p.apVolume, p.lateralVolume)
            self.ui.geometrySourceLabel.text = self.logic.fillGeometryFromDicom(p)
        running = self._job is not None
        ready = bool(p.apVolume and p.lateralVolume and p.apVolume != p.lateralVolume)
        self.ui.reconstructButton.enabled = ready and not running
        self.ui.reconstructButton.text = "Running..." if running else "Reconstruct"
        self.ui.reconstructButton.toolTip = "" if ready else "Select two different radiographs: a frontal and a lateral view."
        self.ui.cancelButton.enabled = running

    def onSwapViews(self):
        p = self._parameterNode
        p.apVolume, p.lateralVolume = p.lateralVolume, p.apVolume

    def onUseBundledModel(self):
        self._parameterNode.modelFolder = BUNDLED_MODEL_DIR

    def onReconstruct(self):
        if self._job is not None:
            return
        with slicer.util.tryWithErrorDisplay("DiffuX2CT could not start.", waitCursor=True):
            environment = self.logic.ensureDependencies()
            if environment is None:
                self.setStatus("Reconstruction needs torch and MONAI; installation was declined.")
                return
            self.ui.deviceInfoLabel.text = f"GPU: {environment['gpu_name']}" if environment.get("cuda") else "No CUDA GPU found: the CPU will be used."
            try:
                self._job = self.logic.start(self._parameterNode)
            except InputError as error:
                self.setStatus(str(error), error=True)
                return
        if self._job is None:
            return
        self.ui.progressBar.show()
        self.ui.progressBar.setRange(0, 0)
        self.setStatus("Starting the reconstruction process...")
        self.onParameterChanged()
        self._timer.start()

    def onPoll(self):
        """Timer tick: read the worker's progress; on the end show the outcome."""
        status = self._job.poll()
        if status.state == JobState.RUNNING:
            if status.total:
                self.ui.progressBar.setRange(0, status.total)
                self.ui.progressBar.value = status.step
            left = f", about {status.eta_s:.0f} s left" if status.eta_s else ""
            self.setStatus(f"Reconstructing: {status.message}{left}")
            return
        self._timer.stop()
        self._job = None
        self.ui.progressBar.hide()
        self.setStatus(status.message if status.state != JobState.FAILED else f"Failed: {status.message}", error=status.state == JobState.FAILED)
        self.onParameterChanged()

    def onCancel(self):
        if self._job is not None:
            self._job.cancel()
            self.onPoll()

    def setStatus(self, text, error=False):
        self.ui.statusLabel.text = text
        self.ui.statusLabel.setStyleSheet("color: #c0392b" if error else "")


_SCENE_LOGIC = []


def sharedSceneLogic():
    """The one SceneLogic of this Slicer session: the panel and the console share it, so only one reconstruction
    runs at a time."""
    if not _SCENE_LOGIC:
        python = shutil.which("PythonSlicer") or sys.executable
        _SCENE_LOGIC.append(SceneLogic(slicer.mrmlScene, slicer.app.applicationLogic(), python_executable=python))
    return _SCENE_LOGIC[0]


class DiffuX2CTLogic(ScriptedLoadableModuleLogic):
    """What the panel and the Python console call: parameters in, a background job out. The MRML work is in
    DiffuX2CTLib.app.scene.SceneLogic, which is used (and tested) the same way outside Slicer."""

    def __init__(self):
        ScriptedLoadableModuleLogic.__init__(self)
        self.sceneLogic = sharedSceneLogic()
        self._environment = None

    def getParameterNode(self):
        return DiffuX2CTParameterNode(super().getParameterNode())

    # -- dependencies ----------------------------------------------------------------------------------------
    def environment(self, refresh=False):
        """What the worker's Python has (missing packages, GPU name), probed in a subprocess once."""
        if self._environment is None or refresh:
            self._environment = self.sceneLogic.probe()
        return self._environment

    def ensureDependencies(self):
        """Install what the worker lacks, after the user agrees: torch through the PyTorch extension (right CUDA
        build) when it is installed, the rest with pip. Returns the environment, or None when declined."""
        missing = self.environment()["missing"]
        if not missing:
            return self._environment
        if not slicer.util.confirmOkCancelDisplay(
            "DiffuX2CT needs Python packages that are not installed yet. Installing them needs a network connection "
            "and may take several minutes. Install now?",
            "DiffuX2CT: install dependencies",
            detailedText="Missing: " + ", ".join(missing),
        ):
            return None
        if "torch" in missing:
            try:
                import PyTorchUtils

                if PyTorchUtils.PyTorchUtilsLogic().installTorch(askConfirmation=False) is None:
                    raise InputError("PyTorch could not be installed; install it from the PyTorch extension's module")
            except ModuleNotFoundError:
                slicer.util.pip_install("torch")
        rest = [PIP_REQUIREMENTS[name] for name in missing if name in PIP_REQUIREMENTS]
        if rest:
            slicer.util.pip_install(rest)
        environment = self.environment(refresh=True)
        if environment["missing"]:
            raise InputError("still missing after installation: " + ", ".join(environment["missing"]))
        return environment

    # -- model and geometry ----------------------------------------------------------------------------------
    @staticmethod
    def modelSummary(folder):
        """The model card summary shown under the model path, or why the folder is not a usable model."""
        try:
            return summarize_model_card(read_model_card(folder))
        except InputError as error:
            return f"Not a usable model: {error}"

    @staticmethod
    def dicomFile(node):
        """The DICOM file a radiograph node was loaded from through the DICOM module, or None."""
        uids = (node.GetAttribute("DICOM.instanceUIDs") or "").split() if node else []
        database = getattr(slicer, "dicomDatabase", None)
        if len(uids) != 1 or database is None:
            return None
        return database.fileForInstance(uids[0]) or None

    def dicomValues(self, node):
        """DICOM acquisition tags of a radiograph node loaded through the DICOM module (empty otherwise)."""
        path = self.dicomFile(node)
        if path is None:
            return {}
        database = slicer.dicomDatabase
        values = {}
        for key, tags in DICOM_TAGS.items():
            for tag in tags:
                value = database.fileValue(path, tag).strip()
                if value:
                    values[key] = value
                    break
        return values

    def fillGeometryFromDicom(self, parameterNode):
        """Copy distances and pixel spacing from the radiographs' DICOM tags into the parameters; returns a line
        saying where the geometry comes from."""
        filled = []
        for node, spacingName in ((parameterNode.apVolume, "apPixelSpacingMm"), (parameterNode.lateralVolume, "lateralPixelSpacingMm")):
            tags = self.dicomValues(node)
            if "pixel_spacing" in tags:
                setattr(parameterNode, spacingName, float(tags["pixel_spacing"].split("\\")[0]))
                filled.append(f"{node.GetName()} pixel spacing")
            if "source_to_detector" in tags and "source_to_patient" in tags:
                parameterNode.sourceToDetectorMm = float(tags["source_to_detector"])
                parameterNode.sourceToIsocenterMm = float(tags["source_to_patient"])
                filled.append(f"{node.GetName()} distances")
        if filled:
            return "From DICOM tags: " + ", ".join(filled) + ". Check them before running."
        return "No DICOM geometry tags: the model's default geometry is used; edit it to match your radiographs."

    def sourceFiles(self, parameterNode):
        """The radiographs' original DICOM files that exist on disk, by view: the worker reads these, so view
        position, patient orientation, field-of-view rotation and intensity relationship are all used."""
        files = {}
        for view, node in (("ap", parameterNode.apVolume), ("lateral", parameterNode.lateralVolume)):
            path = self.dicomFile(node)
            if path and Path(path).is_file():
                files[view] = path
        return files

    def acquisition(self, parameterNode):
        """What the panel says about each radiograph's acquisition, for the worker. A node read from its
        original DICOM file needs no inversion: the worker's reader presents MONOCHROME1 bone-bright."""
        sources = self.sourceFiles(parameterNode)
        acquisitions = {}
        for view, node, spacing in (("ap", parameterNode.apVolume, parameterNode.apPixelSpacingMm), ("lateral", parameterNode.lateralVolume, parameterNode.lateralPixelSpacingMm)):
            acquisitions[view] = Acquisition(
                source_to_detector_mm=parameterNode.sourceToDetectorMm,
                source_to_isocenter_mm=parameterNode.sourceToIsocenterMm,
                pixel_spacing_mm=(spacing, spacing) if spacing > 0 else None,
                bone_dark=view not in sources and self.dicomValues(node).get("photometric") == "MONOCHROME1",
            )
        return acquisitions

    # -- running ---------------------------------------------------------------------------------------------
    def start(self, parameterNode):
        """Start a background reconstruction with the panel's parameters; returns the job to poll."""
        p = parameterNode
        model = None if Path(p.modelFolder) == BUNDLED_MODEL_DIR else str(p.modelFolder)
        return self.sceneLogic.start(
            p.apVolume, p.lateralVolume, model=model, acquisition=self.acquisition(p), source_files=self.sourceFiles(p), output_node=p.outputVolume,
            steps=p.steps, seed=p.seed, samples=p.samples, device=p.device, check_inputs=p.checkInputs,
        )

    def reconstruct(self, apNode, lateralNode, **options):
        """Blocking reconstruction for the Python console; returns the CT volume node. ``options``: steps, seed,
        samples, device, method, model, acquisition, output_node, name (see DiffuX2CTLib.app.scene.SceneLogic)."""
        return self.sceneLogic.reconstruct(apNode, lateralNode, **options)


class DiffuX2CTTest(ScriptedLoadableModuleTest):
    """Self-test for Slicer's test runner: the sample pair through a fast reconstruction."""

    def setUp(self):
        slicer.mrmlScene.Clear()

    def runTest(self):
        self.setUp()
        self.test_reconstruct_sample_pair()
        self.setUp()
        self.test_cancel_leaves_scene_unchanged()

    def test_reconstruct_sample_pair(self):
        self.delayDisplay("Reconstructing the sample pair (5 steps)")
        ap, lateral = loadSamplePair()
        logic = DiffuX2CTLogic()
        ct = logic.reconstruct(ap, lateral, steps=5, seed=1)
        self.assertEqual(ct.GetImageData().GetDimensions(), (64, 64, 64))
        self.assertEqual(ct.GetAttribute("DiffuX2CT.steps"), "5")
        segmentation = ct.GetNodeReference("DiffuX2CT.boneSegmentation")
        self.assertIsNotNone(segmentation)
        self.assertEqual(segmentation.GetSegmentation().GetNumberOfSegments(), 1)
        self.assertGreater(float(ct.GetAttribute("DiffuX2CT.agreement_ap")), 0.5)
        self.delayDisplay("Reconstruction passed")

    def test_cancel_leaves_scene_unchanged(self):
        ap, lateral = loadSamplePair()
        before = slicer.mrmlScene.GetNumberOfNodes()
        job = DiffuX2CTLogic().sceneLogic.start(ap, lateral, steps=200)
        while job.poll().step < 1 and job.status.state == JobState.RUNNING:
            slicer.app.processEvents()
        job.cancel()
        self.assertEqual(job.status.state, JobState.CANCELLED)
        self.assertEqual(slicer.mrmlScene.GetNumberOfNodes(), before)
        self.delayDisplay("Cancel passed")
