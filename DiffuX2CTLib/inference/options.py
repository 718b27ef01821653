"""How to reconstruct: the options of one reconstruction and their allowed values (pure Python, no torch, so the
command line and the Slicer side can check them without loading the model)."""

from __future__ import annotations

import math
from dataclasses import dataclass

from ..core.errors import InputError
from ..core.seeds import MAX_SEED

METHODS = ("diffusion", "regression")
SAMPLERS = ("ddim", "ddpm")
DEVICES = ("auto", "cpu", "cuda")
PRECISIONS = ("auto", "float32", "bfloat16")  # DiffuX2CTLib.core.device.resolve_precision says what auto means
MAX_GUIDANCE = 100.0  # projection guidance weights above this move voxels by over 1000 HU per step
DEFAULT_GUIDANCE = {"diffusion": 2.0, "regression": 0.0}
"""Projection guidance weight when none is given, per method, chosen on training-seed phantoms
(``Testing/benchmarks/guidance.py --tune``, never the test seeds): for diffusion, weight 2 raised PSNR and the
re-projection agreement on every tuning case and lowered SSIM on none (weight 4 lost PSNR); for regression every
weight lowered SSIM, so it is off there."""


@dataclass(frozen=True)
class ReconstructionOptions:
    """How to reconstruct: sampler, steps (None: the model's default), seed, device, samples (None: the model's
    ``default_samples`` for DDIM, one for DDPM and regression; :func:`~.sampling.sample_count`), method, whether to
    check the input pair first, the weight of projection guidance (0: off; None: the method's default,
    :data:`DEFAULT_GUIDANCE`; :mod:`DiffuX2CTLib.diffusion.guidance`), the arithmetic of the denoiser's sampling
    steps (:data:`PRECISIONS`; the conditioning network and guidance always run in float32) and the sampling
    temperature (:func:`~DiffuX2CTLib.diffusion.sampler.sample`; None: the model's)."""

    steps: int | None = None
    seed: int = 0
    device: str = "auto"
    samples: int | None = None  # diffusion samples averaged; None: as sampling.sample_count says
    method: str = "diffusion"
    sampler: str = "ddim"
    check_inputs: bool = True  # refuse pairs failing inference.input_checks; False keeps the problems as notes
    batch_size: int | None = None  # samples drawn at once; None: as many as memory allows (same result either way)
    guidance: float | None = None  # None: DEFAULT_GUIDANCE of the method
    precision: str = "auto"
    temperature: float | None = None  # scale of the starting noise, 0 to 1; None: the model's sampling_temperature

    def __post_init__(self) -> None:
        _check_types(self)
        if self.method not in METHODS:
            raise InputError(f"unknown method '{self.method}' (use {' or '.join(METHODS)})")
        if self.guidance is None:
            object.__setattr__(self, "guidance", DEFAULT_GUIDANCE[self.method])
        if self.sampler not in SAMPLERS:
            raise InputError(f"unknown sampler '{self.sampler}' (use {' or '.join(SAMPLERS)})")
        if (
            (self.samples is not None and self.samples < 1)
            or (self.steps is not None and self.steps < 1)
            or (self.batch_size is not None and self.batch_size < 1)
        ):
            raise InputError("samples, steps and batch size must be at least 1")
        if self.device not in DEVICES:
            raise InputError(f"unknown device '{self.device}' (use auto, cpu or cuda)")
        if self.precision not in PRECISIONS:
            raise InputError(f"unknown precision '{self.precision}' (use auto, float32 or bfloat16)")
        if not 0 <= self.seed <= MAX_SEED:
            raise InputError(f"seed must be between 0 and {MAX_SEED}, got {self.seed}")
        if not _number_within(self.guidance, 0, MAX_GUIDANCE):
            raise InputError(f"guidance must be a number from 0 (off) to {MAX_GUIDANCE:g}, got {self.guidance!r}")
        if self.temperature is not None and not _number_within(self.temperature, 0, 1):
            raise InputError(f"temperature must be a number from 0 to 1, got {self.temperature!r}")


def _number_within(value: object, low: float, high: float) -> bool:
    """Whether ``value`` is a finite number (not True or False) from ``low`` to ``high``."""
    return (
        isinstance(value, (int, float))
        and not isinstance(value, bool)
        and math.isfinite(value)
        and low <= value <= high
    )


_WHOLE = ("steps", "seed", "samples", "batch_size")
_TEXT = ("device", "method", "sampler", "precision")


def _check_types(options: ReconstructionOptions) -> None:
    """A named :class:`InputError` for an option of the wrong type (a script passing ``steps="20"`` or
    ``steps=2.5``, or ``True`` for a number), before any comparison could raise a bare TypeError."""
    for name in _WHOLE:
        value = getattr(options, name)
        nullable = name in ("steps", "samples", "batch_size")
        if (value is None and nullable) or (isinstance(value, int) and not isinstance(value, bool)):
            continue
        raise InputError(f"{name} must be a whole number{' or None' if nullable else ''}, got {value!r}")
    for name in _TEXT:
        if not isinstance(getattr(options, name), str):
            raise InputError(f"{name} must be text, got {getattr(options, name)!r}")
    if not isinstance(options.check_inputs, bool):
        raise InputError(f"check_inputs must be True or False, got {options.check_inputs!r}")
