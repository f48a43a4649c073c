"""Motion files, the built-in CMU motion (compact storage, licence, split) and motion -> lifting data."""

import json
import warnings
from pathlib import Path

import numpy as np
import pytest

from fastpose.camera import h36m_cameras
from fastpose.data import (
    TEST_SUBJECTS,
    TRAIN_SUBJECTS,
    DataError,
    SyntheticConfig,
    generate_synthetic,
    load_sequences,
)
from fastpose.data.motion import (
    BUILTIN_MOTION_PATH,
    BUILTIN_TEST_SUBJECTS,
    MotionSet,
    builtin_motion,
    load_motion,
    motion_category,
    motion_to_sequences,
    motion_to_videopose3d,
    save_motion,
)
from fastpose.skeleton import H36M_KEPT_FROM_32, H36M_SKELETON

_CMU = Path(__file__).resolve().parents[3] / "shared" / "data" / "cmu_mocap" / "cmu_h36m17.npz"
_ACK = ("The data used in this project was obtained from mocap.cs.cmu.edu. "
        "The database was created with funding from NSF EIA-0196217.")


@pytest.fixture(scope="module")
def walk():
    """Two short synthetic sequences (metres, world frame), as a plain mapping."""
    data = generate_synthetic(SyntheticConfig(seed=2, subjects=("S1",), actions=("Walking", "Posing"),
                                              subactions=1, frames=40))
    return {f"my_{a.lower()}": arr[:, list(H36M_KEPT_FROM_32)].astype(np.float64)
            for a, arr in data.positions_3d["S1"].items()}


# --------------------------------------------------------------------------------------------
# the built-in file
# --------------------------------------------------------------------------------------------
def test_builtin_motion_contents_licence_and_size():
    motion = builtin_motion("all")
    assert len(motion.sequences) == 124 and motion.num_frames == 43_815
    assert BUILTIN_MOTION_PATH.stat().st_size < 3e6  # compact: a few MB at most
    assert motion.fps == 50.0
    meta = motion.meta
    assert meta["acknowledgement"] == _ACK
    assert "free for use in research" in meta["licence"] and "may not resell" in meta["licence"]
    assert meta["encoding"] == {"dtype": "int16", "unit": "mm", "scale": 1.0, "delta": True}
    records = {r["key"]: r for r in meta["sequences"]}
    assert set(records) == set(motion.sequences)  # provenance for every sequence, nothing excluded kept
    assert all(r["status"] == "included" and r["repo"] and r["path"] for r in records.values())
    for seq in motion.sequences.values():
        assert seq.dtype == np.float32 and seq.shape[1:] == (17, 3) and not seq.flags.writeable
        thigh = np.median(np.linalg.norm(seq[:, 2] - seq[:, 1], axis=-1))
        assert 0.3 < thigh < 0.6  # metres
    with pytest.raises(ValueError, match="part must be one of .*got 'val'"):
        builtin_motion("val")


def test_builtin_split_is_by_subject_and_about_a_fifth():
    everything, train, test = builtin_motion("all"), builtin_motion("train"), builtin_motion("test")
    assert set(train.sequences) | set(test.sequences) == set(everything.sequences)
    assert not set(train.sequences) & set(test.sequences)
    assert not set(train.groups.values()) & set(test.groups.values())  # no subject on both sides
    assert set(test.groups.values()) == set(BUILTIN_TEST_SUBJECTS)
    assert 0.18 < test.num_frames / everything.num_frames < 0.24
    for key, group in everything.groups.items():  # the subject is the trial id's first number
        trial = next(r["cmu_trial"] for r in everything.meta["sequences"] if r["key"] == key)
        if trial:
            assert group == str(int(trial.split("_")[0]))
        else:
            assert group.startswith("mp:")
    for part in (train, test):  # each part keeps walking, running and jumping
        assert {"Walk", "Run", "Jump"} <= set(part.actions.values())


