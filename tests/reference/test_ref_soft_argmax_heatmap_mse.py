"""Reference fused soft-argmax + heatmap MSE: equals the composition (and the naive formulas),
one analytic backward for both outputs against autograd, gradcheck, extreme logits, empty batch."""

from __future__ import annotations

import pytest
import torch

from fastpose.reference import (
    heatmap_mse_3d,
    soft_argmax_3d,
    soft_argmax_heatmap_mse_3d,
    soft_argmax_heatmap_mse_backward,
    soft_argmax_heatmap_mse_forward,
)


def _inputs(b, j, gen, scale=2.0, shape=(4, 5, 6)):
    logits = scale * torch.randn((b, j) + shape, generator=gen, dtype=torch.float64)
    joints = torch.rand((b, j, 3), generator=gen, dtype=torch.float64) * torch.tensor(
        [shape[2] - 1, shape[1] - 1, shape[0] - 1], dtype=torch.float64
    )
    weights = torch.rand((b, j), generator=gen, dtype=torch.float64) + 0.5
    return logits, joints, weights


def _naive(logits, joints, sigma, weights):
    """Flattened torch.softmax expectation + materialised-target MSE, float64."""
    b, j, d, h, w = logits.shape
    p = torch.softmax(logits.flatten(2), dim=-1).reshape(logits.shape)
    zz, yy, xx = torch.meshgrid(*[torch.arange(s, dtype=torch.float64) for s in (d, h, w)], indexing="ij")
    coords = torch.stack([(p * xx).sum((2, 3, 4)), (p * yy).sum((2, 3, 4)), (p * zz).sum((2, 3, 4))], -1)
    mu = joints.reshape(b, j, 3, 1, 1, 1)
    t = torch.exp(
        -((xx - mu[:, :, 0]) ** 2 + (yy - mu[:, :, 1]) ** 2 + (zz - mu[:, :, 2]) ** 2) / (2 * sigma**2)
    )
    sq = (logits - t) ** 2 * (1.0 if weights is None else weights.reshape(b, j, 1, 1, 1))
    return coords, sq.mean()


