"""In-process sampling speed of a model: the regression estimate, one DDIM sample, and K samples drawn as one batch
against one after another, on a held-out phantom's DRR pair made in memory (no files, so it runs where SimpleITK is
not installed, as on the GPU machines).

    PYTHONPATH=. .venv/bin/python Testing/benchmarks/sampling.py [--device cuda] [--model FOLDER] [--samples 16]

Prints one JSON object (medians of ``--repeats`` timed runs after a warm-up) and writes it to ``--out`` if given.
A benchmark, not a test: numbers depend on the machine.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from DiffuX2CTLib.data.pipeline import PhantomSource, SampleMaker  # noqa: E402
from DiffuX2CTLib.device import resolve_device  # noqa: E402
from DiffuX2CTLib.diffusion import draw_samples  # noqa: E402
from DiffuX2CTLib.job import ReconstructionOptions  # noqa: E402
from DiffuX2CTLib.modelfile import load_model  # noqa: E402
from DiffuX2CTLib.outputs import write_json  # noqa: E402


def median_seconds(run: Callable[[], object], device: torch.device, repeats: int) -> float:
    """Median wall time of ``repeats`` calls after one warm-up call (the GPU synchronised around each)."""
    run()
    times = []
    for _ in range(repeats):
        if device.type == "cuda":
            torch.cuda.synchronize()
        started = time.perf_counter()
        run()
        if device.type == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    parser.add_argument("--model", default=None, help="model folder (default: the bundled model)")
    parser.add_argument("--samples", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", default=None, help="also write the JSON here")
    args = parser.parse_args()
    device = resolve_device(args.device)
    net, _ = load_model(args.model, device)
    config = net.config
    radiographs = SampleMaker(config, PhantomSource(fixed_seed=900_001), seed=0).sample(0, device)[1][None]
    with torch.no_grad():
        condition = net.condition(radiographs)

    def draw(count: int) -> list[torch.Tensor]:  # unguided, all in one batch
        return draw_samples(net, radiographs, condition, ReconstructionOptions(samples=count, guidance=0.0, batch_size=count))

    with torch.inference_mode():
        regression = median_seconds(lambda: net.condition(radiographs), device, args.repeats)
        one = median_seconds(lambda: draw(1), device, args.repeats)
        batched = median_seconds(lambda: draw(args.samples), device, args.repeats)
    if device.type == "cuda":
        peak = torch.cuda.max_memory_allocated() / 2**30
    result = {
        "machine": f"{platform.machine()}, {torch.get_num_threads()} threads" + (f", {torch.cuda.get_device_name(0)}" if device.type == "cuda" else ""),
        "torch": torch.__version__, "device": device.type, "grid": config.grid_size, "ddim_steps": config.default_steps,
        "regression_s": regression, "one_sample_s": one, f"{args.samples}_samples_one_batch_s": batched,
        f"{args.samples}_samples_one_after_another_s (estimate: {args.samples} x one)": args.samples * one,
        **({"peak_gib": peak} if device.type == "cuda" else {}),
    }
    print(json.dumps(result, indent=1))
    if args.out:
        write_json(result, Path(args.out))


if __name__ == "__main__":
    main()
