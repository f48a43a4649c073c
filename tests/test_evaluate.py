"""Per-action evaluation: protocols, weighting, table layout, files."""

import json
import math

import numpy as np
import pytest

from fastpose.evaluate import ActionAccumulator, EvaluationReport, evaluate_sequences


def _poses(T, seed):
    rng = np.random.default_rng(seed)
    return rng.normal(scale=0.3, size=(T, 17, 3)) + [0.0, 0.0, 5.0]


def _rotation(deg):
    a = math.radians(deg)
    return np.array([[math.cos(a), 0, math.sin(a)], [0, 1, 0], [-math.sin(a), 0, math.cos(a)]])


def test_protocols_see_what_they_should():
    gt = _poses(20, 0)
    rel = gt - gt[:, :1]
    acc = ActionAccumulator()
    acc.add("Walking", gt, gt)  # perfect
    acc.add("Sitting 1", 1.2 * rel + gt[:, :1], gt)  # scaled about the root
    acc.add("Posing", rel @ _rotation(30).T + [0.5, 0.0, 0.0], gt)  # rotated (and moved: root-relative)
    r = acc.report()
    assert r.per_action["Walking"] == pytest.approx({"mpjpe": 0.0, "p_mpjpe": 0.0, "n_mpjpe": 0.0, "mpjve": 0.0},
                                                    abs=1e-9)
    expected = 1000 * 0.2 * np.linalg.norm(rel, axis=-1).mean()
    assert r.per_action["Sitting"]["mpjpe"] == pytest.approx(expected, rel=1e-9)
    assert r.per_action["Sitting"]["n_mpjpe"] < 1e-6 and r.per_action["Sitting"]["p_mpjpe"] < 1e-6
    assert r.per_action["Posing"]["mpjpe"] > 50 and r.per_action["Posing"]["p_mpjpe"] < 1e-6
    assert r.per_action["Posing"]["n_mpjpe"] > 10


def test_frame_weighted_within_actions_unweighted_across():
    acc = ActionAccumulator()
    gt_a, gt_b, gt_c = _poses(10, 1), _poses(30, 2), _poses(5, 3)
    shift = lambda p, d: p + np.concatenate([np.zeros((len(p), 1, 3)), np.full((len(p), 16, 3), d / np.sqrt(3))], 1)
    acc.add("Eating", shift(gt_a, 0.01), gt_a)  # 10 frames at 16/17 * 10 mm
    acc.add("Eating 2", shift(gt_b, 0.05), gt_b)  # 30 frames at 16/17 * 50 mm
    acc.add("Smoking", shift(gt_c, 0.10), gt_c)
    r = acc.report()
    eat = (10 * 10 + 30 * 50) / 40 * 16 / 17
    assert r.per_action["Eating"]["mpjpe"] == pytest.approx(eat)
    assert r.frames == {"Eating": 40, "Smoking": 5}
    assert r.mean["mpjpe"] == pytest.approx((eat + 100 * 16 / 17) / 2)


def test_velocity_error_uses_frame_differences():
    gt = _poses(12, 4)
    drift = gt.copy()
    drift[:, 1:] += np.arange(12)[:, None, None] * np.array([0.001, 0.0, 0.0])  # 1 mm/frame on 16 joints
    acc = ActionAccumulator()
    acc.add("Greeting", drift, gt)
    report = acc.report()
    assert report.per_action["Greeting"]["mpjve"] == pytest.approx(16 / 17, rel=1e-9)
    assert report.per_action["Greeting"]["mpjpe"] > 5.0


def test_table_markdown_and_json(tmp_path):
    acc = ActionAccumulator()
    for i, action in enumerate(["WalkTogether", "Directions", "TakingPhoto 1", "Walking"]):
        gt = _poses(8, 10 + i)
        acc.add(action, gt + 0.01 * (i + 1), gt)
    r = acc.report(meta={"model": "test"})
    assert r.actions == ["Directions", "Photo", "Walking", "WalkTogether"]  # paper column order
    table = r.table().splitlines()
    assert table[0].split() == ["Dir.", "Photo", "Walk", "WalkT.", "Avg"]
    assert [line.split("  ")[0] for line in table[2:]] == ["Protocol #1 MPJPE", "Protocol #2 P-MPJPE",
                                                          "Protocol #3 N-MPJPE", "MPJVE"]
    pj, pm = r.save(tmp_path)
    data = json.loads(pj.read_text())
    assert data["units"] == "mm" and data["meta"] == {"model": "test"}
    assert data["mean_over_actions"]["mpjpe"] == pytest.approx(r.mean["mpjpe"])
    assert set(data["per_action"]) == set(r.actions) and data["per_action"]["Photo"]["frames"] == 8
    md = pm.read_text()
    assert md.startswith("|  | Dir. | Photo | Walk | WalkT. | Avg |") and "| Protocol #2 P-MPJPE |" in md


def test_evaluate_sequences_and_joint_subset():
    class Seq:
        def __init__(self, action, seed):
            self.action, self.positions_3d = action, _poses(6, seed)

    seqs = [Seq("Waiting", 20), Seq("Waiting 1", 21)]
    r = evaluate_sequences(seqs, lambda s: s.positions_3d + 0.002)  # root-relative: a shift is no error
    assert r.per_action["Waiting"]["mpjpe"] < 1e-9
    acc = ActionAccumulator(joints=range(16))
    gt = _poses(4, 22)
    pred = gt.copy()
    pred[:, 16] += 1.0  # only the excluded joint is wrong
    acc.add("Waiting", pred, gt)
    assert acc.report().per_action["Waiting"]["mpjpe"] < 1e-9


def test_errors():
    with pytest.raises(ValueError, match=r"both be \(T, J, 3\)"):
        ActionAccumulator().add("Walking", np.zeros((3, 17, 3)), np.zeros((4, 17, 3)))
    with pytest.raises(ValueError, match="nothing was added"):
        ActionAccumulator().report()
    assert isinstance(EvaluationReport({}, {}).mean, dict)
