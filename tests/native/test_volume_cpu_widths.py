"""The CPU volume kernels (csrc/common/volume_cpu.h) at the line widths that take their specialised
paths, against the float64 reference, forward and backward.

The generic tests (tests/ops, tests/native/test_kernels_cpu.py) use odd sizes (W = 7, 9, 11, 17, 41,
...), which run the kernels' generic line loop. Lines of exactly 1 to 4 vectors (W = 16, 32, 48, 64
in float32; 8, 16, 24, 32 in float64: the usual heatmap sizes) run loops unrolled for that width,
and every forward takes the next block's maximum during the current block's exp pass. Here each
row has several max blocks and, in the large case, several chunks (a shorter last one), and the
largest logit of a row sits in its first, a middle or its last block, so that a wrong block
maximum, a wrong lane x index or a skipped remainder shows as a wrong coordinate, loss or gradient.
"""

from __future__ import annotations

import pytest
import torch

from fastpose import ops
from tests.native._util import require_ext

pytestmark = pytest.mark.usefixtures("_ext_loaded")


@pytest.fixture
def _ext_loaded():
    require_ext()


# (dtype, W) pairs: every specialised width of each dtype plus one generic width next to them.
_WIDTHS = [(torch.float32, w) for w in (16, 32, 48, 64, 24)] + [(torch.float64, w) for w in (8, 16, 24, 32, 12)]
# The project's per-dtype tolerances (tests/_tolerances.py), the absolute part relative to the size of
# the expected tensor (float32 kernels are compared with the float64 reference here, so their
# rounding counts; a wrong block maximum, x index or table entry is far larger).
_ATOL_RTOL = {torch.float32: (2e-5, 2e-4), torch.float64: (1e-10, 1e-9)}


def _logits(shape: tuple[int, ...], dtype: torch.dtype, seed: int) -> torch.Tensor:
    """Random logits with one row's maximum in its first line, one in a middle line and one in its
    last line (rows 0, 1, 2 of batch 0), 6 above everything else."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(shape, generator=g, dtype=torch.float64)
    flat = x.view(shape[0] * shape[1], -1)
    n = flat.shape[1]
    w = shape[-1]
    for row, pos in ((0, 3), (1, n // 2 + 5), (2, n - w + 1)):
        flat[row, pos] = flat[row].max() + 6.0
    return x.to(dtype)


def _grad_of(fn, x: torch.Tensor, seed: int = 1):
    """Outputs of fn(x) and d(sum_k c_k . out_k)/dx for fixed random float64 cotangents c_k."""
    x = x.detach().clone().requires_grad_(True)
    outs = fn(x)
    outs = outs if isinstance(outs, tuple) else (outs,)
    g = torch.Generator().manual_seed(seed)
    loss = sum((o.double() * torch.randn(o.shape, generator=g, dtype=torch.float64)).sum() for o in outs)
    (grad,) = torch.autograd.grad(loss, x)
    return [o.detach().double() for o in outs], grad.double()


def _check(fn, x: torch.Tensor) -> None:
    out, grad = _grad_of(lambda t: fn(t, "cpu"), x)
    exp_out, exp_grad = _grad_of(lambda t: fn(t, "reference"), x.double())
    atol, rtol = _ATOL_RTOL[x.dtype]
    for o, e in [*zip(out, exp_out, strict=True), (grad, exp_grad)]:
        assert o.shape == e.shape
        torch.testing.assert_close(o, e, rtol=rtol, atol=atol * max(e.abs().max().item(), 1e-3))


def _joints(b: int, j: int, spatial: tuple[int, ...], seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    extent = torch.tensor(spatial[::-1], dtype=torch.float64) - 1
    return torch.rand(b, j, len(spatial), generator=g, dtype=torch.float64) * extent


@pytest.mark.parametrize(("dtype", "w"), _WIDTHS, ids=lambda v: str(v).replace("torch.", ""))
def test_soft_argmax_3d_widths(dtype, w):
    x = _logits((1, 4, 3, 40, w), dtype, seed=w)  # 120 lines a row: several max blocks
    _check(lambda t, be: ops.soft_argmax_3d(t, backend=be), x)


@pytest.mark.parametrize(("dtype", "w"), _WIDTHS, ids=lambda v: str(v).replace("torch.", ""))
def test_soft_argmax_2d_widths(dtype, w):
    x = _logits((2, 3, 70, w), dtype, seed=w + 1)
    _check(lambda t, be: ops.soft_argmax_2d(t, backend=be), x)


@pytest.mark.parametrize(("dtype", "w"), _WIDTHS, ids=lambda v: str(v).replace("torch.", ""))
def test_heatmap_mse_widths(dtype, w):
    x2 = (0.3 * _logits((2, 3, 50, w), dtype, seed=w + 2) + 0.2).to(dtype)
    mu2 = _joints(2, 3, (50, w), seed=w)
    wt = torch.rand(2, 3, generator=torch.Generator().manual_seed(w), dtype=torch.float64) + 0.5
    _check(lambda t, be: ops.heatmap_mse_2d(t, mu2, 1.5, wt, "none", backend=be), x2)
    x3 = (0.3 * _logits((1, 3, 4, 30, w), dtype, seed=w + 3) + 0.2).to(dtype)
    mu3 = _joints(1, 3, (4, 30, w), seed=w + 1)
    _check(lambda t, be: ops.heatmap_mse_3d(t, mu3, 1.5, None, "mean", backend=be), x3)


@pytest.mark.parametrize(("dtype", "w"), _WIDTHS, ids=lambda v: str(v).replace("torch.", ""))
def test_fused_head_widths(dtype, w):
    x = _logits((1, 3, 4, 30, w), dtype, seed=w + 4)
    mu = _joints(1, 3, (4, 30, w), seed=w + 2)
    _check(lambda t, be: ops.soft_argmax_heatmap_mse_3d(t, mu, 2.0, None, backend=be), x)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=str)
def test_fused_head_several_chunks_a_row(dtype):
    """Rows of 40 * 48 lines of 64 values: several chunks of 32768 values (a shorter last one), each
    with its own block maxima, merged in order."""
    x = _logits((1, 3, 40, 48, 64), dtype, seed=7)
    mu = _joints(1, 3, (40, 48, 64), seed=7)
    _check(lambda t, be: ops.soft_argmax_heatmap_mse_3d(t, mu, 2.0, None, backend=be), x)
