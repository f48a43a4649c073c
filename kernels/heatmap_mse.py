"""Triton heatmap MSE against the on-the-fly Gaussian target (2D and 3D).

For volume (b, j) with centre ``mu`` (voxel units) and weight ``w``::

    t_v   = exp(-|v - mu|^2 / (2 sigma^2)) = gx(x) * gyz(row)      never materialised
    SSE   = w * sum_v (h_v - t_v)^2
    loss  = sum_bj SSE / (B*J*N)  ("mean", 0 for an empty batch) | sum_bj SSE ("sum")
            | SSE / N per (b, j) ("none", shape (B, J))            N = D*H*W (or H*W)
    dL/dh = grad * 2 w (h - t) / norm

The target factorises per axis, so a tile needs one ``exp`` per row and one per column, not one
per voxel. The squared errors are direct differences (never the expansion, which cancels near
convergence). The forward saves nothing but its inputs; the backward recomputes the target and
writes ``grad = (grad_out / norm) * 2 w (h - t)`` in one read of ``h`` and one write, rounded once
to the output dtype (docs/ops.md, "Saved state"). Volumes split across programs write partial sums
that ``torch.sum`` combines in a fixed order.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl
from torch import Tensor
from torch.library import wrap_triton

from fastpose.reference.heatmap_mse import _normaliser

from ._common import (
    _col_gaussian,
    _load_gaussian_params,
    _row_gaussian,
    _tile_offsets,
    acc_dtype,
    block_w,
    define_op,
    gaussian_params,
    plan_rows,
    store_dtype,
    volume_configs,
    volume_dims,
    volume_reduce_configs,
)

__all__ = ["heatmap_mse_2d", "heatmap_mse_3d", "heatmap_mse_forward", "heatmap_mse_backward"]




# ---- kernels ---------------------------------------------------------------------------------


@triton.autotune(configs=volume_reduce_configs(), key=["R", "W"])  # one fixed config: reproducible sums
@triton.jit
def _heatmap_mse_fwd_kernel(
    h_ptr,  # (BJ, R, W) heatmaps, contiguous
    params_ptr,  # (BJ, 5) mu_x, mu_y, mu_z, w, 1/(2 sigma^2); its dtype is the accumulation dtype
    part_ptr,  # (BJ, S) partial weighted SSE per split
    R, H, W, ROWS_PER_SPLIT, S,
    NDIM: tl.constexpr, BLOCK_W: tl.constexpr, TILE: tl.constexpr,
):
    acc = params_ptr.dtype.element_ty
    BLOCK_R: tl.constexpr = TILE // BLOCK_W
    bj = tl.program_id(0).to(tl.int64)
    split = tl.program_id(1)
    row_lo = split * ROWS_PER_SPLIT
    row_hi = tl.minimum(row_lo + ROWS_PER_SPLIT, R)
    mx, my, mz, w, coef = _load_gaussian_params(params_ptr, bj)

    q = tl.zeros([BLOCK_R], acc)  # per-row sums of (h - t)^2
    for r0 in range(row_lo, row_hi, BLOCK_R):
        rows = r0 + tl.arange(0, BLOCK_R)
        row_ok = rows < row_hi
        g_row = _row_gaussian(rows, H, my, mz, coef, acc, NDIM == 3)  # [BLOCK_R]
        for c0 in range(0, W, BLOCK_W):
            cols = c0 + tl.arange(0, BLOCK_W)
            mask = row_ok[:, None] & (cols < W)[None, :]
            offs = _tile_offsets(bj, rows, cols, R, W)
            h = tl.load(h_ptr + offs, mask=mask, other=0.0).to(acc)
            t = g_row[:, None] * _col_gaussian(cols, mx, coef, acc)[None, :]
            d = tl.where(mask, h - t, 0.0)
            q += tl.sum(d * d, axis=1)
    tl.store(part_ptr + bj * S + split, w * tl.sum(q))


@triton.autotune(configs=volume_configs(), key=["R", "W"])
@triton.jit
def _heatmap_mse_bwd_kernel(
    h_ptr,  # (BJ, R, W) heatmaps, contiguous
    params_ptr,  # (BJ, 5) mu_x, mu_y, mu_z, w, 1/(2 sigma^2); its dtype is the accumulation dtype
    scale_ptr,  # (BJ,) grad_out / norm per volume, accumulation dtype
    grad_ptr,  # (BJ, R, W) dL/dh in the output dtype
    R, H, W, ROWS_PER_SPLIT,
    NDIM: tl.constexpr, BLOCK_W: tl.constexpr, TILE: tl.constexpr,
):
    """dL/dh = scale[bj] * 2 w (h - t), the target recomputed: one read of h, one write."""
    acc = params_ptr.dtype.element_ty
    BLOCK_R: tl.constexpr = TILE // BLOCK_W
    bj = tl.program_id(0).to(tl.int64)
    split = tl.program_id(1)
    row_lo = split * ROWS_PER_SPLIT
    row_hi = tl.minimum(row_lo + ROWS_PER_SPLIT, R)
    mx, my, mz, w, coef = _load_gaussian_params(params_ptr, bj)
    k = 2.0 * w * tl.load(scale_ptr + bj)
    out_ty = grad_ptr.dtype.element_ty
    for r0 in range(row_lo, row_hi, BLOCK_R):
        rows = r0 + tl.arange(0, BLOCK_R)
        row_ok = rows < row_hi
        g_row = _row_gaussian(rows, H, my, mz, coef, acc, NDIM == 3)  # [BLOCK_R]
        for c0 in range(0, W, BLOCK_W):
            cols = c0 + tl.arange(0, BLOCK_W)
            mask = row_ok[:, None] & (cols < W)[None, :]
            offs = _tile_offsets(bj, rows, cols, R, W)
            h = tl.load(h_ptr + offs, mask=mask, other=0.0).to(acc)
            t = g_row[:, None] * _col_gaussian(cols, mx, coef, acc)[None, :]
            tl.store(grad_ptr + offs, (k * (h - t)).to(out_ty), mask=mask)


# ---- host launchers --------------------------------------------------------------------------




def heatmap_mse_forward(heatmaps: Tensor, joints: Tensor, sigma: float, weights: Tensor | None,
                        reduction: str, rows_per_split: int | None = None) -> Tensor:
    """loss () or (B, J) in heatmaps' dtype (nothing else is kept for the backward)."""
    ndim = joints.shape[-1]
    x = heatmaps.contiguous()
    acc = acc_dtype(x.dtype)
    b, j = x.shape[:2]
    bj, n, rows, h, w = volume_dims(x)
    if bj == 0 or n == 0:
        sse = torch.zeros((bj,), dtype=acc, device=x.device)
    else:
        params = gaussian_params(joints, weights, sigma, acc)
        splits, rps = plan_rows(bj, rows, w, x.device, rows_per_split)
        part = torch.empty((bj, splits), dtype=acc, device=x.device)
        wrap_triton(_heatmap_mse_fwd_kernel)[(bj, splits)](
            x, params, part, rows, h, w, rps, splits, NDIM=ndim, BLOCK_W=block_w(w),
        )
        sse = part.sum(dim=1)  # (BJ,) fixed-order sum of the split partials
    norm = _normaliser(reduction, bj, n)
    if reduction == "none":
        loss = (sse / norm).reshape(b, j)
    else:
        loss = sse.sum() / norm
    return loss.to(x.dtype)


