"""Human3.6M in the VideoPose3D npz layout (real files and the built-in synthetic set alike).

Files (as written by VideoPose3D's ``data/prepare_data_h36m.py`` and :mod:`.synthetic`):

- ``data_3d_h36m.npz``: key ``positions_3d``, a pickled dict ``{subject: {action: (T, 32, 3)}}``
  of world-frame positions in metres (a (T, 17, 3) array is accepted as already reduced);
- ``data_2d_h36m_<keypoints>.npz``: key ``positions_2d``, ``{subject: {action: [4 x (T', 17, 2)]}}``
  in pixels, one array per camera in the calibration order, and ``metadata``
  (``layout_name``, ``num_joints``, ``keypoints_symmetry``). ``<keypoints>`` is ``gt`` for
  the projected ground truth, or a detector's name (``cpn_ft_h36m_dbb``, ``detectron_pt_coco``...).

:func:`load_h36m` turns them into :class:`PoseSequence` objects, one per (subject, action,
camera): 2D keypoints in normalised screen coordinates, 3D positions in the camera frame
(metres, not root-relative: the trajectory is kept for the global-position head), and the
camera's normalised 9-vector. 2D sequences longer than the motion capture are truncated to it
(as VideoPose3D does); shorter ones are an error.

The npz files hold pickled Python objects, so they are loaded with ``allow_pickle=True``:
only load files you trust.

Every problem with a file (missing, truncated, not an npz, a missing key, a wrong shape,
non-finite values, a subject or action missing from one of the two files) raises
:class:`DataError` (or ``FileNotFoundError``) naming the file and what was expected.
"""

from __future__ import annotations

import pickle
import warnings
import zipfile
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..camera import H36M_SUBJECTS, h36m_cameras, normalize_screen_coordinates
from ..skeleton import H36M_KEPT_FROM_32, canonical_action, chirality

__all__ = [
    "DataError",
    "PoseSequence",
    "TEST_SUBJECTS",
    "TRAIN_SUBJECTS",
    "build_sequences",
    "dataset_paths",
    "load_h36m",
    "read_positions_2d",
    "read_positions_3d",
    "warn_if_mirrored",
]

TRAIN_SUBJECTS: tuple[str, ...] = ("S1", "S5", "S6", "S7", "S8")
TEST_SUBJECTS: tuple[str, ...] = ("S9", "S11")
_NUM_CAMERAS = 4


class DataError(ValueError):
    """A data file is unreadable or does not follow the VideoPose3D layout."""


@dataclass
class PoseSequence:
    """One (subject, action, camera) sequence, ready for the lifting network.

    keypoints_2d (T, 17, 2) float32 normalised screen coordinates; positions_3d (T, 17, 3)
    float32 camera frame, metres; camera (9,) float32 normalised intrinsics
    ``(fx, fy, cx, cy, k1, k2, k3, p_a, p_b)``; res = (width, height) in pixels. ``action`` is
    the table column (Human3.6M: ``"Walking 1"``; motion files: a coarse category such as
    ``"Walk"``), ``name`` the sequence's own name (Human3.6M: the action; motion files: the key).
    """

    subject: str
    action: str
    camera_index: int
    keypoints_2d: np.ndarray
    positions_3d: np.ndarray
    camera: np.ndarray
    res: tuple[int, int]
    name: str = ""  # the sequence's own name (CMU: its key); defaults to ``action``

    def __post_init__(self) -> None:
        if not self.name:
            self.name = self.action

    @property
    def action_group(self) -> str:
        """The action's table column, e.g. ``"Walking 1"`` -> ``"Walking"``."""
        return canonical_action(self.action)

    @property
    def num_frames(self) -> int:
        return int(self.keypoints_2d.shape[0])


def dataset_paths(root: str | Path, keypoints: str = "gt") -> tuple[Path, Path]:
    """The 3D and 2D file paths inside ``root``: ``data_3d_h36m.npz``, ``data_2d_h36m_<keypoints>.npz``."""
    root = Path(root)
    return root / "data_3d_h36m.npz", root / f"data_2d_h36m_{keypoints}.npz"


def load_h36m(
    root: str | Path,
    keypoints: str = "gt",
    subjects: Iterable[str] = TRAIN_SUBJECTS + TEST_SUBJECTS,
    actions: Iterable[str] | None = None,
) -> list[PoseSequence]:
    """Read the two files of ``root`` and return the sequences of ``subjects`` (all actions
    unless ``actions`` lists action groups such as ``"Walking"``)."""
    p3, p2 = dataset_paths(root, keypoints)
    positions_3d = read_positions_3d(p3)
    positions_2d, _ = read_positions_2d(p2)
    return build_sequences(positions_3d, positions_2d, subjects, actions, sources=(str(p3), str(p2)))


