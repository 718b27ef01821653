"""Does training fast cost quality? A model trained with ``diffux2ct train``'s defaults against one trained with the
old synchronous loop, for the same number of steps, scored on the same held-out phantoms.

Both runs train the regression stage of the 64^3 model from scratch with the same seed and learning rate; the
loops are those of ``training_defaults.py`` (defaults: phantom bank, automatic reuse and precision, a data worker;
synchronous: a new phantom for every sample, no reuse, float32, samples made before each step). Each model is then
scored by ``evaluate --set phantoms`` (held-out phantom seeds, never trained on) and the regression rows are set
side by side, with the per-case differences. The diffusion rows of an untrained denoiser mean nothing here.

    PYTHONPATH=. .venv/bin/python Testing/benchmarks/training_parity.py [--steps 400] [--cases 8]

Writes ``Testing/benchmarks/results/training-parity.{json,md}``. A benchmark, not a test: two short runs from
scratch differ by their draws as well as by their loop, so read a small difference as none.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from paired_regression import paired_rows, paired_table, regression_scores
from training_defaults import LOOPS

from DiffuX2CTLib.core.atomic_write import write_json, write_text
from DiffuX2CTLib.training.settings import TrainSettings
from DiffuX2CTLib.training.trainer import train

RESULTS = ROOT / "Testing" / "benchmarks" / "results"
COMPARED = ("defaults", "synchronous")


def train_and_score(name: str, steps: int, cases: int, folder: Path) -> dict[str, dict[str, float]]:
    """Train loop ``name`` for ``steps`` and score its regression on ``cases`` held-out phantoms: metrics per case."""
    run = folder / name
    train(TrainSettings(out=str(run), steps=steps, checkpoint_every=steps, **LOOPS[name]), show_progress=False)
    return regression_scores(run / "model", cases, folder / f"evaluation-{name}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=400)
    parser.add_argument("--cases", type=int, default=8)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        scores = {name: train_and_score(name, args.steps, args.cases, Path(folder)) for name in COMPARED}
    cases = sorted(scores["defaults"])
    rows = paired_rows(scores, *COMPARED)
    report = {"steps": args.steps, "cases": cases, "per_case": scores, "regression": rows}
    write_json(report, RESULTS / "training-parity.json")
    lines = [
        f"Regression stage of the 64^3 model trained from scratch for {args.steps} steps (seed 3) with each loop, "
        f"scored on {len(cases)} held-out phantoms.",
        f"Command: `PYTHONPATH=. .venv/bin/python Testing/benchmarks/training_parity.py --steps {args.steps} "
        f"--cases {args.cases}`",
        "",
    ] + paired_table(rows, *COMPARED, len(cases))
    write_text("\n".join(lines) + "\n", RESULTS / "training-parity.md")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
