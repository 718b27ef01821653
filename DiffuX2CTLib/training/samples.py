"""The training data pipeline: a CT source -> a volume around the patient -> a geometry-jittered DRR pair with the
clinical augmentations -> the model-grid target.

Every sample is a pure function of the run's seed and its index, whatever the device or the number of DataLoader
workers: all random draws come from ``numpy.random.default_rng([seed, index])`` on the CPU, and the heavy parts
(phantom painting, the DRR projector, pooling to the model grid) run in torch on the training device. On a CPU the
samples are made in DataLoader worker processes so that data making and the model step overlap (:func:`batches`).
With ``reuse`` > 1 each volume gives several samples, each a posed view of it (:mod:`.reuse`).

The DRRs are rendered from a volume wider than the model's field of view (:func:`drr_grid`), as a radiograph shows
the whole body and not only the reconstructed cube; the target is the central cube pooled to the model grid.
Only torch, numpy and the phantom generator are needed here: reading CT files is left to :mod:`.ctcache`, so the
phantom training path runs where SimpleITK is not installed.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import signal
from collections.abc import Iterator
from typing import Protocol

import numpy as np
import torch
import torch.nn.functional as F

from ..imaging.drr import hu_to_attenuation, normalize_radiograph, project
from ..imaging.geometry import ProjectionGeometry, VolumeGrid
from ..imaging.intensity import add_collimation_and_marker, clean_radiograph
from ..model.config import ModelConfig
from .view_posing import ReusePlan, posed

HELD_OUT_SEED_START = 900_000
"""Phantom seeds from here up are never drawn for training: 900001 is the sample pair, 900100 on the test set."""
REGION_RATES = {"chest": 0.35, "abdomen": 0.2, "lumbar": 0.15, "pelvis": 0.15, "trunk": 0.15}
"""How often training draws each field of view of the phantoms (chest first: the commonest biplanar pair)."""
DRR_FIELD_OF_VIEW_FACTOR = 1.25
"""The DRR volume is this much wider than the model's cube: the detector sees about 341 mm at the isocentre of a
320 mm cube, and its diverging rays a little more."""
GEOMETRY_JITTER = 0.03  # distances +-3 %
ISOCENTRE_JITTER_MM = 4.0


def fine_spacing(config: ModelConfig) -> float:
    """Voxel size of training volumes: half the model's, so they carry finer detail than the model resolves, as a
    real CT does."""
    return config.field_of_view_mm / (2 * config.grid_size)


def drr_grid(config: ModelConfig, centre_lps: tuple[float, float, float] = (0.0, 0.0, 0.0)) -> VolumeGrid:
    """The volume a training sample's DRRs are rendered from: fine voxels over :data:`DRR_FIELD_OF_VIEW_FACTOR`
    times the model's field of view (an even number of voxels, so the model's cube is a central crop of it)."""
    size = 2 * config.grid_size
    size += 2 * math.ceil(size * (DRR_FIELD_OF_VIEW_FACTOR - 1.0) / 2.0)
    return VolumeGrid(size, fine_spacing(config), centre_lps)


class CTSource(Protocol):
    """Where training volumes come from."""

    def describe(self) -> str:
        """One line for logs and the model card."""

    def volume(self, index: int, rng: np.random.Generator, grid: VolumeGrid, device: torch.device) -> torch.Tensor:
        """HU volume ``[z, y, x]`` of sample ``index`` on ``grid`` (centred on the patient), on ``device``."""


@dataclasses.dataclass(frozen=True)
class PhantomSource:
    """Procedural phantoms (:mod:`DiffuX2CTLib.anatomy`): a new patient per sample, its field of view drawn at
    :data:`REGION_RATES`, or always the same phantom (``fixed_seed``) to check that a model can overfit."""

    seed: int = 0
    fixed_seed: int | None = None

    def describe(self) -> str:
        if self.fixed_seed is not None:
            return f"phantom {self.fixed_seed} (trunk field of view)"
        return "procedural phantoms, fields of view " + ", ".join(
            f"{region} {rate:.0%}" for region, rate in REGION_RATES.items()
        )

    def phantom_seed(self, index: int) -> int:
        """The phantom seed of sample ``index``: never a held-out seed."""
        return self.fixed_seed if self.fixed_seed is not None else (self.seed * 7919 + index) % HELD_OUT_SEED_START

    def region(self, rng: np.random.Generator) -> str:
        """The field of view of a sample, drawn at :data:`REGION_RATES` (always ``trunk`` for a fixed phantom)."""
        if self.fixed_seed is not None:
            return "trunk"
        regions = list(REGION_RATES)
        return regions[int(rng.choice(len(regions), p=list(REGION_RATES.values())))]

    def volume(self, index: int, rng: np.random.Generator, grid: VolumeGrid, device: torch.device) -> torch.Tensor:
        region = self.region(rng)
        if self.fixed_seed is not None:
            return _fixed_phantom(self.fixed_seed, grid, str(device)).clone()
        from ..anatomy.phantom import generate_phantom

        return generate_phantom(self.phantom_seed(index), grid, region, device=device)


@functools.lru_cache(maxsize=2)
def _fixed_phantom(seed: int, grid: VolumeGrid, device: str) -> torch.Tensor:
    """The one phantom of an overfitting run, painted once per process."""
    from ..anatomy.phantom import generate_phantom

    return generate_phantom(seed, grid, "trunk", device=device)


def jittered_geometry(nominal: ProjectionGeometry, rng: np.random.Generator) -> ProjectionGeometry:
    """A view's geometry with its distances off by up to +-3 % and its isocentre by up to +-4 mm, as a real set-up
    differs from the nominal one."""
    return dataclasses.replace(
        nominal,
        source_to_detector_mm=nominal.source_to_detector_mm * rng.uniform(1 - GEOMETRY_JITTER, 1 + GEOMETRY_JITTER),
        source_to_isocenter_mm=nominal.source_to_isocenter_mm * rng.uniform(1 - GEOMETRY_JITTER, 1 + GEOMETRY_JITTER),
        isocenter_lps=tuple(
            np.asarray(nominal.isocenter_lps) + rng.uniform(-ISOCENTRE_JITTER_MM, ISOCENTRE_JITTER_MM, 3)
        ),
    )


def render_drr_pair(
    volume_hu: torch.Tensor, grid: VolumeGrid, geometries: list[ProjectionGeometry], samples_per_ray: int
) -> torch.Tensor:
    """Line-integral DRRs ``(2, P, P)`` of a HU volume ``[z, y, x]`` on ``grid``, one per geometry (AP first)."""
    device = volume_hu.device
    sources = torch.as_tensor(np.stack([g.source_lps for g in geometries]), dtype=torch.float32, device=device)[None]
    pixels = torch.as_tensor(
        np.stack([g.pixel_positions_lps() for g in geometries]), dtype=torch.float32, device=device
    )[None]
    world_to_index = torch.as_tensor(grid.world_to_index(), dtype=torch.float32, device=device)
    with torch.no_grad():
        return project(hu_to_attenuation(volume_hu)[None, None], world_to_index, sources, pixels, samples_per_ray)[0]


def augment_radiographs(drrs: torch.Tensor, rng: np.random.Generator) -> torch.Tensor:
    """Clinical variation of a DRR pair ``(2, P, P)``: a gamma per view, detector noise, collimation borders and a
    burned-in marker, then the same cleaning inference applies and the percentile normalisation, so the model
    learns from what it is fed. Returns ``(2, P, P)`` in [0, 1]."""
    gamma = torch.as_tensor(rng.uniform(0.8, 1.25, (2, 1, 1)), dtype=drrs.dtype, device=drrs.device)
    drrs = drrs.clamp(min=0) ** gamma
    noise = torch.as_tensor(rng.normal(0.0, 0.01, tuple(drrs.shape)), dtype=drrs.dtype, device=drrs.device)
    drrs = drrs + noise * drrs.amax(dim=(-2, -1), keepdim=True)
    views = drrs.cpu().numpy()
    cleaned = np.stack([clean_radiograph(add_collimation_and_marker(view, rng))[0] for view in views])
    return normalize_radiograph(torch.from_numpy(cleaned).to(drrs.device))


def model_target(volume_hu: torch.Tensor, config: ModelConfig) -> torch.Tensor:
    """The model's cube (central crop of a :func:`drr_grid` volume) pooled to the model grid and scaled to the HU
    window's [-1, 1]: ``[z, y, x]`` -> ``(1, N, N, N)``."""
    margin = (volume_hu.shape[0] - 2 * config.grid_size) // 2
    crop = volume_hu[
        margin : margin + 2 * config.grid_size,
        margin : margin + 2 * config.grid_size,
        margin : margin + 2 * config.grid_size,
    ]
    pooled = F.avg_pool3d(crop[None, None], 2)[0]
    window = config.hu_window
    return ((pooled.clamp(window.low, window.high) - window.low) / (window.high - window.low) * 2.0 - 1.0).float()


