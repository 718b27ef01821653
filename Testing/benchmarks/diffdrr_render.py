"""Render the AP + lateral pair of a CT with the PyPI package diffdrr, timed, for the projector comparison in
``performance.py``. Runs in the benchmark's own environment (``make bench-env``), never in DiffuX2CT's.

    .venv-bench/bin/python Testing/benchmarks/diffdrr_render.py CT.nrrd OUT.npz --repeats 5 --threads 2

Geometry as DiffuX2CT's default pair: source-to-detector 1200 mm, source-to-isocentre 1000 mm, 256 x 256 pixels
of 1.6 mm, isocentre at the volume centre; the AP source in front of the patient, the lateral source at the
patient's right (a -90 degree turn).
Prints one JSON line: seconds per pair (each repeat) and the renderer used; the images go to OUT.npz.
"""

from __future__ import annotations

import argparse
import json
import math
import time

import numpy as np
import torch
from diffdrr.data import read
from diffdrr.drr import DRR

SOURCE_TO_DETECTOR_MM = 1200.0
SOURCE_TO_ISOCENTER_MM = 1000.0
PIXELS = 256
PIXEL_MM = 1.6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("ct")
    parser.add_argument("out")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--renderer", default="trilinear", choices=("trilinear", "siddon"))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    subject = read(args.ct, orientation="AP")
    drr = DRR(subject, sdd=SOURCE_TO_DETECTOR_MM, height=PIXELS, delx=PIXEL_MM, renderer=args.renderer)
    # One batch of two poses: AP (no rotation) and lateral (a quarter turn about the patient's long axis).
    rotations = torch.tensor([[0.0, 0.0, 0.0], [-math.pi / 2, 0.0, 0.0]])
    translations = torch.tensor([[0.0, SOURCE_TO_ISOCENTER_MM, 0.0]] * 2)
    with torch.no_grad():
        images = drr(rotations, translations, parameterization="euler_angles", convention="ZXY")  # warm-up
        seconds = []
        for _ in range(args.repeats):
            started = time.perf_counter()
            images = drr(rotations, translations, parameterization="euler_angles", convention="ZXY")
            seconds.append(time.perf_counter() - started)
    np.savez(args.out, ap=images[0, 0].numpy(), lateral=images[1, 0].numpy())
    print(
        json.dumps(
            {
                "seconds_per_pair": seconds,
                "renderer": args.renderer,
                "diffdrr_version": __import__("diffdrr").__version__,
            }
        )
    )


if __name__ == "__main__":
    main()
