"""Files written as one unit: every file first to a hidden temporary sibling, then all renamed into place with
interrupts held back, so an interrupted or failed run leaves every old file as it was; temporaries left by a killed
run are removed by the next run that writes there; a filesystem error becomes one :class:`InputError` naming the
output."""

from __future__ import annotations

import contextlib
import errno
import glob
import os
import re
import signal
import threading
import uuid
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

from .errors import InputError
from .json_output import dumps
from .output_checks import first_existing, suffix_of

WriteFile = Callable[[Path], None]
"""Writes one output's whole content to the (temporary) path it is given."""


_PARTIAL = re.compile(r"^\.(?P<name>.+)\.(?P<pid>\d+)-[0-9a-f]{8}\.partial")


def _temporary_sibling(path: Path) -> Path:
    """A unique hidden name beside ``path`` that carries this process's id and the same extension (image writers
    pick their format by extension)."""
    return path.with_name(f".{path.name}.{os.getpid()}-{uuid.uuid4().hex[:8]}.partial{suffix_of(path)}")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OSError):  # another user's process, or a platform without signal 0: keep its file
        return True
    return True


def remove_stale_partials(path: Path) -> None:
    """Delete the temporaries of ``path`` that a killed run left behind (their process is gone)."""
    if not path.parent.is_dir():
        return
    for candidate in path.parent.glob(f".{glob.escape(path.name)}.*.partial*"):
        match = _PARTIAL.match(candidate.name)
        if match and match["name"] == path.name and not _alive(int(match["pid"])):
            candidate.unlink(missing_ok=True)


@contextmanager
def _interrupts_held() -> Iterator[None]:
    """Hold SIGINT and SIGTERM back while the renames run (main thread, POSIX), so they happen all or not at all."""
    if not hasattr(signal, "pthread_sigmask") or threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM})
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)


def _missing_folders(folder: Path) -> list[Path]:
    """``folder`` and its ancestors that do not exist yet, deepest first."""
    missing = []
    while not folder.exists() and folder != folder.parent:
        missing.append(folder)
        folder = folder.parent
    return missing


def _failure(path: Path, error: BaseException, temporary: Path | None) -> InputError:
    """One message naming the output (never the temporary file) and the system's reason."""
    detail = (error.strerror if isinstance(error, OSError) and error.strerror else str(error)).strip()
    detail = detail.splitlines()[-1] if detail else type(error).__name__
    if temporary is not None:
        detail = detail.replace(str(temporary), path.name)
    return InputError(f"{path}: cannot be written ({detail[:200]})")


def write_together(files: Mapping[str | os.PathLike, WriteFile]) -> list[Path]:
    """Write several files as one unit: all of them, or (on any failure or interrupt) none, old files untouched.

    Each writer gets a temporary path beside its target; the renames run back to back once every file is complete.
    Returns the written paths in the given order.
    """
    targets = [Path(path) for path in files]
    temporaries: dict[Path, Path] = {}
    created: list[Path] = []
    current, temporary, complete = Path("."), None, False
    try:
        for current, write in zip(targets, files.values()):
            missing = _missing_folders(current.parent)
            if not first_existing(current.parent).is_dir():
                raise NotADirectoryError(errno.ENOTDIR, f"{first_existing(current.parent)} is a file, not a folder")
            current.parent.mkdir(parents=True, exist_ok=True)
            created += missing
            remove_stale_partials(current)
            temporary = temporaries[current] = _temporary_sibling(current)
            write(temporary)
        temporary = None
        with _interrupts_held():
            for current, written in temporaries.items():
                os.replace(written, current)
        complete = True
    except (OSError, RuntimeError) as error:  # RuntimeError: SimpleITK's and safetensors' write failures
        raise _failure(current, error, temporary) from None
    finally:
        for written in temporaries.values():
            written.unlink(missing_ok=True)
        for folder in (
            sorted(created, key=lambda p: len(p.parts), reverse=True) if not complete else ()
        ):  # made here, empty
            with contextlib.suppress(OSError):
                folder.rmdir()
    return targets


def write_file(path: str | os.PathLike, write: WriteFile) -> Path:
    """Write one file atomically (see :func:`write_together`)."""
    return write_together({path: write})[0]


def write_text(text: str, path: str | os.PathLike) -> Path:
    """Atomic UTF-8 text write (JSON sidecars, reports, logs)."""
    return write_file(path, lambda temporary: temporary.write_text(text, encoding="utf-8"))


def write_json(data: dict, path: str | os.PathLike) -> Path:
    """Atomic, indented, strict JSON write (a non-finite number becomes null with a note, see
    :mod:`.json_output`)."""
    return write_text(dumps(data) + "\n", path)
