"""A Slicer session's reconstructions, end to end through SceneLogic on a slicer-core scene (issue 15 item 4).

    make bench        # or: .venv/bin/python Testing/benchmarks/session.py [--repeats 3] [--device cpu]

Nodes in, nodes out, as the module does it: the sample pair's volume nodes are written for the worker, the job is
sent to the session's persistent worker, and the CT, bone segmentation and volume rendering come back into the
scene. Measured:

1. the first reconstruction of a session (the worker starts: imports, model load with checksum);
2. the first reconstruction after the panel preloaded the model (the worker started when the panel opened);
3. the following reconstructions with the same worker (DDIM at the model's default steps, and regression only),
   each next to the worker's own in-process time (the CT's ``DiffuX2CT.seconds``), so the difference is what the
   session costs: node export, the protocol, reading the result and building the scene nodes;
4. for comparison, a new worker process per job (``python -m DiffuX2CTLib.app.worker JOB.json``), as the module
   ran before the persistent worker.

The logic is polled every 10 ms (the panel polls every 200 ms). Medians with min-max. Writes
``Testing/benchmarks/results/session.{json,md}``. Stop other CPU-heavy work while it runs.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path[:0] = [str(ROOT), str(ROOT / "Testing")]

from slicer_scene import SAMPLE_DATA, CoreApp

from DiffuX2CTLib.app.protocol import JobSpec
from DiffuX2CTLib.app.runner import worker_environment
from DiffuX2CTLib.app.scene import SceneLogic
from DiffuX2CTLib.inference.options import PRECISIONS, ReconstructionOptions

POLL_S = 0.01


def timed_job(logic: SceneLogic, app: CoreApp, **options) -> dict:
    """One reconstruction through the scene logic: wall time (start to nodes in the scene) and the worker's own."""
    started = time.perf_counter()
    job = logic.start(app.ap, app.lateral, **options)
    result = job.wait(interval_s=POLL_S)
    wall = time.perf_counter() - started
    return {
        "wall_s": wall,
        "in_process_s": float(result.ct_node.GetAttribute("DiffuX2CT.seconds")),
        "stages": job.stages,
        "pid": job.worker_pid,
        "precision": result.ct_node.GetAttribute("DiffuX2CT.precision"),
    }


def one_shot_process(device: str, precision: str) -> float:
    """A whole worker process for one DDIM job (the module's way before the persistent worker)."""
    with tempfile.TemporaryDirectory() as folder:
        job = JobSpec(
            str(SAMPLE_DATA / "ap.nrrd"),
            str(SAMPLE_DATA / "lateral.nrrd"),
            folder,
            options=ReconstructionOptions(device=device, precision=precision),
        )
        path = job.write(Path(folder) / "job.json")
        started = time.perf_counter()
        subprocess.run(
            [sys.executable, "-m", "DiffuX2CTLib.app.worker", str(path)],
            env=worker_environment(str(ROOT)),
            check=True,
            capture_output=True,
        )
        return time.perf_counter() - started


def summary(values: list[float]) -> str:
    return f"{statistics.median(values):.2f} ({min(values):.2f}-{max(values):.2f})"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--device", default="cpu", choices=("cpu", "cuda", "auto"))
    parser.add_argument(
        "--precision", default="auto", choices=PRECISIONS, help="sampling arithmetic (reconstruct --precision)"
    )
    parser.add_argument("--out", type=Path, default=ROOT / "Testing" / "benchmarks" / "results" / "session")
    args = parser.parse_args(argv)
    app = CoreApp()
    app.ap = app.load_volume(SAMPLE_DATA / "ap.nrrd", "AP")
    app.lateral = app.load_volume(SAMPLE_DATA / "lateral.nrrd", "Lateral")
    logic = SceneLogic(app.scene, app.app_logic)
    try:
        first = timed_job(logic, app, device=args.device, precision=args.precision)
        following = [timed_job(logic, app, device=args.device, precision=args.precision) for _ in range(args.repeats)]
        regression = [
            timed_job(logic, app, device=args.device, method="regression", precision=args.precision)
            for _ in range(args.repeats)
        ]
        pids = {first["pid"], *(r["pid"] for r in following + regression)}
    finally:
        logic.shutdown()
    preloaded = SceneLogic(app.scene, app.app_logic)  # a new session whose panel was opened first
    try:
        preloaded.preload(device=args.device)
        while not preloaded.session.preloaded and preloaded.session.alive():
            time.sleep(POLL_S)
        first_after_preload = timed_job(preloaded, app, device=args.device, precision=args.precision)
    finally:
        preloaded.shutdown()
    one_shot = [one_shot_process(args.device, args.precision) for _ in range(max(1, args.repeats - 1))]
    results = {
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f} at the end; "
        f"device {args.device}, sampling in {first['precision']}; {args.repeats} repeats",
        "first": first,
        "following": following,
        "regression": regression,
        "first_after_preload": first_after_preload,
        "one_shot_process_s": one_shot,
        "workers_used": len(pids),
    }
    rows = [
        ("first of the session (worker starts, model loads)", [first["wall_s"]], [first["in_process_s"]]),
        (
            "first of a session whose panel preloaded the model",
            [first_after_preload["wall_s"]],
            [first_after_preload["in_process_s"]],
        ),
        (
            "following, DDIM default steps, same worker",
            [r["wall_s"] for r in following],
            [r["in_process_s"] for r in following],
        ),
        (
            "following, regression only, same worker",
            [r["wall_s"] for r in regression],
            [r["in_process_s"] for r in regression],
        ),
        ("a new worker process per job, DDIM (before)", one_shot, None),
    ]
    lines = [
        f"Machine: {results['machine']}; medians (min-max); one worker served all session jobs: {len(pids) == 1}.",
        "",
        "| reconstruction through SceneLogic (nodes in, nodes out) | wall s | worker in-process s "
        "| session overhead s |",
        "|---|---|---|---|",
    ]
    for label, wall, inner in rows:
        overhead = summary([w - i for w, i in zip(wall, inner)]) if inner else ""
        lines.append(f"| {label} | {summary(wall)} | {summary(inner) if inner else ''} | {overhead} |")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.with_suffix(".json").write_text(json.dumps(results, indent=2), encoding="utf-8")
    args.out.with_suffix(".md").write_text("\n".join(lines) + "\n", encoding="utf-8")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
