"""The MRML side of DiffuX2CT, without Qt: radiograph nodes out to files, the background worker in between, and
the CT, uncertainty, bone segmentation and volume rendering back into the scene.

Works in the Slicer application (the module's Logic wraps it) and with the ``slicer-core`` package (tests,
scripts). The scene changes only when a reconstruction succeeds, all at once; a cancelled or failed job leaves
it exactly as it was. Files are LPS; the scene is RAS: the storage nodes convert, here and nowhere else.
"""

from __future__ import annotations

import enum
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import slicer
import vtk

from ..core.errors import InputError
from ..imaging.acquisition import Acquisition
from ..inference.options import ReconstructionOptions
from .protocol import JobSpec, parse_event
from .runner import ProcessRunner, RunningProcess, SubprocessRunner, worker_environment
from .session import DEFAULT_IDLE_TIMEOUT_S, WorkerSession

ATTRIBUTE_PREFIX = "DiffuX2CT."
SEGMENTATION_REFERENCE_ROLE = "DiffuX2CT.boneSegmentation"
UNCERTAINTY_REFERENCE_ROLE = "DiffuX2CT.uncertainty"
BONE_THRESHOLD_HU = 250.0  # the same threshold as the bone Dice of DiffuX2CTLib.evaluation.metrics
MIN_BONE_ISLAND_VOXELS = 10  # smaller bright islands are sampling noise, not bone
CT_WINDOW_LEVEL = (1500.0, 300.0)  # a wide bone/soft-tissue window that suits a coarse reconstruction
LIBRARY_PARENT = Path(__file__).resolve().parents[2]  # the folder holding DiffuX2CTLib, for the worker's path
POLL_INTERVAL_S = 0.2
PROBE_TIMEOUT_S = 120.0


class JobState(str, enum.Enum):
    """Where a reconstruction job stands."""

    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"
    CANCELLED = "cancelled"


@dataclass
class JobStatus:
    """What the panel shows: state, step of total with an estimate of time left, a message for the user."""

    state: JobState = JobState.RUNNING
    step: int = 0
    total: int = 0
    eta_s: float | None = None
    message: str = "starting"
    error_kind: str | None = None


@dataclass
class ReconstructionResult:
    """The nodes a successful job put into the scene and what the worker measured."""

    ct_node: slicer.vtkMRMLScalarVolumeNode
    segmentation_node: slicer.vtkMRMLSegmentationNode | None  # None when it could not be made (see warning)
    volume_rendering_node: object | None
    uncertainty_node: slicer.vtkMRMLScalarVolumeNode | None
    agreement: dict[str, float] = field(default_factory=dict)
    low_agreement_views: list[str] = field(default_factory=list)
    provenance: dict[str, str] = field(default_factory=dict)
    warning: str = ""  # what could not be made (e.g. the bone segmentation), said in the status line


def check_radiograph_node(node, role: str) -> None:
    """A clear :class:`InputError` unless ``node`` is a single-slice scalar volume with pixels."""
    if node is None:
        raise InputError(f"no {role} radiograph selected")
    if not node.IsA("vtkMRMLScalarVolumeNode") or node.IsA("vtkMRMLLabelMapVolumeNode"):
        raise InputError(f"{node.GetName()}: is a {node.GetClassName()}, expected a radiograph (scalar volume)")
    image = node.GetImageData()
    if image is None or image.GetNumberOfPoints() == 0:
        raise InputError(f"{node.GetName()}: has no pixels")
    dims = image.GetDimensions()
    if sorted(dims)[0] != 1:
        raise InputError(
            f"{node.GetName()}: is a 3D volume of {dims[0]} x {dims[1]} x {dims[2]} voxels; expected a single 2D radiograph"
        )


def _write_volume(node, path: Path) -> None:
    storage = slicer.vtkMRMLNRRDStorageNode()
    storage.SetFileName(str(path))
    storage.SetUseCompression(False)
    if not storage.WriteData(node):
        raise InputError(f"{node.GetName()}: could not be written for the background process")


