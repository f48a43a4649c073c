"""The Human3.6M 17-joint skeleton: joint names, parents, left/right sides, horizontal flip and handedness.

Joint order (the order VideoPose3D keeps after removing 15 of the 32 motion-capture joints)::

     0 pelvis     1 r_hip      2 r_knee     3 r_ankle    4 l_hip      5 l_knee
     6 l_ankle    7 spine      8 thorax     9 neck_nose 10 head      11 l_shoulder
    12 l_elbow   13 l_wrist   14 r_shoulder 15 r_elbow  16 r_wrist

Every function here accepts NumPy arrays and PyTorch tensors alike, with any
number of leading dimensions: poses are ``(..., J, C)`` with ``C = 2`` (image)
or ``C = 3`` (3D).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TypeVar

import numpy as np
import torch

__all__ = [
    "H36M_ACTIONS",
    "H36M_JOINT_NAMES",
    "H36M_KEPT_FROM_32",
    "H36M_PARENTS",
    "H36M_PARENTS_32",
    "H36M_SKELETON",
    "Skeleton",
    "canonical_action",
    "chirality",
]

Array = TypeVar("Array", np.ndarray, torch.Tensor)

H36M_JOINT_NAMES: tuple[str, ...] = (
    "pelvis", "r_hip", "r_knee", "r_ankle", "l_hip", "l_knee", "l_ankle", "spine", "thorax",
    "neck_nose", "head", "l_shoulder", "l_elbow", "l_wrist", "r_shoulder", "r_elbow", "r_wrist",
)  # fmt: skip
H36M_PARENTS: tuple[int, ...] = (-1, 0, 1, 2, 0, 4, 5, 0, 7, 8, 9, 8, 11, 12, 8, 14, 15)
H36M_JOINTS_LEFT: tuple[int, ...] = (4, 5, 6, 11, 12, 13)
H36M_JOINTS_RIGHT: tuple[int, ...] = (1, 2, 3, 14, 15, 16)

# The 32-joint motion-capture skeleton stored in ``data_3d_h36m.npz`` and the
# 17 joints of it that are kept (everything else is a duplicate or a hand/toe end site).
H36M_PARENTS_32: tuple[int, ...] = (
    -1, 0, 1, 2, 3, 4, 0, 6, 7, 8, 9, 0, 11, 12, 13, 14, 12, 16, 17, 18, 19, 20, 19, 22, 12, 24,
    25, 26, 27, 28, 27, 30,
)  # fmt: skip
H36M_KEPT_FROM_32: tuple[int, ...] = (0, 1, 2, 3, 6, 7, 8, 12, 13, 14, 15, 17, 18, 19, 25, 26, 27)

# The 15 Human3.6M action names, in the column order of the VideoPose3D tables.
H36M_ACTIONS: tuple[str, ...] = (
    "Directions", "Discussion", "Eating", "Greeting", "Phoning", "Photo", "Posing", "Purchases",
    "Sitting", "SittingDown", "Smoking", "Waiting", "WalkDog", "Walking", "WalkTogether",
)  # fmt: skip

# Spellings found in the distributed Human3.6M files for the same actions.
_ACTION_ALIASES = {"TakingPhoto": "Photo", "WalkingDog": "WalkDog"}


def canonical_action(name: str) -> str:
    """Action group of a sequence name: ``"Walking 1"`` -> ``"Walking"``, ``"TakingPhoto"`` -> ``"Photo"``.

    Sequences of one action are told apart by a suffix after a space (subaction);
    VideoPose3D groups by the part before it.
    """
    if not isinstance(name, str) or not name.strip():
        raise ValueError(f"canonical_action: expected a non-empty action name, got {name!r}")
    base = name.split(" ")[0]
    return _ACTION_ALIASES.get(base, base)


@dataclass(frozen=True)
class Skeleton:
    """A kinematic tree: ``parents[j]`` is the parent of joint ``j`` (-1 for the root).

    ``joints_left[i]`` and ``joints_right[i]`` are mirror images of each other.
    """

    names: tuple[str, ...]
    parents: tuple[int, ...]
    joints_left: tuple[int, ...]
    joints_right: tuple[int, ...]

    def __post_init__(self) -> None:
        n = len(self.parents)
        if len(self.names) != n:
            raise ValueError(f"Skeleton: {len(self.names)} names for {n} parents")
        if sum(p == -1 for p in self.parents) != 1 or self.parents[0] != -1:
            raise ValueError(f"Skeleton: parents must have exactly one root at index 0, got {self.parents}")
        for j, p in enumerate(self.parents[1:], start=1):
            if not 0 <= p < j:
                # Parents precede children, so forward kinematics can run in index order.
                raise ValueError(f"Skeleton: parent of joint {j} is {p}; expected 0 <= parent < {j}")
        if len(self.joints_left) != len(self.joints_right):
            raise ValueError("Skeleton: joints_left and joints_right must have the same length")
        if set(self.joints_left) & set(self.joints_right):
            raise ValueError("Skeleton: a joint cannot be both left and right")

    @property
    def num_joints(self) -> int:
        return len(self.parents)

    @property
    def bones(self) -> tuple[tuple[int, int], ...]:
        """(child, parent) pairs, one per non-root joint."""
        return tuple((j, p) for j, p in enumerate(self.parents) if p >= 0)

    @property
    def flip_permutation(self) -> tuple[int, ...]:
        """Joint order of the mirrored pose: ``flipped[..., j, :] = pose[..., perm[j], :]``."""
        perm = list(range(self.num_joints))
        for left, right in zip(self.joints_left, self.joints_right, strict=True):
            perm[left], perm[right] = right, left
        return tuple(perm)

    def side_of(self, joint: int) -> str:
        """"left", "right" or "centre" (used to colour drawings)."""
        if joint in self.joints_left:
            return "left"
        if joint in self.joints_right:
            return "right"
        return "centre"

    def flip(self, poses: Array) -> Array:
        """Mirror poses horizontally: negate coordinate 0 (x) and swap left and right joints.

        poses (..., J, C), C >= 1 -> same shape. Valid for 3D poses in a camera
        frame and for 2D keypoints in normalised screen coordinates (centred at
        x = 0); flipping twice is the identity.
        """
        self._check_poses(poses, "poses")
        perm = list(self.flip_permutation)
        out = poses[..., perm, :]  # (..., J, C), a copy
        if isinstance(out, torch.Tensor):
            sign = torch.ones(out.shape[-1], dtype=out.dtype, device=out.device)
        else:
            sign = np.ones(out.shape[-1], dtype=out.dtype)
        sign[0] = -1
        return out * sign

    def bone_lengths(self, poses: Array) -> Array:
        """Length of every bone: poses (..., J, C) -> (..., J - 1), ordered as :attr:`bones`."""
        self._check_poses(poses, "poses")
        child = [c for c, _ in self.bones]
        parent = [p for _, p in self.bones]
        diff = poses[..., child, :] - poses[..., parent, :]  # (..., J-1, C)
        if isinstance(diff, torch.Tensor):
            return torch.linalg.vector_norm(diff, dim=-1)
        return np.linalg.norm(diff, axis=-1)

    def _check_poses(self, poses, name: str) -> None:
        if not isinstance(poses, (np.ndarray, torch.Tensor)):
            raise TypeError(f"{name}: expected a numpy array or torch tensor, got {type(poses).__name__}")
        if poses.ndim < 2 or poses.shape[-2] != self.num_joints:
            raise ValueError(
                f"{name}: expected shape (..., {self.num_joints}, C), got {tuple(poses.shape)}"
            )


H36M_SKELETON = Skeleton(H36M_JOINT_NAMES, H36M_PARENTS, H36M_JOINTS_LEFT, H36M_JOINTS_RIGHT)


# --------------------------------------------------------------------------------------------
# handedness
# --------------------------------------------------------------------------------------------
_KNEE_BEND_MIN = 0.05  # knee offset / thigh length below which a frame casts no vote (~6 deg of flexion)


def chirality(poses, *, per_frame: bool = False, up_axis: int = 2):
    """Handedness of 3D poses in a right-handed world frame: +1 real people, -1 mirror images.

    poses: (T, 17, 3) or (..., T, 17, 3) world-frame positions in the Human3.6M joint order, any
    unit (metres or millimetres), ``up_axis`` the vertical axis (2: Z up, as the Human3.6M world
    and the CMU set). NumPy array or torch tensor.

    Per frame, with ``a = (l_hip - r_hip) + (l_shoulder - r_shoulder)`` the body's left-pointing
    axis *as labelled* and ``u`` the up vector, ``a x u`` points forward for a real person (in a
    right-handed frame, left x up = forward). The forward direction is measured independently of
    the labels from the knees, a hinge that only bends forward: ``k`` is the sum over both legs of
    the knee's offset from the hip-ankle line (labels do not matter in the sum). The frame's value
    is ``sign((a x u) . k)``, or 0 when the knees are nearly straight (offset under 5 % of the
    thigh length, i.e. less than about 6 degrees of flexion, where the sign is noise).
    Swapping the left/right labels flips ``a``; mirroring the world (negating one axis) flips the
    triple product; doing both (:meth:`Skeleton.flip`) keeps +1.

    Returns, with ``per_frame=False`` (default), the majority vote over the frames: an ``int``
    for a (T, 17, 3) input, an int64 array (...) otherwise (NumPy for both input kinds); 0 when
    no frame has bent knees. With ``per_frame=True``: float array (..., T) of -1/0/+1.
    """
    if isinstance(poses, torch.Tensor):
        poses = poses.detach().cpu().numpy()
    if not isinstance(poses, np.ndarray):
        raise TypeError(f"chirality: poses must be a numpy array or torch tensor, got {type(poses).__name__}")
    if poses.ndim < 3 or poses.shape[-2:] != (17, 3):
        raise ValueError(f"chirality: poses must have shape (T, 17, 3) or (..., T, 17, 3), got {tuple(poses.shape)}")
    if up_axis not in (0, 1, 2):
        raise ValueError(f"chirality: up_axis must be 0, 1 or 2, got {up_axis!r}")
    p = poses.astype(np.float64)
    left = (p[..., 4, :] - p[..., 1, :]) + (p[..., 11, :] - p[..., 14, :])  # (..., T, 3)
    up = np.zeros(3)
    up[up_axis] = 1.0
    labelled_forward = np.cross(left, up)  # (..., T, 3)
    bend = np.zeros_like(left)
    thigh = np.zeros(left.shape[:-1])
    for hip, knee, ankle in ((1, 2, 3), (4, 5, 6)):
        hk, ha = p[..., knee, :] - p[..., hip, :], p[..., ankle, :] - p[..., hip, :]
        along = (hk * ha).sum(-1, keepdims=True) / np.maximum((ha * ha).sum(-1, keepdims=True), 1e-12)
        bend += hk - along * ha  # knee offset perpendicular to the hip-ankle line
        thigh += 0.5 * np.linalg.norm(hk, axis=-1)
    norm = np.linalg.norm(labelled_forward, axis=-1) * thigh
    score = (labelled_forward * bend).sum(-1) / np.maximum(norm, 1e-12)  # (..., T)
    votes = np.where(np.abs(score) > _KNEE_BEND_MIN, np.sign(score), 0.0)
    if per_frame:
        return votes
    out = np.sign(votes.sum(-1)).astype(np.int64)
    return int(out) if out.ndim == 0 else out
