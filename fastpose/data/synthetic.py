"""Built-in synthetic Human3.6M-like data: kinematic motion, four calibrated cameras, npz layout.

The generator animates a 17-joint kinematic skeleton (Human3.6M joint order and bone lengths
close to subject S1's, scaled and perturbed per subject), drives its joint angles with smooth
action-specific motion inside joint-angle limits, moves it through the capture room, and
projects it through the four Human3.6M cameras of the subject *with their lens distortion*.
The result is written in the VideoPose3D layout, so :mod:`fastpose.data.h36m` reads real and
synthetic data through the same code:

- ``positions_3d[subject][action]``: (T, 32, 3) float32, world frame, metres (Z up). The 15
  joints that VideoPose3D removes are filled with their nearest kept ancestor's position;
- ``positions_2d[subject][action]``: list of 4 arrays (T, 17, 2) float32, pixels;
- ``metadata``: ``{"layout_name": "h36m", "num_joints": 17, "keypoints_symmetry": [left, right]}``.

Subjects are the seven Human3.6M subjects with calibration (train S1, S5, S6, S7, S8; test S9,
S11) and actions the 15 Human3.6M action names, each with two sub-actions (``"Walking"`` and
``"Walking 1"``) as in the real files, so the per-action tables look like the real ones.

Motion model (per sequence; 50 fps):

* joint angles: keyframes every 0.5-1.8 s drawn from the action's pose components (e.g.
  Eating: seated, hand to mouth or on the table), blended with a cosine ease, plus a small
  sway (sum of slow sinusoids), clipped to anatomical limits (:data:`JOINT_LIMITS`);
* gait (walking actions): a phase oscillator drives hip/knee/arm swing and pelvis twist with
  an amplitude that follows the walking speed; the root follows way-points inside a
  3 m x 3 m area and the body faces the direction of travel;
* turning: standing actions turn in place by keyframed yaw offsets;
* the root height keeps the lower ankle on the floor, which also puts the pelvis at seat
  height when the legs are flexed (sitting).

Optional detector-like corruption of the 2D file (:class:`SyntheticConfig`): i.i.d. Gaussian
jitter plus a slowly drifting per-joint bias (``noise_px``), and dropped joints that freeze at
their last position for 3-15 frames (``drop_prob`` per frame and joint).

Everything is deterministic from ``seed``: each sequence draws from its own
``numpy.random.SeedSequence([seed, subject, action, sub-action])``, so changing one sequence
(or the list of subjects) does not change the others.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from ..camera import H36M_SUBJECTS, h36m_cameras, image_coordinates
from ..skeleton import H36M_ACTIONS, H36M_JOINTS_LEFT, H36M_JOINTS_RIGHT, H36M_KEPT_FROM_32, H36M_PARENTS_32

__all__ = [
    "JOINT_LIMITS",
    "SyntheticConfig",
    "SyntheticData",
    "generate_synthetic",
    "subject_bone_lengths",
    "write_synthetic",
]

FPS = 50

# Bone lengths of the template subject in millimetres (close to Human3.6M S1), keyed by the
# child joint of each bone.
_BONE_MM = {
    "hip": 132.9,  # pelvis -> hip (hips 266 mm apart)
    "thigh": 442.9,  # hip -> knee
    "shin": 454.2,  # knee -> ankle
    "lower_spine": 233.4,  # pelvis -> spine
    "upper_spine": 257.1,  # spine -> thorax
    "neck": 121.1,  # thorax -> neck_nose
    "head": 115.0,  # neck_nose -> head
    "clavicle": 151.0,  # thorax -> shoulder
    "upper_arm": 278.9,  # shoulder -> elbow
    "forearm": 251.7,  # elbow -> wrist
}
# joint -> (bone name, rest direction in the parent's frame: x = subject's right, y = forward, z = up).
# x = right, y = forward, z = up is a right-handed frame with the body the right way round
# (right = forward x up); with x = left the generator built mirror images of people.
_REST = {
    1: ("hip", (1.0, 0.0, -0.05)),
    2: ("thigh", (0.0, 0.0, -1.0)),
    3: ("shin", (0.0, 0.0, -1.0)),
    4: ("hip", (-1.0, 0.0, -0.05)),
    5: ("thigh", (0.0, 0.0, -1.0)),
    6: ("shin", (0.0, 0.0, -1.0)),
    7: ("lower_spine", (0.0, 0.05, 1.0)),
    8: ("upper_spine", (0.0, 0.0, 1.0)),
    9: ("neck", (0.0, 0.25, 1.0)),
    10: ("head", (0.0, 0.1, 1.0)),
    11: ("clavicle", (-1.0, 0.0, -0.1)),
    12: ("upper_arm", (0.0, 0.0, -1.0)),
    13: ("forearm", (0.0, 0.0, -1.0)),
    14: ("clavicle", (1.0, 0.0, -0.1)),
    15: ("upper_arm", (0.0, 0.0, -1.0)),
    16: ("forearm", (0.0, 0.0, -1.0)),
}
_PARENTS = (-1, 0, 1, 2, 0, 4, 5, 0, 7, 8, 9, 8, 11, 12, 8, 14, 15)
_ANKLE_HEIGHT = 0.08  # m, ankle joint above the floor when the foot is flat

# Joint-angle limits in degrees (sides share limits). Positive: leg/arm forward (flexion),
# limb away from the body (abduction), knee/elbow bent, trunk/head bent forward, pelvis
# tilted forward.
JOINT_LIMITS: dict[str, tuple[float, float]] = {
    "pitch": (-15.0, 45.0),
    "roll": (-10.0, 10.0),
    "spine_flex": (-20.0, 60.0),
    "spine_lat": (-25.0, 25.0),
    "spine_twist": (-35.0, 35.0),
    "thorax_flex": (-10.0, 30.0),
    "thorax_lat": (-15.0, 15.0),
    "thorax_twist": (-20.0, 20.0),
    "neck_flex": (-40.0, 50.0),
    "neck_lat": (-30.0, 30.0),
    "leg_flex": (-30.0, 125.0),
    "hip_abd": (-15.0, 45.0),
    "hip_twist": (-30.0, 30.0),
    "knee": (0.0, 150.0),
    "sh_flex": (-50.0, 170.0),
    "sh_abd": (-10.0, 160.0),
    "sh_twist": (-60.0, 90.0),
    "elbow": (0.0, 150.0),
}
_SIDED = ("leg_flex", "hip_abd", "hip_twist", "knee", "sh_flex", "sh_abd", "sh_twist", "elbow")
_CENTRAL = ("pitch", "roll", "spine_flex", "spine_lat", "spine_twist", "thorax_flex", "thorax_lat",
            "thorax_twist", "neck_flex", "neck_lat")  # fmt: skip
ANGLE_NAMES: tuple[str, ...] = _CENTRAL + tuple(f"{s}_{n}" for s in ("l", "r") for n in _SIDED)

# Keyframe ranges of a relaxed standing person (degrees); actions override some of them.
_NEUTRAL: dict[str, tuple[float, float]] = {
    "pitch": (-3, 8), "roll": (-3, 3),
    "spine_flex": (-5, 10), "spine_lat": (-5, 5), "spine_twist": (-10, 10),
    "thorax_flex": (-5, 10), "thorax_lat": (-4, 4), "thorax_twist": (-8, 8),
    "neck_flex": (-10, 25), "neck_lat": (-10, 10),
    "leg_flex": (-5, 18), "hip_abd": (-3, 10), "hip_twist": (-10, 10), "knee": (2, 30),
    "sh_flex": (-10, 30), "sh_abd": (5, 25), "sh_twist": (-20, 40), "elbow": (5, 60),
}  # fmt: skip

# Reusable pose components. Keys: central names, "a_<sided>" for the active side (chosen at
# random per keyframe) and "o_<sided>" for the other side, or "<sided>" for both.
_SEATED = {"leg_flex": (80, 100), "knee": (75, 105), "hip_abd": (0, 20), "pitch": (-8, 12)}
_HAND_TO_MOUTH = {"a_sh_flex": (25, 55), "a_sh_abd": (5, 30), "a_elbow": (120, 145), "a_sh_twist": (20, 60)}
_HAND_TO_EAR = {"a_sh_flex": (10, 40), "a_sh_abd": (30, 60), "a_elbow": (130, 148), "a_sh_twist": (40, 80)}
_GESTURE = {"sh_flex": (0, 60), "sh_abd": (5, 45), "elbow": (40, 110), "sh_twist": (0, 70)}
_POINT = {"a_sh_flex": (60, 110), "a_sh_abd": (10, 60), "a_elbow": (0, 25)}
_REACH_DOWN = {"spine_flex": (25, 55), "thorax_flex": (5, 25), "pitch": (10, 35), "a_sh_flex": (40, 100),
               "a_elbow": (0, 40), "knee": (5, 35), "leg_flex": (0, 20)}  # fmt: skip
_CAMERA_POSE = {"sh_flex": (60, 95), "sh_abd": (10, 40), "elbow": (100, 135), "sh_twist": (30, 70),
                "neck_flex": (0, 20)}  # fmt: skip
# Poses found in real motion capture (CMU) that the Human3.6M actions rarely show; "_hold" sets
# the seconds to the next keyframe (a kick is quick).
_ARMS_OVERHEAD = {"sh_flex": (125, 170), "sh_abd": (10, 70), "elbow": (0, 45), "sh_twist": (0, 60),
                  "neck_flex": (-30, 5)}  # fmt: skip
_CROUCH = {"leg_flex": (95, 125), "knee": (110, 148), "pitch": (15, 40), "spine_flex": (10, 45),
           "hip_abd": (5, 30), "sh_flex": (20, 80), "elbow": (20, 100)}  # fmt: skip
_BEND_OVER = {"spine_flex": (45, 60), "thorax_flex": (10, 30), "pitch": (28, 45), "knee": (0, 25),
              "leg_flex": (-5, 15), "sh_flex": (40, 110), "elbow": (0, 40), "neck_flex": (-35, 10)}  # fmt: skip
_KICK = {"a_leg_flex": (50, 110), "a_knee": (0, 60), "o_knee": (5, 30), "pitch": (-10, 5), "spine_flex": (-15, 5),
         "sh_abd": (20, 70), "elbow": (30, 100), "_hold": (0.3, 0.6)}  # fmt: skip
_STEP_LUNGE = {"a_leg_flex": (40, 80), "a_knee": (40, 90), "o_leg_flex": (-25, 0), "o_knee": (5, 40),
               "pitch": (5, 25), "sh_flex": (-20, 60), "elbow": (20, 100)}  # fmt: skip


@dataclass(frozen=True)
class _Action:
    components: tuple[tuple[float, dict], ...]  # (probability weight, overrides)
    speed: tuple[float, float] = (0.0, 0.0)  # walking speed keyframes, m/s
    stop_prob: float = 0.0  # probability that a speed keyframe is a stop
    turn: float = 0.0  # max yaw change per keyframe when standing, degrees
    wave: bool = False  # 2 Hz forearm oscillation on the active arm (greeting)
    hold: tuple[float, float] = (0.5, 1.5)  # seconds between keyframes
    run_prob: float = 0.0  # probability that a speed keyframe is a run
    run_speed: tuple[float, float] = (2.0, 3.4)  # running speed keyframes, m/s


_ACTIONS: dict[str, _Action] = {
    "Directions": _Action(((0.4, _POINT), (0.25, _GESTURE), (0.15, _ARMS_OVERHEAD), (0.1, _BEND_OVER), (0.1, {})),
                          speed=(0.3, 0.8), stop_prob=0.6, turn=90),
    "Discussion": _Action(((0.6, _GESTURE), (0.25, {"spine_lat": (-15, 15), "hip_abd": (0, 20)}),
                           (0.15, _STEP_LUNGE)), turn=45),
    "Eating": _Action(((0.5, {**_SEATED, **_HAND_TO_MOUTH}), (0.5, {**_SEATED, "sh_flex": (15, 45),
                       "elbow": (70, 110), "spine_flex": (5, 25)})), turn=10),
    "Greeting": _Action(((0.5, {"a_sh_abd": (80, 150), "a_sh_flex": (10, 60), "a_elbow": (60, 120),
                                "a_sh_twist": (40, 80)}), (0.3, _GESTURE), (0.2, _ARMS_OVERHEAD)),
                        speed=(0.4, 1.0), stop_prob=0.6, turn=60, wave=True),
    "Phoning": _Action(((0.7, _HAND_TO_EAR), (0.3, {**_HAND_TO_EAR, "o_sh_flex": (0, 40), "o_elbow": (40, 100)})),
                       speed=(0.3, 0.8), stop_prob=0.5, turn=60),
    "Photo": _Action(((0.6, _CAMERA_POSE), (0.25, {**_CAMERA_POSE, "knee": (30, 80), "leg_flex": (20, 60),
                      "pitch": (10, 30)}), (0.15, _GESTURE), (0.2, {**_CROUCH, **_CAMERA_POSE})), turn=70),
    "Posing": _Action(((0.4, {"sh_abd": (30, 150), "sh_flex": (-20, 120), "elbow": (0, 120),
                               "spine_lat": (-20, 20)}),
                       (0.3, {"a_hip_abd": (15, 40), "a_leg_flex": (10, 60), "a_knee": (10, 70),
                              "sh_abd": (20, 90)}),
                       (0.3, {"spine_flex": (-15, 30), "neck_flex": (-30, 40), "a_sh_flex": (90, 165)}),
                       (0.2, _ARMS_OVERHEAD), (0.2, _KICK), (0.15, _CROUCH), (0.15, _STEP_LUNGE)), turn=45),
    "Purchases": _Action(((0.4, _REACH_DOWN), (0.25, _BEND_OVER), (0.15, _CROUCH), (0.2, _POINT)),
                         speed=(0.3, 0.9), stop_prob=0.5, turn=60),
    "Sitting": _Action(((0.5, {**_SEATED, **_GESTURE, "spine_flex": (-10, 30)}),
                        (0.3, {**_SEATED, "spine_flex": (20, 45), "sh_flex": (10, 50), "elbow": (60, 120)}),
                        (0.2, {**_SEATED, "a_leg_flex": (60, 90), "a_knee": (30, 70), "neck_flex": (-20, 30)})),
                       turn=15),
    "SittingDown": _Action(((0.35, {"leg_flex": (100, 120), "knee": (110, 145), "pitch": (15, 40),
                                     "spine_flex": (20, 50), "sh_flex": (20, 70), "elbow": (20, 90)}),
                            (0.35, {**_SEATED, "spine_flex": (0, 40)}),
                            (0.3, {})), turn=30, hold=(0.8, 2.0)),
    "Smoking": _Action(((0.5, _HAND_TO_MOUTH), (0.3, {"a_sh_flex": (10, 40), "a_elbow": (70, 110)}),
                        (0.2, {})), speed=(0.2, 0.6), stop_prob=0.7, turn=45),
    "Waiting": _Action(((0.4, {}), (0.3, {"spine_flex": (30, 60), "thorax_flex": (10, 30), "pitch": (15, 45),
                                          "sh_flex": (20, 90), "elbow": (0, 30), "knee": (0, 25)}),
                        (0.3, {"a_hip_abd": (5, 25), "a_knee": (10, 40), "spine_lat": (-15, 15),
                               "sh_abd": (0, 15), "elbow": (70, 120)}),
                        (0.15, _ARMS_OVERHEAD), (0.15, _CROUCH)), turn=120),
    "WalkDog": _Action(((1.0, {"pitch": (5, 15), "a_sh_flex": (25, 55), "a_elbow": (10, 40),
                               "neck_flex": (10, 35)}),), speed=(0.6, 1.0), run_prob=0.15, run_speed=(1.8, 2.8)),
    "Walking": _Action(((1.0, {"sh_abd": (5, 15), "elbow": (10, 30), "neck_flex": (-5, 15)}),), speed=(1.0, 1.5),
                       run_prob=0.3),
    "WalkTogether": _Action(((1.0, {"neck_lat": (-25, 25), "spine_twist": (-20, 20), "elbow": (10, 40)}),),
                            speed=(0.8, 1.1), run_prob=0.15, run_speed=(1.8, 3.0)),
}  # fmt: skip


@dataclass(frozen=True)
class SyntheticConfig:
    """What to generate. Sizes default to the demo set (a few seconds on one core).

    ``frames`` is the mean sequence length (each sequence is 75-125 % of it); ``noise_px`` and
    ``drop_prob`` corrupt the 2D keypoints (0 = exact projections, the "ground-truth 2D").
    """

    seed: int = 0
    subjects: tuple[str, ...] = H36M_SUBJECTS
    actions: tuple[str, ...] = H36M_ACTIONS
    subactions: int = 2
    frames: int = 300
    noise_px: float = 0.0
    drop_prob: float = 0.0

    def __post_init__(self) -> None:
        for s in self.subjects:
            if s not in H36M_SUBJECTS:
                raise ValueError(f"SyntheticConfig.subjects: {s!r} has no camera calibration; "
                                 f"expected a subset of {H36M_SUBJECTS}")
        for a in self.actions:
            if a not in _ACTIONS:
                raise ValueError(f"SyntheticConfig.actions: unknown action {a!r}; expected a subset of {H36M_ACTIONS}")
        if self.subactions < 1:
            raise ValueError(f"SyntheticConfig.subactions: expected >= 1, got {self.subactions}")
        if self.frames < 8:
            raise ValueError(f"SyntheticConfig.frames: expected >= 8, got {self.frames}")
        if self.noise_px < 0 or not 0 <= self.drop_prob < 1:
            raise ValueError(f"SyntheticConfig: expected noise_px >= 0 and 0 <= drop_prob < 1, "
                             f"got noise_px={self.noise_px}, drop_prob={self.drop_prob}")


@dataclass
class SyntheticData:
    """Generated data in the VideoPose3D layout (see the module docstring)."""

    positions_3d: dict[str, dict[str, np.ndarray]]
    positions_2d: dict[str, dict[str, list[np.ndarray]]]
    metadata: dict = field(default_factory=lambda: {
        "layout_name": "h36m",
        "num_joints": 17,
        "keypoints_symmetry": [list(H36M_JOINTS_LEFT), list(H36M_JOINTS_RIGHT)],
    })

    @property
    def num_frames(self) -> int:
        return sum(a.shape[0] for acts in self.positions_3d.values() for a in acts.values())


def generate_synthetic(config: SyntheticConfig | None = None) -> SyntheticData:
    """Generate the synthetic set described by ``config`` (defaults: the demo set)."""
    cfg = config or SyntheticConfig()
    positions_3d: dict[str, dict[str, np.ndarray]] = {}
    positions_2d: dict[str, dict[str, list[np.ndarray]]] = {}
    for subject in cfg.subjects:
        subj_num = int(subject[1:])
        offsets = _rest_offsets(subject_bone_lengths(subject, cfg.seed))  # (17, 3) metres
        cams = h36m_cameras(subject)
        positions_3d[subject], positions_2d[subject] = {}, {}
        for action in cfg.actions:
            for sub in range(cfg.subactions):
                name = action if sub == 0 else f"{action} {sub}"
                rng = np.random.default_rng(
                    np.random.SeedSequence([cfg.seed, subj_num, H36M_ACTIONS.index(action), sub])
                )
                n = max(8, int(round(cfg.frames * rng.uniform(0.75, 1.25))))
                world = _animate(_ACTIONS[action], offsets, n, rng)  # (T, 17, 3)
                positions_3d[subject][name] = _to_32_joints(world).astype(np.float32)
                views = []
                for cam in cams:
                    px = _project_pixels(world, cam)  # (T, 17, 2)
                    if cfg.noise_px > 0 or cfg.drop_prob > 0:
                        px = _corrupt(px, cfg.noise_px, cfg.drop_prob, rng)
                    views.append(px.astype(np.float32))
                positions_2d[subject][name] = views
    return SyntheticData(positions_3d, positions_2d)


def write_synthetic(data: SyntheticData, directory: str | Path, keypoints: str = "gt") -> tuple[Path, Path]:
    """Write ``data_3d_h36m.npz`` and ``data_2d_h36m_<keypoints>.npz`` into ``directory``.

    The dictionaries are stored as pickled object arrays, exactly as VideoPose3D's
    ``prepare_data_h36m.py`` writes them. Returns the two paths.
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    p3 = directory / "data_3d_h36m.npz"
    p2 = directory / f"data_2d_h36m_{keypoints}.npz"
    np.savez_compressed(p3, positions_3d=_object(data.positions_3d))
    np.savez_compressed(p2, positions_2d=_object(data.positions_2d), metadata=_object(data.metadata))
    return p3, p2


