"""SPGNet (Wang et al., "Spatial projection guided 3D human pose estimation in low dimensional
space"): a temporal dilated-convolution 2D-to-3D lifter with a global-position head, trained
with a 3D loss, a re-projection loss through the distorted camera model and a bone-length
consistency loss.

Architecture (VideoPose3D's temporal model; ``fw`` = filter widths, ``C`` channels)::

    keypoints_2d (N, T, J, 2) -> (N, J*2, T)
    expand_conv: Conv1d(J*2, C, fw[0])            -> expand_bn -> ReLU -> dropout
    for i in 1..len(fw)-1 (dilation d_i = fw[0] * ... * fw[i-1]):
        x = crop(x) + drop(relu(bn(Conv1d(C, C, 1)(drop(relu(bn(Conv1d(C, C, fw[i], dilation=d_i)(x))))))))
    shrink:      Conv1d(C, J*3, 1)  -> pose (N, T', J, 3), root-relative, metres
    traj_shrink: Conv1d(C, 3, 1)    -> global position of the root (N, T', 1, 3), camera frame

with ``T' = T - R + 1`` and receptive field ``R = fw[0] * fw[1] * ...`` (3,3,3 -> 27 frames;
3,3,3,3 -> 81; 3,3,3,3,3 -> 243).

Two execution paths share the same weights:

* **full** (``strided=False``): dilated convolutions over a whole sequence; one output per
  input frame after the first/last ``(R - 1) / 2`` (edge-pad the input to keep all frames).
  Used for evaluation.
* **strided** (``strided=True``): every window of R frames is computed independently with
  convolutions of stride ``fw[i]`` and no dilation, and the residual takes the centre of every
  group of ``fw[i]`` positions. Only the positions that the single output frame depends on
  are computed (R / fw[0] in the first layer instead of R - fw[0] + 1): VideoPose3D's
  optimised single-frame training model. In eval mode it returns the full model's output
  (to float rounding); in train mode BatchNorm sees different positions, as in VideoPose3D.
  Training on the CPU runs it as channels-last matrix products with a cheaper dropout mask
  (``fastpose/models/_temporal.py``: same function, same parameters and running statistics; the
  dropout masks are drawn differently from ``nn.Dropout``'s).

Layer names match VideoPose3D's ``TemporalModel`` (``expand_conv``, ``expand_bn``,
``layers_conv``, ``layers_bn``, ``shrink``), so the ``model_pos`` state dict of a VideoPose3D
checkpoint loads with :meth:`SPGNet.load_videopose3d` (the trajectory head, which VideoPose3D
keeps in a separate network, stays freshly initialised).

Loss (:func:`spgnet_loss`), each term with a configurable weight::

    L = w_pose MPJPE(pose, gt - gt_root)
      + w_traj  weighted MPJPE(traj, gt_root, w = 1 / z_gt_root)
      + w_2d    reprojection_loss(pose + traj, camera, keypoints_2d)     (2D MPJPE, normalised)
      + w_bone  bone_length_loss(pose) between consecutive output frames  (SPGNet eq. 2)
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields
from typing import NamedTuple

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .. import losses, ops
from ..skeleton import H36M_SKELETON, Skeleton
from ._temporal import strided_trunk_rows

__all__ = ["SPGNet", "SPGNetConfig", "SPGNetLossWeights", "SPGNetOutput", "spgnet_loss"]


@dataclass(frozen=True)
class SPGNetConfig:
    """Architecture of :class:`SPGNet` (stored in checkpoints and validated on load)."""

    num_joints: int = 17
    filter_widths: tuple[int, ...] = (3, 3, 3)
    channels: int = 1024
    dropout: float = 0.25
    trajectory: bool = True

    def __post_init__(self) -> None:
        object.__setattr__(self, "filter_widths", tuple(int(f) for f in self.filter_widths))
        if not self.filter_widths or any(f < 1 or f % 2 == 0 for f in self.filter_widths):
            raise ValueError(f"SPGNetConfig.filter_widths: expected odd widths >= 1, got {self.filter_widths}")
        if self.channels < 1 or self.num_joints < 1:
            raise ValueError(f"SPGNetConfig: expected channels >= 1 and num_joints >= 1, "
                             f"got {self.channels}, {self.num_joints}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"SPGNetConfig.dropout: expected 0 <= dropout < 1, got {self.dropout}")

    @property
    def receptive_field(self) -> int:
        return math.prod(self.filter_widths)

    def to_dict(self) -> dict:
        """``{"model": "spgnet", ...fields}`` (JSON-friendly; the checkpoint's architecture record)."""
        d = asdict(self)
        d["filter_widths"] = list(self.filter_widths)
        return {"model": "spgnet", **d}

    @classmethod
    def from_dict(cls, d: Mapping) -> SPGNetConfig:
        if d.get("model", "spgnet") != "spgnet":
            raise ValueError(f"SPGNetConfig.from_dict: architecture is {d.get('model')!r}, not 'spgnet'")
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})


