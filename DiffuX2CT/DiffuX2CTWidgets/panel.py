"""What the panel does: Reconstruct checks the background process's Python (in the background), installs or
upgrades what it lacks after asking, then runs the job; Cancel asks the job to stop; a timer polls whichever of
those is under way, so Slicer never waits on the worker. While anything is under way Reconstruct is disabled and
a second click does nothing. Failures open Slicer's error dialog; texts go through Slicer's translation.
Export as DICOM writes the newest reconstruction (see ``export``)."""

from __future__ import annotations

import enum

import qt
import slicer

from DiffuX2CTLib.app.reconstruction_job import CANCELLED_FORCED, JobState
from DiffuX2CTLib.app.result_placement import ATTRIBUTE_PREFIX
from DiffuX2CTLib.core.errors import InputError
from DiffuX2CTLib.model.card import read_model_card, summarize_model_card

from .dicom import fillGeometryFromDicom
from .export import exportAsDicom
from .i18n import _
from .install import InstallLogic, RestartRequired
from .parameters import BUNDLED_MODEL, isBundledModel, modelFolderPath

POLL_INTERVAL_MS = 200
MODEL_ATTRIBUTE = ATTRIBUTE_PREFIX + "model"  # every reconstruction records its model


class Phase(str, enum.Enum):
    """What the panel is doing."""

    IDLE = "idle"
    CHECKING = "checking"  # the probe runs: which packages and GPU the worker's Python has
    INSTALLING = "installing"
    RUNNING = "running"
    CANCELLING = "cancelling"  # cancel was sent; the timer polls until the job says it ended


def modelSummary(folder) -> str:
    """The model card summary shown under the model path, or why the folder is not a usable model."""
    try:
        return summarize_model_card(read_model_card(folder))
    except InputError as error:
        return _("Not a usable model: {error}").format(error=error)


def progressText(status) -> str:
    """The running job's stage or step, in the user's language."""
    if status.message == "loading model":
        return _("loading the model")
    if status.total:
        return _("step {step} of {total}").format(step=status.step, total=status.total)
    return _("starting")


def doneText(job) -> str:
    """What a finished job says: time, agreement of the re-projections with the radiographs, and warnings."""
    result = job.result
    agreement = ", ".join(f"{view} {value:.2f}" for view, value in result.agreement.items())
    text = _("Done in {seconds:.1f} s; re-projection agreement (NCC): {agreement}.").format(
        seconds=job.elapsed_s, agreement=agreement
    )
    if result.low_agreement_views:
        text += " " + _("Warning: the {views} re-projection agrees poorly with the radiograph.").format(
            views=" and ".join(result.low_agreement_views)
        )
    if job.note:
        text += " " + _("Note: {note}.").format(note=job.note)
    if result.warning:
        text += " " + _("Note: {note}.").format(note=result.warning.lstrip("; "))
    return text


def lackingNames(report: dict) -> list[str]:
    """The packages a probe report says are missing or older than required."""
    return report["missing"] + [item["name"] for item in report.get("outdated", [])]


def inputProblem(p) -> str:
    """Why the panel's radiographs and output cannot be reconstructed as they are, or "" when they can."""
    if not (p.apVolume and p.lateralVolume) or p.apVolume is p.lateralVolume:
        return _("Select two different radiographs: a frontal and a lateral view.")
    if p.outputVolume is not None and (p.outputVolume is p.apVolume or p.outputVolume is p.lateralVolume):
        return _(
            "The output volume is one of the input radiographs; choose another output volume or 'Create new volume'."
        )
    return ""


