"""The diffux2ct command line, run as a user would: real files in, real files out, clear errors."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from DiffuX2CTLib.cli import SET_ONLY_OPTIONS, build_parser, main
from DiffuX2CTLib.imaging.image_io import write_image

COMMANDS = ["phantom", "synthesize", "reconstruct", "evaluate", "train", "demo"]
SAMPLE = Path(__file__).resolve().parent.parent / "Resources" / "SampleData"


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_has_help(command, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main([command, "--help"])
    assert exit_info.value.code == 0
    assert "usage: diffux2ct " + command in capsys.readouterr().out


def test_parser_lists_every_command():
    assert set(COMMANDS) <= set(build_parser()._subparsers._group_actions[0].choices)


def test_phantom_synthesize_evaluate_chain(tmp_path, capsys):
    ct = tmp_path / "ct.nrrd"
    assert (
        main(["phantom", "--seed", "3", "--region", "chest", "--out", str(ct), "--size", "40", "--spacing", "8"]) == 0
    )
    image = sitk.ReadImage(str(ct))
    assert image.GetSize() == (40, 40, 40) and image.GetPixelID() == sitk.sitkInt16
    out = tmp_path / "pair"
    assert main(["synthesize", "--ct", str(ct), "--out", str(out), "--pixels", "64", "--pixel-spacing", "6.4"]) == 0
    ap = sitk.ReadImage(str(out / "ap.nrrd"))
    assert ap.GetSize() == (64, 64, 1)
    geometry = json.loads((out / "geometry.json").read_text(encoding="utf-8"))
    assert [v["view"] for v in geometry["views"]] == ["ap", "lateral"]
    # the AP detector sits behind the patient: 200 mm posterior of the isocentre (the CT centre)
    centre = ap.TransformContinuousIndexToPhysicalPoint((31.5, 31.5, 0.0))
    assert centre[1] == pytest.approx(geometry["views"][0]["isocenter_lps"][1] + 200.0, abs=1e-3)
    capsys.readouterr()
    assert main(["evaluate", "--pred", str(ct), "--gt", str(ct)]) == 0
    metrics = json.loads(capsys.readouterr().out)
    assert metrics["ssim"] == pytest.approx(1.0, abs=1e-4)


def test_bad_input_is_one_clear_line_and_exit_code_2(tmp_path):
    flat = tmp_path / "flat.png"
    sitk.WriteImage(sitk.GetImageFromArray(np.full((40, 40), 9, np.uint8)), str(flat))
    result = subprocess.run(
        [sys.executable, "-m", "DiffuX2CTLib.cli", "synthesize", "--ct", str(flat), "--out", str(tmp_path / "o")],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 2
    # a loaded machine may take over 2 s to get there, so a stage bar may be drawn (and cleared) before the error
    lines = [line for line in result.stderr.replace("\r", "\n").splitlines() if line.strip()]
    assert [line for line in lines if "error" in line or "Traceback" in line] == [lines[-1]]
    assert (
        lines[-1]
        == "diffux2ct synthesize: error: --ct flat.png: is a 2D radiograph (40 x 40 pixels), not a CT volume; "
        "synthesize renders the radiograph pair of a CT"
    )
    assert not (tmp_path / "o").exists()


def test_demo_reconstructs_the_sample_with_the_bundled_model(tmp_path, capsys):
    out = tmp_path / "demo"
    assert main(["demo", "--out", str(out)]) == 0
    report = json.loads(capsys.readouterr().out)
    ct = sitk.ReadImage(str(out / "ct.nrrd"))
    assert ct.GetSize() == (64, 64, 64) and ct.GetSpacing() == pytest.approx((5.0, 5.0, 5.0))
    assert (out / "preview.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    metrics, baseline = report["metrics_vs_ground_truth"], _mean_volume_scores(SAMPLE / "ct.nrrd")
    assert metrics["voxels_compared"] == 128**3 and metrics["gt_body_covered"] == 1.0  # all of the 128^3 ground truth
    # it reconstructs this patient, not the average chest (a strong baseline: same region, same grid)
    assert metrics["psnr_db"] > baseline["psnr_db"] + 0.3 and metrics["mae_hu"] < baseline["mae_hu"] - 20.0
    assert metrics["ssim"] > baseline["ssim"]
    # the sample pair shows the chest beyond the model's cube, as any radiograph does; no view is reported as
    # disagreeing for that (agreement over the pixels whose ray crosses the whole cube)
    assert min(report["agreement"].values()) > 0.9, report["agreement"]


def _mean_volume_scores(truth_path: Path) -> dict[str, float]:
    """The metrics of the mean-volume baseline (the average of 8 training chest phantoms on the bundled model's
    grid, placed where the demo's chest CT is): what a model that ignores the radiographs would score."""
    from DiffuX2CTLib.anatomy.phantom import generate_phantom
    from DiffuX2CTLib.evaluation.metrics import compare
    from DiffuX2CTLib.imaging.geometry import VolumeGrid
    from DiffuX2CTLib.imaging.image_io import grid_image, image_center_lps, read_ct
    from DiffuX2CTLib.model.card import read_model_card
    from DiffuX2CTLib.model.config import ModelConfig

    config, truth = ModelConfig.from_dict(read_model_card()["model"]), read_ct(truth_path)
    grid = config.grid(image_center_lps(truth))
    mean = np.mean(
        [generate_phantom(seed, VolumeGrid(grid.size, grid.spacing_mm), "chest").numpy() for seed in range(8)], axis=0
    )
    return compare(grid_image(mean, grid), truth)


def test_paths_with_spaces_unicode_and_shell_characters_work(tmp_path, capsys):
    sample = Path(__file__).resolve().parent.parent / "Resources" / "SampleData"
    odd = tmp_path / "scan dir ü $(touch x); `y` & z"
    odd.mkdir()
    for view in ("ap", "lateral"):
        (odd / f"{view} (copy)'.nrrd").write_bytes((sample / f"{view}.nrrd").read_bytes())
    out = odd / "out ü;|.nrrd"
    assert (
        main(
            [
                "reconstruct",
                "--quiet",
                "--method",
                "regression",
                "--ap",
                str(odd / "ap (copy)'.nrrd"),
                "--lateral",
                str(odd / "lateral (copy)'.nrrd"),
                "--out",
                str(out),
            ]
        )
        == 0
    )
    assert out.is_file() and not (tmp_path / "x").exists() and not Path("x").exists()
    assert sorted(p.name for p in odd.iterdir() if p.name.startswith(".")) == []  # no temporary file left behind


def test_evaluate_refuses_a_prediction_that_covers_a_fragment_of_the_body(tmp_path, phantom_ct, capsys):
    gt = write_image(phantom_ct, tmp_path / "gt.nrrd")
    crop = write_image(sitk.RegionOfInterest(phantom_ct, (20, 20, 20), (14, 14, 14)), tmp_path / "crop.nrrd")
    assert main(["evaluate", "--pred", str(crop), "--gt", str(gt), "--quiet"]) == 2  # no progress bar on a slow read
    captured = capsys.readouterr()
    assert captured.out == ""
    assert re.fullmatch(
        r"diffux2ct evaluate: error: crop.nrrd covers \d+ % of the body in gt.nrrd; scores of so small an overlap "
        r"do not describe the reconstruction \(at least 50 % needed\)\n",
        captured.err,
    )
    most = write_image(sitk.RegionOfInterest(phantom_ct, (48, 48, 36), (0, 0, 6)), tmp_path / "most.nrrd")
    assert main(["evaluate", "--pred", str(most), "--gt", str(gt), "--quiet"]) == 0
    captured = capsys.readouterr()
    assert 0.5 < json.loads(captured.out)["gt_body_covered"] < 0.9
    assert re.fullmatch(
        r"warning: most.nrrd covers \d+ % of the body in gt.nrrd; the metrics describe only that part\n", captured.err
    )


def test_scoring_one_reconstruction_refuses_the_options_of_a_test_set(tmp_path, capsys):
    """``--steps`` or ``--model`` with ``--pred --gt`` would be ignored; a score must not seem to come from them."""
    score = ["evaluate", "--pred", str(tmp_path / "a.nrrd"), "--gt", str(tmp_path / "b.nrrd")]
    assert _refused([*score, "--steps", "5"], capsys) == (
        "--steps applies to --set, which reconstructs a test set; scoring one reconstruction (--pred, --gt) takes none "
        "of them"
    )
    assert _refused([*score, "--model", "m", "--ddpm"], capsys).startswith("--model, --ddpm apply to --set")


def test_the_set_only_options_list_the_parsers_defaults():
    """Every option named in SET_ONLY_OPTIONS exists on ``evaluate`` with the default the refusal compares with."""
    defaults = vars(build_parser().parse_args(["evaluate"]))
    assert {name: defaults[name] for name, _ in SET_ONLY_OPTIONS.values()} == dict(SET_ONLY_OPTIONS.values())


@pytest.fixture()
def pair(tmp_path) -> tuple[Path, Path]:
    """Copies of the sample pair that a wrong command could destroy."""
    paths = []
    for view in ("ap", "lateral"):
        paths.append(tmp_path / f"{view}.nrrd")
        paths[-1].write_bytes((SAMPLE / f"{view}.nrrd").read_bytes())
    return tuple(paths)


@pytest.fixture()
def no_work(monkeypatch):
    """Every command's work fails the test if reached: a refusal must come before any of it."""
    import DiffuX2CTLib.imaging.image_io as io
    import DiffuX2CTLib.inference.reconstruct as reconstruct

    def reached(*args, **kwargs):
        raise AssertionError("the work started before the options were refused")

    monkeypatch.setattr(reconstruct, "reconstruct_pair", reached)
    monkeypatch.setattr(io, "read_ct", reached)
    monkeypatch.setattr("DiffuX2CTLib.cli.VolumeGrid", reached)


def _refused(argv: list[str], capsys) -> str:
    """Run a command that must be refused; returns its one error line."""
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith(f"diffux2ct {argv[0]}: error: ")
    return err.strip().split(": error: ", 1)[1]


def test_an_output_over_an_input_or_another_output_is_refused(tmp_path, pair, capsys, no_work):
    ap, lateral = pair
    before = ap.read_bytes(), lateral.read_bytes()
    common = ["reconstruct", "--ap", str(ap), "--lateral", str(lateral)]
    assert (
        _refused([*common, "--out", str(ap)], capsys)
        == f"--out {ap}: is the input --ap; it would be overwritten (choose another output)"
    )
    (tmp_path / "link.png").symlink_to(lateral)
    assert _refused(
        [*common, "--out", str(tmp_path / "ct.nrrd"), "--preview", str(tmp_path / "link.png")], capsys
    ).startswith("--preview")
    assert _refused([*common, "--out", str(tmp_path / "ct.nrrd"), "--preview", str(tmp_path / "ct.nrrd")], capsys) == (
        f"--preview {tmp_path / 'ct.nrrd'}: unsupported output type '.nrrd' (use .png)"
    )
    samples_over_input = [*common, "--out", str(tmp_path / "x.nrrd"), "--samples", "2"]
    (tmp_path / "x-uncertainty.nrrd").symlink_to(ap)
    assert (
        _refused(samples_over_input, capsys)
        == f"the uncertainty volume {tmp_path / 'x-uncertainty.nrrd'}: is the input --ap; it would be overwritten "
        "(choose another output)"
    )
    # without --samples the bundled model's default (the mean of 4) writes that volume too
    assert _refused([*common, "--out", str(tmp_path / "x.nrrd")], capsys).startswith("the uncertainty volume")
    assert (ap.read_bytes(), lateral.read_bytes()) == before
    synthesized = ["synthesize", "--ct", str(tmp_path / "ap.nrrd"), "--out", str(tmp_path)]
    assert (
        _refused(synthesized, capsys)
        == f"--out ap.nrrd {tmp_path / 'ap.nrrd'}: is the input --ct; it would be overwritten (choose another output)"
    )
    (tmp_path / "sample").symlink_to(SAMPLE)
    assert _refused(["demo", "--out", str(tmp_path / "sample")], capsys).endswith(
        "is the input the sample's ct.nrrd; it would be overwritten (choose another output)"
    )


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (
            ["--out", "{tmp}/ct.txt"],
            "--out {tmp}/ct.txt: unsupported output type '.txt' (use .nrrd, .nii.gz, .nii, .mha)",
        ),
        (
            ["--out", "{tmp}/ct.nrrd", "--preview", "{tmp}/p.jpg"],
            "--preview {tmp}/p.jpg: unsupported output type '.jpg' (use .png)",
        ),
        (
            ["--out", "{tmp}/file/ct.nrrd"],
            "--out {tmp}/file/ct.nrrd: cannot be written: {tmp}/file is a file, not a folder",
        ),
        (
            [
                "--out",
                "{tmp}",
            ],
            "--out {tmp}: unsupported output type 'no extension' (use .nrrd, .nii.gz, .nii, .mha)",
        ),
        (
            ["--out", "{tmp}/ct.nrrd", "--sampler", "ddpm", "--steps", "3"],
            "--steps applies to DDIM only: --sampler ddpm always runs all the model's diffusion steps (leave --steps "
            "out, or use --sampler ddim)",
        ),
        (
            ["--out", "{tmp}/ct.nrrd", "--method", "regression", "--samples", "4"],
            "--samples: regression is one direct estimate; these options apply to --method diffusion only",
        ),
        (
            ["--out", "{tmp}/ct.nrrd", "--method", "regression", "--steps", "4", "--sampler", "ddpm"],
            "--steps, --sampler ddpm: regression is one direct estimate; these options apply to --method diffusion "
            "only",
        ),
        (
            ["--out", "{tmp}/ct.nrrd", "--method", "regression", "--precision", "bfloat16"],
            "--precision bfloat16: regression is one direct estimate; these options apply to --method diffusion only",
        ),
    ],
)
def test_reconstruct_options_and_outputs_are_refused_before_any_work(tmp_path, pair, capsys, no_work, argv, message):
    (tmp_path / "file").write_text("not a folder")
    ap, lateral = pair
    argv = [a.format(tmp=tmp_path) for a in argv]
    assert _refused(["reconstruct", "--ap", str(ap), "--lateral", str(lateral), *argv], capsys) == message.format(
        tmp=tmp_path
    )
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ap.nrrd", "file", "lateral.nrrd"]


