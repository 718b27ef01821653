"""The manifest of the converted volumes: what each file is, where it came from and how it measured.

Written atomically and last, so a manifest only ever lists files that were complete when it was written. An entry
is reused by the next run only while its file's SHA-256 and its pinned inputs are unchanged.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from ..core.atomic_write import write_json
from .catalog import Source, Volume, source_of
from .digest import sha256_file

MANIFEST_NAME = "manifest.json"
FORMAT = "diffux2ct-real-ct/1"
CONVERTER = 1  # raise when conversion changes, so every volume is converted again


def load_manifest(folder: Path) -> dict[str, dict[str, Any]]:
    """The volume entries of an existing manifest by id; empty if there is none or it cannot be read."""
    try:
        data = json.loads((folder / MANIFEST_NAME).read_text(encoding="utf-8"))
        return {entry["id"]: entry for entry in data["volumes"]} if data.get("format") == FORMAT else {}
    except (OSError, ValueError, KeyError, TypeError):
        return {}


def inputs_of(volume: Volume) -> dict[str, Any]:
    """What a converted file depends on: the archive, the members and the converter version."""
    source = source_of(volume)
    return {
        "archive_sha256": source.sha256,
        "members": {m.label: m.sha256 for m in volume.members},
        "converter": CONVERTER,
    }


def is_current(entry: dict[str, Any] | None, volume: Volume, folder: Path) -> bool:
    """Whether ``entry`` describes ``volume`` as pinned now and its file is present with the recorded SHA-256."""
    if not entry or entry.get("inputs") != inputs_of(volume):
        return False
    path = folder / entry.get("file", "")
    return path.is_file() and sha256_file(path) == entry.get("file_sha256")


def source_record(source: Source) -> dict[str, Any]:
    """A source as the manifest lists it."""
    return {"id": source.id, "package": source.package, "url": source.url, "size": source.size, "sha256": source.sha256}


def volume_record(volume: Volume, file: Path, facts: dict[str, Any]) -> dict[str, Any]:
    """A converted volume as the manifest lists it: catalogue fields, provenance, then the measured ``facts``."""
    return {
        "id": volume.id,
        "patient": volume.patient,
        "region": volume.region,
        "phase": volume.phase,
        "description": volume.description,
        "licence": volume.licence,
        "citation": volume.citation,
        "notes": volume.notes,
        "source": volume.source,
        "members": [{"path": m.label, "sha256": m.sha256, "size": m.size} for m in volume.members],
        "file": file.name,
        "file_sha256": sha256_file(file),
        "file_size": file.stat().st_size,
        "inputs": inputs_of(volume),
        **facts,
    }


def write_manifest(folder: Path, entries: list[dict[str, Any]], sources: list[Source]) -> Path:
    """Write ``manifest.json`` (atomically) listing ``entries`` and the sources they come from."""
    used = {entry["source"] for entry in entries}
    failed = [entry["id"] for entry in entries if not entry.get("orientation", {}).get("passed", False)]
    data = {
        "format": FORMAT,
        "written": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "orientation": "LPS (identity direction)",
        "units": "Hounsfield units, int16, compressed NRRD",
        "sources": [source_record(s) for s in sources if s.id in used],
        "volumes": entries,
        "orientation_check_failed": failed,
    }
    return write_json(data, folder / MANIFEST_NAME)
