"""The worker protocol: the job file the Slicer scene logic writes for the background worker, and the JSON-line
events the worker prints. Pure Python (no torch, no Slicer), so both sides of the process boundary share one
definition.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path

from ..core.errors import InputError
from ..imaging.acquisition import Acquisition
from ..inference.options import ReconstructionOptions

VIEWS = ("ap", "lateral")
ERROR_KINDS = ("bad_input", "model", "out_of_memory", "missing_dependency", "internal")


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
    def from_dict(cls, data: object) -> JobSpec:
        """Parse a job written by :meth:`to_dict`, checked against :data:`JOB_SCHEMA`: a malformed job is an
        :class:`InputError` that names the field (``options.check_inputs must be true or false, got the
        string 'false'``), never a guess."""
        _check_fields(data, JOB_SCHEMA, "")
        options = _check_fields(data.get("options", {}), OPTIONS_SCHEMA, "options.")
        acquisition = _check_type(data.get("acquisition", {}), dict, "acquisition")
        return cls(
            ap=data["ap"],
            lateral=data["lateral"],
            output_dir=data["output_dir"],
            model=data.get("model"),
            options=ReconstructionOptions(**options),
            acquisition={
                view: Acquisition(**_check_fields(values, ACQUISITION_SCHEMA, f"acquisition.{view}."))
                for view, values in acquisition.items()
            },
        )

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


# -- the job file's schema: field -> (type, required, may be null) -----------------------------------------------
PAIR = "pair"  # two positive numbers
JOB_SCHEMA = {
    "ap": (str, True, False),
    "lateral": (str, True, False),
    "output_dir": (str, True, False),
    "model": (str, False, True),
    "options": (dict, False, False),
    "acquisition": (dict, False, False),
}
OPTIONS_SCHEMA = {
    "steps": (int, False, True),
    "seed": (int, False, False),
    "device": (str, False, False),
    "samples": (int, False, True),
    "method": (str, False, False),
    "sampler": (str, False, False),
    "check_inputs": (bool, False, False),
    "batch_size": (int, False, True),
    "guidance": (float, False, True),
    "precision": (str, False, False),
    "temperature": (float, False, True),
}
ACQUISITION_SCHEMA = {
    "source_to_detector_mm": (float, False, True),
    "source_to_isocenter_mm": (float, False, True),
    "pixel_spacing_mm": (PAIR, False, True),
    "bone_dark": (bool, False, False),
}
_TYPE_NAMES = {
    str: "text",
    int: "a whole number",
    float: "a number",
    bool: "true or false",
    dict: "an object",
    PAIR: "two numbers",
}


def _describe(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, str):
        return f"the string {value[:40]!r}"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, (int, float)):
        return f"the number {value!r}"[:60]
    return {list: "a list", dict: "an object"}.get(type(value), type(value).__name__)


def _check_type(value: object, kind: object, name: str) -> object:
    """``value`` when it is of ``kind`` (bools are not numbers, numbers are finite), else a named InputError."""
    if kind is bool:
        ok = isinstance(value, bool)
    elif kind is int:
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif kind is float:
        ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    elif kind == PAIR:
        ok = isinstance(value, (list, tuple)) and len(value) == 2 and all(_is_number(v) for v in value)
    else:
        ok = isinstance(value, kind)
    if not ok:
        raise InputError(f"job file: {name} must be {_TYPE_NAMES[kind]}, got {_describe(value)}")
    return value


def _is_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _check_fields(data: object, schema: dict, prefix: str) -> dict:
    """``data`` checked against ``schema``: an object, no unknown fields, required fields present, types right."""
    if not isinstance(data, dict):
        raise InputError(f"job file: {prefix.rstrip('.') or 'the job'} must be an object, got {_describe(data)}")
    unknown = sorted(set(data) - set(schema))
    if unknown:
        raise InputError(f"job file: unknown field(s) {', '.join(prefix + str(k) for k in unknown)}")
    for key, (kind, required, nullable) in schema.items():
        if key not in data:
            if required:
                raise InputError(f"job file: {prefix}{key} is missing")
            continue
        if data[key] is None and nullable:
            continue
        _check_type(data[key], kind, prefix + key)
    return dict(data)


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