@pytest.mark.parametrize("precision", ["float32", "bfloat16"])
def test_precision_reaches_the_reconstruction_options(tmp_path, pair, capsys, monkeypatch, precision):
    """``--precision`` of reconstruct, demo and evaluate --set is what the reconstruction (or evaluation) gets."""
    import DiffuX2CTLib.evaluation.evaluate as evaluate
    import DiffuX2CTLib.inference.reconstruct as reconstruct
    from DiffuX2CTLib.core.errors import InputError

    asked = []

    def capture(*args, **kwargs):
        asked.append(next(a.precision for a in args if hasattr(a, "precision")))
        raise InputError("captured")  # stop before any work

    monkeypatch.setattr(reconstruct, "reconstruct_pair", capture)
    monkeypatch.setattr(evaluate, "evaluate_set", capture)
    ap, lateral = pair
    assert (
        main(
            [
                "reconstruct",
                "--ap",
                str(ap),
                "--lateral",
                str(lateral),
                "--out",
                str(tmp_path / "ct.nrrd"),
                "--precision",
                precision,
            ]
        )
        == 2
    )
    assert main(["demo", "--out", str(tmp_path / "demo"), "--precision", precision]) == 2
    assert main(["evaluate", "--set", "phantoms", "--out", str(tmp_path / "evaluation"), "--precision", precision]) == 2
    assert asked == [precision] * 3
    assert capsys.readouterr().err.count("captured") == 3


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (
            ["phantom", "--seed", "1", "--out", "x.nrrd", "--size", "0"],
            "argument --size: 0 is out of range (use from 16 to 512)",
        ),
        (
            ["phantom", "--seed", "1", "--out", "x.nrrd", "--size", "2000"],
            "argument --size: 2000 is out of range (use from 16 to 512)",
        ),
        (
            ["phantom", "--seed", "1", "--out", "x.nrrd", "--spacing", "0"],
            "argument --spacing: 0 is out of range (use a number above 0 and at most 20)",
        ),
        (
            ["phantom", "--seed", "-5", "--out", "x.nrrd"],
            "argument --seed: -5 is out of range (use from 0 to 9223372036854775807)",
        ),
        (["phantom", "--seed", "1e23", "--out", "x.nrrd"], "argument --seed: '1e23' is not a whole number"),
        (
            ["reconstruct", "--ap", "a", "--lateral", "b", "--out", "c.nrrd", "--seed", str(10**23)],
            "argument --seed: 100000000000000000000000 is out of range (use from 0 to 9223372036854775807)",
        ),
        (
            ["reconstruct", "--ap", "a", "--lateral", "b", "--out", "c.nrrd", "--steps", "0"],
            "argument --steps: 0 is out of range (use at least 1)",
        ),
        (
            ["synthesize", "--ct", "a.nrrd", "--out", "o", "--pixels", "0"],
            "argument --pixels: 0 is out of range (use from 16 to 4096)",
        ),
        (
            ["synthesize", "--ct", "a.nrrd", "--out", "o", "--sdd", "nan"],
            "argument --sdd: nan is out of range (use a number above 0)",
        ),
        (
            ["evaluate", "--set", "phantoms", "--samples", "0"],
            "argument --samples: 0 is out of range (use from 1 to 64)",
        ),
        (["train", "--out", "o", "--batch", "0"], "argument --batch: 0 is out of range (use at least 1)"),
        (
            ["train", "--out", "o", "--checkpoint-every", "0"],
            "argument --checkpoint-every: 0 is out of range (use at least 1)",
        ),
        (
            ["train", "--out", "o", "--lr", "-1"],
            "argument --lr: -1 is out of range (use a number above 0 and at most 1)",
        ),
        (
            ["train", "--out", "o", "--seed", "-5"],
            "argument --seed: -5 is out of range (use from 0 to 9223372036854775807)",
        ),
        (
            ["train", "--out", "o", "--data", "phantom:abc"],
            "argument --data: 'phantom:abc': the seed 'abc' is not a whole number; use 'phantoms', 'phantom:SEED' "
            "(one phantom, SEED a whole number from 0), 'real', 'phantoms+real' or a folder of CT volumes",
        ),
        (
            ["train", "--out", "o", "--data", "no/such/folder"],
            "argument --data: 'no/such/folder' is neither a folder nor a phantom source; use 'phantoms', "
            "'phantom:SEED' (one phantom, SEED a whole number from 0), 'real', 'phantoms+real' or a folder of CT "
            "volumes",
        ),
        (["train", "--out", "o", "--grid", "4"], "argument --grid: 4 is out of range (use from 8 to 512)"),
        (
            ["reconstruct", "--ap", "a", "--lateral", "b", "--out", "c.nrrd", "--guidance", "-1"],
            "argument --guidance: -1 is out of range (use a number from 0, off, to 100)",
        ),
        (
            ["evaluate", "--set", "phantoms", "--guidance", "1e9"],
            "argument --guidance: 1e+09 is out of range (use a number from 0, off, to 100)",
        ),
    ],
)
def test_option_values_are_checked_when_parsed(argv, message, capsys, no_work):
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2
    assert capsys.readouterr().err.strip().splitlines()[-1] == f"diffux2ct {argv[0]}: error: {message}"


