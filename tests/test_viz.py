"""fastpose.viz: the figure's content (axes, labels, ticks, legends, per-frame error, drawn
coordinates) read back from the matplotlib objects, and the PNG/GIF files."""

from __future__ import annotations

import numpy as np
import pytest

from fastpose.viz import frame_mpjpe, pose_figure, render_poses

plt = pytest.importorskip("matplotlib.pyplot")
Image = pytest.importorskip("PIL.Image")

W, H = 1000, 1002


def _clip(T=12, seed=0):
    """Keypoints (T, 17, 2) normalised, ground truth (T, 17, 3) ~5 m in front, a noisy prediction."""
    rng = np.random.default_rng(seed)
    body = rng.normal(scale=0.3, size=(17, 3))
    gt = body[None] + 0.02 * np.arange(T)[:, None, None] + np.array([0.1, -0.2, 5.0])
    pred = gt - gt[:, :1] + rng.normal(scale=0.03, size=gt.shape)
    kp = gt[..., :2] / gt[..., 2:] * 1.1  # a pinhole camera in normalised screen units
    return kp, pred, gt


def test_frame_mpjpe_is_root_aligned_millimetres():
    _, pred, gt = _clip()
    expected = [1000 * np.mean([np.linalg.norm((pred[t, j] - pred[t, 0]) - (gt[t, j] - gt[t, 0])) for j in range(17)])
                for t in range(len(gt))]
    np.testing.assert_allclose(frame_mpjpe(pred, gt), expected, rtol=1e-12)
    with pytest.raises(ValueError, match=r"both be \(T, J, 3\), received \(12, 17, 3\) and \(11, 17, 3\)"):
        frame_mpjpe(pred, gt[:11])


def test_figure_overlays_prediction_and_ground_truth_in_one_labelled_3d_view():
    kp, pred, gt = _clip()
    t = 5
    fig = pose_figure(kp, pred, gt, frame=t, res=(W, H), title="S9 Walking, camera 0")
    try:
        ax2d, ax3d = fig.axes
        assert ax3d.name == "3d" and ax2d.name != "3d"
        assert fig._suptitle.get_text() == "S9 Walking, camera 0"
        # 2D: the image frame in pixels, y down, frame number, legend
        assert ax2d.get_xlabel() == "x (pixels)" and ax2d.get_ylabel() == "y (pixels, down)"
        x0, x1 = ax2d.get_xlim()
        y0, y1 = ax2d.get_ylim()
        assert x0 < 0 and x1 > W and y0 > H and y1 < 0  # the whole frame, y axis pointing down
        frame_rect = ax2d.patches[0]
        assert (frame_rect.get_width(), frame_rect.get_height()) == (W, H)
        assert ax2d.get_title() == f"Input 2D, frame {t}"
        texts2d = [x.get_text() for x in ax2d.get_legend().get_texts()]
        assert texts2d == [f"image frame {W}x{H}", "input 2D keypoints", "left side", "right side"]
        pts = [ln for ln in ax2d.get_lines() if ln.get_label() == "input 2D keypoints"][0]
        u = (kp[t, :, 0] + 1) * W / 2  # pixels: (x + 1) w / 2, (y + h / w) w / 2
        v = (kp[t, :, 1] + H / W) * W / 2
        np.testing.assert_allclose(pts.get_xdata(), u, rtol=1e-12)
        np.testing.assert_allclose(pts.get_ydata(), v, rtol=1e-12)
        # 3D: mm axes with ticks, both skeletons, legend, per-frame MPJPE in the title
        assert (ax3d.get_xlabel(), ax3d.get_ylabel(), ax3d.get_zlabel()) == ("x (mm)", "depth (mm)", "height (mm)")
        for ticks in (ax3d.get_xticks(), ax3d.get_yticks(), ax3d.get_zticks()):
            assert list(ticks) == [-1000, -500, 0, 500, 1000]
        assert [x.get_text() for x in ax3d.get_legend().get_texts()] == ["prediction", "ground truth"]
        e = 1000 * np.linalg.norm((pred[t] - pred[t, :1]) - (gt[t] - gt[t, :1]), axis=-1).mean()
        assert ax3d.get_title() == f"3D, frame {t}: MPJPE {e:.1f} mm (root-aligned)"
        lines = ax3d.get_lines()
        assert len(lines) == 2 * 16  # 16 bones each
        solid = [ln for ln in lines if ln.get_linestyle() == "-"]
        dashed = [ln for ln in lines if ln.get_linestyle() == "--"]
        assert len(solid) == len(dashed) == 16 and solid[0].get_color() != dashed[0].get_color()
        # bone 0 is (r_hip, pelvis): root-relative mm, plot axes (x, depth z, height -y)
        xs, ys, zs = solid[0].get_data_3d()
        r_hip = 1000 * (pred[t, 1] - pred[t, 0])
        np.testing.assert_allclose([xs[0], ys[0], zs[0]], [r_hip[0], r_hip[2], -r_hip[1]], rtol=1e-12)
        np.testing.assert_allclose([xs[1], ys[1], zs[1]], [0, 0, 0], atol=1e-9)
        xs, ys, zs = dashed[0].get_data_3d()
        g = 1000 * (gt[t, 1] - gt[t, 0])
        np.testing.assert_allclose([xs[0], ys[0], zs[0]], [g[0], g[2], -g[1]], rtol=1e-12)
        w_in, h_in = fig.get_size_inches()
        assert w_in >= 10 and h_in >= 5  # a readable size
    finally:
        plt.close(fig)


