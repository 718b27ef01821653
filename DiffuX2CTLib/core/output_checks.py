"""Where a command's outputs go, checked before any work starts: each output's extension, that no output is one
of the inputs or another output (paths resolved, links followed), that no symbolic link loop stands in its way,
and that its folder can be written."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path

from .errors import InputError
from .input_files import LOOP, link_loop

CT_OUTPUT_SUFFIXES = (".nrrd", ".nii.gz", ".nii", ".mha")
PNG_SUFFIXES = (".png",)
JSON_SUFFIXES = (".json",)


def suffix_of(path: str | os.PathLike) -> str:
    """The lower-case extension, ``.nii.gz`` counted as one."""
    name = Path(path).name.lower()
    return ".nii.gz" if name.endswith(".nii.gz") else Path(name).suffix


def _same_file(a: Path, b: Path) -> bool:
    """Whether two paths name one file: equal once resolved (symbolic links), or one inode (hard links)."""
    try:
        if a.resolve() == b.resolve():
            return True
        return os.path.samefile(a, b)
    except (OSError, RuntimeError):  # one of them does not exist (yet), or is a link loop (RuntimeError before 3.13)
        return False


def first_existing(path: Path) -> Path:
    """The path itself or its nearest existing ancestor."""
    path = path.absolute()
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def _writability_problem(path: Path) -> str | None:
    """Why ``path`` cannot be written as a file, or None."""
    if path.is_dir():
        return "is a folder; expected a file name"
    existing = first_existing(path.parent)
    if not existing.is_dir():
        return f"cannot be written: {existing} is a file, not a folder"
    if not os.access(existing, os.W_OK | os.X_OK):
        return f"cannot be written: no permission to write in {existing}"
    if path.exists() and not os.access(path, os.W_OK):
        return "cannot be written: the file exists and is read-only"
    return None


def check_outputs(
    outputs: Mapping[str, tuple[str | os.PathLike, Sequence[str]]],
    inputs: Mapping[str, str | os.PathLike] | None = None,
) -> None:
    """Refuse, before any work, outputs that could not be written or would destroy something.

    ``outputs`` maps a label (``--out``, ``--preview``, ``uncertainty volume``) to its path and the extensions
    allowed for it; ``inputs`` maps a label to an input path. Raises :class:`InputError` naming the output and why.
    """
    seen: list[tuple[str, Path]] = []
    for label, (path, suffixes) in outputs.items():
        path = Path(path)
        _refuse_loop(label, path)
        if suffix_of(path) not in suffixes:
            shown = suffix_of(path) or "no extension"
            raise InputError(f"{label} {path}: unsupported output type '{shown}' (use {', '.join(suffixes)})")
        for input_label, input_path in (inputs or {}).items():
            if _same_file(path, Path(input_path)):
                raise InputError(
                    f"{label} {path}: is the input {input_label}; it would be overwritten (choose another output)"
                )
        for other_label, other in seen:
            if _same_file(path, other):
                raise InputError(f"{label} {path}: is also the output {other_label}; each output needs its own path")
        problem = _writability_problem(path)
        if problem:
            raise InputError(f"{label} {path}: {problem}")
        seen.append((label, path))


def check_output_folder(label: str, folder: str | os.PathLike) -> None:
    """Refuse an output folder that is a file or sits where nothing can be written."""
    folder = Path(folder)
    _refuse_loop(label, folder)
    existing = first_existing(folder)
    if not existing.is_dir():
        raise InputError(f"{label} {folder}: cannot be used as a folder: {existing} is a file")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise InputError(f"{label} {folder}: cannot be written: no permission to write in {existing}")


def _refuse_loop(label: str, path: Path) -> None:
    """A link loop where an output goes (the path, or a folder on the way to it) would fail every write."""
    if link_loop(path):
        raise InputError(f"{label} {path}: {LOOP}; remove it or choose another output")
