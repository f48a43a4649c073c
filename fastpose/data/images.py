"""Image data sets for the volumetric model: rendered synthetic crops and Human3.6M crops.

Both yield the same sample (a dict; the default collate stacks it)::

    image      (3, S, S) uint8 RGB crop
    joints_2d  (18, 2) float32, crop pixels (pixel k centred at k)
    joints_3d  (18, 3) float32, camera frame, metres
    camera     (4,) float32 pinhole intrinsics of the crop (fx, fy, cx, cy), crop pixels
    visible    (18,) float32, 1 where the joint lies inside the crop
    action     str, the action group (per-action tables)

Joint 17 is the thorax added between the shoulders (``(l_shoulder + r_shoulder) / 2`` in 3D, then
projected); evaluation uses joints 0-16 only.

:class:`SyntheticImageDataset` renders on the fly in the DataLoader workers (see
:mod:`fastpose.data.render`): a world-frame pose (Z up, metres) is turned by a random yaw about
the vertical axis and moved on the floor, then seen through a random calibrated Human3.6M camera
of a training subject, cropped (with jitter when ``augment``) and rendered. A sample is a pure
function of ``(seed, epoch, index)`` -- identical in any worker, process or run.

:class:`H36MImageDataset` reads Human3.6M frames in this layout (``ROOT``)::

    ROOT/data_3d_h36m.npz                               VideoPose3D 3D file: positions_3d[subject][action]
                                                        (T, 32, 3) world metres, 50 fps
    ROOT/images/<subject>/<action>.<camera id>/<frame>.jpg
                                                        frame index (0-based, 6 digits) of that video

Frames come from the original videos, e.g.
``ffmpeg -i "S1/Videos/Walking 1.54138969.mp4" -start_number 0 "ROOT/images/S1/Walking 1.54138969/%06d.jpg"``
(the 3D file and the videos are both at 50 fps and start together). A sequence whose image folder
is missing is skipped with a warning (Human3.6M's S11 "Directions" video of camera 54138969 is
damaged). Labels: 3D through the camera's extrinsics; 2D by projecting with the full lens model
(radial + tangential, :func:`fastpose.ops.project_to_2d`), so they sit on the image; the crop
camera is the pinhole part (distortion is ignored only when back-projecting predictions).
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Sequence

import numpy as np
import torch
from torch.utils.data import Dataset

from ..camera import Camera, h36m_cameras
from ..skeleton import H36M_KEPT_FROM_32, canonical_action
from .h36m import TEST_SUBJECTS, TRAIN_SUBJECTS, read_positions_3d
from .render import (
    RenderConfig,
    color_jitter,
    crop_box,
    crop_intrinsics,
    render_crop,
    to_crop,
)

__all__ = [
    "H36MImageDataset",
    "NUM_JOINTS",
    "SyntheticImageDataset",
    "TRAIN_SUBJECTS",
    "TEST_SUBJECTS",
    "add_thorax",
    "place_in_room",
    "synthetic_poses",
]

NUM_JOINTS = 18
_L_SHOULDER, _R_SHOULDER = 11, 14


def add_thorax(joints: np.ndarray) -> np.ndarray:
    """(..., 17, C) -> (..., 18, C) with joint 17 = midpoint of the shoulders (11, 14)."""
    joints = np.asarray(joints)
    if joints.shape[-2] != 17:
        raise ValueError(f"add_thorax: joints must be (..., 17, C), got {joints.shape}")
    mid = 0.5 * (joints[..., _L_SHOULDER, :] + joints[..., _R_SHOULDER, :])
    return np.concatenate([joints, mid[..., None, :]], axis=-2)


def _intrinsics_px(cam: Camera) -> np.ndarray:
    return np.array([*cam.focal_length, *cam.center], dtype=np.float64)


def place_in_room(pose_world: np.ndarray, rng: np.random.Generator, radius: float = 1.0) -> np.ndarray:
    """Random yaw about the vertical (Z) axis through the pelvis, then move the pelvis to a
    uniform point of the floor disc of ``radius`` metres around the room centre (height kept).

    pose_world (J, 3) metres, Z up -> (J, 3).
    """
    yaw = rng.uniform(0.0, 2.0 * np.pi)
    c, s = np.cos(yaw), np.sin(yaw)
    rot = np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])
    pelvis = pose_world[0].copy()
    r, phi = radius * np.sqrt(rng.random()), rng.uniform(0.0, 2.0 * np.pi)
    target = np.array([r * np.cos(phi), r * np.sin(phi), pelvis[2]])
    return (pose_world - pelvis) @ rot.T + target


def _sample(image: np.ndarray, joints_2d: np.ndarray, joints_3d: np.ndarray, camera: np.ndarray,
            size: int, action: str) -> dict:
    visible = np.all((joints_2d >= -0.5) & (joints_2d <= size - 0.5), axis=1)
    return {
        "image": torch.from_numpy(np.ascontiguousarray(image)),
        "joints_2d": torch.from_numpy(joints_2d.astype(np.float32)),
        "joints_3d": torch.from_numpy(joints_3d.astype(np.float32)),
        "camera": torch.from_numpy(np.asarray(camera, dtype=np.float32)),
        "visible": torch.from_numpy(visible.astype(np.float32)),
        "action": action,
    }


class SyntheticImageDataset(Dataset):
    """Rendered crops of world-frame poses seen by random Human3.6M cameras (see module docs).

    Args:
        poses_world: (N, 17, 3) metres, Z up (Human3.6M joint order), e.g. from
            :func:`fastpose.data.synthetic` motion or motion capture.
        actions: N action labels (or None: every sample is ``"synthetic"``).
        length: samples per epoch (default N). With ``augment`` sample i draws a random pose,
            camera and placement from ``(seed, epoch, i)``; without, it uses pose ``i N // length``
            (evenly spread; camera and placement still drawn from ``(seed, epoch, i)``).
        seed: base seed.
        size: crop side in pixels.
        augment: jitter the crop box and colours (training); without it the box is centred
            with the default margin and no colour jitter (evaluation).
        subjects: whose calibrated cameras may be used (train subjects by default).
        render: :class:`RenderConfig` (its ``size`` is replaced by ``size``).
    """

    def __init__(
        self,
        poses_world: np.ndarray,
        actions: Sequence[str] | None = None,
        length: int | None = None,
        seed: int = 0,
        size: int = 256,
        augment: bool = True,
        subjects: Sequence[str] = TRAIN_SUBJECTS,
        render: RenderConfig | None = None,
    ):
        poses = np.asarray(poses_world, dtype=np.float64)
        if poses.ndim != 3 or poses.shape[1:] != (17, 3) or len(poses) == 0:
            raise ValueError(f"SyntheticImageDataset: poses_world must be (N > 0, 17, 3), got {poses.shape}")
        if not np.all(np.isfinite(poses)):
            raise ValueError("SyntheticImageDataset: poses_world must be finite")
        if actions is not None and len(actions) != len(poses):
            raise ValueError(
                f"SyntheticImageDataset: actions must have one label per pose ({len(poses)}), got {len(actions)}"
            )
        if length is not None and length < 1:
            raise ValueError(f"SyntheticImageDataset: length must be >= 1, got {length}")
        self.poses = poses
        self.actions = list(actions) if actions is not None else None
        self.length = int(length) if length is not None else len(poses)
        self.seed = int(seed)
        self.size = int(size)
        self.augment = augment
        base = render or RenderConfig()
        if augment:
            self.render = RenderConfig(**{**base.__dict__, "size": self.size})
        else:
            self.render = RenderConfig(**{**base.__dict__, "size": self.size, "scale_jitter": 0.0,
                                          "shift_jitter": 0.0, "color_jitter": 0.0, "noise": 0.0})
        self.cameras = [cam for s in subjects for cam in h36m_cameras(s)]
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Draw fresh renders in every epoch (call before creating the epoch's iterator)."""
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int) -> dict:
        if not 0 <= index < self.length:
            raise IndexError(f"SyntheticImageDataset: index {index} out of range [0, {self.length})")
        rng = np.random.default_rng([self.seed & 0xFFFFFFFF, self.epoch, int(index)])
        n = len(self.poses)
        # Training draws any pose; evaluation spreads ``length`` samples evenly over the poses.
        k = int(rng.integers(n)) if self.augment else (index * n) // self.length
        cam = self.cameras[int(rng.integers(len(self.cameras)))]
        world = place_in_room(self.poses[k], rng)
        p3 = add_thorax(np.asarray(cam.world_to_camera(world)))  # (18, 3) camera frame
        out = render_crop(p3, _intrinsics_px(cam), rng, self.render)
        action = self.actions[k] if self.actions is not None else "synthetic"
        return _sample(out["image"], out["joints_2d"], p3, out["camera"], self.size, action)


