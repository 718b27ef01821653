"""Input paths that exist but cannot be used, named for what they are before any reader sees them: a symbolic link
that leads back to itself (``ln -s loop loop``: Python's path functions raise on it, image readers call it missing)
and a file or folder without read permission (image readers call it "does not exist"). A path that is simply
missing is left to the reader, whose message says what it expected there."""

from __future__ import annotations

import errno
import os
from pathlib import Path

from .errors import InputError

LOOP = "is a symbolic link that leads back to itself (a loop)"


def link_loop(path: str | os.PathLike) -> bool:
    """Whether ``path``, or a folder on the way to it, is a symbolic link loop."""
    try:
        os.stat(path)
    except OSError as error:
        return error.errno == errno.ELOOP
    except ValueError:  # a NUL character in the name: not a loop; the reader names the problem
        return False
    return False


def _named(path: Path, label: str | None) -> str:
    """How a message names the input: the option and the path as given, or (from the API) the file's name."""
    return f"{label} {path}" if label else path.name


def check_input_path(path: str | os.PathLike, label: str | None = None) -> None:
    """Refuse an input that is a link loop or exists without read permission (a folder: without permission to list
    it), with one message naming it (``label``: the option it was given to, e.g. ``--ap``)."""
    path = Path(path)
    if link_loop(path):
        raise InputError(f"{_named(path, label)}: {LOOP}; give the file or folder it should point to")
    try:
        is_folder, exists = path.is_dir(), path.exists()
    except (OSError, ValueError):
        return
    if exists and not os.access(path, os.R_OK | (os.X_OK if is_folder else 0)):
        what = "folder" if is_folder else "file"
        raise InputError(
            f"{_named(path, label)}: cannot be read: no permission (the {what} exists; check its permissions)"
        )
