"""Several training samples from each volume: which volume a sample is a view of, and the random pose each view
takes.

Painting a phantom (or resampling a CT) costs far more than rendering a DRR pair from it: on 2 CPU cores a 160^3
phantom takes about 0.8 s and its DRR pair 0.06 s, and on a GPU the data workers cannot paint phantoms as fast as
the model trains. With ``reuse`` R > 1 every volume gives R samples, each a view of it under its own random pose
(a few degrees of rotation, a centimetre of shift, a few per cent of size) with its own projection geometry and
radiograph augmentations, so the data cost per sample falls about R-fold while the model still never sees the same
pair twice. The price is fewer distinct patients per sample seen; ``train --reuse`` records the choice.

Volumes are taken in blocks of :attr:`ReusePlan.pool`; a block's ``pool * R`` samples are ``R`` rounds, each a
permutation of the block's volumes (the first in the order they are made, the others seeded), so a batch never
holds one volume twice and the mapping depends only on the run's seed, the batch size and the number of processes:
the same samples whatever the device or worker count, and a resumed run draws what an uninterrupted one would have.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import torch
import torch.nn.functional as F

POSE_ROTATION_DEGREES = (3.0, 3.0, 5.0)
"""Largest rotation of a view about the left-right, front-back and head-foot axes (a patient's set-up varies
most about the long axis)."""
POSE_SHIFT_MM = 10.0
POSE_SCALE = 0.04
MIN_POOL = 8
MIN_BATCHES_PER_ROUND = 4
"""A round spans at least this many batches, so a patient comes back every few steps, not at every step."""


@dataclasses.dataclass(frozen=True)
class ReusePlan:
    """Which volume each sample index is a view of, when each volume gives ``reuse`` samples to the batches of
    ``batch`` samples drawn by ``world`` processes (sample indices as :func:`~.pipeline.batch_indices` gives them)."""

    reuse: int
    batch: int
    world: int = 1
    seed: int = 0

    @property
    def pool(self) -> int:
        """Volumes per block: a multiple of the batch, at least :data:`MIN_POOL` and :data:`MIN_BATCHES_PER_ROUND`
        batches."""
        return self.batch * max(math.ceil(MIN_POOL / self.batch), MIN_BATCHES_PER_ROUND)

    def _permutation(self, block: int, rank: int, round_: int) -> np.ndarray:
        """Slot -> volume of one round: the first round takes the volumes in the order they are made (so a run
        starts as soon as its first batch's volumes are), later rounds in a seeded order."""
        if round_ == 0:
            return np.arange(self.pool)
        return np.random.default_rng([self.seed, block, rank, round_, 7]).permutation(self.pool)

    def volume_of(self, index: int) -> int:
        """The volume sample ``index`` is a view of."""
        batch_number, within = divmod(index, self.batch)
        step, rank = divmod(batch_number, self.world)
        block, position = divmod(step * self.batch + within, self.pool * self.reuse)
        round_, slot = divmod(position, self.pool)
        return (block * self.world + rank) * self.pool + int(self._permutation(block, rank, round_)[slot])

    def indices_of(self, volume: int) -> list[int]:
        """The ``reuse`` sample indices that are views of ``volume``, in order."""
        group, member = divmod(volume, self.pool)
        block, rank = divmod(group, self.world)
        indices = []
        for round_ in range(self.reuse):
            slot = int(np.flatnonzero(self._permutation(block, rank, round_) == member)[0])
            step, within = divmod(block * self.pool * self.reuse + round_ * self.pool + slot, self.batch)
            indices.append((step * self.world + rank) * self.batch + within)
        return indices

    def step_of(self, index: int) -> int:
        """The training step sample ``index`` belongs to."""
        return index // self.batch // self.world

    def volumes_for_steps(self, first_step: int, last_step: int, rank: int = 0) -> list[int]:
        """Every volume of the blocks that steps ``first_step .. last_step - 1`` of process ``rank`` draw from, in
        the order they are first needed."""
        if last_step <= first_step:
            return []
        per_block = self.pool * self.reuse
        first_block, last_block = first_step * self.batch // per_block, (last_step * self.batch - 1) // per_block
        return [
            (block * self.world + rank) * self.pool + k
            for block in range(first_block, last_block + 1)
            for k in range(self.pool)
        ]

    def first_volume_of_step(self, step: int, rank: int = 0) -> int:
        """The lowest volume index the block of ``step`` uses: volumes below it are no longer needed."""
        block = step * self.batch // (self.pool * self.reuse)
        return (block * self.world + rank) * self.pool


def posed(volume_hu: torch.Tensor, rng: np.random.Generator, spacing_mm: float) -> torch.Tensor:
    """``volume_hu`` (a cube ``[z, y, x]`` of ``spacing_mm`` voxels) under a random rigid pose and size about its
    centre: rotations up to :data:`POSE_ROTATION_DEGREES`, shifts up to :data:`POSE_SHIFT_MM`, scale
    ``1 +- POSE_SCALE``; air where the posed volume leaves the cube."""
    angles = np.radians(rng.uniform(-1.0, 1.0, 3) * np.asarray(POSE_ROTATION_DEGREES))
    shift_mm = rng.uniform(-POSE_SHIFT_MM, POSE_SHIFT_MM, 3)
    scale = 1.0 + rng.uniform(-POSE_SCALE, POSE_SCALE)
    half_extent_mm = volume_hu.shape[-1] * spacing_mm / 2.0
    return _resample(volume_hu, _rotation(*angles) / scale, shift_mm / half_extent_mm)


def _rotation(about_x: float, about_y: float, about_z: float) -> np.ndarray:
    cx, sx, cy, sy, cz, sz = (
        np.cos(about_x),
        np.sin(about_x),
        np.cos(about_y),
        np.sin(about_y),
        np.cos(about_z),
        np.sin(about_z),
    )
    rx = np.array([[1, 0, 0], [0, cx, -sx], [0, sx, cx]])
    ry = np.array([[cy, 0, sy], [0, 1, 0], [-sy, 0, cy]])
    rz = np.array([[cz, -sz, 0], [sz, cz, 0], [0, 0, 1]])
    return rz @ ry @ rx


def _resample(volume_hu: torch.Tensor, matrix: np.ndarray, shift: np.ndarray) -> torch.Tensor:
    """Trilinear resampling of ``[z, y, x]`` where output point p (normalised x, y, z) reads the input at
    ``matrix @ p + shift``; outside the input is air."""
    theta = torch.as_tensor(
        np.concatenate([matrix, np.asarray(shift)[:, None]], axis=1)[None], dtype=torch.float32, device=volume_hu.device
    )
    grid = F.affine_grid(theta, [1, 1, *volume_hu.shape], align_corners=False)
    above_air = (volume_hu + 1024.0)[None, None]
    return F.grid_sample(above_air, grid, mode="bilinear", padding_mode="zeros", align_corners=False)[0, 0] - 1024.0