class SPGNetOutput(NamedTuple):
    pose: torch.Tensor  # (N, T', J, 3) root-relative, metres
    trajectory: torch.Tensor | None  # (N, T', 1, 3) root position in the camera frame, metres


class SPGNet(nn.Module):
    """The lifting network (see the module docstring). ``SPGNet(channels=256)`` overrides fields
    of the default :class:`SPGNetConfig`."""

    def __init__(self, config: SPGNetConfig | None = None, **overrides) -> None:
        super().__init__()
        cfg = config or SPGNetConfig()
        if overrides:
            cfg = SPGNetConfig(**{**asdict(cfg), **overrides})
        self.config = cfg
        fw, C, J = cfg.filter_widths, cfg.channels, cfg.num_joints
        self.expand_conv = nn.Conv1d(J * 2, C, fw[0], bias=False)
        self.expand_bn = nn.BatchNorm1d(C, momentum=0.1)
        convs, bns = [], []
        self.pad = [(fw[0] - 1) // 2]  # per block: frames cropped on each side by its conv
        self._dilations = []
        dilation = fw[0]
        for w in fw[1:]:
            self.pad.append((w - 1) * dilation // 2)
            self._dilations.append(dilation)
            convs.append(nn.Conv1d(C, C, w, dilation=dilation, bias=False))
            bns.append(nn.BatchNorm1d(C, momentum=0.1))
            convs.append(nn.Conv1d(C, C, 1, bias=False))
            bns.append(nn.BatchNorm1d(C, momentum=0.1))
            dilation *= w
        self.layers_conv = nn.ModuleList(convs)
        self.layers_bn = nn.ModuleList(bns)
        self.shrink = nn.Conv1d(C, J * 3, 1)
        self.traj_shrink = nn.Conv1d(C, 3, 1) if cfg.trajectory else None
        self.drop = nn.Dropout(cfg.dropout)
        with torch.no_grad():
            # Small output layers: with the default init the heads start with ~0.5 m of random
            # output per coordinate, which the first hundreds of steps only spend undoing.
            self.shrink.weight.mul_(0.1)
            if self.traj_shrink is not None:
                self.traj_shrink.weight.mul_(0.1)

    # ------------------------------------------------------------------------------ properties
    @property
    def receptive_field(self) -> int:
        return self.config.receptive_field

    @property
    def total_pad(self) -> int:
        """(R - 1) / 2: frames of context on each side of an output frame."""
        return (self.receptive_field - 1) // 2

    def set_bn_momentum(self, momentum: float) -> None:
        """Set the momentum of every BatchNorm (VideoPose3D decays it from 0.1 during training)."""
        for m in self.modules():
            if isinstance(m, nn.BatchNorm1d):
                m.momentum = momentum

    @torch.no_grad()
    def init_output_bias(self, mean_pose: torch.Tensor, mean_root: torch.Tensor | None = None) -> None:
        """Start the heads at the data's mean: ``shrink.bias = mean_pose`` (J, 3) root-relative,
        ``traj_shrink.bias = mean_root`` (3,) camera frame.

        Adam moves a bias by about ``lr`` per step, so a root depth of ~5 m would otherwise take
        thousands of steps to reach, and the re-projection term is meaningless until it does.
        """
        J = self.config.num_joints
        self.shrink.bias.copy_(torch.as_tensor(mean_pose, dtype=self.shrink.bias.dtype).reshape(J * 3))
        if self.traj_shrink is not None and mean_root is not None:
            self.traj_shrink.bias.copy_(torch.as_tensor(mean_root, dtype=self.traj_shrink.bias.dtype).reshape(3))

    # ------------------------------------------------------------------------------ forward
    def forward(self, keypoints_2d: torch.Tensor, strided: bool = False) -> SPGNetOutput:
        """keypoints_2d (N, T, J, 2), T >= R -> :class:`SPGNetOutput` with T' = T - R + 1 frames."""
        x = self._check_input(keypoints_2d)
        N, T, J, _ = x.shape
        R = self.receptive_field
        if strided and self.training and x.device.type == "cpu":
            # CPU training fast path: channels-last GEMMs, cheap dropout mask (fastpose/models/_temporal.py;
            # measured on the CPU only, so other devices keep the nn.Conv1d path below)
            h = strided_trunk_rows(self, x.reshape(N, T, J * 2))  # (N * W, C)
            Tp = T - R + 1
            pose = F.linear(h, self.shrink.weight[:, :, 0], self.shrink.bias).view(N, Tp, J, 3)
            traj = None
            if self.traj_shrink is not None:
                traj = F.linear(h, self.traj_shrink.weight[:, :, 0], self.traj_shrink.bias).view(N, Tp, 1, 3)
            return SPGNetOutput(pose, traj)
        if strided:
            W = T - R + 1  # windows, one per output frame
            # (N, T, J*2) -> windows (N, W, J*2, R) -> (N*W, J*2, R)
            x = x.reshape(N, T, J * 2).unfold(1, R, 1).reshape(N * W, J * 2, R)
            h = self._trunk_strided(x)  # (N*W, C, 1)
            h = h.reshape(N, W, -1).transpose(1, 2)  # (N, C, W)
        else:
            h = self._trunk_full(x.reshape(N, T, J * 2).transpose(1, 2))  # (N, C, T')
        Tp = h.shape[-1]
        pose = self.shrink(h).transpose(1, 2).reshape(N, Tp, J, 3)  # (N, T', J, 3)
        traj = None
        if self.traj_shrink is not None:
            traj = self.traj_shrink(h).transpose(1, 2).reshape(N, Tp, 1, 3)  # (N, T', 1, 3)
        return SPGNetOutput(pose, traj)

    def _block_in(self, x: torch.Tensor) -> torch.Tensor:
        return self.drop(F.relu(self.expand_bn(x)))

    def _trunk_full(self, x: torch.Tensor) -> torch.Tensor:
        """(N, J*2, T) -> (N, C, T - R + 1): dilated convolutions over the whole sequence."""
        x = self._block_in(self.expand_conv(x))
        for i in range(len(self.pad) - 1):
            p = self.pad[i + 1]
            res = x[:, :, p : x.shape[2] - p]  # centre crop to the conv's output length
            x = self.drop(F.relu(self.layers_bn[2 * i](self.layers_conv[2 * i](x))))
            x = res + self.drop(F.relu(self.layers_bn[2 * i + 1](self.layers_conv[2 * i + 1](x))))
        return x

    def _trunk_strided(self, x: torch.Tensor) -> torch.Tensor:
        """(B, J*2, R) -> (B, C, 1): stride fw[i], no dilation, same weights as the full model.

        With the input exactly R frames long, layer i of the full model only needs every
        ``d_i``-th position; a convolution of stride ``fw[i]`` over the previous layer's
        (already subsampled) output computes exactly those, and the residual picks the centre
        of every group of ``fw[i]`` positions (offset ``fw[i] // 2``).
        """
        fw = self.config.filter_widths
        x = self._block_in(F.conv1d(x, self.expand_conv.weight, stride=fw[0]))
        for i in range(len(fw) - 1):
            w = fw[i + 1]
            res = x[:, :, w // 2 :: w]
            conv = self.layers_conv[2 * i]
            x = self.drop(F.relu(self.layers_bn[2 * i](F.conv1d(x, conv.weight, stride=w))))
            x = res + self.drop(F.relu(self.layers_bn[2 * i + 1](self.layers_conv[2 * i + 1](x))))
        return x

    def _check_input(self, x: torch.Tensor) -> torch.Tensor:
        J = self.config.num_joints
        if not isinstance(x, torch.Tensor):
            raise TypeError(f"SPGNet: keypoints_2d must be a torch.Tensor, got {type(x).__name__}")
        if x.dim() != 4 or x.shape[2] != J or x.shape[3] != 2:
            raise ValueError(f"SPGNet: keypoints_2d must have shape (N, T, {J}, 2), got {tuple(x.shape)}")
        if x.shape[1] < self.receptive_field:
            raise ValueError(
                f"SPGNet: keypoints_2d has T={x.shape[1]} frames, fewer than the receptive field "
                f"{self.receptive_field} (edge-pad the sequence with fastpose.data.pad_sequence)"
            )
        return x

    # ------------------------------------------------------------------------------ inference
    @torch.no_grad()
    def predict(
        self, keypoints_2d, flip_test: bool = False, skeleton: Skeleton = H36M_SKELETON
    ) -> SPGNetOutput | list[SPGNetOutput]:
        """Lift whole sequences. Call in eval mode.

        * one clip, keypoints_2d (T, J, 2) (array or tensor) -> :class:`SPGNetOutput` with
          pose (T, J, 3) and trajectory (T, 1, 3) (None without the trajectory head);
        * a list (or tuple) of clips of any lengths T_i -> a list of :class:`SPGNetOutput`, one
          per clip, each equal to predicting that clip alone (to float rounding), computed in
          one batched forward pass.

        Every clip is edge-padded by (R - 1) / 2 frames on each side so every frame gets a
        prediction; in a batch the shorter padded clips are further edge-padded at the end to
        the longest one (output frame t only reads padded input frames t .. t + R - 1, so the
        extra frames never reach frames t < T_i). With ``flip_test`` the mirrored input is lifted
        too, mirrored back and averaged (test-time augmentation; the camera is mirrored
        implicitly, since the network never sees it).
        """
        from ..data.batching import pad_sequence

        single = not isinstance(keypoints_2d, (list, tuple))
        clips = [keypoints_2d] if single else list(keypoints_2d)
        if not clips:
            return []
        p = next(self.parameters())
        J = self.config.num_joints
        kps = []
        for i, clip in enumerate(clips):
            kp = torch.as_tensor(np.asarray(clip) if not isinstance(clip, torch.Tensor) else clip,
                                 dtype=p.dtype).to(p.device)  # (T_i, J, 2)
            if kp.dim() != 3 or kp.shape[0] < 1 or kp.shape[1:] != (J, 2):
                where = "keypoints_2d" if single else f"keypoints_2d[{i}]"
                raise ValueError(f"SPGNet.predict: {where} must have shape (T, {J}, 2) with T >= 1, "
                                 f"received {tuple(kp.shape)}")
            kps.append(kp)
        lengths = [kp.shape[0] for kp in kps]
        longest = max(lengths)
        pad = self.total_pad
        # (T_i + 2 pad, J, 2), then edge-padded at the end to (T_max + 2 pad, J, 2)
        x = torch.stack([pad_sequence(torch.cat([kp, kp[-1:].expand(longest - len(kp), -1, -1)]), pad)
                         for kp in kps])  # (N, T_max + 2 pad, J, 2)
        n = x.shape[0]
        if flip_test:
            x = torch.cat([x, skeleton.flip(x)], dim=0)  # (2N, T_max + 2 pad, J, 2)
        out = self(x)
        pose, traj = out.pose, out.trajectory  # (B, T_max, J, 3), (B, T_max, 1, 3)
        if flip_test:
            pose = 0.5 * (pose[:n] + skeleton.flip(pose[n:]))
            if traj is not None:
                sign = torch.tensor([-1.0, 1.0, 1.0], dtype=traj.dtype, device=traj.device)
                traj = 0.5 * (traj[:n] + traj[n:] * sign)
        results = [SPGNetOutput(pose[i, :t], traj[i, :t] if traj is not None else None)
                   for i, t in enumerate(lengths)]
        return results[0] if single else results

    # ------------------------------------------------------------------------------ checkpoints
    def load_videopose3d(self, checkpoint: Mapping) -> None:
        """Load a VideoPose3D ``TemporalModel`` state dict (or a checkpoint holding ``model_pos``).

        The architecture must match (filter widths, channels, joints); the trajectory head is
        not part of VideoPose3D's pose model and keeps its initial weights.
        """
        sd = checkpoint.get("model_pos", checkpoint)
        sd = {k.removeprefix("module."): v for k, v in sd.items()}  # saved from DataParallel
        own = self.state_dict()
        unexpected = sorted(set(sd) - set(own))
        missing = sorted(k for k in set(own) - set(sd) if not k.startswith("traj_shrink."))
        if unexpected or missing:
            raise ValueError(
                "SPGNet.load_videopose3d: the state dict does not match this architecture "
                f"({self.config}); unexpected keys {unexpected[:6]}, missing keys {missing[:6]}"
            )
        for k, v in sd.items():
            if own[k].shape != v.shape:
                raise ValueError(
                    f"SPGNet.load_videopose3d: {k} has shape {tuple(v.shape)} in the checkpoint, "
                    f"{tuple(own[k].shape)} in this model ({self.config})"
                )
        self.load_state_dict(sd, strict=False)


def _nonzero_depth(points: torch.Tensor) -> torch.Tensor:
    """Move points with z == 0 exactly to z = 1e-12 (everything else unchanged).

    The projection divides by z; at z == 0 its backward computes 0 * inf = NaN even though the
    clamp makes the gradient 0. An untrained network (or bfloat16 rounding) can produce exact
    zeros, and one NaN gradient ruins the weights.
    """
    z = points[..., 2:]
    return torch.cat([points[..., :2], torch.where(z == 0, torch.full_like(z, 1e-12), z)], dim=-1)


@dataclass(frozen=True)
class SPGNetLossWeights:
    """Weights of the four loss terms (see :func:`spgnet_loss`)."""

    pose: float = 1.0
    trajectory: float = 1.0
    reprojection: float = 1.0
    bone: float = 1.0


def spgnet_loss(
    output: SPGNetOutput,
    positions_3d: torch.Tensor,
    keypoints_2d: torch.Tensor,
    camera: torch.Tensor,
    weights: SPGNetLossWeights = SPGNetLossWeights(),
    parents=H36M_SKELETON.parents,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """The SPGNet training loss and its terms.

    output: the model's output for k frames per sample (pose (N, k, J, 3), trajectory
    (N, k, 1, 3) or None); positions_3d (N, k, J, 3) camera-frame ground truth (absolute);
    keypoints_2d (N, k, J, 2) the input keypoints of the same frames (normalised screen
    coordinates); camera (N, 9) normalised intrinsics. Terms are computed in float32 (so
    they are safe under autocast). The bone term needs k >= 2 (it is 0 for k = 1); the
    trajectory and re-projection terms need the trajectory head (0 without it).
    Returns ``(total, {"pose", "trajectory", "reprojection", "bone"})``, terms detached.
    """
    pose = output.pose.float()  # (N, k, J, 3)
    gt = positions_3d.float()
    gt_root = gt[:, :, :1]  # (N, k, 1, 3)
    l_pose = losses.mpjpe(pose, gt - gt_root)
    zero = pose.sum() * 0.0  # keeps the graph (and DDP's gradient bookkeeping) intact
    if output.trajectory is not None:
        traj = output.trajectory.float()
        l_traj = losses.weighted_mpjpe(traj, gt_root, 1.0 / gt_root[..., 2])  # w (N, k, 1)
        # one camera per sample: (N, 9) -> (N, k, 9), a view with the points' leading dims
        cam = camera.float()
        if cam.dim() == 2:
            cam = cam[:, None].expand(cam.shape[0], pose.shape[1], cam.shape[-1])
        l_2d = ops.reprojection_loss(_nonzero_depth(pose + traj), cam, keypoints_2d.float())
    else:
        l_traj = l_2d = zero
    l_bone = losses.bone_length_loss(pose, parents) if pose.shape[1] >= 2 else zero
    total = (weights.pose * l_pose + weights.trajectory * l_traj + weights.reprojection * l_2d
             + weights.bone * l_bone)
    terms = {"pose": l_pose, "trajectory": l_traj, "reprojection": l_2d, "bone": l_bone}
    return total, {k: v.detach() for k, v in terms.items()}