def test_synthesize_and_output_folders_are_checked_before_any_work(tmp_path, capsys, no_work):
    (tmp_path / "file").write_text("not a folder")
    base = ["synthesize", "--ct", str(tmp_path / "ct.nrrd")]
    assert _refused([*base, "--out", str(tmp_path / "o"), "--sdd", "500", "--sid", "1000"], capsys) == (
        "--sdd 500 must exceed --sid 1000: the detector lies beyond the patient, seen from the source"
    )
    assert (
        _refused([*base, "--out", str(tmp_path / "file")], capsys)
        == f"--out {tmp_path / 'file'}: cannot be used as a folder: {tmp_path / 'file'} is a file"
    )
    assert _refused(["train", "--out", str(tmp_path / "file" / "run")], capsys).startswith(
        f"--out {tmp_path / 'file' / 'run'}: cannot be used as a folder"
    )
    assert _refused(["evaluate", "--set", "phantoms", "--out", str(tmp_path / "file")], capsys).startswith("--out")
    (tmp_path / "cts").mkdir()
    assert _refused(
        ["evaluate", "--set", str(tmp_path / "cts"), "--out", str(tmp_path / "cts" / "results")], capsys
    ) == (
        f"--out {tmp_path / 'cts' / 'results'}: is inside the test set {tmp_path / 'cts'}; what the run writes would "
        "be read as CTs next time (choose another folder)"
    )
    assert _refused(
        ["evaluate", "--set", "phantoms", "--mean-from", str(tmp_path / "cts"), "--out", str(tmp_path / "cts")], capsys
    ).startswith(f"--out {tmp_path / 'cts'}: is inside the mean-volume CTs {tmp_path / 'cts'}")
    assert _refused(
        ["train", "--data", str(tmp_path / "cts"), "--out", str(tmp_path / "cts" / "run")], capsys
    ).startswith(f"--out {tmp_path / 'cts' / 'run'}: is inside the training data {tmp_path / 'cts'}")
    assert _refused(["phantom", "--seed", "1", "--out", str(tmp_path / "x.txt")], capsys) == (
        f"--out {tmp_path / 'x.txt'}: unsupported output type '.txt' (use .nrrd, .nii.gz, .nii, .mha)"
    )  # no temporary file named
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cts", "file"]


