"""Atomic file writes without any imaging library: a temporary sibling, then a rename, so no reader ever sees half
a file and an interrupted write leaves the old target as it was."""

from __future__ import annotations

import json
import os
import uuid
from pathlib import Path


def temporary_sibling(path: Path, suffix: str) -> Path:
    """A unique hidden name beside ``path`` ending in ``suffix`` (image writers pick their format by extension)."""
    return path.with_name(f".{path.name}.{uuid.uuid4().hex[:12]}.partial{suffix}")


def write_text(text: str, path: str | os.PathLike) -> Path:
    """Atomic text write (JSON sidecars, reports)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = temporary_sibling(path, path.suffix)
    try:
        temporary.write_text(text, encoding="utf-8")
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)
    return path


def write_json(data: dict, path: str | os.PathLike) -> Path:
    """Atomic, indented JSON write."""
    return write_text(json.dumps(data, indent=2) + "\n", path)
