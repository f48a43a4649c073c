"""Per-action evaluation: protocols, weighting, table layout, files."""

import json
import math

import numpy as np
import pytest

from fastpose.evaluate import ActionAccumulator, EvaluationReport, evaluate_sequences
from fastpose.skeleton import H36M_JOINT_NAMES


def _poses(T, seed):
    rng = np.random.default_rng(seed)
    return rng.normal(scale=0.3, size=(T, 17, 3)) + [0.0, 0.0, 5.0]


def _rotation(deg):
    a = math.radians(deg)
    return np.array([[math.cos(a), 0, math.sin(a)], [0, 1, 0], [-math.sin(a), 0, math.cos(a)]])


def test_protocols_see_what_they_should():
    gt = _poses(20, 0)
    rel = gt - gt[:, :1]
    acc = ActionAccumulator()  # VideoPose3D: the ground truth's root is zeroed, the prediction's kept
    acc.add("Walking", rel, gt)  # perfect
    acc.add("Sitting 1", 1.2 * rel, gt)  # scaled about the root
    acc.add("Posing", rel @ _rotation(30).T + [0.5, 0.0, 0.0], gt)  # rotated and moved
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
    rel = lambda p: p - p[:, :1]  # a lifter's output: root-relative
    acc.add("Eating", shift(rel(gt_a), 0.01), gt_a)  # 10 frames at 16/17 * 10 mm
    acc.add("Eating 2", shift(rel(gt_b), 0.05), gt_b)  # 30 frames at 16/17 * 50 mm
    acc.add("Smoking", shift(rel(gt_c), 0.10), gt_c)
    r = acc.report()
    eat = (10 * 10 + 30 * 50) / 40 * 16 / 17
    assert r.per_action["Eating"]["mpjpe"] == pytest.approx(eat)
    assert r.frames == {"Eating": 40, "Smoking": 5}
    assert r.mean["mpjpe"] == pytest.approx((eat + 100 * 16 / 17) / 2)


def test_velocity_error_uses_frame_differences():
    gt = _poses(12, 4)
    drift = gt - gt[:, :1]
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
    assert [line.split("  ")[0] for line in table[2:6]] == ["Protocol #1 MPJPE", "Protocol #2 P-MPJPE",
                                                           "Protocol #3 N-MPJPE", "MPJVE"]
    assert "VideoPose3D protocol: ground-truth root zeroed, predicted root kept" in table[6]
    pj, pm = r.save(tmp_path)
    data = json.loads(pj.read_text())
    assert data["units"] == "mm" and data["meta"] == {"model": "test"} and data["protocol"] == "videopose3d"
    assert data["mean_over_actions"]["mpjpe"] == pytest.approx(r.mean["mpjpe"])
    assert set(data["per_action"]) == set(r.actions) and data["per_action"]["Photo"]["frames"] == 8
    md = pm.read_text()
    assert md.startswith("|  | Dir. | Photo | Walk | WalkT. | Avg |") and "| Protocol #2 P-MPJPE |" in md


def test_evaluate_sequences_and_joint_subset():
    class Seq:
        def __init__(self, action, seed):
            self.action, self.positions_3d = action, _poses(6, seed)

    seqs = [Seq("Waiting", 20), Seq("Waiting 1", 21)]
    # root-aligned: a shift is no error; VideoPose3D's protocol keeps the predicted root
    r = evaluate_sequences(seqs, lambda s: s.positions_3d + 0.002, protocol="root-aligned")
    assert r.per_action["Waiting"]["mpjpe"] < 1e-9
    r = evaluate_sequences(seqs, lambda s: s.positions_3d - s.positions_3d[:, :1] + 0.002)
    assert r.per_action["Waiting"]["mpjpe"] == pytest.approx(2 * np.sqrt(3), rel=1e-9)
    acc = ActionAccumulator(joints=range(16))
    gt = _poses(4, 22)
    pred = gt - gt[:, :1]
    pred[:, 16] += 1.0  # only the excluded joint is wrong
    acc.add("Waiting", pred, gt)
    assert acc.report().per_action["Waiting"]["mpjpe"] < 1e-9


