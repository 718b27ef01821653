"""Projection guidance: pull a reconstruction towards agreement with the two radiographs it was made from.

At each sampling step the sampler's clean-volume estimate is moved down the gradient of a robust mismatch between
its DRRs (the model's projector and geometry, normalised as the inputs are) and the input pair, and the scheduler
continues from the corrected estimate; the regression estimate can be refined by the same steps. This is a
data-consistency step on the clean estimate, of the family of decomposed diffusion sampling (DDS, Chung et al.,
ICLR 2024) and pseudo-inverse guidance, rather than diffusion posterior sampling (DPS, Chung et al., ICLR 2023):
DPS differentiates through the denoiser at every step, which on a CPU would triple the cost of a 3D sample, while
the gradient of the projector alone costs about as much as one DRR pair. The mismatch is a Huber loss, so that a
marker, a collimation border or an implant the model cannot reproduce pulls no harder than a plain difference.

Only the pixels whose ray crosses the whole depth of the model's cube count (:func:`full_depth_pixels`): a ray that
leaves the cube through its top, bottom or a side face also crosses anatomy beyond the cube, which the radiograph
shows and the cube cannot hold, so matching it would pack that anatomy into the cube's outer slices.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ..imaging.drr import DRRProjector, model_line_integrals, normalize_radiograph
from ..imaging.geometry import VolumeGrid
from ..model.config import ModelConfig

HUBER_DELTA = 0.05
"""Where the mismatch turns from squared to absolute, in normalised radiograph units (inputs lie in [0, 1])."""
STEP_PER_WEIGHT = 0.01
"""Root-mean-square change of one guidance step at weight 1, in the model's [-1, 1] intensity units (12.5 HU): the
gradient is scaled to this size, which keeps a step independent of the mismatch's scale."""
REGRESSION_REFINEMENT_STEPS = 10
"""Guidance steps applied to the regression estimate when guidance is asked for on the regression path."""


def full_depth_pixels(projector: DRRProjector, grid: VolumeGrid) -> torch.Tensor:
    """``(V, P, P)`` mask of the detector pixels whose ray runs through ``grid``'s cube from the face towards the
    source to the face towards the detector: its path in the cube is at least the cube's depth (less one voxel,
    for the sampling of the line integral)."""
    ones = torch.ones((1, 1) + (grid.size,) * 3, device=projector.sources.device)
    path_mm = projector(ones, grid)[0]
    return path_mm >= (grid.size - 1) * grid.spacing_mm


class ProjectionGuidance:
    """Data-consistency steps for a model: ``weight`` scales each step (0 turns guidance off)."""

    def __init__(self, config: ModelConfig, weight: float, device: torch.device) -> None:
        self.config, self.weight = config, weight
        self.projector = DRRProjector(config.detector_pair()).to(device)
        self.full_depth = full_depth_pixels(self.projector, config.grid())

    def mismatch(self, volume_unit: torch.Tensor, radiographs: torch.Tensor) -> torch.Tensor:
        """Per item Huber mismatch between the DRRs of ``(B, 1, N, N, N)`` volumes in [-1, 1] and ``(B, 2, P, P)``
        normalised radiographs, over the full-depth pixels: ``(B,)``. Both are scaled again by the percentiles of
        those pixels, so that the anatomy beyond the cube, which the radiographs' own scaling saw, sets no scale.

        The DRRs' percentile scaling is held constant for the gradient (recomputed at every step): through the
        percentiles, the gradient would gather on the one or two pixels each percentile is read from, and every
        step would paint their rays into the volume as thin lines (the stray line across the sample pair's
        mid-sagittal plane)."""
        line_integrals = model_line_integrals(volume_unit, self.projector, self.config.grid(), self.config.hu_window)
        mismatches = []
        for view, counted in enumerate(self.full_depth):
            rendered = normalize_radiograph(line_integrals[:, view], scale_gradient=False, within=counted)
            target = normalize_radiograph(radiographs[:, view], within=counted)
            mismatch = F.huber_loss(rendered[:, counted], target[:, counted], delta=HUBER_DELTA, reduction="none")
            mismatches.append(mismatch)
        return torch.cat(mismatches, dim=1).mean(dim=1)

    def step(self, volume_unit: torch.Tensor, radiographs: torch.Tensor) -> torch.Tensor:
        """One guidance step: each item moves against its own mismatch gradient by a root-mean-square change of
        ``weight * STEP_PER_WEIGHT``, so an item's result does not depend on the batch it is in."""
        with torch.enable_grad():
            volume = volume_unit.detach().float().requires_grad_(True)
            (gradient,) = torch.autograd.grad(self.mismatch(volume, radiographs).sum(), volume)
        size = gradient.flatten(1).pow(2).mean(dim=1).sqrt().clamp(min=1e-12).view(-1, 1, 1, 1, 1)
        return (volume_unit - self.weight * STEP_PER_WEIGHT * gradient / size).clamp(-1.0, 1.0)

    def refine(
        self, volume_unit: torch.Tensor, radiographs: torch.Tensor, steps: int = REGRESSION_REFINEMENT_STEPS
    ) -> torch.Tensor:
        """``steps`` guidance steps on a finished estimate (the regression path)."""
        for _ in range(steps):
            volume_unit = self.step(volume_unit, radiographs)
        return volume_unit
