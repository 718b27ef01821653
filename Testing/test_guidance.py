"""Projection guidance: it pulls a reconstruction towards the radiographs, deterministically, per sample, and is
refused when its weight makes no sense."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from DiffuX2CTLib.app.protocol import JobSpec
from DiffuX2CTLib.cli import main
from DiffuX2CTLib.core.errors import InputError
from DiffuX2CTLib.diffusion.guidance import ProjectionGuidance
from DiffuX2CTLib.diffusion.schedule import output_for_clean, predicted_clean_volume, training_scheduler
from DiffuX2CTLib.imaging.drr import render_model_radiographs
from DiffuX2CTLib.imaging.geometry import VolumeGrid
from DiffuX2CTLib.inference.options import ReconstructionOptions
from DiffuX2CTLib.inference.reconstruct import cached_model, draw_samples, reconstruct_pair
from DiffuX2CTLib.model.card import read_model_card
from DiffuX2CTLib.model.config import ModelConfig

SAMPLE = Path(__file__).resolve().parents[1] / "Resources" / "SampleData"


@pytest.mark.parametrize("prediction", ["epsilon", "v_prediction", "sample"])
def test_the_output_for_a_clean_volume_is_the_inverse_of_the_clean_volume_of_an_output(prediction):
    from test_model import TINY

    scheduler = training_scheduler(TINY.__class__(**{**TINY.to_dict(), "prediction_type": prediction}))
    generator = torch.Generator().manual_seed(0)
    noisy, clean = torch.randn(2, 1, 4, 4, 4, generator=generator), torch.randn(2, 1, 4, 4, 4, generator=generator)
    timesteps = torch.tensor([10, 900])
    output = output_for_clean(noisy, clean, timesteps, scheduler)
    assert torch.allclose(predicted_clean_volume(noisy, output, timesteps, scheduler), clean, atol=1e-4)


def _pair(net) -> torch.Tensor:
    """A radiograph pair the untrained tiny model is far from: the DRRs of a bright off-centre block."""
    volume = torch.full((1, 1, 16, 16, 16), -1.0)
    volume[..., 4:10, 6:13, 3:8] = 0.6
    projector = ProjectionGuidance(net.config, 1.0, torch.device("cpu")).projector
    return render_model_radiographs(volume, projector, net.config.grid(), net.config.hu_window)


def test_guided_samples_agree_better_with_the_radiographs():
    """The bundled model on the sample pair, a few DDIM steps: guidance raises the re-projection agreement of both
    views (a trained denoiser keeps the corrections it is given from step to step)."""
    plain = reconstruct_pair(
        SAMPLE / "ap.nrrd", SAMPLE / "lateral.nrrd", None, ReconstructionOptions(steps=5, device="cpu", guidance=0.0)
    )
    guided = reconstruct_pair(
        SAMPLE / "ap.nrrd", SAMPLE / "lateral.nrrd", None, ReconstructionOptions(steps=5, device="cpu", guidance=4.0)
    )
    for view in ("ap", "lateral"):  # the disagreement (1 - NCC) falls by at least a quarter
        assert 1.0 - guided.agreement[view] < 0.75 * (1.0 - plain.agreement[view]), (
            view,
            plain.agreement,
            guided.agreement,
        )


def test_guided_samples_are_the_same_for_a_seed_whatever_the_batch(tiny_model):
    net, _ = cached_model(tiny_model, torch.device("cpu"))
    radiographs = _pair(net)
    with torch.no_grad():
        condition = net.condition(radiographs)
    options = dict(steps=4, seed=3, samples=2, guidance=10.0)
    batched = draw_samples(net, radiographs, condition, ReconstructionOptions(**options, batch_size=2))
    one_by_one = draw_samples(net, radiographs, condition, ReconstructionOptions(**options, batch_size=1))
    again = draw_samples(net, radiographs, condition, ReconstructionOptions(**options, batch_size=2))
    plain = draw_samples(net, radiographs, condition, ReconstructionOptions(**{**options, "guidance": 0.0}))
    for a, b, c, d in zip(batched, one_by_one, again, plain):
        assert torch.equal(a, c)  # same seed, same result
        assert torch.allclose(
            a, b, atol=1e-4
        )  # and the same whatever the batch (float rounding of batched convolutions)
        assert not torch.allclose(a, d, atol=1e-3)  # guidance did something


def test_guidance_refines_the_regression_estimate_towards_the_radiographs(tiny_model):
    net, _ = cached_model(tiny_model, torch.device("cpu"))
    radiographs = _pair(net)
    guidance = ProjectionGuidance(net.config, 10.0, torch.device("cpu"))
    with torch.no_grad():
        estimate = net.condition(radiographs)[1]
    refined = guidance.refine(estimate, radiographs)
    assert guidance.mismatch(refined, radiographs) < 0.8 * guidance.mismatch(estimate, radiographs)
    assert refined.min() >= -1.0 and refined.max() <= 1.0


def test_the_weight_is_recorded_with_the_result(tiny_model):
    result = reconstruct_pair(
        SAMPLE / "ap.nrrd",
        SAMPLE / "lateral.nrrd",
        tiny_model,
        ReconstructionOptions(method="regression", guidance=2.5),
    )
    assert result.provenance["guidance"] == "2.5" and result.ct.GetMetaData("DiffuX2CT_guidance") == "2.5"
    assert (
        reconstruct_pair(
            SAMPLE / "ap.nrrd", SAMPLE / "lateral.nrrd", tiny_model, ReconstructionOptions(method="regression")
        ).provenance["guidance"]
        == "0"
    )


def test_the_default_weight_is_the_methods():
    """Chosen on training-seed phantoms: on for diffusion, off for regression (where it lowered SSIM)."""
    assert ReconstructionOptions().guidance == 2.0 and ReconstructionOptions(method="regression").guidance == 0.0
    assert ReconstructionOptions(guidance=0.0).guidance == 0.0


@pytest.mark.parametrize("weight", [-1.0, float("nan"), float("inf"), 101.0, True])
def test_a_weight_that_makes_no_sense_is_refused(weight):
    with pytest.raises(InputError, match="guidance must be a number from 0"):
        ReconstructionOptions(guidance=weight)


def test_the_job_file_and_the_command_line_take_the_weight(tmp_path, capsys):
    job = {"ap": "a.nrrd", "lateral": "l.nrrd", "output_dir": str(tmp_path), "options": {"guidance": 1.5}}
    assert JobSpec.from_dict(job).options.guidance == 1.5
    with pytest.raises(InputError, match="guidance"):
        JobSpec.from_dict({**job, "options": {"guidance": "strong"}})
    with pytest.raises(SystemExit):
        main(
            [
                "reconstruct",
                "--ap",
                str(SAMPLE / "ap.nrrd"),
                "--lateral",
                str(SAMPLE / "lateral.nrrd"),
                "--out",
                str(tmp_path / "ct.nrrd"),
                "--guidance",
                "-2",
            ]
        )
    assert "--guidance" in capsys.readouterr().err and not (tmp_path / "ct.nrrd").exists()


def test_guidance_does_not_pack_the_anatomy_beyond_the_cube_into_its_end_slices():
    """A body that goes on above and below the model's cube, as a patient does: the radiographs show it, the cube
    cannot hold it. The exact cube must agree with them (almost no mismatch) and far better than the same cube with
    denser end slices. When every pixel counted, the exact cube disagreed more than one with its ends 50 HU denser:
    guidance packed the body beyond into the end slices (+100 to +200 HU on the validation patients)."""
    config = ModelConfig.from_dict(read_model_card()["model"])  # the bundled model's geometry; no network
    guidance = ProjectionGuidance(config, 2.0, torch.device("cpu"))
    n, window = config.grid_size, config.hu_window
    wide = VolumeGrid(2 * n, config.grid().spacing_mm)  # twice the cube in every direction, same voxels and centre
    z, y, x = torch.meshgrid(*(torch.arange(2 * n) - n + 0.5,) * 3, indexing="ij")
    body_hu = torch.where(x**2 / (0.35 * n) ** 2 + y**2 / (0.28 * n) ** 2 <= 1.0, 40.0, -1000.0)
    body_hu = body_hu + torch.where((x.abs() < 0.06 * n) & (y > 0.1 * n) & (y < 0.2 * n), 700.0, 0.0)  # a spine
    unit = torch.as_tensor(window.to_unit(body_hu.numpy()), dtype=torch.float32)[None, None]
    radiographs = render_model_radiographs(unit, guidance.projector, wide, window)
    exact = unit[..., n // 2 : n // 2 + n, n // 2 : n // 2 + n, n // 2 : n // 2 + n].contiguous()
    denser_ends = exact.clone()
    for ends in (slice(0, 4), slice(n - 4, n)):
        inside = denser_ends[..., ends, :, :] > -0.9
        denser_ends[..., ends, :, :] += inside * 200.0 * 2.0 / (window.high - window.low)
    assert guidance.mismatch(exact, radiographs) < 0.1 * guidance.mismatch(denser_ends, radiographs)
