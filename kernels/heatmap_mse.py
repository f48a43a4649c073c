"""Triton heatmap MSE against the on-the-fly Gaussian target (2D and 3D).

For volume (b, j) with centre ``mu`` (voxel units) and weight ``w``::

    t_v   = exp(-|v - mu|^2 / (2 sigma^2)) = gx(x) * gyz(row)      never materialised
    SSE   = w * sum_v (h_v - t_v)^2
    loss  = sum_bj SSE / (B*J*N)  ("mean", 0 for an empty batch) | sum_bj SSE ("sum")
            | SSE / N per (b, j) ("none", shape (B, J))            N = D*H*W (or H*W)
    dL/dh = grad * 2 w (h - t) / norm

The target factorises per axis, so a tile needs one ``exp`` per row and one per column, not one
per voxel. The forward also writes the unnormalised gradient ``gh = 2 w (h - t)`` when a gradient will
be needed, so the backward is one scaling pass, ``grad = gh * grad_out / norm``. ``gh`` is kept
in the accumulation dtype (float32 for half inputs): rounding it to float16/bfloat16 and rounding
again after the scaling doubled the gradient error of a single final rounding (and the 1/norm of
a "mean" over ~1e8 voxels would underflow float16). Volumes split across programs write partial sums that
``torch.sum`` combines in a fixed order.
"""

from __future__ import annotations

import math

import torch
import triton
import triton.language as tl
from torch import Tensor
from torch.library import wrap_triton

from ._common import (
    INTERPRET,
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
    unused_pointer,
)

__all__ = ["heatmap_mse_2d", "heatmap_mse_3d", "heatmap_mse_forward", "heatmap_mse_backward"]


def _configs():
    """Autotune configurations: TILE voxels per loop step; one under the interpreter."""
    if INTERPRET:
        return [triton.Config({"TILE": 4096}, num_warps=4)]
    return [
        triton.Config({"TILE": tile}, num_warps=warps)
        for tile, warps in ((1024, 4), (2048, 4), (2048, 8), (4096, 8), (4096, 16))
    ]


# ---- kernels ---------------------------------------------------------------------------------


