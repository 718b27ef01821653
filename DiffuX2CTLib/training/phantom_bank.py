"""The phantom bank: procedural phantoms painted once, kept in the cache, and reused across draws and runs.

Painting a phantom (seconds on a CPU) costs far more than reading one back (milliseconds) and making its DRR pair;
a bank turns the painter from the training step's bottleneck into a background trickle. The bank is a window
sliding over an endless sequence of phantoms: sample ``i`` draws one of :data:`BANK_SIZE` consecutive slots starting
at ``i // SLIDE_EVERY``, so a new phantom enters (and the oldest leaves) every :data:`SLIDE_EVERY` samples and a long
run keeps meeting new anatomy. A slot's phantom is a pure function of the run's seed and the slot (seed and field of
view), painted on first use by whichever process needs it, written atomically, and found again by later runs (and
other processes) in ``<cache>/bank/phantoms-<grid>-<generator>``; the generator's own source is in the folder's
name, so a changed generator paints a new bank. With ``reuse`` > 1 each draw is also seen under its own pose
(:mod:`.view_posing`); phantoms need no stronger augmentation, as the generator itself never repeats a patient.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..core.atomic_write import write_file
from ..core.cache import cache_root
from ..imaging.geometry import VolumeGrid
from .samples import HELD_OUT_SEED_START, PhantomSource

BANK_SIZE = 64
"""Phantoms a sample draws from at any time."""
SLIDE_EVERY = 8
"""Samples between two new phantoms entering the bank (one painting per 8 samples, once the bank is full)."""


def generator_fingerprint() -> str:
    """The first 12 hex digits of the SHA-256 of the phantom generator's source: a changed generator, a new bank."""
    digest = hashlib.sha256()
    for path in sorted((Path(__file__).resolve().parents[1] / "anatomy").glob("*.py")):
        digest.update(path.name.encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()[:12]


@dataclass(frozen=True)
class PhantomBank:
    """Phantoms of a run (``seed``) on the training volume's grid, kept in ``folder``; a :class:`~.samples.CTSource`."""

    seed: int
    folder: Path
    size: int = BANK_SIZE
    slide_every: int = SLIDE_EVERY

    @classmethod
    def in_cache(cls, seed: int, grid: VolumeGrid, cache: str | os.PathLike | None = None) -> PhantomBank:
        """The bank of ``seed`` for volumes on ``grid`` in the data cache
        (:func:`~DiffuX2CTLib.core.cache.cache_root`)."""
        name = f"phantoms-{grid.size}x{grid.spacing_mm:g}mm-{generator_fingerprint()}"
        return cls(seed, cache_root(cache) / "bank" / name)

    def describe(self) -> str:
        painter = PhantomSource(self.seed)
        return (
            f"{painter.describe()}, painted once into a bank of {self.size} ({self.folder}), a new phantom every "
            f"{self.slide_every} samples"
        )

    def slot(self, index: int, rng: np.random.Generator) -> int:
        """The slot sample ``index`` draws: one of the :attr:`size` slots of the window at ``index // slide_every``."""
        return index // self.slide_every + int(rng.integers(self.size))

    def phantom(self, slot: int, grid: VolumeGrid, device: torch.device) -> torch.Tensor:
        """Slot ``slot``'s phantom (HU ``[z, y, x]`` on ``grid``): read from the bank, or painted and banked first."""
        painter = PhantomSource(self.seed)
        region = painter.region(np.random.default_rng([self.seed, slot, 2]))
        seed = painter.phantom_seed(slot)
        assert seed < HELD_OUT_SEED_START
        path = self.folder / f"{seed}-{region}.npy"
        if not path.is_file():
            from ..anatomy.phantom import generate_phantom

            painted = generate_phantom(seed, grid, region, device=device).round().clamp(-32768, 32767)
            array = painted.to(torch.int16).cpu().numpy()
            write_file(path, lambda temporary: np.save(temporary, array))
        return torch.from_numpy(np.load(path).astype(np.float32)).to(device)

    def volume(self, index: int, rng: np.random.Generator, grid: VolumeGrid, device: torch.device) -> torch.Tensor:
        return self.phantom(self.slot(index, rng), grid, device)