def test_more_steps_than_the_model_has_are_refused_before_sampling(tmp_path, pair, capsys):
    ap, lateral = pair
    message = _refused(
        [
            "reconstruct",
            "--quiet",
            "--ap",
            str(ap),
            "--lateral",
            str(lateral),
            "--out",
            str(tmp_path / "ct.nrrd"),
            "--steps",
            "1001",
        ],
        capsys,
    )
    assert message == "1001 sampling steps requested, but the model has only 1000 diffusion steps (use at most 1000)"
    assert not (tmp_path / "ct.nrrd").exists()


def test_an_error_is_one_line_without_an_empty_progress_bar_before_it(tmp_path):
    flat = tmp_path / "flat.png"
    sitk.WriteImage(sitk.GetImageFromArray(np.full((40, 40), 9, np.uint8)), str(flat))
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "DiffuX2CTLib.cli",
            "reconstruct",
            "--ap",
            str(flat),
            "--lateral",
            str(flat),
            "--out",
            str(tmp_path / "ct.nrrd"),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 2
    assert (
        result.stderr
        == "diffux2ct reconstruct: error: flat.png: image is constant (every pixel is 9); nothing to reconstruct from\n"
    )


def test_a_filesystem_failure_while_writing_is_one_line_naming_the_output(tmp_path, pair, capsys, monkeypatch):
    """A disk that fills up after the checks passed: one message naming the output, exit 2, the old file intact."""
    ap, lateral = pair
    out = tmp_path / "ct.nrrd"
    out.write_bytes(b"previous result")

    def full(image, path, *args):
        Path(path).write_bytes(b"half")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(sitk, "WriteImage", full)
    message = _refused(
        [
            "reconstruct",
            "--quiet",
            "--method",
            "regression",
            "--ap",
            str(ap),
            "--lateral",
            str(lateral),
            "--out",
            str(out),
        ],
        capsys,
    )
    assert message == f"{out}: cannot be written (No space left on device)"
    assert out.read_bytes() == b"previous result" and sorted(p.name for p in tmp_path.iterdir()) == [
        "ap.nrrd",
        "ct.nrrd",
        "lateral.nrrd",
    ]


