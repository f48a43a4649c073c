"""Batching for temporal lifting: edge-padded windows, the strided training path, flip augmentation.

A lifting network with receptive field ``R = 2 * pad + 1`` predicts frame ``t`` from the 2D
keypoints of frames ``t - pad .. t + pad``; at the ends of a sequence the first/last frame is
repeated (edge padding), as in VideoPose3D.

:class:`WindowDataset` is the training set of the strided path: one sample per (sequence,
frame), the input is the window of ``R + k - 1`` frames that produces ``k`` consecutive output
frames (``k = 1`` normally, 2 when a loss compares consecutive frames). Samples are gathered
with one fancy-indexing operation per batch (``__getitems__``), so a ``DataLoader`` with a
``DistributedSampler`` and ``batch_size`` runs no per-sample Python. Horizontal flip
augmentation mirrors the input keypoints, the camera and the targets of a random half of the
samples, reproducibly from (seed, epoch).

For evaluation, :func:`pad_sequence` pads a whole sequence so the full (non-strided) model
returns exactly one prediction per frame.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from ..camera import flip_camera
from ..skeleton import H36M_SKELETON, Skeleton
from .h36m import PoseSequence

__all__ = ["WindowDataset", "flip_batch", "pad_sequence"]


def pad_sequence(keypoints_2d: np.ndarray | torch.Tensor, pad: int):
    """Edge-pad along time: (T, J, C) -> (T + 2 pad, J, C) (first/last frame repeated)."""
    if pad < 0:
        raise ValueError(f"pad_sequence: pad must be >= 0, got {pad}")
    if keypoints_2d.ndim != 3 or keypoints_2d.shape[0] == 0:
        raise ValueError(f"pad_sequence: keypoints_2d must have shape (T, J, C) with T > 0, "
                         f"got {tuple(keypoints_2d.shape)}")
    if isinstance(keypoints_2d, torch.Tensor):
        first = keypoints_2d[:1].expand(pad, -1, -1)
        last = keypoints_2d[-1:].expand(pad, -1, -1)
        return torch.cat([first, keypoints_2d, last], dim=0)
    return np.pad(keypoints_2d, ((pad, pad), (0, 0), (0, 0)), mode="edge")


def flip_batch(batch: dict, mask: torch.Tensor, skeleton: Skeleton = H36M_SKELETON) -> dict:
    """Mirror the samples of ``batch`` where ``mask`` (B,) is True (keypoints, camera, 3D).

    Keys used: ``keypoints_2d`` (B, L, J, 2), ``camera`` (B, 9), ``positions_3d`` (B, k, J, 3).
    Returns a new dict; other keys are passed through.
    """
    out = dict(batch)
    m = mask.to(torch.bool)
    if not bool(m.any()):
        return out
    for key, ndim in (("keypoints_2d", 4), ("positions_3d", 4)):
        x = batch[key]
        out[key] = torch.where(m.view(-1, *([1] * (ndim - 1))), skeleton.flip(x), x)
    out["camera"] = torch.where(m.view(-1, 1), flip_camera(batch["camera"]), batch["camera"])
    return out


class WindowDataset(torch.utils.data.Dataset):
    """Training windows over a list of :class:`PoseSequence` (see the module docstring).

    Args:
        sequences: the sequences (2D normalised, 3D camera frame, camera vector).
        receptive_field: R, odd.
        frames_out: k, consecutive output frames per sample.
        frame_stride: use every ``frame_stride``-th frame as a sample (subsampling).
        flip: horizontal flip augmentation probability 0.5 per sample.
        seed: makes the flips of each epoch reproducible.
        skeleton: for the left/right swap of flipped samples.

    A sample (``dataset[i]`` or a batch from ``dataset.__getitems__(indices)``) is a dict:
    ``keypoints_2d`` (B, R + k - 1, J, 2), ``positions_3d`` (B, k, J, 3), ``camera`` (B, 9),
    ``flipped`` (B,) bool, ``index`` (B,) the sample indices (float32 tensors but index/flipped).
    """

    def __init__(
        self,
        sequences: Sequence[PoseSequence],
        receptive_field: int,
        frames_out: int = 1,
        frame_stride: int = 1,
        flip: bool = True,
        seed: int = 0,
        skeleton: Skeleton = H36M_SKELETON,
    ) -> None:
        if receptive_field < 1 or receptive_field % 2 == 0:
            raise ValueError(f"WindowDataset: receptive_field must be odd and >= 1, got {receptive_field}")
        if frames_out < 1 or frame_stride < 1:
            raise ValueError(f"WindowDataset: frames_out and frame_stride must be >= 1, "
                             f"got {frames_out}, {frame_stride}")
        if not sequences:
            raise ValueError("WindowDataset: no sequences")
        self.receptive_field = receptive_field
        self.frames_out = frames_out
        self.flip = flip
        self.seed = seed
        self.skeleton = skeleton
        self.epoch = 0
        pad = (receptive_field - 1) // 2
        self.window = receptive_field + frames_out - 1  # input frames per sample

        kp_parts, pos_parts, cams = [], [], []
        start_2d, start_3d, seq_of = [], [], []
        off_2d = off_3d = 0
        for seq in sequences:
            T = seq.num_frames
            if T < frames_out:
                continue
            # inputs for outputs t .. t+k-1 are frames t-pad .. t+k-1+pad of the padded sequence
            kp_parts.append(pad_sequence(seq.keypoints_2d, pad))  # (T + 2 pad, J, 2)
            pos_parts.append(seq.positions_3d)  # (T, J, 3)
            cams.append(seq.camera)
            t = np.arange(0, T - frames_out + 1, frame_stride)  # first output frame of each sample
            start_2d.append(off_2d + t)  # window start in padded coordinates: (t - pad) + pad
            start_3d.append(off_3d + t)
            seq_of.append(np.full(t.shape, len(cams) - 1))
            off_2d += T + 2 * pad
            off_3d += T
        if not kp_parts:
            raise ValueError(f"WindowDataset: every sequence is shorter than frames_out={frames_out}")
        self._kp = torch.from_numpy(np.concatenate(kp_parts).astype(np.float32))  # (sum, J, 2)
        self._pos = torch.from_numpy(np.concatenate(pos_parts).astype(np.float32))  # (sum, J, 3)
        self._cam = torch.from_numpy(np.stack(cams).astype(np.float32))  # (S, 9)
        self._start_2d = torch.from_numpy(np.concatenate(start_2d))  # (N,)
        self._start_3d = torch.from_numpy(np.concatenate(start_3d))  # (N,)
        self._seq = torch.from_numpy(np.concatenate(seq_of))  # (N,)
        self._offsets_in = torch.arange(self.window)  # (L,)
        self._offsets_out = torch.arange(frames_out)  # (k,)
        self._flips = self._draw_flips()

    @property
    def positions(self) -> torch.Tensor:
        """All 3D positions (frames, J, 3), camera frame (for statistics such as the mean pose)."""
        return self._pos

    def __len__(self) -> int:
        return int(self._start_2d.shape[0])

    def set_epoch(self, epoch: int) -> None:
        """Draw this epoch's flips (call once per epoch, like ``DistributedSampler.set_epoch``)."""
        self.epoch = int(epoch)
        self._flips = self._draw_flips()

    def _draw_flips(self) -> torch.Tensor:
        if not self.flip:
            return torch.zeros(len(self), dtype=torch.bool)
        g = torch.Generator().manual_seed(int(np.random.SeedSequence([self.seed, self.epoch]).generate_state(1)[0]))
        return torch.rand(len(self), generator=g) < 0.5  # (N,)

    def __getitem__(self, index: int) -> dict:
        batch = self.__getitems__([index])
        return {k: v[0] for k, v in batch.items()}

    def __getitems__(self, indices) -> dict:
        idx = torch.as_tensor(indices, dtype=torch.long)  # (B,)
        if idx.numel() and (int(idx.min()) < 0 or int(idx.max()) >= len(self)):
            raise IndexError(f"WindowDataset: index out of range [0, {len(self)})")
        rows_in = self._start_2d[idx, None] + self._offsets_in  # (B, L)
        rows_out = self._start_3d[idx, None] + self._offsets_out  # (B, k)
        batch = {
            "keypoints_2d": self._kp[rows_in],  # (B, L, J, 2)
            "positions_3d": self._pos[rows_out],  # (B, k, J, 3)
            "camera": self._cam[self._seq[idx]],  # (B, 9)
            "flipped": self._flips[idx],  # (B,)
            "index": idx,
        }
        return flip_batch(batch, batch["flipped"], self.skeleton)

    @staticmethod
    def collate(batch: dict) -> dict:
        """``collate_fn`` for a DataLoader whose batches come from ``__getitems__`` (already batched)."""
        return batch
