"""``project_to_2d`` / ``reprojection_loss`` on the native backends (csrc/projection).

Ops (``<b>`` = cpu | cuda):
  ``fastpose::project_to_2d_<b>(points, camera) -> uv``
  ``fastpose::project_to_2d_<b>_backward(grad_uv, points, camera) -> grad_points``  (analytic)
  ``fastpose::reprojection_loss_<b>(points, camera, keypoints_2d, weights, need_grad) -> (loss, saved_grad)``
  ``fastpose::reprojection_loss_<b>_backward(grad_loss, saved_grad, dtype) -> grad_points``
points (..., J, 3) are flattened to M points; camera (...c, 9) to C cameras, camera i serving
points [i M / C, (i + 1) M / C) (its leading dims are a prefix of the points'). The loss kernel is
fused with the projection and writes the gradient of the mean in the same pass when ``need_grad``;
the backward scales it by the incoming gradient (row_scale kernel).
"""

from __future__ import annotations

import torch
from torch import Tensor

from .._dispatch import register_impl
from . import _glue as g

__all__: list[str] = []


def _cameras(op: str, camera: Tensor, npoints: int, acc: torch.dtype) -> tuple[Tensor, int]:
    cam = g.small(camera, acc).reshape(-1, 9)  # (C, 9)
    ncams = cam.shape[0]
    if npoints and (ncams == 0 or npoints % ncams):
        raise ValueError(f"{op}: camera {tuple(camera.shape)} does not divide the {npoints} points evenly "
                         "(its leading dims must be a prefix of the points' leading dims)")
    return cam, ncams


def _project(backend: str, points: Tensor, camera: Tensor) -> Tensor:
    x = g.main_input(points, backend)  # (..., J, 3)
    acc = g.acc_dtype(x.dtype)
    m = x.numel() // 3
    cam, ncams = _cameras("project_to_2d", camera, m, acc)
    out = torch.empty((*x.shape[:-1], 2), dtype=x.dtype, device=x.device)
    if m:
        g.kernel("project_forward", backend)(g.code(x.dtype), x.data_ptr(), m, cam.data_ptr(), ncams,
                                            out.data_ptr(), *g.launch(backend, x.device))
    return out.to(points.dtype)


def _project_backward(backend: str, grad: Tensor, points: Tensor, camera: Tensor) -> Tensor:
    x = g.main_input(points, backend)
    acc = g.acc_dtype(x.dtype)
    m = x.numel() // 3
    cam, ncams = _cameras("project_to_2d", camera, m, acc)
    go = g.small(grad, x.dtype)  # (..., J, 2) in the kernel dtype
    out = torch.empty(x.shape, dtype=x.dtype, device=x.device)
    if m:
        g.kernel("project_backward", backend)(g.code(x.dtype), go.data_ptr(), x.data_ptr(), m, cam.data_ptr(),
                                             ncams, out.data_ptr(), *g.launch(backend, x.device))
    return out.to(points.dtype)


def _reprojection(backend: str, points: Tensor, camera: Tensor, keypoints_2d: Tensor, weights: Tensor | None,
                  need_grad: bool) -> tuple[Tensor, Tensor]:
    x = g.main_input(points, backend)
    acc = g.acc_dtype(x.dtype)
    m = x.numel() // 3
    cam, ncams = _cameras("reprojection_loss", camera, m, acc)
    kp = g.small(keypoints_2d, acc)  # (..., J, 2)
    wt = g.small(weights, acc)  # (..., J) or None
    loss = torch.empty((), dtype=x.dtype, device=x.device)
    saved = torch.empty(x.shape if need_grad else (0,), dtype=acc, device=x.device)
    scale = 1.0 / m if m else 0.0  # mean over all points; 0 for no points
    args = (g.code(x.dtype), x.data_ptr(), m, cam.data_ptr(), ncams, g.ptr(kp), g.ptr(wt), scale, loss.data_ptr(),
            saved.data_ptr() if need_grad and m else 0)
    if backend == "cuda":
        ws = g.workspace(backend, g.ext().reprojection_workspace_cuda(m), acc, x.device)
        g.ext().reprojection_forward_cuda(*args, ws.data_ptr(), *g.launch(backend, x.device))
    else:
        g.ext().reprojection_forward_cpu(*args, *g.launch(backend, x.device))
    return loss.to(points.dtype), saved


