"""Chunked evaluation (fastpose.reference._rows.CHUNK_ELEMS) gives the results of one piece.

The reference works on chunks of whole (b, j) rows, and the CPU backend converts float16/bfloat16
input chunk by chunk; each row's result depends only on that row, so forcing one row per chunk
must not change any output or gradient (bit for bit on the CPU kernels, whose per-row reduction
order is fixed by the shape).
"""

from __future__ import annotations

import pytest
import torch

import fastpose.reference._rows as rows_mod
from fastpose import ops

SHAPE = (2, 3, 4, 5, 6)


def _all_outputs(backend: str, x: torch.Tensor, mu: torch.Tensor, w: torch.Tensor):
    out = []
    for fn in (lambda t: ops.heatmap_mse_3d(t, mu, 1.5, w, "none", backend=backend),
               lambda t: ops.soft_argmax_3d(t, backend=backend),
               lambda t: ops.soft_argmax_heatmap_mse_3d(t, mu, 1.5, w, backend=backend),
               lambda t: ops.heatmap_mse_2d(t[:, :, 0], mu[..., :2], 1.5, w, "mean", backend=backend),
               lambda t: ops.soft_argmax_2d(t[:, :, 1], backend=backend)):
        t = x.detach().clone().requires_grad_(True)
        res = fn(t)
        res = res if isinstance(res, tuple) else (res,)
        gen = torch.Generator().manual_seed(1)
        loss = sum((r.float() * torch.rand(r.shape, generator=gen)).sum() for r in res)
        loss.backward()
        out += [r.detach() for r in res] + [t.grad]
    return out


@pytest.mark.parametrize("backend", ["reference", "cpu"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16], ids=str)
def test_one_row_per_chunk_changes_nothing(backend, dtype, monkeypatch):
    if backend not in ops.available_backends("heatmap_mse_3d"):
        pytest.skip(f"{backend} not available")
    gen = torch.Generator().manual_seed(5)
    x = torch.randn(SHAPE, generator=gen).to(dtype)
    mu = torch.rand(SHAPE[0], SHAPE[1], 3, generator=gen) * 4
    w = torch.rand(SHAPE[0], SHAPE[1], generator=gen) + 0.5
    monkeypatch.setattr(rows_mod, "MIN_CHUNKS", 1)
    monkeypatch.setattr(rows_mod, "CHUNK_ELEMS", 1 << 30)  # one chunk
    whole = _all_outputs(backend, x, mu, w)
    monkeypatch.setattr(rows_mod, "CHUNK_ELEMS", 4 * 5 * 6)  # one 3D row per chunk
    chunked = _all_outputs(backend, x, mu, w)
    for a, b in zip(whole, chunked, strict=True):
        if backend == "cpu":
            assert torch.equal(a, b)
        else:  # float32 sums of the same values, at most reordered: one ulp of the output dtype
            tol = {torch.float32: 1e-6, torch.float16: 1e-3, torch.bfloat16: 8e-3}[dtype]
            torch.testing.assert_close(a, b, rtol=tol, atol=tol * 1e-2)