class H36MImageDataset(Dataset):
    """Human3.6M crops from extracted frames (layout in the module docstring).

    Args:
        root: the folder holding ``data_3d_h36m.npz`` and ``images/``.
        subjects: e.g. ``TRAIN_SUBJECTS`` or ``TEST_SUBJECTS``.
        frame_stride: keep every n-th frame (Human3.6M at 50 fps is very redundant; 5 for training
            and 64 for a quick test are common choices).
        size: crop side in pixels.
        augment: crop jitter + colour jitter (training).
        actions: keep only these action groups (e.g. ``["Walking"]``), default all.
        image_ext: extension of the frame files.
        seed: base seed of the augmentation (``(seed, epoch, index)``-deterministic).
        margin, scale_jitter, shift_jitter, color_jitter: as in :class:`RenderConfig`.
    """

    def __init__(
        self,
        root: str | os.PathLike,
        subjects: Sequence[str] = TRAIN_SUBJECTS,
        frame_stride: int = 5,
        size: int = 256,
        augment: bool = False,
        actions: Sequence[str] | None = None,
        image_ext: str = "jpg",
        seed: int = 0,
        margin: float = 0.2,
        scale_jitter: float = 0.15,
        shift_jitter: float = 0.08,
        color_jitter: float = 0.3,
    ):
        self.root = os.fspath(root)
        path = os.path.join(self.root, "data_3d_h36m.npz")
        if not os.path.isfile(path):
            raise FileNotFoundError(
                f"H36MImageDataset: {path} not found; expected ROOT/data_3d_h36m.npz (VideoPose3D layout) "
                "and ROOT/images/<subject>/<action>.<camera>/<frame:06d>.jpg"
            )
        if frame_stride < 1:
            raise ValueError(f"H36MImageDataset: frame_stride must be >= 1, got {frame_stride}")
        data = read_positions_3d(path)  # {subject: {action: (T, 17, 3)}} metres, validated
        self.size, self.augment, self.seed = int(size), augment, int(seed)
        self.image_ext = image_ext.lstrip(".")
        self.margin, self.scale_jitter, self.shift_jitter, self.color_jitter = (
            margin, scale_jitter, shift_jitter, color_jitter)
        self.epoch = 0
        self.sequences: list[tuple[str, str, int, np.ndarray, np.ndarray]] = []  # subject, action, cam, p3, uv
        self.index: list[tuple[int, int]] = []  # (sequence, frame)
        wanted = None if actions is None else {canonical_action(a) for a in actions}
        skipped: list[str] = []
        for subject in subjects:
            if subject not in data:
                raise ValueError(
                    f"H36MImageDataset: subject {subject!r} not in {path} (has {sorted(data)})"
                )
            cams = h36m_cameras(subject)
            for action in sorted(data[subject]):
                if wanted is not None and canonical_action(action) not in wanted:
                    continue
                world = np.asarray(data[subject][action], dtype=np.float64)  # (T, 17, 3)
                for ci, cam in enumerate(cams):
                    folder = self._folder(subject, action, cam.id)
                    if not os.path.isdir(folder):
                        skipped.append(f"{subject} {action!r} camera {cam.id}")
                        continue
                    p3 = add_thorax(np.asarray(cam.world_to_camera(world)))  # (T, 18, 3)
                    uv = self._project(p3, cam)  # (T, 18, 2) pixels, with distortion
                    seq = len(self.sequences)
                    self.sequences.append((subject, action, ci, p3.astype(np.float32), uv.astype(np.float32)))
                    self.index.extend((seq, f) for f in range(0, len(p3), frame_stride))
        if skipped:
            warnings.warn(f"H36MImageDataset: skipping {len(skipped)} sequence(s) without an image folder under "
                          f"{os.path.join(self.root, 'images')}: " + ", ".join(skipped), stacklevel=2)
        if not self.index:
            raise ValueError(f"H36MImageDataset: no frames found under {self.root} for subjects {list(subjects)}")

    def _folder(self, subject: str, action: str, cam_id: str) -> str:
        return os.path.join(self.root, "images", subject, f"{action}.{cam_id}")

    @staticmethod
    def _project(p3: np.ndarray, cam: Camera) -> np.ndarray:
        from .. import ops

        k = torch.from_numpy(cam.intrinsics(normalized=False)).double()  # (9,) pixels
        with torch.no_grad():
            return ops.project_to_2d(torch.from_numpy(p3).double(), k, backend="reference").numpy()

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return len(self.index)

    def __getitem__(self, index: int) -> dict:
        try:
            from PIL import Image
        except ImportError as exc:  # pillow is the optional "viz" extra
            raise ImportError("H36MImageDataset reads frames with Pillow: pip install 'fastpose[viz]' "
                              "(or pip install pillow)") from exc

        seq, frame = self.index[index]
        subject, action, ci, p3, uv = self.sequences[seq]
        cam = h36m_cameras(subject)[ci]
        rng = np.random.default_rng([self.seed & 0xFFFFFFFF, self.epoch, int(index)]) if self.augment else None
        box = crop_box(uv[frame], self.margin, self.scale_jitter, self.shift_jitter, rng)
        path = os.path.join(self._folder(subject, action, cam.id), f"{frame:06d}.{self.image_ext}")
        with Image.open(path) as im:
            x0, y0, side = (float(v) for v in box)
            # PIL's continuous coordinates put pixel k's centre at k + 0.5; ours at k.
            crop = im.convert("RGB").transform(
                (self.size, self.size), Image.Transform.EXTENT,
                (x0 + 0.5, y0 + 0.5, x0 + 0.5 + side, y0 + 0.5 + side), Image.Resampling.BILINEAR)
        img = np.asarray(crop, dtype=np.float32) / 255.0
        if rng is not None:
            img = color_jitter(img.copy(), rng, self.color_jitter, 0.0)
        image = (img * 255.0 + 0.5).astype(np.uint8).transpose(2, 0, 1)
        joints_2d = to_crop(uv[frame], box, self.size)
        camera = crop_intrinsics(_intrinsics_px(cam), box, self.size)
        return _sample(image, joints_2d, p3[frame], camera, self.size, canonical_action(action))


