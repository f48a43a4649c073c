"""The capsule renderer: labels on the image, depth order, crop cameras, determinism, speed."""

from __future__ import annotations

import numpy as np
import pytest

from fastpose.data.render import (
    RenderConfig,
    background,
    crop_box,
    crop_camera,
    crop_intrinsics,
    project_pinhole,
    render_person,
    render_sample,
    render_speed,
    to_crop,
)

_K = np.array([1145.0, 1143.8, 512.5, 515.5])  # Human3.6M-like intrinsics, pixels


def _pose(seed: int = 0) -> np.ndarray:
    """A standing 17-joint pose (camera frame: x right, y down, z forward) ~5 m away, perturbed."""
    p = np.array([
        [0, 0, 0], [-0.13, 0, 0], [-0.13, 0.44, 0.02], [-0.13, 0.88, 0], [0.13, 0, 0], [0.13, 0.44, -0.02],
        [0.13, 0.88, 0], [0, -0.23, 0], [0, -0.48, 0], [0, -0.6, -0.02], [0, -0.7, 0], [0.15, -0.48, 0],
        [0.2, -0.2, 0.05], [0.22, 0.05, -0.1], [-0.15, -0.48, 0], [-0.2, -0.2, -0.05], [-0.25, 0.02, -0.15],
    ])  # fmt: skip
    rng = np.random.default_rng(seed)
    return p + rng.normal(0, 0.02, p.shape) + np.array([0.1, 0.0, 5.0])


def test_render_sample_is_deterministic_and_varies_with_the_index():
    a = render_sample(_pose(), _K, seed=7, index=3, config=RenderConfig(size=64))
    b = render_sample(_pose(), _K, seed=7, index=3, config=RenderConfig(size=64))
    c = render_sample(_pose(), _K, seed=7, index=4, config=RenderConfig(size=64))
    assert a["image"].shape == (3, 64, 64) and a["image"].dtype == np.uint8
    for key in a:
        np.testing.assert_array_equal(a[key], b[key])
    assert np.abs(a["image"].astype(int) - c["image"].astype(int)).mean() > 5
    assert a["image"].std() > 10  # a textured image, not a flat one


def test_labels_are_the_pinhole_projection_through_the_crop_camera():
    s = render_sample(_pose(1), _K, seed=1, index=0)
    uv = project_pinhole(s["joints_3d"], s["camera"])
    np.testing.assert_allclose(s["joints_2d"], uv, atol=1e-3)
    # With jitter the joints may leave the box; default margins keep most of them inside.
    assert s["visible"].sum() >= 15
    inside = (s["joints_2d"] >= -0.5) & (s["joints_2d"] <= 255.5)
    np.testing.assert_array_equal(s["visible"], inside.all(axis=1).astype(np.float32))


def test_every_joint_lies_on_the_rendered_body():
    pose = _pose(2)
    cam, _ = crop_camera(pose, _K, 128, margin=0.2)
    img = np.zeros((128, 128, 3), np.float32)
    zbuf = render_person(img, pose, cam, np.random.default_rng(0))
    uv = np.rint(project_pinhole(pose, cam)).astype(int)
    assert np.isfinite(zbuf[uv[:, 1], uv[:, 0]]).all()
    body = np.isfinite(zbuf)
    assert 0.05 < body.mean() < 0.6  # a figure, not a blob filling the crop
    assert (img[body].max(axis=1) > 0).all() and (img[~body] == 0).all()
    # Nearest surface: never behind the joint's own depth + the largest radius.
    assert (zbuf[uv[:, 1], uv[:, 0]] <= pose[:, 2] + 0.2).all()


def test_occlusion_follows_depth_not_drawing_order():
    """Two crossing capsules: the nearer one is visible at the crossing whichever is drawn first."""
    near = np.array([[-0.5, 0.0, 3.0], [0.5, 0.0, 3.0]])  # horizontal bar at 3 m
    far = np.array([[0.0, -0.5, 4.0], [0.0, 0.5, 4.0]])  # vertical bar at 4 m
    joints = np.concatenate([near, far])
    k = np.array([100.0, 100.0, 31.0, 31.0])  # both axes pass through pixel centre (31, 31)
    results = []
    for capsules in (((0, 1, 0.05, 1), (2, 3, 0.05, 2)), ((2, 3, 0.05, 2), (0, 1, 0.05, 1))):
        img = np.zeros((64, 64, 3), np.float32)
        zbuf = render_person(img, joints, k, np.random.default_rng(5), capsules=capsules, radius_jitter=0.0)
        results.append((img, zbuf))
    (img_a, z_a), (img_b, z_b) = results
    centre = (31, 31)
    assert z_a[centre] == pytest.approx(3.0 - 0.05, abs=2e-3)
    np.testing.assert_array_equal(z_a, z_b)
    np.testing.assert_array_equal(img_a[centre], img_b[centre])
    # Far bar visible away from the crossing, at its own depth.
    assert z_a[20, 31] == pytest.approx(4.0 - 0.05, abs=5e-3)  # the far bar spans rows 19-43


def test_crop_camera_matches_the_crop_of_the_full_image():
    pose = _pose(3)
    rng = np.random.default_rng(0)
    box = crop_box(project_pinhole(pose, _K), 0.2, 0.15, 0.08, rng)
    crop = crop_intrinsics(_K, box, 256)
    np.testing.assert_allclose(project_pinhole(pose, crop), to_crop(project_pinhole(pose, _K), box, 256),
                               atol=1e-6)
    # The box edge maps to -0.5 and the far edge to S - 0.5 (pixel centres at integers).
    np.testing.assert_allclose(to_crop(box[:2], box, 256), [-0.5, -0.5])
    np.testing.assert_allclose(to_crop(box[:2] + box[2], box, 256), [255.5, 255.5])
    cam, box2 = crop_camera(pose, _K, 64, margin=0.25)
    uv = project_pinhole(pose, cam)
    # Without jitter the joints are centred with a 25 % margin on the larger side.
    span = uv.max(0) - uv.min(0)
    assert span.max() == pytest.approx(64 / 1.5, rel=1e-6)
    np.testing.assert_allclose((uv.max(0) + uv.min(0)) / 2, [31.5, 31.5], atol=1e-6)


def test_background_is_textured_and_in_range():
    img = background(96, np.random.default_rng(3))
    assert img.shape == (96, 96, 3) and img.dtype == np.float32
    assert img.std() > 0.02
    # Neighbouring pixels differ (texture) but less than random noise would.
    dx = np.abs(np.diff(img, axis=1)).mean()
    assert 0.001 < dx < 0.2


def test_bad_inputs():
    with pytest.raises(ValueError, match="in front of the camera"):
        project_pinhole(_pose() * np.array([1, 1, -1]), _K)
    with pytest.raises(ValueError, match=r"joints_3d must be \(J, 3\)"):
        render_sample(np.zeros((17, 2)), _K, 0)
    with pytest.raises(ValueError, match=r"intrinsics must be \(4,\)"):
        project_pinhole(_pose(), _K[:3])
    with pytest.raises(ValueError, match="size must be >= 8"):
        RenderConfig(size=4)
    with pytest.raises(ValueError, match="at least 17 joints"):
        render_person(np.zeros((8, 8, 3), np.float32), _pose()[:10], _K, np.random.default_rng(0))


def test_render_speed_feeds_training():
    """One core renders comfortably more 256 x 256 crops per second than a CPU step consumes."""
    poses = np.stack([_pose(i) for i in range(4)])
    speed = render_speed(poses, _K, n=12)
    assert speed > 10, f"{speed:.1f} images/s"
