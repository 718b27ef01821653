"""One persistent background worker per Slicer session: started on first use, jobs sent to it as JSON lines,
restarted when it crashed, was ended, went idle, or when the model or device changes.

No Qt and no MRML here: the session speaks the worker's protocol (``python -m DiffuX2CTLib.app.worker --serve``)
through a :class:`~DiffuX2CTLib.app.runner.ProcessRunner`, so the module inside Slicer, scripts and tests share it.
"""

from __future__ import annotations

import json
import weakref
from pathlib import Path

from ..core.errors import InputError
from .protocol import parse_event
from .runner import TERMINATE_GRACE_S, ProcessRunner, RunningProcess, worker_environment

CANCEL_GRACE_S = 5.0  # a job that has not stopped this long after a cancel is ended with its process (one
# sampling step takes about 0.4 s on 2 CPU cores, so only a stuck worker or a slow model load takes that long);
# nobody waits for it: the job's poll ends the worker once the time is up
DEFAULT_IDLE_TIMEOUT_S = 600.0  # an idle worker exits after this long and frees its (GPU) memory
TERMINAL_EVENTS = ("done", "error", "cancelled")


def command_line(command: str, **fields) -> str:
    """One line for a serving worker's stdin: ``{"command": ..., ...}``."""
    return json.dumps({"command": command, **fields}, separators=(",", ":"))


def crash_message(code: int, stderr_tail: str, memory: dict | None) -> str:
    """Why a worker ended without a final event, in the user's words. Behind Slicer's launcher (PythonSlicer) a
    worker killed by a signal shows as exit code 1 with the launcher's "exit abnormally" line; the memory the
    worker last reported tells whether the system may have ended it for want of memory."""
    lines = [line for line in stderr_tail.strip().splitlines() if line.strip()]
    behind_launcher = code == 1 and any("exit abnormally" in line for line in lines)
    killed = code in (-9, 137) or behind_launcher
    own_lines = [line for line in lines if "exit abnormally" not in line]
    message = f"the reconstruction process ended unexpectedly with exit code {code}"
    if behind_launcher:
        message += " (Slicer's launcher reports that the Python process it started crashed or was killed)"
    if memory and memory.get("low"):
        message += (
            f"; it was running low on memory ({memory.get('available_gib')} GiB of {memory.get('total_gib')} GiB "
            f"free at its last report, using {memory.get('rss_gib')} GiB): try the CPU, fewer samples or closing "
            "other programs"
        )
    elif killed:
        message += " (it may have run out of memory)"
    if own_lines and not behind_launcher:
        message += f": {own_lines[-1]}"
    return message


