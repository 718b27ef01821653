"""One reconstruction, end to end: radiograph files in, CT volume (and uncertainty) out, with provenance.

This is the single call behind the command line, the demo and Slicer's background worker, so they cannot drift.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import SimpleITK as sitk
import torch

from ..core.atomic_write import write_together
from ..core.cpu_convolution import onednn_convolutions
from ..core.device import resolve_device, resolve_precision
from ..core.errors import InputError
from ..core.input_files import check_input_path
from ..core.seeds import MAX_SEED
from ..diffusion.guidance import ProjectionGuidance, full_depth_pixels
from ..imaging.acquisition import Acquisition
from ..imaging.drr import DRRProjector, render_model_radiographs
from ..imaging.image_io import apply_acquisition, grid_image, image_writer, read_radiograph
from ..model.config import ModelConfig
from ..model.network import DiffuX2CTNet
from ..model.weights import BUNDLED_MODEL_DIR, file_sha256, load_model
from .input_checks import normalised_cross_correlation, orientation_notes, pair_problems, polarity_problems
from .options import ReconstructionOptions
from .preprocess import cleaned, prepare_pair
from .sampling import draw_samples, sample_count, sampling_temperature

AGREEMENT_WARNING_THRESHOLD = 0.9
"""Re-projection agreement (NCC over the full-depth pixels) below which a view is reported as disagreeing."""
NIFTI_DESCRIPTION_CHARS = 79
"""Text a NIfTI header's 80-byte ``descrip`` field holds (with its terminating NUL): the one text of provenance
SimpleITK writes into a NIfTI file (from the ``ITK_FileNotes`` metadata; NRRD and MHA files take every
``DiffuX2CT_`` key instead)."""
_NIFTI_MARK = "DiffuX2CT {what}, NOT FOR DIAGNOSIS"
Progress = Callable[[int, int], None]


@dataclass
class Reconstruction:
    """The result: CT (HU, LPS image at the radiographs' isocentre), optional std-dev volume, the model-domain
    inputs, per-view re-projection agreement and provenance.

    The agreement is the normalised cross-correlation of the result's DRR with the input over the pixels whose ray
    crosses the whole depth of the model's cube (:func:`~DiffuX2CTLib.diffusion.guidance.full_depth_pixels`): a
    radiograph also shows the body above, below and beside the cube, which no reconstruction of the cube holds."""

    ct: sitk.Image
    uncertainty: sitk.Image | None
    inputs: np.ndarray
    agreement: dict[str, float]
    provenance: dict[str, str] = field(default_factory=dict)


_MODELS: dict[tuple[str, str], tuple[DiffuX2CTNet, dict]] = {}


def cached_model(folder: str | os.PathLike | None, device: torch.device) -> tuple[DiffuX2CTNet, dict]:
    """Load a model once per process (checksum verified on first load)."""
    key = (str(Path(folder).resolve()) if folder else str(BUNDLED_MODEL_DIR), str(device))
    if key not in _MODELS:
        _MODELS[key] = load_model(folder, device)
    return _MODELS[key]


def check_options(options: ReconstructionOptions, config: ModelConfig) -> None:
    """Refuse options the model cannot honour, before any sampling: more DDIM steps than its diffusion steps, a
    seed the random generator cannot take."""
    if options.steps is not None and options.steps > config.timesteps:
        raise InputError(
            f"{options.steps} sampling steps requested, but the model has only {config.timesteps} diffusion steps "
            f"(use at most {config.timesteps})"
        )
    if not 0 <= options.seed <= MAX_SEED:
        raise InputError(f"seed {options.seed} is out of range (use a whole number from 0 to {MAX_SEED})")


def reconstruct_pair(
    ap_path: str | os.PathLike,
    lateral_path: str | os.PathLike,
    model: str | os.PathLike | None = None,
    options: ReconstructionOptions | None = None,
    progress: Progress | None = None,
    acquisition: dict[str, Acquisition] | None = None,
) -> Reconstruction:
    """Reconstruct a CT from an AP and a lateral radiograph file (any supported format). ``acquisition`` (by view
    name) adds what is known of the acquisition when the files do not carry it."""
    options = options or ReconstructionOptions()
    started = time.time()
    device = resolve_device(options.device)
    for path in (ap_path, lateral_path):
        check_input_path(path)  # a link loop or a file without read permission, named as such
    pair = {"ap": read_radiograph(ap_path, "ap"), "lateral": read_radiograph(lateral_path, "lateral")}
    for view, known in (acquisition or {}).items():
        if view not in pair:
            raise InputError(f"acquisition given for unknown view '{view}' (use ap or lateral)")
        pair[view] = apply_acquisition(pair[view], view, known)
    ap, lateral = cleaned(pair["ap"]), cleaned(pair["lateral"])
    net, card = cached_model(model, device)
    config = net.config
    check_options(options, config)
    images, geometries = prepare_pair(ap, lateral, config.detector())
    problems = polarity_problems(pair["ap"], pair["lateral"]) + pair_problems(ap, lateral, images)
    if problems and options.check_inputs:
        raise InputError("; ".join(problems) + " (to run anyway, turn the input checks off)")
    radiographs = torch.from_numpy(images)[None].to(device)
    with torch.no_grad():
        with onednn_convolutions(device):  # the conditioning network runs in float32 whatever the precision
            condition = net.condition(radiographs)
        if options.method == "regression":
            volumes = [
                ProjectionGuidance(config, options.guidance, device).refine(condition[1], radiographs)
                if options.guidance > 0
                else condition[1]
            ]
            if progress:
                progress(1, 1)
        else:
            volumes = draw_samples(net, radiographs, condition, options, progress)
        stack = torch.cat(volumes).float()
        mean = stack.mean(0, keepdim=True)
        projector = DRRProjector([config.detector(g.view) for g in geometries]).to(device)
        reprojected = render_model_radiographs(mean, projector, config.grid(), config.hu_window)[0].cpu().numpy()
        counted = full_depth_pixels(projector, config.grid()).cpu().numpy()
    window = config.hu_window
    grid = config.grid(geometries[0].isocenter_lps)
    ct = grid_image(window.to_hu(mean[0, 0].cpu().numpy()), grid)
    uncertainty = None
    if len(volumes) > 1:
        std_hu = (stack.std(0)[0] * (window.high - window.low) / 2.0).cpu().numpy()
        uncertainty = grid_image(std_hu, grid)
    agreement = dict(zip((g.view.value for g in geometries), reprojection_agreement(reprojected, images, counted)))
    steps = (
        "1"
        if options.method == "regression"
        else str(config.timesteps if options.sampler == "ddpm" else options.steps or config.default_steps)
    )
    provenance = {
        "model": str(Path(model).name if model else BUNDLED_MODEL_DIR.name),
        "model_sha256": card.get("weights_sha256", ""),
        "method": options.method,
        "sampler": options.sampler if options.method == "diffusion" else "none",
        "steps": steps,
        "seed": str(options.seed),
        "samples": str(sample_count(options, config.default_samples)),
        "guidance": f"{options.guidance:g}",
        "temperature": f"{sampling_temperature(options, config):g}" if options.method == "diffusion" else "none",
        "device": str(device),
        "precision": resolve_precision(options.precision, device) if options.method == "diffusion" else "float32",
        "seconds": f"{time.time() - started:.2f}",
        "ap_sha256": file_sha256(Path(ap_path)),
        "lateral_sha256": file_sha256(Path(lateral_path)),
        "agreement_ap": f"{agreement['ap']:.4f}",
        "agreement_lateral": f"{agreement['lateral']:.4f}",
        "notes": "; ".join(
            ap.notes
            + lateral.notes
            + orientation_notes(ap, lateral, images)
            + [f"input check overridden: {p}" for p in problems]
        ),
        "orientation_ap": "from the file" if pair["ap"].orientation_from_file else "assumed",
        "orientation_lateral": "from the file" if pair["lateral"].orientation_from_file else "assumed",
        "intended_use": "research use only, not for diagnosis",
    }
    for image, what in ((ct, "CT"), (uncertainty, "std-dev")):
        if image is not None:
            for key, value in provenance.items():
                image.SetMetaData(f"DiffuX2CT_{key}", value)
            image.SetMetaData("ITK_FileNotes", nifti_description(provenance, what))
    return Reconstruction(ct, uncertainty, images, agreement, provenance)


def uncertainty_path(out: Path) -> Path:
    """Where the std-dev volume goes next to ``out`` (``ct.nrrd`` -> ``ct-uncertainty.nrrd``)."""
    name = out.name
    for suffix in (".nii.gz", ".nrrd", ".nii", ".mha"):
        if name.endswith(suffix):
            return out.with_name(name[: -len(suffix)] + "-uncertainty" + suffix)
    return out.with_name(name + "-uncertainty.nrrd")


def write_reconstruction(
    result: Reconstruction, out: str | os.PathLike, preview: str | os.PathLike | None = None
) -> dict[str, str]:
    """Write the CT, its uncertainty volume (K > 1 samples) and optionally the preview PNG as one unit: all of them
    atomically, or none (old files untouched). A single-sample CT removes the uncertainty volume an earlier run of
    ours left beside the same output, which would otherwise describe another result. Returns the written paths by
    kind."""
    out = Path(out)
    files = {"ct": (out, image_writer(result.ct))}
    if result.uncertainty is not None:
        files["uncertainty"] = (uncertainty_path(out), image_writer(result.uncertainty))
    if preview is not None:
        from .preview import preview_writer

        assumed = [result.provenance.get(f"orientation_{view}") == "assumed" for view in ("ap", "lateral")]
        files["preview"] = (
            Path(preview),
            preview_writer(result.ct, result.inputs, caption=caption(result), orientation_assumed=assumed),
        )
    write_together(dict(files.values()))
    if result.uncertainty is None and _written_by_us(uncertainty_path(out)):
        uncertainty_path(out).unlink()
    return {kind: str(path) for kind, (path, _) in files.items()}


def _written_by_us(path: Path) -> bool:
    """Whether ``path`` is an image carrying this package's provenance (never a file a user put there)."""
    if not path.is_file():
        return False
    reader = sitk.ImageFileReader()
    reader.SetFileName(str(path))
    try:
        reader.ReadImageInformation()
    except RuntimeError:
        return False
    if reader.HasMetaDataKey("descrip") and reader.GetMetaData("descrip").startswith("DiffuX2CT "):  # NIfTI
        return True
    return reader.HasMetaDataKey("DiffuX2CT_model_sha256")


def nifti_description(provenance: dict[str, str], what: str = "CT") -> str:
    """The NIfTI ``descrip`` text (:data:`NIFTI_DESCRIPTION_CHARS` characters at most, ASCII): the
    not-for-diagnosis mark first, so it is never cut, then the weights' checksum prefix and how the volume was
    made, e.g. ``DiffuX2CT CT, NOT FOR DIAGNOSIS; model 10b4ca79; diffusion ddim-20 seed 0`` (method, sampler and
    steps; the full provenance goes into NRRD and MHA headers)."""
    p = provenance
    method = p.get("method", "")
    if method == "diffusion":
        method += f" {p.get('sampler', '')}-{p.get('steps', '')}"
    made = f"{method} seed {p.get('seed', '')}"
    text = f"{_NIFTI_MARK.format(what=what)}; model {p.get('model_sha256', '')[:8]}; {made}"
    return text.encode("ascii", "replace").decode("ascii")[:NIFTI_DESCRIPTION_CHARS]


def caption(result: Reconstruction) -> str:
    """One line for the preview: how the result was made (regression: one direct estimate, no sampler, steps or
    seed; diffusion: sampler, steps, the temperature when it is not 1, seed and, for K samples, that it shows their
    mean) and how well it agrees with the inputs."""
    p = result.provenance
    if p["method"] == "regression":
        made = "regression (one direct estimate)"
    else:
        temperature = p.get("temperature", "1")
        cooled = f", temperature {temperature}" if temperature != "1" else ""
        made = f"{p['method']} ({p['sampler']}, {p['steps']} steps{cooled}, seed {p['seed']})"
        if int(p.get("samples", "1")) > 1:
            made += f": the mean of {p['samples']} samples"
    return f"{made} in {p['seconds']} s; re-projection NCC AP {p['agreement_ap']}, lateral {p['agreement_lateral']}"


def reprojection_agreement(reprojected: np.ndarray, inputs: np.ndarray, counted: np.ndarray) -> list[float]:
    """Per view, the normalised cross-correlation of the result's DRR with the input over the ``counted`` pixels
    (``(V, P, P)`` arrays; the full-depth pixels, for the reason :class:`Reconstruction` gives)."""
    return [normalised_cross_correlation(r[c], i[c]) for r, i, c in zip(reprojected, inputs, counted)]


def low_agreement_views(result: Reconstruction) -> list[str]:
    """Views whose re-projection disagrees with the input (NCC below the warning threshold)."""
    return [view for view, value in result.agreement.items() if value < AGREEMENT_WARNING_THRESHOLD]
