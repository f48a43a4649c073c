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
from .._spec import SPECS
from . import _glue as g
from . import _volume as v
from ._glue import Buffer

__all__: list[str] = []

_NSTATS = 5  # fastpose._C.SOFT_ARGMAX_STATS

# The typed kernel boundary (fastpose.ops.native._glue.KernelSpec; C++ roles in csrc/soft_argmax/
# soft_argmax.h). Sizes: R rows of a chunk, N = D*H*W voxels a row, WS workspace elements.
FORWARD = g.declare(
    "soft_argmax_forward",
    Buffer("logits", "storage", ("R", "N")),
    Buffer("coords", "storage", ("R", "ndim")),
    Buffer("stats", "acc", ("R", _NSTATS)),
    Buffer("workspace", "acc", ("WS",), backends=("cuda",)),
    args=("logits", "R", "d", "h", "w", "ndim", "coords", "stats", "workspace"),
)
BACKWARD = g.declare(
    "soft_argmax_backward",
    Buffer("grad_coords", "acc", ("R", "ndim")),
    Buffer("logits", "storage", ("R", "N")),
    Buffer("stats", "acc", ("R", _NSTATS)),
    Buffer("grad_logits", "storage", ("R", "N")),
    args=("grad_coords", "logits", "stats", "R", "d", "h", "w", "ndim", "grad_logits"),
)


def _forward(backend: str, ndim: int, logits: Tensor) -> tuple[Tensor, Tensor]:
    geo = v.geometry(f"soft_argmax_{ndim}d", logits, ndim)
    acc = g.acc_dtype(logits.dtype)
    kd = g.kernel_dtype(backend, logits.dtype)
    coords = torch.empty((geo.b, geo.j, ndim), dtype=kd, device=logits.device)  # (x, y[, z])
    stats = torch.empty((geo.b, geo.j, _NSTATS), dtype=acc, device=logits.device)
    cr, sr = coords.view(geo.rows, ndim), stats.view(geo.rows, _NSTATS)
    for r0, r1, xk, _ in v.kernel_chunks(logits, backend, geo):
        sizes = v.sizes(geo, r1 - r0, ndim)
        bufs = {"logits": xk, "coords": v.row_slice(cr, r0, r1, geo.rows), "stats": v.row_slice(sr, r0, r1, geo.rows)}
        if backend == "cuda":
            sizes["WS"] = g.workspace_elems("soft_argmax_workspace_cuda", g.code(xk.dtype), r1 - r0, geo.d, geo.h,
                                            geo.w)
            bufs["workspace"] = g.workspace(backend, sizes["WS"], acc, xk.device)
        FORWARD.launch(backend, xk.dtype, xk.device, sizes, bufs)
    return (coords if coords.dtype == logits.dtype else coords.to(logits.dtype)), stats


def _backward(backend: str, ndim: int, grad_coords: Tensor, logits: Tensor, stats: Tensor) -> Tensor:
    geo = v.geometry(f"soft_argmax_{ndim}d", logits, ndim)
    acc = g.acc_dtype(logits.dtype)
    gc = g.small(grad_coords, acc)  # (B, J, n)
    st = g.small(stats, acc)
    out = v.grad_buffer(logits, backend)  # CPU: a cached buffer when free (no fresh pages)
    gcr, str_ = gc.view(geo.rows, ndim), st.view(geo.rows, _NSTATS)
    for r0, r1, xk, dst in v.kernel_chunks(logits, backend, geo, out):
        BACKWARD.launch(backend, xk.dtype, xk.device, v.sizes(geo, r1 - r0, ndim),
                        {"grad_coords": v.row_slice(gcr, r0, r1, geo.rows), "logits": xk,
                         "stats": v.row_slice(str_, r0, r1, geo.rows), "grad_logits": dst})
    return out


def _define(backend: str, ndim: int):
    name = f"fastpose::soft_argmax_{ndim}d_{backend}"

    def forward(logits: Tensor) -> tuple[Tensor, Tensor]:
        return _forward(backend, ndim, logits)

    def backward(grad_coords: Tensor, logits: Tensor, stats: Tensor) -> Tensor:
        return _backward(backend, ndim, grad_coords, logits, stats)

    fwd = torch.library.custom_op(name, forward, mutates_args=(), device_types=backend)

    @fwd.register_fake
    def _(logits):
        b, j = logits.shape[:2]
        return (logits.new_empty((b, j, ndim)),
                logits.new_empty((b, j, _NSTATS), dtype=g.acc_dtype(logits.dtype)))

    bwd = torch.library.custom_op(name + "_backward", backward, mutates_args=(), device_types=backend)

    @bwd.register_fake
    def _(grad_coords, logits, stats):
        return logits.new_empty(logits.shape)

    def setup_context(ctx, inputs, output):
        ctx.mark_non_differentiable(output[1])  # stats: internal, no gradient
        ctx.set_materialize_grads(False)
        ctx.save_for_backward(inputs[0], output[1])

    def autograd_backward(call_bwd):
        def backward_formula(ctx, grad_coords, _grad_stats):
            logits, stats = ctx.saved_tensors
            if grad_coords is None:
                return None
            return call_bwd(grad_coords, logits, stats)

        return backward_formula

    # the custom op for compile / export, a direct call in plain eager mode (_glue.eager_op)
    op = g.eager_op(fwd, bwd, forward=forward, backward=backward, setup_context=setup_context,
                    autograd_backward=autograd_backward)

    def impl(logits: Tensor) -> Tensor:
        return op(logits)[0]

    return impl


def register(backend: str) -> None:
    for spec in (s for s in SPECS.values() if s.stem == "soft_argmax"):  # the 2D and 3D ops
        register_impl(spec.name, backend, _define(backend, spec.ndim), devices=(backend,), dtypes=g.DTYPES,
                      note=f"fastpose._C {backend} kernels (csrc/soft_argmax)")
