"""The background worker's promises: exit code 0 only with a ``done`` line, one ``error`` event of the right kind
for every failure (bad input, out of memory, internal), and a probe that reports this Python truthfully."""

from __future__ import annotations

import importlib.util
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import DiffuX2CTLib.inference.reconstruct as reconstruct
from DiffuX2CTLib.app import worker
from DiffuX2CTLib.app.protocol import JobSpec
from DiffuX2CTLib.inference.options import ReconstructionOptions

SAMPLE = Path(__file__).resolve().parent.parent / "Resources" / "SampleData"
ROOT = Path(__file__).resolve().parent.parent


def _job(tmp_path: Path, model: Path | None, ap: Path = SAMPLE / "ap.nrrd") -> Path:
    options = ReconstructionOptions(method="regression", device="cpu")
    return JobSpec(
        str(ap), str(SAMPLE / "lateral.nrrd"), str(tmp_path / "out"), str(model) if model else None, options
    ).write(tmp_path / "job.json")


def _events(out: str) -> list[dict]:
    return [json.loads(line) for line in out.strip().splitlines()]


def test_a_successful_job_exits_0_with_done_as_its_last_line(tmp_path, tiny_model, capsys):
    assert worker.main([str(_job(tmp_path, tiny_model))]) == 0
    events = _events(capsys.readouterr().out)
    assert events[-1]["event"] == "done" and [e["event"] for e in events].count("error") == 0
    assert Path(events[-1]["outputs"]["ct"]).is_file()


def _raise(error: BaseException):
    def fail(*args, **kwargs):
        raise error

    return fail


@pytest.mark.parametrize(
    ("error", "kind", "message"),
    [
        (
            MemoryError("cannot allocate 9 GiB"),
            "out_of_memory",
            "out of memory (cannot allocate 9 GiB); try the CPU, fewer samples or a smaller model",
        ),
        (
            torch.OutOfMemoryError("CUDA out of memory"),
            "out_of_memory",
            "out of memory (CUDA out of memory); try the CPU",
        ),
        (ZeroDivisionError("division by zero"), "internal", "division by zero"),
        (KeyError(), "internal", "KeyError"),
    ],
)
def test_every_failure_is_one_error_event_and_a_nonzero_exit(tmp_path, capsys, monkeypatch, error, kind, message):
    monkeypatch.setattr(reconstruct, "reconstruct_pair", _raise(error))
    code = worker.main([str(_job(tmp_path, None))])
    captured = capsys.readouterr()
    events = _events(captured.out)
    assert code == worker.EXIT_FAILED
    assert [e["event"] for e in events] == ["progress", "error"]
    assert events[-1]["kind"] == kind and events[-1]["message"].startswith(message)
    assert ("Traceback" in captured.err) == (kind == "internal")  # internal errors keep their traceback in the log


def test_the_worker_process_exits_nonzero_after_an_error_event(tmp_path):
    """The exit code as the scene's runner sees it: a separate process on a bad input."""
    blank = tmp_path / "blank.png"
    blank.write_bytes(b"not a png")
    job = _job(tmp_path, None, ap=blank)
    result = subprocess.run(
        [sys.executable, "-m", "DiffuX2CTLib.app.worker", str(job)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    events = _events(result.stdout)
    assert events[-1]["event"] == "error" and events[-1]["kind"] == "bad_input" and "blank.png" in events[-1]["message"]
    assert result.returncode == worker.EXIT_FAILED


def test_probe_reports_this_python_and_its_packages(capsys, monkeypatch):
    assert worker.main(["--probe"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report == {
        "event": "probe",
        "missing": [],
        "outdated": [],
        "torch": torch.__version__,
        "cuda": torch.cuda.is_available(),
        "gpu_name": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "python": sys.executable,
    }
    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name in ("monai", "safetensors") else real(name, *a)
    )
    assert worker.main(["--probe"]) == 0
    assert json.loads(capsys.readouterr().out)["missing"] == ["monai", "safetensors"]


def _installed_versions(monkeypatch, **versions: str) -> None:
    """Pretend these distributions are installed in these versions (their metadata; nothing is imported)."""
    import importlib.metadata

    real = importlib.metadata.version
    monkeypatch.setattr(importlib.metadata, "version", lambda name: versions.get(name) or real(name))


def test_the_probe_reports_packages_older_than_required(capsys, monkeypatch):
    """Issue 32 point 4: presence is not enough; MONAI 1.3 or torch 2.1 break later with a confusing error."""
    _installed_versions(monkeypatch, monai="1.3.2", torch="2.1.0+cu121")
    assert worker.main(["--probe"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["missing"] == []
    assert report["outdated"] == [
        {"name": "torch", "installed": "2.1.0+cu121", "required": ">=2.2"},
        {"name": "monai", "installed": "1.3.2", "required": ">=1.4"},
    ]


def test_a_job_on_an_outdated_package_is_a_missing_dependency_error(tmp_path, capsys, monkeypatch):
    _installed_versions(monkeypatch, monai="1.3.2")
    assert worker.main([str(_job(tmp_path, None))]) == worker.EXIT_FAILED
    event = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert event["kind"] == "missing_dependency" and event["missing"] == ["monai"]
    assert "monai 1.3.2" in event["message"] and "monai>=1.4" in event["message"]


def test_version_checks_read_local_builds_and_pre_releases():
    from DiffuX2CTLib.app.requirements import satisfies

    assert satisfies("2.3.0+cu121", ">=2.2") and satisfies("2.6.0.dev20250101", ">=2.2") and satisfies("1.4.0", ">=1.4")
    assert not satisfies("2.1.2", ">=2.2") and not satisfies("1.3.2", ">=1.4")


def test_the_worker_requirements_are_those_of_pyproject():
    import tomllib

    from DiffuX2CTLib.app.requirements import WORKER_REQUIREMENTS

    declared = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]["dependencies"]
    by_name = {re.match(r"[A-Za-z0-9_.-]+", requirement).group(0): requirement for requirement in declared}
    for name, requirement in WORKER_REQUIREMENTS.items():
        assert by_name[name] == requirement, name
    assert set(by_name) - set(WORKER_REQUIREMENTS) == {"tqdm", "matplotlib"}  # the worker never imports those


def test_wrong_arguments_print_usage_and_exit_2(capsys):
    assert worker.main([]) == 2 and worker.main(["a.json", "b.json"]) == 2
    assert capsys.readouterr().err.count("usage: python -m DiffuX2CTLib.app.worker") == 2
