"""The ``cuda`` backend (csrc/**/*.cu through fastpose._C) on a real GPU.

Every op against the reference (forward and gradient; float32/float64 tight, float16/bfloat16 by
the 2x rule of tests/_tolerances.py) at the seed shapes and at odd shapes (the unvectorised path)
and B=1 (many chunks per row); bit-for-bit reproducibility; a side stream; CUDA-graph capture of
forward+backward (no host synchronisation); torch.compile(fullgraph=True); opcheck; and 64-bit
indexing on a volume of more than 2^31 values. Skipped without CUDA or without a CUDA build.
"""

from __future__ import annotations

import pytest
import torch

import fastpose.reference as R
from fastpose import ops
from fastpose.ops import _spec
from fastpose.ops._dispatch import available_backends, load_errors
from tests._tolerances import assert_close, assert_low_precision

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU"),
    pytest.mark.skipif("cuda" not in available_backends("soft_argmax_3d"),
                       reason=f"cuda backend not registered: {load_errors().get('cuda')}"),
]

DEV = "cuda"
SIGMA = 2.0
H36M_CAMERA = [2.290099, 2.2875624, 0.02508307, 0.0289107, -0.20709892, 0.24777518, -0.00307515, -0.0009757,
               -0.00142447]


def _gen(seed: int) -> torch.Generator:
    return torch.Generator(device=DEV).manual_seed(seed)


def _volume(seed, shape, dtype):
    gen = _gen(seed)
    b, j, *spatial = shape
    x = torch.randn(*shape, generator=gen, device=DEV, dtype=torch.float32).to(dtype)
    extent = torch.tensor(spatial[::-1], device=DEV, dtype=torch.float32) - 1
    mu = torch.rand(b, j, len(spatial), generator=gen, device=DEV) * extent
    w = torch.rand(b, j, generator=gen, device=DEV) + 0.5
    return x, mu, w


def _points(seed, n, t, j, dtype):
    gen = _gen(seed)
    xy = torch.randn(n, t, j, 2, generator=gen, device=DEV) * 0.4
    z = torch.rand(n, t, j, 1, generator=gen, device=DEV) * 3 + 2
    pts = torch.cat([xy * z, z], -1)
    pts[..., 0, 0] = pts[..., 0, 2] * 1.5  # clamped points
    cam = torch.tensor(H36M_CAMERA, device=DEV).expand(n, 1, 9).clone()  # one per sequence, broadcast over t
    cam[..., :4] += torch.randn(n, 1, 4, generator=gen, device=DEV) * 0.01
    kp = R.project_to_2d(pts, cam) + torch.randn(n, t, j, 2, generator=gen, device=DEV) * 0.02
    w = torch.rand(n, t, j, generator=gen, device=DEV) + 0.5
    return pts.to(dtype), cam, kp, w


_SEED_SHAPES = {"volume": (4, 18, 64, 64, 64), "image": (32, 18, 64, 64)}


def _case(op, seed, dtype, shape=None):
    """(x, fn(x, backend) -> outputs tuple) at the seed shapes (or ``shape`` for volume / image ops),
    the arguments in the order of the op's declaration (fastpose/ops/_spec.py)."""
    spec = _spec.spec(op)
    if spec.family == "points":
        x, cam, kp, w = _points(seed, 64, 243, 17, dtype)
        named = {"camera": cam, "keypoints_2d": kp, "weights": w}
    else:
        x, mu, w = _volume(seed, shape or _SEED_SHAPES[spec.family], dtype)
        if spec.main.name == "heatmaps":
            x = (x.float() * 0.3 + 0.2).to(dtype)
        named = {"joints": mu, "sigma": SIGMA, "weights": w, "reduction": "none"}
    args = tuple(named[a.name] for a in spec.args[1:])
    fn = getattr(ops, op)

    def call(t, be):
        out = fn(t, *args, backend=be)
        return tuple(out) if isinstance(out, (tuple, list)) else (out,)

    return x, call


def _run(fn, x, backend, seed=0):
    """Outputs and d(sum_k c_k . out_k)/dx with fixed random cotangents."""
    x = x.detach().clone().requires_grad_(True)
    outs = fn(x, backend)
    g = _gen(seed)
    loss = sum((o.float() * torch.randn(o.shape, generator=g, device=DEV)).sum() for o in outs)
    (grad,) = torch.autograd.grad(loss, x)
    return [o.detach() for o in outs], grad


OPS = list(_spec.SPECS)  # every declared op
VOLUME_OPS = [op for op, s in _spec.SPECS.items() if s.family == "volume"]