def _read_volume(path: Path, name: str) -> slicer.vtkMRMLScalarVolumeNode:
    """A volume node (not yet in any scene) read from ``path``; LPS in the file becomes RAS in the node."""
    node = slicer.vtkMRMLScalarVolumeNode()
    node.SetName(name)
    storage = slicer.vtkMRMLVolumeArchetypeStorageNode()
    storage.SetFileName(str(path))
    if not storage.ReadData(node) or node.GetImageData() is None:
        raise InputError(f"{path.name}: the reconstruction could not be read back")
    return node


def bone_labelmap(ct_node) -> slicer.vtkOrientedImageData:
    """Bone mask of a CT node: threshold at :data:`BONE_THRESHOLD_HU`, close one-voxel gaps, drop small islands."""
    threshold = vtk.vtkImageThreshold()
    threshold.SetInputData(ct_node.GetImageData())
    threshold.ThresholdByUpper(BONE_THRESHOLD_HU)
    threshold.SetInValue(1)
    threshold.SetOutValue(0)
    threshold.SetOutputScalarTypeToUnsignedChar()
    closing = vtk.vtkImageOpenClose3D()
    closing.SetInputConnection(threshold.GetOutputPort())
    closing.SetOpenValue(0)
    closing.SetCloseValue(1)
    closing.SetKernelSize(3, 3, 3)
    islands = vtk.vtkImageConnectivityFilter()
    islands.SetInputConnection(closing.GetOutputPort())
    islands.SetScalarRange(1, 1)
    islands.SetExtractionModeToAllRegions()
    islands.SetSizeRange(MIN_BONE_ISLAND_VOXELS, 2**31 - 1)
    islands.SetLabelModeToConstantValue()
    islands.SetLabelConstantValue(1)
    islands.SetLabelScalarTypeToUnsignedChar()
    islands.Update()
    labelmap = slicer.vtkOrientedImageData()
    labelmap.ShallowCopy(islands.GetOutput())
    ijk_to_ras = vtk.vtkMatrix4x4()
    ct_node.GetIJKToRASMatrix(ijk_to_ras)
    labelmap.SetImageToWorldMatrix(ijk_to_ras)
    return labelmap


SEGMENTATION_CONVERTER_RULES = (
    "vtkBinaryLabelmapToClosedSurfaceConversionRule",
    "vtkClosedSurfaceToBinaryLabelmapConversionRule",
)


def register_segmentation_converters() -> None:
    """Register the labelmap <-> closed surface converters that Slicer's Segmentations module logic registers at
    start-up, when nothing has (a bare ``SceneLogic(scene)`` in a script): without them no segment can hold a mask."""
    factory = slicer.vtkSegmentationConverterFactory.GetInstance()
    if len(factory.GetConverterRules()) == 0:
        for name in SEGMENTATION_CONVERTER_RULES:
            rule = getattr(slicer, name, None)
            if rule is not None:
                factory.RegisterConverterRule(rule())


def _apply_bone_transfer_function(property_node) -> None:
    """A CT bone look for volume rendering when Slicer's "CT-Bone" preset is not available (slicer-core)."""
    volume_property = property_node.GetVolumeProperty()
    opacity = vtk.vtkPiecewiseFunction()
    for hu, alpha in ((-1000.0, 0.0), (150.0, 0.0), (300.0, 0.2), (800.0, 0.6), (1500.0, 0.8)):
        opacity.AddPoint(hu, alpha)
    colors = vtk.vtkColorTransferFunction()
    for hu, rgb in (
        (-1000.0, (0.3, 0.3, 1.0)),
        (150.0, (0.55, 0.25, 0.15)),
        (300.0, (0.9, 0.6, 0.35)),
        (1500.0, (1.0, 1.0, 0.9)),
    ):
        colors.AddRGBPoint(hu, *rgb)
    volume_property.SetScalarOpacity(opacity)
    volume_property.SetColor(colors)
    volume_property.ShadeOn()
    volume_property.SetInterpolationTypeToLinear()


