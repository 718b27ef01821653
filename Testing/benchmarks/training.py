"""Training throughput: how fast samples are made, how fast the model trains, and how long it waits for data.

For each model size (64^3 ``cpu-64``, 128^3 ``paper-128``) and stage, on the CPU (and on CUDA when present):
* data: samples per second made by the pipeline alone (in this process, all threads);
* model: training steps per second on a fixed batch (no data making);
* training: a real ``train()`` run with its default data workers, samples per second, and the share of the step
  time the model spent waiting for its batch (the ``data_s`` the run logs for every step).

    PYTHONPATH=. .venv/bin/python Testing/benchmarks/training.py [--quick]

Writes ``Testing/benchmarks/results/training.{json,md}``. A benchmark, not a test: numbers depend on the machine.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from DiffuX2CTLib.data.drr import DRRProjector  # noqa: E402
from DiffuX2CTLib.data.geometry import View  # noqa: E402
from DiffuX2CTLib.data.pipeline import PhantomSource, SampleMaker  # noqa: E402
from DiffuX2CTLib.diffusion import diffusion_loss, regression_loss, training_scheduler  # noqa: E402
from DiffuX2CTLib.model import DiffuX2CTNet  # noqa: E402
from DiffuX2CTLib.model.config import PRESETS  # noqa: E402
from DiffuX2CTLib.outputs import write_json, write_text  # noqa: E402
from DiffuX2CTLib.train import TrainSettings, train  # noqa: E402

RESULTS = ROOT / "Testing" / "benchmarks" / "results"


def data_rate(preset: str, device: torch.device, samples: int) -> float:
    """Samples per second made by the pipeline in this process."""
    maker = SampleMaker(PRESETS[preset], PhantomSource(seed=1), seed=1)
    maker.sample(0, device)  # warm-up
    started = time.perf_counter()
    for index in range(1, samples + 1):
        maker.sample(index, device)
    if device.type == "cuda":
        torch.cuda.synchronize()
    return samples / (time.perf_counter() - started)


def model_rate(preset: str, stage: str, device: torch.device, batch: int, steps: int) -> float:
    """Training steps per second of the network alone on one fixed batch."""
    config = PRESETS[preset]
    net = DiffuX2CTNet(config).to(device).train()
    clean, radiographs = SampleMaker(config, PhantomSource(seed=1), seed=1).batch(0, batch, device)
    projector = DRRProjector([config.detector(v) for v in (View.AP, View.LATERAL)]).to(device)
    parameters = list(net.conditioner.parameters()) if stage == "regression" else list(net.denoiser.parameters())
    optimizer = torch.optim.AdamW(parameters, lr=1e-4)
    scheduler = training_scheduler(config)
    autocast = torch.autocast("cuda", dtype=torch.bfloat16) if device.type == "cuda" else torch.autocast("cpu", enabled=False)

    def one_step(k: int) -> None:
        with autocast:
            if stage == "regression":
                losses = regression_loss(net, clean, radiographs, projector)
            else:
                with torch.no_grad():
                    condition = net.condition(radiographs)
                losses = diffusion_loss(net, clean, radiographs, scheduler, projector, torch.Generator().manual_seed(k), condition)
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


def training_run(preset: str, stage: str, device: torch.device, batch: int, steps: int) -> dict:
    """A real run: samples per second and the share of step time spent waiting for data (first step excluded)."""
    with tempfile.TemporaryDirectory() as folder:
        init = None
        if stage == "diffusion":
            init = str(Path(folder) / "init")
            from DiffuX2CTLib.modelfile import save_model

            save_model(DiffuX2CTNet(PRESETS[preset]), init)
        settings = TrainSettings(out=str(Path(folder) / "run"), stage=stage, preset=preset if init is None else None, init=init,
                                 steps=steps + 1, batch=batch, checkpoint_every=10_000, device=device.type)
        train(settings, show_progress=False)
        records = [json.loads(line) for line in (Path(folder) / "run" / "log.jsonl").read_text().splitlines()]
    timed = records[1:]
    total = records[-1]["seconds"] - records[0]["seconds"]
    waited = sum(r["data_s"] for r in timed)
    return {"samples_per_s": batch * len(timed) / total, "steps_per_s": len(timed) / total, "waiting_share": waited / total}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="64^3 only, fewer repetitions")
    args = parser.parse_args()
    devices = [torch.device("cpu")] + ([torch.device("cuda")] if torch.cuda.is_available() else [])
    rows = []
    for device in devices:
        for preset in ("cpu-64",) if args.quick else ("cpu-64", "paper-128"):
            big = preset == "paper-128"
            batch = 8 if device.type == "cuda" else 1
            steps = (20 if device.type == "cuda" else (2 if big else 10))
            data = data_rate(preset, device, 2 if big and device.type == "cpu" else 8)
            for stage in ("regression", "diffusion"):
                row = {"device": device.type, "preset": preset, "stage": stage, "batch": batch, "data_samples_per_s": data,
                       "model_steps_per_s": model_rate(preset, stage, device, batch, steps),
                       **training_run(preset, stage, device, batch, steps)}
                rows.append(row)
                print(json.dumps(row), flush=True)
    machine = f"{platform.machine()}, {torch.get_num_threads()} threads" + (f", {torch.cuda.get_device_name(0)}" if torch.cuda.is_available() else "")
    lines = [f"Machine: {machine}; torch {torch.__version__}.", "",
             "| device | preset | stage | batch | data samples/s | model steps/s | training samples/s | waiting for data |",
             "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['device']} | {r['preset']} | {r['stage']} | {r['batch']} | {r['data_samples_per_s']:.2f} | {r['model_steps_per_s']:.2f} | "
                     f"{r['samples_per_s']:.2f} | {r['waiting_share']:.0%} |")
    RESULTS.mkdir(parents=True, exist_ok=True)
    write_json({"machine": machine, "rows": rows}, RESULTS / "training.json")
    write_text("\n".join(lines) + "\n", RESULTS / "training.md")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
