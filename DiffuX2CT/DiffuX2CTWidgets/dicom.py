"""What the DICOM database knows about a radiograph node: its original file and the acquisition tags the panel
uses for the geometry (distances, pixel spacing) and the intensity sense (MONOCHROME1)."""

from __future__ import annotations

from pathlib import Path

import slicer

from DiffuX2CTLib.imaging.acquisition import Acquisition

from .i18n import _

DICOM_TAGS = {
    "pixel_spacing": ("0018,1164", "0028,0030"),  # ImagerPixelSpacing, else PixelSpacing
    "source_to_detector": ("0018,1110",),  # DistanceSourceToDetector
    "source_to_patient": ("0018,1111",),  # DistanceSourceToPatient
    "view_position": ("0018,5101",),  # ViewPosition
    "photometric": ("0028,0004",),  # PhotometricInterpretation
}


def dicomFile(node) -> str | None:
    """The DICOM file a radiograph node was loaded from through the DICOM module, or None."""
    uids = (node.GetAttribute("DICOM.instanceUIDs") or "").split() if node else []
    database = getattr(slicer, "dicomDatabase", None)
    if len(uids) != 1 or database is None:
        return None
    return database.fileForInstance(uids[0]) or None


def dicomValues(node) -> dict[str, str]:
    """DICOM acquisition tags of a radiograph node loaded through the DICOM module (empty otherwise)."""
    path = dicomFile(node)
    if path is None:
        return {}
    values = {}
    for key, tags in DICOM_TAGS.items():
        for tag in tags:
            value = slicer.dicomDatabase.fileValue(path, tag).strip()
            if value:
                values[key] = value
                break
    return values


def fillGeometryFromDicom(parameterNode) -> str:
    """Copy distances and pixel spacing from the radiographs' DICOM tags into the parameters; returns a line
    saying where the geometry comes from."""
    filled = []
    for node, spacingName in (
        (parameterNode.apVolume, "apPixelSpacingMm"),
        (parameterNode.lateralVolume, "lateralPixelSpacingMm"),
    ):
        tags = dicomValues(node)
        if "pixel_spacing" in tags:
            setattr(parameterNode, spacingName, float(tags["pixel_spacing"].split("\\")[0]))
            filled.append(_("{name} pixel spacing").format(name=node.GetName()))
        if "source_to_detector" in tags and "source_to_patient" in tags:
            parameterNode.sourceToDetectorMm = float(tags["source_to_detector"])
            parameterNode.sourceToIsocenterMm = float(tags["source_to_patient"])
            filled.append(_("{name} distances").format(name=node.GetName()))
    if filled:
        return _("From DICOM tags: {items}. Check them before running.").format(items=", ".join(filled))
    return _("No DICOM geometry tags: the model's default geometry is used; edit it to match your radiographs.")


def sourceFiles(parameterNode) -> dict[str, str]:
    """The radiographs' original DICOM files that exist on disk, by view: the worker reads these, so view
    position, patient orientation, field-of-view rotation and intensity relationship are all used."""
    files = {}
    for view, node in (("ap", parameterNode.apVolume), ("lateral", parameterNode.lateralVolume)):
        path = dicomFile(node)
        if path and Path(path).is_file():
            files[view] = path
    return files


def acquisition(parameterNode) -> dict[str, Acquisition]:
    """What the panel says about each radiograph's acquisition, for the worker. A node read from its original
    DICOM file needs no inversion: the worker's reader presents MONOCHROME1 bone-bright."""
    sources = sourceFiles(parameterNode)
    acquisitions = {}
    p = parameterNode
    for view, node, spacing in (
        ("ap", p.apVolume, p.apPixelSpacingMm),
        ("lateral", p.lateralVolume, p.lateralPixelSpacingMm),
    ):
        acquisitions[view] = Acquisition(
            source_to_detector_mm=p.sourceToDetectorMm,
            source_to_isocenter_mm=p.sourceToIsocenterMm,
            pixel_spacing_mm=(spacing, spacing) if spacing > 0 else None,
            bone_dark=view not in sources and dicomValues(node).get("photometric") == "MONOCHROME1",
        )
    return acquisitions