# Leg-length scale of each subject against the template (Human3.6M S1): the training subjects
# span small to tall adults (0.85x-1.15x), the held-out ones sit inside that range.
_SUBJECT_SCALE = {"S1": 1.0, "S5": 0.85, "S6": 1.15, "S7": 0.92, "S8": 1.08, "S9": 0.95, "S11": 1.05}


def subject_bone_lengths(subject: str, seed: int = 0) -> dict[str, float]:
    """Bone lengths (metres) of a synthetic subject.

    template (:data:`_BONE_MM`, Human3.6M S1) x the subject's size (legs 0.85x-1.15x, fixed per
    subject: :data:`_SUBJECT_SCALE`) x per-bone variation: +-4 % for the limbs, trunk and head,
    0.70-1.05 for the hip width (the CMU skeletons' hips are 0.5-0.75x as wide as Human3.6M's)
    and 0.90-1.10 for the shoulder width. Left and right share lengths. Deterministic from
    (seed, subject).
    """
    if subject not in _SUBJECT_SCALE:
        raise ValueError(f"subject_bone_lengths: subject {subject!r} unknown; expected one of {tuple(_SUBJECT_SCALE)}")
    rng = np.random.default_rng(np.random.SeedSequence([seed, 1000 + int(subject[1:])]))
    scale = _SUBJECT_SCALE[subject]
    spread = {"hip": (0.70, 1.05), "clavicle": (0.90, 1.10)}
    return {k: v / 1000.0 * scale * rng.uniform(*spread.get(k, (0.96, 1.04))) for k, v in _BONE_MM.items()}


