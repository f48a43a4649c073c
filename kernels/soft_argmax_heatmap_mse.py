"""Triton fused volumetric head: soft-argmax and heatmap MSE of the same raw volume.

For logits ``l`` (B, J, D, H, W), joints ``mu`` (B, J, 3), weights ``w`` (B, J)::

    coords = soft_argmax_3d(l)                       (B, J, 3)
    mse    = sum_bj w_bj sum_v (l_v - t_v)^2 / (B*J*N)   N = D*H*W, t the Gaussian target
    dL/dl_v = p_v * sum_k gc_k (v_k - coords_k) + gm * 2 w_bj (l_v - t_v) / (B*J*N)

Forward: ONE read of ``l``; per row of a tile, the online-softmax states of
:mod:`kernels.soft_argmax` and the sum of squared errors against the on-the-fly target
(``t = gyz(row) * gx(col)``). Backward: ONE read of ``l`` and ONE write of the gradient, with
``p = exp((l - m) - log s)`` rebuilt from the saved ``stats = (m, log s, cx, cy, cz)`` (the layout
of every backend, docs/ops.md; the MSE part saves nothing, its gradient is recomputed). Volumes split across
programs use the two-stage reduction (partials, then a fixed-order merge).
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl
from torch import Tensor
from torch.library import wrap_triton

from fastpose.reference.heatmap_mse import _normaliser
from fastpose.reference.soft_argmax_heatmap_mse import as_2d

from ._common import (
    _col_gaussian,
    _load_gaussian_params,
    _merge_softmax,
    _online_softmax_update,
    _row_gaussian,
    _tile_offsets,
    acc_dtype,
    block_w,
    define_op,
    gaussian_params,
    plan_rows,
    store_dtype,
    unused_pointer,
    volume_configs,
    volume_dims,
    volume_reduce_configs,
)
from .soft_argmax import _store_result

__all__ = [
    "soft_argmax_heatmap_mse_2d",
    "soft_argmax_heatmap_mse_3d",
    "soft_argmax_heatmap_mse_forward",
    "soft_argmax_heatmap_mse_backward",
]




# ---- kernels ---------------------------------------------------------------------------------


@triton.autotune(configs=volume_reduce_configs(), key=["R", "W"])  # one fixed config: reproducible sums
@triton.jit
def _fused_fwd_kernel(
    logits_ptr,  # (BJ, R, W) contiguous, R = D*H
    params_ptr,  # (BJ, 5) mu_x, mu_y, mu_z, w, 1/(2 sigma^2); accumulation dtype
    coords_ptr,  # (BJ, 3) logits' dtype          [written when SINGLE]
    stats_ptr,  # (BJ, 5) m, log s, cx, cy, cz     [written when SINGLE]
    sse_ptr,  # (BJ,) w * sum (l - t)^2            [written when SINGLE]
    part_ptr,  # (BJ, S, 6) m, s, sx, sy, sz, sse  [written when not SINGLE]
    R, H, W, ROWS_PER_SPLIT, S,
    SINGLE: tl.constexpr, BLOCK_W: tl.constexpr, TILE: tl.constexpr,
):
    acc = params_ptr.dtype.element_ty
    BLOCK_R: tl.constexpr = TILE // BLOCK_W
    bj = tl.program_id(0).to(tl.int64)
    split = tl.program_id(1)
    row_lo = split * ROWS_PER_SPLIT
    row_hi = tl.minimum(row_lo + ROWS_PER_SPLIT, R)
    mx, my, mz, w, coef = _load_gaussian_params(params_ptr, bj)

    m = tl.full([BLOCK_R], float("-inf"), acc)
    s = tl.zeros([BLOCK_R], acc)
    sx = tl.zeros([BLOCK_R], acc)
    sy = tl.zeros([BLOCK_R], acc)
    sz = tl.zeros([BLOCK_R], acc)
    q = tl.zeros([BLOCK_R], acc)
    for r0 in range(row_lo, row_hi, BLOCK_R):
        rows = r0 + tl.arange(0, BLOCK_R)
        row_ok = rows < row_hi
        y = (rows % H).to(acc)
        z = (rows // H).to(acc)
        g_row = _row_gaussian(rows, H, my, mz, coef, acc, True)  # [BLOCK_R]
        for c0 in range(0, W, BLOCK_W):
            cols = c0 + tl.arange(0, BLOCK_W)
            mask = row_ok[:, None] & (cols < W)[None, :]
            offs = _tile_offsets(bj, rows, cols, R, W)
            raw = tl.load(logits_ptr + offs, mask=mask, other=0.0).to(acc)
            t = g_row[:, None] * _col_gaussian(cols, mx, coef, acc)[None, :]
            d = tl.where(mask, raw - t, 0.0)
            q += tl.sum(d * d, axis=1)
            l = tl.where(mask, raw, float("-inf"))
            m, s, sx, sy, sz = _online_softmax_update(m, s, sx, sy, sz, l, cols.to(acc), y, z, True)

    M, S0, SX, SY, SZ = _merge_softmax(m, s, sx, sy, sz)
    Q = w * tl.sum(q)
    if SINGLE:
        _store_result(coords_ptr, stats_ptr, bj, M, S0, SX, SY, SZ, 3)
        tl.store(sse_ptr + bj, Q)
    else:
        base = (bj * S + split) * 6
        tl.store(part_ptr + base + 0, M)
        tl.store(part_ptr + base + 1, S0)
        tl.store(part_ptr + base + 2, SX)
        tl.store(part_ptr + base + 3, SY)
        tl.store(part_ptr + base + 4, SZ)
        tl.store(part_ptr + base + 5, Q)


@triton.jit
def _fused_combine_kernel(
    part_ptr,  # (BJ, S, 6) from _fused_fwd_kernel
    coords_ptr,  # (BJ, 3)
    stats_ptr,  # (BJ, 5)
    sse_ptr,  # (BJ,)
    S,
    BLOCK_S: tl.constexpr,
):
    """Second stage: merge the S partial states of one (batch, joint) in split order."""
    bj = tl.program_id(0).to(tl.int64)
    k = tl.arange(0, BLOCK_S)
    ok = k < S
    base = bj * S * 6 + k * 6
    m = tl.load(part_ptr + base + 0, mask=ok, other=float("-inf"))
    s = tl.load(part_ptr + base + 1, mask=ok, other=0.0)
    sx = tl.load(part_ptr + base + 2, mask=ok, other=0.0)
    sy = tl.load(part_ptr + base + 3, mask=ok, other=0.0)
    sz = tl.load(part_ptr + base + 4, mask=ok, other=0.0)
    q = tl.load(part_ptr + base + 5, mask=ok, other=0.0)
    M, S0, SX, SY, SZ = _merge_softmax(m, s, sx, sy, sz)
    _store_result(coords_ptr, stats_ptr, bj, M, S0, SX, SY, SZ, 3)
    tl.store(sse_ptr + bj, tl.sum(q))


@triton.autotune(configs=volume_configs(), key=["R", "W"])
@triton.jit
def _fused_bwd_kernel(
    logits_ptr,  # (BJ, R, W)
    params_ptr,  # (BJ, 5) accumulation dtype
    stats_ptr,  # (BJ, 5) m, log s, cx, cy, cz
    grad_coords_ptr,  # (BJ, 3) dL/dcoords
    grad_mse_ptr,  # (1,) dL/dmse * 2 / (B*J*N), accumulation dtype
    grad_ptr,  # (BJ, R, W) dL/dlogits, logits' dtype
    R, H, W, ROWS_PER_SPLIT,
    BLOCK_W: tl.constexpr, TILE: tl.constexpr,
):
    """dL/dl = p (gc.(v - c)) + gm w (l - t): one read of l, one write of the gradient."""
    acc = params_ptr.dtype.element_ty
    BLOCK_R: tl.constexpr = TILE // BLOCK_W
    bj = tl.program_id(0).to(tl.int64)
    split = tl.program_id(1)
    row_lo = split * ROWS_PER_SPLIT
    row_hi = tl.minimum(row_lo + ROWS_PER_SPLIT, R)
    mx, my, mz, w, coef = _load_gaussian_params(params_ptr, bj)
    m = tl.load(stats_ptr + bj * 5 + 0)
    log_s = tl.load(stats_ptr + bj * 5 + 1)
    cx = tl.load(stats_ptr + bj * 5 + 2)
    cy = tl.load(stats_ptr + bj * 5 + 3)
    cz = tl.load(stats_ptr + bj * 5 + 4)
    gx = tl.load(grad_coords_ptr + bj * 3 + 0).to(acc)
    gy = tl.load(grad_coords_ptr + bj * 3 + 1).to(acc)
    gz = tl.load(grad_coords_ptr + bj * 3 + 2).to(acc)
    gc = gx * cx + gy * cy + gz * cz
    gm = tl.load(grad_mse_ptr) * w
    out_ty = grad_ptr.dtype.element_ty
    for r0 in range(row_lo, row_hi, BLOCK_R):
        rows = r0 + tl.arange(0, BLOCK_R)
        row_ok = rows < row_hi
        row_term = gy * (rows % H).to(acc) + gz * (rows // H).to(acc) - gc  # [BLOCK_R]
        g_row = _row_gaussian(rows, H, my, mz, coef, acc, True)  # [BLOCK_R]
        for c0 in range(0, W, BLOCK_W):
            cols = c0 + tl.arange(0, BLOCK_W)
            mask = row_ok[:, None] & (cols < W)[None, :]
            offs = _tile_offsets(bj, rows, cols, R, W)
            l = tl.load(logits_ptr + offs, mask=mask, other=0.0).to(acc)
            p = tl.exp((l - m) - log_s)
            t = g_row[:, None] * _col_gaussian(cols, mx, coef, acc)[None, :]
            d = p * ((gx * cols.to(acc))[None, :] + row_term[:, None]) + gm * (l - t)
            tl.store(grad_ptr + offs, d.to(out_ty), mask=mask)


# ---- host launchers --------------------------------------------------------------------------




def soft_argmax_heatmap_mse_forward(
    logits: Tensor, joints: Tensor, sigma: float, weights: Tensor | None,
    rows_per_split: int | None = None,
) -> tuple[Tensor, Tensor, Tensor]:
    """(coords (B, J, 3), mse (), stats (B, J, 5)); coords and mse in logits' dtype."""
    x = logits.contiguous()
    acc = acc_dtype(x.dtype)
    b, j = x.shape[:2]
    coords = torch.empty((b, j, 3), dtype=store_dtype(x.dtype), device=x.device)
    stats = torch.empty((b, j, 5), dtype=acc, device=x.device)
    bj, n, rows, h, w = volume_dims(x)
    if bj == 0:
        return coords.to(x.dtype), torch.zeros((), dtype=x.dtype, device=x.device), stats
    params = gaussian_params(joints, weights, sigma, acc)
    splits, rps = plan_rows(bj, rows, w, x.device, rows_per_split)
    single = bool(splits == 1)
    sse = torch.empty((bj,), dtype=acc, device=x.device)
    if single:  # one program per volume writes the results directly; no partials
        part = unused_pointer(x.device, acc)
    else:
        part = torch.empty((bj, splits, 6), dtype=acc, device=x.device)
    wrap_triton(_fused_fwd_kernel)[(bj, splits)](
        x, params, coords, stats, sse, part, rows, h, w, rps, splits,
        SINGLE=single, BLOCK_W=block_w(w),
    )
    if not single:
        wrap_triton(_fused_combine_kernel)[(bj,)](
            part, coords, stats, sse, splits, BLOCK_S=triton.next_power_of_2(int(splits))
        )
    mse = sse.sum() / _normaliser("mean", bj, n)
    return coords.to(x.dtype), mse.to(x.dtype), stats


