"""Public ``soft_argmax_2d`` / ``soft_argmax_3d`` and their ``reference`` backend.

coords[b, j] = sum_v softmax(logits[b, j])_v * v, with v = (x, y[, z]) voxel indices
(x along the last axis). Shapes: (B, J, H, W) -> (B, J, 2); (B, J, D, H, W) -> (B, J, 3).
"""

from __future__ import annotations

import torch
from torch import Tensor

from ..reference import soft_argmax as _ref
from ..reference._rows import acc_dtype
from ._dispatch import register_impl, select_backend
from ._spec import validate

__all__ = ["soft_argmax_2d", "soft_argmax_3d"]


def soft_argmax_3d(logits: Tensor, *, backend: str | None = None) -> Tensor:
    """Expected voxel index under a softmax over each joint's whole volume.

    logits (B, J, D, H, W) -> coords (B, J, 3) = (E[x], E[y], E[z]) in voxel units, in logits' dtype
    (accumulated in float32). Differentiable w.r.t. ``logits``.
    """
    args = validate("soft_argmax_3d", logits)
    return select_backend("soft_argmax_3d", args[0], args, backend).fn(*args)


def soft_argmax_2d(logits: Tensor, *, backend: str | None = None) -> Tensor:
    """logits (B, J, H, W) -> coords (B, J, 2) = (E[x], E[y]); see :func:`soft_argmax_3d`."""
    args = validate("soft_argmax_2d", logits)
    return select_backend("soft_argmax_2d", args[0], args, backend).fn(*args)


# ---- reference backend: custom ops around fastpose.reference (opcheck-able, compile-able) -------


def _define_reference(ndim: int):
    name = f"fastpose::soft_argmax_{ndim}d_reference"

    @torch.library.custom_op(name, mutates_args=())
    def fwd(logits: Tensor) -> tuple[Tensor, Tensor]:
        # coords (B, J, ndim) float32/float64, stats (B, J, 5) = [m, log s, c_x, c_y, c_z]: the
        # saved state of every backend (docs/ops.md).
        return _ref.soft_argmax_forward(logits, ndim)

    @fwd.register_fake
    def _(logits):
        acc = acc_dtype(logits.dtype)
        b, j = logits.shape[:2]
        return logits.new_empty((b, j, ndim), dtype=acc), logits.new_empty((b, j, _ref.NSTATS), dtype=acc)

    @torch.library.custom_op(name + "_backward", mutates_args=())
    def bwd(grad_coords: Tensor, logits: Tensor, stats: Tensor) -> Tensor:
        return _ref.soft_argmax_backward(grad_coords, logits, stats)

    @bwd.register_fake
    def _(grad_coords, logits, stats):
        return torch.empty_like(logits)

    def setup_context(ctx, inputs, output):
        ctx.mark_non_differentiable(output[1])  # stats: internal, no gradient
        ctx.save_for_backward(inputs[0], output[1])

    def backward(ctx, grad_coords, _grad_stats):
        logits, stats = ctx.saved_tensors
        return bwd(grad_coords.to(stats.dtype).contiguous(), logits, stats)

    fwd.register_autograd(backward, setup_context=setup_context)

    def impl(logits: Tensor) -> Tensor:
        coords, _lse = fwd(logits)
        return coords.to(logits.dtype)

    return fwd, bwd, impl


_sa2_ref, _sa2_ref_bwd, _sa2_impl = _define_reference(2)
_sa3_ref, _sa3_ref_bwd, _sa3_impl = _define_reference(3)
register_impl("soft_argmax_2d", "reference", _sa2_impl, devices=None)
register_impl("soft_argmax_3d", "reference", _sa3_impl, devices=None)