@pytest.mark.skipif(not _CMU.exists(), reason="shared CMU mocap (../shared/data/cmu_mocap) not present")
def test_builtin_motion_matches_the_source_within_half_a_millimetre():
    with np.load(_CMU) as npz:
        source = {k: npz[k] for k in npz.files if k != "__meta__"}
    motion = builtin_motion("all")
    assert set(source) == set(motion.sequences)
    err = max(np.abs(motion.sequences[k].astype(np.float64) * 1000 - v).max() for k, v in source.items())
    assert err <= 0.5 + 1e-3, err  # int16 millimetres (+ float32 rounding of the metres)
    assert err > 0.1  # the check sees the quantisation: the data really went through int16


def test_builtin_file_is_package_data():
    from importlib.resources import files

    assert (files("fastpose.data") / "cmu_motion.npz").is_file()
    setup = (Path(__file__).resolve().parents[2] / "setup.py").read_text()
    assert '"fastpose.data": ["cmu_motion.npz"]' in setup  # shipped in wheels and sdists


# --------------------------------------------------------------------------------------------
# motion files
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("compact", [True, False])
def test_save_and_load_round_trip(walk, tmp_path, compact):
    path = save_motion(walk, tmp_path / "m.npz", meta={"fps": 25.0, "note": "x"}, compact=compact)
    back = load_motion(path)
    assert list(back.sequences) == list(walk) and back.fps == 25.0 and back.meta["note"] == "x"
    tol = 0.5e-3 + 1e-6 if compact else 1e-6
    for k, v in walk.items():
        np.testing.assert_allclose(back.sequences[k], v, atol=tol)
    assert back.actions == {"my_walking": "Walk", "my_posing": "Other"}  # no descriptions: from the key


def test_units_detected_or_declared(walk, tmp_path):
    np.savez(tmp_path / "mm.npz", **{k: (v * 1000).astype(np.float32) for k, v in walk.items()})
    np.savez(tmp_path / "m.npz", **{k: v.astype(np.float32) for k, v in walk.items()})
    for name in ("mm.npz", "m.npz"):
        back = load_motion(tmp_path / name)
        np.testing.assert_allclose(back.sequences["my_walking"], walk["my_walking"], atol=1e-5)
    with pytest.raises(DataError, match=r"units declared 'm' but the median thigh length is 4\d\d"):
        load_motion(tmp_path / "mm.npz", units="m")
    np.savez(tmp_path / "lying.npz", __meta__=json.dumps({"units": "mm"}), a=walk["my_walking"])
    with pytest.raises(DataError, match="units declared 'mm'"):
        load_motion(tmp_path / "lying.npz")


def test_excluded_records_are_skipped(walk, tmp_path):
    meta = {"sequences": [{"key": "my_walking", "status": "included", "description": "brisk walk"},
                          {"key": "my_posing", "status": "excluded", "description": "dance"}]}
    np.savez(tmp_path / "x.npz", __meta__=json.dumps(meta), **walk)
    back = load_motion(tmp_path / "x.npz")
    assert list(back.sequences) == ["my_walking"] and back.actions == {"my_walking": "Walk"}


