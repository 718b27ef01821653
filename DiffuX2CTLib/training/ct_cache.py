"""A folder of CTs prepared once for training: each CT resampled to the training voxel size and kept as a
memory-mapped array, with a manifest holding each source's checksum.

Training on a thousand CTs must not re-read DICOM at every step. :func:`prepare_cache` reads every CT once (NRRD,
NIfTI, MHA or DICOM series folders), resamples it onto an axis-aligned LPS grid of the training voxel size over its
whole extent and stores it as int16 ``.npy``; a source whose checksum changed, or a new one, is redone on the next
run, one that cannot be read is skipped with a warning naming it. Samples then crop a cube around each CT's centre
from the memory-mapped array (:class:`CachedCTSource`), which needs numpy only.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..core.atomic_write import write_file, write_json
from ..core.errors import InputError
from ..imaging.geometry import VolumeGrid

MANIFEST_NAME = "manifest.json"
AIR_HU = -1000
ANTI_ALIAS_SIGMA_PER_VOXEL = 0.42
"""Gaussian standard deviation, in voxels, that matches a voxel's box average (FWHM of one voxel)."""
PREPARATION = 2
"""Raised when the preparation changes, so that every cache is prepared again (2: anti-aliased)."""
BODY_HU = -500
CENTRE_JITTER_MM = 15.0
Log = Callable[[str], None]


def _warn(message: str) -> None:
    print(f"warning: {message}", file=sys.stderr)


def source_checksum(path: Path) -> str:
    """SHA-256 of a CT file, or of a DICOM folder's file names and contents in name order."""
    digest = hashlib.sha256()
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    for file in files:
        digest.update(str(file.relative_to(path) if path.is_dir() else file.name).encode())
        with open(file, "rb") as handle:
            for chunk in iter(lambda: handle.read(1 << 20), b""):
                digest.update(chunk)
    return digest.hexdigest()


def _anti_aliased(ct, spacing_mm: float):
    """``ct`` smoothed along every axis finer than ``spacing_mm`` (a Gaussian of the width a ``spacing_mm`` voxel
    averages over), so resampling a 0.6 mm scan to 2.5 mm keeps its anatomy, not its noise and sharpest peaks."""
    import SimpleITK as sitk

    width = ANTI_ALIAS_SIGMA_PER_VOXEL
    variances = [max(0.0, (width * spacing_mm) ** 2 - (width * s) ** 2) for s in ct.GetSpacing()]
    if max(variances) == 0.0:
        return sitk.Cast(ct, sitk.sitkFloat32)
    return sitk.DiscreteGaussian(sitk.Cast(ct, sitk.sitkFloat32), variances, 32, 0.01, True)


def _resampled(path: Path, spacing_mm: float) -> tuple[np.ndarray, tuple[float, float, float]]:
    """The CT at ``path`` on an axis-aligned LPS grid of ``spacing_mm`` covering its extent: int16 ``[z, y, x]``
    HU and the LPS position of voxel (0, 0, 0)."""
    import SimpleITK as sitk

    from ..imaging.image_io import read_ct

    ct = read_ct(path)
    size = np.asarray(ct.GetSize())
    corners = np.array(
        [
            ct.TransformContinuousIndexToPhysicalPoint([float(c) for c in np.asarray(corner) * (size - 1)])
            for corner in np.ndindex(2, 2, 2)
        ]
    )
    low, high = corners.min(axis=0), corners.max(axis=0)
    shape_xyz = np.maximum(np.ceil((high - low) / spacing_mm).astype(int) + 1, 1)
    reference = sitk.Image([int(v) for v in shape_xyz], sitk.sitkFloat32)
    reference.SetSpacing((spacing_mm,) * 3)
    reference.SetOrigin(tuple(float(v) for v in low))
    resampled = sitk.Resample(
        _anti_aliased(ct, spacing_mm), reference, sitk.Transform(), sitk.sitkLinear, float(AIR_HU), sitk.sitkFloat32
    )
    array = np.clip(np.rint(sitk.GetArrayFromImage(resampled)), -32768, 32767).astype(np.int16)
    return array, tuple(float(v) for v in low)


