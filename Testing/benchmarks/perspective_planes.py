"""Does reading the feature planes along each voxel's ray help a model learn? Parallel-beam reading (the bundled
model's) against perspective reading (``perspective_planes``, the presets'), from the same starting weights.

Both runs train the regression stage of the 64^3 model from scratch with the same seed, data and learning rate;
the only difference is where the implicit decoders and the axial fusion read the views' features. Each model is
then scored by ``evaluate --set phantoms`` (held-out phantom seeds, never trained on) and the regression rows are
set side by side, with the per-case differences. The diffusion rows of an untrained denoiser mean nothing here.

    PYTHONPATH=. .venv/bin/python Testing/benchmarks/perspective_planes.py [--steps 600] [--cases 8]

Writes ``Testing/benchmarks/results/perspective-planes.{json,md}``. A benchmark, not a test: short runs from
scratch, so read a small difference as none.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import tempfile
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from paired_regression import paired_rows, paired_table, regression_scores

from DiffuX2CTLib.core.atomic_write import write_json, write_text
from DiffuX2CTLib.model.config import PRESETS
from DiffuX2CTLib.model.network import DiffuX2CTNet
from DiffuX2CTLib.model.weights import save_model
from DiffuX2CTLib.training.settings import TrainSettings
from DiffuX2CTLib.training.trainer import train

RESULTS = ROOT / "Testing" / "benchmarks" / "results"
READINGS = {"perspective": True, "parallel": False}
SEED = 3


def train_and_score(name: str, steps: int, cases: int, folder: Path) -> dict[str, dict[str, float]]:
    """Train the regression stage with reading ``name`` from the shared starting weights for ``steps``, and score
    it on ``cases`` held-out phantoms: metrics per case."""
    torch.manual_seed(SEED)  # the same starting weights for both readings
    config = dataclasses.replace(PRESETS["cpu-64"], perspective_planes=READINGS[name])
    start = save_model(DiffuX2CTNet(config), folder / f"start-{name}", half=False)
    run = folder / name
    train(
        TrainSettings(out=str(run), steps=steps, checkpoint_every=steps, seed=SEED, init=str(start)),
        show_progress=False,
    )
    return regression_scores(run / "model", cases, folder / f"evaluation-{name}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=600)
    parser.add_argument("--cases", type=int, default=8)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        scores = {name: train_and_score(name, args.steps, args.cases, Path(folder)) for name in READINGS}
    cases = sorted(scores["perspective"])
    rows = paired_rows(scores, *READINGS)
    report = {"steps": args.steps, "seed": SEED, "cases": cases, "per_case": scores, "regression": rows}
    write_json(report, RESULTS / "perspective-planes.json")
    lines = [
        f"Regression stage of the 64^3 model trained from scratch for {args.steps} steps (seed {SEED}, the same "
        f"starting weights) with each plane reading, scored on {len(cases)} held-out phantoms.",
        f"Command: `PYTHONPATH=. .venv/bin/python Testing/benchmarks/perspective_planes.py --steps {args.steps} "
        f"--cases {args.cases}`",
        "",
    ] + paired_table(rows, *READINGS, len(cases))
    write_text("\n".join(lines) + "\n", RESULTS / "perspective-planes.md")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
