"""Real CTs in the loop, on a stand-in cache of phantom "patients" (no network): the patient split, training
volumes cut from real CTs and augmented, the real validation set, and the structure diagnostics."""

from __future__ import annotations

import json

import numpy as np
import pytest
import SimpleITK as sitk
import torch
from test_model import TINY

from DiffuX2CTLib.anatomy.phantom import generate_phantom
from DiffuX2CTLib.core.errors import InputError
from DiffuX2CTLib.evaluation.evaluate import EvaluationSettings, evaluate_set
from DiffuX2CTLib.evaluation.real_set import real_cases
from DiffuX2CTLib.evaluation.structures import TISSUES, structure_diagnostics
from DiffuX2CTLib.imaging.geometry import VolumeGrid
from DiffuX2CTLib.imaging.image_io import grid_image
from DiffuX2CTLib.realct.split import VALIDATION_PATIENTS, fetched_cts, training_cts, validation_cts
from DiffuX2CTLib.training.augmentation import deformed, hu_curve, remapped
from DiffuX2CTLib.training.data_sources import parse_source
from DiffuX2CTLib.training.real_source import MixedSource, RealCTSource
from DiffuX2CTLib.training.samples import SampleMaker, drr_grid

PATIENTS = {  # id -> (patient, region, phantom seed, field of view painted)
    "amos-0336": ("amos-0336", "trunk", 11, "trunk"),
    "totalsegmentator-example": ("totalsegmentator-example", "abdomen-pelvis", 12, "abdomen"),
    "plastimatch-4dct-t0": ("plastimatch-4dct-lung", "chest", 13, "chest"),
    "plastimatch-4dct-t5": ("plastimatch-4dct-lung", "chest", 14, "chest"),
    "elastix-lung-baseline": ("elastix-3dct-lung", "chest", 15, "chest"),
}


@pytest.fixture(scope="module")
def real_cache(tmp_path_factory):
    """A cache laid out as ``fetch-real`` leaves it, its CTs painted phantoms on 8 mm voxels (400 mm cubes)."""
    root = tmp_path_factory.mktemp("cache")
    folder = root / "real-ct"
    folder.mkdir()
    volumes = []
    for volume_id, (patient, region, seed, painted) in PATIENTS.items():
        grid = VolumeGrid(50, 8.0)
        sitk.WriteImage(
            grid_image(generate_phantom(seed, grid, painted).numpy(), grid), str(folder / f"{volume_id}.nrrd")
        )
        volumes.append({"id": volume_id, "patient": patient, "region": region, "file": f"{volume_id}.nrrd",
                        "licence": "test", "citation": "test", "hu": True})  # fmt: skip
    (folder / "manifest.json").write_text(json.dumps({"volumes": volumes}))
    return root


@pytest.fixture
def use_cache(real_cache, monkeypatch):
    monkeypatch.setenv("DIFFUX2CT_CACHE", str(real_cache))
    return real_cache


def test_no_patient_both_trains_and_validates(real_cache):
    folder = real_cache / "real-ct"
    training = {ct.patient for ct in training_cts(folder)}
    validation = {ct.patient for ct in validation_cts(folder)}
    assert validation == set(VALIDATION_PATIENTS) and training == {"plastimatch-4dct-lung"}
    assert not training & validation
    assert "elastix-3dct-lung" not in training | validation  # one lung cut out: no radiograph can be made of it
    assert len(fetched_cts(folder)) == len(PATIENTS)


def test_an_unfetched_cache_is_a_clear_error(tmp_path):
    with pytest.raises(InputError, match=r"no real CTs fetched yet.*fetch-real.*--cache DIR.*DIFFUX2CT_CACHE=DIR"):
        training_cts(tmp_path / "real-ct")