class SampleMaker:
    """Paired (target CT, radiograph pair) samples of a run, a pure function of the sample index. With ``reuse``
    > 1 each volume gives that many samples, each a posed view of it (:mod:`.reuse`); the mapping also depends on
    the run's ``batch`` and number of processes (``world``)."""

    def __init__(
        self, config: ModelConfig, source: CTSource, seed: int, reuse: int = 1, batch: int = 1, world: int = 1
    ) -> None:
        self.config, self.source, self.seed = config, source, seed
        self.plan = ReusePlan(reuse, batch, world, seed) if reuse > 1 else None

    def sample(self, index: int, device: torch.device | str = "cpu") -> tuple[torch.Tensor, torch.Tensor]:
        """``(1, N, N, N)`` target in [-1, 1] and ``(2, P, P)`` radiographs in [0, 1] (AP, then lateral) of sample
        ``index``, made on ``device``."""
        device = torch.device(device)
        if self.plan is not None:
            return self.view(self.volume(self.plan.volume_of(index), device), index)
        rng = np.random.default_rng([self.seed, index])
        grid = drr_grid(self.config)
        volume = self.source.volume(index, rng, grid, device)
        return self._render(volume, grid, rng)

    def volume(self, volume_index: int, device: torch.device | str = "cpu") -> torch.Tensor:
        """HU volume ``volume_index`` of a reusing run on the :func:`drr_grid`, rounded to half precision (how data
        workers hand it over, so any number of workers gives the same values; painted on a GPU, they agree with a
        CPU's to float tolerance)."""
        rng = np.random.default_rng([self.seed, volume_index, 1])  # not [.., 0]: numpy reads that as [seed, index]
        volume = self.source.volume(volume_index, rng, drr_grid(self.config), torch.device(device))
        return volume.half().float()

    def view(self, volume: torch.Tensor, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Sample ``index`` of a reusing run as a view of its ``volume`` (on the volume's device): a random pose,
        then the jittered geometry and augmentations of :meth:`sample`."""
        rng = np.random.default_rng([self.seed, index])
        grid = drr_grid(self.config)
        return self._render(posed(volume, rng, grid.spacing_mm), grid, rng)

    def _render(
        self, volume: torch.Tensor, grid: VolumeGrid, rng: np.random.Generator
    ) -> tuple[torch.Tensor, torch.Tensor]:
        geometries = [jittered_geometry(geometry, rng) for geometry in self.config.detector_pair(grid.center_lps)]
        drrs = render_drr_pair(volume, grid, geometries, samples_per_ray=grid.size)
        return model_target(volume, self.config), augment_radiographs(drrs, rng).float()

    def views_of(
        self, volume_index: int, device: torch.device | str = "cpu"
    ) -> list[tuple[int, torch.Tensor, torch.Tensor]]:
        """Every sample of a reusing run that is a view of volume ``volume_index``: ``(index, target, radiographs)``."""
        volume = self.volume(volume_index, device)
        return [(index, *self.view(volume, index)) for index in self.plan.indices_of(volume_index)]

    def batch(
        self, first_index: int, size: int, device: torch.device | str = "cpu"
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Stacked samples ``first_index .. first_index + size - 1``: ``(B, 1, N, N, N)`` and ``(B, 2, P, P)``."""
        pairs = [self.sample(first_index + k, device) for k in range(size)]
        return torch.stack([p[0] for p in pairs]), torch.stack([p[1] for p in pairs])


class _Samples(torch.utils.data.Dataset):
    """The maker as a map-style dataset, for DataLoader workers (CPU)."""

    def __init__(self, maker: SampleMaker) -> None:
        self.maker = maker

    def __len__(self) -> int:
        return 2**62

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self.maker.sample(index)


class _Volumes(_Samples):
    """A reusing run's volumes (half precision, to halve what crosses between processes), for workers feeding a
    GPU that renders the views itself."""

    def __getitem__(self, volume_index: int) -> tuple[int, torch.Tensor]:
        return volume_index, self.maker.volume(volume_index).half()


class _Views(_Samples):
    """A reusing run's volumes with all their views made in the worker (CPU training)."""

    def __getitem__(self, volume_index: int) -> list[tuple[int, torch.Tensor, torch.Tensor]]:
        return self.maker.views_of(volume_index)


def _set_up_worker(_: int) -> None:
    """A data worker uses one thread, and leaves SIGTERM to the training process: ``timeout``, ``kill -- -PGID`` and
    job schedulers signal every process of a run, and a worker that died of it would end the run with a traceback
    instead of its checkpoint and one line (the training process stops the workers itself)."""
    torch.set_num_threads(1)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)


def batch_indices(step: int, batch: int, world: int = 1, rank: int = 0) -> list[int]:
    """Sample indices of one process's batch at ``step``: ranks draw disjoint streams, and a resumed run draws
    exactly what an uninterrupted one would have."""
    first = (step * world + rank) * batch
    return list(range(first, first + batch))


def batches(
    maker: SampleMaker,
    first_step: int,
    last_step: int,
    batch: int,
    device: torch.device,
    workers: int = 0,
    world: int = 1,
    rank: int = 0,
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """The batches of steps ``first_step .. last_step - 1`` on ``device``. With ``workers`` > 0 (CPU training) they
    are made ahead in that many DataLoader processes while the model trains; with 0 (a GPU) on the device, in this
    process. Either way the same samples. A reusing maker (``reuse`` > 1) goes through :func:`_reusing_batches`."""
    if maker.plan is not None:
        if (maker.plan.batch, maker.plan.world) != (batch, world):
            raise ValueError(
                f"the maker plans batches of {maker.plan.batch} for {maker.plan.world} processes, not {batch} for "
                f"{world}"
            )
        yield from _reusing_batches(maker, first_step, last_step, device, workers, rank)
        return
    steps = range(first_step, last_step)
    if workers == 0:
        for step in steps:
            yield maker.batch(batch_indices(step, batch, world, rank)[0], batch, device)
        return
    loader = torch.utils.data.DataLoader(
        _Samples(maker),
        batch_sampler=[batch_indices(step, batch, world, rank) for step in steps],
        num_workers=workers,
        worker_init_fn=_set_up_worker,
        prefetch_factor=2,
    )
    for clean, radiographs in loader:
        yield clean.to(device), radiographs.to(device)


def _reusing_batches(
    maker: SampleMaker, first_step: int, last_step: int, device: torch.device, workers: int, rank: int
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """:func:`batches` of a reusing maker. The volumes a rank needs come in order (:meth:`ReusePlan.volumes_for_steps`):
    made in this process on the device (``workers`` 0), by workers that also render their views (a CPU), or by
    workers that hand the volume to the device, which renders the views (a GPU). A block's volumes are dropped once
    its steps are done."""
    plan = maker.plan
    order = plan.volumes_for_steps(first_step, last_step, rank)
    views_in_workers = workers > 0 and device.type == "cpu"
    if workers == 0:
        arriving = ((v, maker.volume(v, device)) for v in order)
    else:
        dataset = _Views(maker) if views_in_workers else _Volumes(maker)
        # A block in flight: the workers make the next block while the model trains on this one.
        arriving = iter(
            torch.utils.data.DataLoader(
                dataset,
                sampler=order,
                batch_size=None,
                num_workers=workers,
                worker_init_fn=_set_up_worker,
                prefetch_factor=max(2, math.ceil(plan.pool / workers)),
            )
        )
    volumes: dict[int, torch.Tensor] = {}
    ready: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}
    for step in range(first_step, last_step):
        oldest = plan.first_volume_of_step(step, rank)
        for stale in [v for v in volumes if v < oldest]:
            del volumes[stale]
        pairs = []
        for index in batch_indices(step, plan.batch, plan.world, rank):
            volume_index = plan.volume_of(index)
            if views_in_workers:
                while index not in ready:
                    ready.update(
                        (i, (target, radiographs))
                        for i, target, radiographs in next(arriving)
                        if plan.step_of(i) >= first_step
                    )
                pairs.append(ready.pop(index))
                continue
            while volume_index not in volumes:
                arrived, volume = next(arriving)
                volumes[arrived] = volume.to(device).float()
            pairs.append(maker.view(volumes[volume_index], index))
        yield torch.stack([p[0] for p in pairs]).to(device), torch.stack([p[1] for p in pairs]).to(device)
