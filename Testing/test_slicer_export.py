"""Export as DICOM (issue 32 point 8): the reconstruction goes through Slicer's DICOM export (its scalar volume
plugin) into the radiographs' patient and study, and every written file says what it is: ImageType DERIVED, a
series description "reconstructed from radiographs, not for diagnosis", the derivation, and its source images.

Slicer's plugin and its CreateDICOMSeries module need the application; the stand-in below writes what they write
(ImageType ORIGINAL\\PRIMARY\\AXIAL, the exportable's tags), and pydicom reads back what the export leaves."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pydicom
import pytest
import slicer
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid
from slicer_scene import SAMPLE_DATA, CoreApp, load_module, unload_module

from DiffuX2CTLib.app.result_placement import ResultPlacement
from DiffuX2CTLib.core.errors import InputError

CT_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.2"
DX_STORAGE = "1.2.840.10008.5.1.4.1.1.1.1"
AP_UID, LATERAL_UID = "1.2.826.0.1.3680043.8.498.11", "1.2.826.0.1.3680043.8.498.12"


class _Exportable:
    """qSlicerDICOMExportable: a name, an item, a folder and tags."""

    def __init__(self, item):
        self.subjectHierarchyItemID, self.directory, self.tags = item, "", {}

    def setTag(self, name, value):  # Slicer's API name
        self.tags[name] = value

    def tag(self, name):
        return self.tags.get(name, "")


class _ScalarVolumePlugin:
    """DICOMScalarVolumePlugin's examineForExport/export as they behave in Slicer: default tags, then a series of
    CT files in ``<directory>/ScalarVolume_<item>`` written the way CreateDICOMSeries writes them."""

    def __init__(self, slices: int = 3):
        self.slices, self.exported = slices, []

    def examineForExport(self, item):  # Slicer's API name
        exportable = _Exportable(item)
        for name, value in {
            "SeriesDescription": "No series description",
            "Modality": "CT",
            "SeriesNumber": "301",
        }.items():
            exportable.setTag(name, value)
        return [exportable]

    def export(self, exportables):
        for exportable in exportables:
            self.exported.append(dict(exportable.tags))
            folder = Path(exportable.directory) / f"ScalarVolume_{exportable.subjectHierarchyItemID}"
            folder.mkdir(parents=True, exist_ok=True)
            series = generate_uid()
            for index in range(self.slices):
                meta = FileMetaDataset()
                meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID = CT_IMAGE_STORAGE, generate_uid()
                meta.TransferSyntaxUID = ExplicitVRLittleEndian
                ds = Dataset()
                ds.file_meta = meta
                ds.SOPClassUID, ds.SOPInstanceUID = CT_IMAGE_STORAGE, meta.MediaStorageSOPInstanceUID
                ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
                ds.Modality = exportable.tag("Modality")
                ds.SeriesDescription = exportable.tag("SeriesDescription")
                ds.PatientName, ds.PatientID = exportable.tag("PatientName"), exportable.tag("PatientID")
                ds.StudyInstanceUID, ds.SeriesInstanceUID = exportable.tag("StudyInstanceUID"), series
                ds.InstanceNumber = index + 1
                ds.Rows = ds.Columns = 4
                ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
                ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 1
                ds.PixelData = np.zeros((4, 4), np.int16).tobytes()
                ds.save_as(str(folder / f"IMG{index + 1:04d}.dcm"), enforce_file_format=True)
        return ""


class _Database:
    """slicer.dicomDatabase for the radiographs: their SOP class."""

    def fileForInstance(self, uid):  # Slicer's API name
        return f"/dicom/{uid}.dcm"

    def fileValue(self, path, tag):  # Slicer's API name
        return DX_STORAGE if tag == "0008,0016" else ""


@pytest.fixture()
def module(monkeypatch):
    loaded = load_module(monkeypatch, CoreApp())
    yield loaded
    unload_module(loaded)


def _reconstruction(app, in_study: bool = True):
    """A reconstruction placed beside two radiographs that came from DICOM (under a patient and a study)."""
    ap = app.load_volume(SAMPLE_DATA / "ap.nrrd", "AP")
    lateral = app.load_volume(SAMPLE_DATA / "lateral.nrrd", "Lateral")
    ap.SetAttribute("DICOM.instanceUIDs", AP_UID)
    lateral.SetAttribute("DICOM.instanceUIDs", LATERAL_UID)
    sh = slicer.vtkMRMLSubjectHierarchyNode.GetSubjectHierarchyNode(app.scene)
    if in_study:
        patient = sh.CreateSubjectItem(sh.GetSceneItemID(), "Doe^Jane")
        sh.SetItemAttribute(patient, "DICOM.PatientName", "Doe^Jane")
        sh.SetItemAttribute(patient, "DICOM.PatientID", "P-0042")
        study = sh.CreateStudyItem(patient, "Chest radiographs")
        sh.SetItemAttribute(study, "DICOM.StudyInstanceUID", "1.2.826.0.1.3680043.8.498.7")
        for node in (ap, lateral):
            sh.SetItemParent(sh.GetItemByDataNode(node), study)
    event = {
        "outputs": {"ct": str(SAMPLE_DATA / "ct.nrrd")},
        "metrics": {},
        "provenance": {"model": "diffux2ct-64", "steps": "20", "seed": "0"},
    }
    return ResultPlacement(app.scene, app.app_logic).place(event, 1.0, inputs=(ap, lateral)).ct_node


def test_export_as_dicom_writes_a_derived_series_into_the_radiographs_study(module, tmp_path, monkeypatch):
    monkeypatch.setattr(slicer, "dicomDatabase", _Database(), raising=False)
    ct = _reconstruction(module.app)
    plugin = _ScalarVolumePlugin()
    files = module.widgets.export.exportAsDicom(ct, tmp_path, plugin)
    assert len(files) == 3
    tags = plugin.exported[0]
    assert tags["PatientID"] == "P-0042" and tags["StudyInstanceUID"] == "1.2.826.0.1.3680043.8.498.7"
    for path in files:
        ds = pydicom.dcmread(path)
        assert list(ds.ImageType)[:2] == ["DERIVED", "SECONDARY"]
        assert "reconstructed from radiographs" in ds.SeriesDescription and "not for diagnosis" in ds.SeriesDescription
        assert "DiffuX2CT" in ds.DerivationDescription and "not for diagnosis" in ds.DerivationDescription
        assert "not for diagnosis" in ds.ImageComments
        assert ds.PatientID == "P-0042" and ds.StudyInstanceUID == "1.2.826.0.1.3680043.8.498.7"
        sources = [(item.ReferencedSOPClassUID, item.ReferencedSOPInstanceUID) for item in ds.SourceImageSequence]
        assert sources == [(DX_STORAGE, AP_UID), (DX_STORAGE, LATERAL_UID)]


def test_a_reconstruction_outside_any_study_gets_one_for_the_export(module, tmp_path):
    ct = _reconstruction(module.app, in_study=False)
    files = module.widgets.export.exportAsDicom(ct, tmp_path, _ScalarVolumePlugin(slices=1))
    sh = slicer.vtkMRMLSubjectHierarchyNode.GetSubjectHierarchyNode(module.app.scene)
    study = sh.GetItemParent(sh.GetItemByDataNode(ct))
    assert sh.GetItemLevel(study) == "Study" and sh.GetItemLevel(sh.GetItemParent(study)) == "Patient"
    assert list(pydicom.dcmread(files[0]).ImageType)[0] == "DERIVED"


def test_a_failed_export_says_why(module, tmp_path):
    class Failing(_ScalarVolumePlugin):
        def export(self, exportables):
            return "Creating DICOM files from scalar volume failed."

    with pytest.raises(InputError, match="DICOM export failed: Creating DICOM files"):
        module.widgets.export.exportAsDicom(_reconstruction(module.app), tmp_path, Failing())


def test_the_panel_exports_the_newest_reconstruction_into_the_chosen_folder(module, tmp_path, monkeypatch):
    from test_module_logic import _panel, _Recorder

    panel, _ = _panel(module, [], _Recorder())
    assert not panel.ui.exportDicomButton.enabled  # nothing reconstructed yet
    ct = _reconstruction(module.app)
    panel.refresh()
    assert panel.ui.exportDicomButton.enabled and panel.reconstruction() is ct
    calls = []
    monkeypatch.setattr(
        module.widgets.panel, "exportAsDicom", lambda node, folder: calls.append((node, folder)) or ["a"]
    )
    panel.chooseFolder = lambda: str(tmp_path)
    panel.onExportDicom()
    assert calls == [(ct, str(tmp_path))] and "1 DICOM files written" in panel.ui.statusLabel.text