def test_help_and_argument_errors_load_neither_torch_nor_monai():
    """``diffux2ct --help`` and a typo are answered without importing the network's libraries (seconds of CPU)."""
    probe = (
        "import sys\n"
        "from DiffuX2CTLib import cli\n"
        "for argv in (['--help'], ['reconstruct', '--help'], ['reconstruct', '--seed', 'x']):\n"
        "    try:\n"
        "        cli.main(argv)\n"
        "    except SystemExit:\n"
        "        pass\n"
        "print(sorted({'torch', 'monai', 'SimpleITK'} & set(sys.modules)))\n"
    )
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert result.stdout.strip().splitlines()[-1] == "[]"


def test_shared_flags_are_declared_once_and_mean_the_same_everywhere():
    """--seed, --device and --precision come from one declaration (the commands that run the network share it),
    --model/--steps/--samples/--guidance from one more; MAX_SEED is defined once in the engine."""
    import ast
    import inspect

    from DiffuX2CTLib import cli

    declared = [
        node.args[0].value
        for node in ast.walk(ast.parse(inspect.getsource(cli)))
        if isinstance(node, ast.Call) and getattr(node.func, "attr", "") == "add_argument" and node.args
        and isinstance(node.args[0], ast.Constant)
    ]  # fmt: skip
    for flag in ("--device", "--precision", "--model", "--samples", "--guidance"):
        assert declared.count(flag) == 1, flag
    assert declared.count("--seed") == 2  # the shared one, and the phantom's (required: it names the patient)
    parser = cli.build_parser()
    for command in ("reconstruct", "evaluate", "train", "demo"):
        args = parser.parse_args(
            [command, "--seed", "7", "--device", "cpu", "--precision", "float32", *_required(command)]
        )
        assert (args.seed, args.device, args.precision) == (7, "cpu", "float32")
    engine = Path(__file__).resolve().parents[1] / "DiffuX2CTLib"
    definitions = [
        p for p in engine.rglob("*.py") if re.search(r"^MAX_SEED\s*=", p.read_text(encoding="utf-8"), re.MULTILINE)
    ]
    assert [p.relative_to(engine).as_posix() for p in definitions] == ["core/seeds.py"]


