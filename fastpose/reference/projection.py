"""Camera projection with radial + tangential distortion and the 2D reprojection loss: the
reference math (VideoPose3D's ``project_to_2d`` convention).

points (*L, J, 3) in the camera frame, camera (*C, 9) = (fx, fy, cx, cy, k1, k2, k3, p_a, p_b).
The camera's leading dims C broadcast against the points' leading dims L by torch's rule (aligned
from the right; a missing or size-1 dim repeats), and may not enlarge them: broadcast_shapes(C, L)
must equal L. For points (B, T, J, 3): camera (B, T, 9) is one camera per frame, (B, 1, 9) one per
sequence, (T, 9) one per frame index shared by the batch, (9,) one for all.
:func:`camera_broadcast_map` reduces that broadcast to the index map the fast kernels use. Per point::

    u      = (x / z, y / z)                              (..., J, 2)
    XX     = clamp(u, -1, 1)
    r2     = |XX|^2
    radial = 1 + k1 r2 + k2 r2^2 + k3 r2^3
    tan    = p_a XX_x + p_b XX_y
    XXd    = XX * (radial + tan) + p * r2                p = (p_a, p_b)
    out    = f * XXd + c                                 f = (fx, fy), c = (cx, cy)

Gradient (:func:`project_to_2d_backward`), with a = g * f (g = dL/dout)::

    dL/dXX_j = a_j (radial + tan) + (a . XX)(2 R' XX_j + p_j) + 2 (a . p) XX_j,
               R' = k1 + 2 k2 r2 + 3 k3 r2^2
    dL/du    = dL/dXX * [-1 <= u <= 1]       (clamp: zero gradient outside [-1, 1], as torch.clamp)
    dL/dxy   = dL/du / z;      dL/dz = -(dL/du . u) / z

reprojection_loss = mean over leading dims and joints of w * |out - keypoints_2d|_2 (0 for an empty
input). Its gradient at zero error is 0 (never NaN): the norm is evaluated with a guarded sqrt.
Points must have z != 0 (as in VideoPose3D). Half precision is computed in float32.
"""

from __future__ import annotations

import math

import torch

from fastpose.reference._rows import acc_dtype

__all__ = [
    "camera_broadcast_map",
    "compact_camera",
    "project_to_2d",
    "project_to_2d_backward",
    "reprojection_loss",
    "reprojection_loss_backward",
]


def _camera_view(camera: torch.Tensor, points: torch.Tensor, acc: torch.dtype) -> torch.Tensor:
    """camera (*C, 9) -> (*C, 1, 9) in ``acc``: the 1 is the joint dim, and torch broadcasting of
    *C against the points' leading dims (*L) does the rest."""
    return camera.to(acc).unsqueeze(-2)  # (*C, 1, 9)


def camera_broadcast_map(camera_lead: tuple[int, ...], points_lead: tuple[int, ...]
                         ) -> tuple[int, int, int, int]:
    """The camera broadcast as an index map: ``(first, stop, ncams, inner)``.

    camera_lead = C and points_lead = L (validated: broadcast_shapes(C, L) == L). With C padded
    on the left by 1s to len(L), the dims where the camera varies ("kept": C_i = L_i != 1) lie in
    the span [first, stop) (first = stop = len(L) when there is none: one camera). The camera of
    leading-row q (row-major over L) is compact row::

        row(q) = (q // inner) % ncams,   inner = prod(L[stop:]),   ncams = prod(L[first:stop])

    of the camera restricted to the span and expanded over it (:func:`compact_camera`). Only a
    size-1 camera dim *inside* the span (e.g. camera (A, 1, C, 9) for points (A, B, C, J, 3)) is
    materialised there; dims outside the span are never expanded. For point p of the flattened
    (*L, J) points, q = p // J, so the kernels use row = (p // (J * inner)) % ncams.
    """
    n = len(points_lead)
    c = (1,) * (n - len(camera_lead)) + tuple(camera_lead)
    kept = [i for i in range(n) if c[i] == points_lead[i] and points_lead[i] != 1]
    if not kept:
        return n, n, 1, 1
    first, stop = kept[0], kept[-1] + 1
    return first, stop, math.prod(points_lead[first:stop]), math.prod(points_lead[stop:])


