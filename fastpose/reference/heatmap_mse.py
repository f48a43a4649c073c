"""Heatmap MSE against an on-the-fly Gaussian target: the reference math.

For joint (b, j) with centre ``mu = (mu_x, mu_y[, mu_z])`` in voxel units, the target is the
untruncated, peak-1 Gaussian with a sub-voxel centre::

    t_v = exp(-|v - mu|^2 / (2 sigma^2)) = gx[v_x] * gy[v_y] (* gz[v_z])
    g_a[i] = exp(-(i - mu_a)^2 / (2 sigma^2))                      (per-axis factors)

and the loss terms are ``w_bj * (h_v - t_v)^2``, summed as DIRECT differences: each ``(h_v - t_v)``
is formed first and then squared. (The expansion ``sum h^2 - 2 sum h t + sum t^2`` avoids forming
the target but cancels catastrophically near convergence: at 64^3, sigma = 2 and h = t + 1e-4
noise it returned 3.8e-9 for a true MSE of 1.00e-8, and negative values for h == t.) Direct
differences keep the relative error at float32 rounding level (<= 1e-3 down to MSE = 1e-10).

Memory: the target is generated per chunk of whole (b, j) rows of at most
:data:`fastpose.reference._rows.CHUNK_ELEMS` voxels (4 MiB of float32), by broadcasting the per-axis
factors; it is never materialised for all joints at once. The forward holds at most ~4 chunk-sized
temporaries (float32 copy of half input, target, difference, square); the backward writes the
gradient (one input-sized volume, in the input dtype) chunk by chunk, with the same temporaries.

Reductions (N_vox = D*H*W, or H*W in 2D):

    "mean": sum_bj w_bj SSE_bj / (B*J*N_vox)     (0 for an empty batch, not NaN)
    "sum":  sum_bj w_bj SSE_bj
    "none": w_bj SSE_bj / N_vox, shape (B, J)

Gradient (:func:`heatmap_mse_backward`), recomputed from the inputs (nothing is saved by the
forward but the inputs themselves): ``dL/dh_v = grad * 2 w_bj (h_v - t_v) / N`` with N the
normaliser above (B*J*N_vox, 1 or N_vox).

float16 / bfloat16 are computed in float32 and returned in the input dtype; float64 stays float64.
See docs/ops.md for the op contract.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

from fastpose.reference._rows import acc_dtype, eager, map_rows, row_chunks

__all__ = [
    "gaussian_factors",
    "heatmap_mse_2d",
    "heatmap_mse_3d",
    "heatmap_mse_backward",
]

_REDUCTIONS = ("mean", "sum", "none")


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
    acc = acc_dtype(joints.dtype) if dtype is None else dtype
    mu = joints.to(acc)  # (B, J, n)
    inv_two_var = 1.0 / (2.0 * sigma * sigma)  # scalar 1 / (2 sigma^2)
    factors = []  # gx, gy[, gz]
    for k in range(n):  # coordinate k (x, y, z) <-> array axis n - 1 - k
        idx = torch.arange(sizes[n - 1 - k], device=joints.device, dtype=acc)  # (S,)
        d = idx - mu[..., k : k + 1]  # (B, J, S) i - mu_k
        factors.append(torch.exp(-(d * d) * inv_two_var))  # (B, J, S)
    return tuple(factors)


def _target(factors: Sequence[torch.Tensor]) -> torch.Tensor:
    """Broadcast product of coordinate-ordered factors -> target volume (R, *S) (array order),
    for the R rows of one chunk (the factors are (R, S_a))."""
    t = factors[-1]  # (R, S_0) the outermost array axis (z in 3D, y in 2D)
    for g in reversed(factors[:-1]):  # next inner axes: ..., y, x
        # t (R, S_0..S_i) -> (R, S_0..S_i, 1); g (R, S_{i+1}) -> (R, 1..1, S_{i+1})
        g = g.reshape(g.shape[:-1] + (1,) * (t.dim() - g.dim() + 1) + g.shape[-1:])  # (R, 1.., 1, S)
        t = t.unsqueeze(-1) * g  # (R, S_0..S_{i+1})
    return t  # (R, *S)


def _normaliser(reduction: str, lead_numel: int, n_vox: int) -> int:
    """N in L = sum w SSE / N: B*J*N_vox for "mean" (at least 1: an empty mean is 0), N_vox for
    "none", 1 for "sum". The one definition, used by every backend."""
    if reduction == "mean":
        return max(lead_numel * n_vox, 1)
    if reduction == "none":
        return max(n_vox, 1)
    if reduction == "sum":
        return 1
    raise ValueError(f"argument 'reduction': expected one of {_REDUCTIONS}, received {reduction!r}")


def _rows_view(h: torch.Tensor, joints: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, tuple[int, ...]]:
    """(h as (R, *S), joints as (R, n), S) with R = B*J rows (views when the layout allows)."""
    n = joints.shape[-1]  # number of spatial axes
    spatial = tuple(h.shape[-n:])  # (D, H, W) or (H, W)
    rows = math.prod(h.shape[: h.dim() - n])  # B*J (explicit: -1 is ambiguous for empty volumes)
    return h.reshape((rows,) + spatial), joints.reshape(rows, n), spatial


def _diff_rows(h: torch.Tensor, joints: torch.Tensor, sigma: float, spatial) -> torch.Tensor:
    """(h - t) for one chunk: ``h`` (R_c, *S) in the accumulation dtype, ``joints`` (R_c, n); the
    target of those rows only is formed, in h's dtype. Returns a fresh (R_c, *S) tensor."""
    t = _target(gaussian_factors(joints, sigma, spatial, h.dtype))  # (R_c, *S), fresh
    if eager(t):
        return t.neg_().add_(h)  # (R_c, *S) = h + (-t), bit for bit h - t, in place: no third chunk
    return h - t  # traced: functional form


