"""Reconstruction end to end on the bundled sample pair, with a small model made here."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
import torch

from DiffuX2CTLib.cli import main
from DiffuX2CTLib.core.errors import InputError
from DiffuX2CTLib.inference.options import ReconstructionOptions
from DiffuX2CTLib.inference.reconstruct import (
    Reconstruction,
    caption,
    reconstruct_pair,
    reprojection_agreement,
    uncertainty_path,
    write_reconstruction,
)

SAMPLE = Path(__file__).resolve().parents[1] / "Resources" / "SampleData"


def test_agreement_counts_only_the_given_pixels():
    """Anatomy beyond the cube (here: the outer rows and columns, different in the input) does not lower the
    agreement; a change inside the counted pixels does."""
    rng = np.random.default_rng(0)
    reprojected = rng.random((2, 32, 32))
    counted = np.zeros((2, 32, 32), bool)
    counted[:, 6:26, 4:28] = True
    inputs = np.where(counted, 0.5 * reprojected + 0.2, rng.random((2, 32, 32)))  # same up to brightness inside
    assert reprojection_agreement(reprojected, inputs, counted) == pytest.approx([1.0, 1.0])
    inputs[1, 10:14, 10:20] = 0.0
    low = reprojection_agreement(reprojected, inputs, counted)
    assert low[0] == pytest.approx(1.0) and low[1] < 0.95
    assert reprojection_agreement(reprojected, inputs, np.ones_like(counted))[0] < 0.5


def test_reconstruction_is_placed_at_the_radiographs_isocentre(tiny_model):
    result = reconstruct_pair(
        SAMPLE / "ap.nrrd", SAMPLE / "lateral.nrrd", tiny_model, ReconstructionOptions(steps=3, seed=1)
    )
    ct = result.ct
    assert ct.GetSize() == (16, 16, 16)
    assert ct.GetSpacing() == pytest.approx((20.0, 20.0, 20.0))
    geometry = json.loads((SAMPLE / "geometry.json").read_text(encoding="utf-8"))["views"][0]
    centre = ct.TransformContinuousIndexToPhysicalPoint((7.5, 7.5, 7.5))
    assert centre == pytest.approx(geometry["isocenter_lps"], abs=1e-3)
    assert set(result.agreement) == {"ap", "lateral"} and all(-1 <= v <= 1 for v in result.agreement.values())
    assert result.provenance["steps"] == "3" and result.provenance["seed"] == "1"
    assert ct.GetMetaData("DiffuX2CT_intended_use") == "research use only, not for diagnosis"
    assert len(ct.GetMetaData("DiffuX2CT_model_sha256")) == 64


def test_same_seed_same_volume_and_samples_give_uncertainty(tiny_model, tmp_path):
    options = ReconstructionOptions(steps=2, seed=5)
    a = reconstruct_pair(SAMPLE / "ap.nrrd", SAMPLE / "lateral.nrrd", tiny_model, options)
    b = reconstruct_pair(SAMPLE / "ap.nrrd", SAMPLE / "lateral.nrrd", tiny_model, options)
    assert np.array_equal(sitk.GetArrayFromImage(a.ct), sitk.GetArrayFromImage(b.ct))
    several = reconstruct_pair(
        SAMPLE / "ap.nrrd", SAMPLE / "lateral.nrrd", tiny_model, ReconstructionOptions(steps=2, samples=3)
    )
    assert several.uncertainty is not None and sitk.GetArrayFromImage(several.uncertainty).max() > 0
    outputs = write_reconstruction(several, tmp_path / "out dir" / "ct.nrrd")
    assert Path(outputs["uncertainty"]) == uncertainty_path(tmp_path / "out dir" / "ct.nrrd")
    assert Path(outputs["uncertainty"]).name == "ct-uncertainty.nrrd"
    write_reconstruction(a, tmp_path / "out dir" / "ct.nrrd")  # one sample over the K-sample result: no stale std-dev
    assert not uncertainty_path(tmp_path / "out dir" / "ct.nrrd").exists()
    users = tmp_path / "mine-uncertainty.nrrd"  # a file of the user's with that name is never touched
    users.write_bytes(b"not ours")
    write_reconstruction(a, tmp_path / "mine.nrrd")
    assert users.read_bytes() == b"not ours"


@pytest.mark.parametrize("sampler", ["ddim", "ddpm"])
def test_samples_drawn_in_batches_equal_samples_drawn_one_by_one(tiny_model, sampler):
    """Same seed, same samples, whatever the batch size; the first of several is the single sample of that seed."""
    from DiffuX2CTLib.inference.reconstruct import cached_model, draw_samples

    net, _ = cached_model(tiny_model, torch.device("cpu"))
    radiographs = torch.rand(1, 2, 16, 16, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        condition = net.condition(radiographs)
    steps = None if sampler == "ddpm" else 3
    one_by_one = draw_samples(
        net,
        radiographs,
        condition,
        ReconstructionOptions(steps=steps, seed=7, samples=3, sampler=sampler, batch_size=1, guidance=0.0),
    )
    progress = []
    batched = draw_samples(
        net,
        radiographs,
        condition,
        ReconstructionOptions(steps=steps, seed=7, samples=3, sampler=sampler, batch_size=2, guidance=0.0),
        lambda i, n: progress.append((i, n)),
    )
    single = draw_samples(
        net,
        radiographs,
        condition,
        ReconstructionOptions(steps=steps, seed=7, samples=1, sampler=sampler, guidance=0.0),
    )
    for a, b in zip(one_by_one, batched):
        assert torch.allclose(a, b, atol=1e-4)  # float rounding of batched convolutions: under 0.1 HU
    assert torch.allclose(single[0], one_by_one[0], atol=1e-5)
    assert not torch.allclose(one_by_one[0], one_by_one[1], atol=1e-3)  # independent samples
    per_batch = 1000 if sampler == "ddpm" else 3
    assert progress[-1] == (2 * per_batch, 2 * per_batch) and len(progress) == 2 * per_batch


def test_bfloat16_sampling_is_close_to_float32_and_auto_follows_the_device(tiny_model, monkeypatch):
    """The denoiser runs under bfloat16 autocast when asked (or by ``auto`` where the device computes it natively):
    a slightly different volume, not a different one; provenance says which arithmetic made it."""
    import DiffuX2CTLib.core.device as device

    def run(precision: str):
        result = reconstruct_pair(
            SAMPLE / "ap.nrrd",
            SAMPLE / "lateral.nrrd",
            tiny_model,
            ReconstructionOptions(steps=3, seed=2, precision=precision),
        )
        return sitk.GetArrayFromImage(result.ct), result.provenance["precision"]

    exact, exact_name = run("float32")
    reduced, reduced_name = run("bfloat16")
    assert (exact_name, reduced_name) == ("float32", "bfloat16")
    difference = np.abs(exact - reduced)
    assert difference.max() > 0 and difference.mean() < 15.0  # HU, in a window 2500 HU wide (this random tiny net: 8)
    default, default_name = run("auto")  # conftest: auto means float32 in the tests
    assert default_name == "float32" and np.array_equal(default, exact)
    monkeypatch.setattr(device, "native_bfloat16", lambda _device: True)
    auto, auto_name = run("auto")
    assert auto_name == "bfloat16" and np.array_equal(auto, reduced)


def test_regression_method_skips_sampling(tiny_model):
    calls = []
    result = reconstruct_pair(
        SAMPLE / "ap.nrrd",
        SAMPLE / "lateral.nrrd",
        tiny_model,
        ReconstructionOptions(method="regression"),
        lambda i, n: calls.append(n),
    )
    assert calls == [1] and result.provenance["sampler"] == "none"


def test_a_model_names_how_many_samples_its_default_reconstruction_averages(tiny_model, tmp_path, capsys):
    """A default reconstruction averages the model's ``default_samples`` DDIM samples (the bundled model: 4, which
    scored higher than one sample on the real validation patients); DDPM, regression and a number given keep
    theirs, and a config written before the key keeps one sample."""
    from DiffuX2CTLib.inference.sampling import sample_count
    from DiffuX2CTLib.model.config import ConfigError, ModelConfig

    assert ModelConfig().default_samples == 1 and ModelConfig(default_samples=4).default_samples == 4
    assert sample_count(ReconstructionOptions(), 4) == 4
    assert sample_count(ReconstructionOptions(samples=1), 4) == 1
    assert sample_count(ReconstructionOptions(sampler="ddpm"), 4) == 1
    assert sample_count(ReconstructionOptions(method="regression"), 4) == 1
    with pytest.raises(ConfigError, match="default_samples must be from 1 to 64"):
        ModelConfig(default_samples=0)
    folder = tmp_path / "averaging"
    folder.mkdir()
    (folder / "model.safetensors").write_bytes((tiny_model / "model.safetensors").read_bytes())
    card = json.loads((tiny_model / "config.json").read_text(encoding="utf-8"))
    card["model"]["default_samples"] = 2
    (folder / "config.json").write_text(json.dumps(card), encoding="utf-8")
    options = ReconstructionOptions(steps=2, device="cpu")
    result = reconstruct_pair(SAMPLE / "ap.nrrd", SAMPLE / "lateral.nrrd", folder, options)
    assert result.provenance["samples"] == "2" and result.uncertainty is not None
    single = reconstruct_pair(SAMPLE / "ap.nrrd", SAMPLE / "lateral.nrrd", tiny_model, options)
    assert single.provenance["samples"] == "1" and single.uncertainty is None
    out = tmp_path / "ct.nrrd"
    common = ["reconstruct", "--ap", str(SAMPLE / "ap.nrrd"), "--lateral", str(SAMPLE / "lateral.nrrd")]
    assert main([*common, "--model", str(folder), "--steps", "2", "--out", str(out), "--quiet"]) == 0
    assert uncertainty_path(out).is_file() and sitk.ReadImage(str(out)).GetMetaData("DiffuX2CT_samples") == "2"


def test_bad_options_and_inputs_are_named(tiny_model, tmp_path):
    with pytest.raises(InputError, match="unknown method 'magic'"):
        ReconstructionOptions(method="magic")
    with pytest.raises(InputError, match="samples, steps and batch size must be at least 1"):
        ReconstructionOptions(samples=0)
    with pytest.raises(InputError, match=r"ct.nrrd: image is a 3D volume with 128 slices"):
        reconstruct_pair(SAMPLE / "ct.nrrd", SAMPLE / "lateral.nrrd", tiny_model)
    with pytest.raises(
        InputError, match=r"lateral.nrrd: header says this is the lateral view but it was given as the ap view"
    ):
        reconstruct_pair(SAMPLE / "lateral.nrrd", SAMPLE / "ap.nrrd", tiny_model)
    if not torch.cuda.is_available():
        with pytest.raises(InputError, match="no CUDA GPU is available"):
            reconstruct_pair(
                SAMPLE / "ap.nrrd", SAMPLE / "lateral.nrrd", tiny_model, ReconstructionOptions(device="cuda")
            )


def test_cli_reconstruct_writes_ct_preview_and_json(tiny_model, tmp_path, capsys):
    out = tmp_path / "résumé; rm -rf" / "ct.nii.gz"
    code = main(
        [
            "reconstruct",
            "--ap",
            str(SAMPLE / "ap.nrrd"),
            "--lateral",
            str(SAMPLE / "lateral.nrrd"),
            "--out",
            str(out),
            "--model",
            str(tiny_model),
            "--steps",
            "2",
            "--preview",
            str(tmp_path / "p.png"),
            "--quiet",
        ]
    )
    assert code == 0
    report = json.loads(capsys.readouterr().out)
    assert Path(report["outputs"]["ct"]) == out and out.is_file()
    assert (tmp_path / "p.png").read_bytes()[:4] == b"\x89PNG"


def test_cli_reports_a_corrupted_model_in_one_line(tiny_model, tmp_path):
    import shutil

    broken = tmp_path / "broken"
    shutil.copytree(tiny_model, broken)
    (broken / "model.safetensors").write_bytes((broken / "model.safetensors").read_bytes()[:-100])
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "DiffuX2CTLib.cli",
            "reconstruct",
            "--ap",
            str(SAMPLE / "ap.nrrd"),
            "--lateral",
            str(SAMPLE / "lateral.nrrd"),
            "--out",
            str(tmp_path / "o.nrrd"),
            "--model",
            str(broken),
            "--quiet",
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 2
    assert result.stderr.strip().endswith(
        "broken/model.safetensors: checksum mismatch, the file is corrupted or was modified"
    )
    assert not (tmp_path / "o.nrrd").exists()


def test_nifti_outputs_carry_the_not_for_diagnosis_mark_and_provenance(tiny_model, tmp_path):
    """NIfTI keeps no free metadata; its 80-byte ``descrip`` field carries the mark, the weights' checksum and
    how the volume was made, for the CT and its std-dev volume; a stale NIfTI std-dev volume of ours is removed."""
    several = reconstruct_pair(
        SAMPLE / "ap.nrrd", SAMPLE / "lateral.nrrd", tiny_model, ReconstructionOptions(steps=2, samples=2, seed=4)
    )
    outputs = write_reconstruction(several, tmp_path / "ct.nii.gz")
    sha = several.provenance["model_sha256"][:8]
    for kind, what in (("ct", "CT"), ("uncertainty", "std-dev")):
        description = sitk.ReadImage(outputs[kind]).GetMetaData("descrip")
        assert description == f"DiffuX2CT {what}, NOT FOR DIAGNOSIS; model {sha}; diffusion ddim-2 seed 4"
        assert len(description) <= 79  # the field's 80 bytes end with a NUL
    one = reconstruct_pair(SAMPLE / "ap.nrrd", SAMPLE / "lateral.nrrd", tiny_model, ReconstructionOptions(steps=2))
    write_reconstruction(one, tmp_path / "ct.nii.gz")
    assert not Path(outputs["uncertainty"]).exists()  # recognised as ours by its mark, so removed
    assert one.provenance["orientation_ap"] == one.provenance["orientation_lateral"] == "from the file"


def test_an_assumed_orientation_is_said_in_the_notes_the_provenance_and_the_preview(tiny_model, tmp_path, monkeypatch):
    """Plain images carry no orientation: the model's is assumed, and the result says so wherever it is read."""
    import DiffuX2CTLib.inference.preview as preview

    for view in ("ap", "lateral"):
        pixels = sitk.GetArrayFromImage(sitk.ReadImage(str(SAMPLE / f"{view}.nrrd")))[0]
        scaled = np.rint((pixels - pixels.min()) / np.ptp(pixels) * 255).astype(np.uint8)
        sitk.WriteImage(sitk.GetImageFromArray(scaled), str(tmp_path / f"{view}.png"))
    result = reconstruct_pair(tmp_path / "ap.png", tmp_path / "lateral.png", tiny_model, ReconstructionOptions(steps=1))
    assert result.provenance["orientation_ap"] == result.provenance["orientation_lateral"] == "assumed"
    notes = result.provenance["notes"]
    assert "ap.png: a plain image carries no orientation; assumed columns run towards L and rows towards F" in notes
    assert "ap.png: a frontal view's left-right mirror cannot be detected" in notes
    assert re.search(
        r"lateral.png: the spine lies at \d+ % of the body's depth from the image's left, posterior on the right, "
        r"as assumed",
        notes,
    )
    assert result.ct.GetMetaData("DiffuX2CT_orientation_ap") == "assumed"
    seen = {}
    writer = preview.preview_writer
    monkeypatch.setattr(preview, "preview_writer", lambda *a, **k: seen.update(k) or writer(*a, **k))
    write_reconstruction(result, tmp_path / "ct.nrrd", tmp_path / "preview.png")
    assert seen["orientation_assumed"] == [True, True] and (tmp_path / "preview.png").is_file()
    sample = reconstruct_pair(SAMPLE / "ap.nrrd", SAMPLE / "lateral.nrrd", tiny_model, ReconstructionOptions(steps=1))
    assert sample.provenance["orientation_ap"] == sample.provenance["orientation_lateral"] == "from the file"
    assert sample.provenance["notes"] == ""  # a file that gives its orientation needs no note


