"""Montages of the procedural anatomy: for each region, eight random phantoms (seeds below the held-out range)
as coronal, axial and sagittal mid-slices (window -1000..1000 HU) beside their AP and lateral DRRs.

Usage: ``python Testing/benchmarks/anatomy_montage.py [--out Resources/Screenshots] [--seed 0] [--regions chest ...]``
writes ``phantoms-<region>.png`` for each region.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from DiffuX2CTLib.anatomy.phantom import REGIONS, generate_phantom
from DiffuX2CTLib.imaging.geometry import VolumeGrid, default_pair
from DiffuX2CTLib.imaging.image_io import grid_image
from DiffuX2CTLib.imaging.synthesize import pair_for_ct, render_pair

HELD_OUT = 900_000


def _panels(hu: np.ndarray, grid: VolumeGrid) -> list[np.ndarray]:
    """Coronal, axial, sagittal mid-slices (radiological display) and the AP and lateral DRRs, each in [0, 1]."""
    n = hu.shape[0]

    def window(a: np.ndarray) -> np.ndarray:
        return np.clip((a + 1000.0) / 2000.0, 0.0, 1.0)

    slices = [window(hu[::-1, n // 2, :]), window(hu[n // 2]), window(hu[::-1, :, n // 2])]
    image = grid_image(hu, grid)
    template = tuple(g.with_detector(160) for g in default_pair())
    drrs = render_pair(image, pair_for_ct(image, template))
    shown = []
    for drr in drrs:
        low, high = np.percentile(drr, [1.0, 99.7])
        shown.append(np.clip((drr - low) / max(high - low, 1e-6), 0.0, 1.0))
    return slices + shown


def montage(region: str, seeds: list[int], out: Path, grid: VolumeGrid) -> Path:
    """Write one region's PNG (rows: phantoms; columns: coronal, axial, sagittal, AP DRR, lateral DRR)."""
    figure, axes = plt.subplots(len(seeds), 5, figsize=(7.5, 1.55 * len(seeds)), dpi=72)
    for row, seed in enumerate(seeds):
        hu = generate_phantom(seed, grid, region).numpy()
        for col, panel in enumerate(_panels(hu, grid)):
            axis = axes[row, col]
            axis.imshow(panel, cmap="gray", vmin=0, vmax=1, interpolation="bilinear")
            axis.set_xticks([])
            axis.set_yticks([])
            if row == 0:
                axis.set_title(["coronal", "axial", "sagittal", "AP DRR", "lateral DRR"][col], fontsize=8)
            if col == 0:
                axis.set_ylabel(str(seed), fontsize=7)
    figure.suptitle(f"procedural phantoms, region '{region}' ({grid.size}^3 at {grid.spacing_mm} mm)", fontsize=9)
    figure.tight_layout(pad=0.3, rect=(0.0, 0.0, 1.0, 1.0 - 0.25 / (1.55 * len(seeds))))
    path = out / f"phantoms-{region}.png"
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path)
    plt.close(figure)
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "Resources" / "Screenshots")
    parser.add_argument("--seed", type=int, default=0, help="draws the eight phantom seeds")
    parser.add_argument("--regions", nargs="*", default=list(REGIONS), choices=REGIONS)
    parser.add_argument("--rows", type=int, default=8)
    args = parser.parse_args()
    torch.set_num_threads(1)  # many small boxes: one thread is as fast, and far faster on a busy machine
    seeds = [int(s) for s in np.random.default_rng(args.seed).integers(0, HELD_OUT, size=args.rows)]
    for region in args.regions:
        path = montage(region, seeds, args.out, VolumeGrid(128, 2.5))
        print(f"{path} ({path.stat().st_size // 1024} KB)")


if __name__ == "__main__":
    main()
