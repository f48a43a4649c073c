"""Reference heatmap MSE against a materialised Gaussian target, analytic backward against
autograd, gradcheck, the no-materialisation property, empty batch, non-contiguous inputs."""

from __future__ import annotations

import math

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

from fastpose.reference import gaussian_factors, heatmap_mse_2d, heatmap_mse_3d, heatmap_mse_backward

SPATIAL = {2: (6, 9), 3: (5, 6, 7)}


def _fn(ndim):
    return heatmap_mse_2d if ndim == 2 else heatmap_mse_3d


def _naive_target(joints: torch.Tensor, sigma: float, spatial) -> torch.Tensor:
    """t_v = exp(-|v - mu|^2 / (2 sigma^2)) on explicit coordinate grids, (B, J, *S), float64."""
    ndim = len(spatial)
    grids = torch.meshgrid(*[torch.arange(s, dtype=torch.float64) for s in spatial], indexing="ij")
    sq = 0.0
    for k in range(ndim):  # coordinate k lives on array axis ndim - 1 - k
        mu = joints[..., k].double().reshape(joints.shape[:-1] + (1,) * ndim)
        sq = sq + (grids[ndim - 1 - k] - mu) ** 2
    return torch.exp(-sq / (2.0 * sigma * sigma))


def _naive_loss(h, joints, sigma, weights, reduction):
    ndim = joints.shape[-1]
    t = _naive_target(joints, sigma, h.shape[-ndim:])
    sq = (h.double() - t) ** 2  # (B, J, *S)
    per_joint = sq.sum(dim=tuple(range(2, 2 + ndim)))  # (B, J)
    if weights is not None:
        per_joint = per_joint * weights.double()
    if reduction == "none":
        return per_joint / math.prod(h.shape[-ndim:])
    if reduction == "sum":
        return per_joint.sum()
    return per_joint.sum() / max(h.numel(), 1)


def _inputs(ndim, b, j, gen, dtype=torch.float64):
    spatial = SPATIAL[ndim]
    # heatmaps close to a target plus noise, so that the three terms of the expansion all matter
    joints = torch.rand((b, j, ndim), generator=gen, dtype=torch.float64)
    joints = joints * (torch.tensor(spatial[::-1], dtype=torch.float64) + 2.0) - 1.0  # some outside
    h = _naive_target(joints, 1.3, spatial) + 0.1 * torch.randn(
        (b, j) + spatial, generator=gen, dtype=torch.float64
    )
    weights = torch.rand((b, j), generator=gen, dtype=torch.float64) + 0.25
    return h.to(dtype), joints, weights


@pytest.mark.parametrize("ndim", [2, 3])
@pytest.mark.parametrize("joints_n", [17, 18])
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("weighted", [False, True])
def test_matches_materialised_target(ndim, joints_n, reduction, weighted):
    gen = torch.Generator().manual_seed(ndim * 100 + joints_n)
    h, joints, weights = _inputs(ndim, 2, joints_n, gen)
    w = weights if weighted else None
    out = _fn(ndim)(h, joints, 1.3, w, reduction)
    expected = _naive_loss(h, joints, 1.3, w, reduction)
    assert out.shape == expected.shape and out.dtype == torch.float64
    torch.testing.assert_close(out, expected, rtol=1e-10, atol=1e-12)


def test_gaussian_factors_order_and_peak():
    joints = torch.tensor([[[2.0, 3.0, 1.0]]], dtype=torch.float64)  # x=2 (W), y=3 (H), z=1 (D)
    gx, gy, gz = gaussian_factors(joints, 0.7, (4, 5, 6))  # sizes in array order (D, H, W)
    assert gx.shape == (1, 1, 6) and gy.shape == (1, 1, 5) and gz.shape == (1, 1, 4)
    assert gx[0, 0].argmax() == 2 and gy[0, 0].argmax() == 3 and gz[0, 0].argmax() == 1
    assert gx[0, 0, 2] == 1.0 and gy[0, 0, 3] == 1.0 and gz[0, 0, 1] == 1.0
    torch.testing.assert_close(gx[0, 0, 3], torch.tensor(math.exp(-1 / (2 * 0.49)), dtype=torch.float64))


