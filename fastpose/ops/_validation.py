"""Input validation shared by the public ops.

Every check raises ``ValueError`` (``TypeError`` for non-tensors) whose message names the op,
the argument, what was expected and what was received, before any kernel runs.
"""

from __future__ import annotations

import torch

from ..reference._rows import acc_dtype

__all__: list[str] = []

_FLOATS = (torch.float16, torch.bfloat16, torch.float32, torch.float64)


def _shape(t: torch.Tensor) -> str:
    return "(" + ", ".join(str(s) for s in t.shape) + ")"


def main_tensor(op: str, name: str, t: object, ndim: int | None = None, min_ndim: int | None = None,
                last: int | None = None) -> torch.Tensor:
    """Check the op's first argument: a floating tensor of the given rank (or at least ``min_ndim``)."""
    if not isinstance(t, torch.Tensor):
        raise TypeError(f"{op}: {name} must be a torch.Tensor, got {type(t).__name__}")
    if t.dtype not in _FLOATS:
        raise ValueError(
            f"{op}: {name} must be float16, bfloat16, float32 or float64, got dtype {t.dtype}"
        )
    if ndim is not None and t.dim() != ndim:
        raise ValueError(f"{op}: {name} must have {ndim} dimensions, got shape {_shape(t)}")
    if min_ndim is not None and t.dim() < min_ndim:
        raise ValueError(
            f"{op}: {name} must have at least {min_ndim} dimensions, got shape {_shape(t)}"
        )
    if last is not None and t.shape[-1] != last:
        raise ValueError(f"{op}: {name} must have last dimension {last}, got shape {_shape(t)}")
    return t


def secondary(op: str, name: str, t: object, main: torch.Tensor, shape: tuple[int, ...],
              main_name: str) -> torch.Tensor:
    """Check a secondary float tensor (exact ``shape``, same device, no grad) and cast it."""
    if not isinstance(t, torch.Tensor):
        raise TypeError(f"{op}: {name} must be a torch.Tensor, got {type(t).__name__}")
    if not t.is_floating_point():
        raise ValueError(f"{op}: {name} must be a floating tensor, got dtype {t.dtype}")
    if tuple(t.shape) != tuple(shape):
        exp = "(" + ", ".join(str(s) for s in shape) + ")"
        raise ValueError(
            f"{op}: {name} must have shape {exp} to match {main_name} {_shape(main)}, got {_shape(t)}"
        )
    same_device(op, name, t, main_name, main)
    no_grad(op, name, t)
    # targets (joints, keypoints, weights) in the accumulation dtype, never rounded to half precision:
    # a joint at 63.4 voxels in bfloat16 would move by up to 0.25 voxel
    return t.to(acc_dtype(main.dtype))


def same_device(op: str, name: str, t: torch.Tensor, main_name: str, main: torch.Tensor) -> None:
    if t.device != main.device:
        raise ValueError(
            f"{op}: {name} must be on the same device as {main_name} ({main.device}), got {t.device}"
        )


def no_grad(op: str, name: str, t: torch.Tensor) -> None:
    """Targets are constants: a gradient for them would be silently dropped, so refuse instead."""
    if t.requires_grad and torch.is_grad_enabled():
        raise ValueError(
            f"{op}: {name} requires grad, but gradients flow only to the op's first argument; "
            f"pass {name}.detach() if it is a target"
        )


def sigma_value(op: str, sigma: object) -> float:
    if isinstance(sigma, torch.Tensor):
        if sigma.numel() != 1:
            raise ValueError(f"{op}: sigma must be a positive scalar, got a tensor of shape {_shape(sigma)}")
        sigma = sigma.item()
    if isinstance(sigma, bool) or not isinstance(sigma, (int, float)):
        raise TypeError(f"{op}: sigma must be a positive float (voxels), got {type(sigma).__name__}")
    sigma = float(sigma)
    if not sigma > 0.0 or sigma == float("inf"):
        raise ValueError(f"{op}: sigma must be a finite float > 0 (voxels), got {sigma}")
    return sigma


def reduction_value(op: str, reduction: object) -> str:
    if reduction not in ("mean", "sum", "none"):
        raise ValueError(f"{op}: reduction must be 'mean', 'sum' or 'none', got {reduction!r}")
    return reduction  # type: ignore[return-value]


def camera_tensor(op: str, camera: object, points: torch.Tensor) -> torch.Tensor:
    """camera (*C, 9) whose leading dims broadcast (torch's rule: aligned from the right, size-1 or
    missing dims repeat) to the points' leading dims L = ``points.shape[:-2]`` without enlarging
    them: broadcast_shapes(C, L) == L."""
    if not isinstance(camera, torch.Tensor):
        raise TypeError(f"{op}: camera must be a torch.Tensor, got {type(camera).__name__}")
    if not camera.is_floating_point():
        raise ValueError(f"{op}: camera must be a floating tensor, got dtype {camera.dtype}")
    lead = tuple(points.shape[:-2])
    cam_lead = tuple(camera.shape[:-1])
    if camera.dim() < 1 or camera.shape[-1] != 9:
        raise ValueError(
            f"{op}: camera must have shape (..., 9) = (fx, fy, cx, cy, k1, k2, k3, p_a, p_b), "
            f"got {_shape(camera)}"
        )
    aligned = (1,) * (len(lead) - len(cam_lead)) + cam_lead
    if len(cam_lead) > len(lead) or any(c not in (1, n) for c, n in zip(aligned, lead, strict=True)):
        hint = ""
        if 0 < len(cam_lead) < len(lead) and cam_lead == lead[: len(cam_lead)]:
            per = "(" + ", ".join(str(d) for d in (*cam_lead, *(1,) * (len(lead) - len(cam_lead)), 9)) + ")"
            hint = (f"; for one camera per leading index of points pass camera of shape {per} "
                    f"(camera.reshape{per})")
        raise ValueError(
            f"{op}: camera's leading dims must broadcast to points' leading dims {lead} (points "
            f"{_shape(points)}) by torch's rule (aligned from the right; each camera dim 1 or equal; "
            f"no extra dims), got camera {_shape(camera)}{hint}"
        )
    same_device(op, "camera", camera, "points", points)
    no_grad(op, "camera", camera)
    return camera.to(acc_dtype(points.dtype))


def camera_ok(camera: torch.Tensor, points: torch.Tensor) -> bool:
    """Whether :func:`camera_tensor` accepts the tensor ``camera`` for ``points``: its checks as one
    boolean, without building messages (the hot path of ``fastpose.ops._spec.validate``)."""
    if not camera.is_floating_point() or camera.dim() < 1 or camera.shape[-1] != 9:
        return False
    lead = points.shape[:-2]
    cam_lead = camera.shape[:-1]
    k = len(lead) - len(cam_lead)
    if k < 0:
        return False
    for c, n in zip(cam_lead, lead[k:], strict=True):
        if c != 1 and c != n:
            return False
    return camera.device == points.device and not (camera.requires_grad and torch.is_grad_enabled())