def read_positions_3d(path: str | Path) -> dict[str, dict[str, np.ndarray]]:
    """``positions_3d`` of a ``data_3d_h36m.npz`` file, reduced to 17 joints: {subject: {action: (T, 17, 3)}}."""
    path = Path(path)
    raw = _load_dict(path, "positions_3d")
    out: dict[str, dict[str, np.ndarray]] = {}
    for subject, acts in _items(raw, path, "positions_3d"):
        out[subject] = {}
        for action, arr in _items(acts, path, f"positions_3d[{subject!r}]"):
            where = f"{path}: positions_3d[{subject!r}][{action!r}]"
            arr = _float_array(arr, where)
            if arr.ndim != 3 or arr.shape[1:] not in ((32, 3), (17, 3)) or arr.shape[0] == 0:
                raise DataError(f"{where}: expected shape (T, 32, 3) or (T, 17, 3) with T > 0, "
                                f"got {arr.shape}")
            if arr.shape[1] == 32:
                arr = arr[:, list(H36M_KEPT_FROM_32)]
            out[subject][action] = np.ascontiguousarray(arr, dtype=np.float32)
        warn_if_mirrored(list(out[subject].values()), f"{path}: subject {subject!r}")
    return out


def warn_if_mirrored(sequences: Iterable[np.ndarray], where: str) -> int:
    """Warn (``UserWarning``) when world-frame motion (T, 17, 3), Z up, looks like mirror images.

    The vote of :func:`fastpose.skeleton.chirality` over all frames of ``sequences``; returns
    it (+1 real people, -1 mirrored, 0 undecided). A mirrored training set teaches a lifter to
    put left joints on the right of real people (twice the error on real motion).
    """
    votes = [chirality(np.asarray(seq), per_frame=True) for seq in sequences if len(seq)]
    sign = int(np.sign(sum(float(v.sum()) for v in votes))) if votes else 0
    if sign < 0:
        warnings.warn(
            f"{where}: the 3D poses look mirrored (fastpose.skeleton.chirality = -1: the l_* joints are on "
            "the anatomical right in a right-handed Z-up world frame). Either the left/right joints are "
            "swapped or the world frame is left-handed; fix the data (swap the joints with "
            "fastpose.skeleton.H36M_SKELETON.flip_permutation, or negate one horizontal axis) before "
            "training or evaluating on it.",
            UserWarning,
            stacklevel=3,
        )
    return sign


def read_positions_2d(path: str | Path) -> tuple[dict[str, dict[str, list[np.ndarray]]], dict]:
    """``positions_2d`` (pixels) and ``metadata`` of a ``data_2d_h36m_<keypoints>.npz`` file."""
    path = Path(path)
    raw = _load_dict(path, "positions_2d", extra=("metadata",))
    meta = raw.pop("__metadata__")
    if not isinstance(meta, Mapping):
        raise DataError(f"{path}: 'metadata' must be a dict, got {type(meta).__name__}")
    n_joints = int(meta.get("num_joints", 17))
    if n_joints != 17:
        raise DataError(f"{path}: metadata num_joints = {n_joints}; fastpose expects the 17-joint "
                        "Human3.6M layout")
    out: dict[str, dict[str, list[np.ndarray]]] = {}
    for subject, acts in _items(raw, path, "positions_2d"):
        out[subject] = {}
        for action, views in _items(acts, path, f"positions_2d[{subject!r}]"):
            where = f"{path}: positions_2d[{subject!r}][{action!r}]"
            if not isinstance(views, (list, tuple)) or len(views) != _NUM_CAMERAS:
                got = len(views) if isinstance(views, (list, tuple)) else type(views).__name__
                raise DataError(f"{where}: expected a list of {_NUM_CAMERAS} camera arrays, got {got}")
            arrays = []
            for c, kp in enumerate(views):
                kp = _float_array(kp, f"{where}[{c}]")
                if kp.ndim != 3 or kp.shape[1:] != (17, 2):
                    raise DataError(f"{where}[{c}]: expected shape (T, 17, 2), got {kp.shape}")
                arrays.append(np.ascontiguousarray(kp, dtype=np.float32))
            out[subject][action] = arrays
    return out, dict(meta)


