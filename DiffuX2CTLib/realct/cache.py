"""The real CTs' folders inside the cache (:func:`~DiffuX2CTLib.core.cache.cache_root`)."""

from __future__ import annotations

from pathlib import Path


def downloads_folder(root: Path) -> Path:
    """The verified archives, kept so a second run downloads nothing."""
    return root / "downloads"


def volumes_folder(root: Path) -> Path:
    """The converted volumes and ``manifest.json``."""
    return root / "real-ct"
