"""Public ``project_to_2d`` / ``reprojection_loss`` and their ``reference`` backend.

VideoPose3D's camera model, per point (camera = fx, fy, cx, cy, k1, k2, k3, p_a, p_b):
  XX = clamp(xy / z, -1, 1); r2 = |XX|^2; radial = 1 + k1 r2 + k2 r2^2 + k3 r2^3;
  tan = p_a XX_x + p_b XX_y; XXd = XX (radial + tan) + (p_a, p_b) r2; uv = f XXd + c.
points (*L, J, 3) in the camera frame; camera (*C, 9) whose leading dims broadcast to L by torch's
rule (aligned from the right, size-1 and missing dims repeat; the camera may not enlarge L): for
points (B, T, J, 3), camera (B, T, 9) is one per frame, (B, 1, 9) one per sequence, (T, 9) one per
frame index, (9,) one for all. No backend materialises the broadcast camera over the points.
reprojection_loss = mean over leading dims and joints of w * ||uv - keypoints_2d||_2 (2D MPJPE).
"""

from __future__ import annotations

import torch
from torch import Tensor

from ..reference import projection as _ref
from ._dispatch import register_impl, select_backend
from ._spec import validate

__all__ = ["project_to_2d", "reprojection_loss"]


def project_to_2d(points: Tensor, camera: Tensor, *, backend: str | None = None) -> Tensor:
    """Project camera-frame points (*L, J, 3) with distortion through camera (*C, 9) -> (*L, J, 2);
    C broadcasts to L (torch's rule, see the module doc)."""
    args = validate("project_to_2d", points, camera)
    return select_backend("project_to_2d", args[0], args, backend).fn(*args)


def reprojection_loss(points: Tensor, camera: Tensor, keypoints_2d: Tensor, weights: Tensor | None = None,
                      *, backend: str | None = None) -> Tensor:
    """Mean (optionally weighted) Euclidean 2D error of the projection of ``points`` against
    ``keypoints_2d`` (..., J, 2); weights (..., J) or None. Differentiable w.r.t. ``points``."""
    args = validate("reprojection_loss", points, camera, keypoints_2d, weights)
    return select_backend("reprojection_loss", args[0], args, backend).fn(*args)


@torch.library.custom_op("fastpose::project_to_2d_reference", mutates_args=())
def _proj_ref(points: Tensor, camera: Tensor) -> Tensor:
    return _ref.project_to_2d(points, camera)


@_proj_ref.register_fake
def _(points, camera):
    return points.new_empty((*points.shape[:-1], 2))


@torch.library.custom_op("fastpose::project_to_2d_reference_backward", mutates_args=())
def _proj_ref_bwd(grad: Tensor, points: Tensor, camera: Tensor) -> Tensor:
    return _ref.project_to_2d_backward(grad, points, camera)


@_proj_ref_bwd.register_fake
def _(grad, points, camera):
    return torch.empty_like(points)


def _proj_setup(ctx, inputs, output):
    ctx.save_for_backward(*inputs)


def _proj_backward(ctx, grad):
    points, camera = ctx.saved_tensors
    return _proj_ref_bwd(grad.contiguous(), points, camera), None


_proj_ref.register_autograd(_proj_backward, setup_context=_proj_setup)


@torch.library.custom_op("fastpose::reprojection_loss_reference", mutates_args=())
def _reproj_ref(points: Tensor, camera: Tensor, keypoints_2d: Tensor, weights: Tensor | None) -> Tensor:
    return _ref.reprojection_loss(points, camera, keypoints_2d, weights)


@_reproj_ref.register_fake
def _(points, camera, keypoints_2d, weights):
    return points.new_empty(())


@torch.library.custom_op("fastpose::reprojection_loss_reference_backward", mutates_args=())
def _reproj_ref_bwd(grad: Tensor, points: Tensor, camera: Tensor, keypoints_2d: Tensor,
                    weights: Tensor | None) -> Tensor:
    return _ref.reprojection_loss_backward(grad, points, camera, keypoints_2d, weights)


@_reproj_ref_bwd.register_fake
def _(grad, points, camera, keypoints_2d, weights):
    return torch.empty_like(points)


def _reproj_setup(ctx, inputs, output):
    points, camera, kp, weights = inputs
    ctx.has_w = weights is not None
    ctx.save_for_backward(points, camera, kp, weights if weights is not None else kp)


def _reproj_backward(ctx, grad):
    points, camera, kp, weights = ctx.saved_tensors
    g = _reproj_ref_bwd(grad.contiguous(), points, camera, kp, weights if ctx.has_w else None)
    return g, None, None, None


_reproj_ref.register_autograd(_reproj_backward, setup_context=_reproj_setup)

register_impl("project_to_2d", "reference", _proj_ref, devices=None)
register_impl("reprojection_loss", "reference", _reproj_ref, devices=None)
