"""Imaging geometry of a biplanar radiograph pair and of the reconstruction grid.

Coordinate conventions (written here once, used everywhere):

* Patient coordinates are **LPS** in millimetres, as in ITK/SimpleITK and every file we write:
  +x towards the patient's Left, +y Posterior, +z Superior. Slicer's scene is RAS; the one conversion
  (negate x and y) happens in ``DiffuX2CTLib/app/scene.py``.
* **AP view**: the source is in front of the patient (anterior, -y) and the detector behind (+y); rays travel
  towards +y. The image is shown as a clinician reads it: the patient's right on the viewer's left, head up,
  so detector columns run along +x (L) and rows along -z (towards the feet).
* **Lateral view**: the source is at the patient's right (-x) and the detector at the left (+x); rays travel
  towards +x. Detector columns run along +y (anterior on the viewer's left) and rows along -z.
* Volumes are tensors indexed ``[z, y, x]`` (SimpleITK's array order); the reconstruction grid is an
  isotropic, axis-aligned cube centred on the isocentre.
"""

from __future__ import annotations

import dataclasses
import enum
from dataclasses import dataclass, field

import numpy as np


class View(str, enum.Enum):
    """Which of the two orthogonal radiographs."""

    AP = "ap"
    LATERAL = "lateral"


# Unit vectors (LPS) of the detector's column axis, row axis and the ray direction for each view.
_VIEW_AXES: dict[View, tuple[tuple[float, float, float], ...]] = {
    View.AP: ((1.0, 0.0, 0.0), (0.0, 0.0, -1.0), (0.0, 1.0, 0.0)),
    View.LATERAL: ((0.0, 1.0, 0.0), (0.0, 0.0, -1.0), (1.0, 0.0, 0.0)),
}


