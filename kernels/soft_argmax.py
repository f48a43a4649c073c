"""Triton soft-argmax (2D and 3D): one-pass online softmax, backward from the saved log-sum-exp.

For the logits ``l`` of one (batch, joint) volume (``p_v = exp((l_v - m) - log s)``)::

    coords_k = sum_v p_v v_k             k = x (last axis), y, z
    dL/dl_v  = p_v * sum_k g_k (v_k - coords_k),      g = dL/dcoords

Forward: each program streams its rows once, keeping per-row online-softmax states (running max
``m`` and ``sum exp(l - m)``, also weighted by x, y, z), merged at the end (see
:mod:`kernels._common`). A volume split across ``S`` programs writes ``S`` partial states that a
second kernel merges in a fixed order. It saves ``stats = (m, log s, cx, cy, cz)`` in the
accumulation dtype (the layout of every backend, docs/ops.md), so the backward rebuilds
``p = exp((l - m) - log s)`` with one read of ``l`` and writes the gradient once.

Shapes: logits (B, J, H, W) -> coords (B, J, 2); (B, J, D, H, W) -> (B, J, 3); stats (B, J, 5)
(``cz = 0`` in 2D). float16/bfloat16/float32 accumulate in float32, float64 in float64.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl
from torch import Tensor
from torch.library import wrap_triton

from ._common import (
    _merge_softmax,
    _online_softmax_update,
    _tile_offsets,
    acc_dtype,
    block_w,
    define_op,
    plan_rows,
    store_dtype,
    unused_pointer,
    volume_configs,
    volume_dims,
    volume_reduce_configs,
)

__all__ = ["soft_argmax_2d", "soft_argmax_3d", "soft_argmax_forward", "soft_argmax_backward"]




# ---- kernels ---------------------------------------------------------------------------------


@triton.autotune(configs=volume_reduce_configs(), key=["R", "W"])  # one fixed config: reproducible sums
@triton.jit
def _soft_argmax_fwd_kernel(
    logits_ptr,  # (BJ, R, W) contiguous; R = D*H (3D) or H (2D)
    coords_ptr,  # (BJ, NDIM) logits' dtype             [written when SINGLE]
    stats_ptr,  # (BJ, 4) cx, cy, cz, lse; its dtype is the accumulation dtype  [when SINGLE]
    part_ptr,  # (BJ, S, 5) partial states m, s, sx, sy, sz, accumulation dtype [when not SINGLE]
    R, H, W, ROWS_PER_SPLIT, S,
    NDIM: tl.constexpr, SINGLE: tl.constexpr, BLOCK_W: tl.constexpr, TILE: tl.constexpr,
):
    acc = stats_ptr.dtype.element_ty
    BLOCK_R: tl.constexpr = TILE // BLOCK_W
    bj = tl.program_id(0).to(tl.int64)
    split = tl.program_id(1)
    row_lo = split * ROWS_PER_SPLIT
    row_hi = tl.minimum(row_lo + ROWS_PER_SPLIT, R)

    m = tl.full([BLOCK_R], float("-inf"), acc)
    s = tl.zeros([BLOCK_R], acc)
    sx = tl.zeros([BLOCK_R], acc)
    sy = tl.zeros([BLOCK_R], acc)
    sz = tl.zeros([BLOCK_R], acc)
    for r0 in range(row_lo, row_hi, BLOCK_R):
        rows = r0 + tl.arange(0, BLOCK_R)
        row_ok = rows < row_hi
        y = (rows % H).to(acc)  # [BLOCK_R]
        z = (rows // H).to(acc)  # [BLOCK_R] (0 in 2D, where R = H)
        for c0 in range(0, W, BLOCK_W):
            cols = c0 + tl.arange(0, BLOCK_W)
            mask = row_ok[:, None] & (cols < W)[None, :]
            offs = _tile_offsets(bj, rows, cols, R, W)
            l = tl.load(logits_ptr + offs, mask=mask, other=float("-inf")).to(acc)
            m, s, sx, sy, sz = _online_softmax_update(
                m, s, sx, sy, sz, l, cols.to(acc), y, z, NDIM == 3
            )

    M, S0, SX, SY, SZ = _merge_softmax(m, s, sx, sy, sz)
    if SINGLE:
        _store_result(coords_ptr, stats_ptr, bj, M, S0, SX, SY, SZ, NDIM)
    else:
        base = (bj * S + split) * 5
        tl.store(part_ptr + base + 0, M)
        tl.store(part_ptr + base + 1, S0)
        tl.store(part_ptr + base + 2, SX)
        tl.store(part_ptr + base + 3, SY)
        tl.store(part_ptr + base + 4, SZ)


@triton.jit
def _store_result(coords_ptr, stats_ptr, bj, M, S0, SX, SY, SZ, NDIM: tl.constexpr):
    """coords = (SX, SY[, SZ]) / S0 in the output dtype; stats = (M, log S0, cx, cy, cz), the saved
    state of every backend (m and log s apart: p = exp((l - m) - log s) keeps full precision for
    logits of magnitude 1e4, where one float32 ulp of m + log s is already 1e-3)."""
    cx = SX / S0
    cy = SY / S0
    cz = SZ / S0
    out_ty = coords_ptr.dtype.element_ty
    tl.store(coords_ptr + bj * NDIM + 0, cx.to(out_ty))
    tl.store(coords_ptr + bj * NDIM + 1, cy.to(out_ty))
    if NDIM == 3:
        tl.store(coords_ptr + bj * NDIM + 2, cz.to(out_ty))
    tl.store(stats_ptr + bj * 5 + 0, M)
    tl.store(stats_ptr + bj * 5 + 1, tl.log(S0))
    tl.store(stats_ptr + bj * 5 + 2, cx)
    tl.store(stats_ptr + bj * 5 + 3, cy)
    tl.store(stats_ptr + bj * 5 + 4, cz)


@triton.jit
def _soft_argmax_combine_kernel(
    part_ptr,  # (BJ, S, 5) partial states from _soft_argmax_fwd_kernel
    coords_ptr,  # (BJ, NDIM)
    stats_ptr,  # (BJ, 5)
    S,
    NDIM: tl.constexpr, BLOCK_S: tl.constexpr,
):
    """Second stage: merge the S partial states of one (batch, joint), always in split order."""
    bj = tl.program_id(0).to(tl.int64)
    k = tl.arange(0, BLOCK_S)
    ok = k < S
    base = bj * S * 5 + k * 5
    m = tl.load(part_ptr + base + 0, mask=ok, other=float("-inf"))
    s = tl.load(part_ptr + base + 1, mask=ok, other=0.0)
    sx = tl.load(part_ptr + base + 2, mask=ok, other=0.0)
    sy = tl.load(part_ptr + base + 3, mask=ok, other=0.0)
    sz = tl.load(part_ptr + base + 4, mask=ok, other=0.0)
    M, S0, SX, SY, SZ = _merge_softmax(m, s, sx, sy, sz)
    _store_result(coords_ptr, stats_ptr, bj, M, S0, SX, SY, SZ, NDIM)


@triton.autotune(configs=volume_configs(), key=["R", "W"])
@triton.jit
def _soft_argmax_bwd_kernel(
    logits_ptr,  # (BJ, R, W)
    stats_ptr,  # (BJ, 5) m, log s, cx, cy, cz (accumulation dtype)
    grad_coords_ptr,  # (BJ, NDIM) dL/dcoords, any float dtype
    grad_ptr,  # (BJ, R, W) dL/dlogits, logits' dtype
    R, H, W, ROWS_PER_SPLIT,
    NDIM: tl.constexpr, BLOCK_W: tl.constexpr, TILE: tl.constexpr,
):
    """dL/dl_v = p_v (gx x + gy y + gz z - g.c), p_v = exp((l_v - m) - log s): one read, one write."""
    acc = stats_ptr.dtype.element_ty
    BLOCK_R: tl.constexpr = TILE // BLOCK_W
    bj = tl.program_id(0).to(tl.int64)
    split = tl.program_id(1)
    row_lo = split * ROWS_PER_SPLIT
    row_hi = tl.minimum(row_lo + ROWS_PER_SPLIT, R)

    m = tl.load(stats_ptr + bj * 5 + 0)
    log_s = tl.load(stats_ptr + bj * 5 + 1)
    cx = tl.load(stats_ptr + bj * 5 + 2)
    cy = tl.load(stats_ptr + bj * 5 + 3)
    cz = tl.load(stats_ptr + bj * 5 + 4)
    gx = tl.load(grad_coords_ptr + bj * NDIM + 0).to(acc)
    gy = tl.load(grad_coords_ptr + bj * NDIM + 1).to(acc)
    gc = gx * cx + gy * cy
    if NDIM == 3:
        gz = tl.load(grad_coords_ptr + bj * NDIM + 2).to(acc)
        gc += gz * cz
    out_ty = grad_ptr.dtype.element_ty
    for r0 in range(row_lo, row_hi, BLOCK_R):
        rows = r0 + tl.arange(0, BLOCK_R)
        row_ok = rows < row_hi
        # per-row part of the bracket: gy y + gz z - g.c   [BLOCK_R]
        row_term = gy * (rows % H).to(acc) - gc
        if NDIM == 3:
            row_term += gz * (rows // H).to(acc)
        for c0 in range(0, W, BLOCK_W):
            cols = c0 + tl.arange(0, BLOCK_W)
            mask = row_ok[:, None] & (cols < W)[None, :]
            offs = _tile_offsets(bj, rows, cols, R, W)
            l = tl.load(logits_ptr + offs, mask=mask, other=0.0).to(acc)
            p = tl.exp((l - m) - log_s)
            d = p * ((gx * cols.to(acc))[None, :] + row_term[:, None])
            tl.store(grad_ptr + offs, d.to(out_ty), mask=mask)


# ---- host launchers --------------------------------------------------------------------------




def soft_argmax_forward(logits: Tensor, rows_per_split: int | None = None) -> tuple[Tensor, Tensor]:
    """logits (B, J, [D,] H, W) -> (coords (B, J, ndim) logits' dtype, stats (B, J, 5) acc dtype).

    ``rows_per_split`` forces the split of each volume across programs (default: automatic).
    """
    ndim = logits.dim() - 2
    x = logits.contiguous()
    acc = acc_dtype(x.dtype)
    b, j = x.shape[:2]
    coords = torch.empty((b, j, ndim), dtype=store_dtype(x.dtype), device=x.device)
    stats = torch.empty((b, j, 5), dtype=acc, device=x.device)
    bj, _, rows, h, w = volume_dims(x)
    if bj == 0:
        return coords.to(x.dtype), stats
    splits, rps = plan_rows(bj, rows, w, x.device, rows_per_split)
    single = bool(splits == 1)
    if single:  # one program per volume writes the results directly; no partials
        part = unused_pointer(x.device, acc)
    else:
        part = torch.empty((bj, splits, 5), dtype=acc, device=x.device)
    wrap_triton(_soft_argmax_fwd_kernel)[(bj, splits)](
        x, coords, stats, part, rows, h, w, rps, splits,
        NDIM=ndim, SINGLE=single, BLOCK_W=block_w(w),
    )
    if not single:
        wrap_triton(_soft_argmax_combine_kernel)[(bj,)](
            part, coords, stats, splits, NDIM=ndim, BLOCK_S=triton.next_power_of_2(int(splits))
        )
    return coords.to(x.dtype), stats


def soft_argmax_backward(grad_coords: Tensor, logits: Tensor, stats: Tensor,
                         rows_per_split: int | None = None) -> Tensor:
    """dL/dlogits (logits' shape and dtype) from grad_coords (B, J, ndim) and the saved stats."""
    x = logits.contiguous()
    g = grad_coords.contiguous()
    st = stats.contiguous()
    grad = torch.empty(x.shape, dtype=store_dtype(x.dtype), device=x.device)
    bj, _, rows, h, w = volume_dims(x)
    if bj == 0:
        return grad.to(x.dtype)
    splits, rps = plan_rows(bj, rows, w, x.device, rows_per_split)
    wrap_triton(_soft_argmax_bwd_kernel)[(bj, splits)](
        x, st, g, grad, rows, h, w, rps, NDIM=x.dim() - 2, BLOCK_W=block_w(w)
    )
    return grad.to(x.dtype)


# ---- torch.library operators -----------------------------------------------------------------


def _fwd_impl(logits: Tensor) -> tuple[Tensor, Tensor]:
    return soft_argmax_forward(logits)


def _fwd_fake(logits: Tensor) -> tuple[Tensor, Tensor]:
    b, j = logits.shape[:2]
    coords = logits.new_empty((b, j, logits.dim() - 2))
    return coords, logits.new_empty((b, j, 5), dtype=acc_dtype(logits.dtype))


def _bwd_impl(grad_coords: Tensor, logits: Tensor, stats: Tensor) -> Tensor:
    return soft_argmax_backward(grad_coords, logits, stats)


def _bwd_fake(grad_coords: Tensor, logits: Tensor, stats: Tensor) -> Tensor:
    return logits.new_empty(logits.shape)


def _setup_context(ctx, inputs, output):
    _, stats = output
    # stats only carries what the backward needs; it is not a differentiable output.
    ctx.mark_non_differentiable(stats)
    ctx.save_for_backward(inputs[0], stats)


def _define(ndim: int):
    fwd = define_op(f"soft_argmax_{ndim}d_triton", _fwd_impl, _fwd_fake)
    bwd = define_op(f"soft_argmax_{ndim}d_triton_backward", _bwd_impl, _bwd_fake)

    def backward(ctx, grad_coords, _grad_stats):
        logits, stats = ctx.saved_tensors
        if grad_coords is None:
            grad_coords = torch.zeros((*logits.shape[:2], ndim), dtype=logits.dtype, device=logits.device)
        return bwd(grad_coords, logits, stats)

    fwd.register_autograd(backward, setup_context=_setup_context)
    return fwd, bwd


_sa2_op, _sa2_bwd_op = _define(2)
_sa3_op, _sa3_bwd_op = _define(3)


def soft_argmax_2d(logits: Tensor) -> Tensor:
    """Triton backend of :func:`fastpose.ops.soft_argmax_2d`: (B, J, H, W) -> (B, J, 2)."""
    return _sa2_op(logits)[0]


def soft_argmax_3d(logits: Tensor) -> Tensor:
    """Triton backend of :func:`fastpose.ops.soft_argmax_3d`: (B, J, D, H, W) -> (B, J, 3)."""
    return _sa3_op(logits)[0]


def _reasons(logits: Tensor) -> list[str]:
    if any(s == 0 for s in logits.shape[2:]):
        return [f"empty volume {tuple(logits.shape[2:])}: the softmax over no voxel is undefined"]
    return []


IMPLS = (
    ("soft_argmax_2d", soft_argmax_2d, _reasons),
    ("soft_argmax_3d", soft_argmax_3d, _reasons),
)
