"""The pinned catalogue: which registry archives hold which real CT volumes, with every digest.

Each archive is pinned by URL, size and SHA-256; each member we extract by its path (a chain through nested
archives: the .deb's ``data.tar.xz``, a tarball inside a tarball) and SHA-256. Licences and citations were read
from the packages themselves where they say something (see each volume's ``notes``). Members reserved for
independent evaluation are never named here; ``reserved.py`` holds the rule and the tests check it.
"""

from __future__ import annotations

import urllib.parse
from dataclasses import dataclass
from pathlib import PurePosixPath


@dataclass(frozen=True)
class Source:
    """One archive on a package registry, pinned by URL, size and SHA-256."""

    id: str
    url: str
    size: int
    sha256: str
    package: str

    @property
    def filename(self) -> str:
        """The archive's file name in the downloads folder (the URL's last part, unquoted)."""
        return urllib.parse.unquote(PurePosixPath(urllib.parse.urlsplit(self.url).path).name)


@dataclass(frozen=True)
class Member:
    """One file inside an archive: its path chain (outer member first, then inside each nested archive)."""

    path: tuple[str, ...]
    sha256: str
    size: int

    @property
    def name(self) -> str:
        """The file name it is extracted under (a MetaImage header finds its raw file by this name)."""
        return PurePosixPath(self.path[-1]).name

    @property
    def label(self) -> str:
        """The chain as one string, nested archives separated by ``!``."""
        return "!".join(self.path)


@dataclass(frozen=True)
class Volume:
    """One CT volume: the first member is the image SimpleITK reads, the others lie beside it."""

    id: str
    patient: str
    region: str
    source: str
    members: tuple[Member, ...]
    licence: str
    citation: str
    description: str
    phase: str | None = None
    notes: str = ""


CAMITK = Source(
    "camitk-data",
    "http://deb.debian.org/debian/pool/main/c/camitk/libcamitk5-data_5.2.0-5_all.deb",
    101_621_068,
    "0bbb24e5c79332b20c3baccc1e05292dfbd1b432838cb49f60a97ee9b2e52654",
    "Debian 13 (trixie) binary package libcamitk5-data 5.2.0-5 (CamiTK test data)",
)
PLASTIMATCH = Source(
    "plastimatch-tests",
    "http://deb.debian.org/debian/pool/main/p/plastimatch/plastimatch_1.10.0+dfsg.2.orig-debian-tests-data.tar.xz",
    35_154_228,
    "ec55aef6c99c89db952d9773f1d22a18850afe07fce4401e1f3c7a320f873bc3",
    "Debian 13 (trixie) source package plastimatch 1.10.0+dfsg.2-1~deb13u1, component tarball debian-tests-data",
)
TOTALSEGMENTATOR = Source(
    "totalsegmentator-sdist",
    "https://files.pythonhosted.org/packages/c3/53/7d654d2ec3fcb801ae54d318b0ffc18021aed528bf4e4df0753caf0c8a73/totalsegmentator-2.18.0.tar.gz",
    38_049_988,
    "5d4223ef93973bc36d710869d11e7742ead2c154c72f7f9edcaaadd5b6c4bd03",
    "PyPI TotalSegmentator 2.18.0, source distribution",
)
PYRADIOMICS = Source(
    "pyradiomics-sdist",
    "https://files.pythonhosted.org/packages/1b/35/c7f7fb7affd302fd8107dcee6b6e7aaf3708b75ad69d5f9a3dfcadb73eaa/pyradiomics-3.0.1.tar.gz",
    34_473_030,
    "47c57f441d6cb7973fa3b2ea48d3948df78e3348e1c69e1e2ff19001601fc2f5",
    "PyPI pyradiomics 3.0.1, source distribution",
)
ELASTIX = Source(
    "elastix-orig",
    "http://deb.debian.org/debian/pool/main/e/elastix/elastix_5.2.0.orig.tar.gz",
    18_918_150,
    "0d504ea585049984033f4b88e50005e704424b3fee73359ffe1dfee19fae4b60",
    "Debian 13 (trixie) source package elastix 5.2.0-2, upstream tarball",
)
PLATIPY = Source(
    "platipy-sdist",
    "https://files.pythonhosted.org/packages/8f/42/9b792436667621178610cd664d0dce22d304e25b2e92c7a1fe16c090cda1/platipy-0.5.0.dev1.tar.gz",
    38_264_578,
    "0ab0874022e6d864d8cc6e42ecc8567149822b98bf4d834c0cd3ad09a4620dd1",
    "PyPI platipy 0.5.0.dev1, source distribution",
)
SOURCES: tuple[Source, ...] = (CAMITK, PLASTIMATCH, TOTALSEGMENTATOR, PYRADIOMICS, ELASTIX, PLATIPY)

