"""``soft_argmax_heatmap_mse_3d`` (the fused volumetric head) on the native backends
(csrc/soft_argmax_heatmap_mse).

Ops (``<b>`` = cpu | cuda):
  ``fastpose::soft_argmax_heatmap_mse_3d_<b>(logits, joints, sigma, weights) -> (coords, mse, stats)``
  ``fastpose::soft_argmax_heatmap_mse_3d_<b>_backward(grad_coords?, grad_mse?, logits, joints, sigma,
      weights, stats) -> grad_logits``
Forward: one read of the logits (coords and the MSE against the on-the-fly Gaussian target).
Backward: one read of the logits and one write of the gradient, both outputs' gradients combined:
``dL/dz = p (g_c . (v - coords)) + g_mse 2 w (z - t) / (B J D H W)``. Nothing of volume size is saved:
the saved state is the soft-argmax ``stats`` (B, J, 5) = [m, log s, cx, cy, cz] shared by every
backend (docs/ops.md); the MSE gradient is recomputed. float16/bfloat16 on the CPU are converted
chunk by chunk of rows (:mod:`fastpose.ops.native._volume`).
"""

from __future__ import annotations

import torch
from torch import Tensor

from ...reference.heatmap_mse import _normaliser
from .._dispatch import register_impl
from . import _glue as g
from . import _volume as v

__all__: list[str] = []

_OP = "soft_argmax_heatmap_mse_3d"
_NSTATS = 5


def _forward(backend: str, logits: Tensor, joints: Tensor, sigma: float,
             weights: Tensor | None) -> tuple[Tensor, Tensor, Tensor]:
    geo = v.geometry(_OP, logits, 3)
    acc = g.acc_dtype(logits.dtype)
    kd = g.kernel_dtype(backend, logits.dtype)
    jt = g.small(joints, acc)
    wt = g.small(weights, acc)
    coords = torch.empty((geo.b, geo.j, 3), dtype=kd, device=logits.device)
    stats = torch.empty((geo.b, geo.j, _NSTATS), dtype=acc, device=logits.device)
    loss_rows = torch.empty(geo.rows, dtype=acc, device=logits.device)  # w * sum_v (z - t)^2
    for r0, r1, xk, _ in v.kernel_chunks(logits, backend, geo):
        c = g.code(xk.dtype)
        args = (c, xk.data_ptr(), r1 - r0, geo.d, geo.h, geo.w, v.row_ptr(jt, r0, 3), float(sigma),
                v.row_ptr(wt, r0), v.row_ptr(coords, r0, 3), v.row_ptr(stats, r0, _NSTATS), v.row_ptr(loss_rows, r0))
        if backend == "cuda":
            ws = g.workspace(backend, g.ext().soft_argmax_heatmap_mse_workspace_cuda(c, r1 - r0, geo.d, geo.h, geo.w),
                             acc, xk.device)
            g.ext().soft_argmax_heatmap_mse_forward_cuda(*args, ws.data_ptr(), *g.launch(backend, xk.device))
        else:
            g.ext().soft_argmax_heatmap_mse_forward_cpu(*args, *g.launch(backend, xk.device))
    mse = loss_rows.sum() / _normaliser("mean", geo.rows, geo.n_vox)  # 0 for an empty batch
    return coords.to(logits.dtype), mse.to(logits.dtype), stats


def _backward(backend: str, grad_coords: Tensor | None, grad_mse: Tensor | None, logits: Tensor, joints: Tensor,
              sigma: float, weights: Tensor | None, stats: Tensor) -> Tensor:
    geo = v.geometry(_OP, logits, 3)
    out = torch.empty(logits.shape, dtype=logits.dtype, device=logits.device)
    if grad_coords is None and grad_mse is None:
        return out.zero_()
    acc = g.acc_dtype(logits.dtype)
    gc = g.small(grad_coords, acc)  # (B, J, 3) or None
    gm = g.small(grad_mse, acc)  # () or None: read by the kernel from memory (no host sync)
    jt = g.small(joints, acc)
    wt = g.small(weights, acc)
    st = g.small(stats, acc)
    scale = 2.0 / _normaliser("mean", geo.rows, geo.n_vox)
    for r0, r1, xk, dst in v.kernel_chunks(logits, backend, geo, out):
        g.kernel("soft_argmax_heatmap_mse_backward", backend)(
            g.code(xk.dtype), v.row_ptr(gc, r0, 3), g.ptr(gm), xk.data_ptr(), r1 - r0, geo.d, geo.h, geo.w,
            v.row_ptr(jt, r0, 3), float(sigma), v.row_ptr(wt, r0), v.row_ptr(st, r0, _NSTATS), scale,
            dst.data_ptr(), *g.launch(backend, xk.device))
    return out


def _define(backend: str):
    name = f"fastpose::{_OP}_{backend}"

    @torch.library.custom_op(name, mutates_args=(), device_types=backend)
    def fwd(logits: Tensor, joints: Tensor, sigma: float, weights: Tensor | None) -> tuple[Tensor, Tensor, Tensor]:
        return _forward(backend, logits, joints, sigma, weights)

    @fwd.register_fake
    def _(logits, joints, sigma, weights):
        b, j = logits.shape[:2]
        return (logits.new_empty((b, j, 3)), logits.new_empty(()),
                logits.new_empty((b, j, _NSTATS), dtype=g.acc_dtype(logits.dtype)))

    @torch.library.custom_op(name + "_backward", mutates_args=(), device_types=backend)
    def bwd(grad_coords: Tensor | None, grad_mse: Tensor | None, logits: Tensor, joints: Tensor, sigma: float,
            weights: Tensor | None, stats: Tensor) -> Tensor:
        return _backward(backend, grad_coords, grad_mse, logits, joints, sigma, weights, stats)

    @bwd.register_fake
    def _(grad_coords, grad_mse, logits, joints, sigma, weights, stats):
        return logits.new_empty(logits.shape)

    def setup_context(ctx, inputs, output):
        logits, joints, sigma, weights = inputs
        ctx.sigma, ctx.has_w = sigma, weights is not None
        ctx.mark_non_differentiable(output[2])  # stats: internal, no gradient
        # grad_coords / grad_mse stay None when unused: the kernel then skips that part
        ctx.set_materialize_grads(False)
        ctx.save_for_backward(logits, joints, weights if weights is not None else joints, output[2])

    def backward(ctx, grad_coords, grad_mse, _grad_stats):
        if grad_coords is None and grad_mse is None:
            return None, None, None, None
        logits, joints, weights, stats = ctx.saved_tensors
        grad = bwd(grad_coords, grad_mse, logits, joints, ctx.sigma, weights if ctx.has_w else None, stats)
        return grad, None, None, None

    fwd.register_autograd(backward, setup_context=setup_context)

    def impl(logits: Tensor, joints: Tensor, sigma: float, weights: Tensor | None) -> tuple[Tensor, Tensor]:
        coords, mse, _stats = fwd(logits, joints, sigma, weights)
        return coords, mse

    return impl


def register(backend: str) -> None:
    register_impl(_OP, backend, _define(backend), devices=(backend,), dtypes=g.DTYPES,
                  note=f"fastpose._C {backend} kernels (csrc/soft_argmax_heatmap_mse)")
