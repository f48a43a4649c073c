"""Human3.6M loader (VideoPose3D npz layout): conversion, truncation, and clear errors."""

import numpy as np
import pytest
import torch

from fastpose import ops
from fastpose.data import (
    DataError,
    SyntheticConfig,
    generate_synthetic,
    load_h36m,
    load_sequences,
    write_synthetic,
)
from fastpose.data.synthetic import _object

_CFG = SyntheticConfig(seed=5, subjects=("S1", "S11"), actions=("Walking", "Eating"), subactions=1, frames=40)


@pytest.fixture(scope="module")
def data():
    return generate_synthetic(_CFG)


@pytest.fixture()
def folder(data, tmp_path):
    write_synthetic(data, tmp_path)
    return tmp_path


def test_sequences_are_camera_frame_and_normalised(folder):
    seqs = load_h36m(folder, "gt", subjects=("S1", "S11"))
    assert len(seqs) == 2 * 2 * 4
    for s in seqs:
        T = s.num_frames
        assert s.keypoints_2d.shape == (T, 17, 2) and s.positions_3d.shape == (T, 17, 3) and s.camera.shape == (9,)
        assert np.abs(s.keypoints_2d[..., 0]).max() < 1.0  # normalised: the image width spans [-1, 1]
        assert 2.5 < s.positions_3d[:, 0, 2].mean() < 8.0  # metres in front of the camera
        kp = ops.project_to_2d(torch.from_numpy(s.positions_3d).double(), torch.from_numpy(s.camera).double())
        np.testing.assert_allclose(kp.numpy(), s.keypoints_2d, atol=2e-5)  # the 2D is the projection of the 3D
    assert {s.action_group for s in seqs} == {"Walking", "Eating"}
    only = load_h36m(folder, "gt", subjects=("S11",), actions=("Eating",))
    assert len(only) == 4 and {s.subject for s in only} == {"S11"}
    mem = load_sequences("synthetic", ("S11",), actions=("Eating",), synthetic=_CFG)
    np.testing.assert_array_equal(mem[2].keypoints_2d, only[2].keypoints_2d)  # in memory == through the files


def test_longer_2d_is_truncated_shorter_is_an_error(data, tmp_path):
    pos2d = {s: {a: list(v) for a, v in acts.items()} for s, acts in data.positions_2d.items()}
    T = data.positions_3d["S1"]["Walking"].shape[0]
    pos2d["S1"]["Walking"][1] = np.concatenate([pos2d["S1"]["Walking"][1]] * 2)  # detections run past the mocap
    np.savez(tmp_path / "data_3d_h36m.npz", positions_3d=_object(data.positions_3d))
    np.savez(tmp_path / "data_2d_h36m_det.npz", positions_2d=_object(pos2d), metadata=_object(data.metadata))
    seq = [s for s in load_h36m(tmp_path, "det", ("S1",)) if s.action == "Walking" and s.camera_index == 1][0]
    assert seq.num_frames == T
    pos2d["S1"]["Walking"][2] = pos2d["S1"]["Walking"][2][: T - 5]
    np.savez(tmp_path / "data_2d_h36m_det.npz", positions_2d=_object(pos2d), metadata=_object(data.metadata))
    with pytest.raises(DataError, match=r"positions_2d\['S1'\]\['Walking'\]\[2\] has \d+ frames, fewer than"):
        load_h36m(tmp_path, "det", ("S1",))