_AMOS_DIR = "usr/share/camitk-5.2/testdata/amos_0336"
_PLASTIMATCH_TUTORIAL = "plastimatch-1.10.0+dfsg.2/registration-tutorial.tar.gz"
_PYRADIOMICS_DATA = "pyradiomics-3.0.1/data"
_ELASTIX_DATA = "elastix-5.2.0/Testing/Data"

_PLATIPY_CITATION = (
    "Chlap P, Finnegan RN. PlatiPy: Processing Library and Analysis Toolkit for Medical Imaging in Python. "
    "Journal of Open Source Software 2023;8(86):5374 (doi:10.21105/joss.05374)"
)
_PLATIPY_NOTES = (
    "The test case of platipy's sample service (platipy/backend/sample); the package does not say where the scan "
    "comes from. It is a radiotherapy planning CT (flat couch top, arms raised), like the LCTSC scans that "
    "platipy's own tests download; why it is not one of the CTs reserved for independent evaluation: "
    "docs/training.md. Stored as int32 HU with air clipped at -1000."
)
_AMOS_CITATION = (
    "Ji Y, Bai H, Yang J, et al. AMOS: A Large-Scale Abdominal Multi-Organ Benchmark for Versatile Medical "
    "Image Segmentation. NeurIPS 2022 Datasets and Benchmarks (arXiv:2206.08023)"
)
_PLASTIMATCH_CITATION = (
    "Sharp GC, Li R, Wolfgang J, et al. Plastimatch: an open source software suite for radiotherapy image "
    "processing. ICCR 2010; data: the plastimatch registration tutorial (plastimatch.org)"
)
_PLASTIMATCH_LICENCE = (
    "BSD-3-Clause (Debian copyright file of plastimatch: 'Files: debian-tests-data/*', (c) 2011-2018 Gregory C. Sharp)"
)
_PLASTIMATCH_NOTES = (
    "Both phases are one patient's 4D CT (same grid, same couch). Lung air in the body: 1.72 L at t0, 1.42 L "
    "at t5, so t0 is the more inspired phase. Left lung largely consolidated by a mass."
)
_PYRADIOMICS_LICENCE = "BSD-3-Clause (LICENSE.txt of the sdist, Copyright 2017 Harvard Medical School)"
_PYRADIOMICS_CITATION = (
    "van Griethuysen JJM, Fedorov A, Parmar C, et al. Computational Radiomics System to Decode the "
    "Radiographic Phenotype. Cancer Research 2017;77(21):e104-e107"
)
_PYRADIOMICS_NOTES = (
    "The sdist (data/README.md, README.md) does not say where lung1 and lung2 come from nor whether they are "
    "one patient; their pixel size (0.570 vs 0.627 mm), slice count (48 vs 61) and field of view differ, "
    "so they are taken as two patients (undocumented). Arms outside the field of view."
)
_ELASTIX_LICENCE = "Apache-2.0 (NOTICE and LICENSE of elastix 5.2.0; the test data carry no licence of their own)"
_ELASTIX_CITATION = (
    "Klein S, Staring M, Murphy K, Viergever MA, Pluim JPW. elastix: a toolbox for intensity based medical "
    "image registration. IEEE Trans Med Imaging 2010;29(1):196-205"
)
_ELASTIX_NOTES = (
    "Values are HU: fat peaks at about -112, soft tissue at +48; air reads about 30 HU low (most common value "
    "exactly -1030, minimum -1157). Cropped to one lung (the right one, judging from the liver dome below it); "
    "baseline and follow-up grids differ."
)