@dataclass(frozen=True)
class CachedCT:
    """One prepared CT: its array file, shape ``(z, y, x)``, origin (LPS mm of voxel 0), voxel size, and the LPS
    centre of its body (the centroid of voxels above :data:`BODY_HU`)."""

    name: str
    array: Path
    shape: tuple[int, int, int]
    origin_lps: tuple[float, float, float]
    spacing_mm: float
    body_centre_lps: tuple[float, float, float] | None = None

    @property
    def centre_lps(self) -> np.ndarray:
        """LPS centre of the CT's voxel grid."""
        return np.asarray(self.origin_lps) + (np.asarray(self.shape[::-1]) - 1) / 2.0 * self.spacing_mm

    @property
    def z_range_lps(self) -> tuple[float, float]:
        """LPS z of the first and the last slice."""
        return self.origin_lps[2], self.origin_lps[2] + (self.shape[0] - 1) * self.spacing_mm

    def crop(self, grid: VolumeGrid, extend_ends: bool = False) -> np.ndarray:
        """``grid`` (same voxel size, any centre) cut from the memory-mapped array, air outside the CT; with
        ``extend_ends`` the first and last slices continue beyond the scanned length (a body, not air, above and
        below a short scan, as a radiograph would show)."""
        data = np.load(self.array, mmap_mode="r")
        start_xyz = np.rint((grid.origin_lps - np.asarray(self.origin_lps)) / self.spacing_mm).astype(int)
        out = np.full((grid.size,) * 3, AIR_HU, dtype=np.int16)
        source, target = [], []
        for axis, start in zip((2, 1, 0), start_xyz):  # x, y, z -> array axes 2, 1, 0
            low, high = max(start, 0), min(start + grid.size, self.shape[axis])
            if high <= low:
                return out
            source.append(slice(low, high))
            target.append(slice(low - start, high - start))
        out[target[2], target[1], target[0]] = data[source[2], source[1], source[0]]
        if extend_ends:
            rows = target[2]
            out[: rows.start, target[1], target[0]] = out[rows.start, target[1], target[0]]
            out[rows.stop :, target[1], target[0]] = out[rows.stop - 1, target[1], target[0]]
        return out


def body_centre(array: np.ndarray, origin_lps: tuple[float, float, float], spacing_mm: float) -> list[float]:
    """LPS centroid of the voxels above :data:`BODY_HU` of a prepared ``[z, y, x]`` array (the grid's centre when
    there are none)."""
    body = np.argwhere(array > BODY_HU)
    index_zyx = body.mean(axis=0) if len(body) else (np.asarray(array.shape) - 1) / 2.0
    return [float(v) for v in np.asarray(origin_lps) + index_zyx[::-1] * spacing_mm]


def prepare_cache(
    folder: str | os.PathLike, cache_dir: str | os.PathLike, spacing_mm: float, log: Log = _warn
) -> list[CachedCT]:
    """Bring ``cache_dir`` up to date with the CTs in ``folder`` and return the usable ones (:func:`prepare_volumes`);
    no usable CT is a clear error."""
    from ..imaging.image_io import find_ct_volumes

    folder = Path(folder)
    sources = find_ct_volumes(folder)
    usable = prepare_volumes(sources, cache_dir, spacing_mm, log, str(folder.resolve()))
    if not usable:
        raise InputError(f"{folder.name}: none of its {len(sources)} CT volumes could be read")
    return usable


