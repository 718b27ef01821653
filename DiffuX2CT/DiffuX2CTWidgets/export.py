"""Export as DICOM: a reconstruction written as a CT series through Slicer's own DICOM export (the scalar volume
plugin and its CreateDICOMSeries module), into the radiographs' patient and study, then every file marked as what
it is: a synthetic, derived image (ImageType DERIVED\\SECONDARY, a derivation description, the source radiographs)
that is not for diagnosis. Slicer's export writes ImageType ORIGINAL\\PRIMARY for every CT, hence the second
step, with pydicom (which Slicer ships)."""

from __future__ import annotations

from pathlib import Path

import slicer

from DiffuX2CTLib.app.result_placement import (
    ATTRIBUTE_PREFIX,
    DERIVED_SERIES_DESCRIPTION,
    DERIVED_SERIES_TAGS,
    SOURCE_UIDS_ATTRIBUTE,
)
from DiffuX2CTLib.core.errors import InputError

from .i18n import _

IMAGE_TYPE = ["DERIVED", "SECONDARY", "AXIAL"]
NOTICE = "Research use only, not for diagnosis."
SOP_CLASS_TAG = "0008,0016"


def derivation(ctNode) -> str:
    """DerivationDescription (DICOM ST, at most 1024 characters): how the volume was made."""
    value = ctNode.GetAttribute
    text = (
        "Synthetic CT reconstructed by DiffuX2CT (3D conditional diffusion model "
        f"{value(ATTRIBUTE_PREFIX + 'model') or 'unknown'}, {value(ATTRIBUTE_PREFIX + 'steps') or '?'} steps, seed "
        f"{value(ATTRIBUTE_PREFIX + 'seed') or '?'}) from a frontal and a lateral radiograph: a plausible volume "
        f"consistent with the two views, not a measurement. {NOTICE}"
    )
    return text[:1024]


def sourceImages(ctNode) -> list[tuple[str, str]]:
    """(SOP class UID, SOP instance UID) of the radiographs the CT was made from, where the DICOM database knows
    them (their nodes came through the DICOM module)."""
    database = getattr(slicer, "dicomDatabase", None)
    sources = []
    for uid in (ctNode.GetAttribute(SOURCE_UIDS_ATTRIBUTE) or "").split():
        path = database.fileForInstance(uid) if database is not None else ""
        sopClass = database.fileValue(path, SOP_CLASS_TAG).strip() if path else ""
        if sopClass:
            sources.append((sopClass, uid))
    return sources


def markDerived(paths: list[str], ctNode) -> None:
    """Rewrite the exported files so that they say they are derived, synthetic and not for diagnosis."""
    import pydicom
    from pydicom.dataset import Dataset

    sources = sourceImages(ctNode)
    for path in paths:
        ds = pydicom.dcmread(path)
        ds.ImageType = IMAGE_TYPE
        ds.SeriesDescription = DERIVED_SERIES_DESCRIPTION
        ds.DerivationDescription = derivation(ctNode)
        ds.ImageComments = NOTICE
        if sources:
            items = []
            for sopClass, uid in sources:
                item = Dataset()
                item.ReferencedSOPClassUID, item.ReferencedSOPInstanceUID = sopClass, uid
                items.append(item)
            ds.SourceImageSequence = items
        ds.save_as(path)


def studyItem(shNode, item) -> int:
    """The study the CT's item sits in; Slicer's export needs a patient and a study, so a reconstruction of
    radiographs that did not come from DICOM gets new ones."""
    parent = shNode.GetItemParent(item)
    if parent and shNode.GetItemLevel(parent) == "Study":
        return parent
    patient = shNode.CreateSubjectItem(shNode.GetSceneItemID(), _("DiffuX2CT patient"))
    study = shNode.CreateStudyItem(patient, _("DiffuX2CT reconstruction"))
    shNode.SetItemParent(item, study)
    return study


def hierarchyTags(shNode, item) -> dict[str, str]:
    """The DICOM tags Slicer keeps as ``DICOM.<tag>`` attributes of an item (patient or study)."""
    prefix = "DICOM."
    return {
        name[len(prefix) :]: shNode.GetItemAttribute(item, name)
        for name in shNode.GetItemAttributeNames(item)
        if name.startswith(prefix)
    }


def scalarVolumePlugin():
    """Slicer's DICOM scalar volume plugin (the one the DICOM module's export uses)."""
    plugins = getattr(slicer.modules, "dicomPlugins", {})
    if "DICOMScalarVolumePlugin" in plugins:
        return plugins["DICOMScalarVolumePlugin"]()
    import DICOMScalarVolumePlugin

    return DICOMScalarVolumePlugin.DICOMScalarVolumePluginClass()


def exportAsDicom(ctNode, directory, plugin=None) -> list[str]:
    """Write ``ctNode`` as a DICOM CT series under ``directory`` with the patient and study tags of its study and
    DiffuX2CT's series tags, then mark the files derived; returns the files written."""
    shNode = slicer.vtkMRMLSubjectHierarchyNode.GetSubjectHierarchyNode(ctNode.GetScene())
    item = shNode.GetItemByDataNode(ctNode) or shNode.CreateItem(shNode.GetSceneItemID(), ctNode)
    study = studyItem(shNode, item)
    plugin = plugin or scalarVolumePlugin()
    exportables = plugin.examineForExport(item)
    if not exportables:
        raise InputError(_("{name}: Slicer's DICOM export cannot write this volume").format(name=ctNode.GetName()))
    exportable = exportables[0]
    exportable.directory = str(directory)
    tags = {**hierarchyTags(shNode, shNode.GetItemParent(study)), **hierarchyTags(shNode, study)}
    tags.update(DERIVED_SERIES_TAGS)
    for name, value in tags.items():
        exportable.setTag(name, value)
    before = set(Path(directory).rglob("*"))
    error = plugin.export([exportable])
    if error:
        raise InputError(_("DICOM export failed: {error}").format(error=error))
    written = sorted(str(path) for path in set(Path(directory).rglob("*")) - before if path.is_file())
    markDerived(written, ctNode)
    return written