def test_a_manifest_whose_files_are_gone_is_a_clear_error_for_training_and_validation(real_cache, tmp_path, capsys):
    (tmp_path / "real-ct").mkdir()
    (tmp_path / "real-ct" / "manifest.json").write_bytes((real_cache / "real-ct" / "manifest.json").read_bytes())
    expected = r"none of the 2 (training|validation) CTs its manifest lists could be read.*fetch-real"
    with pytest.raises(InputError, match=expected):
        RealCTSource.prepared(TINY.field_of_view_mm, 8.0, tmp_path)
    with pytest.raises(InputError, match=expected):
        list(real_cases(TINY, tmp_path))
    assert "plastimatch-4dct-t0.nrrd: not found" in capsys.readouterr().err


def test_real_training_volumes_come_from_the_training_patients_and_differ_at_each_draw(use_cache):
    source = parse_source("real", 0, TINY, str(use_cache / "unused"))
    assert isinstance(source, RealCTSource) and set(source.patients) == {"plastimatch-4dct-lung"}
    assert "real CTs of 1 patients" in source.describe()
    grid = drr_grid(TINY)
    draws = [source.volume(0, np.random.default_rng([0, k]), grid, torch.device("cpu")) for k in range(3)]
    again = source.volume(0, np.random.default_rng([0, 0]), grid, torch.device("cpu"))
    assert all(d.shape == (grid.size,) * 3 for d in draws)
    assert torch.equal(draws[0], again)  # a pure function of the random stream
    assert not torch.equal(draws[0], draws[1]) and not torch.equal(draws[1], draws[2])
    assert draws[0].min() >= -1024.5 and (draws[0] > 0).float().mean() > 0.05  # still a body in air


def test_mixed_data_draws_both_kinds_at_the_share_asked(use_cache):
    mixed = parse_source("phantoms+real", 0, TINY, str(use_cache / "unused"), real_share=0.3)
    assert isinstance(mixed, MixedSource) and "30% 2 real CTs" in mixed.describe()
    draws = [np.random.default_rng([0, k]).uniform() < 0.3 for k in range(200)]
    assert 0.2 < np.mean(draws) < 0.4
    maker = SampleMaker(TINY, mixed, seed=0)
    clean, radiographs = maker.sample(0)
    assert clean.shape == (1, 16, 16, 16) and radiographs.shape == (2, 16, 16)


def test_a_short_scan_continues_its_end_slices_beyond_it(use_cache):
    source = parse_source("real", 0, TINY, str(use_cache / "unused"))
    ct = source.cts[0]
    first, _ = ct.z_range_lps
    below = VolumeGrid(40, ct.spacing_mm, (*ct.body_centre_lps[:2], first + 9.5 * ct.spacing_mm))  # 10 rows below
    extended, cut = ct.crop(below, extend_ends=True), ct.crop(below)
    assert (cut[:10] == -1000).all() and (cut[10] > -500).any()  # beyond the scan: air without the extension
    assert all(np.array_equal(extended[k], cut[10]) for k in range(10))  # with it, the first scanned slice goes on
    assert np.array_equal(extended[10:], cut[10:])


def test_augmentation_reshapes_the_body_but_keeps_air_and_the_order_of_tissues():
    grid = VolumeGrid(40, 10.0)
    volume = generate_phantom(3, grid, "chest")
    rng = np.random.default_rng(1)
    moved = deformed(volume, rng, grid.spacing_mm)
    assert moved.shape == volume.shape and not torch.allclose(moved, volume)
    body_before, body_after = (volume > -500).float().mean(), (moved > -500).float().mean()
    assert 0.7 < body_after / body_before < 1.4  # a different body, not a different kind of image
    assert (moved[:, 0, :] < -900).float().mean() > 0.9  # air at the front edge stays air
    knots, values = hu_curve(np.random.default_rng(2))
    ramp = torch.linspace(-1100, 3100, 500)
    mapped = remapped(ramp, knots, values)
    assert (mapped[1:] >= mapped[:-1]).all() and float(remapped(torch.tensor([-1024.0]), knots, values)) == -1024.0
    assert not torch.allclose(mapped, ramp.clamp(-1024, 3071))


