"""``project_to_2d`` / ``reprojection_loss`` on the native backends (csrc/projection).

Ops (``<b>`` = cpu | cuda):
  ``fastpose::project_to_2d_<b>(points, camera) -> uv``
  ``fastpose::project_to_2d_<b>_backward(grad_uv, points, camera) -> grad_points``  (analytic)
  ``fastpose::reprojection_loss_<b>(points, camera, keypoints_2d, weights, need_grad) -> (loss, saved_grad)``
  ``fastpose::reprojection_loss_<b>_backward(grad_loss, saved_grad, dtype) -> grad_points``
points (*L, J, 3) are flattened to P points; the camera (*C, 9), broadcast to L by torch's rule, is
never expanded: it is reduced to ``ncams`` compact rows and point p uses row
``(p // cam_div) % ncams`` (:func:`fastpose.reference.projection.camera_broadcast_map`). The loss
kernel is fused with the projection and writes the gradient of the mean in the same pass when
``need_grad``; that saved gradient is always in the accumulation dtype (float32 for
float16/bfloat16, role ``acc`` on both sides of the boundary), and the backward scales it by the
incoming gradient (row_scale kernel), rounding once. Every launch goes through the typed kernel
boundary (:class:`fastpose.ops.native._glue.KernelSpec`, the specs below).
"""

from __future__ import annotations

import torch
from torch import Tensor

from ...reference.projection import compact_camera
from .._dispatch import register_impl
from . import _glue as g
from . import _volume as v
from ._glue import Buffer

__all__: list[str] = []

# Sizes: P points, C compact camera rows, WS workspace elements; scalars: cam_div, scale.
PROJECT_FORWARD = g.declare(
    "project_forward",
    Buffer("points", "storage", ("P", 3)),
    Buffer("camera", "acc", ("C", 9)),
    Buffer("out", "storage", ("P", 2)),
    args=("points", "P", "camera", "C", "cam_div", "out"),
)
PROJECT_BACKWARD = g.declare(
    "project_backward",
    Buffer("grad_out", "storage", ("P", 2)),
    Buffer("points", "storage", ("P", 3)),
    Buffer("camera", "acc", ("C", 9)),
    Buffer("grad_points", "storage", ("P", 3)),
    args=("grad_out", "points", "P", "camera", "C", "cam_div", "grad_points"),
)
REPROJECTION_FORWARD = g.declare(
    "reprojection_forward",
    Buffer("points", "storage", ("P", 3)),
    Buffer("camera", "acc", ("C", 9)),
    Buffer("keypoints", "acc", ("P", 2)),
    Buffer("weights", "acc", ("P",), optional=True),
    Buffer("loss", "storage", ()),
    Buffer("grad", "acc", ("P", 3), optional=True),  # the saved gradient, read back by row_scale (acc)
    Buffer("workspace", "acc", ("WS",), backends=("cuda",)),
    args=("points", "P", "camera", "C", "cam_div", "keypoints", "weights", "scale", "loss", "grad", "workspace"),
)


def _sizes(x: Tensor, camera: Tensor, acc: torch.dtype) -> tuple[Tensor, dict[str, int]]:
    """(cam (C, 9) in ``acc``, {P, C, cam_div}) for points x (*L, J, 3) and camera (*C, 9)."""
    lead = tuple(x.shape[:-2])
    cam, ncams, inner = compact_camera(camera.detach(), lead, acc)
    m = x.numel() // 3
    return cam, {"P": m, "C": ncams, "cam_div": max(x.shape[-2] * inner, 1)}


def _project(backend: str, points: Tensor, camera: Tensor) -> Tensor:
    x = g.main_input(points, backend)  # (*L, J, 3)
    cam, sz = _sizes(x, camera, g.acc_dtype(x.dtype))
    # A fresh tensor, not the CPU buffer cache (_volume.cached_empty): with the backward's gradient
    # that would be two cached buffers per step, and a caller that holds the previous step's
    # output and gradient while the next step runs (x = f(...) in a loop; the benchmark harness)
    # needs four, more than the cache's two slots -- measured at 1024 x 243 x 17 in that pattern,
    # caching the output made fwd+bwd slower (9.2 -> 12.1 ms: the gradient lost its cached buffer).
    out = torch.empty((*x.shape[:-1], 2), dtype=x.dtype, device=x.device)
    if sz["P"]:
        m = sz["P"]
        PROJECT_FORWARD.launch(backend, x.dtype, x.device, sz,
                               {"points": x.view(m, 3), "camera": cam, "out": out.view(m, 2)})
    return out.to(points.dtype)


