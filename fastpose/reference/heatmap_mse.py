"""Heatmap MSE against an on-the-fly Gaussian target: the reference math.

For joint (b, j) with centre ``mu = (mu_x, mu_y[, mu_z])`` in voxel units, the target is the
untruncated, peak-1 Gaussian with a sub-voxel centre::

    t_v = exp(-|v - mu|^2 / (2 sigma^2)) = gx[v_x] * gy[v_y] (* gz[v_z])
    g_a[i] = exp(-(i - mu_a)^2 / (2 sigma^2))                      (per-axis factors)

and the loss terms are ``w_bj * (h_v - t_v)^2``. The target volume is NEVER materialised in the
forward: per joint::

    sum_v (h - t)^2 = sum_v h^2 - 2 sum_v h t + sum_v t^2
    sum_v h t   = contraction of h with gx along W, then gy along H, then gz along D
    sum_v t^2   = prod_a sum_i g_a[i]^2

Reductions (N_vox = D*H*W, or H*W in 2D):

    "mean": sum_bj w_bj SSE_bj / (B*J*N_vox)     (0 for an empty batch, not NaN)
    "sum":  sum_bj w_bj SSE_bj
    "none": w_bj SSE_bj / N_vox, shape (B, J)

Gradient (:func:`heatmap_mse_backward`): ``dL/dh_v = grad * 2 w_bj (h_v - t_v) / N`` with N the
normaliser above (B*J*N_vox, 1 or N_vox). The gradient has the size of the volume anyway, so there
the target is formed, by broadcasting the per-axis factors.

float16 / bfloat16 are computed in float32 and returned in the input dtype; float64 stays float64.
Note: the expansion subtracts nearly equal numbers when ``h`` is close to ``t``, so a loss that is
exactly 0 in exact arithmetic may come out as a tiny (possibly negative) rounding residue.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

from fastpose.reference.soft_argmax import _compute_dtype

__all__ = [
    "gaussian_factors",
    "heatmap_mse_2d",
    "heatmap_mse_3d",
    "heatmap_mse_backward",
]

_REDUCTIONS = ("mean", "sum", "none")

# einsum equations that contract one spatial axis (the last one) of h with its factor; the
# ellipsis covers the (B, J) leading dims so that torch lowers each to one batched matmul.
_CONTRACT = {
    3: ("...dhw,...w->...dh", "...dh,...h->...d", "...d,...d->..."),
    2: ("...hw,...w->...h", "...h,...h->..."),
}


def gaussian_factors(
    joints: torch.Tensor, sigma: float, sizes: Sequence[int], dtype: torch.dtype | None = None
) -> tuple[torch.Tensor, ...]:
    """Per-axis Gaussian factors of the target.

    Args:
        joints: (B, J, n) centres in voxel units ordered (x, y[, z]); any leading dims.
        sigma: the Gaussian standard deviation in voxels (> 0).
        sizes: the volume's spatial shape in ARRAY order, (H, W) or (D, H, W); ``len == n``.
        dtype: the dtype of the factors; default the accumulation dtype of ``joints`` (float32,
            float64 for float64 joints). The losses pass their heatmaps' accumulation dtype.

    Returns:
        ``(gx, gy)`` or ``(gx, gy, gz)`` in COORDINATE order (same order as ``joints[..., k]``):
        gx (B, J, W), gy (B, J, H), gz (B, J, D), ``g_a[i] = exp(-(i - mu_a)^2 / (2 sigma^2))``.
    """
    n = len(sizes)
    acc = _compute_dtype(joints.dtype) if dtype is None else dtype
    mu = joints.to(acc)  # (B, J, n)
    inv_two_var = 1.0 / (2.0 * sigma * sigma)  # scalar 1 / (2 sigma^2)
    factors = []  # gx, gy[, gz]
    for k in range(n):  # coordinate k (x, y, z) <-> array axis n - 1 - k
        idx = torch.arange(sizes[n - 1 - k], device=joints.device, dtype=acc)  # (S,)
        d = idx - mu[..., k : k + 1]  # (B, J, S) i - mu_k
        factors.append(torch.exp(-(d * d) * inv_two_var))  # (B, J, S)
    return tuple(factors)


def _target(factors: Sequence[torch.Tensor]) -> torch.Tensor:
    """Broadcast product of coordinate-ordered factors -> target volume (B, J, *S) (array order).

    Used only by the backward, where a tensor of the volume's size is produced anyway."""
    t = factors[-1]  # (B, J, S_0) the outermost array axis (z in 3D, y in 2D)
    for g in reversed(factors[:-1]):  # next inner axes: ..., y, x
        # t (B, J, S_0..S_i) -> (B, J, S_0..S_i, 1); g (B, J, S_{i+1}) -> (B, J, 1..1, S_{i+1})
        g = g.reshape(g.shape[:-1] + (1,) * (t.dim() - g.dim() + 1) + g.shape[-1:])  # (B, J, 1.., 1, S)
        t = t.unsqueeze(-1) * g  # (B, J, S_0..S_{i+1})
    return t  # (B, J, *S)


def _normaliser(reduction: str, lead_numel: int, n_vox: int) -> int:
    """N in L = sum w SSE / N: B*J*N_vox for "mean" (at least 1: an empty mean is 0), N_vox for
    "none", 1 for "sum"."""
    if reduction == "mean":
        return max(lead_numel * n_vox, 1)
    if reduction == "none":
        return max(n_vox, 1)
    if reduction == "sum":
        return 1
    raise ValueError(f"argument 'reduction': expected one of {_REDUCTIONS}, received {reduction!r}")


