"""``soft_argmax_2d`` / ``soft_argmax_3d`` on the native backends (csrc/soft_argmax).

Ops (``<b>`` = cpu | cuda):
  ``fastpose::soft_argmax_{2,3}d_<b>(logits) -> (coords (B, J, n) logits' dtype, stats (B, J, 5) acc)``
  ``fastpose::soft_argmax_{2,3}d_<b>_backward(grad_coords, logits, stats) -> grad_logits``
stats = [m, log s, cx, cy, cz] per (b, j) (accumulation dtype), enough to rebuild
p = exp((z - m) - log s) in the backward: the probability volume is never stored.
"""

from __future__ import annotations

import torch
from torch import Tensor

from .._dispatch import register_impl
from . import _glue as g

__all__: list[str] = []

_NSTATS = 5  # fastpose._C.SOFT_ARGMAX_STATS


def _forward(backend: str, ndim: int, logits: Tensor) -> tuple[Tensor, Tensor]:
    op = f"soft_argmax_{ndim}d"
    x = g.main_input(logits, backend)  # (B, J, [D,] H, W) contiguous, kernel dtype
    b, j, d, h, w, rows = g.volume_dims(op, x, ndim)
    acc = g.acc_dtype(x.dtype)
    coords = torch.empty((b, j, ndim), dtype=x.dtype, device=x.device)  # (x, y[, z])
    stats = torch.empty((b, j, _NSTATS), dtype=acc, device=x.device)
    if rows:
        c = g.code(x.dtype)
        if backend == "cuda":
            ws = g.workspace(backend, g.ext().soft_argmax_workspace_cuda(c, rows, d, h, w), acc, x.device)
            g.ext().soft_argmax_forward_cuda(c, x.data_ptr(), rows, d, h, w, ndim, coords.data_ptr(),
                                             stats.data_ptr(), ws.data_ptr(), *g.launch(backend, x.device))
        else:
            g.ext().soft_argmax_forward_cpu(c, x.data_ptr(), rows, d, h, w, ndim, coords.data_ptr(),
                                            stats.data_ptr(), *g.launch(backend, x.device))
    return (coords if coords.dtype == logits.dtype else coords.to(logits.dtype)), stats


def _backward(backend: str, ndim: int, grad_coords: Tensor, logits: Tensor, stats: Tensor) -> Tensor:
    op = f"soft_argmax_{ndim}d"
    x = g.main_input(logits, backend)
    b, j, d, h, w, rows = g.volume_dims(op, x, ndim)
    acc = g.acc_dtype(x.dtype)
    gc = g.small(grad_coords, acc)  # (B, J, n)
    st = g.small(stats, acc)
    grad = torch.empty(x.shape, dtype=x.dtype, device=x.device)
    if rows:
        g.kernel("soft_argmax_backward", backend)(g.code(x.dtype), gc.data_ptr(), x.data_ptr(), st.data_ptr(), rows,
                                                 d, h, w, ndim, grad.data_ptr(), *g.launch(backend, x.device))
    return grad if grad.dtype == logits.dtype else grad.to(logits.dtype)


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
