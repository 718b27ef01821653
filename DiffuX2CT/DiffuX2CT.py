"""DiffuX2CT scripted module: the Slicer panel. It stays thin: the work lives in DiffuX2CTLib.

This first version registers the module and shows the radiograph selectors; the background reconstruction,
its progress and the results in the scene arrive with the Slicer-module work (see the README).
"""

import slicer
from slicer.ScriptedLoadableModule import ScriptedLoadableModule, ScriptedLoadableModuleWidget
from slicer.util import VTKObservationMixin


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


class DiffuX2CTWidget(ScriptedLoadableModuleWidget, VTKObservationMixin):
    """The panel: loads the .ui file and binds it to the scene."""

    def __init__(self, parent=None):
        ScriptedLoadableModuleWidget.__init__(self, parent)
        VTKObservationMixin.__init__(self)
        self.ui = None

    def setup(self):
        ScriptedLoadableModuleWidget.setup(self)
        panel = slicer.util.loadUI(self.resourcePath("UI/DiffuX2CT.ui"))
        self.layout.addWidget(panel)
        self.ui = slicer.util.childWidgetVariables(panel)
        panel.setMRMLScene(slicer.mrmlScene)

    def cleanup(self):
        self.removeObservers()