def _square(d: torch.Tensor) -> torch.Tensor:
    """d^2, in place on the fresh difference unless autograd records it (one chunk less memory)."""
    return d.square_() if eager(d) and not d.requires_grad else d * d


def _sse_rows(h: torch.Tensor, joints: torch.Tensor, sigma: float) -> torch.Tensor:
    """Unweighted sum_v (h_v - t_v)^2 per (b, j) row, (B*J,) in the accumulation dtype of ``h``.

    Each difference is formed before it is squared (no expansion: see the module docstring)."""
    acc = acc_dtype(h.dtype)
    hr, jr, spatial = _rows_view(h, joints)
    n_vox = math.prod(spatial)

    def chunk(r0: int, r1: int) -> torch.Tensor:
        d = _diff_rows(hr[r0:r1].to(acc), jr[r0:r1], sigma, spatial)  # (R_c, *S)
        return _square(d).flatten(1).sum(dim=1)  # (R_c,) cascade-summed in acc

    return map_rows(chunk, hr.shape[0], n_vox, h)  # (B*J,)


def _reduce(sse: torch.Tensor, lead: torch.Size, n_vox: int, weights: torch.Tensor | None,
            reduction: str) -> torch.Tensor:
    """Weight and reduce per-row SSE (B*J,) -> () or (B, J) (see the module docstring)."""
    norm = _normaliser(reduction, math.prod(lead), n_vox)  # B*J*N_vox, N_vox or 1
    sse = sse.reshape(lead)  # (B, J)
    if weights is not None:
        sse = sse * weights.to(sse.dtype)  # (B, J) w_bj * SSE_bj
    if reduction == "none":
        return sse / norm  # (B, J) per-joint weighted means
    return sse.sum() / norm  # () "mean" or "sum"


