"""Compare two ``diffux2ct evaluate --set`` runs of the same cases, case by case: for every method both ran, the
mean of each metric in A and in B, the mean per-case difference B - A with its range, and, where both wrote the
same reconstruction file, how far apart the two volumes are voxel by voxel (mean, 99th percentile and largest
absolute difference in HU, per reconstruction). Used to check that an option (e.g. ``--precision bfloat16``) or
new weights change what they should and nothing else. Rows are paired by role when the runs named them
differently: the one-sample DDIM row (the default reconstruction) with its counterpart, the mean of K with the
mean of K, so runs of different sampling settings compare too.

    PYTHONPATH=. .venv/bin/python Testing/benchmarks/compare_evaluations.py A_FOLDER B_FOLDER [--out FILE.md]

A benchmark, not a test: it reads what the two runs wrote and prints a markdown table.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

import numpy as np
import SimpleITK as sitk

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from DiffuX2CTLib.core.atomic_write import write_text
from DiffuX2CTLib.evaluation.evaluate import METRICS


def case_metrics(folder: Path) -> dict[str, dict]:
    """Each case's per-method metrics, by case name, from an evaluation folder's ``cases/*/metrics.json``."""
    return {
        path.parent.name: json.loads(path.read_text(encoding="utf-8"))["methods"]
        for path in sorted((folder / "cases").glob("*/metrics.json"))
    }


def method_role(name: str) -> str:
    """What a row of an evaluation is, whatever its sampling settings: ``diffusion DDIM, mean of K``,
    ``diffusion DDIM`` (one sample, the default reconstruction), ``diffusion DDPM``, or the name itself."""
    if not name.startswith("diffusion "):
        return name
    sampler = "diffusion DDPM" if name.startswith("diffusion DDPM") else "diffusion DDIM"
    mean_of = [part.strip() for part in name.split(",") if part.strip().startswith("mean of")]
    return f"{sampler}, {mean_of[0]}" if mean_of else sampler


def voxel_differences(a: Path, b: Path) -> dict[str, dict[str, float]]:
    """By reconstruction (file name), over the cases both folders hold it: mean, 99th percentile and largest
    absolute HU difference."""
    gaps: dict[str, list[np.ndarray]] = {}
    for path in sorted((a / "cases").glob("*/*.nrrd")):
        other = b / path.relative_to(a)
        if path.name.split(".")[0] in ("ap", "lateral") or not other.is_file():
            continue
        first, second = (sitk.GetArrayFromImage(sitk.ReadImage(str(p))).astype(np.float64) for p in (path, other))
        gaps.setdefault(path.name.split(".")[0], []).append(np.abs(second - first).ravel())
    summary = {}
    for name, arrays in gaps.items():
        every = np.concatenate(arrays)
        summary[name] = {
            "volumes": len(arrays),
            "mean_hu": float(every.mean()),
            "p99_hu": float(np.percentile(every, 99)),
            "max_hu": float(every.max()),
        }
    return summary


def comparison_markdown(a: Path, b: Path) -> str:
    """The table: one row per method and metric over the cases both runs scored."""
    first, second = case_metrics(a), case_metrics(b)
    cases = sorted(first.keys() & second.keys())
    if not cases:
        raise SystemExit(f"{a} and {b} share no scored case")
    lines = [
        f"A: `{a}`, B: `{b}`; {len(cases)} cases in both",
        "",
        "| method | metric | A | B | B - A per case: mean (min..max) |",
        "|---|---|---|---|---|",
    ]
    pairs = []
    for name in first[cases[0]]:
        partners = [m for m in second[cases[0]] if method_role(m) == method_role(name)]
        partner = name if name in second[cases[0]] else (partners[0] if len(partners) == 1 else None)
        if partner and all(name in first[c] and partner in second[c] for c in cases):
            pairs.append((name, partner))
    for name, partner in pairs:
        label = name if name == partner else f"{name} -> {partner}"
        for metric in (*METRICS, "seconds"):
            values_a = [first[c][name][metric] for c in cases]
            values_b = [second[c][partner][metric] for c in cases]
            differences = [y - x for x, y in zip(values_a, values_b)]
            lines.append(
                f"| {label} | {metric} | {statistics.mean(values_a):.4f} | {statistics.mean(values_b):.4f} | "
                f"{statistics.mean(differences):+.4f} ({min(differences):+.4f}..{max(differences):+.4f}) |"
            )
    voxels = voxel_differences(a, b)
    if voxels:
        lines += [
            "",
            "| reconstruction | volumes | abs(B - A) mean HU | 99th percentile HU | largest HU |",
            "|---|---|---|---|---|",
        ]
        lines += [
            f"| {name} | {v['volumes']} | {v['mean_hu']:.2f} | {v['p99_hu']:.1f} | {v['max_hu']:.1f} |"
            for name, v in voxels.items()
        ]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("a", type=Path, help="the first evaluate --set output folder")
    parser.add_argument("b", type=Path, help="the second, of the same cases")
    parser.add_argument("--out", type=Path, default=None, help="also write the table here")
    args = parser.parse_args()
    text = comparison_markdown(args.a, args.b)
    print(text, end="")
    if args.out:
        write_text(text, args.out)


if __name__ == "__main__":
    main()
