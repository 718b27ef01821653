"""The persistent background worker as the scene logic drives it: one warm worker for a session's jobs, cancel
and crash with it, and a worker behind a launcher (as PythonSlicer is) that leaves no process behind."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import slicer
import vtk
from slicer_scene import SAMPLE_DATA, CoreApp

from DiffuX2CTLib.app import session as session_module
from DiffuX2CTLib.app.runner import (
    PARENT_PID_VARIABLE,
    SubprocessRunner,
    process_alive,
    wait_until_gone,
    worker_environment,
)
from DiffuX2CTLib.app.scene import JobState, SceneLogic
from DiffuX2CTLib.app.session import crash_message
from DiffuX2CTLib.core.errors import InputError

ROOT = Path(__file__).resolve().parents[1]
LAUNCHER = Path(__file__).with_name("stand_in_launcher.py")
QUICK = {"method": "regression"}


class LauncherRunner(SubprocessRunner):
    """Starts every command behind the stand-in launcher, as Slicer's PythonSlicer does."""

    def start(self, command, env=None, cwd=None):
        return super().start([sys.executable, str(LAUNCHER), *command], env, cwd)


class ScriptRunner(SubprocessRunner):
    """Starts a stand-in worker script instead of the real worker (optionally behind the launcher)."""

    def __init__(self, script: Path, launcher: bool = False) -> None:
        self.script, self.launcher = script, launcher

    def start(self, command, env=None, cwd=None):
        if "--serve" not in command:
            return super().start(command, env, cwd)
        prefix = [sys.executable, str(LAUNCHER)] if self.launcher else []
        return super().start([*prefix, sys.executable, str(self.script)], env, cwd)


def _fake_worker(tmp_path: Path, after_run: str) -> Path:
    """A serving worker that says ready, reads one run command, reports step 1 and then does ``after_run``."""
    script = tmp_path / "fake_worker.py"
    script.write_text(
        textwrap.dedent(f"""
        import json, os, signal, sys, time
        print(json.dumps({{"event": "ready", "pid": os.getpid()}}), flush=True)
        job = json.loads(sys.stdin.readline())["id"]
        memory = {{"rss_gib": 7.5, "available_gib": 0.1, "total_gib": 8.0, "low": True}}
        progress = {{"event": "progress", "id": job, "step": 1, "total": 20, "eta_s": 9, "memory": memory}}
        print(json.dumps(progress), flush=True)
        {after_run}
    """)
    )
    return script


@pytest.fixture()
def app() -> CoreApp:
    app = CoreApp()
    app.ap = app.load_volume(SAMPLE_DATA / "ap.nrrd", "AP")
    app.lateral = app.load_volume(SAMPLE_DATA / "lateral.nrrd", "Lateral")
    return app


@pytest.fixture()
def logics():
    """SceneLogics made by a test; their workers are ended after it."""
    made: list[SceneLogic] = []

    def make(app: CoreApp, **kwargs) -> SceneLogic:
        made.append(SceneLogic(app.scene, app.app_logic, **kwargs))
        return made[-1]

    yield make
    for logic in made:
        logic.shutdown()


def _wait_for_step(job, step: int = 1, timeout_s: float = 120.0) -> None:
    deadline = time.monotonic() + timeout_s
    while job.poll().step < step and job.status.state == JobState.RUNNING and time.monotonic() < deadline:
        time.sleep(0.05)
    assert job.status.state == JobState.RUNNING and job.status.step >= step, job.status


def _blank(app: CoreApp):
    node = slicer.vtkMRMLScalarVolumeNode()
    node.SetName("Blank")
    image = vtk.vtkImageData()
    image.SetDimensions(128, 128, 1)
    image.AllocateScalars(vtk.VTK_FLOAT, 1)
    image.GetPointData().GetScalars().Fill(7.0)
    node.SetAndObserveImageData(image)
    app.scene.AddNode(node)
    return node


# -- one warm worker per session -------------------------------------------------------------------------------
def test_two_reconstructions_in_a_row_reuse_one_worker_and_the_second_skips_start_up(app, logics):
    logic = logics(app)
    first = logic.start(app.ap, app.lateral, **QUICK)
    first.wait(interval_s=0.05)
    second = logic.start(app.ap, app.lateral, steps=2, seed=4)
    second.wait(interval_s=0.05)
    assert first.worker_pid is not None and second.worker_pid == first.worker_pid and process_alive(first.worker_pid)
    assert first.stages == ["loading model"] and second.stages == []
    assert logic.session.starts == 1
    assert second.result.ct_node.GetAttribute("DiffuX2CT.steps") == "2"


