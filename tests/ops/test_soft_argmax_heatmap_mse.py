"""soft_argmax_heatmap_mse_3d (fused head): every backend against the reference + composition."""

import torch

from fastpose import ops
from tests._tolerances import assert_close
from tests.ops._cases import make_inputs
from tests.ops._generic import *  # noqa: F403

OPS = ["soft_argmax_heatmap_mse_3d"]


def test_equals_the_two_ops(op, backend, fresh_seed):
    """The fused head is exactly (soft_argmax_3d, heatmap_mse_3d mean) on the same volume."""
    gen = torch.Generator().manual_seed(fresh_seed)
    x, (mu, sigma, w) = make_inputs(op, gen, torch.float32, j=18)
    coords, mse = ops.soft_argmax_heatmap_mse_3d(x, mu, sigma, w, backend=backend)
    assert_close(coords, ops.soft_argmax_3d(x, backend="reference"), torch.float32, "coords")
    assert_close(mse, ops.heatmap_mse_3d(x, mu, sigma, w, backend="reference"), torch.float32, "mse")
