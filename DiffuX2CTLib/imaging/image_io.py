"""Reading and writing CT volumes and radiographs with SimpleITK, with clear errors and atomic writes.

Everything a user hands us passes through here, so every failure becomes an :class:`InputError` whose message
names the file and the problem; nothing below raises a bare SimpleITK exception at a clinician.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import os
import re
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from ..core.atomic_write import WriteFile, write_file
from ..core.errors import InputError
from .acquisition import Acquisition
from .geometry import ProjectionGeometry, View, VolumeGrid
from .intensity import linear_to_line_integral

RADIOGRAPH_SUFFIXES = (
    ".dcm",
    ".dicom",
    ".png",
    ".jpg",
    ".jpeg",
    ".tif",
    ".tiff",
    ".nrrd",
    ".nhdr",
    ".mha",
    ".mhd",
    ".nii",
    ".nii.gz",
)
MAX_CT_VOXELS = 1024**3
MAX_RADIOGRAPH_PIXELS_PER_SIDE = 16384
MIN_RADIOGRAPH_PIXELS_PER_SIDE = 16

# Metadata keys with which `synthesize` records a radiograph's cone-beam geometry in its NRRD header.
_META_PREFIX = "DiffuX2CT_"
_DICOM_TAGS = {
    "photometric": "0028|0004",
    "imager_pixel_spacing": "0018|1164",
    "pixel_spacing": "0028|0030",
    "source_to_detector": "0018|1110",
    "source_to_patient": "0018|1111",
    "view_position": "0018|5101",
    "patient_orientation": "0020|0020",
    "intensity_relationship": "0028|1040",  # PixelIntensityRelationship: LIN, LOG or DISP
    "intensity_sign": "0028|1041",  # PixelIntensityRelationshipSign: +1 intensity rises with the value, -1 falls
    "fov_rotation": "0018|7032",  # FieldOfViewRotation: clockwise degrees relative to the detector
    "fov_flip": "0018|7034",  # FieldOfViewHorizontalFlip: YES after the rotation
    "window_center": "0028|1050",
    "voi_lut_function": "0028|1056",
}
# DICOM PatientOrientation (direction of increasing column, of increasing row) the model's images have: AP with
# the patient's left to the right of the image, lateral with posterior to the right, both head up (see geometry.py).
_MODEL_ORIENTATION = {View.AP: ("L", "F"), View.LATERAL: ("P", "F")}
_OPPOSITE = {"L": "R", "R": "L", "A": "P", "P": "A", "H": "F", "F": "H"}
# LPS letters of the patient axes, for messages: +x towards L, +y towards P, +z towards the head.
_LPS_LETTERS = (("R", "L"), ("A", "P"), ("F", "H"))
_AXIS_TOLERANCE = 1e-3  # a direction cosine this close to 1 counts as along the axis
_LATERAL_POSITIONS = {"LL", "RL", "LAT", "LATERAL", "LLD", "RLD"}
_FRONTAL_POSITIONS = {"AP", "PA"}


@dataclass
class Radiograph:
    """One radiograph: pixels (rows, cols; brighter = more attenuation) and what is known of its geometry."""

    pixels: np.ndarray
    pixel_spacing_mm: tuple[float, float] | None
    geometry: ProjectionGeometry | None
    path: Path
    notes: list[str] = field(default_factory=list)
    colourfulness: float = 0.0  # mean chroma of a colour file relative to its range; 0 for grayscale
    view_from_file: bool = False  # the file says which view it is (our NRRD header, DICOM ViewPosition)
    orientation_from_file: bool = False  # the file places the image in patient space (direction, PatientOrientation)


def _fail(path: Path, problem: str) -> InputError:
    return InputError(f"{path.name}: {problem}")


def _suffix(path: Path) -> str:
    name = path.name.lower()
    return ".nii.gz" if name.endswith(".nii.gz") else path.suffix.lower()


# What image decoders print (on the C side, to stderr) when they fill in missing or damaged data instead of failing,
# e.g. libjpeg's "Premature end of JPEG file" (the missing rows become grey): such a file is unreadable.
_DAMAGE_REPORTS = re.compile(
    r"premature end|corrupt|truncat|unexpected end|short read|not enough data|read error", re.IGNORECASE
)


@contextlib.contextmanager
def _decoder_messages() -> Iterator[list[str]]:
    """Collect what C libraries print meanwhile (ITK's JPEG reader prints to stdout, others to stderr) as lines,
    so it never mixes with a command's output or the worker's protocol events."""
    lines: list[str] = []
    sys.stdout.flush()
    sys.stderr.flush()
    saved = {fd: os.dup(fd) for fd in (1, 2)}
    with tempfile.TemporaryFile() as sink:
        for fd in saved:
            os.dup2(sink.fileno(), fd)
        try:
            yield lines
        finally:
            for fd, original in saved.items():
                os.dup2(original, fd)
                os.close(original)
            sink.seek(0)
            lines += [line.strip() for line in sink.read().decode("utf-8", "replace").splitlines() if line.strip()]


def _read_image(path: Path, what: str) -> sitk.Image:
    path = Path(path)
    if not path.exists():
        raise _fail(path, f"file not found (expected a {what})")
    try:
        with _decoder_messages() as messages:
            image = _read_file_or_series(path, what)
    except InputError:
        raise
    except RuntimeError as error:
        detail = str(error).strip().splitlines()[-1] if str(error).strip() else "unknown reader error"
        raise _fail(path, f"cannot be read as an image ({detail[:160]})") from None
    damage = [line for line in messages if _DAMAGE_REPORTS.search(line)]
    if damage:
        raise _fail(
            path, f"is incomplete or damaged; the decoder reported '{damage[0][:120]}' and filled in what was missing"
        )
    for line in messages:  # other decoder notes are logs
        print(line, file=sys.stderr)
    return image


def _read_file_or_series(path: Path, what: str) -> sitk.Image:
    """One image file, or the first DICOM series of a folder."""
    if not path.is_dir():
        return sitk.ReadImage(str(path))
    reader = sitk.ImageSeriesReader()
    series = reader.GetGDCMSeriesIDs(str(path))
    if not series:
        raise _fail(path, f"folder holds no DICOM series (expected a {what})")
    reader.SetFileNames(reader.GetGDCMSeriesFileNames(str(path), series[0]))
    return reader.Execute()


def _check_values(array: np.ndarray, path: Path) -> None:
    if array.size == 0:
        raise _fail(path, "image is empty")
    if not np.all(np.isfinite(array)):
        raise _fail(path, "image contains NaN or infinite values")
    if float(array.max()) == float(array.min()):
        raise _fail(path, f"image is constant (every pixel is {float(array.min()):g}); nothing to reconstruct from")


def read_ct(path: str | os.PathLike) -> sitk.Image:
    """Read a CT (NRRD, NIfTI, MHA, or a DICOM series folder) as a float32 HU image, validated."""
    path = Path(path)
    image = _read_image(path, "3D CT volume")
    if image.GetNumberOfComponentsPerPixel() != 1:
        raise _fail(path, "image has several components per pixel; expected a scalar CT volume in HU")
    if image.GetDimension() != 3 or min(image.GetSize()) < 2:
        raise _fail(path, f"image is {image.GetDimension()}D with size {image.GetSize()}; expected a 3D CT volume")
    if math.prod(image.GetSize()) > MAX_CT_VOXELS:
        raise _fail(path, f"volume of {image.GetSize()} voxels is too large (limit {MAX_CT_VOXELS} voxels)")
    image = sitk.Cast(image, sitk.sitkFloat32)
    _check_values(sitk.GetArrayViewFromImage(image), path)
    return image


CT_SUFFIXES = (".nrrd", ".nii", ".nii.gz", ".mha", ".mhd")


def find_ct_volumes(folder: str | os.PathLike) -> list[Path]:
    """The CT volumes in a folder, sorted: image files by extension and non-empty sub-folders (DICOM series)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise InputError(f"{folder.name}: not a folder of CT volumes")
    files = sorted(
        p for p in folder.iterdir() if p.name.lower().endswith(CT_SUFFIXES) or (p.is_dir() and any(p.iterdir()))
    )
    if not files:
        raise InputError(f"{folder.name}: no CT volumes found (NRRD, NIfTI, MHA or DICOM series folders)")
    return files


def _dicom_tag(image: sitk.Image, name: str) -> str | None:
    key = _DICOM_TAGS[name]
    return image.GetMetaData(key).strip() if image.HasMetaDataKey(key) and image.GetMetaData(key).strip() else None


def _to_grayscale(image: sitk.Image, path: Path, notes: list[str]) -> tuple[np.ndarray, float]:
    """Luminance of the image and how colourful it was (mean chroma over the value range; 0 for grayscale)."""
    array = sitk.GetArrayFromImage(image).astype(np.float32)
    components = image.GetNumberOfComponentsPerPixel()
    if components == 1:
        return array, 0.0
    if components in (3, 4):
        notes.append(f"{path.name}: colour image converted to grayscale (luminance)")
        rgb = array[..., :3]
        chroma = float((rgb.max(axis=-1) - rgb.min(axis=-1)).mean() / max(float(rgb.max() - rgb.min()), 1e-6))
        return array[..., 0] * 0.299 + array[..., 1] * 0.587 + array[..., 2] * 0.114, chroma
    if components == 2:  # grayscale + alpha
        return array[..., 0], 0.0
    raise _fail(path, f"image has {components} components per pixel; expected a grayscale radiograph")


def _geometry_from_header(
    image: sitk.Image, view: View, path: Path, shape: tuple[int, int], spacing: tuple[float, float]
) -> ProjectionGeometry | None:
    """Cone-beam geometry written by `synthesize` into a single-slice volume's header, if present, for the image
    as oriented to the detector frame: ``shape`` (rows, cols) and ``spacing`` (row, column) in mm."""
    key = _META_PREFIX + "source_to_detector_mm"
    if not image.HasMetaDataKey(key):
        return None
    try:
        isocenter = tuple(float(v) for v in image.GetMetaData(_META_PREFIX + "isocenter_lps").split())
        if len(isocenter) != 3:
            raise ValueError(f"isocentre needs 3 coordinates, got {len(isocenter)}")
        return ProjectionGeometry(
            view=View(image.GetMetaData(_META_PREFIX + "view"))
            if image.HasMetaDataKey(_META_PREFIX + "view")
            else view,
            source_to_detector_mm=float(image.GetMetaData(key)),
            source_to_isocenter_mm=float(image.GetMetaData(_META_PREFIX + "source_to_isocenter_mm")),
            detector_pixels=(int(shape[0]), int(shape[1])),
            pixel_spacing_mm=(float(spacing[0]), float(spacing[1])),
            isocenter_lps=isocenter,
        )
    except (ValueError, RuntimeError) as error:  # RuntimeError: a geometry key SimpleITK cannot return
        raise _fail(path, f"damaged geometry in the header ({str(error)[:120]})") from None


def _undo_field_of_view_rotation(
    image: sitk.Image, pixels: np.ndarray, spacing: tuple[float, float] | None, path: Path, notes: list[str]
) -> tuple[np.ndarray, tuple[float, float] | None]:
    """Without PatientOrientation, turn a rotated or flipped field of view back to the detector's own frame
    (FieldOfViewRotation, FieldOfViewHorizontalFlip), assuming the detector frame is the standard one."""
    rotation_tag, flip = _dicom_tag(image, "fov_rotation"), (_dicom_tag(image, "fov_flip") or "").upper() == "YES"
    try:
        rotation = int(round(float(rotation_tag))) % 360 if rotation_tag else 0
    except ValueError:
        raise _fail(path, f"unreadable DICOM FieldOfViewRotation '{rotation_tag[:20]}'") from None
    if rotation % 90:
        raise _fail(path, f"DICOM FieldOfViewRotation {rotation} is not a multiple of 90 degrees")
    if not rotation and not flip:
        return pixels, spacing
    if flip:  # applied after the rotation, so undone first
        pixels = pixels[:, ::-1]
    pixels = np.ascontiguousarray(np.rot90(pixels, rotation // 90))  # counter-clockwise undoes clockwise
    if rotation in (90, 270) and spacing:
        spacing = (spacing[1], spacing[0])
    notes.append(
        f"{path.name}: field of view rotation {rotation} degrees{' and horizontal flip' if flip else ''} undone; "
        "assumed the detector's own frame is the standard orientation"
    )
    return pixels, spacing


def _dicom_intensity(image: sitk.Image, pixels: np.ndarray, path: Path, notes: list[str]) -> np.ndarray:
    """Pixels linear in X-ray intensity become line integrals; the VOI LUT (a display transform) is not applied."""
    if _dicom_tag(image, "window_center") or _dicom_tag(image, "voi_lut_function"):
        notes.append(
            f"{path.name}: VOI LUT (display windowing) present and not applied; the model works on the stored values"
        )
    relationship = (_dicom_tag(image, "intensity_relationship") or "").upper()
    if relationship != "LIN":
        return pixels
    # The sign speaks of the stored values; the reader has already reversed MONOCHROME1 ones.
    stored_rise = (_dicom_tag(image, "intensity_sign") or "1").strip() not in ("-1", "-1.0")
    rises = stored_rise != ((_dicom_tag(image, "photometric") or "").upper() == "MONOCHROME1")
    notes.append(
        f"{path.name}: pixels linear in X-ray intensity (PixelIntensityRelationship LIN) turned into line integrals, "
        "-ln(I/I0)"
    )
    return linear_to_line_integral(pixels, intensity_increases_with_value=rises)


def _dicom_distances(
    image: sitk.Image,
    shape: tuple[int, int],
    spacing: tuple[float, float] | None,
    view: View,
    path: Path,
    notes: list[str],
) -> ProjectionGeometry | None:
    """The cone-beam geometry from DistanceSourceToDetector and DistanceSourceToPatient (the magnification the
    pixel spacing is corrected by), or None with a note when the file does not carry both."""
    sdd, sid = _dicom_tag(image, "source_to_detector"), _dicom_tag(image, "source_to_patient")
    if not (sdd and sid):
        notes.append(f"{path.name}: no DistanceSourceToDetector/DistanceSourceToPatient; assumed the model's distances")
        return None
    try:
        return ProjectionGeometry(view, float(sdd), float(sid), shape, spacing or (1.0, 1.0))
    except ValueError as error:
        raise _fail(path, f"invalid DICOM source distances ({str(error)[:120]})") from None


def _orient_dicom(
    image: sitk.Image, pixels: np.ndarray, spacing: tuple[float, float] | None, view: View, path: Path, notes: list[str]
) -> tuple[np.ndarray, tuple[float, float] | None]:
    """Check ViewPosition against the slot the image was given for, and turn the pixels into the model's
    orientation using PatientOrientation (transpose and flips), noting every assumption."""
    position = (_dicom_tag(image, "view_position") or "").upper()
    if position in _LATERAL_POSITIONS and view == View.AP:
        raise _fail(path, f"DICOM ViewPosition says {position}, a lateral view, but it was given as the frontal view")
    if position in _FRONTAL_POSITIONS and view == View.LATERAL:
        raise _fail(path, f"DICOM ViewPosition says {position}, a frontal view, but it was given as the lateral view")
    if position == "PA":
        notes.append(
            f"{path.name}: PA view used as AP after orientation (its slightly different magnification is ignored)"
        )
    expected = _MODEL_ORIENTATION[view]
    orientation = _dicom_tag(image, "patient_orientation")
    if not orientation:
        pixels, spacing = _undo_field_of_view_rotation(image, pixels, spacing, path, notes)
        notes.append(
            f"{path.name}: no PatientOrientation tag; assumed columns run towards {expected[0]} "
            f"and rows towards {expected[1]}"
        )
        return pixels, spacing
    parts = [part[:1] for part in orientation.upper().split("\\")]
    if len(parts) != 2 or not all(part in _OPPOSITE for part in parts):
        raise _fail(path, f"unreadable DICOM PatientOrientation '{orientation}'")
    columns, rows = parts

    def axis(letter: str) -> set[str]:
        """A direction and its opposite."""
        return {letter, _OPPOSITE[letter]}

    if axis(columns) == axis(expected[1]):
        pixels, columns, rows = pixels.T, rows, columns
        spacing = (spacing[1], spacing[0]) if spacing else None
        notes.append(f"{path.name}: image transposed (PatientOrientation {orientation})")
    if axis(columns) != axis(expected[0]) or axis(rows) != axis(expected[1]):
        raise _fail(path, f"DICOM PatientOrientation {orientation} does not fit a {view.value} view")
    if columns != expected[0]:
        pixels = pixels[:, ::-1]
        notes.append(f"{path.name}: image mirrored left-right (PatientOrientation {orientation})")
    if rows != expected[1]:
        pixels = pixels[::-1]
        notes.append(f"{path.name}: image flipped head-feet (PatientOrientation {orientation})")
    return np.ascontiguousarray(pixels), spacing


def _direction_letter(vector: np.ndarray) -> str:
    """The patient direction (R/L, A/P, F/H) a unit LPS vector runs towards, or a vector for an oblique one."""
    axis = int(np.argmax(np.abs(vector)))
    if abs(vector[axis]) > 1.0 - _AXIS_TOLERANCE:
        return _LPS_LETTERS[axis][int(vector[axis] > 0)]
    return "(" + ", ".join(f"{v:.2f}" for v in vector) + ")"


def _signed_axes(columns: np.ndarray, rows: np.ndarray, want_columns: np.ndarray, want_rows: np.ndarray):
    """How the image's column and row directions map onto the wanted ones: ``(transpose, flip_columns,
    flip_rows)`` (flips applied after the transpose), or None when they are not the wanted axes in some order and
    sign."""
    for transpose, (c, r) in ((False, (columns, rows)), (True, (rows, columns))):
        dc, dr = float(np.dot(c, want_columns)), float(np.dot(r, want_rows))
        if abs(abs(dc) - 1.0) < _AXIS_TOLERANCE and abs(abs(dr) - 1.0) < _AXIS_TOLERANCE:
            return transpose, dc < 0, dr < 0
    return None


def _orient_by_direction(
    image: sitk.Image, pixels: np.ndarray, view: View, path: Path, notes: list[str]
) -> tuple[np.ndarray, tuple[float, float], bool]:
    """The pixels of an NRRD/MHA/NIfTI radiograph in the detector frame the geometry expects, read in physical
    space through the file's direction matrix (ITK turns a negative spacing into a reversed direction, so both are
    honoured here): ``(pixels, (row, column) spacing in mm, whether the file placed the image in patient space)``.

    A single-slice volume whose direction puts the image in a plane a radiograph can lie in (its normal is not the
    head-feet axis) is in patient space: its column and row directions must be the view's (AP: columns towards the
    patient's left, rows towards the feet; lateral: columns towards posterior, rows towards the feet), in any order
    and sign, and are turned into them. A 2D image, or a slice lying in the axial plane, says nothing of the patient:
    its direction is honoured relative to the identity (the frame every tool writes by default; an image viewer
    shows it with columns left to right and rows top to bottom), and its orientation is assumed. A direction that is
    neither (an oblique or rotated image) is refused: resampling it would invent pixels the detector did not see."""
    dimension = image.GetDimension()
    direction = np.asarray(image.GetDirection(), dtype=np.float64).reshape(dimension, dimension)
    spacing_xy = np.asarray(image.GetSpacing()[:2], dtype=np.float64)
    if not np.all(spacing_xy > 0):  # ITK folds negative spacing into the direction; anything else is damage
        raise _fail(path, f"invalid pixel spacing {tuple(float(s) for s in spacing_xy)} in the header")
    columns, rows = direction[:, 0], direction[:, 1]
    in_patient_space = bool(dimension == 3 and abs(abs(direction[2, 2]) - 1.0) > _AXIS_TOLERANCE)
    if in_patient_space:
        geometry = ProjectionGeometry(view)
        want_columns, want_rows = geometry.column_axis, geometry.row_axis
        frame = f"towards {_direction_letter(columns)} and rows towards {_direction_letter(rows)}"
        expected = f"towards {_direction_letter(want_columns)} and rows towards {_direction_letter(want_rows)}"
    else:
        columns, rows = columns[:2], rows[:2]
        want_columns, want_rows = np.array([1.0, 0.0]), np.array([0.0, 1.0])
    mapping = _signed_axes(columns, rows, want_columns, want_rows)
    if mapping is None and in_patient_space:
        raise _fail(
            path,
            f"the header's direction runs the image's columns {frame}, which does not fit a {view.value} view "
            f"(columns {expected}); give the other view, or a file without a direction",
        )
    if mapping is None:
        raise _fail(
            path,
            "the header's direction rotates the image by "
            f"{math.degrees(math.atan2(columns[1], columns[0])):.1f} degrees; only the image axes and their "
            "reversals can be honoured without resampling, so rotate the image before use",
        )
    transpose, flip_columns, flip_rows = mapping
    spacing = (float(spacing_xy[1]), float(spacing_xy[0]))
    changes = []
    if transpose:
        pixels, spacing = pixels.T, (spacing[1], spacing[0])
        changes.append("transposed")
    if flip_columns:
        pixels = pixels[:, ::-1]
        changes.append("mirrored left-right")
    if flip_rows:
        pixels = pixels[::-1]
        changes.append("flipped top-bottom")
    if changes:
        notes.append(f"{path.name}: image {' and '.join(changes)} as its header's direction says")
    if not in_patient_space:
        expected = _MODEL_ORIENTATION[view]
        notes.append(
            f"{path.name}: no patient orientation in the file; assumed columns run towards {expected[0]} "
            f"and rows towards {expected[1]}"
        )
    return np.ascontiguousarray(pixels), spacing, in_patient_space


def read_radiograph(path: str | os.PathLike, view: View | str) -> Radiograph:
    """Read one radiograph (DICOM DX/CR, PNG/JPEG/TIFF, or a single-slice NRRD/MHA/NIfTI), validated.

    DICOM rescale slope/intercept are applied and MONOCHROME1 is presented bone-bright by SimpleITK's GDCM
    reader; colour images become luminance. DICOM is oriented by PatientOrientation, NRRD/MHA/NIfTI by their
    direction matrix (read in physical space, :func:`_orient_by_direction`); where the file says nothing of the
    patient, the model's orientation is assumed and a note says so. ``view`` says which slot the image was given for.
    """
    path, view = Path(path), View(view)
    if path.is_dir():
        raise _fail(path, "is a folder; expected a single radiograph file")
    if _suffix(path) not in RADIOGRAPH_SUFFIXES and not path.suffix == "":
        raise _fail(path, f"unsupported file type '{path.suffix}' (use DICOM, PNG, JPEG, TIFF, NRRD, MHA or NIfTI)")
    image = _read_image(path, "2D radiograph")
    notes: list[str] = []
    if image.GetDimension() == 3:
        if image.GetSize()[2] != 1:
            raise _fail(path, f"image is a 3D volume with {image.GetSize()[2]} slices; expected a single 2D radiograph")
        pixels, colourfulness = _to_grayscale(image, path, notes)
        pixels = pixels[0]
    elif image.GetDimension() == 2:
        pixels, colourfulness = _to_grayscale(image, path, notes)
    else:
        raise _fail(path, f"image is {image.GetDimension()}D; expected a 2D radiograph")
    rows, cols = pixels.shape
    if min(rows, cols) < MIN_RADIOGRAPH_PIXELS_PER_SIDE:
        raise _fail(path, f"image of {cols} x {rows} pixels is too small to be a radiograph")
    if max(rows, cols) > MAX_RADIOGRAPH_PIXELS_PER_SIDE:
        raise _fail(
            path, f"image of {cols} x {rows} pixels is absurdly large (limit {MAX_RADIOGRAPH_PIXELS_PER_SIDE} per side)"
        )
    _check_values(pixels, path)

    spacing: tuple[float, float] | None = None
    orientation_from_file = False
    is_dicom = image.HasMetaDataKey(_DICOM_TAGS["photometric"]) or _suffix(path) in (".dcm", ".dicom")
    is_volume_format = _suffix(path) in (".nrrd", ".nhdr", ".mha", ".mhd", ".nii", ".nii.gz")
    header_view = image.GetMetaData(_META_PREFIX + "view") if image.HasMetaDataKey(_META_PREFIX + "view") else None
    if header_view in {v.value for v in View} and header_view != view.value:
        raise _fail(path, f"header says this is the {header_view} view but it was given as the {view.value} view")
    if is_volume_format and not is_dicom:
        pixels, spacing, orientation_from_file = _orient_by_direction(image, pixels, view, path, notes)
    geometry = _geometry_from_header(image, view, path, pixels.shape, spacing) if spacing else None
    if geometry is not None:
        if geometry.view != view:
            raise _fail(
                path, f"header says this is the {geometry.view.value} view but it was given as the {view.value} view"
            )
    elif is_dicom:
        spacing_tag = _dicom_tag(image, "imager_pixel_spacing") or _dicom_tag(image, "pixel_spacing")
        if spacing_tag:
            try:
                spacing = tuple(float(v) for v in spacing_tag.split("\\")[:2])
            except ValueError:
                raise _fail(path, f"unreadable DICOM pixel spacing '{spacing_tag[:40]}'") from None
            if len(spacing) != 2 or min(spacing) <= 0:
                raise _fail(path, f"invalid DICOM pixel spacing '{spacing_tag[:40]}'")
        else:
            notes.append(f"{path.name}: no pixel spacing tag; assumed the image spans the default detector")
        pixels = _dicom_intensity(image, pixels, path, notes)
        pixels, spacing = _orient_dicom(image, pixels, spacing, view, path, notes)
        orientation_from_file = _dicom_tag(image, "patient_orientation") is not None
        geometry = _dicom_distances(image, pixels.shape, spacing, view, path, notes)
    elif not is_volume_format:
        expected = _MODEL_ORIENTATION[view]
        notes.append(f"{path.name}: plain image without pixel spacing; assumed it spans the default detector")
        notes.append(
            f"{path.name}: a plain image carries no orientation; assumed columns run towards {expected[0]} "
            f"and rows towards {expected[1]}"
        )
    view_from_file = (
        image.HasMetaDataKey(_META_PREFIX + "view")
        or (_dicom_tag(image, "view_position") or "").upper() in _LATERAL_POSITIONS | _FRONTAL_POSITIONS
    )
    return Radiograph(
        pixels=pixels.astype(np.float32),
        pixel_spacing_mm=spacing,
        geometry=geometry,
        path=path,
        notes=notes,
        colourfulness=colourfulness,
        view_from_file=view_from_file,
        orientation_from_file=orientation_from_file,
    )


def apply_acquisition(radiograph: Radiograph, view: View | str, acquisition: Acquisition) -> Radiograph:
    """``radiograph`` with what the caller knows of its acquisition (e.g. geometry typed into Slicer's panel or
    read from a DICOM database) taking precedence over what its file said; inverts bone-dark pixels."""
    spacing = acquisition.pixel_spacing_mm or radiograph.pixel_spacing_mm
    geometry = radiograph.geometry
    notes = list(radiograph.notes)
    if acquisition.source_to_detector_mm is not None:
        rows, cols = radiograph.pixels.shape
        geometry = ProjectionGeometry(
            view=View(view),
            source_to_detector_mm=acquisition.source_to_detector_mm,
            source_to_isocenter_mm=acquisition.source_to_isocenter_mm,
            detector_pixels=(rows, cols),
            pixel_spacing_mm=spacing or (1.0, 1.0),
            isocenter_lps=geometry.isocenter_lps if geometry is not None else (0.0, 0.0, 0.0),
        )
    pixels = radiograph.pixels
    if acquisition.bone_dark:
        pixels = (pixels.max() + pixels.min() - pixels).astype(np.float32)
        notes.append(f"{radiograph.path.name}: bone-dark (MONOCHROME1) pixels inverted")
    return dataclasses.replace(radiograph, pixels=pixels, pixel_spacing_mm=spacing, geometry=geometry, notes=notes)


def detector_image(pixels: np.ndarray, geometry: ProjectionGeometry) -> sitk.Image:
    """A radiograph as a single-slice volume placed at its detector in patient (LPS) space, geometry in the header."""
    image = sitk.GetImageFromArray(pixels.astype(np.float32)[None])
    image.SetSpacing((geometry.pixel_spacing_mm[1], geometry.pixel_spacing_mm[0], 1.0))
    image.SetOrigin(tuple(float(v) for v in geometry.detector_origin_lps))
    image.SetDirection(tuple(float(v) for v in geometry.detector_direction.ravel()))
    image.SetMetaData(_META_PREFIX + "view", geometry.view.value)
    image.SetMetaData(_META_PREFIX + "source_to_detector_mm", repr(geometry.source_to_detector_mm))
    image.SetMetaData(_META_PREFIX + "source_to_isocenter_mm", repr(geometry.source_to_isocenter_mm))
    image.SetMetaData(_META_PREFIX + "isocenter_lps", " ".join(repr(float(v)) for v in geometry.isocenter_lps))
    image.SetMetaData(_META_PREFIX + "source_lps", " ".join(repr(float(v)) for v in geometry.source_lps))
    image.SetMetaData(_META_PREFIX + "intensity", "line integral of attenuation, -ln(I/I0)")
    return image


def image_writer(image: sitk.Image, compress: bool = True) -> WriteFile:
    """A writer of ``image`` for :func:`DiffuX2CTLib.core.atomic_write.write_together` (format chosen by the
    extension)."""

    def write(path: Path) -> None:
        sitk.WriteImage(image, str(path), compress)

    return write


def write_image(image: sitk.Image, path: str | os.PathLike, compress: bool = True) -> Path:
    """Write atomically: to a temporary file beside the target, then rename, so no reader sees half a file and a
    failure leaves the old file as it was; a failure is an :class:`InputError` naming ``path``."""
    return write_file(path, image_writer(image, compress))


def grid_image(array_zyx: np.ndarray, grid: VolumeGrid) -> sitk.Image:
    """A ``[z, y, x]`` array on ``grid`` as an LPS image with the grid's spacing and origin."""
    image = sitk.GetImageFromArray(np.ascontiguousarray(array_zyx, dtype=np.float32))
    image.SetSpacing((grid.spacing_mm,) * 3)
    image.SetOrigin(tuple(float(v) for v in grid.origin_lps))
    return image


def resample_to_grid(image: sitk.Image, grid: VolumeGrid, default_value: float = -1000.0) -> np.ndarray:
    """Resample any CT image onto ``grid`` (linear interpolation, air outside); returns ``[z, y, x]`` float32."""
    reference = grid_image(np.zeros((grid.size,) * 3, np.float32), grid)
    resampled = sitk.Resample(image, reference, sitk.Transform(), sitk.sitkLinear, default_value, sitk.sitkFloat32)
    return sitk.GetArrayFromImage(resampled)


def image_center_lps(image: sitk.Image) -> tuple[float, float, float]:
    """Physical (LPS) centre of an image's voxel grid."""
    centre_index = [(s - 1) / 2.0 for s in image.GetSize()]
    return tuple(float(v) for v in image.TransformContinuousIndexToPhysicalPoint(centre_index))


def world_to_index_matrix(image: sitk.Image) -> np.ndarray:
    """4x4 map from LPS mm to continuous (x, y, z) voxel indices of ``image`` (any direction)."""
    direction = np.asarray(image.GetDirection()).reshape(3, 3)
    scale = np.diag(1.0 / np.asarray(image.GetSpacing()))
    rotation = scale @ direction.T
    matrix = np.eye(4)
    matrix[:3, :3] = rotation
    matrix[:3, 3] = -rotation @ np.asarray(image.GetOrigin())
    return matrix
