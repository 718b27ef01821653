"""The procedural anatomy: determinism, value range, each region's field of view, organ volumes and densities
inside published adult ranges, twelve ribs a side, and every organ on its side of the patient (LPS: +x left,
+y posterior, +z superior).

Reference ranges (see Resources/Anatomy/REFERENCES.md): organ volumes from ICRP Publication 89, "Basic
anatomical and physiological data for use in radiological protection: reference values" (2002) and Geraghty EM
et al., "Normal organ volume assessment from abdominal CT", Abdom Imaging 2004; unenhanced densities from
Kalender WA, "Computed Tomography" (2011) and Boll DT & Merkle EM, RadioGraphics 2009; lung density from
Gevenois PA et al., AJRCCM 1996. Bounds are the published ranges widened by the partial-volume edge of a 3.5 mm
grid.
"""

from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk
import torch

from DiffuX2CTLib.anatomy import shapes, texture
from DiffuX2CTLib.anatomy.labels import LABELS
from DiffuX2CTLib.anatomy.patient import draw_patient
from DiffuX2CTLib.anatomy.phantom import REGIONS, generate_batch, generate_phantom, whole_trunk
from DiffuX2CTLib.imaging.geometry import VolumeGrid

SMALL = VolumeGrid(64, 5.0)
TRUNK_SPACING = 3.5


def _unenhanced_seeds(count: int, start: int = 0) -> list[int]:
    """The first seeds whose patient has no contrast, a table and no metal, so densities are the native ones."""
    seeds, seed = [], start
    while len(seeds) < count:
        p = draw_patient(seed)
        if p.contrast == "none" and p.table and not (p.implant or p.wires or p.ecg_leads or p.effusion or p.nodules):
            seeds.append(seed)
        seed += 1
    return seeds


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Paint on one thread: the phantoms' many small boxes gain nothing from two, and lose a lot on a busy machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def trunks():
    """Two whole trunks (C5 to the proximal femora) of unenhanced patients with their label maps."""
    out = []
    for seed in _unenhanced_seeds(2):
        hu, origin, labels = whole_trunk(seed, TRUNK_SPACING, 96, labels=True)
        out.append((hu.numpy(), labels.numpy(), origin))
    return out


def _centroid(labels: np.ndarray, name: str) -> np.ndarray:
    """(x, y, z) centroid in voxels of one label."""
    z, y, x = np.nonzero(labels == LABELS[name])
    assert len(z), f"{name} missing"
    return np.array([x.mean(), y.mean(), z.mean()])


def _litres(labels: np.ndarray, name: str) -> float:
    return float((labels == LABELS[name]).sum() * TRUNK_SPACING**3 / 1e6)


def test_same_seed_same_volume_other_seed_other_volume():
    a = generate_phantom(11, SMALL, "chest")
    b = generate_phantom(11, SMALL, "chest")
    c = generate_phantom(12, SMALL, "chest")
    assert a.shape == (64, 64, 64) and a.dtype == torch.float32
    assert torch.equal(a, b)
    assert (a - c).abs().mean() > 50.0


@pytest.mark.parametrize("region", REGIONS)
def test_values_finite_and_within_the_ct_range(region):
    hu = generate_phantom(3, SMALL, region)
    assert torch.isfinite(hu).all()
    assert hu.min() >= -1024.0 and hu.max() <= 3071.0
    assert hu.max() > 500.0 and hu.min() < -900.0  # bone and air are both there


def test_batch_equals_stacked_phantoms():
    batch = generate_batch([1, 2], SMALL, ["abdomen", "pelvis"])
    assert batch.shape == (2, 64, 64, 64)
    assert torch.equal(batch[1], generate_phantom(2, SMALL, "pelvis"))


@pytest.mark.parametrize(
    ("region", "required"),
    [
        ("chest", ("lung_right", "lung_left", "heart")),
        ("abdomen", ("liver", "kidney_right", "kidney_left")),
        ("lumbar", ("vertebra_lumbar",)),
        ("pelvis", ("hip_bone", "femur")),
    ],
)
def test_each_region_shows_what_it_should(region, required):
    for seed in (4, 5, 6):
        _, labels = generate_phantom(seed, SMALL, region, labels=True)
        for name in required:
            assert int((labels == LABELS[name]).sum()) > 20, (region, seed, name)


