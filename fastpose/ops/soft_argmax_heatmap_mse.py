"""Public ``soft_argmax_heatmap_mse_3d`` (the fused volumetric head) and its ``reference`` backend.

(coords, mse) = (soft_argmax_3d(logits), heatmap_mse_3d(logits, joints, sigma, weights, "mean")):
the MSE is taken on the raw volume itself. Fast backends read ``logits`` once in the forward pass
and once (plus one write of the gradient) in the backward pass, where the gradients of both outputs
are combined: dL/dz_v = p_v * (g_c . (v - coords)) + g_mse * 2 w (z_v - t_v) / N.
"""

from __future__ import annotations

import torch
from torch import Tensor

from ..reference import soft_argmax_heatmap_mse as _ref
from ..reference._rows import acc_dtype
from ._dispatch import register_impl, select_backend
from ._spec import validate

__all__ = ["soft_argmax_heatmap_mse_2d", "soft_argmax_heatmap_mse_3d"]

_OP = "soft_argmax_heatmap_mse_3d"
_OP_2D = "soft_argmax_heatmap_mse_2d"


def soft_argmax_heatmap_mse_3d(logits: Tensor, joints: Tensor, sigma: float,
                               weights: Tensor | None = None, *,
                               backend: str | None = None) -> tuple[Tensor, Tensor]:
    """logits (B, J, D, H, W), joints (B, J, 3) voxels, sigma > 0, weights (B, J) or None.

    Returns ``(coords (B, J, 3), mse scalar)`` in logits' dtype; gradients of both flow into
    ``logits`` in one backward pass.
    """
    args = validate(_OP, logits, joints, sigma, weights)
    return select_backend(_OP, args[0], args, backend).fn(*args)


def soft_argmax_heatmap_mse_2d(logits: Tensor, joints: Tensor, sigma: float,
                               weights: Tensor | None = None, *,
                               backend: str | None = None) -> tuple[Tensor, Tensor]:
    """The 2D fused head: logits (B, J, H, W), joints (B, J, 2) = (x along W, y along H) in pixel
    index units, sigma > 0 pixels, weights (B, J) or None.

    Returns ``(coords (B, J, 2), mse scalar)`` = (soft_argmax_2d(logits), heatmap_mse_2d(logits,
    joints, sigma, weights, "mean")) in logits' dtype: one read of the logits forward, both
    gradients into ``logits`` in one backward pass. Every backend runs its 3D kernels with D = 1
    (:func:`fastpose.reference.soft_argmax_heatmap_mse.as_2d`).
    """
    args = validate(_OP_2D, logits, joints, sigma, weights)
    return select_backend(_OP_2D, args[0], args, backend).fn(*args)


@torch.library.custom_op("fastpose::soft_argmax_heatmap_mse_3d_reference", mutates_args=())
def _fused_ref(logits: Tensor, joints: Tensor, sigma: float,
               weights: Tensor | None) -> tuple[Tensor, Tensor, Tensor]:
    # coords (B, J, 3), stats (B, J, 5) = [m, log s, c_x, c_y, c_z], mse (): accumulation dtype
    coords, mse, stats = _ref.soft_argmax_heatmap_mse_forward(logits, joints, sigma, weights)
    return coords, stats, mse


@_fused_ref.register_fake
def _(logits, joints, sigma, weights):
    acc = acc_dtype(logits.dtype)
    b, j = logits.shape[:2]
    return (logits.new_empty((b, j, 3), dtype=acc), logits.new_empty((b, j, 5), dtype=acc),
            logits.new_empty((), dtype=acc))


@torch.library.custom_op("fastpose::soft_argmax_heatmap_mse_3d_reference_backward", mutates_args=())
def _fused_ref_bwd(grad_coords: Tensor, grad_mse: Tensor, logits: Tensor, joints: Tensor, sigma: float,
                   weights: Tensor | None, stats: Tensor) -> Tensor:
    return _ref.soft_argmax_heatmap_mse_backward(grad_coords, grad_mse, logits, joints, sigma, weights, stats)


@_fused_ref_bwd.register_fake
def _(grad_coords, grad_mse, logits, joints, sigma, weights, stats):
    return torch.empty_like(logits)


def _setup(ctx, inputs, output):
    logits, joints, sigma, weights = inputs
    ctx.sigma, ctx.has_w = sigma, weights is not None
    ctx.mark_non_differentiable(output[1])  # stats: internal, no gradient
    # Saved: the inputs (no copies) and the (B, J, 5) stats; nothing of the volume's size.
    ctx.save_for_backward(logits, joints, weights if weights is not None else joints, output[1])


def _backward(ctx, grad_coords, grad_stats, grad_mse):
    logits, joints, weights, stats = ctx.saved_tensors
    g = _fused_ref_bwd(grad_coords.to(stats.dtype).contiguous(), grad_mse.to(stats.dtype), logits, joints,
                       ctx.sigma, weights if ctx.has_w else None, stats)
    return g, None, None, None


_fused_ref.register_autograd(_backward, setup_context=_setup)


def _fused_ref_impl(logits, joints, sigma, weights):
    coords, _lse, mse = _fused_ref(logits, joints, sigma, weights)
    return coords.to(logits.dtype), mse.to(logits.dtype)


register_impl(_OP, "reference", _fused_ref_impl, devices=None)
# D = 1: an export of the 2D head holds the 3D reference op (one ONNX lowering serves both)
register_impl(_OP_2D, "reference", _ref.as_2d(_fused_ref_impl), devices=None)
