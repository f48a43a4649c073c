"""Triton camera projection (VideoPose3D's distortion model) and fused reprojection loss.

Per point (x, y, z) with camera (fx, fy, cx, cy, k1, k2, k3, p_a, p_b)::

    (a, b) = clamp((x / z, y / z), -1, 1);  r2 = a^2 + b^2
    radial = 1 + k1 r2 + k2 r2^2 + k3 r2^3;  tan = p_a a + p_b b
    out    = (fx (a (radial + tan) + p_a r2) + cx,  fy (b (radial + tan) + p_b r2) + cy)

Backward (vector-Jacobian product, A = g * f with g = dL/dout, R' = k1 + 2 k2 r2 + 3 k3 r2^2)::

    dL/da = A_0 (radial + tan) + (A.(a, b)) (2 R' a + p_a) + 2 (A.p) a     (same for b)
    dL/du = dL/da * [-1 <= u <= 1]   (torch.clamp passes the gradient on the closed interval)
    dL/dx = dL/du / z;  dL/dy = dL/dv / z;  dL/dz = -(dL/du u + dL/dv v) / z

reprojection_loss = sum_i w_i |out_i - kp_i| / P over the P points (0 when P = 0); its gradient
``grad * w e / (|e| P)`` is 0 at e = 0 (never NaN). The forward of the loss is fused (one read of
points, keypoints and weights, partial sums per program, then ``torch.sum`` in a fixed order); the
backward recomputes the projection from the inputs instead of storing it. Results are bitwise
reproducible whatever configuration the autotuner picks: the per-point kernels do not depend on the
tile, and the loss forward (the one reduction) always runs one fixed configuration (_LOSS_CONFIG).

Points (*L, J, 3) are flattened to (P, 3). The camera (*Lc, 9) broadcasts to L by torch's rule
and is never expanded over the points: it is reduced to C compact rows (C, 9) and point ``i``
uses camera row ``(i // G) % C`` (:func:`fastpose.reference.projection.camera_broadcast_map`:
G = J * the product of the leading dims after the camera's span). Equal leading dims give
G = J and C = P / J, the same rows as ``i // J``.
"""

from __future__ import annotations

import math

import torch
import triton
import triton.language as tl
from torch import Tensor
from torch.library import wrap_triton

# absolute import: this package is imported both as `fastpose.kernels` and as `kernels`
from fastpose.reference.projection import compact_camera

from ._common import INTERPRET, acc_dtype, define_op, store_dtype, unused_pointer

__all__ = [
    "project_to_2d",
    "reprojection_loss",
    "project_forward",
    "project_backward",
    "reprojection_loss_forward",
    "reprojection_loss_backward",
]

# Points per program (a multiple of every BLOCK below); the number of partial sums of the loss is
# cdiv(P, CHUNK), fixed by the shape.
_CHUNK = 4096

# Reproducibility: results do not depend on which configuration the autotuner picks (it picks by
# timing, so different processes may pick differently). The per-point kernels (projection, its
# backward, the loss backward) compute every point independently of the tile: any BLOCK /
# num_warps gives the same bits. The loss forward reduces, and its in-program reduction order
# follows the tile layout (BLOCK lanes, num_warps), so it is NOT autotuned: it always runs the one
# configuration _LOSS_CONFIG, writes cdiv(P, CHUNK) partials, and torch.sum adds them in a fixed
# order. Same input, device and Triton version -> the same bits, in any process.
_LOSS_CONFIG = {"BLOCK": 1024, "num_warps": 4}


def _loss_configs():
    """The single configuration of the loss forward (a one-entry autotune list: no timing)."""
    return [triton.Config({"BLOCK": _LOSS_CONFIG["BLOCK"]}, num_warps=_LOSS_CONFIG["num_warps"])]


def _configs():
    """Autotune configurations of the per-point kernels: BLOCK points per loop step; one under
    the interpreter."""
    if INTERPRET:
        return [triton.Config({"BLOCK": 1024}, num_warps=4)]
    return [
        triton.Config({"BLOCK": block}, num_warps=warps)
        for block, warps in ((256, 2), (512, 4), (1024, 4), (1024, 8))
    ]


# ---- device math -----------------------------------------------------------------------------