@pytest.mark.parametrize("op", OPS)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["float32", "float64"])
def test_matches_reference(op, dtype):
    x, fn = _case(op, 1, dtype)
    out, grad = _run(fn, x, "cuda")
    exp_out, exp_grad = _run(fn, x.double(), "reference")
    for o, e in zip(out, exp_out, strict=True):
        assert o.dtype == dtype
        assert_close(o, e, dtype, f"{op}[cuda] output")
    assert_close(grad, exp_grad, dtype, f"{op}[cuda] gradient")


@pytest.mark.parametrize("op", VOLUME_OPS)
@pytest.mark.parametrize("shape", [(3, 17, 13, 21, 33), (1, 18, 64, 64, 64), (2, 17, 1, 1, 5)], ids=str)
def test_odd_and_single_batch_volumes(op, shape):
    x, fn = _case(op, 2, torch.float32, shape)
    out, grad = _run(fn, x, "cuda")
    exp_out, exp_grad = _run(fn, x.double(), "reference")
    for o, e in zip(out, exp_out, strict=True):
        assert_close(o, e, torch.float32, f"{op}[cuda] {shape} output")
    assert_close(grad, exp_grad, torch.float32, f"{op}[cuda] {shape} gradient")


@pytest.mark.parametrize("op", OPS)
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16], ids=["float16", "bfloat16"])
def test_low_precision(op, dtype):
    x, fn = _case(op, 3, dtype)
    exp_out, exp_grad = _run(fn, x.double(), "reference")
    ref_out, ref_grad = _run(fn, x, "reference")
    out, grad = _run(fn, x, "cuda")
    for o, r, e in zip(out, ref_out, exp_out, strict=True):
        assert o.dtype == dtype
        assert_low_precision(o, r, e, f"{op}[cuda] {dtype} output")
    assert grad.dtype == dtype
    assert_low_precision(grad, ref_grad, exp_grad, f"{op}[cuda] {dtype} gradient")


@pytest.mark.parametrize("op", ["project_to_2d", "reprojection_loss"])
@pytest.mark.parametrize("cam_shape", [(64, 1), (243,), (), (64, 243), (1, 243)], ids=str)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16], ids=["float32", "float16"])
def test_camera_broadcast_forms(op, cam_shape, dtype):
    """Cameras broadcast like torch on CUDA (index map, never expanded): same per-point bits as the
    explicitly expanded camera, and the reference's values (issue 13)."""
    pts, _cam, kp, w = _points(5, 64, 243, 17, dtype)
    cam = torch.tensor(H36M_CAMERA, device=DEV).expand(*cam_shape, 9).clone()
    cam[..., :4] += torch.randn(*cam_shape, 4, generator=_gen(6), device=DEV) * 0.01

    def call(c):
        return (lambda t, be: (ops.project_to_2d(t, c, backend=be),)) if op == "project_to_2d" else (
            lambda t, be: (ops.reprojection_loss(t, c, kp, w, backend=be),))

    out, grad = _run(call(cam), pts, "cuda")
    full_out, full_grad = _run(call(cam.expand(64, 243, 9).contiguous()), pts, "cuda")
    exp_out, exp_grad = _run(call(cam), pts.double(), "reference")
    assert torch.equal(grad, full_grad), f"{op}[cuda] camera {cam_shape}: gradient differs from the expanded camera"
    for o, f, e in zip(out, full_out, exp_out, strict=True):
        if op == "project_to_2d":
            assert torch.equal(o, f), f"{op}[cuda] camera {cam_shape}: output differs from the expanded camera"
        if dtype == torch.float32:
            assert_close(o, e, dtype, f"{op}[cuda] camera {cam_shape} output")
    if dtype == torch.float32:
        assert_close(grad, exp_grad, dtype, f"{op}[cuda] camera {cam_shape} gradient")


@pytest.mark.parametrize("op", OPS)
def test_bitwise_reproducible(op):
    x, fn = _case(op, 4, torch.float32)
    out1, g1 = _run(fn, x, "cuda")
    out2, g2 = _run(fn, x, "cuda")
    for a, b in zip(out1, out2, strict=True):
        assert torch.equal(a, b), f"{op}[cuda]: output differs between runs"
    assert torch.equal(g1, g2), f"{op}[cuda]: gradient differs between runs"


def test_extreme_logits():
    gen = _gen(5)
    x = torch.randn(4, 18, 32, 32, 32, generator=gen, device=DEV) * 1e4
    mu = torch.rand(4, 18, 3, generator=gen, device=DEV) * 31
    fn = lambda t, be: ops.soft_argmax_heatmap_mse_3d(t, mu, SIGMA, backend=be)  # noqa: E731
    out, grad = _run(fn, x, "cuda")
    exp_out, exp_grad = _run(fn, x.double(), "reference")
    for o, e in zip(out, exp_out, strict=True):
        assert torch.isfinite(o).all()
        torch.testing.assert_close(o.double(), e, rtol=1e-5, atol=1e-4)
    assert torch.isfinite(grad).all()


