"""Everything that defines a model besides its weights: architecture, grid, intensity window, geometry."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

from ..core.errors import InputError
from ..imaging.geometry import ProjectionGeometry, View, VolumeGrid
from ..imaging.hounsfield import HUWindow

PREDICTION_TYPES = ("epsilon", "v_prediction", "sample")
"""What the denoiser outputs (MONAI's scheduler names): the noise, the velocity ``sqrt(a) eps - sqrt(1 - a) x0``
or the clean residual itself."""
BETA_SCHEDULES = ("linear_beta", "scaled_linear_beta", "sigmoid_beta", "cosine")  # MONAI's NoiseSchedules


class ConfigError(InputError):
    """A model config value of the wrong type, out of range, or inconsistent with another; the message names the key."""


_NUMBERS: dict[str, tuple[type, float, float]] = {  # field: (int or float, lowest, highest allowed)
    "grid_size": (int, 4, 1024),
    "field_of_view_mm": (float, 1.0, 5000.0),
    "hu_low": (float, -5000.0, 50000.0),
    "hu_high": (float, -5000.0, 50000.0),
    "source_to_detector_mm": (float, 1.0, 100000.0),
    "source_to_isocenter_mm": (float, 1.0, 100000.0),
    "detector_size_mm": (float, 1.0, 5000.0),
    "plane_channels": (int, 1, 4096),
    "condition_channels": (int, 1, 4096),
    "fourier_frequencies": (int, 0, 64),
    "decoder_hidden": (int, 1, 4096),
    "attention_heads": (int, 1, 256),
    "window_size": (int, 1, 64),
    "timesteps": (int, 2, 100000),
    "default_steps": (int, 1, 100000),
    "residual_scale": (float, 1e-6, 1e6),
    "sampling_temperature": (float, 0.0, 1.0),
    "default_samples": (int, 1, 64),
}


def _check_number(name: str, value: object, kind: type, low: float, high: float) -> None:
    """Refuse a value that is not a ``kind`` (true/false is not a number; a float field takes whole numbers too)
    or lies outside [low, high]."""
    allowed = (int,) if kind is int else (int, float)
    if isinstance(value, bool) or not isinstance(value, allowed):
        raise ConfigError(f"{name} must be a {'whole number' if kind is int else 'number'}, got {value!r}")
    if not low <= value <= high:  # also refuses NaN
        raise ConfigError(f"{name} must be from {low:g} to {high:g}, got {value!r}")


def _check_choice(name: str, value: object, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ConfigError(f"{name} must be one of {', '.join(choices)}; got {value!r}")


@dataclass(frozen=True)
class ModelConfig:
    """Architecture and data conventions of one model, stored as JSON next to its weights. ``perspective_planes``
    reads the radiographs' feature planes where each voxel's cone-beam ray meets the detector (False: at the
    isocentre's scale for every depth, as models trained before it did; their config files have no such key).
    ``backprojection`` adds both radiographs, read along each voxel's rays, to the finest condition features
    (:class:`.conditioning.ConditionNet`; False for models trained before it). ``default_samples`` is how many
    diffusion samples a default reconstruction averages (1 for models whose config has no such key)."""

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
    sampling_temperature: float = 1.0
    default_samples: int = 1
    perspective_planes: bool = False
    backprojection: bool = False
    extra: dict = field(default_factory=dict, compare=False)

    def __post_init__(self) -> None:
        """Check every field (type, range, consistency), so a damaged config is refused on load, naming the key,
        instead of writing wrong CTs (no denoising, an all-zero CT, a swapped HU window)."""
        for name, (kind, low, high) in _NUMBERS.items():
            _check_number(name, getattr(self, name), kind, low, high)
        for name in ("unet_channels", "attention_levels"):
            value = getattr(self, name)
            if not isinstance(value, (list, tuple)) or not value:
                raise ConfigError(f"{name} must be a non-empty list (one entry per U-Net level), got {value!r}")
            object.__setattr__(self, name, tuple(value))
        for index, channels in enumerate(self.unet_channels):
            _check_number(f"unet_channels[{index}]", channels, int, 1, 4096)
        if not all(isinstance(flag, bool) for flag in self.attention_levels):
            raise ConfigError(
                f"attention_levels must be true/false per U-Net level, got {list(self.attention_levels)!r}"
            )
        for name in ("perspective_planes", "backprojection"):
            if not isinstance(getattr(self, name), bool):
                raise ConfigError(f"{name} must be true or false, got {getattr(self, name)!r}")
        _check_choice("prediction_type", self.prediction_type, PREDICTION_TYPES)
        _check_choice("beta_schedule", self.beta_schedule, BETA_SCHEDULES)
        if not isinstance(self.extra, dict):
            raise ConfigError(f"extra must be a mapping, got {self.extra!r}")
        self._check_consistency()

    def _check_consistency(self) -> None:
        """Relations between fields: an HU window low < high, the detector beyond the patient, sampling steps within
        the diffusion steps, one attention flag per U-Net level, a grid the U-Net can halve and window."""
        if not self.hu_low < self.hu_high:
            raise ConfigError(f"hu_low ({self.hu_low:g}) must be below hu_high ({self.hu_high:g})")
        if not self.source_to_detector_mm > self.source_to_isocenter_mm:
            raise ConfigError(
                f"source_to_detector_mm ({self.source_to_detector_mm:g}) must exceed "
                f"source_to_isocenter_mm ({self.source_to_isocenter_mm:g})"
            )
        if self.default_steps > self.timesteps:
            raise ConfigError(f"default_steps ({self.default_steps}) must not exceed timesteps ({self.timesteps})")
        levels = len(self.unet_channels)
        if len(self.attention_levels) != levels:
            raise ConfigError(
                f"attention_levels has {len(self.attention_levels)} entries but unet_channels {levels}: "
                "one per U-Net level"
            )
        factor = max(
            2**level * (self.window_size if attention else 1) for level, attention in enumerate(self.attention_levels)
        )
        if self.grid_size % factor:
            windows = f", with attention windows of {self.window_size} voxels" if any(self.attention_levels) else ""
            raise ConfigError(
                f"grid_size {self.grid_size} must be a multiple of {factor} "
                f"(halved at each of the {levels - 1} U-Net downsamplings{windows})"
            )

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

    def detector(
        self, view: View = View.AP, isocenter_lps: tuple[float, float, float] = (0.0, 0.0, 0.0)
    ) -> ProjectionGeometry:
        """The geometry the model's radiographs are rendered or resampled to."""
        spacing = self.detector_size_mm / self.detector_pixels
        return ProjectionGeometry(
            view,
            self.source_to_detector_mm,
            self.source_to_isocenter_mm,
            (self.detector_pixels,) * 2,
            (spacing, spacing),
            isocenter_lps,
        )

    def detector_pair(self, isocenter_lps: tuple[float, float, float] = (0.0, 0.0, 0.0)) -> list[ProjectionGeometry]:
        """The AP and lateral geometries, in the order the network takes its two radiographs."""
        return [self.detector(view, isocenter_lps) for view in (View.AP, View.LATERAL)]

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
            raise ConfigError(f"unknown model config keys: {sorted(unknown)}")
        return cls(**data)


PRESETS: dict[str, ModelConfig] = {
    "cpu-64": ModelConfig(perspective_planes=True, backprojection=True),
    "paper-128": ModelConfig(
        grid_size=128,
        perspective_planes=True,
        backprojection=True,
        plane_channels=32,
        condition_channels=32,
        unet_channels=(32, 64, 128, 256),
        attention_levels=(False, False, False, True),
    ),
}
"""Named architectures for ``train --preset``; both read the views' planes along each voxel's ray
(``perspective_planes``) and give the denoiser the radiographs read along those rays (``backprojection``;
:mod:`.conditioning`). ``cpu-64``: the bundled model's, 64^3 voxels of 5 mm, trainable on a
CPU. ``paper-128``: the paper's output size, 128^3 voxels of 2.5 mm over the same 320 mm cube, 32 tri-plane and
condition channels, a four-level denoiser with shifted-window attention at the lowest level (11.6 M parameters);
measured on an H200 with bf16 autocast at 0.16 s per training step of batch 1 (8.2 GiB) and 0.64 s at batch 8
(63.7 GiB), so batch 4 fits an 80 GB GPU without activation checkpointing."""
