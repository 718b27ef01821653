"""DiffuX2CT scripted module: the module, its panel's wiring, a thin logic and the self-test.

The work lives elsewhere: the panel's behaviour, parameters, installation and DICOM tags in ``DiffuX2CTWidgets``
(Slicer-side), the MRML work in ``DiffuX2CTLib.app.scene.SceneLogic``, and the model in a persistent background
process (``DiffuX2CTLib.app.worker --serve``), so Slicer's own process never imports torch.
"""

import importlib
import sys
import unittest

import slicer
import vtk
from slicer.ScriptedLoadableModule import (
    ScriptedLoadableModule,
    ScriptedLoadableModuleLogic,
    ScriptedLoadableModuleTest,
    ScriptedLoadableModuleWidget,
)
from slicer.util import VTKObservationMixin

from DiffuX2CTLib.app.scene import JobState
from DiffuX2CTWidgets.i18n import _, translate
from DiffuX2CTWidgets.panel import ReconstructionPanel
from DiffuX2CTWidgets.parameters import DiffuX2CTParameterNode, connectGui, jobOptions, modelArgument
from DiffuX2CTWidgets.sampledata import loadSamplePair, registerSampleData
from DiffuX2CTWidgets.shared import endSharedSceneLogic, sharedSceneLogic

RELOADED_PACKAGES = ("DiffuX2CTLib", "DiffuX2CTWidgets")
DOCUMENTATION_URL = "https://github.com/diffux2ct/SlicerDiffuX2CT/blob/main/docs/slicer.md"  # in EXTENSION_HOMEPAGE


class DiffuX2CT(ScriptedLoadableModule):
    """Module metadata shown in Slicer's module list and help panel."""

    def __init__(self, parent):
        ScriptedLoadableModule.__init__(self, parent)
        self.parent.title = _("DiffuX2CT")
        self.parent.categories = [translate("qSlicerAbstractCoreModule", "Reconstruction")]
        self.parent.dependencies = []
        self.parent.contributors = ["DiffuX2CT contributors (open source, Apache-2.0)"]
        self.parent.helpText = _(
            "Reconstructs a 3D CT volume from a frontal and a lateral radiograph with a 3D conditional diffusion "
            "model (DiffuX2CT, Liu et al. 2024). Research use only: the output is a plausible volume consistent "
            "with the two views, not a measurement, and must not be used for diagnosis. "
            'See the <a href="{url}">module documentation</a>.'
        ).format(url=DOCUMENTATION_URL)
        self.parent.acknowledgementText = _(
            "Method: Liu et al., DiffuX2CT: Diffusion Learning to Reconstruct CT Images from Biplanar X-Rays, 2024."
        )
        slicer.app.connect("startupCompleted()", registerSampleData)


class DiffuX2CTWidget(ScriptedLoadableModuleWidget, VTKObservationMixin):
    """Loads the .ui panel and connects it to the parameter node and to ReconstructionPanel."""

    def __init__(self, parent=None):
        ScriptedLoadableModuleWidget.__init__(self, parent)
        VTKObservationMixin.__init__(self)
        self.logic = self.ui = self.panel = None
        self._parameterNode = self._parameterNodeGuiTag = None
        self._untaggedNodes = set()  # nodes connected without a tag (see connectGui): never connected twice

    def setup(self):
        ScriptedLoadableModuleWidget.setup(self)
        widget = slicer.util.loadUI(self.resourcePath("UI/DiffuX2CT.ui"))
        self.layout.addWidget(widget)
        self.ui = slicer.util.childWidgetVariables(widget)
        widget.setMRMLScene(slicer.mrmlScene)
        self.logic = DiffuX2CTLogic()
        self.panel = ReconstructionPanel(self.ui, self.logic)
        self.panel.connectButtons()
        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.StartCloseEvent, self.onSceneStartClose)
        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.EndCloseEvent, self.onSceneEndClose)
        self.initializeParameterNode()

    def cleanup(self):
        if self.panel is not None:
            self.panel.cleanup()
        self.removeObservers()

    def onReload(self):
        """Reload with fresh DiffuX2CTLib and DiffuX2CTWidgets; the worker, which runs the old code, ends."""
        self.cleanup()
        endSharedSceneLogic()
        for name in sorted(sys.modules, reverse=True):
            if name.split(".")[0] in RELOADED_PACKAGES:
                del sys.modules[name]
        importlib.invalidate_caches()
        ScriptedLoadableModuleWidget.onReload(self)

    def enter(self):
        self.initializeParameterNode()
        self.panel.warmUp()

    def exit(self):
        self.setParameterNode(None)

    def onSceneStartClose(self, caller, event):
        self.panel.onCancel()  # results must not arrive in a scene that is being closed
        self.setParameterNode(None)

    def onSceneEndClose(self, caller, event):
        if self.parent.isEntered:
            self.initializeParameterNode()

    def initializeParameterNode(self):
        self.setParameterNode(self.logic.getParameterNode())

    def setParameterNode(self, parameterNode):
        if self._parameterNode:
            if self._parameterNodeGuiTag is not None:
                self._parameterNode.disconnectGui(self._parameterNodeGuiTag)
            self.removeObserver(self._parameterNode, vtk.vtkCommand.ModifiedEvent, self.onParameterChanged)
        self._parameterNode, self._parameterNodeGuiTag = parameterNode, None
        if parameterNode:
            if parameterNode.parameterNode not in self._untaggedNodes:
                self._parameterNodeGuiTag = connectGui(parameterNode, self.ui)
                if self._parameterNodeGuiTag is None:
                    self._untaggedNodes.add(parameterNode.parameterNode)
            self.addObserver(parameterNode, vtk.vtkCommand.ModifiedEvent, self.onParameterChanged)
        self.panel.setParameterNode(parameterNode)

    def onParameterChanged(self, caller=None, event=None):
        self.panel.refresh()


