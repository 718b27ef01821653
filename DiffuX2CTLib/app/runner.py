"""Starting the background worker and reading it without blocking.

The scene logic takes a :class:`ProcessRunner` as an argument, so tests, the Python console and the GUI all drive
the same logic; the default runner uses ``subprocess`` with reader threads, so ``poll`` never waits on the
child. Commands are argument lists, never passed through a shell.
"""

from __future__ import annotations

import os
import queue
import subprocess
import threading
from collections import deque
from typing import Protocol

STDERR_TAIL_LINES = 40
TERMINATE_GRACE_S = 5.0


class RunningProcess(Protocol):
    """A started worker, seen from the logic."""

    def read_lines(self) -> list[str]:
        """stdout lines that arrived since the last call (never blocks)."""

    def exit_code(self) -> int | None:
        """The exit code once the process ended, else None."""

    def stderr_tail(self) -> str:
        """The last lines the process wrote to stderr (for a crash message)."""

    def terminate(self) -> None:
        """Stop the process (and wait for it to go)."""


class ProcessRunner(Protocol):
    """Starts worker processes."""

    def start(self, command: list[str], env: dict[str, str] | None = None, cwd: str | None = None) -> RunningProcess:
        """Start ``command`` (an argument list) and return a handle to it."""


class _SubprocessHandle:
    def __init__(self, process: subprocess.Popen) -> None:
        self._process = process
        self._lines: queue.Queue[str] = queue.Queue()
        self._stderr: deque[str] = deque(maxlen=STDERR_TAIL_LINES)
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

    def exit_code(self) -> int | None:
        code = self._process.poll()
        if code is not None:  # let the readers drain what the process wrote before it ended
            for reader in self._readers:
                reader.join(timeout=1.0)
        return code

    def stderr_tail(self) -> str:
        return "\n".join(self._stderr)

    def terminate(self) -> None:
        if self._process.poll() is None:
            self._process.terminate()
            try:
                self._process.wait(TERMINATE_GRACE_S)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()


class SubprocessRunner:
    """The default runner: ``subprocess.Popen`` with pipes read on background threads."""

    def start(self, command: list[str], env: dict[str, str] | None = None, cwd: str | None = None) -> RunningProcess:
        process = subprocess.Popen(
            command,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            stdin=subprocess.DEVNULL,
            text=True,
            encoding="utf-8",
            errors="replace",
            env=env,
            cwd=cwd,
            creationflags=getattr(subprocess, "CREATE_NO_WINDOW", 0),  # no console window pops up on Windows
        )
        return _SubprocessHandle(process)


def worker_environment(library_parent: str, base: dict[str, str] | None = None) -> dict[str, str]:
    """The environment for a worker: ``library_parent`` (the folder holding ``DiffuX2CTLib``) first on PYTHONPATH,
    unbuffered output so progress arrives as it happens."""
    env = dict(os.environ if base is None else base)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (library_parent, env.get("PYTHONPATH", "")) if p)
    env["PYTHONUNBUFFERED"] = "1"
    env.setdefault("PYTHONIOENCODING", "utf-8")
    return env
