"""Readers and writers: every supported format, and a clear message for every kind of bad input."""

from __future__ import annotations

import os

import numpy as np
import pytest
import SimpleITK as sitk
from conftest import write_dicom_radiograph

from DiffuX2CTLib.core.errors import InputError
from DiffuX2CTLib.imaging.geometry import ProjectionGeometry, View, VolumeGrid
from DiffuX2CTLib.imaging.hounsfield import HUWindow
from DiffuX2CTLib.imaging.image_io import (
    detector_image,
    grid_image,
    read_ct,
    read_radiograph,
    resample_to_grid,
    world_to_index_matrix,
    write_image,
)


@pytest.mark.parametrize("suffix", [".nrrd", ".nii.gz", ".mha"])
def test_ct_formats_round_trip(tmp_path, phantom_ct, suffix):
    path = write_image(phantom_ct, tmp_path / f"ct{suffix}")
    read = read_ct(path)
    assert read.GetSize() == phantom_ct.GetSize()
    assert np.allclose(read.GetOrigin(), phantom_ct.GetOrigin(), atol=1e-3)
    assert np.allclose(sitk.GetArrayViewFromImage(read), sitk.GetArrayViewFromImage(phantom_ct), atol=1e-3)


def test_ct_from_a_dicom_series_folder(tmp_path, phantom_ct):
    series = sitk.Cast(phantom_ct, sitk.sitkInt16)
    writer = sitk.ImageFileWriter()
    writer.KeepOriginalImageUIDOn()
    uid = "1.2.826.0.1.3680043.2.1125." + "1" * 10
    for k in range(series.GetDepth()):
        slice_ = series[:, :, k]
        slice_.SetMetaData("0020|000e", uid)
        slice_.SetMetaData("0008|0060", "CT")
        slice_.SetMetaData("0020|0032", "\\".join(map(str, series.TransformIndexToPhysicalPoint((0, 0, k)))))
        slice_.SetMetaData("0020|0013", str(k))
        slice_.SetMetaData("0020|0037", "1\\0\\0\\0\\1\\0")
        writer.SetFileName(str(tmp_path / f"slice{k:03d}.dcm"))
        writer.Execute(slice_)
    read = read_ct(tmp_path)
    assert read.GetSize() == phantom_ct.GetSize()
    assert read.GetSpacing() == pytest.approx(phantom_ct.GetSpacing(), rel=1e-3)


def test_bad_cts_get_named_errors(tmp_path):
    with pytest.raises(InputError, match=r"missing.nrrd: file not found"):
        read_ct(tmp_path / "missing.nrrd")
    garbage = tmp_path / "garbage.nrrd"
    garbage.write_bytes(b"this is not an image")
    with pytest.raises(InputError, match=r"garbage.nrrd: cannot be read as an image"):
        read_ct(garbage)
    empty = tmp_path / "empty.nii.gz"
    empty.write_bytes(b"")
    with pytest.raises(InputError, match=r"empty.nii.gz: cannot be read"):
        read_ct(empty)
    flat = write_image(sitk.GetImageFromArray(np.random.rand(20, 30).astype(np.float32)), tmp_path / "flat.nrrd")
    with pytest.raises(InputError, match=r"flat.nrrd: image is 2D .* expected a 3D CT volume"):
        read_ct(flat)
    nan = np.zeros((8, 8, 8), np.float32)
    nan[1, 2, 3] = np.nan
    with pytest.raises(InputError, match=r"nan.nrrd: image contains NaN"):
        read_ct(write_image(sitk.GetImageFromArray(nan), tmp_path / "nan.nrrd"))
    with pytest.raises(InputError, match=r"constant.nrrd: image is constant"):
        read_ct(write_image(sitk.GetImageFromArray(np.full((8, 8, 8), 40, np.int16)), tmp_path / "constant.nrrd"))
    no_dicom = tmp_path / "folder"
    no_dicom.mkdir()
    with pytest.raises(InputError, match=r"folder: folder holds no DICOM series"):
        read_ct(no_dicom)


