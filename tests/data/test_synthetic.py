"""The built-in synthetic set: determinism, layout, physical plausibility, corruption, real-motion check."""

from pathlib import Path

import numpy as np
import pytest
import torch

from fastpose import ops
from fastpose.camera import h36m_cameras
from fastpose.data import (
    SyntheticConfig,
    generate_synthetic,
    read_positions_2d,
    read_positions_3d,
    write_synthetic,
)
from fastpose.data.synthetic import JOINT_LIMITS, subject_bone_lengths
from fastpose.skeleton import H36M_KEPT_FROM_32, H36M_SKELETON

_SMALL = SyntheticConfig(seed=3, subjects=("S1", "S9"), actions=("Walking", "SittingDown", "Greeting"),
                         subactions=1, frames=80)
_CMU = Path(__file__).resolve().parents[3] / "shared" / "data" / "cmu_mocap" / "cmu_h36m17.npz"


@pytest.fixture(scope="module")
def small():
    return generate_synthetic(_SMALL)


def _poses17(data):
    return {(s, a): arr[:, list(H36M_KEPT_FROM_32)] for s, acts in data.positions_3d.items() for a, arr in acts.items()}


def test_deterministic_from_seed_and_independent_per_sequence(small):
    again = generate_synthetic(_SMALL)
    other = generate_synthetic(SyntheticConfig(**{**_SMALL.__dict__, "seed": 4}))
    fewer = generate_synthetic(SyntheticConfig(**{**_SMALL.__dict__, "subjects": ("S9",)}))
    for (s, a), arr in _poses17(small).items():
        np.testing.assert_array_equal(arr, _poses17(again)[(s, a)])
        assert not np.allclose(arr[: len(_poses17(other)[(s, a)])][:10], _poses17(other)[(s, a)][:10])
    np.testing.assert_array_equal(fewer.positions_3d["S9"]["Walking"], small.positions_3d["S9"]["Walking"])


def test_layout_and_file_round_trip(small, tmp_path):
    assert set(small.positions_3d) == {"S1", "S9"}
    assert set(small.positions_3d["S1"]) == {"Walking", "SittingDown", "Greeting"}
    arr = small.positions_3d["S1"]["Walking"]
    assert arr.dtype == np.float32 and arr.ndim == 3 and arr.shape[1:] == (32, 3)
    views = small.positions_2d["S1"]["Walking"]
    assert len(views) == 4 and all(v.shape == (arr.shape[0], 17, 2) and v.dtype == np.float32 for v in views)
    p3, p2 = write_synthetic(small, tmp_path, "gt")
    assert p3.name == "data_3d_h36m.npz" and p2.name == "data_2d_h36m_gt.npz"
    back3 = read_positions_3d(p3)
    back2, meta = read_positions_2d(p2)
    np.testing.assert_array_equal(back3["S9"]["Greeting"], small.positions_3d["S9"]["Greeting"][:, list(H36M_KEPT_FROM_32)])
    np.testing.assert_array_equal(back2["S9"]["Greeting"][3], small.positions_2d["S9"]["Greeting"][3])
    assert meta["keypoints_symmetry"] == [list(H36M_SKELETON.joints_left), list(H36M_SKELETON.joints_right)]


def test_rigid_skeleton_subject_variation_and_floor(small):
    for (s, a), pose in _poses17(small).items():
        lengths = H36M_SKELETON.bone_lengths(pose.astype(np.float64))  # (T, 16)
        assert np.ptp(lengths, axis=0).max() < 1e-5, (s, a)  # bones never stretch
        lowest = np.minimum(pose[:, 3, 2], pose[:, 6, 2])
        np.testing.assert_allclose(lowest, 0.08, atol=1e-5)  # a foot is always on the floor
        assert np.all(np.abs(pose[:, 0, :2]) < 2.5)  # stays in the capture area
    thigh = [subject_bone_lengths(s)["thigh"] for s in ("S1", "S5", "S9", "S11")]
    assert np.ptp(thigh) > 0.005 and all(0.35 < t < 0.52 for t in thigh)


