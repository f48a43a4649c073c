"""Triton backend on a real GPU, at the seed sizes of the benchmarks (benchmarks/; the op contract is docs/ops.md).

Volumetric head: B=32, J=18, D=H=W=64; 2D heatmaps: B=32, J=18, 64x64; lifting: 1024 windows
of 243 frames, J=17. Every op against the reference (forward and gradient; low precision by the
2x rule), the split (two-stage) path with B=1, bitwise reproducibility, torch.compile with
Inductor through the triton_ops, CUDA-graph capture (no host synchronisation), and opcheck.
Skipped without CUDA.
"""

from __future__ import annotations

import importlib

import pytest
import torch

import fastpose.reference as R
from fastpose import ops
from tests._tolerances import assert_close, assert_low_precision

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU"),
]

DEV = "cuda"
SIGMA = 2.0


def _kernels():
    pytest.importorskip("triton")
    try:
        return importlib.import_module("fastpose.kernels")
    except ModuleNotFoundError:
        return importlib.import_module("kernels")


def _gen(seed: int) -> torch.Generator:
    return torch.Generator(device=DEV).manual_seed(seed)


def _volume_inputs(seed, shape, dtype):
    gen = _gen(seed)
    b, j, *spatial = shape
    x = torch.randn(*shape, generator=gen, device=DEV, dtype=torch.float32).to(dtype)
    extent = torch.tensor(spatial[::-1], device=DEV, dtype=torch.float32) - 1
    mu = torch.rand(b, j, len(spatial), generator=gen, device=DEV) * extent
    w = torch.rand(b, j, generator=gen, device=DEV) + 0.5
    return x, mu, w


def _grad(fn, x, cotangents):
    """Outputs and d(sum_k c_k . out_k)/dx."""
    x = x.detach().clone().requires_grad_(True)
    outs = fn(x)
    outs = outs if isinstance(outs, tuple) else (outs,)
    loss = sum((o.float() * c).sum() for o, c in zip(outs, cotangents, strict=True))
    (g,) = torch.autograd.grad(loss, x)
    return [o.detach() for o in outs], g


def _check(op_name, fast, ref, x, dtype, cot):
    out, grad = _grad(fast, x, cot)
    if dtype == torch.float32:
        ref_out, ref_grad = _grad(ref, x, cot)
        for k, (o, r) in enumerate(zip(out, ref_out, strict=True)):
            assert o.dtype == dtype
            assert_close(o, r, torch.float32, f"{op_name} output {k}")
        assert_close(grad, ref_grad, torch.float32, f"{op_name} gradient")
    else:
        ref_out, ref_grad = _grad(ref, x, cot)  # reference in the same low precision
        exp_out, exp_grad = _grad(ref, x.double(), cot)  # float64 on the rounded inputs
        for k, (o, r, e) in enumerate(zip(out, ref_out, exp_out, strict=True)):
            assert o.dtype == dtype
            assert_low_precision(o, r, e, f"{op_name} {dtype} output {k}")
        assert_low_precision(grad, ref_grad, exp_grad, f"{op_name} {dtype} gradient")


DTYPES = [torch.float32, torch.float16, torch.bfloat16]
IDS = ["float32", "float16", "bfloat16"]


@pytest.mark.parametrize("dtype", DTYPES, ids=IDS)
def test_fused_head_seed_size(dtype):
    x, mu, w = _volume_inputs(1, (32, 18, 64, 64, 64), dtype)
    cot = (torch.randn(32, 18, 3, device=DEV), torch.tensor(3.0, device=DEV))
    _check("soft_argmax_heatmap_mse_3d",
           lambda t: ops.soft_argmax_heatmap_mse_3d(t, mu, SIGMA, w, backend="triton"),
           lambda t: R.soft_argmax_heatmap_mse.soft_argmax_heatmap_mse_3d(t, mu, SIGMA, w), x, dtype, cot)


@pytest.mark.parametrize("dtype", DTYPES, ids=IDS)
def test_fused_2d_head_seed_size(dtype):
    """The 2D head (the 3D kernels with D = 1) at the 2D seed shape B=32, J=18, 64x64."""
    x, mu, w = _volume_inputs(11, (32, 18, 64, 64), dtype)
    cot = (torch.randn(32, 18, 2, device=DEV), torch.tensor(3.0, device=DEV))
    _check("soft_argmax_heatmap_mse_2d",
           lambda t: ops.soft_argmax_heatmap_mse_2d(t, mu, SIGMA, w, backend="triton"),
           lambda t: R.soft_argmax_heatmap_mse.soft_argmax_heatmap_mse_2d(t, mu, SIGMA, w), x, dtype, cot)


@pytest.mark.parametrize("dtype", DTYPES, ids=IDS)
def test_soft_argmax_3d_seed_size(dtype):
    x, _, _ = _volume_inputs(2, (32, 18, 64, 64, 64), dtype)
    cot = (torch.randn(32, 18, 3, device=DEV),)
    _check("soft_argmax_3d", lambda t: ops.soft_argmax_3d(t, backend="triton"),
           R.soft_argmax.soft_argmax_3d, x * 4, dtype, cot)