def _result(**provenance) -> Reconstruction:
    """A reconstruction as far as its caption reads it."""
    base = {"method": "diffusion", "sampler": "ddim", "steps": "20", "seed": "0", "samples": "1", "seconds": "3.21"}
    base |= {"agreement_ap": "0.9900", "agreement_lateral": "0.9800"}
    return Reconstruction(sitk.Image(4, 4, 4, sitk.sitkFloat32), None, np.zeros((2, 4, 4)), {}, base | provenance)


def test_the_preview_caption_says_how_the_volume_was_made():
    assert caption(_result()) == (
        "diffusion (ddim, 20 steps, seed 0) in 3.21 s; re-projection NCC AP 0.9900, lateral 0.9800"
    )
    assert caption(_result(method="regression", sampler="none", steps="1")) == (
        "regression (one direct estimate) in 3.21 s; re-projection NCC AP 0.9900, lateral 0.9800"
    )
    assert caption(_result(temperature="0.6", steps="10")) == (
        "diffusion (ddim, 10 steps, temperature 0.6, seed 0) in 3.21 s; re-projection NCC AP 0.9900, lateral 0.9800"
    )
    assert caption(_result(temperature="1")) == caption(_result())
    assert caption(_result(samples="4", seed="7")) == (
        "diffusion (ddim, 20 steps, seed 7): the mean of 4 samples in 3.21 s; re-projection NCC AP 0.9900, lateral "
        "0.9800"
    )


def test_an_unreadable_or_looping_radiograph_is_named_so_by_the_api(tiny_model, tmp_path, monkeypatch):
    (tmp_path / "loop.nrrd").symlink_to("loop.nrrd")
    with pytest.raises(InputError, match=r"^loop.nrrd: is a symbolic link that leads back to itself \(a loop\)"):
        reconstruct_pair(tmp_path / "loop.nrrd", SAMPLE / "lateral.nrrd", tiny_model)
    locked = tmp_path / "locked.nrrd"
    locked.write_bytes((SAMPLE / "lateral.nrrd").read_bytes())
    import os

    real = os.access
    monkeypatch.setattr(os, "access", lambda path, mode, **kw: real(path, mode, **kw) and Path(path) != locked)
    with pytest.raises(InputError, match=r"^locked.nrrd: cannot be read: no permission \(the file exists"):
        reconstruct_pair(SAMPLE / "ap.nrrd", locked, tiny_model)
