"""Volumetric image model (Tsai & Luo): RGB crop -> volumetric heatmaps -> 3D soft-argmax -> refinement.

Architecture (paper sizes; every size is a :class:`VolumetricConfig` field)::

    image (B, 3, 256, 256), uint8 [0, 255] or float [0, 1]; ImageNet mean/std inside the model
    ResNet-50 features                                   (B, 2048, 8, 8)
    3 x [ConvTranspose 4x4/2 (256) -> BN -> ReLU]        (B, 256, 64, 64)     = F
    2D heatmaps: conv 1x1                                (B, J, 64, 64)       = h2d
    lifting: [F, h2d] -> conv 1x1 (256) -> BN -> ReLU
             -> conv 1x1 (J*D) -> reshape                (B, J, D, 64, 64)    = volume (logits)
    soft_argmax_3d(volume)                               (B, J, 3) voxels (x, y, z)
    normalise to [-1, 1], subtract the root joint        (B, J*3)             = p0
    refinement: FC (J*3 -> 512) -> BN -> ReLU -> dropout 0.5
                -> 2 residual blocks [FC 512, BN, ReLU, dropout] x 2
                -> FC (512 -> J*3);  pose = p0 + that  (B, J, 3) root-relative, normalised

The 2D heatmaps carry no depth cue, so the lifting convolutions see the deconvolution features
``F`` next to ``h2d`` (the volume needs both where a joint is and how far it is).
The refinement block ends with a skip from its input (``pose = p0 + delta``) and its last layer
starts at zero, so an untrained block is the identity and the ablations without it (A, A+B) and
with it (A+C, A+B+C) start from the same predictions.

Coordinate frames (``S`` input size, ``Hm`` heatmap size, ``D`` depth bins, ``R`` depth range in
metres; pixel ``k`` has its centre at ``k``):

* voxel units (the op contract): ``x = (u + 0.5) Hm / S - 0.5``, same for ``y`` with ``v``;
  ``z = (Z - Z_root) / R * D + (D - 1) / 2`` -- the root sits at the middle bin and ``R``
  metres span the ``D`` bins;
* normalised: ``n = 2 (voxel + 0.5) / size - 1``, i.e. ``n_x = 2 (u + 0.5) / S - 1`` and
  ``n_z = 2 (Z - Z_root) / R``; the pose loss and the refinement block use root-relative ``n``.

Loss (``forward(images, targets)``)::

    L = L_2DHM + L_3DHM + lambda * L_3DPOSE,  lambda = 20
    L_2DHM   = heatmap_mse_2d(h2d, joints_vox[..., :2], sigma_2d, weights)          (mean)
    L_3DHM   = the mse output of soft_argmax_heatmap_mse_3d(volume, joints_vox, sigma_3d, weights)
    L_3DPOSE = mean over B, J, 3 of (pose - pose_gt)^2, root-relative normalised coordinates

The Gaussian targets are never materialised: the ops receive the joint positions and generate
the targets on the fly (the fused op reads the volume once for both the soft-argmax and the MSE).
The MSE is taken on the raw volume (peak 1 targets) as the op contract fixes; with the mean over
D*H*W voxels it acts as a shape prior while the lambda-weighted pose loss lets the soft-argmax peak
grow. Ablations (the paper's Table II): ``volumetric_loss`` (B) drops ``L_3DHM`` when False and
then uses the plain ``soft_argmax_3d``; ``refinement`` (C) removes the block when False.

Metric 3D (:meth:`VolumetricPoseNet.to_camera`): back-project through the crop's pinhole
intrinsics with the root depth given (ground truth, as in the integral-regression protocol that
Protocol #1/#2 numbers of this family use): ``Z_j = Z_root + n_z R / 2``,
``u_j = u_root + (n_x - n_x,root) S / 2``, ``X_j = (u_j - cx) Z_j / fx`` (same for ``Y``); the
root's pixel position is the model's own (soft-argmax) estimate.

Complexity (:func:`model_complexity`, measured at 256 x 256, batch 1), next to the paper's
25.5 M parameters / 7.0 GFLOPs::

    part                        params    GFLOPs (2 per multiply-add)   GMACs
    ResNet-50 backbone (no fc)  23.51 M   10.68                         5.34
    3 deconvolutions            10.49 M    3.76                         1.88
    2D head + lifting convs      0.37 M    3.03                         1.51
    refinement block             1.11 M    0.002                        0.001
    total                       35.48 M   17.47                         8.73

The paper's 25.5 M is, to the digit, torchvision's ResNet-50 *with* its 1000-class classifier
(25.56 M): the figure describes the backbone, not the pose network. The architecture as described
cannot have 25.5 M parameters, since its first 4x4 deconvolution alone (2048 -> 256 channels) holds
8.4 M. The paper's 7.0 "GFLOPs" matches multiply-adds (the usual vision-paper convention, half of
``FlopCounterMode``'s FLOPs) of the backbone plus the deconvolutions (5.34 + 1.88 = 7.2 GMACs); the
lifting convolutions (a 1x1 convolution to J*D = 1152 channels on 64 x 64 maps) and the refinement
block are not in it.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .. import ops
from .resnet import ResNet, load_torchvision_state_dict

__all__ = [
    "ABLATIONS",
    "PAPER_GFLOPS",
    "PAPER_PARAMS_M",
    "VolumetricConfig",
    "VolumetricPoseNet",
    "ablation_config",
    "model_complexity",
    "thorax_between_shoulders",
]

PAPER_PARAMS_M = 25.5  # Tsai & Luo, reported parameters (millions)
PAPER_GFLOPS = 7.0  # Tsai & Luo, reported GFLOPs at 256 x 256

# Paper Table II: A = baseline (2D heatmap + pose losses), B = volumetric heatmap loss,
# C = refinement block.
ABLATIONS = {
    "A": {"volumetric_loss": False, "refinement": False},
    "A+B": {"volumetric_loss": True, "refinement": False},
    "A+C": {"volumetric_loss": False, "refinement": True},
    "A+B+C": {"volumetric_loss": True, "refinement": True},
}

# ImageNet statistics (RGB) used by torchvision's ResNet-50 weights.
_MEAN = (0.485, 0.456, 0.406)
_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class VolumetricConfig:
    """Sizes and loss settings of :class:`VolumetricPoseNet` (defaults = the paper).

    ``tiny()`` gives a CPU-test-sized model (64 x 64 input, 16^3 volume, narrow layers).
    """

    num_joints: int = 18  # 17 Human3.6M joints + thorax between the shoulders
    root_joint: int = 0  # pelvis
    input_size: int = 256
    backbone_layers: tuple[int, ...] = (3, 4, 6, 3)
    backbone_width: int = 64
    deconv_channels: int = 256
    num_deconv: int = 3
    deconv_kernel: int = 4
    lift_channels: int = 256
    depth: int = 64  # D
    depth_range: float = 2.0  # metres of root-relative depth spanned by the D bins
    refine_hidden: int = 512
    refine_blocks: int = 2
    dropout: float = 0.5
    refinement: bool = True  # ablation C
    volumetric_loss: bool = True  # ablation B
    sigma_2d: float = 2.0  # Gaussian target sigma, heatmap pixels
    sigma_3d: float = 2.0  # voxels
    pose_weight: float = 20.0  # lambda

    def __post_init__(self) -> None:
        ints = ("num_joints", "input_size", "backbone_width", "deconv_channels", "lift_channels",
                "depth", "refine_hidden")
        for name in ints:
            if int(getattr(self, name)) < 1:
                raise ValueError(f"VolumetricConfig: {name} must be >= 1, got {getattr(self, name)}")
        if not 0 <= self.root_joint < self.num_joints:
            raise ValueError(
                f"VolumetricConfig: root_joint must be in [0, num_joints={self.num_joints}), got {self.root_joint}"
            )
        stride = 4 * 2 ** (len(self.backbone_layers) - 1)
        if self.input_size % stride:
            raise ValueError(
                f"VolumetricConfig: input_size must be a multiple of the backbone stride {stride}, "
                f"got {self.input_size}"
            )
        if self.deconv_kernel not in (2, 4):
            raise ValueError(f"VolumetricConfig: deconv_kernel must be 2 or 4, got {self.deconv_kernel}")
        for name in ("depth_range", "sigma_2d", "sigma_3d"):
            if not getattr(self, name) > 0:
                raise ValueError(f"VolumetricConfig: {name} must be > 0, got {getattr(self, name)}")
        if not 0 <= self.dropout < 1:
            raise ValueError(f"VolumetricConfig: dropout must be in [0, 1), got {self.dropout}")
        if self.pose_weight < 0:
            raise ValueError(f"VolumetricConfig: pose_weight must be >= 0, got {self.pose_weight}")
        if self.num_deconv < 0:
            raise ValueError(f"VolumetricConfig: num_deconv must be >= 0, got {self.num_deconv}")

    @property
    def heatmap_size(self) -> int:
        """Side of the 2D heatmaps and of the volume's H, W: input / 32 * 2**num_deconv (64)."""
        stride = 4 * 2 ** (len(self.backbone_layers) - 1)
        return self.input_size // stride * 2**self.num_deconv

    @classmethod
    def tiny(cls, **overrides) -> VolumetricConfig:
        """64 x 64 input, (1,1,1,1) blocks of width 8, 32-channel head, 16 x 16 x 16 volume."""
        base = dict(input_size=64, backbone_layers=(1, 1, 1, 1), backbone_width=8, deconv_channels=32,
                    lift_channels=32, depth=16, refine_hidden=64, sigma_2d=1.0, sigma_3d=1.0)
        base.update(overrides)
        return cls(**base)

    def replace(self, **changes) -> VolumetricConfig:
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["backbone_layers"] = list(self.backbone_layers)
        return d

    @classmethod
    def from_dict(cls, d: Mapping) -> VolumetricConfig:
        d = dict(d)
        if "backbone_layers" in d:
            d["backbone_layers"] = tuple(d["backbone_layers"])
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ValueError(f"VolumetricConfig.from_dict: unknown fields {unknown}")
        return cls(**d)