VOLUMES: tuple[Volume, ...] = (
    Volume(
        "amos-0336",
        "amos-0336",
        "trunk",
        CAMITK.id,
        (
            Member(
                ("data.tar.xz", f"{_AMOS_DIR}/amos_0336.mhd"),
                "2e385dc146e44c426ee15f32d3ae30a680e1da936cc6d3ef099de3bd00c155bd",
                356,
            ),
            Member(
                ("data.tar.xz", f"{_AMOS_DIR}/amos_0336.zraw"),
                "7cf505f8f08dfb2569cd539fa77fa53799cf802f30729170f0efe5537ba1dd00",
                11_291_294,
            ),
        ),
        "CC BY 4.0 (AMOS dataset)",
        _AMOS_CITATION,
        "AMOS case 0336 (training set): shoulders to upper thighs, 256x256x157, 1.59x1.59x4.0 mm",
        notes=(
            "The package's readme names AMOS and the paper; its copyright file has no entry for the test data, so "
            "Debian "
            "lists them under 'Files: *' (CamiTK, LGPL-3+). The CC BY 4.0 licence is AMOS's own and is not stated in "
            "the package; the AMOS paper's OpenReview record shows a CC BY-NC licence field: confirm before "
            "redistributing or using commercially."
        ),
    ),
    Volume(
        "plastimatch-4dct-t0",
        "plastimatch-4dct-lung",
        "chest",
        PLASTIMATCH.id,
        (
            Member(
                (_PLASTIMATCH_TUTORIAL, "registration-tutorial/t0.mha"),
                "1a04635c1d9a33c5f861757783a56ac71b7200c2de4016de22fd58c6ab0b6cbe",
                16_777_547,
            ),
        ),
        _PLASTIMATCH_LICENCE,
        _PLASTIMATCH_CITATION,
        "Lung-cancer patient, 4D CT breathing phase t0: lower neck to upper abdomen with the couch, 256x256x128, "
        "1.95x1.95x2.5 mm",
        phase="t0",
        notes=_PLASTIMATCH_NOTES,
    ),
    Volume(
        "plastimatch-4dct-t5",
        "plastimatch-4dct-lung",
        "chest",
        PLASTIMATCH.id,
        (
            Member(
                (_PLASTIMATCH_TUTORIAL, "registration-tutorial/t5.mha"),
                "0d3e4cad1f8a0cfb9c110522a56ef47bfc7aa20c042b09fb6faec3f7b51165f2",
                16_777_547,
            ),
        ),
        _PLASTIMATCH_LICENCE,
        _PLASTIMATCH_CITATION,
        "Lung-cancer patient, 4D CT breathing phase t5: lower neck to upper abdomen with the couch, 256x256x128, "
        "1.95x1.95x2.5 mm",
        phase="t5",
        notes=_PLASTIMATCH_NOTES,
    ),
    Volume(
        "totalsegmentator-example",
        "totalsegmentator-example",
        "abdomen-pelvis",
        TOTALSEGMENTATOR.id,
        (
            Member(
                ("totalsegmentator-2.18.0/tests/reference_files/example_ct.nii.gz",),
                "dbd3ae6d614d1d7ef3a46925c30c70038ed52da6b37fdd6afdc7b9b71387e3e1",
                2_206_612,
            ),
        ),
        "Apache-2.0 (LICENSE of the TotalSegmentator sdist)",
        "Wasserthal J, Breit H-C, Meyer MT, et al. TotalSegmentator: Robust Segmentation of 104 Anatomic Structures "
        "in CT Images. Radiology: Artificial Intelligence 2023;5(5):e230024",
        "TotalSegmentator's example CT: abdomen and pelvis, 122x101x112, 3 mm isotropic",
        notes="Stored RAS (NIfTI) as int32, resampled to 3 mm: the minimum (about -1207) is interpolation undershoot.",
    ),
    Volume(
        "pyradiomics-lung1",
        "pyradiomics-lung1",
        "chest",
        PYRADIOMICS.id,
        (
            Member(
                (f"{_PYRADIOMICS_DATA}/lung1_image.nrrd",),
                "379fa48bf34cfa961e6f5ec19c0c38757a30b9aa884212ef28dc29b5061c64ed",
                12_548_518,
            ),
        ),
        _PYRADIOMICS_LICENCE,
        _PYRADIOMICS_CITATION,
        "pyradiomics test case lung1: chest, laterally cropped, 512x512x48, 0.57x0.57x5 mm",
        notes=_PYRADIOMICS_NOTES,
    ),
    Volume(
        "pyradiomics-lung2",
        "pyradiomics-lung2",
        "chest",
        PYRADIOMICS.id,
        (
            Member(
                (f"{_PYRADIOMICS_DATA}/lung2_image.nrrd",),
                "aa2b94eec79127ed786798ac8dc3c013010e1692d5787bebfae1a1e9685a4651",
                17_817_709,
            ),
        ),
        _PYRADIOMICS_LICENCE,
        _PYRADIOMICS_CITATION,
        "pyradiomics test case lung2: chest, laterally cropped, 512x512x61, 0.63x0.63x5 mm",
        notes=_PYRADIOMICS_NOTES,
    ),
    Volume(
        "platipy-sample-chest",
        "platipy-sample",
        "chest",
        PLATIPY.id,
        (
            Member(
                ("platipy-0.5.0.dev1/platipy/backend/sample/testcase.nii.gz",),
                "52094e81f659d27f1a2d49a113803dc8a1f5d4a2e26b8fdebe9071b1e30589f1",
                33_555_724,
            ),
        ),
        "Apache-2.0 (PKG-INFO of the platipy sdist; it also carries an 'Other/Proprietary License' classifier)",
        _PLATIPY_CITATION,
        "platipy sample test case: adult chest, upper abdomen to above the shoulders, arms raised, with the couch, "
        "512x512x130, 0.98x0.98x3 mm",
        notes=_PLATIPY_NOTES,
    ),
    Volume(
        "elastix-lung-baseline",
        "elastix-3dct-lung",
        "chest",
        ELASTIX.id,
        (
            Member(
                (f"{_ELASTIX_DATA}/3DCT_lung_baseline.mha",),
                "aa9e1d56d676967713dc6fb43b227e079e6e52ed66b94ebd6adc1c97241fbfe7",
                4_658_518,
            ),
        ),
        _ELASTIX_LICENCE,
        _ELASTIX_CITATION,
        "elastix test data: one lung, cropped, baseline scan, 115x157x129, 1.37x1.37x2.5 mm",
        phase="baseline",
        notes=_ELASTIX_NOTES,
    ),
    Volume(
        "elastix-lung-followup",
        "elastix-3dct-lung",
        "chest",
        ELASTIX.id,
        (
            Member(
                (f"{_ELASTIX_DATA}/3DCT_lung_followup.mha",),
                "0f00443a965aeae998285296bf11af3ef5d524d9208eab622778f651757deb1e",
                5_001_908,
            ),
        ),
        _ELASTIX_LICENCE,
        _ELASTIX_CITATION,
        "elastix test data: the same lung, cropped, follow-up scan, 115x166x131, 1.37x1.37x2.5 mm",
        phase="follow-up",
        notes=_ELASTIX_NOTES,
    ),
)


def source_of(volume: Volume) -> Source:
    """The archive a volume comes from."""
    return next(source for source in SOURCES if source.id == volume.source)


def catalogue_lines() -> list[str]:
    """The catalogue as text, one volume a line, then the sources (no network)."""
    lines = [
        f"{v.id:26} patient {v.patient:26} {v.region:15} {v.phase or '-':10} {v.licence.split(' (')[0]:14} "
        f"{v.description}"
        for v in VOLUMES
    ]
    lines += [f"source {s.id}: {s.package}, {s.size / 1e6:.1f} MB, {s.url}" for s in SOURCES]
    return lines
