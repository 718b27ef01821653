"""In-process sampling speed of a model: the regression estimate, one DDIM sample, and K samples drawn as one batch
against one after another, on a held-out phantom's DRR pair made in memory (no files, so it runs where SimpleITK is
not installed, as on the GPU machines).

    PYTHONPATH=. .venv/bin/python Testing/benchmarks/sampling.py [--device cuda] [--model FOLDER] [--samples 16]
        [--precision float32 bfloat16]

The sampling rows (one unguided DDIM sample, one with the default projection guidance, K unguided samples in one
batch) are measured for each ``--precision`` (reconstruct --precision: the denoiser's arithmetic).

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

from DiffuX2CTLib.core.atomic_write import write_json
from DiffuX2CTLib.core.device import resolve_device, resolve_precision
from DiffuX2CTLib.inference.options import DEFAULT_GUIDANCE, PRECISIONS, ReconstructionOptions
from DiffuX2CTLib.inference.sampling import draw_samples
from DiffuX2CTLib.model.weights import load_model
from DiffuX2CTLib.training.samples import PhantomSource, SampleMaker


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
    parser.add_argument(
        "--precision",
        nargs="+",
        choices=PRECISIONS,
        default=["auto"],
        help="sampling arithmetic; several values give a set of rows each",
    )
    parser.add_argument("--out", default=None, help="also write the JSON here")
    args = parser.parse_args()
    device = resolve_device(args.device)
    net, _ = load_model(args.model, device)
    config = net.config
    radiographs = SampleMaker(config, PhantomSource(fixed_seed=900_001), seed=0).sample(0, device)[1][None]
    with torch.no_grad():
        condition = net.condition(radiographs)

    def draw(count: int, precision: str, guidance: float = 0.0) -> list[torch.Tensor]:  # all in one batch
        return draw_samples(
            net,
            radiographs,
            condition,
            ReconstructionOptions(samples=count, guidance=guidance, batch_size=count, precision=precision),
        )

    rows = {}
    with torch.inference_mode():
        regression = median_seconds(lambda: net.condition(radiographs), device, args.repeats)
    for requested in args.precision:
        precision = resolve_precision(requested, device)
        with torch.inference_mode():
            one = median_seconds(lambda precision=precision: draw(1, precision), device, args.repeats)
            batched = median_seconds(lambda precision=precision: draw(args.samples, precision), device, args.repeats)
        guided = median_seconds(
            lambda precision=precision: draw(1, precision, DEFAULT_GUIDANCE["diffusion"]), device, args.repeats
        )  # guidance needs gradients
        rows[requested] = {
            "resolved": precision,
            "one_sample_s": one,
            f"one_sample_guidance_{DEFAULT_GUIDANCE['diffusion']:g}_s": guided,
            f"{args.samples}_samples_one_batch_s": batched,
            f"{args.samples}_samples_one_after_another_s (estimate: {args.samples} x one)": args.samples * one,
        }
    if device.type == "cuda":
        peak = torch.cuda.max_memory_allocated() / 2**30
    result = {
        "machine": f"{platform.machine()}, {torch.get_num_threads()} threads"
        + (f", {torch.cuda.get_device_name(0)}" if device.type == "cuda" else ""),
        "torch": torch.__version__,
        "device": device.type,
        "grid": config.grid_size,
        "ddim_steps": config.default_steps,
        "regression_s": regression,
        "sampling_by_precision": rows,
        **({"peak_gib": peak} if device.type == "cuda" else {}),
    }
    print(json.dumps(result, indent=1))
    if args.out:
        write_json(result, Path(args.out))


if __name__ == "__main__":
    main()
