"""Several samples per training volume (``train --reuse``): the volume plan, the posed views, and the batches."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from test_model import TINY

from DiffuX2CTLib.core.errors import InputError
from DiffuX2CTLib.training.samples import PhantomSource, SampleMaker, _Volumes, batch_indices, batches
from DiffuX2CTLib.training.view_posing import POSE_SHIFT_MM, ReusePlan, _resample, posed


@settings(max_examples=60, deadline=None)
@given(reuse=st.integers(2, 6), batch=st.integers(1, 9), world=st.integers(1, 3), seed=st.integers(0, 2**32))
def test_every_volume_gives_reuse_samples_never_twice_in_a_batch_and_ranks_share_none(reuse, batch, world, seed):
    plan = ReusePlan(reuse, batch, world, seed)
    steps = 2 * plan.pool * reuse // batch  # two whole blocks
    volumes_by_rank = []
    for rank in range(world):
        uses = Counter()
        for step in range(steps):
            in_batch = [plan.volume_of(index) for index in batch_indices(step, batch, world, rank)]
            assert len(set(in_batch)) == batch
            uses.update(in_batch)
            assert all(plan.step_of(index) == step for index in batch_indices(step, batch, world, rank))
        assert set(uses.values()) == {reuse} and len(uses) == 2 * plan.pool
        assert sorted(uses) == sorted(plan.volumes_for_steps(0, steps, rank))
        for volume in uses:
            assert all(plan.volume_of(index) == volume for index in plan.indices_of(volume))
        volumes_by_rank.append(set(uses))
    assert sum(len(v) for v in volumes_by_rank) == len(set().union(*volumes_by_rank))


def test_the_pool_holds_whole_batches():
    assert [ReusePlan(4, batch).pool for batch in (1, 2, 3, 4, 8)] == [8, 8, 12, 16, 32]
    plan = ReusePlan(32, 8)  # the 128^3 lease: four steps in a row never share a patient
    for first in (0, 4, 100):
        volumes = [plan.volume_of(i) for step in range(first, first + 4) for i in batch_indices(step, 8)]
        assert len(set(volumes)) == 32


def _tensors(runs):
    return [tensor for clean, radiographs in runs for tensor in (clean, radiographs)]


def test_reusing_batches_are_the_same_whatever_the_workers_and_on_resuming():
    maker = SampleMaker(TINY, PhantomSource(seed=5), seed=5, reuse=3, batch=2)
    cpu = torch.device("cpu")
    inline = list(batches(maker, 0, 14, 2, cpu, workers=0))
    ahead = list(batches(maker, 0, 14, 2, cpu, workers=2))
    resumed = list(batches(maker, 9, 14, 2, cpu, workers=1))
    for a, b in zip(_tensors(inline), _tensors(ahead)):
        assert torch.equal(a, b)
    for a, b in zip(_tensors(inline[9:]), _tensors(resumed)):
        assert torch.equal(a, b)
    targets = torch.cat([clean for clean, _ in inline])
    assert len({tuple(t.flatten()[::97].tolist()) for t in targets}) == len(targets)  # no view repeats another


def test_a_gpu_feeding_worker_hands_over_the_volume_the_views_are_made_of():
    maker = SampleMaker(TINY, PhantomSource(seed=5), seed=5, reuse=3, batch=2)
    volume_index = maker.plan.volume_of(7)
    arrived, volume = _Volumes(maker)[volume_index]
    assert arrived == volume_index and volume.dtype == torch.float16
    clean, radiographs = maker.view(volume.float(), 7)
    expected_clean, expected_radiographs = maker.sample(7)
    assert torch.equal(clean, expected_clean) and torch.equal(radiographs, expected_radiographs)


def test_a_view_is_the_volume_in_a_small_random_pose():
    size, spacing = 40, 4.0
    axis = (torch.arange(size, dtype=torch.float32) - (size - 1) / 2) * spacing
    z, y, x = torch.meshgrid(axis, axis, axis, indexing="ij")
    ball = torch.where(((x - 10) ** 2 + y**2 + z**2) < 30**2, 1000.0, -1024.0)
    identity = _resample(ball, np.eye(3), np.zeros(3))
    assert torch.allclose(identity, ball, atol=1e-2)
    rng = np.random.default_rng(0)
    for _ in range(5):
        view = posed(ball, rng, spacing)
        assert view.min() >= -1024.0 - 1e-3 and view.max() <= 1000.0 + 1e-3
        inside = view > 0
        centre = torch.stack([x[inside].mean(), y[inside].mean(), z[inside].mean()])
        moved = float((centre - torch.tensor([10.0, 0.0, 0.0])).norm())
        assert 0.1 < moved < POSE_SHIFT_MM * 3**0.5 + 2.0  # shifted (rotation about the centre moves it a little too)
        assert abs(int(inside.sum()) / int((ball > 0).sum()) - 1.0) < 0.15  # size within a few per cent per axis


def test_a_reusing_run_paints_one_volume_per_reuse_samples(tmp_path, painted_seeds):
    from DiffuX2CTLib.training.settings import TrainSettings
    from DiffuX2CTLib.training.trainer import train

    drawn = painted_seeds
    train(
        TrainSettings(
            out=str(tmp_path / "run"),
            steps=16,
            batch=2,
            grid_size=16,
            workers=0,
            reuse=4,
            checkpoint_every=100,
            phantom_bank=0,
        ),
        show_progress=False,
    )
    assert len(drawn) == 8 and len(set(drawn)) == 8  # 32 samples, one block of 8 volumes (painted: no bank)


def test_reuse_must_be_a_whole_number_of_at_least_one(tmp_path):
    from DiffuX2CTLib.training.settings import TrainSettings

    with pytest.raises(InputError, match="reuse"):
        TrainSettings(out=str(tmp_path), reuse=0)


def test_the_command_line_passes_reuse_to_the_run_and_its_model_card(tmp_path, capsys):
    import json

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
                "--reuse",
                "2",
                "--quiet",
            ]
        )
        == 0
    )
    card = json.loads((tmp_path / "run" / "model" / "config.json").read_text(encoding="utf-8"))
    assert card["training"]["settings"]["reuse"] == 2
    with pytest.raises(SystemExit):
        main(["train", "--out", str(tmp_path / "other"), "--reuse", "0"])
    assert "--reuse" in capsys.readouterr().err


def test_a_run_resumes_only_with_the_reuse_it_started_with(tmp_path):
    from DiffuX2CTLib.training.settings import TrainSettings
    from DiffuX2CTLib.training.trainer import train

    run = str(tmp_path / "run")
    train(TrainSettings(out=run, steps=1, grid_size=16, workers=0, reuse=2, checkpoint_every=1), show_progress=False)
    with pytest.raises(InputError, match="resume with --reuse 2"):
        train(TrainSettings(out=run, steps=2, grid_size=16, workers=0, reuse=3), show_progress=False)
