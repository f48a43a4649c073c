"""``soft_argmax_2d`` / ``soft_argmax_3d`` on the native backends (csrc/soft_argmax).

Ops (``<b>`` = cpu | cuda):
  ``fastpose::soft_argmax_{2,3}d_<b>(logits) -> (coords (B, J, n) logits' dtype, stats (B, J, 5) acc)``
  ``fastpose::soft_argmax_{2,3}d_<b>_backward(grad_coords, logits, stats) -> grad_logits``
stats = [m, log s, cx, cy, cz] per (b, j) (accumulation dtype; cz = 0 in 2D), the saved state of
every backend (docs/ops.md): enough to rebuild p = exp((z - m) - log s) in the backward, so the
probability volume is never stored. float16/bfloat16 on the CPU are converted chunk by chunk of
rows (:mod:`fastpose.ops.native._volume`).
"""

from __future__ import annotations

import torch
from torch import Tensor

from .._dispatch import register_impl
from . import _glue as g
from . import _volume as v

__all__: list[str] = []

_NSTATS = 5  # fastpose._C.SOFT_ARGMAX_STATS


def _forward(backend: str, ndim: int, logits: Tensor) -> tuple[Tensor, Tensor]:
    geo = v.geometry(f"soft_argmax_{ndim}d", logits, ndim)
    acc = g.acc_dtype(logits.dtype)
    kd = g.kernel_dtype(backend, logits.dtype)
    coords = torch.empty((geo.b, geo.j, ndim), dtype=kd, device=logits.device)  # (x, y[, z])
    stats = torch.empty((geo.b, geo.j, _NSTATS), dtype=acc, device=logits.device)
    for r0, r1, xk, _ in v.kernel_chunks(logits, backend, geo):
        c = g.code(xk.dtype)
        args = (c, xk.data_ptr(), r1 - r0, geo.d, geo.h, geo.w, ndim, v.row_ptr(coords, r0, ndim),
                v.row_ptr(stats, r0, _NSTATS))
        if backend == "cuda":
            ws = g.workspace(backend, g.ext().soft_argmax_workspace_cuda(c, r1 - r0, geo.d, geo.h, geo.w), acc,
                             xk.device)
            g.ext().soft_argmax_forward_cuda(*args, ws.data_ptr(), *g.launch(backend, xk.device))
        else:
            g.ext().soft_argmax_forward_cpu(*args, *g.launch(backend, xk.device))
    return (coords if coords.dtype == logits.dtype else coords.to(logits.dtype)), stats


def _backward(backend: str, ndim: int, grad_coords: Tensor, logits: Tensor, stats: Tensor) -> Tensor:
    geo = v.geometry(f"soft_argmax_{ndim}d", logits, ndim)
    acc = g.acc_dtype(logits.dtype)
    gc = g.small(grad_coords, acc)  # (B, J, n)
    st = g.small(stats, acc)
    out = torch.empty(logits.shape, dtype=logits.dtype, device=logits.device)
    for r0, r1, xk, dst in v.kernel_chunks(logits, backend, geo, out):
        g.kernel("soft_argmax_backward", backend)(g.code(xk.dtype), v.row_ptr(gc, r0, ndim), xk.data_ptr(),
                                                 v.row_ptr(st, r0, _NSTATS), r1 - r0, geo.d, geo.h, geo.w, ndim,
                                                 dst.data_ptr(), *g.launch(backend, xk.device))
    return out


def _define(backend: str, ndim: int):
    name = f"fastpose::soft_argmax_{ndim}d_{backend}"

    @torch.library.custom_op(name, mutates_args=(), device_types=backend)
    def fwd(logits: Tensor) -> tuple[Tensor, Tensor]:
        return _forward(backend, ndim, logits)

    @fwd.register_fake
    def _(logits):
        b, j = logits.shape[:2]
        return (logits.new_empty((b, j, ndim)),
                logits.new_empty((b, j, _NSTATS), dtype=g.acc_dtype(logits.dtype)))

    @torch.library.custom_op(name + "_backward", mutates_args=(), device_types=backend)
    def bwd(grad_coords: Tensor, logits: Tensor, stats: Tensor) -> Tensor:
        return _backward(backend, ndim, grad_coords, logits, stats)

    @bwd.register_fake
    def _(grad_coords, logits, stats):
        return logits.new_empty(logits.shape)

    def setup_context(ctx, inputs, output):
        ctx.mark_non_differentiable(output[1])  # stats: internal, no gradient
        ctx.set_materialize_grads(False)
        ctx.save_for_backward(inputs[0], output[1])

    def backward(ctx, grad_coords, _grad_stats):
        logits, stats = ctx.saved_tensors
        if grad_coords is None:
            return None
        return bwd(grad_coords, logits, stats)

    fwd.register_autograd(backward, setup_context=setup_context)

    def impl(logits: Tensor) -> Tensor:
        return fwd(logits)[0]

    return impl


def register(backend: str) -> None:
    for ndim in (2, 3):
        register_impl(f"soft_argmax_{ndim}d", backend, _define(backend, ndim), devices=(backend,), dtypes=g.DTYPES,
                      note=f"fastpose._C {backend} kernels (csrc/soft_argmax)")
