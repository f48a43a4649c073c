"""Training windows: edge padding, targets, flip augmentation, sharding."""

import numpy as np
import pytest
import torch

from fastpose import ops
from fastpose.data import SyntheticConfig, WindowDataset, load_sequences, pad_sequence
from fastpose.skeleton import H36M_SKELETON
from fastpose.train import common


@pytest.fixture(scope="module")
def seqs():
    cfg = SyntheticConfig(seed=2, subjects=("S6",), actions=("Walking", "Phoning"), subactions=1, frames=30)
    return load_sequences("synthetic", ("S6",), synthetic=cfg)


def test_pad_sequence_repeats_the_ends():
    x = np.arange(4 * 17 * 2, dtype=np.float32).reshape(4, 17, 2)
    p = pad_sequence(x, 3)
    assert p.shape == (10, 17, 2)
    np.testing.assert_array_equal(p[:3], np.broadcast_to(x[0], (3, 17, 2)))
    np.testing.assert_array_equal(p[-3:], np.broadcast_to(x[-1], (3, 17, 2)))
    torch.testing.assert_close(pad_sequence(torch.from_numpy(x), 3), torch.from_numpy(p))
    with pytest.raises(ValueError, match="pad must be >= 0"):
        pad_sequence(x, -1)


def test_windows_are_centred_on_their_targets(seqs):
    R, k = 9, 2
    ds = WindowDataset(seqs, R, frames_out=k, flip=False)
    assert len(ds) == sum(s.num_frames - k + 1 for s in seqs)
    b = ds.__getitems__(list(range(len(ds))))
    assert b["keypoints_2d"].shape == (len(ds), R + k - 1, 17, 2) and b["positions_3d"].shape == (len(ds), k, 17, 3)
    i = 0
    for s in seqs:
        padded = pad_sequence(s.keypoints_2d, R // 2)
        for t in range(s.num_frames - k + 1):
            np.testing.assert_array_equal(b["keypoints_2d"][i].numpy(), padded[t : t + R + k - 1])
            np.testing.assert_array_equal(b["positions_3d"][i].numpy(), s.positions_3d[t : t + k])
            np.testing.assert_array_equal(b["camera"][i].numpy(), s.camera)
            i += 1
    strided = WindowDataset(seqs, R, frame_stride=4, flip=False)
    assert len(strided) == sum(len(range(0, s.num_frames, 4)) for s in seqs)


def test_flipped_samples_stay_geometrically_consistent(seqs):
    """With exact 2D, the centre keypoints are the projection of the 3D target, flipped or not."""
    R = 5
    ds = WindowDataset(seqs, R, seed=7)
    b = ds.__getitems__(list(range(len(ds))))
    flipped = b["flipped"]
    assert 0.3 < flipped.float().mean() < 0.7
    proj = ops.project_to_2d(b["positions_3d"].double(), b["camera"].double()[:, None])  # (N, 1, 17, 2)
    torch.testing.assert_close(proj[:, 0].float(), b["keypoints_2d"][:, R // 2], atol=2e-5, rtol=0)
    plain = WindowDataset(seqs, R, flip=False).__getitems__(list(range(len(ds))))
    torch.testing.assert_close(b["keypoints_2d"][flipped], H36M_SKELETON.flip(plain["keypoints_2d"][flipped]))
    torch.testing.assert_close(b["positions_3d"][~flipped], plain["positions_3d"][~flipped])


def test_flips_are_reproducible_per_epoch(seqs):
    a, b = WindowDataset(seqs, 3, seed=1), WindowDataset(seqs, 3, seed=1)
    idx = list(range(len(a)))
    torch.testing.assert_close(a.__getitems__(idx)["flipped"], b.__getitems__(idx)["flipped"])
    first = a.__getitems__(idx)["flipped"].clone()
    a.set_epoch(1)
    assert not torch.equal(first, a.__getitems__(idx)["flipped"])
    a.set_epoch(0)
    torch.testing.assert_close(first, a.__getitems__(idx)["flipped"])
    with pytest.raises(IndexError):
        a.__getitems__([len(a)])
    with pytest.raises(ValueError, match="receptive_field must be odd"):
        WindowDataset(seqs, 4)


def test_loader_shards_windows_across_ranks(seqs):
    ds = WindowDataset(seqs, 3, flip=False)
    seen = []
    for rank in (0, 1):
        rt = common.Runtime(torch.device("cpu"), rank=rank, world_size=2)
        loader = common.make_loader(ds, 16, rt, seed=3, epoch=2)
        seen.append(torch.cat([batch["index"] for batch in loader]))
    assert len(seen[0]) == len(seen[1]) == (len(ds) + 1) // 2
    assert set(seen[0].tolist()) | set(seen[1].tolist()) == set(range(len(ds)))
    resumed = common.make_loader(ds, 16, common.Runtime(torch.device("cpu"), 0, 2), seed=3, epoch=2, skip_batches=2)
    torch.testing.assert_close(torch.cat([b["index"] for b in resumed]), seen[0][32:])
