"""Torch-side rewrites applied while tracing a CLAP model for export (needs the ``export`` extra).

Each gives the same values as the original code; they only change what the graph looks like:

- HTSAT stretches its 1001 mel frames to 1024 with a bicubic ``interpolate``. Exported as an ONNX
  ``Resize`` (cubic), ONNX Runtime's CPU kernel spends ~5 ms per window on it: a tenth of the int8
  audio tower. Each output row only mixes 4 input rows, so it is traced as a 4-tap gather with
  the weights torch itself computes.
- Swin layers pad their input to whole windows, with pads of zero when the size already fits;
  ONNX Runtime still copies the tensor for each such ``Pad`` (12 per window, ~1.5 ms).
- A Swin layer cuts its tokens into windows (a 6-D ``Transpose``), after a cyclic shift every
  other layer (``torch.roll``: a ``Split`` and a ``Concat`` per axis), and undoes both after
  attention. Every one of those is a copy of the whole activation; all of them together are one
  fixed permutation of the tokens, so each direction is traced as a single ``Gather``.
- Patch merging gathers 4 strided slices and concatenates them: one reshape + ``Transpose``.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch
import torch.nn.functional as F
from transformers.models.clap import modeling_clap

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


@functools.cache
def window_order(
    height: int, width: int, window: int, shift: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(order, inverse)``: token ``order[k]`` of a ``height × width`` grid is token ``k`` of
    its windows after a cyclic shift by ``-shift`` (window by window, each row-major), as
    ``torch.roll`` + ``window_partition`` lay them out; ``inverse`` undoes it."""
    grid = torch.arange(height * width).view(1, height, width, 1)
    shifted = torch.roll(grid, shifts=(-shift, -shift), dims=(1, 2)) if shift else grid
    order = modeling_clap.window_partition(shifted, window).reshape(-1)
    return order, torch.argsort(order)


def _swin_layer_forward(original: Any) -> Any:
    def forward(
        self: Any,
        hidden_states: torch.Tensor,
        input_dimensions: tuple[int, int],
        output_attentions: bool | None = False,
        always_partition: bool | None = False,
    ) -> Any:
        if not always_partition:
            self.set_shift_and_window_size(input_dimensions)
        height, width = (int(d) for d in input_dimensions)
        window, shift = int(self.window_size), int(self.shift_size)
        if output_attentions or height % window or width % window:
            return original(self, hidden_states, input_dimensions, output_attentions, True)
        batch, _, channels = hidden_states.shape
        order, inverse = window_order(height, width, window, shift)
        normed = self.layernorm_before(hidden_states)
        windows = normed.index_select(1, order).view(-1, window * window, channels)
        mask = self.get_attn_mask(height, width, dtype=normed.dtype, device=normed.device)
        attended = self.attention(windows, mask, output_attentions=False)[0]
        attended = attended.reshape(batch, height * width, channels).index_select(1, inverse)
        hidden_states = hidden_states + self.drop_path(attended)
        layer_output = self.intermediate(self.layernorm_after(hidden_states))
        return (hidden_states + self.output(layer_output),)

    return forward


def _patch_merging_forward(original: Any) -> Any:
    def forward(self: Any, input_feature: torch.Tensor, input_dimensions: tuple[int, int]) -> Any:
        height, width = (int(d) for d in input_dimensions)
        if height % 2 or width % 2:
            return original(self, input_feature, input_dimensions)
        batch, _, channels = input_feature.shape
        # cat order of the original: (row 0, col 0), (row 1, col 0), (row 0, col 1), (row 1, col 1)
        x = input_feature.view(batch, height // 2, 2, width // 2, 2, channels)
        x = x.permute(0, 1, 3, 4, 2, 5).reshape(batch, -1, 4 * channels)
        return self.reduction(self.norm(x))

    return forward


@contextmanager
def export_friendly() -> Iterator[None]:
    """Within the block, 4-D bicubic ``F.interpolate`` to a fixed ``size`` traces as gathers,
    ``F.pad`` by zero everywhere traces as nothing, and CLAP's Swin layers and patch merging
    trace as the gathers described in this module's docstring."""
    original, original_pad = F.interpolate, F.pad
    layer, merging = modeling_clap.ClapAudioLayer, modeling_clap.ClapAudioPatchMerging
    layer_forward, merging_forward = layer.forward, merging.forward

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
    layer.forward = _swin_layer_forward(layer_forward)  # type: ignore[method-assign]
    merging.forward = _patch_merging_forward(merging_forward)  # type: ignore[method-assign]
    try:
        yield
    finally:
        F.interpolate, F.pad = original, original_pad
        layer.forward, merging.forward = layer_forward, merging_forward  # type: ignore[method-assign]
