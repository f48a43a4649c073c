"""World-frame 3D motion files, the built-in real motion (CMU), and motion -> lifting sequences.

**Motion files** (the layout of ``cmu_h36m17.npz``): an ``.npz`` with one array per sequence,
``(T, 17, 3)`` world-frame positions in the Human3.6M joint order (:mod:`fastpose.skeleton`),
Z up, floor at z = 0, in millimetres or metres, plus an optional ``__meta__`` key holding a
JSON string. :func:`load_motion` reads any such file into a :class:`MotionSet` (float32 metres).
Meta keys it understands: ``units`` (``"mm"`` or ``"m"``; without it the unit is detected from
the median thigh length: a thigh is 0.3-0.6 m, so > 5 units means millimetres), ``fps``,
``sequences`` (a list of per-sequence records with ``key``, ``description``, ``cmu_trial``,
``status``: records marked ``"excluded"`` are skipped), ``encoding`` (integer storage, below)
and ``split`` (``{key: "train" | "test"}``).

**The built-in real motion** (:func:`builtin_motion`): 124 motion-capture sequences, 43,815 frames
at 50 fps (14.6 minutes) from the CMU Graphics Lab Motion Capture Database, mapped to the
Human3.6M 17-joint skeleton: dance, jumps, arm signals, walking, running, basketball,
playground climbing and sitting, punching and sword play, bending/washing/reaching, directing
traffic, soccer, window washing. Stored in ``cmu_motion.npz`` next to this module (1.7 MB):
int16 millimetres, the first frame absolute and then frame-to-frame differences
(``encoding = {"dtype": "int16", "unit": "mm", "scale": 1.0, "delta": true}``; quantisation
error <= 0.5 mm), with the licence, the acknowledgement and one provenance record per
sequence in ``__meta__``. Licence (CMU): "This data is free for use in research projects. You may
include this data in commercially-sold products, but you may not resell this data directly,
even in converted form." Acknowledgement: "The data used in this project was obtained from
mocap.cs.cmu.edu. The database was created with funding from NSF EIA-0196217."

Split by CMU subject (the first number of the trial id, e.g. ``13`` in ``13_11``), fixed:
held out ("test", 9,236 frames, 21 %) are subjects **1** (playground: climb, sit, jump down),
**9** (running), **10** (walk; his other CMU trials are soccer kicks), **14** (jump up to grab,
reach, tiptoe) and **131** (start/walk/stop, hop), chosen for the variety of their motion and so
that every part keeps walking, running and jumping. Sequences from the CMU motion-prediction set
(Li et al. 2018) that carry no trial id are grouped per action and go where the subjects of that
action's identified takes go, so no subject can sit on both sides: walking (subjects 2, 5, 6, 7)
and jumping (13) -> train; soccer (with subject 10) and running (with subject 9) -> test;
basketball signals, directing traffic and window washing (no identified take) -> train.

**Motion -> training data** (:func:`motion_to_videopose3d`, :func:`motion_to_sequences`): each
sequence is placed in the Human3.6M capture room (its mean pelvis position moved to the room
centre x = y = 0, heights kept), turned about the vertical through that centre by a yaw drawn
per (seed, subject, sequence), projected through the subject's four calibrated cameras *with
their lens distortion* by the synthetic set's projection code, and optionally corrupted by the
synthetic set's detector-like 2D noise (i.i.d. jitter + slowly drifting bias, ``noise_px``
pixels). The result is the VideoPose3D layout the loaders read, or :class:`PoseSequence`
objects whose ``action`` is a coarse category from the sequence's description
(:func:`motion_category`: Walk, Run, Jump, Dance, ...) and ``name`` the sequence's key.

Loading warns (``UserWarning``) when a file's people look like mirror images
(:func:`fastpose.skeleton.chirality`).
"""

from __future__ import annotations

import json
import re
import warnings
import zipfile
import zlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import numpy as np

from ..camera import H36M_SUBJECTS, h36m_cameras
from ..skeleton import chirality
from .h36m import DataError, PoseSequence, build_sequences, warn_if_mirrored
from .synthetic import SyntheticData, _corrupt, _project_pixels

__all__ = [
    "BUILTIN_MOTION_PATH",
    "BUILTIN_TEST_SUBJECTS",
    "MotionSet",
    "builtin_motion",
    "load_motion",
    "motion_category",
    "motion_to_sequences",
    "motion_to_videopose3d",
    "save_motion",
]

