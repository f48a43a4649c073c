"""Image data sets: rendered synthetic crops and the Human3.6M frame loader."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from fastpose.camera import h36m_cameras
from fastpose.data.images import (
    H36MImageDataset,
    SyntheticImageDataset,
    add_thorax,
    place_in_room,
    synthetic_poses,
)
from fastpose.data.render import project_pinhole
from fastpose.data.synthetic import SyntheticConfig, generate_synthetic, write_synthetic
from fastpose.skeleton import H36M_SKELETON

pytestmark = pytest.mark.usefixtures("one_thread")  # shared fixture, conftest.py


@pytest.fixture(scope="module")
def poses():
    return synthetic_poses(("S1",), seed=0, frames=16, stride=2, actions=("Walking", "Sitting"))


def test_synthetic_poses_are_world_frame_metres_with_actions(poses):
    p, actions = poses
    assert p.ndim == 3 and p.shape[1:] == (17, 3) and len(actions) == len(p)
    assert set(actions) == {"Walking", "Sitting"}
    assert p[..., 2].min() > 0.0 and p[..., 2].max() < 2.2  # Z up, standing on the floor
    thigh = np.linalg.norm(p[:, 2] - p[:, 1], axis=-1)
    assert 0.3 < thigh.mean() < 0.6


def test_sample_labels_match_the_crop_camera(poses):
    p, actions = poses
    ds = SyntheticImageDataset(p, actions, length=6, seed=3, size=64)
    for i in range(3):
        s = ds[i]
        assert s["image"].shape == (3, 64, 64) and s["image"].dtype == torch.uint8
        assert s["joints_2d"].shape == (18, 2) and s["joints_3d"].shape == (18, 3)
        assert s["camera"].shape == (4,) and s["visible"].shape == (18,)
        assert s["action"] in {"Walking", "Sitting"}
        j3 = s["joints_3d"].numpy().astype(np.float64)
        np.testing.assert_allclose(s["joints_2d"].numpy(), project_pinhole(j3, s["camera"].numpy()), atol=1e-3)
        np.testing.assert_allclose(j3[17], (j3[11] + j3[14]) / 2, atol=1e-6)
        assert 3.0 < j3[0, 2] < 8.0  # seen by a Human3.6M camera a few metres away
        # Bone lengths survive the random placement and the camera transform.
        world = add_thorax(p)[:, :17]
        lengths = H36M_SKELETON.bone_lengths(j3[:17])
        assert np.min(np.abs(H36M_SKELETON.bone_lengths(world) - lengths).max(axis=1)) < 1e-5
        assert s["image"].float().std() > 5


def test_synthetic_dataset_is_deterministic_per_seed_epoch_and_index(poses):
    p, actions = poses
    a = SyntheticImageDataset(p, actions, length=4, seed=5, size=32)
    b = SyntheticImageDataset(p, actions, length=4, seed=5, size=32)
    torch.testing.assert_close(a[2]["image"], b[2]["image"], rtol=0, atol=0)
    torch.testing.assert_close(a[2]["joints_3d"], b[2]["joints_3d"])
    b.set_epoch(1)
    assert not torch.equal(a[2]["joints_3d"], b[2]["joints_3d"])
    # Worker processes produce the same batch as the main process.
    main = next(iter(torch.utils.data.DataLoader(a, batch_size=4)))
    workers = next(iter(torch.utils.data.DataLoader(a, batch_size=4, num_workers=2)))
    torch.testing.assert_close(main["image"], workers["image"], rtol=0, atol=0)
    assert main["action"] == workers["action"]


def test_evaluation_set_spreads_samples_over_the_poses(poses):
    p, actions = poses
    ds = SyntheticImageDataset(p, actions, length=8, seed=0, size=32, augment=False)
    seen = [ds[i]["action"] for i in range(8)]
    assert set(seen) == {"Walking", "Sitting"}  # both sequences, not only the first poses
    s = ds[0]
    # No jitter: the 2D joints are centred in the crop with the default margin.
    uv = s["joints_2d"].numpy()
    np.testing.assert_allclose((uv.max(0) + uv.min(0)) / 2, [15.5, 15.5], atol=1e-3)


def test_place_in_room_is_a_yaw_and_a_floor_translation(poses):
    p, _ = poses
    q = place_in_room(p[0], np.random.default_rng(1), radius=1.0)
    assert np.hypot(*q[0, :2]) <= 1.0
    np.testing.assert_allclose(q[:, 2], p[0, :, 2], atol=1e-12)
    np.testing.assert_allclose(H36M_SKELETON.bone_lengths(q), H36M_SKELETON.bone_lengths(p[0]), atol=1e-12)


def test_synthetic_dataset_bad_arguments(poses):
    p, actions = poses
    with pytest.raises(ValueError, match=r"poses_world must be \(N > 0, 17, 3\)"):
        SyntheticImageDataset(p[:, :10])
    with pytest.raises(ValueError, match="one label per pose"):
        SyntheticImageDataset(p, actions[:3])
    with pytest.raises(IndexError, match="out of range"):
        SyntheticImageDataset(p, length=2)[2]
    with pytest.raises(ValueError, match=r"\(\.\.\., 17, C\)"):
        add_thorax(np.zeros((18, 3)))


def _write_h36m_root(root, frames: int = 8):
    """A Human3.6M-layout folder: the 3D/2D npz of one synthetic S9 sequence and PNG frames of camera 0
    with a white 5 x 5 marker at every joint's 2D position (from the 2D npz, distortion included)."""
    from PIL import Image

    data = generate_synthetic(SyntheticConfig(seed=1, subjects=("S9",), actions=("Walking",), subactions=1,
                                              frames=frames))
    write_synthetic(data, root)
    cam = h36m_cameras("S9")[0]
    uv = data.positions_2d["S9"]["Walking"][0]  # (T, 17, 2) pixels
    folder = root / "images" / "S9" / f"Walking.{cam.id}"
    folder.mkdir(parents=True)
    for t in range(len(uv)):
        img = np.zeros((cam.res_h, cam.res_w, 3), np.uint8)
        for u, v in np.rint(uv[t]).astype(int):
            img[max(v - 2, 0) : v + 3, max(u - 2, 0) : u + 3] = 255
        Image.fromarray(img).save(folder / f"{t:06d}.png")
    return data


