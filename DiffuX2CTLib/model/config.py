"""Everything that defines a model besides its weights: architecture, grid, intensity window, geometry."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

from ..data.geometry import ProjectionGeometry, View, VolumeGrid
from ..data.hounsfield import HUWindow

PREDICTION_TYPES = ("epsilon", "v_prediction", "sample")
"""What the denoiser outputs (MONAI's scheduler names): the noise, the velocity ``sqrt(a) eps - sqrt(1 - a) x0``
or the clean residual itself."""


@dataclass(frozen=True)
class ModelConfig:
    """Architecture and data conventions of one model, stored as JSON next to its weights."""

    grid_size: int = 64
    field_of_view_mm: float = 320.0
    hu_low: float = -1000.0
    hu_high: float = 1500.0
    source_to_detector_mm: float = 1200.0
    source_to_isocenter_mm: float = 1000.0
    detector_size_mm: float = 409.6
    plane_channels: int = 16
    condition_channels: int = 16
    fourier_frequencies: int = 4
    decoder_hidden: int = 32
    unet_channels: tuple[int, ...] = (16, 32, 64)
    attention_levels: tuple[bool, ...] = (False, False, True)
    attention_heads: int = 4
    window_size: int = 4
    timesteps: int = 1000
    beta_schedule: str = "linear_beta"
    default_steps: int = 20
    prediction_type: str = "epsilon"
    residual_scale: float = 1.0
    extra: dict = field(default_factory=dict, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "unet_channels", tuple(self.unet_channels))
        object.__setattr__(self, "attention_levels", tuple(self.attention_levels))
        if self.prediction_type not in PREDICTION_TYPES:
            raise ValueError(f"prediction_type must be one of {PREDICTION_TYPES}, not '{self.prediction_type}'")
        if not self.residual_scale > 0:
            raise ValueError("residual_scale must be positive")
        if len(self.unet_channels) != len(self.attention_levels):
            raise ValueError("unet_channels and attention_levels must have one entry per U-Net level")
        if self.grid_size % (2 ** (len(self.unet_channels) - 1) * self.window_size) and any(self.attention_levels):
            raise ValueError(f"grid_size {self.grid_size} must be divisible by the window size at every attention level")

    @property
    def hu_window(self) -> HUWindow:
        """The HU range mapped to [-1, 1]."""
        return HUWindow(self.hu_low, self.hu_high)

    @property
    def detector_pixels(self) -> int:
        """The model's detector grid: one detector pixel per voxel edge."""
        return self.grid_size

    def grid(self, center_lps: tuple[float, float, float] = (0.0, 0.0, 0.0)) -> VolumeGrid:
        """The output grid placed at an isocentre."""
        return VolumeGrid(self.grid_size, self.field_of_view_mm / self.grid_size, center_lps)

    def detector(self, view: View = View.AP, isocenter_lps: tuple[float, float, float] = (0.0, 0.0, 0.0)) -> ProjectionGeometry:
        """The geometry the model's radiographs are rendered or resampled to."""
        spacing = self.detector_size_mm / self.detector_pixels
        return ProjectionGeometry(
            view, self.source_to_detector_mm, self.source_to_isocenter_mm, (self.detector_pixels,) * 2, (spacing, spacing), isocenter_lps
        )

    def to_dict(self) -> dict:
        """JSON-ready form."""
        data = dataclasses.asdict(self)
        data["unet_channels"], data["attention_levels"] = list(self.unet_channels), list(self.attention_levels)
        return data

    @classmethod
    def from_dict(cls, data: dict) -> "ModelConfig":
        """Inverse of :meth:`to_dict`; unknown keys are refused so a typo does not pass silently."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"unknown model config keys: {sorted(unknown)}")
        return cls(**data)