def test_errors():
    with pytest.raises(ValueError, match=r"both be \(T, J, 3\)"):
        ActionAccumulator().add("Walking", np.zeros((3, 17, 3)), np.zeros((4, 17, 3)))
    with pytest.raises(ValueError, match="nothing was added"):
        ActionAccumulator().report()
    assert isinstance(EvaluationReport({}, {}).mean, dict)


# ---------------------------------------------------------------------------------------------
# An independent restatement of VideoPose3D's evaluation (common/loss.py + run.py evaluate()),
# written from the published formulas in NumPy: one "batch" per video, weights T per video.
# ---------------------------------------------------------------------------------------------
def _vp3d_mpjpe(pred, gt):
    return np.linalg.norm(pred - gt, axis=-1).mean()


def _vp3d_n_mpjpe(pred, gt):
    # scale per frame: mean_j <p_j, p_j> and mean_j <g_j, p_j>
    norm_pred = np.mean(np.sum(pred**2, axis=-1, keepdims=True), axis=-2, keepdims=True)
    norm_tgt = np.mean(np.sum(gt * pred, axis=-1, keepdims=True), axis=-2, keepdims=True)
    return _vp3d_mpjpe(norm_tgt / norm_pred * pred, gt)


def _vp3d_p_mpjpe(pred, gt):
    out = []
    for p, g in zip(pred, gt, strict=True):  # frame by frame, (J, 3)
        mx, my = g.mean(0), p.mean(0)
        x0, y0 = g - mx, p - my
        nx, ny = np.sqrt((x0**2).sum()), np.sqrt((y0**2).sum())
        x0, y0 = x0 / nx, y0 / ny
        u, s, vt = np.linalg.svd(x0.T @ y0)
        v = vt.T
        r = v @ u.T
        if np.linalg.det(r) < 0:  # no reflection: flip the last singular direction
            v[:, -1] *= -1
            s[-1] *= -1
            r = v @ u.T
        a = s.sum() * nx / ny
        aligned = a * (p @ r) + (mx - a * (my @ r))
        out.append(np.linalg.norm(aligned - g, axis=-1).mean())
    return float(np.mean(out))


def _vp3d_velocity(pred, gt):
    return np.linalg.norm(np.diff(pred, axis=0) - np.diff(gt, axis=0), axis=-1).mean()


def _vp3d_evaluate(videos):
    """videos: {action_key: [(pred (T, J, 3), gt (T, J, 3) with its root)]} -> per-action and mean (mm)."""
    per_action = {}
    for action, vids in videos.items():
        e1 = e2 = e3 = ev = 0.0
        n = 0
        for pred, gt in vids:
            gt = gt - gt[:, :1]  # inputs_3d[:, :, 0] = 0 on the root-relative data; pred untouched
            T = gt.shape[0]
            e1 += T * _vp3d_mpjpe(pred, gt)
            e2 += T * _vp3d_p_mpjpe(pred, gt)
            e3 += T * _vp3d_n_mpjpe(pred, gt)
            ev += T * _vp3d_velocity(pred, gt)
            n += T
        per_action[action] = {"mpjpe": 1000 * e1 / n, "p_mpjpe": 1000 * e2 / n, "n_mpjpe": 1000 * e3 / n,
                              "mpjve": 1000 * ev / n}
    mean = {m: float(np.mean([v[m] for v in per_action.values()])) for m in ("mpjpe", "p_mpjpe", "n_mpjpe", "mpjve")}
    return per_action, mean


def _walk(T, seed):
    """A moving body (T, 17, 3) in metres, camera frame: smooth joint tracks around a 5 m deep root."""
    rng = np.random.default_rng(seed)
    body = rng.normal(scale=0.25, size=(17, 3))
    body[0] = 0.0
    t = np.arange(T)[:, None, None]
    wobble = 0.05 * np.sin(0.2 * t + rng.uniform(0, 6, size=(1, 17, 3)))
    root = np.array([0.0, 0.0, 5.0]) + 0.01 * t * np.array([1.0, 0.0, 0.2])
    return body[None] + wobble + root


