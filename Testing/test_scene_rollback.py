"""The result placement's promise when adding results fails halfway: the scene is as it was before (no new node left
behind, an overwritten output volume back to its voxels, geometry and attributes), and the job fails with the
reason."""

from __future__ import annotations

import numpy as np
import pytest
import slicer
import vtk
from slicer_scene import CoreApp

from DiffuX2CTLib.anatomy.phantom import generate_phantom
from DiffuX2CTLib.app.result_placement import ResultPlacement
from DiffuX2CTLib.imaging.geometry import VolumeGrid
from DiffuX2CTLib.imaging.image_io import grid_image, write_image

GRID = VolumeGrid(32, 10.0)


@pytest.fixture()
def placement():
    app = CoreApp()
    placement = ResultPlacement(app.scene, app.app_logic)
    placement.node_ids = app.node_ids
    return placement


def _event(tmp_path, offset_hu: float, samples: int = 2) -> dict:
    """A worker's ``done`` event with real files: a CT (and, for K > 1, an uncertainty volume)."""
    ct = grid_image(generate_phantom(5, GRID).numpy() + offset_hu, GRID)
    outputs = {"ct": str(write_image(ct, tmp_path / f"ct{offset_hu:+.0f}.nrrd"))}
    if samples > 1:
        outputs["uncertainty"] = str(
            write_image(grid_image(np.full((32,) * 3, 7.0, np.float32), GRID), tmp_path / f"u{offset_hu:+.0f}.nrrd")
        )
    return {
        "outputs": outputs,
        "metrics": {"agreement": {"ap": 0.95, "lateral": 0.93}, "low_agreement_views": []},
        "provenance": {"seed": str(int(offset_hu))},
    }


def _fail_at(step: str, placement, monkeypatch) -> None:
    """A scene change fails: volume rendering (after the CT and its segmentation were added), or the last one,
    filing the new nodes in the subject hierarchy (after it did its work)."""
    real = getattr(placement, step)

    def broken(*args, **kwargs):
        if step == "_file_in_hierarchy":
            real(*args, **kwargs)
        raise RuntimeError(f"{step} unavailable")

    monkeypatch.setattr(placement, step, broken)


def _hierarchy_items(placement) -> int:
    sh = slicer.vtkMRMLSubjectHierarchyNode.GetSubjectHierarchyNode(placement.scene)
    items = vtk.vtkIdList()
    sh.GetItemChildren(sh.GetSceneItemID(), items, True)
    return items.GetNumberOfIds()


STEPS = ["_volume_rendering", "_file_in_hierarchy"]


def _state(node) -> tuple:
    matrix = vtk.vtkMatrix4x4()
    node.GetIJKToRASMatrix(matrix)
    attributes = {key: node.GetAttribute(key) for key in node.GetAttributeNames() or ()}
    return (
        slicer.util.arrayFromVolume(node).copy(),
        [matrix.GetElement(r, c) for r in range(4) for c in range(4)],
        attributes,
    )


@pytest.mark.parametrize("step", STEPS)
def test_a_failure_while_adding_new_results_leaves_no_node_behind(placement, tmp_path, monkeypatch, step):
    before, items = placement.node_ids(), _hierarchy_items(placement)
    _fail_at(step, placement, monkeypatch)
    with pytest.raises(RuntimeError, match=f"{step} unavailable"):
        placement.place(_event(tmp_path, 0.0), 1.0, None, "Reconstructed CT")
    assert placement.node_ids() == before and _hierarchy_items(placement) == items


@pytest.mark.parametrize("step", STEPS)
def test_a_failure_while_overwriting_restores_the_output_volume(placement, tmp_path, monkeypatch, step):
    first = placement.place(_event(tmp_path, 0.0), 1.0, None, "Reconstructed CT")
    before, state = placement.node_ids(), _state(first.ct_node)
    _fail_at(step, placement, monkeypatch)
    with pytest.raises(RuntimeError, match=f"{step} unavailable"):
        placement.place(_event(tmp_path, 300.0), 2.0, first.ct_node, "Reconstructed CT")
    assert placement.node_ids() == before
    voxels, matrix, attributes = _state(first.ct_node)
    assert np.array_equal(voxels, state[0]) and matrix == state[1] and attributes == state[2]
    assert attributes["DiffuX2CT.seed"] == "0"
