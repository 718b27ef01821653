"""What ``train --data`` names, as a source of training volumes (:class:`~.samples.CTSource`)."""

from __future__ import annotations

import dataclasses

from ..core.errors import InputError
from ..model.config import ModelConfig
from .ct_cache import CachedCTSource
from .phantom_bank import BANK_SIZE, PhantomBank
from .real_source import DEFAULT_REAL_SHARE, MixedSource, RealCTSource
from .samples import CTSource, PhantomSource, drr_grid, fine_spacing

DATA_CHOICES = "phantoms, phantom:SEED, real, phantoms+real or a folder of CT volumes"


def parse_source(
    text: str,
    seed: int,
    config: ModelConfig,
    cache_dir: str,
    real_share: float = DEFAULT_REAL_SHARE,
    cache: str | None = None,
    phantom_bank: int = BANK_SIZE,
) -> CTSource:
    """``phantoms``, ``phantom:SEED`` (one phantom, to check a model can overfit), ``real`` (the fetched real CTs of
    the training patients), ``phantoms+real`` (both, real at ``real_share``) or a folder of CT volumes (preprocessed
    once into ``cache_dir`` at the training voxel size of ``config``, see :mod:`.ct_cache`). ``cache`` is the
    data cache of the fetched real CTs and of the phantom bank (default :func:`~DiffuX2CTLib.core.cache.cache_root`);
    ``phantom_bank`` the number of phantoms a sample draws from (:mod:`.phantom_bank`; 0: a new one painted for
    every volume, the way of runs before the bank)."""
    phantoms = PhantomBank.in_cache(drr_grid(config), cache) if phantom_bank > 0 else PhantomSource(seed)
    if phantom_bank > 0:
        phantoms = dataclasses.replace(phantoms, size=phantom_bank)
    if text == "phantoms":
        return phantoms
    if text.startswith("phantom:"):
        value = text.split(":", 1)[1]
        if not value.isdigit():
            raise InputError(f"'{text}': use {DATA_CHOICES} (SEED a whole number)")
        return PhantomSource(seed, int(value))
    if text in ("real", "phantoms+real"):
        real = RealCTSource.prepared(config.field_of_view_mm, fine_spacing(config), cache)
        return real if text == "real" else MixedSource(phantoms, real, real_share)
    return CachedCTSource.for_folder(text, cache_dir, fine_spacing(config))
