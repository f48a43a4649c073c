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
from ...reference.soft_argmax_heatmap_mse import as_2d
from .._dispatch import register_impl
from . import _glue as g
from . import _volume as v
from ._glue import Buffer

__all__: list[str] = []

_OP = "soft_argmax_heatmap_mse_3d"
_NSTATS = 5

# The typed kernel boundary (fastpose.ops.native._glue.KernelSpec; C++ roles in
# csrc/soft_argmax_heatmap_mse/soft_argmax_heatmap_mse.h). Sizes: R rows of a chunk, N voxels a row.
FORWARD = g.declare(
    "soft_argmax_heatmap_mse_forward",
    Buffer("logits", "storage", ("R", "N")),
    Buffer("joints", "acc", ("R", 3)),
    Buffer("weights", "acc", ("R",), optional=True),
    Buffer("coords", "storage", ("R", 3)),
    Buffer("stats", "acc", ("R", _NSTATS)),
    Buffer("loss_rows", "acc", ("R",)),
    Buffer("workspace", "acc", ("WS",), backends=("cuda",)),
    args=("logits", "R", "d", "h", "w", "joints", "sigma", "weights", "coords", "stats", "loss_rows", "workspace"),
)
BACKWARD = g.declare(
    "soft_argmax_heatmap_mse_backward",
    Buffer("grad_coords", "acc", ("R", 3), optional=True),
    Buffer("grad_mse", "acc", (), optional=True),
    Buffer("logits", "storage", ("R", "N")),
    Buffer("joints", "acc", ("R", 3)),
    Buffer("weights", "acc", ("R",), optional=True),
    Buffer("stats", "acc", ("R", _NSTATS)),
    Buffer("grad_logits", "storage", ("R", "N")),
    args=("grad_coords", "grad_mse", "logits", "R", "d", "h", "w", "joints", "sigma", "weights", "stats",
          "mse_scale", "grad_logits"),
)


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
    jr, wr = jt.view(geo.rows, 3), (None if wt is None else wt.view(geo.rows))
    cr, sr = coords.view(geo.rows, 3), stats.view(geo.rows, _NSTATS)
    for r0, r1, xk, _ in v.kernel_chunks(logits, backend, geo):
        sizes = v.sizes(geo, r1 - r0, 3)
        rows = geo.rows
        bufs = {"logits": xk, "joints": v.row_slice(jr, r0, r1, rows), "weights": v.row_slice(wr, r0, r1, rows),
                "coords": v.row_slice(cr, r0, r1, rows), "stats": v.row_slice(sr, r0, r1, rows),
                "loss_rows": v.row_slice(loss_rows, r0, r1, rows)}
        if backend == "cuda":
            sizes["WS"] = g.workspace_elems("soft_argmax_heatmap_mse_workspace_cuda", g.code(xk.dtype), r1 - r0,
                                            geo.d, geo.h, geo.w)
            bufs["workspace"] = g.workspace(backend, sizes["WS"], acc, xk.device)
        FORWARD.launch(backend, xk.dtype, xk.device, sizes, bufs, {"sigma": float(sigma)})
    mse = loss_rows.sum() / _normaliser("mean", geo.rows, geo.n_vox)  # 0 for an empty batch
    return coords.to(logits.dtype), mse.to(logits.dtype), stats


def _backward(backend: str, grad_coords: Tensor | None, grad_mse: Tensor | None, logits: Tensor, joints: Tensor,
              sigma: float, weights: Tensor | None, stats: Tensor) -> Tensor:
    geo = v.geometry(_OP, logits, 3)
    out = v.grad_buffer(logits, backend)  # CPU: a cached buffer when free (no fresh pages)
    if grad_coords is None and grad_mse is None:
        return out.zero_()
    acc = g.acc_dtype(logits.dtype)
    gc = g.small(grad_coords, acc)  # (B, J, 3) or None
    gm = g.small(grad_mse, acc)  # () or None: read by the kernel from memory (no host sync)
    jt = g.small(joints, acc)
    wt = g.small(weights, acc)
    st = g.small(stats, acc)
    scale = 2.0 / _normaliser("mean", geo.rows, geo.n_vox)
    jr, wr, sr = jt.view(geo.rows, 3), (None if wt is None else wt.view(geo.rows)), st.view(geo.rows, _NSTATS)
    gcr = None if gc is None else gc.view(geo.rows, 3)
    gmr = None if gm is None else gm.reshape(())
    for r0, r1, xk, dst in v.kernel_chunks(logits, backend, geo, out):
        BACKWARD.launch(backend, xk.dtype, xk.device, v.sizes(geo, r1 - r0, 3),
                        {"grad_coords": v.row_slice(gcr, r0, r1, geo.rows), "grad_mse": gmr, "logits": xk,
                         "joints": v.row_slice(jr, r0, r1, geo.rows), "weights": v.row_slice(wr, r0, r1, geo.rows),
                         "stats": v.row_slice(sr, r0, r1, geo.rows), "grad_logits": dst},
                        {"sigma": float(sigma), "mse_scale": scale})
    return out


