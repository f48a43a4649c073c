"""heatmap_mse_2d / heatmap_mse_3d: every backend against the reference (generic tests) + specifics."""

import pytest
import torch

import fastpose.reference as R
from fastpose import ops
from tests._tolerances import assert_close
from tests.ops._cases import make_inputs, run
from tests.ops._generic import *  # noqa: F403

OPS = ["heatmap_mse_2d", "heatmap_mse_3d"]


@pytest.mark.parametrize("reduction", ["sum", "none"])
@pytest.mark.parametrize("weighted", [True, False])
def test_reductions_and_weights(op, backend, reduction, weighted, fresh_seed):
    gen = torch.Generator().manual_seed(fresh_seed)
    x, (mu, sigma, w, _) = make_inputs(op, gen, torch.float32, j=18)
    w = w if weighted else None
    args = (mu, sigma, w, reduction)
    exp_out, exp_grad = run(getattr(R, op), x.double(), (mu, sigma, w, reduction))
    out, grad = run(getattr(ops, op), x, args, backend=backend)
    assert out[0].shape == ((x.shape[0], x.shape[1]) if reduction == "none" else ())
    assert_close(out[0], exp_out[0], torch.float32, f"{op}[{backend}] {reduction}")
    assert_close(grad, exp_grad, torch.float32, f"{op}[{backend}] {reduction} gradient")


def test_perfect_heatmap_has_zero_loss(op, backend):
    """A heatmap equal to its own Gaussian target (built by hand here) gives a loss of ~0."""
    b, j = 2, 3
    sizes = (5, 6, 7) if op.endswith("3d") else (9, 11)
    gen = torch.Generator().manual_seed(4)
    mu = torch.rand(b, j, len(sizes), generator=gen, dtype=torch.float64) * (torch.tensor(sizes[::-1]) - 1)
    grids = torch.meshgrid(*[torch.arange(s, dtype=torch.float64) for s in sizes], indexing="ij")
    d2 = sum((grids[len(sizes) - 1 - a] - mu[..., a].reshape(b, j, *([1] * len(sizes)))) ** 2
             for a in range(len(sizes)))
    target = torch.exp(-d2 / (2 * 1.5 ** 2))
    loss = getattr(ops, op)(target.float(), mu, 1.5, backend=backend)
    assert abs(loss.item()) < 1e-6
    loss_off = getattr(ops, op)(target.float() + 0.1, mu, 1.5, backend=backend)
    assert abs(loss_off.item() - 0.01) < 1e-6
