"""``heatmap_mse_2d`` / ``heatmap_mse_3d`` on the native backends (csrc/heatmap_mse).

Ops (``<b>`` = cpu | cuda):
  ``fastpose::heatmap_mse_{2,3}d_<b>(heatmaps, joints, sigma, weights, reduction) -> loss``
  ``fastpose::heatmap_mse_{2,3}d_<b>_backward(grad_loss, heatmaps, joints, sigma, weights, reduction)
      -> grad_heatmaps``
The forward generates the Gaussian target on the fly and sums direct squared differences per
(b, j); it saves nothing but its inputs. The backward recomputes the target and writes
``grad = g * 2 w (h - t) / N`` (N the reduction's normaliser; g one value for "mean"/"sum", one per
(b, j) for "none") in one read of the heatmaps and one write: nothing volume-sized is kept between
forward and backward (docs/ops.md, "Saved state").
"""

from __future__ import annotations

import torch
from torch import Tensor

from ...reference.heatmap_mse import _normaliser
from .._dispatch import register_impl
from .._spec import SPECS
from . import _glue as g
from . import _volume as v
from ._glue import Buffer

__all__: list[str] = []

# The typed kernel boundary (fastpose.ops.native._glue.KernelSpec; C++ roles in csrc/heatmap_mse/
# heatmap_mse.h). Sizes: R rows of a chunk, N = D*H*W voxels a row, G = 1 or R incoming gradients.
FORWARD = g.declare(
    "heatmap_mse_forward",
    Buffer("heatmaps", "storage", ("R", "N")),
    Buffer("joints", "acc", ("R", "ndim")),
    Buffer("weights", "acc", ("R",), optional=True),
    Buffer("loss_rows", "acc", ("R",)),
    Buffer("workspace", "acc", ("WS",), backends=("cuda",)),
    args=("heatmaps", "R", "d", "h", "w", "ndim", "joints", "sigma", "weights", "loss_rows", "workspace"),
)
BACKWARD = g.declare(
    "heatmap_mse_backward",
    Buffer("grad_loss", "acc", ("G",)),
    Buffer("heatmaps", "storage", ("R", "N")),
    Buffer("joints", "acc", ("R", "ndim")),
    Buffer("weights", "acc", ("R",), optional=True),
    Buffer("grad", "storage", ("R", "N")),
    args=("grad_loss", "grad_stride", "heatmaps", "R", "d", "h", "w", "ndim", "joints", "sigma", "weights",
          "grad_scale", "grad"),
)


def _small_rows(joints: Tensor, weights: Tensor | None, acc: torch.dtype, geo: v.Geometry, ndim: int):
    """joints (rows, ndim) and weights (rows,) or None, contiguous in ``acc``."""
    jt = g.small(joints, acc).reshape(geo.rows, ndim)
    wt = g.small(weights, acc)
    return jt, (None if wt is None else wt.reshape(geo.rows))


def _forward(backend: str, ndim: int, heatmaps: Tensor, joints: Tensor, sigma: float, weights: Tensor | None,
             reduction: str) -> Tensor:
    geo = v.geometry(f"heatmap_mse_{ndim}d", heatmaps, ndim)
    acc = g.acc_dtype(heatmaps.dtype)
    norm = _normaliser(reduction, geo.rows, geo.n_vox)
    jt, wt = _small_rows(joints, weights, acc, geo, ndim)
    loss_rows = torch.empty(geo.rows, dtype=acc, device=heatmaps.device)  # w * sum_v (h - t)^2
    for r0, r1, xk, _ in v.kernel_chunks(heatmaps, backend, geo):
        sizes = v.sizes(geo, r1 - r0, ndim)
        bufs = {"heatmaps": xk, "joints": v.row_slice(jt, r0, r1, geo.rows), "weights": v.row_slice(wt, r0, r1, geo.rows),
                "loss_rows": v.row_slice(loss_rows, r0, r1, geo.rows)}
        if backend == "cuda":
            sizes["WS"] = g.workspace_elems("heatmap_mse_workspace_cuda", g.code(xk.dtype), r1 - r0, geo.d, geo.h,
                                            geo.w)
            bufs["workspace"] = g.workspace(backend, sizes["WS"], acc, xk.device)
        FORWARD.launch(backend, xk.dtype, xk.device, sizes, bufs, {"sigma": float(sigma)})
    if reduction == "none":
        loss = (loss_rows / norm).reshape(geo.b, geo.j)
    else:
        loss = loss_rows.sum() / norm
    return loss.to(heatmaps.dtype)