def test_side_stream():
    x, fn = _case("soft_argmax_heatmap_mse_3d", 6, torch.float32)
    exp_out, exp_grad = _run(fn, x, "cuda")
    s = torch.cuda.Stream()
    s.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(s):
        out, grad = _run(fn, x, "cuda")
    torch.cuda.current_stream().wait_stream(s)
    for a, b in zip(out, exp_out, strict=True):
        assert torch.equal(a, b)
    assert torch.equal(grad, exp_grad)


@pytest.mark.parametrize("op", OPS)
def test_cuda_graph_capture(op):
    """Forward + backward captured in a CUDA graph: possible only without host synchronisation."""
    x, fn = _case(op, 7, torch.float32)
    static_x = x.detach().clone().requires_grad_(True)

    def step():
        outs = fn(static_x, "cuda")
        loss = sum(o.float().sum() for o in outs)
        (g,) = torch.autograd.grad(loss, static_x)
        return [o.detach() for o in outs], g

    s = torch.cuda.Stream()
    s.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(s):
        for _ in range(2):  # warm-up outside the capture
            step()
    torch.cuda.current_stream().wait_stream(s)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        static_out, static_grad = step()
    new_x = x * 0.5 + 0.1
    with torch.no_grad():
        static_x.copy_(new_x)
    graph.replay()
    torch.cuda.synchronize()
    exp_out, exp_grad = step()
    for a, b in zip(static_out, exp_out, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(static_grad, exp_grad, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("op", OPS)
def test_compile_fullgraph(op):
    x, fn = _case(op, 8, torch.float32)
    compiled = torch.compile(lambda t: fn(t, "cuda"), fullgraph=True)
    out, grad = _run(lambda t, be: compiled(t), x, "cuda")
    exp_out, exp_grad = _run(fn, x, "cuda")
    for a, b in zip(out, exp_out, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(grad, exp_grad, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("op", OPS)
def test_opcheck(op):
    shape = {"volume": (2, 17, 5, 6, 7), "image": (2, 17, 9, 11)}.get(_spec.spec(op).family)
    x, fn = _case(op, 9, torch.float32, shape)
    captured = []

    class _Capture(torch.utils._python_dispatch.TorchDispatchMode):
        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            if func.namespace == "fastpose":
                captured.append((func, args, kwargs or {}))
            return func(*args, **(kwargs or {}))

    with _Capture():
        _run(fn, x, "cuda")
    assert captured
    for func, args, kwargs in {c[0]: c for c in captured}.values():
        differentiable = not func.name().endswith("_backward")
        args = tuple(a.detach().clone().requires_grad_(a.requires_grad and differentiable)
                     if isinstance(a, torch.Tensor) else a for a in args)
        torch.library.opcheck(func, args, kwargs)


def _free_gib() -> float:
    free, _total = torch.cuda.mem_get_info()
    return free / 2**30


def test_volume_beyond_2_31_values():
    """One (b, j) volume of 1300^3 > 2^31 values (bfloat16): offsets need 64 bits."""
    d = 1300
    if _free_gib() < 24:
        pytest.skip("needs ~24 GiB of free GPU memory")
    x = torch.full((1, 1, d, d, d), -60.0, device=DEV, dtype=torch.bfloat16)
    peak = (d - 2, d - 3, d - 5)  # (x, y, z), at a linear offset > 2^31
    assert (peak[2] * d + peak[1]) * d + peak[0] > 2**31
    x[0, 0, peak[2], peak[1], peak[0]] = 0.0
    x.requires_grad_(True)
    coords, stats = torch.ops.fastpose.soft_argmax_3d_cuda(x)
    # stats = [m, log s, cx, cy, cz] in float32 (the bfloat16 coords are spaced 8 apart near 1300)
    torch.testing.assert_close(stats[0, 0, 2:].cpu(), torch.tensor(peak, dtype=torch.float32), rtol=0, atol=1e-3)
    assert stats[0, 0, 0].item() == 0.0 and abs(stats[0, 0, 1].item()) < 1e-6  # m = 0, s = 1 + 2e-17
    (grad,) = torch.autograd.grad(coords.float().sum(), x)
    # p is ~1 at the peak and ~exp(-60) elsewhere: the gradient is ~0 everywhere, finite
    assert torch.isfinite(grad[0, 0, peak[2]]).all()
    del grad, coords
    # heatmap MSE of a zero volume: sum t^2 = prod over axes of sum_i g(i)^2 (the factorisation)
    mu = torch.tensor([[[1000.3, 700.6, 1200.2]]], device=DEV)
    h = torch.zeros((1, 1, d, d, d), device=DEV, dtype=torch.bfloat16)
    loss = ops.heatmap_mse_3d(h, mu, 3.0, None, "sum", backend="cuda")
    idx = torch.arange(d, device=DEV, dtype=torch.float64)
    expect = 1.0
    for k in range(3):
        expect *= torch.exp(-((idx - mu[0, 0, k].double()) ** 2) / (2 * 9.0)).pow(2).sum().item()
    assert abs(loss.float().item() - expect) <= 1e-2 * expect


# ---- issue 12: recomputed loss gradients (no volume-sized saved state), accuracy near convergence ----


@pytest.mark.parametrize("reduction", ["none", "sum", "mean"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=["float32", "bfloat16"])
def test_heatmap_mse_recomputed_gradient_per_reduction(reduction, dtype):
    """The CUDA backward recomputes 2 w (h - t) / N with one incoming gradient per (b, j) for
    "none" (grad_stride 1) and one for "mean"/"sum" (grad_stride 0)."""
    x, mu, w = _volume(21, (2, 17, 9, 10, 12), dtype)
    x = x.requires_grad_(True)
    loss = ops.heatmap_mse_3d(x, mu, SIGMA, w, reduction, backend="cuda")
    g = torch.rand(loss.shape, generator=_gen(22), device=DEV).to(dtype)
    (grad,) = torch.autograd.grad(loss, x, g)
    expected = R.heatmap_mse_backward(g.double(), x.detach().double(), mu.double(), SIGMA, w.double(), reduction)
    assert grad.dtype == dtype
    assert_close(grad.double(), expected, dtype, f"heatmap_mse_3d[cuda] {reduction} gradient")


@pytest.mark.parametrize("backend", ["cuda", "triton"])
@pytest.mark.parametrize("op", ["heatmap_mse_3d", "soft_argmax_heatmap_mse_3d"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=["float32", "bfloat16"])
def test_forward_backward_peak_memory_is_one_volume(backend, op, dtype):
    """Forward + backward allocate the gradient (one input-sized volume) and (B, J)-sized buffers
    only: nothing of the volume's size is saved between the passes (docs/ops.md, "Saved state")."""
    if backend not in available_backends(op):
        pytest.skip(f"{backend} not available")
    x, mu, w = _volume(23, (8, 18, 32, 32, 32), dtype)

    def step():
        xr = x.detach().requires_grad_(True)
        if op == "heatmap_mse_3d":
            loss = ops.heatmap_mse_3d(xr, mu, SIGMA, w, backend=backend)
        else:
            coords, mse = ops.soft_argmax_heatmap_mse_3d(xr, mu, SIGMA, w, backend=backend)
            loss = coords.float().sum() + mse
        loss.backward()
        return xr.grad

    step()  # warm-up (autotuning, workspaces)
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    base = torch.cuda.memory_allocated()
    grad = step()
    torch.cuda.synchronize()
    peak = torch.cuda.max_memory_allocated() - base
    volume = x.numel() * x.element_size()
    assert grad is not None and peak <= 1.05 * volume + (1 << 20), f"{op}[{backend}] {dtype}: {peak / volume:.3f} volumes"


@pytest.mark.parametrize("backend", ["cuda", "triton"])
def test_heatmap_mse_near_convergence(backend):
    """Direct differences on the GPU: relative error <= 1e-3 down to MSE = 1e-10 (64^3, sigma = 2)."""
    if backend not in available_backends("heatmap_mse_3d"):
        pytest.skip(f"{backend} not available")
    g = torch.arange(64, device=DEV, dtype=torch.float64)
    zz, yy, xx = torch.meshgrid(g, g, g, indexing="ij")
    mu = torch.tensor([[[30.3, 33.7, 29.1]]], device=DEV, dtype=torch.float64)
    t = torch.exp(-((xx - mu[0, 0, 0]) ** 2 + (yy - mu[0, 0, 1]) ** 2 + (zz - mu[0, 0, 2]) ** 2) / 8.0)[None, None]
    for level in (1e-4, 1e-6, 1e-8, 1e-10):
        h = (t + level**0.5 * torch.randn(t.shape, generator=_gen(24), device=DEV, dtype=torch.float64)).float()
        exact = ((h.double() - t) ** 2).mean().item()
        for got in (ops.heatmap_mse_3d(h, mu.float(), 2.0, backend=backend).item(),
                    ops.soft_argmax_heatmap_mse_3d(h, mu.float(), 2.0, backend=backend)[1].item()):
            assert abs(got - exact) <= 1e-3 * exact, f"{backend} at MSE {exact:.3g}: {got:.6g}"
