"""What ``train --data`` names, as a source of training volumes (:class:`~.samples.CTSource`)."""

from __future__ import annotations

from ..core.errors import InputError
from ..model.config import ModelConfig
from .ct_cache import CachedCTSource
from .real_source import DEFAULT_REAL_SHARE, MixedSource, RealCTSource
from .samples import CTSource, PhantomSource, fine_spacing

DATA_CHOICES = "phantoms, phantom:SEED, real, phantoms+real or a folder of CT volumes"


def parse_source(
    text: str,
    seed: int,
    config: ModelConfig,
    cache_dir: str,
    real_share: float = DEFAULT_REAL_SHARE,
    cache: str | None = None,
) -> CTSource:
    """``phantoms``, ``phantom:SEED`` (one phantom, to check a model can overfit), ``real`` (the fetched real CTs of
    the training patients), ``phantoms+real`` (both, real at ``real_share``) or a folder of CT volumes (preprocessed
    once into ``cache_dir`` at the training voxel size of ``config``, see :mod:`.ct_cache`). ``cache`` is the
    data cache of the fetched real CTs (default :func:`~DiffuX2CTLib.core.cache.cache_root`)."""
    if text == "phantoms":
        return PhantomSource(seed)
    if text.startswith("phantom:"):
        value = text.split(":", 1)[1]
        if not value.isdigit():
            raise InputError(f"'{text}': use {DATA_CHOICES} (SEED a whole number)")
        return PhantomSource(seed, int(value))
    if text in ("real", "phantoms+real"):
        real = RealCTSource.prepared(config.field_of_view_mm, fine_spacing(config), cache)
        return real if text == "real" else MixedSource(PhantomSource(seed), real, real_share)
    return CachedCTSource.for_folder(text, cache_dir, fine_spacing(config))
