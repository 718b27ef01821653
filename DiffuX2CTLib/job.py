"""One reconstruction job as data: the options, what is known of each radiograph's acquisition, the job file the
Slicer scene logic writes for the background worker, and the JSON-line events the worker prints.

Pure Python (no torch, no Slicer), so both sides of the process boundary share one definition.
"""

from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass, field
from pathlib import Path

from .errors import InputError

METHODS = ("diffusion", "regression")
SAMPLERS = ("ddim", "ddpm")
DEVICES = ("auto", "cpu", "cuda")
VIEWS = ("ap", "lateral")
ERROR_KINDS = ("bad_input", "model", "out_of_memory", "missing_dependency", "internal")


@dataclass(frozen=True)
class ReconstructionOptions:
    """How to reconstruct: sampler, steps (None: the model's default), seed, device, samples, method, and
    whether to check the input pair first."""

    steps: int | None = None
    seed: int = 0
    device: str = "auto"
    samples: int = 1
    method: str = "diffusion"
    sampler: str = "ddim"
    check_inputs: bool = True  # refuse pairs that fail DiffuX2CTLib.checks; False keeps the problems as notes

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise InputError(f"unknown method '{self.method}' (use {' or '.join(METHODS)})")
        if self.sampler not in SAMPLERS:
            raise InputError(f"unknown sampler '{self.sampler}' (use {' or '.join(SAMPLERS)})")
        if self.samples < 1 or (self.steps is not None and self.steps < 1):
            raise InputError("samples and steps must be at least 1")
        if self.device not in DEVICES:
            raise InputError(f"unknown device '{self.device}' (use auto, cpu or cuda)")


@dataclass(frozen=True)
class Acquisition:
    """What is known of how one radiograph was taken when its pixels come without it (a Slicer node, a panel
    entry, a DICOM database): distances in mm, ``(row, column)`` pixel spacing at the detector, and whether the
    pixel values are bone-dark (DICOM MONOCHROME1 kept raw) and must be inverted. None keeps what the file says."""

    source_to_detector_mm: float | None = None
    source_to_isocenter_mm: float | None = None
    pixel_spacing_mm: tuple[float, float] | None = None
    bone_dark: bool = False

    def __post_init__(self) -> None:
        sdd, sid = self.source_to_detector_mm, self.source_to_isocenter_mm
        if (sdd is None) != (sid is None):
            raise InputError("give both source-to-detector and source-to-isocenter distances, or neither")
        if sdd is not None and not sdd > sid > 0:
            raise InputError(f"source-to-detector distance ({sdd} mm) must exceed source-to-isocenter distance ({sid} mm) > 0")
        if self.pixel_spacing_mm is not None:
            if len(self.pixel_spacing_mm) != 2 or min(self.pixel_spacing_mm) <= 0:
                raise InputError(f"pixel spacing must be two positive sizes in mm, got {self.pixel_spacing_mm}")
            object.__setattr__(self, "pixel_spacing_mm", tuple(float(v) for v in self.pixel_spacing_mm))


@dataclass(frozen=True)
class JobSpec:
    """Everything the worker needs: the two radiograph files, where to write, which model and how."""

    ap: str
    lateral: str
    output_dir: str
    model: str | None = None
    options: ReconstructionOptions = field(default_factory=ReconstructionOptions)
    acquisition: dict[str, Acquisition] = field(default_factory=dict)

    def __post_init__(self) -> None:
        unknown = set(self.acquisition) - set(VIEWS)
        if unknown:
            raise InputError(f"acquisition for unknown view(s) {sorted(unknown)} (use ap and lateral)")

    def to_dict(self) -> dict:
        """JSON-ready form (see :meth:`from_dict`)."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> JobSpec:
        """Parse a job written by :meth:`to_dict`; a malformed job is a :class:`InputError`."""
        try:
            return cls(
                ap=str(data["ap"]),
                lateral=str(data["lateral"]),
                output_dir=str(data["output_dir"]),
                model=data.get("model"),
                options=ReconstructionOptions(**data.get("options", {})),
                acquisition={view: Acquisition(**values) for view, values in data.get("acquisition", {}).items()},
            )
        except (KeyError, TypeError) as error:
            raise InputError(f"malformed job file ({error})") from None

    def write(self, path: str | os.PathLike) -> Path:
        """Write the job file (the worker's only argument)."""
        path = Path(path)
        path.write_text(json.dumps(self.to_dict(), indent=2), encoding="utf-8")
        return path

    @classmethod
    def read(cls, path: str | os.PathLike) -> JobSpec:
        """Read a job file written by :meth:`write`."""
        try:
            return cls.from_dict(json.loads(Path(path).read_text(encoding="utf-8")))
        except (OSError, json.JSONDecodeError, UnicodeDecodeError) as error:
            raise InputError(f"{Path(path).name}: unreadable job file ({error})") from None


def event_line(event: str, **fields) -> str:
    """One protocol line: ``{"event": ..., ...}`` as compact JSON (no newline)."""
    return json.dumps({"event": event, **fields}, separators=(",", ":"))


def parse_event(line: str) -> dict | None:
    """The event in one stdout line, or None when the line is not a protocol event (never guessed from text)."""
    try:
        data = json.loads(line)
    except json.JSONDecodeError:
        return None
    return data if isinstance(data, dict) and isinstance(data.get("event"), str) else None
