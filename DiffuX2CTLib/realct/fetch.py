"""The whole command: download the pinned archives, extract and verify the members, convert, write the manifest.

Every archive is checked against its pinned size and SHA-256 and every extracted member against its own SHA-256.
A second run verifies what the cache holds and downloads and converts nothing.
"""

from __future__ import annotations

import os
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import SimpleITK as sitk

from ..core.cache import cache_root
from ..core.errors import InputError
from .cache import downloads_folder, volumes_folder
from .catalog import SOURCES, VOLUMES, Volume
from .convert import HuEvidence, convert, write_nrrd
from .digest import mismatch
from .download import fetch_archive
from .manifest import is_current, load_manifest, volume_record, write_manifest
from .quality import hu_statistics, orientation_check
from .unpack import extract_members


def select_volumes(only: Sequence[str] | None) -> list[Volume]:
    """The catalogue's volumes, or those named in ``only`` (InputError naming an unknown id and the known ones)."""
    if not only:
        return list(VOLUMES)
    known = {volume.id: volume for volume in VOLUMES}
    unknown = [name for name in only if name not in known]
    if unknown:
        raise InputError(f"--only {unknown[0]}: no such real CT (known: {', '.join(known)})")
    return [volume for volume in VOLUMES if volume.id in set(only)]


def _facts(image: sitk.Image, offset: int, evidence: HuEvidence) -> dict[str, Any]:
    """What the manifest records of a converted image: geometry, HU evidence and statistics, orientation check."""
    return {
        "shape": list(image.GetSize()),
        "spacing": [round(s, 5) for s in image.GetSpacing()],
        "origin": [round(o, 3) for o in image.GetOrigin()],
        "direction": list(image.GetDirection()),
        "hu": True,
        "hu_offset_removed": offset,
        "air_peak": evidence.air_peak,
        "tissue_peak": evidence.tissue_peak,
        "statistics": hu_statistics(image),
        "orientation": orientation_check(image),
    }


def _describe(entry: dict[str, Any]) -> str:
    """One log line of a converted volume's numbers."""
    s, o = entry["statistics"], entry["orientation"]
    shape = "x".join(str(n) for n in entry["shape"])
    spacing = "x".join(f"{v:.2f}" for v in entry["spacing"])
    check = (
        f"orientation ok (bone {o['bone_posterior_mm']} mm posterior of the body centre)"
        if o["passed"]
        else f"ORIENTATION CHECK FAILED {o}"
    )
    return (
        f"  {entry['id']}: {shape} voxels of {spacing} mm; HU min {s['min']:g} p1 {s['p1']:g} median {s['median']:g} "
        f"p99 {s['p99']:g} max {s['max']:g}; air {100 * s['air_fraction']:.1f} %; {check}"
    )


def _convert_from(
    archive: Path, volumes: list[Volume], folder: Path, log: Callable[[str], None]
) -> dict[str, dict[str, Any]]:
    """Extract the volumes' members (one pass over the archive) to a temporary folder, verify and convert them."""
    with tempfile.TemporaryDirectory(prefix="diffux2ct-realct-") as work:
        wanted = {}
        for volume in volumes:
            (Path(work) / volume.id).mkdir()
            wanted.update({member.path: Path(work) / volume.id / member.name for member in volume.members})
        found = extract_members(archive, wanted)
        for member in (m for volume in volumes for m in volume.members):
            if found[member.path][0] != member.sha256:
                raise mismatch(f"{archive.name}!{member.label}", member.sha256, found[member.path][0])
        entries = {}
        for volume in volumes:
            image, offset, evidence = convert(wanted[volume.members[0].path], volume.id)
            if offset:
                log(f"  {volume.id}: values were stored with an offset of {offset}; subtracted to give HU")
            file = write_nrrd(image, folder / f"{volume.id}.nrrd")
            entries[volume.id] = volume_record(volume, file, _facts(image, offset, evidence))
            log(_describe(entries[volume.id]))
    return entries


def fetch_real_cts(
    cache: Path | None = None, only: list[str] | None = None, log: Callable[[str], None] = print
) -> Path:
    """Bring the catalogue's real CTs (or those in ``only``) into the cache and return the manifest's path."""
    started = time.monotonic()
    root = cache_root(cache)
    volumes = select_volumes(only)
    folder = volumes_folder(root)
    log(f"real CTs into {folder} (archives in {downloads_folder(root)})")
    previous = load_manifest(folder)
    kept = {v.id: previous[v.id] for v in VOLUMES if is_current(previous.get(v.id), v, folder)}
    downloads = conversions = 0
    for source in (s for s in SOURCES if any(v.source == s.id for v in volumes)):
        log(f"{source.id}: {source.package}")
        archive, fresh = fetch_archive(source, downloads_folder(root), log)
        downloads += fresh
        todo = [v for v in volumes if v.source == source.id and v.id not in kept]
        for volume in (v for v in volumes if v.source == source.id and v.id in kept):
            log(f"  {volume.id}: {kept[volume.id]['file']} present, SHA-256 verified")
        if todo:
            os.makedirs(folder, exist_ok=True)
            kept.update(_convert_from(archive, todo, folder, log))
            conversions += len(todo)
    entries = [kept[v.id] for v in VOLUMES if v.id in kept]
    manifest = write_manifest(folder, entries, list(SOURCES))
    failed = [e["id"] for e in entries if not e["orientation"]["passed"]]
    log(
        f"{len(entries)} volumes in {manifest}: {downloads} archives downloaded, {conversions} volumes converted, "
        f"{time.monotonic() - started:.1f} s"
        + (f"; orientation check FAILED for {', '.join(failed)}" if failed else "")
    )
    return manifest
