"""Training with no flags against the old synchronous loop, side by side on this machine.

Three real ``train()`` runs of the regression stage of the 64^3 model (batch 1), one after the other in this process:

* ``defaults``: what ``diffux2ct train`` does with no flags: the phantom bank, automatic reuse, the precision the
  machine computes natively, samples made in a DataLoader worker beside the step. The bank lives in a temporary
  cache, so this run starts as on a fresh machine: it paints the bank's first window before its first step (the
  time is reported apart, from the run's start line);
* ``defaults, next run``: the same with another seed, reading the bank the first run painted;
* ``synchronous``: the loop of earlier rounds: a new phantom painted for every sample (``phantom_bank=0``),
  ``reuse=1``, float32, samples made in the training process before each step (``workers=0``).

Each run's first ``--warm-up`` steps are left out (model start, worker start); the figures are samples per second
over the rest, from the run's own log, and the share of that time the step waited for its batch.

    PYTHONPATH=. .venv/bin/python Testing/benchmarks/training_defaults.py [--steps 120] [--warm-up 20]

Writes ``Testing/benchmarks/results/training-defaults.{json,md}``. A benchmark, not a test: the numbers depend on the
machine and on what else runs on it.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from DiffuX2CTLib.core.atomic_write import write_json, write_text
from DiffuX2CTLib.training.settings import TrainSettings
from DiffuX2CTLib.training.trainer import train

RESULTS = ROOT / "Testing" / "benchmarks" / "results"
LOOPS = {
    "defaults": {"seed": 3},
    "defaults, next run": {"seed": 4},
    "synchronous": {"seed": 3, "phantom_bank": 0, "reuse": 1, "precision": "float32", "workers": 0},
}


def measure(name: str, steps: int, warm_up: int, folder: Path) -> dict:
    """One run of the loop ``name``; its throughput after warm-up from its log."""
    out = folder / name.replace(", ", "-").replace(" ", "-")
    train(TrainSettings(out=str(out), steps=steps, checkpoint_every=steps, **LOOPS[name]), show_progress=False)
    lines = [json.loads(line) for line in (out / "log.jsonl").read_text(encoding="utf-8").splitlines()]
    start = next(r for r in lines if r.get("event") == "start")
    records = [r for r in lines if "loss" in r and r["step"] > warm_up]
    seconds = records[-1]["seconds"] - next(r["seconds"] for r in lines if r.get("step") == warm_up and "loss" in r)
    waited = sum(r["data_s"] for r in records)
    return {
        "loop": name,
        "settings": {k: start[k] for k in ("precision", "reuse", "workers")} | {"data": start["data"]},
        "steps_measured": len(records),
        "samples_per_s": round(len(records) / seconds, 3),
        "data_wait_share": round(waited / seconds, 3),
        "bank_painted_first": start.get("bank_painted", 0),
        "bank_painting_s": start.get("bank_painting_s", 0.0),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=120)
    parser.add_argument("--warm-up", type=int, default=20)
    parser.add_argument("--results", default="training-defaults")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        os.environ["DIFFUX2CT_CACHE"] = str(Path(folder) / "cache")
        rows = [measure(name, args.steps, args.warm_up, Path(folder)) for name in LOOPS]
    speed_up = rows[0]["samples_per_s"] / rows[-1]["samples_per_s"]
    machine = f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores"
    report = {"machine": machine, "steps": args.steps, "warm_up": args.warm_up, "rows": rows, "speed_up": speed_up}
    write_json(report, RESULTS / f"{args.results}.json")
    lines = [
        f"Regression stage, 64^3, batch 1, {args.steps} steps of which the first {args.warm_up} are left out; "
        f"{machine}.",
        f"Command: `PYTHONPATH=. .venv/bin/python Testing/benchmarks/training_defaults.py --steps {args.steps} "
        f"--warm-up {args.warm_up}`",
        "",
        "| loop | precision | reuse | workers | samples/s | share of time waiting for data | painted before step 1 |",
        "|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        s = row["settings"]
        painted = row["bank_painted_first"]
        lines.append(
            f"| {row['loop']} | {s['precision']} | {s['reuse']} | {s['workers']} | {row['samples_per_s']:.2f} | "
            f"{100 * row['data_wait_share']:.0f} % | "
            + (f"{painted} phantoms, {row['bank_painting_s']:.0f} s |" if painted else "nothing |")
        )
    lines += ["", f"Defaults (first run) against the synchronous loop: {speed_up:.2f}x."]
    write_text("\n".join(lines) + "\n", RESULTS / f"{args.results}.md")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
