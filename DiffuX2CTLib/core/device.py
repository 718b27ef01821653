"""Which torch device a run uses, and the arithmetic precision its network runs in (training steps, sampling)."""

from __future__ import annotations

import contextlib

import torch

from .cpu_convolution import onednn_convolutions
from .errors import InputError


def resolve_device(name: str) -> torch.device:
    """``auto`` picks CUDA when present; asking for CUDA without one is a clear error."""
    if name == "cuda" and not torch.cuda.is_available():
        raise InputError("device 'cuda' requested but no CUDA GPU is available (use --device cpu or auto)")
    return torch.device("cuda" if name == "cuda" or (name == "auto" and torch.cuda.is_available()) else "cpu")


def native_bfloat16(device: torch.device) -> bool:
    """Whether ``device`` computes bfloat16 natively: CUDA GPUs from Ampere on, and CPUs with AVX512-BF16 or AMX
    instructions (elsewhere bfloat16 is emulated, more slowly than float32)."""
    if device.type == "cuda":
        try:
            return torch.cuda.is_bf16_supported(including_emulation=False)
        except TypeError:  # torch before 2.4 has no such argument and counts only native support
            return torch.cuda.is_bf16_supported()
    cpu = getattr(torch, "cpu", None)
    checks = [getattr(cpu, name, None) for name in ("_is_avx512_bf16_supported", "_is_amx_tile_supported")]
    return any(check() for check in checks if check is not None)


def resolve_precision(requested: str, device: torch.device) -> str:
    """``float32`` or ``bfloat16`` for ``requested`` (one of ``job.PRECISIONS``): ``auto`` takes bfloat16 autocast
    where the device computes it natively and float32 elsewhere (measured speed and quality: the README's
    *Precision* paragraphs)."""
    if requested == "auto":
        return "bfloat16" if native_bfloat16(device) else "float32"
    return requested


def network_arithmetic(precision: str, device: torch.device) -> contextlib.AbstractContextManager:
    """The context of network calls in ``precision``: in bfloat16, autocast (convolutions and matrix products in
    bfloat16; the weights and, in training, the optimiser and losses stay float32); in float32 on a CPU, 3D
    convolutions through oneDNN (:mod:`.cpu_convolution`)."""
    if precision == "bfloat16":
        return torch.autocast(device.type, dtype=torch.bfloat16)
    return onednn_convolutions(device)
