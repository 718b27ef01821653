"""Test-set evaluation: every method scored on the same synthesised cases, baselines wired to what they claim,
per-case JSON and montage, a summary whose comparisons count the right direction, and clear errors."""

from __future__ import annotations

import json
import math
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
from test_model import TINY

from DiffuX2CTLib.anatomy.phantom import generate_phantom
from DiffuX2CTLib.cli import main
from DiffuX2CTLib.core.errors import InputError
from DiffuX2CTLib.evaluation.draws import mean_of_draws
from DiffuX2CTLib.evaluation.evaluate import (
    EvaluationSettings,
    diffusion_methods,
    evaluate_set,
    report_markdown,
    summarise,
)
from DiffuX2CTLib.imaging.geometry import VolumeGrid
from DiffuX2CTLib.imaging.image_io import grid_image, write_image


@pytest.fixture(scope="module")
def ct_folder(tmp_path_factory):
    folder = tmp_path_factory.mktemp("cts")
    grid = VolumeGrid(32, 10.0)
    for seed in (3, 4):
        write_image(grid_image(generate_phantom(seed, grid, "chest").numpy(), grid), folder / f"case{seed}.nrrd")
    return folder


def test_a_folder_of_cts_is_reconstructed_and_scored_by_every_method(tmp_path, tiny_model, ct_folder):
    # The mean-volume baseline from the test CT and a copy 100 HU brighter is the CT plus 50 HU: its MAE must
    # say so (a little less where the window clips), which shows the baseline is the mean it claims to be.
    mean_folder = tmp_path / "mean"
    ct = sitk.ReadImage(str(ct_folder / "case3.nrrd"))
    write_image(ct, mean_folder / "a.nrrd")
    write_image(ct + 100.0, mean_folder / "b.nrrd")
    settings = EvaluationSettings(
        test_set=str(ct_folder),
        out=str(tmp_path / "out"),
        model=str(tiny_model),
        cases=1,
        ddim_steps=3,
        mean_from=str(mean_folder),
    )
    lines = []
    report = evaluate_set(settings, log=lines.append)
    assert report["cases"] == ["case3"] and len(lines) == 1 + 2
    assert lines[0] == "mean-volume baseline: average of 2 training volumes (" + str(mean_folder) + ")"
    assert list(report["summary"]) == [
        "mean volume",
        "regression",
        "diffusion DDIM-3, guidance 2",
    ]  # the default weight, named
    assert 40.0 < report["summary"]["mean volume"]["mae_hu"][0] <= 50.5
    case = tmp_path / "out" / "cases" / "case3"
    per_case = json.loads((case / "metrics.json").read_text(encoding="utf-8"))
    assert all(np.isfinite(per_case["methods"][m]["ssim"]) for m in report["summary"])
    assert (case / "montage.png").read_bytes()[:4] == b"\x89PNG"
    assert {p.name for p in case.glob("*.nrrd")} == {
        "ap.nrrd",
        "lateral.nrrd",
        "regression.nrrd",
        "diffusion-DDIM-3-guidance-2.nrrd",
    }
    saved = json.loads((tmp_path / "out" / "summary.json").read_text(encoding="utf-8"))
    assert saved["summary"] == report["summary"] and "lpips" in saved["not_computed"]
    assert saved["sampling_precision"] == "float32"  # auto, resolved (float32 in the tests)
    assert "| regression |" in (tmp_path / "out" / "summary.md").read_text(encoding="utf-8")


def test_held_out_phantoms_with_ddpm(tmp_path, tiny_model):
    """DDPM's 1000 steps run in float32: in bfloat16 a CPU without native bfloat16 (AVX2) took 212 s for them."""
    settings = EvaluationSettings(
        test_set="phantoms",
        out=str(tmp_path),
        model=str(tiny_model),
        cases=1,
        ddim_steps=2,
        ddpm=True,
        guidance=0.0,
        precision="float32",
    )
    report = evaluate_set(settings)
    assert report["cases"] == ["phantom-900100-chest"] and report["sampling_precision"] == "float32"
    assert all(math.isfinite(value) for value in report["summary"]["diffusion DDPM-1000"]["psnr_db"])
    assert "diffusion DDPM-1000 vs regression" in report["comparisons"]
    assert report["summary"]["diffusion DDPM-1000"]["seconds"][0] > report["summary"]["diffusion DDIM-2"]["seconds"][0]


