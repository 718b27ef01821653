"""Training throughput: how fast samples are made, how fast the model trains, and how long it waits for data.

For each model size (64^3 ``cpu-64``, 128^3 ``paper-128``) and stage, on the CPU (and on CUDA when present):
* data: samples per second made by the pipeline alone (in this process, all threads);
* model: training steps per second on a fixed batch (no data making);
* training: a real ``train()`` run (default data workers, or ``--workers``), samples per second, and the share of
  the time the model spent waiting for its batch (the ``data_s`` the run logs for every step), over the whole loop;
* ``--from-log RUN/log.jsonl``: the same two figures for a finished run.

    PYTHONPATH=. .venv/bin/python Testing/benchmarks/training.py [--quick] \\
        [--device cuda --workers 14 --results training-gpu]

Writes ``Testing/benchmarks/results/training.{json,md}`` (or the ``--results`` name). A benchmark, not a test:
numbers depend on the machine.
"""

from __future__ import annotations

import argparse
import functools
import json
import platform
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from DiffuX2CTLib.core.atomic_write import write_json, write_text
from DiffuX2CTLib.core.device import network_arithmetic, resolve_precision
from DiffuX2CTLib.diffusion.losses import diffusion_loss, regression_loss
from DiffuX2CTLib.diffusion.schedule import training_scheduler
from DiffuX2CTLib.imaging.drr import DRRProjector
from DiffuX2CTLib.inference.options import PRECISIONS
from DiffuX2CTLib.model.config import PRESETS
from DiffuX2CTLib.model.network import DiffuX2CTNet
from DiffuX2CTLib.training.samples import PhantomSource, SampleMaker
from DiffuX2CTLib.training.settings import TrainSettings
from DiffuX2CTLib.training.trainer import train

RESULTS = ROOT / "Testing" / "benchmarks" / "results"


@functools.cache
def data_rate(preset: str, device: torch.device, samples: int, reuse: int = 1) -> float:
    """Samples per second made by the pipeline in this process (``reuse`` views of each volume); measured once per
    setting, as it does not depend on the training precision."""
    maker = SampleMaker(PRESETS[preset], PhantomSource(seed=1), seed=1)
    maker.sample(0, device)  # warm-up
    started = time.perf_counter()
    for index in range(1, samples + 1):
        if reuse == 1:
            maker.sample(index, device)
            continue
        volume = maker.volume(index, device)
        for view in range(reuse):
            maker.view(volume, index * reuse + view)
    if device.type == "cuda":
        torch.cuda.synchronize()
    return samples * reuse / (time.perf_counter() - started)


def model_rate(preset: str, stage: str, device: torch.device, batch: int, steps: int, precision: str) -> float:
    """Training steps per second of the network alone on one fixed batch, in ``precision`` (as the run resolved it)."""
    config = PRESETS[preset]
    net = DiffuX2CTNet(config).to(device).train()
    clean, radiographs = SampleMaker(config, PhantomSource(seed=1), seed=1).batch(0, batch, device)
    projector = DRRProjector(config.detector_pair()).to(device)
    parameters = list(net.conditioner.parameters()) if stage == "regression" else list(net.denoiser.parameters())
    optimizer = torch.optim.AdamW(parameters, lr=1e-4)
    scheduler = training_scheduler(config)

    def one_step(k: int) -> None:
        with network_arithmetic(precision, device):
            if stage == "regression":
                losses = regression_loss(net, clean, radiographs, projector)
            else:
                with torch.no_grad():
                    condition = net.condition(radiographs)
                losses = diffusion_loss(
                    net, clean, radiographs, scheduler, projector, torch.Generator().manual_seed(k), condition
                )
        optimizer.zero_grad(set_to_none=True)
        losses["total"].backward()
        optimizer.step()

    one_step(0)
    if device.type == "cuda":
        torch.cuda.synchronize()
    started = time.perf_counter()
    for k in range(steps):
        one_step(k + 1)
    if device.type == "cuda":
        torch.cuda.synchronize()
    return steps / (time.perf_counter() - started)


def training_run(
    preset: str,
    stage: str,
    device: torch.device,
    batch: int,
    steps: int,
    workers: int | None,
    reuse: int,
    precision: str,
) -> dict:
    """A real run of ``steps`` steps: its samples per second and the share of step time spent waiting for data."""
    with tempfile.TemporaryDirectory() as folder:
        init = None
        if stage == "diffusion":
            init = str(Path(folder) / "init")
            from DiffuX2CTLib.model.weights import save_model

            save_model(DiffuX2CTNet(PRESETS[preset]), init)
        settings = TrainSettings(
            out=str(Path(folder) / "run"),
            stage=stage,
            preset=preset if init is None else None,
            init=init,
            steps=steps,
            batch=batch,
            checkpoint_every=10_000,
            device=device.type,
            workers=workers,
            reuse=reuse,
            precision=precision,
        )
        train(settings, show_progress=False)
        return run_throughput(Path(folder) / "run" / "log.jsonl", batch)


def run_throughput(log: Path, batch: int) -> dict:
    """Samples per second and the share of time spent waiting for data over a training run's whole loop, read from
    its log. The whole loop, first batch included: with data workers, batches made ahead while the run starts
    would otherwise make a short run look faster than the pipeline is."""
    records = [r for r in map(json.loads, log.read_text(encoding="utf-8").splitlines()) if "loss" in r]
    total = records[-1]["seconds"]
    after_fill = total - records[0]["seconds"]  # from the end of the first step: the pipeline has filled
    return {
        "samples_per_s": batch * len(records) / total,
        "steps_per_s": len(records) / total,
        "waiting_share": sum(r["data_s"] for r in records) / total,
        "first_batch_s": records[0]["data_s"],
        "waiting_share_after_first_step": sum(r["data_s"] for r in records[1:]) / after_fill
        if after_fill > 0
        else None,
        "peak_gib": max((r.get("peak_gib", 0.0) for r in records), default=0.0) or None,
    }


