"""The ``diffux2ct`` command line: phantoms, DRR pairs, reconstruction, evaluation, training and the demo.

Every command turns a bad input into one line on stderr naming the file and the problem, and exit code 2.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from .geometry import ProjectionGeometry, VolumeGrid, default_pair
from .io import InputError

EXIT_BAD_INPUT = 2


def _geometry_template(args: argparse.Namespace) -> tuple[ProjectionGeometry, ProjectionGeometry]:
    import dataclasses

    return tuple(
        dataclasses.replace(
            g,
            source_to_detector_mm=args.sdd,
            source_to_isocenter_mm=args.sid,
            detector_pixels=(args.pixels, args.pixels),
            pixel_spacing_mm=(args.pixel_spacing, args.pixel_spacing),
        )
        for g in default_pair()
    )


def cmd_phantom(args: argparse.Namespace) -> int:
    """Write one procedural torso phantom."""
    import numpy as np
    import SimpleITK as sitk

    from .io import grid_image, write_image
    from .phantom import generate_phantom

    grid = VolumeGrid(args.size, args.spacing)
    implant = {"auto": None, "yes": True, "no": False}[args.implant]
    volume = generate_phantom(args.seed, grid, implant=implant, supersample=args.supersample)
    write_image(sitk.Cast(grid_image(np.rint(volume), grid), sitk.sitkInt16), args.out)
    print(f"phantom seed {args.seed}: {args.size}^3 voxels of {args.spacing} mm -> {args.out}")
    return 0


def cmd_synthesize(args: argparse.Namespace) -> int:
    """Render the AP + lateral DRR pair of a CT, placed in the CT's frame."""
    from .io import detector_image, read_ct, write_image, write_json
    from .synthesize import pair_for_ct, render_pair

    ct = read_ct(args.ct)
    geometries = pair_for_ct(ct, _geometry_template(args))
    drrs = render_pair(ct, geometries)
    out = Path(args.out)
    for drr, geometry in zip(drrs, geometries):
        write_image(detector_image(drr, geometry), out / f"{geometry.view.value}.nrrd")
    write_json({"ct": str(Path(args.ct).name), "views": [g.to_dict() for g in geometries]}, out / "geometry.json")
    print(f"wrote {out / 'ap.nrrd'}, {out / 'lateral.nrrd'} and {out / 'geometry.json'}")
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    """Compare a reconstruction with its ground-truth CT; print JSON metrics."""
    from .io import read_ct
    from .metrics import compare

    metrics = compare(read_ct(args.pred), read_ct(args.gt))
    print(json.dumps(metrics, indent=2))
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    """Phantom of the sample seed -> DRR pair -> preview montage (the pipeline's first half, no model yet)."""
    from .io import grid_image, write_image
    from .phantom import generate_phantom
    from .preview import save_preview
    from .synthesize import pair_for_ct, render_pair

    out = Path(args.out)
    grid = VolumeGrid(128, 2.5)
    ct = grid_image(generate_phantom(args.seed, grid, implant=True), grid)
    drrs = render_pair(ct, pair_for_ct(ct))
    write_image(ct, out / "ct.nrrd")
    save_preview(ct, drrs, out / "preview.png", caption=f"phantom seed {args.seed} and its DRR pair")
    print(f"wrote {out / 'ct.nrrd'} and {out / 'preview.png'}")
    return 0


def _add_geometry_options(parser: argparse.ArgumentParser) -> None:
    template = default_pair()[0]
    parser.add_argument("--sdd", type=float, default=template.source_to_detector_mm, help="source-to-detector distance, mm")
    parser.add_argument("--sid", type=float, default=template.source_to_isocenter_mm, help="source-to-isocentre distance, mm")
    parser.add_argument("--pixels", type=int, default=template.detector_pixels[0], help="detector pixels per side")
    parser.add_argument("--pixel-spacing", type=float, default=template.pixel_spacing_mm[0], help="detector pixel size, mm")


def build_parser() -> argparse.ArgumentParser:
    """The argument parser with one sub-command per job."""
    parser = argparse.ArgumentParser(prog="diffux2ct", description="Reconstruct CT volumes from biplanar radiographs (research use, not for diagnosis).")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    phantom = commands.add_parser("phantom", help="write a procedural torso CT phantom", description=cmd_phantom.__doc__)
    phantom.add_argument("--seed", type=int, required=True, help="random seed; equal seeds give equal phantoms")
    phantom.add_argument("--out", required=True, help="output CT (.nrrd, .nii.gz, .mha)")
    phantom.add_argument("--size", type=int, default=128, help="voxels per edge (default 128)")
    phantom.add_argument("--spacing", type=float, default=2.5, help="voxel size in mm (default 2.5)")
    phantom.add_argument("--implant", choices=("auto", "yes", "no"), default="auto", help="pedicle screws and rod")
    phantom.add_argument("--supersample", type=int, default=1, help="draw finer and average down (partial volume)")
    phantom.set_defaults(run=cmd_phantom)

    synthesize = commands.add_parser("synthesize", help="render the AP + lateral DRR pair of a CT", description=cmd_synthesize.__doc__)
    synthesize.add_argument("--ct", required=True, help="CT volume (NRRD, NIfTI, MHA, or a DICOM series folder)")
    synthesize.add_argument("--out", required=True, help="output folder for ap.nrrd, lateral.nrrd, geometry.json")
    _add_geometry_options(synthesize)
    synthesize.set_defaults(run=cmd_synthesize)

    evaluate = commands.add_parser("evaluate", help="metrics of a reconstruction against its ground truth", description=cmd_evaluate.__doc__)
    evaluate.add_argument("--pred", required=True, help="reconstructed CT")
    evaluate.add_argument("--gt", required=True, help="ground-truth CT")
    evaluate.set_defaults(run=cmd_evaluate)

    demo = commands.add_parser("demo", help="run the main job on the bundled sample", description=cmd_demo.__doc__)
    demo.add_argument("--out", default="demo-output", help="output folder (default demo-output)")
    demo.add_argument("--seed", type=int, default=900001, help="phantom seed of the sample (never used in training)")
    demo.set_defaults(run=cmd_demo)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``diffux2ct`` console script."""
    args = build_parser().parse_args(argv)
    try:
        return args.run(args)
    except InputError as error:
        print(f"diffux2ct {args.command}: error: {error}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        print(f"diffux2ct {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
