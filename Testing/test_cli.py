"""The diffux2ct command line, run as a user would: real files in, real files out, clear errors."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from DiffuX2CTLib.cli import build_parser, main

COMMANDS = ["phantom", "synthesize", "reconstruct", "evaluate", "train", "demo"]


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
    assert main(["phantom", "--seed", "3", "--region", "chest", "--out", str(ct), "--size", "40", "--spacing", "8"]) == 0
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
        capture_output=True, text=True, check=False,
    )
    assert result.returncode == 2
    assert result.stderr.strip() == "diffux2ct synthesize: error: flat.png: image is 2D with size (40, 40); expected a 3D CT volume"
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "o").exists()


def test_demo_reconstructs_the_sample_with_the_bundled_model(tmp_path, capsys):
    out = tmp_path / "demo"
    assert main(["demo", "--out", str(out)]) == 0
    report = json.loads(capsys.readouterr().out)
    ct = sitk.ReadImage(str(out / "ct.nrrd"))
    assert ct.GetSize() == (64, 64, 64) and ct.GetSpacing() == pytest.approx((5.0, 5.0, 5.0))
    assert (out / "preview.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert report["metrics_vs_ground_truth"]["voxels_compared"] > 0


def test_paths_with_spaces_unicode_and_shell_characters_work(tmp_path, capsys):
    sample = Path(__file__).resolve().parent.parent / "Resources" / "SampleData"
    odd = tmp_path / "scan dir ü $(touch x); `y` & z"
    odd.mkdir()
    for view in ("ap", "lateral"):
        (odd / f"{view} (copy)'.nrrd").write_bytes((sample / f"{view}.nrrd").read_bytes())
    out = odd / "out ü;|.nrrd"
    assert main(["reconstruct", "--quiet", "--method", "regression", "--ap", str(odd / "ap (copy)'.nrrd"),
                 "--lateral", str(odd / "lateral (copy)'.nrrd"), "--out", str(out)]) == 0
    assert out.is_file() and not (tmp_path / "x").exists() and not Path("x").exists()
    assert sorted(p.name for p in odd.iterdir() if p.name.startswith(".")) == []  # no temporary file left behind