# ============================================================================================
# motion
# ============================================================================================
def _animate(action: _Action, offsets: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    """World positions (n, 17, 3) in metres of one sequence of ``action``."""
    t = np.arange(n) / FPS  # (n,) seconds
    ang = _keyframe_angles(action, n, rng)  # name -> (n,) degrees
    for name in ANGLE_NAMES:  # slow sway so that no keyframe pose is ever perfectly still
        amp = 1.5 if name in _CENTRAL else 3.0
        ang[name] = ang[name] + _sway(t, amp, rng)

    speed = _speed_track(action, n, rng)  # (n,) m/s
    root_xy, heading = _root_path(speed, rng)  # (n, 2), (n,) radians
    if action.speed[1] > 0:
        _add_gait(ang, speed, rng)
    if action.wave:  # a raised arm waves: 2 Hz forearm oscillation, faded in with the abduction
        for side in ("l", "r"):
            raised = np.clip((ang[f"{side}_sh_abd"] - 50.0) / 30.0, 0.0, 1.0)
            ang[f"{side}_elbow"] += raised * 25.0 * np.sin(2 * np.pi * 2.0 * t + rng.uniform(0, 2 * np.pi))
    turn = _keyframe_track(n, rng, lambda r: r.uniform(-action.turn, action.turn), action.hold, cumulative=True)
    yaw = heading - np.pi / 2 + np.deg2rad(turn)  # body forward is +y: yaw = heading - 90 deg

    for name in ANGLE_NAMES:
        base = name[2:] if name[:2] in ("l_", "r_") else name
        lo, hi = JOINT_LIMITS[base]
        ang[name] = np.clip(ang[name], lo, hi)
    rad = {k: np.deg2rad(v) for k, v in ang.items() if k in ANGLE_NAMES}

    local = _local_rotations(rad, yaw)  # (17, n, 3, 3)
    pos = _forward_kinematics(local, offsets)  # (n, 17, 3), root at the origin
    pos[..., :2] += root_xy[:, None, :]
    lowest = np.minimum(pos[:, 3, 2], pos[:, 6, 2])  # (n,) lower ankle
    pos[..., 2] += (_ANKLE_HEIGHT - lowest)[:, None]  # lower ankle on the floor
    return pos


def _keyframe_angles(action: _Action, n: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Per-angle tracks (degrees) from keyframes drawn from the action's pose components.

    Each keyframe picks a component (by weight) and an active side; the next keyframe follows
    after the component's ``"_hold"`` seconds (default: the action's ``hold``).
    """
    weights = np.array([w for w, _ in action.components], dtype=np.float64)
    keys: list[float] = []
    rows: list[dict[str, float]] = []
    t = 0.0
    while not keys or keys[-1] < n - 1:
        _, comp = action.components[rng.choice(len(weights), p=weights / weights.sum())]
        active = "l" if rng.random() < 0.5 else "r"
        ranges: dict[str, tuple[float, float]] = {}
        for name in _CENTRAL:
            ranges[name] = comp.get(name, _NEUTRAL[name])
        for base in _SIDED:
            for side in ("l", "r"):
                role = "a" if side == active else "o"
                ranges[f"{side}_{base}"] = comp.get(f"{role}_{base}", comp.get(base, _NEUTRAL[base]))
        rows.append({name: rng.uniform(lo, hi) for name, (lo, hi) in ranges.items()})
        keys.append(t)
        t += rng.uniform(*comp.get("_hold", action.hold)) * FPS
    k = np.asarray(keys)
    return {name: _interpolate(k, np.array([r[name] for r in rows]), n) for name in ANGLE_NAMES}


def _key_times(n: int, rng: np.random.Generator, hold: tuple[float, float]) -> np.ndarray:
    """Increasing keyframe frame indices covering [0, n - 1] (the first at 0, the last >= n - 1)."""
    keys = [0.0]
    while keys[-1] < n - 1:
        keys.append(keys[-1] + rng.uniform(*hold) * FPS)
    return np.asarray(keys)


def _interpolate(keys: np.ndarray, values: np.ndarray, n: int) -> np.ndarray:
    """Cosine-eased blend between consecutive keyframes, evaluated at frames 0..n-1."""
    f = np.arange(n, dtype=np.float64)
    seg = np.clip(np.searchsorted(keys, f, side="right") - 1, 0, len(keys) - 2)  # (n,)
    u = (f - keys[seg]) / (keys[seg + 1] - keys[seg])  # (n,) in [0, 1)
    w = 0.5 - 0.5 * np.cos(np.pi * u)  # ease in/out: zero velocity at the keys
    return values[seg] * (1 - w) + values[seg + 1] * w


def _keyframe_track(n: int, rng: np.random.Generator, draw, hold: tuple[float, float],
                    cumulative: bool = False) -> np.ndarray:
    """(n,) track through keyframe values ``draw(rng)``; ``cumulative``: values are increments
    (e.g. successive turns), accumulated from 0."""
    keys = _key_times(n, rng, hold)
    vals = np.array([draw(rng) for _ in keys])
    if cumulative:
        vals = np.cumsum(vals) - vals[0]
    return _interpolate(keys, vals, n)


def _sway(t: np.ndarray, amp: float, rng: np.random.Generator) -> np.ndarray:
    """Sum of two slow sinusoids (0.1-0.6 Hz) with random phases, peak about ``amp`` degrees."""
    out = np.zeros_like(t)
    for _ in range(2):
        out += 0.5 * amp * np.sin(2 * np.pi * rng.uniform(0.1, 0.6) * t + rng.uniform(0, 2 * np.pi))
    return out


def _speed_track(action: _Action, n: int, rng: np.random.Generator) -> np.ndarray:
    lo, hi = action.speed
    if hi <= 0:
        return np.zeros(n)

    def draw(r: np.random.Generator) -> float:
        u = r.random()
        if u < action.stop_prob:
            return 0.0
        if u < action.stop_prob + action.run_prob:
            return r.uniform(*action.run_speed)
        return r.uniform(lo, hi)

    return _keyframe_track(n, rng, draw, (1.0, 2.5))


def _root_path(speed: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Root ground position (n, 2) and heading (n,) steering toward way-points in [-1.0, 1.0]^2 m.

    A walker turns at up to 120 deg/s (less when slow: no turning on the spot from walking), a
    runner faster (turning radius <= 0.6 m). Whoever gets more than 1.1 m from the room centre
    along an axis heads back to a way-point near the centre, so the cameras keep the person in
    view (the Human3.6M cameras frame about 3 m x 3 m).
    """
    n = speed.shape[0]
    pos = rng.uniform(-0.8, 0.8, size=2)
    heading = rng.uniform(-np.pi, np.pi)
    target = rng.uniform(-1.0, 1.0, size=2)
    turn_rate = np.deg2rad(120.0)  # rad/s at walking speed
    dt = 1.0 / FPS
    xy = np.empty((n, 2))
    hd = np.empty(n)
    for i in range(n):
        d = target - pos
        if np.hypot(*d) < 0.4:
            target = rng.uniform(-1.0, 1.0, size=2)
        elif np.abs(pos).max() > 1.1 and np.abs(target).max() > 0.5:
            target = rng.uniform(-0.5, 0.5, size=2)
        d = target - pos
        err = (math.atan2(d[1], d[0]) - heading + np.pi) % (2 * np.pi) - np.pi
        step = turn_rate * dt * min(1.0, speed[i] / 0.5) * max(1.0, speed[i] / 1.2)
        heading += float(np.clip(err, -step, step))
        pos = pos + speed[i] * dt * np.array([math.cos(heading), math.sin(heading)])
        xy[i], hd[i] = pos, heading
    return xy, hd


def _add_gait(ang: dict[str, np.ndarray], speed: np.ndarray, rng: np.random.Generator) -> None:
    """Add the walking / running cycle (degrees) to the angle tracks; amplitude follows the speed.

    Walking: hip swing +-22 deg, knee 5-60 deg, arms swinging against the legs. Running blends
    in (``run`` = 0 at 1.6 m/s to 1 at 2.6 m/s): longer strides (cadence about 1.4 cycles/s at
    3 m/s), more hip flexion and forward lean, knee flexion up to ~130 deg in the swing, elbows
    bent ~80 deg and a larger arm swing.
    """
    run = np.clip((speed - 1.6) / 1.0, 0.0, 1.0)  # (n,)
    stride = rng.uniform(1.25, 1.5) * (1.0 + 0.6 * run)  # m per gait cycle
    phase = rng.uniform(0, 2 * np.pi) + np.cumsum(2 * np.pi * speed / stride / FPS)  # (n,)
    amp = np.clip(speed / 1.2, 0.0, 1.2)
    for side, off in (("l", 0.0), ("r", np.pi)):
        p = phase + off
        ang[f"{side}_leg_flex"] += amp * (22.0 * np.sin(p) + 4.0) + run * (12.0 * np.sin(p) + 12.0)
        ang[f"{side}_knee"] += (amp * (5.0 + 55.0 * np.maximum(0.0, np.cos(p + np.pi / 6)) ** 2)
                                + run * (15.0 + 45.0 * np.maximum(0.0, np.cos(p + np.pi / 4)) ** 2))
        ang[f"{side}_sh_flex"] += -(amp * 16.0 + run * 20.0) * np.sin(p)  # arms swing against the same-side leg
        ang[f"{side}_elbow"] += amp * (8.0 - 8.0 * np.sin(p)) + run * 60.0
    ang["spine_twist"] += amp * 6.0 * np.sin(phase)
    ang["pitch"] += amp * 3.0 + run * 8.0
    ang["spine_flex"] += run * 5.0


# ============================================================================================
# kinematics
# ============================================================================================
def _rest_offsets(lengths: dict[str, float]) -> np.ndarray:
    """Bone vectors (17, 3) in the parent's rest frame, metres (row 0 unused)."""
    out = np.zeros((17, 3))
    for j, (bone, direction) in _REST.items():
        d = np.asarray(direction)
        out[j] = d / np.linalg.norm(d) * lengths[bone]
    return out


def _rx(a):
    c, s, o, z = np.cos(a), np.sin(a), np.ones_like(a), np.zeros_like(a)
    return np.stack([np.stack([o, z, z], -1), np.stack([z, c, -s], -1), np.stack([z, s, c], -1)], -2)


def _ry(a):
    c, s, o, z = np.cos(a), np.sin(a), np.ones_like(a), np.zeros_like(a)
    return np.stack([np.stack([c, z, s], -1), np.stack([z, o, z], -1), np.stack([-s, z, c], -1)], -2)


def _rz(a):
    c, s, o, z = np.cos(a), np.sin(a), np.ones_like(a), np.zeros_like(a)
    return np.stack([np.stack([c, -s, z], -1), np.stack([s, c, z], -1), np.stack([z, z, o], -1)], -2)


def _local_rotations(r: dict[str, np.ndarray], yaw: np.ndarray) -> np.ndarray:
    """Local rotation of every joint (17, n, 3, 3) from the angle tracks (radians).

    Body frame: x = subject's right, y = forward, z = up (right-handed, a real person: see
    :func:`fastpose.skeleton.chirality`). Each joint's rotation acts on the bones of its
    children: L = R_y(abduction) R_x(flexion) R_z(twist), with signs chosen so that positive
    angles mean what :data:`JOINT_LIMITS` says, mirrored between the sides. R_x(+a) turns
    -z (down) toward +y (forward), R_y(+a) turns -z toward -x (the subject's left), R_z(+a)
    turns +y toward -x (a turn to the left). The hips compensate the pelvis tilt, so
    ``leg_flex`` is measured from the vertical. Positive ``roll`` and ``*_lat`` lean the trunk
    toward the subject's right, positive ``*_twist`` turns it to the left (the limits of these
    central angles are symmetric, so the choice of sign does not change the motion statistics).
    """
    n = yaw.shape[0]
    eye = np.broadcast_to(np.eye(3), (n, 3, 3))
    out = np.empty((17, n, 3, 3))
    out[:] = eye
    out[0] = _rz(yaw) @ _rx(-r["pitch"]) @ _ry(r["roll"])
    for side, hip, knee, sign in (("r", 1, 2, -1.0), ("l", 4, 5, 1.0)):
        # R_y(-b) swings a downward leg toward +x (the right side), R_y(+b) toward -x (left);
        # twist: positive turns the toes outward on both sides.
        out[hip] = (_ry(sign * r[f"{side}_hip_abd"]) @ _rx(r[f"{side}_leg_flex"] + r["pitch"])
                    @ _rz(-sign * r[f"{side}_hip_twist"]))
        out[knee] = _rx(-r[f"{side}_knee"])  # the shin folds backward
    out[7] = _ry(r["spine_lat"]) @ _rx(-r["spine_flex"]) @ _rz(r["spine_twist"])
    out[8] = _ry(r["thorax_lat"]) @ _rx(-r["thorax_flex"]) @ _rz(r["thorax_twist"])
    out[9] = _ry(r["neck_lat"]) @ _rx(-r["neck_flex"])
    for side, shoulder, elbow, sign in (("r", 14, 15, -1.0), ("l", 11, 12, 1.0)):
        out[shoulder] = (_ry(sign * r[f"{side}_sh_abd"]) @ _rx(r[f"{side}_sh_flex"])
                         @ _rz(-sign * r[f"{side}_sh_twist"]))
        out[elbow] = _rx(r[f"{side}_elbow"])  # the forearm folds forward
    return out


def _forward_kinematics(local: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    """Positions (n, 17, 3): G_j = G_parent L_j, p_j = p_parent + G_parent offset_j, root at 0."""
    n = local.shape[1]
    glob = np.empty_like(local)  # (17, n, 3, 3)
    pos = np.zeros((n, 17, 3))
    glob[0] = local[0]
    for j in range(1, 17):
        p = _PARENTS[j]
        pos[:, j] = pos[:, p] + glob[p] @ offsets[j]
        glob[j] = glob[p] @ local[j]
    return pos


# Joints 16 and 24 of the 32-joint layout are the shoulders' roots, at the thorax (joint 13).
_THORAX_DUPLICATES_32 = {16: 13, 24: 13}


def _to_32_joints(pos17: np.ndarray) -> np.ndarray:
    """(T, 17, 3) -> (T, 32, 3) in the motion-capture layout; removed joints copy their nearest kept ancestor."""
    kept = {j32: j17 for j17, j32 in enumerate(H36M_KEPT_FROM_32)}
    out = np.empty((pos17.shape[0], 32, 3), dtype=pos17.dtype)
    for j in range(32):
        a = _THORAX_DUPLICATES_32.get(j, j)
        while a not in kept:
            a = H36M_PARENTS_32[a]
        out[:, j] = pos17[:, kept[a]]
    return out


# ============================================================================================
# cameras
# ============================================================================================
def _project_pixels(world: np.ndarray, cam) -> np.ndarray:
    """World points (T, 17, 3) -> distorted pixel coordinates (T, 17, 2) through ``cam``."""
    from ..ops import project_to_2d  # the public op (any backend) carries the camera model

    pts = torch.from_numpy(cam.world_to_camera(world))  # (T, 17, 3) float64
    intr = torch.from_numpy(cam.intrinsics(normalized=True).astype(np.float64))  # (9,)
    uv = project_to_2d(pts, intr).numpy()  # (T, 17, 2) normalised screen coordinates
    return image_coordinates(uv, cam.res_w, cam.res_h)


def _corrupt(px: np.ndarray, noise_px: float, drop_prob: float, rng: np.random.Generator) -> np.ndarray:
    """Detector-like corruption of pixel keypoints (T, J, 2): jitter + drifting bias + frozen drops."""
    out = px.copy()
    T, J, _ = out.shape
    if noise_px > 0:
        out += rng.normal(0.0, noise_px, size=out.shape)  # per-frame jitter
        t = np.arange(T)[:, None, None]
        f = rng.uniform(0.05, 0.3, size=(1, J, 2)) / FPS
        out += 0.5 * noise_px * np.sin(2 * np.pi * f * t + rng.uniform(0, 2 * np.pi, size=(1, J, 2)))
    if drop_prob > 0:
        starts = np.argwhere(rng.random((T, J)) < drop_prob)  # (k, 2) frame, joint
        for t0, j in starts:
            if t0 == 0:
                continue
            t1 = min(T, t0 + int(rng.integers(3, 16)))
            out[t0:t1, j] = out[t0 - 1, j]  # the detector lost the joint: it stays where it was
    return out


def _object(value) -> np.ndarray:
    arr = np.empty((), dtype=object)
    arr[()] = value
    return arr
