"""How much memory a job needs and how much the machine has, so work that cannot fit is refused before it starts
(instead of swapping for minutes or being killed). Pure Python; torch only to ask a GPU."""

from __future__ import annotations

import os

PHANTOM_BYTES_PER_VOXEL = 48
"""Peak memory of painting a phantom, per voxel of its grid: float32 coordinates, texture, HU and label canvases
and the painters' temporaries. Measured as peak resident memory minus that of the imports, on a CPU: 46-51 bytes
per voxel for a 160^3 chest cube and a 128 x 128 x 289 trunk."""
NETWORK_BYTES_PER_VOXEL = 1024
"""A lower bound of the memory one training sample's step takes per voxel of the model grid (activations kept for
the backward pass): measured on an H200 in bfloat16, the bundled architecture takes about 2.3 KiB per voxel at
64^3 (4.6 GiB for a batch of 8) and the 11.6 M-parameter 128^3 one about 4 KiB (63.7 GiB for 8); float32 on a CPU
takes more. Only used to refuse what surely cannot fit."""
FLOAT32_BYTES = 4


def _meminfo(key: str) -> int | None:
    """A ``/proc/meminfo`` value in bytes (Linux), or None."""
    try:
        with open("/proc/meminfo", encoding="ascii") as handle:
            for line in handle:
                if line.startswith(key + ":"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


def total_memory_bytes() -> int | None:
    """The machine's physical memory, or None where the system does not say."""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, ValueError, OSError):
        return _meminfo("MemTotal")


def available_memory_bytes() -> int | None:
    """Memory a new job can use now without swapping (Linux's MemAvailable), else the physical memory, or None."""
    return _meminfo("MemAvailable") or total_memory_bytes()


def device_memory_bytes(device) -> tuple[int | None, str]:
    """The memory of a torch ``device`` and how to name it in a message: a GPU's own memory, else the machine's."""
    if getattr(device, "type", str(device)) == "cuda":
        import torch

        index = device.index if getattr(device, "index", None) is not None else torch.cuda.current_device()
        return int(torch.cuda.get_device_properties(index).total_memory), f"GPU {index}"
    return total_memory_bytes(), "this machine"


def training_sample_bytes(grid_size: int, drr_volume_size: int) -> int:
    """A lower bound of the memory one sample of a training batch takes: the network's activations on the model's
    ``grid_size``^3 grid and the float32 ``drr_volume_size``^3 volume its DRRs are rendered from (a volume stays in
    memory while its views are made)."""
    return grid_size**3 * NETWORK_BYTES_PER_VOXEL + drr_volume_size**3 * FLOAT32_BYTES


def phantom_bytes(voxels: int) -> int:
    """The peak memory of painting a phantom of ``voxels`` voxels (:data:`PHANTOM_BYTES_PER_VOXEL`)."""
    return voxels * PHANTOM_BYTES_PER_VOXEL


def format_bytes(count: float) -> str:
    """``1.5 GiB``-style text: binary units, one decimal from KiB on."""
    for unit in ("bytes", "KiB", "MiB", "GiB", "TiB"):
        if count < 1024 or unit == "TiB":
            return f"{count:.0f} {unit}" if unit == "bytes" else f"{count:.1f} {unit}"
        count /= 1024
    raise AssertionError("unreachable")