def test_absurdly_large_ct_is_refused_before_loading_pixels(tmp_path, monkeypatch):
    import DiffuX2CTLib.imaging.image_io as io

    monkeypatch.setattr(io, "MAX_CT_VOXELS", 1000)
    path = write_image(sitk.GetImageFromArray(np.random.rand(12, 12, 12).astype(np.float32)), tmp_path / "big.mha")
    with pytest.raises(InputError, match=r"big.mha: volume of .* too large"):
        read_ct(path)


def test_dicom_radiograph_monochrome1_is_bone_bright_and_rescaled(tmp_path):
    raw = np.tile(np.linspace(100, 3000, 64), (48, 1)).astype(np.uint16)
    write_dicom_radiograph(
        tmp_path / "m2.dcm",
        raw,
        "MONOCHROME2",
        slope=2.0,
        intercept=-10.0,
        ImagerPixelSpacing=[0.2, 0.3],
        ViewPosition="AP",
    )
    write_dicom_radiograph(tmp_path / "m1.dcm", raw, "MONOCHROME1", ImagerPixelSpacing=[0.2, 0.3])
    m2 = read_radiograph(tmp_path / "m2.dcm", View.AP)
    assert m2.pixels.shape == (48, 64)
    assert m2.pixels[0, 0] == pytest.approx(2.0 * 100 - 10.0)
    assert m2.pixel_spacing_mm == pytest.approx((0.2, 0.3))
    m1 = read_radiograph(tmp_path / "m1.dcm", View.AP)
    # MONOCHROME1 stores dense = dark; read back it must be bright where MONOCHROME2 is dark, i.e. reversed
    assert np.corrcoef(m1.pixels.ravel(), raw.ravel().astype(float))[0, 1] == pytest.approx(-1.0, abs=1e-6)


@pytest.mark.parametrize(
    "suffix,dtype", [(".png", np.uint8), (".png", np.uint16), (".jpg", np.uint8), (".tif", np.uint16)]
)
def test_plain_image_radiographs(tmp_path, suffix, dtype):
    pixels = (np.tile(np.linspace(0, 1, 40), (30, 1)) * np.iinfo(dtype).max * 0.9).astype(dtype)
    path = tmp_path / f"xray{suffix}"
    sitk.WriteImage(sitk.GetImageFromArray(pixels), str(path))
    radiograph = read_radiograph(path, "ap")
    assert radiograph.pixels.shape == (30, 40)
    assert radiograph.pixel_spacing_mm is None and "assumed" in radiograph.notes[0]
    assert np.corrcoef(radiograph.pixels.ravel(), pixels.ravel().astype(float))[0, 1] > 0.99


def test_rgb_radiograph_becomes_grayscale(tmp_path):
    gray = np.tile(np.linspace(0, 250, 40), (30, 1)).astype(np.uint8)
    rgb = np.stack([gray, gray, gray], axis=-1)
    sitk.WriteImage(sitk.GetImageFromArray(rgb, isVector=True), str(tmp_path / "rgb.png"))
    radiograph = read_radiograph(tmp_path / "rgb.png", "lateral")
    assert radiograph.pixels.shape == (30, 40)
    assert np.allclose(radiograph.pixels, gray, atol=1.0)
    assert "converted to grayscale" in radiograph.notes[0]


def test_single_slice_nrrd_keeps_its_geometry(tmp_path):
    geometry = ProjectionGeometry(View.LATERAL, isocenter_lps=(5.0, -3.0, 12.0)).with_detector(32)
    pixels = np.random.default_rng(0).random((32, 32)).astype(np.float32)
    path = write_image(detector_image(pixels, geometry), tmp_path / "lateral.nrrd")
    radiograph = read_radiograph(path, View.LATERAL)
    assert radiograph.geometry == geometry
    assert np.allclose(radiograph.pixels, pixels)
    with pytest.raises(
        InputError, match=r"lateral.nrrd: header says this is the lateral view but it was given as the ap view"
    ):
        read_radiograph(path, View.AP)


