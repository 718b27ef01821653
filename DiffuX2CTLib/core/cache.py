"""Where downloaded and prepared data live: one cache folder outside the repository, chosen in one place."""

from __future__ import annotations

import os
from pathlib import Path


def cache_root(override: str | os.PathLike | None = None) -> Path:
    """The cache folder: ``override``, else ``$DIFFUX2CT_CACHE``, else ``$XDG_CACHE_HOME/diffux2ct``, else
    ``~/.cache/diffux2ct``."""
    if override is not None:
        return Path(override).expanduser()
    if os.environ.get("DIFFUX2CT_CACHE"):
        return Path(os.environ["DIFFUX2CT_CACHE"]).expanduser()
    if os.environ.get("XDG_CACHE_HOME"):
        return Path(os.environ["XDG_CACHE_HOME"]).expanduser() / "diffux2ct"
    return Path.home() / ".cache" / "diffux2ct"