@pytest.mark.parametrize("j", [17, 18])
@pytest.mark.parametrize("weighted", [False, True])
def test_equals_composition_and_naive(j, weighted):
    gen = torch.Generator().manual_seed(20 + j)
    logits, joints, weights = _inputs(2, j, gen)
    w = weights if weighted else None
    coords, mse = soft_argmax_heatmap_mse_3d(logits, joints, 1.4, w)
    assert coords.shape == (2, j, 3) and mse.shape == ()
    torch.testing.assert_close(coords, soft_argmax_3d(logits), rtol=0, atol=0)
    torch.testing.assert_close(mse, heatmap_mse_3d(logits, joints, 1.4, w, "mean"), rtol=0, atol=0)
    n_coords, n_mse = _naive(logits, joints, 1.4, w)
    torch.testing.assert_close(coords, n_coords, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(mse, n_mse, rtol=1e-10, atol=1e-12)
    f_coords, f_mse, stats = soft_argmax_heatmap_mse_forward(logits, joints, 1.4, w)
    # the saved state: [m, log s, c_x, c_y, c_z] per joint, as on every backend
    assert stats.shape == (2, j, 5)
    torch.testing.assert_close(stats[..., 0] + stats[..., 1], torch.logsumexp(logits.flatten(2), -1))
    torch.testing.assert_close(stats[..., 2:], coords)
    torch.testing.assert_close((f_coords, f_mse), (coords, mse))


@pytest.mark.parametrize("which", ["both", "coords", "mse"])
def test_analytic_backward_matches_autograd(which):
    gen = torch.Generator().manual_seed(21)
    logits, joints, weights = _inputs(2, 17, gen)
    gc = torch.randn((2, 17, 3), generator=gen, dtype=torch.float64)
    gm = torch.tensor(1.7, dtype=torch.float64)
    x = logits.clone().requires_grad_(True)
    coords, mse = soft_argmax_heatmap_mse_3d(x, joints, 1.4, weights)
    loss = (coords * gc).sum() * (which != "mse") + mse * gm * (which != "coords")
    (expected,) = torch.autograd.grad(loss, x)
    _, _, stats = soft_argmax_heatmap_mse_forward(logits, joints, 1.4, weights)
    got = soft_argmax_heatmap_mse_backward(
        gc if which != "mse" else None,
        gm if which != "coords" else None,
        logits,
        joints,
        1.4,
        weights,
        stats,
    )
    torch.testing.assert_close(got, expected, rtol=1e-10, atol=1e-13)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
def test_low_precision_dtypes(dtype):
    gen = torch.Generator().manual_seed(22)
    logits, joints, weights = _inputs(2, 17, gen)
    x = logits.to(dtype)
    coords, mse = soft_argmax_heatmap_mse_3d(x, joints.to(dtype), 1.4, weights.to(dtype))
    assert coords.dtype == dtype and mse.dtype == dtype
    n_coords, n_mse = _naive(x.double(), joints.to(dtype).double(), 1.4, weights.to(dtype).double())
    tol = {torch.float32: 1e-5, torch.float16: 5e-3, torch.bfloat16: 4e-2}[dtype]
    torch.testing.assert_close(coords.double(), n_coords, rtol=tol, atol=tol * 5)
    torch.testing.assert_close(mse.double(), n_mse, rtol=tol, atol=tol)
    _, _, stats = soft_argmax_heatmap_mse_forward(x, joints, 1.4, weights)
    grad = soft_argmax_heatmap_mse_backward(
        torch.ones(2, 17, 3, dtype=dtype),
        torch.tensor(1.0, dtype=dtype),
        x,
        joints,
        1.4,
        weights,
        stats,
    )
    assert grad.dtype == dtype and torch.isfinite(grad).all()


def test_gradcheck_float64():
    gen = torch.Generator().manual_seed(23)
    logits, joints, weights = _inputs(1, 2, gen, shape=(2, 3, 4))
    x = logits.clone().requires_grad_(True)
    assert torch.autograd.gradcheck(lambda v: soft_argmax_heatmap_mse_3d(v, joints, 1.1, weights), (x,))


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32, torch.bfloat16])
def test_extreme_logits(dtype):
    gen = torch.Generator().manual_seed(24)
    signs = torch.randint(0, 2, (2, 17, 3, 4, 5), generator=gen) * 2 - 1
    x = (1e4 * signs).to(dtype).requires_grad_(True)
    joints = torch.rand((2, 17, 3), generator=gen) * 3
    coords, mse = soft_argmax_heatmap_mse_3d(x, joints, 1.0)
    assert torch.isfinite(coords).all() and torch.isfinite(mse)
    (coords.sum() + mse).backward()
    assert torch.isfinite(x.grad).all()
    _, _, stats = soft_argmax_heatmap_mse_forward(x.detach(), joints, 1.0, None)
    grad = soft_argmax_heatmap_mse_backward(
        torch.ones(2, 17, 3), torch.tensor(1.0), x.detach(), joints, 1.0, None, stats
    )
    assert torch.isfinite(grad).all()


def test_empty_batch():
    x = torch.zeros((0, 17, 3, 4, 5), requires_grad=True)
    joints = torch.zeros((0, 17, 3))
    coords, mse = soft_argmax_heatmap_mse_3d(x, joints, 1.0)
    assert coords.shape == (0, 17, 3) and mse.item() == 0.0
    (coords.sum() + mse).backward()
    assert x.grad.shape == x.shape
    _, _, stats = soft_argmax_heatmap_mse_forward(x.detach(), joints, 1.0, None)
    grad = soft_argmax_heatmap_mse_backward(
        torch.zeros(0, 17, 3), torch.tensor(1.0), x.detach(), joints, 1.0, None, stats
    )
    assert grad.shape == x.shape


def test_non_contiguous():
    gen = torch.Generator().manual_seed(25)
    logits, joints, weights = _inputs(2, 17, gen)
    x_nc = logits.permute(4, 3, 2, 1, 0).contiguous().permute(4, 3, 2, 1, 0)
    assert not x_nc.is_contiguous()
    a = soft_argmax_heatmap_mse_3d(x_nc, joints[:, :, [2, 1, 0]][:, :, [2, 1, 0]], 1.4, weights.t().t())
    b = soft_argmax_heatmap_mse_3d(logits, joints, 1.4, weights)
    torch.testing.assert_close(a, b, rtol=1e-13, atol=1e-13)
