"""Real patients as training volumes, alone or mixed with procedural phantoms.

The real CTs fetched from the package registries (:mod:`DiffuX2CTLib.realct`) that may train (the patient-level
split of :mod:`DiffuX2CTLib.realct.split`) are prepared once at the training voxel size in the cache
(:func:`~.ct_cache.prepare_volumes`). Each draw takes one of them, places the model's cube anywhere along the
scanned length (so a trunk scan gives chest, abdomen and pelvis cubes) and near the body's centre in the plane,
continues a short scan's end slices beyond it (a radiograph shows the body going on), and reshapes and re-densifies
it (:mod:`.augmentation`), so no two draws show the same body.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np
import torch

from ..core.cache import cache_root
from ..core.errors import InputError
from ..imaging.geometry import VolumeGrid
from ..realct.cache import volumes_folder
from ..realct.split import training_cts, unreadable_message
from .augmentation import augmented
from .ct_cache import CachedCT, prepare_volumes
from .samples import CTSource

IN_PLANE_JITTER_MM = 15.0
"""How far the cube's centre moves about the body's centre, left-right and front-back."""
END_MARGIN = 0.25
"""The cube's centre stays this share of the model's cube inside the scanned length, where the scan allows."""
DEFAULT_REAL_SHARE = 0.5
"""Share of real volumes among training volumes when phantoms and real CTs are mixed."""


@dataclass(frozen=True)
class RealCTSource:
    """Training volumes cut from prepared real CTs, with a patient id per CT (for the model card)."""

    cts: tuple[CachedCT, ...]
    patients: tuple[str, ...]
    model_cube_mm: float

    @classmethod
    def prepared(cls, model_cube_mm: float, spacing_mm: float, cache: str | os.PathLike | None = None) -> RealCTSource:
        """The training patients' CTs in the cache, prepared at ``spacing_mm`` (once; later runs reuse them)."""
        root = cache_root(cache)
        chosen = training_cts(volumes_folder(root))
        if not chosen:
            raise InputError("no real CT may train: fetch them first (`diffux2ct fetch-real`)")
        prepared = prepare_volumes([ct.path for ct in chosen], root / "bank" / f"real-{spacing_mm:g}mm", spacing_mm)
        if not prepared:
            raise InputError(unreadable_message(len(chosen), "training", volumes_folder(root)))
        by_name = {ct.path.name: ct for ct in chosen}
        return cls(tuple(prepared), tuple(by_name[c.name].patient for c in prepared), model_cube_mm)

    def describe(self) -> str:
        names = ", ".join(sorted(set(self.patients)))
        return f"{len(self.cts)} real CTs of {len(set(self.patients))} patients ({names}), strongly augmented"

    def centre(self, ct: CachedCT, rng: np.random.Generator) -> tuple[float, float, float]:
        """Where the model's cube goes: anywhere along the scan (its centre :data:`END_MARGIN` of a cube inside
        the ends where the scan is long enough, else the scan's middle), near the body's centre in the plane."""
        first, last = ct.z_range_lps
        margin = END_MARGIN * self.model_cube_mm
        low, high = (first + margin, last - margin) if last - first > 2 * margin else ((first + last) / 2,) * 2
        centre_x, centre_y = np.asarray(ct.body_centre_lps[:2]) + rng.uniform(-1, 1, 2) * IN_PLANE_JITTER_MM
        return float(centre_x), float(centre_y), float(rng.uniform(low, high))

    def volume(self, index: int, rng: np.random.Generator, grid: VolumeGrid, device: torch.device) -> torch.Tensor:
        ct = self.cts[int(rng.integers(len(self.cts)))]
        moved = VolumeGrid(grid.size, grid.spacing_mm, self.centre(ct, rng))
        volume = torch.from_numpy(ct.crop(moved, extend_ends=True).astype(np.float32)).to(device)
        return augmented(volume, rng, grid.spacing_mm)


@dataclass(frozen=True)
class MixedSource:
    """Phantoms and real CTs: each volume is real with probability ``real_share``."""

    phantoms: CTSource
    real: RealCTSource
    real_share: float = DEFAULT_REAL_SHARE

    def describe(self) -> str:
        return f"{self.real_share:.0%} {self.real.describe()}; {1 - self.real_share:.0%} {self.phantoms.describe()}"

    def volume(self, index: int, rng: np.random.Generator, grid: VolumeGrid, device: torch.device) -> torch.Tensor:
        source: CTSource = self.real if rng.uniform() < self.real_share else self.phantoms
        return source.volume(index, rng, grid, device)
