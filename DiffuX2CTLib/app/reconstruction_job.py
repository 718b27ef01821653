"""A reconstruction on the persistent worker, and the background dependency check, as the scene logic sees them.

No MRML and no Qt here: a job is given what it needs as callables (place the worker's outputs into the scene,
say that it ended), so it knows nothing of the scene logic that made it. Call :meth:`ReconstructionJob.poll`
from a timer (it never blocks) or :meth:`ReconstructionJob.wait` from a script.
"""

from __future__ import annotations

import enum
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from ..core.errors import InputError
from . import session as session_module
from .protocol import parse_event
from .runner import RunningProcess
from .session import TERMINAL_EVENTS, WorkerSession

if TYPE_CHECKING:
    from .result_placement import ReconstructionResult

POLL_INTERVAL_S = 0.2
CANCELLED = "cancelled"
CANCELLED_FORCED = "cancelled; the background process did not stop in time and was ended"

PlaceResults = Callable[[dict, float], "ReconstructionResult"]
"""``place(done_event, wall_seconds)``: put a finished job's outputs into the scene (all or nothing)."""


class JobState(str, enum.Enum):
    """Where a reconstruction job stands."""

    RUNNING = "running"
    CANCELLING = "cancelling"  # asked to stop; the worker has not said it stopped yet (the scene stays as it is)
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
    details: str = ""  # for a failure: what the worker wrote to stderr last (its traceback, a crash's last words)


class ReconstructionJob:
    """One background reconstruction on the session's worker. On success the results enter the scene, through
    ``place_results``, during the poll that sees ``done``; ``on_end(job)`` is called once when the job ends in
    any way. The job's work folder is removed when it ends."""

    def __init__(
        self,
        session: WorkerSession,
        submission: tuple[dict, tuple],
        workdir: Path,
        place_results: PlaceResults,
        on_end: Callable[[ReconstructionJob], None] = lambda job: None,
    ) -> None:
        self._session = session
        self._submission = submission  # (job, key): sent again if the worker went idle just as it was sent
        self._id, note = session.submit(*submission)
        self._heard = False
        self.worker_pid: int | None = None  # the worker process that ran this job (once it said it is ready)
        self._workdir = workdir
        self._place_results = place_results
        self._on_end = on_end
        self._started = time.monotonic()
        self.elapsed_s: float | None = None  # wall time from submission to the end, once it ended
        self.note = note  # what happened to the worker before this job (e.g. restarted after a crash)
        self.status = JobStatus(message=f"starting ({note})" if note else "starting")
        self.stages: list[str] = []  # the worker's stages, e.g. "loading model" (absent when the worker was warm)
        self.result: ReconstructionResult | None = None
        self._cancel_deadline: float | None = None

    @property
    def finished(self) -> bool:
        return self.status.state not in (JobState.RUNNING, JobState.CANCELLING)

    def poll(self) -> JobStatus:
        """Read what the worker reported since the last call; finish the job when it ended."""
        if self.status.state == JobState.CANCELLING:
            self._poll_cancel()
            return self.status
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
            self.result = self._place_results(event, time.monotonic() - self._started)
        except Exception as error:  # the scene is already rolled back; tell the user why
            self._fail("internal", f"the result could not be added to the scene: {error}")
            return
        low = self.result.low_agreement_views
        warning = f"; warning: the {' and '.join(low)} re-projection agrees poorly with the input" if low else ""
        agreement = ", ".join(f"{view} {value:.2f}" for view, value in self.result.agreement.items())
        note = f" ({self.note})" if self.note else ""
        seconds = time.monotonic() - self._started
        message = f"done in {seconds:.1f} s{note}; re-projection NCC {agreement}{warning}{self.result.warning}"
        self.status = JobStatus(JobState.DONE, self.status.total, self.status.total, 0.0, message)
        self._end()

    def _fail(self, kind: str, message: str) -> None:
        details = f"{kind}: {message}"
        tail = self._session.stderr_tail()
        if tail:
            details += f"\n\nThe background process's last messages:\n{tail}"
        self.status = JobStatus(JobState.FAILED, self.status.step, self.status.total, None, message, kind, details)
        self._end()

    def cancel(self, grace_s: float | None = None) -> None:
        """Ask the worker to stop the job and return at once: the job is CANCELLING until a poll sees the worker
        say it stopped (it stays warm), or until ``grace_s`` (by default :data:`~.session.CANCEL_GRACE_S`) has
        passed, when the poll ends the worker with all it started (0: now). Whatever the worker sends after the
        cancel, a finished result included, never reaches the scene; the job's files are removed when it ends."""
        if self.finished:
            return
        grace = session_module.CANCEL_GRACE_S if grace_s is None else grace_s
        deadline = time.monotonic() + grace
        if self.status.state == JobState.CANCELLING:
            self._cancel_deadline = min(self._cancel_deadline, deadline)
        else:
            self._cancel_deadline = deadline
            self.status = JobStatus(JobState.CANCELLING, self.status.step, self.status.total, None, "cancelling")
            if not self._session.cancel(self._id):  # no worker left to ask: nothing runs any more
                self._cancelled(CANCELLED)
                return
        self._poll_cancel()

    def _poll_cancel(self) -> None:
        if any(event["event"] in TERMINAL_EVENTS for event in self._session.events(self._id)):
            self._cancelled(CANCELLED)
        elif self._session.exit_code() is not None:
            self._cancelled(CANCELLED)  # the worker is gone anyway; the next job starts a new one
        elif time.monotonic() >= self._cancel_deadline:
            self._session.shutdown(grace_s=0.0)  # it had its time to stop: end it and all it started now
            self._cancelled(CANCELLED_FORCED)

    def _cancelled(self, message: str) -> None:
        self.status = JobStatus(JobState.CANCELLED, self.status.step, self.status.total, None, message)
        self._end()

    def wait(self, progress=None, interval_s: float = POLL_INTERVAL_S) -> ReconstructionResult:
        """Block until the job ends (for scripts and the console); ``progress(status)`` is called on each poll.
        Raises :class:`InputError` with the worker's message when the job failed or was cancelled."""
        while self.poll().state in (JobState.RUNNING, JobState.CANCELLING):
            if progress:
                progress(self.status)
            time.sleep(interval_s)
        if self.status.state != JobState.DONE:
            raise InputError(f"reconstruction {self.status.state.value}: {self.status.message}")
        return self.result

    def _end(self) -> None:
        self.elapsed_s = time.monotonic() - self._started
        shutil.rmtree(self._workdir, ignore_errors=True)
        self._on_end(self)


class ProbeJob:
    """The dependency and GPU check, run in the background like a job: :meth:`poll` returns None while it runs,
    then the report ``{"missing": [...], "outdated": [{"name", "installed", "required"}], "torch": ..., "cuda":
    bool, "gpu_name": ...}``; a worker that cannot
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
