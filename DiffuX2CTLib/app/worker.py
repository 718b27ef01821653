"""The background worker Slicer starts.

* ``python -m DiffuX2CTLib.app.worker JOB.json`` runs one reconstruction (the command line and tests use it);
* ``python -m DiffuX2CTLib.app.worker --serve [--idle-timeout S]`` stays running: commands arrive as JSON lines on
  stdin (``{"command": "run", "id": 1, "job": {...}}``, ``{"command": "cancel", "id": 1}``,
  ``{"command": "idle_timeout", "seconds": S}``, ``{"command": "preload", "model": M, "device": D}``,
  ``{"command": "exit"}``), the model stays loaded between jobs, a failed or cancelled job leaves it serving, and
  it exits after ``S`` idle seconds (freeing its memory) or when stdin closes;
* ``python -m DiffuX2CTLib.app.worker --probe`` reports which dependencies and GPU this Python has.

stdout carries only protocol events, one JSON object per line (see :mod:`DiffuX2CTLib.app.protocol`):
``progress`` (step, total, eta_s, memory), then either ``done`` (outputs, metrics, provenance), ``error`` (kind,
message) or, when serving, ``cancelled``; a serving worker first says ``ready`` (pid) and tags every event with
the job's ``id``. Logs go to stderr. In one-shot mode the exit code is 0 only after a ``done`` line. The worker
ends itself when the process named by ``DIFFUX2CT_PARENT_PID`` is gone (Slicer closed or crashed), so no
reconstruction outlives the application. The GUI process never imports torch.
"""

from __future__ import annotations

import functools
import json
import os
import queue
import sys
import threading
import time
import traceback
from collections.abc import Callable
from pathlib import Path

from ..core.errors import InputError
from ..model.card import ModelError
from .protocol import JobSpec, event_line
from .requirements import missing_modules, outdated_modules
from .runner import PARENT_PID_VARIABLE, process_alive

EXIT_FAILED = 1
EXIT_PARENT_GONE = 3
PARENT_CHECK_INTERVAL_S = 0.5
LOW_MEMORY_FRACTION = 0.05  # less than this share of the machine's memory available: say so in progress events

Emit = Callable[..., None]


def _emit(event: str, **fields) -> None:
    print(event_line(event, **fields), flush=True)


def lacking_dependencies() -> tuple[list[str], str]:
    """The required packages this Python lacks or has in a version that is too old, and a sentence saying so
    (empty when nothing is lacking); see :mod:`.requirements`."""
    missing, outdated = missing_modules(), outdated_modules()
    parts = [f"lacks {', '.join(missing)}"] if missing else []
    parts += [f"has {o['name']} {o['installed']} where DiffuX2CT needs {o['name']}{o['required']}" for o in outdated]
    sentence = f"this Python {' and '.join(parts)}; install or upgrade them to run DiffuX2CT" if parts else ""
    return missing + [o["name"] for o in outdated], sentence


def probe() -> int:
    """Report dependencies (missing ones, and those older than required) and compute devices as one ``probe``
    event."""
    missing = missing_modules()
    outdated = outdated_modules()
    gpu = None
    torch_version = None
    if "torch" not in missing:
        import torch

        torch_version = torch.__version__
        if torch.cuda.is_available():
            gpu = torch.cuda.get_device_name(0)
    _emit(
        "probe",
        missing=missing,
        outdated=outdated,
        torch=torch_version,
        cuda=gpu is not None,
        gpu_name=gpu,
        python=sys.executable,
    )
    return 0


def memory_report() -> dict | None:
    """This process's resident memory and the machine's available and total memory in GiB (Linux; else None), so
    that a worker killed by the system for want of memory has said so before it went."""
    try:
        with open("/proc/meminfo", encoding="ascii") as meminfo:
            fields = {line.split(":")[0]: int(line.split()[1]) for line in meminfo if line.split()[1:2]}
        with open("/proc/self/statm", encoding="ascii") as statm:
            rss_pages = int(statm.read().split()[1])
    except (OSError, ValueError, IndexError):
        return None
    gib = 1024.0**2  # meminfo counts KiB
    total, available = fields.get("MemTotal", 0) / gib, fields.get("MemAvailable", 0) / gib
    rss = rss_pages * os.sysconf("SC_PAGE_SIZE") / 1024.0**3
    return {
        "rss_gib": round(rss, 2),
        "available_gib": round(available, 2),
        "total_gib": round(total, 2),
        "low": total > 0 and available < LOW_MEMORY_FRACTION * total,
    }


