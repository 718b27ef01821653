"""Evaluation over a test set: each CT's DRR pair is synthesised, reconstructed by every method through the call
users run (``reconstruct_pair``), and scored against the CT on the model's grid.

The methods run on the same cases in one run: the mean training volume (what a model that ignores its input
would output), the regression estimate (the conditioning network alone), diffusion with the model's default DDIM
steps and samples (the default reconstruction), optionally with another number of samples, and with all T DDPM
steps as in the paper. Metrics are those of :mod:`.metrics`: PSNR and 3D SSIM on the HU window scaled to [-1, 1],
MAE in HU and bone Dice. LPIPS and FID are not computed: both need pretrained network weights, which no installed
package ships for offline use.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
import SimpleITK as sitk
import torch

from ..core.atomic_write import write_file, write_json, write_text
from ..core.cache import cache_root
from ..core.device import resolve_device, resolve_precision
from ..core.errors import InputError
from ..core.input_files import check_input_path
from ..core.progress import progress_bar
from ..imaging.geometry import View
from ..imaging.image_io import (
    detector_image,
    find_ct_volumes,
    grid_image,
    image_center_lps,
    read_ct,
    resample_to_grid,
    write_image,
)
from ..imaging.synthesize import pair_for_ct, render_pair
from ..inference.options import ReconstructionOptions
from ..inference.preview import save_comparison_montage
from ..inference.reconstruct import cached_model, reconstruct_pair
from ..inference.sampling import sampling_temperature
from ..model.config import ModelConfig
from ..training.samples import HELD_OUT_SEED_START, PhantomSource, drr_grid, model_target
from .draws import draw_spread, mean_of_draws
from .figures import save_error_figure
from .metrics import compare
from .real_set import REAL_SET, real_cases
from .structures import structure_diagnostics, structure_table, summarise_structures

PHANTOM_SET = "phantoms"
TEST_SEED_START = HELD_OUT_SEED_START + 100
"""Held-out phantom seeds of the test set (training never draws seeds from ``HELD_OUT_SEED_START`` up)."""
TEST_REGIONS = ("chest", "abdomen", "lumbar", "pelvis")
"""Test case ``k`` is seed ``TEST_SEED_START + k`` seen in region ``TEST_REGIONS[k % 4]``, so every region is
measured."""
MEAN_VOLUME_COUNT = 16
MEAN_VOLUME_VERSION = 1
"""Bump when :func:`mean_training_volume` changes what it computes: cached means of older versions are not read."""
MEAN_VOLUME_CODE = ("anatomy", "training/samples.py", "imaging/hounsfield.py")
"""The engine's code a phantom mean volume depends on (generator, training views, HU scaling), by path under the
package: a change to it makes a new mean."""
METRICS = ("psnr_db", "ssim", "mae_hu", "bone_dice")
HIGHER_IS_BETTER = {"psnr_db": True, "ssim": True, "mae_hu": False, "bone_dice": True}
NOT_COMPUTED = {
    "lpips": "needs pretrained AlexNet/VGG weights; no installed package ships them for offline use",
    "fid": "needs pretrained Inception weights; no installed package ships them for offline use",
}
Log = Callable[[str], None]


@dataclass(frozen=True)
class EvaluationSettings:
    """One evaluation run: the test set (``phantoms`` for held-out phantoms, or a folder of CTs), how many cases
    (phantoms: that many seeds; folder: at most that many files, None for all), the samplers to run (``samples``
    adds a row averaging that many DDIM samples when it differs from the model's default), and where the
    mean-volume baseline comes from (``phantoms``: the model's training phantoms, or a folder of CTs).
    ``guidance`` is the projection guidance of the diffusion rows (None: the default, as ``reconstruct``); a row's
    name says its weight when it is not 0. ``precision`` is the diffusion rows' sampling arithmetic
    (``reconstruct --precision``) and ``temperature`` their starting noise's scale (``reconstruct
    --temperature``; None: the model's). ``draws`` is how many times each diffusion method samples each case, with
    sampling seeds ``seed``, ``seed + 1``, ...: its scores are the mean of the draws (the volumes and figures are
    of the first)."""

    test_set: str
    out: str
    model: str | None = None
    cases: int | None = None
    ddim_steps: int | None = None
    ddpm: bool = False
    samples: int | None = None
    seed: int = 0
    draws: int = 1
    mean_from: str = PHANTOM_SET
    device: str = "auto"
    guidance: float | None = None
    precision: str = "auto"
    temperature: float | None = None

    def __post_init__(self) -> None:
        if self.cases is not None and self.cases < 1:
            raise InputError("the number of cases must be at least 1")
        if not (isinstance(self.draws, int) and self.draws >= 1):
            raise InputError(f"the number of draws must be a whole number of at least 1, not {self.draws!r}")
        ReconstructionOptions(
            steps=self.ddim_steps,
            samples=self.samples,
            device=self.device,
            guidance=self.guidance,
            precision=self.precision,
            temperature=self.temperature,
        )  # same checks


@dataclass(frozen=True)
class EvaluationCase:
    """A named ground-truth CT (HU, any grid) whose DRR pair is synthesised for the evaluation."""

    name: str
    ct: sitk.Image
    region: str = "all"


def phantom_case(seed: int, region: str, config: ModelConfig) -> sitk.Image:
    """Phantom ``seed``'s field of view of ``region`` as a HU image on the volume training renders DRRs from
    (:func:`~DiffuX2CTLib.training.samples.drr_grid`), so test radiographs show as much of the body as training ones."""
    from ..anatomy.phantom import generate_phantom

    grid = drr_grid(config)
    return grid_image(generate_phantom(seed, grid, region).numpy(), grid)


def evaluation_cases(
    settings: EvaluationSettings, config: ModelConfig, skipped: list[str], log: Log
) -> Iterator[EvaluationCase]:
    """The cases of the test set, made or read one at a time; a CT that cannot be read is skipped with a warning
    naming it and added to ``skipped``."""
    if settings.test_set == REAL_SET:
        for case in list(real_cases(config))[: settings.cases]:
            yield EvaluationCase(case.name, case.ct, case.region)
        return
    if settings.test_set == PHANTOM_SET:
        for k in range(settings.cases or 8):
            region = TEST_REGIONS[k % len(TEST_REGIONS)]
            yield EvaluationCase(
                f"phantom-{TEST_SEED_START + k}-{region}", phantom_case(TEST_SEED_START + k, region, config), region
            )
        return
    for path in find_ct_volumes(settings.test_set)[: settings.cases]:
        name = path.name.split(".")[0] or path.name
        try:
            check_input_path(path)
            ct = read_ct(path)
        except InputError as error:
            skipped.append(str(error))
            log(f"warning: skipped {error}")
            continue
        yield EvaluationCase(name, ct)


def _code_fingerprint() -> str:
    """SHA-256 of the engine code in :data:`MEAN_VOLUME_CODE`."""
    package = Path(__file__).resolve().parents[1]
    digest = hashlib.sha256()
    for entry in MEAN_VOLUME_CODE:
        for path in sorted((package / entry).glob("*.py")) if (package / entry).is_dir() else [package / entry]:
            digest.update(path.relative_to(package).as_posix().encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()


def _file_stamps(path: Path) -> list:
    """Name, size and modification time of a CT file, or of every file of a DICOM series folder."""
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    return [[f.relative_to(path.parent).as_posix(), f.stat().st_size, f.stat().st_mtime_ns] for f in files]


def mean_volume_key(config: ModelConfig, source: str, count: int) -> tuple[str, list[Path]]:
    """The cache key of a mean volume (SHA-256 of the model config, the source and how many volumes; for phantoms
    the generator's code, for a folder the path, size and time of every file averaged) and the files it averages
    (none for phantoms)."""
    paths = [] if source == PHANTOM_SET else find_ct_volumes(source)[:count]
    what = {"version": MEAN_VOLUME_VERSION, "config": config.to_dict(), "count": count}
    if source == PHANTOM_SET:
        what["source"] = {"phantoms": _code_fingerprint()}
    else:
        what["source"] = {"folder": str(Path(source).resolve()), "files": [_file_stamps(p) for p in paths]}
    return hashlib.sha256(json.dumps(what, sort_keys=True).encode()).hexdigest()[:24], paths


def mean_training_volume(
    config: ModelConfig, source: str = PHANTOM_SET, count: int = MEAN_VOLUME_COUNT, show_progress: bool = False
) -> tuple[np.ndarray, int]:
    """The average of up to ``count`` training volumes on the model's grid (HU, ``[z, y, x]``), each centred as
    the model sees it, and how many were averaged: the baseline that ignores the radiographs.

    It is fixed for a model config and a source, so it is made once (with a progress bar on stderr when
    ``show_progress``) and kept in the data cache, ``<cache>/mean-volumes/<key>.npy`` (:func:`mean_volume_key`)."""
    key, paths = mean_volume_key(config, source, count)
    n = count if source == PHANTOM_SET else len(paths)
    cached = cache_root() / "mean-volumes" / f"{key}.npy"
    if cached.is_file():
        try:
            mean = np.load(cached)
            if mean.shape == (config.grid_size,) * 3:
                return mean, n
        except (OSError, ValueError):  # a damaged cache file is made again
            pass
    total = np.zeros((config.grid_size,) * 3)
    with progress_bar(n, "mean volume", unit="volume", quiet=not show_progress) as bar:
        if source == PHANTOM_SET:
            phantoms = PhantomSource(seed=0)
            for index in range(count):
                rng = np.random.default_rng([0, index])
                volume = phantoms.volume(index, rng, drr_grid(config), torch.device("cpu"))
                total += config.hu_window.to_hu(model_target(volume, config)[0].numpy())
                bar.update(1)
        else:
            for path in paths:
                check_input_path(path)
                volume = read_ct(path)
                total += resample_to_grid(volume, config.grid(image_center_lps(volume)))
                bar.update(1)
    mean = (total / n).astype(np.float32)
    write_file(cached, lambda temporary: np.save(temporary, mean))
    return mean, n


def synthesise_case(case: EvaluationCase, config: ModelConfig, folder: Path) -> tuple[Path, Path, sitk.Image]:
    """Write the case's AP and lateral DRRs (the model's detector, centred on the CT) and return their paths and
    the ground truth on the model's grid."""
    geometries = pair_for_ct(case.ct, (config.detector(View.AP), config.detector(View.LATERAL)))
    drrs = render_pair(case.ct, geometries, samples_per_ray=2 * config.grid_size)
    paths = [write_image(detector_image(drr, g), folder / f"{g.view.value}.nrrd") for drr, g in zip(drrs, geometries)]
    grid = config.grid(image_center_lps(case.ct))
    return paths[0], paths[1], grid_image(resample_to_grid(case.ct, grid), grid)


def diffusion_methods(settings: EvaluationSettings, config: ModelConfig) -> dict[str, ReconstructionOptions]:
    """Named reconstruction options of the diffusion methods the settings ask for: the default reconstruction
    (first: the model's default DDIM steps, averaging its ``default_samples``), one DDPM sample over all T steps,
    and the mean of K DDIM samples (``settings.samples``, when K is not the default's; K = 1 is one sample); a name
    says how many samples it averages when more than one, the sampling temperature when it is not 1 and the
    guidance weight when it is not 0."""
    common = {
        "seed": settings.seed,
        "device": settings.device,
        "check_inputs": False,
        "guidance": settings.guidance,
        "precision": settings.precision,
        "temperature": settings.temperature,
    }
    steps = settings.ddim_steps or config.default_steps
    options = ReconstructionOptions(**common)
    temperature = sampling_temperature(options, config)
    suffix = (f", temperature {temperature:g}" if temperature != 1 else "") + (
        f", guidance {options.guidance:g}" if options.guidance > 0 else ""
    )
    default = config.default_samples
    methods = {
        f"diffusion DDIM-{steps}{_mean_of(default)}{suffix}": ReconstructionOptions(
            steps=steps, samples=default, **common
        )
    }
    if settings.ddpm:
        methods[f"diffusion DDPM-{config.timesteps}{suffix}"] = ReconstructionOptions(
            sampler="ddpm", samples=1, **common
        )
    if settings.samples is not None and settings.samples != default:
        methods[f"diffusion DDIM-{steps}{_mean_of(settings.samples)}{suffix}"] = ReconstructionOptions(
            steps=steps, samples=settings.samples, **common
        )
    return methods


def _mean_of(samples: int) -> str:
    """The part of a method's name that says how many samples it averages (none for one sample)."""
    return f", mean of {samples}" if samples > 1 else ""


def evaluate_case(
    case: EvaluationCase,
    settings: EvaluationSettings,
    config: ModelConfig,
    mean_hu: np.ndarray,
    log: Log,
    done: Callable[[], None] | None = None,
) -> dict:
    """Reconstruct one case with every method; write its inputs, reconstructions, metrics JSON and montage.
    ``done`` is called after each method's reconstruction (progress)."""
    folder = Path(settings.out) / "cases" / case.name
    ap, lateral, truth = synthesise_case(case, config, folder)
    window = config.hu_window
    mean_image = grid_image(mean_hu, config.grid(image_center_lps(truth)))
    scores = {"mean volume": {**compare(mean_image, truth, window), "seconds": 0.0}}
    structures = {"mean volume": _structures(mean_image, truth, window)}
    volumes = {}
    # The synthesised pairs are DRRs by construction; the input checks (photographs, blank images) do not apply.
    diffusion = diffusion_methods(settings, config)
    default = next(iter(diffusion))
    runs = {
        "regression": ReconstructionOptions(method="regression", device=settings.device, check_inputs=False),
        **diffusion,
    }
    for name, options in runs.items():
        draws, draw_structures = [], []
        for draw in range(settings.draws if name in diffusion else 1):
            started = time.perf_counter()
            result = reconstruct_pair(ap, lateral, settings.model, replace(options, seed=options.seed + draw))
            seconds = time.perf_counter() - started
            if draw == 0:
                volumes[name] = result.ct
                write_image(result.ct, folder / f"{name.replace(', ', '-').replace(' ', '-')}.nrrd")
            draws.append({**compare(result.ct, truth, window), "seconds": seconds})
            draw_structures.append(_structures(result.ct, truth, window))
            log(
                f"{case.name} {name}{f' (draw {draw + 1})' if settings.draws > 1 and name in diffusion else ''}: "
                f"PSNR {draws[-1]['psnr_db']:.2f} dB, SSIM {draws[-1]['ssim']:.3f}, bone Dice "
                f"{draws[-1]['bone_dice']:.3f} ({seconds:.1f} s)"
            )
            if done:
                done()
        scores[name] = {**mean_of_draws(draws), **({"draws": draws} if len(draws) > 1 else {})}
        structures[name] = mean_of_draws(draw_structures)
    save_comparison_montage(
        truth,
        {"diffusion": volumes[default], "regression": volumes["regression"]},
        "diffusion",
        folder / "montage.png",
        window,
        caption=f"{case.name}: diffusion = {default}",
    )
    save_error_figure(truth, volumes, folder / "errors.png", window, title=case.name)
    record = {"case": case.name, "region": case.region, "methods": scores, "structures": structures}
    write_json(record, folder / "metrics.json")
    return record


def _structures(prediction: sitk.Image, truth: sitk.Image, window) -> dict:
    """:func:`~.structures.structure_diagnostics` of a reconstruction on the truth's grid (values clipped to the
    model's HU window, as the metrics are)."""
    resampled = sitk.Resample(prediction, truth, sitk.Transform(), sitk.sitkLinear, window.low, sitk.sitkFloat32)
    predicted = np.clip(sitk.GetArrayFromImage(resampled), window.low, window.high)
    true = np.clip(sitk.GetArrayFromImage(sitk.Cast(truth, sitk.sitkFloat32)), window.low, window.high)
    return structure_diagnostics(predicted, true, truth.GetSpacing()[0])


def _structure_summary(records: list[dict]) -> dict:
    """:func:`~.structures.summarise_structures` of every method over ``records``."""
    return {m: summarise_structures([r["structures"][m] for r in records]) for m in records[0]["structures"]}


def _mean_std(values: list[float]) -> list[float]:
    return [float(np.mean(values)), float(np.std(values))]


def summarise(records: list[dict]) -> dict:
    """Mean and standard deviation of every metric per method, and each diffusion method against the regression
    and mean-volume baselines: the mean per-case difference and in how many cases diffusion was better."""
    methods = list(records[0]["methods"])
    summary = {m: {k: _mean_std([r["methods"][m][k] for r in records]) for k in (*METRICS, "seconds")} for m in methods}
    comparisons = {}
    for method in (m for m in methods if m.startswith("diffusion")):
        for baseline in ("regression", "mean volume"):
            rows = {}
            for metric in METRICS:
                differences = [r["methods"][method][metric] - r["methods"][baseline][metric] for r in records]
                better = sum((d > 0) == HIGHER_IS_BETTER[metric] and d != 0 for d in differences)
                rows[metric] = {"difference": _mean_std(differences), "better_cases": better, "cases": len(records)}
            comparisons[f"{method} vs {baseline}"] = rows
    return {"summary": summary, "comparisons": comparisons}


def _table(summary: dict) -> list[str]:
    lines = ["| method | PSNR (dB) | SSIM | MAE (HU) | bone Dice | seconds per case |", "|---|---|---|---|---|---|"]
    for name, s in summary.items():
        lines.append(
            f"| {name} | {s['psnr_db'][0]:.2f} ± {s['psnr_db'][1]:.2f} | {s['ssim'][0]:.3f} ± {s['ssim'][1]:.3f} | "
            f"{s['mae_hu'][0]:.0f} ± {s['mae_hu'][1]:.0f} | {s['bone_dice'][0]:.3f} ± {s['bone_dice'][1]:.3f} | "
            f"{s['seconds'][0]:.1f} |"
        )
    return lines


def report_markdown(report: dict) -> str:
    """The summary table (mean ± std), one per region when the test set has several, and the comparison lines,
    for the README's model card."""
    lines = [
        f"Test set: {report['test_set']} ({len(report['cases'])} cases); model {report['model']} (sha256 "
        f"{report['weights_sha256'][:12]}); "
        f"sampling in {report['sampling_precision']}",
        "",
    ]
    if report.get("default_method"):
        lines += [f"Default reconstruction: {report['default_method']}", ""]
    if report.get("draws", 1) > 1:
        seed = report["settings"]["seed"]
        lines += [
            f"Diffusion rows: each case scores the mean of {report['draws']} draws (sampling seeds {seed} to "
            f"{seed + report['draws'] - 1}); one draw's PSNR lies "
            + ", ".join(f"{spread:.2f} dB ({method})" for method, spread in report["draw_spread_psnr_db"].items())
            + " from it (root mean square over the cases)",
            "",
        ]
    lines += _table(report["summary"])
    for region, summary in report.get("regions", {}).items():
        lines += ["", f"**{region}** ({summary['cases']} cases)", ""] + _table(summary["summary"])
    if report.get("structures"):
        lines += ["", "Structures (mean over the cases; volume ratio = reconstruction / truth):", ""]
        lines += structure_table(report["structures"])
        for region, summary in report.get("regions", {}).items():
            lines += ["", f"**{region}** structures ({summary['cases']} cases)", ""]
            lines += structure_table(summary["structures"])
    lines.append("")
    for title, rows in report["comparisons"].items():
        parts = [
            f"{metric} {row['difference'][0]:+.3f} (better in {row['better_cases']}/{row['cases']})"
            for metric, row in rows.items()
        ]
        lines.append(f"- {title}: " + ", ".join(parts))
    if report.get("skipped"):
        lines += ["", "Skipped (unreadable): " + "; ".join(report["skipped"])]
    lines.append("")
    lines.append("Not computed: " + "; ".join(f"{k.upper()} ({v})" for k, v in NOT_COMPUTED.items()) + ".")
    return "\n".join(lines) + "\n"


def _write_report(
    records: list[dict], skipped: list[str], settings: EvaluationSettings, config: ModelConfig, card: dict
) -> dict:
    """The report of the cases done so far, written to ``summary.json`` and ``summary.md``."""
    regions = sorted({r["region"] for r in records})
    report = {
        "test_set": f"held-out phantom seeds from {TEST_SEED_START}"
        if settings.test_set == PHANTOM_SET
        else os.path.basename(os.path.normpath(settings.test_set)),
        "model": card.get("name", "unnamed"),
        "weights_sha256": card.get("weights_sha256", ""),
        "settings": asdict(settings),
        "sampling_precision": resolve_precision(settings.precision, resolve_device(settings.device)),
        "metrics_grid": f"{config.grid_size}^3 voxels of {config.field_of_view_mm / config.grid_size:g} mm, HU window "
        f"[{config.hu_low:g}, {config.hu_high:g}]",
        "cases": [r["case"] for r in records],
        "default_method": next(iter(diffusion_methods(settings, config))),
        **summarise(records),
        "draws": settings.draws,
        "draw_spread_psnr_db": {
            m: draw_spread(records, m)
            for m in records[0]["methods"]
            if m.startswith("diffusion") and settings.draws > 1
        },
        "structures": {
            m: summarise_structures([r["structures"][m] for r in records]) for m in records[0]["structures"]
        },
        "not_computed": NOT_COMPUTED,
        "skipped": list(skipped),
    }
    if len(regions) > 1:
        report["regions"] = {}
        for region in regions:
            subset = [r for r in records if r["region"] == region]
            report["regions"][region] = {
                "cases": len(subset),
                "summary": summarise(subset)["summary"],
                "structures": _structure_summary(subset),
            }
    out = Path(settings.out)
    write_json(report, out / "summary.json")
    write_text(report_markdown(report), out / "summary.md")
    return report


def _case_count(settings: EvaluationSettings) -> int | None:
    """How many cases the test set gives at most (None: not known before the real cases are cut)."""
    if settings.test_set == PHANTOM_SET:
        return settings.cases or 8
    if settings.test_set == REAL_SET:
        return None
    return len(find_ct_volumes(settings.test_set)[: settings.cases])


def evaluate_set(settings: EvaluationSettings, log: Log | None = None, show_progress: bool = False) -> dict:
    """Run the evaluation; writes ``cases/<name>/`` (DRRs, reconstructions, metrics.json, montage.png),
    ``summary.json`` and ``summary.md`` under ``settings.out`` and returns the report. ``show_progress`` draws
    bars on stderr: the mean volume while it is made, then the reconstructions (one unit per case and method)."""
    log = log or (lambda message: None)
    if settings.test_set not in (PHANTOM_SET, REAL_SET) and not Path(settings.test_set).is_dir():
        raise InputError(
            f"{Path(settings.test_set).name}: the test set must be '{PHANTOM_SET}', '{REAL_SET}' or a folder of CT "
            "volumes"
        )
    net, card = cached_model(settings.model, resolve_device(settings.device))
    config = net.config
    mean_hu, averaged = mean_training_volume(config, settings.mean_from, show_progress=show_progress)
    log(
        f"mean-volume baseline: average of {averaged} training volume{'s' if averaged != 1 else ''} "
        f"({settings.mean_from})"
    )
    records, skipped, report = [], [], None
    runs = 1 + settings.draws * len(diffusion_methods(settings, config))  # regression and the diffusion draws
    cases = _case_count(settings)
    with progress_bar(cases * runs if cases else None, "evaluate", unit="run", quiet=not show_progress) as bar:

        def without_skipped() -> None:
            """A skipped file has no runs to wait for."""
            if bar.total is not None:
                bar.total = cases * runs - len(skipped) * runs
                bar.refresh()

        for case in evaluation_cases(settings, config, skipped, log):
            without_skipped()
            records.append(evaluate_case(case, settings, config, mean_hu, log, lambda: bar.update(1)))
            report = _write_report(records, skipped, settings, config, card)  # an interrupted run keeps what it did
        without_skipped()
    if report is None:
        raise InputError(f"{Path(settings.test_set).name}: none of its CT volumes could be read")
    if skipped != report["skipped"]:  # files skipped after the last case: the summary names them too
        report = _write_report(records, skipped, settings, config, card)
    if skipped:
        log(f"{len(skipped)} case(s) skipped: " + "; ".join(skipped))
    return report
