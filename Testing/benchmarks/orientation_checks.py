"""How reliably the input checks tell a mirrored lateral: the spine's side
(:func:`DiffuX2CTLib.inference.input_checks.spine_side`: anterior, posterior or unclear, from its position across
the body, 0 anterior edge, 1 posterior edge, over the whole body and its inner part) in the model-domain lateral of
held-out phantoms of every region and of the real CTs in the cache, as given and mirrored left-right.

Each CT is rendered at the default pair geometry at its centre, cleaned and fitted to the model's detector as
``reconstruct`` does; phantoms are painted on a coarse grid (``--grid``, enough for a column profile).

    PYTHONPATH=. .venv/bin/python Testing/benchmarks/orientation_checks.py [--seeds 6] [--grid 64] [--no-real] \\
        [--results orientation]

Writes ``Testing/benchmarks/results/RESULTS.{json,md}`` after every case, so a long run can be cut short (``--seeds
0`` measures the real CTs alone).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import SimpleITK as sitk

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from DiffuX2CTLib.anatomy.phantom import REGIONS, generate_phantom
from DiffuX2CTLib.core.atomic_write import write_json, write_text
from DiffuX2CTLib.core.cache import cache_root
from DiffuX2CTLib.evaluation.evaluate import TEST_SEED_START
from DiffuX2CTLib.imaging.geometry import VolumeGrid
from DiffuX2CTLib.imaging.image_io import Radiograph, find_ct_volumes, grid_image, read_ct
from DiffuX2CTLib.imaging.synthesize import pair_for_ct, render_pair
from DiffuX2CTLib.inference.input_checks import MIRRORED_SPINE_POSITION, SPINE_INNER_PART, spine_position, spine_side
from DiffuX2CTLib.inference.preprocess import cleaned, prepare_pair
from DiffuX2CTLib.model.config import ModelConfig

RESULTS = ROOT / "Testing" / "benchmarks" / "results"


def model_images(ct: sitk.Image, name: str, config: ModelConfig) -> np.ndarray:
    """The ``(2, P, P)`` model-domain pair of ``ct`` as a reconstruction would see it."""
    geometries = pair_for_ct(ct)
    drrs = render_pair(ct, geometries)
    views = [
        cleaned(Radiograph(drrs[i].astype(np.float32), g.pixel_spacing_mm, g, Path(f"{name}-{g.view.value}.nrrd")))
        for i, g in enumerate(geometries)
    ]
    images, _ = prepare_pair(views[0], views[1], config.detector())
    return images


def cases(args: argparse.Namespace):
    """(name, kind, CT) for the held-out phantoms, then the real CTs in the cache."""
    grid = VolumeGrid(args.grid, 400.0 / args.grid)  # a bit wider than the model's 320 mm, as training renders
    for k in range(args.seeds):
        for region in REGIONS:
            seed = TEST_SEED_START + k
            yield f"phantom-{seed}-{region}", "phantom", grid_image(generate_phantom(seed, grid, region).numpy(), grid)
    folder = cache_root() / "real-ct"
    if args.real and folder.is_dir():
        for path in find_ct_volumes(folder):
            yield f"real-{path.name.split('.')[0]}", "real", read_ct(path)


def summary(rows: list[dict]) -> dict:
    """Per kind of CT: how the lateral was judged as given (posterior is right, anterior a false alarm) and mirrored
    (anterior is caught, posterior wrong), and the range of the whole-body positions."""
    out = {}
    for kind in sorted({r["kind"] for r in rows}):
        mine = [r for r in rows if r["kind"] == kind]
        out[kind] = {"cases": len(mine)}
        for how in ("given", "mirrored"):
            for side in ("posterior", "unclear", "anterior"):
                out[kind][f"{how}_{side}"] = sum(r[how]["side"] == side for r in mine)
            positions = [r[how]["whole"] for r in mine]
            out[kind][f"{how}_range"] = [min(positions), max(positions)]
    return out


def write(rows: list[dict], args: argparse.Namespace) -> None:
    totals = summary(rows)
    data = {
        "threshold": MIRRORED_SPINE_POSITION,
        "inner_part": SPINE_INNER_PART,
        "grid": args.grid,
        "summary": totals,
        "cases": rows,
    }
    write_json(data, RESULTS / f"{args.results}.json")
    lines = [
        "# Mirrored-lateral check: where the spine lies across the body (0 anterior edge, 1 posterior edge)",
        "",
        f"Model-domain laterals at the default geometry; phantoms painted at {args.grid}^3. Anterior (judged "
        f"mirrored): whole-body and inner-{SPINE_INNER_PART:.0%} positions both below {MIRRORED_SPINE_POSITION}; "
        f"posterior: both above {1 - MIRRORED_SPINE_POSITION:.1f}; otherwise unclear.",
        "",
        "| CTs | cases | as given: posterior / unclear / anterior (false alarm) "
        "| mirrored: anterior (caught) / unclear / posterior (wrong) | whole-body position as given |",
        "|---|---|---|---|---|",
    ]
    for kind, s in totals.items():
        lines.append(
            f"| {kind} | {s['cases']} | {s['given_posterior']} / {s['given_unclear']} / {s['given_anterior']} | "
            f"{s['mirrored_anterior']} / {s['mirrored_unclear']} / {s['mirrored_posterior']} | "
            f"{s['given_range'][0]:.2f}-{s['given_range'][1]:.2f} |"
        )
    lines += ["", "| case | as given (whole, inner) | mirrored (whole, inner) |", "|---|---|---|"]
    for r in rows:
        given, mirrored = r["given"], r["mirrored"]
        lines.append(
            f"| {r['case']} | {given['side']} ({given['whole']:.2f}, {given['inner']:.2f}) | "
            f"{mirrored['side']} ({mirrored['whole']:.2f}, {mirrored['inner']:.2f}) |"
        )
    write_text("\n".join(lines) + "\n", RESULTS / f"{args.results}.md")


def judged(lateral: np.ndarray) -> dict:
    """The check's verdict on one model-domain lateral and the two positions it rests on."""
    return {
        "side": spine_side(lateral)[0],
        "whole": spine_position(lateral),
        "inner": spine_position(lateral, SPINE_INNER_PART),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=6, help="held-out phantom seeds, each in every region")
    parser.add_argument("--grid", type=int, default=64, help="voxels per edge of the painted phantoms")
    parser.add_argument("--no-real", dest="real", action="store_false", help="leave out the cached real CTs")
    parser.add_argument("--results", default="orientation", help="name of the results files")
    args = parser.parse_args()
    config = ModelConfig()
    rows: list[dict] = []
    for name, kind, ct in cases(args):
        started = time.perf_counter()
        lateral = model_images(ct, name, config)[1]
        rows.append({"case": name, "kind": kind, "given": judged(lateral), "mirrored": judged(lateral[:, ::-1])})
        given, mirrored = rows[-1]["given"], rows[-1]["mirrored"]
        print(
            f"{name}: {given['side']} ({given['whole']:.2f}, {given['inner']:.2f}) / mirrored {mirrored['side']} "
            f"({mirrored['whole']:.2f}, {mirrored['inner']:.2f}) ({time.perf_counter() - started:.0f} s)",
            flush=True,
        )
        write(rows, args)


if __name__ == "__main__":
    main()