def prepare_volumes(
    sources: list[Path], cache_dir: str | os.PathLike, spacing_mm: float, log: Log = _warn, label: str = ""
) -> list[CachedCT]:
    """Bring ``cache_dir`` up to date with the CT files ``sources`` and return the usable ones. Unchanged sources
    (same checksum and voxel size) are reused; changed and new ones are resampled; unreadable ones are skipped
    with a warning naming each, and their number is reported. A source that is absent but was prepared here before
    is used as prepared, with a note: a prepared cache can travel without its sources (to a GPU machine that has
    neither them nor SimpleITK, ``Testing/benchmarks/gpu_lease_real.sh``)."""
    cache_dir = Path(cache_dir)
    cache_dir.mkdir(parents=True, exist_ok=True)
    manifest_path = cache_dir / MANIFEST_NAME
    try:
        manifest = json.loads(manifest_path.read_text(encoding="utf-8")) if manifest_path.is_file() else {}
    except (json.JSONDecodeError, UnicodeDecodeError):
        manifest = {}
    current = manifest.get("spacing_mm") == spacing_mm and manifest.get("preparation") == PREPARATION
    entries = manifest.get("entries", {}) if current else {}
    usable, skipped, kept, without_source = [], [], {}, []
    for source in sources:
        entry = entries.get(source.name)
        if source.exists():
            checksum = source_checksum(source)
        elif entry is not None and (cache_dir / entry["array"]).is_file():
            without_source.append(source.name)
            checksum = entry["sha256"]
        else:
            skipped.append(source.name)
            log(f"skipped {source.name}: not found, and not prepared here before")
            continue
        array_path = cache_dir / f"{hashlib.sha1(source.name.encode()).hexdigest()[:12]}.npy"
        if entry is None or entry["sha256"] != checksum or not (cache_dir / entry["array"]).is_file():
            try:
                array, origin = _resampled(source, spacing_mm)
            except InputError as error:
                skipped.append(source.name)
                log(f"skipped {error}")
                continue
            write_file(array_path, lambda temporary, array=array: np.save(temporary, array))
            entry = {
                "sha256": checksum,
                "array": array_path.name,
                "shape": list(array.shape),
                "origin_lps": list(origin),
                "body_centre_lps": body_centre(array, origin, spacing_mm),
            }
        if "body_centre_lps" not in entry:  # prepared before the body centre was recorded
            array = np.load(cache_dir / entry["array"], mmap_mode="r")
            entry = {**entry, "body_centre_lps": body_centre(array, tuple(entry["origin_lps"]), spacing_mm)}
        kept[source.name] = entry
        usable.append(
            CachedCT(
                source.name,
                cache_dir / entry["array"],
                tuple(entry["shape"]),
                tuple(entry["origin_lps"]),
                spacing_mm,
                tuple(entry["body_centre_lps"]),
            )
        )
    for stale in {e["array"] for e in entries.values()} - {e["array"] for e in kept.values()}:
        (cache_dir / stale).unlink(missing_ok=True)
    write_json(
        {"source_folder": label, "spacing_mm": spacing_mm, "preparation": PREPARATION, "entries": kept}, manifest_path
    )
    if skipped:
        log(f"{len(skipped)} of {len(sources)} CTs could not be read and were skipped")
    if without_source:
        log(f"{len(without_source)} CTs used as prepared before, their sources absent: {', '.join(without_source)}")
    return usable


@dataclass(frozen=True)
class CachedCTSource:
    """Training volumes cut from prepared CTs: sample ``index`` uses CT ``index mod n``, its centre moved by up to
    :data:`CENTRE_JITTER_MM` so the model does not learn one fixed framing."""

    cts: tuple[CachedCT, ...]
    folder_name: str

    @classmethod
    def for_folder(cls, folder: str, cache_dir: str, spacing_mm: float) -> CachedCTSource:
        """The source of ``folder``, its cache in ``cache_dir`` brought up to date first."""
        if not Path(folder).is_dir():
            raise InputError(
                f"{Path(folder).name}: training data must be 'phantoms', 'phantom:SEED' or a folder of CT volumes"
            )
        return cls(tuple(prepare_cache(folder, cache_dir, spacing_mm)), Path(folder).name)

    def describe(self) -> str:
        return f"{len(self.cts)} CTs from {self.folder_name}"

    def volume(self, index: int, rng: np.random.Generator, grid: VolumeGrid, device: torch.device) -> torch.Tensor:
        ct = self.cts[index % len(self.cts)]
        centre = ct.centre_lps + rng.uniform(-CENTRE_JITTER_MM, CENTRE_JITTER_MM, 3)
        moved = VolumeGrid(grid.size, grid.spacing_mm, tuple(float(v) for v in centre))
        return torch.from_numpy(ct.crop(moved).astype(np.float32)).to(device)
