"""Skeleton figures: input 2D keypoints, predicted 3D and ground-truth 3D side by side.

:func:`render_poses` writes a PNG of one frame and an animated GIF of a frame range
(matplotlib's Pillow writer: no ffmpeg needed). Panels:

1. the input 2D keypoints in image coordinates (pixels, y down) when ``res`` is given, else
   normalised screen coordinates;
2. the prediction in 3D, 3. the ground truth in 3D (optional), both root-relative in the
   camera frame and drawn from a viewpoint above and beside the camera (x right, depth into
   the picture, up = -y).

Left limbs are drawn in red, right limbs in blue/black, the spine in grey (VideoPose3D's
colours). Matplotlib is imported lazily with the non-interactive Agg backend.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .camera import image_coordinates
from .skeleton import H36M_SKELETON, Skeleton

__all__ = ["render_poses"]

_COLOURS = {"left": "#d62728", "right": "#1f1f1f", "centre": "#7f7f7f"}


def render_poses(
    keypoints_2d: np.ndarray,
    predicted: np.ndarray,
    ground_truth: np.ndarray | None = None,
    *,
    png_path: str | Path | None = None,
    gif_path: str | Path | None = None,
    frame: int = 0,
    frames: tuple[int, int] | None = None,
    res: tuple[int, int] | None = None,
    skeleton: Skeleton = H36M_SKELETON,
    fps: int = 25,
    step: int = 2,
    title: str = "",
    dpi: int = 70,
) -> list[Path]:
    """Draw the panels; write ``png_path`` (frame ``frame``) and/or ``gif_path`` (frames
    ``frames = (start, stop)``, every ``step``-th, at ``fps``). Returns the written paths.

    keypoints_2d (T, J, 2) normalised screen coordinates; predicted, ground_truth (T, J, 3)
    metres, camera frame (root-relative or not: the root is subtracted for drawing).
    """
    kp = np.asarray(keypoints_2d, dtype=np.float64)
    pred = np.asarray(predicted, dtype=np.float64)
    gt = None if ground_truth is None else np.asarray(ground_truth, dtype=np.float64)
    T, J = kp.shape[0], skeleton.num_joints
    if kp.shape != (T, J, 2):
        raise ValueError(f"render_poses: keypoints_2d must be (T, {J}, 2), got {kp.shape}")
    if pred.shape != (T, J, 3):
        raise ValueError(f"render_poses: predicted must be (T, {J}, 3) with T={T}, got {pred.shape}")
    if gt is not None and gt.shape != pred.shape:
        raise ValueError(f"render_poses: ground_truth must have the shape of predicted {pred.shape}, got {gt.shape}")
    if not 0 <= frame < T:
        raise ValueError(f"render_poses: frame must be in [0, {T}), got {frame}")
    if png_path is None and gif_path is None:
        raise ValueError("render_poses: give png_path and/or gif_path")

    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt
    from matplotlib.animation import FuncAnimation, PillowWriter

    if res is not None:
        kp = image_coordinates(kp, *res)  # pixels
    poses = [("Prediction", _to_plot(pred))]
    if gt is not None:
        poses.append(("Ground truth", _to_plot(gt)))
    radius = 1.0  # metres around the root shown in 3D

    fig = plt.figure(figsize=(4 * (1 + len(poses)), 4.2))
    ax2d = fig.add_subplot(1, 1 + len(poses), 1)
    ax2d.set_title("Input 2D")
    # a square crop around every keypoint of the drawn frames (y down, as in the image)
    shown = kp[slice(*frames)] if frames is not None else kp
    lo, hi = shown.reshape(-1, 2).min(0), shown.reshape(-1, 2).max(0)
    c, r = (lo + hi) / 2, 0.55 * (hi - lo).max()
    ax2d.set_xlim(c[0] - r, c[0] + r)
    ax2d.set_ylim(c[1] + r, c[1] - r)
    ax2d.set_aspect("equal")
    ax2d.set_xlabel("x (pixels)" if res is not None else "x (normalised)")
    axes3d = []
    for i, (name, _) in enumerate(poses):
        ax = fig.add_subplot(1, 1 + len(poses), i + 2, projection="3d")
        ax.set_title(name)
        ax.view_init(elev=15.0, azim=-70)
        ax.set_xlim3d(-radius, radius)
        ax.set_ylim3d(-radius, radius)
        ax.set_zlim3d(-radius, radius)
        ax.set_xticklabels([])
        ax.set_yticklabels([])
        ax.set_zticklabels([])
        axes3d.append(ax)
    if title:
        fig.suptitle(title)

    lines2d = [ax2d.plot([], [], color=_COLOURS[skeleton.side_of(c)], lw=2)[0] for c, _ in skeleton.bones]
    points2d = ax2d.plot([], [], "o", color="#2ca02c", ms=3)[0]
    lines3d = [[ax.plot([], [], [], color=_COLOURS[skeleton.side_of(c)], lw=2)[0] for c, _ in skeleton.bones]
               for ax in axes3d]

    def draw(t: int):
        for line, (c, p) in zip(lines2d, skeleton.bones, strict=True):
            line.set_data([kp[t, c, 0], kp[t, p, 0]], [kp[t, c, 1], kp[t, p, 1]])
        points2d.set_data(kp[t, :, 0], kp[t, :, 1])
        for lines, (_, pose) in zip(lines3d, poses, strict=True):
            for line, (c, p) in zip(lines, skeleton.bones, strict=True):
                line.set_data_3d([pose[t, c, 0], pose[t, p, 0]], [pose[t, c, 1], pose[t, p, 1]],
                                 [pose[t, c, 2], pose[t, p, 2]])
        return [*lines2d, points2d, *(ln for lines in lines3d for ln in lines)]

    written = []
    if png_path is not None:
        draw(frame)
        png_path = Path(png_path)
        png_path.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(png_path, dpi=dpi)
        written.append(png_path)
    if gif_path is not None:
        start, stop = frames if frames is not None else (0, T)
        if not 0 <= start < stop <= T:
            raise ValueError(f"render_poses: frames must satisfy 0 <= start < stop <= {T}, got {frames}")
        gif_path = Path(gif_path)
        gif_path.parent.mkdir(parents=True, exist_ok=True)
        anim = FuncAnimation(fig, draw, frames=range(start, stop, max(step, 1)), blit=False)
        anim.save(gif_path, writer=PillowWriter(fps=fps), dpi=dpi)
        written.append(gif_path)
    plt.close(fig)
    return written


def _to_plot(poses: np.ndarray) -> np.ndarray:
    """Camera frame (x right, y down, z forward), root-relative -> plot axes (x, depth, up)."""
    rel = poses - poses[:, :1]  # (T, J, 3)
    return np.stack([rel[..., 0], rel[..., 2], -rel[..., 1]], axis=-1)