def _project_backward(backend: str, grad: Tensor, points: Tensor, camera: Tensor) -> Tensor:
    x = g.main_input(points, backend)
    cam, sz = _sizes(x, camera, g.acc_dtype(x.dtype))
    go = g.small(grad, x.dtype)  # (*L, J, 2) in the kernel dtype
    out = v.grad_buffer(x, backend)  # CPU: a cached buffer when free (no fresh pages)
    if sz["P"]:
        m = sz["P"]
        PROJECT_BACKWARD.launch(backend, x.dtype, x.device, sz,
                                {"grad_out": go.view(m, 2), "points": x.view(m, 3), "camera": cam,
                                 "grad_points": out.view(m, 3)})
    return out.to(points.dtype)


def _saved_grad(points: Tensor, need_grad: bool) -> Tensor:
    """The saved gradient of the loss: points' shape in the accumulation dtype (role ``acc`` of
    ``grad`` in REPROJECTION_FORWARD and of ``src`` in row_scale), or (0,) without need_grad.
    Shared by the kernel path and the fake kernel, so both allocate the same buffer."""
    return points.new_empty(points.shape if need_grad else (0,), dtype=g.acc_dtype(points.dtype))


def _graph_kept() -> bool:
    """Whether autograd keeps the graph after the backward pass now running (``retain_graph=True``
    or ``create_graph=True``): then a later backward reads the saved tensors again. True outside a
    backward pass, and when this torch does not say (the safe answer: never scale in place)."""
    keep = getattr(torch._C._autograd, "_get_current_graph_task_keep_graph", None)
    if keep is None:
        return True
    try:
        return bool(keep())
    except RuntimeError:
        return True


def _scale_saved(backend: str, saved: Tensor, grad_loss: Tensor, dtype: torch.dtype, *,
                 in_place: bool = False) -> Tensor:
    """The re-projection backward: ``grad_loss * saved`` in ``dtype`` (the row_scale kernel with one
    row, csrc/row_scale). As :func:`fastpose.ops.native._glue.row_scale`, with the output from the
    CPU gradient cache (:func:`fastpose.ops.native._volume.cached_empty`) when no cast follows.

    ``in_place=True`` is the caller's promise that nothing but this backward reads ``saved`` (the
    op's internal output, held only by its autograd node) and that the result may alias it -- true
    on the op's direct eager path, never through the custom op (whose outputs must not alias its
    inputs). Then, when autograd frees the graph after this pass (:func:`_graph_kept` is False),
    ``saved`` is scaled in place and returned: no second point-sized buffer and one read + write of
    it instead of a read, a read-for-ownership and a write of another (paper shape 1024 x 243 x 17:
    50 MB). With ``retain_graph=True`` a second backward reads ``saved`` again, so it is left intact.
    The values are the same either way (one IEEE product per element)."""
    kd = g.kernel_dtype(backend, dtype)
    if kd != saved.dtype or not saved.is_contiguous() or saved.numel() == 0 or grad_loss.numel() != 1:
        return g.row_scale(backend, saved, grad_loss, dtype)
    s = g.small(grad_loss, g.acc_dtype(kd)).reshape(-1)
    if in_place and dtype == kd and not _graph_kept():
        return saved.mul_(s)  # elementwise saved[i] * s, as the row_scale kernel computes it
    out = v.cached_empty(tuple(saved.shape), kd, saved.device, backend)
    n = saved.numel()
    g.ROW_SCALE.launch(backend, kd, saved.device, {"rows": 1, "cols": n},
                       {"src": saved.view(1, n), "scale": s, "out": out.view(1, n)})
    return out if dtype == kd else out.to(dtype)


def _reprojection(backend: str, points: Tensor, camera: Tensor, keypoints_2d: Tensor, weights: Tensor | None,
                  need_grad: bool) -> tuple[Tensor, Tensor]:
    x = g.main_input(points, backend)
    acc = g.acc_dtype(x.dtype)
    cam, sz = _sizes(x, camera, acc)
    m = sz["P"]
    kp = g.small(keypoints_2d, acc)  # (*L, J, 2)
    wt = g.small(weights, acc)  # (*L, J) or None
    loss = torch.empty((), dtype=x.dtype, device=x.device)
    # the saved gradient (see _saved_grad): on the CPU a cached buffer when free (no fresh pages)
    saved = v.cached_empty(tuple(x.shape) if need_grad else (0,), acc, x.device, backend)
    scale = 1.0 / m if m else 0.0  # mean over all points; 0 for no points
    bufs = {"points": x.view(m, 3), "camera": cam, "keypoints": kp.view(m, 2),
            "weights": None if wt is None else wt.view(m), "loss": loss,
            "grad": saved.view(m, 3) if need_grad and m else None}
    if backend == "cuda":
        sz["WS"] = g.workspace_elems("reprojection_workspace_cuda", m)
        bufs["workspace"] = g.workspace(backend, sz["WS"], acc, x.device)
    REPROJECTION_FORWARD.launch(backend, x.dtype, x.device, sz, bufs, {"scale": scale})
    return loss.to(points.dtype), saved