def test_default_is_videopose3d_and_root_aligned_differs():
    """1 cm noise on the predicted root over 50 frames: the default matches the VideoPose3D
    restatement to 1e-4 mm; root-aligned evaluation gives other MPJPE/N-MPJPE/MPJVE."""
    rng = np.random.default_rng(7)
    gt = _walk(50, 1)
    pred = gt - gt[:, :1] + rng.normal(scale=0.02, size=gt.shape)  # a lifter's root-relative output
    pred[:, 0] = rng.normal(scale=0.01, size=(50, 3))  # its root, 1 cm of noise around 0
    acc = ActionAccumulator()
    acc.add("Walking", pred, gt)
    default = acc.report()
    ref_action, ref_mean = _vp3d_evaluate({"Walking": [(pred, gt)]})
    for m in ("mpjpe", "p_mpjpe", "n_mpjpe", "mpjve"):
        assert default.per_action["Walking"][m] == pytest.approx(ref_action["Walking"][m], abs=1e-4)
        assert default.mean[m] == pytest.approx(ref_mean[m], abs=1e-4)
    aligned = evaluate_sequences([_Seq("Walking", pred, gt)], lambda s: s.pred, protocol="root-aligned").per_action
    for m in ("mpjpe", "n_mpjpe", "mpjve"):  # the predicted root's noise now moves every joint
        assert abs(aligned["Walking"][m] - default.per_action["Walking"][m]) > 0.5, m
    assert aligned["Walking"]["p_mpjpe"] == pytest.approx(default.per_action["Walking"]["p_mpjpe"], abs=1e-6)
    # root-aligned = the VideoPose3D arithmetic on root-subtracted predictions
    ra_action, _ = _vp3d_evaluate({"Walking": [(pred - pred[:, :1], gt)]})
    for m in ("mpjpe", "p_mpjpe", "n_mpjpe", "mpjve"):
        assert aligned["Walking"][m] == pytest.approx(ra_action["Walking"][m], abs=1e-4)


class _Seq:
    def __init__(self, action, pred, gt, subject="S9", camera=0, name=""):
        self.action, self.pred, self.positions_3d = action, pred, gt
        self.subject, self.camera_index, self.name = subject, camera, name


def test_videos_of_different_lengths_weighted_by_frames():
    """An action that merges videos of 10 and 40 frames: every metric, MPJVE included, weights
    each video by its T frames (VideoPose3D), not by its T - 1 frame pairs."""
    rng = np.random.default_rng(3)
    videos = {"Walking": [], "Eating": []}
    for action, lengths, noise in (("Walking", (10, 40), (0.002, 0.03)), ("Eating", (25,), (0.01,))):
        for T, s in zip(lengths, noise, strict=True):
            gt = _walk(T, T)
            pred = gt - gt[:, :1] + rng.normal(scale=s, size=gt.shape)
            videos[action].append((pred, gt))
    seqs = [_Seq(a if i == 0 else f"{a} 1", p, g, camera=i) for a, vids in videos.items()
            for i, (p, g) in enumerate(vids)]
    report = evaluate_sequences(seqs, lambda s: s.pred)
    ref_action, ref_mean = _vp3d_evaluate(videos)
    for a in videos:
        for m in ("mpjpe", "p_mpjpe", "n_mpjpe", "mpjve"):
            assert report.per_action[a][m] == pytest.approx(ref_action[a][m], abs=1e-4), (a, m)
    assert report.mean["mpjve"] == pytest.approx(ref_mean["mpjve"], abs=1e-4)
    # the T - 1 weighting would differ measurably here
    (p1, g1), (p2, g2) = videos["Walking"]
    v1, v2 = (1000 * _vp3d_velocity(p, g - g[:, :1]) for p, g in ((p1, g1), (p2, g2)))
    pairs = (9 * v1 + 39 * v2) / 48
    assert abs(report.per_action["Walking"]["mpjve"] - pairs) > 0.1
    assert report.frames == {"Walking": 50, "Eating": 25}


def test_single_frame_video_has_no_velocity():
    gt = _walk(5, 2)
    acc = ActionAccumulator()
    acc.add("Walking", gt[:1] - gt[:1, :1] + 0.01, gt[:1])  # one frame: no velocity
    acc.add("Walking 1", gt - gt[:, :1], gt)  # perfect
    r = acc.report()
    assert r.per_action["Walking"]["mpjve"] == pytest.approx(0.0, abs=1e-9)  # not NaN, not diluted
    assert r.per_action["Walking"]["mpjpe"] == pytest.approx(10 * np.sqrt(3) / 6, rel=1e-9)  # 1 of 6 frames off