def test_h36m_loader_crops_put_the_labels_on_the_image(tmp_path):
    data = _write_h36m_root(tmp_path)
    with pytest.warns(UserWarning, match=r"skipping 3 sequence\(s\) .*S9 'Walking' camera 55011271"):
        ds = H36MImageDataset(tmp_path, subjects=("S9",), frame_stride=2, size=128, image_ext="png")
    n = len(data.positions_3d["S9"]["Walking"])
    assert len(ds) == len(range(0, n, 2))
    for i in (0, len(ds) - 1):
        s = ds[i]
        assert s["image"].shape == (3, 128, 128) and s["action"] == "Walking"
        img = s["image"].numpy().max(axis=0)
        uv = np.rint(s["joints_2d"].numpy()[:17]).astype(int)
        assert (img[uv[:, 1], uv[:, 0]] > 100).all(), "a joint label is off its marker"
        assert (img > 100).mean() < 0.2
        # 3D in the camera frame, consistent with the world data and the thorax rule.
        j3 = s["joints_3d"].numpy()
        world = data.positions_3d["S9"]["Walking"][2 * i]
        from fastpose.skeleton import H36M_KEPT_FROM_32

        expected = h36m_cameras("S9")[0].world_to_camera(world[list(H36M_KEPT_FROM_32)].astype(np.float64))
        np.testing.assert_allclose(j3[:17], expected, atol=1e-5)
        np.testing.assert_allclose(j3[17], (j3[11] + j3[14]) / 2, atol=1e-6)
    # Augmented crops move the box but keep labels on their markers.
    with pytest.warns(UserWarning, match="skipping 3"):
        aug = H36MImageDataset(tmp_path, subjects=("S9",), frame_stride=3, size=96, image_ext="png",
                               augment=True, seed=4)
    s = aug[1]
    uv = np.rint(s["joints_2d"].numpy()[:17]).astype(int)
    ok = (uv >= 0).all(1) & (uv < 96).all(1)
    assert ok.sum() >= 12
    assert (s["image"].numpy().max(axis=0)[uv[ok, 1], uv[ok, 0]] > 60).all()


def test_h36m_loader_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="data_3d_h36m.npz"):
        H36MImageDataset(tmp_path)
    _write_h36m_root(tmp_path, frames=8)
    with pytest.raises(ValueError, match="subject 'S1' not in"):
        H36MImageDataset(tmp_path, subjects=("S1",), image_ext="png")
    with pytest.raises(ValueError, match="frame_stride must be >= 1"):
        H36MImageDataset(tmp_path, subjects=("S9",), frame_stride=0)