class DiffuX2CTLogic(ScriptedLoadableModuleLogic):
    """What the panel and the console call; the MRML work is in DiffuX2CTLib.app.scene.SceneLogic."""

    def __init__(self):
        ScriptedLoadableModuleLogic.__init__(self)
        self.sceneLogic = sharedSceneLogic()

    def getParameterNode(self):
        return DiffuX2CTParameterNode(super().getParameterNode())

    def start(self, p):
        """Start a background reconstruction with the panel's parameters ``p``; returns the job to poll."""
        return self.sceneLogic.start(p.apVolume, p.lateralVolume, **jobOptions(p))

    def preload(self, p):
        """Start the background process and load the panel's model on its device, before the first job."""
        self.sceneLogic.preload(modelArgument(p), p.device)

    def reconstruct(self, apNode, lateralNode, **options):
        """Blocking reconstruction for the console (on the warm worker); options: see SceneLogic.start."""
        return self.sceneLogic.reconstruct(apNode, lateralNode, **options)


class DiffuX2CTTest(ScriptedLoadableModuleTest):
    """Self-test (CTest runs each test_* method): the sample pair through a fast reconstruction, then a cancel.
    Each test is skipped, with the reason, where the background process's Python lacks what it needs."""

    lacking = None  # what the background process's Python lacks, asked once

    def setUp(self):
        if DiffuX2CTTest.lacking is None:
            report = sharedSceneLogic().probe()
            DiffuX2CTTest.lacking = report["missing"] + [item["name"] for item in report.get("outdated", [])]
        if DiffuX2CTTest.lacking:
            why = _("the background process's Python lacks {names}; install them from the module's panel")
            self.skipTest(why.format(names=", ".join(DiffuX2CTTest.lacking)))
        slicer.mrmlScene.Clear()

    def runTest(self):  # Slicer's "Reload and Test": the same tests; a skip is shown, not raised
        for test in (self.test_reconstruct_sample_pair, self.test_cancel_leaves_scene_unchanged):
            try:
                self.setUp()
            except unittest.SkipTest as skipped:
                self.delayDisplay(_("Skipped: {reason}.").format(reason=skipped))
                return
            test()

    def test_reconstruct_sample_pair(self):
        ap, lateral = loadSamplePair()
        ct = DiffuX2CTLogic().reconstruct(ap, lateral, steps=5, seed=1)
        self.assertEqual(ct.GetImageData().GetDimensions(), (64, 64, 64))
        self.assertEqual(ct.GetAttribute("DiffuX2CT.steps"), "5")
        segmentation = ct.GetNodeReference("DiffuX2CT.boneSegmentation")
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
        while not job.finished:
            slicer.app.processEvents()
            job.poll()
        self.assertEqual(job.status.state, JobState.CANCELLED)
        self.assertEqual(slicer.mrmlScene.GetNumberOfNodes(), before)
        self.delayDisplay("Cancel passed")