def _define_projection(backend: str):
    name = f"fastpose::project_to_2d_{backend}"

    def forward(points: Tensor, camera: Tensor) -> Tensor:
        return _project(backend, points, camera)

    def backward(grad: Tensor, points: Tensor, camera: Tensor) -> Tensor:
        return _project_backward(backend, grad, points, camera)

    fwd = torch.library.custom_op(name, forward, mutates_args=(), device_types=backend)

    @fwd.register_fake
    def _(points, camera):
        return points.new_empty((*points.shape[:-1], 2))

    bwd = torch.library.custom_op(name + "_backward", backward, mutates_args=(), device_types=backend)

    @bwd.register_fake
    def _(grad, points, camera):
        return points.new_empty(points.shape)

    def setup_context(ctx, inputs, output):
        ctx.save_for_backward(*inputs)

    def autograd_backward(call_bwd):
        def backward_formula(ctx, grad):
            points, camera = ctx.saved_tensors
            return call_bwd(grad, points, camera), None

        return backward_formula

    # the custom op for compile / export, a direct call in plain eager mode (_glue.eager_op)
    return g.eager_op(fwd, bwd, forward=forward, backward=backward, setup_context=setup_context,
                      autograd_backward=autograd_backward)


def _define_reprojection(backend: str):
    name = f"fastpose::reprojection_loss_{backend}"

    def forward(points: Tensor, camera: Tensor, keypoints_2d: Tensor, weights: Tensor | None,
                need_grad: bool) -> tuple[Tensor, Tensor]:
        return _reprojection(backend, points, camera, keypoints_2d, weights, need_grad)

    def backward(grad_loss: Tensor, saved_grad: Tensor, dtype: torch.dtype) -> Tensor:
        return _scale_saved(backend, saved_grad, grad_loss, dtype)

    def backward_direct(grad_loss: Tensor, saved_grad: Tensor, dtype: torch.dtype) -> Tensor:
        # The direct eager path only: there the saved gradient is the op's internal output, dropped
        # by `impl` below and held by its autograd node alone, and the result may alias it (the
        # custom op's may not), so it is scaled in place when autograd frees the graph (_scale_saved).
        return _scale_saved(backend, saved_grad, grad_loss, dtype, in_place=True)

    fwd = torch.library.custom_op(name, forward, mutates_args=(), device_types=backend)

    @fwd.register_fake
    def _(points, camera, keypoints_2d, weights, need_grad):
        return points.new_empty(()), _saved_grad(points, need_grad)

    bwd = torch.library.custom_op(name + "_backward", backward, mutates_args=(), device_types=backend)

    @bwd.register_fake
    def _(grad_loss, saved_grad, dtype):
        return saved_grad.new_empty(saved_grad.shape, dtype=dtype)

    def setup_context(ctx, inputs, output):
        points, _camera, _kp, _weights, need_grad = inputs
        ctx.need_grad, ctx.dtype = need_grad, points.dtype
        ctx.mark_non_differentiable(output[1])  # internal output (see heatmap_mse.py)
        ctx.set_materialize_grads(False)
        ctx.save_for_backward(output[1])

    def autograd_backward(call_bwd):
        def backward_formula(ctx, grad_loss, _grad_saved):
            if not ctx.need_grad:
                raise RuntimeError(f"{name}: called with need_grad=False, so no gradient was saved; call it "
                                   "with need_grad=True when points requires grad")
            if grad_loss is None:
                return None, None, None, None, None
            (saved,) = ctx.saved_tensors
            return call_bwd(grad_loss, saved, ctx.dtype), None, None, None, None

        return backward_formula

    # the custom op for compile / export, a direct call in plain eager mode (_glue.eager_op)
    op = g.eager_op(fwd, bwd, forward=forward, backward=backward_direct, setup_context=setup_context,
                    autograd_backward=autograd_backward)

    def impl(points: Tensor, camera: Tensor, keypoints_2d: Tensor, weights: Tensor | None) -> Tensor:
        need_grad = torch.is_grad_enabled() and points.requires_grad
        return op(points, camera, keypoints_2d, weights, need_grad)[0]

    return impl


def register(backend: str) -> None:
    register_impl("project_to_2d", backend, _define_projection(backend), devices=(backend,), dtypes=g.DTYPES,
                  note=f"fastpose._C {backend} kernels (csrc/projection)")
    register_impl("reprojection_loss", backend, _define_reprojection(backend), devices=(backend,), dtypes=g.DTYPES,
                  note=f"fastpose._C {backend} kernels (csrc/projection)")