@dataclass(frozen=True)
class ProjectionGeometry:
    """Cone-beam geometry of one radiograph.

    Defaults are those of a clinical spine/chest radiograph: 1.2 m source-to-detector distance, the patient's
    centre 1 m from the source (magnification 1.2) and a 41 x 41 cm detector of 256 x 256 pixels of 1.6 mm.
    """

    view: View
    source_to_detector_mm: float = 1200.0
    source_to_isocenter_mm: float = 1000.0
    detector_pixels: tuple[int, int] = (256, 256)  # (rows, columns)
    pixel_spacing_mm: tuple[float, float] = (1.6, 1.6)  # (row spacing, column spacing)
    isocenter_lps: tuple[float, float, float] = (0.0, 0.0, 0.0)

    def __post_init__(self) -> None:
        object.__setattr__(self, "view", View(self.view))
        if not self.source_to_detector_mm > self.source_to_isocenter_mm > 0:
            raise ValueError(
                "Geometry needs source-to-detector distance > source-to-isocenter distance > 0, got "
                f"{self.source_to_detector_mm} and {self.source_to_isocenter_mm} mm"
            )
        if min(self.detector_pixels) < 2 or min(self.pixel_spacing_mm) <= 0:
            raise ValueError(f"Invalid detector: {self.detector_pixels} pixels of {self.pixel_spacing_mm} mm")

    @property
    def column_axis(self) -> np.ndarray:
        """LPS unit vector along increasing detector column index."""
        return np.asarray(_VIEW_AXES[self.view][0])

    @property
    def row_axis(self) -> np.ndarray:
        """LPS unit vector along increasing detector row index."""
        return np.asarray(_VIEW_AXES[self.view][1])

    @property
    def ray_axis(self) -> np.ndarray:
        """LPS unit vector from the source through the isocentre to the detector."""
        return np.asarray(_VIEW_AXES[self.view][2])

    @property
    def source_lps(self) -> np.ndarray:
        """Position of the X-ray source (mm, LPS)."""
        return np.asarray(self.isocenter_lps) - self.source_to_isocenter_mm * self.ray_axis

    @property
    def magnification(self) -> float:
        """Detector size of an object at the isocentre divided by its true size."""
        return self.source_to_detector_mm / self.source_to_isocenter_mm

    @property
    def detector_size_mm(self) -> tuple[float, float]:
        """Physical (height, width) of the detector."""
        return (self.detector_pixels[0] * self.pixel_spacing_mm[0], self.detector_pixels[1] * self.pixel_spacing_mm[1])

    @property
    def detector_origin_lps(self) -> np.ndarray:
        """LPS position of the centre of pixel (row 0, column 0)."""
        centre = (
            np.asarray(self.isocenter_lps) + (self.source_to_detector_mm - self.source_to_isocenter_mm) * self.ray_axis
        )
        rows, cols = self.detector_pixels
        return (
            centre
            - (cols - 1) / 2.0 * self.pixel_spacing_mm[1] * self.column_axis
            - (rows - 1) / 2.0 * self.pixel_spacing_mm[0] * self.row_axis
        )

    @property
    def detector_direction(self) -> np.ndarray:
        """3x3 direction matrix (columns: column axis, row axis, their cross product) of the detector as a
        single-slice volume, the way ITK stores an image direction."""
        normal = np.cross(self.column_axis, self.row_axis)
        return np.stack([self.column_axis, self.row_axis, normal], axis=1)

    def pixel_positions_lps(self) -> np.ndarray:
        """LPS position of every detector pixel centre, shape ``(rows, cols, 3)``."""
        rows, cols = self.detector_pixels
        r = np.arange(rows, dtype=np.float64)[:, None, None] * self.pixel_spacing_mm[0]
        c = np.arange(cols, dtype=np.float64)[None, :, None] * self.pixel_spacing_mm[1]
        return self.detector_origin_lps + c * self.column_axis + r * self.row_axis

    def with_detector(self, pixels: int) -> "ProjectionGeometry":
        """The same physical detector sampled with ``pixels x pixels`` pixels (the model's detector grid)."""
        height, width = self.detector_size_mm
        return dataclasses.replace(
            self, detector_pixels=(pixels, pixels), pixel_spacing_mm=(height / pixels, width / pixels)
        )

    def to_dict(self) -> dict:
        """JSON-ready description, including derived source and detector placement for other tools."""
        return {
            "view": self.view.value,
            "source_to_detector_mm": self.source_to_detector_mm,
            "source_to_isocenter_mm": self.source_to_isocenter_mm,
            "detector_pixels": list(self.detector_pixels),
            "pixel_spacing_mm": list(self.pixel_spacing_mm),
            "isocenter_lps": list(self.isocenter_lps),
            "source_lps": self.source_lps.tolist(),
            "detector_origin_lps": self.detector_origin_lps.tolist(),
            "detector_direction": self.detector_direction.tolist(),
            "coordinate_system": "LPS",
        }

    @classmethod
    def from_dict(cls, data: dict) -> "ProjectionGeometry":
        """Inverse of :meth:`to_dict` (derived keys are ignored)."""
        return cls(
            view=View(data["view"]),
            source_to_detector_mm=float(data["source_to_detector_mm"]),
            source_to_isocenter_mm=float(data["source_to_isocenter_mm"]),
            detector_pixels=tuple(int(v) for v in data["detector_pixels"]),
            pixel_spacing_mm=tuple(float(v) for v in data["pixel_spacing_mm"]),
            isocenter_lps=tuple(float(v) for v in data.get("isocenter_lps", (0.0, 0.0, 0.0))),
        )


def default_pair(
    isocenter_lps: tuple[float, float, float] = (0.0, 0.0, 0.0),
) -> tuple[ProjectionGeometry, ProjectionGeometry]:
    """The default (AP, lateral) geometry pair sharing one isocentre."""
    return (
        ProjectionGeometry(View.AP, isocenter_lps=isocenter_lps),
        ProjectionGeometry(View.LATERAL, isocenter_lps=isocenter_lps),
    )


@dataclass(frozen=True)
class VolumeGrid:
    """An isotropic, axis-aligned (identity direction, LPS) cube of ``size**3`` voxels centred on ``center_lps``."""

    size: int = 64
    spacing_mm: float = 5.0
    center_lps: tuple[float, float, float] = field(default=(0.0, 0.0, 0.0))

    @property
    def origin_lps(self) -> np.ndarray:
        """LPS position of voxel (0, 0, 0)'s centre."""
        return np.asarray(self.center_lps) - (self.size - 1) / 2.0 * self.spacing_mm

    @property
    def field_of_view_mm(self) -> float:
        """Edge length of the cube."""
        return self.size * self.spacing_mm

    def world_to_index(self) -> np.ndarray:
        """4x4 matrix mapping homogeneous LPS points to continuous (x, y, z) voxel indices."""
        matrix = np.eye(4) / self.spacing_mm
        matrix[3, 3] = 1.0
        matrix[:3, 3] = -self.origin_lps / self.spacing_mm
        return matrix

    def with_size(self, size: int) -> "VolumeGrid":
        """Same field of view sampled with ``size`` voxels per edge."""
        return VolumeGrid(size=size, spacing_mm=self.field_of_view_mm / size, center_lps=self.center_lps)