def test_malformed_motion_files(walk, tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.npz: motion file not found"):
        load_motion(tmp_path / "nope.npz")
    (tmp_path / "junk.npz").write_bytes(b"not a zip")
    with pytest.raises(DataError, match="junk.npz: not a readable .npz"):
        load_motion(tmp_path / "junk.npz")
    np.savez(tmp_path / "shape.npz", a=np.zeros((5, 16, 3)))
    with pytest.raises(DataError, match=r"shape.npz: 'a': expected a numeric array of shape \(T, 17, 3\).*\(5, 16, 3\)"):
        load_motion(tmp_path / "shape.npz")
    bad = walk["my_walking"].copy()
    bad[3, 4, 1] = np.nan
    np.savez(tmp_path / "nan.npz", a=bad)
    with pytest.raises(DataError, match="nan.npz: 'a': contains NaN"):
        load_motion(tmp_path / "nan.npz")
    np.savez(tmp_path / "int.npz", a=np.zeros((4, 17, 3), dtype=np.int16))
    with pytest.raises(DataError, match=r"integer array \(int16\) but no meta\['encoding'\]"):
        load_motion(tmp_path / "int.npz")
    np.savez(tmp_path / "meta.npz", __meta__="{not json", a=walk["my_walking"])
    with pytest.raises(DataError, match="'__meta__' must be a JSON string"):
        load_motion(tmp_path / "meta.npz")
    with pytest.raises(ValueError, match="units must be 'mm', 'm' or None"):
        load_motion(tmp_path / "meta.npz", units="cm")


def test_mirrored_motion_file_warns(walk, tmp_path):
    mirrored = {k: v * np.array([-1.0, 1.0, 1.0]) for k, v in walk.items()}
    save_motion(mirrored, tmp_path / "mirror.npz")
    with pytest.warns(UserWarning, match=r"mirror\.npz: the 3D poses look mirrored.*chirality = -1"):
        load_motion(tmp_path / "mirror.npz")
    one_bad = {"good": walk["my_walking"], "good2": walk["my_posing"],
               "bad": H36M_SKELETON.flip(walk["my_walking"]) * np.array([-1.0, 1.0, 1.0])}
    save_motion(one_bad, tmp_path / "one.npz")
    with pytest.warns(UserWarning, match=r"one\.npz: 1 sequence\(s\) look mirrored.*\['bad'\]"):
        load_motion(tmp_path / "one.npz")
    save_motion(walk, tmp_path / "fine.npz")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        load_motion(tmp_path / "fine.npz")


def test_motion_category():
    cases = {"walk on uneven terrain": "Walk", "run/jog": "Run", "jump up to grab, reach for, tiptoe": "Jump",
             "dance - small jetes, pirouette": "Dance", "bend over, scoop up, rise, lift arm": "Chores",
             'CMU motion-prediction set, action "basketball_signal" (train split)': "Signal",
             "basketball - forward dribble": "Basketball", "punch/strike": "Fight", "Start Hop Stop": "Jump",
             "playground - climb, sit": "Playground", "swordplay": "Fight", "sitting quietly": "Other"}
    for text, expected in cases.items():
        assert motion_category(text) == expected, text
    with pytest.raises(TypeError, match="description must be a str, got int"):
        motion_category(3)


# --------------------------------------------------------------------------------------------
# motion -> lifting data
# --------------------------------------------------------------------------------------------
def _distorted_pixels(world, cam):
    """Pinhole + Human3.6M radial/tangential distortion in pixels, written out independently."""
    pts = cam.world_to_camera(world.astype(np.float64))
    intr = cam.intrinsics(normalized=False).astype(np.float64)
    xy = np.clip(pts[..., :2] / pts[..., 2:], -1, 1)
    r2 = (xy**2).sum(-1, keepdims=True)
    k, p = intr[4:7], intr[7:9]
    radial = 1 + k[0] * r2 + k[1] * r2**2 + k[2] * r2**3
    tan = (p * xy).sum(-1, keepdims=True)
    return intr[:2] * (xy * (radial + tan) + p * r2) + intr[2:4]


def test_motion_to_videopose3d_places_rotates_and_projects(walk):
    mm = {k: v * 1000 + np.array([700.0, -300.0, 0.0]) for k, v in walk.items()}  # off-centre, millimetres
    out = motion_to_videopose3d(mm, ("S9", "S11"), units="mm", seed=4)
    assert set(out.positions_3d) == {"S9", "S11"} and set(out.positions_3d["S9"]) == set(walk)
    for s in ("S9", "S11"):
        for k, src in walk.items():
            placed = out.positions_3d[s][k].astype(np.float64)
            np.testing.assert_allclose(placed[:, 0, :2].mean(0), 0.0, atol=1e-5)  # pelvis track centred
            np.testing.assert_allclose(placed[..., 2], src[..., 2], atol=1e-5)  # heights kept
            np.testing.assert_allclose(H36M_SKELETON.bone_lengths(placed), H36M_SKELETON.bone_lengths(src),
                                       atol=1e-5)  # a rigid motion
            views = out.positions_2d[s][k]
            assert len(views) == 4
            for cam, px in zip(h36m_cameras(s), views, strict=True):
                np.testing.assert_allclose(px, _distorted_pixels(placed, cam), atol=2e-3)
    a, b = out.positions_3d["S9"]["my_walking"], out.positions_3d["S11"]["my_walking"]
    assert not np.allclose(a, b, atol=1e-2)  # each subject gets its own yaw
    again = motion_to_videopose3d(mm, ("S9",), units="mm", seed=4)
    np.testing.assert_array_equal(again.positions_2d["S9"]["my_posing"][2], out.positions_2d["S9"]["my_posing"][2])
    fixed = motion_to_videopose3d(walk, ("S9",), yaw_deg=90.0)
    src = walk["my_walking"] - np.r_[walk["my_walking"][:, 0, :2].mean(0), 0.0]
    np.testing.assert_allclose(fixed.positions_3d["S9"]["my_walking"][..., 0], -src[..., 1], atol=1e-5)
    np.testing.assert_allclose(fixed.positions_3d["S9"]["my_walking"][..., 1], src[..., 0], atol=1e-5)


def test_noise_and_bad_arguments(walk):
    clean = motion_to_videopose3d(walk, ("S1",), seed=1).positions_2d["S1"]["my_walking"][0]
    noisy = motion_to_videopose3d(walk, ("S1",), seed=1, noise_px=5.0).positions_2d["S1"]["my_walking"][0]
    err = noisy - clean
    assert 4.0 < err.std() < 7.5 and abs(err.mean()) < 1.5
    with pytest.raises(ValueError, match="subject 'S3' has no camera calibration"):
        motion_to_videopose3d(walk, ("S3",))
    with pytest.raises(ValueError, match="noise_px must be >= 0, got -1"):
        motion_to_videopose3d(walk, ("S1",), noise_px=-1)
    with pytest.raises(ValueError, match=r"motion\['x'\]: expected shape \(T, 17, 3\)"):
        motion_to_videopose3d({"x": np.zeros((3, 17, 2))}, ("S1",))


def test_motion_to_sequences_camera_frame_names_and_actions(walk):
    motion = MotionSet(walk, {"my_walking": "Walk", "my_posing": "Dance"}, source="unit test")
    seqs = motion_to_sequences(motion, ("S5",), seed=3)
    assert len(seqs) == 2 * 4
    placed = motion_to_videopose3d(motion, ("S5",), seed=3).positions_3d["S5"]
    for seq in seqs:
        assert seq.subject == "S5" and seq.name in walk and seq.action == motion.actions[seq.name]
        cam = h36m_cameras("S5")[seq.camera_index]
        np.testing.assert_allclose(seq.positions_3d, cam.world_to_camera(placed[seq.name].astype(np.float64)),
                                   atol=1e-5)
        assert seq.keypoints_2d.shape == (len(walk[seq.name]), 17, 2)


def test_load_sequences_motion_sources(walk, tmp_path):
    test = load_sequences("cmu", ("S9",), actions=["Run"])  # part defaults to "test" for S9/S11
    held_out = builtin_motion("test")
    assert {s.name for s in test} == {k for k, a in held_out.actions.items() if a == "Run"}
    assert all(s.action == "Run" and s.subject == "S9" for s in test) and len(test) % 4 == 0
    train = load_sequences("cmu", ("S1",), actions=["Run"])  # and "train" for training subjects
    assert {s.name for s in train} <= set(builtin_motion("train").sequences)
    assert not {s.name for s in train} & {s.name for s in test}
    both = load_sequences("synthetic+cmu", ("S11",), actions=["Walking", "Run"], part="test",
                          synthetic=SyntheticConfig(frames=40, subactions=1))
    assert {s.action for s in both} == {"Walking", "Run"}
    path = save_motion(walk, tmp_path / "mine.npz")
    mine = load_sequences(str(path), TRAIN_SUBJECTS[:2], noise_px=2.0, seed=1)
    assert {(s.subject, s.name) for s in mine} == {(s, k) for s in TRAIN_SUBJECTS[:2] for k in walk}
    with pytest.raises(ValueError, match=r"data='cmu' has exact 2D keypoints \('gt'\), got keypoints='cpn'"):
        load_sequences("cmu", TEST_SUBJECTS, keypoints="cpn")
    with pytest.raises(ValueError, match="part must be 'train', 'test', 'all' or None, got 'dev'"):
        load_sequences("cmu", TEST_SUBJECTS, part="dev")
    with pytest.raises(ValueError, match="noise_px must be a number >= 0"):
        load_sequences("cmu", TEST_SUBJECTS, noise_px=-2)
    with pytest.raises(DataError, match="no sequences of actions"):
        load_sequences("cmu", TEST_SUBJECTS, actions=["Eating"])
