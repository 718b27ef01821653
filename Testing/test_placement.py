"""Where a finished reconstruction lands and what it is called (issue 32 point 8): under the radiographs' patient and
study in the subject hierarchy, a "Bone" segment with Slicer's bone terminology, a new name for every run, and a
series description that says the CT is reconstructed, which Slicer's own DICOM export picks up."""

from __future__ import annotations

import numpy as np
import pytest
import slicer
from slicer_scene import SAMPLE_DATA, CoreApp

from DiffuX2CTLib.anatomy.phantom import generate_phantom
from DiffuX2CTLib.app.result_placement import DERIVED_SERIES_DESCRIPTION, ResultPlacement
from DiffuX2CTLib.imaging.geometry import VolumeGrid
from DiffuX2CTLib.imaging.image_io import grid_image, write_image

GRID = VolumeGrid(32, 10.0)
BONE = "SCT^272673000^Bone"
TISSUE = "SCT^85756007^Tissue"


@pytest.fixture(scope="module")
def done_event(tmp_path_factory) -> dict:
    """A worker's ``done`` event with real files: a CT and an uncertainty volume."""
    folder = tmp_path_factory.mktemp("outputs")
    ct = grid_image(generate_phantom(5, GRID).numpy(), GRID)
    uncertainty = grid_image(np.full((32,) * 3, 7.0, np.float32), GRID)
    return {
        "outputs": {
            "ct": str(write_image(ct, folder / "ct.nrrd")),
            "uncertainty": str(write_image(uncertainty, folder / "uncertainty.nrrd")),
        },
        "metrics": {"agreement": {"ap": 0.95, "lateral": 0.93}, "low_agreement_views": []},
        "provenance": {"seed": "0", "model": "diffux2ct-64"},
    }


@pytest.fixture()
def app() -> CoreApp:
    """A scene whose radiographs came through the DICOM module: under a patient and a study item."""
    app = CoreApp()
    app.ap = app.load_volume(SAMPLE_DATA / "ap.nrrd", "AP")
    app.lateral = app.load_volume(SAMPLE_DATA / "lateral.nrrd", "Lateral")
    sh = slicer.vtkMRMLSubjectHierarchyNode.GetSubjectHierarchyNode(app.scene)
    app.patient = sh.CreateSubjectItem(sh.GetSceneItemID(), "Doe^Jane")
    app.study = sh.CreateStudyItem(app.patient, "Chest radiographs")
    for node, uid in ((app.ap, "1.2.826.0.1.3680043.8.498.1"), (app.lateral, "1.2.826.0.1.3680043.8.498.2")):
        sh.SetItemParent(sh.GetItemByDataNode(node), app.study)
        node.SetAttribute("DICOM.instanceUIDs", uid)
    app.sh = sh
    return app


def test_results_go_under_the_radiographs_study(app, done_event):
    result = ResultPlacement(app.scene, app.app_logic).place(done_event, 1.0, inputs=(app.ap, app.lateral))
    sh = app.sh
    for node in (result.ct_node, result.segmentation_node, result.uncertainty_node):
        assert sh.GetItemParent(sh.GetItemByDataNode(node)) == app.study, node.GetName()
    assert sh.GetItemParent(app.study) == app.patient


def test_results_of_radiographs_outside_any_study_stay_at_the_top(done_event):
    app = CoreApp()
    ap = app.load_volume(SAMPLE_DATA / "ap.nrrd", "AP")
    result = ResultPlacement(app.scene, app.app_logic).place(done_event, 1.0, inputs=(ap,))
    sh = slicer.vtkMRMLSubjectHierarchyNode.GetSubjectHierarchyNode(app.scene)
    assert sh.GetItemParent(sh.GetItemByDataNode(result.ct_node)) == sh.GetSceneItemID()


def test_the_bone_segment_carries_slicers_bone_terminology(app, done_event):
    result = ResultPlacement(app.scene, app.app_logic).place(done_event, 1.0, inputs=(app.ap, app.lateral))
    segmentation = result.segmentation_node.GetSegmentation()
    segment = segmentation.GetSegment(segmentation.GetNthSegmentID(0))
    terminology = segment.GetTerminology() if hasattr(segment, "GetTerminology") else segment.GetTag("TerminologyEntry")
    category, kind = terminology.split("~")[1:3]
    assert segment.GetName() == "Bone" and category == TISSUE and kind == BONE  # was Tissue / Tissue
    assert np.allclose(segment.GetColor(), np.array([241, 214, 145]) / 255.0)  # the terminology's recommended colour


def test_every_run_gets_a_name_of_its_own(app, done_event):
    placement = ResultPlacement(app.scene, app.app_logic)
    first = placement.place(done_event, 1.0, inputs=(app.ap, app.lateral))
    second = placement.place(done_event, 1.0, inputs=(app.ap, app.lateral))
    names = [r.ct_node.GetName() for r in (first, second)]
    assert names[0] != names[1] and all(name.startswith("DiffuX2CT reconstruction") for name in names)
    assert second.segmentation_node.GetName() == f"{names[1]} bone"
    assert second.uncertainty_node.GetName() == f"{names[1]} uncertainty"


def test_the_ct_says_it_is_reconstructed_for_dicom_export_and_keeps_the_source_uids(app, done_event):
    result = ResultPlacement(app.scene, app.app_logic).place(done_event, 1.0, inputs=(app.ap, app.lateral))
    item = app.sh.GetItemByDataNode(result.ct_node)
    description = app.sh.GetItemAttribute(item, "DICOM.SeriesDescription")
    assert description == DERIVED_SERIES_DESCRIPTION and len(description) <= 64  # DICOM LO
    assert "reconstructed from radiographs" in description and "not for diagnosis" in description
    assert result.ct_node.GetAttribute("DiffuX2CT.source_instance_uids") == (
        "1.2.826.0.1.3680043.8.498.1 1.2.826.0.1.3680043.8.498.2"
    )


def test_an_overwritten_volume_loses_the_dicom_instances_it_no_longer_shows(app, done_event):
    placement = ResultPlacement(app.scene, app.app_logic)
    earlier = app.load_volume(SAMPLE_DATA / "ct.nrrd", "A CT from DICOM")
    earlier.SetAttribute("DICOM.instanceUIDs", "1.2.3.4 1.2.3.5")
    result = placement.place(done_event, 1.0, earlier, inputs=(app.ap, app.lateral))
    assert result.ct_node is earlier and earlier.GetAttribute("DICOM.instanceUIDs") is None
    assert earlier.GetName() == "A CT from DICOM"  # the user's own volume keeps its name