def test_held_out_phantoms_sampled_in_bfloat16(tmp_path, tiny_model):
    settings = EvaluationSettings(
        test_set="phantoms", out=str(tmp_path), model=str(tiny_model), cases=1, ddim_steps=2, precision="bfloat16"
    )
    report = evaluate_set(settings)
    assert report["cases"] == ["phantom-900100-chest"] and report["sampling_precision"] == "bfloat16"
    assert "sampling in bfloat16" in (tmp_path / "summary.md").read_text(encoding="utf-8")
    assert all(math.isfinite(value) for value in report["summary"]["diffusion DDIM-2, guidance 2"]["psnr_db"])


def test_held_out_phantoms_span_every_region_and_each_gets_its_table(tmp_path, tiny_model):
    report = evaluate_set(
        EvaluationSettings(test_set="phantoms", out=str(tmp_path), model=str(tiny_model), cases=4, ddim_steps=1)
    )
    assert report["cases"] == [
        "phantom-900100-chest",
        "phantom-900101-abdomen",
        "phantom-900102-lumbar",
        "phantom-900103-pelvis",
    ]
    assert set(report["regions"]) == {"chest", "abdomen", "lumbar", "pelvis"}
    assert all(r["cases"] == 1 and "regression" in r["summary"] for r in report["regions"].values())
    markdown = (tmp_path / "summary.md").read_text(encoding="utf-8")
    assert all(f"**{region}** (1 cases)" in markdown for region in report["regions"])


def test_an_unreadable_ct_is_skipped_by_name_and_the_rest_is_reported(tmp_path, tiny_model, ct_folder):
    folder = tmp_path / "cts"
    folder.mkdir()
    (folder / "a-broken.nrrd").write_bytes(b"NRRD0004\nnot an image\n")
    (folder / "b.nrrd").write_bytes((ct_folder / "case3.nrrd").read_bytes())
    lines = []
    report = evaluate_set(
        EvaluationSettings(
            test_set=str(folder),
            out=str(tmp_path / "out"),
            model=str(tiny_model),
            ddim_steps=1,
            mean_from=str(ct_folder),
        ),
        log=lines.append,
    )
    assert report["cases"] == ["b"] and len(report["skipped"]) == 1 and "a-broken.nrrd" in report["skipped"][0]
    assert any(line.startswith("warning: skipped a-broken.nrrd") for line in lines)
    assert "Skipped (unreadable): a-broken.nrrd" in (tmp_path / "out" / "summary.md").read_text(encoding="utf-8")


def test_several_draws_score_each_case_by_the_mean_of_draws_of_successive_seeds(tmp_path, tiny_model, ct_folder):
    """With draws 2, a diffusion row's case score is the mean of two samples, the first with the run's seed (as a
    one-draw run gives it) and the second with the next seed; regression is drawn once; the summary says so."""
    common = {"test_set": str(ct_folder), "model": str(tiny_model), "cases": 1, "ddim_steps": 1, "seed": 7}
    common["mean_from"] = str(ct_folder)
    lines = []
    report = evaluate_set(EvaluationSettings(out=str(tmp_path / "two"), draws=2, **common), log=lines.append)
    one = evaluate_set(EvaluationSettings(out=str(tmp_path / "one"), **common))
    next_seed = evaluate_set(EvaluationSettings(out=str(tmp_path / "next"), **{**common, "seed": 8}))
    name = "diffusion DDIM-1, guidance 2"
    case = json.loads((tmp_path / "two" / "cases" / "case3" / "metrics.json").read_text(encoding="utf-8"))
    draws = case["methods"][name]["draws"]
    assert [d["psnr_db"] for d in draws] == [
        pytest.approx(one["summary"][name]["psnr_db"][0]),
        pytest.approx(next_seed["summary"][name]["psnr_db"][0]),
    ]
    assert draws[0]["psnr_db"] != draws[1]["psnr_db"]
    for metric in ("psnr_db", "ssim", "mae_hu", "bone_dice"):
        assert case["methods"][name][metric] == pytest.approx(np.mean([d[metric] for d in draws]))
    assert "draws" not in case["methods"]["regression"]
    assert report["summary"]["regression"]["psnr_db"] == one["summary"]["regression"]["psnr_db"]
    assert set(case["structures"][name]) == set(case["structures"]["regression"])  # averaged over the draws:
    assert sum(line.startswith(f"case3 {name} (draw ") for line in lines) == 2
    spread = abs(draws[0]["psnr_db"] - draws[1]["psnr_db"]) / 2
    assert report["draw_spread_psnr_db"][name] == pytest.approx(spread)
    markdown = (tmp_path / "two" / "summary.md").read_text(encoding="utf-8")
    assert (
        f"each case scores the mean of 2 draws (sampling seeds 7 to 8); one draw's PSNR lies {spread:.2f} dB ({name})"
        in (markdown)
    )
    assert "draws" not in (tmp_path / "one" / "summary.md").read_text(encoding="utf-8")
    with pytest.raises(InputError, match="the number of draws must be a whole number of at least 1, not 0"):
        EvaluationSettings(out=str(tmp_path / "never"), draws=0, **common)


