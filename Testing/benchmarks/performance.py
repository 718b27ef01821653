"""Speed and memory of DiffuX2CT, measured side by side with the alternatives in one run (issue: performance).

    make bench        # or: .venv/bin/python Testing/benchmarks/performance.py [--repeats 5] [--device cpu]

1. Reconstruction of the bundled sample pair at the model's grid: in-process (model loaded, repeated calls) and
   as a whole process from the command line; DDIM at the default steps vs DDPM-1000 (the paper's sampler) on the
   same inputs, with the quality of both against the sample's ground-truth CT.
2. DRR projector: radiograph pairs per second for the 128^3 sample CT on 256 x 256 detectors, next to the PyPI
   package diffdrr (run from its own environment, ``.venv-bench``) on the same volume and geometry, with the
   largest difference between the two (both normalised to their own maximum) as a correctness check.
3. Training throughput at 64^3 (both stages): steps per second and peak memory.
4. Start-up: from process start to the first completed denoising step (imports, model load, checksum).
5. A torch.profiler breakdown of one default reconstruction: where the time goes.

Every figure is the median over repeats after a warm-up, with min and max, and the peak resident memory of the
process that produced it (each measurement runs in its own child process). Writes JSON and a Markdown table
(default ``Testing/benchmarks/results/performance.{json,md}``). Stop other CPU-heavy work while it runs.
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
SAMPLE = ROOT / "Resources" / "SampleData"
BENCH_PYTHON = ROOT / ".venv-bench" / "bin" / "python"
GIB = 1024**3


# -- measurements that run inside a child process -------------------------------------------------------------
def child_reconstruct(params: dict) -> dict:
    """Repeated in-process reconstructions of the sample pair; quality of the last one against the ground truth."""
    import torch

    from DiffuX2CTLib.evaluation.metrics import compare
    from DiffuX2CTLib.imaging.image_io import read_ct
    from DiffuX2CTLib.inference.options import ReconstructionOptions
    from DiffuX2CTLib.inference.reconstruct import reconstruct_pair

    torch.set_num_threads(params["threads"])
    options = ReconstructionOptions(
        steps=params.get("steps"), sampler=params["sampler"], device=params["device"], precision=params["precision"]
    )
    warm = ReconstructionOptions(steps=2, device=params["device"], precision=params["precision"])
    reconstruct_pair(SAMPLE / "ap.nrrd", SAMPLE / "lateral.nrrd", None, warm)  # loads the model, warms the caches
    seconds = []
    for _ in range(params["repeats"]):
        started = time.perf_counter()
        result = reconstruct_pair(SAMPLE / "ap.nrrd", SAMPLE / "lateral.nrrd", None, options)
        if params["device"] == "cuda":
            torch.cuda.synchronize()
        seconds.append(time.perf_counter() - started)
    quality = compare(result.ct, read_ct(SAMPLE / "ct.nrrd"))
    return {
        "seconds": seconds,
        "quality": quality,
        "steps": result.provenance["steps"],
        "device": result.provenance["device"],
        "precision": result.provenance["precision"],
    }


def child_drr(params: dict) -> dict:
    """Pairs per second of DiffuX2CT's projector on the 128^3 sample CT; the images go to ``params['out']``."""
    import numpy as np
    import torch

    from DiffuX2CTLib.imaging.image_io import read_ct
    from DiffuX2CTLib.imaging.synthesize import pair_for_ct, render_pair

    torch.set_num_threads(params["threads"])
    ct = read_ct(SAMPLE / "ct.nrrd")
    geometries = pair_for_ct(ct)
    render_pair(ct, geometries, device=params["device"])
    seconds = []
    for _ in range(params["repeats"]):
        started = time.perf_counter()
        images = render_pair(ct, geometries, device=params["device"])
        seconds.append(time.perf_counter() - started)
    np.savez(params["out"], ap=images[0], lateral=images[1])
    return {"seconds": seconds}