@pytest.mark.parametrize("dtype", DTYPES, ids=IDS)
@pytest.mark.parametrize("reduction", ["mean", "none"])
@pytest.mark.parametrize("ndim", [2, 3])
def test_heatmap_mse_seed_sizes(dtype, reduction, ndim):
    shape = (32, 18, 64, 64, 64) if ndim == 3 else (32, 18, 64, 64)
    x, mu, w = _volume_inputs(3 + ndim, shape, dtype)
    h = (x.float() * 0.3 + 0.2).to(dtype)
    public = ops.heatmap_mse_3d if ndim == 3 else ops.heatmap_mse_2d
    ref = R.heatmap_mse.heatmap_mse_3d if ndim == 3 else R.heatmap_mse.heatmap_mse_2d
    cot = (torch.rand(32, 18, device=DEV) if reduction == "none" else torch.tensor(2.0, device=DEV),)
    _check(f"heatmap_mse_{ndim}d", lambda t: public(t, mu, SIGMA, w, reduction, backend="triton"),
           lambda t: ref(t, mu, SIGMA, w, reduction), h, dtype, cot)


@pytest.mark.parametrize("dtype", DTYPES, ids=IDS)
def test_soft_argmax_2d_seed_size(dtype):
    x, _, _ = _volume_inputs(6, (32, 18, 64, 64), dtype)
    cot = (torch.randn(32, 18, 2, device=DEV),)
    _check("soft_argmax_2d", lambda t: ops.soft_argmax_2d(t, backend="triton"),
           R.soft_argmax.soft_argmax_2d, x * 4, dtype, cot)


def _lifting_inputs(seed, dtype):
    gen = _gen(seed)
    n, t, j = 1024, 243, 17
    xy = torch.randn(n, t, j, 2, generator=gen, device=DEV) * 0.6
    z = torch.rand(n, t, j, 1, generator=gen, device=DEV) * 3 + 1.5
    pts = torch.cat([xy * z / 2, z], -1)
    cam = torch.tensor([2.29, 2.29, 0.025, 0.029, -0.207, 0.248, -0.003, -0.001, -0.0014], device=DEV)
    cam = cam.expand(n, 1, 9).clone()  # one camera per sequence, broadcast over t
    cam[..., :4] += torch.randn(n, 1, 4, generator=gen, device=DEV) * 0.01
    kp = R.projection.project_to_2d(pts, cam) + torch.randn(n, t, j, 2, generator=gen, device=DEV) * 0.05
    w = torch.rand(n, t, j, generator=gen, device=DEV) + 0.5
    return pts.to(dtype), cam, kp, w


@pytest.mark.parametrize("dtype", DTYPES, ids=IDS)
def test_projection_seed_size(dtype):
    pts, cam, kp, w = _lifting_inputs(7, dtype)
    cot = (torch.randn(*pts.shape[:-1], 2, device=DEV),)
    _check("project_to_2d", lambda t: ops.project_to_2d(t, cam, backend="triton"),
           lambda t: R.projection.project_to_2d(t, cam), pts, dtype, cot)
    cot = (torch.tensor(1.5, device=DEV),)
    _check("reprojection_loss", lambda t: ops.reprojection_loss(t, cam, kp, w, backend="triton"),
           lambda t: R.projection.reprojection_loss(t, cam, kp, w), pts, dtype, cot)


def test_projection_bits_do_not_depend_on_the_autotuned_config():
    """Every autotune configuration of the per-point projection kernels gives the same bits, and
    the loss forward has a single configuration, with a broadcast camera (1024, 1, 9)."""
    import triton

    K = _kernels().projection
    pts, cam, kp, w = (t[:64] for t in _lifting_inputs(14, torch.float16))
    assert len(K._reproj_fwd_kernel.configs) == 1
    flat, cam_rows, p, g, c = K._flat(pts, cam)
    grad_out = torch.randn(p, 2, generator=_gen(15), device=DEV, dtype=torch.float16)
    kp32, w32 = kp.float().reshape(p, 2).contiguous(), w.float().reshape(p).contiguous()
    scale = torch.tensor([0.3], device=DEV)
    results = []
    for cfg in K._configs():
        block, warps = cfg.kwargs["BLOCK"], cfg.num_warps
        grid = (triton.cdiv(p, K._CHUNK),)
        out = torch.empty(p, 2, device=DEV, dtype=torch.float16)
        gp = torch.empty(p, 3, device=DEV, dtype=torch.float16)
        gl = torch.empty(p, 3, device=DEV, dtype=torch.float16)
        K._project_fwd_kernel.fn[grid](flat, cam_rows, out, p, g, c, K._CHUNK, BLOCK=block, num_warps=warps)
        K._project_bwd_kernel.fn[grid](flat, cam_rows, grad_out, gp, p, g, c, K._CHUNK, BLOCK=block,
                                       num_warps=warps)
        K._reproj_bwd_kernel.fn[grid](flat, cam_rows, kp32, w32, scale, gl, p, g, c, K._CHUNK, HAS_W=True,
                                      BLOCK=block, num_warps=warps)
        results.append((out, gp, gl))
    for other in results[1:]:
        for a, b in zip(results[0], other, strict=True):
            assert torch.equal(a, b)