def test_diverged_model_does_not_crash_evaluation(tmp_path):
    """NaN and collapsed predictions: the evaluation finishes; NaN shows as NaN, never as 0."""
    gt = _walk(6, 5)
    bad = gt - gt[:, :1]
    bad[2] = np.nan  # one diverged frame
    acc = ActionAccumulator()
    acc.add("Walking", bad, gt)
    acc.add("Eating", np.zeros_like(gt), gt)  # collapsed to the origin: finite errors
    r = acc.report()
    assert all(math.isnan(r.per_action["Walking"][m]) for m in ("mpjpe", "p_mpjpe", "n_mpjpe", "mpjve"))
    rel = gt - gt[:, :1]
    spread = 1000 * np.linalg.norm(rel - rel.mean(1, keepdims=True), axis=-1).mean()
    assert r.per_action["Eating"]["p_mpjpe"] == pytest.approx(spread, rel=1e-9)  # aligned onto the centroid
    assert r.per_action["Eating"]["mpjpe"] == pytest.approx(1000 * np.linalg.norm(rel, axis=-1).mean(), rel=1e-9)
    assert "nan" in r.table()
    data = json.loads(r.save(tmp_path)[0].read_text())  # standard JSON: NaN written as null
    assert data["per_action"]["Walking"]["mpjpe"] is None and data["per_action"]["Eating"]["mpjpe"] > 0


# ---------------------------------------------------------------------------------------------
# breakdowns, layouts, metric selection
# ---------------------------------------------------------------------------------------------
def test_per_joint_and_per_sequence_breakdowns(tmp_path):
    rng = np.random.default_rng(11)
    seqs = []
    for subject, name, action, cam, T in (("S9", "", "Walking 1", 0, 12), ("S9", "", "Walking 1", 1, 8),
                                          ("S11", "", "Eating", 0, 10)):
        gt = _walk(T, T + cam)
        pred = gt - gt[:, :1]
        pred[:, 13] += rng.normal(scale=0.05, size=(T, 3))  # only the left wrist is wrong
        seqs.append(_Seq(action, pred, gt, subject=subject, camera=cam, name=name))
    r = evaluate_sequences(seqs, lambda s: s.pred)
    assert list(r.per_joint) == list(H36M_JOINT_NAMES)
    assert r.per_joint["l_wrist"] > 20 and all(v < 1e-9 for k, v in r.per_joint.items() if k != "l_wrist")
    # per joint: frame-weighted within an action, unweighted mean over actions -> mean equals the table's
    walk = np.concatenate([np.linalg.norm(s.pred[:, 13] - (s.positions_3d - s.positions_3d[:, :1])[:, 13], axis=-1)
                           for s in seqs[:2]]).mean()
    eat = np.linalg.norm(seqs[2].pred[:, 13] - (seqs[2].positions_3d - seqs[2].positions_3d[:, :1])[:, 13],
                         axis=-1).mean()
    assert r.per_joint["l_wrist"] == pytest.approx(1000 * (walk + eat) / 2, rel=1e-9)
    assert np.mean(list(r.per_joint.values())) == pytest.approx(r.mean["mpjpe"], rel=1e-9)
    # per sequence: (subject, name or action, camera)
    keys = [(s["subject"], s["sequence"], s["camera"], s["frames"], s["action"]) for s in r.per_sequence]
    assert keys == [("S9", "Walking 1", 0, 12, "Walking"), ("S9", "Walking 1", 1, 8, "Walking"),
                    ("S11", "Eating", 0, 10, "Eating")]
    s0 = seqs[0]
    e0 = 1000 * np.linalg.norm(s0.pred - (s0.positions_3d - s0.positions_3d[:, :1]), axis=-1).mean()
    assert r.per_sequence[0]["mpjpe"] == pytest.approx(e0, rel=1e-9)
    # a sequence name (e.g. a motion file's clip) wins over the action
    named = evaluate_sequences([_Seq("cmu", seqs[0].pred, seqs[0].positions_3d, name="86_02")], lambda s: s.pred)
    assert named.per_sequence[0]["sequence"] == "86_02" and named.per_sequence[0]["action"] == "cmu"
    # printable and saved
    pj_table = r.per_joint_table().splitlines()
    assert pj_table[0].split() == ["Joint", "MPJPE"] and len(pj_table) == 2 + 17
    assert pj_table[2 + 13].split()[0] == "l_wrist"
    ps_table = r.per_sequence_table().splitlines()
    assert ps_table[0].split()[:4] == ["Subject", "Sequence", "Camera", "Frames"] and len(ps_table) == 2 + 3
    assert ps_table[4].split()[:4] == ["S11", "Eating", "0", "10"]
    pj, pm = r.save(tmp_path)
    data = json.loads(pj.read_text())
    assert data["per_joint"]["l_wrist"] == pytest.approx(r.per_joint["l_wrist"])
    assert [(s["subject"], s["camera"]) for s in data["per_sequence"]] == [("S9", 0), ("S9", 1), ("S11", 0)]
    md = pm.read_text()
    assert "| l_wrist |" in md and "| S11 | Eating | 0 | 10 |" in md


