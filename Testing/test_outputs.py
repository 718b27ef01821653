"""Outputs: written atomically and as one unit (a failure or interrupt halfway leaves every old file byte-identical),
temporaries of killed runs cleaned up, and outputs that would destroy an input or each other refused up front."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from DiffuX2CTLib.core.atomic_write import write_json, write_together
from DiffuX2CTLib.core.errors import InputError
from DiffuX2CTLib.core.output_checks import CT_OUTPUT_SUFFIXES, PNG_SUFFIXES, check_output_folder, check_outputs
from DiffuX2CTLib.imaging.image_io import write_image


def _image(value: float) -> sitk.Image:
    return sitk.GetImageFromArray(np.full((6, 7, 8), value, np.float32))


def _half_then_fail(real_bytes: bytes, error: BaseException):
    """A writer that writes the first half of a real file where it is told to, then fails."""

    def write(path: Path) -> None:
        Path(path).write_bytes(real_bytes[: len(real_bytes) // 2])
        raise error

    return write


def test_a_writer_failing_halfway_leaves_the_old_file_byte_identical(tmp_path, monkeypatch):
    target = write_image(_image(1.0), tmp_path / "ct.nrrd")
    before = target.read_bytes()
    new_bytes = write_image(_image(2.0), tmp_path / "other.nrrd").read_bytes()
    (tmp_path / "other.nrrd").unlink()
    half = _half_then_fail(new_bytes, RuntimeError("ITK ERROR: disk full"))
    monkeypatch.setattr(sitk, "WriteImage", lambda image, path, *args: half(path))
    with pytest.raises(InputError) as error:
        write_image(_image(2.0), target)
    assert (
        str(error.value) == f"{target}: cannot be written (ITK ERROR: disk full)"
    )  # names the target, not a temporary
    assert target.read_bytes() == before
    assert os.listdir(tmp_path) == ["ct.nrrd"]


@pytest.mark.parametrize("error", [OSError(28, "No space left on device"), KeyboardInterrupt()])
def test_a_run_is_written_all_or_nothing(tmp_path, error):
    """The second file fails (or the user interrupts) after the first was complete: neither target changes."""
    ct, uncertainty = tmp_path / "ct.nrrd", tmp_path / "ct-uncertainty.nrrd"
    ct.write_bytes(b"old ct")
    uncertainty.write_bytes(b"old uncertainty")
    writers = {ct: lambda path: path.write_bytes(b"new ct"), uncertainty: _half_then_fail(b"new uncertainty", error)}
    with pytest.raises(InputError if isinstance(error, OSError) else KeyboardInterrupt) as raised:
        write_together(writers)
    if isinstance(error, OSError):
        assert str(raised.value) == f"{uncertainty}: cannot be written (No space left on device)"
    assert (ct.read_bytes(), uncertainty.read_bytes()) == (b"old ct", b"old uncertainty")
    assert sorted(os.listdir(tmp_path)) == ["ct-uncertainty.nrrd", "ct.nrrd"]


def test_a_complete_run_replaces_every_file_and_leaves_no_temporary(tmp_path):
    files = {
        tmp_path / "a" / "b" / "ct.nrrd": lambda p: p.write_bytes(b"ct"),
        tmp_path / "p.png": lambda p: p.write_bytes(b"png"),
    }
    assert write_together(files) == list(files)
    assert [p.read_bytes() for p in files] == [b"ct", b"png"]
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["a", "b", "ct.nrrd", "p.png"]


def test_folders_made_for_a_failed_run_are_removed(tmp_path):
    with pytest.raises(InputError):
        write_together(
            {tmp_path / "new" / "deeper" / "ct.nrrd": _half_then_fail(b"data", OSError(5, "Input/output error"))}
        )
    assert os.listdir(tmp_path) == []


def _dead_pid() -> int:
    """The id of a process that has ended."""
    child = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True, check=True
    )
    return int(child.stdout)


def test_temporaries_of_a_killed_run_are_removed_by_the_next_write(tmp_path):
    stale = tmp_path / f".ct.nrrd.{_dead_pid()}-0123abcd.partial.nrrd"
    running = tmp_path / f".ct.nrrd.{os.getpid()}-0123abcd.partial.nrrd"  # a live writer's: left alone
    other = tmp_path / f".other.nrrd.{_dead_pid()}-0123abcd.partial.nrrd"  # another target's: left alone
    for path in (stale, running, other):
        path.write_bytes(b"half")
    write_image(_image(1.0), tmp_path / "ct.nrrd")
    assert sorted(os.listdir(tmp_path)) == sorted(["ct.nrrd", running.name, other.name])


def test_filesystem_errors_name_the_output(tmp_path):
    (tmp_path / "file").write_text("x")
    with pytest.raises(
        InputError,
        match=rf"^{tmp_path / 'file' / 'ct.nrrd'}: cannot be written \({tmp_path / 'file'} is a file, not a folder\)$",
    ):
        write_image(_image(1.0), tmp_path / "file" / "ct.nrrd")
    with pytest.raises(InputError, match=r"ct.nrrd: cannot be written: .*file is a file, not a folder"):
        check_outputs({"--out": (tmp_path / "file" / "sub" / "ct.nrrd", CT_OUTPUT_SUFFIXES)})
    with pytest.raises(InputError, match=r"--out .*: is a folder; expected a file name"):
        check_outputs({"--out": (tmp_path, (".nrrd", ""))})
    with pytest.raises(InputError, match=r"--out .*pair: cannot be used as a folder: .*file is a file$"):
        check_output_folder("--out", tmp_path / "file" / "pair")


def test_unwritable_places_are_refused_up_front(tmp_path, monkeypatch):
    (tmp_path / "old.nrrd").write_bytes(b"x")
    monkeypatch.setattr(os, "access", lambda path, mode: Path(path) != tmp_path / "old.nrrd")
    with pytest.raises(InputError, match="old.nrrd: cannot be written: the file exists and is read-only"):
        check_outputs({"--out": (tmp_path / "old.nrrd", CT_OUTPUT_SUFFIXES)})
    monkeypatch.setattr(os, "access", lambda path, mode: False)
    with pytest.raises(InputError, match=rf"cannot be written: no permission to write in {tmp_path}$"):
        check_outputs({"--out": (tmp_path / "new.nrrd", CT_OUTPUT_SUFFIXES)})


def test_an_output_that_is_an_input_or_another_output_is_refused(tmp_path):
    ap = tmp_path / "ap.nrrd"
    ap.write_bytes(b"radiograph")
    (tmp_path / "link.nrrd").symlink_to(ap)
    os.link(ap, tmp_path / "hard.nrrd")
    inputs = {"--ap": ap}
    for same in (ap, tmp_path / "link.nrrd", tmp_path / "hard.nrrd", tmp_path / "sub" / ".." / "ap.nrrd"):
        with pytest.raises(InputError, match=rf"--out {same}: is the input --ap; it would be overwritten"):
            check_outputs({"--out": (same, CT_OUTPUT_SUFFIXES)}, inputs)
    outputs = {
        "--out": (tmp_path / "ct.nrrd", CT_OUTPUT_SUFFIXES),
        "--preview": (tmp_path / "ct.nrrd", CT_OUTPUT_SUFFIXES + PNG_SUFFIXES),
    }
    with pytest.raises(
        InputError, match=r"--preview .*ct.nrrd: is also the output --out; each output needs its own path"
    ):
        check_outputs(outputs, inputs)
    assert ap.read_bytes() == b"radiograph"
    check_outputs(
        {"--out": (tmp_path / "ct.nrrd", CT_OUTPUT_SUFFIXES), "--preview": (tmp_path / "ct.png", PNG_SUFFIXES)}, inputs
    )


@pytest.mark.parametrize("name", ["ct.txt", "ct", "ct.png", "ct.nii.gz.bak", "ct.mhd"])
def test_unsupported_output_types_are_named(tmp_path, name):
    with pytest.raises(InputError, match=r"--out .*: unsupported output type '.*' \(use .nrrd, .nii.gz, .nii, .mha\)"):
        check_outputs({"--out": (tmp_path / name, CT_OUTPUT_SUFFIXES)})


def _strict_json(text: str):
    def refuse(constant: str):
        raise AssertionError(f"{constant} is not valid JSON")

    return json.loads(text, parse_constant=refuse)


def test_json_files_and_printed_json_hold_no_infinity_or_nan(tmp_path):
    """JSON has no Infinity or NaN (Python writes them anyway): they become null, with a note beside the key."""
    from DiffuX2CTLib.core.json_output import dumps

    data = {"psnr_db": float("inf"), "ssim": 1.0, "nested": {"loss": float("nan")}, "mean": [float("-inf"), 2.0]}
    for text in (dumps(data), write_json(data, tmp_path / "summary.json").read_text(encoding="utf-8")):
        parsed = _strict_json(text)
        assert parsed["psnr_db"] is None and parsed["ssim"] == 1.0 and parsed["mean"] == [None, 2.0]
        assert parsed["psnr_db_note"] == "infinite, written as null (JSON has no infinity)"
        assert parsed["nested"] == {"loss": None, "loss_note": "not a number, written as null"}
    assert _strict_json(dumps({"psnr_db": float("inf"), "psnr_db_note": "identical"})) == {
        "psnr_db": None,
        "psnr_db_note": "identical",
    }  # a note already given is kept, not doubled


def test_a_symbolic_link_loop_as_an_output_is_refused(tmp_path):
    (tmp_path / "loop.nrrd").symlink_to("loop.nrrd")
    (tmp_path / "loop").symlink_to("loop")
    with pytest.raises(
        InputError, match=r"^--out .*loop.nrrd: is a symbolic link that leads back to itself \(a loop\)"
    ):
        check_outputs({"--out": (tmp_path / "loop.nrrd", CT_OUTPUT_SUFFIXES)})
    with pytest.raises(InputError, match=r"^--out .*loop/ct.nrrd: is a symbolic link that leads back to itself"):
        check_outputs({"--out": (tmp_path / "loop" / "ct.nrrd", CT_OUTPUT_SUFFIXES)})
    with pytest.raises(InputError, match=r"^--out .*loop: is a symbolic link that leads back to itself"):
        check_output_folder("--out", tmp_path / "loop")
    check_outputs({"--out": (tmp_path / "ct.nrrd", CT_OUTPUT_SUFFIXES)}, {"--ap": tmp_path / "loop.nrrd"})