def test_split_path_and_determinism_on_gpu():
    """B=1: each 64^3 volume is split across programs (two-stage reduction); results match the
    reference and repeat bit for bit."""
    K = _kernels()
    x, mu, w = _volume_inputs(8, (1, 18, 64, 64, 64), torch.float32)
    splits, _ = K._common.plan_rows(18, 64 * 64, 64, x.device)
    assert splits > 1
    fwd = K.soft_argmax_heatmap_mse.soft_argmax_heatmap_mse_forward
    a = fwd(x, mu, SIGMA, w)
    b = fwd(x.clone(), mu, SIGMA, w)
    for u, v in zip(a, b, strict=True):
        assert torch.equal(u, v)
    ref_c, ref_mse, _ = R.soft_argmax_heatmap_mse.soft_argmax_heatmap_mse_forward(x, mu, SIGMA, w)
    assert_close(a[0], ref_c, torch.float32, "coords (split)")
    assert_close(a[1], ref_mse, torch.float32, "mse (split)")
    g1 = K.soft_argmax.soft_argmax_forward(x)
    g2 = K.soft_argmax.soft_argmax_forward(x, rows_per_split=64 * 64)  # one program per volume
    assert_close(g1[0], g2[0], torch.float32, "split vs single")


@pytest.mark.parametrize("model", ["volumetric", "lifting"])
def test_inductor_compiles_through_triton_ops(model):
    if model == "volumetric":
        inp, mu, w = _volume_inputs(9, (4, 18, 32, 32, 32), torch.float32)

        def fn(t):
            coords, mse = ops.soft_argmax_heatmap_mse_3d(t, mu, SIGMA, w, backend="triton")
            return (coords - mu).square().mean() + 20.0 * mse
    else:
        inp, cam, kp, pw = (t[:16] for t in _lifting_inputs(10, torch.float32))

        def fn(p):
            return ops.reprojection_loss(p, cam, kp, pw, backend="triton") + ops.project_to_2d(
                p, cam, backend="triton").square().mean()

    torch._dynamo.reset()
    compiled = torch.compile(fn, fullgraph=True)
    one = (torch.tensor(1.0, device=DEV),)
    (lc,), gc = _grad(lambda t: (compiled(t),), inp, one)
    (le,), ge = _grad(lambda t: (fn(t),), inp, one)
    assert_close(lc, le, torch.float32, "compiled loss")
    assert_close(gc, ge, torch.float32, "compiled gradient")


def test_cuda_graph_capture_fused_head():
    """No host synchronisation in forward or backward: the step can be captured and replayed."""
    x, mu, w = _volume_inputs(11, (8, 18, 32, 32, 32), torch.float32)
    static_x = x.clone().requires_grad_(True)
    gc = torch.randn(8, 18, 3, device=DEV)

    def step():
        coords, mse = ops.soft_argmax_heatmap_mse_3d(static_x, mu, SIGMA, w, backend="triton")
        return (coords * gc).sum() + mse

    s = torch.cuda.Stream()
    s.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(s):
        for _ in range(3):  # warm-up: autotuning and compilation happen here, not in the capture
            static_x.grad = None
            step().backward()
    torch.cuda.current_stream().wait_stream(s)
    graph = torch.cuda.CUDAGraph()
    static_x.grad = None
    with torch.cuda.graph(graph):
        loss = step()
        loss.backward()
    new_x = torch.randn_like(x)
    static_x.data.copy_(new_x)
    graph.replay()
    torch.cuda.synchronize()
    (le,), ge = _grad(lambda t: (step_eager(t, mu, w, gc),), new_x, (torch.tensor(1.0, device=DEV),))
    assert_close(loss.detach(), le, torch.float32, "replayed loss")
    assert_close(static_x.grad, ge, torch.float32, "replayed gradient")


def step_eager(t, mu, w, gc):
    coords, mse = ops.soft_argmax_heatmap_mse_3d(t, mu, SIGMA, w, backend="triton")
    return (coords * gc).sum() + mse


def test_opcheck_on_cuda():
    K = _kernels()
    x, mu, w = _volume_inputs(12, (2, 5, 6, 7, 9), torch.float32)
    pts, cam, kp, pw = (t[:3, :5] for t in _lifting_inputs(13, torch.float32))
    xg = x.clone().requires_grad_(True)
    cases = [
        (K.soft_argmax._sa3_op, (xg,)),
        (K.soft_argmax._sa2_op, (xg[:, :, 0].detach().clone().requires_grad_(True),)),
        (K.heatmap_mse._hm3_op, (xg, mu, SIGMA, w, "mean")),
        (K.soft_argmax_heatmap_mse._fused_op, (xg, mu, SIGMA, w)),
        (K.projection.project_to_2d, (pts.clone().requires_grad_(True), cam)),
        (K.projection.reprojection_loss, (pts.clone().requires_grad_(True), cam, kp, pw)),
    ]
    for op, args in cases:
        torch.library.opcheck(op, args)
