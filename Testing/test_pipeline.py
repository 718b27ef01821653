"""The training data pipeline: pure function of the index whatever the workers, held-out seeds never drawn, views
in AP-then-lateral order, regions at their rates, CT folders prepared once, and no SimpleITK on the phantom path."""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from test_model import TINY

from DiffuX2CTLib.core.errors import InputError
from DiffuX2CTLib.imaging.geometry import VolumeGrid
from DiffuX2CTLib.imaging.image_io import grid_image, resample_to_grid, write_image
from DiffuX2CTLib.training.ct_cache import CachedCTSource, prepare_cache
from DiffuX2CTLib.training.samples import (
    HELD_OUT_SEED_START,
    REGION_RATES,
    PhantomSource,
    SampleMaker,
    batches,
    drr_grid,
    model_target,
)

ROOT = Path(__file__).resolve().parents[1]


def test_a_sample_is_a_pure_function_of_its_index_whatever_the_workers():
    maker = SampleMaker(TINY, PhantomSource(seed=3), seed=3)
    inline = list(batches(maker, 0, 2, 2, torch.device("cpu"), workers=0))
    ahead = list(batches(maker, 0, 2, 2, torch.device("cpu"), workers=2))
    for (a_clean, a_radio), (b_clean, b_radio) in zip(inline, ahead):
        assert torch.equal(a_clean, b_clean) and torch.equal(a_radio, b_radio)
    clean, radiographs = inline[0]
    assert clean.shape == (2, 1, 16, 16, 16) and radiographs.shape == (2, 2, 16, 16)
    assert clean.min() >= -1 and clean.max() <= 1 and radiographs.min() >= 0 and radiographs.max() <= 1
    assert not torch.equal(clean[0], clean[1])  # two indices, two patients


@settings(max_examples=200, deadline=None)
@given(seed=st.integers(0, 2**40), index=st.integers(0, 2**40))
def test_training_never_draws_a_held_out_seed(seed, index):
    assert 0 <= PhantomSource(seed).phantom_seed(index) < HELD_OUT_SEED_START


def test_a_training_run_only_paints_training_seeds(tmp_path, painted_seeds, monkeypatch):
    """Whatever draws the phantoms, a run asks the generator for training seeds only: painting a phantom for every
    volume (here with a seed whose stream wraps around) or filling a fresh phantom bank."""
    from DiffuX2CTLib.training.settings import TrainSettings
    from DiffuX2CTLib.training.trainer import train

    monkeypatch.setenv("DIFFUX2CT_CACHE", str(tmp_path / "fresh-cache"))
    wrapping = TrainSettings(
        out=str(tmp_path / "painting"), steps=3, batch=2, grid_size=16, seed=HELD_OUT_SEED_START // 7919, workers=0
    )
    train(dataclasses.replace(wrapping, phantom_bank=0), show_progress=False)
    painted = len(painted_seeds)
    train(dataclasses.replace(wrapping, out=str(tmp_path / "bank"), phantom_bank=8), show_progress=False)
    assert painted >= 2 and len(painted_seeds) >= painted + 8  # the bank's first window, painted before step 1
    assert all(0 <= s < HELD_OUT_SEED_START for s in painted_seeds)


@dataclasses.dataclass(frozen=True)
class _Slab:
    """A box 240 mm wide (left-right) and 60 mm deep (front-back): wide in the AP view, narrow in the lateral."""

    def describe(self) -> str:
        return "slab"

    def volume(self, index, rng, grid, device):
        axis = (torch.arange(grid.size, dtype=torch.float32) - (grid.size - 1) / 2) * grid.spacing_mm
        z, y, x = torch.meshgrid(axis, axis, axis, indexing="ij")
        inside = (x.abs() < 120) & (y.abs() < 30) & (z.abs() < 100)
        return torch.where(inside, 1000.0, -1000.0).to(device)


