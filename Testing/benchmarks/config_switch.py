"""Does an architecture switch of the model's config help it learn? The 64^3 model with the switch off against the
same model with it on, from the same starting weights.

Switches: ``perspective_planes`` (read the views' feature planes along each voxel's ray instead of at the
isocentre's scale) and ``backprojection`` (both radiographs, read along each voxel's rays, as two more channels of
the finest condition features). Both runs train the regression stage from scratch with the same seed, data and
learning rate; every weight both models have starts equal, and the weights only the switched model has start at
its own initialisation. Each model is then scored by ``evaluate --set phantoms`` (held-out phantom seeds, never
trained on) and the regression rows are set side by side, with the per-case differences. The diffusion rows of
an untrained denoiser mean nothing here.

    PYTHONPATH=. .venv/bin/python Testing/benchmarks/config_switch.py --switch backprojection [--steps 600] [--cases 8]

Writes ``Testing/benchmarks/results/<switch>.{json,md}`` (``perspective-planes``, ``backprojection``). A
benchmark, not a test: short runs from scratch, so read a small difference as none.
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
from DiffuX2CTLib.model.weights import load_widened, save_model
from DiffuX2CTLib.training.settings import TrainSettings
from DiffuX2CTLib.training.trainer import train

RESULTS = ROOT / "Testing" / "benchmarks" / "results"
SWITCHES = {"perspective_planes": ("perspective", "parallel"), "backprojection": ("backprojection", "planes only")}
SEED = 3
BASE = dataclasses.replace(PRESETS["cpu-64"], perspective_planes=True, backprojection=False)
"""The architecture both results were measured from (the preset before back-projection); a run switches one key."""


def starting_models(switch: str) -> dict[bool, DiffuX2CTNet]:
    """The base model with ``switch`` off and on, sharing every weight both have; a layer the switch widens keeps
    the shared weights in its leading input channels."""
    models = {}
    for on in (False, True):
        torch.manual_seed(SEED)
        models[on] = DiffuX2CTNet(dataclasses.replace(BASE, **{switch: on}))
    load_widened(models[True], models[False].state_dict(), zero_new=False)
    return models


def train_and_score(net: DiffuX2CTNet, name: str, steps: int, cases: int, folder: Path) -> dict[str, dict[str, float]]:
    """Train the regression stage of ``net`` for ``steps`` and score it on ``cases`` held-out phantoms: metrics per
    case."""
    start = save_model(net, folder / f"start-{name}", half=False)
    run = folder / name
    train(
        TrainSettings(out=str(run), steps=steps, checkpoint_every=steps, seed=SEED, init=str(start)),
        show_progress=False,
    )
    return regression_scores(run / "model", cases, folder / f"evaluation-{name}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--switch", choices=sorted(SWITCHES), required=True)
    parser.add_argument("--steps", type=int, default=600)
    parser.add_argument("--cases", type=int, default=8)
    args = parser.parse_args()
    names = SWITCHES[args.switch]
    models = starting_models(args.switch)
    with tempfile.TemporaryDirectory() as folder:
        scores = {
            name: train_and_score(models[on], name, args.steps, args.cases, Path(folder))
            for name, on in zip(names, (True, False))
        }
    cases = sorted(scores[names[0]])
    rows = paired_rows(scores, *names)
    report = {
        "switch": args.switch,
        "steps": args.steps,
        "seed": SEED,
        "cases": cases,
        "per_case": scores,
        "regression": rows,
    }
    stem = args.switch.replace("_", "-")
    write_json(report, RESULTS / f"{stem}.json")
    lines = [
        f"Regression stage of the 64^3 model trained from scratch for {args.steps} steps (seed {SEED}, the same "
        f"starting weights) with `{args.switch}` on ({names[0]}) and off ({names[1]}), scored on {len(cases)} "
        "held-out phantoms.",
        f"Command: `PYTHONPATH=. .venv/bin/python Testing/benchmarks/config_switch.py --switch {args.switch} "
        f"--steps {args.steps} --cases {args.cases}`",
        "",
    ] + paired_table(rows, *names, len(cases))
    write_text("\n".join(lines) + "\n", RESULTS / f"{stem}.md")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