BUILTIN_MOTION_PATH = Path(__file__).resolve().parent / "cmu_motion.npz"
# CMU subjects (and motion-prediction groups) of the held-out part; see the module docstring.
BUILTIN_TEST_SUBJECTS: tuple[str, ...] = ("1", "9", "10", "14", "131", "mp:soccer", "mp:running")
_PARTS = ("train", "test", "all")

# Coarse categories, first match wins (lower-case substrings of the description or key).
_CATEGORIES: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("Dance", ("dance",)),
    ("Playground", ("playground", "climb")),
    ("Signal", ("signal", "directing", "traffic")),
    ("Basketball", ("basketball", "dribble")),
    ("Soccer", ("soccer", "kick")),
    ("Fight", ("punch", "strike", "sword", "box")),
    ("Jump", ("jump", "hop")),
    ("Chores", ("wash", "bend", "scoop", "reach", "sweep")),
    ("Run", ("run", "jog")),
    ("Walk", ("walk", "stride", "step")),
)


def motion_category(description: str) -> str:
    """Coarse motion category of a sequence description or key, for per-action tables.

    The first of Dance, Playground, Signal, Basketball, Soccer, Fight, Jump, Chores, Run, Walk
    whose keywords occur in ``description`` (case-insensitive), else ``"Other"``. Examples:
    ``"walk on uneven terrain"`` -> Walk, ``"jump up to grab, reach for, tiptoe"`` -> Jump.
    """
    if not isinstance(description, str):
        raise TypeError(f"motion_category: description must be a str, got {type(description).__name__}")
    text = description.lower()
    for name, words in _CATEGORIES:
        if any(w in text for w in words):
            return name
    return "Other"


@dataclass
class MotionSet:
    """World-frame motion: ``sequences[name]`` (T, 17, 3) float32 metres, Z up, Human3.6M joints.

    ``actions[name]`` is the coarse category, ``groups[name]`` the CMU subject (or
    ``"mp:<action>"``, see the module docstring; ``""`` when unknown), ``fps`` frames per second,
    ``meta`` the file's metadata, ``source`` where it came from.
    """

    sequences: dict[str, np.ndarray]
    actions: dict[str, str]
    groups: dict[str, str] = field(default_factory=dict)
    fps: float = 50.0
    meta: dict = field(default_factory=dict)
    source: str = ""

    @property
    def num_frames(self) -> int:
        return int(sum(a.shape[0] for a in self.sequences.values()))

    def subset(self, names: Iterable[str]) -> MotionSet:
        """The sequences ``names`` (in that order), sharing the arrays."""
        names = list(names)
        missing = [n for n in names if n not in self.sequences]
        if missing:
            raise KeyError(f"MotionSet.subset: {missing[:5]} not in {self.source or 'this set'}")
        return MotionSet({n: self.sequences[n] for n in names}, {n: self.actions[n] for n in names},
                         {n: self.groups.get(n, "") for n in names}, self.fps, self.meta, self.source)

    def part(self, part: str) -> MotionSet:
        """``"train"``, ``"test"`` or ``"all"`` sequences according to ``meta["split"]``."""
        if part not in _PARTS:
            raise ValueError(f"MotionSet.part: part must be one of {_PARTS}, got {part!r}")
        if part == "all":
            return self
        split = self.meta.get("split")
        if not isinstance(split, Mapping):
            raise ValueError(f"MotionSet.part: {self.source or 'this set'} has no train/test split in its "
                             f"metadata (meta['split']); use part='all'")
        return self.subset(n for n in self.sequences if split.get(n) == part)