def soft_argmax_heatmap_mse_backward(
    grad_coords: Tensor, grad_mse: Tensor, logits: Tensor, joints: Tensor, sigma: float,
    weights: Tensor | None, stats: Tensor, rows_per_split: int | None = None,
) -> Tensor:
    """dL/dlogits from both outputs' gradients, grad_coords (B, J, 3) and grad_mse ()."""
    x = logits.contiguous()
    acc = acc_dtype(x.dtype)
    grad = torch.empty(x.shape, dtype=store_dtype(x.dtype), device=x.device)
    bj, n, rows, h, w = volume_dims(x)
    if bj == 0:
        return grad.to(x.dtype)
    params = gaussian_params(joints, weights, sigma, acc)
    gm = (grad_mse.to(acc) * (2.0 / _normaliser("mean", bj, n))).reshape(1)
    splits, rps = plan_rows(bj, rows, w, x.device, rows_per_split)
    wrap_triton(_fused_bwd_kernel)[(bj, splits)](
        x, params, stats.contiguous(), grad_coords.contiguous(), gm, grad, rows, h, w, rps,
        BLOCK_W=block_w(w),
    )
    return grad.to(x.dtype)


# ---- torch.library operators -----------------------------------------------------------------


def _fwd_impl(logits: Tensor, joints: Tensor, sigma: float,
              weights: Tensor | None) -> tuple[Tensor, Tensor, Tensor]:
    return soft_argmax_heatmap_mse_forward(logits, joints, sigma, weights)


