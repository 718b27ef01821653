"""Score an evaluation's reconstructions on another model's grid, so models of different grid sizes are compared on
the same ground truth: each held-out phantom case of ``diffux2ct evaluate --set phantoms --out FOLDER`` is painted
again for the ``--preset`` model, resampled to its grid, and every reconstruction of the case is scored against it
(a 128^3 output read at the 64^3 voxel centres is the average of its 2x2x2 voxels there).

    PYTHONPATH=. .venv/bin/python Testing/benchmarks/score_on_grid.py /tmp/eval128 --preset cpu-64

Prints one line per case and method and the means; writes ``FOLDER/scored-on-PRESET.json``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import SimpleITK as sitk

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from DiffuX2CTLib.core.atomic_write import write_json
from DiffuX2CTLib.evaluation.evaluate import METRICS, TEST_REGIONS, TEST_SEED_START, phantom_case
from DiffuX2CTLib.evaluation.metrics import compare
from DiffuX2CTLib.imaging.image_io import grid_image, image_center_lps, resample_to_grid
from DiffuX2CTLib.model.config import PRESETS

INPUTS = ("ap", "lateral")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", type=Path, help="an evaluate --set phantoms output folder")
    parser.add_argument("--preset", choices=tuple(PRESETS), default="cpu-64", help="the model whose grid scores")
    args = parser.parse_args()
    config = PRESETS[args.preset]
    scores: dict[str, list[dict]] = {}
    for k in range(len(list((args.folder / "cases").iterdir()))):
        seed, region = TEST_SEED_START + k, TEST_REGIONS[k % len(TEST_REGIONS)]
        case = args.folder / "cases" / f"phantom-{seed}-{region}"
        ct = phantom_case(seed, region, config)
        grid = config.grid(image_center_lps(ct))
        truth = grid_image(resample_to_grid(ct, grid), grid)
        for path in sorted(case.glob("*.nrrd")):
            if path.name.split(".")[0] in INPUTS:
                continue
            metrics = compare(sitk.ReadImage(str(path)), truth, config.hu_window)
            scores.setdefault(path.name.split(".")[0], []).append(metrics)
            print(case.name, path.name, " ".join(f"{m} {metrics[m]:.3f}" for m in METRICS))
    means = {method: {m: sum(r[m] for r in rows) / len(rows) for m in METRICS} for method, rows in scores.items()}
    for method, values in means.items():
        print("mean", method, " ".join(f"{m} {v:.3f}" for m, v in values.items()))
    write_json(
        {"scored_on": args.preset, "cases": len(next(iter(scores.values()))), "means": means, "per_case": scores},
        args.folder / f"scored-on-{args.preset}.json",
    )


if __name__ == "__main__":
    main()
