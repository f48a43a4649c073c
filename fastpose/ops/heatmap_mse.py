"""Public ``heatmap_mse_2d`` / ``heatmap_mse_3d`` and their ``reference`` backend.

loss = reduce_bj( w_bj * sum_v (h_bjv - t_bjv)^2 ), t_bjv = exp(-|v - mu_bj|^2 / (2 sigma^2)),
the Gaussian target (peak 1, untruncated, sub-voxel centre ``mu = joints[b, j]`` in voxel units,
x along the last axis) generated on the fly, never materialised. ``mean`` divides by B*J*prod(V),
``sum`` does not, ``none`` returns (B, J) per-joint means (divided by prod(V)). A mean over an empty
batch is 0.
"""

from __future__ import annotations

import torch
from torch import Tensor

from ..reference import heatmap_mse as _ref
from ._dispatch import register_impl, select_backend
from ._spec import validate

__all__ = ["heatmap_mse_2d", "heatmap_mse_3d"]


def heatmap_mse_3d(heatmaps: Tensor, joints: Tensor, sigma: float, weights: Tensor | None = None,
                   reduction: str = "mean", *, backend: str | None = None) -> Tensor:
    """MSE between heatmaps (B, J, D, H, W) and the Gaussian at joints (B, J, 3) = (x, y, z) voxels.

    sigma > 0 in voxels; weights (B, J) or None; reduction ``mean`` | ``sum`` | ``none`` (B, J).
    Differentiable w.r.t. ``heatmaps`` only (joints, sigma and weights are targets).
    """
    args = validate("heatmap_mse_3d", heatmaps, joints, sigma, weights, reduction)
    return select_backend("heatmap_mse_3d", args[0], args, backend).fn(*args)


def heatmap_mse_2d(heatmaps: Tensor, joints: Tensor, sigma: float, weights: Tensor | None = None,
                   reduction: str = "mean", *, backend: str | None = None) -> Tensor:
    """MSE between heatmaps (B, J, H, W) and the Gaussian at joints (B, J, 2) = (x, y) pixels."""
    args = validate("heatmap_mse_2d", heatmaps, joints, sigma, weights, reduction)
    return select_backend("heatmap_mse_2d", args[0], args, backend).fn(*args)


def _fake_loss(heatmaps: Tensor, reduction: str) -> Tensor:
    if reduction == "none":
        return heatmaps.new_empty(heatmaps.shape[:2])
    return heatmaps.new_empty(())


def _define_reference(ndim: int):
    name = f"fastpose::heatmap_mse_{ndim}d_reference"
    forward = _ref.heatmap_mse_3d if ndim == 3 else _ref.heatmap_mse_2d

    @torch.library.custom_op(name, mutates_args=())
    def fwd(heatmaps: Tensor, joints: Tensor, sigma: float, weights: Tensor | None,
            reduction: str) -> Tensor:
        return forward(heatmaps, joints, sigma, weights, reduction)

    @fwd.register_fake
    def _(heatmaps, joints, sigma, weights, reduction):
        return _fake_loss(heatmaps, reduction)

    @torch.library.custom_op(name + "_backward", mutates_args=())
    def bwd(grad: Tensor, heatmaps: Tensor, joints: Tensor, sigma: float, weights: Tensor | None,
            reduction: str) -> Tensor:
        return _ref.heatmap_mse_backward(grad, heatmaps, joints, sigma, weights, reduction)

    @bwd.register_fake
    def _(grad, heatmaps, joints, sigma, weights, reduction):
        return torch.empty_like(heatmaps)

    def setup_context(ctx, inputs, output):
        heatmaps, joints, sigma, weights, reduction = inputs
        ctx.sigma, ctx.reduction, ctx.has_w = sigma, reduction, weights is not None
        ctx.save_for_backward(heatmaps, joints, weights if weights is not None else joints)

    def backward(ctx, grad):
        heatmaps, joints, weights = ctx.saved_tensors
        g = bwd(grad.contiguous(), heatmaps, joints, ctx.sigma, weights if ctx.has_w else None, ctx.reduction)
        return g, None, None, None, None

    fwd.register_autograd(backward, setup_context=setup_context)
    return fwd, bwd


_hm2_ref, _hm2_ref_bwd = _define_reference(2)
_hm3_ref, _hm3_ref_bwd = _define_reference(3)
register_impl("heatmap_mse_2d", "reference", _hm2_ref, devices=None)
register_impl("heatmap_mse_3d", "reference", _hm3_ref, devices=None)
