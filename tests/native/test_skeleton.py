"""The skeleton kernel ``row_scale`` (out[r, i] = src[r, i] * scale[r]) carried end to end: called
directly through fastpose._C, and as the backward of the loss ops that save their gradient."""

from __future__ import annotations

import pytest
import torch

from fastpose import ops
from tests.native._util import require_ext

_CODE = {torch.float32: 0, torch.float64: 1}


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize(("rows", "cols"), [(1, 1), (1, 70001), (5, 13), (3, 200000)])
def test_row_scale_matches_torch(dtype, rows, cols):
    C = require_ext()
    g = torch.Generator().manual_seed(rows * 1000 + cols)
    src = torch.randn(rows, cols, generator=g, dtype=dtype)
    scale = torch.randn(rows, generator=g, dtype=dtype)
    out = torch.full_like(src, float("nan"))  # poisoned: every value must be written
    C.row_scale_cpu(_CODE[dtype], src.data_ptr(), scale.data_ptr(), out.data_ptr(), rows, cols, 2)
    assert torch.equal(out, src * scale[:, None])  # one multiply per value: exact


def test_row_scale_in_place():
    C = require_ext()
    src = torch.linspace(-3, 3, 4 * 1000).reshape(4, 1000)
    expect = src * torch.tensor([2.0, -1.0, 0.5, 0.0])[:, None]
    scale = torch.tensor([2.0, -1.0, 0.5, 0.0])
    C.row_scale_cpu(0, src.data_ptr(), scale.data_ptr(), src.data_ptr(), 4, 1000, 1)
    assert torch.equal(src, expect)


def test_row_scale_empty_and_bad_input():
    C = require_ext()
    C.row_scale_cpu(0, 0, 0, 0, 0, 5, 1)  # no rows: nothing touched, no error
    x = torch.ones(3)
    with pytest.raises(ValueError, match="rows and cols must be >= 0"):
        C.row_scale_cpu(0, x.data_ptr(), x.data_ptr(), x.data_ptr(), -1, 3, 1)
    with pytest.raises(ValueError, match="float32 or float64"):
        C.row_scale_cpu(3, x.data_ptr(), x.data_ptr(), x.data_ptr(), 1, 3, 1)


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_row_scale_is_the_heatmap_backward(reduction):
    """The backward of heatmap_mse (cpu) is the saved gradient scaled by the incoming gradient."""
    require_ext()
    g = torch.Generator().manual_seed(7)
    h = torch.rand(2, 3, 4, 5, 6, generator=g, dtype=torch.float64, requires_grad=True)
    mu = torch.rand(2, 3, 3, generator=g, dtype=torch.float64) * 3
    loss = ops.heatmap_mse_3d(h, mu, 1.3, None, reduction, backend="cpu")
    cot = torch.randn(loss.shape, generator=g, dtype=torch.float64)
    (grad,) = torch.autograd.grad(loss, h, cot)
    (ref,) = torch.autograd.grad(ops.heatmap_mse_3d(h, mu, 1.3, None, reduction, backend="reference"), h, cot)
    torch.testing.assert_close(grad, ref, rtol=1e-12, atol=1e-14)
    # the forward saved the unscaled gradient: a second backward through the same graph (other
    # cotangent) must give the proportional result, i.e. the saved gradient was not consumed
    loss = ops.heatmap_mse_3d(h, mu, 1.3, None, reduction, backend="cpu")
    (g1,) = torch.autograd.grad(loss, h, cot, retain_graph=True)
    (g2,) = torch.autograd.grad(loss, h, 3.0 * cot)
    torch.testing.assert_close(g2, 3.0 * g1, rtol=1e-14, atol=0)
