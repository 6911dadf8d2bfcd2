"""Torch-side rewrites applied while tracing a CLAP model for export (needs the ``export`` extra).

Both give the same values as the original code; they only change what the graph looks like:

- HTSAT stretches its 1001 mel frames to 1024 with a bicubic ``interpolate``. Exported as an ONNX
  ``Resize`` (cubic), ONNX Runtime's CPU kernel spends ~5 ms per window on it: a tenth of the int8
  audio tower. Each output row only mixes 4 input rows, so it is traced as a 4-tap gather with
  the weights torch itself computes.
- Swin layers pad their input to whole windows, with pads of zero when the size already fits;
  ONNX Runtime still copies the tensor for each such ``Pad`` (12 per window, ~1.5 ms).
"""

from __future__ import annotations

import functools
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch
import torch.nn.functional as F

TAPS = 4


@functools.cache
def bicubic_taps(
    interpolate: Any, n_in: int, n_out: int, align_corners: bool | None
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(index [n_out, 4], weight [n_out, 4])`` of torch's bicubic resize along one axis.

    Read off torch by resizing the identity: row ``o`` of the result holds the weight of every
    input row in output row ``o`` (taps clamped at the edges are already summed). Cached, so
    that an eager call before tracing turns them into constants of the traced graph.
    """
    eye = torch.eye(n_in)[None, None]  # float32, so the weights round as for real input
    matrix = interpolate(eye, size=(n_out, n_in), mode="bicubic", align_corners=align_corners)[0, 0]
    index = matrix.abs().topk(TAPS, dim=1).indices
    weight = matrix.gather(1, index)
    return index, weight


def _gather_resize(
    interpolate: Any, x: torch.Tensor, axis: int, n_out: int, align_corners: bool | None
) -> torch.Tensor:
    index, weight = bicubic_taps(interpolate, int(x.shape[axis]), n_out, align_corners)
    taps = x.index_select(axis, index.reshape(-1)).unflatten(axis, (n_out, TAPS))
    shape = [n_out, TAPS] + [1] * (x.dim() - axis - 1)
    return (taps * weight.reshape(shape)).sum(dim=axis + 1)


@contextmanager
def export_friendly() -> Iterator[None]:
    """Within the block, 4-D bicubic ``F.interpolate`` to a fixed ``size`` traces as gathers and
    ``F.pad`` by zero everywhere traces as nothing."""
    original, original_pad = F.interpolate, F.pad

    def interpolate(input: torch.Tensor, size: Any = None, *args: Any, **kwargs: Any) -> Any:
        plain = set(kwargs) <= {"mode", "align_corners"} and not args
        if not plain or kwargs.get("mode") != "bicubic" or input.dim() != 4 or size is None:
            return original(input, size, *args, **kwargs)
        align_corners = kwargs.get("align_corners")
        out = input
        sizes = (size, size) if isinstance(size, int) else tuple(size)
        for axis, n_out in zip((2, 3), sizes, strict=True):
            if int(out.shape[axis]) != int(n_out):
                out = _gather_resize(original, out, axis, int(n_out), align_corners)
        return out

    def pad(input: torch.Tensor, pad: Any, *args: Any, **kwargs: Any) -> Any:
        if all(isinstance(p, int) and p == 0 for p in pad):
            return input
        return original_pad(input, pad, *args, **kwargs)

    F.interpolate, F.pad = interpolate, pad
    try:
        yield
    finally:
        F.interpolate, F.pad = original, original_pad