def _required(command: str) -> list[str]:
    return {"reconstruct": ["--ap", "a", "--lateral", "b", "--out", "c.nrrd"], "train": ["--out", "run"]}.get(
        command, []
    )


def _strict_json(text: str):
    """``json.loads`` that refuses what JSON does not have: Infinity, -Infinity and NaN."""

    def refuse(constant: str):
        raise AssertionError(f"{constant} is not valid JSON")

    return json.loads(text, parse_constant=refuse)


def _body_ct(path: Path, size: int = 20, spacing: float = 16.0) -> Path:
    """A cube CT of ``size`` voxels of ``spacing`` mm: air with a water block in the middle."""
    from DiffuX2CTLib.imaging.geometry import VolumeGrid
    from DiffuX2CTLib.imaging.image_io import grid_image

    array = np.full((size,) * 3, -1000.0, np.float32)
    array[size // 4 : -size // 4, size // 4 : -size // 4, size // 4 : -size // 4] = 0.0
    return write_image(grid_image(array, VolumeGrid(size, spacing)), path)


# Reliability round 3, point 7: inputs accepted that cannot work


def test_a_source_inside_the_ct_is_refused_with_the_distance_it_needs(tmp_path, capsys):
    ct = _body_ct(tmp_path / "ct.nrrd")  # a 320 mm cube: it reaches 160 mm from its centre towards each source
    base = ["synthesize", "--ct", str(ct), "--out", str(tmp_path / "pair"), "--pixels", "32", "--pixel-spacing", "12"]
    assert _refused([*base, "--sid", "10", "--sdd", "20"], capsys) == (
        "--sid 10 puts the X-ray source inside the CT: ct.nrrd reaches 160 mm from its centre towards the ap source; "
        "use --sid above 160 (mm from the source to the CT's centre; a clinical radiograph's is about 1000)"
    )
    assert _refused([*base, "--sid", "150", "--sdd", "400"], capsys).startswith("--sid 150 puts the X-ray source")
    assert not (tmp_path / "pair").exists()
    assert main([*base, "--sid", "170", "--sdd", "400", "--quiet"]) == 0  # just outside: a cone beam that works
    assert (tmp_path / "pair" / "ap.nrrd").is_file()


def test_a_batch_that_cannot_fit_in_memory_is_refused_saying_what_it_needs(tmp_path, capsys, monkeypatch, no_work):
    import DiffuX2CTLib.core.memory as memory

    monkeypatch.setattr("DiffuX2CTLib.training.trainer.train", lambda *a, **k: pytest.fail("training started"))
    monkeypatch.setattr(memory, "total_memory_bytes", lambda: 16 * 2**30)
    run = tmp_path / "run"
    message = _refused(["train", "--out", str(run), "--device", "cpu", "--batch", "100000"], capsys)
    assert re.fullmatch(
        r"--batch 100000: the batch would need about [\d.]+ TiB of memory \([\d.]+ MiB per sample: the 64\^3 model "
        r"grid's activations and the 160\^3 volume its DRRs are rendered from\), more than the 16.0 GiB of this "
        r"machine; use --batch \d+ or less",
        message,
    ), message
    assert int(message.rsplit("--batch ", 1)[1].split()[0]) >= 8  # a batch that fits is still allowed
    message = _refused(["train", "--out", str(run), "--device", "cpu", "--grid", "512"], capsys)
    assert re.fullmatch(
        r"--grid 512: one sample would need about [\d.]+ GiB of memory \(the 512\^3 model grid's activations and the "
        r"1280\^3 volume its DRRs are rendered from\), more than the 16.0 GiB of this machine; use a smaller --grid",
        message,
    ), message
    assert not run.exists()


def test_a_phantom_too_large_for_the_memory_is_refused_saying_what_it_needs(tmp_path, capsys, monkeypatch, no_work):
    import DiffuX2CTLib.core.memory as memory

    monkeypatch.setattr(memory, "available_memory_bytes", lambda: 2**30)
    message = _refused(
        ["phantom", "--seed", "1", "--region", "chest", "--size", "512", "--out", str(tmp_path / "p.nrrd")], capsys
    )
    assert re.fullmatch(
        r"--size 512: painting 512 x 512 x 512 voxels needs about [\d.]+ GiB of memory, more than the 1.0 GiB "
        r"available; use --size \d+ or less \(or a larger --spacing for the same field of view\)",
        message,
    ), message
    assert _refused(["phantom", "--seed", "1", "--size", "512", "--out", str(tmp_path / "p.nrrd")], capsys).startswith(
        "--size 512: painting 512 x 512 x "
    )  # the whole trunk: its height in slices follows from --spacing
    assert not list(tmp_path.iterdir())


# Point 8: tracebacks and misleading messages


LOOP_IN = ": is a symbolic link that leads back to itself (a loop); give the file or folder it should point to"
LOOP_OUT = ": is a symbolic link that leads back to itself (a loop); remove it or choose another output"


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (
            ["reconstruct", "--ap", "{loop}", "--lateral", "{lateral}", "--out", "{tmp}/ct.nrrd"],
            "--ap {loop}{IN}",
        ),
        (
            ["reconstruct", "--ap", "{ap}", "--lateral", "{lateral}", "--out", "{loop}"],
            "--out {loop}{OUT}",
        ),
        (
            ["reconstruct", "--ap", "{ap}", "--lateral", "{lateral}", "--out", "{tmp}/ct.nrrd", "--preview", "{png}"],
            "--preview {png}: is a symbolic link that leads back to itself (a loop); remove it or choose another "
            "output",
        ),
        (
            ["reconstruct", "--ap", "{ap}", "--lateral", "{lateral}", "--out", "{tmp}/ct.nrrd", "--model", "{dir}"],
            "--model {dir}{IN}",
        ),
        (
            ["synthesize", "--ct", "{loop}", "--out", "{tmp}/pair"],
            "--ct {loop}{IN}",
        ),
        (
            ["synthesize", "--ct", "{ap}", "--out", "{dir}"],
            "--out {dir}{OUT}",
        ),
        (
            ["evaluate", "--pred", "{loop}", "--gt", "{ap}"],
            "--pred {loop}{IN}",
        ),
        (
            ["evaluate", "--set", "{dir}", "--out", "{tmp}/evaluation"],
            "--set {dir}{IN}",
        ),
        (
            ["train", "--out", "{dir}"],
            "--out {dir}{OUT}",
        ),
        (
            ["train", "--out", "{tmp}/run", "--init", "{loop}"],
            "--init {loop}{IN}",
        ),
        (
            ["phantom", "--seed", "1", "--out", "{loop}"],
            "--out {loop}{OUT}",
        ),
        (
            ["demo", "--out", "{dir}/inside"],
            "--out {dir}/inside: is a symbolic link that leads back to itself (a loop); remove it or choose another "
            "output",
        ),
    ],
)
def test_a_symbolic_link_loop_is_one_clear_line(tmp_path, pair, capsys, no_work, argv, message):
    ap, lateral = pair
    names = {"loop": tmp_path / "loop.nrrd", "png": tmp_path / "loop.png", "dir": tmp_path / "loop"}
    for link in names.values():
        link.symlink_to(link.name)  # ln -s loop loop
    values = {"tmp": tmp_path, "ap": ap, "lateral": lateral, **names, "IN": LOOP_IN, "OUT": LOOP_OUT}
    argv = [a.format(**values) for a in argv]
    assert _refused(argv, capsys) == message.format(**values)