def test_the_mean_of_draws_averages_every_number_of_nested_results_and_keeps_a_missing_one_missing():
    draws = [
        {"dice": 0.2, "lung": {"prediction": 1.0, "truth": 2.0}, "ratio": None},
        {"dice": 0.4, "lung": {"prediction": 3.0, "truth": 2.0}, "ratio": None},
    ]
    assert mean_of_draws(draws) == {
        "dice": pytest.approx(0.3),
        "lung": {"prediction": 2.0, "truth": 2.0},
        "ratio": None,
    }
    assert mean_of_draws([{"a": 1.0, "b": None}, {"a": 2.0, "b": 5.0}]) == {"a": 1.5, "b": None}


def test_the_mean_of_several_samples_is_an_extra_method():
    methods = diffusion_methods(
        EvaluationSettings(test_set="phantoms", out="x", samples=3, ddpm=True, guidance=0.0), TINY
    )
    assert list(methods) == ["diffusion DDIM-20", "diffusion DDPM-1000", "diffusion DDIM-20, mean of 3"]
    guided = diffusion_methods(
        EvaluationSettings(test_set="phantoms", out="x", samples=3, guidance=1.5, precision="bfloat16"), TINY
    )
    assert all(options.precision == "bfloat16" for options in guided.values())
    assert list(guided) == ["diffusion DDIM-20, guidance 1.5", "diffusion DDIM-20, mean of 3, guidance 1.5"]
    assert all(options.guidance == 1.5 for options in guided.values())
    assert [options.samples for options in methods.values()] == [1, 1, 3]
    assert [options.sampler for options in methods.values()] == ["ddim", "ddpm", "ddim"]


def test_the_default_row_averages_the_models_default_samples_and_another_count_is_the_extra():
    """With a model whose default reconstruction is the mean of 4, the first (default) row is that mean; ``--samples
    1`` adds one sample beside it, DDPM stays one sample, and asking for the default's own count adds nothing."""
    config = replace(TINY, default_steps=10, default_samples=4)
    methods = diffusion_methods(
        EvaluationSettings(test_set="phantoms", out="x", samples=1, ddpm=True, guidance=0.0), config
    )
    assert list(methods) == ["diffusion DDIM-10, mean of 4", "diffusion DDPM-1000", "diffusion DDIM-10"]
    assert [options.samples for options in methods.values()] == [4, 1, 1]
    same = diffusion_methods(EvaluationSettings(test_set="phantoms", out="x", samples=4, guidance=0.0), config)
    assert list(same) == ["diffusion DDIM-10, mean of 4"]


def test_comparisons_count_lower_mae_as_better():
    def record(psnr, mae):
        return {
            "methods": {
                m: {"psnr_db": psnr[i], "ssim": 0.5, "mae_hu": mae[i], "bone_dice": 0.1, "seconds": 1.0}
                for i, m in enumerate(("mean volume", "regression", "diffusion DDIM-5"))
            }
        }

    result = summarise([record((10, 20, 22), (100, 50, 40)), record((10, 20, 18), (100, 50, 60))])
    versus = result["comparisons"]["diffusion DDIM-5 vs regression"]
    assert versus["psnr_db"]["difference"] == [0.0, 2.0] and versus["psnr_db"]["better_cases"] == 1
    assert versus["mae_hu"]["better_cases"] == 1 and versus["ssim"]["better_cases"] == 0
    assert result["comparisons"]["diffusion DDIM-5 vs mean volume"]["mae_hu"]["better_cases"] == 2
    text = report_markdown(
        {
            "test_set": "t",
            "cases": ["a", "b"],
            "model": "m",
            "weights_sha256": "0" * 64,
            "sampling_precision": "float32",
            **result,
        }
    )
    assert "better in 1/2" in text and "LPIPS" in text