def test_figure_without_ground_truth_or_resolution():
    kp, pred, _ = _clip()
    fig = pose_figure(kp, pred, frame=0)
    try:
        ax2d, ax3d = fig.axes
        assert [x.get_text() for x in ax3d.get_legend().get_texts()] == ["prediction"]
        assert ax3d.get_title() == "3D prediction, frame 0" and len(ax3d.get_lines()) == 16
        assert ax2d.get_xlabel() == "x (normalised)" and ax2d.get_ylim()[0] > ax2d.get_ylim()[1]
    finally:
        plt.close(fig)


def test_render_writes_png_and_gif(tmp_path):
    kp, pred, gt = _clip(T=12)
    png, gif = tmp_path / "f" / "a.png", tmp_path / "f" / "a.gif"
    written = render_poses(kp, pred, gt, png_path=png, gif_path=gif, frame=3, frames=(2, 9), step=3, res=(W, H),
                           title="t")
    assert written == [png, gif]
    with Image.open(png) as im:
        assert im.size == (960, 448)
        pixels = np.asarray(im.convert("L"))
        assert pixels.std() > 10  # not a blank image
    with Image.open(gif) as im:
        assert im.format == "GIF" and im.n_frames == len(range(2, 9, 3)) and im.size == (960, 448)
    assert not plt.get_fignums()  # the figure was closed


def test_bad_input_names_the_argument(tmp_path):
    kp, pred, gt = _clip()
    with pytest.raises(ValueError, match=r"keypoints_2d must be \(T, 17, 2\) with T >= 1, received \(12, 16, 2\)"):
        render_poses(kp[:, :16], pred, gt, png_path=tmp_path / "a.png")
    with pytest.raises(ValueError, match=r"predicted must be \(T, 17, 3\) with T=12, received \(11, 17, 3\)"):
        pose_figure(kp, pred[:11])
    with pytest.raises(ValueError, match=r"ground_truth must have the shape of predicted"):
        pose_figure(kp, pred, gt[:, :16])
    with pytest.raises(ValueError, match=r"frame must be in \[0, 12\), received 12"):
        pose_figure(kp, pred, frame=12)
    with pytest.raises(ValueError, match=r"frames must satisfy 0 <= start < stop <= 12, received \(5, 5\)"):
        render_poses(kp, pred, gif_path=tmp_path / "a.gif", frames=(5, 5))
    with pytest.raises(ValueError, match="give png_path and/or gif_path"):
        render_poses(kp, pred)
    assert not list(tmp_path.iterdir())  # nothing written on bad input