def test_joint_angles_stay_within_limits(small):
    def flexion(p, a, b, c):  # 180 - angle at b between (a - b) and (c - b), degrees
        u, v = p[:, a] - p[:, b], p[:, c] - p[:, b]
        cos = (u * v).sum(-1) / np.linalg.norm(u, axis=-1) / np.linalg.norm(v, axis=-1)
        return 180 - np.degrees(np.arccos(np.clip(cos, -1, 1)))

    for pose in _poses17(small).values():
        for hip, knee, ankle in ((1, 2, 3), (4, 5, 6)):
            assert flexion(pose, hip, knee, ankle).max() <= JOINT_LIMITS["knee"][1] + 0.5
        for sh, el, wr in ((11, 12, 13), (14, 15, 16)):
            assert flexion(pose, sh, el, wr).max() <= JOINT_LIMITS["elbow"][1] + 0.5
    sit = _poses17(small)[("S1", "SittingDown")]
    walk = _poses17(small)[("S1", "Walking")]
    assert sit[:, 0, 2].min() < walk[:, 0, 2].min() - 0.1  # sitting down lowers the pelvis
    speed = np.linalg.norm(np.diff(walk[:, 0, :2], axis=0), axis=-1) * 50
    assert 0.5 < np.median(speed) < 2.0  # walking pace, m/s


def test_2d_is_the_distorted_projection_of_3d(small):
    pose = small.positions_3d["S9"]["Greeting"][:, list(H36M_KEPT_FROM_32)].astype(np.float64)
    for c, cam in enumerate(h36m_cameras("S9")):
        pts = torch.from_numpy(cam.world_to_camera(pose))
        intr = cam.intrinsics(normalized=False).astype(np.float64)
        # pixel-space projection with the raw intrinsics, written out independently
        xy = np.clip(pts[..., :2].numpy() / pts[..., 2:].numpy(), -1, 1)
        r2 = (xy**2).sum(-1, keepdims=True)
        k, p = intr[4:7], intr[7:9]
        radial = 1 + k[0] * r2 + k[1] * r2**2 + k[2] * r2**3
        tan = (p * xy).sum(-1, keepdims=True)
        px = intr[:2] * (xy * (radial + tan) + p * r2) + intr[2:4]
        np.testing.assert_allclose(small.positions_2d["S9"]["Greeting"][c], px, atol=2e-3)
        assert ops.project_to_2d(pts, torch.from_numpy(cam.intrinsics().astype(np.float64))).shape == (len(pose), 17, 2)


def test_noise_and_dropped_joints():
    cfg = SyntheticConfig(seed=1, subjects=("S5",), actions=("Walking",), subactions=1, frames=200)
    clean = generate_synthetic(cfg).positions_2d["S5"]["Walking"][0]
    noisy = generate_synthetic(SyntheticConfig(**{**cfg.__dict__, "noise_px": 4.0})).positions_2d["S5"]["Walking"][0]
    err = noisy - clean
    assert 3.0 < err.std() < 6.0 and abs(err.mean()) < 1.0
    dropped = generate_synthetic(SyntheticConfig(**{**cfg.__dict__, "drop_prob": 0.02})).positions_2d["S5"]["Walking"][0]
    frozen = np.all(dropped[1:] == dropped[:-1], axis=-1)  # (T-1, J) joint did not move
    moving = np.linalg.norm(np.diff(clean, axis=0), axis=-1) > 0.05
    assert (frozen & moving).sum() > 20  # joints held still while the true joint moved
    assert np.all(dropped[0] == clean[0])


def test_bad_config_is_rejected():
    with pytest.raises(ValueError, match="no camera calibration"):
        SyntheticConfig(subjects=("S3",))
    with pytest.raises(ValueError, match="unknown action 'Dancing'"):
        SyntheticConfig(actions=("Dancing",))
    with pytest.raises(ValueError, match="drop_prob"):
        SyntheticConfig(drop_prob=1.5)


