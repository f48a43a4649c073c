"""Fused 3D soft-argmax + heatmap MSE on the same raw volume: the reference math.

Given raw logits ``z`` (B, J, D, H, W)::

    coords = soft_argmax_3d(z)                                   (B, J, 3)  (x, y, z) voxel units
    mse    = heatmap_mse_3d(z, joints, sigma, weights, "mean")   ()  the MSE is on z itself

Both read the same volume once (here: one conversion to the accumulation dtype shared by both),
and the gradient of both outputs is one sum, formed in one backward pass::

    dL/dz_v = p_v * sum_k gc_k (v_k - coords_k)           (from coords, p = exp(z - lse))
            + gm * 2 w_bj (z_v - t_v) / (B*J*D*H*W)       (from mse, t the Gaussian target)

See :mod:`fastpose.reference.soft_argmax` and :mod:`fastpose.reference.heatmap_mse`.
"""

from __future__ import annotations

import torch

from fastpose.reference.heatmap_mse import _heatmap_mse_acc, _heatmap_mse_backward_acc
from fastpose.reference.soft_argmax import (
    _compute_dtype,
    _soft_argmax_acc,
    _soft_argmax_backward_acc,
)

__all__ = [
    "soft_argmax_heatmap_mse_3d",
    "soft_argmax_heatmap_mse_forward",
    "soft_argmax_heatmap_mse_backward",
]


def soft_argmax_heatmap_mse_forward(
    logits: torch.Tensor,
    joints: torch.Tensor,
    sigma: float,
    weights: torch.Tensor | None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Forward for backends: returns (coords (B, J, 3), mse (), lse (B, J)), all in the
    accumulation dtype (float32, or float64 for float64 logits). ``lse`` is what
    :func:`soft_argmax_heatmap_mse_backward` needs to rebuild the softmax."""
    z = logits.to(_compute_dtype(logits.dtype))  # (B, J, D, H, W) read once
    coords, lse = _soft_argmax_acc(z, 3)  # (B, J, 3), (B, J)
    mse = _heatmap_mse_acc(z, joints, sigma, weights, "mean")  # ()
    return coords, mse, lse


def soft_argmax_heatmap_mse_3d(
    logits: torch.Tensor,
    joints: torch.Tensor,
    sigma: float,
    weights: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(soft_argmax_3d(logits), heatmap_mse_3d(logits, joints, sigma, weights, "mean"))``.

    logits (B, J, D, H, W), joints (B, J, 3) (x, y, z) voxel units, sigma > 0, weights (B, J) or
    None. Returns coords (B, J, 3) and mse () in logits' dtype. Differentiable by autograd.
    """
    coords, mse, _ = soft_argmax_heatmap_mse_forward(logits, joints, sigma, weights)  # (B, J, 3), ()
    return coords.to(logits.dtype), mse.to(logits.dtype)  # (B, J, 3), ()


def soft_argmax_heatmap_mse_backward(
    grad_coords: torch.Tensor | None,
    grad_mse: torch.Tensor | None,
    logits: torch.Tensor,
    joints: torch.Tensor,
    sigma: float,
    weights: torch.Tensor | None,
    coords: torch.Tensor,
    lse: torch.Tensor,
) -> torch.Tensor:
    """Analytic gradient of both outputs with respect to logits (no autograd).

    Args:
        grad_coords: (B, J, 3) dL/dcoords or None (zeros).
        grad_mse: () dL/dmse or None (zeros).
        logits, joints, sigma, weights: the forward inputs.
        coords, lse: (B, J, 3), (B, J) from :func:`soft_argmax_heatmap_mse_forward`.

    Returns:
        (B, J, D, H, W) dL/dlogits in logits' dtype (the sum of both contributions, cast once).
    """
    z = logits.to(_compute_dtype(logits.dtype))  # (B, J, D, H, W) accumulation dtype
    grad = _soft_argmax_backward_acc(grad_coords, z, coords, lse)  # (B, J, D, H, W)
    if grad_mse is not None:
        grad = grad + _heatmap_mse_backward_acc(
            grad_mse, z, joints, sigma, weights, "mean"
        )  # (B, J, D, H, W)
    return grad.to(logits.dtype)  # (B, J, D, H, W)