def measure(
    device: torch.device,
    preset: str,
    stages: list[str],
    batch: int,
    steps: int,
    workers: int | None,
    reuse: int = 1,
    precision: str = "auto",
) -> list[dict]:
    """One row per stage; a row that fails (out of memory, say) records the error instead of ending the benchmark."""
    rows = []
    precision = resolve_precision(precision, device)
    data = data_rate(preset, device, 2 if preset == "paper-128" else 8, reuse)
    for stage in stages:
        row = {
            "device": device.type,
            "preset": preset,
            "stage": stage,
            "batch": batch,
            "workers": workers,
            "reuse": reuse,
            "precision": precision,
            "data_samples_per_s": data,
        }
        try:
            row["model_steps_per_s"] = model_rate(preset, stage, device, batch, steps, precision)
            row.update(training_run(preset, stage, device, batch, steps, workers, reuse, precision))
        except (RuntimeError, torch.OutOfMemoryError) as error:
            row["error"] = str(error).splitlines()[0][:200]
        if device.type == "cuda":
            row["peak_gib"] = torch.cuda.max_memory_allocated() / 2**30
            torch.cuda.reset_peak_memory_stats()
            torch.cuda.empty_cache()
        rows.append(row)
        print(json.dumps(row), flush=True)
    return rows


def table(rows: list[dict], machine: str) -> str:
    """The results as a Markdown table under a line naming the machine."""
    lines = [
        f"Machine: {machine}; torch {torch.__version__}.",
        "",
        "| device | preset | stage | precision | batch | data workers | reuse | data samples/s (in process) "
        "| model steps/s | training samples/s | waiting for data |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        workers = "default" if r["workers"] is None else str(r["workers"])
        if "error" in r:
            lines.append(
                f"| {r['device']} | {r['preset']} | {r['stage']} | {r.get('precision', '')} | {r['batch']} | "
                f"{workers} | {r.get('reuse', 1)} | {r['data_samples_per_s']:.2f} | {r['error']} | | |"
            )
            continue
        lines.append(
            f"| {r['device']} | {r['preset']} | {r['stage']} | {r.get('precision', '')} | {r['batch']} | "
            f"{workers} | {r.get('reuse', 1)} | {r['data_samples_per_s']:.2f} | "
            f"{r['model_steps_per_s']:.2f} | {r['samples_per_s']:.2f} | {r['waiting_share']:.0%} |"
        )
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="64^3 only, fewer repetitions")
    parser.add_argument(
        "--device", choices=("all", "cpu", "cuda"), default="all", help="all: the CPU, and CUDA when present"
    )
    parser.add_argument(
        "--presets", nargs="+", choices=tuple(PRESETS), default=None, help="default: both (cpu-64 only with --quick)"
    )
    parser.add_argument("--stages", nargs="+", choices=("regression", "diffusion"), default=["regression", "diffusion"])
    parser.add_argument("--batch", type=int, default=None, help="default: 8 on CUDA, 1 on the CPU")
    parser.add_argument(
        "--steps", type=int, default=None, help="timed steps per measurement (default: 20 on CUDA, 10 or 2 on the CPU)"
    )
    parser.add_argument(
        "--workers",
        type=int,
        default=None,
        help="data worker processes of the training runs (default: the training default)",
    )
    parser.add_argument(
        "--reuse",
        type=int,
        nargs="+",
        default=[1],
        help="samples per volume (train --reuse); several values give a row each",
    )
    parser.add_argument(
        "--precision",
        nargs="+",
        choices=PRECISIONS,
        default=["auto"],
        help="training arithmetic (train --precision); several values give a row each",
    )
    parser.add_argument("--results", default="training", help="name of the result files in Testing/benchmarks/results")
    parser.add_argument(
        "--from-log", type=Path, default=None, help="only summarise this finished run's log.jsonl (give its --batch)"
    )
    args = parser.parse_args()
    if args.from_log:
        print(json.dumps(run_throughput(args.from_log, args.batch or 1)))
        return
    devices = [
        torch.device(d)
        for d in (["cpu", "cuda"] if args.device == "all" else [args.device])
        if d == "cpu" or torch.cuda.is_available()
    ]
    presets = args.presets or (["cpu-64"] if args.quick else ["cpu-64", "paper-128"])
    rows = []
    for device in devices:
        for preset in presets:
            big = preset == "paper-128"
            batch = args.batch or (8 if device.type == "cuda" else 1)
            steps = args.steps or (20 if device.type == "cuda" else (2 if big else 10))
            for precision in args.precision:
                for reuse in args.reuse:
                    rows += measure(device, preset, args.stages, batch, steps, args.workers, reuse, precision)
    machine = f"{platform.machine()}, {torch.get_num_threads()} threads" + (
        f", {torch.cuda.get_device_name(0)}" if torch.cuda.is_available() else ""
    )
    markdown = table(rows, machine)
    RESULTS.mkdir(parents=True, exist_ok=True)
    write_json({"machine": machine, "rows": rows}, RESULTS / f"{args.results}.json")
    write_text(markdown, RESULTS / f"{args.results}.md")
    print(markdown)


if __name__ == "__main__":
    main()