def build_sequences(
    positions_3d: Mapping[str, Mapping[str, np.ndarray]],
    positions_2d: Mapping[str, Mapping[str, list[np.ndarray]]],
    subjects: Iterable[str],
    actions: Iterable[str] | None = None,
    sources: tuple[str, str] = ("positions_3d", "positions_2d"),
) -> list[PoseSequence]:
    """Pair 3D (world, 17 joints) and 2D (pixels) data into camera-frame :class:`PoseSequence` objects.

    ``positions_3d``/``positions_2d`` as returned by :func:`read_positions_3d`/``_2d`` (or by
    :func:`fastpose.data.synthetic.generate_synthetic`, after reduction to 17 joints).
    """
    subjects = list(subjects)
    wanted = None if actions is None else {canonical_action(a) for a in actions}
    sequences: list[PoseSequence] = []
    for subject in subjects:
        if subject not in positions_3d:
            raise DataError(f"{sources[0]}: subject {subject!r} not found; available: {sorted(positions_3d)}")
        if subject not in positions_2d:
            raise DataError(f"{sources[1]}: subject {subject!r} not found; available: {sorted(positions_2d)}")
        if subject not in H36M_SUBJECTS:
            raise DataError(f"subject {subject!r} has no camera calibration; expected one of {H36M_SUBJECTS}")
        cams = h36m_cameras(subject)
        for action in sorted(positions_3d[subject]):
            if wanted is not None and canonical_action(action) not in wanted:
                continue
            if action not in positions_2d[subject]:
                raise DataError(f"{sources[1]}: positions_2d[{subject!r}] has no action {action!r} "
                                f"(present in {sources[0]})")
            world = positions_3d[subject][action]  # (T, 17, 3)
            if world.shape[1] == 32:
                world = world[:, list(H36M_KEPT_FROM_32)]
            for c, cam in enumerate(cams):
                kp = positions_2d[subject][action][c]  # (T', 17, 2) pixels
                if kp.shape[0] < world.shape[0]:
                    raise DataError(
                        f"{sources[1]}: positions_2d[{subject!r}][{action!r}][{c}] has {kp.shape[0]} frames, "
                        f"fewer than the {world.shape[0]} of the motion capture"
                    )
                kp = kp[: world.shape[0]]  # detections may run past the end of the mocap
                sequences.append(
                    PoseSequence(
                        subject=subject,
                        action=action,
                        camera_index=c,
                        keypoints_2d=normalize_screen_coordinates(kp, cam.res_w, cam.res_h).astype(np.float32),
                        positions_3d=cam.world_to_camera(world.astype(np.float64)).astype(np.float32),
                        camera=cam.intrinsics(normalized=True),
                        res=(cam.res_w, cam.res_h),
                    )
                )
    if not sequences:
        raise DataError(f"no sequences for subjects {subjects} and actions {actions} in {sources}")
    return sequences


# --------------------------------------------------------------------------------------------
# file checks
# --------------------------------------------------------------------------------------------
def _load_dict(path: Path, key: str, extra: tuple[str, ...] = ()) -> dict:
    if not path.exists():
        raise FileNotFoundError(
            f"{path}: file not found. Expected the VideoPose3D layout (data_3d_h36m.npz and "
            "data_2d_h36m_<keypoints>.npz, see VideoPose3D's DATASETS.md), or use --data synthetic"
        )
    try:
        with np.load(path, allow_pickle=True) as npz:
            keys = list(npz.keys())
            if key not in keys:
                raise DataError(f"{path}: missing key {key!r}; found keys {keys}")
            value = npz[key]
            extras = {}
            for k in extra:
                if k not in keys:
                    raise DataError(f"{path}: missing key {k!r}; found keys {keys}")
                extras[k] = npz[k]
    except DataError:
        raise
    except (zipfile.BadZipFile, pickle.UnpicklingError, EOFError, OSError, ValueError, KeyError) as exc:
        raise DataError(f"{path}: not a readable .npz file (truncated or corrupt?): "
                        f"{type(exc).__name__}: {exc}") from exc
    out = _unwrap(value, path, key)
    if not isinstance(out, dict):
        raise DataError(f"{path}: {key!r} must hold a dict {{subject: {{action: array}}}}, "
                        f"got {type(out).__name__}")
    out = dict(out)
    for k, v in extras.items():
        out[f"__{k}__"] = _unwrap(v, path, k)
    return out


def _unwrap(value, path: Path, key: str):
    """A 0-d object array (how np.savez stores a dict) -> the object inside."""
    if isinstance(value, np.ndarray) and value.dtype == object and value.shape == ():
        return value.item()
    raise DataError(f"{path}: {key!r} must be a pickled object (0-d object array), got an array of "
                    f"dtype {getattr(value, 'dtype', '?')} and shape {getattr(value, 'shape', '?')}")


def _items(mapping, path: Path, where: str):
    if not isinstance(mapping, Mapping):
        raise DataError(f"{path}: {where} must be a dict, got {type(mapping).__name__}")
    if not mapping:
        raise DataError(f"{path}: {where} is empty")
    for k, v in mapping.items():
        if not isinstance(k, str):
            raise DataError(f"{path}: {where} has a non-string key {k!r}")
        yield k, v


def _float_array(arr, where: str) -> np.ndarray:
    if not isinstance(arr, np.ndarray) or arr.dtype.kind not in "fiu":
        raise DataError(f"{where}: expected a numeric array, got "
                        f"{type(arr).__name__}{'' if not isinstance(arr, np.ndarray) else ' ' + str(arr.dtype)}")
    if not np.isfinite(arr).all():
        raise DataError(f"{where}: contains NaN or infinite values")
    return arr
