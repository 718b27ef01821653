"""Quality of a model on held-out phantoms (seeds never used in training) against the mean-volume baseline,
for the regression head and DDIM at several step counts, with the time each takes.

    .venv/bin/python Testing/benchmarks/heldout_quality.py --model Resources/Models/diffux2ct-64 --cases 4 --steps 5 10 20

Writes JSON and a Markdown table (default: Testing/benchmarks/results/heldout_quality.{json,md}).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

from DiffuX2CTLib.diffusion import sample
from DiffuX2CTLib.io import grid_image, write_json, write_text
from DiffuX2CTLib.metrics import compare
from DiffuX2CTLib.modelfile import load_model
from DiffuX2CTLib.train import HELD_OUT_SEED_START, TrainingData

TEST_SEEDS_START = HELD_OUT_SEED_START + 100


def _summary(rows: list[dict]) -> dict:
    keys = ("psnr_db", "ssim", "mae_hu", "bone_dice", "seconds")
    return {k: (float(np.mean([r[k] for r in rows])), float(np.std([r[k] for r in rows]))) for k in keys}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=None, help="model folder (default: bundled)")
    parser.add_argument("--cases", type=int, default=4)
    parser.add_argument("--steps", type=int, nargs="+", default=[5, 10, 20])
    parser.add_argument("--out", default="Testing/benchmarks/results/heldout_quality")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    net, card = load_model(args.model)
    config = net.config
    window, grid = config.hu_window, config.grid()
    cases = []
    for k in range(args.cases):
        data = TrainingData(config, f"phantom:{TEST_SEEDS_START + k}", seed=0)
        clean, radiographs = data.sample(0)
        cases.append((TEST_SEEDS_START + k, clean, radiographs))
    # Mean-volume baseline: the average of as many training phantoms (never the test seeds).
    training = TrainingData(config, "phantoms", seed=0)
    mean_unit = torch.stack([training.sample(i)[0] for i in range(16)]).mean(0)

    methods: dict[str, list[dict]] = {}
    for seed, clean, radiographs in cases:
        truth = grid_image(window.to_hu(clean[0].numpy()), grid)
        results = {"mean volume": (mean_unit, 0.0)}
        with torch.no_grad():
            started = time.perf_counter()
            condition = net.condition(radiographs[None])
            results["regression"] = (condition[1][0], time.perf_counter() - started)
            for steps in args.steps:
                started = time.perf_counter()
                volume = sample(net, radiographs[None], steps=steps, generator=torch.Generator().manual_seed(0))
                results[f"diffusion DDIM-{steps}"] = (volume[0], time.perf_counter() - started)
        for name, (volume, seconds) in results.items():
            metrics = compare(grid_image(window.to_hu(volume[0].numpy()), grid), truth, window)
            metrics.update(seconds=seconds, seed=seed)
            methods.setdefault(name, []).append(metrics)
            print(name, seed, {k: round(v, 4) for k, v in metrics.items() if isinstance(v, float)}, flush=True)

    summary = {name: _summary(rows) for name, rows in methods.items()}
    report = {"model": card.get("training", {}), "weights_sha256": card.get("weights_sha256"), "test_seeds": [c[0] for c in cases], "summary": summary, "cases": methods}
    out = Path(args.out)
    write_json(report, out.with_suffix(".json"))
    lines = ["| method | PSNR (dB) | SSIM | MAE (HU) | bone Dice | seconds |", "|---|---|---|---|---|---|"]
    for name, s in summary.items():
        lines.append(f"| {name} | {s['psnr_db'][0]:.2f} ± {s['psnr_db'][1]:.2f} | {s['ssim'][0]:.3f} ± {s['ssim'][1]:.3f} | {s['mae_hu'][0]:.0f} ± {s['mae_hu'][1]:.0f} | {s['bone_dice'][0]:.3f} ± {s['bone_dice'][1]:.3f} | {s['seconds'][0]:.1f} |")
    write_text("\n".join(lines) + "\n", out.with_suffix(".md"))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
