"""The realism statistics (fastpose.data.realism) on poses with known answers."""

import numpy as np

from fastpose.data.realism import compare, coverage, motion_statistics


def _standing(T: int = 10, knee_deg: float = 0.0, speed: float = 0.0) -> np.ndarray:
    """A person facing +y (right side at +x), metres, knees bent by ``knee_deg``, walking at ``speed`` m/s along +y."""
    p = np.zeros((17, 3))
    half = np.radians(knee_deg) / 2
    p[0] = (0, 0, 0.9)
    for hip, knee, ankle, x in ((1, 2, 3, 0.1), (4, 5, 6, -0.1)):
        p[hip] = (x, 0, 0.9)
        p[knee] = (x, 0.4 * np.sin(half), 0.9 - 0.4 * np.cos(half))
        p[ankle] = (x, 0, 0.9 - 0.8 * np.cos(half))
    p[7], p[8], p[9], p[10] = (0, 0, 1.15), (0, 0, 1.4), (0, 0, 1.5), (0, 0, 1.6)
    for sh, el, wr, x in ((14, 15, 16, 0.2), (11, 12, 13, -0.2)):
        p[sh], p[el], p[wr] = (x, 0, 1.4), (x, 0, 1.1), (x, 0.3, 1.1)  # elbows bent 90 degrees
    seq = np.repeat(p[None], T, axis=0)
    seq[..., 1] += speed * np.arange(T)[:, None] / 50.0
    return seq


def test_statistics_of_a_known_pose():
    st = motion_statistics({"a": _standing(knee_deg=40.0, speed=1.5)})
    np.testing.assert_allclose(st["knee flexion"], 40.0, atol=1e-6)
    np.testing.assert_allclose(st["elbow flexion"], 90.0, atol=1e-6)
    np.testing.assert_allclose(st["shoulder elevation"], 0.0, atol=1e-6)  # arms hang along the trunk
    np.testing.assert_allclose(st["trunk pitch"], 0.0, atol=1e-6)
    np.testing.assert_allclose(st["hip flexion"], 20.0, atol=1e-6)  # the thigh leans forward by half the knee bend
    np.testing.assert_allclose(st["pelvis speed (horizontal)"], 1.5, atol=1e-9)
    np.testing.assert_allclose(st["wrist speed (rel. pelvis)"], 0.0, atol=1e-9)
    np.testing.assert_allclose(st["leg"], 0.8)
    np.testing.assert_allclose(st["thigh/shin"], 1.0)
    np.testing.assert_allclose(st["hip width/leg"], 0.2 / 0.8)


def test_coverage_is_zero_for_the_same_poses_and_ignores_facing_and_position():
    a = _standing(knee_deg=30.0)
    yaw = np.radians(70.0)
    rot = np.array([[np.cos(yaw), -np.sin(yaw), 0], [np.sin(yaw), np.cos(yaw), 0], [0, 0, 1]])
    turned = a @ rot.T + np.array([1.0, -2.0, 0.0])
    np.testing.assert_allclose(coverage(turned, a), 0.0, atol=1e-9)
    far = coverage(_standing(knee_deg=90.0), a)
    assert np.all(far > 30.0)  # deeply bent knees are far from the straighter pose (mm)
    text = compare({"s": a}, {"r": _standing(knee_deg=90.0)}, sample=5)
    assert "knee flexion" in text and "NN MPJPE real -> synthetic" in text