# ============================================================================================
# reading and writing
# ============================================================================================
def load_motion(path: str | Path, *, units: str | None = None, warn_mirrored: bool = True) -> MotionSet:
    """Read a motion file (layout: module docstring) into a :class:`MotionSet` in metres.

    ``units`` ("mm" or "m") overrides the file's ``meta["units"]``; without either the unit
    is detected from the thigh length. Raises :class:`DataError` (or ``FileNotFoundError``)
    naming the file and key for anything malformed, and warns when the people look mirrored.
    """
    path = Path(path)
    if units not in (None, "mm", "m"):
        raise ValueError(f"load_motion: units must be 'mm', 'm' or None (detect), got {units!r}")
    if not path.exists():
        raise FileNotFoundError(f"{path}: motion file not found (expected an .npz with one (T, 17, 3) array "
                                "per sequence, as fastpose.data.motion describes)")
    try:
        with np.load(path, allow_pickle=False) as npz:
            raw = {k: npz[k] for k in npz.files}
    except (zipfile.BadZipFile, EOFError, OSError, ValueError) as exc:
        raise DataError(f"{path}: not a readable .npz file without pickled objects: "
                        f"{type(exc).__name__}: {exc}") from exc
    meta: dict = {}
    if "__meta__" in raw:
        try:
            meta = json.loads(str(raw.pop("__meta__")))
        except json.JSONDecodeError as exc:
            raise DataError(f"{path}: '__meta__' must be a JSON string: {exc}") from exc
        if not isinstance(meta, dict):
            raise DataError(f"{path}: '__meta__' must hold a JSON object, got {type(meta).__name__}")
    records = {r["key"]: r for r in meta.get("sequences", []) if isinstance(r, Mapping) and "key" in r}
    keys = [k for k in raw if records.get(k, {}).get("status") != "excluded"]
    if not keys:
        raise DataError(f"{path}: no motion sequences (expected one (T, 17, 3) array per sequence)")
    declared = units or meta.get("units")
    if declared not in (None, "mm", "m"):
        raise DataError(f"{path}: meta['units'] must be 'mm' or 'm', got {declared!r}")
    enc = meta.get("encoding")
    seqs: dict[str, np.ndarray] = {}
    for k in keys:
        arr = raw[k]
        where = f"{path}: {k!r}"
        if arr.ndim != 3 or arr.shape[1:] != (17, 3) or arr.shape[0] == 0 or arr.dtype.kind not in "fiu":
            raise DataError(f"{where}: expected a numeric array of shape (T, 17, 3) with T > 0 (Human3.6M "
                            f"joint order), got {arr.dtype} {arr.shape}")
        if arr.dtype.kind in "iu":
            arr = _decode(arr, enc, where)
        arr = arr.astype(np.float64)
        if not np.isfinite(arr).all():
            raise DataError(f"{where}: contains NaN or infinite values")
        seqs[k] = arr
    thigh = float(np.median(np.concatenate([np.linalg.norm(s[:, 2] - s[:, 1], axis=-1) for s in seqs.values()])))
    detected = "mm" if thigh > 5.0 else "m"
    if declared is not None and declared != detected:
        raise DataError(f"{path}: units declared {declared!r} but the median thigh length is {thigh:.3g} "
                        f"(expected 0.3-0.6 in metres, 300-600 in millimetres); pass units= to override "
                        "only if the skeleton really is that size")
    scale = 1e-3 if (declared or detected) == "mm" else 1.0
    seqs = {k: (v * scale).astype(np.float32) for k, v in seqs.items()}
    actions = {k: motion_category(str(records.get(k, {}).get("description") or k)) for k in keys}
    groups = {k: _group(k, records.get(k, {})) for k in keys}
    motion = MotionSet(seqs, actions, groups, float(meta.get("fps", 50.0)), meta, str(path))
    if warn_mirrored:
        _warn_mirrored(motion, str(path))
    return motion


def save_motion(motion: MotionSet | Mapping[str, np.ndarray], path: str | Path, *, meta: dict | None = None,
                compact: bool = True) -> Path:
    """Write ``motion`` (metres) as a motion file that :func:`load_motion` reads.

    ``compact=True``: int16 millimetres, first frame absolute then frame-to-frame differences,
    deflate-compressed (about 40 bytes per frame; quantisation error <= 0.5 mm; positions must
    stay within +-32.7 m). ``compact=False``: float32 millimetres. ``meta`` is merged into
    ``motion.meta`` and stored as the ``__meta__`` JSON string.
    """
    seqs = motion.sequences if isinstance(motion, MotionSet) else dict(motion)
    out_meta = {**(motion.meta if isinstance(motion, MotionSet) else {}), **(meta or {}), "units": "mm"}
    if isinstance(motion, MotionSet):
        out_meta.setdefault("fps", motion.fps)
    arrays: dict[str, np.ndarray] = {}
    for k, v in seqs.items():
        if k == "__meta__":
            raise ValueError("save_motion: '__meta__' is reserved for the metadata; rename that sequence")
        mm = np.asarray(v, dtype=np.float64) * 1000.0
        if mm.ndim != 3 or mm.shape[1:] != (17, 3):
            raise ValueError(f"save_motion: sequence {k!r} must have shape (T, 17, 3), got {mm.shape}")
        if compact:
            q = np.round(mm)
            if np.abs(q).max(initial=0) > 32767:
                raise ValueError(f"save_motion: sequence {k!r} leaves the int16 range (|x| > 32.767 m); "
                                 "use compact=False")
            d = np.diff(q, axis=0, prepend=np.zeros((1, 17, 3)))
            if np.abs(d).max(initial=0) > 32767:  # only possible with an absolute jump of > 32 m
                raise ValueError(f"save_motion: sequence {k!r} jumps by more than 32.767 m between frames")
            arrays[k] = d.astype(np.int16)
        else:
            arrays[k] = mm.astype(np.float32)
    if compact:
        out_meta["encoding"] = {"dtype": "int16", "unit": "mm", "scale": 1.0, "delta": True}
    else:
        out_meta.pop("encoding", None)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(path, __meta__=np.array(json.dumps(out_meta)), **arrays)
    return path