def compact_camera(camera: torch.Tensor, points_lead: tuple[int, ...], dtype: torch.dtype
                   ) -> tuple[torch.Tensor, int, int]:
    """(cam (ncams, 9) contiguous in ``dtype``, ncams, inner) for :func:`camera_broadcast_map`.

    Equal leading dims (the common case) cost no copy when ``camera`` is already contiguous in
    ``dtype``; a camera that broadcasts is sliced to its span, never expanded over the points."""
    lead = tuple(camera.shape[:-1])
    if lead == tuple(points_lead):  # hot path: one camera row per leading row
        cam = camera if camera.dtype == dtype and camera.is_contiguous() else camera.to(dtype).contiguous()
        return cam.reshape(-1, 9), math.prod(lead), 1
    first, stop, ncams, inner = camera_broadcast_map(lead, tuple(points_lead))
    n = len(points_lead)
    view = camera.reshape((1,) * (n - len(lead)) + lead + (9,))  # (*C padded to len(L), 9), a view
    span = view[(0,) * first + (slice(None),) * (stop - first) + (0,) * (n - stop)]  # (*C[first:stop], 9)
    span = span.expand(*points_lead[first:stop], 9)  # size-1 dims inside the span only
    # A fresh (ncams, 9) tensor, never a view of `camera`: when torch.compile traces the Triton
    # launchers (triton_op), the autograd partitioner cannot carry a chain of views of this
    # non-differentiable input from the forward to the backward ("Node view_* was invalid, but is
    # output"). The copy is ncams x 9 values.
    return span.to(dtype).contiguous().reshape(ncams, 9).clone(), ncams, inner


def _project_acc(pts: torch.Tensor, cam: torch.Tensor) -> torch.Tensor:
    """Projection of ``pts`` (..., J, 3) with a broadcast camera view (..., 1, 9), same dtype."""
    f = cam[..., 0:2]  # (..., 1, 2) focal lengths
    c = cam[..., 2:4]  # (..., 1, 2) principal point
    k1, k2, k3 = cam[..., 4:5], cam[..., 5:6], cam[..., 6:7]  # (..., 1, 1) radial coefficients
    p = cam[..., 7:9]  # (..., 1, 2) tangential coefficients
    u = pts[..., 0:2] / pts[..., 2:3]  # (..., J, 2) x/z, y/z
    xx = u.clamp(-1.0, 1.0)  # (..., J, 2)
    r2 = (xx * xx).sum(dim=-1, keepdim=True)  # (..., J, 1)
    radial = 1.0 + r2 * (k1 + r2 * (k2 + r2 * k3))  # (..., J, 1) 1 + k1 r2 + k2 r2^2 + k3 r2^3
    tan = (p * xx).sum(dim=-1, keepdim=True)  # (..., J, 1) p_a XX_x + p_b XX_y
    xxx = xx * (radial + tan) + p * r2  # (..., J, 2)
    return f * xxx + c  # (..., J, 2)


def project_to_2d(points: torch.Tensor, camera: torch.Tensor) -> torch.Tensor:
    """Project camera-frame points (*L, J, 3) with intrinsics camera (*C, 9) (C broadcasts to L,
    see the module doc) to (*L, J, 2) screen coordinates; points' dtype. Autograd-differentiable."""
    acc = acc_dtype(points.dtype)
    out = _project_acc(points.to(acc), _camera_view(camera, points, acc))  # (..., J, 2)
    return out.to(points.dtype)


def _project_backward_acc(g: torch.Tensor, pts: torch.Tensor, cam: torch.Tensor) -> torch.Tensor:
    """dL/dpoints (..., J, 3) from dL/dout ``g`` (..., J, 2); all in one dtype (see module doc)."""
    f = cam[..., 0:2]  # (..., 1, 2)
    k1, k2, k3 = cam[..., 4:5], cam[..., 5:6], cam[..., 6:7]  # (..., 1, 1)
    p = cam[..., 7:9]  # (..., 1, 2)
    z = pts[..., 2:3]  # (..., J, 1)
    u = pts[..., 0:2] / z  # (..., J, 2)
    inside = (u >= -1.0) & (u <= 1.0)  # (..., J, 2) where the clamp passes gradient
    xx = u.clamp(-1.0, 1.0)  # (..., J, 2)
    r2 = (xx * xx).sum(dim=-1, keepdim=True)  # (..., J, 1)
    radial = 1.0 + r2 * (k1 + r2 * (k2 + r2 * k3))  # (..., J, 1)
    d_radial = k1 + r2 * (2.0 * k2 + 3.0 * k3 * r2)  # (..., J, 1) d radial / d r2
    tan = (p * xx).sum(dim=-1, keepdim=True)  # (..., J, 1)
    a = g * f  # (..., J, 2) dL/dXXd
    a_xx = (a * xx).sum(dim=-1, keepdim=True)  # (..., J, 1) a . XX
    a_p = (a * p).sum(dim=-1, keepdim=True)  # (..., J, 1) a . p
    g_xx = a * (radial + tan) + a_xx * (2.0 * d_radial * xx + p) + 2.0 * a_p * xx  # (..., J, 2)
    g_u = torch.where(inside, g_xx, torch.zeros_like(g_xx))  # (..., J, 2) through the clamp
    g_xy = g_u / z  # (..., J, 2) d u / d(x, y) = 1 / z
    g_z = -(g_u * u).sum(dim=-1, keepdim=True) / z  # (..., J, 1) d u / dz = -u / z
    return torch.cat([g_xy, g_z], dim=-1)  # (..., J, 3)


