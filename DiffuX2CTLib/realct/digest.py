"""SHA-256 of files and streams, and the one error line for a digest that is not the pinned one."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import BinaryIO

from ..core.errors import InputError

CHUNK = 1 << 20


def sha256_file(path: Path) -> str:
    """The hex SHA-256 of a file, read in chunks (archives are up to 100 MB)."""
    digest = hashlib.sha256()
    with open(path, "rb") as stream:
        for block in iter(lambda: stream.read(CHUNK), b""):
            digest.update(block)
    return digest.hexdigest()


def copy_hashed(source: BinaryIO, target: BinaryIO) -> tuple[str, int]:
    """Copy a stream to an open file; return its hex SHA-256 and byte count."""
    digest, size = hashlib.sha256(), 0
    for block in iter(lambda: source.read(CHUNK), b""):
        digest.update(block)
        target.write(block)
        size += len(block)
    return digest.hexdigest(), size


def mismatch(label: str, expected: str, actual: str) -> InputError:
    """The error for a file whose SHA-256 is not the pinned one."""
    return InputError(
        f"{label}: SHA-256 is {actual}, expected {expected}; the file differs from the pinned version (nothing was "
        "kept)"
    )