def ablation_config(name: str, config: VolumetricConfig | None = None) -> VolumetricConfig:
    """The paper's Table II variant ``name`` in {"A", "A+B", "A+C", "A+B+C"} of ``config``."""
    key = name.upper().replace(" ", "")
    if key not in ABLATIONS:
        raise ValueError(f"ablation must be one of {list(ABLATIONS)}, got {name!r}")
    return (config or VolumetricConfig()).replace(**ABLATIONS[key])


def thorax_between_shoulders(joints: Tensor, left_shoulder: int = 11, right_shoulder: int = 14) -> Tensor:
    """(..., 17, C) Human3.6M joints -> (..., 18, C) with joint 17 = midpoint of the shoulders.

    Works for 2D and 3D (any C) and for NumPy-like tensors of torch; the extra joint is excluded
    from evaluation (``[..., :17, :]``).
    """
    if joints.shape[-2] != 17:
        raise ValueError(f"thorax_between_shoulders: joints must be (..., 17, C), got {tuple(joints.shape)}")
    mid = 0.5 * (joints[..., left_shoulder, :] + joints[..., right_shoulder, :])
    return torch.cat([joints, mid.unsqueeze(-2)], dim=-2)


class _ResidualFC(nn.Module):
    """Martinez et al. residual block: x + [FC, BN, ReLU, dropout] x 2."""

    def __init__(self, width: int, dropout: float):
        super().__init__()
        self.body = nn.Sequential(
            nn.Linear(width, width), nn.BatchNorm1d(width), nn.ReLU(inplace=True), nn.Dropout(dropout),
            nn.Linear(width, width), nn.BatchNorm1d(width), nn.ReLU(inplace=True), nn.Dropout(dropout),
        )

    def forward(self, x: Tensor) -> Tensor:
        return x + self.body(x)