def project_to_2d_backward(
    grad_out: torch.Tensor, points: torch.Tensor, camera: torch.Tensor
) -> torch.Tensor:
    """Analytic gradient of :func:`project_to_2d` with respect to points (no autograd).

    grad_out (..., J, 2), points (..., J, 3), camera (*C, 9) -> (..., J, 3) in points' dtype.
    """
    acc = acc_dtype(points.dtype)
    cam = _camera_view(camera, points, acc)  # (*C, 1.., 1, 9)
    grad = _project_backward_acc(grad_out.to(acc), points.to(acc), cam)  # (..., J, 3)
    return grad.to(points.dtype)  # (..., J, 3)


def _guarded_norm(e: torch.Tensor) -> torch.Tensor:
    """|e|_2 over the last dim, (..., J, 2) -> (..., J), with gradient 0 (not NaN) at e = 0: the
    sqrt only ever sees positive arguments (double where)."""
    sq = (e * e).sum(dim=-1)  # (..., J)
    pos = sq > 0  # (..., J)
    safe = torch.where(pos, sq, torch.ones_like(sq))  # (..., J) never 0 under the sqrt
    return torch.where(pos, torch.sqrt(safe), torch.zeros_like(sq))  # (..., J)


def reprojection_loss(
    points: torch.Tensor,
    camera: torch.Tensor,
    keypoints_2d: torch.Tensor,
    weights: torch.Tensor | None = None,
) -> torch.Tensor:
    """2D MPJPE of the projection::

        L = sum_{..., j} w_{..., j} |project_to_2d(points, camera) - keypoints_2d|_2 / count

    points (..., J, 3), camera (*C, 9), keypoints_2d (..., J, 2), weights (..., J) or None;
    count = the number of (..., j) entries (an empty input gives 0). Returns () in points' dtype.
    """
    acc = acc_dtype(points.dtype)
    proj = _project_acc(points.to(acc), _camera_view(camera, points, acc))  # (..., J, 2)
    dist = _guarded_norm(proj - keypoints_2d.to(acc))  # (..., J)
    if weights is not None:
        dist = dist * weights.to(acc)  # (..., J)
    return (dist.sum() / max(dist.numel(), 1)).to(points.dtype)  # ()


def reprojection_loss_backward(
    grad_loss: torch.Tensor,
    points: torch.Tensor,
    camera: torch.Tensor,
    keypoints_2d: torch.Tensor,
    weights: torch.Tensor | None,
) -> torch.Tensor:
    """Analytic gradient of :func:`reprojection_loss` with respect to points (no autograd)::

        dL/dout = grad * w * e / (|e| * count)   (0 where e = 0),   e = out - keypoints_2d

    then through :func:`project_to_2d_backward`. grad_loss (), returns (..., J, 3) points' dtype.
    """
    acc = acc_dtype(points.dtype)
    pts = points.to(acc)  # (..., J, 3)
    cam = _camera_view(camera, points, acc)  # (*C, 1.., 1, 9)
    e = _project_acc(pts, cam) - keypoints_2d.to(acc)  # (..., J, 2)
    dist = _guarded_norm(e)  # (..., J)
    count = max(dist.numel(), 1)  # number of (..., j) terms of the mean
    scale = grad_loss.to(acc) / count  # ()
    if weights is not None:
        scale = scale * weights.to(acc)  # (..., J)
    pos = dist > 0  # (..., J)
    safe = torch.where(pos, dist, torch.ones_like(dist))  # (..., J) never 0 in the division
    inv = torch.where(pos, 1.0 / safe, torch.zeros_like(dist))  # (..., J) 1/|e|, 0 at e = 0
    g_out = e * (scale * inv).unsqueeze(-1)  # (..., J, 2) dL/dout
    return _project_backward_acc(g_out, pts, cam).to(points.dtype)  # (..., J, 3)