def test_missing_truncated_and_corrupt_files(folder):
    with pytest.raises(FileNotFoundError, match="data_2d_h36m_cpn.npz: file not found"):
        load_h36m(folder, "cpn")
    p3 = folder / "data_3d_h36m.npz"
    raw = p3.read_bytes()
    p3.write_bytes(raw[: len(raw) // 2])
    with pytest.raises(DataError, match=r"data_3d_h36m.npz: not a readable .npz file \(truncated or corrupt\?\)"):
        load_h36m(folder, subjects=("S1",))
    p3.write_bytes(b"this is not a numpy archive" * 10)
    with pytest.raises(DataError, match="not a readable .npz"):
        load_h36m(folder, subjects=("S1",))


@pytest.mark.parametrize(
    "case, pattern",
    [
        ("missing_key", r"missing key 'positions_3d'; found keys \['poses'\]"),
        ("plain_array", "'positions_3d' must be a pickled object"),
        ("wrong_shape", r"positions_3d\['S1'\]\['Walking'\]: expected shape \(T, 32, 3\) or \(T, 17, 3\)"),
        ("nan", r"positions_3d\['S1'\]\['Walking'\]: contains NaN"),
        ("not_dict", "positions_3d\\['S1'\\] must be a dict"),
    ],
)
def test_malformed_3d_files(data, tmp_path, case, pattern):
    write_synthetic(data, tmp_path)
    pos = {s: dict(a) for s, a in data.positions_3d.items()}
    if case == "missing_key":
        np.savez(tmp_path / "data_3d_h36m.npz", poses=_object(pos))
    elif case == "plain_array":
        np.savez(tmp_path / "data_3d_h36m.npz", positions_3d=np.zeros((3, 32, 3)))
    else:
        if case == "wrong_shape":
            pos["S1"]["Walking"] = pos["S1"]["Walking"][:, :20]
        elif case == "nan":
            pos["S1"]["Walking"] = pos["S1"]["Walking"].copy()
            pos["S1"]["Walking"][3, 4, 1] = np.nan
        elif case == "not_dict":
            pos["S1"] = [1, 2, 3]
        np.savez(tmp_path / "data_3d_h36m.npz", positions_3d=_object(pos))
    with pytest.raises(DataError, match=pattern):
        load_h36m(tmp_path, subjects=("S1", "S11"))


def test_malformed_2d_files(data, tmp_path):
    write_synthetic(data, tmp_path)
    pos2d = {s: {a: list(v) for a, v in acts.items()} for s, acts in data.positions_2d.items()}
    pos2d["S11"]["Eating"] = pos2d["S11"]["Eating"][:3]
    np.savez(tmp_path / "data_2d_h36m_gt.npz", positions_2d=_object(pos2d), metadata=_object(data.metadata))
    with pytest.raises(DataError, match=r"positions_2d\['S11'\]\['Eating'\]: expected a list of 4 camera arrays, got 3"):
        load_h36m(tmp_path, subjects=("S1", "S11"))
    del pos2d["S11"]
    np.savez(tmp_path / "data_2d_h36m_gt.npz", positions_2d=_object(pos2d), metadata=_object(data.metadata))
    with pytest.raises(DataError, match="subject 'S11' not found"):
        load_h36m(tmp_path, subjects=("S1", "S11"))
    np.savez(tmp_path / "data_2d_h36m_gt.npz", positions_2d=_object(pos2d))
    with pytest.raises(DataError, match="missing key 'metadata'"):
        load_h36m(tmp_path, subjects=("S1", "S11"))


def test_mirrored_3d_file_warns_naming_file_and_subject(data, tmp_path):
    """A data set whose people are mirror images (x -> -x in the world) is flagged per subject."""
    import warnings

    from fastpose.data import SyntheticData
    from fastpose.data.h36m import read_positions_3d

    p3d = {s: dict(acts) for s, acts in data.positions_3d.items()}
    p3d["S1"] = {a: arr * np.array([-1.0, 1.0, 1.0], dtype=np.float32) for a, arr in p3d["S1"].items()}
    write_synthetic(SyntheticData(p3d, data.positions_2d), tmp_path)
    with pytest.warns(UserWarning, match=r"data_3d_h36m\.npz: subject 'S1'.*look mirrored.*chirality = -1") as rec:
        read_positions_3d(tmp_path / "data_3d_h36m.npz")
    assert not any("'S11'" in str(w.message) for w in rec)  # the real-handed subject is not flagged
    write_synthetic(data, tmp_path)  # the generator's own people: no warning
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        read_positions_3d(tmp_path / "data_3d_h36m.npz")


def test_pose_sequence_name_defaults_to_action(folder):
    seqs = load_h36m(folder, "gt", ["S1"])
    assert all(s.name == s.action for s in seqs)
