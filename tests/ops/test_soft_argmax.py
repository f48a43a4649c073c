"""soft_argmax_2d / soft_argmax_3d: every backend against the reference (generic tests) + specifics."""

import pytest
import torch

from fastpose import ops
from tests.ops._generic import *  # noqa: F403  (the generic tests, parametrised by conftest)

OPS = ["soft_argmax_2d", "soft_argmax_3d"]


@pytest.mark.parametrize("sign", [1.0, -1.0])
def test_extreme_logits_give_the_peak(op, backend, sign):
    """Logits of +-1e4 must not overflow: a single dominant voxel gives exactly its index."""
    shape = (2, 17, 5, 6, 7) if op.endswith("3d") else (2, 17, 9, 11)
    g = torch.Generator().manual_seed(3)
    x = torch.rand(shape, generator=g) * sign * 1e4  # huge spread, one clear maximum per joint
    flat = x.flatten(2)
    idx = flat.argmax(-1)
    flat.scatter_(-1, idx[..., None], 2e4)
    x = flat.view(shape).requires_grad_(True)
    coords = getattr(ops, op)(x, backend=backend)
    sizes = shape[2:][::-1]  # (W, H[, D])
    expect = []
    rem = idx
    for s in sizes:
        expect.append(rem % s)
        rem = rem // s
    expect = torch.stack(expect, -1).float()
    assert torch.isfinite(coords).all()
    torch.testing.assert_close(coords, expect, atol=1e-4, rtol=0)
    coords.sum().backward()
    assert torch.isfinite(x.grad).all()