class ReconstructionJob:
    """One background reconstruction on the session's worker. Call :meth:`poll` from a timer (never blocks) or
    :meth:`wait` from a script; on success the results enter the scene during the poll that sees ``done``."""

    def __init__(
        self,
        logic: SceneLogic,
        session: WorkerSession,
        submission: tuple[dict, tuple],
        workdir: Path,
        output_node,
        name: str,
    ) -> None:
        self._logic = logic
        self._session = session
        self._submission = submission  # (job, key): sent again if the worker went idle just as it was sent
        self._id, note = session.submit(*submission)
        self._heard = False
        self.worker_pid: int | None = None  # the worker process that ran this job (once it said it is ready)
        self._workdir = workdir
        self._output_node = output_node
        self._name = name
        self._started = time.monotonic()
        self.note = note  # what happened to the worker before this job (e.g. restarted after a crash)
        self.status = JobStatus(message=f"starting ({note})" if note else "starting")
        self.stages: list[str] = []  # the worker's stages, e.g. "loading model" (absent when the worker was warm)
        self.result: ReconstructionResult | None = None

    @property
    def finished(self) -> bool:
        return self.status.state != JobState.RUNNING

    def poll(self) -> JobStatus:
        """Read what the worker reported since the last call; finish the job when it ended."""
        if not self.finished:
            self._handle(self._session.events(self._id))
        if not self.finished and self._session.exit_code() is not None:
            self._handle(self._session.events(self._id))  # what it wrote just before it ended
            if not self.finished and self._session.went_idle and not self._heard:
                self._id, _ = self._session.submit(*self._submission)
            elif not self.finished:
                self._fail(
                    "internal",
                    self._session.crash_message() + "; a new background process starts with the next reconstruction",
                )
        return self.status

    def _handle(self, events: list[dict]) -> None:
        self.worker_pid = self._session.pid or self.worker_pid
        for event in events:
            self._heard = True
            if event["event"] == "progress":
                self._on_progress(event)
            elif event["event"] == "error":
                self._fail(event.get("kind", "internal"), event.get("message", "the reconstruction failed"))
            elif event["event"] == "done":
                self._on_done(event)
            if self.finished:
                return

    def _on_progress(self, event: dict) -> None:
        self.status.step = int(event.get("step", 0))
        self.status.total = int(event.get("total", 0))
        self.status.eta_s = event.get("eta_s")
        if event.get("stage"):
            self.stages.append(str(event["stage"]))
            self.status.message = str(event["stage"])
        elif self.status.total:
            self.status.message = f"step {self.status.step} of {self.status.total}"

    def _on_done(self, event: dict) -> None:
        try:
            self.result = self._logic._add_results(
                event, self._output_node, self._name, time.monotonic() - self._started
            )
        except Exception as error:  # noqa: BLE001 - the scene is already rolled back; tell the user why
            self._fail("internal", f"the result could not be added to the scene: {error}")
            return
        low = self.result.low_agreement_views
        warning = f"; warning: the {' and '.join(low)} re-projection agrees poorly with the input" if low else ""
        agreement = ", ".join(f"{view} {value:.2f}" for view, value in self.result.agreement.items())
        note = f" ({self.note})" if self.note else ""
        self.status = JobStatus(
            JobState.DONE,
            self.status.total,
            self.status.total,
            0.0,
            f"done in {time.monotonic() - self._started:.1f} s{note}; re-projection NCC {agreement}{warning}{self.result.warning}",
        )
        self._cleanup()

    def _fail(self, kind: str, message: str) -> None:
        self.status = JobStatus(JobState.FAILED, self.status.step, self.status.total, None, message, kind)
        self._cleanup()

    def cancel(self, grace_s: float | None = None) -> None:
        """Stop the job (the worker stays warm when it stops within ``grace_s``, by default a few seconds, else
        it is ended with all it started) and remove its files; the scene stays as it was."""
        if self.finished:
            return
        stopped = self._session.cancel(self._id, grace_s)
        message = "cancelled" if stopped else "cancelled; the background process did not stop in time and was ended"
        self.status = JobStatus(JobState.CANCELLED, self.status.step, self.status.total, None, message)
        self._cleanup()

    def wait(self, progress=None, interval_s: float = POLL_INTERVAL_S) -> ReconstructionResult:
        """Block until the job ends (for scripts and the console); ``progress(status)`` is called on each poll.
        Raises :class:`InputError` with the worker's message when the job failed or was cancelled."""
        while self.poll().state == JobState.RUNNING:
            if progress:
                progress(self.status)
            time.sleep(interval_s)
        if self.status.state != JobState.DONE:
            raise InputError(f"reconstruction {self.status.state.value}: {self.status.message}")
        return self.result

    def _cleanup(self) -> None:
        shutil.rmtree(self._workdir, ignore_errors=True)
        self._logic._job_ended(self)