@triton.jit
def _load_points(pts_ptr, cam_ptr, idx, mask, G, C, acc: tl.constexpr):
    """x, y, z of points ``idx`` (int64) and the 9 parameters of their cameras ((idx // G) % C)."""
    x = tl.load(pts_ptr + idx * 3 + 0, mask=mask, other=0.0).to(acc)
    y = tl.load(pts_ptr + idx * 3 + 1, mask=mask, other=0.0).to(acc)
    z = tl.load(pts_ptr + idx * 3 + 2, mask=mask, other=1.0).to(acc)
    cam = cam_ptr + ((idx // G) % C) * 9
    fx = tl.load(cam + 0, mask=mask, other=0.0)
    fy = tl.load(cam + 1, mask=mask, other=0.0)
    cx = tl.load(cam + 2, mask=mask, other=0.0)
    cy = tl.load(cam + 3, mask=mask, other=0.0)
    k1 = tl.load(cam + 4, mask=mask, other=0.0)
    k2 = tl.load(cam + 5, mask=mask, other=0.0)
    k3 = tl.load(cam + 6, mask=mask, other=0.0)
    pa = tl.load(cam + 7, mask=mask, other=0.0)
    pb = tl.load(cam + 8, mask=mask, other=0.0)
    return x, y, z, fx, fy, cx, cy, k1, k2, k3, pa, pb


@triton.jit
def _project(x, y, z, fx, fy, cx, cy, k1, k2, k3, pa, pb):
    """Screen coordinates (see the module docstring)."""
    a = tl.minimum(tl.maximum(x / z, -1.0), 1.0)
    b = tl.minimum(tl.maximum(y / z, -1.0), 1.0)
    r2 = a * a + b * b
    radial = 1.0 + r2 * (k1 + r2 * (k2 + r2 * k3))
    tan = pa * a + pb * b
    return fx * (a * (radial + tan) + pa * r2) + cx, fy * (b * (radial + tan) + pb * r2) + cy


@triton.jit
def _project_vjp(x, y, z, fx, fy, k1, k2, k3, pa, pb, g0, g1):
    """(dL/dx, dL/dy, dL/dz) from g = dL/dout (see the module docstring)."""
    u = x / z
    v = y / z
    a = tl.minimum(tl.maximum(u, -1.0), 1.0)
    b = tl.minimum(tl.maximum(v, -1.0), 1.0)
    r2 = a * a + b * b
    radial = 1.0 + r2 * (k1 + r2 * (k2 + r2 * k3))
    d_radial = k1 + r2 * (2.0 * k2 + 3.0 * k3 * r2)
    tan = pa * a + pb * b
    A0 = g0 * fx
    A1 = g1 * fy
    a_xx = A0 * a + A1 * b
    a_p = A0 * pa + A1 * pb
    ga = A0 * (radial + tan) + a_xx * (2.0 * d_radial * a + pa) + 2.0 * a_p * a
    gb = A1 * (radial + tan) + a_xx * (2.0 * d_radial * b + pb) + 2.0 * a_p * b
    gu = tl.where((u >= -1.0) & (u <= 1.0), ga, 0.0)
    gv = tl.where((v >= -1.0) & (v <= 1.0), gb, 0.0)
    return gu / z, gv / z, -(gu * u + gv * v) / z


# ---- kernels ---------------------------------------------------------------------------------


@triton.autotune(configs=_configs(), key=["P"])
@triton.jit
def _project_fwd_kernel(
    pts_ptr,  # (P, 3) contiguous
    cam_ptr,  # (C, 9) contiguous; its dtype is the accumulation dtype
    out_ptr,  # (P, 2) points' dtype
    P, G, C, CHUNK,
    BLOCK: tl.constexpr,
):
    acc = cam_ptr.dtype.element_ty
    lo = tl.program_id(0).to(tl.int64) * CHUNK
    hi = tl.minimum(lo + CHUNK, P)
    for i0 in range(0, CHUNK, BLOCK):
        idx = lo + i0 + tl.arange(0, BLOCK)
        mask = idx < hi
        x, y, z, fx, fy, cx, cy, k1, k2, k3, pa, pb = _load_points(pts_ptr, cam_ptr, idx, mask, G, C, acc)
        u, v = _project(x, y, z, fx, fy, cx, cy, k1, k2, k3, pa, pb)
        out_ty = out_ptr.dtype.element_ty
        tl.store(out_ptr + idx * 2 + 0, u.to(out_ty), mask=mask)
        tl.store(out_ptr + idx * 2 + 1, v.to(out_ty), mask=mask)


@triton.autotune(configs=_configs(), key=["P"])
@triton.jit
def _project_bwd_kernel(
    pts_ptr,  # (P, 3)
    cam_ptr,  # (C, 9) accumulation dtype
    grad_out_ptr,  # (P, 2) dL/dout
    grad_ptr,  # (P, 3) dL/dpoints, points' dtype
    P, G, C, CHUNK,
    BLOCK: tl.constexpr,
):
    acc = cam_ptr.dtype.element_ty
    lo = tl.program_id(0).to(tl.int64) * CHUNK
    hi = tl.minimum(lo + CHUNK, P)
    for i0 in range(0, CHUNK, BLOCK):
        idx = lo + i0 + tl.arange(0, BLOCK)
        mask = idx < hi
        x, y, z, fx, fy, cx, cy, k1, k2, k3, pa, pb = _load_points(pts_ptr, cam_ptr, idx, mask, G, C, acc)
        g0 = tl.load(grad_out_ptr + idx * 2 + 0, mask=mask, other=0.0).to(acc)
        g1 = tl.load(grad_out_ptr + idx * 2 + 1, mask=mask, other=0.0).to(acc)
        dx, dy, dz = _project_vjp(x, y, z, fx, fy, k1, k2, k3, pa, pb, g0, g1)
        out_ty = grad_ptr.dtype.element_ty
        tl.store(grad_ptr + idx * 3 + 0, dx.to(out_ty), mask=mask)
        tl.store(grad_ptr + idx * 3 + 1, dy.to(out_ty), mask=mask)
        tl.store(grad_ptr + idx * 3 + 2, dz.to(out_ty), mask=mask)


@triton.autotune(configs=_loss_configs(), key=["P"])
@triton.jit
def _reproj_fwd_kernel(
    pts_ptr,  # (P, 3)
    cam_ptr,  # (C, 9) accumulation dtype
    kp_ptr,  # (P, 2) accumulation dtype
    w_ptr,  # (P,) accumulation dtype      [read when HAS_W]
    part_ptr,  # (cdiv(P, CHUNK),) sum of w |e| over the program's points
    P, G, C, CHUNK,
    HAS_W: tl.constexpr, BLOCK: tl.constexpr,
):
    acc = cam_ptr.dtype.element_ty
    pid = tl.program_id(0).to(tl.int64)
    lo = pid * CHUNK
    hi = tl.minimum(lo + CHUNK, P)
    total = tl.zeros([BLOCK], acc)
    for i0 in range(0, CHUNK, BLOCK):
        idx = lo + i0 + tl.arange(0, BLOCK)
        mask = idx < hi
        x, y, z, fx, fy, cx, cy, k1, k2, k3, pa, pb = _load_points(pts_ptr, cam_ptr, idx, mask, G, C, acc)
        u, v = _project(x, y, z, fx, fy, cx, cy, k1, k2, k3, pa, pb)
        e0 = u - tl.load(kp_ptr + idx * 2 + 0, mask=mask, other=0.0)
        e1 = v - tl.load(kp_ptr + idx * 2 + 1, mask=mask, other=0.0)
        dist = tl.sqrt(e0 * e0 + e1 * e1)
        if HAS_W:
            dist = dist * tl.load(w_ptr + idx, mask=mask, other=0.0)
        total += tl.where(mask, dist, 0.0)
    tl.store(part_ptr + pid, tl.sum(total))


@triton.autotune(configs=_configs(), key=["P"])
@triton.jit
def _reproj_bwd_kernel(
    pts_ptr,  # (P, 3)
    cam_ptr,  # (C, 9) accumulation dtype
    kp_ptr,  # (P, 2) accumulation dtype
    w_ptr,  # (P,) accumulation dtype      [read when HAS_W]
    scale_ptr,  # (1,) dL/dloss / P, accumulation dtype
    grad_ptr,  # (P, 3) dL/dpoints, points' dtype
    P, G, C, CHUNK,
    HAS_W: tl.constexpr, BLOCK: tl.constexpr,
):
    acc = cam_ptr.dtype.element_ty
    lo = tl.program_id(0).to(tl.int64) * CHUNK
    hi = tl.minimum(lo + CHUNK, P)
    scale = tl.load(scale_ptr)
    for i0 in range(0, CHUNK, BLOCK):
        idx = lo + i0 + tl.arange(0, BLOCK)
        mask = idx < hi
        x, y, z, fx, fy, cx, cy, k1, k2, k3, pa, pb = _load_points(pts_ptr, cam_ptr, idx, mask, G, C, acc)
        u, v = _project(x, y, z, fx, fy, cx, cy, k1, k2, k3, pa, pb)
        e0 = u - tl.load(kp_ptr + idx * 2 + 0, mask=mask, other=0.0)
        e1 = v - tl.load(kp_ptr + idx * 2 + 1, mask=mask, other=0.0)
        sq = e0 * e0 + e1 * e1
        pos = sq > 0.0
        # d|e|/de = e / |e|, defined as 0 at e = 0 (the sqrt never sees 0 there)
        coef = tl.where(pos, scale / tl.sqrt(tl.where(pos, sq, 1.0)), 0.0)
        if HAS_W:
            coef = coef * tl.load(w_ptr + idx, mask=mask, other=0.0)
        dx, dy, dz = _project_vjp(x, y, z, fx, fy, k1, k2, k3, pa, pb, coef * e0, coef * e1)
        out_ty = grad_ptr.dtype.element_ty
        tl.store(grad_ptr + idx * 3 + 0, dx.to(out_ty), mask=mask)
        tl.store(grad_ptr + idx * 3 + 1, dy.to(out_ty), mask=mask)
        tl.store(grad_ptr + idx * 3 + 2, dz.to(out_ty), mask=mask)


# ---- host launchers --------------------------------------------------------------------------


def _flat(points: Tensor, camera: Tensor) -> tuple[Tensor, Tensor, int, int, int]:
    """points (*L, J, 3) -> (P, 3) contiguous; camera (*Lc, 9) -> (C, 9) compact rows in the
    accumulation dtype; returns (pts, cam, P, G, C): point i uses camera row (i // G) % C."""
    pts = points.contiguous()
    cam, c, inner = compact_camera(camera, tuple(points.shape[:-2]), acc_dtype(points.dtype))
    p = math.prod(points.shape[:-1])
    return pts, cam, p, max(points.shape[-2] * inner, 1), max(c, 1)


def _chunk(chunk: int | None) -> int:
    if chunk is None:
        return _CHUNK
    if chunk < 1:
        raise ValueError(f"chunk must be >= 1, got {chunk}")
    return int(chunk)


def project_forward(points: Tensor, camera: Tensor, chunk: int | None = None) -> Tensor:
    """points (..., J, 3), camera (...c, 9) -> (..., J, 2) in points' dtype."""
    pts, cam, p, g, c = _flat(points, camera)
    out = torch.empty((*points.shape[:-1], 2), dtype=store_dtype(points.dtype), device=points.device)
    if p > 0:
        ch = _chunk(chunk)
        wrap_triton(_project_fwd_kernel)[(triton.cdiv(p, ch),)](pts, cam, out, p, g, c, ch)
    return out.to(points.dtype)


def project_backward(grad_out: Tensor, points: Tensor, camera: Tensor,
                     chunk: int | None = None) -> Tensor:
    """dL/dpoints (..., J, 3) from dL/dout (..., J, 2)."""
    pts, cam, p, g, c = _flat(points, camera)
    grad = torch.empty(points.shape, dtype=store_dtype(points.dtype), device=points.device)
    if p > 0:
        ch = _chunk(chunk)
        wrap_triton(_project_bwd_kernel)[(triton.cdiv(p, ch),)](
            pts, cam, grad_out.contiguous(), grad, p, g, c, ch
        )
    return grad.to(points.dtype)


def _loss_inputs(points, keypoints_2d, weights):
    """keypoints (P, 2) and weights (P,) in the accumulation dtype (an unread 1-element buffer
    when there are no weights: HAS_W=False)."""
    acc = acc_dtype(points.dtype)
    kp = keypoints_2d.to(acc).contiguous()
    if weights is None:
        return kp, unused_pointer(points.device, acc)
    return kp, weights.to(acc).contiguous()


def reprojection_loss_forward(points: Tensor, camera: Tensor, keypoints_2d: Tensor,
                              weights: Tensor | None, chunk: int | None = None) -> Tensor:
    """() mean of w |project(points) - keypoints_2d| over all points, in points' dtype."""
    pts, cam, p, g, c = _flat(points, camera)
    if p == 0:
        return torch.zeros((), dtype=points.dtype, device=points.device)
    kp, w = _loss_inputs(points, keypoints_2d, weights)
    ch = _chunk(chunk)
    programs = triton.cdiv(p, ch)
    part = torch.empty((programs,), dtype=cam.dtype, device=points.device)
    wrap_triton(_reproj_fwd_kernel)[(programs,)](
        pts, cam, kp, w, part, p, g, c, ch, HAS_W=weights is not None
    )
    return (part.sum() / p).to(points.dtype)


def reprojection_loss_backward(grad: Tensor, points: Tensor, camera: Tensor, keypoints_2d: Tensor,
                               weights: Tensor | None, chunk: int | None = None) -> Tensor:
    """dL/dpoints (..., J, 3) for the scalar gradient ``grad`` of the loss."""
    pts, cam, p, g, c = _flat(points, camera)
    out = torch.empty(points.shape, dtype=store_dtype(points.dtype), device=points.device)
    if p == 0:
        return out.to(points.dtype)
    kp, w = _loss_inputs(points, keypoints_2d, weights)
    scale = (grad.to(cam.dtype) / p).reshape(1)
    ch = _chunk(chunk)
    wrap_triton(_reproj_bwd_kernel)[(triton.cdiv(p, ch),)](
        pts, cam, kp, w, scale, out, p, g, c, ch, HAS_W=weights is not None
    )
    return out.to(points.dtype)


# ---- torch.library operators -----------------------------------------------------------------


def _proj_impl(points: Tensor, camera: Tensor) -> Tensor:
    return project_forward(points, camera)


def _proj_fake(points, camera):
    return points.new_empty((*points.shape[:-1], 2))


def _proj_bwd_impl(grad: Tensor, points: Tensor, camera: Tensor) -> Tensor:
    return project_backward(grad, points, camera)


def _proj_bwd_fake(grad, points, camera):
    return points.new_empty(points.shape)


def _reproj_impl(points: Tensor, camera: Tensor, keypoints_2d: Tensor,
                 weights: Tensor | None) -> Tensor:
    return reprojection_loss_forward(points, camera, keypoints_2d, weights)


def _reproj_fake(points, camera, keypoints_2d, weights):
    return points.new_empty(())


def _reproj_bwd_impl(grad: Tensor, points: Tensor, camera: Tensor, keypoints_2d: Tensor,
                     weights: Tensor | None) -> Tensor:
    return reprojection_loss_backward(grad, points, camera, keypoints_2d, weights)


def _reproj_bwd_fake(grad, points, camera, keypoints_2d, weights):
    return points.new_empty(points.shape)


project_to_2d = define_op("project_to_2d_triton", _proj_impl, _proj_fake)
_project_bwd_op = define_op("project_to_2d_triton_backward", _proj_bwd_impl, _proj_bwd_fake)
reprojection_loss = define_op("reprojection_loss_triton", _reproj_impl, _reproj_fake)
_reproj_bwd_op = define_op("reprojection_loss_triton_backward", _reproj_bwd_impl, _reproj_bwd_fake)


def _proj_setup(ctx, inputs, output):
    ctx.save_for_backward(*inputs)


def _proj_backward(ctx, grad):
    points, camera = ctx.saved_tensors
    return _project_bwd_op(grad, points, camera), None


def _reproj_setup(ctx, inputs, output):
    points, camera, keypoints_2d, weights = inputs
    ctx.has_w = weights is not None
    ctx.save_for_backward(points, camera, keypoints_2d, weights if weights is not None else keypoints_2d)


def _reproj_backward(ctx, grad):
    points, camera, keypoints_2d, weights = ctx.saved_tensors
    g = _reproj_bwd_op(grad, points, camera, keypoints_2d, weights if ctx.has_w else None)
    return g, None, None, None


project_to_2d.register_autograd(_proj_backward, setup_context=_proj_setup)
reprojection_loss.register_autograd(_reproj_backward, setup_context=_reproj_setup)

IMPLS = (
    ("project_to_2d", project_to_2d, None),
    ("reprojection_loss", reprojection_loss, None),
)
