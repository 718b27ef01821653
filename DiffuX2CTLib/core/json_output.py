"""JSON as the standard defines it: Python writes ``Infinity`` and ``NaN`` (which strict parsers, JavaScript and
``jq`` refuse); every JSON this package prints or writes goes through :func:`dumps`, which writes such a number as
``null`` with a note beside its key saying what it was."""

from __future__ import annotations

import json
import math
from typing import Any


def _note(value: float) -> str:
    return "not a number, written as null" if math.isnan(value) else "infinite, written as null (JSON has no infinity)"


def finite(data: Any) -> Any:
    """A copy of ``data`` (dicts, lists, tuples, scalars) with every non-finite float replaced by None; a dict gets
    ``<key>_note`` beside each such key, unless a note of that name is already there."""
    if isinstance(data, float):
        return data if math.isfinite(data) else None
    if isinstance(data, dict):
        result = {}
        for key, value in data.items():
            result[key] = finite(value)
            if isinstance(value, float) and not math.isfinite(value) and f"{key}_note" not in data:
                result[f"{key}_note"] = _note(value)
        return result
    if isinstance(data, (list, tuple)):
        return [finite(item) for item in data]
    return data


def dumps(data: Any, indent: int | None = 2) -> str:
    """Strict JSON text of ``data`` (see :func:`finite`)."""
    return json.dumps(finite(data), indent=indent, allow_nan=False)
