"""Human3.6M cameras, quaternions, normalised coordinates and camera flips."""

import numpy as np
import pytest
import torch

from fastpose import ops
from fastpose.camera import (
    H36M_SUBJECTS,
    camera_to_world,
    flip_camera,
    h36m_cameras,
    image_coordinates,
    normalize_screen_coordinates,
    qinverse,
    qrot,
    world_to_camera,
)
from fastpose.skeleton import H36M_SKELETON


def _quat_to_matrix(q):
    """Independent formula: rotation matrix of a unit quaternion (w, x, y, z)."""
    w, x, y, z = q
    return np.array([
        [1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)],
        [2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)],
        [2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)],
    ])


def test_qrot_matches_the_rotation_matrix():
    rng = np.random.default_rng(0)
    q = rng.normal(size=4)
    q /= np.linalg.norm(q)
    v = rng.normal(size=(6, 5, 3))
    np.testing.assert_allclose(qrot(np.broadcast_to(q, (6, 5, 4)), v), v @ _quat_to_matrix(q).T, atol=1e-12)
    torch.testing.assert_close(qrot(torch.from_numpy(q).expand(6, 5, 4), torch.from_numpy(v)),
                               torch.from_numpy(v @ _quat_to_matrix(q).T))
    np.testing.assert_allclose(qrot(np.broadcast_to(qinverse(q), v.shape[:-1] + (4,)),
                                    qrot(np.broadcast_to(q, v.shape[:-1] + (4,)), v)), v, atol=1e-12)


def test_world_camera_round_trip_and_camera_geometry():
    rng = np.random.default_rng(1)
    for subject in H36M_SUBJECTS:
        for cam in h36m_cameras(subject):
            pts = rng.uniform(-1.5, 1.5, size=(10, 17, 3)) + [0, 0, 1]
            back = cam.camera_to_world(cam.world_to_camera(pts))
            np.testing.assert_allclose(back, pts, atol=1e-9)
            # the camera centre is the origin of the camera frame; the room centre is in front
            np.testing.assert_allclose(cam.world_to_camera(np.asarray(cam.translation)), 0, atol=1e-9)
            centre = cam.world_to_camera(np.array([0.0, 0.0, 1.0]))
            assert 3.0 < centre[2] < 7.0 and abs(centre[0]) < 1.0
    t = torch.randn(3, 3, dtype=torch.float64)
    c = h36m_cameras("S9")[2]
    torch.testing.assert_close(camera_to_world(world_to_camera(t, c.orientation, c.translation),
                                               c.orientation, c.translation), t)


def test_normalised_intrinsics_and_screen_coordinates():
    cam = h36m_cameras("S1")[0]
    vec = cam.intrinsics()
    assert vec.shape == (9,) and vec.dtype == np.float32
    np.testing.assert_allclose(vec[:2], np.array(cam.focal_length) * 2 / cam.res_w, rtol=1e-6)
    np.testing.assert_allclose(vec[2:4], np.array(cam.center) * 2 / cam.res_w - [1, cam.res_h / cam.res_w], rtol=1e-5)
    np.testing.assert_allclose(vec[4:], list(cam.radial_distortion) + list(cam.tangential_distortion), rtol=1e-6)
    np.testing.assert_allclose(cam.intrinsics(normalized=False)[:4], list(cam.focal_length) + list(cam.center),
                               rtol=1e-6)
    px = np.random.default_rng(2).uniform(0, 1000, size=(7, 2))
    n = normalize_screen_coordinates(px, 1000, 1002)
    assert np.abs(n[:, 0]).max() <= 1.0
    np.testing.assert_allclose(image_coordinates(n, 1000, 1002), px, atol=1e-9)


def test_flipped_camera_projects_mirrored_points_to_mirrored_keypoints():
    """project(flip(P), flip_camera(c)) == flip(project(P, c)) with the real distortion."""
    rng = np.random.default_rng(3)
    for cam in h36m_cameras("S11"):
        world = rng.uniform(-0.8, 0.8, size=(4, 17, 3)) + [0, 0, 1]
        pts = torch.from_numpy(cam.world_to_camera(world))
        c = torch.from_numpy(cam.intrinsics().astype(np.float64))
        kp = ops.project_to_2d(pts, c)
        kp_flipped = ops.project_to_2d(H36M_SKELETON.flip(pts), flip_camera(c))
        torch.testing.assert_close(kp_flipped, H36M_SKELETON.flip(kp), rtol=0, atol=1e-12)


def test_errors_name_the_argument():
    with pytest.raises(ValueError, match="subject 'S2' has no calibration"):
        h36m_cameras("S2")
    with pytest.raises(ValueError, match=r"camera: expected shape \(\.\.\., 9\)"):
        flip_camera(np.zeros(8))
    with pytest.raises(ValueError, match=r"points: expected shape \(\.\.\., 2\)"):
        normalize_screen_coordinates(np.zeros((3, 3)), 1000, 1000)
    with pytest.raises(ValueError, match="w > 0"):
        image_coordinates(np.zeros((3, 2)), 0, 1000)