def _heatmap_mse_acc(
    h: torch.Tensor,
    joints: torch.Tensor,
    sigma: float,
    weights: torch.Tensor | None,
    reduction: str,
) -> torch.Tensor:
    """Heatmap MSE of ``h`` (B, J, *S) already in the accumulation dtype; result in that dtype."""
    n = joints.shape[-1]  # number of spatial axes
    spatial = tuple(h.shape[-n:])  # (D, H, W) or (H, W)
    n_vox = math.prod(spatial)  # D*H*W
    norm = _normaliser(reduction, h.shape[:-n].numel(), n_vox)  # B*J*N_vox, N_vox or 1
    factors = gaussian_factors(joints, sigma, spatial, h.dtype)  # coordinate order: gx, gy[, gz]
    hf = h.reshape(h.shape[:-n] + (n_vox,))  # (B, J, V)
    sum_h2 = torch.einsum("...v,...v->...", hf, hf)  # (B, J) sum_v h^2, one batched dot
    r = h  # (B, J, *S), shrinks by one axis per contraction
    for eq, g in zip(_CONTRACT[n], factors, strict=True):  # x (W) first, then y (H), then z (D)
        r = torch.einsum(eq, r, g)  # (B, J, *S[:-1]) ... -> (B, J)
    sum_ht = r  # (B, J) sum_v h_v t_v
    sum_t2 = None  # (B, J) prod_a sum_i g_a[i]^2
    for g in factors:
        sq = (g * g).sum(dim=-1)  # (B, J)
        sum_t2 = sq if sum_t2 is None else sum_t2 * sq  # (B, J)
    sse = sum_h2 - 2.0 * sum_ht + sum_t2  # (B, J) sum_v (h - t)^2
    if weights is not None:
        sse = sse * weights.to(h.dtype)  # (B, J) w_bj * SSE_bj
    if reduction == "none":
        return sse / norm  # (B, J) per-joint weighted means
    return sse.sum() / norm  # () "mean" or "sum"


def heatmap_mse_2d(
    heatmaps: torch.Tensor,
    joints: torch.Tensor,
    sigma: float,
    weights: torch.Tensor | None = None,
    reduction: str = "mean",
) -> torch.Tensor:
    """2D heatmap MSE against the Gaussian target (see the module docstring).

    heatmaps (B, J, H, W), joints (B, J, 2) ordered (x, y) in pixel units, sigma > 0,
    weights (B, J) or None. Returns () for "mean"/"sum", (B, J) for "none"; heatmaps' dtype.
    """
    h = heatmaps.to(_compute_dtype(heatmaps.dtype))  # (B, J, H, W) accumulation dtype
    return _heatmap_mse_acc(h, joints, sigma, weights, reduction).to(heatmaps.dtype)


def heatmap_mse_3d(
    heatmaps: torch.Tensor,
    joints: torch.Tensor,
    sigma: float,
    weights: torch.Tensor | None = None,
    reduction: str = "mean",
) -> torch.Tensor:
    """3D heatmap MSE against the Gaussian target (see the module docstring).

    heatmaps (B, J, D, H, W), joints (B, J, 3) ordered (x, y, z) in voxel units, sigma > 0,
    weights (B, J) or None. Returns () for "mean"/"sum", (B, J) for "none"; heatmaps' dtype.
    """
    h = heatmaps.to(_compute_dtype(heatmaps.dtype))  # (B, J, D, H, W) accumulation dtype
    return _heatmap_mse_acc(h, joints, sigma, weights, reduction).to(heatmaps.dtype)


def _heatmap_mse_backward_acc(
    grad_out: torch.Tensor | None,
    h: torch.Tensor,
    joints: torch.Tensor,
    sigma: float,
    weights: torch.Tensor | None,
    reduction: str,
) -> torch.Tensor:
    """dL/dh = grad * 2 w (h - t) / N for ``h`` (B, J, *S) in the accumulation dtype."""
    if grad_out is None:
        return torch.zeros_like(h)  # (B, J, *S) no gradient reached the loss
    n = joints.shape[-1]  # number of spatial axes
    spatial = tuple(h.shape[-n:])  # (D, H, W) or (H, W)
    n_vox = math.prod(spatial)  # D*H*W
    norm = _normaliser(reduction, h.shape[:-n].numel(), n_vox)  # B*J*N_vox, N_vox or 1
    t = _target(gaussian_factors(joints, sigma, spatial, h.dtype))  # (B, J, *S) by broadcasting
    coef = grad_out.to(h.dtype) * (2.0 / norm)  # () or (B, J) for "none"
    if weights is not None:
        coef = coef * weights.to(h.dtype)  # (B, J)
    coef = coef.reshape(coef.shape + (1,) * n)  # () or (B, J, 1.., 1)
    return (h - t) * coef  # (B, J, *S)


def heatmap_mse_backward(
    grad_out: torch.Tensor | None,
    heatmaps: torch.Tensor,
    joints: torch.Tensor,
    sigma: float,
    weights: torch.Tensor | None,
    reduction: str,
) -> torch.Tensor:
    """Analytic gradient of :func:`heatmap_mse_2d` / :func:`heatmap_mse_3d` (no autograd)::

        dL/dh_v = grad_bj * 2 * w_bj * (h_v - t_v) / N

    Args:
        grad_out: () for "mean"/"sum", (B, J) for "none"; None is treated as zeros.
        heatmaps: (B, J, *S) the forward input; the number of spatial axes is ``joints.shape[-1]``.
        joints, sigma, weights, reduction: as in the forward.

    Returns:
        (B, J, *S) dL/dheatmaps in heatmaps' dtype.
    """
    h = heatmaps.to(_compute_dtype(heatmaps.dtype))  # (B, J, *S) accumulation dtype
    grad = _heatmap_mse_backward_acc(grad_out, h, joints, sigma, weights, reduction)  # (B, J, *S)
    return grad.to(heatmaps.dtype)  # (B, J, *S)