class JobCancelled(Exception):
    """Raised from the progress callback when the serving worker was told to cancel the running job."""


class _ProgressReporter:
    """Turns the sampler's (step, total) callbacks into progress events; the time left is extrapolated from
    the steps since the first report, so model loading does not inflate it. ``stop()`` true cancels the job."""

    def __init__(
        self, emit: Emit, stop: Callable[[], bool] = lambda: False, on_first: Callable[[], None] = lambda: None
    ) -> None:
        self.first: tuple[int, float] | None = None
        self.emit = emit
        self.stop = stop
        self.on_first = on_first

    def __call__(self, step: int, total: int) -> None:
        now = time.monotonic()
        if self.first is None:
            self.first = (step, now)
            self.on_first()  # the model is loaded: it is sampling
        if self.stop():
            raise JobCancelled
        first_step, first_time = self.first
        eta = (now - first_time) / (step - first_step) * (total - step) if step > first_step else None
        self.emit(
            "progress", step=step, total=total, eta_s=None if eta is None else round(eta, 2), memory=memory_report()
        )


def _error_kind(error: Exception) -> str:
    if isinstance(error, ModelError):
        return "model"
    if isinstance(error, InputError):
        return "bad_input"
    if isinstance(error, MemoryError) or type(error).__name__ == "OutOfMemoryError":
        return "out_of_memory"
    return "internal"


def _fail(emit: Emit, error: Exception) -> None:
    kind = _error_kind(error)
    if kind == "internal":
        traceback.print_exc(file=sys.stderr)
    message = (
        str(error)
        if kind != "out_of_memory"
        else f"out of memory ({error}); try the CPU, fewer samples or a smaller model"
    )
    emit("error", kind=kind, message=message or type(error).__name__)


def run_spec(
    spec: JobSpec,
    emit: Emit,
    stop: Callable[[], bool] = lambda: False,
    model_loaded: bool = False,
    on_model_ready: Callable[[], None] = lambda: None,
) -> bool:
    """Run one job, reporting through ``emit``; every failure ends in one ``error`` event (a cancelled job, in a
    ``cancelled`` event). ``stop()`` true cancels at the next step; ``model_loaded`` skips the "loading model"
    stage; ``on_model_ready`` is called once the model is loaded. True when ``done`` was sent."""
    lacking, sentence = lacking_dependencies()
    if lacking:
        emit("error", kind="missing_dependency", message=sentence, missing=lacking)
        return False
    try:
        from ..inference.reconstruct import low_agreement_views, reconstruct_pair, write_reconstruction

        if not model_loaded:
            emit("progress", step=0, total=0, eta_s=None, stage="loading model", pid=os.getpid())
        result = reconstruct_pair(
            spec.ap,
            spec.lateral,
            spec.model,
            spec.options,
            _ProgressReporter(emit, stop, on_model_ready),
            spec.acquisition,
        )
        on_model_ready()
        if stop():
            raise JobCancelled
        outputs = write_reconstruction(result, Path(spec.output_dir) / "ct.nrrd")
    except JobCancelled:
        emit("cancelled")
        return False
    except Exception as error:  # every failure must become one protocol event
        _fail(emit, error)
        return False
    emit(
        "done",
        outputs=outputs,
        metrics={"agreement": result.agreement, "low_agreement_views": low_agreement_views(result)},
        provenance=result.provenance,
    )
    return True


def run(job_path: str) -> int:
    """Run the job in ``job_path`` (one-shot mode); every failure ends in one ``error`` event."""
    try:
        spec = JobSpec.read(job_path)
    except InputError as error:
        _emit("error", kind="bad_input", message=str(error))
        return EXIT_FAILED
    return 0 if run_spec(spec, _emit) else EXIT_FAILED


def _preload(model: str | None, device: str) -> bool:
    """Import the engine and load the model before the first job (the panel was opened); reports ``preloaded``.
    A failure is only logged: the job that follows reports it properly."""
    if lacking_dependencies()[0]:
        return False
    try:
        from ..core.device import resolve_device
        from ..inference.reconstruct import cached_model

        started = time.monotonic()
        cached_model(model, resolve_device(device))
    except Exception as error:  # the next job reports the same problem as an event
        print(f"preloading the model failed: {error}", file=sys.stderr, flush=True)
        return False
    _emit("preloaded", model=model, device=device, seconds=round(time.monotonic() - started, 2))
    return True


