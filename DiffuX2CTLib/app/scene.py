"""The MRML side of DiffuX2CT, without Qt: :class:`SceneLogic` writes the radiograph nodes to files, runs the
job on the persistent background worker and has its results placed into the scene.

Works in the Slicer application (the module's Logic wraps it) and with the ``slicer-core`` package (tests,
scripts). The scene changes only when a reconstruction succeeds, all at once (:mod:`.result_placement`); a
cancelled or failed job leaves it exactly as it was. The job itself is :mod:`.reconstruction_job`. Files are LPS;
the scene is RAS: the storage nodes convert, here and in the placement, nowhere else.
"""

from __future__ import annotations

import functools
import shutil
import sys
import tempfile
from pathlib import Path

import slicer

from ..core.errors import InputError
from ..imaging.acquisition import Acquisition
from ..inference.options import ReconstructionOptions
from .protocol import JobSpec
from .reconstruction_job import JobState, JobStatus, ProbeJob, ReconstructionJob
from .result_placement import (
    ATTRIBUTE_PREFIX,
    DEFAULT_NAME,
    SEGMENTATION_REFERENCE_ROLE,
    UNCERTAINTY_REFERENCE_ROLE,
    ReconstructionResult,
    ResultPlacement,
    bone_labelmap,
)
from .runner import ProcessRunner, SubprocessRunner, worker_environment
from .session import DEFAULT_IDLE_TIMEOUT_S, WorkerSession

__all__ = [  # what scripts and the module import from here
    "ATTRIBUTE_PREFIX",
    "SEGMENTATION_REFERENCE_ROLE",
    "UNCERTAINTY_REFERENCE_ROLE",
    "JobState",
    "JobStatus",
    "ProbeJob",
    "ReconstructionJob",
    "ReconstructionResult",
    "SceneLogic",
    "bone_labelmap",
    "check_radiograph_node",
]

LIBRARY_PARENT = Path(__file__).resolve().parents[2]  # the folder holding DiffuX2CTLib, for the worker's path
PROBE_TIMEOUT_S = 120.0


def check_radiograph_node(node, role: str) -> None:
    """A clear :class:`InputError` unless ``node`` is a single-slice scalar volume with pixels."""
    if node is None:
        raise InputError(f"no {role} radiograph selected")
    if not hasattr(node, "IsA"):
        shown = f"the text {node!r}" if isinstance(node, str) else f"a {type(node).__name__}"
        raise InputError(f"the {role} radiograph must be a volume node of the scene, got {shown} (load a file with "
                         "slicer.util.loadVolume first)")  # fmt: skip
    if not node.IsA("vtkMRMLScalarVolumeNode") or node.IsA("vtkMRMLLabelMapVolumeNode"):
        raise InputError(f"{node.GetName()}: is a {node.GetClassName()}, expected a radiograph (scalar volume)")
    image = node.GetImageData()
    if image is None or image.GetNumberOfPoints() == 0:
        raise InputError(f"{node.GetName()}: has no pixels")
    dims = image.GetDimensions()
    if sorted(dims)[0] != 1:
        raise InputError(
            f"{node.GetName()}: is a 3D volume of {dims[0]} x {dims[1]} x {dims[2]} voxels; "
            "expected a single 2D radiograph"
        )


def _write_volume(node, path: Path) -> None:
    storage = slicer.vtkMRMLNRRDStorageNode()
    storage.SetFileName(str(path))
    storage.SetUseCompression(False)
    if not storage.WriteData(node):
        raise InputError(f"{node.GetName()}: could not be written for the background process")


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
        self.placement = ResultPlacement(scene, app_logic)
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
        name: str = DEFAULT_NAME,
        **options,
    ) -> ReconstructionJob:
        """Start a background reconstruction of the two radiograph nodes and return its job. ``options`` are
        those of :class:`~DiffuX2CTLib.inference.options.ReconstructionOptions` (steps, seed, samples, device,
        method, sampler, guidance, precision, temperature, check_inputs);
        ``source_files`` (by view) names the file a node was loaded from, e.g. its DICOM file, which the worker
        then reads instead of the node's pixels so that every acquisition tag (view position, patient
        orientation, intensity relationship) is used; ``output_node`` (never one of the radiographs) is
        overwritten on success, else a new volume named ``name`` (made unique) is added beside the radiographs."""
        if self.job is not None:
            self.job.poll()  # a cancelled job may be due to end (its worker ended at the deadline)
        if self.job is not None and self.job.status.state == JobState.CANCELLING:
            raise InputError("the previous reconstruction is still stopping; try again in a moment")
        if self.job is not None and not self.job.finished:
            raise InputError("a reconstruction is already running; wait for it or cancel it first")
        check_radiograph_node(ap_node, "frontal (AP/PA)")
        check_radiograph_node(lateral_node, "lateral")
        if ap_node is lateral_node:
            raise InputError(f"{ap_node.GetName()}: the same image was given as both the frontal and the lateral view")
        if output_node is ap_node or output_node is lateral_node:
            raise InputError(
                f"{output_node.GetName()}: the output volume is one of the input radiographs; choose another output "
                "volume or let a new one be created"
            )
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
            place = functools.partial(
                self.placement.place, output_node=output_node, name=name, inputs=(ap_node, lateral_node)
            )
            self.job = ReconstructionJob(self.session, (spec.to_dict(), key), workdir, place, self._job_ended)
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
        """Cancel a running job and end the worker (module reload, Slicer exiting)."""
        if self.job is not None:
            self.job.cancel(grace_s=0.0)  # the worker is ended at once: nobody waits for it to stop the job
        self.session.shutdown()

    def _job_ended(self, job: ReconstructionJob) -> None:
        if self.job is job:
            self.job = None
