"""How close is the synthetic motion to real motion? Numbers that matter to a lifter.

Run ``python -m fastpose.data.realism`` (about half a minute on one core): the built-in synthetic
set (all seven subjects, every action) against the built-in real CMU motion
(:func:`fastpose.data.motion.builtin_motion`), both world frame, metres, Z up. Printed:

- **body**: leg length (hip -> knee -> ankle, m; 5th/50th/95th percentile over sequences) and
  bone-length ratios to the leg (thigh/shin, upper arm/forearm, hip width, shoulder width,
  trunk, neck + head), median over sequences;
- **joint angles** (degrees, 1st/50th/99th percentile over frames): knee and elbow flexion
  (180 - the angle at the joint), hip flexion (angle between the thigh and the
  thorax -> pelvis direction), shoulder elevation (upper arm against the thorax -> pelvis
  direction; 180 = arm overhead), trunk pitch (pelvis -> thorax against the vertical),
  pelvis height over the lower ankle relative to the leg length (crouching, sitting);
- **speeds** (m/s, 50th/95th/99th percentile): horizontal pelvis speed, wrist and ankle speed
  relative to the pelvis;
- **pose diversity**: root-relative poses turned to face +y (hips along x), nearest neighbour
  by Euclidean distance, reported as the MPJPE (mm) to it: real -> synthetic (how well the
  synthetic poses cover real ones: large = real poses the generator never makes) and
  synthetic -> real, median and 90th percentile over a fixed random sample.

:func:`motion_statistics` and :func:`coverage` return the numbers for any two sets.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import torch

from ..skeleton import H36M_KEPT_FROM_32

__all__ = ["compare", "coverage", "motion_statistics"]

_UP = np.array([0.0, 0.0, 1.0])


def _angle(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Angle in degrees between vectors (..., 3)."""
    cos = (u * v).sum(-1) / np.maximum(np.linalg.norm(u, axis=-1) * np.linalg.norm(v, axis=-1), 1e-12)
    return np.degrees(np.arccos(np.clip(cos, -1.0, 1.0)))


def motion_statistics(sequences: Mapping[str, np.ndarray], fps: float = 50.0) -> dict[str, np.ndarray]:
    """Per-quantity samples of ``sequences`` (name -> (T, 17, 3) metres, Z up); see the module docstring.

    Returns name -> 1-D array (per sequence for body sizes, per frame for angles and speeds).
    """
    seqs = [np.asarray(s, dtype=np.float64) for s in sequences.values()]
    p = np.concatenate(seqs)  # (N, 17, 3)

    def length(a, b, arr):
        return np.linalg.norm(arr[:, a] - arr[:, b], axis=-1)

    per_seq = {k: [] for k in ("leg", "thigh/shin", "upper arm/forearm", "hip width/leg", "shoulder width/leg",
                               "trunk/leg", "neck+head/leg")}
    for s in seqs:
        med = lambda a, b, s=s: float(np.median(length(a, b, s)))
        leg = 0.5 * (med(1, 2) + med(2, 3) + med(4, 5) + med(5, 6))
        per_seq["leg"].append(leg)
        per_seq["thigh/shin"].append((med(1, 2) + med(4, 5)) / (med(2, 3) + med(5, 6)))
        per_seq["upper arm/forearm"].append((med(11, 12) + med(14, 15)) / (med(12, 13) + med(15, 16)))
        per_seq["hip width/leg"].append(med(1, 4) / leg)
        per_seq["shoulder width/leg"].append(med(11, 14) / leg)
        per_seq["trunk/leg"].append((med(0, 7) + med(7, 8)) / leg)
        per_seq["neck+head/leg"].append((med(8, 9) + med(9, 10)) / leg)
    out = {k: np.asarray(v) for k, v in per_seq.items()}

    down = p[:, 0] - p[:, 8]  # thorax -> pelvis (trunk axis, pointing down)
    knee = np.concatenate([180 - _angle(p[:, h] - p[:, k], p[:, a] - p[:, k]) for h, k, a in ((1, 2, 3), (4, 5, 6))])
    elbow = np.concatenate([180 - _angle(p[:, s] - p[:, e], p[:, w] - p[:, e])
                            for s, e, w in ((11, 12, 13), (14, 15, 16))])
    hip = np.concatenate([_angle(down, p[:, k] - p[:, h]) for h, k in ((1, 2), (4, 5))])
    shoulder = np.concatenate([_angle(down, p[:, e] - p[:, s]) for s, e in ((11, 12), (14, 15))])
    trunk = _angle(p[:, 8] - p[:, 0], np.broadcast_to(_UP, p[:, 0].shape))
    leg_len = np.concatenate([np.full(len(s), leg) for s, leg in zip(seqs, out["leg"], strict=True)])
    pelvis_h = (p[:, 0, 2] - np.minimum(p[:, 3, 2], p[:, 6, 2])) / leg_len
    out.update({"knee flexion": knee, "elbow flexion": elbow, "hip flexion": hip, "shoulder elevation": shoulder,
                "trunk pitch": trunk, "pelvis height/leg": pelvis_h})

    speeds = {"pelvis speed (horizontal)": [], "wrist speed (rel. pelvis)": [], "ankle speed (rel. pelvis)": []}
    for s in seqs:
        if len(s) < 2:
            continue
        v = np.diff(s, axis=0) * fps  # (T-1, 17, 3) m/s
        rel = v - v[:, :1]
        speeds["pelvis speed (horizontal)"].append(np.linalg.norm(v[:, 0, :2], axis=-1))
        speeds["wrist speed (rel. pelvis)"].append(np.linalg.norm(rel[:, [13, 16]], axis=-1).ravel())
        speeds["ankle speed (rel. pelvis)"].append(np.linalg.norm(rel[:, [3, 6]], axis=-1).ravel())
    out.update({k: np.concatenate(v) for k, v in speeds.items()})
    return out


