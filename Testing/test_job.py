"""The job file and the worker's JSON-line protocol, and acquisition details applied to a radiograph; the job
file is fuzzed: any JSON value ends in a valid job or one InputError that names the field."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from DiffuX2CTLib.app import worker
from DiffuX2CTLib.app.protocol import ACQUISITION_SCHEMA, JOB_SCHEMA, OPTIONS_SCHEMA, JobSpec, event_line, parse_event
from DiffuX2CTLib.core.errors import InputError
from DiffuX2CTLib.imaging.acquisition import Acquisition
from DiffuX2CTLib.imaging.image_io import Radiograph, apply_acquisition
from DiffuX2CTLib.inference.options import ReconstructionOptions


def test_job_spec_round_trips_through_its_file(tmp_path):
    spec = JobSpec(
        ap="a b/ap.nrrd",
        lateral="läteral;$(x).nrrd",
        output_dir=str(tmp_path),
        model="m",
        options=ReconstructionOptions(steps=7, seed=3, samples=2, device="cpu", precision="bfloat16"),
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
        (
            lambda: ReconstructionOptions(precision="float16"),
            "unknown precision 'float16' \\(use auto, float32 or bfloat16\\)",
        ),
        (lambda: JobSpec.from_dict({"ap": "a"}), "job file: lateral is missing"),
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
    assert (
        unchanged.geometry is None
        and unchanged.pixel_spacing_mm == (0.5, 0.5)
        and np.array_equal(unchanged.pixels, pixels)
    )


VALID = {
    "ap": "ap.nrrd",
    "lateral": "lateral.nrrd",
    "output_dir": "out",
    "model": None,
    "options": {
        "steps": 5,
        "seed": 1,
        "device": "cpu",
        "samples": 1,
        "method": "diffusion",
        "sampler": "ddim",
        "check_inputs": True,
    },
    "acquisition": {
        "ap": {
            "source_to_detector_mm": 1200.0,
            "source_to_isocenter_mm": 1000.0,
            "pixel_spacing_mm": [0.2, 0.2],
            "bone_dark": False,
        }
    },
}


@pytest.mark.parametrize(
    ("path", "value", "message"),
    [
        (("options", "check_inputs"), "false", "options.check_inputs must be true or false, got the string 'false'"),
        (
            ("acquisition", "ap", "bone_dark"),
            "false",
            "acquisition.ap.bone_dark must be true or false, got the string 'false'",
        ),
        (("acquisition", "ap", "bone_dark"), 1, "acquisition.ap.bone_dark must be true or false, got the number 1"),
        (("options", "steps"), "20", "options.steps must be a whole number, got the string '20'"),
        (("options", "steps"), True, "options.steps must be a whole number, got true"),
        (("options", "seed"), 1e23, "options.seed must be a whole number, got the number 1e+23"),
        (("options", "seed"), 2**64, "seed must be between 0 and 9223372036854775807"),
        (
            ("acquisition", "ap", "pixel_spacing_mm"),
            [0.2],
            "acquisition.ap.pixel_spacing_mm must be two numbers, got a list",
        ),
        (
            ("acquisition", "ap", "source_to_detector_mm"),
            "1200",
            "acquisition.ap.source_to_detector_mm must be a number, got the string '1200'",
        ),
        (("ap",), ["a.png"], "job file: ap must be text, got a list"),
        (("options", "colour"), "red", "job file: unknown field(s) options.colour"),
        (("options",), "fast", "job file: options must be an object, got the string 'fast'"),
    ],
)
def test_wrong_types_in_the_job_file_are_named(path, value, message):
    data = json.loads(json.dumps(VALID))
    target = data
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    with pytest.raises(InputError, match=re.escape(message)):
        JobSpec.from_dict(data)


def test_the_worker_reports_a_wrongly_typed_job_as_bad_input(tmp_path, capsys):
    data = json.loads(json.dumps(VALID))
    data["acquisition"]["ap"]["bone_dark"] = "false"
    (tmp_path / "job.json").write_text(json.dumps(data))
    assert worker.main([str(tmp_path / "job.json")]) == worker.EXIT_FAILED
    event = json.loads(capsys.readouterr().out.strip())
    assert event["kind"] == "bad_input" and "acquisition.ap.bone_dark must be true or false" in event["message"]


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True) | st.text(max_size=8),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=8), children, max_size=3),
    max_leaves=6,
)
SCHEMAS = {
    (): JOB_SCHEMA,
    ("options",): OPTIONS_SCHEMA,
    ("acquisition", "ap"): ACQUISITION_SCHEMA,
    ("acquisition", "lateral"): ACQUISITION_SCHEMA,
}


@st.composite
def mutated_jobs(draw):
    """A valid job with one to three fields (known or not, at any level) replaced by arbitrary JSON values."""
    data = json.loads(json.dumps(VALID))
    for _ in range(draw(st.integers(1, 3))):
        where = draw(st.sampled_from(sorted(SCHEMAS)))
        target = data
        for key in where:
            target = target.setdefault(key, {}) if isinstance(target, dict) else {}
        if isinstance(target, dict):
            key = draw(st.sampled_from(sorted(SCHEMAS[where])) | st.text(max_size=6))
            target[key] = draw(JSON_VALUES)
    return data


@settings(max_examples=300, deadline=None)
@given(mutated_jobs() | JSON_VALUES)
def test_fuzzed_job_files_end_in_a_valid_job_or_a_named_input_error(data):
    try:
        spec = JobSpec.from_dict(data)
    except InputError as error:
        assert str(error)
        return
    assert (
        isinstance(spec.ap, str) and isinstance(spec.options.check_inputs, bool) and isinstance(spec.options.seed, int)
    )
    assert all(isinstance(a.bone_dark, bool) for a in spec.acquisition.values())
    assert spec.options.steps is None or (
        isinstance(spec.options.steps, int) and not isinstance(spec.options.steps, bool)
    )
    assert JobSpec.from_dict(json.loads(json.dumps(spec.to_dict()))) == spec  # what the scene sends, the worker reads


@settings(max_examples=100, deadline=None)
@given(st.binary(max_size=200))
def test_fuzzed_job_file_bytes_end_in_a_named_input_error(tmp_path_factory, raw):
    path = tmp_path_factory.mktemp("fuzz") / "job.json"
    path.write_bytes(raw)
    try:
        JobSpec.read(path)
    except InputError as error:
        assert str(error)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"steps": "20"}, "steps must be a whole number or None, got '20'"),
        ({"steps": 2.5}, "steps must be a whole number or None, got 2.5"),
        ({"steps": True}, "steps must be a whole number or None, got True"),
        ({"seed": 1.0}, "seed must be a whole number, got 1.0"),
        ({"samples": 2.0}, "samples must be a whole number or None, got 2.0"),
        ({"device": 0}, "device must be text, got 0"),
        ({"check_inputs": "no"}, "check_inputs must be True or False, got 'no'"),
    ],
)
def test_options_of_the_wrong_type_are_named_errors_not_type_errors(options, message):
    """What a console script may pass: never a bare TypeError, and nothing accepted that fails later."""
    with pytest.raises(InputError, match=re.escape(message)):
        ReconstructionOptions(**options)
