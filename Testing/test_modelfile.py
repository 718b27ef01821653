"""Model folders: safetensors + config + checksum; every kind of damage is a clear error."""

from __future__ import annotations

import json

import pytest
import torch
from test_model import TINY

from DiffuX2CTLib.model.network import DiffuX2CTNet
from DiffuX2CTLib.model.weights import ModelError, load_model, save_model


@pytest.fixture()
def model_folder(tmp_path):
    torch.manual_seed(0)
    return save_model(DiffuX2CTNet(TINY), tmp_path / "model", card={"training": {"data": "test"}})


def test_round_trip_in_fp16(model_folder):
    net, card = load_model(model_folder)
    original = DiffuX2CTNet(TINY)
    torch.manual_seed(0)
    original = DiffuX2CTNet(TINY)
    for (name, a), (_, b) in zip(original.state_dict().items(), net.state_dict().items()):
        assert torch.allclose(a, b, atol=2e-3, rtol=1e-3), name
    assert card["training"] == {"data": "test"} and len(card["weights_sha256"]) == 64
    assert not net.training


def test_corrupted_weights_are_refused(model_folder):
    weights = model_folder / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-10] ^= 0xFF
    weights.write_bytes(bytes(data))
    with pytest.raises(
        ModelError, match=r"model.safetensors: checksum mismatch, the file is corrupted or was modified"
    ):
        load_model(model_folder)


def test_missing_or_broken_parts_are_named(tmp_path, model_folder):
    with pytest.raises(ModelError, match=r"nowhere: model not found"):
        load_model(tmp_path / "nowhere")
    (model_folder / "config.json").write_text("{not json")
    with pytest.raises(ModelError, match=r"config.json: unreadable model config"):
        load_model(model_folder)


def test_checksum_is_required_and_architecture_must_fit(model_folder):
    config = json.loads((model_folder / "config.json").read_text(encoding="utf-8"))
    del config["weights_sha256"]
    (model_folder / "config.json").write_text(json.dumps(config))
    with pytest.raises(ModelError, match="no weights_sha256; refusing an unverifiable model"):
        load_model(model_folder)


def test_weights_that_do_not_fit_the_config_are_refused(tmp_path, model_folder):
    config = json.loads((model_folder / "config.json").read_text(encoding="utf-8"))
    config["model"]["plane_channels"] = 4
    (model_folder / "config.json").write_text(json.dumps(config))
    with pytest.raises(ModelError, match="weights do not fit the architecture"):
        load_model(model_folder)


def test_pickle_is_never_loaded(model_folder):
    (model_folder / "model.safetensors").write_bytes(b"\x80\x04\x95" + b"\x00" * 64)  # a pickle header
    config = json.loads((model_folder / "config.json").read_text(encoding="utf-8"))
    import hashlib

    config["weights_sha256"] = hashlib.sha256((model_folder / "model.safetensors").read_bytes()).hexdigest()
    (model_folder / "config.json").write_text(json.dumps(config))
    with pytest.raises(ModelError, match="not a readable safetensors file"):
        load_model(model_folder)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"default_steps": 0}, "default_steps must be from 1 to 100000, got 0"),
        ({"default_steps": 2000}, "default_steps (2000) must not exceed timesteps (1000)"),
        ({"hu_low": 500.0, "hu_high": 500.0}, "hu_low (500) must be below hu_high (500)"),
        ({"hu_low": 1500.0, "hu_high": -1000.0}, "hu_low (1500) must be below hu_high (-1000)"),
        ({"timesteps": "1000"}, "timesteps must be a whole number, got '1000'"),
        ({"grid_size": 16.0}, "grid_size must be a whole number, got 16.0"),
        ({"residual_scale": -1}, "residual_scale must be from 1e-06 to 1e+06, got -1"),
        ({"source_to_isocenter_mm": 1500.0}, "source_to_detector_mm (1200) must exceed source_to_isocenter_mm (1500)"),
        (
            {"attention_levels": [False, "yes"]},
            "attention_levels must be true/false per U-Net level, got [False, 'yes']",
        ),
        ({"unet_channels": 8}, "unet_channels must be a non-empty list (one entry per U-Net level), got 8"),
        (
            {"beta_schedule": "quadratic"},
            "beta_schedule must be one of linear_beta, scaled_linear_beta, sigmoid_beta, cosine; got 'quadratic'",
        ),
        ({"prediction_type": None}, "prediction_type must be one of epsilon, v_prediction, sample; got None"),
    ],
)
def test_a_damaged_config_is_refused_on_load_naming_the_key(model_folder, change, message):
    config = json.loads((model_folder / "config.json").read_text(encoding="utf-8"))
    config["model"].update(change)
    (model_folder / "config.json").write_text(json.dumps(config), encoding="utf-8")
    with pytest.raises(ModelError) as error:
        load_model(model_folder)
    assert str(error.value) == f"model/config.json: invalid model section ({message})"


