"""Peer-style providers: the code users of VideoPose3D, 3DMPPE and MMPose run today, written for
these benchmarks from the published formulas (no peer code is copied), eager and under
``torch.compile``.

Every peer function takes the op's own arguments (or arguments prepared from them untimed, see
``prepare``) and returns the op's outputs, so the harness times and checks it exactly like a
fastpose backend: the outputs and the gradient are compared with float64 reference math in the CI
pass (``--benchmark-disable``).

Providers (not every op has each one):

- ``peer``: the peer pattern, eager. For the heatmap losses the Gaussian target is *precomputed*
  (as MMPose's data pipeline does, in its workers): it is built once, untimed, from the joints.
- ``peer-compiled``: the same function under ``torch.compile(dynamic=False)``.
- ``peer+target`` / ``peer+target-compiled``: the heatmap losses with the target generated inside
  the timed step, on the device (what a GPU training loop without a data-pipeline target does).
- ``peer-target``: target generation alone (forward mode only: no gradient).

The patterns followed (cited at each function):

- volumetric soft-argmax: 3DMPPE ``mks0601/3DMPPE_POSENET_RELEASE``, ``main/model.py``
  ``soft_argmax``: softmax over the flattened volume, then per-axis marginals (sums over the other
  two axes) dotted with the voxel index; its coordinate L1 loss acts on the (B, J, 3) output, which
  every provider shares (its gradient is the coordinate cotangent of the step);
- 2D soft-argmax: MMPose integral regression (``mmpose/models/heads/regression_heads/
  integral_regression_head.py``: ``_flat_softmax`` + ``_linear_expectation``, L1 on the output);
- heatmap MSE: MMPose ``KeypointMSELoss`` (``mmpose/models/losses/heatmap_loss.py``) with
  ``use_target_weight``: ``mean(w_bj * (h - t)^2)`` over B*J*voxels, against a materialised target;
- Gaussian target: MMPose's unbiased (sub-pixel centred) Gaussian,
  ``mmpose/codecs/utils/gaussian_heatmap.py: generate_unbiased_gaussian_heatmaps`` (2D) and the 3D
  heatmap target of ``generate_3d_gaussian_heatmaps``: ``t_v = exp(-|v - mu|^2 / (2 sigma^2))``
  with a peak of 1. MMPose builds it per keypoint in numpy (and truncates at 3 sigma); here it is
  built for the whole batch on the device and untruncated, which is fastpose's target: the numbers
  can then be compared exactly;
- projection: VideoPose3D ``facebookresearch/VideoPose3D``, ``common/camera.py: project_to_2d``
  (camera (N, 9) unsqueezed to the points' rank; clamp, radial + tangential distortion) and
  ``common/loss.py: mpjpe`` (mean Euclidean distance over joints and leading dims).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from fastpose.ops._spec import SPECS

__all__ = [
    "PEER_PROVIDERS",
    "PeerRow",
    "TemporalModelOptimized1f",
    "check_target",
    "gaussian_target",
    "peer_providers_for",
    "peer_row",
]

PEER_PROVIDERS = ("peer", "peer-compiled", "peer+target", "peer+target-compiled", "peer-target")



def _is_target_op(op: str) -> bool:
    """Whether ``op`` compares with a Gaussian target built from its joints (its declaration has a
    ``sigma`` argument: the heatmap losses and the fused heads), i.e. has the ``peer+target`` rows."""
    return any(a.kind == "sigma" for a in SPECS[op].args)


def _takes_camera(op: str) -> bool:
    """Whether ``op`` takes a camera argument (VideoPose3D's (rows, 9) layout is prepared for it)."""
    return any(a.kind == "camera" for a in SPECS[op].args)


# ------------------------------------------------------------------------------------------------
# The peer patterns
# ------------------------------------------------------------------------------------------------
def _flat_softmax(logits: torch.Tensor, ndim: int) -> torch.Tensor:
    """softmax over the ``ndim`` spatial axes of (B, J, *S), as one softmax over the flattened map
    (3DMPPE ``soft_argmax``; MMPose ``_flat_softmax``). float32 (half inputs are upcast, as the
    peers do under autocast)."""
    z = logits.float() if logits.dtype in (torch.float16, torch.bfloat16) else logits
    spatial = z.shape[-ndim:]
    p = F.softmax(z.reshape(*z.shape[:-ndim], -1), dim=-1)  # (B, J, V)
    return p.reshape(*z.shape[:-ndim], *spatial)  # (B, J, *S)


def soft_argmax_3d(logits: torch.Tensor) -> torch.Tensor:
    """3DMPPE soft-argmax (``main/model.py: soft_argmax``): (B, J, D, H, W) -> (B, J, 3) = (x, y, z)
    in voxel index units. Marginals accu_x = sum over (D, H) (B, J, W), accu_y over (D, W),
    accu_z over (H, W), each dotted with the index. 3DMPPE dots with 1..S and subtracts 1; with
    probabilities summing to 1 that is the 0-based index used here."""
    p = _flat_softmax(logits, 3)  # (B, J, D, H, W)
    d, h, w = p.shape[-3:]
    accu_x = p.sum(dim=(2, 3))  # (B, J, W)
    accu_y = p.sum(dim=(2, 4))  # (B, J, H)
    accu_z = p.sum(dim=(3, 4))  # (B, J, D)
    x = (accu_x * torch.arange(w, device=p.device, dtype=p.dtype)).sum(-1, keepdim=True)  # (B, J, 1)
    y = (accu_y * torch.arange(h, device=p.device, dtype=p.dtype)).sum(-1, keepdim=True)
    z = (accu_z * torch.arange(d, device=p.device, dtype=p.dtype)).sum(-1, keepdim=True)
    return torch.cat((x, y, z), dim=-1).to(logits.dtype)  # (B, J, 3)


def soft_argmax_2d(logits: torch.Tensor) -> torch.Tensor:
    """MMPose integral regression (``_flat_softmax`` + ``_linear_expectation``): (B, J, H, W) ->
    (B, J, 2) = (x, y) in pixel index units. The probability map is multiplied by a broadcast index
    ramp along W (then along H) and summed over the whole map. MMPose's ramps are divided by W / H
    (normalised coordinates); here they are not, so the units match fastpose's."""
    p = _flat_softmax(logits, 2)  # (B, J, H, W)
    h, w = p.shape[-2:]
    ramp_x = torch.arange(w, device=p.device, dtype=p.dtype).reshape(1, 1, 1, w)
    ramp_y = torch.arange(h, device=p.device, dtype=p.dtype).reshape(1, 1, h, 1)
    x = (p * ramp_x).flatten(2).sum(-1, keepdim=True)  # (B, J, 1)
    y = (p * ramp_y).flatten(2).sum(-1, keepdim=True)  # (B, J, 1)
    return torch.cat((x, y), dim=-1).to(logits.dtype)  # (B, J, 2)


def gaussian_target(joints: torch.Tensor, sigma: float, spatial: tuple[int, ...]) -> torch.Tensor:
    """MMPose's unbiased Gaussian target, materialised: joints (B, J, n) ordered (x, y[, z]) in
    voxel units, ``spatial`` = (H, W) or (D, H, W) -> (B, J, *spatial) float32 (float64 for float64
    joints), ``t_v = exp(-sum_k (v_k - mu_k)^2 / (2 sigma^2))``, peak 1 at the sub-voxel centre.
    The squared distance is summed over broadcast per-axis terms, as MMPose's ``(x - mu_x)^2 +
    (y - mu_y)^2`` over an ``x`` row and a ``y`` column."""
    n = len(spatial)
    if joints.shape[-1] != n:
        raise ValueError(f"gaussian_target: joints must have {n} coordinates for spatial {spatial}, "
                         f"received shape {tuple(joints.shape)}")
    dt = torch.float64 if joints.dtype == torch.float64 else torch.float32
    mu = joints.to(dt)
    sq = None  # (B, J, *spatial) after the loop
    for k in range(n):  # coordinate k (x, y, z) lives on array axis n - 1 - k
        axis = n - 1 - k
        size = spatial[axis]
        d = torch.arange(size, device=joints.device, dtype=dt) - mu[..., k : k + 1]  # (B, J, S_axis)
        d = d.reshape(*d.shape[:-1], *([1] * axis), size, *([1] * (n - 1 - axis)))
        sq = d * d if sq is None else sq + d * d
    return torch.exp(sq * (-0.5 / (sigma * sigma)))


def keypoint_mse(heatmaps: torch.Tensor, target: torch.Tensor, weights: torch.Tensor | None) -> torch.Tensor:
    """MMPose ``KeypointMSELoss(use_target_weight=True)``: ``mean(mse(h, t, 'none') * w)`` with
    w (B, J) viewed as (B, J, 1, .., 1); the mean runs over B*J*voxels. Result () float32."""
    h = heatmaps.float() if heatmaps.dtype in (torch.float16, torch.bfloat16) else heatmaps
    loss = F.mse_loss(h, target.to(h.dtype), reduction="none")  # (B, J, *S)
    if weights is not None:
        loss = loss * weights.to(h.dtype).reshape(*weights.shape, *([1] * (h.dim() - weights.dim())))
    return loss.mean()


def project_to_2d(points: torch.Tensor, camera: torch.Tensor) -> torch.Tensor:
    """VideoPose3D ``common/camera.py: project_to_2d``: points (N, *, 3), camera (N, 9) unsqueezed
    at dim 1 until its rank matches; XX = clamp(xy / z, -1, 1), r2 = |XX|^2,
    radial = 1 + k . (r2, r2^2, r2^3), tan = p . XX, out = f * (XX (radial + tan) + p r2) + c."""
    if camera.dim() != 2 or camera.shape[-1] != 9 or camera.shape[0] != points.shape[0]:
        raise ValueError(f"project_to_2d (VideoPose3D): camera must be (N, 9) with N = points.shape[0], "
                         f"received {tuple(camera.shape)} for points {tuple(points.shape)}")
    cam = camera
    while cam.dim() < points.dim():
        cam = cam.unsqueeze(1)
    f, c, k, p = cam[..., :2], cam[..., 2:4], cam[..., 4:7], cam[..., 7:]
    xx = torch.clamp(points[..., :2] / points[..., 2:], min=-1, max=1)
    r2 = torch.sum(xx**2, dim=-1, keepdim=True)
    radial = 1 + torch.sum(k * torch.cat((r2, r2**2, r2**3), dim=-1), dim=-1, keepdim=True)
    tan = torch.sum(p * xx, dim=-1, keepdim=True)
    return f * (xx * (radial + tan) + p * r2) + c


def mpjpe(predicted: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """VideoPose3D ``common/loss.py: mpjpe``: mean over every leading dim and joint of the
    Euclidean distance along the last axis."""
    return torch.mean(torch.norm(predicted - target, dim=-1))


# ------------------------------------------------------------------------------------------------
# The op-shaped callables the harness times
# ------------------------------------------------------------------------------------------------
def _spatial(x: torch.Tensor, joints: torch.Tensor) -> tuple[int, ...]:
    return tuple(x.shape[-joints.shape[-1]:])


def _peer_project(points: torch.Tensor, camera: torch.Tensor) -> torch.Tensor:
    """VideoPose3D's call for points (N, T, J, 3): camera (N, 9) (one per sequence) as it is, or
    camera (N*T, 9) (one per frame) with the points flattened to (N*T, J, 3); output (N, T, J, 2)."""
    if camera.shape[0] == points.shape[0]:
        return project_to_2d(points, camera)
    flat = points.reshape(-1, *points.shape[-2:])  # (N*T, J, 3) view
    return project_to_2d(flat, camera).reshape(*points.shape[:-1], 2)


def _peer_reprojection(points, camera, keypoints_2d, weights=None):
    if weights is not None:
        raise ValueError("peer reprojection_loss: VideoPose3D's mpjpe is unweighted; weights must be None")
    return mpjpe(_peer_project(points, camera), keypoints_2d)


def _peer_mse(heatmaps, target, weights):
    return keypoint_mse(heatmaps, target, weights).to(heatmaps.dtype)


def _peer_mse_with_target(heatmaps, joints, sigma, weights=None, reduction="mean"):
    target = gaussian_target(joints, sigma, _spatial(heatmaps, joints))
    return keypoint_mse(heatmaps, target, weights).to(heatmaps.dtype)


def _peer_head(logits, target, weights):
    return soft_argmax_3d(logits), keypoint_mse(logits, target, weights).to(logits.dtype)


def _peer_head_with_target(logits, joints, sigma, weights=None):
    target = gaussian_target(joints, sigma, _spatial(logits, joints))
    return soft_argmax_3d(logits), keypoint_mse(logits, target, weights).to(logits.dtype)


def _peer_head_2d(logits, target, weights):
    """2D head as MMPose writes it: integral regression + KeypointMSELoss on the same maps."""
    return soft_argmax_2d(logits), keypoint_mse(logits, target, weights).to(logits.dtype)


def _peer_head_2d_with_target(logits, joints, sigma, weights=None):
    target = gaussian_target(joints, sigma, _spatial(logits, joints))
    return soft_argmax_2d(logits), keypoint_mse(logits, target, weights).to(logits.dtype)


def _target_only(x, joints, sigma, *rest):
    return gaussian_target(joints, sigma, _spatial(x, joints))


_EAGER: dict[tuple[str, str], Callable] = {
    ("soft_argmax_3d", "peer"): soft_argmax_3d,
    ("soft_argmax_2d", "peer"): soft_argmax_2d,
    ("project_to_2d", "peer"): _peer_project,
    ("reprojection_loss", "peer"): _peer_reprojection,
    ("heatmap_mse_3d", "peer"): _peer_mse,
    ("heatmap_mse_2d", "peer"): _peer_mse,
    ("heatmap_mse_3d", "peer+target"): _peer_mse_with_target,
    ("heatmap_mse_2d", "peer+target"): _peer_mse_with_target,
    ("soft_argmax_heatmap_mse_3d", "peer"): _peer_head,
    ("soft_argmax_heatmap_mse_3d", "peer+target"): _peer_head_with_target,
    ("soft_argmax_heatmap_mse_2d", "peer"): _peer_head_2d,
    ("soft_argmax_heatmap_mse_2d", "peer+target"): _peer_head_2d_with_target,
}

# Declared ops with a peer pattern above (an op without one simply has no peer rows).
_PEER_OPS = tuple(op for op in SPECS if (op, "peer") in _EAGER)


def _prepare_target(x: torch.Tensor, args: tuple) -> tuple:
    """(joints, sigma, weights[, reduction]) -> (target, weights): the data pipeline's work."""
    joints, sigma, weights = args[0], args[1], args[2]
    if len(args) > 3 and args[3] != "mean":
        raise ValueError(f"peer heatmap MSE: KeypointMSELoss is a mean; reduction must be 'mean', received {args[3]!r}")
    return gaussian_target(joints, sigma, _spatial(x, joints)), weights


def _prepare_camera(x: torch.Tensor, args: tuple) -> tuple:
    """The case's camera -> VideoPose3D's (rows, 9): (N, 9) per sequence, (N*T, 9) per frame."""
    camera = args[0]
    n = x.shape[0]
    if camera.shape[:-1] in ((n,), (n, 1)):  # one camera per sequence, (N, 9) or broadcast (N, 1, 9)
        cam = camera.reshape(n, 9)
    else:  # one camera per frame (N, T, 9)
        cam = camera.reshape(-1, 9)
    return (cam.contiguous(), *args[1:])


@dataclass(frozen=True)
class PeerRow:
    """What the harness needs for one peer provider of one op.

    ``fn(x, *prepare(x, args))`` computes the op's outputs (``peer-target``: the target only);
    ``prepare`` runs once, untimed; ``modes`` are the modes the row exists in; ``target_only``
    rows are checked by :func:`check_target` instead of against the op's outputs.
    """

    fn: Callable
    prepare: Callable[[torch.Tensor, tuple], tuple]
    modes: tuple[str, ...]
    target_only: bool = False


@functools.cache
def _compiled(op: str, base: str) -> Callable:
    import torch._dynamo

    # dynamic=False: one graph per shape, as a training loop with a fixed batch gets; the sweeps
    # compile ~12 shapes of one function, above dynamo's default per-function limit (8).
    cfg = torch._dynamo.config
    name = "recompile_limit" if hasattr(cfg, "recompile_limit") else "cache_size_limit"
    setattr(cfg, name, max(getattr(cfg, name), 64))
    return torch.compile(_EAGER[(op, base)], dynamic=False)


def _identity(x: torch.Tensor, args: tuple) -> tuple:
    return args


def peer_row(op: str, provider: str) -> PeerRow:
    """The :class:`PeerRow` of ``provider`` (one of :data:`PEER_PROVIDERS`) for ``op``."""
    if provider not in peer_providers_for(op, timing=True):
        raise ValueError(f"peer_row: op {op!r} has no provider {provider!r}; expected one of "
                         f"{peer_providers_for(op, timing=True)}")
    fb = ("forward", "backward", "forward+backward")
    if provider == "peer-target":
        return PeerRow(_target_only, _identity, ("forward",), target_only=True)
    base = provider.removesuffix("-compiled")
    fn = _compiled(op, base) if provider.endswith("-compiled") else _EAGER[(op, base)]
    modes = ("forward+backward",) if provider == "peer+target-compiled" else fb  # bounded compile time
    if _is_target_op(op) and base == "peer":
        prepare = _prepare_target
    elif _takes_camera(op):
        prepare = _prepare_camera
    else:
        prepare = _identity
    return PeerRow(fn, prepare, modes)


def peer_providers_for(op: str, *, timing: bool) -> list[str]:
    """Peer providers of ``op``: ``peer``/``peer-compiled`` for every op with a peer pattern (none
    for a declared op without one); for the ops with a Gaussian target (a ``sigma`` argument) whose
    peer pattern can generate it, also ``peer+target``/``peer+target-compiled``/``peer-target``.
    ``timing=False`` (the CI correctness pass) leaves out ``peer+target-compiled`` (the compile is
    the expensive part and the eager ``peer+target`` already checks the same math)."""
    if op not in SPECS:
        raise ValueError(f"peer_providers_for: unknown op {op!r}; expected one of {tuple(SPECS)}")
    if op not in _PEER_OPS:
        return []
    out = ["peer", "peer-compiled"]
    if (op, "peer+target") in _EAGER:  # a peer pattern that generates the target
        out += ["peer+target"] + (["peer+target-compiled"] if timing else []) + ["peer-target"]
    return out


def check_target(x: torch.Tensor, args: tuple, target: torch.Tensor) -> dict:
    """Check a ``peer-target`` row: the materialised target must be fastpose's Gaussian, so the
    reference heatmap MSE of the target against its own joints (weights 1) is ~0 next to the
    target's mean square (any shift of the centre, width or peak makes it a sizeable fraction)."""
    import fastpose.reference as R

    joints, sigma = args[0], args[1]
    n = joints.shape[-1]
    if tuple(target.shape) != tuple(x.shape):
        raise AssertionError(f"peer-target: target shape {tuple(target.shape)}, expected {tuple(x.shape)}")
    fn = R.heatmap_mse_3d if n == 3 else R.heatmap_mse_2d
    t64 = target.detach().double()
    mse = float(fn(t64, joints.double(), sigma))  # mean (t - t_ref)^2 in float64
    scale = float((t64 * t64).mean())
    rel = abs(mse) / max(scale, 1e-300)
    if not rel <= 1e-9:  # float32 rounding of t gives ~1e-14; also catches NaN
        raise AssertionError(f"peer-target: MSE against fastpose's target is {rel:.3e} x mean(t^2) (> 1e-9)")
    return {"target_rel_mse": rel}


# ------------------------------------------------------------------------------------------------
# VideoPose3D's single-frame training model (for the end-to-end SPGNet training benchmark)
# ------------------------------------------------------------------------------------------------
class TemporalModelOptimized1f(torch.nn.Module):
    """VideoPose3D's strided training model, written from the pattern of ``facebookresearch/
    VideoPose3D``, ``common/model.py: TemporalModelOptimized1f`` (plus a trajectory head on the same
    trunk, as SPGNet has): every window of ``R = prod(filter_widths)`` frames is computed alone with
    ``nn.Conv1d(kernel = stride = w)`` layers, ``nn.BatchNorm1d(momentum=0.1)``, ``nn.ReLU`` and
    ``nn.Dropout`` modules, and a residual that takes the centre of every group of ``w`` positions,
    ``x[:, :, w // 2 :: w]``::

        x = drop(relu(expand_bn(expand_conv(x))))                   # (B, C, R / fw[0])
        for each block i:  res = x[:, :, w // 2 :: w]
                           x = drop(relu(bn(conv_w(x))));  x = res + drop(relu(bn(conv_1x1(x))))
        pose = shrink(x) (B, J*3, 1);  trajectory = traj_shrink(x) (B, 3, 1)

    ``forward(keypoints_2d (N, T, J, 2))`` unfolds the ``W = T - R + 1`` windows of every sample
    (VideoPose3D trains this model on windows of exactly R frames) and returns
    :class:`fastpose.models.SPGNetOutput` with pose (N, W, J, 3) and trajectory (N, W, 1, 3).
    Parameter and buffer names are those of :class:`fastpose.models.SPGNet` (and VideoPose3D), so
    :meth:`from_spgnet` builds it from the same weights."""

    def __init__(self, num_joints: int, filter_widths: tuple[int, ...], channels: int, dropout: float,
                 trajectory: bool = True) -> None:
        super().__init__()
        fw, C, J = tuple(filter_widths), channels, num_joints
        self.filter_widths, self.num_joints = fw, J
        self.receptive_field = 1
        for w in fw:
            self.receptive_field *= w
        self.expand_conv = torch.nn.Conv1d(J * 2, C, fw[0], stride=fw[0], bias=False)
        self.expand_bn = torch.nn.BatchNorm1d(C, momentum=0.1)
        convs, bns = [], []
        for w in fw[1:]:
            convs += [torch.nn.Conv1d(C, C, w, stride=w, bias=False), torch.nn.Conv1d(C, C, 1, bias=False)]
            bns += [torch.nn.BatchNorm1d(C, momentum=0.1), torch.nn.BatchNorm1d(C, momentum=0.1)]
        self.layers_conv = torch.nn.ModuleList(convs)
        self.layers_bn = torch.nn.ModuleList(bns)
        self.relu = torch.nn.ReLU(inplace=True)
        self.drop = torch.nn.Dropout(dropout)
        self.shrink = torch.nn.Conv1d(C, J * 3, 1)
        self.traj_shrink = torch.nn.Conv1d(C, 3, 1) if trajectory else None

    @classmethod
    def from_spgnet(cls, model) -> TemporalModelOptimized1f:
        """The peer model with ``model``'s (a :class:`fastpose.models.SPGNet`) weights, BatchNorm
        statistics and train/eval mode. The state dict maps key for key: each conv weight has the
        shape (C_out, C_in, w) in both (a dilated and a strided conv share their weights)."""
        cfg = model.config
        peer = cls(cfg.num_joints, cfg.filter_widths, cfg.channels, cfg.dropout, cfg.trajectory)
        own = peer.state_dict()
        sd = model.state_dict()
        if set(sd) != set(own):
            raise ValueError(f"TemporalModelOptimized1f.from_spgnet: keys differ: {sorted(set(sd) ^ set(own))[:6]}")
        for k, v in sd.items():
            if own[k].shape != v.shape:
                raise ValueError(f"TemporalModelOptimized1f.from_spgnet: {k} is {tuple(v.shape)} in the SPGNet, "
                                 f"{tuple(own[k].shape)} here")
        peer.load_state_dict(sd)
        p = next(model.parameters())
        return peer.to(device=p.device, dtype=p.dtype).train(model.training)

    def forward(self, keypoints_2d: torch.Tensor):
        from fastpose.models import SPGNetOutput

        N, T, J, _ = keypoints_2d.shape
        R = self.receptive_field
        W = T - R + 1
        # (N, T, J*2) -> (N*W, J*2, R): one window per output frame, channels first (VideoPose3D's layout)
        x = keypoints_2d.reshape(N, T, J * 2).permute(0, 2, 1).unfold(2, R, 1).permute(0, 2, 1, 3)
        x = x.reshape(N * W, J * 2, R)
        x = self.drop(self.relu(self.expand_bn(self.expand_conv(x))))
        for i in range(len(self.filter_widths) - 1):
            w = self.filter_widths[i + 1]
            res = x[:, :, w // 2 :: w]
            x = self.drop(self.relu(self.layers_bn[2 * i](self.layers_conv[2 * i](x))))
            x = res + self.drop(self.relu(self.layers_bn[2 * i + 1](self.layers_conv[2 * i + 1](x))))
        pose = self.shrink(x).reshape(N, W, J, 3)  # (N*W, J*3, 1) -> (N, W, J, 3)
        traj = self.traj_shrink(x).reshape(N, W, 1, 3) if self.traj_shrink is not None else None
        return SPGNetOutput(pose, traj)