def test_bad_radiographs_get_named_errors(tmp_path, phantom_ct):
    volume = write_image(phantom_ct, tmp_path / "ct.nrrd")
    with pytest.raises(
        InputError, match=r"ct.nrrd: image is a 3D volume with 48 slices; expected a single 2D radiograph"
    ):
        read_radiograph(volume, View.AP)
    sitk.WriteImage(sitk.GetImageFromArray(np.full((64, 64), 7, np.uint8)), str(tmp_path / "blank.png"))
    with pytest.raises(InputError, match=r"blank.png: image is constant"):
        read_radiograph(tmp_path / "blank.png", View.AP)
    sitk.WriteImage(sitk.GetImageFromArray(np.random.rand(8, 8).astype(np.float32)), str(tmp_path / "tiny.nrrd"))
    with pytest.raises(InputError, match=r"tiny.nrrd: image of 8 x 8 pixels is too small"):
        read_radiograph(tmp_path / "tiny.nrrd", View.AP)
    nan = np.random.rand(32, 32).astype(np.float32)
    nan[3, 3] = np.nan
    sitk.WriteImage(sitk.GetImageFromArray(nan), str(tmp_path / "nan.mha"))
    with pytest.raises(InputError, match=r"nan.mha: image contains NaN"):
        read_radiograph(tmp_path / "nan.mha", View.AP)
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(InputError, match=r"notes.txt: unsupported file type '.txt'"):
        read_radiograph(tmp_path / "notes.txt", View.AP)
    (tmp_path / "broken.dcm").write_bytes(b"\x00" * 200)
    with pytest.raises(InputError, match=r"broken.dcm: cannot be read as an image"):
        read_radiograph(tmp_path / "broken.dcm", View.AP)


def test_absurdly_large_radiograph_is_refused(tmp_path, monkeypatch):
    import DiffuX2CTLib.imaging.image_io as io

    monkeypatch.setattr(io, "MAX_RADIOGRAPH_PIXELS_PER_SIDE", 100)
    sitk.WriteImage(sitk.GetImageFromArray(np.random.rand(40, 120).astype(np.float32)), str(tmp_path / "wide.nrrd"))
    with pytest.raises(InputError, match=r"wide.nrrd: image of 120 x 40 pixels is absurdly large"):
        read_radiograph(tmp_path / "wide.nrrd", View.AP)


