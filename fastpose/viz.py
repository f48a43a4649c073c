"""Pose figures: the 2D input over the image frame and the 3D prediction overlaid on the ground truth.

:func:`pose_figure` builds the figure of one frame (a matplotlib ``Figure``, for notebooks and
papers); :func:`render_poses` writes a PNG of one frame and/or an animated GIF of a frame range
(matplotlib's Pillow writer: no ffmpeg needed). Two panels:

1. **Input 2D**: the keypoints in pixels over the image frame (the camera's resolution
   ``res = (width, height)`` drawn as the frame, y down as in the image), bones coloured by
   side (left red, right blue, centre grey), with the frame number in the title. Without
   ``res`` the normalised screen coordinates are shown (x in [-1, 1], y down).
2. **3D**: prediction (solid, orange) and ground truth (dashed, black) in ONE view, both
   root-relative in the camera frame, in millimetres, drawn from a viewpoint above and beside
   the camera (x right, depth into the picture, height = -y up), with labelled and ticked axes
   and a legend. The title gives the frame number and that frame's MPJPE (mm), computed as
   drawn: both roots subtracted, mean over the joints of |pred_j - gt_j|.

Inputs are in metres (``(T, J, 3)`` camera frame, root-relative or not: the root is subtracted
for drawing) and normalised screen coordinates for the 2D keypoints (``(T, J, 2)``, the
VideoPose3D convention). Matplotlib is imported lazily with the non-interactive Agg backend.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .camera import image_coordinates
from .skeleton import H36M_SKELETON, Skeleton

__all__ = ["frame_mpjpe", "pose_figure", "render_poses"]

_SIDE_COLOURS = {"left": "#d62728", "right": "#1f77b4", "centre": "#7f7f7f"}  # 2D panel
_PRED_STYLE = {"color": "#ff7f0e", "lw": 2.6, "ls": "-"}  # 3D prediction
_GT_STYLE = {"color": "#111111", "lw": 1.6, "ls": "--"}  # 3D ground truth
_RADIUS_MM = 1000.0  # half-size of the 3D view around the root
_TICKS_MM = (-1000, -500, 0, 500, 1000)


def frame_mpjpe(predicted: np.ndarray, ground_truth: np.ndarray) -> np.ndarray:
    """Per-frame MPJPE in mm of root-aligned poses, as the 3D panel draws them::

        e_t = 1000 * mean_j |(P_tj - P_t0) - (G_tj - G_t0)|_2

    predicted, ground_truth (T, J, 3) metres -> (T,) millimetres.
    """
    p = np.asarray(predicted, dtype=np.float64)
    g = np.asarray(ground_truth, dtype=np.float64)
    if p.ndim != 3 or p.shape[-1] != 3 or p.shape != g.shape:
        raise ValueError(f"frame_mpjpe: predicted and ground_truth must both be (T, J, 3), "
                         f"received {p.shape} and {g.shape}")
    return 1000.0 * np.linalg.norm((p - p[:, :1]) - (g - g[:, :1]), axis=-1).mean(axis=-1)


def _to_plot(poses: np.ndarray) -> np.ndarray:
    """Camera frame (x right, y down, z forward), metres -> root-relative plot axes in mm
    (x, depth, height = -y): (T, J, 3) -> (T, J, 3)."""
    rel = 1000.0 * (poses - poses[:, :1])  # (T, J, 3) mm
    return np.stack([rel[..., 0], rel[..., 2], -rel[..., 1]], axis=-1)


def _check_inputs(kp, pred, gt, skeleton: Skeleton, fn: str):
    kp = np.asarray(kp, dtype=np.float64)
    pred = np.asarray(pred, dtype=np.float64)
    gt = None if gt is None else np.asarray(gt, dtype=np.float64)
    J = skeleton.num_joints
    if kp.ndim != 3 or kp.shape[1:] != (J, 2) or kp.shape[0] < 1:
        raise ValueError(f"{fn}: keypoints_2d must be (T, {J}, 2) with T >= 1, received {kp.shape}")
    T = kp.shape[0]
    if pred.shape != (T, J, 3):
        raise ValueError(f"{fn}: predicted must be (T, {J}, 3) with T={T}, received {pred.shape}")
    if gt is not None and gt.shape != pred.shape:
        raise ValueError(f"{fn}: ground_truth must have the shape of predicted {pred.shape}, received {gt.shape}")
    return kp, pred, gt


class _PoseFigure:
    """The two panels and their artists; :meth:`draw` shows frame ``t``."""

    def __init__(self, kp, pred, gt, *, res, skeleton: Skeleton, title: str, crop: np.ndarray | None) -> None:
        import matplotlib

        matplotlib.use("Agg", force=False)
        import matplotlib.pyplot as plt
        from matplotlib.lines import Line2D
        from matplotlib.patches import Rectangle

        self.skeleton = skeleton
        self.res = res
        self.kp = image_coordinates(kp, *res) if res is not None else kp  # (T, J, 2) pixels or normalised
        self.pred = _to_plot(pred)  # (T, J, 3) mm
        self.gt = None if gt is None else _to_plot(gt)
        self.errors = None if gt is None else frame_mpjpe(pred, gt)  # (T,) mm
        self.fig = fig = plt.figure(figsize=(12.0, 5.6))
        self.ax2d = ax2d = fig.add_subplot(1, 2, 1)
        self.ax3d = ax3d = fig.add_subplot(1, 2, 2, projection="3d")

        # ---- 2D: the image frame, y down
        if res is not None:
            w, h = res
            ax2d.add_patch(Rectangle((0, 0), w, h, fill=True, facecolor="#f4f4f4", edgecolor="#444444", lw=1.2,
                                     label=f"image frame {w}x{h}"))
            m = 0.03 * max(w, h)
            ax2d.set_xlim(-m, w + m)
            ax2d.set_ylim(h + m, -m)  # y down
            unit = "pixels"
        else:
            shown = self.kp if crop is None else self.kp[crop]
            lo, hi = shown.reshape(-1, 2).min(0), shown.reshape(-1, 2).max(0)
            c, r = (lo + hi) / 2, 0.6 * max(float((hi - lo).max()), 1e-3)
            ax2d.set_xlim(c[0] - r, c[0] + r)
            ax2d.set_ylim(c[1] + r, c[1] - r)  # y down
            unit = "normalised"
        ax2d.set_aspect("equal")
        ax2d.set_xlabel(f"x ({unit})")
        ax2d.set_ylabel(f"y ({unit}, down)")
        ax2d.grid(True, lw=0.3, alpha=0.5)
        self.lines2d = [ax2d.plot([], [], color=_SIDE_COLOURS[skeleton.side_of(c)], lw=2)[0]
                        for c, _ in skeleton.bones]
        self.points2d = ax2d.plot([], [], "o", color="#2ca02c", ms=3.5, label="input 2D keypoints")[0]
        handles = [self.points2d] + [Line2D([], [], color=_SIDE_COLOURS[s], lw=2, label=f"{s} side")
                                     for s in ("left", "right")]
        if res is not None:
            handles.insert(0, ax2d.patches[0])
        # below the panel: the person may stand anywhere in the frame
        ax2d.legend(handles=handles, loc="upper center", bbox_to_anchor=(0.5, -0.11), ncol=len(handles),
                    fontsize=8, frameon=False)

        # ---- 3D: prediction over ground truth, mm
        ax3d.view_init(elev=15.0, azim=-70)
        for setter in (ax3d.set_xlim3d, ax3d.set_ylim3d, ax3d.set_zlim3d):
            setter(-_RADIUS_MM, _RADIUS_MM)
        ax3d.set_xticks(_TICKS_MM)
        ax3d.set_yticks(_TICKS_MM)
        ax3d.set_zticks(_TICKS_MM)
        ax3d.tick_params(labelsize=7)
        ax3d.set_xlabel("x (mm)")
        ax3d.set_ylabel("depth (mm)")
        ax3d.set_zlabel("height (mm)")
        ax3d.set_box_aspect((1, 1, 1), zoom=1.1)
        self.lines_pred = [ax3d.plot([], [], [], **_PRED_STYLE)[0] for _ in skeleton.bones]
        self.lines_pred[0].set_label("prediction")
        self.lines_gt = []
        if self.gt is not None:
            self.lines_gt = [ax3d.plot([], [], [], **_GT_STYLE)[0] for _ in skeleton.bones]
            self.lines_gt[0].set_label("ground truth")
        ax3d.legend(loc="upper left", fontsize=9, framealpha=0.85)
        if title:
            fig.suptitle(title)
        fig.subplots_adjust(left=0.07, right=0.97, bottom=0.14, top=0.88, wspace=0.12)

    def draw(self, t: int) -> list:
        sk = self.skeleton
        kp = self.kp
        for line, (c, p) in zip(self.lines2d, sk.bones, strict=True):
            line.set_data([kp[t, c, 0], kp[t, p, 0]], [kp[t, c, 1], kp[t, p, 1]])
        self.points2d.set_data(kp[t, :, 0], kp[t, :, 1])
        self.ax2d.set_title(f"Input 2D, frame {t}")
        for lines, pose in ((self.lines_pred, self.pred), (self.lines_gt, self.gt)):
            for line, (c, p) in zip(lines, sk.bones, strict=False):
                line.set_data_3d([pose[t, c, 0], pose[t, p, 0]], [pose[t, c, 1], pose[t, p, 1]],
                                 [pose[t, c, 2], pose[t, p, 2]])
        if self.errors is not None:
            self.ax3d.set_title(f"3D, frame {t}: MPJPE {self.errors[t]:.1f} mm (root-aligned)")
        else:
            self.ax3d.set_title(f"3D prediction, frame {t}")
        return [*self.lines2d, self.points2d, *self.lines_pred, *self.lines_gt]


def pose_figure(
    keypoints_2d: np.ndarray,
    predicted: np.ndarray,
    ground_truth: np.ndarray | None = None,
    *,
    frame: int = 0,
    res: tuple[int, int] | None = None,
    skeleton: Skeleton = H36M_SKELETON,
    title: str = "",
):
    """The figure of frame ``frame`` (a ``matplotlib.figure.Figure``; close it with
    ``matplotlib.pyplot.close(fig)``).

    keypoints_2d (T, J, 2) normalised screen coordinates; predicted, ground_truth (T, J, 3)
    metres, camera frame; res = (width, height) in pixels of the camera's image.
    """
    kp, pred, gt = _check_inputs(keypoints_2d, predicted, ground_truth, skeleton, "pose_figure")
    T = kp.shape[0]
    if not 0 <= frame < T:
        raise ValueError(f"pose_figure: frame must be in [0, {T}), received {frame}")
    pf = _PoseFigure(kp, pred, gt, res=res, skeleton=skeleton, title=title, crop=None)
    pf.draw(frame)
    return pf.fig


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
    dpi: int = 80,
) -> list[Path]:
    """Write ``png_path`` (frame ``frame``) and/or ``gif_path`` (frames ``frames = (start,
    stop)``, every ``step``-th, played at ``fps``) of :func:`pose_figure`'s panels. Returns
    the written paths.

    keypoints_2d (T, J, 2) normalised screen coordinates; predicted, ground_truth (T, J, 3)
    metres, camera frame (root-relative or not: the root is subtracted for drawing); res =
    (width, height) in pixels. At the default ``dpi`` a frame is 960 x 448 pixels.
    """
    fn = "render_poses"
    kp, pred, gt = _check_inputs(keypoints_2d, predicted, ground_truth, skeleton, fn)
    T = kp.shape[0]
    if not 0 <= frame < T:
        raise ValueError(f"{fn}: frame must be in [0, {T}), received {frame}")
    if png_path is None and gif_path is None:
        raise ValueError(f"{fn}: give png_path and/or gif_path (both are None)")
    start, stop = frames if frames is not None else (0, T)
    if gif_path is not None and not 0 <= start < stop <= T:
        raise ValueError(f"{fn}: frames must satisfy 0 <= start < stop <= {T}, received {frames}")
    if step < 1 or fps < 1 or dpi < 1:
        raise ValueError(f"{fn}: step, fps and dpi must be >= 1, received step={step}, fps={fps}, dpi={dpi}")

    import matplotlib.pyplot as plt
    from matplotlib.animation import FuncAnimation, PillowWriter

    crop = slice(start, stop) if frames is not None else None
    pf = _PoseFigure(kp, pred, gt, res=res, skeleton=skeleton, title=title, crop=crop)
    written = []
    try:
        if png_path is not None:
            pf.draw(frame)
            png_path = Path(png_path)
            png_path.parent.mkdir(parents=True, exist_ok=True)
            pf.fig.savefig(png_path, dpi=dpi)
            written.append(png_path)
        if gif_path is not None:
            gif_path = Path(gif_path)
            gif_path.parent.mkdir(parents=True, exist_ok=True)
            anim = FuncAnimation(pf.fig, pf.draw, frames=range(start, stop, step), blit=False)
            anim.save(gif_path, writer=PillowWriter(fps=fps), dpi=dpi)
            written.append(gif_path)
    finally:
        plt.close(pf.fig)
    return written