def test_region_views_are_centred_on_their_region():
    _, chest = generate_phantom(8, SMALL, "chest", labels=True)
    _, pelvis = generate_phantom(8, SMALL, "pelvis", labels=True)
    # The chest's lungs fill the middle slice; the pelvis's middle slice crosses hip bone, not lung.
    assert (chest[32] == LABELS["lung_right"]).sum() > 50
    assert (pelvis[32] == LABELS["lung_right"]).sum() == 0 and (pelvis[20:44] == LABELS["hip_bone"]).sum() > 50


def test_organ_volumes_within_adult_ranges(trunks):
    for _, labels, _ in trunks:
        assert 0.9 <= _litres(labels, "liver") <= 2.6
        assert 0.07 <= _litres(labels, "spleen") <= 0.45
        for kidney in ("kidney_right", "kidney_left"):
            assert 0.07 <= _litres(labels, kidney) <= 0.25
        right, left = _litres(labels, "lung_right"), _litres(labels, "lung_left")
        assert 3.2 <= right + left <= 7.5  # 4.5-6.5 L at full inspiration; small women and shallow breath holds less
        assert 0.5 <= right / (right + left) <= 0.62  # right lung about 55 % of the total
        assert 0.3 <= _litres(labels, "heart") <= 1.1


def test_unenhanced_densities_within_published_ranges(trunks):
    for hu, labels, _ in trunks:

        def median(name, hu=hu, labels=labels):
            return float(np.median(hu[labels == LABELS[name]]))

        assert 45 <= median("liver") <= 75
        assert 35 <= median("spleen") <= 65
        assert 15 <= median("kidney_right") <= 50
        assert 25 <= median("aorta") <= 65
        assert 25 <= median("muscle") <= 70
        assert -920 <= float(hu[labels == LABELS["lung_right"]].mean()) <= -750
        body_fat = hu[(labels == LABELS["subcutaneous"])]
        assert -135 <= float(np.median(body_fat)) <= -60
        assert median("vertebra_lumbar") >= 150  # cortical shell and trabecular core together


def test_twelve_ribs_a_side(trunks):
    for _, labels, _ in trunks:
        for name in ("rib_right", "rib_left"):
            image = sitk.GetImageFromArray((labels == LABELS[name]).astype(np.uint8))
            components = sitk.RelabelComponent(sitk.ConnectedComponent(image, True), minimumObjectSize=20)
            assert int(sitk.GetArrayFromImage(components).max()) == 12, name


def test_organs_lie_on_their_anatomical_side(trunks):
    for _, labels, _ in trunks:
        midline = _centroid(labels, "vertebra_thoracic")[0]
        heart, liver, spleen = (_centroid(labels, n) for n in ("heart", "liver", "spleen"))
        assert heart[0] > midline and spleen[0] > midline and liver[0] < midline
        assert _centroid(labels, "vertebra_thoracic")[1] > heart[1]  # spine posterior (+y) of the heart
        z, y, x = np.nonzero(labels == LABELS["aorta"])
        arch = z >= z.max() - 30.0 / TRUNK_SPACING
        distal = arch & (y > np.median(y[arch]))
        assert x[distal].mean() > midline  # the arch turns back down on the patient's left (aortic knob)
        assert _centroid(labels, "kidney_left")[2] > _centroid(labels, "kidney_right")[2]


def _dome_height(labels: np.ndarray, name: str) -> float:
    """Top of a lung's floor at mid-hemithorax, measured behind the heart: the highest of the lowest lung voxels
    over the columns within 4 voxels of the lung's centroid in x and 2 of the thoracic spine's centroid in y."""
    mask = labels == LABELS[name]
    cx = round(_centroid(labels, name)[0])
    cy = round(_centroid(labels, "vertebra_thoracic")[1])
    window = mask[:, cy - 2 : cy + 3, cx - 4 : cx + 5]
    has = window.any(axis=0)
    return float(np.argmax(window, axis=0)[has].max())


def test_right_dome_higher_and_apices_above_the_clavicles(trunks):
    for _, labels, _ in trunks:
        assert _dome_height(labels, "lung_right") > _dome_height(labels, "lung_left")
        clavicles = _centroid(labels, "clavicle")[2]
        for lung in ("lung_right", "lung_left"):
            assert np.nonzero(labels == LABELS[lung])[0].max() > clavicles


