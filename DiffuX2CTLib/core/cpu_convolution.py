"""Float32 3D convolutions on a CPU through oneDNN whatever their size, with the weights in channels-last order.

For one volume (batch 1), PyTorch sends a float32 3D convolution to its slow reference kernel (``slow_conv3d``)
when the input's first four sizes multiply to 20480 or less, a threshold tuned on 2D images: in the denoiser that is
every convolution of its two coarser levels, 67 ms where oneDNN takes 6 for the largest. oneDNN is also faster with
channels-last weights (the outputs follow them, so the next layer reads them without reordering). Inside
:class:`OneDNNConvolutions` every such call goes to ``aten::mkldnn_convolution``, which has the same gradients; the
results agree with PyTorch's own to float32 rounding. Measured on 2 AVX2 cores: a denoiser call 0.51 -> 0.41 s
(docs/performance.md).
"""

from __future__ import annotations

import contextlib

import torch
import torch.nn.functional as F
from torch.overrides import TorchFunctionMode

_CONV3D_ARGUMENTS = ("input", "weight", "bias", "stride", "padding", "dilation", "groups")
_CONV3D_DEFAULTS = (None, None, None, 1, 0, 1, 1)


def _triple(value: int | tuple[int, ...] | list[int]) -> list[int]:
    return [int(v) for v in value] if isinstance(value, (tuple, list)) else [int(value)] * 3


class OneDNNConvolutions(TorchFunctionMode):
    """Routes ``F.conv3d`` on float32 CPU tensors outside autocast to oneDNN with channels-last weights; every other
    call (GPU, bfloat16 autocast, other dtypes, string padding) runs as it would. ``routed`` counts the calls it
    took."""

    def __init__(self) -> None:
        super().__init__()
        self.routed = 0

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func is F.conv3d:
            call = dict(zip(_CONV3D_ARGUMENTS, _CONV3D_DEFAULTS))
            call.update(zip(_CONV3D_ARGUMENTS, args))
            call.update(kwargs)
            volume, weight = call["input"], call["weight"]
            if (
                volume.device.type == "cpu"
                and volume.dtype == weight.dtype == torch.float32
                and volume.dim() == 5
                and not torch.is_autocast_enabled("cpu")
                and not isinstance(call["padding"], str)
            ):
                self.routed += 1
                return torch.ops.aten.mkldnn_convolution(
                    volume,
                    weight.contiguous(memory_format=torch.channels_last_3d),
                    call["bias"],
                    _triple(call["padding"]),
                    _triple(call["stride"]),
                    _triple(call["dilation"]),
                    int(call["groups"]),
                )
        return func(*args, **kwargs)


def onednn_convolutions(device: torch.device) -> contextlib.AbstractContextManager:
    """:class:`OneDNNConvolutions` on a CPU whose PyTorch has oneDNN; nothing elsewhere."""
    if device.type == "cpu" and torch.backends.mkldnn.is_available():
        return OneDNNConvolutions()
    return contextlib.nullcontext()
