"""The phantom bank: procedural phantoms painted once, kept in the cache, and reused across draws and runs.

Painting a phantom (about a second on a CPU) costs far more than reading one back (milliseconds) and making its DRR
pair; a bank turns the painter from the training step's bottleneck into a background trickle. The bank is a window
sliding over an endless sequence of phantoms: draw ``i`` (sample ``i``, or volume ``i`` of a run with ``reuse`` > 1)
takes one of :data:`BANK_SIZE` consecutive slots starting at ``i // SLIDE_EVERY``, so a new phantom enters (and the
oldest leaves) every :data:`SLIDE_EVERY` draws and a long run keeps meeting new anatomy. A slot's phantom is a pure
function of the slot alone (seed and field of view), the same for every run whatever its seed (the run's seed picks
its draws and poses), so a bank painted by one run serves all later ones. A run paints the missing phantoms of its
starting window up front with all its threads (:meth:`PhantomBank.missing` names them); those that enter later are
painted on first use by whichever process needs it. Each is written atomically and found again by later runs (and other
processes) in ``<cache>/bank/phantoms-<grid>-<generator>``; the generator's own source is in the folder's name, so
a changed generator paints a new bank. With ``reuse`` > 1 each draw is also seen under its own pose
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
"""Draws between two new phantoms entering the bank (one painting per 8 draws at most, once the bank is full)."""


def generator_fingerprint() -> str:
    """The first 12 hex digits of the SHA-256 of the phantom generator's source: a changed generator, a new bank."""
    digest = hashlib.sha256()
    for path in sorted((Path(__file__).resolve().parents[1] / "anatomy").glob("*.py")):
        digest.update(path.name.encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()[:12]


@dataclass(frozen=True)
class PhantomBank:
    """Phantoms on the training volume's grid, kept in ``folder`` and shared by every run on that grid, whatever its
    seed (the run's seed picks the draws and poses); a :class:`~.samples.CTSource`."""

    folder: Path
    size: int = BANK_SIZE
    slide_every: int = SLIDE_EVERY

    @classmethod
    def in_cache(cls, grid: VolumeGrid, cache: str | os.PathLike | None = None) -> PhantomBank:
        """The bank for volumes on ``grid`` in the data cache (:func:`~DiffuX2CTLib.core.cache.cache_root`)."""
        name = f"phantoms-{grid.size}x{grid.spacing_mm:g}mm-{generator_fingerprint()}"
        return cls(cache_root(cache) / "bank" / name)

    def describe(self) -> str:
        return (
            f"{PhantomSource().describe()}, painted once into a bank of {self.size} ({self.folder}), a new phantom "
            f"every {self.slide_every} draws"
        )

    def slot(self, index: int, rng: np.random.Generator) -> int:
        """The slot draw ``index`` takes: one of the :attr:`size` slots of the window at ``index // slide_every``."""
        return index // self.slide_every + int(rng.integers(self.size))

    def path(self, slot: int) -> Path:
        """Where slot ``slot``'s phantom is kept: named by its phantom seed and field of view."""
        seed, region = _painting(slot)
        return self.folder / f"{seed}-{region}.npy"

    def phantom(self, slot: int, grid: VolumeGrid, device: torch.device) -> torch.Tensor:
        """Slot ``slot``'s phantom (HU ``[z, y, x]`` on ``grid``): read from the bank, or painted and banked first."""
        path = self.path(slot)
        if not path.is_file():
            from ..anatomy.phantom import generate_phantom

            seed, region = _painting(slot)
            painted = generate_phantom(seed, grid, region, device=device).round().clamp(-32768, 32767)
            array = painted.to(torch.int16).cpu().numpy()
            write_file(path, lambda temporary: np.save(temporary, array))
        return torch.from_numpy(np.load(path).astype(np.float32)).to(device)

    def volume(self, index: int, rng: np.random.Generator, grid: VolumeGrid, device: torch.device) -> torch.Tensor:
        return self.phantom(self.slot(index, rng), grid, device)

    def missing(self, first_draw: int) -> list[int]:
        """The slots of the window that draw ``first_draw`` takes from whose phantoms are not painted yet."""
        start = first_draw // self.slide_every
        return [slot for slot in range(start, start + self.size) if not self.path(slot).is_file()]


def _painting(slot: int) -> tuple[int, str]:
    """The phantom seed and field of view of slot ``slot``: functions of the slot alone, never a held-out seed."""
    return slot % HELD_OUT_SEED_START, PhantomSource().region(np.random.default_rng([slot, 2]))