@pytest.mark.parametrize("ndim", [2, 3])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
def test_low_precision(ndim, dtype):
    gen = torch.Generator().manual_seed(11)
    h, joints, weights = _inputs(ndim, 3, 17, gen)
    h = h.to(dtype)
    for reduction in ("mean", "none"):
        out = _fn(ndim)(h, joints.to(dtype), 1.3, weights.to(dtype), reduction)
        assert out.dtype == dtype
        # float32 accumulation of the rounded inputs: compare with float64 on the same inputs
        expected = _naive_loss(
            h.double(), joints.to(dtype).double(), 1.3, weights.to(dtype).double(), reduction
        )
        tol = {torch.float32: 1e-5, torch.float16: 2e-3, torch.bfloat16: 2e-2}[dtype]
        torch.testing.assert_close(out.double(), expected, rtol=tol, atol=tol * 1e-2)


@pytest.mark.parametrize("ndim", [2, 3])
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("weighted", [False, True])
def test_analytic_backward_matches_autograd(ndim, reduction, weighted):
    gen = torch.Generator().manual_seed(12)
    h, joints, weights = _inputs(ndim, 2, 17, gen)
    w = weights if weighted else None
    hr = h.clone().requires_grad_(True)
    out = _fn(ndim)(hr, joints, 1.3, w, reduction)
    g = torch.randn(out.shape, generator=gen, dtype=torch.float64)
    (expected,) = torch.autograd.grad(out, hr, g)
    got = heatmap_mse_backward(g, h, joints, 1.3, w, reduction)
    torch.testing.assert_close(got, expected, rtol=1e-10, atol=1e-13)
    # and against the explicit formula 2 w (h - t) / N with the materialised target
    t = _naive_target(joints, 1.3, h.shape[2:])
    n = {"mean": h.numel(), "sum": 1, "none": math.prod(h.shape[2:])}[reduction]
    coef = g * (weights if weighted else 1.0) * 2.0 / n
    coef = coef.reshape(coef.shape + (1,) * ndim) if coef.dim() else coef
    torch.testing.assert_close(got, coef * (h - t), rtol=1e-12, atol=1e-14)
    assert torch.equal(heatmap_mse_backward(None, h, joints, 1.3, w, reduction), torch.zeros_like(h))


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_analytic_backward_returns_input_dtype(dtype):
    gen = torch.Generator().manual_seed(13)
    h, joints, weights = _inputs(3, 2, 17, gen)
    got = heatmap_mse_backward(torch.tensor(1.0, dtype=dtype), h.to(dtype), joints, 1.3, weights, "sum")
    assert got.dtype == dtype
    expected = heatmap_mse_backward(torch.tensor(1.0), h.to(dtype).double(), joints, 1.3, weights, "sum")
    torch.testing.assert_close(got.double(), expected, rtol=1e-2, atol=1e-2)


@pytest.mark.parametrize("ndim", [2, 3])
@pytest.mark.parametrize("reduction", ["mean", "none"])
def test_gradcheck_float64(ndim, reduction):
    gen = torch.Generator().manual_seed(14)
    spatial = (3, 4) if ndim == 2 else (2, 3, 4)
    h = torch.randn((2, 2) + spatial, generator=gen, dtype=torch.float64, requires_grad=True)
    joints = torch.rand((2, 2, ndim), generator=gen, dtype=torch.float64) * 3
    weights = torch.rand((2, 2), generator=gen, dtype=torch.float64)
    assert torch.autograd.gradcheck(lambda x: _fn(ndim)(x, joints, 0.9, weights, reduction), (h,))


@pytest.mark.parametrize("ndim", [2, 3])
def test_empty_batch(ndim):
    spatial = SPATIAL[ndim]
    h = torch.zeros((0, 17) + spatial, requires_grad=True)
    joints = torch.zeros((0, 17, ndim))
    weights = torch.zeros((0, 17))
    mean = _fn(ndim)(h, joints, 2.0, weights, "mean")
    assert mean.shape == () and mean.item() == 0.0  # a mean over nothing is 0, not NaN
    assert _fn(ndim)(h, joints, 2.0, None, "sum").item() == 0.0
    assert _fn(ndim)(h, joints, 2.0, None, "none").shape == (0, 17)
    mean.backward()
    assert h.grad.shape == h.shape
    assert heatmap_mse_backward(torch.tensor(1.0), h.detach(), joints, 2.0, None, "mean").shape == h.shape