class ProbeJob:
    """The dependency and GPU check, run in the background like a job: :meth:`poll` returns None while it runs,
    then the report ``{"missing": [...], "torch": ..., "cuda": bool, "gpu_name": ...}``; a worker that cannot
    start or answer in time raises :class:`InputError`."""

    def __init__(self, process: RunningProcess, python_executable: str, timeout_s: float) -> None:
        self._process = process
        self._python = python_executable
        self._deadline = time.monotonic() + timeout_s
        self.report: dict | None = None

    def poll(self) -> dict | None:
        if self.report is not None:
            return self.report
        ended = self._process.exit_code() is not None
        for line in self._process.read_lines():
            event = parse_event(line)
            if event and event["event"] == "probe":
                self.report = event
                self._process.terminate()
                return event
        if ended or time.monotonic() > self._deadline:
            self._process.terminate()
            why = "did not answer in time" if not ended else self._process.stderr_tail()[-300:]
            raise InputError(f"could not start DiffuX2CT's background process with {self._python}: {why}")
        return None

    def cancel(self) -> None:
        self._process.terminate()

    def wait(self, interval_s: float = 0.05) -> dict:
        while (report := self.poll()) is None:
            time.sleep(interval_s)
        return report


class SceneLogic:
    """Reconstruction into an MRML scene. ``app_logic`` (Slicer's application logic) gives access to the volume
    rendering logic and the slice views; ``runner`` starts the worker (a plain subprocess by default);
    ``python_executable`` is the Python with torch (``PythonSlicer`` in Slicer). One persistent worker serves
    every job of this logic (see :class:`~DiffuX2CTLib.app.session.WorkerSession`); it exits after
    ``idle_timeout_s`` idle seconds (None: never) and with :meth:`shutdown`."""

    def __init__(
        self,
        scene,
        app_logic=None,
        runner: ProcessRunner | None = None,
        python_executable: str | None = None,
        idle_timeout_s: float | None = DEFAULT_IDLE_TIMEOUT_S,
    ) -> None:
        self.scene = scene
        self.app_logic = app_logic
        self.runner = runner or SubprocessRunner()
        self.python_executable = python_executable or sys.executable
        self.session = WorkerSession(self.runner, self.python_executable, str(LIBRARY_PARENT), idle_timeout_s)
        self.job: ReconstructionJob | None = None

    # -- running ---------------------------------------------------------------------------------------------
    def start(
        self,
        ap_node,
        lateral_node,
        *,
        model: str | None = None,
        acquisition: dict[str, Acquisition] | None = None,
        source_files: dict[str, str] | None = None,
        output_node=None,
        name: str = "DiffuX2CT reconstruction",
        **options,
    ) -> ReconstructionJob:
        """Start a background reconstruction of the two radiograph nodes and return its job. ``options`` are
        those of :class:`~DiffuX2CTLib.app.protocol.ReconstructionOptions` (steps, seed, samples, device, method, sampler,
        guidance, precision, check_inputs);
        ``source_files`` (by view) names the file a node was loaded from, e.g. its DICOM file, which the worker
        then reads instead of the node's pixels so that every acquisition tag (view position, patient
        orientation, intensity relationship) is used; ``output_node`` is overwritten on success, else a new
        volume named ``name`` is added."""
        if self.job is not None and not self.job.finished:
            raise InputError("a reconstruction is already running; wait for it or cancel it first")
        check_radiograph_node(ap_node, "frontal (AP/PA)")
        check_radiograph_node(lateral_node, "lateral")
        if ap_node is lateral_node:
            raise InputError(f"{ap_node.GetName()}: the same image was given as both the frontal and the lateral view")
        if model is not None and not Path(model).is_dir():
            raise InputError(f"{Path(model).name}: model folder not found")
        sources = dict(source_files or {})
        for view, path in sources.items():
            if view not in ("ap", "lateral"):
                raise InputError(f"source file given for unknown view '{view}' (use ap or lateral)")
            if not Path(path).is_file():
                raise InputError(f"{Path(path).name}: the {view} radiograph's source file was not found")
        reconstruction_options = ReconstructionOptions(**options)
        workdir = Path(tempfile.mkdtemp(prefix="DiffuX2CT-"))
        try:
            inputs = {}
            for view, node in (("ap", ap_node), ("lateral", lateral_node)):
                if view in sources:
                    inputs[view] = str(sources[view])
                else:
                    _write_volume(node, workdir / f"{view}.nrrd")
                    inputs[view] = str(workdir / f"{view}.nrrd")
            spec = JobSpec(
                ap=inputs["ap"],
                lateral=inputs["lateral"],
                output_dir=str(workdir / "out"),
                model=str(model) if model is not None else None,
                options=reconstruction_options,
                acquisition=dict(acquisition or {}),
            )
            key = (str(Path(model).resolve()) if model else None, reconstruction_options.device)
            self.job = ReconstructionJob(self, self.session, (spec.to_dict(), key), workdir, output_node, name)
        except BaseException:
            shutil.rmtree(workdir, ignore_errors=True)
            raise
        return self.job

    def reconstruct(self, ap_node, lateral_node, progress=None, **options) -> slicer.vtkMRMLScalarVolumeNode:
        """Blocking reconstruction (console, scripts): returns the CT volume node. Same arguments as :meth:`start`."""
        return self.start(ap_node, lateral_node, **options).wait(progress).ct_node

    def preload(self, model: str | None = None, device: str = "auto") -> None:
        """Start the worker and load the model in the background, so the first reconstruction skips start-up."""
        if self.job is None or self.job.finished:
            self.session.preload(str(model) if model is not None else None, device)

    def start_probe(self, timeout_s: float = PROBE_TIMEOUT_S) -> ProbeJob:
        """Check in the background what the worker's Python has (see :class:`ProbeJob`)."""
        try:
            process = self.runner.start(
                [self.python_executable, "-m", "DiffuX2CTLib.app.worker", "--probe"],
                env=worker_environment(str(LIBRARY_PARENT)),
            )
        except OSError as error:
            raise InputError(
                f"could not start DiffuX2CT's background process with {self.python_executable}: {error}"
            ) from None
        return ProbeJob(process, self.python_executable, timeout_s)

    def probe(self, timeout_s: float = PROBE_TIMEOUT_S) -> dict:
        """Blocking :meth:`start_probe` for scripts."""
        return self.start_probe(timeout_s).wait()

    def shutdown(self) -> None:
        """Cancel a running job and end the worker (module cleanup, Slicer exiting)."""
        if self.job is not None:
            self.job.cancel(grace_s=0.0)  # the worker is ended anyway: no need to wait for it to stop the job
        self.session.shutdown()

    def _job_ended(self, job: ReconstructionJob) -> None:
        if self.job is job:
            self.job = None

    # -- results into the scene ----------------------------------------------------------------------------
    def _add_results(self, event: dict, output_node, name: str, wall_s: float) -> ReconstructionResult:
        """Read the worker's outputs, then change the scene in one go; on any error undo what was added."""
        outputs = event.get("outputs", {})
        ct = _read_volume(Path(outputs["ct"]), name)
        uncertainty = (
            _read_volume(Path(outputs["uncertainty"]), f"{name} uncertainty") if "uncertainty" in outputs else None
        )
        bone = bone_labelmap(ct)
        metrics = event.get("metrics", {})
        provenance = {str(k): str(v) for k, v in event.get("provenance", {}).items()}
        added: list = []
        previous = self._snapshot(output_node)
        self.scene.StartState(self.scene.BatchProcessState)
        try:
            ct_node = self._place_volume(ct, output_node, added)
            for key, value in provenance.items():
                ct_node.SetAttribute(ATTRIBUTE_PREFIX + key, value)
            ct_node.SetAttribute(ATTRIBUTE_PREFIX + "wall_seconds", f"{wall_s:.2f}")
            ct_node.SetAttribute(
                ATTRIBUTE_PREFIX + "low_agreement_views", ",".join(metrics.get("low_agreement_views", []))
            )
            self._show_ct(ct_node)
            segmentation, warning = self._bone_segmentation_or_why(ct_node, bone, added)
            rendering = self._volume_rendering(ct_node, added)
            uncertainty_node = None
            if uncertainty is not None:
                uncertainty_node = self._place_volume(
                    uncertainty, self._referenced(ct_node, UNCERTAINTY_REFERENCE_ROLE), added
                )
                uncertainty_node.CreateDefaultDisplayNodes()
                uncertainty_node.GetDisplayNode().SetAndObserveColorNodeID("vtkMRMLColorTableNodeRainbow")
                ct_node.SetNodeReferenceID(UNCERTAINTY_REFERENCE_ROLE, uncertainty_node.GetID())
        except BaseException:
            for node in reversed(added):
                self._remove_with_display_nodes(node)
            self._restore(output_node, previous)
            raise
        finally:
            self.scene.EndState(self.scene.BatchProcessState)
        return ReconstructionResult(
            ct_node,
            segmentation,
            rendering,
            uncertainty_node,
            dict(metrics.get("agreement", {})),
            list(metrics.get("low_agreement_views", [])),
            provenance,
            warning,
        )

    def _remove_with_display_nodes(self, node) -> None:
        """Remove a node the failed run added, and the display nodes made for it (the scene keeps those otherwise)."""
        display_nodes = (
            [node.GetNthDisplayNode(i) for i in range(node.GetNumberOfDisplayNodes())]
            if node.IsA("vtkMRMLDisplayableNode")
            else []
        )
        self.scene.RemoveNode(node)
        for display in display_nodes:
            if display is not None and self.scene.IsNodePresent(display):
                self.scene.RemoveNode(display)

    @staticmethod
    def _snapshot(node):
        if node is None:
            return None
        matrix = vtk.vtkMatrix4x4()
        node.GetIJKToRASMatrix(matrix)
        attributes = {key: node.GetAttribute(key) for key in node.GetAttributeNames() or ()}
        return node.GetImageData(), matrix, attributes

    @staticmethod
    def _restore(node, snapshot) -> None:
        if node is None or snapshot is None:
            return
        image, matrix, attributes = snapshot
        node.SetAndObserveImageData(image)
        node.SetIJKToRASMatrix(matrix)
        for key in node.GetAttributeNames() or ():
            if key not in attributes:
                node.RemoveAttribute(key)
        for key, value in attributes.items():
            node.SetAttribute(key, value)

    def _referenced(self, node, role: str):
        return node.GetNodeReference(role) if node is not None else None

    def _place_volume(self, loaded, target, added: list):
        """Put a freshly read volume into ``target`` (overwrite) or add it to the scene as a new node."""
        if target is None:
            self.scene.AddNode(loaded)
            added.append(loaded)
            return loaded
        matrix = vtk.vtkMatrix4x4()
        loaded.GetIJKToRASMatrix(matrix)
        target.SetIJKToRASMatrix(matrix)
        target.SetAndObserveImageData(loaded.GetImageData())
        return target

    def _show_ct(self, ct_node) -> None:
        """CT grey scale with a fixed window/level, shown as the background of the slice views."""
        if ct_node.GetDisplayNode() is None:
            ct_node.CreateDefaultDisplayNodes()
        display = ct_node.GetDisplayNode()
        display.SetAndObserveColorNodeID("vtkMRMLColorTableNodeGrey")
        display.SetAutoWindowLevel(False)
        display.SetWindowLevel(*CT_WINDOW_LEVEL)
        if self.app_logic is not None and self.app_logic.GetSelectionNode() is not None:
            self.app_logic.GetSelectionNode().SetActiveVolumeID(ct_node.GetID())
            self.app_logic.PropagateBackgroundVolumeSelection(1)

    def _bone_segmentation_or_why(self, ct_node, labelmap, added: list):
        """The bone segmentation, or None and a warning for the status line: the CT is delivered either way."""
        register_segmentation_converters()
        mark = len(added)
        try:
            return self._bone_segmentation(ct_node, labelmap, added), ""
        except RuntimeError as error:
            for node in reversed(added[mark:]):  # no half-made segmentation stays behind
                self.scene.RemoveNode(node)
            del added[mark:]
            return None, f"; the bone segmentation was not made: {error}"

    def _bone_segmentation(self, ct_node, labelmap, added: list):
        """A "Bone" segment in a segmentation node referenced by the CT, with a closed surface shown in 3D."""
        segmentation_node = self._referenced(ct_node, SEGMENTATION_REFERENCE_ROLE)
        if segmentation_node is None:
            segmentation_node = slicer.vtkMRMLSegmentationNode()
            segmentation_node.SetName(f"{ct_node.GetName()} bone")
            self.scene.AddNode(segmentation_node)
            added.append(segmentation_node)
            segmentation_node.CreateDefaultDisplayNodes()
        segmentation = segmentation_node.GetSegmentation()
        segmentation.RemoveAllSegments()
        segmentation_node.SetReferenceImageGeometryParameterFromVolumeNode(ct_node)
        segment_id = segmentation.AddEmptySegment("bone", "Bone", [0.95, 0.9, 0.75])
        if not segment_id or not slicer.vtkSlicerSegmentationsModuleLogic.SetBinaryLabelmapToSegment(
            labelmap, segmentation_node, segment_id
        ):
            rules = len(slicer.vtkSegmentationConverterFactory.GetInstance().GetConverterRules())
            missing = (
                " (no segmentation converter rules are registered: create Slicer's Segmentations module logic for this scene)"
                if not rules
                else ""
            )
            raise RuntimeError(f"the bone mask could not be stored in the segmentation{missing}")
        segmentation_node.CreateClosedSurfaceRepresentation()
        display = segmentation_node.GetDisplayNode()
        display.SetPreferredDisplayRepresentationName3D("Closed surface")
        display.SetVisibility3D(True)
        ct_node.SetNodeReferenceID(SEGMENTATION_REFERENCE_ROLE, segmentation_node.GetID())
        return segmentation_node

    def _volume_rendering(self, ct_node, added: list):
        """Volume rendering with Slicer's "CT-Bone" preset, or our bone transfer function where presets are
        not shipped (slicer-core). None without a volume rendering logic."""
        logic = self.app_logic.GetModuleLogic("VolumeRendering") if self.app_logic is not None else None
        if logic is None:
            return None
        display = logic.GetFirstVolumeRenderingDisplayNode(ct_node)
        if display is None:
            display = logic.CreateDefaultVolumeRenderingNodes(ct_node)
            added.extend(
                node for node in (display.GetVolumePropertyNode(), display.GetROINode(), display) if node is not None
            )
        preset = logic.GetPresetByName("CT-Bone") if logic.GetModuleShareDirectory() else None
        if preset is not None:
            display.GetVolumePropertyNode().Copy(preset)
        else:
            _apply_bone_transfer_function(display.GetVolumePropertyNode())
        display.SetVisibility(True)
        return display