def _fwd_fake(logits, joints, sigma, weights):
    b, j = logits.shape[:2]
    acc = acc_dtype(logits.dtype)
    return logits.new_empty((b, j, 3)), logits.new_empty(()), logits.new_empty((b, j, 5), dtype=acc)


def _bwd_impl(grad_coords: Tensor, grad_mse: Tensor, logits: Tensor, joints: Tensor, sigma: float,
              weights: Tensor | None, stats: Tensor) -> Tensor:
    return soft_argmax_heatmap_mse_backward(grad_coords, grad_mse, logits, joints, sigma, weights, stats)


def _bwd_fake(grad_coords, grad_mse, logits, joints, sigma, weights, stats):
    return logits.new_empty(logits.shape)


_fused_op = define_op("soft_argmax_heatmap_mse_3d_triton", _fwd_impl, _fwd_fake)
_fused_bwd_op = define_op("soft_argmax_heatmap_mse_3d_triton_backward", _bwd_impl, _bwd_fake)


def _setup_context(ctx, inputs, output):
    logits, joints, sigma, weights = inputs
    stats = output[2]
    ctx.mark_non_differentiable(stats)
    ctx.sigma, ctx.has_w = sigma, weights is not None
    ctx.save_for_backward(logits, joints, weights if weights is not None else joints, stats)