def _backward(backend: str, ndim: int, grad_loss: Tensor, heatmaps: Tensor, joints: Tensor, sigma: float,
              weights: Tensor | None, reduction: str) -> Tensor:
    geo = v.geometry(f"heatmap_mse_{ndim}d", heatmaps, ndim)
    acc = g.acc_dtype(heatmaps.dtype)
    norm = _normaliser(reduction, geo.rows, geo.n_vox)
    jt, wt = _small_rows(joints, weights, acc, geo, ndim)
    gl = g.small(grad_loss, acc).reshape(-1)  # (1,) for "mean"/"sum", (rows,) for "none"
    stride = 1 if reduction == "none" else 0
    out = v.grad_buffer(heatmaps, backend)  # CPU: a cached buffer when free (no fresh pages)
    for r0, r1, xk, dst in v.kernel_chunks(heatmaps, backend, geo, out):
        glc = v.row_slice(gl, r0, r1, geo.rows) if stride else gl  # (R_c,) per row, or (1,)
        BACKWARD.launch(backend, xk.dtype, xk.device, {**v.sizes(geo, r1 - r0, ndim), "G": glc.numel()},
                        {"grad_loss": glc, "heatmaps": xk, "joints": v.row_slice(jt, r0, r1, geo.rows),
                         "weights": v.row_slice(wt, r0, r1, geo.rows), "grad": dst},
                        {"grad_stride": stride, "sigma": float(sigma), "grad_scale": 2.0 / norm})
    return out


def _define(backend: str, ndim: int):
    name = f"fastpose::heatmap_mse_{ndim}d_{backend}"

    def forward(heatmaps: Tensor, joints: Tensor, sigma: float, weights: Tensor | None, reduction: str) -> Tensor:
        return _forward(backend, ndim, heatmaps, joints, sigma, weights, reduction)

    def backward(grad_loss: Tensor, heatmaps: Tensor, joints: Tensor, sigma: float, weights: Tensor | None,
                 reduction: str) -> Tensor:
        return _backward(backend, ndim, grad_loss, heatmaps, joints, sigma, weights, reduction)

    fwd = torch.library.custom_op(name, forward, mutates_args=(), device_types=backend)

    @fwd.register_fake
    def _(heatmaps, joints, sigma, weights, reduction):
        return heatmaps.new_empty(heatmaps.shape[:2] if reduction == "none" else ())

    bwd = torch.library.custom_op(name + "_backward", backward, mutates_args=(), device_types=backend)

    @bwd.register_fake
    def _(grad_loss, heatmaps, joints, sigma, weights, reduction):
        return heatmaps.new_empty(heatmaps.shape)

    def setup_context(ctx, inputs, output):
        heatmaps, joints, sigma, weights, reduction = inputs
        ctx.sigma, ctx.reduction, ctx.has_w = sigma, reduction, weights is not None
        # Saved: the inputs themselves (no copies); the gradient is recomputed in the backward.
        ctx.save_for_backward(heatmaps, joints, weights if weights is not None else joints)

    def autograd_backward(call_bwd):
        def backward_formula(ctx, grad_loss):
            heatmaps, joints, weights = ctx.saved_tensors
            grad = call_bwd(grad_loss, heatmaps, joints, ctx.sigma, weights if ctx.has_w else None, ctx.reduction)
            return grad, None, None, None, None

        return backward_formula

    # the custom op for compile / export, a direct call in plain eager mode (_glue.eager_op)
    return g.eager_op(fwd, bwd, forward=forward, backward=backward, setup_context=setup_context,
                      autograd_backward=autograd_backward)


def register(backend: str) -> None:
    for spec in (s for s in SPECS.values() if s.stem == "heatmap_mse"):  # the 2D and 3D ops
        register_impl(spec.name, backend, _define(backend, spec.ndim), devices=(backend,), dtypes=g.DTYPES,
                      note=f"fastpose._C {backend} kernels (csrc/heatmap_mse)")