class RefinementBlock(nn.Module):
    """(B, J*3) -> (B, J*3): p + FC(512)-BN-ReLU-dropout -> residual blocks -> FC(J*3).

    The last layer starts at zero, so the block starts as the identity.
    """

    def __init__(self, dim: int, hidden: int, blocks: int, dropout: float):
        super().__init__()
        self.inp = nn.Sequential(nn.Linear(dim, hidden), nn.BatchNorm1d(hidden), nn.ReLU(inplace=True),
                                 nn.Dropout(dropout))
        self.blocks = nn.Sequential(*[_ResidualFC(hidden, dropout) for _ in range(blocks)])
        self.out = nn.Linear(hidden, dim)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    def forward(self, p: Tensor) -> Tensor:
        return p + self.out(self.blocks(self.inp(p)))


class VolumetricPoseNet(nn.Module):
    """Tsai & Luo's volumetric pose network (see the module docstring for shapes and losses).

    ``forward(images)`` returns a dict with ``heatmaps_2d`` (B, J, Hm, Hm), ``volume``
    (B, J, D, Hm, Hm), ``coords`` (B, J, 3) voxels and ``pose`` (B, J, 3) root-relative normalised
    coordinates. ``forward(images, targets)`` adds ``loss`` and its parts ``loss_2d``, ``loss_3d``,
    ``loss_pose`` (detached copies in ``parts``); ``targets`` holds ``joints_vox`` (B, J, 3) voxel
    units (:meth:`voxel_targets` builds it from 2D/3D labels) and optionally ``weights`` (B, J).
    Training goes through ``forward`` so that DistributedDataParallel sees the whole step.
    """

    def __init__(self, config: VolumetricConfig | None = None, **overrides):
        super().__init__()
        config = config or VolumetricConfig()
        self.config = c = config.replace(**overrides) if overrides else config
        j, hm = c.num_joints, c.heatmap_size
        self.backbone = ResNet(c.backbone_layers, c.backbone_width)
        layers: list[nn.Module] = []
        cin = self.backbone.out_channels
        for _ in range(c.num_deconv):
            # kernel 4, stride 2, padding 1: exactly doubles H and W; bias folded into BN.
            pad = 1 if c.deconv_kernel == 4 else 0
            layers += [nn.ConvTranspose2d(cin, c.deconv_channels, c.deconv_kernel, stride=2, padding=pad,
                                          bias=False),
                       nn.BatchNorm2d(c.deconv_channels), nn.ReLU(inplace=True)]
            cin = c.deconv_channels
        self.deconv = nn.Sequential(*layers)
        self.head_2d = nn.Conv2d(cin, j, 1)
        self.lift = nn.Sequential(
            nn.Conv2d(cin + j, c.lift_channels, 1, bias=False), nn.BatchNorm2d(c.lift_channels),
            nn.ReLU(inplace=True), nn.Conv2d(c.lift_channels, j * c.depth, 1),
        )
        self.refine = (RefinementBlock(j * 3, c.refine_hidden, c.refine_blocks, c.dropout)
                       if c.refinement else None)
        for m in (self.head_2d, self.lift[-1]):
            # Small outputs at start: heatmaps near 0 and an almost uniform softmax (coords at the centre).
            nn.init.normal_(m.weight, std=1e-3)
            nn.init.zeros_(m.bias)
        for m in self.deconv.modules():
            if isinstance(m, nn.ConvTranspose2d):
                nn.init.normal_(m.weight, std=1e-3)
        self.register_buffer("_mean", torch.tensor(_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("_std", torch.tensor(_STD).view(1, 3, 1, 1), persistent=False)
        self._hm = hm

    # ------------------------------------------------------------------ pieces
    def _normalise_input(self, images: Tensor) -> Tensor:
        c = self.config
        if images.dim() != 4 or images.shape[1] != 3 or images.shape[2:] != (c.input_size, c.input_size):
            raise ValueError(
                f"VolumetricPoseNet: images must be (B, 3, {c.input_size}, {c.input_size}), "
                f"got {tuple(images.shape)}"
            )
        x = images.float() / 255.0 if images.dtype == torch.uint8 else images
        if not x.is_floating_point():
            raise ValueError(f"VolumetricPoseNet: images must be uint8 or floating, got {images.dtype}")
        return (x - self._mean.to(x.dtype)) / self._std.to(x.dtype)

    def heads(self, images: Tensor) -> tuple[Tensor, Tensor]:
        """images -> (2D heatmaps (B, J, Hm, Hm), volume logits (B, J, D, Hm, Hm))."""
        c = self.config
        f = self.deconv(self.backbone(self._normalise_input(images)))  # classifier-free: features
        h2d = self.head_2d(f)
        b = f.shape[0]
        vol = self.lift(torch.cat([f, h2d], dim=1)).view(b, c.num_joints, c.depth, self._hm, self._hm)
        return h2d, vol

    def voxel_to_normalised(self, vox: Tensor) -> Tensor:
        """(..., 3) voxel units -> [-1, 1] per axis: n = 2 (v + 0.5) / size - 1."""
        size = vox.new_tensor([self._hm, self._hm, self.config.depth])
        return 2.0 * (vox + 0.5) / size - 1.0

    def root_relative(self, n: Tensor) -> Tensor:
        r = self.config.root_joint
        return n - n[..., r : r + 1, :]

    def pose_from_coords(self, coords: Tensor) -> Tensor:
        """soft-argmax coords (B, J, 3) voxels -> (refined) root-relative normalised pose (B, J, 3)."""
        p0 = self.root_relative(self.voxel_to_normalised(coords.float()))
        if self.refine is None:
            return p0
        b, j, _ = p0.shape
        return self.refine(p0.reshape(b, j * 3)).view(b, j, 3)

    # ----------------------------------------------------------------- targets
    def voxel_targets(self, joints_2d: Tensor, joints_3d: Tensor) -> Tensor:
        """Ground truth in voxel units from the labels of an input crop.

        joints_2d (B, J, 2) crop pixels (pixel k centred at k) of an ``input_size`` crop;
        joints_3d (B, J, 3) camera frame, metres. Returns (B, J, 3) = (x, y, z) voxels:
        x = (u + 0.5) Hm / S - 0.5, z = (Z - Z_root) D / R + (D - 1) / 2.
        """
        c = self.config
        _check_joints("joints_2d", joints_2d, c.num_joints, 2)
        _check_joints("joints_3d", joints_3d, c.num_joints, 3)
        scale = self._hm / c.input_size
        xy = (joints_2d + 0.5) * scale - 0.5
        z_rel = joints_3d[..., 2] - joints_3d[..., c.root_joint : c.root_joint + 1, 2]
        z = z_rel * (c.depth / c.depth_range) + 0.5 * (c.depth - 1)
        return torch.cat([xy, z.unsqueeze(-1)], dim=-1)

    def to_camera(self, pose: Tensor, root_vox: Tensor, root_depth: Tensor, camera: Tensor) -> Tensor:
        """Root-relative normalised pose -> root-relative camera-frame 3D in metres (B, J, 3).

        pose (B, J, 3) root-relative normalised; root_vox (B, 3) the root's voxel position
        (soft-argmax estimate); root_depth (B,) metres; camera (B, 4) = fx, fy, cx, cy of the crop
        in pixels. Pinhole back-projection (lens distortion ignored).
        """
        c = self.config
        s = c.input_size
        root_uv = (root_vox[:, None, :2] + 0.5) * (s / self._hm) - 0.5  # (B, 1, 2) crop pixels
        uv = root_uv + pose[..., :2] * (s / 2.0)  # (B, J, 2)
        z = root_depth.view(-1, 1) + pose[..., 2] * (c.depth_range / 2.0)  # (B, J)
        f, cc = camera[:, None, 0:2], camera[:, None, 2:4]
        xy = (uv - cc) * z.unsqueeze(-1) / f
        p = torch.cat([xy, z.unsqueeze(-1)], dim=-1)
        r = c.root_joint
        return p - p[:, r : r + 1]

    # ----------------------------------------------------------------- forward
    def forward(self, images: Tensor, targets: Mapping[str, Tensor] | None = None) -> dict[str, Tensor]:
        c = self.config
        h2d, vol = self.heads(images)
        out: dict[str, Tensor] = {"heatmaps_2d": h2d, "volume": vol}
        if targets is None:
            coords = ops.soft_argmax_3d(vol)
            out["coords"] = coords
            out["pose"] = self.pose_from_coords(coords)
            return out
        joints = targets["joints_vox"]
        _check_joints("targets['joints_vox']", joints, c.num_joints, 3, batch=vol.shape[0])
        joints = joints.detach().float()
        weights = targets.get("weights")
        if weights is not None:
            weights = weights.detach().float()
        loss_2d = ops.heatmap_mse_2d(h2d, joints[..., :2], c.sigma_2d, weights, "mean")
        if c.volumetric_loss:
            # One read of the volume for both the soft-argmax and the on-the-fly Gaussian MSE.
            coords, loss_3d = ops.soft_argmax_heatmap_mse_3d(vol, joints, c.sigma_3d, weights)
        else:
            coords, loss_3d = ops.soft_argmax_3d(vol), vol.new_zeros(())
        pose = self.pose_from_coords(coords)
        gt = self.root_relative(self.voxel_to_normalised(joints))
        loss_pose = F.mse_loss(pose.float(), gt)
        loss = loss_2d.float() + loss_3d.float() + c.pose_weight * loss_pose
        out.update(coords=coords, pose=pose, loss=loss, loss_2d=loss_2d.detach(), loss_3d=loss_3d.detach(),
                   loss_pose=loss_pose.detach())
        return out

    # ------------------------------------------------------------------ weights
    def load_backbone_torchvision(self, state_dict: Mapping[str, Tensor]) -> dict[str, list[str]]:
        """Initialise the backbone from torchvision-format ResNet-50 weights (``fc`` is ignored)."""
        return load_torchvision_state_dict(self.backbone, state_dict, strict=True)


def _check_joints(name: str, t: Tensor, j: int, c: int, batch: int | None = None) -> None:
    if not isinstance(t, Tensor):
        raise TypeError(f"VolumetricPoseNet: {name} must be a tensor, got {type(t).__name__}")
    if t.dim() != 3 or t.shape[1] != j or t.shape[2] != c or (batch is not None and t.shape[0] != batch):
        b = "B" if batch is None else str(batch)
        raise ValueError(f"VolumetricPoseNet: {name} must be ({b}, {j}, {c}), got {tuple(t.shape)}")


def model_complexity(model: VolumetricPoseNet | None = None, batch: int = 1) -> dict[str, float]:
    """Parameters and FLOPs of one forward pass, measured with ``FlopCounterMode``.

    The model is rebuilt on the ``meta`` device (shapes only, no memory, no arithmetic), so the
    full 256 x 256 network is counted in well under a second. FLOPs count a multiply-add as 2
    (``FlopCounterMode``'s convention); ``gmacs`` = GFLOPs / 2 is the "FLOPs" many vision papers
    report. Only convolutions, transposed convolutions and matrix products are counted (BN,
    ReLU, pooling, the soft-argmax are < 1 % and not in the counter's table).

    Returns ``params_m`` (millions), ``params_backbone_m``, ``params_deconv_m``, ``params_head_m``
    (2D head + lifting), ``params_refine_m``, ``gflops``, ``gmacs`` and per-part ``gflops_*``, next
    to ``paper_params_m`` and ``paper_gflops``.
    """
    from torch.utils.flop_counter import FlopCounterMode

    config = model.config if model is not None else VolumetricConfig()
    with torch.device("meta"):
        meta = VolumetricPoseNet(config).eval()

    def count(mod: nn.Module | None) -> int:
        return 0 if mod is None else sum(p.numel() for p in mod.parameters())

    params = count(meta)
    x = torch.empty(batch, 3, config.input_size, config.input_size, device="meta")
    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        meta(x)
    by_module = counter.get_flop_counts()

    def flops_of(prefix: str) -> int:
        key = f"VolumetricPoseNet.{prefix}"
        return int(sum(by_module.get(key, {}).values()))

    total = counter.get_total_flops() / batch
    return {
        "params_m": params / 1e6,
        "params_backbone_m": count(meta.backbone) / 1e6,
        "params_deconv_m": count(meta.deconv) / 1e6,
        "params_head_m": (count(meta.head_2d) + count(meta.lift)) / 1e6,
        "params_refine_m": count(meta.refine) / 1e6,
        "gflops": total / 1e9,
        "gmacs": total / 2e9,
        "gflops_backbone": flops_of("backbone") / batch / 1e9,
        "gflops_deconv": flops_of("deconv") / batch / 1e9,
        "gflops_head": (flops_of("head_2d") + flops_of("lift")) / batch / 1e9,
        "gflops_refine": flops_of("refine") / batch / 1e9,
        "paper_params_m": PAPER_PARAMS_M,
        "paper_gflops": PAPER_GFLOPS,
    }
