"""What is known of how one radiograph was taken, when its pixels come without it (pure Python)."""

from __future__ import annotations

from dataclasses import dataclass

from ..core.errors import InputError


@dataclass(frozen=True)
class Acquisition:
    """What is known of how one radiograph was taken when its pixels come without it (a Slicer node, a panel
    entry, a DICOM database): distances in mm, ``(row, column)`` pixel spacing at the detector, and whether the
    pixel values are bone-dark (DICOM MONOCHROME1 kept raw) and must be inverted. None keeps what the file says."""

    source_to_detector_mm: float | None = None
    source_to_isocenter_mm: float | None = None
    pixel_spacing_mm: tuple[float, float] | None = None
    bone_dark: bool = False

    def __post_init__(self) -> None:
        sdd, sid = self.source_to_detector_mm, self.source_to_isocenter_mm
        if (sdd is None) != (sid is None):
            raise InputError("give both source-to-detector and source-to-isocenter distances, or neither")
        if sdd is not None and not sdd > sid > 0:
            raise InputError(
                f"source-to-detector distance ({sdd} mm) must exceed source-to-isocenter distance ({sid} mm) > 0"
            )
        if self.pixel_spacing_mm is not None:
            if len(self.pixel_spacing_mm) != 2 or min(self.pixel_spacing_mm) <= 0:
                raise InputError(f"pixel spacing must be two positive sizes in mm, got {self.pixel_spacing_mm}")
            object.__setattr__(self, "pixel_spacing_mm", tuple(float(v) for v in self.pixel_spacing_mm))