def test_transposed_table_for_other_groups():
    """Groups that are not Human3.6M actions (e.g. motion-capture clips): one row per group."""
    acc = ActionAccumulator()
    names = [f"clip{i:02d}" for i in range(18)]
    for i, name in enumerate(names):
        gt = _walk(5, i)
        acc.add(name, gt - gt[:, :1] + 0.001 * i, gt)
    r = acc.report()
    assert r.transposed
    lines = r.table().splitlines()
    assert lines[0].split("  ")[0] == "Action" and "Protocol #1 MPJPE" in lines[0] and "MPJVE" in lines[0]
    assert [ln.split()[0] for ln in lines[2:2 + 18]] == names and lines[2 + 18].split()[0] == "Avg"
    assert float(lines[2 + 5].split()[1]) == pytest.approx(r.per_action["clip05"]["mpjpe"], abs=0.05)
    assert float(lines[2 + 18].split()[1]) == pytest.approx(r.mean["mpjpe"], abs=0.05)
    assert "VideoPose3D protocol" in lines[-1]
    assert max(len(ln) for ln in lines[:-1]) < 100  # readable: no 18-column row
    assert r.markdown().startswith("| Action | Protocol #1 MPJPE |")
    h36m = ActionAccumulator()
    gt = _walk(5, 0)
    h36m.add("Walking", gt - gt[:, :1], gt)
    assert not h36m.report().transposed


def test_metrics_option_and_root_aligned_header(tmp_path):
    gt = _walk(8, 3)
    acc = ActionAccumulator(metrics=("mpjpe", "p_mpjpe", "n_mpjpe"), protocol="root-aligned")
    acc.add("Walking", gt + 0.5, gt)  # root-aligned: a shift is no error
    r = acc.report()
    assert r.metrics == ("mpjpe", "p_mpjpe", "n_mpjpe") and "mpjve" not in r.per_action["Walking"]
    assert set(r.mean) == {"mpjpe", "p_mpjpe", "n_mpjpe"} and r.mean["mpjpe"] < 1e-9
    table = r.table()
    assert "MPJVE" not in table and "root-aligned protocol" in table
    data = json.loads(r.save(tmp_path)[0].read_text())
    assert data["protocol"] == "root-aligned" and data["metrics"] == ["mpjpe", "p_mpjpe", "n_mpjpe"]
    assert "predicted and ground-truth roots both subtracted" in data["protocol_description"]
    assert "root-aligned" in (tmp_path / "evaluation.md").read_text()


def test_option_errors_name_the_argument():
    with pytest.raises(ValueError, match=r"'metrics' must be a non-empty subset .* received \['mpjpe', 'pck'\]"):
        ActionAccumulator(metrics=["mpjpe", "pck"])
    with pytest.raises(ValueError, match=r"'protocol' must be one of \('videopose3d', 'root-aligned'\), "
                                         r"received 'motionbert'"):
        evaluate_sequences([], lambda s: s, protocol="motionbert")
    with pytest.raises(ValueError, match=r"'joint_names' must name the 17 evaluated joints, received 2"):
        ActionAccumulator(joint_names=["a", "b"]).add("Walking", np.zeros((2, 17, 3)), np.zeros((2, 17, 3)))
    with pytest.raises(ValueError, match=r"'joints' must index the 17 joints"):
        ActionAccumulator(joints=[0, 17]).add("Walking", np.zeros((2, 17, 3)), np.zeros((2, 17, 3)))