def _heatmap_mse_acc(
    h: torch.Tensor,
    joints: torch.Tensor,
    sigma: float,
    weights: torch.Tensor | None,
    reduction: str,
) -> torch.Tensor:
    """Heatmap MSE of ``h`` (B, J, *S), any float dtype; result in its accumulation dtype."""
    n = joints.shape[-1]
    _normaliser(reduction, 0, 0)  # validate the reduction before any work
    sse = _sse_rows(h, joints, sigma)  # (B*J,)
    return _reduce(sse, h.shape[:-n], math.prod(h.shape[-n:]), weights, reduction)


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
    return _heatmap_mse_acc(heatmaps, joints, sigma, weights, reduction).to(heatmaps.dtype)


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
    return _heatmap_mse_acc(heatmaps, joints, sigma, weights, reduction).to(heatmaps.dtype)


def _mse_coef_rows(grad_out: torch.Tensor, lead: torch.Size, n_vox: int, weights: torch.Tensor | None,
                   reduction: str, acc: torch.dtype) -> torch.Tensor:
    """Per-row factor k_bj = grad_bj * 2 w_bj / N of dL/dh = k (h - t), (B*J,) in ``acc``."""
    norm = _normaliser(reduction, math.prod(lead), n_vox)
    coef = (grad_out.to(acc) * (2.0 / norm)).expand(lead)  # () or (B, J) -> (B, J)
    if weights is not None:
        coef = coef * weights.to(acc)  # (B, J)
    return coef.reshape(-1)  # (B*J,)


def _write_rows(out: torch.Tensor, fn, n_vox: int) -> torch.Tensor:
    """Fill ``out`` (B, J, *S) chunk by chunk: rows [r0, r1) of it get ``fn(r0, r1)`` (cast to
    out's dtype). Only the chunk's temporaries exist besides ``out``."""
    rows = out.shape[0] * out.shape[1] if out.dim() >= 2 else 0
    outr = out.view((rows,) + tuple(out.shape[2:]))  # (R, *S), out is freshly allocated: a view
    for r0, r1 in row_chunks(rows, n_vox, out):
        outr[r0:r1].copy_(fn(r0, r1))
    return out


def _heatmap_mse_backward_into(out: torch.Tensor, grad_out: torch.Tensor | None, h: torch.Tensor,
                               joints: torch.Tensor, sigma: float, weights: torch.Tensor | None,
                               reduction: str) -> torch.Tensor:
    """dL/dh = k_bj (h - t) written into ``out`` (shape of ``h``), chunk by chunk."""
    if grad_out is None:
        return out.zero_()
    acc = acc_dtype(h.dtype)
    hr, jr, spatial = _rows_view(h, joints)
    n_vox = math.prod(spatial)
    coef = _mse_coef_rows(grad_out, h.shape[: h.dim() - len(spatial)], n_vox, weights, reduction, acc)
    view = (-1,) + (1,) * len(spatial)

    def chunk(r0: int, r1: int) -> torch.Tensor:
        d = _diff_rows(hr[r0:r1].to(acc), jr[r0:r1], sigma, spatial)  # (R_c, *S)
        return d.mul_(coef[r0:r1].reshape(view))  # (R_c, *S) in place on the fresh difference

    return _write_rows(out, chunk, n_vox)


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

    recomputed from the inputs, chunk by chunk (see the module docstring for the memory).

    Args:
        grad_out: () for "mean"/"sum", (B, J) for "none"; None is treated as zeros.
        heatmaps: (B, J, *S) the forward input; the number of spatial axes is ``joints.shape[-1]``.
        joints, sigma, weights, reduction: as in the forward.

    Returns:
        (B, J, *S) dL/dheatmaps in heatmaps' dtype (contiguous).
    """
    out = torch.empty(heatmaps.shape, dtype=heatmaps.dtype, device=heatmaps.device)
    return _heatmap_mse_backward_into(out, grad_out, heatmaps, joints, sigma, weights, reduction)