@pytest.mark.skipif(not _CMU.exists(), reason="shared CMU mocap (../shared/data/cmu_mocap) not present")
def test_motion_statistics_resemble_real_mocap():
    """Limb lengths, flexion ranges and joint speeds of the synthetic motion against CMU mocap."""
    real = np.load(_CMU)
    real_seqs = [real[k].astype(np.float64) / 1000 for k in real.files if k != "__meta__"]
    syn = list(_poses17(generate_synthetic(SyntheticConfig(frames=150, subactions=1))).values())

    def limb_lengths(seqs):  # thigh, shin, upper arm, forearm (bones 1, 2, 11, 12 of the 16)
        return np.median(H36M_SKELETON.bone_lengths(np.concatenate(seqs)), axis=0)[[1, 2, 11, 12]]

    np.testing.assert_allclose(limb_lengths(syn), limb_lengths(real_seqs), rtol=0.15)

    def rel_speed(seqs):  # median speed of each joint relative to the pelvis, m/s
        return np.median(np.concatenate([np.linalg.norm(np.diff(s - s[:, :1], axis=0), axis=-1) * 50
                                         for s in seqs]), axis=0)[1:]

    ratio = rel_speed(syn) / rel_speed(real_seqs)
    assert np.all((ratio > 0.25) & (ratio < 4.0)), ratio  # same order of magnitude for every joint


def test_body_sizes_cover_small_to_tall_adults():
    template_leg = 0.4429 + 0.4542  # Human3.6M S1 thigh + shin, metres
    legs = {s: (lambda b: b["thigh"] + b["shin"])(subject_bone_lengths(s)) for s in
            ("S1", "S5", "S6", "S7", "S8", "S9", "S11")}
    ratio = np.array(list(legs.values())) / template_leg
    assert ratio.min() < 0.88 and ratio.max() > 1.12, legs  # 0.85x .. 1.15x of S1
    assert np.all((ratio > 0.85 * 0.96 - 1e-9) & (ratio < 1.15 * 1.04 + 1e-9))
    with pytest.raises(ValueError, match="subject 'S3' unknown"):
        subject_bone_lengths("S3")


def test_generator_makes_running_crouching_bending_kicking_and_arms_overhead():
    cfg = SyntheticConfig(seed=0, subjects=("S1", "S6", "S9"), subactions=2, frames=300,
                          actions=("Walking", "Posing", "Purchases", "Waiting", "Photo"))
    poses = _poses17(generate_synthetic(cfg))

    def angle(u, v):
        cos = (u * v).sum(-1) / np.linalg.norm(u, axis=-1) / np.linalg.norm(v, axis=-1)
        return np.degrees(np.arccos(np.clip(cos, -1, 1)))

    allp = np.concatenate(list(poses.values())).astype(np.float64)
    down = allp[:, 0] - allp[:, 8]  # trunk axis, pointing down
    knee = 180 - angle(allp[:, 1] - allp[:, 2], allp[:, 3] - allp[:, 2])  # right knee flexion
    leg = np.linalg.norm(allp[:, 1] - allp[:, 2], axis=-1) + np.linalg.norm(allp[:, 2] - allp[:, 3], axis=-1)
    pelvis_h = (allp[:, 0, 2] - np.minimum(allp[:, 3, 2], allp[:, 6, 2])) / leg
    assert ((knee > 110) & (pelvis_h < 0.6)).any()  # crouching: knees deeply bent, pelvis low
    elevation = np.maximum(angle(down, allp[:, 12] - allp[:, 11]), angle(down, allp[:, 15] - allp[:, 14]))
    assert (elevation > 140).mean() > 0.005  # arms overhead
    pitch = angle(allp[:, 8] - allp[:, 0], np.array([0.0, 0.0, 1.0]))
    assert (pitch > 60).any()  # bending over
    hip = np.maximum(angle(down, allp[:, 2] - allp[:, 1]), angle(down, allp[:, 5] - allp[:, 4]))
    standing_leg_straight = np.minimum(knee, 180 - angle(allp[:, 4] - allp[:, 5], allp[:, 6] - allp[:, 5])) < 30
    assert ((hip > 80) & standing_leg_straight & (pelvis_h > 0.8)).any()  # a leg kicked up high
    walk = [p for (s, a), p in poses.items() if a.startswith("Walking")]
    top = max(np.percentile(np.linalg.norm(np.diff(p[:, 0, :2], axis=0), axis=-1) * 50, 95) for p in walk)
    assert top > 2.0  # some walking sequences break into a run (m/s)
    assert all(np.all(np.abs(p[:, 0, :2]) < 2.5) for p in walk)  # runners stay in the capture area
