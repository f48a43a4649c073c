"""Reference soft-argmax against an independent naive formula, its analytic backward against
autograd, gradcheck, extreme logits, empty batch, non-contiguous inputs, low precision."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from fastpose.reference import (
    soft_argmax_2d,
    soft_argmax_3d,
    soft_argmax_backward,
    soft_argmax_forward,
)

LOW_PRECISION = [(torch.float32, 1e-5), (torch.float16, 2e-2), (torch.bfloat16, 1e-1)]


def _naive(logits: torch.Tensor) -> torch.Tensor:
    """Softmax over the flattened volume (torch.softmax) times explicit index grids, float64."""
    x = logits.double()
    ndim = x.dim() - 2
    spatial = x.shape[2:]
    p = torch.softmax(x.flatten(2), dim=-1).reshape(x.shape)  # (B, J, *S)
    grids = torch.meshgrid(*[torch.arange(s, dtype=torch.float64) for s in spatial], indexing="ij")
    dims = tuple(range(2, 2 + ndim))
    # coordinate order x (last axis), y, z
    return torch.stack([(p * grids[a]).sum(dims) for a in reversed(range(ndim))], dim=-1)


def _fn(ndim):
    return soft_argmax_2d if ndim == 2 else soft_argmax_3d


def _shape(ndim, b, j):
    return (b, j, 5, 7) if ndim == 2 else (b, j, 3, 5, 7)


@pytest.mark.parametrize("ndim", [2, 3])
@pytest.mark.parametrize("joints", [17, 18])
def test_matches_naive_softmax_float64(ndim, joints):
    gen = torch.Generator().manual_seed(10 + ndim + joints)
    x = 3.0 * torch.randn(_shape(ndim, 2, joints), generator=gen, dtype=torch.float64)
    out = _fn(ndim)(x)
    assert out.shape == (2, joints, ndim) and out.dtype == torch.float64
    torch.testing.assert_close(out, _naive(x), rtol=1e-12, atol=1e-12)
    coords, stats = soft_argmax_forward(x, ndim)
    assert stats.shape == (2, joints, 5)  # [m, log s, c_x, c_y, c_z], the layout of every backend
    torch.testing.assert_close(stats[..., 0], x.flatten(2).amax(dim=-1), rtol=0, atol=0)
    torch.testing.assert_close(stats[..., 0] + stats[..., 1], torch.logsumexp(x.flatten(2), dim=-1),
                               rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(stats[..., 2 : 2 + ndim], out)
    if ndim == 2:
        assert (stats[..., 4] == 0).all()
    torch.testing.assert_close(coords, out)


@pytest.mark.parametrize("ndim", [2, 3])
@pytest.mark.parametrize("dtype,tol", LOW_PRECISION)
def test_low_precision_computed_in_float32(ndim, dtype, tol):
    gen = torch.Generator().manual_seed(3)
    x = (2.0 * torch.randn(_shape(ndim, 3, 17), generator=gen)).to(dtype)
    out = _fn(ndim)(x)
    assert out.dtype == dtype
    coords, stats = soft_argmax_forward(x, ndim)
    assert coords.dtype == torch.float32 and stats.dtype == torch.float32
    # the same (rounded) inputs in float64: only the output rounding differs
    torch.testing.assert_close(coords.double(), _naive(x.double()), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(out.double(), _naive(x.double()), rtol=tol, atol=tol * 7)


@pytest.mark.parametrize("ndim", [2, 3])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32, torch.float16, torch.bfloat16])
def test_extreme_logits_are_finite(ndim, dtype):
    gen = torch.Generator().manual_seed(4)
    signs = torch.randint(0, 2, _shape(ndim, 2, 17), generator=gen) * 2 - 1
    x = (1e4 * signs).to(dtype)  # +-1e4 everywhere: many ties at the maximum
    x.requires_grad_(True)
    out = _fn(ndim)(x)
    assert torch.isfinite(out).all()
    torch.testing.assert_close(out.double(), _naive(x.detach().double()), rtol=2e-2, atol=2e-2)
    out.sum().backward()
    assert torch.isfinite(x.grad).all()
    coords, stats = soft_argmax_forward(x.detach(), ndim)
    g = torch.randn(coords.shape, generator=gen)
    assert torch.isfinite(soft_argmax_backward(g, x.detach(), stats)).all()


def test_single_extreme_peak_is_exact():
    x = torch.full((1, 2, 4, 5, 6), -1e4)
    x[0, 0, 3, 1, 5] = 1e4
    x[0, 1, 0, 4, 2] = 1e4
    out = soft_argmax_3d(x)
    torch.testing.assert_close(out, torch.tensor([[[5.0, 1.0, 3.0], [2.0, 4.0, 0.0]]]))


@settings(max_examples=15, deadline=None)
@given(
    d=st.integers(1, 6),
    h=st.integers(1, 6),
    w=st.integers(1, 6),
    data=st.data(),
)
def test_sharp_peak_returns_the_peak(d, h, w, data):
    z = data.draw(st.integers(0, d - 1))
    y = data.draw(st.integers(0, h - 1))
    x = data.draw(st.integers(0, w - 1))
    seed = data.draw(st.integers(0, 2**31 - 1))
    gen = torch.Generator().manual_seed(seed)
    logits = torch.rand((1, 1, d, h, w), generator=gen, dtype=torch.float64)  # background in [0, 1)
    logits[0, 0, z, y, x] = 80.0  # exp(-79) * 216 voxels ~ 1e-32 of the mass elsewhere
    out = soft_argmax_3d(logits)
    torch.testing.assert_close(out[0, 0], torch.tensor([x, y, z], dtype=torch.float64), atol=1e-12, rtol=0)
    out2 = soft_argmax_2d(logits[:, :, z])
    torch.testing.assert_close(out2[0, 0], torch.tensor([x, y], dtype=torch.float64), atol=1e-12, rtol=0)


@pytest.mark.parametrize("ndim", [2, 3])
def test_analytic_backward_matches_autograd(ndim):
    gen = torch.Generator().manual_seed(5)
    x = 2.0 * torch.randn(_shape(ndim, 3, 18), generator=gen, dtype=torch.float64)
    g = torch.randn((3, 18, ndim), generator=gen, dtype=torch.float64)
    xr = x.clone().requires_grad_(True)
    (expected,) = torch.autograd.grad(_fn(ndim)(xr), xr, g)
    coords, stats = soft_argmax_forward(x, ndim)
    got = soft_argmax_backward(g, x, stats)
    torch.testing.assert_close(got, expected, rtol=1e-10, atol=1e-12)
    # each gradient volume sums to zero (softmax is shift invariant)
    torch.testing.assert_close(
        got.sum(dim=tuple(range(2, 2 + ndim))), torch.zeros(3, 18, dtype=torch.float64)
    )
    assert torch.equal(soft_argmax_backward(None, x, stats), torch.zeros_like(x))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
def test_analytic_backward_low_precision(dtype):
    gen = torch.Generator().manual_seed(6)
    x64 = torch.randn((2, 17, 3, 4, 5), generator=gen, dtype=torch.float64)
    x = x64.to(dtype)
    g = torch.randn((2, 17, 3), generator=gen)
    coords, stats = soft_argmax_forward(x, 3)
    got = soft_argmax_backward(g.to(dtype), x, stats)
    assert got.dtype == dtype
    xr = x.double().requires_grad_(True)
    (expected,) = torch.autograd.grad(soft_argmax_3d(xr), xr, g.to(dtype).double())
    tol = {torch.float32: 1e-5, torch.float16: 2e-3, torch.bfloat16: 2e-2}[dtype]
    torch.testing.assert_close(got.double(), expected, rtol=tol, atol=tol)


@pytest.mark.parametrize("ndim", [2, 3])
def test_gradcheck_float64(ndim):
    gen = torch.Generator().manual_seed(7)
    shape = (2, 2, 3, 4) if ndim == 2 else (1, 2, 2, 3, 4)
    x = torch.randn(shape, generator=gen, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(_fn(ndim), (x,))


@pytest.mark.parametrize("ndim", [2, 3])
def test_empty_batch(ndim):
    x = torch.zeros(_shape(ndim, 0, 17), requires_grad=True)
    out = _fn(ndim)(x)
    assert out.shape == (0, 17, ndim)
    out.sum().backward()
    assert x.grad.shape == x.shape
    coords, stats = soft_argmax_forward(x.detach(), ndim)
    assert coords.shape == (0, 17, ndim) and stats.shape == (0, 17, 5)
    grad = soft_argmax_backward(torch.zeros(0, 17, ndim), x.detach(), stats)
    assert grad.shape == x.shape


@pytest.mark.parametrize("ndim", [2, 3])
def test_non_contiguous(ndim):
    gen = torch.Generator().manual_seed(8)
    base = torch.randn((17, 2) + _shape(ndim, 2, 17)[2:][::-1], generator=gen, dtype=torch.float64)
    # (J, B, W, H[, D]) -> (B, J, [D,] H, W): every axis permuted
    perm = (1, 0) + tuple(range(base.dim() - 1, 1, -1))
    x = base.permute(perm)
    assert not x.is_contiguous()
    torch.testing.assert_close(_fn(ndim)(x), _fn(ndim)(x.contiguous()), rtol=1e-14, atol=1e-14)
    torch.testing.assert_close(_fn(ndim)(x), _naive(x), rtol=1e-12, atol=1e-12)
    coords, stats = soft_argmax_forward(x, ndim)
    g = torch.randn((17, 2, ndim), generator=gen, dtype=torch.float64).transpose(0, 1)
    torch.testing.assert_close(
        soft_argmax_backward(g, x, stats),
        soft_argmax_backward(g.contiguous(), x.contiguous(), stats),
    )
