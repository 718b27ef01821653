"""Which packages, at which versions, the background worker needs, and whether this Python has them.

The versions are those of ``pyproject.toml``'s dependencies (a test keeps them equal); only the packages the
worker imports are checked (tqdm and matplotlib serve the command line's progress bars and preview pictures).
Versions are read from the installed distributions' metadata, so checking never imports torch or MONAI.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import re

WORKER_REQUIREMENTS = {  # import name -> pip requirement
    "torch": "torch>=2.2",
    "monai": "monai>=1.4",
    "SimpleITK": "SimpleITK>=2.3",
    "numpy": "numpy>=1.24",
    "safetensors": "safetensors>=0.4",
}
DISTRIBUTIONS = {"monai": ("monai", "monai-weekly")}  # distributions that provide an import name, if not its own


def specifier(name: str) -> str:
    """The version part of ``name``'s requirement, e.g. ``">=1.4"`` for ``monai``."""
    return WORKER_REQUIREMENTS[name][len(name) :]


def missing_modules() -> list[str]:
    """Import names of required packages this Python cannot import (found without importing them)."""
    return [name for name in WORKER_REQUIREMENTS if importlib.util.find_spec(name) is None]


def installed_version(name: str) -> str | None:
    """The installed version of the package that provides import name ``name``, or None when its distribution
    metadata is not found (e.g. a package built into the application)."""
    for distribution in DISTRIBUTIONS.get(name, (name,)):
        try:
            return importlib.metadata.version(distribution)
        except importlib.metadata.PackageNotFoundError:
            continue
    return None


def satisfies(version: str, spec: str) -> bool:
    """Whether ``version`` meets ``spec`` (e.g. ``"2.3.0+cu121"`` and ``">=2.2"``); pre-releases count. Without the
    ``packaging`` package only ``>=`` is understood, on the leading release numbers."""
    try:
        from packaging.specifiers import SpecifierSet
        from packaging.version import InvalidVersion, Version
    except ImportError:
        return _release(version) >= _release(spec.removeprefix(">=")) if spec.startswith(">=") else True
    try:
        return SpecifierSet(spec).contains(Version(version), prereleases=True)
    except InvalidVersion:
        return True  # a version string pip itself would not understand: do not block on it


def _release(version: str) -> tuple[int, ...]:
    return tuple(int(part) for part in re.findall(r"\d+", version.split("+")[0])[:3])


def outdated_modules() -> list[dict]:
    """Required packages that are installed in a version that does not meet the requirement:
    ``[{"name": "monai", "installed": "1.3.0", "required": ">=1.4"}]``."""
    outdated = []
    for name in WORKER_REQUIREMENTS:
        version = installed_version(name) if importlib.util.find_spec(name) is not None else None
        if version is not None and not satisfies(version, specifier(name)):
            outdated.append({"name": name, "installed": version, "required": specifier(name)})
    return outdated