@pytest.fixture()
def unreadable(tmp_path, monkeypatch):
    """A file that exists but its owner may not read (chmod 000; as root, os.access says what a user would get)."""
    locked = tmp_path / "locked.nrrd"
    locked.write_bytes((SAMPLE / "ap.nrrd").read_bytes())
    locked.chmod(0)
    if os.access(locked, os.R_OK):  # root reads anything: answer as for everyone else
        real = os.access
        monkeypatch.setattr(os, "access", lambda path, mode, **kw: real(path, mode, **kw) and Path(path) != locked)
    yield locked
    locked.chmod(0o644)


def test_an_unreadable_input_is_called_unreadable_not_missing(tmp_path, pair, capsys, no_work, unreadable):
    ap, lateral = pair
    expected = f"{unreadable}: cannot be read: no permission (the file exists; check its permissions)"
    argv = ["reconstruct", "--ap", str(unreadable), "--lateral", str(lateral), "--out", str(tmp_path / "ct.nrrd")]
    assert _refused(argv, capsys) == f"--ap {expected}"
    assert _refused(["evaluate", "--pred", str(ap), "--gt", str(unreadable)], capsys) == f"--gt {expected}"
    assert _refused(["synthesize", "--ct", str(unreadable), "--out", str(tmp_path / "o")], capsys) == f"--ct {expected}"


