"""The ``cpu`` backend's kernels beyond the generic tests of tests/ops: bit-for-bit determinism
(across runs and thread counts), extreme logits, masked (-inf) voxels, odd and degenerate shapes,
every reduction with and without weights, real Human3.6M camera distortion against an independent
per-point formula, the clamp and zero-error edge cases of the projection, full float64 gradcheck,
poisoned outputs of the raw kernels, and the 64-bit voxel walk of the CUDA kernels."""

from __future__ import annotations

import math

import pytest
import torch

import fastpose.reference as R
from fastpose import ops
from fastpose.camera import h36m_cameras
from fastpose.ops._spec import SPECS
from tests.native._util import require_ext

pytestmark = pytest.mark.usefixtures("_ext_loaded")


@pytest.fixture
def _ext_loaded():
    require_ext()


@pytest.fixture
def threads():
    """Restores torch's thread count after a test that changes it."""
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _grad_of(fn, x: torch.Tensor, seed: int = 0):
    """Outputs of fn(x) and d(sum_k c_k . out_k)/dx for fixed random cotangents c_k."""
    x = x.detach().clone().requires_grad_(True)
    outs = fn(x)
    outs = outs if isinstance(outs, tuple) else (outs,)
    g = _gen(seed)
    loss = sum((o * torch.randn(o.shape, generator=g, dtype=torch.float64).to(o.dtype)).sum() for o in outs)
    (grad,) = torch.autograd.grad(loss, x)
    return [o.detach() for o in outs], grad


def _volume_case(op: str, seed: int, shape=(2, 3, 24, 40, 41), dtype=torch.float32):
    """(x, fn(backend) -> callable of x) for a volume op; the default shape has two chunks per row."""
    g = _gen(seed)
    b, j, *spatial = shape
    n = len(spatial)
    x = torch.randn(*shape, generator=g, dtype=dtype)
    extent = torch.tensor(spatial[::-1], dtype=torch.float64) - 1
    mu = torch.rand(b, j, n, generator=g, dtype=torch.float64) * extent
    w = torch.rand(b, j, generator=g, dtype=torch.float64) + 0.5
    if op.startswith("soft_argmax_heatmap"):
        fn = getattr(ops, op)
        return x, lambda be: (lambda t: fn(t, mu, 1.5, w, backend=be))
    if op.startswith("heatmap_mse"):
        fn = getattr(ops, op)
        return 0.3 * x + 0.2, lambda be: (lambda t: fn(t, mu, 1.5, w, "none", backend=be))
    fn = getattr(ops, op)
    return x, lambda be: (lambda t: fn(t, backend=be))


def _points_case(seed: int, n=3, t=50, j=17, dtype=torch.float32):
    g = _gen(seed)
    xy = torch.randn(n, t, j, 2, generator=g, dtype=torch.float64) * 0.5
    z = torch.rand(n, t, j, 1, generator=g, dtype=torch.float64) * 4 + 2
    pts = torch.cat([xy * z / 2, z], -1)
    cams = torch.tensor(
        [c.intrinsics(normalized=True).tolist() for c in h36m_cameras("S9")[:n]], dtype=torch.float64
    )[:, None]  # (n, 1, 9) real Human3.6M intrinsics and distortion, one camera per sequence
    kp = R.project_to_2d(pts, cams) + torch.randn(n, t, j, 2, generator=g, dtype=torch.float64) * 0.02
    w = torch.rand(n, t, j, generator=g, dtype=torch.float64) + 0.5
    return pts.to(dtype), cams, kp, w


_VOLUME_OPS = [op for op, spec in SPECS.items() if spec.family != "points"]  # every volume/image op


# ---- determinism ------------------------------------------------------------------------------