def test_the_views_come_ap_first_as_at_inference():
    _, radiographs = SampleMaker(TINY, _Slab(), seed=0).sample(0)
    widths = [(view[view.shape[0] // 2] > 0.5).sum().item() for view in radiographs]
    assert widths[0] > 2.5 * widths[1], widths  # the AP view sees the slab's width, the lateral its depth


def test_fields_of_view_are_drawn_at_the_stated_rates():
    source = PhantomSource(seed=0)
    draws = [source.region(np.random.default_rng([0, i])) for i in range(4000)]
    for region, rate in REGION_RATES.items():
        assert abs(draws.count(region) / len(draws) - rate) < 0.03, region
    assert PhantomSource(fixed_seed=5).region(np.random.default_rng(1)) == "trunk"


def test_the_target_is_the_central_cube_pooled_to_the_model_grid():
    grid = drr_grid(TINY)
    assert grid.size > 2 * TINY.grid_size and grid.spacing_mm == pytest.approx(TINY.field_of_view_mm / 32)
    from DiffuX2CTLib.anatomy.phantom import generate_phantom

    hu = generate_phantom(11, grid, "chest")
    target = TINY.hu_window.to_hu(model_target(hu, TINY)[0].numpy())
    expected = resample_to_grid(grid_image(hu.numpy(), grid), TINY.grid())
    assert np.abs(target - np.clip(expected, TINY.hu_low, TINY.hu_high)).mean() < 1.0


def _phantom_folder(folder: Path) -> list[sitk.Image]:
    """Three phantom CTs as NRRD, NIfTI and a DICOM series, and a broken file."""
    from DiffuX2CTLib.anatomy.phantom import generate_phantom

    grid = VolumeGrid(24, 10.0)
    cts = [grid_image(generate_phantom(seed, grid, "chest").numpy(), grid) for seed in (1, 2, 3)]
    folder.mkdir()
    write_image(cts[0], folder / "a.nrrd")
    write_image(cts[1], folder / "b.nii.gz")
    series = folder / "c-dicom"
    series.mkdir()
    image = sitk.Cast(cts[2], sitk.sitkInt16)
    writer = sitk.ImageFileWriter()
    writer.KeepOriginalImageUIDOn()
    for k in range(image.GetDepth()):
        slice_ = image[:, :, k]
        slice_.SetMetaData("0020|0032", "\\".join(str(v) for v in image.TransformIndexToPhysicalPoint((0, 0, k))))
        slice_.SetMetaData("0020|0037", "1\\0\\0\\0\\1\\0")
        slice_.SetMetaData("0020|0013", str(k))
        slice_.SetMetaData("0020|000e", "1.2.826.0.1.3680043.2.1125.1")
        slice_.SetMetaData("0008|0060", "CT")
        writer.SetFileName(str(series / f"{k:03d}.dcm"))
        writer.Execute(slice_)
    (folder / "d-broken.nrrd").write_bytes(b"NRRD0004\nnot an image\n")
    return cts


def test_a_ct_folder_is_prepared_once_and_redone_only_where_it_changed(tmp_path):
    cts = _phantom_folder(tmp_path / "cts")
    warnings = []
    prepared = prepare_cache(tmp_path / "cts", tmp_path / "cache", 5.0, warnings.append)
    assert [ct.name for ct in prepared] == ["a.nrrd", "b.nii.gz", "c-dicom"]
    assert any("d-broken.nrrd" in w for w in warnings) and any("1 of 4 CTs" in w for w in warnings)
    stamps = {ct.name: ct.array.stat().st_mtime_ns for ct in prepared}
    again = prepare_cache(tmp_path / "cts", tmp_path / "cache", 5.0, warnings.append)
    assert {ct.name: ct.array.stat().st_mtime_ns for ct in again} == stamps  # nothing redone
    write_image(cts[2], tmp_path / "cts" / "a.nrrd")  # a changed source
    changed = {ct.name: ct for ct in prepare_cache(tmp_path / "cts", tmp_path / "cache", 5.0, warnings.append)}
    assert changed["b.nii.gz"].array.stat().st_mtime_ns == stamps["b.nii.gz"]
    assert changed["a.nrrd"].array.stat().st_mtime_ns != stamps["a.nrrd"]
    # what a sample reads from the cache is the CT itself (on a grid aligned with the cache's voxels)
    for ct, source in ((changed["b.nii.gz"], cts[1]), (changed["c-dicom"], cts[2])):
        grid = VolumeGrid(20, 5.0, tuple(np.asarray(ct.origin_lps) + 5.0 * (10 + 9.5)))
        expected = resample_to_grid(source, grid)
        assert np.abs(ct.crop(grid).astype(np.float32) - expected).mean() < 30.0


def test_a_prepared_ct_is_used_without_its_source_and_an_unprepared_absent_one_is_skipped(tmp_path, monkeypatch):
    from DiffuX2CTLib.training import ct_cache

    _phantom_folder(tmp_path / "cts")
    sources = [tmp_path / "cts" / name for name in ("a.nrrd", "b.nii.gz")]
    first = ct_cache.prepare_volumes(sources, tmp_path / "cache", 5.0, lambda message: None)
    for source in sources:
        source.unlink()  # the prepared cache travels alone, as to a GPU machine

    def no_reading(path, spacing_mm):
        raise AssertionError(f"{path.name} was read again")

    monkeypatch.setattr(ct_cache, "_resampled", no_reading)
    notes = []
    again = ct_cache.prepare_volumes(sources + [tmp_path / "cts" / "never.nrrd"], tmp_path / "cache", 5.0, notes.append)
    assert again == first
    assert any("2 CTs used as prepared before" in n and "a.nrrd" in n for n in notes)
    assert any("never.nrrd: not found" in n for n in notes)
    assert all(ct.array.is_file() for ct in again)  # nothing was cleaned away


def test_a_folder_with_no_readable_ct_is_a_clear_error(tmp_path):
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "x.nrrd").write_bytes(b"junk")
    with pytest.raises(InputError, match="bad: none of its 1 CT volumes could be read"):
        prepare_cache(tmp_path / "bad", tmp_path / "cache", 5.0, lambda message: None)
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="empty: no CT volumes found"):
        CachedCTSource.for_folder(str(tmp_path / "empty"), str(tmp_path / "cache2"), 5.0)


def test_training_on_a_ct_folder_uses_its_cache(tmp_path):
    from DiffuX2CTLib.training.settings import TrainSettings
    from DiffuX2CTLib.training.trainer import train

    _phantom_folder(tmp_path / "cts")
    train(
        TrainSettings(out=str(tmp_path / "run"), data=str(tmp_path / "cts"), steps=2, grid_size=16, workers=0),
        show_progress=False,
    )
    assert (tmp_path / "run" / "ct-cache" / "manifest.json").is_file() and (
        tmp_path / "run" / "model" / "model.safetensors"
    ).is_file()


def test_the_phantom_training_path_runs_without_simpleitk(tmp_path):
    """``diffux2ct train`` on phantoms, as a GPU machine without SimpleITK runs it."""
    script = (
        "import sys; sys.modules['SimpleITK'] = None\n"
        "from DiffuX2CTLib.cli import main\n"
        f"assert main(['train', '--out', {str(tmp_path / 'run')!r}, "
        "'--steps', '1', '--grid', '16', '--workers', '0', '--quiet']) == 0\n"
        "assert 'SimpleITK' not in {m.split('.')[0] for m, v in sys.modules.items() if v is not None}\n"
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=300, check=False
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert (tmp_path / "run" / "model" / "model.safetensors").is_file()