def _canonical(poses: np.ndarray) -> np.ndarray:
    """Root-relative poses (N, 17, 3) turned about Z so that l_hip - r_hip points along -x (facing +y)."""
    rel = poses - poses[:, :1]
    across = rel[:, 4, :2] - rel[:, 1, :2]  # r_hip -> l_hip, horizontal
    ang = np.arctan2(across[:, 1], across[:, 0])  # rotate this to pi (pointing -x)
    rot = np.pi - ang
    c, s = np.cos(rot)[:, None], np.sin(rot)[:, None]
    out = rel.copy()
    out[..., 0] = c * rel[..., 0] - s * rel[..., 1]
    out[..., 1] = s * rel[..., 0] + c * rel[..., 1]
    return out


def coverage(query: np.ndarray, reference: np.ndarray, chunk: int = 2048) -> np.ndarray:
    """MPJPE (mm) from every pose of ``query`` (N, 17, 3) to its nearest pose in ``reference`` (M, 17, 3).

    Both are made root-relative and turned to face +y first (:func:`_canonical`); the neighbour
    is the Euclidean nearest in the 51-D pose space.
    """
    q = torch.from_numpy(_canonical(np.asarray(query, dtype=np.float64)).reshape(len(query), -1))
    r = torch.from_numpy(_canonical(np.asarray(reference, dtype=np.float64)).reshape(len(reference), -1))
    out = []
    for i in range(0, len(q), chunk):
        idx = torch.cdist(q[i : i + chunk], r).argmin(dim=1)
        diff = (q[i : i + chunk] - r[idx]).view(-1, 17, 3)
        out.append(diff.norm(dim=-1).mean(dim=-1).numpy() * 1000)
    return np.concatenate(out)


def compare(synthetic: Mapping[str, np.ndarray], real: Mapping[str, np.ndarray], *, sample: int = 3000,
            seed: int = 0) -> str:
    """Text table of synthetic against real (see the module docstring)."""
    a, b = motion_statistics(synthetic), motion_statistics(real)
    rows = [f"{'quantity':28s} {'synthetic':>26s} {'real (CMU)':>26s}"]
    pct = {"leg": (5, 50, 95)}
    for k in a:
        ps = pct.get(k, (50,) if "/" in k else (1, 50, 99) if "speed" not in k else (50, 95, 99))
        fa = " / ".join(f"{np.percentile(a[k], q):.2f}" for q in ps)
        fb = " / ".join(f"{np.percentile(b[k], q):.2f}" for q in ps)
        rows.append(f"{k + ' (p' + ','.join(map(str, ps)) + ')':28s} {fa:>26s} {fb:>26s}")
    rng = np.random.default_rng(seed)
    sa = np.concatenate(list(synthetic.values()))
    sb = np.concatenate(list(real.values()))
    qa = sa[rng.choice(len(sa), min(sample, len(sa)), replace=False)]
    qb = sb[rng.choice(len(sb), min(sample, len(sb)), replace=False)]
    ra = sa[rng.choice(len(sa), min(6 * sample, len(sa)), replace=False)]
    rb = sb[rng.choice(len(sb), min(6 * sample, len(sb)), replace=False)]
    real_to_syn = coverage(qb, ra)
    syn_to_real = coverage(qa, rb)
    rows.append(f"{'NN MPJPE real -> synthetic':28s} {'median / p90 (mm)':>26s} "
                f"{np.median(real_to_syn):>12.1f} / {np.percentile(real_to_syn, 90):.1f}")
    rows.append(f"{'NN MPJPE synthetic -> real':28s} {'median / p90 (mm)':>26s} "
                f"{np.median(syn_to_real):>12.1f} / {np.percentile(syn_to_real, 90):.1f}")
    return "\n".join(rows)


def _main() -> None:
    from .motion import builtin_motion
    from .synthetic import SyntheticConfig, generate_synthetic

    syn = generate_synthetic(SyntheticConfig(subactions=1))
    synthetic = {f"{s}/{a}": arr[:, list(H36M_KEPT_FROM_32)] for s, acts in syn.positions_3d.items()
                 for a, arr in acts.items()}
    real = builtin_motion("all").sequences
    print(f"synthetic: {sum(len(v) for v in synthetic.values())} frames; real: "
          f"{sum(len(v) for v in real.values())} frames")
    print(compare(synthetic, real))


if __name__ == "__main__":
    _main()