def test_bad_evaluation_requests_are_clear_errors(tmp_path, capsys):
    with pytest.raises(InputError, match="at least 1"):
        EvaluationSettings(test_set="phantoms", out=str(tmp_path), cases=0)
    with pytest.raises(InputError, match="folder of CT volumes"):
        evaluate_set(EvaluationSettings(test_set=str(tmp_path / "nowhere"), out=str(tmp_path)))
    (tmp_path / "empty").mkdir()
    assert main(["evaluate", "--set", str(tmp_path / "empty"), "--out", str(tmp_path / "o")]) == 2
    assert "no CT volumes found" in capsys.readouterr().err
    assert main(["evaluate"]) == 2
    assert "--pred and --gt" in capsys.readouterr().err
    assert main(["evaluate", "--set", "phantoms", "--pred", "x.nrrd"]) == 2
    assert main(["evaluate", "--pred", "x.nrrd", "--gt", "y.nrrd", "--draws", "3"]) == 2
    assert "--draws applies to --set" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


def test_files_skipped_after_the_last_case_are_in_the_summary_too(tmp_path, tiny_model, ct_folder, capsys):
    """summary.md lists every skipped file, also those after the last case that was scored (stdout lists them)."""
    import DiffuX2CTLib.core.progress as progress

    folder = tmp_path / "cts"
    folder.mkdir()
    (folder / "a.nrrd").write_bytes((ct_folder / "case3.nrrd").read_bytes())
    (folder / "z-broken.nrrd").write_bytes(b"NRRD0004\nnot an image\n")
    with progress.show_progress_after(0.0):
        code = main(
            [
                "evaluate",
                "--set",
                str(folder),
                "--out",
                str(tmp_path / "out"),
                "--model",
                str(tiny_model),
                "--steps",
                "1",
                "--mean-from",
                str(ct_folder),
            ]
        )
    assert code == 0
    captured = capsys.readouterr()
    assert "z-broken.nrrd" in captured.out
    assert "evaluate: 100%" in captured.err and "| 2/2 " in captured.err  # progress on stderr: the one readable case
    summary = (tmp_path / "out" / "summary.md").read_text(encoding="utf-8")
    assert "Skipped (unreadable): z-broken.nrrd" in summary
    assert "z-broken.nrrd" in json.loads((tmp_path / "out" / "summary.json").read_text(encoding="utf-8"))["skipped"][0]


def test_the_mean_volume_is_made_once_per_model_config_and_source_and_kept_in_the_cache(
    tmp_path, painted_seeds, data_cache_of_the_tests, capsys
):
    from DiffuX2CTLib.core.progress import show_progress_after
    from DiffuX2CTLib.evaluation.evaluate import mean_training_volume

    def cached() -> set[Path]:
        return set((data_cache_of_the_tests / "mean-volumes").glob("*.npy"))

    before = cached()
    with show_progress_after(0.0):
        first, count = mean_training_volume(TINY, "phantoms", count=2, show_progress=True)
    assert count == 2 and len(painted_seeds) == 2
    assert "mean volume" in capsys.readouterr().err  # its progress, while it is made
    assert len(cached() - before) == 1
    again, count = mean_training_volume(TINY, "phantoms", count=2, show_progress=True)
    assert count == 2 and len(painted_seeds) == 2 and np.array_equal(first, again)  # read back, nothing painted
    other = TINY.__class__.from_dict({**TINY.to_dict(), "hu_low": TINY.hu_low + 10.0})
    mean_training_volume(other, "phantoms", count=2)
    assert len(painted_seeds) == 4  # another config, another mean
    folder = tmp_path / "cts"
    grid = VolumeGrid(16, 20.0)
    write_image(
        grid_image(np.linspace(-1000, 500, 16**3, dtype=np.float32).reshape(16, 16, 16), grid), folder / "a.nrrd"
    )
    from_folder, _ = mean_training_volume(TINY, str(folder))
    write_image(grid_image(np.full((16, 16, 16), 100.0, np.float32) + np.eye(16)[None], grid), folder / "a.nrrd")
    changed, _ = mean_training_volume(TINY, str(folder))  # a changed file: made again
    assert not np.array_equal(from_folder, changed)
    assert len(cached() - before) == 4
