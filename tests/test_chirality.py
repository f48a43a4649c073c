"""Handedness: fastpose.skeleton.chirality on hand-built bodies, generated data, shipped and real motion."""

from pathlib import Path

import numpy as np
import pytest
import torch

from fastpose.data import SyntheticConfig, generate_synthetic
from fastpose.skeleton import H36M_KEPT_FROM_32, H36M_SKELETON, chirality

_CMU = Path(__file__).resolve().parents[2] / "shared" / "data" / "cmu_mocap" / "cmu_h36m17.npz"


def _person(knee_bend_deg: float = 30.0) -> np.ndarray:
    """One real person (17, 3) in metres, written out joint by joint in the right-handed Z-up world.

    Facing +y; then the subject's right is +x (forward x up = (0,1,0) x (0,0,1) = (1,0,0)).
    Knees bent by ``knee_bend_deg``: the knee sits in front (+y) of the hip-ankle line.
    """
    p = np.zeros((17, 3))
    off = 0.45 * np.sin(np.radians(knee_bend_deg) / 2)  # knee offset from the hip-ankle line
    drop = 0.45 * np.cos(np.radians(knee_bend_deg) / 2)
    p[0] = (0, 0, 1.0)
    for hip, knee, ankle, x in ((1, 2, 3, 0.13), (4, 5, 6, -0.13)):  # right leg at +x
        p[hip] = (x, 0, 1.0)
        p[knee] = (x, off, 1.0 - drop)
        p[ankle] = (x, 0, 1.0 - 2 * drop)
    p[7], p[8], p[9], p[10] = (0, 0, 1.25), (0, 0, 1.5), (0, 0.05, 1.6), (0, 0, 1.7)
    for sh, el, wr, x in ((14, 15, 16, 0.18), (11, 12, 13, -0.18)):  # right arm at +x
        p[sh], p[el], p[wr] = (x, 0, 1.45), (x, 0, 1.17), (x, 0.05, 0.92)
    return p


def _swap_sides(poses: np.ndarray) -> np.ndarray:
    return poses[..., list(H36M_SKELETON.flip_permutation), :]


def _mirror_x(poses: np.ndarray) -> np.ndarray:
    return poses * np.array([-1.0, 1.0, 1.0])


def test_hand_built_person_mirror_and_swap():
    person = _person()
    seq = np.stack([person] * 5)  # (5, 17, 3)
    assert chirality(seq) == 1
    assert chirality(_mirror_x(seq)) == -1  # the reflection x -> -x is a mirror image
    assert chirality(_swap_sides(seq)) == -1  # so is a person with left/right labels swapped
    assert chirality(H36M_SKELETON.flip(seq)) == 1  # both at once: a real person again
    # the result does not depend on where the person faces or stands, or on the unit
    yaw = np.radians(137.0)
    rot = np.array([[np.cos(yaw), -np.sin(yaw), 0], [np.sin(yaw), np.cos(yaw), 0], [0, 0, 1]])
    assert chirality(seq @ rot.T * 1000 + np.array([500.0, -2000.0, 0.0])) == 1
    np.testing.assert_array_equal(chirality(seq, per_frame=True), np.ones(5))
    assert chirality(torch.from_numpy(seq)) == 1


def test_straight_knees_do_not_vote_and_majority_wins():
    straight = _person(knee_bend_deg=0.0)
    assert chirality(np.stack([straight] * 3)) == 0  # no evidence either way
    bent = _person(30.0)
    seq = np.stack([bent, bent, bent, _mirror_x(bent), straight])  # a few corrupt frames
    np.testing.assert_array_equal(chirality(seq, per_frame=True), [1, 1, 1, -1, 0])
    assert chirality(seq) == 1
    batch = np.stack([seq, _mirror_x(seq)])  # (2, 5, 17, 3): one sign per sequence
    np.testing.assert_array_equal(chirality(batch), [1, -1])


def test_y_up_world():
    seq = np.stack([_person()] * 2)
    y_up = seq[..., [0, 2, 1]] * np.array([1.0, 1.0, -1.0])  # (x, z, -y): a rotation, Y up
    assert chirality(y_up, up_axis=1) == 1


def test_bad_inputs_are_named():
    with pytest.raises(ValueError, match=r"chirality: poses must have shape \(T, 17, 3\).*\(17, 3\)"):
        chirality(np.zeros((17, 3)))
    with pytest.raises(ValueError, match=r"got \(4, 16, 3\)"):
        chirality(np.zeros((4, 16, 3)))
    with pytest.raises(TypeError, match="chirality: poses must be a numpy array or torch tensor, got list"):
        chirality([[0.0]])
    with pytest.raises(ValueError, match="up_axis must be 0, 1 or 2, got 3"):
        chirality(np.zeros((2, 17, 3)), up_axis=3)


def test_generated_synthetic_people_are_real_people():
    data = generate_synthetic(SyntheticConfig(seed=5, subjects=("S1", "S11"), subactions=1, frames=60))
    signs = {(s, a): chirality(arr[:, list(H36M_KEPT_FROM_32)])
             for s, acts in data.positions_3d.items() for a, arr in acts.items()}
    assert len(signs) == 30
    assert set(signs.values()) == {1}, {k: v for k, v in signs.items() if v != 1}
    one = data.positions_3d["S1"]["Walking"][:, list(H36M_KEPT_FROM_32)]
    assert chirality(_mirror_x(one)) == -1 and chirality(_swap_sides(one)) == -1


@pytest.mark.skipif(not _CMU.exists(), reason="shared CMU mocap (../shared/data/cmu_mocap) not present")
def test_cmu_motion_capture_is_real_people():
    with np.load(_CMU) as npz:
        keys = [k for k in npz.files if k != "__meta__"]
        seqs = {k: npz[k] for k in keys}
    assert len(seqs) == 124
    signs = {k: chirality(v) for k, v in seqs.items()}
    assert set(signs.values()) == {1}, {k: v for k, v in signs.items() if v != 1}
    walk = seqs["cmu_08_01_przestr"]
    assert chirality(_mirror_x(walk)) == -1 and chirality(_swap_sides(walk)) == -1


def test_builtin_motion_is_real_people():
    from fastpose.data.motion import builtin_motion

    motion = builtin_motion("all")
    signs = {name: chirality(seq) for name, seq in motion.sequences.items()}
    assert len(signs) == 124 and set(signs.values()) == {1}