def child_profile(params: dict) -> dict:
    """Where a default reconstruction spends its time: torch.profiler's operators by self CPU time."""
    import torch
    from torch.profiler import ProfilerActivity, profile

    from DiffuX2CTLib.inference.options import ReconstructionOptions
    from DiffuX2CTLib.inference.reconstruct import reconstruct_pair

    torch.set_num_threads(params["threads"])
    reconstruct_pair(
        SAMPLE / "ap.nrrd", SAMPLE / "lateral.nrrd", None, ReconstructionOptions(steps=2, precision=params["precision"])
    )
    with profile(activities=[ProfilerActivity.CPU]) as profiler:
        reconstruct_pair(
            SAMPLE / "ap.nrrd", SAMPLE / "lateral.nrrd", None, ReconstructionOptions(precision=params["precision"])
        )
    events = sorted(profiler.key_averages(), key=lambda e: e.self_cpu_time_total, reverse=True)
    total = sum(e.self_cpu_time_total for e in events)
    return {
        "top_operators": [{"name": e.key, "share": e.self_cpu_time_total / total, "calls": e.count} for e in events[:8]]
    }


CHILDREN = {"reconstruct": child_reconstruct, "drr": child_drr, "profile": child_profile}


# -- the parent: runs children, measures their peak memory -----------------------------------------------------
def measure_child(name: str, params: dict, env: dict) -> dict:
    stdout, wall, peak = run_child([sys.executable, __file__, "--child", name, json.dumps(params)], env)
    result = json.loads(stdout.strip().splitlines()[-1])
    result.update(peak_gib=peak, process_wall_s=wall)
    return result


def run_child(command: list[str], env: dict | None = None) -> tuple[str, float, float]:
    """Run ``command``; returns (stdout, wall seconds, peak resident memory in GiB of that very process, which
    is reaped here with its own resource usage)."""
    started = time.perf_counter()
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        process = subprocess.Popen(command, stdout=out, stderr=err, text=True, env=env, cwd=ROOT)
        _, status, usage = os.wait4(process.pid, 0)
        process.returncode = os.waitstatus_to_exitcode(status)
        wall = time.perf_counter() - started
        out.seek(0)
        err.seek(0)
        if process.returncode != 0:
            raise RuntimeError(f"{' '.join(map(str, command[:5]))} failed ({process.returncode}): {err.read()[-2000:]}")
        return out.read(), wall, usage.ru_maxrss / 1024**2


def stats(values: list[float]) -> dict:
    return {"median": statistics.median(values), "min": min(values), "max": max(values), "n": len(values)}


