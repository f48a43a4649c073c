"""The 17-joint skeleton: flip, bones, action names."""

import numpy as np
import pytest
import torch

from fastpose.skeleton import H36M_ACTIONS, H36M_SKELETON, Skeleton, canonical_action


def test_flip_negates_x_and_swaps_sides_numpy_and_torch():
    rng = np.random.default_rng(0)
    poses = rng.normal(size=(5, 3, 17, 3)).astype(np.float32)
    flipped = H36M_SKELETON.flip(poses)
    for left, right in zip(H36M_SKELETON.joints_left, H36M_SKELETON.joints_right, strict=True):
        np.testing.assert_array_equal(flipped[..., left, 0], -poses[..., right, 0])
        np.testing.assert_array_equal(flipped[..., right, 1:], poses[..., left, 1:])
    for centre in (0, 7, 8, 9, 10):
        np.testing.assert_array_equal(flipped[..., centre, :], poses[..., centre, :] * [-1, 1, 1])
    t = torch.from_numpy(poses)
    torch.testing.assert_close(H36M_SKELETON.flip(t), torch.from_numpy(flipped))
    np.testing.assert_array_equal(H36M_SKELETON.flip(flipped), poses)  # an involution
    kp = torch.randn(4, 17, 2)
    torch.testing.assert_close(H36M_SKELETON.flip(H36M_SKELETON.flip(kp)), kp)


def test_bone_lengths_match_a_loop():
    rng = np.random.default_rng(1)
    poses = rng.normal(size=(4, 17, 3))
    lengths = H36M_SKELETON.bone_lengths(poses)
    assert lengths.shape == (4, 16)
    for b, (c, p) in enumerate(H36M_SKELETON.bones):
        np.testing.assert_allclose(lengths[:, b], np.sqrt(((poses[:, c] - poses[:, p]) ** 2).sum(-1)))
    torch.testing.assert_close(H36M_SKELETON.bone_lengths(torch.from_numpy(poses)), torch.from_numpy(lengths))


def test_bad_inputs_are_named():
    with pytest.raises(ValueError, match=r"poses: expected shape \(\.\.\., 17, C\)"):
        H36M_SKELETON.flip(np.zeros((3, 16, 3)))
    with pytest.raises(TypeError, match="poses"):
        H36M_SKELETON.flip([[0.0, 1.0]])
    with pytest.raises(ValueError, match="parent of joint 2"):
        Skeleton(("a", "b", "c"), (-1, 0, 5), (), ())
    with pytest.raises(ValueError, match="both left and right"):
        Skeleton(("a", "b", "c"), (-1, 0, 0), (1,), (1,))


def test_canonical_action_groups_subactions_and_aliases():
    assert canonical_action("Walking 1") == "Walking"
    assert canonical_action("TakingPhoto") == "Photo"
    assert canonical_action("WalkingDog 2") == "WalkDog"
    assert len(H36M_ACTIONS) == 15 and len(set(H36M_ACTIONS)) == 15
    with pytest.raises(ValueError, match="non-empty action name"):
        canonical_action("")