def test_the_real_validation_set_cuts_region_cubes_of_the_validation_patients_only(use_cache):
    cases = list(real_cases(TINY))
    assert [c.name for c in cases] == ["amos-0336-chest", "amos-0336-abdomen", "totalsegmentator-example-abdomen"]
    chest, abdomen = cases[0].ct, cases[1].ct
    assert chest.GetSize() == (drr_grid(TINY).size,) * 3
    assert chest.GetOrigin()[2] > abdomen.GetOrigin()[2]  # LPS: the chest lies above (superior to) the abdomen
    lungs = sitk.GetArrayFromImage(chest) < -400
    assert lungs.mean() > 2 * (sitk.GetArrayFromImage(abdomen) < -400)[10:-10, 10:-10, 10:-10].mean()


def test_evaluate_real_scores_each_cube_with_structures_and_a_figure(use_cache, tiny_model, tmp_path):
    report = evaluate_set(
        EvaluationSettings(test_set="real", out=str(tmp_path / "eval"), model=str(tiny_model), cases=1, ddim_steps=2)
    )
    assert report["cases"] == ["amos-0336-chest"] and report["test_set"] == "real"
    case = json.loads((tmp_path / "eval" / "cases" / "amos-0336-chest" / "metrics.json").read_text(encoding="utf-8"))
    assert set(case["structures"]) == set(case["methods"])
    assert (tmp_path / "eval" / "cases" / "amos-0336-chest" / "errors.png").read_bytes()[:4] == b"\x89PNG"
    markdown = (tmp_path / "eval" / "summary.md").read_text(encoding="utf-8")
    assert "lung HU bias" in markdown and "| regression |" in markdown


def _phantom_hu(seed: int = 4) -> np.ndarray:
    return generate_phantom(seed, VolumeGrid(48, 320 / 48), "chest").numpy().astype(np.float64)


def test_structures_of_a_perfect_reconstruction():
    truth = _phantom_hu()
    result = structure_diagnostics(truth, truth, 320 / 48)
    assert result["body_dice"] == result["lung_dice"] == result["bone_dice"] == 1.0
    assert result["lung_volume_l"]["prediction"] == result["lung_volume_l"]["truth"] > 1.0
    assert all(result["tissues"][t]["hu_bias"] == 0 for t in TISSUES)
    assert sum(result["tissues"][t]["volume_share"] for t in TISSUES) == pytest.approx(1.0)


def test_structures_show_dense_small_lungs_and_faint_bone():
    """The failure the real chest showed: lungs too dense (so partly not lung any more) and bones too faint."""
    truth = _phantom_hu()
    prediction = truth.copy()
    lungs = truth < -600
    prediction[lungs] += 300.0
    prediction[truth >= 250] = 180.0
    result = structure_diagnostics(prediction, truth, 320 / 48)
    assert result["tissues"]["lung"]["hu_bias"] > 150
    assert result["lung_volume_l"]["prediction"] < result["lung_volume_l"]["truth"]
    assert result["bone_dice"] == 0.0 and result["tissues"]["bone"]["hu_bias"] < -100
    shares = [result["tissues"][t]["error_share"] for t in TISSUES]
    assert sum(shares) == pytest.approx(1.0) and result["tissues"]["fat"]["error_share"] < 0.05
    with pytest.raises(ValueError, match="different grids"):
        structure_diagnostics(prediction[1:], truth, 5.0)


def test_a_fine_scan_is_smoothed_before_it_is_resampled_to_the_training_voxels(tmp_path):
    """Fine-voxel noise must not survive into 2.5 mm training volumes as if it were anatomy (plain linear
    resampling from 0.5 mm keeps almost all of it)."""
    from DiffuX2CTLib.training.ct_cache import _resampled

    noise = np.random.default_rng(0).normal(0.0, 100.0, (40, 120, 120)).astype(np.float32)
    image = sitk.GetImageFromArray(noise)
    image.SetSpacing((0.5, 0.5, 1.5))
    sitk.WriteImage(image, str(tmp_path / "fine.nrrd"))
    array, _ = _resampled(tmp_path / "fine.nrrd", 2.5)
    inner = array[2:-2, 2:-2, 2:-2].astype(np.float64)
    assert inner.std() < 25.0  # a 2.5 mm voxel averages about 15 fine ones: their noise falls to about a quarter
    assert abs(inner.mean()) < 5.0