def builtin_motion(part: str = "all") -> MotionSet:
    """The built-in CMU motion (module docstring): ``part`` = ``"train"``, ``"test"`` or ``"all"``.

    The arrays are shared with a cache and read-only; copy before changing them.
    """
    if part not in _PARTS:
        raise ValueError(f"builtin_motion: part must be one of {_PARTS}, got {part!r}")
    return _builtin_all().part(part)


@lru_cache(maxsize=1)
def _builtin_all() -> MotionSet:
    if not BUILTIN_MOTION_PATH.exists():
        raise FileNotFoundError(f"{BUILTIN_MOTION_PATH}: the built-in motion file is missing from this "
                                "installation (it ships as package data of fastpose.data); reinstall fastpose")
    motion = load_motion(BUILTIN_MOTION_PATH)
    for arr in motion.sequences.values():
        arr.flags.writeable = False
    return motion


def _decode(arr: np.ndarray, enc, where: str) -> np.ndarray:
    """Integer storage -> float64 in the file's unit: ``cumsum`` over time when delta-coded, x scale + offset."""
    if not isinstance(enc, Mapping):
        raise DataError(f"{where}: integer array ({arr.dtype}) but no meta['encoding'] says how to decode it")
    x = arr.astype(np.int64)
    if enc.get("delta", False):
        x = np.cumsum(x, axis=0)
    return x * float(enc.get("scale", 1.0)) + float(enc.get("offset", 0.0))


def _group(key: str, record: Mapping) -> str:
    """CMU subject of a sequence (``"13"`` for trial ``13_11``), ``"mp:<action>"`` for motion-prediction
    takes without a trial id, ``""`` when unknown."""
    trial = record.get("cmu_trial")
    if isinstance(trial, str) and re.match(r"^\d+_\d+$", trial):
        return str(int(trial.split("_")[0]))
    m = re.search(r'action "(\w+)"', str(record.get("description", "")))
    return f"mp:{m.group(1)}" if m else ""


def _warn_mirrored(motion: MotionSet, where: str) -> None:
    """Warn for the whole file (vote over all frames) and, separately, for mirrored sequences in it."""
    if warn_if_mirrored(list(motion.sequences.values()), where) < 0:
        return
    bad = [k for k, v in motion.sequences.items() if chirality(v) < 0]
    if bad:
        warnings.warn(f"{where}: {len(bad)} sequence(s) look mirrored (fastpose.skeleton.chirality = -1: "
                      f"left joints on the anatomical right): {bad[:10]}; swap their l_*/r_* joints or "
                      "drop them before training", UserWarning, stacklevel=3)


