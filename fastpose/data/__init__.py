"""Data for the lifting model: Human3.6M in the VideoPose3D npz layout, the built-in synthetic
set (same layout, same loader), and batching (edge-padded windows, flip augmentation).

:func:`load_sequences` is the one entry point the command line uses: ``data="synthetic"``
generates the built-in set in memory, any other value is a directory holding
``data_3d_h36m.npz`` and ``data_2d_h36m_<keypoints>.npz``.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from .batching import WindowDataset, flip_batch, pad_sequence
from .h36m import (
    TEST_SUBJECTS,
    TRAIN_SUBJECTS,
    DataError,
    PoseSequence,
    build_sequences,
    dataset_paths,
    load_h36m,
    read_positions_2d,
    read_positions_3d,
)
from .synthetic import SyntheticConfig, SyntheticData, generate_synthetic, write_synthetic

__all__ = [
    "DataError",
    "PoseSequence",
    "SyntheticConfig",
    "SyntheticData",
    "TEST_SUBJECTS",
    "TRAIN_SUBJECTS",
    "WindowDataset",
    "build_sequences",
    "dataset_paths",
    "flip_batch",
    "generate_synthetic",
    "load_h36m",
    "load_sequences",
    "pad_sequence",
    "read_positions_2d",
    "read_positions_3d",
    "write_synthetic",
]


def load_sequences(
    data: str | Path,
    subjects: Iterable[str],
    keypoints: str = "gt",
    actions: Iterable[str] | None = None,
    synthetic: SyntheticConfig | None = None,
) -> list[PoseSequence]:
    """Sequences of ``subjects`` from ``data`` ("synthetic" or a directory, see the module docstring).

    With ``data="synthetic"``, ``keypoints`` must be ``"gt"`` (the ``synthetic`` config adds
    noise and dropped joints if asked), and only ``subjects`` are generated.
    """
    subjects = tuple(subjects)
    if str(data) == "synthetic":
        if keypoints != "gt":
            raise ValueError(f"load_sequences: the synthetic set has exact 2D keypoints ('gt'), got keypoints="
                             f"{keypoints!r}; ask for detector-like 2D with SyntheticConfig(noise_px=..., "
                             "drop_prob=...) (--synthetic-noise / --synthetic-drop)")
        base = synthetic or SyntheticConfig()
        cfg = SyntheticConfig(**{**base.__dict__, "subjects": subjects})
        gen = generate_synthetic(cfg)
        return build_sequences(gen.positions_3d, gen.positions_2d, subjects, actions,
                               sources=("synthetic positions_3d", "synthetic positions_2d"))
    return load_h36m(data, keypoints, subjects, actions)