class ReconstructionPanel:
    """The panel's behaviour on top of its widgets (``ui``, from the .ui file) and the module's logic."""

    def __init__(
        self, ui, logic, installer: InstallLogic | None = None, timer=None, chooseFolder=None, errorDisplay=None
    ) -> None:
        self.ui = ui
        self.logic = logic
        self.installer = installer or InstallLogic()
        self.errorDisplay = errorDisplay or (
            lambda text, details: slicer.util.errorDisplay(text, windowTitle="DiffuX2CT", detailedText=details)
        )
        self.chooseFolder = chooseFolder or (
            lambda: qt.QFileDialog.getExistingDirectory(None, _("Export the reconstruction as DICOM into"))
        )
        self.phase = Phase.IDLE
        self.job = None
        self.probeJob = None
        self.environment: dict | None = None  # the probe's report, once known
        self.parameterNode = None
        self._installed = False  # installation ran in this session: a second "missing" is an error, not a loop
        self._runAfterCheck = True  # False for the check made when the panel opens: then only preload
        self._summarisedModel = None
        self._geometryNodes = None
        self._timer = timer if timer is not None else qt.QTimer()
        self._timer.setInterval(POLL_INTERVAL_MS)
        self._timer.connect("timeout()", self.onPoll)
        self.ui.progressBar.hide()

    def connectButtons(self) -> None:
        """Connect the panel's buttons (Qt's clicked(bool) carries a flag the actions do not take)."""
        for button, action in (
            (self.ui.reconstructButton, self.onReconstruct),
            (self.ui.cancelButton, self.onCancel),
            (self.ui.exportDicomButton, self.onExportDicom),
            (self.ui.swapViewsButton, self.onSwapViews),
            (self.ui.bundledModelButton, self.onUseBundledModel),
        ):
            button.connect("clicked(bool)", lambda checked, action=action: action())

    # -- parameters ------------------------------------------------------------------------------------------
    def setParameterNode(self, parameterNode) -> None:
        self.parameterNode = parameterNode
        if parameterNode is not None and isBundledModel(parameterNode.modelFolder):
            if parameterNode.modelFolder != BUNDLED_MODEL:  # an older scene's absolute path: store the marker
                parameterNode.modelFolder = BUNDLED_MODEL
        self.refresh()

    def refresh(self) -> None:
        """Keep the model card, the DICOM geometry, the idle time and the buttons in step with the parameters."""
        p = self.parameterNode
        if p is None:  # the module is not shown; enter() refreshes the panel
            return
        if p.modelFolder != self._summarisedModel:  # read the model card only when the folder changes
            self._summarisedModel = p.modelFolder
            self.ui.modelCardLabel.text = modelSummary(modelFolderPath(p.modelFolder))
        if (p.apVolume, p.lateralVolume) != self._geometryNodes:  # filling the geometry modifies p: do it once
            self._geometryNodes = (p.apVolume, p.lateralVolume)
            self.ui.geometrySourceLabel.text = fillGeometryFromDicom(p)
        self.logic.sceneLogic.session.set_idle_timeout(p.idleMinutes * 60.0 if p.idleMinutes > 0 else None)
        busy = self.phase != Phase.IDLE
        problem = inputProblem(p)
        self.ui.reconstructButton.enabled = not problem and not busy
        labels = {
            Phase.IDLE: _("Reconstruct"),
            Phase.CHECKING: _("Checking..."),
            Phase.INSTALLING: _("Installing..."),
            Phase.RUNNING: _("Running..."),
            Phase.CANCELLING: _("Cancelling..."),
        }
        self.ui.reconstructButton.text = labels[self.phase]
        self.ui.reconstructButton.toolTip = problem
        self.ui.cancelButton.enabled = self.phase in (Phase.CHECKING, Phase.RUNNING)
        self.ui.exportDicomButton.enabled = not busy and self.reconstruction() is not None

    # -- actions ---------------------------------------------------------------------------------------------
    def onReconstruct(self) -> None:
        """Check the worker's Python when it is not known to be complete, else start the reconstruction."""
        if self.phase != Phase.IDLE:
            return  # a click while something is under way (e.g. from the events pip processes) does nothing
        problem = inputProblem(self.parameterNode)
        if problem:
            self.setStatus(problem, error=True)
            return
        if self.environment is None or lackingNames(self.environment):
            self._runAfterCheck = True
            self._startProbe()
        else:
            self._startJob()

    def warmUp(self) -> None:
        """When the panel opens and the user asked for it (``preloadModel``, off by default): check the worker's
        Python in the background and, when it is complete, start the worker and load the model, so the first
        reconstruction skips start-up. Otherwise nothing starts before Reconstruct. Installs only on Reconstruct."""
        if self.phase != Phase.IDLE or self.parameterNode is None or not self.parameterNode.preloadModel:
            return
        if self.environment is None:
            self._runAfterCheck = False
            self._startProbe()
        elif not lackingNames(self.environment):
            self._preload()

    def _preload(self) -> None:
        try:
            self.logic.preload(self.parameterNode)
        except InputError as error:
            self.setStatus(str(error), error=True)

    def onSwapViews(self) -> None:
        p = self.parameterNode
        p.apVolume, p.lateralVolume = p.lateralVolume, p.apVolume

    def onUseBundledModel(self) -> None:
        self.parameterNode.modelFolder = BUNDLED_MODEL

    def reconstruction(self):
        """The reconstruction Export as DICOM writes: the output volume when it holds one, else the newest one."""
        p = self.parameterNode
        if p is not None and p.outputVolume is not None and p.outputVolume.GetAttribute(MODEL_ATTRIBUTE):
            return p.outputVolume
        scene = self.logic.sceneLogic.scene
        nodes = scene.GetNodesByClass("vtkMRMLScalarVolumeNode") if scene is not None else None
        found = [nodes.GetItemAsObject(i) for i in range(nodes.GetNumberOfItems())] if nodes is not None else []
        return next((node for node in reversed(found) if node.GetAttribute(MODEL_ATTRIBUTE)), None)

    def onExportDicom(self) -> None:
        """Write the reconstruction as a DICOM series (marked derived, not for diagnosis) into a chosen folder."""
        node = self.reconstruction()
        folder = self.chooseFolder() if node is not None else ""
        if not folder:
            return
        try:
            files = exportAsDicom(node, folder)
        except (InputError, OSError) as error:
            self.setStatus(str(error), error=True)
            self.errorDisplay(_("Export as DICOM failed: {error}").format(error=error), "")
            return
        self.setStatus(
            _("{name}: {count} DICOM files written into {folder}, marked as derived and not for diagnosis.").format(
                name=node.GetName(), count=len(files), folder=folder
            )
        )

    def onCancel(self) -> None:
        """Ask the job to stop and return at once (the timer polls until it ended; nothing it sends after this
        reaches the scene), or stop the check."""
        if self.job is not None and self.phase == Phase.RUNNING:
            self.job.cancel()
            self.phase = Phase.CANCELLING
            self.setStatus(_("Cancelling..."))
            self.refresh()
            self._pollJob()  # it may have ended already
        elif self.probeJob is not None:
            self.probeJob.cancel()
            self._finish(_("Cancelled."))

    def cleanup(self) -> None:
        self.onCancel()
        self._timer.stop()

    def onPoll(self) -> None:
        """Timer tick: advance the check or the job without waiting on either."""
        if self.phase == Phase.CHECKING:
            self._pollProbe()
        elif self.phase in (Phase.RUNNING, Phase.CANCELLING):
            self._pollJob()

    # -- steps -----------------------------------------------------------------------------------------------
    def _begin(self, phase: Phase, message: str) -> None:
        self.phase = phase
        self.setStatus(message)
        self.ui.progressBar.show()
        self.ui.progressBar.setRange(0, 0)
        self.refresh()

    def _finish(self, message: str, error: bool = False, details: str = "") -> None:
        """Back to idle with a status line; a failure is also shown in Slicer's error dialog, with details."""
        self._timer.stop()
        self.phase, self.job, self.probeJob = Phase.IDLE, None, None
        self.ui.progressBar.hide()
        self.setStatus(message, error)
        self.refresh()
        if error:
            self.errorDisplay(message, details)

    def _startProbe(self) -> None:
        self._begin(Phase.CHECKING, _("Checking the Python packages and GPU of the background process..."))
        try:
            self.probeJob = self.logic.sceneLogic.start_probe()
        except (InputError, OSError) as error:
            self._finish(str(error), error=True)
            return
        self._timer.start()

    def _pollProbe(self) -> None:
        try:
            report = self.probeJob.poll()
        except InputError as error:
            self._finish(str(error), error=True)
            return
        if report is None:
            return
        self.environment = report
        self.ui.deviceInfoLabel.text = (
            _("GPU: {name}").format(name=report["gpu_name"])
            if report.get("cuda")
            else _("No CUDA GPU found: the CPU will be used.")
        )
        lacking = lackingNames(report)
        if not lacking and not self._runAfterCheck:
            self._finish(_("Ready; the model is being loaded in the background."))
            self._preload()
        elif not lacking:
            self._startJob()
        elif not self._runAfterCheck:
            self._finish(
                _("Reconstruct will offer to install or upgrade what the background process lacks: {names}").format(
                    names=", ".join(lacking)
                )
            )
        elif self._installed:
            self._finish(
                _("Still missing or too old after installation: {names}").format(names=", ".join(lacking)), error=True
            )
        else:
            self._install(report)

    def _install(self, report: dict) -> None:
        self._timer.stop()  # pip processes GUI events: no poll may run in between
        names = ", ".join(lackingNames(report))
        self._begin(Phase.INSTALLING, _("Installing {names}...").format(names=names))
        question = _(
            "DiffuX2CT's background process needs Python packages that are missing or too old: {names}. Install or"
            " upgrade them now? This needs a network connection and may take several minutes. Slicer does not need"
            " to restart: only DiffuX2CT's background process uses torch and MONAI, and it starts again with the new"
            " versions."
        ).format(names=names)
        outdated, backend = report.get("outdated", []), self.parameterNode.torchBackend.strip()
        try:
            installed = self.installer.install(report["missing"], question, outdated, backend)
        except RestartRequired as restart:
            self._finish(str(restart))
            return
        except InputError as error:
            self._finish(str(error), error=True)
            return
        if not installed:
            self._finish(_("Reconstruction needs torch and MONAI; installation was declined."))
            return
        self._installed = True
        self.logic.sceneLogic.session.shutdown()  # a worker started before runs the old versions
        self.phase = Phase.IDLE
        self._startProbe()  # check again in the background; _runAfterCheck is still True: the job starts if it passes

    def _startJob(self) -> None:
        self._begin(Phase.RUNNING, _("Starting the reconstruction..."))
        try:
            self.job = self.logic.start(self.parameterNode)
        except InputError as error:
            self._finish(str(error), error=True)
            return
        self._timer.start()

    def _pollJob(self) -> None:
        status = self.job.poll()
        if status.state == JobState.CANCELLING:
            return
        if status.state == JobState.RUNNING:
            if status.total:
                self.ui.progressBar.setRange(0, status.total)
                self.ui.progressBar.value = status.step
            left = _(", about {seconds:.0f} s left").format(seconds=status.eta_s) if status.eta_s else ""
            self.setStatus(_("Reconstructing: {message}{left}").format(message=progressText(status), left=left))
            return
        if status.state == JobState.CANCELLED:
            forced = status.message == CANCELLED_FORCED
            self._finish(
                _("Cancelled; the background process did not stop in time and was ended.")
                if forced
                else _("Cancelled.")
            )
            return
        if status.state == JobState.FAILED:
            failure = _("Reconstruction failed: {message}").format(message=status.message)
            self._finish(failure, error=True, details=getattr(status, "details", ""))
            return
        self._finish(doneText(self.job))

    def setStatus(self, text: str, error: bool = False) -> None:
        self.ui.statusLabel.text = text
        self.ui.statusLabel.setStyleSheet("color: #c0392b" if error else "")