def heatmap_mse_backward(grad: Tensor, heatmaps: Tensor, joints: Tensor, sigma: float, weights: Tensor | None,
                         reduction: str, rows_per_split: int | None = None) -> Tensor:
    """dL/dh (heatmaps' shape and dtype) = grad * 2 w (h - t) / norm, the target recomputed;
    grad () or (B, J)."""
    ndim = joints.shape[-1]
    x = heatmaps.contiguous()
    acc = acc_dtype(x.dtype)
    b, j = x.shape[:2]
    bj, n, rows, h, w = volume_dims(x)
    out = torch.empty(x.shape, dtype=store_dtype(x.dtype), device=x.device)
    if bj == 0 or n == 0:
        return out.to(x.dtype)
    params = gaussian_params(joints, weights, sigma, acc)
    scale = (grad.to(acc) / _normaliser(reduction, bj, n)).expand(b, j).reshape(bj).contiguous()
    splits, rps = plan_rows(bj, rows, w, x.device, rows_per_split)
    wrap_triton(_heatmap_mse_bwd_kernel)[(bj, splits)](
        x, params, scale, out, rows, h, w, rps, NDIM=ndim, BLOCK_W=block_w(w)
    )
    return out.to(x.dtype)  # a no-op except for bfloat16 under the interpreter (store_dtype)


# ---- torch.library operators -----------------------------------------------------------------


def _fwd_impl(heatmaps: Tensor, joints: Tensor, sigma: float, weights: Tensor | None,
              reduction: str) -> Tensor:
    return heatmap_mse_forward(heatmaps, joints, sigma, weights, reduction)


def _fwd_fake(heatmaps, joints, sigma, weights, reduction):
    return heatmaps.new_empty(heatmaps.shape[:2] if reduction == "none" else ())


def _bwd_impl(grad: Tensor, heatmaps: Tensor, joints: Tensor, sigma: float, weights: Tensor | None,
              reduction: str) -> Tensor:
    return heatmap_mse_backward(grad, heatmaps, joints, sigma, weights, reduction)


def _bwd_fake(grad, heatmaps, joints, sigma, weights, reduction):
    return heatmaps.new_empty(heatmaps.shape)


def _setup_context(ctx, inputs, output):
    heatmaps, joints, sigma, weights, reduction = inputs
    ctx.sigma, ctx.reduction, ctx.has_w = sigma, reduction, weights is not None
    # Saved: the inputs themselves (no copies); the gradient is recomputed in the backward.
    ctx.save_for_backward(heatmaps, joints, weights if weights is not None else joints)


def _define(ndim: int):
    fwd = define_op(f"heatmap_mse_{ndim}d_triton", _fwd_impl, _fwd_fake)
    bwd = define_op(f"heatmap_mse_{ndim}d_triton_backward", _bwd_impl, _bwd_fake)

    def backward(ctx, grad):
        heatmaps, joints, weights = ctx.saved_tensors
        g = bwd(grad.contiguous(), heatmaps, joints, ctx.sigma, weights if ctx.has_w else None, ctx.reduction)
        return g, None, None, None, None

    fwd.register_autograd(backward, setup_context=_setup_context)

    def impl(heatmaps: Tensor, joints: Tensor, sigma: float, weights: Tensor | None,
             reduction: str) -> Tensor:
        return fwd(heatmaps, joints, sigma, weights, reduction)

    impl.__name__ = f"heatmap_mse_{ndim}d"
    impl.__doc__ = f"Triton backend of :func:`fastpose.ops.heatmap_mse_{ndim}d`."
    return fwd, bwd, impl


_hm2_op, _hm2_bwd_op, heatmap_mse_2d = _define(2)
_hm3_op, _hm3_bwd_op, heatmap_mse_3d = _define(3)

IMPLS = (
    ("heatmap_mse_2d", heatmap_mse_2d, None),
    ("heatmap_mse_3d", heatmap_mse_3d, None),
)