class WorkerSession:
    """The persistent worker: :meth:`submit` sends a job (starting or restarting the worker as needed),
    :meth:`events` reads what it reported, :meth:`cancel` stops a job, :meth:`shutdown` ends the worker.
    ``key`` (model, device) names what the worker has loaded: a job with another key restarts it."""

    def __init__(
        self,
        runner: ProcessRunner,
        python_executable: str,
        library_parent: str,
        idle_timeout_s: float | None = DEFAULT_IDLE_TIMEOUT_S,
    ) -> None:
        self.runner = runner
        self.python_executable = python_executable
        self.library_parent = library_parent
        self.idle_timeout_s = idle_timeout_s
        self.process: RunningProcess | None = None
        self.key: tuple | None = None
        self.pid: int | None = None  # the worker's own pid (behind a launcher it differs from the process we started)
        self.starts = 0
        self.preloaded = False  # the worker said it loaded the model before any job
        self.last_memory: dict | None = None
        self._idle_exit = False
        self._pending: list[dict] = []
        self._next_id = 0
        self._finalizer: weakref.finalize | None = None

    # -- lifecycle ---------------------------------------------------------------------------------------------
    def _start(self, key: tuple) -> None:
        command = [self.python_executable, "-m", "DiffuX2CTLib.app.worker", "--serve"]
        if self.idle_timeout_s:
            command += ["--idle-timeout", f"{self.idle_timeout_s:g}"]
        try:
            self.process = self.runner.start(command, env=worker_environment(self.library_parent))
        except OSError as error:  # e.g. the Python executable is missing or not executable
            raise InputError(
                f"could not start DiffuX2CT's background process with {self.python_executable}: {error}"
            ) from None
        self._finalizer = weakref.finalize(self, self.process.terminate)  # a forgotten session takes its worker along
        self.key, self.pid, self.last_memory, self._idle_exit, self._pending, self.preloaded = (
            key,
            None,
            None,
            False,
            [],
            False,
        )
        self.starts += 1

    @property
    def went_idle(self) -> bool:
        """Whether the worker said it exits for being idle (a job sent in that moment is sent again)."""
        return self._idle_exit

    def alive(self) -> bool:
        """Whether the worker process is running (reads what it said before it ended)."""
        if self.process is None:
            return False
        self._read()
        return self.process.exit_code() is None

    def ensure(self, key: tuple) -> str:
        """Have a worker for ``key`` running; returns a note for the user when a new one had to replace one that
        ended unexpectedly (empty otherwise)."""
        note = ""
        if self.process is not None and (not self.alive() or self._idle_exit):
            if self._idle_exit:  # it said it is going: let it go
                self.process.terminate()
            code = self.process.exit_code()
            if not self._idle_exit and code != 0:
                note = (
                    f"a new background process was started: the previous one had ended unexpectedly (exit code {code})"
                )
            self.process = None
        if self.process is not None and key != self.key:
            self.shutdown()  # another model or device: free the old one's memory
        if self.process is None:
            self._start(key)
        return note

    def preload(self, model: str | None, device: str) -> None:
        """Start the worker for (model, device) and have it load the model now, so the first job skips start-up
        (the panel does this when it opens)."""
        key = (str(Path(model).resolve()) if model else None, device)
        self.ensure(key)
        self.process.send_line(command_line("preload", model=model, device=device))

    def set_idle_timeout(self, seconds: float | None) -> None:
        """How long an idle worker waits before it exits (None: until Slicer closes); a running worker is told."""
        if seconds == self.idle_timeout_s:
            return
        self.idle_timeout_s = seconds
        if self.process is not None and self.process.exit_code() is None:
            self.process.send_line(command_line("idle_timeout", seconds=seconds))

    def shutdown(self, grace_s: float = TERMINATE_GRACE_S) -> None:
        """End the worker and everything it started (module closed, Slicer exiting, model changed); a worker that
        does not go within ``grace_s`` is killed (0: at once, for one that already ignored a cancel)."""
        if self.process is not None:
            self.process.send_line(command_line("exit"))
            self.process.terminate(grace_s)
            self._finalizer.detach()
        self.process, self.key, self.pid = None, None, None

    # -- jobs --------------------------------------------------------------------------------------------------
    def submit(self, job: dict, key: tuple) -> tuple[int, str]:
        """Send ``job`` (a :class:`~DiffuX2CTLib.app.protocol.JobSpec` as a dict) to a worker for ``key``; returns
        the job's id and a note (see :meth:`ensure`)."""
        note = self.ensure(key)
        self._next_id += 1
        self.process.send_line(
            command_line("run", id=self._next_id, job=job)
        )  # a worker gone already: the job sees the exit
        return self._next_id, note

    def _read(self) -> None:
        for line in self.process.read_lines():
            event = parse_event(line)
            if event is None:
                continue
            if event["event"] == "ready":
                self.pid = event.get("pid")
            elif event["event"] == "idle_exit":
                self._idle_exit = True
            elif event["event"] == "preloaded":
                self.preloaded = True
            else:
                if isinstance(event.get("memory"), dict):
                    self.last_memory = event["memory"]
                self._pending.append(event)

    def events(self, job_id: int) -> list[dict]:
        """Events of job ``job_id`` since the last call (those of earlier jobs are dropped)."""
        if self.process is None:
            return []
        self._read()
        events, self._pending = [e for e in self._pending if e.get("id") == job_id], []
        return events

    def exit_code(self) -> int | None:
        """The worker's exit code once it ended (None while it runs or when none was started)."""
        return None if self.process is None else self.process.exit_code()

    def stderr_tail(self) -> str:
        """The last lines the worker wrote to stderr (logs, a traceback), for a failure's details."""
        return self.process.stderr_tail() if self.process is not None else ""

    def crash_message(self) -> str:
        """Why the worker ended (see :func:`crash_message`); the next job starts a new one."""
        return crash_message(self.process.exit_code(), self.process.stderr_tail(), self.last_memory)

    def cancel(self, job_id: int) -> bool:
        """Ask the worker to stop job ``job_id`` and return at once (the job's poll sees it stop, or ends the worker
        at its deadline). False when there is no worker left to ask."""
        if self.process is None or not self.alive():
            return False
        return self.process.send_line(command_line("cancel", id=job_id))