def serve(idle_timeout_s: float | None = None) -> None:
    """Persistent mode: run the jobs that arrive on stdin one after another with the model kept loaded; ends
    the process on ``exit``, after ``idle_timeout_s`` idle seconds, or when stdin closes."""
    commands: queue.Queue[dict] = queue.Queue()
    cancelled: set = set()

    def read_commands() -> None:
        for line in sys.stdin:
            try:
                command = json.loads(line)
            except json.JSONDecodeError:
                print(f"ignored a line that is not JSON: {line[:80]!r}", file=sys.stderr)
                continue
            if not isinstance(command, dict):
                continue
            if command.get("command") == "cancel":
                cancelled.add(command.get("id"))  # seen by the running job's next progress report
            else:
                commands.put(command)
        os._exit(0)  # stdin closed: whoever drives us is gone, whatever runs now is nobody's

    threading.Thread(target=read_commands, daemon=True).start()
    _emit("ready", pid=os.getpid(), python=sys.executable)
    loaded: set = set()
    while True:
        try:
            command = commands.get(timeout=idle_timeout_s)
        except queue.Empty:
            _emit("idle_exit", idle_s=idle_timeout_s)
            os._exit(0)  # not sys.exit: the reader thread holds stdin's lock, which blocks the interpreter's exit
        if command.get("command") == "exit":
            sys.stdout.flush()
            os._exit(0)
        if command.get("command") == "idle_timeout":
            seconds = command.get("seconds")
            idle_timeout_s = float(seconds) if isinstance(seconds, (int, float)) and seconds > 0 else None
            continue
        if command.get("command") == "preload":
            key = (
                str(Path(command["model"]).resolve()) if command.get("model") else None,
                command.get("device", "auto"),
            )
            if key not in loaded and _preload(command.get("model"), key[1]):
                loaded.add(key)
            continue
        if command.get("command") != "run":
            print(f"ignored unknown command {command.get('command')!r}", file=sys.stderr)
            continue
        job_id = command.get("id")
        emit = functools.partial(_emit, id=job_id)
        try:
            spec = JobSpec.from_dict(command.get("job"))
        except InputError as error:
            emit("error", kind="bad_input", message=str(error))
            continue
        key = (str(Path(spec.model).resolve()) if spec.model else None, spec.options.device)
        warm = key in loaded
        run_spec(
            spec,
            emit,
            lambda job_id=job_id: job_id in cancelled,
            model_loaded=warm,
            on_model_ready=lambda key=key: loaded.add(key),
        )
        cancelled.discard(job_id)


def _watch_parent() -> None:
    """End this process when the one named by ``DIFFUX2CT_PARENT_PID`` is gone (checked twice a second)."""
    try:
        parent = int(os.environ.get(PARENT_PID_VARIABLE, ""))
    except ValueError:
        return

    def watch() -> None:
        while process_alive(parent):
            time.sleep(PARENT_CHECK_INTERVAL_S)
        print(f"the process that started this worker ({parent}) is gone; exiting", file=sys.stderr, flush=True)
        os._exit(EXIT_PARENT_GONE)

    threading.Thread(target=watch, daemon=True).start()


USAGE = "usage: python -m DiffuX2CTLib.app.worker JOB.json | --serve [--idle-timeout SECONDS] | --probe"


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``python -m DiffuX2CTLib.app.worker``."""
    argv = sys.argv[1:] if argv is None else argv
    if argv == ["--probe"]:
        return probe()
    if argv[:1] == ["--serve"]:
        idle = None
        if argv[1:2] == ["--idle-timeout"] and len(argv) == 3:
            try:
                idle = float(argv[2]) if float(argv[2]) > 0 else None
            except ValueError:
                idle = -1.0
        if len(argv) not in (1, 3) or idle == -1.0:
            print(USAGE, file=sys.stderr)
            return 2
        return serve(idle)
    if len(argv) != 1:
        print(USAGE, file=sys.stderr)
        return 2
    return run(argv[0])


if __name__ == "__main__":
    _watch_parent()
    sys.exit(main())
