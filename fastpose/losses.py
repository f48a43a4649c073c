"""Pose metrics and losses (the semantics of VideoPose3D's ``common/loss.py``, batched in torch).

All functions take tensors of shape (..., J, C) (C = 3 for 3D poses, 2 for 2D keypoints), run on
the tensors' device, are differentiable and return a tensor in the input's dtype (float16 and
bfloat16 are computed in float32). ``reduction="mean"`` (the default, as in VideoPose3D) averages
over everything; ``reduction="none"`` returns per-pose errors averaged over the joints, of shape
(...) (for the velocity and bone losses, (..., T - 1, ...) per pair of consecutive frames), which is
what per-action evaluation needs (frame-weighted means within an action). A mean over nothing (an
empty batch, a single frame for the temporal losses) is 0, not NaN, as for :mod:`fastpose.ops`.

=====================  ====================================================================
``mpjpe``              mean |P - Q|_2 (Protocol #1)
``weighted_mpjpe``     mean w |P - Q|_2
``p_mpjpe``            mpjpe after the best similarity transform (scale, rotation, translation,
                       no reflection) of the prediction onto the target (Protocol #2)
``n_mpjpe``            mpjpe after the best scale of the prediction
``mean_velocity_error``  mean |dP/dt - dQ/dt|_2 with finite differences along the time axis
``bone_length_loss``   mean | |bone_t| - |bone_{t-1}| | between consecutive frames (SPGNet eq. 2)
=====================  ====================================================================
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from fastpose.reference._rows import acc_dtype

__all__ = [
    "H36M_PARENTS",
    "mpjpe",
    "weighted_mpjpe",
    "p_mpjpe",
    "n_mpjpe",
    "mean_velocity_error",
    "bone_length_loss",
]

#: Parent of each of the 17 Human3.6M joints (-1: the root, the pelvis).
H36M_PARENTS: tuple[int, ...] = (-1, 0, 1, 2, 0, 4, 5, 0, 7, 8, 9, 8, 11, 12, 8, 14, 15)

_REDUCTIONS = ("mean", "none")


# ----------------------------------------------------------------------------- helpers


def _check_tensor(fn: str, name: str, x: object, min_dim: int, layout: str = "(..., J, C)") -> None:
    """A floating tensor with at least ``min_dim`` dims, else TypeError/ValueError naming it."""
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{fn}: argument '{name}' must be a torch.Tensor, received {type(x).__name__}")
    if not x.is_floating_point():
        raise TypeError(
            f"{fn}: argument '{name}' must be a floating tensor (float16/bfloat16/float32/float64), "
            f"received dtype {x.dtype}"
        )
    if x.dim() < min_dim:
        raise ValueError(
            f"{fn}: argument '{name}' must have at least {min_dim} dims {layout}, "
            f"received shape {tuple(x.shape)}"
        )


def _check_pair(fn: str, predicted: object, target: object) -> None:
    """predicted (..., J, C) and target of exactly the same shape, on the same device."""
    _check_tensor(fn, "predicted", predicted, 2)
    _check_tensor(fn, "target", target, 2)
    if target.shape != predicted.shape:
        raise ValueError(
            f"{fn}: argument 'target' must have the shape of 'predicted': expected "
            f"{tuple(predicted.shape)}, received {tuple(target.shape)}"
        )
    if target.device != predicted.device:
        raise ValueError(
            f"{fn}: argument 'target' must be on the device of 'predicted': expected "
            f"{predicted.device}, received {target.device}"
        )


def _check_reduction(fn: str, reduction: str) -> None:
    if reduction not in _REDUCTIONS:
        raise ValueError(f"{fn}: argument 'reduction' must be one of {_REDUCTIONS}, received {reduction!r}")


def _norm(e: torch.Tensor) -> torch.Tensor:
    """|e|_2 over the last dim, (..., C) -> (...), with gradient 0 (not NaN) where e = 0.

    A NaN anywhere in e gives NaN (not 0): a diverged prediction must show as NaN, never as a
    perfect score.
    """
    sq = (e * e).sum(dim=-1)  # (...)
    pos = sq > 0  # (...) False for 0 and for NaN
    safe = torch.where(pos, sq, torch.ones_like(sq))  # (...) the sqrt never sees 0
    return torch.where(pos, torch.sqrt(safe), sq)  # (...) sq is 0 (gradient 0) or NaN there


def _mean(x: torch.Tensor) -> torch.Tensor:
    """Mean over all elements; 0 (not NaN) for an empty tensor."""
    return x.sum() / max(x.numel(), 1)  # ()


def _reduce(err: torch.Tensor, reduction: str, joint_dim: int = -1) -> torch.Tensor:
    """err (..., J) per-joint errors -> () "mean" or (...) per-pose mean over ``joint_dim``."""
    if reduction == "mean":
        return _mean(err)  # ()
    n = err.shape[joint_dim]
    return err.sum(dim=joint_dim) / max(n, 1)  # (...) per-pose mean over the joints


# ----------------------------------------------------------------------------- metrics


def mpjpe(predicted: torch.Tensor, target: torch.Tensor, reduction: str = "mean") -> torch.Tensor:
    """Mean per-joint position error (Protocol #1)::

        mpjpe = mean_{..., j} |predicted_{..., j} - target_{..., j}|_2

    predicted, target (..., J, C). Returns () for "mean", (...) per-pose means for "none".
    """
    _check_pair("mpjpe", predicted, target)
    _check_reduction("mpjpe", reduction)
    acc = acc_dtype(predicted.dtype)
    err = _norm(predicted.to(acc) - target.to(acc))  # (..., J)
    return _reduce(err, reduction).to(predicted.dtype)


def weighted_mpjpe(
    predicted: torch.Tensor, target: torch.Tensor, w: torch.Tensor, reduction: str = "mean"
) -> torch.Tensor:
    """Weighted MPJPE::

        weighted_mpjpe = mean_{..., j} w_{..., j} |predicted_{..., j} - target_{..., j}|_2

    predicted, target (..., J, C); w broadcastable to (..., J) (e.g. (N, T, J) or (N, 1, 1)), not
    differentiated through by convention (it may still require grad). Returns () for "mean", (...)
    for "none" (mean over the joints; the normaliser is the count, not the sum of weights, as in
    VideoPose3D).
    """
    fn = "weighted_mpjpe"
    _check_pair(fn, predicted, target)
    _check_tensor(fn, "w", w, 0)
    _check_reduction(fn, reduction)
    err_shape = predicted.shape[:-1]  # (..., J)
    try:
        bshape = torch.broadcast_shapes(w.shape, err_shape)
    except RuntimeError:
        bshape = None
    if bshape != err_shape:
        raise ValueError(
            f"{fn}: argument 'w' must broadcast to the per-joint error shape {tuple(err_shape)} "
            f"(predicted.shape[:-1]), received {tuple(w.shape)}"
        )
    if w.device != predicted.device:
        raise ValueError(
            f"{fn}: argument 'w' must be on the device of 'predicted': expected {predicted.device}, "
            f"received {w.device}"
        )
    acc = acc_dtype(predicted.dtype)
    err = w.to(acc) * _norm(predicted.to(acc) - target.to(acc))  # (..., J)
    return _reduce(err, reduction).to(predicted.dtype)


def _similarity_align(predicted: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Best similarity transform of ``predicted`` onto ``target`` (both (..., J, C), one dtype,
    finite).

    Minimises |a Y R + t - X|_F over scale a, rotation R (det +1) and translation t, with
    X = target and Y = predicted as row vectors (Umeyama / orthogonal Procrustes)::

        X0 = X - mean_j X,  Y0 = Y - mean_j Y                 (..., J, C)
        H  = Y0^T X0 = U diag(S) Vh                          (..., C, C)
        d  = sign det(U Vh)     (-1: the unconstrained optimum is a reflection)
        R  = U diag(1, .., 1, d) Vh                          fix the last singular vector
        a  = tr(R^T H) / |Y0|_F^2  (= (S_1 + .. + d S_C) / |Y0|_F^2; 0 for a collapsed Y)
        aligned = a Y0 R + mean_j X

    Degenerate poses (Y or X collapsed to a point, collinear, any repeated singular value of H)
    have a well-defined aligned pose but no unique R, and the SVD's backward divides by
    S_i^2 - S_j^2. For those poses R is taken from the SVD without gradient (any optimal R gives
    the same aligned pose), so the gradient stays finite; elsewhere the SVD is differentiated as
    usual. ``a`` is written as tr(R^T H) / |Y0|^2, whose gradient in H is R by Danskin's theorem
    whether or not R carries a gradient.
    """
    mu_x = target.mean(dim=-2, keepdim=True)  # (..., 1, C)
    mu_y = predicted.mean(dim=-2, keepdim=True)  # (..., 1, C)
    x0 = target - mu_x  # (..., J, C)
    y0 = predicted - mu_y  # (..., J, C)
    h = y0.transpose(-1, -2) @ x0  # (..., C, C)
    c = h.shape[-1]
    eps = torch.finfo(h.dtype).eps
    with torch.no_grad():
        s0 = torch.linalg.svdvals(h)  # (..., C) descending
        s2 = s0 * s0
        gap_tol = eps**0.5 * s2[..., :1]  # (..., 1) relative tie tolerance of the squared values
        ties = (s2[..., :-1] - s2[..., 1:] <= gap_tol).any(dim=-1)  # (...) empty for C = 1: False
        degenerate = ties | (s0[..., 0] == 0)  # (...)
    # the SVD sees a detached H where it is degenerate: its backward (NaN/inf there) is masked
    # out by the torch.where below, which never lets a non-finite gradient reach H
    h_in = torch.where(degenerate[..., None, None], h.detach(), h)  # (..., C, C)
    u, _, vh = torch.linalg.svd(h_in, full_matrices=False)  # (..., C, C), (..., C, C)
    det = torch.linalg.det(u @ vh).detach()  # (...) +1 or -1 (the product of two orthogonal matrices)
    d = torch.where(det < 0, -torch.ones_like(det), torch.ones_like(det))  # (...)
    flip = torch.cat([torch.ones_like(d).unsqueeze(-1).expand(*d.shape, c - 1), d.unsqueeze(-1)], dim=-1)  # (..., C)
    rot = (u * flip.unsqueeze(-2)) @ vh  # (..., C, C) U diag(flip) Vh, det +1
    num = (rot * h).sum(dim=(-2, -1))  # (...) tr(R^T H) = S_1 + .. + d S_C
    norm_y2 = (y0 * y0).sum(dim=(-2, -1))  # (...) |Y0|_F^2
    norm_x2 = (x0 * x0).sum(dim=(-2, -1))  # (...) |X0|_F^2
    # a prediction collapsed to a point (|Y0| below eps * |X0|, or 0) gets scale 0: its aligned
    # pose is the target's centroid, and dividing by ~0 would give an infinite gradient
    collapsed = norm_y2 <= (eps * eps) * norm_x2.detach() + torch.finfo(h.dtype).tiny  # (...)
    den = torch.where(collapsed, torch.ones_like(norm_y2), norm_y2)  # (...)
    scale = torch.where(collapsed, torch.zeros_like(num), num / den)  # (...) a
    return scale[..., None, None] * (y0 @ rot) + mu_x  # (..., J, C)


def p_mpjpe(predicted: torch.Tensor, target: torch.Tensor, reduction: str = "mean") -> torch.Tensor:
    """MPJPE after similarity (Procrustes) alignment of each predicted pose to its target
    (Protocol #2): scale, rotation and translation, no reflection.

    predicted, target (..., J, C) (C = 3 normally; any C >= 1 works). Batched with
    ``torch.linalg.svd`` on the tensors' device; differentiable and usable in float64.

    Never raises on bad values: a pose with a NaN or infinite coordinate (in the prediction or
    its target) scores NaN (the other poses are unaffected with ``reduction="none"``); a finite
    degenerate prediction (all joints at one point, collinear joints, zero scale) gets its
    exact aligned error and a finite gradient (see :func:`_similarity_align`). A diverged model
    therefore shows as NaN in an evaluation instead of stopping it with ``LinAlgError``.
    Returns () for "mean", (...) for "none".
    """
    _check_pair("p_mpjpe", predicted, target)
    _check_reduction("p_mpjpe", reduction)
    acc = acc_dtype(predicted.dtype)
    pred, tgt = predicted.to(acc), target.to(acc)  # (..., J, C)
    if pred.shape[:-2].numel() == 0 or pred.shape[-2] == 0:
        err = _norm(pred - tgt)  # (..., J) empty: nothing to align
    else:
        finite = (torch.isfinite(pred) & torch.isfinite(tgt)).all(dim=-1).all(dim=-1)  # (...)
        ok = finite[..., None, None]  # (..., 1, 1)
        pred_s = torch.where(ok, pred, torch.zeros_like(pred))  # (..., J, C) the SVD sees finite values
        tgt_s = torch.where(ok, tgt, torch.zeros_like(tgt))
        err = _norm(_similarity_align(pred_s, tgt_s) - tgt_s)  # (..., J)
        err = torch.where(finite[..., None], err, torch.full_like(err, float("nan")))  # NaN pose -> NaN
    return _reduce(err, reduction).to(predicted.dtype)


def n_mpjpe(predicted: torch.Tensor, target: torch.Tensor, reduction: str = "mean") -> torch.Tensor:
    """MPJPE after the least-squares scale of each predicted pose (no rotation/translation)::

        s = sum_j <predicted_j, target_j> / sum_j |predicted_j|^2      per pose (...)
        n_mpjpe = mpjpe(s * predicted, target)

    predicted, target (..., J, C). Returns () for "mean", (...) for "none".
    """
    _check_pair("n_mpjpe", predicted, target)
    _check_reduction("n_mpjpe", reduction)
    acc = acc_dtype(predicted.dtype)
    pred, tgt = predicted.to(acc), target.to(acc)  # (..., J, C)
    num = (pred * tgt).sum(dim=(-2, -1), keepdim=True)  # (..., 1, 1)
    den = (pred * pred).sum(dim=(-2, -1), keepdim=True)  # (..., 1, 1)
    scale = num / den.clamp_min(torch.finfo(acc).tiny)  # (..., 1, 1) (0 for an all-zero pose)
    err = _norm(scale * pred - tgt)  # (..., J)
    return _reduce(err, reduction).to(predicted.dtype)


def _time_dim(fn: str, x: torch.Tensor, dim: int) -> int:
    """Normalise the time axis; it must be one of the leading dims of (..., T, .., J, C)."""
    nd = x.dim()
    d = dim + nd if dim < 0 else dim
    if not 0 <= d < nd - 2:
        raise ValueError(
            f"{fn}: argument 'dim' must name a leading (time) axis of 'predicted' with shape "
            f"{tuple(x.shape)} (one of {-nd}..{-3} or 0..{nd - 3}), received {dim}"
        )
    return d


def mean_velocity_error(
    predicted: torch.Tensor, target: torch.Tensor, dim: int = -3, reduction: str = "mean"
) -> torch.Tensor:
    """Mean per-joint velocity error (MPJVE)::

        v_t = x_{t+1} - x_t   along the time axis ``dim``
        mpjve = mean |v_pred - v_target|_2

    predicted, target (..., T, .., J, C); ``dim`` (default -3: (T, J, C) as in VideoPose3D, or
    (N, T, J, C)) must be a leading axis. Returns () for "mean" (0 if T < 2), or for "none" the
    per-frame-pair means over joints, of shape (...) with T replaced by T - 1.
    """
    fn = "mean_velocity_error"
    _check_pair(fn, predicted, target)
    _check_reduction(fn, reduction)
    d = _time_dim(fn, predicted, dim)
    acc = acc_dtype(predicted.dtype)
    diff = predicted.to(acc) - target.to(acc)  # (..., T, .., J, C) v_p - v_t = d(pred - target)
    vel = torch.diff(diff, dim=d)  # (..., T-1, .., J, C)
    err = _norm(vel)  # (..., T-1, .., J)
    return _reduce(err, reduction).to(predicted.dtype)


def bone_length_loss(
    predicted: torch.Tensor,
    parents: Sequence[int] = H36M_PARENTS,
    dim: int = -3,
    reduction: str = "mean",
) -> torch.Tensor:
    """Kinematic (bone-length) consistency between consecutive frames (SPGNet eq. 2)::

        l_{t,b} = |P_{t,b} - P_{t,parent(b)}|_2        for every joint b with a parent
        loss    = mean_{t,b} | l_{t,b} - l_{t-1,b} |

    0 for a skeleton that moves rigidly. predicted (..., T, .., J, 3); ``parents`` has one entry per
    joint (-1 for a root; default the 17 Human3.6M joints); ``dim`` (default -3) the time axis.
    Returns () for "mean" (0 if T < 2 or there are no bones), or for "none" the per-frame-pair
    means over bones, of shape (...) with T replaced by T - 1.
    """
    fn = "bone_length_loss"
    _check_tensor(fn, "predicted", predicted, 3, "(..., T, J, 3)")
    _check_reduction(fn, reduction)
    d = _time_dim(fn, predicted, dim)
    n_joints = predicted.shape[-2]
    parents = [int(p) for p in parents]
    if len(parents) != n_joints:
        raise ValueError(
            f"{fn}: argument 'parents' must have one entry per joint of 'predicted' (expected "
            f"{n_joints}), received {len(parents)}"
        )
    for j, p in enumerate(parents):
        if p == j or not -1 <= p < n_joints:
            raise ValueError(
                f"{fn}: argument 'parents' must hold -1 (root) or another joint index in "
                f"[0, {n_joints}), received parents[{j}] = {p}"
            )
    child = [j for j, p in enumerate(parents) if p >= 0]  # joints that end a bone
    parent = [parents[j] for j in child]
    acc = acc_dtype(predicted.dtype)
    pts = predicted.to(acc)  # (..., T, .., J, 3)
    idx_c = torch.tensor(child, device=pts.device, dtype=torch.long)  # (nb,)
    idx_p = torch.tensor(parent, device=pts.device, dtype=torch.long)  # (nb,)
    bones = pts.index_select(-2, idx_c) - pts.index_select(-2, idx_p)  # (..., T, .., nb, 3)
    length = _norm(bones)  # (..., T, .., nb)
    change = torch.diff(length, dim=d).abs()  # (..., T-1, .., nb)
    return _reduce(change, reduction).to(predicted.dtype)