def test_a_preloaded_worker_skips_start_up_on_the_first_job(app, logics):
    """With "Load the model when the module opens" the panel preloads: the worker loads the model before any job."""
    logic = logics(app)
    logic.preload(device="cpu")
    deadline = time.monotonic() + 120
    while not logic.session.preloaded and logic.session.alive() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert logic.session.preloaded
    job = logic.start(app.ap, app.lateral, device="cpu", **QUICK)
    job.wait(interval_s=0.05)
    assert job.stages == [] and logic.session.starts == 1


def test_the_worker_keeps_serving_after_a_job_fails_on_bad_input(app, logics):
    logic = logics(app)
    failed = logic.start(_blank(app), app.lateral, **QUICK)
    with pytest.raises(InputError, match="constant"):
        failed.wait(interval_s=0.05)
    assert failed.status.error_kind == "bad_input"
    done = logic.start(app.ap, app.lateral, **QUICK)
    done.wait(interval_s=0.05)
    assert done.worker_pid == failed.worker_pid and logic.session.starts == 1


def _cancel_and_poll(job, timeout_s: float = 120.0) -> tuple[float, float]:
    """Cancel as the panel does: the call returns at once, then polls until the job ended. Returns the seconds
    the cancel call took and the seconds until the job ended."""
    started = time.monotonic()
    job.cancel()
    returned = time.monotonic() - started
    while job.poll().state == JobState.CANCELLING:
        assert time.monotonic() - started < timeout_s, job.status
        time.sleep(0.05)
    return returned, time.monotonic() - started


def test_cancel_stops_the_job_and_the_worker_stays_warm(app, logics, monkeypatch):
    monkeypatch.setattr(session_module, "CANCEL_GRACE_S", 60.0)  # one step may take seconds on a busy machine
    logic = logics(app)
    before = app.node_ids()
    job = logic.start(app.ap, app.lateral, steps=200)
    _wait_for_step(job)
    returned, ended = _cancel_and_poll(job)
    assert returned < 0.5 and ended < session_module.CANCEL_GRACE_S
    assert job.status.state == JobState.CANCELLED and job.status.message == "cancelled"
    assert app.node_ids() == before and not job._workdir.exists()
    assert process_alive(job.worker_pid)
    again = logic.start(app.ap, app.lateral, **QUICK)
    again.wait(interval_s=0.05)
    assert again.worker_pid == job.worker_pid and again.stages == []


def test_a_cancel_while_the_model_loads_returns_at_once_and_keeps_the_worker(app, logics, tmp_path):
    """Issue 32 point 6: the cancel waited on the GUI thread until the worker answered (up to 5 s); now it is sent
    and the panel's timer polls until the worker says the job stopped (here after 2 s of "loading")."""
    script = _fake_worker(
        tmp_path,
        """command = json.loads(sys.stdin.readline())
        time.sleep(2.0)  # loading the model: the cancel is only seen afterwards
        print(json.dumps({"event": "cancelled", "id": command["id"]}), flush=True)
        time.sleep(600)""",
    )
    logic = logics(app, runner=ScriptRunner(script))
    job = logic.start(app.ap, app.lateral, **QUICK)
    _wait_for_step(job)
    returned, ended = _cancel_and_poll(job)
    assert returned < 0.5 and 1.5 < ended < session_module.CANCEL_GRACE_S
    assert job.status.state == JobState.CANCELLED and job.status.message == "cancelled"
    assert logic.session.alive() and logic.job is None


def test_a_model_or_device_change_restarts_the_worker(app, logics):
    logic = logics(app)
    first = logic.start(app.ap, app.lateral, device="auto", **QUICK)
    first.wait(interval_s=0.05)
    pid = first.worker_pid
    second = logic.start(app.ap, app.lateral, device="cpu", **QUICK)
    second.wait(interval_s=0.05)
    assert second.worker_pid != pid and wait_until_gone(pid, 5.0)
    assert second.stages == ["loading model"] and "ended unexpectedly" not in second.status.message


def test_an_idle_worker_exits_and_the_next_job_starts_a_new_one_quietly(app, logics):
    logic = logics(app, idle_timeout_s=1.0)
    first = logic.start(app.ap, app.lateral, **QUICK)
    first.wait(interval_s=0.05)
    assert wait_until_gone(first.worker_pid, 10.0)
    second = logic.start(app.ap, app.lateral, **QUICK)
    second.wait(interval_s=0.05)
    assert second.worker_pid != first.worker_pid and second.note == ""


def test_changing_the_idle_time_reaches_a_running_worker(app, logics):
    logic = logics(app, idle_timeout_s=None)
    job = logic.start(app.ap, app.lateral, **QUICK)
    job.wait(interval_s=0.05)
    time.sleep(1.0)
    assert process_alive(job.worker_pid)  # no idle limit: it waits for the next job
    logic.session.set_idle_timeout(0.5)  # the panel's "Keep model loaded" changed
    assert wait_until_gone(job.worker_pid, 10.0)


