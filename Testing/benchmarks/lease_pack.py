"""Pack, on this machine, what a GPU lease that trains on real patients needs beside the repository
(``Testing/benchmarks/gpu_lease_real.sh``): the training patients' CTs as prepared for training, and MONAI's wheel.

    .venv/bin/python Testing/benchmarks/lease_pack.py      # after `diffux2ct fetch-real`

The GPU machine has torch but neither MONAI, SimpleITK nor the network, and a lease carries at most 64 MiB with the
working tree. So this writes two ignored paths, to be named in the device tool's ``carry``:

- ``.lease/real-cache.tar.gz``: the data cache's ``real-ct/manifest.json`` and the prepared training bank
  (``bank/real-<spacing>mm``: int16 arrays at the training voxel size, about 46 MB before compression). The CT
  files themselves stay here; training uses a prepared CT whose source is absent as prepared
  (:func:`DiffuX2CTLib.training.ct_cache.prepare_volumes`). Only the training patients' arrays are in the bank: the
  validation patients' never are, and the reserved CTs are never fetched.
- ``.whl/monai-<version>-py3-none-any.whl``: fetched from PyPI by pinned version, its SHA-256 checked by pip.

A benchmark helper, not part of the product or the tests.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from DiffuX2CTLib.core.atomic_write import write_file
from DiffuX2CTLib.core.cache import cache_root
from DiffuX2CTLib.model.config import ModelConfig
from DiffuX2CTLib.realct.cache import volumes_folder
from DiffuX2CTLib.realct.manifest import MANIFEST_NAME as REAL_CT_MANIFEST
from DiffuX2CTLib.training.ct_cache import MANIFEST_NAME as BANK_MANIFEST
from DiffuX2CTLib.training.real_source import RealCTSource
from DiffuX2CTLib.training.samples import fine_spacing

MONAI_WHEEL = ("monai==1.6.1", "dbd3b1dd309e752e0477ed73fde03b92f80ac74bfb8a8c4260f018b5d6ab2b0b")
PACK = ROOT / ".lease" / "real-cache.tar.gz"
WHEELS = ROOT / ".whl"
BUNDLED_CONFIG = ROOT / "Resources" / "Models" / "diffux2ct-64" / "config.json"


def pack_real_cache(cache: Path, config: ModelConfig) -> Path:
    """The training bank (prepared here first if need be) and the real-CT manifest, as one gzipped tar."""
    spacing = fine_spacing(config)
    source = RealCTSource.prepared(config.field_of_view_mm, spacing, cache)
    bank = cache / "bank" / f"real-{spacing:g}mm"
    members = [volumes_folder(cache) / REAL_CT_MANIFEST, bank / BANK_MANIFEST, *(ct.array for ct in source.cts)]

    def write(temporary: Path) -> None:
        with tarfile.open(temporary, "w:gz") as archive:
            for member in members:
                archive.add(member, arcname=str(member.relative_to(cache)))

    write_file(PACK, write)
    print(f"{PACK.relative_to(ROOT)}: {source.describe()}, {PACK.stat().st_size / 2**20:.1f} MiB")
    return PACK


def fetch_monai_wheel() -> Path:
    """MONAI's pure-Python wheel from PyPI, pinned by version and SHA-256 (pip refuses another hash)."""
    WHEELS.mkdir(exist_ok=True)
    requirement, sha256 = MONAI_WHEEL
    with tempfile.TemporaryDirectory() as folder:
        requirements = Path(folder) / "requirements.txt"
        requirements.write_text(f"{requirement} --hash=sha256:{sha256}\n", encoding="utf-8")
        command = [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--only-binary", ":all:"]
        subprocess.run([*command, "--require-hashes", "-r", str(requirements), "-d", str(WHEELS)], check=True)
    wheel = next(WHEELS.glob(f"{requirement.replace('==', '-')}-*.whl"))
    print(f"{wheel.relative_to(ROOT)}: SHA-256 {sha256[:12]}... checked")
    return wheel


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cache", default=None, help="data cache (default: as the engine chooses it)")
    args = parser.parse_args()
    config = ModelConfig.from_dict(json.loads(BUNDLED_CONFIG.read_text(encoding="utf-8"))["model"])
    pack_real_cache(cache_root(args.cache), config)
    fetch_monai_wheel()
    print("carry: .lease .whl")


if __name__ == "__main__":
    main()