def bench_reconstruction(args, env: dict) -> dict:
    results = {}
    for label, params in (
        ("DDIM (default steps)", {"sampler": "ddim", "repeats": args.repeats}),
        ("DDPM-1000", {"sampler": "ddpm", "repeats": args.ddpm_repeats}),
    ):
        params.update(threads=args.threads, device=args.device, precision=args.precision)
        print(f"reconstruction in-process: {label} ...", flush=True)
        result = measure_child("reconstruct", params, env)
        results[label] = {
            "seconds": stats(result["seconds"]),
            "peak_gib": result["peak_gib"],
            "steps": result["steps"],
            "device": result["device"],
            "precision": result["precision"],
            "quality": result["quality"],
        }
    print("reconstruction from the command line ...", flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        command = [
            str(Path(sys.executable).with_name("diffux2ct")),
            "reconstruct",
            "--quiet",
            "--device",
            args.device,
            "--precision",
            args.precision,
            "--ap",
            str(SAMPLE / "ap.nrrd"),
            "--lateral",
            str(SAMPLE / "lateral.nrrd"),
            "--out",
            f"{tmp}/ct.nrrd",
        ]
        run_child(command, env)  # warm-up: file caches, Python bytecode
        runs = [run_child(command, env) for _ in range(args.repeats)]
    results["command line, DDIM (default steps)"] = {
        "seconds": stats([r[1] for r in runs]),
        "peak_gib": max(r[2] for r in runs),
    }
    ddim, ddpm = results["DDIM (default steps)"], results["DDPM-1000"]
    results["speed-up DDIM vs DDPM-1000"] = ddpm["seconds"]["median"] / ddim["seconds"]["median"]
    results["PSNR DDIM minus DDPM-1000 (dB)"] = ddim["quality"]["psnr_db"] - ddpm["quality"]["psnr_db"]
    return results


def bench_startup(args, env: dict) -> dict:
    """Process start -> first completed denoising step of the background worker, repeated."""
    from DiffuX2CTLib.app.protocol import JobSpec, parse_event
    from DiffuX2CTLib.inference.options import ReconstructionOptions

    seconds = []
    with tempfile.TemporaryDirectory() as tmp:
        job = JobSpec(
            str(SAMPLE / "ap.nrrd"),
            str(SAMPLE / "lateral.nrrd"),
            tmp,
            options=ReconstructionOptions(device=args.device, precision=args.precision),
        ).write(Path(tmp) / "job.json")
        for _ in range(args.repeats + 1):
            started = time.perf_counter()
            process = subprocess.Popen(
                [sys.executable, "-m", "DiffuX2CTLib.app.worker", str(job)],
                stdout=subprocess.PIPE,
                text=True,
                env=env,
                cwd=ROOT,
            )
            for line in process.stdout:
                event = parse_event(line)
                if event and event["event"] == "progress" and event.get("step", 0) >= 1:
                    seconds.append(time.perf_counter() - started)
                    break
            process.kill()
            process.wait()
    return {"seconds": stats(seconds[1:])}  # the first run warms the file caches


def bench_drr(args, env: dict) -> dict:
    import numpy as np

    with tempfile.TemporaryDirectory() as tmp:
        linear_ct = write_linear_ct(Path(tmp) / "linear.nrrd")
        print("DRR projector: DiffuX2CT ...", flush=True)
        ours = measure_child(
            "drr",
            {"threads": args.threads, "device": args.device, "repeats": args.repeats, "out": f"{tmp}/ours.npz"},
            env,
        )
        result = {"DiffuX2CT": {"pairs_per_s": stats([1 / s for s in ours["seconds"]]), "peak_gib": ours["peak_gib"]}}
        if args.skip_diffdrr or not BENCH_PYTHON.exists():
            result["diffdrr"] = "not run (make bench-env creates .venv-bench with diffdrr)"
            return result
        for renderer in ("trilinear", "siddon"):
            print(f"DRR projector: diffdrr ({renderer}) ...", flush=True)
            stdout, _, peak = run_child(
                [
                    str(BENCH_PYTHON),
                    str(Path(__file__).with_name("diffdrr_render.py")),
                    str(linear_ct),
                    f"{tmp}/{renderer}.npz",
                    "--repeats",
                    str(args.repeats),
                    "--threads",
                    str(args.threads),
                    "--renderer",
                    renderer,
                ],
                env,
            )
            theirs = json.loads(stdout.strip().splitlines()[-1])
            agreement = compare_images(np.load(f"{tmp}/ours.npz"), np.load(f"{tmp}/{renderer}.npz"))
            result[f"diffdrr {theirs['diffdrr_version']} ({renderer})"] = {
                "pairs_per_s": stats([1 / s for s in theirs["seconds_per_pair"]]),
                "peak_gib": peak,
                **agreement,
            }
    return result


def write_linear_ct(path: Path) -> Path:
    """The sample CT with values that diffdrr's HU-to-density mapping turns into exactly our attenuation (up to
    a scale): its mapping is linear for values in (-800, 350] and air (our zero) is the minimum. So both
    projectors integrate the same volume and the comparison tests geometry and integration, not tissue models."""
    import SimpleITK as sitk
    import torch

    from DiffuX2CTLib.imaging.drr import hu_to_attenuation
    from DiffuX2CTLib.imaging.image_io import read_ct, write_image

    ct = read_ct(SAMPLE / "ct.nrrd")
    attenuation = hu_to_attenuation(torch.from_numpy(sitk.GetArrayFromImage(ct))).numpy()
    linear = sitk.GetImageFromArray((-799.0 + 1149.0 * attenuation / attenuation.max()).astype("float32"))
    linear.CopyInformation(ct)
    return write_image(linear, path)


def compare_images(ours, theirs) -> dict:
    """Largest absolute difference and correlation of each view, both images scaled to their own maximum; the
    other package's image is first put into our orientation (the best of the 8 flips/transposes, reported)."""
    import numpy as np

    report = {}
    for view in ("ap", "lateral"):
        a = ours[view] / ours[view].max()
        candidates = {}
        for transpose in (False, True):
            b0 = theirs[view].T if transpose else theirs[view]
            for flip_rows in (False, True):
                for flip_cols in (False, True):
                    b = b0[::-1] if flip_rows else b0
                    b = b[:, ::-1] if flip_cols else b
                    if b.shape == a.shape:
                        b = b / b.max()
                        candidates[(transpose, flip_rows, flip_cols)] = (
                            float(np.corrcoef(a.ravel(), b.ravel())[0, 1]),
                            float(np.abs(a - b).max()),
                            float(np.abs(a - b).mean()),
                        )
        orientation, (correlation, max_diff, mean_diff) = max(candidates.items(), key=lambda kv: kv[1][0])
        report[view] = {
            "correlation": correlation,
            "max_abs_diff": max_diff,
            "mean_abs_diff": mean_diff,
            "orientation (transpose, flip rows, flip cols)": list(orientation),
        }
    return report


def bench_training(args, env: dict) -> dict:
    result = {}
    with tempfile.TemporaryDirectory() as tmp:
        for stage, extra in (
            ("regression", []),
            ("diffusion", ["--init", str(ROOT / "Resources" / "Models" / "diffux2ct-64")]),
        ):
            print(f"training throughput: {stage} ...", flush=True)
            steps = args.train_steps
            command = [
                str(Path(sys.executable).with_name("diffux2ct")),
                "train",
                "--stage",
                stage,
                "--grid",
                "64",
                "--steps",
                str(steps),
                "--quiet",
                "--checkpoint-every",
                str(steps),
                "--device",
                args.device,
                "--out",
                f"{tmp}/{stage}",
                *extra,
            ]
            _, _, peak = run_child(command, env)
            log = [
                json.loads(line) for line in Path(f"{tmp}/{stage}/log.jsonl").read_text(encoding="utf-8").splitlines()
            ]
            per_step = [b["seconds"] - a["seconds"] for a, b in zip(log, log[1:])][2:]  # after two warm-up steps
            result[stage] = {
                "steps_per_s": stats([1 / s for s in per_step]),
                "seconds_per_step": stats(per_step),
                "peak_gib": peak,
                "grid": 64,
                "batch": 1,
            }
    return result


def markdown(report: dict) -> str:
    def span(s: dict, digits: int = 2) -> str:
        return f"{s['median']:.{digits}f} ({s['min']:.{digits}f}-{s['max']:.{digits}f})"

    r = report["reconstruction"]
    lines = [
        f"Machine: {report['machine']}; device {report['device']}, {report['threads']} threads, "
        f"sampling in {r['DDIM (default steps)']['precision']}; "
        f"medians over {report['repeats']} runs after a warm-up (min-max).",
        "",
        "| reconstruction (sample pair, 64^3) | seconds | peak memory (GiB) | PSNR (dB) | SSIM |",
        "|---|---|---|---|---|",
    ]
    for label in ("DDIM (default steps)", "DDPM-1000"):
        q = r[label]["quality"]
        lines.append(
            f"| in-process, {label} ({r[label]['steps']} steps) | {span(r[label]['seconds'])} | "
            f"{r[label]['peak_gib']:.2f} | {q['psnr_db']:.2f} | {q['ssim']:.3f} |"
        )
    cli = r["command line, DDIM (default steps)"]
    lines.append(f"| whole process from the command line, DDIM | {span(cli['seconds'])} | {cli['peak_gib']:.2f} | | |")
    lines += [
        "",
        f"DDIM is **{r['speed-up DDIM vs DDPM-1000']:.0f}x** faster than DDPM-1000; "
        f"PSNR difference (DDIM minus DDPM-1000): {r['PSNR DDIM minus DDPM-1000 (dB)']:+.2f} dB.",
        "",
    ]
    lines.append(
        "Start-up, process start to the first denoising step (worker: imports, model load, checksum): "
        f"{span(report['startup']['seconds'])} s."
    )
    lines += [
        "",
        "| DRR projector (128^3 CT, 2 x 256 x 256) | pairs/s | peak memory (GiB) | AP corr. / max diff "
        "| lateral corr. / max diff |",
        "|---|---|---|---|---|",
    ]
    for name, value in report["drr"].items():
        if isinstance(value, str):
            lines.append(f"| {name} | {value} | | | |")
        elif "ap" in value:
            lines.append(
                f"| {name} | {span(value['pairs_per_s'])} | {value['peak_gib']:.2f} | "
                f"{value['ap']['correlation']:.4f} / {value['ap']['max_abs_diff']:.3f} | "
                f"{value['lateral']['correlation']:.4f} / {value['lateral']['max_abs_diff']:.3f} |"
            )
        else:
            lines.append(
                f"| {name} | {span(value['pairs_per_s'])} | {value['peak_gib']:.2f} | (reference) | (reference) |"
            )
    lines += ["", "| training, 64^3, batch 1 | steps/s | s/step | peak memory (GiB) |", "|---|---|---|---|"]
    for stage, value in report["training"].items():
        lines.append(
            f"| {stage} | {span(value['steps_per_s'], 3)} | {span(value['seconds_per_step'])} | "
            f"{value['peak_gib']:.2f} |"
        )
    lines += [
        "",
        "Where a default CPU reconstruction spends its time (torch.profiler, self CPU time): "
        + ", ".join(f"{op['name']} {100 * op['share']:.0f} %" for op in report["profile"][:6])
        + ".",
    ]
    return "\n".join(lines) + "\n"


def main() -> None:
    if len(sys.argv) == 4 and sys.argv[1] == "--child":
        print(json.dumps(CHILDREN[sys.argv[2]](json.loads(sys.argv[3]))), flush=True)
        return
    from DiffuX2CTLib.inference.options import PRECISIONS

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--ddpm-repeats", type=int, default=1, help="DDPM-1000 takes minutes on a CPU")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    parser.add_argument("--train-steps", type=int, default=12)
    parser.add_argument(
        "--precision",
        default="auto",
        choices=PRECISIONS,
        help="sampling arithmetic of the reconstructions (reconstruct --precision)",
    )
    parser.add_argument("--skip-diffdrr", action="store_true")
    parser.add_argument("--out", default=str(ROOT / "Testing" / "benchmarks" / "results" / "performance"))
    args = parser.parse_args()
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads), "PYTHONPATH": str(ROOT)}
    machine = f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores"
    if args.device == "cuda":
        import torch

        machine += f", {torch.cuda.get_device_name(0)}"
    report = {"machine": machine, "device": args.device, "threads": args.threads, "repeats": args.repeats}
    report["reconstruction"] = bench_reconstruction(args, env)
    print("start-up ...", flush=True)
    report["startup"] = bench_startup(args, env)
    report["drr"] = bench_drr(args, env)
    report["training"] = bench_training(args, env)
    print("profile of one default reconstruction ...", flush=True)
    report["profile"] = measure_child("profile", {"threads": args.threads, "precision": args.precision}, env)[
        "top_operators"
    ]
    from DiffuX2CTLib.core.atomic_write import write_json, write_text

    out = Path(args.out)
    write_json(report, out.with_suffix(".json"))
    table = markdown(report)
    write_text(table, out.with_suffix(".md"))
    print(table)


if __name__ == "__main__":
    main()
