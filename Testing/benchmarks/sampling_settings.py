"""Sampling settings, measured: DDIM steps and sampling temperature of the default reconstruction (one guided
sample), on the real validation patients' region cubes and on two training-seed phantoms, several seeds each.

    PYTHONPATH=. .venv/bin/python Testing/benchmarks/sampling_settings.py [--model DIR] [--seeds 3]
        [--settings 10:0.6 7:0.6 ...] [--results NAME]

The cases are those the settings may be chosen on: the validation patients (never trained; ``diffux2ct
fetch-real`` first) and phantoms of training seeds, never the held-out test seeds nor the reserved CTs. Each
setting reconstructs every case with every seed, end to end (files in, ``reconstruct_pair``); the table gives the
mean PSNR, SSIM and bone Dice per kind of case and the seconds per reconstruction. Writes
``Testing/benchmarks/results/<NAME>.{json,md}`` (default ``sampling-settings``). A benchmark, not a test.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from DiffuX2CTLib.core.atomic_write import write_json, write_text
from DiffuX2CTLib.evaluation.evaluate import EvaluationCase, phantom_case, synthesise_case
from DiffuX2CTLib.evaluation.metrics import compare
from DiffuX2CTLib.evaluation.real_set import real_cases
from DiffuX2CTLib.inference.options import ReconstructionOptions
from DiffuX2CTLib.inference.reconstruct import cached_model, reconstruct_pair

RESULTS = ROOT / "Testing" / "benchmarks" / "results"
TUNING_PHANTOMS = ((1000, "chest"), (1001, "abdomen"))  # training seeds, below the held-out range
SETTINGS = (  # (DDIM steps, temperature)
    (20, 1.0),
    (10, 1.0),
    (10, 0.8),
    (10, 0.6),
    (10, 0.4),
    (5, 0.6),
)
METRICS = ("psnr_db", "ssim", "bone_dice")


def prepared_cases(config, folder: Path) -> list[tuple[str, str, Path, Path, object]]:
    """(kind, name, AP path, lateral path, truth) of every tuning case, its DRR pair written once."""
    cases = [("real", EvaluationCase(c.name, c.ct, c.region)) for c in real_cases(config)]
    cases += [
        ("phantom", EvaluationCase(f"phantom-{seed}-{region}", phantom_case(seed, region, config), region))
        for seed, region in TUNING_PHANTOMS
    ]
    prepared = []
    for kind, case in cases:
        (folder / case.name).mkdir()
        prepared.append((kind, case.name, *synthesise_case(case, config, folder / case.name)))
    return prepared


def measure(model: str | None, steps: int, temperature: float, seeds: int, cases: list, window) -> dict:
    """Mean metrics per kind of case over every case and seed, and the seconds per reconstruction."""
    scores: dict[str, dict[str, list[float]]] = {}
    started = time.perf_counter()
    for seed in range(seeds):
        for kind, _, ap, lateral, truth in cases:
            options = ReconstructionOptions(
                steps=steps, temperature=temperature, seed=seed, samples=1, check_inputs=False
            )
            metrics = compare(reconstruct_pair(ap, lateral, model, options).ct, truth, window)
            for name in METRICS:
                scores.setdefault(kind, {}).setdefault(name, []).append(float(metrics[name]))
    seconds = (time.perf_counter() - started) / (seeds * len(cases))
    return {
        "steps": steps,
        "temperature": temperature,
        "seconds_per_reconstruction": seconds,
        **{kind: {name: statistics.mean(values) for name, values in by.items()} for kind, by in scores.items()},
    }


def _setting(text: str) -> tuple[int, float]:
    """``STEPS:TEMPERATURE`` (e.g. ``10:0.6``) as a pair."""
    try:
        steps, temperature = text.split(":")
        return int(steps), float(temperature)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: give DDIM steps and temperature as STEPS:TEMPERATURE") from None


def markdown(rows: list[dict], header: dict) -> str:
    lines = [
        "# Sampling settings: DDIM steps and temperature",
        "",
        f"Model SHA-256 {header['model_sha256'][:12]}...; cases: {header['cases']}; {header['seeds']} seeds each; "
        "one guided sample (guidance 2) per case and seed, 2 CPU cores, sampling precision auto. Command: "
        f"`PYTHONPATH=. .venv/bin/python Testing/benchmarks/sampling_settings.py{header['arguments']}`.",
        "",
        "| DDIM steps | temperature | real: PSNR dB / SSIM / bone Dice | phantoms: PSNR dB / SSIM / bone Dice | s |",
        "|---|---|---|---|---|",
    ]
    for row in rows:
        cells = [" / ".join(f"{row[kind][m]:.2f}" if m == "psnr_db" else f"{row[kind][m]:.3f}" for m in METRICS)
                 for kind in ("real", "phantom")]  # fmt: skip
        lines.append(
            f"| {row['steps']} | {row['temperature']:g} | {cells[0]} | {cells[1]} | "
            f"{row['seconds_per_reconstruction']:.1f} |"
        )
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=None, help="model folder (default: the bundled model)")
    parser.add_argument("--seeds", type=int, default=3, help="sampling seeds per case (default 3)")
    parser.add_argument(
        "--settings", nargs="+", type=_setting, default=SETTINGS, help="DDIM steps and temperature, as 10:0.6"
    )
    parser.add_argument("--results", default="sampling-settings", help="name of the results files")
    args = parser.parse_args()
    net, card = cached_model(args.model, torch.device("cpu"))
    with tempfile.TemporaryDirectory() as folder:
        cases = prepared_cases(net.config, Path(folder))
        rows = []
        for steps, temperature in args.settings:
            rows.append(measure(args.model, steps, temperature, args.seeds, cases, net.config.hu_window))
            print(rows[-1], flush=True)
    names = [name for _, name, *_ in cases]
    header = {
        "model_sha256": card.get("weights_sha256", ""),
        "seeds": args.seeds,
        "cases": ", ".join(names),
        "arguments": "".join(f" {a}" for a in sys.argv[1:]),
    }
    write_json({**header, "rows": rows}, RESULTS / f"{args.results}.json")
    write_text(markdown(rows, header), RESULTS / f"{args.results}.md")
    print(markdown(rows, header))


if __name__ == "__main__":
    main()