def _define_projection(backend: str):
    name = f"fastpose::project_to_2d_{backend}"

    @torch.library.custom_op(name, mutates_args=(), device_types=backend)
    def fwd(points: Tensor, camera: Tensor) -> Tensor:
        return _project(backend, points, camera)

    @fwd.register_fake
    def _(points, camera):
        return points.new_empty((*points.shape[:-1], 2))

    @torch.library.custom_op(name + "_backward", mutates_args=(), device_types=backend)
    def bwd(grad: Tensor, points: Tensor, camera: Tensor) -> Tensor:
        return _project_backward(backend, grad, points, camera)

    @bwd.register_fake
    def _(grad, points, camera):
        return points.new_empty(points.shape)

    def setup_context(ctx, inputs, output):
        ctx.save_for_backward(*inputs)

    def backward(ctx, grad):
        points, camera = ctx.saved_tensors
        return bwd(grad, points, camera), None

    fwd.register_autograd(backward, setup_context=setup_context)
    return fwd


def _define_reprojection(backend: str):
    name = f"fastpose::reprojection_loss_{backend}"

    @torch.library.custom_op(name, mutates_args=(), device_types=backend)
    def fwd(points: Tensor, camera: Tensor, keypoints_2d: Tensor, weights: Tensor | None,
            need_grad: bool) -> tuple[Tensor, Tensor]:
        return _reprojection(backend, points, camera, keypoints_2d, weights, need_grad)

    @fwd.register_fake
    def _(points, camera, keypoints_2d, weights, need_grad):
        acc = g.acc_dtype(points.dtype)
        return points.new_empty(()), points.new_empty(points.shape if need_grad else (0,), dtype=acc)

    @torch.library.custom_op(name + "_backward", mutates_args=(), device_types=backend)
    def bwd(grad_loss: Tensor, saved_grad: Tensor, dtype: torch.dtype) -> Tensor:
        return g.row_scale(backend, saved_grad, grad_loss, dtype)

    @bwd.register_fake
    def _(grad_loss, saved_grad, dtype):
        return saved_grad.new_empty(saved_grad.shape, dtype=dtype)

    def setup_context(ctx, inputs, output):
        points, _camera, _kp, _weights, need_grad = inputs
        ctx.need_grad, ctx.dtype = need_grad, points.dtype
        ctx.mark_non_differentiable(output[1])  # internal output (see heatmap_mse.py)
        ctx.set_materialize_grads(False)
        ctx.save_for_backward(output[1])

    def backward(ctx, grad_loss, _grad_saved):
        if not ctx.need_grad:
            raise RuntimeError(f"{name}: called with need_grad=False, so no gradient was saved; call it "
                               "with need_grad=True when points requires grad")
        if grad_loss is None:
            return None, None, None, None, None
        (saved,) = ctx.saved_tensors
        return bwd(grad_loss, saved, ctx.dtype), None, None, None, None

    fwd.register_autograd(backward, setup_context=setup_context)

    def impl(points: Tensor, camera: Tensor, keypoints_2d: Tensor, weights: Tensor | None) -> Tensor:
        need_grad = torch.is_grad_enabled() and points.requires_grad
        return fwd(points, camera, keypoints_2d, weights, need_grad)[0]

    return impl


def register(backend: str) -> None:
    register_impl("project_to_2d", backend, _define_projection(backend), devices=(backend,), dtypes=g.DTYPES,
                  note=f"fastpose._C {backend} kernels (csrc/projection)")
    register_impl("reprojection_loss", backend, _define_reprojection(backend), devices=(backend,), dtypes=g.DTYPES,
                  note=f"fastpose._C {backend} kernels (csrc/projection)")
