"""The background worker Slicer starts: ``python -m DiffuX2CTLib.app.worker JOB.json`` runs one reconstruction, and
``python -m DiffuX2CTLib.app.worker --probe`` reports which dependencies and GPU this Python has.

stdout carries only protocol events, one JSON object per line (see :mod:`DiffuX2CTLib.job`):
``progress`` (step, total, eta_s), then either ``done`` (outputs, metrics, provenance) or ``error`` (kind, message).
Logs go to stderr. The exit code is 0 only after a ``done`` line. The GUI process never imports torch.
"""

from __future__ import annotations

import importlib.util
import sys
import time
import traceback
from pathlib import Path

from ..errors import InputError
from ..job import JobSpec, event_line
from ..modelcard import ModelError

REQUIRED_MODULES = ("torch", "monai", "SimpleITK", "numpy", "safetensors")  # import names, also their pip names
EXIT_FAILED = 1


def _emit(event: str, **fields) -> None:
    print(event_line(event, **fields), flush=True)


def missing_modules() -> list[str]:
    """Package names (pip spelling) of required modules this Python cannot import."""
    return [module for module in REQUIRED_MODULES if importlib.util.find_spec(module) is None]


def probe() -> int:
    """Report dependencies and compute devices as one ``probe`` event."""
    missing = missing_modules()
    gpu = None
    torch_version = None
    if "torch" not in missing:
        import torch

        torch_version = torch.__version__
        if torch.cuda.is_available():
            gpu = torch.cuda.get_device_name(0)
    _emit("probe", missing=missing, torch=torch_version, cuda=gpu is not None, gpu_name=gpu, python=sys.executable)
    return 0


class _ProgressReporter:
    """Turns the sampler's (step, total) callbacks into progress events; the time left is extrapolated from
    the steps since the first report, so model loading does not inflate it."""

    def __init__(self) -> None:
        self.first: tuple[int, float] | None = None

    def __call__(self, step: int, total: int) -> None:
        now = time.monotonic()
        if self.first is None:
            self.first = (step, now)
        first_step, first_time = self.first
        eta = (now - first_time) / (step - first_step) * (total - step) if step > first_step else None
        _emit("progress", step=step, total=total, eta_s=None if eta is None else round(eta, 2))


def _error_kind(error: Exception) -> str:
    if isinstance(error, ModelError):
        return "model"
    if isinstance(error, InputError):
        return "bad_input"
    if isinstance(error, MemoryError) or type(error).__name__ == "OutOfMemoryError":
        return "out_of_memory"
    return "internal"


def run(job_path: str) -> int:
    """Run the job in ``job_path``; every failure ends in one ``error`` event."""
    try:
        spec = JobSpec.read(job_path)
    except InputError as error:
        _emit("error", kind="bad_input", message=str(error))
        return EXIT_FAILED
    missing = missing_modules()
    if missing:
        _emit("error", kind="missing_dependency", message=f"this Python lacks {', '.join(missing)}; install them to run DiffuX2CT", missing=missing)
        return EXIT_FAILED
    try:
        from ..reconstruct import (
            low_agreement_views,
            reconstruct_pair,
            write_reconstruction,
        )

        _emit("progress", step=0, total=0, eta_s=None, stage="loading model")
        result = reconstruct_pair(spec.ap, spec.lateral, spec.model, spec.options, _ProgressReporter(), spec.acquisition)
        outputs = write_reconstruction(result, Path(spec.output_dir) / "ct.nrrd")
    except Exception as error:  # noqa: BLE001 - every failure must become one protocol event
        kind = _error_kind(error)
        if kind == "internal":
            traceback.print_exc(file=sys.stderr)
        message = str(error) if kind != "out_of_memory" else f"out of memory ({error}); try the CPU, fewer samples or a smaller model"
        _emit("error", kind=kind, message=message or type(error).__name__)
        return EXIT_FAILED
    _emit(
        "done",
        outputs=outputs,
        metrics={"agreement": result.agreement, "low_agreement_views": low_agreement_views(result)},
        provenance=result.provenance,
    )
    return 0


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``python -m DiffuX2CTLib.app.worker``."""
    argv = sys.argv[1:] if argv is None else argv
    if argv == ["--probe"]:
        return probe()
    if len(argv) != 1:
        print("usage: python -m DiffuX2CTLib.app.worker JOB.json | --probe", file=sys.stderr)
        return 2
    return run(argv[0])


if __name__ == "__main__":
    sys.exit(main())