def synthetic_poses(
    subjects: Sequence[str] = TRAIN_SUBJECTS,
    seed: int = 0,
    frames: int = 300,
    stride: int = 1,
    actions: Sequence[str] | None = None,
) -> tuple[np.ndarray, list[str]]:
    """World-frame poses of the built-in synthetic motion (:mod:`fastpose.data.synthetic`).

    Returns ``(poses (N, 17, 3) metres Z up, actions: N action-group names)`` for every
    sequence of ``subjects`` (mean length ``frames``), keeping every ``stride``-th frame.
    """
    from .synthetic import SyntheticConfig, generate_synthetic

    if stride < 1:
        raise ValueError(f"synthetic_poses: stride must be >= 1, got {stride}")
    kwargs = {} if actions is None else {"actions": tuple(actions)}
    data = generate_synthetic(SyntheticConfig(seed=seed, subjects=tuple(subjects), frames=frames, **kwargs))
    poses, labels = [], []
    for subject in data.positions_3d:
        for action, world in data.positions_3d[subject].items():
            p = np.asarray(world)[::stride]
            if p.shape[1] == 32:
                p = p[:, list(H36M_KEPT_FROM_32)]
            poses.append(p)
            labels += [canonical_action(action)] * len(p)
    return np.concatenate(poses).astype(np.float64), labels