def test_a_crashed_worker_is_restarted_with_the_next_job_and_the_status_says_so(app, logics):
    logic = logics(app)
    before = app.node_ids()
    job = logic.start(app.ap, app.lateral, steps=200)
    _wait_for_step(job)
    os.kill(job.worker_pid, signal.SIGKILL)
    with pytest.raises(
        InputError, match=r"exit code -9 \(it may have run out of memory\).*new background process starts with the next"
    ):
        job.wait(interval_s=0.05)
    assert app.node_ids() == before and not job._workdir.exists()
    again = logic.start(app.ap, app.lateral, **QUICK)
    again.wait(interval_s=0.05)
    assert again.worker_pid != job.worker_pid and logic.session.starts == 2
    assert "previous one had ended unexpectedly (exit code -9)" in again.status.message


def test_a_job_that_does_not_stop_in_time_is_ended_with_its_worker_at_the_deadline(app, logics, tmp_path, monkeypatch):
    monkeypatch.setattr(session_module, "CANCEL_GRACE_S", 1.0)
    script = _fake_worker(tmp_path, "signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(600)")
    logic = logics(app, runner=ScriptRunner(script, launcher=True))
    job = logic.start(app.ap, app.lateral, **QUICK)
    _wait_for_step(job)
    pid, launcher = job.worker_pid, logic.session.process.pid
    started = time.monotonic()
    job.cancel()
    assert time.monotonic() - started < 0.5 and job.status.state == JobState.CANCELLING and not job.finished
    with pytest.raises(InputError, match="still stopping"):
        logic.start(app.ap, app.lateral, **QUICK)
    returned, ended = _cancel_and_poll(job, timeout_s=10.0)  # a second cancel changes nothing
    assert returned < 0.5 and ended >= 1.0
    assert job.status.state == JobState.CANCELLED and "did not stop in time and was ended" in job.status.message
    assert wait_until_gone(pid, 5.0) and wait_until_gone(launcher, 5.0)  # SIGKILL was sent; the kernel ends them
    assert logic.session.process is None and logic.job is None  # the next job starts a new worker


# -- behind Slicer's launcher ------------------------------------------------------------------------------------
def test_ending_the_session_behind_a_launcher_leaves_no_process_of_the_job(app, logics):
    logic = logics(app, runner=LauncherRunner())
    job = logic.start(app.ap, app.lateral, steps=200)
    _wait_for_step(job)
    worker, launcher = job.worker_pid, logic.session.process.pid
    assert worker != launcher and process_alive(worker)
    logic.shutdown()  # module cleanup / scene close: cancel, then end the worker
    assert job.status.state == JobState.CANCELLED
    assert wait_until_gone(worker, 5.0) and wait_until_gone(launcher, 5.0)


def test_a_worker_killed_behind_the_launcher_reads_as_a_memory_problem(app, logics, tmp_path):
    script = _fake_worker(tmp_path, "os.kill(os.getpid(), signal.SIGKILL)")
    logic = logics(app, runner=ScriptRunner(script, launcher=True))
    job = logic.start(app.ap, app.lateral, **QUICK)
    with pytest.raises(InputError) as failure:
        job.wait(interval_s=0.05)
    message = str(failure.value)
    assert "exit code 1 (Slicer's launcher reports that the Python process it started crashed or was killed)" in message
    assert "running low on memory (0.1 GiB of 8.0 GiB free at its last report, using 7.5 GiB)" in message
    assert "exit abnormally" not in message


def test_crash_messages_recognise_the_launcher_and_signals():
    launcher_tail = "loading\n[/slicer/bin/python-real] exit abnormally - Report the problem."
    assert crash_message(1, launcher_tail, None).endswith("crashed or was killed) (it may have run out of memory)")
    assert (
        crash_message(1, "ValueError: x", None)
        == "the reconstruction process ended unexpectedly with exit code 1: ValueError: x"
    )
    assert "(it may have run out of memory)" in crash_message(137, "", None)
    assert "memory" not in crash_message(139, "Fatal error", {"low": False})


