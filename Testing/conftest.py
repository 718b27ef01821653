"""Shared fixtures: small CTs and radiographs made on the fly (no downloads)."""

from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk

from DiffuX2CTLib.anatomy.phantom import generate_phantom
from DiffuX2CTLib.imaging.geometry import VolumeGrid
from DiffuX2CTLib.imaging.image_io import grid_image


@pytest.fixture(scope="session", autouse=True)
def data_cache_of_the_tests(tmp_path_factory):
    """The data cache (phantom bank, prepared real CTs) of the whole test session lives in a temporary folder, never
    in the user's ``~/.cache``; subprocesses started by tests inherit it."""
    import os

    folder = tmp_path_factory.mktemp("data-cache")
    previous = os.environ.get("DIFFUX2CT_CACHE")
    os.environ["DIFFUX2CT_CACHE"] = str(folder)
    yield folder
    if previous is None:
        os.environ.pop("DIFFUX2CT_CACHE", None)
    else:
        os.environ["DIFFUX2CT_CACHE"] = previous


@pytest.fixture(autouse=True)
def float32_unless_asked(monkeypatch):
    """``auto`` precision (training and sampling) means float32 in the tests, whatever this machine's CPU computes
    natively, so every machine tests the same arithmetic; tests of bfloat16 ask for it by name. Worker processes
    started by a test are not patched: on a CPU with native bfloat16 they sample in it, so those tests check
    behaviour (events, nodes, cancel), never exact voxel values."""
    import DiffuX2CTLib.core.device as device

    monkeypatch.setattr(device, "native_bfloat16", lambda _device: False)


@pytest.fixture(scope="session")
def small_grid() -> VolumeGrid:
    return VolumeGrid(48, 320.0 / 48)


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory):
    """A saved untrained model of the tiny test config, its denoiser head randomised so sampling does something."""
    import torch
    from test_model import TINY

    from DiffuX2CTLib.model.network import DiffuX2CTNet
    from DiffuX2CTLib.model.weights import save_model

    torch.manual_seed(0)
    net = DiffuX2CTNet(TINY)
    with torch.no_grad():
        net.denoiser.head[-1].weight.normal_(0, 0.05)
    return save_model(net, tmp_path_factory.mktemp("models") / "tiny")


@pytest.fixture(scope="session")
def phantom_ct(small_grid) -> sitk.Image:
    """A 48^3 chest phantom with a spinal implant as an LPS HU image."""
    return grid_image(generate_phantom(7, small_grid, "chest", implant=True).numpy(), small_grid)


def write_dicom_radiograph(
    path, pixels: np.ndarray, photometric: str = "MONOCHROME2", slope: float = 1.0, intercept: float = 0.0, **tags
) -> None:
    """A minimal DX DICOM file made with pydicom (SimpleITK cannot write 2D DX objects)."""
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.1.1"
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID, ds.SOPInstanceUID = meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID
    ds.Modality = "DX"
    ds.PhotometricInterpretation = photometric
    ds.SamplesPerPixel = 1
    ds.Rows, ds.Columns = pixels.shape
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 0
    ds.RescaleSlope, ds.RescaleIntercept = slope, intercept
    for key, value in tags.items():
        setattr(ds, key, value)
    ds.PixelData = pixels.astype(np.uint16).tobytes()
    ds.save_as(str(path), enforce_file_format=True)


@pytest.fixture
def painted_seeds(monkeypatch) -> list[int]:
    """The seeds every phantom painted during the test was asked for, in order (the generator still paints)."""
    import DiffuX2CTLib.anatomy.phantom as anatomy

    seeds: list[int] = []
    real = anatomy.generate_phantom

    def spy(seed, *args, **kwargs):
        seeds.append(seed)
        return real(seed, *args, **kwargs)

    monkeypatch.setattr(anatomy, "generate_phantom", spy)
    return seeds
