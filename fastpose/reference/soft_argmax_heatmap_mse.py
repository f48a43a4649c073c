"""Fused 3D soft-argmax + heatmap MSE on the same raw volume: the reference math.

Given raw logits ``z`` (B, J, D, H, W)::

    coords = soft_argmax_3d(z)                                   (B, J, 3)  (x, y, z) voxel units
    mse    = heatmap_mse_3d(z, joints, sigma, weights, "mean")   ()  the MSE is on z itself

Both are computed from the same chunk of rows (one conversion to the accumulation dtype shared by
both), and the gradient of both outputs is one sum, formed in one backward pass::

    dL/dz_v = p_v * sum_k gc_k (v_k - coords_k)           (from coords, p = exp((z - m) - log s))
            + gm * 2 w_bj (z_v - t_v) / (B*J*D*H*W)       (from mse, t the Gaussian target)

Saved state (shared by every backend, docs/ops.md): the soft-argmax ``stats`` (B, J, 5) =
``[m, log s, c_x, c_y, c_z]``; the MSE part saves nothing (its gradient is recomputed from the
logits and the joints). The squared errors are direct differences (see
:mod:`fastpose.reference.heatmap_mse`), and every temporary is chunk-sized
(:mod:`fastpose.reference._rows`).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch

from fastpose.reference._rows import acc_dtype, map_rows
from fastpose.reference.heatmap_mse import _diff_rows, _mse_coef_rows, _reduce, _square
from fastpose.reference.soft_argmax import NSTATS, _backward_into, _soft_argmax_acc, _soft_argmax_backward_acc

__all__ = [
    "as_2d",
    "soft_argmax_heatmap_mse_2d",
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
    """Forward for backends: returns (coords (B, J, 3), mse (), stats (B, J, 5)), all in the
    accumulation dtype (float32, or float64 for float64 logits). ``stats`` = [m, log s, c_x, c_y,
    c_z] is what :func:`soft_argmax_heatmap_mse_backward` needs to rebuild the softmax."""
    acc = acc_dtype(logits.dtype)
    spatial = tuple(logits.shape[-3:])
    lead = logits.shape[:-3]
    rows, n_vox = math.prod(lead), math.prod(spatial)
    zr = logits.reshape((rows,) + spatial)  # (R, D, H, W)
    jr = joints.reshape(rows, 3)

    def chunk(r0: int, r1: int) -> torch.Tensor:
        z = zr[r0:r1].to(acc)  # (R_c, D, H, W) read once for both parts
        coords, stats = _soft_argmax_acc(z, 3)  # (R_c, 3), (R_c, 5)
        d = _diff_rows(z, jr[r0:r1], sigma, spatial)  # (R_c, D, H, W) z - t
        sse = _square(d).flatten(1).sum(dim=1)  # (R_c,) direct differences
        return torch.cat([coords, stats, sse[:, None]], dim=-1)  # (R_c, 9)

    both = map_rows(chunk, rows, n_vox, logits)  # (R, 9)
    # clones: (B, J, 3) and (B, J, 5) are tiny, and outputs of a custom op must not alias each other
    coords = both[:, :3].reshape(lead + (3,)).clone()
    stats = both[:, 3 : 3 + NSTATS].reshape(lead + (NSTATS,)).clone()
    mse = _reduce(both[:, 3 + NSTATS], lead, n_vox, weights, "mean")  # ()
    return coords, mse, stats


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
    stats: torch.Tensor,
) -> torch.Tensor:
    """Analytic gradient of both outputs with respect to logits (no autograd).

    Args:
        grad_coords: (B, J, 3) dL/dcoords or None (zeros).
        grad_mse: () dL/dmse or None (zeros).
        logits, joints, sigma, weights: the forward inputs.
        stats: (B, J, 5) from :func:`soft_argmax_heatmap_mse_forward`.

    Returns:
        (B, J, D, H, W) dL/dlogits in logits' dtype (the sum of both contributions, cast once),
        computed chunk by chunk of rows: the result is the only volume-sized allocation.
    """
    out = torch.empty(logits.shape, dtype=logits.dtype, device=logits.device)
    if grad_coords is None and grad_mse is None:
        return out.zero_()
    acc = acc_dtype(logits.dtype)
    spatial = tuple(logits.shape[-3:])
    lead = logits.shape[:-3]
    rows = math.prod(lead)
    jr = joints.reshape(rows, 3)
    gc = None if grad_coords is None else grad_coords.reshape(rows, 3)
    st = stats.reshape(rows, NSTATS)
    coef = None
    if grad_mse is not None:
        coef = _mse_coef_rows(grad_mse, lead, math.prod(spatial), weights, "mean", acc)  # (R,)

    def chunk(r0: int, r1: int, z: torch.Tensor) -> torch.Tensor:
        # MSE part first: its target is freed before the softmax numerators exist (3 chunks at most)
        grad = None
        if coef is not None:
            grad = _diff_rows(z, jr[r0:r1], sigma, spatial).mul_(coef[r0:r1].reshape(-1, 1, 1, 1))
        if gc is not None:
            g = _soft_argmax_backward_acc(gc[r0:r1], z, st[r0:r1], 3)  # (R_c, D, H, W)
            grad = g if grad is None else grad.add_(g)
        return grad

    return _backward_into(out, logits, 3, chunk)


# ---- the 2D head: the 3D head with D = 1 ------------------------------------------------------


def as_2d(fused_3d: Callable) -> Callable:
    """The 2D fused head from a 3D one (any backend's): logits (B, J, H, W) are a (B, J, 1, H, W)
    volume (a view, no copy) and joints (B, J, 2) get z = 0. With D = 1 the voxel z index is always 0,
    so the Gaussian target exp(-((x - mu_x)^2 + (y - mu_y)^2 + (0 - 0)^2) / (2 sigma^2)) is the 2D
    target, c_z = sum p * 0 = 0 is dropped, and N = B*J*1*H*W is the 2D mean's normaliser. The
    gradient flows back through the view (the padded c_z receives a zero cotangent).

    ``fused_3d(logits, joints, sigma, weights) -> (coords (B, J, 3), mse ())``; returns the
    function ``(logits (B, J, H, W), joints (B, J, 2), sigma, weights) -> (coords (B, J, 2), mse ())``.
    """

    def fused_2d(logits: torch.Tensor, joints: torch.Tensor, sigma: float,
                 weights: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        joints_3d = torch.nn.functional.pad(joints, (0, 1))  # (B, J, 3): (x, y, 0)
        coords, mse = fused_3d(logits.unsqueeze(-3), joints_3d, sigma, weights)
        return coords[..., :2].contiguous(), mse  # (B, J, 2), ()

    fused_2d.__name__ = fused_2d.__qualname__ = f"{getattr(fused_3d, '__name__', 'fused_3d')}_as_2d"
    return fused_2d


_soft_argmax_heatmap_mse_2d = as_2d(soft_argmax_heatmap_mse_3d)


def soft_argmax_heatmap_mse_2d(
    logits: torch.Tensor,
    joints: torch.Tensor,
    sigma: float,
    weights: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(soft_argmax_2d(logits), heatmap_mse_2d(logits, joints, sigma, weights, "mean"))``.

    logits (B, J, H, W), joints (B, J, 2) (x along W, y along H) in pixel index units, sigma > 0
    pixels, weights (B, J) or None. Returns coords (B, J, 2) and mse () in logits' dtype, the mean
    over B*J*H*W of w (z - t)^2 against the on-the-fly 2D Gaussian t. Computed as the 3D head with
    D = 1 (:func:`as_2d`). Differentiable by autograd.
    """
    return _soft_argmax_heatmap_mse_2d(logits, joints, sigma, weights)