def _backward(ctx, grad_coords, grad_mse, _grad_stats):
    logits, joints, weights, stats = ctx.saved_tensors
    if grad_coords is None:
        grad_coords = logits.new_zeros((*logits.shape[:2], 3))
    if grad_mse is None:
        grad_mse = logits.new_zeros(())
    grad = _fused_bwd_op(grad_coords, grad_mse, logits, joints, ctx.sigma,
                         weights if ctx.has_w else None, stats)
    return grad, None, None, None


_fused_op.register_autograd(_backward, setup_context=_setup_context)


def soft_argmax_heatmap_mse_3d(logits: Tensor, joints: Tensor, sigma: float,
                               weights: Tensor | None) -> tuple[Tensor, Tensor]:
    """Triton backend of :func:`fastpose.ops.soft_argmax_heatmap_mse_3d` -> (coords, mse)."""
    coords, mse, _stats = _fused_op(logits, joints, sigma, weights)
    return coords, mse


def _reasons(logits: Tensor, *args) -> list[str]:
    if any(s == 0 for s in logits.shape[2:]):
        return [f"empty volume {tuple(logits.shape[2:])}: the softmax over no voxel is undefined"]
    return []


# The 2D head: the same kernels on a (B, J, 1, H, W) view with joints (x, y, 0) (D = 1).
soft_argmax_heatmap_mse_2d = as_2d(soft_argmax_heatmap_mse_3d)

IMPLS = (
    ("soft_argmax_heatmap_mse_3d", soft_argmax_heatmap_mse_3d, _reasons),
    ("soft_argmax_heatmap_mse_2d", soft_argmax_heatmap_mse_2d, _reasons),
)
