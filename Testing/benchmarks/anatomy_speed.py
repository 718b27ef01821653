"""Seconds per procedural phantom for each region (median of repeated runs after one warm-up), on the CPU with a
given number of threads and on CUDA when there is one.

Usage: ``python Testing/benchmarks/anatomy_speed.py [--size 128] [--spacing 2.5] [--threads 2] [--repeats 5]``
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from DiffuX2CTLib.anatomy.phantom import REGIONS, generate_phantom
from DiffuX2CTLib.imaging.geometry import VolumeGrid


def seconds_per_phantom(region: str, grid: VolumeGrid, device: str, repeats: int) -> tuple[float, float]:
    """Median wall time and median process CPU time of ``repeats`` phantoms (seeds 1..repeats) after a warm-up
    phantom; the CPU time is what a busy machine's wall time would be without the wait for a core."""
    generate_phantom(0, grid, region, device=device)
    wall, cpu = [], []
    for seed in range(1, repeats + 1):
        if device == "cuda":
            torch.cuda.synchronize()
        start, start_cpu = time.perf_counter(), time.process_time()
        generate_phantom(seed, grid, region, device=device)
        if device == "cuda":
            torch.cuda.synchronize()
        wall.append(time.perf_counter() - start)
        cpu.append(time.process_time() - start_cpu)
    return statistics.median(wall), statistics.median(cpu)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--spacing", type=float, default=2.5)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    grid = VolumeGrid(args.size, args.spacing)
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    for device in devices:
        label = f"cpu ({args.threads} threads)" if device == "cpu" else torch.cuda.get_device_name()
        for region in REGIONS:
            wall, cpu = seconds_per_phantom(region, grid, device, args.repeats)
            print(
                f"{label:>24}  {region:<8} {args.size}^3 at {args.spacing} mm: {wall:.3f} s wall, "
                f"{cpu:.3f} s process CPU"
            )


if __name__ == "__main__":
    main()