@pytest.mark.parametrize("op", [*_VOLUME_OPS, "project_to_2d", "reprojection_loss"])
def test_bitwise_identical_across_runs_and_thread_counts(op, threads):
    if op in _VOLUME_OPS:
        # 2 chunks per row, and enough values in total for the kernels to use both threads
        shape = (2, 3, 30, 40, 41) if SPECS[op].ndim == 3 else (2, 3, 1100, 41)
        x, make = _volume_case(op, 11, shape)
        fn = make("cpu")
    else:
        pts, cams, kp, w = _points_case(11, t=1300)  # 66300 points: 17 chunks, both threads
        x = pts
        fn = ((lambda t: ops.project_to_2d(t, cams, backend="cpu")) if op == "project_to_2d"
              else (lambda t: ops.reprojection_loss(t, cams, kp, w, backend="cpu")))
    results = []
    for n in (2, 2, 1):
        torch.set_num_threads(n)
        results.append(_grad_of(fn, x))
    (out0, g0) = results[0]
    for outs, grad in results[1:]:
        for a, b in zip(out0, outs, strict=True):
            assert torch.equal(a, b), f"{op}: output differs between runs / thread counts"
        assert torch.equal(g0, grad), f"{op}: gradient differs between runs / thread counts"


# ---- extreme and masked logits ------------------------------------------------------------------


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_extreme_logits_are_finite_and_exact(dtype):
    g = _gen(3)
    x = (torch.randint(0, 2, (2, 17, 6, 7, 9), generator=g) * 2 - 1).to(dtype) * 1e4  # +-1e4
    x += torch.randn(x.shape, generator=g, dtype=dtype)  # near-ties among the +1e4 voxels
    out, grad = _grad_of(lambda t: ops.soft_argmax_3d(t, backend="cpu"), x)
    exp_out, exp_grad = _grad_of(R.soft_argmax_3d, x.double())
    assert torch.isfinite(out[0]).all() and torch.isfinite(grad).all()
    torch.testing.assert_close(out[0].double(), exp_out[0], atol=1e-4, rtol=1e-5)
    torch.testing.assert_close(grad.double(), exp_grad, atol=1e-6, rtol=1e-5)
    # one voxel 50 above all others: the softmax is one-hot, coords are exactly that voxel
    idx = torch.randint(0, 6 * 7 * 9, (2, 17), generator=g)
    x.flatten(2).scatter_(-1, idx[..., None], 1e4 + 50)
    out = ops.soft_argmax_3d(x, backend="cpu")
    expect = torch.stack([idx % 9, (idx // 9) % 7, idx // 63], -1).to(dtype)
    torch.testing.assert_close(out, expect, atol=1e-12, rtol=0)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_extreme_logits_fused_head(dtype):
    g = _gen(4)
    x = torch.randn(2, 18, 5, 6, 7, generator=g, dtype=dtype) * 1e4
    mu = torch.rand(2, 18, 3, generator=g, dtype=torch.float64) * 4
    fn = lambda be: (lambda t: ops.soft_argmax_heatmap_mse_3d(t, mu, 2.0, backend=be))  # noqa: E731
    out, grad = _grad_of(fn("cpu"), x)
    exp_out, exp_grad = _grad_of(fn("reference"), x.double())
    for o, e in zip(out, exp_out, strict=True):
        assert torch.isfinite(o).all()
        torch.testing.assert_close(o.double(), e, rtol=1e-5, atol=1e-4)
    assert torch.isfinite(grad).all()
    torch.testing.assert_close(grad.double(), exp_grad, rtol=1e-5, atol=1e-9)


def test_masked_voxels_are_ignored():
    """-inf logits (a mask) contribute p = 0, including whole leading chunks of -inf."""
    g = _gen(5)
    x = torch.randn(1, 2, 30, 40, 41, generator=g, dtype=torch.float64)
    x[:, :, :25] = float("-inf")  # the first chunk of each row is entirely masked
    x[:, 1, 27:, :, 5:] = float("-inf")
    out, grad = _grad_of(lambda t: ops.soft_argmax_3d(t, backend="cpu"), x)
    keep = torch.isfinite(x)
    exp_out, exp_grad = _grad_of(R.soft_argmax_3d, torch.where(keep, x, torch.full_like(x, -1e30)))
    torch.testing.assert_close(out[0], exp_out[0], rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(grad, exp_grad, rtol=1e-12, atol=1e-15)
    assert (grad[~keep] == 0).all()


# ---- shapes, reductions, weights ------------------------------------------------------------------


@pytest.mark.parametrize("shape", [(1, 1, 1, 1, 1), (2, 3, 1, 1, 17), (1, 2, 5, 1, 1), (1, 1, 3, 9, 1),
                                   (1, 2, 2, 3, 70000)], ids=str)
@pytest.mark.parametrize("op", ["soft_argmax_3d", "heatmap_mse_3d", "soft_argmax_heatmap_mse_3d"])
def test_degenerate_and_wide_volumes(op, shape):
    x, make = _volume_case(op, sum(shape), shape, dtype=torch.float64)
    out, grad = _grad_of(make("cpu"), x)
    exp_out, exp_grad = _grad_of(make("reference"), x)
    for o, e in zip(out, exp_out, strict=True):
        torch.testing.assert_close(o, e, rtol=1e-9, atol=1e-10)
    torch.testing.assert_close(grad, exp_grad, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("ndim", [2, 3])
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("weighted", [False, True], ids=["unweighted", "weighted"])
def test_heatmap_reductions_and_weights(ndim, reduction, weighted):
    g = _gen(ndim * 10 + len(reduction))
    spatial = (7, 8, 9)[-ndim:]
    h = torch.rand(3, 18, *spatial, generator=g, dtype=torch.float32)
    mu = torch.rand(3, 18, ndim, generator=g) * (torch.tensor(spatial[::-1]) - 1)
    w = torch.rand(3, 18, generator=g) + 0.5 if weighted else None
    fn = getattr(ops, f"heatmap_mse_{ndim}d")
    out, grad = _grad_of(lambda t: fn(t, mu, 1.1, w, reduction, backend="cpu"), h)
    exp_out, exp_grad = _grad_of(lambda t: fn(t, mu.double(), 1.1, None if w is None else w.double(), reduction,
                                              backend="reference"), h.double())
    assert out[0].shape == exp_out[0].shape and out[0].dtype == torch.float32
    # float32 kernel vs float64 reference: h - t cancels, so the bound is absolute at float32 eps
    torch.testing.assert_close(out[0].double(), exp_out[0], rtol=2e-5, atol=1e-7)
    torch.testing.assert_close(grad.double(), exp_grad, rtol=2e-5, atol=1e-6 * exp_grad.abs().max().item())


def test_fused_head_gradient_of_each_output_alone():
    """Only coords or only the MSE used: the unused gradient is skipped, not taken as zero-filled."""
    g = _gen(8)
    x = torch.randn(2, 17, 6, 7, 8, generator=g, dtype=torch.float64, requires_grad=True)
    mu = torch.rand(2, 17, 3, generator=g, dtype=torch.float64) * 5
    for pick in (0, 1):
        out = ops.soft_argmax_heatmap_mse_3d(x, mu, 1.4, backend="cpu")[pick]
        ref = ops.soft_argmax_heatmap_mse_3d(x, mu, 1.4, backend="reference")[pick]
        cot = torch.randn(out.shape, generator=g, dtype=torch.float64)
        (ga,) = torch.autograd.grad(out, x, cot)
        (gb,) = torch.autograd.grad(ref, x, cot)
        torch.testing.assert_close(ga, gb, rtol=1e-10, atol=1e-13)


# ---- projection ------------------------------------------------------------------------------------


def _naive_projection(p, cam):
    """VideoPose3D's formula written per point with Python floats (independent of both backends)."""
    fx, fy, cx, cy, k1, k2, k3, pa, pb = cam
    u = min(max(p[0] / p[2], -1.0), 1.0)
    v = min(max(p[1] / p[2], -1.0), 1.0)
    r2 = u * u + v * v
    radial = 1 + k1 * r2 + k2 * r2**2 + k3 * r2**3
    tan = pa * u + pb * v
    return fx * (u * (radial + tan) + pa * r2) + cx, fy * (v * (radial + tan) + pb * r2) + cy


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_projection_with_real_h36m_cameras(dtype):
    pts, cams, kp, w = _points_case(21, n=4, t=9, dtype=dtype)
    out = ops.project_to_2d(pts, cams, backend="cpu")
    assert out.dtype == dtype and out.shape == (4, 9, 17, 2)
    tol = 1e-12 if dtype == torch.float64 else 2e-6
    for n in range(4):
        cam = cams[n, 0].tolist()
        for t in (0, 4, 8):
            for j in range(0, 17, 4):
                exp = _naive_projection(pts[n, t, j].double().tolist(), cam)
                assert math.isclose(out[n, t, j, 0].item(), exp[0], rel_tol=tol, abs_tol=tol)
                assert math.isclose(out[n, t, j, 1].item(), exp[1], rel_tol=tol, abs_tol=tol)
    # gradients against the reference (autograd through the formula), one camera per sequence
    o1, g1 = _grad_of(lambda t: ops.project_to_2d(t, cams, backend="cpu"), pts)
    o2, g2 = _grad_of(lambda t: R.project_to_2d(t, cams), pts.double())
    torch.testing.assert_close(g1.double(), g2, rtol=tol * 10, atol=tol * 10)


def test_projection_clamp_boundaries():
    """Beyond |xy/z| = 1 the clamp passes no gradient; exactly at the bound it passes (torch.clamp)."""
    cam = torch.tensor(h36m_cameras("S11")[2].intrinsics(normalized=True).tolist(), dtype=torch.float64)
    pts = torch.tensor([[[3.0, 0.5, 2.0], [2.0, -0.5, 2.0], [-2.0, 2.0, 2.0], [0.3, -5.0, 2.0]]],
                       dtype=torch.float64)
    out, grad = _grad_of(lambda t: ops.project_to_2d(t, cam, backend="cpu"), pts)
    exp_out, exp_grad = _grad_of(lambda t: R.project_to_2d(t, cam), pts)
    torch.testing.assert_close(out[0], exp_out[0], rtol=1e-14, atol=1e-14)
    torch.testing.assert_close(grad, exp_grad, rtol=1e-12, atol=1e-14)
    assert grad[0, 0, 0] == 0 and grad[0, 3, 1] == 0  # clamped coordinates
    assert grad[0, 1, 0] != 0  # x / z == 1 exactly: inside


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_reprojection_gradient_is_zero_at_zero_error(dtype):
    pts, cams, _kp, w = _points_case(22, n=2, t=3, dtype=dtype)
    kp = ops.project_to_2d(pts, cams, backend="cpu").to(torch.float64)  # exactly the projection
    p = pts.clone().requires_grad_(True)
    loss = ops.reprojection_loss(p, cams, kp, w, backend="cpu")
    loss.backward()
    assert loss.item() == 0.0
    assert torch.isfinite(p.grad).all() and (p.grad == 0).all()


def test_reprojection_with_real_cameras_matches_reference():
    pts, cams, kp, w = _points_case(23, n=4, t=31, dtype=torch.float64)
    for weights in (None, w):
        o1, g1 = _grad_of(lambda t, wt=weights: ops.reprojection_loss(t, cams, kp, wt, backend="cpu"), pts)
        o2, g2 = _grad_of(lambda t, wt=weights: R.reprojection_loss(t, cams, kp, wt), pts)
        torch.testing.assert_close(o1[0], o2[0], rtol=1e-12, atol=1e-14)
        torch.testing.assert_close(g1, g2, rtol=1e-10, atol=1e-14)


def test_single_camera_serves_all_points():
    pts, cams, kp, w = _points_case(24, n=2, t=4, dtype=torch.float64)
    out = ops.project_to_2d(pts, cams[0, 0], backend="cpu")  # camera (9,)
    torch.testing.assert_close(out, R.project_to_2d(pts, cams[0, 0]), rtol=1e-13, atol=1e-14)


# ---- float64 gradcheck (full, not fast mode) ------------------------------------------------------


def _gradcheck(fn, x):
    assert torch.autograd.gradcheck(fn, (x.requires_grad_(True),), atol=1e-7, rtol=1e-5)


def test_gradcheck_soft_argmax():
    g = _gen(31)
    _gradcheck(lambda t: ops.soft_argmax_2d(t, backend="cpu"), torch.randn(1, 2, 3, 5, generator=g,
                                                                            dtype=torch.float64))
    _gradcheck(lambda t: ops.soft_argmax_3d(t, backend="cpu"), torch.randn(1, 2, 2, 3, 4, generator=g,
                                                                            dtype=torch.float64))


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_gradcheck_heatmap_mse(reduction):
    g = _gen(32)
    mu = torch.rand(1, 2, 3, generator=g, dtype=torch.float64) * 2
    w = torch.rand(1, 2, generator=g, dtype=torch.float64) + 0.5
    x = torch.rand(1, 2, 2, 3, 4, generator=g, dtype=torch.float64)
    _gradcheck(lambda t: ops.heatmap_mse_3d(t, mu, 0.9, w, reduction, backend="cpu"), x)
    _gradcheck(lambda t: ops.heatmap_mse_2d(t, mu[..., :2], 0.9, None, reduction, backend="cpu"), x[:, :, 0])


def test_gradcheck_fused_head():
    g = _gen(33)
    mu = torch.rand(1, 2, 3, generator=g, dtype=torch.float64) * 2
    w = torch.rand(1, 2, generator=g, dtype=torch.float64) + 0.5
    x = torch.randn(1, 2, 2, 3, 4, generator=g, dtype=torch.float64)
    _gradcheck(lambda t: ops.soft_argmax_heatmap_mse_3d(t, mu, 1.2, w, backend="cpu"), x)


def test_gradcheck_projection_and_loss():
    pts, cams, kp, w = _points_case(34, n=2, t=2, j=3, dtype=torch.float64)
    _gradcheck(lambda t: ops.project_to_2d(t, cams, backend="cpu"), pts.clone())
    _gradcheck(lambda t: ops.reprojection_loss(t, cams, kp, w, backend="cpu"), pts.clone())


# ---- the raw kernels write every output value -------------------------------------------------------


def test_raw_kernels_overwrite_poisoned_outputs():
    C = require_ext()
    g = _gen(41)
    x = torch.randn(6, 5, 7, 33, generator=g)
    coords = torch.full((6, 3), float("nan"))
    stats = torch.full((6, 5), float("nan"))
    C.soft_argmax_forward_cpu(0, x.data_ptr(), 6, 5, 7, 33, 3, coords.data_ptr(), stats.data_ptr(), 2)
    assert torch.isfinite(coords).all() and torch.isfinite(stats).all()
    grad = torch.full_like(x, float("nan"))
    gc = torch.randn(6, 3, generator=g)
    C.soft_argmax_backward_cpu(0, gc.data_ptr(), x.data_ptr(), stats.data_ptr(), 6, 5, 7, 33, 3, grad.data_ptr(), 2)
    assert torch.isfinite(grad).all()
    mu = torch.rand(6, 3, generator=g) * 4
    loss_rows = torch.full((6,), float("nan"))
    C.heatmap_mse_forward_cpu(0, x.data_ptr(), 6, 5, 7, 33, 3, mu.data_ptr(), 1.0, 0, loss_rows.data_ptr(), 2)
    assert torch.isfinite(loss_rows).all()
    grad_loss = torch.randn(6, generator=g)  # per row ("none"), grad_stride 1
    grad = torch.full_like(x, float("nan"))
    C.heatmap_mse_backward_cpu(0, grad_loss.data_ptr(), 1, x.data_ptr(), 6, 5, 7, 33, 3, mu.data_ptr(), 1.0, 0,
                               0.5, grad.data_ptr(), 2)
    assert torch.isfinite(grad).all()


# ---- 64-bit voxel walk of the CUDA kernels (runs on the host: same header) --------------------------


@pytest.mark.parametrize("dims", [(2048, 2048, 2048), (1, 3, 1_000_000_007), (3, 1_000_003, 997), (1300, 1, 1300),
                                  (5, 7, 1)], ids=str)
def test_volume_walk_matches_division_beyond_2_31(dims):
    C = require_ext()
    d, h, w = dims
    n = d * h * w
    g = _gen(sum(dims) % 1000)
    for step in (1, 256 * 4, 256 * 8, 12345):
        count = min(5000, n // step)
        # start near the end of the volume: offsets far beyond 2^31 in the big volumes
        start = max(0, n - count * step - int(torch.randint(0, 1000, (1,), generator=g)))
        if n > 2**32:
            assert start > 2**31
        got = C.volume_walk(d, h, w, start, step, count)
        assert len(got) == count
        for k in range(0, count, 7):
            line, x = divmod(start + k * step, w)
            z, y = divmod(line, h)
            assert got[k] == (x, y, z), (dims, start, step, k)
