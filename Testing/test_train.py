"""Training runs: exact resume, atomic checkpoints, logs, DDP replicas in sync, and an overfit check."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch
from test_model import TINY

from DiffuX2CTLib.core import device as device_module
from DiffuX2CTLib.core.errors import InputError
from DiffuX2CTLib.diffusion.sampler import sample
from DiffuX2CTLib.diffusion.schedule import sampling_scheduler
from DiffuX2CTLib.model.network import DiffuX2CTNet
from DiffuX2CTLib.model.weights import load_model, save_model
from DiffuX2CTLib.training.samples import PhantomSource, SampleMaker
from DiffuX2CTLib.training.settings import TrainSettings
from DiffuX2CTLib.training.trainer import train


def _step_records(run) -> list[dict]:
    """The log's step lines (the run's start lines, which say what was chosen, left out)."""
    lines = (run / "log.jsonl").read_text(encoding="utf-8").splitlines()
    return [record for record in map(json.loads, lines) if "loss" in record]


def _checkpoint(folder):
    return torch.load(folder / "checkpoint.pt", weights_only=True)


FLOAT32_TOLERANCE = {"rtol": 1e-5, "atol": 1e-6}
"""How far two float32 training states may differ and still be "the same run": the last bits of a float32 sum
depend on the CPU's kernels (oneDNN picks other blockings and reduction orders on AMX than on AVX-512 machines),
which moved a resumed EMA by about 5e-7 on an Intel Xeon with AMX."""


def _within_one_half_step(a: torch.Tensor, b: torch.Tensor) -> bool:
    """Whether two half-precision tensors differ by at most one float16 step (2**-10 relative, 2**-24 at zero):
    float32 values a few 1e-7 apart round to neighbouring halves when they straddle a rounding boundary."""
    a, b = a.float(), b.float()
    step = torch.maximum(a.abs(), b.abs()) * 2.0**-10
    return bool(((a - b).abs() <= torch.clamp(step, min=2.0**-24)).all())


def _assert_same_state(a, b, what: str) -> None:
    """Nested dicts/lists of tensors and numbers are equal: float32 tensors to :data:`FLOAT32_TOLERANCE`, half
    tensors (the exported weights) to one float16 step, everything else exactly."""
    if isinstance(a, dict):
        assert set(a) == set(b), what
        for key in a:
            _assert_same_state(a[key], b[key], f"{what}.{key}")
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), what
        for i, (x, y) in enumerate(zip(a, b)):
            _assert_same_state(x, y, f"{what}[{i}]")
    elif isinstance(a, torch.Tensor):
        assert a.dtype == b.dtype and a.shape == b.shape, what
        if a.dtype == torch.float16:
            assert _within_one_half_step(a, b), what
        elif a.is_floating_point():
            assert torch.allclose(a, b, **FLOAT32_TOLERANCE), what
        else:
            assert torch.equal(a, b), what
    else:
        assert a == b, what


def test_the_state_comparison_tells_a_rounding_step_from_a_real_difference():
    """The tolerances above accept what differing CPU kernels produce and nothing more."""
    weights = torch.tensor([0.1, -2.5, 1e-3, 0.0])
    nudged = weights + torch.tensor([5e-7, -5e-7, 5e-9, 0.0])
    _assert_same_state({"w": weights}, {"w": nudged}, "float32")
    with pytest.raises(AssertionError):
        _assert_same_state({"w": weights}, {"w": weights + 1e-4}, "float32")
    half = weights.half()
    one_step_up = torch.nextafter(half, torch.full_like(half, 10.0))
    _assert_same_state({"w": half}, {"w": one_step_up}, "half")
    with pytest.raises(AssertionError):
        two_steps_up = torch.nextafter(one_step_up, torch.full_like(half, 10.0))
        _assert_same_state({"w": half}, {"w": two_steps_up}, "half")
    with pytest.raises(AssertionError):
        _assert_same_state({"w": half}, {"w": (half.float() * 1.01).half()}, "half")


@pytest.mark.parametrize("precision", ["float32", "bfloat16"])
def test_resume_after_a_stop_is_exact(tmp_path, precision):
    """An interrupted and resumed run ends where an uninterrupted one does: raw weights, EMA (the exported
    model), the EMA's own state, the optimiser's state and the exported file all agree; in either precision
    (the resumed half asks for ``auto`` and keeps the run's own). The guarantee checked is the one that holds on
    every CPU: the same data, steps and counters, float32 states equal to rounding, and the exported half-precision
    weights within one float16 step (the straight run makes its data in-process, the resumed one in a worker)."""
    straight = TrainSettings(
        out=str(tmp_path / "straight"), steps=4, grid_size=16, checkpoint_every=2, workers=0, precision=precision
    )
    train(straight, show_progress=False)
    interrupted = TrainSettings(
        out=str(tmp_path / "resumed"), steps=2, grid_size=16, checkpoint_every=2, workers=1, precision=precision
    )
    train(interrupted, show_progress=False)
    interrupted.steps, interrupted.precision = 4, "auto"
    train(interrupted, show_progress=False)
    a, b = _checkpoint(tmp_path / "straight"), _checkpoint(tmp_path / "resumed")
    assert a["step"] == b["step"] == 4
    for part in ("model", "ema", "ema_averager", "optimizer"):
        _assert_same_state(a[part], b[part], part)
    exported = [load_model(tmp_path / run / "model")[0].state_dict() for run in ("straight", "resumed")]
    _assert_same_state(exported[0], exported[1], "exported model")
    assert not torch.equal(
        a["ema"]["conditioner.ct_head.3.weight"], a["model"]["conditioner.ct_head.3.weight"]
    )  # the EMA is its own state
    log = _step_records(tmp_path / "resumed")
    assert [r["step"] for r in log] == [1, 2, 3, 4]
    assert (tmp_path / "resumed" / "loss.png").read_bytes()[:4] == b"\x89PNG"
    assert load_model(tmp_path / "resumed" / "model")[1]["training"]["steps"] == 4
    assert load_model(tmp_path / "resumed" / "model")[1]["training"]["settings"]["precision"] == precision


def test_a_resume_after_a_kill_forgets_the_steps_after_the_last_checkpoint(tmp_path):
    run = tmp_path / "run"
    train(TrainSettings(out=str(run), steps=2, grid_size=16, checkpoint_every=2, workers=0), show_progress=False)
    with open(run / "log.jsonl", "a", encoding="utf-8") as log:  # what a run killed during step 3 leaves behind
        log.write(json.dumps({"step": 3, "stage": "regression", "loss": 9.0}) + "\n")
    train(TrainSettings(out=str(run), steps=3, grid_size=16, checkpoint_every=2, workers=0), show_progress=False)
    records = _step_records(run)
    assert [r["step"] for r in records] == [1, 2, 3] and records[-1]["loss"] != 9.0


def test_resuming_with_settings_that_cannot_continue_the_run_is_a_clear_error(tmp_path):
    run = tmp_path / "run"
    train(TrainSettings(out=str(run), steps=2, grid_size=16, checkpoint_every=1), show_progress=False)
    with pytest.raises(InputError, match=r"run: the run is already at step 2; give --steps above that"):
        train(TrainSettings(out=str(run), steps=1, grid_size=16), show_progress=False)
    with pytest.raises(
        InputError, match=r"run: holds a regression run; train the diffusion stage into a new --out folder"
    ):
        train(TrainSettings(out=str(run), stage="diffusion", steps=3, grid_size=16), show_progress=False)
    with pytest.raises(InputError, match=r"run: the run's model has a 16\^3 grid; --grid 32 cannot resume it"):
        train(TrainSettings(out=str(run), steps=3, grid_size=32), show_progress=False)
    with pytest.raises(
        InputError, match=r"run: the run trains in float32; --precision bfloat16 would change its arithmetic"
    ):
        train(TrainSettings(out=str(run), steps=3, grid_size=16, precision="bfloat16"), show_progress=False)
    assert (
        train(TrainSettings(out=str(run), steps=2, grid_size=16), show_progress=False) == run / "model"
    )  # nothing to do
    assert len(_step_records(run)) == 2


def test_a_run_past_its_time_limit_stops_with_a_checkpoint_and_a_model_and_resumes(tmp_path):
    """A time limit stops the run at the first step past it (here the first, as the limit is a millisecond) with
    everything a resume needs; running again without the limit continues to the full count."""
    run = tmp_path / "run"
    settings = TrainSettings(
        out=str(run), steps=3, grid_size=16, checkpoint_every=100, workers=0, time_limit_minutes=1e-5
    )
    assert train(settings, show_progress=False) == run / "model"
    assert _checkpoint(run)["step"] == 1
    assert load_model(run / "model")[1]["training"]["steps"] == 1
    train(TrainSettings(out=str(run), steps=3, grid_size=16, checkpoint_every=100, workers=0), show_progress=False)
    assert _checkpoint(run)["step"] == 3
    assert [r["step"] for r in _step_records(run)] == [1, 2, 3]


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"steps": 0}, "steps must be a whole number of at least 1"),
        ({"batch": 0}, "batch must be"),
        ({"checkpoint_every": 0}, "checkpoint_every must be"),
        ({"seed": -5}, "seed must be a whole number from 0"),
        ({"learning_rate": -1.0}, "learning rate must be a positive number"),
        ({"learning_rate": float("nan")}, "learning rate must be a positive number"),
        ({"grid_size": 33}, "grid 33: grid_size 33 must be a multiple of 16"),
        ({"preset": "huge"}, "unknown preset 'huge'"),
        ({"stage": "both"}, "unknown training stage 'both'"),
        ({"workers": -1}, "workers must be 0 or more"),
        ({"time_limit_minutes": 0.0}, "time limit must be a positive number of minutes"),
        ({"precision": "float16"}, "unknown precision 'float16'"),
        ({"stage": "diffusion", "bone_weight": 0.5}, "the bone weight must be a number of at least 1, not 0.5"),
        ({"bone_weight": 3.0}, "--bone-weight weighs the diffusion stage's L_simple; the regression stage has none"),
        ({"lr_schedule": "linear"}, "unknown learning-rate schedule 'linear' \\(use constant, cosine\\)"),
    ],
)
def test_training_settings_are_checked_before_any_work(tmp_path, changes, message):
    with pytest.raises(InputError, match=message):
        TrainSettings(out=str(tmp_path / "never"), **changes)
    assert not (tmp_path / "never").exists()


def test_auto_precision_takes_bfloat16_only_where_the_device_computes_it_natively(monkeypatch):
    cpu = torch.device("cpu")
    if torch.cuda.is_available():  # the real check, before it is replaced below
        assert device_module.native_bfloat16(torch.device("cuda")) == torch.cuda.is_bf16_supported(
            including_emulation=False
        )
    monkeypatch.setattr(device_module, "native_bfloat16", lambda device: False)
    assert device_module.resolve_precision("auto", cpu) == "float32"
    assert device_module.resolve_precision("bfloat16", cpu) == "bfloat16"
    monkeypatch.setattr(device_module, "native_bfloat16", lambda device: True)
    assert device_module.resolve_precision("auto", cpu) == "bfloat16"
    assert device_module.resolve_precision("float32", cpu) == "float32"


def test_the_training_step_runs_in_the_chosen_precision_and_the_card_records_it(tmp_path):
    """bfloat16 autocast changes the losses a little (so it is in effect), and the model card names the
    precision the run resolved ``auto`` to."""
    losses = {}
    for precision in ("float32", "bfloat16"):
        out = tmp_path / precision
        train(TrainSettings(out=str(out), steps=2, grid_size=16, workers=0, precision=precision), show_progress=False)
        losses[precision] = [r["loss"] for r in _step_records(out)]
        card = json.loads((out / "model" / "config.json").read_text(encoding="utf-8"))
        assert card["training"]["settings"]["precision"] == precision
    assert losses["float32"] != losses["bfloat16"]
    assert np.allclose(losses["float32"], losses["bfloat16"], rtol=0.05)
    train(TrainSettings(out=str(tmp_path / "auto"), steps=1, grid_size=16, workers=0), show_progress=False)
    card = json.loads((tmp_path / "auto" / "model" / "config.json").read_text(encoding="utf-8"))
    assert card["training"]["settings"]["precision"] == device_module.resolve_precision("auto", torch.device("cpu"))


def test_the_paper_preset_is_the_128_cube_architecture():
    config = TrainSettings(out="x", preset="paper-128").new_model_config()
    assert (config.grid_size, config.field_of_view_mm / config.grid_size, config.unet_channels) == (
        128,
        2.5,
        (32, 64, 128, 256),
    )
    assert sum(p.numel() for p in DiffuX2CTNet(config).parameters()) == pytest.approx(11.6e6, rel=0.01)


def test_a_run_can_change_the_parametrisation_and_a_resume_keeps_it(tmp_path):
    torch.manual_seed(0)
    init = save_model(DiffuX2CTNet(TINY), tmp_path / "init", half=False)
    settings = TrainSettings(
        out=str(tmp_path / "v"),
        stage="diffusion",
        steps=1,
        checkpoint_every=1,
        init=str(init),
        prediction_type="v_prediction",
        residual_scale=5.0,
        perspective_planes=True,
        backprojection=True,
    )
    train(settings, show_progress=False)
    config = load_model(tmp_path / "v" / "model")[0].config
    assert (config.prediction_type, config.residual_scale, config.perspective_planes, config.backprojection) == (
        "v_prediction",
        5.0,
        True,
        True,
    )
    settings.steps, settings.prediction_type, settings.residual_scale = 2, None, None
    settings.perspective_planes = settings.backprojection = False
    train(settings, show_progress=False)
    config = load_model(tmp_path / "v" / "model")[0].config
    assert (
        config.prediction_type,
        config.residual_scale,
        config.perspective_planes,
        config.backprojection,
        load_model(tmp_path / "v" / "model")[1]["training"]["steps"],
    ) == ("v_prediction", 5.0, True, True, 2)


def test_a_bad_parametrisation_is_a_clear_error(tmp_path):
    init = save_model(DiffuX2CTNet(TINY), tmp_path / "init", half=False)
    with pytest.raises(InputError, match="residual_scale"):
        train(
            TrainSettings(out=str(tmp_path / "bad"), stage="diffusion", steps=1, init=str(init), residual_scale=-1.0),
            show_progress=False,
        )


def test_init_from_a_checkpoint_file_starts_from_its_ema_weights(tmp_path):
    train(
        TrainSettings(out=str(tmp_path / "reg"), steps=2, grid_size=16, checkpoint_every=2, workers=0),
        show_progress=False,
    )
    ema = _checkpoint(tmp_path / "reg")["ema"]
    train(
        TrainSettings(
            out=str(tmp_path / "diff"),
            stage="diffusion",
            steps=1,
            checkpoint_every=1,
            init=str(tmp_path / "reg" / "checkpoint.pt"),
            workers=0,
        ),
        show_progress=False,
    )
    started = _checkpoint(tmp_path / "diff")["model"]
    for name, value in ema.items():
        if name.startswith("conditioner."):  # frozen in the diffusion stage: exactly the EMA it started from
            assert torch.equal(started[name], value), name


def test_a_corrupted_checkpoint_is_a_clear_error(tmp_path):
    from DiffuX2CTLib.core.errors import InputError

    run = tmp_path / "run"
    train(TrainSettings(out=str(run), steps=1, grid_size=16, checkpoint_every=1), show_progress=False)
    data = (run / "checkpoint.pt").read_bytes()
    (run / "checkpoint.pt").write_bytes(data[: len(data) // 2])
    with pytest.raises(
        InputError, match=r"checkpoint.pt: unreadable training checkpoint .* delete it to start the run"
    ):
        train(TrainSettings(out=str(run), steps=2, grid_size=16, checkpoint_every=1), show_progress=False)
    (tmp_path / "mine.pt").write_bytes(data[: len(data) // 2])  # the user's own file as --init: never "delete it"
    with pytest.raises(InputError, match=r"mine.pt: unreadable training checkpoint .*; give a model folder or a run's"):
        train(TrainSettings(out=str(tmp_path / "new"), steps=1, grid_size=16, init=str(tmp_path / "mine.pt")))


def test_two_ddp_processes_hold_identical_weights(tmp_path):
    """Regression on a CT folder (its cache prepared once, by rank 0) with two views per volume, then diffusion on
    phantoms, each with two processes."""
    from DiffuX2CTLib.anatomy.phantom import generate_phantom
    from DiffuX2CTLib.imaging.geometry import VolumeGrid
    from DiffuX2CTLib.imaging.image_io import grid_image, write_image

    cts = tmp_path / "cts"
    cts.mkdir()
    grid = VolumeGrid(24, 10.0)
    for seed in (1, 2):
        write_image(grid_image(generate_phantom(seed, grid, "chest").numpy(), grid), cts / f"ct{seed}.nrrd")
    out = tmp_path / "ddp"
    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc_per_node",
        "2",
        "--master_port",
        "29517",
        "-m",
        "DiffuX2CTLib.cli",
        "train",
        "--out",
        str(out),
        "--grid",
        "16",
        "--steps",
        "3",
        "--checkpoint-every",
        "3",
        "--quiet",
        "--device",
        "cpu",
        "--workers",
        "0",
        "--data",
        str(cts),
        "--reuse",
        "2",
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    result = subprocess.run(command, capture_output=True, text=True, env=env, timeout=300, check=False)
    assert result.returncode == 0, result.stderr[-2000:]
    checks = [
        json.loads(line)
        for line in (out / "log.jsonl").read_text(encoding="utf-8").splitlines()
        if "replica_check" in line
    ]
    assert checks and checks[-1]["in_sync"] and len(checks[-1]["digests"]) == 2
    assert result.stdout.count("model exported") == 1  # said once, by rank 0
    assert json.loads((out / "ct-cache" / "manifest.json").read_text(encoding="utf-8"))  # one cache, both CTs in it
    # the diffusion stage on top of it, also in sync across the two processes
    diffusion = [
        *command[: command.index("--out")],
        "--out",
        str(tmp_path / "ddp-diffusion"),
        "--stage",
        "diffusion",
        "--init",
        str(out / "model"),
        "--steps",
        "2",
        "--checkpoint-every",
        "2",
        "--quiet",
        "--device",
        "cpu",
        "--workers",
        "0",
    ]
    result = subprocess.run(diffusion, capture_output=True, text=True, env=env, timeout=300, check=False)
    assert result.returncode == 0, result.stderr[-2000:]
    checks = [
        json.loads(line)
        for line in (tmp_path / "ddp-diffusion" / "log.jsonl").read_text(encoding="utf-8").splitlines()
        if "replica_check" in line
    ]
    assert checks and checks[-1]["in_sync"] and len(checks[-1]["digests"]) == 2


def _psnr(a: np.ndarray, b: np.ndarray) -> float:
    return float(10 * np.log10(4.0 / np.mean((a - b) ** 2)))


def test_tiny_model_overfits_one_phantom_better_than_the_mean_volume(tmp_path):
    """Both stages on one phantom: the sampled reconstruction must beat the mean-intensity volume clearly. The
    diffusion stage uses the bundled model's parametrisation (velocity, residual scale 5): with plain noise
    prediction, 400 steps left samples within 2.6 dB of the mean volume on an AVX2 CPU (float32), so the test
    did not hold on every machine; with it they lead by 7 dB there."""
    torch.manual_seed(0)
    init = save_model(DiffuX2CTNet(TINY), tmp_path / "init", half=False)
    regression = TrainSettings(
        out=str(tmp_path / "reg"), data="phantom:5", steps=150, checkpoint_every=150, init=str(init), learning_rate=2e-3
    )
    train(regression, show_progress=False)
    diffusion = TrainSettings(
        out=str(tmp_path / "diff"),
        stage="diffusion",
        data="phantom:5",
        steps=400,
        checkpoint_every=400,
        init=str(tmp_path / "reg" / "model"),
        learning_rate=2e-3,
        prediction_type="v_prediction",
        residual_scale=5.0,
    )
    net, _ = load_model(train(diffusion, show_progress=False))
    clean, radiographs = SampleMaker(TINY, PhantomSource(fixed_seed=5), seed=0).sample(10_000)
    volume = sample(
        net, radiographs[None], sampling_scheduler(net.config, "ddim", 10), generator=torch.Generator().manual_seed(0)
    )[0].numpy()
    truth = clean.numpy()
    mean_volume = np.full_like(truth, truth.mean())
    assert _psnr(volume, truth) > _psnr(mean_volume, truth) + 3.0


def test_the_command_line_passes_the_precision_and_schedule_and_refuses_an_unknown_precision(tmp_path, capsys):
    from DiffuX2CTLib.cli import main

    assert (
        main(
            [
                "train",
                "--out",
                str(tmp_path / "run"),
                "--steps",
                "1",
                "--grid",
                "16",
                "--workers",
                "0",
                "--precision",
                "float32",
                "--lr-schedule",
                "cosine",
                "--quiet",
            ]
        )
        == 0
    )
    card = json.loads((tmp_path / "run" / "model" / "config.json").read_text(encoding="utf-8"))
    assert card["training"]["settings"]["precision"] == "float32"
    assert card["training"]["settings"]["lr_schedule"] == "cosine"
    with pytest.raises(SystemExit):
        main(["train", "--out", str(tmp_path / "other"), "--precision", "half"])
    assert "--precision" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"learning_rate": 0.5}, r"the run trains at learning rate 0.0005; --lr 0.5 cannot continue it"),
        ({"batch": 2}, r"the run trains with batches of 1; --batch 2 cannot continue it"),
        ({"seed": 3}, r"the run draws its data and noise from seed 0; --seed 3 cannot continue it"),
        ({"data": "phantom:5"}, r"the run draws its samples from phantoms; --data phantom:5 cannot continue it"),
        ({"reuse": 2}, r"--reuse 2 cannot continue it"),
        (
            {"lr_schedule": "cosine"},
            r"the run follows the learning-rate schedule constant; --lr-schedule cosine cannot continue it",
        ),
    ],
)
def test_a_resume_that_would_change_the_data_noise_or_optimiser_is_refused(tmp_path, change, message):
    """The recorded settings stay true: a resumed run with another --lr, --batch, --seed or --data would train
    differently from what its checkpoint and model card say, so it is refused with what to do instead."""
    run = tmp_path / "run"
    train(TrainSettings(out=str(run), steps=1, grid_size=16, workers=0), show_progress=False)
    before = (run / "checkpoint.pt").read_bytes()
    with pytest.raises(InputError, match=message + r".*--init run/model"):
        train(TrainSettings(out=str(run), steps=2, grid_size=16, workers=0, **change), show_progress=False)
    assert (run / "checkpoint.pt").read_bytes() == before


def test_a_cosine_schedule_decays_the_learning_rate_to_zero_and_a_resume_continues_it(tmp_path):
    """Each step trains at the rate the half cosine gives for the steps done before it (so a four-step run trains at
    1, 0.85, 0.5 and 0.15 of --lr), and a run stopped by its time limit after one step and resumed trains at the
    same rates and ends in the same weights as a straight one; the card records the schedule. A constant run keeps
    --lr."""
    peak = 1e-3
    settings = TrainSettings(
        out=str(tmp_path / "straight"), steps=4, grid_size=16, checkpoint_every=2, workers=0, learning_rate=peak,
        lr_schedule="cosine",
    )  # fmt: skip
    train(settings, show_progress=False)
    expected = [peak * 0.5 * (1 + np.cos(np.pi * done / 4)) for done in range(4)]
    assert [r["lr"] for r in _step_records(tmp_path / "straight")] == pytest.approx(expected)
    resumed = dataclasses.replace(settings, out=str(tmp_path / "resumed"), time_limit_minutes=1e-5)
    train(resumed, show_progress=False)
    assert _checkpoint(tmp_path / "resumed")["step"] == 1
    train(dataclasses.replace(resumed, time_limit_minutes=None), show_progress=False)
    assert [r["lr"] for r in _step_records(tmp_path / "resumed")] == pytest.approx(expected)
    _assert_same_state(_checkpoint(tmp_path / "straight")["model"], _checkpoint(tmp_path / "resumed")["model"], "net")
    assert load_model(tmp_path / "straight" / "model")[1]["training"]["settings"]["lr_schedule"] == "cosine"
    constant = dataclasses.replace(settings, out=str(tmp_path / "constant"), steps=2, lr_schedule="constant")
    train(constant, show_progress=False)
    assert [r["lr"] for r in _step_records(tmp_path / "constant")] == [peak, peak]


def test_the_run_log_says_what_was_chosen_and_why(tmp_path):
    """With no flags a run picks its precision, samples per volume and data workers itself, and says so."""
    run = tmp_path / "run"
    train(TrainSettings(out=str(run), steps=1, grid_size=16, workers=0), show_progress=False)
    start = json.loads((run / "log.jsonl").read_text(encoding="utf-8").splitlines()[0])
    assert start["event"] == "start" and start["step"] == 0
    assert (start["precision"], start["reuse"], start["workers"]) == ("float32", 4, 0)  # conftest: no native bf16
    assert start["reuse_why"].startswith("automatic on cpu") and start["workers_why"] == "asked for"
    assert "bank of 64" in start["data"]
    settings = load_model(run / "model")[1]["training"]["settings"]
    assert settings["reuse"] == 4 and settings["phantom_bank"] == 64  # the card records the resolved choice


def test_the_phantom_bank_is_painted_before_the_first_step_and_reused_by_a_run_of_another_seed(
    tmp_path, painted_seeds, monkeypatch
):
    """A run paints its starting window up front (with all its threads, not on the data worker beside the step); a
    later run, whatever its seed, reads the same bank and paints nothing, and reading trains as painting did."""
    monkeypatch.setenv("DIFFUX2CT_CACHE", str(tmp_path / "cache"))
    first = TrainSettings(out=str(tmp_path / "a"), steps=2, grid_size=16, workers=0, reuse=2, phantom_bank=4)
    train(first, show_progress=False)
    assert len(painted_seeds) == 4 and len(list((tmp_path / "cache" / "bank").rglob("*.npy"))) == 4
    start = json.loads((tmp_path / "a" / "log.jsonl").read_text(encoding="utf-8").splitlines()[0])
    assert start["bank_painted"] == 4 and start["bank_painting_s"] >= 0
    train(dataclasses.replace(first, out=str(tmp_path / "b")), show_progress=False)
    train(dataclasses.replace(first, out=str(tmp_path / "c"), seed=5), show_progress=False)
    assert len(painted_seeds) == 4  # the later runs read the bank
    assert "bank_painted" not in json.loads((tmp_path / "c" / "log.jsonl").read_text(encoding="utf-8").splitlines()[0])
    for key, value in _checkpoint(tmp_path / "a")["model"].items():  # painting or reading: the same training
        assert torch.allclose(value, _checkpoint(tmp_path / "b")["model"][key], **FLOAT32_TOLERANCE), key


def test_sigterm_stops_a_run_with_a_checkpoint_of_the_steps_done(tmp_path):
    """What ``kill`` and job schedulers send: the run writes its checkpoint and model before it ends."""
    import signal
    import time

    out = tmp_path / "run"
    options = ["--grid", "16", "--steps", "100000", "--checkpoint-every", "100000", "--quiet", "--device", "cpu"]
    options += ["--workers", "0", "--phantom-bank", "2"]
    command = [sys.executable, "-m", "DiffuX2CTLib.cli", "train", "--out", str(out), *options]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and len(_step_records(out) if (out / "log.jsonl").exists() else []) < 2:
        time.sleep(0.5)
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=120)
    steps = len(_step_records(out))
    assert steps >= 2 and "interrupted" in stderr
    assert _checkpoint(out)["step"] >= 2 and load_model(out / "model")[1]["training"]["steps"] >= 2


def test_sigterm_to_the_whole_process_group_stops_a_run_with_data_workers_cleanly(tmp_path):
    """What ``timeout``, ``kill -- -PGID`` and job schedulers send to every process of a run, the data workers too:
    the run writes its checkpoint and ends with its one line, not with a worker's death as a traceback."""
    import os
    import signal
    import time

    out = tmp_path / "run"
    options = ["--grid", "16", "--steps", "100000", "--checkpoint-every", "100000", "--quiet", "--device", "cpu"]
    options += ["--workers", "1", "--phantom-bank", "2"]
    command = [sys.executable, "-m", "DiffuX2CTLib.cli", "train", "--out", str(out), *options]
    process = subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True
    )
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and len(_step_records(out) if (out / "log.jsonl").exists() else []) < 2:
        time.sleep(0.5)
    os.killpg(process.pid, signal.SIGTERM)
    _, stderr = process.communicate(timeout=120)
    assert "interrupted" in stderr and "Traceback" not in stderr, stderr[-2000:]
    assert _checkpoint(out)["step"] >= 2


