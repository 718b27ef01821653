"""The job file and the worker's JSON-line protocol, and acquisition details applied to a radiograph."""

from __future__ import annotations

import json

import numpy as np
import pytest

from DiffuX2CTLib.app import worker
from DiffuX2CTLib.data.io import Radiograph, apply_acquisition
from DiffuX2CTLib.errors import InputError
from DiffuX2CTLib.job import (
    Acquisition,
    JobSpec,
    ReconstructionOptions,
    event_line,
    parse_event,
)


def test_job_spec_round_trips_through_its_file(tmp_path):
    spec = JobSpec(
        ap="a b/ap.nrrd", lateral="läteral;$(x).nrrd", output_dir=str(tmp_path), model="m",
        options=ReconstructionOptions(steps=7, seed=3, samples=2, device="cpu"),
        acquisition={"ap": Acquisition(1100.0, 950.0, (0.2, 0.2), bone_dark=True)},
    )
    assert JobSpec.read(spec.write(tmp_path / "job.json")) == spec


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: Acquisition(1000.0, 1200.0), "must exceed"),
        (lambda: Acquisition(1000.0, None), "both"),
        (lambda: Acquisition(pixel_spacing_mm=(0.0, 0.1)), "two positive sizes"),
        (lambda: ReconstructionOptions(device="tpu"), "unknown device"),
        (lambda: JobSpec.from_dict({"ap": "a"}), "malformed job file"),
        (lambda: JobSpec("a", "b", "c", acquisition={"pa": Acquisition()}), "unknown view"),
    ],
)
def test_invalid_jobs_are_named_errors(make, message):
    with pytest.raises(InputError, match=message):
        make()


def test_events_parse_and_free_text_is_ignored():
    assert parse_event(event_line("progress", step=2, total=5)) == {"event": "progress", "step": 2, "total": 5}
    assert parse_event("Traceback (most recent call last):") is None
    assert parse_event("[1, 2]") is None


def test_worker_reports_a_bad_job_file_as_one_error_event(tmp_path, capsys):
    (tmp_path / "job.json").write_text("{not json")
    assert worker.main([str(tmp_path / "job.json")]) == worker.EXIT_FAILED
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 1 and json.loads(lines[0])["kind"] == "bad_input"


def test_worker_reports_missing_dependencies(tmp_path, capsys, monkeypatch):
    JobSpec("ap.nrrd", "lateral.nrrd", str(tmp_path)).write(tmp_path / "job.json")
    monkeypatch.setattr(worker, "missing_modules", lambda: ["monai"])
    assert worker.main([str(tmp_path / "job.json")]) == worker.EXIT_FAILED
    event = json.loads(capsys.readouterr().out.strip())
    assert event["kind"] == "missing_dependency" and event["missing"] == ["monai"] and "monai" in event["message"]


def test_acquisition_sets_geometry_and_inverts_bone_dark_pixels(tmp_path):
    pixels = np.arange(64 * 48, dtype=np.float32).reshape(64, 48)
    radiograph = Radiograph(pixels=pixels, pixel_spacing_mm=(0.5, 0.5), geometry=None, path=tmp_path / "x.dcm")
    applied = apply_acquisition(radiograph, "lateral", Acquisition(1500.0, 1100.0, (0.2, 0.3), bone_dark=True))
    assert applied.geometry.view.value == "lateral" and applied.geometry.magnification == pytest.approx(1500 / 1100)
    assert applied.geometry.detector_pixels == (64, 48) and applied.pixel_spacing_mm == (0.2, 0.3)
    assert applied.pixels[0, 0] == pixels.max() and applied.pixels[-1, -1] == pixels.min()
    assert any("inverted" in note for note in applied.notes)
    unchanged = apply_acquisition(radiograph, "ap", Acquisition())
    assert unchanged.geometry is None and unchanged.pixel_spacing_mm == (0.5, 0.5) and np.array_equal(unchanged.pixels, pixels)