def test_table_lies_under_the_patient(trunks):
    for _, labels, _ in trunks:
        table_y = np.nonzero(labels == LABELS["table"])[1]
        body_y = np.nonzero(labels == LABELS["subcutaneous"])[1]
        assert len(table_y) and table_y.mean() > np.percentile(body_y, 99)


def test_whole_trunk_spans_neck_to_femora(trunks):
    hu, labels, origin = trunks[0]
    assert hu.shape[0] > hu.shape[1] == hu.shape[2] == 96 and len(origin) == 3
    cervical, femur = _centroid(labels, "vertebra_cervical")[2], _centroid(labels, "femur")[2]
    assert cervical > femur


@pytest.mark.parametrize("region", ["chest", "pelvis"])
def test_painting_in_slabs_does_not_change_the_phantom(region, monkeypatch):
    """The CPU paints in slabs of a few slices to stay in cache: one slice per slab (every box, limb and the
    scanner's z filter cut at every slice) and one slab per box give the same volume and labels."""
    grid = VolumeGrid(40, 8.0)
    monkeypatch.setattr(shapes, "SLAB_VOXELS", 1)
    thin, thin_labels = generate_phantom(8, grid, region, labels=True)
    monkeypatch.setattr(shapes, "SLAB_VOXELS", 1 << 30)
    whole, whole_labels = generate_phantom(8, grid, region, labels=True)
    assert (thin - whole).abs().max() < 1e-2
    assert (thin_labels != whole_labels).float().mean() < 1e-4


@pytest.mark.parametrize("slab_voxels", [1, 1 << 30])
def test_scanner_kernel_is_the_separable_three_tap_filter(slab_voxels, monkeypatch):
    """Without noise the scanner is the 3-tap kernel on each axis with the edges repeated, in slabs or not."""
    monkeypatch.setattr(shapes, "SLAB_VOXELS", slab_voxels)
    volume = torch.randn(7, 6, 5, generator=torch.Generator().manual_seed(0)) * 100.0
    k = 0.2
    expected = volume
    for dim in range(3):
        padded = torch.cat(
            [expected.narrow(dim, 0, 1), expected, expected.narrow(dim, expected.shape[dim] - 1, 1)], dim
        )
        n = expected.shape[dim]
        expected = k * padded.narrow(dim, 0, n) + (1 - 2 * k) * padded.narrow(dim, 1, n) + k * padded.narrow(dim, 2, n)
    assert torch.allclose(texture.scanner(volume.clone(), 3, 0.0, k), expected, atol=1e-3)


def _lowbias32(value: int) -> int:
    """The unsigned 32-bit hash in Python integers, the reference for the int32 tensor version."""
    value ^= value >> 16
    value = (value * 0x7FEB352D) & 0xFFFFFFFF
    value ^= value >> 15
    value = (value * 0x846CA68B) & 0xFFFFFFFF
    return value ^ (value >> 16)


@pytest.mark.parametrize("seed", [0, 77, 899_999, 2**31 + 5])
def test_hash_noise_matches_the_unsigned_hash_and_blocks_match_the_whole(seed):
    shape, stream = (6, 5, 7), 7
    noise = texture.hash_normal(shape, seed, stream, "cpu")
    key = (seed * 0x9E3779B1 + stream * 0x85EBCA77) & 0xFFFFFFFF
    for z, y, x in [(0, 0, 0), (5, 4, 6), (3, 1, 2), (2, 4, 0)]:
        h = _lowbias32((((z * 0x27D4EB2F) ^ (y * 0x165667B1) ^ (x * 0x1B873593)) & 0xFFFFFFFF) ^ key)
        expected = (sum((h >> s) & 255 for s in (0, 8, 16, 24)) - 510.0) / 147.8
        assert noise[z, y, x].item() == pytest.approx(expected, abs=1e-6)
    assert torch.equal(texture.hash_normal((3, 5, 7), seed, stream, "cpu", (2, 0, 0)), noise[2:5])


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_gpu_matches_cpu():
    cpu = generate_phantom(21, SMALL, "chest")
    gpu = generate_phantom(21, SMALL, "chest", device="cuda").cpu()
    assert (cpu - gpu).abs().max() < 1.0