@pytest.mark.parametrize("ndim", [2, 3])
def test_non_contiguous(ndim):
    gen = torch.Generator().manual_seed(15)
    h, joints, weights = _inputs(ndim, 2, 17, gen)
    # every tensor stored transposed
    h_nc = h.transpose(0, 1).contiguous().transpose(0, 1)
    h_nc = h_nc.transpose(-1, -2).contiguous().transpose(-1, -2)
    j_nc = joints.permute(2, 0, 1).contiguous().permute(1, 2, 0)
    w_nc = weights.t().contiguous().t()
    assert not (h_nc.is_contiguous() or j_nc.is_contiguous() or w_nc.is_contiguous())
    for reduction in ("mean", "none"):
        torch.testing.assert_close(
            _fn(ndim)(h_nc, j_nc, 1.3, w_nc, reduction), _naive_loss(h, joints, 1.3, weights, reduction)
        )
    g = torch.tensor(0.7, dtype=torch.float64)
    torch.testing.assert_close(
        heatmap_mse_backward(g, h_nc, j_nc, 1.3, w_nc, "mean"),
        heatmap_mse_backward(g, h, joints, 1.3, weights, "mean"),
    )


class _AllocationRecorder(TorchDispatchMode):
    """Records the numel of every tensor an op allocates (outputs that are not views of inputs)."""

    def __init__(self):
        super().__init__()
        self.sizes = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        in_ptrs = {
            a.untyped_storage().data_ptr()
            for a in torch.utils._pytree.tree_leaves((args, kwargs))
            if isinstance(a, torch.Tensor)
        }
        for o in torch.utils._pytree.tree_leaves(out):
            if isinstance(o, torch.Tensor) and o.untyped_storage().data_ptr() not in in_ptrs:
                self.sizes.append((func.__name__, o.numel()))
        return out


@pytest.mark.parametrize("ndim", [2, 3])
def test_forward_never_materialises_the_target(ndim, monkeypatch):
    """No op of the forward allocates a tensor as large as the volume (the target, h*t, (h-t)^2):
    the direct differences are formed per chunk of rows (here shrunk to one row of the six)."""
    import fastpose.reference._rows as rows_mod

    gen = torch.Generator().manual_seed(16)
    spatial = (16, 18) if ndim == 2 else (8, 9, 10)
    monkeypatch.setattr(rows_mod, "CHUNK_ELEMS", math.prod(spatial))
    h = torch.randn((2, 3) + spatial, generator=gen)  # float32: no dtype conversion copy
    joints = torch.rand((2, 3, ndim), generator=gen) * 8
    with torch.no_grad(), _AllocationRecorder() as rec:
        heatmap_mse_3d(h, joints, 2.0) if ndim == 3 else heatmap_mse_2d(h, joints, 2.0)
    volume = h.numel()
    big = [(name, n) for name, n in rec.sizes if n >= volume // 3]
    assert rec.sizes, "the recorder saw no op"
    assert not big, f"volume-sized allocations in the forward: {big}"


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
def test_mixed_dtypes_follow_the_heatmaps(dtype):
    """float64 joints / weights with low-precision heatmaps: computed in float32, heatmaps' dtype out."""
    gen = torch.Generator().manual_seed(17)
    h, joints, weights = _inputs(3, 2, 17, gen)
    out = heatmap_mse_3d(h.to(dtype), joints, 1.3, weights, "none")
    assert out.dtype == dtype
    expected = _naive_loss(h.to(dtype).double(), joints, 1.3, weights, "none")
    torch.testing.assert_close(out.double(), expected, rtol=2e-3, atol=1e-5)
    grad = heatmap_mse_backward(torch.ones(2, 17, dtype=dtype), h.to(dtype), joints, 1.3, weights, "none")
    assert grad.dtype == dtype and torch.isfinite(grad).all()
