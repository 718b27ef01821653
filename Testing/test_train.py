"""Training runs: exact resume, atomic checkpoints, logs, DDP replicas in sync, and an overfit check."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch
from test_model import TINY

from DiffuX2CTLib.data.io import InputError
from DiffuX2CTLib.diffusion import sample
from DiffuX2CTLib.model import DiffuX2CTNet
from DiffuX2CTLib.modelfile import load_model, save_model
from DiffuX2CTLib.train import TrainingData, TrainSettings, train


def _checkpoint(folder):
    return torch.load(folder / "checkpoint.pt", weights_only=True)


def test_resume_after_a_stop_is_exact(tmp_path):
    straight = TrainSettings(out=str(tmp_path / "straight"), steps=4, grid_size=16, checkpoint_every=2)
    train(straight, show_progress=False)
    interrupted = TrainSettings(out=str(tmp_path / "resumed"), steps=2, grid_size=16, checkpoint_every=2)
    train(interrupted, show_progress=False)
    interrupted.steps = 4
    train(interrupted, show_progress=False)
    a, b = _checkpoint(tmp_path / "straight"), _checkpoint(tmp_path / "resumed")
    assert a["step"] == b["step"] == 4
    for name in a["model"]:
        assert torch.allclose(a["model"][name], b["model"][name], atol=1e-6), name
    log = [json.loads(line) for line in (tmp_path / "resumed" / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log] == [1, 2, 3, 4]
    assert (tmp_path / "resumed" / "loss.png").read_bytes()[:4] == b"\x89PNG"
    assert load_model(tmp_path / "resumed" / "model")[1]["training"]["steps"] == 4


def test_a_run_can_change_the_parametrisation_and_a_resume_keeps_it(tmp_path):
    torch.manual_seed(0)
    init = save_model(DiffuX2CTNet(TINY), tmp_path / "init", half=False)
    settings = TrainSettings(out=str(tmp_path / "v"), stage="diffusion", steps=1, checkpoint_every=1, init=str(init), prediction_type="v_prediction", residual_scale=5.0)
    train(settings, show_progress=False)
    config = load_model(tmp_path / "v" / "model")[0].config
    assert (config.prediction_type, config.residual_scale) == ("v_prediction", 5.0)
    settings.steps, settings.prediction_type, settings.residual_scale = 2, None, None
    train(settings, show_progress=False)
    config = load_model(tmp_path / "v" / "model")[0].config
    assert (config.prediction_type, config.residual_scale, load_model(tmp_path / "v" / "model")[1]["training"]["steps"]) == ("v_prediction", 5.0, 2)


def test_a_bad_parametrisation_is_a_clear_error(tmp_path):
    init = save_model(DiffuX2CTNet(TINY), tmp_path / "init", half=False)
    with pytest.raises(InputError, match="residual_scale"):
        train(TrainSettings(out=str(tmp_path / "bad"), stage="diffusion", steps=1, init=str(init), residual_scale=-1.0), show_progress=False)


def test_a_corrupted_checkpoint_is_a_clear_error(tmp_path):
    from DiffuX2CTLib.data.io import InputError

    run = tmp_path / "run"
    train(TrainSettings(out=str(run), steps=1, grid_size=16, checkpoint_every=1), show_progress=False)
    data = (run / "checkpoint.pt").read_bytes()
    (run / "checkpoint.pt").write_bytes(data[: len(data) // 2])
    with pytest.raises(InputError, match=r"checkpoint.pt: unreadable training checkpoint .* delete it to start over"):
        train(TrainSettings(out=str(run), steps=2, grid_size=16, checkpoint_every=1), show_progress=False)


def test_training_data_is_a_pure_function_of_the_index_and_holds_out_test_seeds():
    data = TrainingData(TINY, "phantoms", seed=0)
    a, b = data.sample(3), data.sample(3)
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    assert a[0].shape == (1, 16, 16, 16) and a[1].shape == (2, 16, 16)
    assert a[0].min() >= -1 and a[0].max() <= 1 and a[1].min() >= 0 and a[1].max() <= 1


def test_folder_of_cts_is_training_data(tmp_path, phantom_ct):
    from DiffuX2CTLib.data.io import write_image

    write_image(phantom_ct, tmp_path / "cts" / "one.nii.gz")
    clean, radiographs = TrainingData(TINY, str(tmp_path / "cts"), seed=0).batch(0, 2)
    assert clean.shape == (2, 1, 16, 16, 16) and radiographs.shape == (2, 2, 16, 16)
    from DiffuX2CTLib.data.io import InputError

    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="empty: no CT volumes found"):
        TrainingData(TINY, str(tmp_path / "empty"), seed=0)


def test_two_ddp_processes_hold_identical_weights(tmp_path):
    out = tmp_path / "ddp"
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", "29517",
               "-m", "DiffuX2CTLib.cli", "train", "--out", str(out), "--grid", "16", "--steps", "3", "--checkpoint-every", "3", "--quiet", "--device", "cpu"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    result = subprocess.run(command, capture_output=True, text=True, env=env, timeout=300, check=False)
    assert result.returncode == 0, result.stderr[-2000:]
    checks = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines() if "replica_check" in line]
    assert checks and checks[-1]["in_sync"] and len(checks[-1]["digests"]) == 2


def _psnr(a: np.ndarray, b: np.ndarray) -> float:
    return float(10 * np.log10(4.0 / np.mean((a - b) ** 2)))


def test_tiny_model_overfits_one_phantom_better_than_the_mean_volume(tmp_path):
    """Both stages on one phantom: the sampled reconstruction must beat the mean-intensity volume clearly."""
    torch.manual_seed(0)
    init = save_model(DiffuX2CTNet(TINY), tmp_path / "init", half=False)
    regression = TrainSettings(out=str(tmp_path / "reg"), data="phantom:5", steps=150, checkpoint_every=150, init=str(init), learning_rate=2e-3)
    train(regression, show_progress=False)
    diffusion = TrainSettings(out=str(tmp_path / "diff"), stage="diffusion", data="phantom:5", steps=400, checkpoint_every=400, init=str(tmp_path / "reg" / "model"), learning_rate=2e-3)
    net, _ = load_model(train(diffusion, show_progress=False))
    clean, radiographs = TrainingData(TINY, "phantom:5", seed=0).sample(10_000)
    volume = sample(net, radiographs[None], steps=10, generator=torch.Generator().manual_seed(0))[0].numpy()
    truth = clean.numpy()
    mean_volume = np.full_like(truth, truth.mean())
    assert _psnr(volume, truth) > _psnr(mean_volume, truth) + 3.0
