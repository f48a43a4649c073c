"""The reference math stays exportable with a dynamic batch (the AOTInductor engine decomposes the
reference custom ops into it): no in-place update in the traced graph, and no guard that
specialises the batch (the row chunking runs as one piece under symbolic sizes)."""

from __future__ import annotations

import torch

from fastpose import ops
from fastpose.engine.aoti import decomposition_table


class _Head(torch.nn.Module):
    def forward(self, x: torch.Tensor, mu: torch.Tensor):
        coords, mse = ops.soft_argmax_heatmap_mse_3d(x, mu, 2.0, backend="reference")
        per_joint = ops.heatmap_mse_3d(x, mu, 2.0, reduction="none", backend="reference")
        coords2d = ops.soft_argmax_2d(x[:, :, 0], backend="reference")
        loss2d = ops.heatmap_mse_2d(x[:, :, 1], mu[..., :2], 1.5, backend="reference")
        return coords, mse, per_joint, coords2d, loss2d


def test_reference_decomposition_keeps_a_dynamic_batch():
    gen = torch.Generator().manual_seed(0)
    x = torch.randn((3, 4, 6, 7, 8), generator=gen)
    mu = torch.rand((3, 4, 3), generator=gen) * 5
    batch = torch.export.Dim("batch", min=1, max=64)
    ep = torch.export.export(_Head(), (x, mu), dynamic_shapes=({0: batch}, {0: batch}))
    ep = ep.run_decompositions(decomposition_table())
    (sym,) = ep.range_constraints.values()
    assert (sym.lower, sym.upper) == (1, 64), f"the batch was specialised: {ep.range_constraints}"
    x5 = torch.randn((5, 4, 6, 7, 8), generator=gen)
    mu5 = torch.rand((5, 4, 3), generator=gen) * 5
    for got, want in zip(ep.module()(x5, mu5), _Head()(x5, mu5), strict=True):
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6)
