"""``heatmap_mse_2d`` / ``heatmap_mse_3d`` on the native backends (csrc/heatmap_mse).

Ops (``<b>`` = cpu | cuda):
  ``fastpose::heatmap_mse_{2,3}d_<b>(heatmaps, joints, sigma, weights, reduction, need_grad)
      -> (loss, saved_grad)``
  ``fastpose::heatmap_mse_{2,3}d_<b>_backward(grad_loss, saved_grad, dtype) -> grad_heatmaps``
The forward generates the Gaussian target on the fly and, when ``need_grad``, writes
``saved_grad = 2 w (h - t) / norm`` in the same pass (accumulation dtype, so float16/bfloat16 are
rounded once); the backward is then a scale by the incoming gradient (one value for "mean"/"sum",
one per (b, j) for "none") with the row_scale kernel. Without ``need_grad`` ``saved_grad`` is empty.
"""

from __future__ import annotations

import torch
from torch import Tensor

from .._dispatch import register_impl
from . import _glue as g

__all__: list[str] = []


def _normaliser(reduction: str, rows: int, n_vox: int) -> int:
    """N of loss = sum_bj w SSE / N ("mean": B*J*N_vox, at least 1 so an empty mean is 0)."""
    if reduction == "mean":
        return max(rows * n_vox, 1)
    if reduction == "none":
        return max(n_vox, 1)
    if reduction == "sum":
        return 1
    raise ValueError(f"heatmap_mse: reduction must be 'mean', 'sum' or 'none', got {reduction!r}")


def _forward(backend: str, ndim: int, heatmaps: Tensor, joints: Tensor, sigma: float, weights: Tensor | None,
             reduction: str, need_grad: bool) -> tuple[Tensor, Tensor]:
    op = f"heatmap_mse_{ndim}d"
    x = g.main_input(heatmaps, backend)
    b, j, d, h, w, rows = g.volume_dims(op, x, ndim)
    acc = g.acc_dtype(x.dtype)
    norm = _normaliser(reduction, rows, d * h * w)
    jt = g.small(joints, acc)  # (B, J, ndim)
    wt = g.small(weights, acc)  # (B, J) or None
    loss_rows = torch.empty(rows, dtype=acc, device=x.device)  # w * sum_v (h - t)^2 per (b, j)
    saved = torch.empty(x.shape if need_grad else (0,), dtype=acc, device=x.device)
    if rows:
        c = g.code(x.dtype)
        args = (c, x.data_ptr(), rows, d, h, w, ndim, jt.data_ptr(), float(sigma), g.ptr(wt), loss_rows.data_ptr(),
                saved.data_ptr() if need_grad else 0, 2.0 / norm)
        if backend == "cuda":
            ws = g.workspace(backend, g.ext().heatmap_mse_workspace_cuda(c, rows, d, h, w), acc, x.device)
            g.ext().heatmap_mse_forward_cuda(*args, ws.data_ptr(), *g.launch(backend, x.device))
        else:
            g.ext().heatmap_mse_forward_cpu(*args, *g.launch(backend, x.device))
    if reduction == "none":
        loss = (loss_rows / norm).reshape(b, j)
    else:
        loss = loss_rows.sum() / norm
    return loss.to(heatmaps.dtype), saved


def _define(backend: str, ndim: int):
    name = f"fastpose::heatmap_mse_{ndim}d_{backend}"

    @torch.library.custom_op(name, mutates_args=(), device_types=backend)
    def fwd(heatmaps: Tensor, joints: Tensor, sigma: float, weights: Tensor | None, reduction: str,
            need_grad: bool) -> tuple[Tensor, Tensor]:
        return _forward(backend, ndim, heatmaps, joints, sigma, weights, reduction, need_grad)

    @fwd.register_fake
    def _(heatmaps, joints, sigma, weights, reduction, need_grad):
        loss = heatmaps.new_empty(heatmaps.shape[:2] if reduction == "none" else ())
        acc = g.acc_dtype(heatmaps.dtype)
        return loss, heatmaps.new_empty(heatmaps.shape if need_grad else (0,), dtype=acc)

    @torch.library.custom_op(name + "_backward", mutates_args=(), device_types=backend)
    def bwd(grad_loss: Tensor, saved_grad: Tensor, dtype: torch.dtype) -> Tensor:
        return g.row_scale(backend, saved_grad, grad_loss, dtype)

    @bwd.register_fake
    def _(grad_loss, saved_grad, dtype):
        return saved_grad.new_empty(saved_grad.shape, dtype=dtype)

    def setup_context(ctx, inputs, output):
        heatmaps, _joints, _sigma, _weights, _reduction, need_grad = inputs
        ctx.need_grad, ctx.dtype = need_grad, heatmaps.dtype
        # saved_grad is an internal output: no gradient flows into it, and autograd must not
        # materialise a zero tensor of the volume's size for it in the backward.
        ctx.mark_non_differentiable(output[1])
        ctx.set_materialize_grads(False)
        ctx.save_for_backward(output[1])

    def backward(ctx, grad_loss, _grad_saved):
        if not ctx.need_grad:
            raise RuntimeError(f"{name}: called with need_grad=False, so no gradient was saved; call it "
                               "with need_grad=True when heatmaps requires grad")
        if grad_loss is None:
            return None, None, None, None, None, None
        (saved,) = ctx.saved_tensors
        return bwd(grad_loss, saved, ctx.dtype), None, None, None, None, None

    fwd.register_autograd(backward, setup_context=setup_context)

    def impl(heatmaps: Tensor, joints: Tensor, sigma: float, weights: Tensor | None, reduction: str) -> Tensor:
        need_grad = torch.is_grad_enabled() and heatmaps.requires_grad
        return fwd(heatmaps, joints, sigma, weights, reduction, need_grad)[0]

    return impl


def register(backend: str) -> None:
    for ndim in (2, 3):
        register_impl(f"heatmap_mse_{ndim}d", backend, _define(backend, ndim), devices=(backend,), dtypes=g.DTYPES,
                      note=f"fastpose._C {backend} kernels (csrc/heatmap_mse)")
