"""Sampling temperature: the starting noise's scale, from the model's config unless asked for; it narrows the spread
of samples, is recorded with the result and is refused when it makes no sense."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from DiffuX2CTLib.app.protocol import JobSpec
from DiffuX2CTLib.cli import main
from DiffuX2CTLib.core.errors import InputError
from DiffuX2CTLib.evaluation.evaluate import EvaluationSettings, diffusion_methods
from DiffuX2CTLib.inference.options import ReconstructionOptions
from DiffuX2CTLib.inference.reconstruct import cached_model, draw_samples, reconstruct_pair
from DiffuX2CTLib.inference.sampling import sampling_temperature
from DiffuX2CTLib.model.config import ConfigError, ModelConfig

SAMPLE = Path(__file__).resolve().parents[1] / "Resources" / "SampleData"


def _samples(tiny_model, temperature: float | None) -> torch.Tensor:
    """Three unguided samples of one random pair drawn with the tiny model at ``temperature``."""
    net, _ = cached_model(tiny_model, torch.device("cpu"))
    radiographs = torch.rand(
        1, 2, net.config.detector_pixels, net.config.detector_pixels, generator=torch.Generator().manual_seed(0)
    )
    with torch.no_grad():
        condition = net.condition(radiographs)
    options = ReconstructionOptions(steps=3, seed=5, samples=3, guidance=0.0, device="cpu", temperature=temperature)
    return torch.cat(draw_samples(net, radiographs, condition, options))


def test_a_lower_temperature_narrows_the_samples_and_zero_makes_them_one(tiny_model):
    plain, cooler, frozen = (_samples(tiny_model, t) for t in (1.0, 0.5, 0.0))
    assert torch.equal(plain, _samples(tiny_model, None))  # the tiny model's config says 1
    assert cooler.std(0).mean() < 0.75 * plain.std(0).mean()
    assert torch.allclose(frozen[0], frozen[1]) and torch.allclose(frozen[0], frozen[2])
    assert not torch.allclose(plain[0], plain[1], atol=1e-3)


def test_the_model_config_gives_the_default_and_an_option_overrides_it():
    config = ModelConfig(sampling_temperature=0.7)
    assert ModelConfig().sampling_temperature == 1.0  # a config written before the field keeps plain sampling
    assert sampling_temperature(ReconstructionOptions(), config) == 0.7
    assert sampling_temperature(ReconstructionOptions(temperature=1), config) == 1.0
    with pytest.raises(ConfigError, match="sampling_temperature must be from 0 to 1"):
        ModelConfig(sampling_temperature=1.5)


@pytest.mark.parametrize("temperature", [-0.1, 1.01, float("nan"), True, "0.5"])
def test_a_temperature_that_makes_no_sense_is_refused(temperature):
    with pytest.raises(InputError, match="temperature must be a number from 0 to 1"):
        ReconstructionOptions(temperature=temperature)


def test_the_temperature_is_recorded_with_the_result(tiny_model, tmp_path):
    result = reconstruct_pair(
        SAMPLE / "ap.nrrd", SAMPLE / "lateral.nrrd", tiny_model, ReconstructionOptions(steps=2, temperature=0.25)
    )
    assert result.provenance["temperature"] == "0.25" and result.ct.GetMetaData("DiffuX2CT_temperature") == "0.25"
    regression = reconstruct_pair(
        SAMPLE / "ap.nrrd", SAMPLE / "lateral.nrrd", tiny_model, ReconstructionOptions(method="regression")
    )
    assert regression.provenance["temperature"] == "none"


def test_an_evaluation_names_a_temperature_other_than_one():
    config = ModelConfig(default_steps=10, sampling_temperature=0.7)
    named = diffusion_methods(EvaluationSettings(test_set="phantoms", out="x", samples=2), config)
    assert list(named) == [
        "diffusion DDIM-10, temperature 0.7, guidance 2",
        "diffusion DDIM-10, mean of 2, temperature 0.7, guidance 2",
    ]
    plain = diffusion_methods(EvaluationSettings(test_set="phantoms", out="x", temperature=1.0), config)
    assert list(plain) == ["diffusion DDIM-10, guidance 2"]


def test_the_job_file_and_the_command_line_take_the_temperature(tiny_model, tmp_path, capsys):
    job = {"ap": "a.nrrd", "lateral": "l.nrrd", "output_dir": str(tmp_path), "options": {"temperature": 0.5}}
    assert JobSpec.from_dict(job).options.temperature == 0.5
    with pytest.raises(InputError, match="temperature"):
        JobSpec.from_dict({**job, "options": {"temperature": "cool"}})
    pair = ["--ap", str(SAMPLE / "ap.nrrd"), "--lateral", str(SAMPLE / "lateral.nrrd")]
    with pytest.raises(SystemExit):
        main(["reconstruct", *pair, "--out", str(tmp_path / "bad.nrrd"), "--temperature", "2"])
    assert "argument --temperature: 2 is out of range (use a number from 0 to 1)" in capsys.readouterr().err
    assert not (tmp_path / "bad.nrrd").exists()
    out = tmp_path / "ct.nrrd"
    assert (
        main(
            [
                "reconstruct",
                *pair,
                "--model",
                str(tiny_model),
                "--steps",
                "2",
                "--temperature",
                "0.3",
                "--out",
                str(out),
                "--quiet",
            ]
        )
        == 0
    )
    assert json.loads(capsys.readouterr().out)["provenance"]["temperature"] == "0.3"
