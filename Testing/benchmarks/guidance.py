"""Projection guidance, measured: re-projection agreement and quality with and without it, end to end (files in,
``reconstruct_pair``, files out), on procedural phantoms.

    PYTHONPATH=. .venv/bin/python Testing/benchmarks/guidance.py --tune      # choose the weight on training seeds
    PYTHONPATH=. .venv/bin/python Testing/benchmarks/guidance.py --weight W  # held-out seeds, every kind of case

``--tune`` reconstructs phantoms of training seeds (never the test seeds) with several weights and prints which
gives the best mean PSNR of the default (one DDIM sample) reconstruction. The measurement runs the held-out test
phantoms as they are and, one per region, cases the model has not seen: a spinal implant, a patient shifted from
the isocentre, a patient rotated about the long axis, radiographs whose true distances are off the nominal ones by
5 %, and radiographs with the clinical augmentations (gamma, noise, collimation, marker). Writes
``Testing/benchmarks/results/guidance.{json,md}`` (or ``--results NAME``). A benchmark, not a test.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import SimpleITK as sitk
import torch

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from DiffuX2CTLib.anatomy.phantom import generate_phantom
from DiffuX2CTLib.core.atomic_write import write_json, write_text
from DiffuX2CTLib.core.device import resolve_precision
from DiffuX2CTLib.evaluation.evaluate import TEST_REGIONS, TEST_SEED_START
from DiffuX2CTLib.evaluation.metrics import compare
from DiffuX2CTLib.imaging.geometry import View
from DiffuX2CTLib.imaging.image_io import detector_image, grid_image, resample_to_grid, write_image
from DiffuX2CTLib.imaging.synthesize import pair_for_ct, render_pair
from DiffuX2CTLib.inference.options import PRECISIONS, ReconstructionOptions
from DiffuX2CTLib.inference.reconstruct import cached_model, reconstruct_pair
from DiffuX2CTLib.training.samples import augment_radiographs, drr_grid

RESULTS = ROOT / "Testing" / "benchmarks" / "results"
KINDS = ("plain", "implant", "shifted", "rotated", "geometry", "augmented")
TUNING_SEEDS = (1000, 1001, 1002, 1003)  # training seeds (below the held-out range), one per region
SHIFT_MM = (15.0, 10.0, 0.0)
ROTATION_DEGREES = 8.0
DISTANCE_ERROR = 1.05


def make_case(seed: int, region: str, kind: str, config, folder: Path) -> tuple[Path, Path, sitk.Image]:
    """Write a case's AP and lateral radiographs; return their paths and the ground truth on the model's grid."""
    grid = drr_grid(config)
    ct = grid_image(generate_phantom(seed, grid, region, implant=kind == "implant").numpy(), grid)
    if kind == "rotated":
        turn = sitk.Euler3DTransform()
        turn.SetCenter(ct.TransformContinuousIndexToPhysicalPoint([(s - 1) / 2 for s in ct.GetSize()]))
        turn.SetRotation(0.0, 0.0, np.deg2rad(ROTATION_DEGREES))
        ct = sitk.Resample(ct, ct, turn, sitk.sitkLinear, -1000.0, sitk.sitkFloat32)
    nominal = pair_for_ct(ct, (config.detector(View.AP), config.detector(View.LATERAL)))
    if kind == "shifted":  # the patient lies off the isocentre: the isocentre moves in the patient's frame
        nominal = tuple(dataclasses.replace(g, isocenter_lps=tuple(np.add(g.isocenter_lps, SHIFT_MM))) for g in nominal)
    actual = nominal
    if kind == "geometry":  # the radiographs say nominal distances; the real ones were 5 % longer
        actual = tuple(
            dataclasses.replace(
                g,
                source_to_detector_mm=g.source_to_detector_mm * DISTANCE_ERROR,
                source_to_isocenter_mm=g.source_to_isocenter_mm * DISTANCE_ERROR,
            )
            for g in nominal
        )
    drrs = render_pair(ct, actual, samples_per_ray=2 * config.grid_size)
    if kind == "augmented":
        drrs = augment_radiographs(torch.from_numpy(drrs), np.random.default_rng([seed, 17])).numpy()
    paths = [write_image(detector_image(drr, g), folder / f"{g.view.value}.nrrd") for drr, g in zip(drrs, nominal)]
    truth_grid = config.grid(nominal[0].isocenter_lps)
    return paths[0], paths[1], grid_image(resample_to_grid(ct, truth_grid), truth_grid)


def score(
    ap: Path, lateral: Path, truth: sitk.Image, model: str | None, options: ReconstructionOptions, window
) -> dict:
    started = time.perf_counter()
    result = reconstruct_pair(ap, lateral, model, options)
    seconds = time.perf_counter() - started
    return {**compare(result.ct, truth, window), "ncc": statistics.mean(result.agreement.values()), "seconds": seconds}


def run(
    cases: list[tuple[int, str, str]], weights: list[float], model: str | None, methods: list[str], precision: str
) -> list[dict]:
    """One record per case, method and weight."""
    net, _ = cached_model(model, torch.device("cpu"))
    config, window = net.config, net.config.hu_window
    records = []
    for seed, region, kind in cases:
        with tempfile.TemporaryDirectory() as folder:
            ap, lateral, truth = make_case(seed, region, kind, config, Path(folder))
            for method in methods:
                for weight in weights:
                    options = ReconstructionOptions(
                        method=method,
                        guidance=weight,
                        samples=1,
                        device="cpu",
                        check_inputs=False,
                        precision=precision,
                    )
                    record = {
                        "seed": seed,
                        "region": region,
                        "kind": kind,
                        "method": method,
                        "guidance": weight,
                        **score(ap, lateral, truth, model, options, window),
                    }
                    records.append(record)
                    print(
                        json.dumps(
                            {
                                k: (round(v, 4) if isinstance(v, float) else v)
                                for k, v in record.items()
                                if k != "voxels_compared"
                            }
                        ),
                        flush=True,
                    )
    return records


def table(records: list[dict], group: str) -> list[str]:
    """Mean per (``group`` value, method, weight): NCC, PSNR, SSIM, MAE, bone Dice, seconds."""
    lines = [
        f"| {group} | method | guidance | re-projection NCC | PSNR (dB) | SSIM | MAE (HU) | bone Dice | seconds |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    keys = sorted(
        {(r[group], r["method"], r["guidance"]) for r in records},
        key=lambda k: (KINDS.index(k[0]) if k[0] in KINDS else 0, k[0], k[1], k[2]),
    )
    for key in keys:
        rows = [r for r in records if (r[group], r["method"], r["guidance"]) == key]
        mean = {
            m: statistics.mean(r[m] for r in rows) for m in ("ncc", "psnr_db", "ssim", "mae_hu", "bone_dice", "seconds")
        }
        lines.append(
            f"| {key[0]} ({len(rows)}) | {key[1]} | {key[2]:g} | {mean['ncc']:.4f} | {mean['psnr_db']:.2f} | "
            f"{mean['ssim']:.3f} | "
            f"{mean['mae_hu']:.0f} | {mean['bone_dice']:.3f} | {mean['seconds']:.1f} |"
        )
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tune", action="store_true", help="compare --weights on training seeds")
    parser.add_argument("--weights", type=float, nargs="+", default=[0.0, 1.0, 2.0, 4.0, 8.0])
    parser.add_argument(
        "--weight", type=float, default=None, help="measure this weight against none on the held-out cases"
    )
    parser.add_argument("--model", default=None)
    parser.add_argument(
        "--methods", nargs="+", default=["diffusion", "regression"], choices=("diffusion", "regression")
    )
    parser.add_argument("--plain-cases", type=int, default=8)
    parser.add_argument("--results", default="guidance")
    parser.add_argument(
        "--precision", default="auto", choices=PRECISIONS, help="sampling arithmetic (reconstruct --precision)"
    )
    args = parser.parse_args()
    precision = resolve_precision(args.precision, torch.device("cpu"))
    torch.set_grad_enabled(False)
    if args.tune:
        cases = [(seed, TEST_REGIONS[k % 4], "plain") for k, seed in enumerate(TUNING_SEEDS)]
        records = run(cases, args.weights, args.model, args.methods, precision)
        lines = [
            "Tuning on training seeds "
            + ", ".join(map(str, TUNING_SEEDS))
            + f" (one per region), diffusion sampled in {precision}:",
            "",
        ] + table(records, "kind")
    else:
        weights = [0.0, args.weight if args.weight is not None else 1.0]
        cases = [(TEST_SEED_START + k, TEST_REGIONS[k % 4], "plain") for k in range(args.plain_cases)]
        cases += [
            (TEST_SEED_START + 50 + 4 * i + k, TEST_REGIONS[k], kind)
            for i, kind in enumerate(KINDS[1:])
            for k in range(4)
        ]
        records = run(cases, weights, args.model, args.methods, precision)
        lines = [
            "Held-out phantoms (seeds from "
            + str(TEST_SEED_START)
            + f"), by kind of case, diffusion sampled in {precision}:",
            "",
        ] + table(records, "kind")
    RESULTS.mkdir(parents=True, exist_ok=True)
    write_json({"precision": precision, "records": records}, RESULTS / f"{args.results}.json")
    write_text("\n".join(lines) + "\n", RESULTS / f"{args.results}.md")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