def test_write_is_atomic_and_leaves_nothing_behind_on_failure(tmp_path, phantom_ct, monkeypatch):
    target = write_image(phantom_ct, tmp_path / "out.nrrd")
    before = target.read_bytes()

    def crash(*args, **kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setattr(sitk, "WriteImage", crash)
    with pytest.raises(InputError, match=r"out.nrrd: cannot be written \(disk full\)"):
        write_image(phantom_ct, target)
    assert target.read_bytes() == before
    assert os.listdir(tmp_path) == ["out.nrrd"]


def test_resample_to_model_grid_and_back_keeps_physical_placement():
    """A dense marker at a known LPS point lands at that point on an off-centre model grid and back."""
    fine = VolumeGrid(64, 2.0, center_lps=(30.0, -20.0, 10.0))
    array = np.full((64, 64, 64), -1000.0, np.float32)
    marker_lps = np.array([40.0, -10.0, 30.0])
    index = np.rint((marker_lps - fine.origin_lps) / fine.spacing_mm).astype(int)
    array[index[2] - 2 : index[2] + 3, index[1] - 2 : index[1] + 3, index[0] - 2 : index[0] + 3] = 1200.0
    image = grid_image(array, fine)
    coarse = VolumeGrid(16, 8.0, center_lps=(20.0, -10.0, 20.0))
    window = HUWindow()
    unit = window.to_unit(resample_to_grid(image, coarse))
    assert unit.min() >= -1.0 and unit.max() <= 1.0
    back = grid_image(window.to_hu(unit), coarse)
    peak = np.unravel_index(np.argmax(sitk.GetArrayFromImage(back)), (16, 16, 16))
    peak_lps = back.TransformIndexToPhysicalPoint(tuple(int(v) for v in peak[::-1]))
    assert np.linalg.norm(np.subtract(peak_lps, marker_lps)) <= 8.0 * np.sqrt(3) / 2 + 1e-6


def test_world_to_index_matrix_handles_rotated_images():
    image = sitk.Image(10, 12, 14, sitk.sitkFloat32)
    image.SetSpacing((1.5, 2.0, 2.5))
    image.SetOrigin((10.0, -20.0, 5.0))
    image.SetDirection((0, -1, 0, 1, 0, 0, 0, 0, 1))
    matrix = world_to_index_matrix(image)
    point = image.TransformContinuousIndexToPhysicalPoint((3.0, 4.5, 6.0))
    assert matrix @ np.array([*point, 1.0]) == pytest.approx([3.0, 4.5, 6.0, 1.0])


@pytest.mark.parametrize("kept", [0.5, 0.9])
def test_a_truncated_jpeg_is_unreadable_not_filled_with_grey(tmp_path, capfd, kept):
    """libjpeg decodes what is there, fills the missing rows with grey and only prints a warning (to stdout)."""
    pixels = (np.random.default_rng(0).random((120, 160)) * 255).astype(np.uint8)
    whole = tmp_path / "whole.jpg"
    sitk.WriteImage(sitk.GetImageFromArray(pixels), str(whole))
    cut = tmp_path / "cut.jpg"
    cut.write_bytes(whole.read_bytes()[: int(whole.stat().st_size * kept)])
    with pytest.raises(InputError) as error:
        read_radiograph(cut, View.AP)
    assert (
        str(error.value) == "cut.jpg: is incomplete or damaged; the decoder reported 'Premature end of JPEG file' "
        "and filled in what was missing"
    )
    assert read_radiograph(whole, View.AP).pixels.shape == (120, 160)
    captured = capfd.readouterr()
    assert (
        captured.out == "" and captured.err == ""
    )  # the decoder's own line neither pollutes stdout nor repeats the error


def _stored_reversed(image: sitk.Image, axis: int) -> sitk.Image:
    """The same image in physical space, its pixels stored in reverse order along ``axis`` (0: columns, 1: rows)
    and the header's direction and origin saying so: what a tool that stores the x axis the other way writes."""
    array = sitk.GetArrayFromImage(image)
    reversed_array = np.flip(array, axis=array.ndim - 1 - axis).copy()
    out = sitk.GetImageFromArray(reversed_array)
    out.SetSpacing(image.GetSpacing())
    last = [0] * image.GetDimension()
    last[axis] = image.GetSize()[axis] - 1
    out.SetOrigin(image.TransformIndexToPhysicalPoint(last))
    direction = np.asarray(image.GetDirection()).reshape(image.GetDimension(), -1).copy()
    direction[:, axis] *= -1
    out.SetDirection(tuple(direction.ravel()))
    for key in image.GetMetaDataKeys():
        out.SetMetaData(key, image.GetMetaData(key))
    return out


@pytest.mark.parametrize("suffix", [".nrrd", ".mha", ".nii.gz"])
@pytest.mark.parametrize("view", [View.AP, View.LATERAL])
def test_a_radiograph_stored_with_a_reversed_axis_reads_as_the_plain_one(tmp_path, suffix, view):
    """The same radiograph, physically, stored with its columns (or rows) the other way and a header that says so,
    gives the same pixels and the same detector image for the model as the plain file."""
    from DiffuX2CTLib.inference.preprocess import fit_to_detector
    from DiffuX2CTLib.model.config import ModelConfig

    geometry = ProjectionGeometry(view).with_detector(48)
    pixels = np.random.default_rng(1).random((48, 48)).astype(np.float32)
    pixels[5:20, 30:44] += 3.0  # one bright corner: a mirror would move it
    plain = read_radiograph(write_image(detector_image(pixels, geometry), tmp_path / f"plain{suffix}"), view)
    target = ModelConfig().detector(view)
    for axis in (0, 1):
        stored = write_image(_stored_reversed(detector_image(pixels, geometry), axis), tmp_path / f"rev{axis}{suffix}")
        assert not np.array_equal(sitk.GetArrayFromImage(sitk.ReadImage(str(stored)))[0], pixels)  # stored reversed
        radiograph = read_radiograph(stored, view)
        assert np.array_equal(radiograph.pixels, plain.pixels)
        assert radiograph.geometry == plain.geometry == (None if suffix == ".nii.gz" else geometry)  # no metadata
        assert radiograph.orientation_from_file is True
        assert np.array_equal(fit_to_detector(radiograph, target), fit_to_detector(plain, target))
        assert any("as its header's direction says" in note for note in radiograph.notes)


@pytest.mark.parametrize("suffix", [".nrrd", ".mha"])
def test_a_2d_radiograph_with_a_reversed_axis_or_a_negative_spacing_is_read_in_physical_space(tmp_path, suffix):
    """A 2D image has no patient orientation, but its direction still says which way its axes run: it is read as an
    image viewer shows it; ITK turns a negative spacing (here in the MetaImage header) into a reversed direction."""
    pixels = np.random.default_rng(2).random((40, 50)).astype(np.float32)
    pixels[2:10, 35:48] += 3.0
    image = sitk.GetImageFromArray(pixels)
    image.SetSpacing((0.5, 0.5))
    plain = read_radiograph(write_image(image, tmp_path / f"plain{suffix}"), View.AP)
    assert np.array_equal(plain.pixels, pixels) and plain.pixel_spacing_mm == (0.5, 0.5)
    assert not plain.orientation_from_file
    assert any("no patient orientation in the file; assumed columns run towards L" in n for n in plain.notes)
    for axis in (0, 1):
        stored = read_radiograph(write_image(_stored_reversed(image, axis), tmp_path / f"rev{axis}{suffix}"), "ap")
        assert np.array_equal(stored.pixels, pixels) and stored.pixel_spacing_mm == (0.5, 0.5)
    transposed = sitk.GetImageFromArray(pixels.T.copy())
    transposed.SetSpacing((0.5, 0.25))
    transposed.SetDirection((0.0, 1.0, 1.0, 0.0))  # columns along y, rows along x
    radiograph = read_radiograph(write_image(transposed, tmp_path / f"transposed{suffix}"), View.AP)
    assert np.array_equal(radiograph.pixels, pixels) and radiograph.pixel_spacing_mm == (0.5, 0.25)
    if suffix == ".mha":
        negative = tmp_path / "negative.mha"
        header, data = (tmp_path / "plain.mha").read_bytes().split(b"ElementDataFile", 1)
        header = header.replace(b"ElementSpacing = 0.5 0.5", b"ElementSpacing = -0.5 0.5")
        header = header.replace(b"Offset = 0 0", b"Offset = 24.5 0")  # the last column's centre, x = 49 * 0.5
        negative.write_bytes(header + b"ElementDataFile" + data)
        stored = sitk.GetArrayFromImage(sitk.ReadImage(str(negative)))
        assert np.array_equal(stored, pixels)  # the pixels as stored, first column at the largest x
        assert np.array_equal(read_radiograph(negative, View.AP).pixels, pixels[:, ::-1])


def test_a_radiograph_whose_direction_cannot_be_honoured_is_refused(tmp_path):
    lateral = detector_image(
        np.random.default_rng(3).random((32, 32)).astype(np.float32), ProjectionGeometry("lateral")
    )
    for key in lateral.GetMetaDataKeys():
        lateral.EraseMetaData(key)  # no geometry header: only the direction says it lies in a sagittal plane
    path = write_image(lateral, tmp_path / "sagittal.nrrd")
    with pytest.raises(
        InputError,
        match=r"sagittal.nrrd: the header's direction runs the image's columns towards P and rows towards F, which "
        r"does not fit a ap view \(columns towards L and rows towards F\)",
    ):
        read_radiograph(path, View.AP)
    assert read_radiograph(path, View.LATERAL).orientation_from_file
    rotated = sitk.GetImageFromArray(np.random.default_rng(4).random((32, 32)).astype(np.float32))
    angle = np.radians(30.0)
    rotated.SetDirection((np.cos(angle), -np.sin(angle), np.sin(angle), np.cos(angle)))
    with pytest.raises(InputError, match=r"rotated.mha: the header's direction rotates the image by 30.0 degrees"):
        read_radiograph(write_image(rotated, tmp_path / "rotated.mha"), View.AP)
