"""Per-action evaluation in the Human3.6M protocols, as tables in the VideoPose3D layout.

Metrics (millimetres):

=========  ==============================================================================
``mpjpe``  Protocol #1: mean per-joint position error
``p_mpjpe`` Protocol #2: MPJPE after the best similarity transform (Procrustes) per pose
``n_mpjpe`` Protocol #3: MPJPE after the best scale per pose
``mpjve``  mean per-joint velocity error (frame-to-frame differences)
=========  ==============================================================================

Two protocols (``protocol=`` of :class:`ActionAccumulator` and :func:`evaluate_sequences`):

``"videopose3d"`` (the default)
    VideoPose3D's ``run.py`` bookkeeping exactly, which the SPGNet and VideoPose3D tables use:
    the ground truth's root joint is moved to the origin (``gt - gt[root]``), the prediction is
    compared **as the model returns it** (its root is kept: a lifter trained on root-relative
    targets is charged for a root that drifts from 0). Per video ``v`` of ``T_v`` frames::

        MPJPE_v, P-MPJPE_v, N-MPJPE_v = mean over its T_v frames of the per-frame errors
        MPJVE_v = mean over its T_v - 1 frame pairs of |d(pred)/dt - d(gt)/dt|

    and within an action every video is weighted by ``T_v`` (``N += T``, ``sum += T * err``;
    for MPJVE too, although it averages over ``T_v - 1`` pairs; a video of one frame has no
    velocity and is left out of MPJVE rather than making it NaN).

``"root-aligned"``
    Both roots subtracted (``pred - pred[root]``, ``gt - gt[root]``), as MotionBERT-style papers
    report: a noisy predicted root then moves every joint instead of only itself. Same weights.
    Tables, Markdown and JSON say which protocol made them.

Within an action the errors are frame-weighted (all frames of all sequences, cameras and
sub-actions of that action); the summary is the *unweighted* mean over actions, as in
VideoPose3D and the papers' tables. Actions are grouped by :func:`fastpose.skeleton.canonical_action`
(``"Walking 1"`` -> ``"Walking"``).

Breakdowns in the report: per joint (MPJPE of each joint: frame-weighted within an action,
unweighted mean over actions, so the mean over joints equals the table's MPJPE average) and per
sequence (one row per (subject, sequence name, camera), frame-weighted over its frames).

Model-agnostic: :func:`evaluate_sequences` takes any ``predict(sequence) -> (T, J, 3)``, and
:class:`ActionAccumulator` any stream of (action, prediction, ground truth).
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from . import losses
from .skeleton import H36M_ACTIONS, H36M_JOINT_NAMES, canonical_action

__all__ = ["METRICS", "PROTOCOLS", "ActionAccumulator", "EvaluationReport", "evaluate_sequences"]

METRICS: tuple[str, ...] = ("mpjpe", "p_mpjpe", "n_mpjpe", "mpjve")
#: protocol name -> one-line description printed with every table
PROTOCOLS: dict[str, str] = {
    "videopose3d": "VideoPose3D protocol: ground-truth root zeroed, predicted root kept",
    "root-aligned": "root-aligned protocol: predicted and ground-truth roots both subtracted",
}
_ROW_LABELS = {
    "mpjpe": "Protocol #1 MPJPE",
    "p_mpjpe": "Protocol #2 P-MPJPE",
    "n_mpjpe": "Protocol #3 N-MPJPE",
    "mpjve": "MPJVE",
}
# Column headers of the VideoPose3D paper's tables.
_SHORT = {
    "Directions": "Dir.", "Discussion": "Disc.", "Eating": "Eat", "Greeting": "Greet", "Phoning": "Phone",
    "Photo": "Photo", "Posing": "Pose", "Purchases": "Purch.", "Sitting": "Sit", "SittingDown": "SitD.",
    "Smoking": "Smoke", "Waiting": "Wait", "WalkDog": "WalkD.", "Walking": "Walk", "WalkTogether": "WalkT.",
}  # fmt: skip


def _check_metrics(fn: str, metrics: Iterable[str]) -> tuple[str, ...]:
    """A non-empty subset of METRICS, returned in METRICS order."""
    if isinstance(metrics, str):
        metrics = [metrics]
    chosen = list(metrics)
    bad = [m for m in chosen if m not in METRICS]
    if bad or not chosen:
        raise ValueError(f"{fn}: argument 'metrics' must be a non-empty subset of {METRICS}, received {chosen!r}")
    return tuple(m for m in METRICS if m in chosen)


def _check_protocol(fn: str, protocol: str) -> str:
    if protocol not in PROTOCOLS:
        raise ValueError(f"{fn}: argument 'protocol' must be one of {tuple(PROTOCOLS)}, received {protocol!r}")
    return protocol


def _format_grid(rows: list[list[str]], text_columns: int = 1) -> list[str]:
    """Left-align the first ``text_columns`` columns, right-align the (numeric) others; two
    spaces between columns."""
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return ["  ".join(c.ljust(w) if i < text_columns else c.rjust(w)
                      for i, (c, w) in enumerate(zip(r, widths, strict=True))) for r in rows]


def _markdown_grid(rows: list[list[str]], text_columns: int = 1) -> list[str]:
    n = len(rows[0])
    out = ["| " + " | ".join(rows[0]) + " |", "|" + "---|" * text_columns + "---:|" * (n - text_columns)]
    return out + ["| " + " | ".join(r) + " |" for r in rows[1:]]


@dataclass
class EvaluationReport:
    """Per-action errors in mm (``per_action[action][metric]``) and frame counts.

    ``per_joint``: joint name -> MPJPE in mm (frame-weighted within an action, unweighted mean
    over actions). ``per_sequence``: one dict per (subject, sequence, camera) with the keys
    ``subject``, ``sequence``, ``camera``, ``action``, ``frames`` and the metrics in mm.
    ``metrics``: the metrics computed (a subset of :data:`METRICS`, in that order);
    ``protocol``: a key of :data:`PROTOCOLS`.
    """

    per_action: dict[str, dict[str, float]]
    frames: dict[str, int]
    meta: dict = field(default_factory=dict)
    per_joint: dict[str, float] = field(default_factory=dict)
    per_sequence: list[dict] = field(default_factory=list)
    metrics: tuple[str, ...] = METRICS
    protocol: str = "videopose3d"

    @property
    def actions(self) -> list[str]:
        """The groups, the Human3.6M actions first in the paper's column order, then the others sorted."""
        known = [a for a in H36M_ACTIONS if a in self.per_action]
        return known + sorted(a for a in self.per_action if a not in H36M_ACTIONS)

    @property
    def mean(self) -> dict[str, float]:
        """Unweighted mean over actions of each metric (mm)."""
        return {m: float(np.mean([self.per_action[a][m] for a in self.actions])) if self.actions else float("nan")
                for m in self.metrics}

    @property
    def transposed(self) -> bool:
        """True when the groups are not all Human3.6M actions (then :meth:`table` prints one row
        per group: a column per group only reads well for the 15 short action names)."""
        return any(a not in H36M_ACTIONS for a in self.per_action)

    @property
    def protocol_note(self) -> str:
        return PROTOCOLS.get(self.protocol, self.protocol)

    def to_dict(self) -> dict:
        return {
            "units": "mm",
            "protocol": self.protocol,
            "protocol_description": self.protocol_note,
            "metrics": list(self.metrics),
            "mean_over_actions": self.mean,
            "per_action": {a: {**self.per_action[a], "frames": self.frames[a]} for a in self.actions},
            "per_joint": dict(self.per_joint),
            "per_sequence": [dict(s) for s in self.per_sequence],
            "meta": self.meta,
        }

    # ---------------------------------------------------------------------------- tables
    def _rows(self) -> list[list[str]]:
        """Header row then body rows of the main table (wide or transposed layout)."""
        mean = self.mean
        if self.transposed:
            rows = [["Action", *(_ROW_LABELS[m] for m in self.metrics), "Frames"]]
            rows += [[a, *(f"{self.per_action[a][m]:.1f}" for m in self.metrics), str(self.frames[a])]
                     for a in self.actions]
            rows.append(["Avg", *(f"{mean[m]:.1f}" for m in self.metrics), str(sum(self.frames.values()))])
            return rows
        rows = [["", *(_SHORT.get(a, a) for a in self.actions), "Avg"]]
        rows += [[_ROW_LABELS[m], *(f"{self.per_action[a][m]:.1f}" for a in self.actions), f"{mean[m]:.1f}"]
                 for m in self.metrics]
        return rows

    def _footer(self) -> str:
        n = sum(self.frames.values())
        return (f"Errors in mm on {n} frames ({self.protocol_note}); frame-weighted within an action, "
                f"unweighted mean over {len(self.actions)} {'groups' if self.transposed else 'actions'}.")

    def table(self) -> str:
        """Plain-text table: one row per protocol and one column per action, then the average
        (one row per group instead when :attr:`transposed`); a footer names the protocol."""
        lines = _format_grid(self._rows())
        return "\n".join([lines[0], "-" * len(lines[0]), *lines[1:], self._footer()])

    def per_joint_table(self) -> str:
        """Plain-text table of the per-joint MPJPE (mm), one row per joint."""
        if not self.per_joint:
            return "(no per-joint breakdown)"
        lines = _format_grid([["Joint", "MPJPE"], *([j, f"{e:.1f}"] for j, e in self.per_joint.items())])
        return "\n".join([lines[0], "-" * len(lines[0]), *lines[1:]])

    def per_sequence_table(self) -> str:
        """Plain-text table with one row per (subject, sequence, camera): frames and every metric (mm)."""
        if not self.per_sequence:
            return "(no per-sequence breakdown)"
        lines = _format_grid(self._sequence_rows(), text_columns=2)
        return "\n".join([lines[0], "-" * len(lines[0]), *lines[1:]])

    def _sequence_rows(self) -> list[list[str]]:
        rows = [["Subject", "Sequence", "Camera", "Frames", *(_ROW_LABELS[m] for m in self.metrics)]]
        return rows + [[str(s["subject"]), str(s["sequence"]), str(s["camera"]), str(s["frames"]),
                        *(f"{s[m]:.1f}" for m in self.metrics)] for s in self.per_sequence]

    def markdown(self) -> str:
        out = [*_markdown_grid(self._rows()), "", self._footer()]
        if self.per_joint:
            out += ["", "Per joint (MPJPE, mm):", "",
                    *_markdown_grid([["Joint", "MPJPE"], *([j, f"{e:.1f}"] for j, e in self.per_joint.items())])]
        if self.per_sequence:
            out += ["", "Per sequence (mm):", "", *_markdown_grid(self._sequence_rows(), text_columns=2)]
        return "\n".join(out) + "\n"

    def save(self, directory: str | Path, stem: str = "evaluation") -> tuple[Path, Path]:
        """Write ``<stem>.json`` and ``<stem>.md`` into ``directory``; returns the two paths.

        The JSON is standard (non-finite errors, e.g. of a diverged model, are written as null)."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        pj, pm = directory / f"{stem}.json", directory / f"{stem}.md"
        pj.write_text(json.dumps(_json_safe(self.to_dict()), indent=2, allow_nan=False) + "\n")
        pm.write_text(self.markdown())
        return pj, pm


def _json_safe(x):
    """NaN/inf (a diverged model's errors) -> None, so the file is standard JSON (null)."""
    if isinstance(x, float):
        return x if math.isfinite(x) else None
    if isinstance(x, dict):
        return {k: _json_safe(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_json_safe(v) for v in x]
    return x


class _Sums:
    """Running weighted sums of one group (an action or one sequence)."""

    def __init__(self, metrics: tuple[str, ...]) -> None:
        self.err = dict.fromkeys(metrics, 0.0)  # sum over videos of weight * mean error (metres)
        self.weight = dict.fromkeys(metrics, 0)  # sum of the weights (frames)
        self.joint: np.ndarray | None = None  # (J,) sum over frames of each joint's error
        self.frames = 0

    def means_mm(self) -> dict[str, float]:
        return {m: 1000.0 * s / self.weight[m] if self.weight[m] else float("nan") for m, s in self.err.items()}


class ActionAccumulator:
    """Sums of per-frame errors per action; :meth:`report` turns them into an :class:`EvaluationReport`.

    ``root``: index of the root joint; with ``protocol="videopose3d"`` (the default) it is
    subtracted from the ground truth only, with ``"root-aligned"`` from both poses; None compares
    the poses as given. ``joints``: evaluate only these joints (e.g. drop a model's extra joint),
    after the root handling. ``metrics``: which of :data:`METRICS` to compute (e.g. leave out
    ``"mpjve"`` when consecutive samples are unrelated frames). ``joint_names``: names of the
    evaluated joints for the per-joint breakdown (default: the Human3.6M names of joints 0-16,
    ``"joint <i>"`` beyond).
    """

    def __init__(
        self,
        root: int | None = 0,
        joints: Iterable[int] | None = None,
        *,
        protocol: str = "videopose3d",
        metrics: Iterable[str] = METRICS,
        joint_names: Sequence[str] | None = None,
    ) -> None:
        if root is not None and (isinstance(root, bool) or not isinstance(root, int) or root < 0):
            raise ValueError(f"ActionAccumulator: argument 'root' must be a joint index >= 0 or None, received {root!r}")
        self.root = root
        self.joints = None if joints is None else [int(j) for j in joints]
        self.protocol = _check_protocol("ActionAccumulator", protocol)
        self.metrics = _check_metrics("ActionAccumulator", metrics)
        self.joint_names = None if joint_names is None else [str(n) for n in joint_names]
        self._groups: dict[str, _Sums] = {}
        self._sequences: dict[tuple, tuple[str, _Sums]] = {}  # key -> (action group, sums)
        self._num_joints: int | None = None

    def add(self, action: str, predicted, target, *, sequence: tuple[str, str, object] | None = None) -> None:
        """predicted, target (T, J, 3) in metres (arrays or tensors) of one video.

        ``sequence``: (subject, sequence name, camera) of this video for the per-sequence
        breakdown (None: not listed there). Videos added under one key are pooled.
        """
        p = predicted if isinstance(predicted, torch.Tensor) else torch.as_tensor(np.asarray(predicted))
        t = target if isinstance(target, torch.Tensor) else torch.as_tensor(np.asarray(target))
        p, t = p.detach().to("cpu", torch.float64), t.detach().to("cpu", torch.float64)
        if p.shape != t.shape or p.dim() != 3 or p.shape[-1] != 3:
            raise ValueError(f"ActionAccumulator.add: predicted and target must both be (T, J, 3), "
                             f"got {tuple(p.shape)} and {tuple(t.shape)}")
        J = p.shape[1]
        if self.root is not None and self.root >= J:
            raise ValueError(f"ActionAccumulator.add: root joint {self.root} does not exist in poses of {J} joints")
        if self.joints is not None and any(not 0 <= j < J for j in self.joints):
            raise ValueError(f"ActionAccumulator.add: argument 'joints' must index the {J} joints, "
                             f"received {self.joints}")
        if self.root is not None:
            r = self.root
            t = t - t[:, r : r + 1]  # VideoPose3D: inputs_3d[:, :, 0] = 0 on root-relative data
            if self.protocol == "root-aligned":
                p = p - p[:, r : r + 1]
        if self.joints is not None:
            p, t = p[:, self.joints], t[:, self.joints]
        if self._num_joints is None:
            if self.joint_names is not None and len(self.joint_names) != p.shape[1]:
                raise ValueError(f"ActionAccumulator: argument 'joint_names' must name the {p.shape[1]} "
                                 f"evaluated joints, received {len(self.joint_names)} names")
            self._num_joints = p.shape[1]
        elif p.shape[1] != self._num_joints:
            raise ValueError(f"ActionAccumulator.add: every video must have the same evaluated joints; "
                             f"expected {self._num_joints}, received {p.shape[1]}")
        T = p.shape[0]
        per_joint = torch.linalg.vector_norm(p - t, dim=-1)  # (T, J) |p_j - t_j|_2 per frame and joint
        video = {}  # metric -> (mean error over the video, weight)
        if "mpjpe" in self.metrics:
            video["mpjpe"] = (float(per_joint.mean()) if T else 0.0, T)
        if "p_mpjpe" in self.metrics:
            video["p_mpjpe"] = (float(losses.p_mpjpe(p, t, reduction="none").mean()) if T else 0.0, T)
        if "n_mpjpe" in self.metrics:
            video["n_mpjpe"] = (float(losses.n_mpjpe(p, t, reduction="none").mean()) if T else 0.0, T)
        if "mpjve" in self.metrics:
            # VideoPose3D: T * mean over the T - 1 pairs; no pair, no velocity (weight 0, not NaN)
            ok = T >= 2
            video["mpjve"] = (float(losses.mean_velocity_error(p, t, dim=0)) if ok else 0.0, T if ok else 0)
        joint_sum = per_joint.sum(dim=0).numpy()  # (J,)
        targets = [self._groups.setdefault(canonical_action(action), _Sums(self.metrics))]
        if sequence is not None:
            key = tuple(sequence)
            group = canonical_action(action)
            seen = self._sequences.setdefault(key, (group, _Sums(self.metrics)))
            targets.append(seen[1])
        for s in targets:
            for m, (err, w) in video.items():
                if w:
                    s.err[m] += w * err
                    s.weight[m] += w
            s.joint = joint_sum.copy() if s.joint is None else s.joint + joint_sum
            s.frames += T

    def _joint_names(self) -> list[str]:
        if self.joint_names is not None:
            return list(self.joint_names)
        idx = self.joints if self.joints is not None else range(self._num_joints or 0)
        return [H36M_JOINT_NAMES[j] if j < len(H36M_JOINT_NAMES) else f"joint {j}" for j in idx]

    def report(self, meta: dict | None = None) -> EvaluationReport:
        if not self._groups:
            raise ValueError("ActionAccumulator.report: nothing was added")
        per_action = {a: s.means_mm() for a, s in self._groups.items()}
        frames = {a: s.frames for a, s in self._groups.items()}
        # per joint: frame-weighted within an action, unweighted mean over actions (like the table)
        per_group = [1000.0 * s.joint / s.frames for s in self._groups.values() if s.frames]
        joint_mm = np.mean(per_group, axis=0) if per_group else np.full(self._num_joints or 0, math.nan)
        per_joint = {n: float(e) for n, e in zip(self._joint_names(), joint_mm, strict=True)}
        per_sequence = []
        for key, (group, s) in self._sequences.items():
            subject, name, camera = (list(key) + ["", "", ""])[:3]
            per_sequence.append({"subject": subject, "sequence": name, "camera": camera, "action": group,
                                 "frames": s.frames, **s.means_mm()})
        return EvaluationReport(per_action, frames, dict(meta or {}), per_joint=per_joint,
                                per_sequence=per_sequence, metrics=self.metrics, protocol=self.protocol)


def _sequence_key(seq) -> tuple[str, str, object]:
    """(subject, name or action, camera) of a sequence object (missing attributes read as "")."""
    name = getattr(seq, "name", "") or seq.action
    camera = getattr(seq, "camera_index", getattr(seq, "camera_name", ""))
    if isinstance(camera, (np.integer,)):
        camera = int(camera)
    return (str(getattr(seq, "subject", "")), str(name), camera)


def evaluate_sequences(
    sequences: Iterable,
    predict: Callable[[object], object],
    *,
    root: int | None = 0,
    joints: Iterable[int] | None = None,
    progress: bool = False,
    meta: dict | None = None,
    protocol: str = "videopose3d",
    metrics: Iterable[str] = METRICS,
    joint_names: Sequence[str] | None = None,
) -> EvaluationReport:
    """Evaluate ``predict(seq) -> (T, J, 3)`` (metres) on every sequence.

    Each sequence needs ``action`` and ``positions_3d`` (T, J, 3) attributes (e.g.
    :class:`fastpose.data.PoseSequence`); ``subject``, ``name`` and ``camera_index``, when
    present, key the per-sequence breakdown. ``protocol``/``metrics``/``joint_names`` as in
    :class:`ActionAccumulator` (default: VideoPose3D's protocol, all four metrics).
    """
    acc = ActionAccumulator(root=root, joints=joints, protocol=protocol, metrics=metrics, joint_names=joint_names)
    seqs = list(sequences)
    it = seqs
    if progress:
        from tqdm.auto import tqdm

        it = tqdm(seqs, desc="evaluate", dynamic_ncols=True)
    for seq in it:
        acc.add(seq.action, predict(seq), seq.positions_3d, sequence=_sequence_key(seq))
    return acc.report(meta)
