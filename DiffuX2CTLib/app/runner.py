"""Starting the background worker, reading it without blocking, and stopping it with everything it started.

The scene logic takes a :class:`ProcessRunner` as an argument, so tests, the Python console and the GUI all drive
the same logic; the default runner uses ``subprocess`` with reader threads, so ``poll`` never waits on the
child. Commands are argument lists, never passed through a shell.

Inside Slicer the worker's Python is ``PythonSlicer``, a CTKAppLauncher that starts the real interpreter as its
own child and forwards no signal. Stopping only the process we started would leave the worker running, so the
runner starts every worker in a new session (POSIX: its own process group) and stops the whole group; on
Windows ``taskkill /T`` ends the tree. The worker also ends itself when the process that started it goes away
(see ``PARENT_PID_VARIABLE``).

Why not ``qt.QProcess`` inside Slicer: with Slicer's Qt 5 it cannot start the child in a new session or process
group (``setChildProcessModifier`` arrived in Qt 6), so it could not stop what the launcher started; the reader
threads here only fill a queue that the panel's timer empties, so the GUI thread never blocks on the worker.
"""

from __future__ import annotations

import os
import queue
import signal
import subprocess
import sys
import threading
import time
from collections import deque
from typing import Protocol

STDERR_TAIL_LINES = 40
TERMINATE_GRACE_S = 3.0
PARENT_PID_VARIABLE = "DIFFUX2CT_PARENT_PID"  # the worker exits when this process is gone


class RunningProcess(Protocol):
    """A started worker, seen from the logic."""

    pid: int

    def read_lines(self) -> list[str]:
        """stdout lines that arrived since the last call (never blocks)."""

    def send_line(self, line: str) -> bool:
        """Write one line to the process's stdin; False when it can no longer be written."""

    def exit_code(self) -> int | None:
        """The exit code once the process ended, else None."""

    def stderr_tail(self) -> str:
        """The last lines the process wrote to stderr (for a crash message)."""

    def terminate(self, grace_s: float = TERMINATE_GRACE_S) -> None:
        """Stop the process and every process it started: ask, force after ``grace_s`` (0: at once), and wait for
        the one we started to go."""


class ProcessRunner(Protocol):
    """Starts worker processes."""

    def start(self, command: list[str], env: dict[str, str] | None = None, cwd: str | None = None) -> RunningProcess:
        """Start ``command`` (an argument list) and return a handle to it."""


def _kill_tree(process: subprocess.Popen, grace_s: float) -> None:
    """Ask the process group (POSIX) or tree (Windows) to stop, then force it after ``grace_s``."""
    if sys.platform == "win32":
        subprocess.run(["taskkill", "/T", "/F", "/PID", str(process.pid)], capture_output=True, check=False)
        try:
            process.wait(grace_s)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        return
    try:
        os.killpg(process.pid, signal.SIGTERM)
    except (ProcessLookupError, PermissionError):
        pass
    try:
        process.wait(grace_s)
    except subprocess.TimeoutExpired:
        pass
    try:  # whatever of the group is left (a launcher's child, a grandchild), and our child if it lingers
        os.killpg(process.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    process.wait()


class _SubprocessHandle:
    def __init__(self, process: subprocess.Popen) -> None:
        self._process = process
        self.pid = process.pid
        self._lines: queue.Queue[str] = queue.Queue()
        self._stderr: deque[str] = deque(maxlen=STDERR_TAIL_LINES)
        self._stdin_lock = threading.Lock()
        self._readers = [
            threading.Thread(target=self._pump, args=(process.stdout, self._lines.put), daemon=True),
            threading.Thread(target=self._pump, args=(process.stderr, self._stderr.append), daemon=True),
        ]
        for reader in self._readers:
            reader.start()

    @staticmethod
    def _pump(stream, sink) -> None:
        for line in iter(stream.readline, ""):
            sink(line.rstrip("\n"))
        stream.close()

    def read_lines(self) -> list[str]:
        lines = []
        while True:
            try:
                lines.append(self._lines.get_nowait())
            except queue.Empty:
                return lines

    def send_line(self, line: str) -> bool:
        with self._stdin_lock:
            try:
                self._process.stdin.write(line + "\n")
                self._process.stdin.flush()
                return True
            except (OSError, ValueError):  # the process is gone (broken pipe) or stdin was closed
                return False

    def exit_code(self) -> int | None:
        code = self._process.poll()
        if code is not None:  # let the readers drain what the process wrote before it ended
            for reader in self._readers:
                reader.join(timeout=1.0)
        return code

    def stderr_tail(self) -> str:
        return "\n".join(self._stderr)

    def terminate(self, grace_s: float = TERMINATE_GRACE_S) -> None:
        with self._stdin_lock:
            try:
                self._process.stdin.close()
            except (OSError, ValueError):
                pass
        if self._process.poll() is None or sys.platform != "win32":
            _kill_tree(self._process, grace_s)  # POSIX: also when our child ended, its group may live on


class SubprocessRunner:
    """The default runner: ``subprocess.Popen`` in a new session / process group, pipes read on background
    threads, stdin open for the persistent worker's commands."""

    def start(self, command: list[str], env: dict[str, str] | None = None, cwd: str | None = None) -> RunningProcess:
        windows = sys.platform == "win32"
        flags = (
            (getattr(subprocess, "CREATE_NO_WINDOW", 0) | getattr(subprocess, "CREATE_NEW_PROCESS_GROUP", 0))
            if windows
            else 0
        )
        process = subprocess.Popen(
            command,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            stdin=subprocess.PIPE,
            text=True,
            encoding="utf-8",
            errors="replace",
            env=env,
            cwd=cwd,
            creationflags=flags,  # no console window pops up on Windows
            start_new_session=not windows,  # its own process group, so a stop reaches what a launcher started
        )
        return _SubprocessHandle(process)


def worker_environment(library_parent: str, base: dict[str, str] | None = None) -> dict[str, str]:
    """The environment for a worker: ``library_parent`` (the folder holding ``DiffuX2CTLib``) first on PYTHONPATH,
    unbuffered output so progress arrives as it happens, and this process's id so the worker ends with it."""
    env = dict(os.environ if base is None else base)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (library_parent, env.get("PYTHONPATH", "")) if p)
    env["PYTHONUNBUFFERED"] = "1"
    env.setdefault("PYTHONIOENCODING", "utf-8")
    env[PARENT_PID_VARIABLE] = str(os.getpid())
    return env


def process_alive(pid: int) -> bool:
    """Whether a process with this id still runs (a zombie waiting to be reaped counts as ended)."""
    if sys.platform == "win32":
        import ctypes

        synchronize, wait_timeout = 0x00100000, 0x102
        handle = ctypes.windll.kernel32.OpenProcess(synchronize, False, pid)
        if not handle:
            return False
        try:
            return ctypes.windll.kernel32.WaitForSingleObject(handle, 0) == wait_timeout
        finally:
            ctypes.windll.kernel32.CloseHandle(handle)
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as stat:
            zombie = stat.read().rsplit(")", 1)[1].split()[0] == "Z"
        return not zombie or len(os.listdir(f"/proc/{pid}/task")) > 1  # a zombie leader whose threads still exit
    except (OSError, IndexError):
        return sys.platform != "linux"  # no /proc (macOS): the signal check above is all there is; Linux: it just went


def wait_until_gone(pid: int, timeout_s: float) -> bool:
    """Wait up to ``timeout_s`` for process ``pid`` to end; True when it did."""
    deadline = time.monotonic() + timeout_s
    while process_alive(pid):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True