def _define(backend: str):
    name = f"fastpose::{_OP}_{backend}"

    def forward(logits: Tensor, joints: Tensor, sigma: float,
                weights: Tensor | None) -> tuple[Tensor, Tensor, Tensor]:
        return _forward(backend, logits, joints, sigma, weights)

    def backward(grad_coords: Tensor | None, grad_mse: Tensor | None, logits: Tensor, joints: Tensor, sigma: float,
                 weights: Tensor | None, stats: Tensor) -> Tensor:
        return _backward(backend, grad_coords, grad_mse, logits, joints, sigma, weights, stats)

    fwd = torch.library.custom_op(name, forward, mutates_args=(), device_types=backend)

    @fwd.register_fake
    def _(logits, joints, sigma, weights):
        b, j = logits.shape[:2]
        return (logits.new_empty((b, j, 3)), logits.new_empty(()),
                logits.new_empty((b, j, _NSTATS), dtype=g.acc_dtype(logits.dtype)))

    bwd = torch.library.custom_op(name + "_backward", backward, mutates_args=(), device_types=backend)

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

    def autograd_backward(call_bwd):
        def backward_formula(ctx, grad_coords, grad_mse, _grad_stats):
            if grad_coords is None and grad_mse is None:
                return None, None, None, None
            logits, joints, weights, stats = ctx.saved_tensors
            grad = call_bwd(grad_coords, grad_mse, logits, joints, ctx.sigma, weights if ctx.has_w else None, stats)
            return grad, None, None, None

        return backward_formula

    # the custom op for compile / export, a direct call in plain eager mode (_glue.eager_op)
    op = g.eager_op(fwd, bwd, forward=forward, backward=backward, setup_context=setup_context,
                    autograd_backward=autograd_backward)

    def impl(logits: Tensor, joints: Tensor, sigma: float, weights: Tensor | None) -> tuple[Tensor, Tensor]:
        coords, mse, _stats = op(logits, joints, sigma, weights)
        return coords, mse

    impl.op = op  # the 2D head's direct path reuses its forward / backward
    return impl


def _define_2d(backend: str, impl_3d):
    """The 2D head, the 3D head with D = 1. Compile, export and the other contexts of
    :func:`fastpose.ops.native._glue.direct_ok` get ``as_2d(impl_3d)`` (the 3D custom op between a
    view, a pad and a slice: what an export holds and the ONNX lowering serves). In plain eager mode
    the same steps run inside one autograd node around the 3D forward / backward (~15 us less than
    three extra autograd nodes on a tiny input): forward on logits.unsqueeze(-3) and joints padded to
    (x, y, 0), coords[..., :2]; backward with the cotangent of the dropped c_z zero (what the slice's
    backward passes) and the gradient viewed back to (B, J, H, W): bitwise as through ``as_2d``."""
    op = impl_3d.op
    via_3d = as_2d(impl_3d)
    pad = torch.nn.functional.pad

    def fn_forward(ctx, logits, joints, sigma, weights):
        joints_3d = pad(joints, (0, 1))  # (B, J, 3): (x, y, 0)
        coords, mse, stats = op.forward(logits.unsqueeze(-3), joints_3d, sigma, weights)
        ctx.sigma, ctx.has_w = sigma, weights is not None
        ctx.set_materialize_grads(False)
        ctx.save_for_backward(logits, joints_3d, weights if weights is not None else joints_3d, stats)
        return coords[..., :2].contiguous(), mse

    def fn_backward(ctx, grad_coords, grad_mse):
        if grad_coords is None and grad_mse is None:
            return None, None, None, None
        logits, joints_3d, weights, stats = ctx.saved_tensors
        gc = None if grad_coords is None else pad(grad_coords, (0, 1))  # zero cotangent for c_z
        grad = op.call_backward(gc, grad_mse, logits.unsqueeze(-3), joints_3d, ctx.sigma,
                                weights if ctx.has_w else None, stats)
        return grad.squeeze(-3), None, None, None

    apply, _cls = g.direct_function(f"fastpose_soft_argmax_heatmap_mse_2d_{backend}", fn_forward, fn_backward)

    def impl_2d(logits: Tensor, joints: Tensor, sigma: float, weights: Tensor | None = None
                ) -> tuple[Tensor, Tensor]:
        args = (logits, joints, sigma, weights)
        if not g.direct_ok(args):
            return via_3d(*args)
        if torch.is_grad_enabled() and g.any_requires_grad(*args):
            return apply(*args)
        coords, mse, _stats = op.forward(logits.unsqueeze(-3), pad(joints, (0, 1)), sigma, weights)
        return coords[..., :2].contiguous(), mse

    return impl_2d


def register(backend: str) -> None:
    impl_3d = _define(backend)
    register_impl(_OP, backend, impl_3d, devices=(backend,), dtypes=g.DTYPES,
                  note=f"fastpose._C {backend} kernels (csrc/soft_argmax_heatmap_mse)")
    # the 2D head: the same kernels with D = 1 (joints padded with z = 0), docs/ops.md
    register_impl("soft_argmax_heatmap_mse_2d", backend, _define_2d(backend, impl_3d), devices=(backend,),
                  dtypes=g.DTYPES, note=f"fastpose._C {backend} kernels (csrc/soft_argmax_heatmap_mse, D = 1)")
