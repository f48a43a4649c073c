"""Per-action evaluation in the Human3.6M protocols, as tables in the VideoPose3D layout.

Metrics (millimetres), on root-relative poses (the root joint is subtracted from prediction
and ground truth):

=========  ==============================================================================
``mpjpe``  Protocol #1: mean per-joint position error
``p_mpjpe`` Protocol #2: MPJPE after the best similarity transform (Procrustes) per pose
``n_mpjpe`` Protocol #3: MPJPE after the best scale per pose
``mpjve``  mean per-joint velocity error (frame-to-frame differences, per frame pair)
=========  ==============================================================================

Within an action, errors are frame-weighted (the mean over all frames of all sequences,
cameras and sub-actions of that action); the summary is the *unweighted* mean over actions,
as in VideoPose3D and the papers' tables. Actions are grouped by
:func:`fastpose.skeleton.canonical_action` (``"Walking 1"`` -> ``"Walking"``).

Model-agnostic: :func:`evaluate_sequences` takes any ``predict(sequence) -> (T, J, 3)``, and
:class:`ActionAccumulator` any stream of (action, prediction, ground truth).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from . import losses
from .skeleton import H36M_ACTIONS, canonical_action

__all__ = ["METRICS", "ActionAccumulator", "EvaluationReport", "evaluate_sequences"]

METRICS: tuple[str, ...] = ("mpjpe", "p_mpjpe", "n_mpjpe", "mpjve")
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


@dataclass
class EvaluationReport:
    """Per-action errors in mm (``per_action[action][metric]``) and frame counts."""

    per_action: dict[str, dict[str, float]]
    frames: dict[str, int]
    meta: dict = field(default_factory=dict)

    @property
    def actions(self) -> list[str]:
        known = [a for a in H36M_ACTIONS if a in self.per_action]
        return known + sorted(a for a in self.per_action if a not in H36M_ACTIONS)

    @property
    def mean(self) -> dict[str, float]:
        """Unweighted mean over actions of each metric (mm)."""
        return {m: float(np.mean([self.per_action[a][m] for a in self.actions])) if self.actions else float("nan")
                for m in METRICS}

    def to_dict(self) -> dict:
        return {
            "units": "mm",
            "metrics": list(METRICS),
            "mean_over_actions": self.mean,
            "per_action": {a: {**self.per_action[a], "frames": self.frames[a]} for a in self.actions},
            "meta": self.meta,
        }

    def _rows(self) -> tuple[list[str], list[list[str]]]:
        header = ["", *(_SHORT.get(a, a) for a in self.actions), "Avg"]
        rows = []
        for m in METRICS:
            rows.append([_ROW_LABELS[m], *(f"{self.per_action[a][m]:.1f}" for a in self.actions),
                         f"{self.mean[m]:.1f}"])
        return header, rows

    def table(self) -> str:
        """Plain-text table: one row per protocol, one column per action, then the average."""
        header, rows = self._rows()
        widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
        fmt = lambda r: "  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths, strict=True)))
        line = "-" * len(fmt(header))
        return "\n".join([fmt(header), line, *map(fmt, rows)])

    def markdown(self) -> str:
        header, rows = self._rows()
        out = ["| " + " | ".join(header) + " |", "|" + "---|" + "---:|" * (len(header) - 1)]
        out += ["| " + " | ".join(r) + " |" for r in rows]
        n = sum(self.frames.values())
        out.append("")
        out.append(f"Errors in mm on {n} frames; frame-weighted within an action, unweighted mean over "
                   f"{len(self.actions)} actions.")
        return "\n".join(out) + "\n"

    def save(self, directory: str | Path, stem: str = "evaluation") -> tuple[Path, Path]:
        """Write ``<stem>.json`` and ``<stem>.md`` into ``directory``; returns the two paths."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        pj, pm = directory / f"{stem}.json", directory / f"{stem}.md"
        pj.write_text(json.dumps(self.to_dict(), indent=2) + "\n")
        pm.write_text(self.markdown())
        return pj, pm


class ActionAccumulator:
    """Sums of per-frame errors per action; :meth:`report` turns them into an :class:`EvaluationReport`.

    ``root``: index of the root joint subtracted from both poses (None: compare as given).
    ``joints``: evaluate only these joints (e.g. drop a model's extra joint), after the root
    subtraction.
    """

    def __init__(self, root: int | None = 0, joints: Iterable[int] | None = None) -> None:
        self.root = root
        self.joints = None if joints is None else list(joints)
        self._sums: dict[str, dict[str, float]] = {}
        self._counts: dict[str, dict[str, int]] = {}

    def add(self, action: str, predicted, target) -> None:
        """predicted, target (T, J, 3) in metres (arrays or tensors) of one sequence."""
        p = torch.as_tensor(np.asarray(predicted) if not isinstance(predicted, torch.Tensor) else predicted)
        t = torch.as_tensor(np.asarray(target) if not isinstance(target, torch.Tensor) else target)
        p, t = p.detach().to("cpu", torch.float64), t.detach().to("cpu", torch.float64)
        if p.shape != t.shape or p.dim() != 3 or p.shape[-1] != 3:
            raise ValueError(f"ActionAccumulator.add: predicted and target must both be (T, J, 3), "
                             f"got {tuple(p.shape)} and {tuple(t.shape)}")
        if self.root is not None:
            p, t = p - p[:, self.root : self.root + 1], t - t[:, self.root : self.root + 1]
        if self.joints is not None:
            p, t = p[:, self.joints], t[:, self.joints]
        group = canonical_action(action)
        sums = self._sums.setdefault(group, dict.fromkeys(METRICS, 0.0))
        counts = self._counts.setdefault(group, dict.fromkeys(METRICS, 0))
        per_frame = {
            "mpjpe": losses.mpjpe(p, t, reduction="none"),  # (T,)
            "p_mpjpe": losses.p_mpjpe(p, t, reduction="none"),  # (T,)
            "n_mpjpe": losses.n_mpjpe(p, t, reduction="none"),  # (T,)
            "mpjve": losses.mean_velocity_error(p, t, dim=0, reduction="none"),  # (T - 1,)
        }
        for m, v in per_frame.items():
            sums[m] += float(v.sum())
            counts[m] += int(v.numel())

    def report(self, meta: dict | None = None) -> EvaluationReport:
        if not self._sums:
            raise ValueError("ActionAccumulator.report: nothing was added")
        per_action = {
            a: {m: 1000.0 * s[m] / max(self._counts[a][m], 1) for m in METRICS} for a, s in self._sums.items()
        }
        frames = {a: c["mpjpe"] for a, c in self._counts.items()}
        return EvaluationReport(per_action, frames, dict(meta or {}))


def evaluate_sequences(
    sequences: Iterable,
    predict: Callable[[object], object],
    *,
    root: int | None = 0,
    joints: Iterable[int] | None = None,
    progress: bool = False,
    meta: dict | None = None,
) -> EvaluationReport:
    """Evaluate ``predict(seq) -> (T, J, 3)`` (metres) on every sequence.

    Each sequence needs ``action`` and ``positions_3d`` (T, J, 3) attributes (e.g.
    :class:`fastpose.data.PoseSequence`).
    """
    acc = ActionAccumulator(root=root, joints=joints)
    seqs = list(sequences)
    it = seqs
    if progress:
        from tqdm.auto import tqdm

        it = tqdm(seqs, desc="evaluate", dynamic_ncols=True)
    for seq in it:
        acc.add(seq.action, predict(seq), seq.positions_3d)
    return acc.report(meta)
