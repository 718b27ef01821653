"""Convert one extracted CT to the cache's single format: int16 Hounsfield units, LPS axes, compressed NRRD.

Reorientation only permutes and flips axes (``sitk.DICOMOrient``), so every voxel keeps its value at its physical
point. Values are checked to be HU from the histogram (air near -1000, soft tissue near +40); a volume stored with
the usual unsigned offset (1024 or 1000: air near 0, nothing below -500) is shifted back, anything else that does not
look like HU is refused rather than guessed at.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from ..core.atomic_write import write_file
from ..core.errors import InputError

AIR_RANGE = (-1100, -950)  # where the air peak of a CT in HU lies
TISSUE_RANGE = (-20, 100)  # where the soft-tissue peak (muscle, organs, blood) lies
KNOWN_OFFSETS = (1024, 1000)  # unsigned storage of HU without its rescale intercept
MIN_SHARE = 0.005  # a peak needs at least this share of the voxels


@dataclass(frozen=True)
class HuEvidence:
    """What the histogram says: the air and soft-tissue peaks (None where absent) and the darkest value."""

    air_peak: int | None
    tissue_peak: int | None
    minimum: int

    @property
    def is_hu(self) -> bool:
        air_ok = self.air_peak is not None and AIR_RANGE[0] <= self.air_peak <= AIR_RANGE[1]
        tissue_ok = self.tissue_peak is not None and TISSUE_RANGE[0] <= self.tissue_peak <= TISSUE_RANGE[1]
        return air_ok and tissue_ok and self.minimum < -500


def _peak(values: np.ndarray, low: int, high: int) -> int | None:
    """The most common value in [low, high), smoothed over 11 HU, or None if too few voxels lie there."""
    inside = values[(values >= low) & (values < high)]
    if inside.size < MIN_SHARE * values.size:
        return None
    counts = np.convolve(np.bincount((inside - low).astype(np.int64), minlength=high - low), np.ones(11), mode="same")
    return low + int(counts.argmax())


def hu_evidence(values: np.ndarray) -> HuEvidence:
    """The histogram peaks that tell HU from other scales (air searched in [-1200, -800), tissue in [-60, 140))."""
    values = np.rint(values.ravel()).astype(np.int64)
    return HuEvidence(_peak(values, -1200, -800), _peak(values, -60, 140), int(values.min()))


def to_hounsfield(values: np.ndarray, label: str) -> tuple[np.ndarray, int, HuEvidence]:
    """The values in HU, the offset that was subtracted (0 if none) and the evidence; InputError if not HU."""
    evidence = hu_evidence(values)
    if evidence.is_hu:
        return values, 0, evidence
    if evidence.minimum >= -500:
        for offset in KNOWN_OFFSETS:
            shifted = hu_evidence(values - offset)
            if shifted.is_hu:
                return values - offset, offset, shifted
    raise InputError(
        f"{label}: values do not look like Hounsfield units (air peak {evidence.air_peak}, soft-tissue peak "
        f"{evidence.tissue_peak}, minimum {evidence.minimum}; expected air in {AIR_RANGE} and tissue in "
        f"{TISSUE_RANGE}); refused rather than guessed"
    )


def read_dicom_series(first_slice: Path, label: str) -> sitk.Image:
    """The one DICOM series in the folder of ``first_slice`` (where a volume's slices alone were extracted), its
    slices ordered by position and rescaled to the stored units."""
    folder = str(first_slice.parent)
    series = sitk.ImageSeriesReader.GetGDCMSeriesIDs(folder)
    if len(series) != 1:
        raise InputError(f"{label}: {len(series)} DICOM series among the extracted slices, expected one")
    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(sitk.ImageSeriesReader.GetGDCMSeriesFileNames(folder, series[0]))
    return reader.Execute()


def read_volume(path: Path, label: str) -> sitk.Image:
    """Read a 3D scalar image (MetaImage, NRRD, NIfTI, or a DICOM series named by one of its ``.dcm`` slices) with
    SimpleITK; InputError if it cannot be."""
    try:
        image = read_dicom_series(path, label) if path.suffix.lower() == ".dcm" else sitk.ReadImage(str(path))
    except RuntimeError as error:
        raise InputError(f"{label}: cannot be read as an image ({str(error).strip().splitlines()[-1]})") from None
    if image.GetDimension() != 3 or image.GetNumberOfComponentsPerPixel() != 1:
        raise InputError(f"{label}: is not a 3D single-channel volume")
    return image


def to_lps(image: sitk.Image, label: str) -> sitk.Image:
    """The image with its axes permuted and flipped to LPS (identity direction); oblique volumes are refused."""
    oriented = sitk.DICOMOrient(image, "LPS")
    if not np.allclose(oriented.GetDirection(), np.eye(3).ravel(), atol=1e-4):
        raise InputError(
            f"{label}: its axes are oblique (direction {np.round(image.GetDirection(), 4).tolist()}); reorienting "
            "would need resampling"
        )
    return oriented


def convert(path: Path, label: str) -> tuple[sitk.Image, int, HuEvidence]:
    """The int16 HU LPS image of the file at ``path``, the HU offset removed and the HU evidence."""
    image = to_lps(read_volume(path, label), label)
    values, offset, evidence = to_hounsfield(sitk.GetArrayFromImage(image).astype(np.float64), label)
    values = np.rint(values)
    if values.min() < np.iinfo(np.int16).min or values.max() > np.iinfo(np.int16).max:
        raise InputError(f"{label}: values from {values.min():g} to {values.max():g} do not fit int16")
    result = sitk.GetImageFromArray(values.astype(np.int16))
    result.CopyInformation(image)
    return result, offset, evidence


def write_nrrd(image: sitk.Image, path: Path) -> Path:
    """Write compressed NRRD atomically (temporary sibling, then rename)."""
    return write_file(path, lambda temporary: sitk.WriteImage(image, str(temporary), True))