def test_the_worker_exits_when_the_process_that_started_it_is_gone(tmp_path):
    parent = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    env = worker_environment(str(ROOT))
    env[PARENT_PID_VARIABLE] = str(parent.pid)
    worker = subprocess.Popen(
        [sys.executable, str(LAUNCHER), sys.executable, "-m", "DiffuX2CTLib.app.worker", "--serve"],
        env=env,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        pid = json.loads(worker.stdout.readline())["pid"]
        assert process_alive(pid)
        parent.kill()
        parent.wait()
        assert wait_until_gone(pid, 10.0)
        assert worker.wait(10) == 3  # EXIT_PARENT_GONE, passed on by the launcher
    finally:
        parent.kill()
        worker.kill()


# -- the probe runs like a job -----------------------------------------------------------------------------------
def test_the_probe_runs_in_the_background_through_the_runner(app, logics):
    started: list[list[str]] = []

    class Recording(SubprocessRunner):
        def start(self, command, env=None, cwd=None):
            started.append(command)
            return super().start(command, env, cwd)

    probe = logics(app, runner=Recording()).start_probe()
    assert started and started[0][-1] == "--probe"
    assert probe.poll() is None  # returns at once while the process starts
    report = probe.wait()
    assert report["missing"] == [] and isinstance(report["cuda"], bool)


def test_a_probe_that_does_not_answer_in_time_is_a_clear_error(app, logics, tmp_path):
    class Silent(SubprocessRunner):
        def start(self, command, env=None, cwd=None):
            return super().start([sys.executable, "-c", "import time; time.sleep(60)"], env, cwd)

    probe = logics(app, runner=Silent()).start_probe(timeout_s=0.5)
    with pytest.raises(InputError, match="did not answer in time"):
        probe.wait()


# -- a bare SceneLogic(scene), as a script would make it ----------------------------------------------------------
BARE_SCRIPT = """
import sys
import slicer
from DiffuX2CTLib.app import result_placement, scene as scene_module
if sys.argv[1] == "unregistered":
    result_placement.register_segmentation_converters = lambda: None
scene = slicer.vtkMRMLScene()
nodes = []
for view in ("ap", "lateral"):
    node = slicer.vtkMRMLScalarVolumeNode()
    storage = slicer.vtkMRMLVolumeArchetypeStorageNode()
    storage.SetFileName(sys.argv[2] + "/" + view + ".nrrd")
    storage.ReadData(node)
    scene.AddNode(node)
    nodes.append(node)
logic = scene_module.SceneLogic(scene)
job = logic.start(*nodes, method="regression")
result = job.wait(interval_s=0.05)
segments = result.segmentation_node.GetSegmentation().GetNumberOfSegments() if result.segmentation_node else None
print(repr((job.status.state.value, result.ct_node.GetScene() is scene, segments, job.status.message)))
logic.shutdown()
"""


@pytest.mark.parametrize("converters", ["registered", "unregistered"])
def test_a_bare_scene_logic_delivers_the_ct_and_says_what_is_missing(converters):
    """Without Slicer's Segmentations logic (a fresh process), the converters are registered; where they still
    are not, the CT arrives and the status names what is missing instead of failing the run."""
    out = subprocess.run(
        [sys.executable, "-c", BARE_SCRIPT, converters, str(SAMPLE_DATA)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
    ).stdout
    state, in_scene, segments, message = eval(out.strip().splitlines()[-1])  # our own repr
    assert state == "done" and in_scene
    if converters == "registered":
        assert segments == 1 and "segmentation" not in message
    else:
        assert segments is None
        assert (
            "the bone segmentation was not made: the bone mask could not be stored in the segmentation "
            "(no segmentation converter rules are registered" in message
        )


def test_a_serving_worker_answers_a_malformed_job_and_keeps_serving():
    """Bad lines and a wrongly typed job end in one bad_input event for that job; the worker stays up."""
    worker = subprocess.Popen(
        [sys.executable, "-m", "DiffuX2CTLib.app.worker", "--serve"],
        cwd=ROOT,
        env=worker_environment(str(ROOT)),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert json.loads(worker.stdout.readline())["event"] == "ready"
        worker.stdin.write(
            "not json\n"
            + json.dumps(
                {
                    "command": "run",
                    "id": 7,
                    "job": {"ap": "a", "lateral": "b", "output_dir": "c", "options": {"check_inputs": "false"}},
                }
            )
            + "\n"
        )
        worker.stdin.flush()
        event = json.loads(worker.stdout.readline())
        assert event == {
            "event": "error",
            "id": 7,
            "kind": "bad_input",
            "message": "job file: options.check_inputs must be true or false, got the string 'false'",
        }
        worker.stdin.write(json.dumps({"command": "run", "id": 8, "job": "nonsense"}) + "\n")
        worker.stdin.flush()
        event = json.loads(worker.stdout.readline())
        assert event["id"] == 8 and event["kind"] == "bad_input"
        worker.stdin.write(json.dumps({"command": "exit"}) + "\n")
        worker.stdin.flush()
        assert worker.wait(30) == 0
    finally:
        worker.kill()


def test_a_missing_python_is_a_clear_error_for_the_job_and_the_probe(app, tmp_path):
    logic = SceneLogic(app.scene, app.app_logic, python_executable=str(tmp_path / "no-such-python"))
    with pytest.raises(InputError, match="could not start DiffuX2CT's background process with .*no-such-python"):
        logic.start(app.ap, app.lateral, **QUICK)
    assert logic.job is None
    with pytest.raises(InputError, match="could not start DiffuX2CT's background process"):
        logic.start_probe()
