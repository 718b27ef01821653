"""Fuzzing the radiograph and CT readers: random bytes and truncated real files must end in the project's own
clear InputError, never another exception (and never a crash of the process)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from conftest import write_dicom_radiograph
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from DiffuX2CTLib.core.errors import InputError
from DiffuX2CTLib.imaging.image_io import read_ct, read_radiograph

SAMPLE = Path(__file__).resolve().parent.parent / "Resources" / "SampleData"
SUFFIXES = (".dcm", ".png", ".jpg", ".tif", ".nrrd", ".mha", ".nii.gz")
FUZZ = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


def _expect_clean_failure_or_radiograph(path: Path) -> None:
    try:
        radiograph = read_radiograph(path, "ap")
    except InputError as error:
        assert str(error).startswith(path.name + ":")
        return
    assert radiograph.pixels.ndim == 2 and np.isfinite(radiograph.pixels).all()


@FUZZ
@given(data=st.binary(max_size=4096), suffix=st.sampled_from(SUFFIXES))
def test_random_bytes_are_a_clear_error(tmp_path, data, suffix):
    path = tmp_path / f"random{suffix}"
    path.write_bytes(data)
    _expect_clean_failure_or_radiograph(path)
    with pytest.raises(InputError):
        read_ct(path)


def _real_files(tmp_path_factory) -> list[Path]:
    folder = tmp_path_factory.mktemp("real")
    pixels = (np.random.default_rng(0).random((64, 48)) * 4000).astype(np.uint16)
    write_dicom_radiograph(folder / "dx.dcm", pixels, ImagerPixelSpacing=[0.2, 0.2])
    return [SAMPLE / "ap.nrrd", folder / "dx.dcm"]


@pytest.fixture(scope="module")
def real_files(tmp_path_factory) -> list[Path]:
    return _real_files(tmp_path_factory)


@FUZZ
@given(which=st.integers(0, 1), fraction=st.floats(0.0, 0.999))
def test_truncated_files_are_a_clear_error(tmp_path, real_files, which, fraction):
    source = real_files[which]
    data = source.read_bytes()
    path = tmp_path / f"truncated{''.join(source.suffixes)}"
    path.write_bytes(data[: int(len(data) * fraction)])
    _expect_clean_failure_or_radiograph(path)


@FUZZ
@given(position=st.floats(0.0, 0.999), value=st.integers(0, 255))
def test_corrupted_headers_are_a_clear_error(tmp_path, real_files, position, value):
    data = bytearray(real_files[0].read_bytes())
    header_end = data.index(b"\n\n")
    data[int(header_end * position)] = value
    path = tmp_path / "corrupted.nrrd"
    path.write_bytes(bytes(data))
    _expect_clean_failure_or_radiograph(path)