@triton.autotune(configs=_configs(), key=["R", "W"])
@triton.jit
def _heatmap_mse_fwd_kernel(
    h_ptr,  # (BJ, R, W) heatmaps, contiguous
    params_ptr,  # (BJ, 5) mu_x, mu_y, mu_z, w, 1/(2 sigma^2); its dtype is the accumulation dtype
    part_ptr,  # (BJ, S) partial weighted SSE per split
    gh_ptr,  # (BJ, R, W) 2 w (h - t), accumulation dtype   [written when WRITE_GRAD]
    R, H, W, ROWS_PER_SPLIT, S,
    NDIM: tl.constexpr, WRITE_GRAD: tl.constexpr, BLOCK_W: tl.constexpr, TILE: tl.constexpr,
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
            if WRITE_GRAD:
                tl.store(gh_ptr + offs, (2.0 * w * d).to(gh_ptr.dtype.element_ty), mask=mask)
    tl.store(part_ptr + bj * S + split, w * tl.sum(q))


@triton.autotune(configs=_configs(), key=["R", "W"])
@triton.jit
def _scale_volumes_kernel(
    src_ptr,  # (BJ, R, W)
    scale_ptr,  # (BJ,) per-volume factor; its dtype is the accumulation dtype
    out_ptr,  # (BJ, R, W) src * scale, in out's dtype
    R, W, ROWS_PER_SPLIT,
    BLOCK_W: tl.constexpr, TILE: tl.constexpr,
):
    """out[bj] = src[bj] * scale[bj], computed in the accumulation dtype."""
    acc = scale_ptr.dtype.element_ty
    BLOCK_R: tl.constexpr = TILE // BLOCK_W
    bj = tl.program_id(0).to(tl.int64)
    split = tl.program_id(1)
    row_lo = split * ROWS_PER_SPLIT
    row_hi = tl.minimum(row_lo + ROWS_PER_SPLIT, R)
    scale = tl.load(scale_ptr + bj)
    for r0 in range(row_lo, row_hi, BLOCK_R):
        rows = r0 + tl.arange(0, BLOCK_R)
        row_ok = rows < row_hi
        for c0 in range(0, W, BLOCK_W):
            cols = c0 + tl.arange(0, BLOCK_W)
            mask = row_ok[:, None] & (cols < W)[None, :]
            offs = _tile_offsets(bj, rows, cols, R, W)
            v = tl.load(src_ptr + offs, mask=mask, other=0.0).to(acc)
            tl.store(out_ptr + offs, (v * scale).to(out_ptr.dtype.element_ty), mask=mask)


# ---- host launchers --------------------------------------------------------------------------


def _volume_dims(t: Tensor) -> tuple[int, int, int, int, int]:
    """(BJ, N, R, H, W) of a (B, J, [D,] H, W) tensor: N voxels = R rows of W."""
    bj = t.shape[0] * t.shape[1]
    h, w = t.shape[-2], t.shape[-1]
    rows = math.prod(t.shape[2:-1])
    return bj, rows * w, rows, h, w


def _normaliser(reduction: str, bj: int, n: int) -> int:
    """N in loss = sum w SSE / N: B*J*N_vox for "mean", N_vox for "none", 1 for "sum" (>= 1)."""
    if reduction == "mean":
        return max(bj * n, 1)
    if reduction == "none":
        return max(n, 1)
    return 1


def heatmap_mse_forward(heatmaps: Tensor, joints: Tensor, sigma: float, weights: Tensor | None,
                        reduction: str, need_grad: bool = True,
                        rows_per_split: int | None = None) -> tuple[Tensor, Tensor]:
    """(loss, gh): loss () or (B, J) in heatmaps' dtype; gh = 2 w (h - t) with heatmaps' shape
    (contiguous, accumulation dtype) when ``need_grad``, else an empty (0,) tensor."""
    ndim = joints.shape[-1]
    x = heatmaps.contiguous()
    acc = acc_dtype(x.dtype)
    b, j = x.shape[:2]
    bj, n, rows, h, w = _volume_dims(x)
    gh = torch.empty(x.shape if need_grad else (0,), dtype=acc, device=x.device)
    if bj == 0 or n == 0:
        sse = torch.zeros((bj,), dtype=acc, device=x.device)
    else:
        params = gaussian_params(joints, weights, sigma, acc)
        splits, rps = plan_rows(bj, rows, w, x.device, rows_per_split)
        part = torch.empty((bj, splits), dtype=acc, device=x.device)
        gh_arg = gh if need_grad else unused_pointer(x.device, acc)
        wrap_triton(_heatmap_mse_fwd_kernel)[(bj, splits)](
            x, params, part, gh_arg, rows, h, w, rps, splits,
            NDIM=ndim, WRITE_GRAD=need_grad, BLOCK_W=block_w(w),
        )
        sse = part.sum(dim=1)  # (BJ,) fixed-order sum of the split partials
    norm = _normaliser(reduction, bj, n)
    if reduction == "none":
        loss = (sse / norm).reshape(b, j)
    else:
        loss = sse.sum() / norm
    return loss.to(x.dtype), gh


def heatmap_mse_backward(grad: Tensor, gh: Tensor, reduction: str,
                         rows_per_split: int | None = None) -> Tensor:
    """dL/dh = gh * grad / norm in grad's dtype (the heatmaps' dtype); gh (B, J, *S) from the
    forward in the accumulation dtype; grad () or (B, J)."""
    acc = gh.dtype
    b, j = gh.shape[:2]
    bj, n, rows, h, w = _volume_dims(gh)
    out = torch.empty(gh.shape, dtype=store_dtype(grad.dtype), device=gh.device)
    if bj == 0 or n == 0:
        return out.to(grad.dtype)
    scale = (grad.to(acc) / _normaliser(reduction, bj, n)).expand(b, j).reshape(bj).contiguous()
    splits, rps = plan_rows(bj, rows, w, gh.device, rows_per_split)
    wrap_triton(_scale_volumes_kernel)[(bj, splits)](
        gh.contiguous(), scale, out, rows, w, rps, BLOCK_W=block_w(w)
    )
    return out.to(grad.dtype)


# ---- torch.library operators -----------------------------------------------------------------


def _fwd_impl(heatmaps: Tensor, joints: Tensor, sigma: float, weights: Tensor | None,
              reduction: str, need_grad: bool = True) -> tuple[Tensor, Tensor]:
    return heatmap_mse_forward(heatmaps, joints, sigma, weights, reduction, need_grad)


def _fwd_fake(heatmaps, joints, sigma, weights, reduction, need_grad=True):
    loss_shape = heatmaps.shape[:2] if reduction == "none" else ()
    gh = heatmaps.new_empty(heatmaps.shape if need_grad else (0,), dtype=acc_dtype(heatmaps.dtype))
    return heatmaps.new_empty(loss_shape), gh


def _bwd_impl(grad: Tensor, gh: Tensor, reduction: str) -> Tensor:
    return heatmap_mse_backward(grad, gh, reduction)


def _bwd_fake(grad, gh, reduction):
    return gh.new_empty(gh.shape, dtype=grad.dtype)


def _setup_context(ctx, inputs, output):
    heatmaps, joints, sigma, weights, reduction, need_grad = inputs
    _, gh = output
    ctx.mark_non_differentiable(gh)
    ctx.sigma, ctx.reduction, ctx.has_w = sigma, reduction, weights is not None
    ctx.recompute = not need_grad
    if need_grad:
        ctx.save_for_backward(gh)
    else:  # called directly with need_grad=False: the backward recomputes gh from the inputs
        ctx.save_for_backward(heatmaps, joints, weights if weights is not None else joints)


def _define(ndim: int):
    fwd = define_op(f"heatmap_mse_{ndim}d_triton", _fwd_impl, _fwd_fake)
    bwd = define_op(f"heatmap_mse_{ndim}d_triton_backward", _bwd_impl, _bwd_fake)

    def backward(ctx, grad, _grad_gh):
        if ctx.recompute:
            heatmaps, joints, weights = ctx.saved_tensors
            w = weights if ctx.has_w else None
            gh = fwd(heatmaps, joints, ctx.sigma, w, ctx.reduction, True)[1]
        else:
            (gh,) = ctx.saved_tensors
        return bwd(grad, gh, ctx.reduction), None, None, None, None, None

    fwd.register_autograd(backward, setup_context=_setup_context)

    def impl(heatmaps: Tensor, joints: Tensor, sigma: float, weights: Tensor | None,
             reduction: str) -> Tensor:
        need_grad = torch.is_grad_enabled() and heatmaps.requires_grad
        return fwd(heatmaps, joints, sigma, weights, reduction, need_grad)[0]

    impl.__name__ = f"heatmap_mse_{ndim}d"
    impl.__doc__ = f"Triton backend of :func:`fastpose.ops.heatmap_mse_{ndim}d`."
    return fwd, bwd, impl


_hm2_op, _hm2_bwd_op, heatmap_mse_2d = _define(2)
_hm3_op, _hm3_bwd_op, heatmap_mse_3d = _define(3)

IMPLS = (
    ("heatmap_mse_2d", heatmap_mse_2d, None),
    ("heatmap_mse_3d", heatmap_mse_3d, None),
)
