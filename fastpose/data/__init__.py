"""Data for the lifting model: Human3.6M in the VideoPose3D npz layout, the built-in synthetic
set (same layout, same loader), the built-in real motion (CMU) and any world-frame motion file
turned into lifting sequences, and batching (edge-padded windows, flip augmentation).

:func:`load_sequences` is the one entry point the command line uses; its ``data`` is

- ``"synthetic"``: the built-in synthetic set, generated in memory for ``subjects``;
- ``"cmu"``: the built-in real motion (:func:`fastpose.data.motion.builtin_motion`), its training
  part or its held-out part (``part``), placed in the Human3.6M room and projected through the
  four distorted cameras of each of ``subjects`` (:func:`fastpose.data.motion.motion_to_sequences`);
- ``"synthetic+cmu"``: both lists, concatenated;
- a path ending in ``.npz``: a motion file in the layout of ``cmu_h36m17.npz`` (one (T, 17, 3)
  array per sequence + optional ``__meta__``; mm or m), projected like ``"cmu"``;
- any other path: a directory holding ``data_3d_h36m.npz`` and ``data_2d_h36m_<keypoints>.npz``.

``part`` ("train", "test", "all"; motion data only) defaults to ``"test"`` when every subject is
a held-out Human3.6M subject (S9, S11) and to ``"train"`` otherwise, so
``load_sequences(data, TRAIN_SUBJECTS)`` / ``load_sequences(data, TEST_SUBJECTS)`` give the
training and the evaluation sets for every ``data``; a motion file without a split in its
metadata is used whole. ``noise_px`` adds detector-like 2D noise (pixels) to the motion-derived
sequences and, when > 0, to the synthetic ones (it replaces ``SyntheticConfig.noise_px``);
``seed`` draws the motion's yaw in the room and its noise.

Motion-derived sequences have ``action`` = a coarse category (Walk, Run, Jump, Dance, ...) and
``name`` = the sequence's key, so the per-action tables stay readable.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from ..skeleton import canonical_action
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
from .motion import MotionSet, builtin_motion, load_motion, motion_to_sequences, motion_to_videopose3d
from .synthetic import SyntheticConfig, SyntheticData, generate_synthetic, write_synthetic

__all__ = [
    "DataError",
    "MotionSet",
    "PoseSequence",
    "SyntheticConfig",
    "SyntheticData",
    "TEST_SUBJECTS",
    "TRAIN_SUBJECTS",
    "WindowDataset",
    "build_sequences",
    "builtin_motion",
    "dataset_paths",
    "flip_batch",
    "generate_synthetic",
    "load_h36m",
    "load_motion",
    "load_sequences",
    "motion_to_sequences",
    "motion_to_videopose3d",
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
    *,
    part: str | None = None,
    noise_px: float = 0.0,
    seed: int = 0,
) -> list[PoseSequence]:
    """Sequences of ``subjects`` from ``data`` (see the module docstring for every option).

    With synthetic or motion data, ``keypoints`` must be ``"gt"`` (exact projections; ask for
    detector-like 2D with ``noise_px`` or ``synthetic=SyntheticConfig(noise_px=..., drop_prob=...)``).
    ``actions`` keeps only those action groups (Human3.6M names, or motion categories such as
    ``"Walk"``).
    """
    subjects = tuple(subjects)
    if part not in (None, "train", "test", "all"):
        raise ValueError(f"load_sequences: part must be 'train', 'test', 'all' or None, got {part!r}")
    if not isinstance(noise_px, (int, float)) or noise_px < 0:
        raise ValueError(f"load_sequences: noise_px must be a number >= 0 (pixels), got {noise_px!r}")
    name = str(data)
    kinds = name.split("+") if name in ("synthetic", "cmu", "synthetic+cmu", "cmu+synthetic") else None
    is_motion_file = kinds is None and name.endswith(".npz")
    if (kinds is not None or is_motion_file) and keypoints != "gt":
        raise ValueError(f"load_sequences: data={name!r} has exact 2D keypoints ('gt'), got keypoints="
                         f"{keypoints!r}; ask for detector-like 2D with noise_px=... (or SyntheticConfig("
                         "noise_px=..., drop_prob=...) for the synthetic set)")
    if kinds is None and not is_motion_file:
        return load_h36m(data, keypoints, subjects, actions)
    if part is None:
        part = "test" if subjects and set(subjects) <= set(TEST_SUBJECTS) else "train"
    out: list[PoseSequence] = []
    for kind in kinds or ["file"]:
        if kind == "synthetic":
            base = synthetic or SyntheticConfig()
            over = {"subjects": subjects, **({"noise_px": float(noise_px)} if noise_px > 0 else {})}
            gen = generate_synthetic(SyntheticConfig(**{**base.__dict__, **over}))
            out += build_sequences(gen.positions_3d, gen.positions_2d, subjects, actions,
                                   sources=("synthetic positions_3d", "synthetic positions_2d"))
            continue
        if kind == "cmu":
            motion = builtin_motion(part)
        else:
            motion = load_motion(data)
            if part != "all" and isinstance(motion.meta.get("split"), dict):
                motion = motion.part(part)
        if actions is not None:
            wanted = {canonical_action(a) for a in actions}
            keep = [k for k, a in motion.actions.items() if a in wanted]
            if not keep:
                raise DataError(f"{motion.source}: no sequences of actions {sorted(wanted)}; its categories are "
                                f"{sorted(set(motion.actions.values()))}")
            motion = motion.subset(keep)
        out += motion_to_sequences(motion, subjects, noise_px=float(noise_px), seed=seed)
    return out