# ============================================================================================
# motion -> lifting data
# ============================================================================================
def motion_to_videopose3d(
    motion: MotionSet | Mapping[str, np.ndarray],
    subjects: Iterable[str],
    *,
    noise_px: float = 0.0,
    seed: int = 0,
    yaw_deg: float | None = None,
    units: str = "m",
) -> SyntheticData:
    """World motion -> the VideoPose3D layout (``positions_3d``/``positions_2d`` dicts; module docstring).

    ``motion``: a :class:`MotionSet` (metres) or a mapping ``name -> (T, 17, 3)`` in ``units``
    ("m" or "mm"), world frame, Z up. Every sequence goes to every subject of ``subjects``
    (Human3.6M subjects with calibration). ``yaw_deg``: one fixed yaw for all, or None for a
    yaw drawn uniformly in [0, 360) per (seed, subject, sequence). ``noise_px``: std of the
    detector-like 2D noise in pixels (0: exact projections). Returns positions_3d
    ``{subject: {name: (T, 17, 3)}}`` (metres, world, placed) and positions_2d
    ``{subject: {name: [4 x (T, 17, 2)]}}`` (pixels), both float32.
    """
    seqs = _as_metres(motion, units)
    subjects = tuple(subjects)
    for s in subjects:
        if s not in H36M_SUBJECTS:
            raise ValueError(f"motion_to_videopose3d: subject {s!r} has no camera calibration; "
                             f"expected some of {H36M_SUBJECTS}")
    if noise_px < 0:
        raise ValueError(f"motion_to_videopose3d: noise_px must be >= 0, got {noise_px}")
    p3d: dict[str, dict[str, np.ndarray]] = {}
    p2d: dict[str, dict[str, list[np.ndarray]]] = {}
    for subject in subjects:
        cams = h36m_cameras(subject)
        p3d[subject], p2d[subject] = {}, {}
        for name, world in seqs.items():
            rng = np.random.default_rng(np.random.SeedSequence([seed, int(subject[1:]), zlib.crc32(name.encode())]))
            yaw = np.deg2rad(rng.uniform(0.0, 360.0) if yaw_deg is None else yaw_deg)
            placed = _place_in_room(world, yaw)  # (T, 17, 3) float64
            p3d[subject][name] = placed.astype(np.float32)
            views = []
            for cam in cams:
                px = _project_pixels(placed, cam)  # (T, 17, 2), the synthetic set's projection
                if noise_px > 0:
                    px = _corrupt(px, noise_px, 0.0, rng)
                views.append(px.astype(np.float32))
            p2d[subject][name] = views
    return SyntheticData(p3d, p2d)


def motion_to_sequences(
    motion: MotionSet | Mapping[str, np.ndarray],
    subjects: Iterable[str],
    *,
    noise_px: float = 0.0,
    seed: int = 0,
    yaw_deg: float | None = None,
    units: str = "m",
) -> list[PoseSequence]:
    """World motion -> :class:`PoseSequence` objects (one per subject, sequence and camera).

    Same placement and projection as :func:`motion_to_videopose3d`; ``action`` is the coarse
    category (:attr:`MotionSet.actions`, or :func:`motion_category` of the name for a plain
    mapping) and ``name`` the sequence's name.
    """
    subjects = tuple(subjects)
    seqs = _as_metres(motion, units)
    actions = motion.actions if isinstance(motion, MotionSet) else {k: motion_category(k) for k in seqs}
    data = motion_to_videopose3d(seqs, subjects, noise_px=noise_px, seed=seed, yaw_deg=yaw_deg, units="m")
    source = getattr(motion, "source", "") or "motion"
    out = build_sequences(data.positions_3d, data.positions_2d, subjects,
                          sources=(f"{source} (3D)", f"{source} (2D projections)"))
    for seq in out:
        seq.name = seq.action  # build_sequences keys by the sequence's name
        seq.action = actions[seq.name]
    return out


def _as_metres(motion, units: str) -> dict[str, np.ndarray]:
    if isinstance(motion, MotionSet):
        return motion.sequences
    if units not in ("m", "mm"):
        raise ValueError(f"units must be 'm' or 'mm', got {units!r}")
    if not isinstance(motion, Mapping) or not motion:
        raise TypeError(f"motion must be a MotionSet or a non-empty mapping name -> (T, 17, 3) array, "
                        f"got {type(motion).__name__}")
    out = {}
    for k, v in motion.items():
        a = np.asarray(v, dtype=np.float64)
        if a.ndim != 3 or a.shape[1:] != (17, 3) or a.shape[0] == 0:
            raise ValueError(f"motion[{k!r}]: expected shape (T, 17, 3) with T > 0, got {a.shape}")
        out[str(k)] = a * (1e-3 if units == "mm" else 1.0)
    return out


def _place_in_room(world: np.ndarray, yaw: float) -> np.ndarray:
    """(T, 17, 3) metres -> the mean pelvis position moved to x = y = 0, turned by ``yaw`` about Z."""
    w = np.asarray(world, dtype=np.float64)
    centre = w[:, 0, :2].mean(axis=0)  # the pelvis track's centre
    xy = w[..., :2] - centre
    c, s = np.cos(yaw), np.sin(yaw)
    out = np.empty_like(w)
    out[..., 0] = c * xy[..., 0] - s * xy[..., 1]
    out[..., 1] = s * xy[..., 0] + c * xy[..., 1]
    out[..., 2] = w[..., 2]
    return out

