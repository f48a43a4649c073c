"""fastpose.losses: against independent NumPy formulas (VideoPose3D semantics), similarity
invariance and exactness of p_mpjpe, rigid-motion invariance of the bone loss, reductions,
gradients (gradcheck in float64, zero-error gradients), errors naming the argument, dtypes,
and real motion capture (skipped when ../shared is absent)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from fastpose import losses as L

CMU = Path(__file__).resolve().parents[2] / "shared" / "data" / "cmu_mocap" / "cmu_h36m17.npz"


# ----------------------------------------------------------------------------- naive NumPy formulas


def _np_p_mpjpe(pred: np.ndarray, target: np.ndarray) -> np.ndarray:
    """Per-pose Procrustes error for (N, J, 3) arrays, one pose at a time (Umeyama, with the
    reflection fixed by flipping the last singular direction)."""
    errs = []
    for y, x in zip(pred, target, strict=True):
        x0, y0 = x - x.mean(0), y - y.mean(0)
        u, s, vt = np.linalg.svd(x0.T @ y0)  # target^T pred = U S V^T
        d = np.sign(np.linalg.det(vt.T @ u.T))
        dm = np.diag([1.0] * (len(s) - 1) + [d])
        rot = vt.T @ dm @ u.T  # maps row vectors of y0 onto x0: y0 @ rot
        scale = np.trace(np.diag(s) @ dm) / (y0**2).sum()
        aligned = scale * y0 @ rot + x.mean(0)
        errs.append(np.linalg.norm(aligned - x, axis=-1).mean())
    return np.array(errs)


def _random_rotation(gen: torch.Generator, n: int = 1) -> torch.Tensor:
    """(n, 3, 3) proper rotations (QR of a Gaussian matrix, det fixed to +1)."""
    q, r = torch.linalg.qr(torch.randn((n, 3, 3), generator=gen, dtype=torch.float64))
    q = q * torch.sign(torch.diagonal(r, dim1=-2, dim2=-1)).unsqueeze(-2)
    det = torch.linalg.det(q)
    q[:, :, 2] *= det.unsqueeze(-1)
    return q


def _poses(shape, gen, dtype=torch.float64):
    return torch.randn(shape, generator=gen, dtype=torch.float64).to(dtype)


# ----------------------------------------------------------------------------- mpjpe family


@pytest.mark.parametrize("j", [17, 18])
def test_mpjpe_and_weighted(j):
    gen = torch.Generator().manual_seed(40)
    p, t = _poses((4, 5, j, 3), gen), _poses((4, 5, j, 3), gen)
    per_joint = np.linalg.norm(p.numpy() - t.numpy(), axis=-1)  # (4, 5, J)
    torch.testing.assert_close(L.mpjpe(p, t).item(), per_joint.mean())
    torch.testing.assert_close(L.mpjpe(p, t, reduction="none").numpy(), per_joint.mean(-1))
    w = torch.rand((4, 5, j), generator=gen, dtype=torch.float64)
    torch.testing.assert_close(L.weighted_mpjpe(p, t, w).item(), (w.numpy() * per_joint).mean())
    w_b = torch.rand((4, 1, 1), generator=gen, dtype=torch.float64)  # broadcast over frames, joints
    torch.testing.assert_close(
        L.weighted_mpjpe(p, t, w_b, reduction="none").numpy(), (w_b.numpy() * per_joint).mean(-1)
    )
    # 2D keypoints work too (the reprojection MPJPE)
    torch.testing.assert_close(
        L.mpjpe(p[..., :2], t[..., :2]).item(),
        np.linalg.norm(p.numpy()[..., :2] - t.numpy()[..., :2], axis=-1).mean(),
    )


def test_p_mpjpe_matches_numpy_procrustes():
    gen = torch.Generator().manual_seed(41)
    p, t = _poses((6, 17, 3), gen), _poses((6, 17, 3), gen)
    expected = _np_p_mpjpe(p.numpy(), t.numpy())
    torch.testing.assert_close(L.p_mpjpe(p, t, reduction="none").numpy(), expected, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(L.p_mpjpe(p, t).item(), expected.mean(), rtol=1e-10, atol=1e-12)
    # batched over extra leading dims: the same per-pose values
    torch.testing.assert_close(
        L.p_mpjpe(p.reshape(2, 3, 17, 3), t.reshape(2, 3, 17, 3), reduction="none").reshape(6).numpy(),
        expected,
    )
    assert (L.p_mpjpe(p, t, reduction="none") <= L.mpjpe(p, t, reduction="none") + 1e-12).all()


@settings(max_examples=15, deadline=None)
@given(seed=st.integers(0, 2**31 - 1), scale=st.floats(0.3, 3.0), shift=st.floats(-5.0, 5.0))
def test_p_mpjpe_similarity_invariance_and_exactness(seed, scale, shift):
    gen = torch.Generator().manual_seed(seed)
    p, t = _poses((3, 17, 3), gen), _poses((3, 17, 3), gen)
    rot = _random_rotation(gen, 3)  # (3, 3, 3)
    trans = shift * torch.randn((3, 1, 3), generator=gen, dtype=torch.float64)
    moved = scale * p @ rot + trans  # a similarity transform of each predicted pose
    torch.testing.assert_close(
        L.p_mpjpe(moved, t, reduction="none"), L.p_mpjpe(p, t, reduction="none"), rtol=1e-9, atol=1e-10
    )
    # a prediction that IS a similarity transform of the target has zero error
    assert L.p_mpjpe(scale * t @ rot + trans, t).item() < 1e-10


def test_p_mpjpe_excludes_reflections():
    gen = torch.Generator().manual_seed(42)
    t = _poses((4, 17, 3), gen)
    mirrored = t * torch.tensor([-1.0, 1.0, 1.0], dtype=torch.float64)  # det -1, not a rotation
    err = L.p_mpjpe(mirrored, t, reduction="none")
    assert (err > 1e-3).all()  # a reflection cannot be undone
    torch.testing.assert_close(err.numpy(), _np_p_mpjpe(mirrored.numpy(), t.numpy()), rtol=1e-10, atol=1e-12)


def test_n_mpjpe():
    gen = torch.Generator().manual_seed(43)
    p, t = _poses((2, 5, 17, 3), gen), _poses((2, 5, 17, 3), gen)
    pn, tn = p.numpy(), t.numpy()
    # VideoPose3D: scale = mean_j <t, p> / mean_j |p|^2 per pose
    s = (tn * pn).sum(-1, keepdims=True).mean(-2, keepdims=True) / (pn**2).sum(-1, keepdims=True).mean(
        -2, keepdims=True
    )
    expected = np.linalg.norm(s * pn - tn, axis=-1)
    torch.testing.assert_close(L.n_mpjpe(p, t).item(), expected.mean())
    torch.testing.assert_close(L.n_mpjpe(p, t, reduction="none").numpy(), expected.mean(-1))
    assert L.n_mpjpe(2.5 * t, t).item() < 1e-12  # a pure rescaling is forgiven


def test_mean_velocity_error():
    gen = torch.Generator().manual_seed(44)
    p, t = _poses((7, 17, 3), gen), _poses((7, 17, 3), gen)
    vel = np.linalg.norm(np.diff(p.numpy(), axis=0) - np.diff(t.numpy(), axis=0), axis=-1)  # (6, 17)
    torch.testing.assert_close(L.mean_velocity_error(p, t).item(), vel.mean())
    torch.testing.assert_close(L.mean_velocity_error(p, t, reduction="none").numpy(), vel.mean(-1))
    # batched windows (N, T, J, 3): time is dim -3 (= 1)
    pb, tb = p.reshape(1, 7, 17, 3).expand(2, 7, 17, 3), t.reshape(1, 7, 17, 3).expand(2, 7, 17, 3)
    torch.testing.assert_close(L.mean_velocity_error(pb, tb).item(), vel.mean())
    assert L.mean_velocity_error(pb, tb, reduction="none").shape == (2, 6)
    assert L.mean_velocity_error(pb, tb, dim=0, reduction="none").shape == (1, 7)
    # a constant offset has no velocity error; a single frame has nothing to average
    assert L.mean_velocity_error(t + 3.0, t).item() < 1e-12
    assert L.mean_velocity_error(p[:1], t[:1]).item() == 0.0


# ----------------------------------------------------------------------------- bone length loss


def _skeleton(gen, j=17):
    return _poses((j, 3), gen)


def test_bone_length_loss_matches_loop():
    gen = torch.Generator().manual_seed(45)
    seq = _poses((6, 17, 3), gen)
    total, count = 0.0, 0
    per_pair = []
    for t in range(1, 6):
        row = []
        for j, par in enumerate(L.H36M_PARENTS):
            if par < 0:
                continue
            now = torch.linalg.norm(seq[t, j] - seq[t, par]).item()
            before = torch.linalg.norm(seq[t - 1, j] - seq[t - 1, par]).item()
            row.append(abs(now - before))
        per_pair.append(np.mean(row))
        total += sum(row)
        count += len(row)
    torch.testing.assert_close(L.bone_length_loss(seq).item(), total / count)
    torch.testing.assert_close(L.bone_length_loss(seq, reduction="none").numpy(), np.array(per_pair))


@settings(max_examples=15, deadline=None)
@given(seed=st.integers(0, 2**31 - 1), frames=st.integers(2, 6))
def test_bone_length_loss_zero_for_rigid_motion(seed, frames):
    gen = torch.Generator().manual_seed(seed)
    skel = _skeleton(gen)  # (17, 3)
    rots = _random_rotation(gen, frames)  # (T, 3, 3)
    trans = 3.0 * torch.randn((frames, 1, 3), generator=gen, dtype=torch.float64)
    seq = skel @ rots + trans  # (T, 17, 3) the same skeleton moved rigidly in every frame
    assert L.bone_length_loss(seq).item() < 1e-12
    # stretching one bone in one frame is seen
    seq2 = seq.clone()
    seq2[frames - 1, 3] += 0.5 * (seq2[frames - 1, 3] - seq2[frames - 1, 2])  # lengthen shin
    assert L.bone_length_loss(seq2).item() > 1e-3


def test_bone_length_loss_custom_parents_and_batches():
    gen = torch.Generator().manual_seed(46)
    parents18 = list(L.H36M_PARENTS) + [8]  # a thorax-like extra joint hanging from joint 8
    seq = _poses((2, 4, 18, 3), gen)  # (N, T, J, 3)
    per = L.bone_length_loss(seq, parents18, reduction="none")
    assert per.shape == (2, 3)
    torch.testing.assert_close(L.bone_length_loss(seq, parents18), per.mean())
    torch.testing.assert_close(L.bone_length_loss(seq[1], parents18, reduction="none"), per[1])
    assert L.bone_length_loss(seq[:, :1], parents18).item() == 0.0  # one frame: nothing to compare


@pytest.mark.skipif(not CMU.exists(), reason="real motion capture not available (../shared absent)")
def test_real_motion_has_near_constant_bones():
    with np.load(CMU) as data:
        meta = json.loads(str(data["__meta__"]))
        key = next(k for k in data.files if k != "__meta__")
        seq = torch.from_numpy(data[key][:200].astype(np.float64)) / 1000.0  # (T, 17, 3) metres
    parents = meta.get("parents", L.H36M_PARENTS)
    loss = L.bone_length_loss(seq, parents).item()
    mean_bone = L.mpjpe(seq[:, 1:], seq[:, [p if p >= 0 else 0 for p in parents][1:]]).item()
    assert loss < 0.02 * mean_bone  # bones of real mocap barely change between frames at 50 fps
    assert L.mpjpe(seq, seq).item() == 0.0


# ----------------------------------------------------------------------------- gradients


def test_gradcheck_float64():
    gen = torch.Generator().manual_seed(47)
    t = _poses((2, 4, 5, 3), gen)
    w = torch.rand((2, 4, 5), generator=gen, dtype=torch.float64)
    p = _poses((2, 4, 5, 3), gen).requires_grad_(True)
    parents = [-1, 0, 1, 0, 3]
    for fn in (
        lambda x: L.mpjpe(x, t),
        lambda x: L.weighted_mpjpe(x, t, w, reduction="none"),
        lambda x: L.p_mpjpe(x, t, reduction="none"),
        lambda x: L.n_mpjpe(x, t),
        lambda x: L.mean_velocity_error(x, t),
        lambda x: L.bone_length_loss(x, parents, reduction="none"),
    ):
        assert torch.autograd.gradcheck(fn, (p,))


def test_zero_error_gradients_are_zero_not_nan():
    gen = torch.Generator().manual_seed(48)
    t = _poses((3, 17, 3), gen)
    p = t.clone().requires_grad_(True)
    (L.mpjpe(p, t) + L.mean_velocity_error(p, t) + L.n_mpjpe(p, t)).backward()
    assert torch.isfinite(p.grad).all() and (p.grad.abs() < 1e-12).all()
    pose = torch.zeros((2, 17, 3), dtype=torch.float64, requires_grad=True)  # zero-length bones
    L.bone_length_loss(pose).backward()
    assert torch.isfinite(pose.grad).all()


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
def test_low_precision_dtypes(dtype):
    gen = torch.Generator().manual_seed(49)
    p, t = _poses((4, 17, 3), gen), _poses((4, 17, 3), gen)
    tol = {torch.float32: 1e-5, torch.float16: 5e-3, torch.bfloat16: 3e-2}[dtype]
    for fn in (L.mpjpe, L.p_mpjpe, L.n_mpjpe, L.mean_velocity_error):
        out = fn(p.to(dtype), t.to(dtype))
        assert out.dtype == dtype
        torch.testing.assert_close(
            out.double(), fn(p.to(dtype).double(), t.to(dtype).double()), rtol=tol, atol=tol
        )
    out = L.bone_length_loss(p.to(dtype))
    assert out.dtype == dtype and torch.isfinite(out)


def test_p_mpjpe_float32_gradient_is_finite():
    gen = torch.Generator().manual_seed(50)
    p = _poses((8, 17, 3), gen, torch.float32).requires_grad_(True)
    t = _poses((8, 17, 3), gen, torch.float32)
    L.p_mpjpe(p, t).backward()
    assert torch.isfinite(p.grad).all() and p.grad.abs().sum() > 0


def _collinear_optimum(y: np.ndarray, x: np.ndarray) -> float:
    """Exact Procrustes error of a collinear prediction y = c + lam_j * u (J, 3) onto x (J, 3):
    the line can be rotated onto any direction v, so the best is v = sum_j lam_j x0_j normalised,
    scale a = |sum_j lam_j x0_j| / sum_j lam_j^2 (a 1D least-squares fit)."""
    y0, x0 = y - y.mean(0), x - x.mean(0)
    u = y0[np.argmax(np.linalg.norm(y0, axis=1))]
    u = u / np.linalg.norm(u)
    lam = y0 @ u  # (J,)
    m = lam @ x0  # (3,)
    fit = np.outer(lam, m) / (lam @ lam)  # a * lam_j * v
    return float(np.linalg.norm(fit - x0, axis=1).mean())


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_p_mpjpe_never_raises_on_bad_predictions(dtype):
    """NaN/inf poses score NaN; degenerate finite poses (one point, zero, collinear) score their
    exact error with a finite gradient; the other poses of the batch are untouched."""
    gen = torch.Generator().manual_seed(51)
    t = _poses((7, 17, 3), gen)
    p = _poses((7, 17, 3), gen)
    p[0] = float("nan")
    p[1] = 0.3  # every joint at one point
    p[2] = 0.0  # zero scale
    lam = torch.linspace(-1, 1, 17, dtype=torch.float64)
    p[3] = lam[:, None] ** 3 * torch.tensor([1.0, 2.0, 0.5], dtype=torch.float64) + 0.1  # collinear
    p[4, 3, 1] = float("inf")
    p[5] = t[5] * 1e-6  # finite, far below the target's scale, but still a pose
    target = t.clone()
    target[6] = 0.7  # degenerate target: every joint at one point
    pred = p.to(dtype).clone().requires_grad_(True)
    err = L.p_mpjpe(pred, target.to(dtype), reduction="none")
    e = err.detach().double()
    assert torch.isnan(err[0]) and torch.isnan(err[4])
    collapsed = np.linalg.norm(t[1:3] - t[1:3].mean(1, keepdim=True), axis=-1).mean(-1)  # aligned = centroid
    tol = 1e-9 if dtype == torch.float64 else 1e-5
    np.testing.assert_allclose(e[1:3].numpy(), collapsed, rtol=tol)
    assert float(e[3]) == pytest.approx(_collinear_optimum(p[3].numpy(), t[3].numpy()), rel=10 * tol)
    assert float(e[5]) == pytest.approx(0.0, abs=tol)  # a tiny but exact copy of the target: scaled up
    assert float(e[6]) == pytest.approx(0.0, abs=tol)  # any pose aligns onto a point exactly
    err[1:4].sum().backward()
    assert torch.isfinite(pred.grad).all()
    pred.grad = None
    L.p_mpjpe(pred[5:7], target[5:7].to(dtype)).backward()
    assert torch.isfinite(pred.grad).all()
    assert torch.isnan(L.p_mpjpe(pred, target.to(dtype)))  # the mean over a batch with a NaN pose


def test_nan_poses_are_nan_in_every_metric():
    """A NaN coordinate must never read as a perfect (zero) error."""
    gen = torch.Generator().manual_seed(52)
    t = _poses((3, 17, 3), gen)
    p = t.clone()
    p[1, 4, 0] = float("nan")
    for fn in (L.mpjpe, L.n_mpjpe, L.p_mpjpe):
        e = fn(p, t, reduction="none")
        assert torch.isnan(e[1]) and e[0] < 1e-12 and e[2] < 1e-12, fn.__name__
    v = L.mean_velocity_error(p, t, dim=0, reduction="none")  # pairs (0,1) and (1,2) see the NaN
    assert torch.isnan(v).all()


def test_empty_batches_give_zero():
    p = torch.zeros((0, 17, 3), requires_grad=True)
    for fn in (L.mpjpe, L.p_mpjpe, L.n_mpjpe):
        out = fn(p, torch.zeros((0, 17, 3)))
        assert out.item() == 0.0
        assert fn(p, torch.zeros((0, 17, 3)), reduction="none").shape == (0,)
    L.p_mpjpe(p, torch.zeros((0, 17, 3))).backward()
    assert p.grad.shape == p.shape
    assert L.weighted_mpjpe(p, torch.zeros((0, 17, 3)), torch.zeros(0, 17)).item() == 0.0


def test_non_contiguous_inputs():
    gen = torch.Generator().manual_seed(51)
    p, t = _poses((5, 17, 3), gen), _poses((5, 17, 3), gen)
    p_nc = p.permute(2, 1, 0).contiguous().permute(2, 1, 0)
    t_nc = t.transpose(0, 1).contiguous().transpose(0, 1)
    assert not (p_nc.is_contiguous() or t_nc.is_contiguous())
    for fn in (L.mpjpe, L.p_mpjpe, L.n_mpjpe, L.mean_velocity_error):
        torch.testing.assert_close(fn(p_nc, t_nc), fn(p, t))
    torch.testing.assert_close(L.bone_length_loss(p_nc), L.bone_length_loss(p))


# ----------------------------------------------------------------------------- errors


def test_shape_mismatch_names_the_argument():
    p = torch.zeros(2, 17, 3)
    for fn in (L.mpjpe, L.p_mpjpe, L.n_mpjpe, L.mean_velocity_error):
        with pytest.raises(ValueError, match=r"'target'.*expected \(2, 17, 3\), received \(2, 16, 3\)"):
            fn(p, torch.zeros(2, 16, 3))
    with pytest.raises(ValueError, match=r"'target'.*expected \(2, 17, 3\), received \(2, 16, 3\)"):
        L.weighted_mpjpe(p, torch.zeros(2, 16, 3), torch.ones(2, 17))
    with pytest.raises(ValueError, match=r"'w'.*\(2, 17\).*received \(3, 17\)"):
        L.weighted_mpjpe(p, p, torch.ones(3, 17))
    with pytest.raises(ValueError, match=r"'w'.*\(2, 17\).*received \(2, 17, 3\)"):
        L.weighted_mpjpe(p, p, torch.ones(2, 17, 3))
    with pytest.raises(
        ValueError, match=r"'predicted'.*at least 2 dims \(\.\.\., J, C\), received shape \(3,\)"
    ):
        L.mpjpe(torch.zeros(3), torch.zeros(3))
    with pytest.raises(TypeError, match=r"'target'.*floating.*torch.int64"):
        L.mpjpe(p, torch.zeros(2, 17, 3, dtype=torch.long))
    with pytest.raises(TypeError, match=r"'predicted'.*torch.Tensor.*ndarray"):
        L.mpjpe(np.zeros((2, 17, 3)), p)
    with pytest.raises(ValueError, match=r"'reduction'.*received 'sum'"):
        L.mpjpe(p, p, reduction="sum")


def test_bone_and_velocity_argument_errors():
    seq = torch.zeros(4, 17, 3)
    with pytest.raises(ValueError, match=r"'parents'.*expected 17\), received 16"):
        L.bone_length_loss(seq, L.H36M_PARENTS[:16])
    with pytest.raises(ValueError, match=r"'parents'.*parents\[3\] = 3"):
        L.bone_length_loss(seq, [-1, 0, 1, 3] + list(L.H36M_PARENTS[4:]))
    with pytest.raises(ValueError, match=r"'parents'.*parents\[1\] = 17"):
        L.bone_length_loss(seq, [-1, 17] + list(L.H36M_PARENTS[2:]))
    with pytest.raises(
        ValueError, match=r"'predicted'.*at least 3 dims \(\.\.\., T, J, 3\), received shape \(17, 3\)"
    ):
        L.bone_length_loss(seq[0])
    with pytest.raises(ValueError, match=r"'dim'.*received -2"):
        L.mean_velocity_error(seq, seq, dim=-2)
    with pytest.raises(ValueError, match=r"'dim'.*received 1"):
        L.bone_length_loss(seq, dim=1)