def test_snapshots_keep_the_model_of_every_n_steps_and_may_change_on_resume(tmp_path):
    run = tmp_path / "run"
    train(
        TrainSettings(out=str(run), steps=4, grid_size=16, checkpoint_every=3, workers=0, snapshot_every=2),
        show_progress=False,
    )
    assert sorted(p.name for p in (run / "snapshots").iterdir()) == ["step-2", "step-4"]
    net2, card2 = load_model(run / "snapshots" / "step-2")
    net4, card4 = load_model(run / "snapshots" / "step-4")
    assert (card2["training"]["steps"], card4["training"]["steps"]) == (2, 4)
    latest = load_model(run / "model")[0].state_dict()
    assert all(torch.equal(latest[k], v) for k, v in net4.state_dict().items())  # step 4 is the latest model
    assert any(not torch.equal(latest[k], v) for k, v in net2.state_dict().items())  # step 2 kept as it was
    train(TrainSettings(out=str(run), steps=5, grid_size=16, checkpoint_every=3, workers=0), show_progress=False)
    assert sorted(p.name for p in (run / "snapshots").iterdir()) == ["step-2", "step-4"]  # none asked: none added


def test_snapshot_every_must_be_a_whole_number_of_at_least_one(tmp_path):
    with pytest.raises(InputError, match=r"snapshot_every must be a whole number of at least 1 \(or None\), not 0"):
        TrainSettings(out=str(tmp_path / "run"), snapshot_every=0)
