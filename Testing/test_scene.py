"""SceneLogic against Slicer's real MRML scene (slicer-core) and the real background worker on the sample pair."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import slicer
import vtk
from slicer_scene import SAMPLE_DATA, CoreApp
from vtk.util import numpy_support

from DiffuX2CTLib.app.runner import SubprocessRunner
from DiffuX2CTLib.app.scene import ATTRIBUTE_PREFIX, JobState, SceneLogic
from DiffuX2CTLib.core.errors import InputError
from DiffuX2CTLib.model.card import BUNDLED_MODEL_DIR, read_model_card

FAST = {"steps": 5, "seed": 3}


@pytest.fixture()
def app() -> CoreApp:
    app = CoreApp()
    app.ap = app.load_volume(SAMPLE_DATA / "ap.nrrd", "AP")
    app.lateral = app.load_volume(SAMPLE_DATA / "lateral.nrrd", "Lateral")
    return app


@pytest.fixture(scope="module")
def reconstructed():
    """One real reconstruction of the sample pair, shared by the checks of what it put into the scene."""
    app = CoreApp()
    ap = app.load_volume(SAMPLE_DATA / "ap.nrrd", "AP")
    lateral = app.load_volume(SAMPLE_DATA / "lateral.nrrd", "Lateral")
    before = app.node_ids()
    logic = SceneLogic(app.scene, app.app_logic)
    statuses = []
    result = logic.start(ap, lateral, name="Reconstructed CT", **FAST).wait(statuses.append, interval_s=0.05)
    return app, logic, result, before, statuses


def _matrix(node) -> np.ndarray:
    matrix = vtk.vtkMatrix4x4()
    node.GetIJKToRASMatrix(matrix)
    return np.array([[matrix.GetElement(r, c) for c in range(4)] for r in range(4)])


def test_ct_node_has_the_model_grid_at_the_isocentre(reconstructed):
    app, _, result, _, _ = reconstructed
    ct = result.ct_node
    assert ct.GetScene() is app.scene and ct.GetName() == "Reconstructed CT"
    assert ct.GetImageData().GetDimensions() == (64, 64, 64)
    grid = read_model_card()["model"]
    spacing = grid["field_of_view_mm"] / grid["grid_size"]
    assert np.allclose(ct.GetSpacing(), (spacing,) * 3)
    # LPS grid centred on the isocentre (0, 0, 0) -> RAS: x and y axes negated, first voxel at (+, +, -).
    half = (grid["grid_size"] - 1) / 2 * spacing
    expected = np.diag([-spacing, -spacing, spacing, 1.0])
    expected[:3, 3] = (half, half, -half)
    assert np.allclose(_matrix(ct), expected)
    values = slicer.util.arrayFromVolume(ct)
    assert values.min() >= -1000.0 and values.max() <= 1500.0 and values.std() > 100.0


def test_ct_is_shown_with_a_ct_window_in_the_slice_views(reconstructed):
    app, _, result, _, _ = reconstructed
    display = result.ct_node.GetDisplayNode()
    assert not display.GetAutoWindowLevel() and display.GetWindow() > 300
    assert app.app_logic.GetSelectionNode().GetActiveVolumeID() == result.ct_node.GetID()


def test_bone_segmentation_is_non_empty_with_a_closed_surface(reconstructed):
    _, _, result, _, _ = reconstructed
    segmentation_node = result.segmentation_node
    segmentation = segmentation_node.GetSegmentation()
    assert segmentation.GetNumberOfSegments() == 1
    segment = segmentation.GetSegment(segmentation.GetNthSegmentID(0))
    assert segment.GetName() == "Bone"
    labelmap = segment.GetRepresentation("Binary labelmap")
    assert numpy_support.vtk_to_numpy(labelmap.GetPointData().GetScalars()).sum() > 100
    surface = segment.GetRepresentation("Closed surface")
    assert surface is not None and surface.GetNumberOfPoints() > 100
    assert segmentation_node.GetDisplayNode().GetPreferredDisplayRepresentationName3D() == "Closed surface"
    assert result.ct_node.GetNodeReference("DiffuX2CT.boneSegmentation") is segmentation_node


def test_volume_rendering_shows_bone(reconstructed):
    _, _, result, _, _ = reconstructed
    display = result.volume_rendering_node
    assert display.IsA("vtkMRMLVolumeRenderingDisplayNode") and display.GetVisibility()
    assert display.GetVolumeNode() is result.ct_node
    opacity = display.GetVolumePropertyNode().GetVolumeProperty().GetScalarOpacity()
    assert opacity.GetValue(-500.0) == 0.0 and opacity.GetValue(1000.0) > 0.3


def test_attributes_record_model_settings_timing_and_agreement(reconstructed):
    _, _, result, _, _ = reconstructed
    ct = result.ct_node

    def attribute(key: str) -> str:
        return ct.GetAttribute(ATTRIBUTE_PREFIX + key)

    assert attribute("model") == BUNDLED_MODEL_DIR.name
    assert attribute("model_sha256") == read_model_card()["weights_sha256"]
    assert attribute("steps") == "5" and attribute("seed") == "3" and attribute("sampler") == "ddim"
    assert float(attribute("seconds")) > 0 and float(attribute("wall_seconds")) >= float(attribute("seconds"))
    assert "not for diagnosis" in attribute("intended_use")
    assert set(result.agreement) == {"ap", "lateral"}
    assert all(0.5 < value <= 1.0 for value in result.agreement.values())
    assert float(attribute("agreement_ap")) == pytest.approx(result.agreement["ap"], abs=1e-4)


def test_progress_was_reported_with_a_time_estimate(reconstructed):
    _, _, _, _, statuses = reconstructed
    samples = read_model_card()["model"]["default_samples"]  # the default reconstruction averages them
    steps = [s.step for s in statuses if s.total == FAST["steps"] * samples]
    assert steps and steps == sorted(steps) and max(steps) >= 3
    assert any(s.eta_s is not None and s.eta_s >= 0 for s in statuses)


def test_only_result_nodes_were_added_and_work_folder_removed(reconstructed):
    app, logic, result, before, _ = reconstructed
    added = set(app.node_ids()) - set(before)
    assert result.ct_node.GetID() in added and result.segmentation_node.GetID() in added
    assert result.uncertainty_node.GetID() in added  # the bundled model's default averages several samples
    assert logic.job is None


def test_overwriting_an_output_volume_reuses_its_nodes(app):
    logic = SceneLogic(app.scene, app.app_logic)
    first = logic.reconstruct(app.ap, app.lateral, name="CT", method="regression")
    nodes_after_first = app.node_ids()
    first_values = slicer.util.arrayFromVolume(first).copy()
    second = logic.reconstruct(app.ap, app.lateral, output_node=first, steps=2, seed=1, samples=1)
    assert second is first
    assert app.node_ids() == nodes_after_first
    assert not np.array_equal(slicer.util.arrayFromVolume(second), first_values)
    assert first.GetAttribute(ATTRIBUTE_PREFIX + "method") == "diffusion"


def test_cancel_leaves_the_scene_unchanged(app):
    before = app.node_ids()
    logic = SceneLogic(app.scene, app.app_logic)
    job = logic.start(app.ap, app.lateral, steps=200)
    workdir = job._workdir
    deadline = time.monotonic() + 60
    while job.poll().step < 1 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert job.status.state == JobState.RUNNING and job.status.step >= 1
    job.cancel()  # returns at once; the job ends when the worker says it stopped
    while job.poll().state == JobState.CANCELLING:
        time.sleep(0.05)
    assert job.status.state == JobState.CANCELLED
    assert app.node_ids() == before
    assert not workdir.exists() and logic.job is None
    with pytest.raises(InputError, match="cancelled"):
        job.wait()


def test_one_run_at_a_time(app):
    logic = SceneLogic(app.scene, app.app_logic)
    job = logic.start(app.ap, app.lateral, **FAST)
    try:
        with pytest.raises(InputError, match="already running"):
            logic.start(app.ap, app.lateral, **FAST)
    finally:
        job.cancel()


def test_bad_image_fails_with_the_workers_message_and_no_change(app):
    blank = slicer.vtkMRMLScalarVolumeNode()
    blank.SetName("Blank")
    image = vtk.vtkImageData()
    image.SetDimensions(128, 128, 1)
    image.AllocateScalars(vtk.VTK_FLOAT, 1)
    image.GetPointData().GetScalars().Fill(7.0)
    blank.SetAndObserveImageData(image)
    app.scene.AddNode(blank)
    before = app.node_ids()
    job = SceneLogic(app.scene, app.app_logic).start(blank, app.lateral, **FAST)
    with pytest.raises(InputError, match="constant"):
        job.wait(interval_s=0.05)
    assert job.status.state == JobState.FAILED and job.status.error_kind == "bad_input"
    assert app.node_ids() == before


def test_corrupted_model_is_reported_as_a_model_error(app, tmp_path):
    model = tmp_path / "my model (copy) $HOME;"
    shutil.copytree(BUNDLED_MODEL_DIR, model)
    weights = model / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-1] ^= 0xFF
    weights.write_bytes(bytes(data))
    before = app.node_ids()
    job = SceneLogic(app.scene, app.app_logic).start(app.ap, app.lateral, model=str(model), **FAST)
    with pytest.raises(InputError, match="checksum mismatch"):
        job.wait(interval_s=0.05)
    assert job.status.error_kind == "model" and app.node_ids() == before


class _CrashingRunner(SubprocessRunner):
    """Starts a process that dies like a segfaulting worker: a message on stderr, no protocol event."""

    def start(self, command, env=None, cwd=None):
        return super().start(
            [sys.executable, "-c", "import sys; sys.stderr.write('Fatal error in libfoo\\n'); sys.exit(139)"], env, cwd
        )


def test_a_crashing_worker_ends_in_a_clear_failure(app):
    before = app.node_ids()
    job = SceneLogic(app.scene, app.app_logic, runner=_CrashingRunner()).start(app.ap, app.lateral, **FAST)
    with pytest.raises(InputError, match="ended unexpectedly with exit code 139: Fatal error in libfoo"):
        job.wait(interval_s=0.05)
    assert app.node_ids() == before and not job._workdir.exists()


@pytest.mark.parametrize(
    ("make_nodes", "message"),
    [
        (lambda app: (None, app.lateral), "no frontal"),
        (lambda app: (app.ap, app.ap), "same image was given as both"),
        (
            lambda app: (app.load_volume(SAMPLE_DATA / "ct.nrrd", "CT"), app.lateral),
            "is a 3D volume of 128 x 128 x 128",
        ),
        (lambda app: (str(SAMPLE_DATA / "ap.nrrd"), app.lateral), "must be a volume node of the scene, got the text"),
    ],
)
def test_wrong_nodes_are_refused_before_anything_starts(app, make_nodes, message):
    ap, lateral = make_nodes(app)
    logic = SceneLogic(app.scene, app.app_logic)
    with pytest.raises(InputError, match=message):
        logic.start(ap, lateral, **FAST)
    assert logic.job is None


@pytest.mark.parametrize("view", ["ap", "lateral"])
def test_an_output_volume_that_is_one_of_the_radiographs_is_refused_and_left_as_it_was(app, view):
    """Issue 32 point 2: the radiograph would be overwritten with the CT and keep its DICOM.instanceUIDs."""
    radiograph = getattr(app, view)
    radiograph.SetAttribute("DICOM.instanceUIDs", "1.2.840.99.1")
    before, voxels = app.node_ids(), slicer.util.arrayFromVolume(radiograph).copy()
    logic = SceneLogic(app.scene, app.app_logic)
    with pytest.raises(InputError, match=f"{radiograph.GetName()}: the output volume is one of the input radiographs"):
        logic.start(app.ap, app.lateral, output_node=radiograph, **FAST)
    assert logic.job is None and logic.session.process is None and app.node_ids() == before
    assert np.array_equal(slicer.util.arrayFromVolume(radiograph), voxels)
    assert radiograph.GetAttribute("DICOM.instanceUIDs") == "1.2.840.99.1"


def test_invalid_options_and_missing_model_are_refused(app):
    logic = SceneLogic(app.scene, app.app_logic)
    with pytest.raises(InputError, match=r"steps.* must be at least 1"):
        logic.start(app.ap, app.lateral, steps=0)
    for steps in ("20", 2.5, True):  # a console script's slips: named, never a bare TypeError or accepted
        with pytest.raises(InputError, match="steps must be a whole number or None"):
            logic.start(app.ap, app.lateral, steps=steps)
    with pytest.raises(InputError, match="model folder not found"):
        logic.start(app.ap, app.lateral, model=str(Path("/nonexistent/model")))


def test_probe_reports_dependencies_and_device(app):
    report = SceneLogic(app.scene, app.app_logic).probe()
    assert report["missing"] == [] and report["torch"]
    assert isinstance(report["cuda"], bool)


def _offscreen_rendering_works() -> bool:
    probe = "import vtk; w = vtk.vtkRenderWindow(); w.SetOffScreenRendering(1); w.Render()"
    return subprocess.run([sys.executable, "-c", probe], capture_output=True).returncode == 0


@pytest.mark.skipif(not _offscreen_rendering_works(), reason="no off-screen OpenGL (EGL) on this machine")
def test_screenshot_of_3d_and_slice_views_shows_the_result(tmp_path):
    """The real Slicer displayable managers render the result off-screen (in a child process, so a graphics
    driver crash fails this test instead of the run)."""
    out = tmp_path / "views.png"
    script = Path(__file__).with_name("slicer_scene.py")
    env = {**os.environ, "PYTHONPATH": str(script.parent.parent)}
    subprocess.run(
        [sys.executable, str(script), str(out), "--steps", "5"], check=True, env=env, capture_output=True, timeout=300
    )
    reader = vtk.vtkPNGReader()
    reader.SetFileName(str(out))
    reader.Update()
    width, height, _ = reader.GetOutput().GetDimensions()
    pixels = numpy_support.vtk_to_numpy(reader.GetOutput().GetPointData().GetScalars()).reshape(height, width, -1)[
        ..., :3
    ]
    assert width == 4 * height
    panels = [pixels[:, i * height : (i + 1) * height].astype(float) for i in range(4)]
    three_d = panels[0]
    bone_coloured = (three_d[..., 0] > 150) & (
        three_d[..., 0] > three_d[..., 2] + 30
    )  # beige surface on a blue background
    assert bone_coloured.mean() > 0.01
    for slice_view in panels[1:]:
        grey = slice_view.mean(axis=-1)
        assert (grey > 20).mean() > 0.2 and grey.std() > 20  # the body fills the view, with contrast