def test_a_radiograph_given_as_a_ct_to_score_is_called_a_radiograph(tmp_path, capsys):
    message = _refused(["evaluate", "--pred", str(SAMPLE / "ap.nrrd"), "--gt", str(SAMPLE / "ct.nrrd")], capsys)
    assert message == (
        "--pred ap.nrrd: is a 2D radiograph (256 x 256 pixels), not a CT volume; evaluate scores a reconstructed CT "
        "against its ground-truth CT"
    )


def test_a_ct_scored_against_itself_prints_valid_json(tmp_path, capsys):
    ct = _body_ct(tmp_path / "ct.nrrd")
    assert main(["evaluate", "--pred", str(ct), "--gt", str(ct)]) == 0
    metrics = _strict_json(capsys.readouterr().out)
    assert metrics["psnr_db"] is None
    assert metrics["psnr_db_note"] == "the volumes are identical within the HU window: PSNR is infinite"
    assert metrics["ssim"] == pytest.approx(1.0, abs=1e-4)


def test_a_training_run_stopped_by_its_time_limit_says_so_and_how_to_continue(tmp_path, capsys, monkeypatch):
    run = tmp_path / "run"

    def stopped_early(settings, show_progress=True):
        """What the trainer leaves after a time limit: the checkpoint and model of step 3, progress.json saying so."""
        (run / "model").mkdir(parents=True)
        (run / "progress.json").write_text('{"step": 3}\n', encoding="utf-8")
        return run / "model"

    monkeypatch.setattr("DiffuX2CTLib.training.trainer.train", stopped_early)
    argv = ["train", "--out", str(run), "--device", "cpu", "--steps", "1000", "--time-limit", "0.01", "--quiet"]
    assert main(argv) == 0
    assert capsys.readouterr().out == (
        "stopped at the time limit (0.01 minutes) at step 3 of 1000; the model of step 3 is exported to "
        f"{run / 'model'}; to continue, run the same command again (it resumes from step 3)\n"
    )
    (run / "progress.json").write_text('{"step": 1000}\n', encoding="utf-8")
    monkeypatch.setattr("DiffuX2CTLib.training.trainer.train", lambda settings, show_progress=True: run / "model")
    assert main(argv) == 0
    assert capsys.readouterr().out == f"model exported to {run / 'model'} (step 1000 of 1000)\n"


# Point 9: progress on stderr for every command that can take long, off with --quiet

QUIET_REQUIRED = {
    "phantom": ["--seed", "1", "--out", "x.nrrd"],
    "synthesize": ["--ct", "x.nrrd", "--out", "o"],
    "reconstruct": ["--ap", "a", "--lateral", "b", "--out", "c.nrrd"],
    "evaluate": ["--set", "phantoms"],
    "train": ["--out", "run"],
    "demo": [],
    "fetch-real": [],
}


@pytest.mark.parametrize("command", sorted(QUIET_REQUIRED))
def test_every_command_takes_quiet(command):
    assert build_parser().parse_args([command, *QUIET_REQUIRED[command], "--quiet"]).quiet is True


@pytest.fixture()
def progress_at_once(monkeypatch):
    """Progress bars show from the first moment (they wait a couple of seconds otherwise, so quick runs stay quiet)."""
    import DiffuX2CTLib.core.progress as progress

    monkeypatch.setattr(progress, "PROGRESS_DELAY_S", 0.0)


def test_phantom_and_synthesize_show_progress_on_stderr_unless_quiet(tmp_path, capsys, progress_at_once):
    phantom = ["phantom", "--seed", "2", "--region", "chest", "--size", "24", "--spacing", "12"]
    assert main([*phantom, "--out", str(tmp_path / "a.nrrd")]) == 0
    captured = capsys.readouterr()
    assert "phantom" in captured.err and "paint" in captured.err and captured.out.startswith("phantom seed 2")
    assert main([*phantom, "--out", str(tmp_path / "b.nrrd"), "--quiet"]) == 0
    assert capsys.readouterr().err == ""
    synthesize = ["synthesize", "--ct", str(tmp_path / "a.nrrd"), "--pixels", "32", "--pixel-spacing", "12"]
    assert main([*synthesize, "--out", str(tmp_path / "pair")]) == 0
    assert "synthesize" in capsys.readouterr().err
    assert main([*synthesize, "--out", str(tmp_path / "pair2"), "--quiet"]) == 0
    assert capsys.readouterr().err == ""