def test_an_interrupted_save_leaves_the_previous_model_whole(model_folder, monkeypatch):
    """Weights and config are one unit: new weights never sit beside the old config's checksum."""
    before = {name: (model_folder / name).read_bytes() for name in ("model.safetensors", "config.json")}
    torch.manual_seed(1)
    other = DiffuX2CTNet(TINY)

    def interrupted(self, *args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(type(model_folder), "write_text", interrupted)  # the config, written after the new weights
    with pytest.raises(KeyboardInterrupt):
        save_model(other, model_folder)
    assert {name: (model_folder / name).read_bytes() for name in before} == before
    assert sorted(p.name for p in model_folder.iterdir()) == ["config.json", "model.safetensors"]
    load_model(model_folder)


def test_the_panels_card_summary_quotes_the_default_reconstruction_on_each_test_set():
    """The panel quoted the card's old phantom summary only, and only while its method name held the default steps:
    a model whose default moved from 20 to 10 steps showed no quality line at all."""
    from DiffuX2CTLib.model.card import summarize_model_card

    row = {"psnr_db": [21.9, 0.5], "ssim": [0.55, 0.01]}
    card = {
        "model": {"grid_size": 64, "field_of_view_mm": 320.0, "default_steps": 10},
        "metrics": {
            "summary": {"diffusion DDIM-20": {"psnr_db": [19.0, 0.1], "ssim": [0.4, 0.0]}},
            "real_patients": {
                "summary": {
                    "diffusion DDIM-10, temperature 0.6, guidance 2": row,
                    "diffusion DDIM-10, mean of 4, temperature 0.6, guidance 2": {**row, "psnr_db": [22.7, 0.5]},
                    "diffusion DDIM-100, guidance 2": {**row, "psnr_db": [20.0, 0.5]},
                }
            },
            "current_generator": {"summary": {"diffusion DDIM-10, temperature 0.6, guidance 2": row}},
        },
    }
    lines = summarize_model_card(card).splitlines()
    assert "real patients (diffusion DDIM-10, temperature 0.6, guidance 2): PSNR 21.9 dB, SSIM 0.55" in lines
    assert "held-out phantoms (diffusion DDIM-10, temperature 0.6, guidance 2): PSNR 21.9 dB, SSIM 0.55" in lines
    assert not any(f"PSNR {value}" in line for value in ("22.7", "20.0", "19.0") for line in lines)
    averaged = "diffusion DDIM-10, mean of 4, temperature 0.6, guidance 2"
    card["model"]["default_samples"] = 4
    card["metrics"]["real_patients"]["default_method"] = averaged
    lines = summarize_model_card(card).splitlines()
    assert lines[0].endswith("default 10 sampling steps, mean of 4 samples")
    assert f"real patients ({averaged}): PSNR 22.7 dB, SSIM 0.55" in lines
    assert not any("real patients (diffusion DDIM-10, temperature" in line for line in lines)
    legacy = {"model": {**card["model"], "default_steps": 20}, "metrics": {"summary": card["metrics"]["summary"]}}
    assert "held-out quality (diffusion DDIM-20): PSNR 19.0 dB, SSIM 0.40" in summarize_model_card(legacy)
