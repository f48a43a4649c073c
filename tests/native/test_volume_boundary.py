"""The typed kernel boundary for the volume ops (soft-argmax, heatmap MSE, fused head), on the CPU.

The CUDA glue of every volume op, run on ``meta`` tensors under ``dry_run`` (no GPU needed), hands
each kernel exactly the buffers its KernelSpec declares, for every dtype: storage-type volumes
(float16/bfloat16 stay half on CUDA), accumulation-type joints, weights, stats, loss rows and
workspaces. A buffer of the wrong role is refused before any C++ runs.
"""

from __future__ import annotations

import pytest
import torch

from fastpose import _ext
from fastpose.ops.native import _glue as g

pytestmark = pytest.mark.skipif(not _ext.loaded(), reason="fastpose._C is not built")

DTYPES = [torch.float16, torch.bfloat16, torch.float32, torch.float64]


def _meta(dtype, shape=(2, 3, 4, 5, 6)):
    acc = g.acc_dtype(dtype)
    x = torch.empty(shape, dtype=dtype, device="meta")
    b, j = shape[:2]
    mu = torch.empty((b, j, len(shape) - 2), dtype=acc, device="meta")
    w = torch.empty((b, j), dtype=acc, device="meta")
    return x, mu, w, acc


@pytest.mark.parametrize("backend", ["cuda", "cpu"])
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_volume_glue_buffers_satisfy_the_declarations(backend, dtype):
    from fastpose.ops.native import heatmap_mse, soft_argmax, soft_argmax_heatmap_mse

    x, mu, w, acc = _meta(dtype)
    with g.dry_run():
        coords, stats = soft_argmax._forward(backend, 3, x)
        assert coords.dtype == dtype and stats.shape == (2, 3, 5) and stats.dtype == acc
        grad = soft_argmax._backward(backend, 3, torch.empty((2, 3, 3), device="meta"), x, stats)
        assert grad.shape == x.shape and grad.dtype == dtype
        x2, mu2, w2, _ = _meta(dtype, (2, 3, 5, 6))
        for reduction in ("mean", "none"):
            loss = heatmap_mse._forward(backend, 2, x2, mu2, 1.5, w2, reduction)
            gl = torch.empty(loss.shape, dtype=dtype, device="meta")
            grad2 = heatmap_mse._backward(backend, 2, gl, x2, mu2, 1.5, None, reduction)
            assert grad2.shape == x2.shape and grad2.dtype == dtype
        c, mse, st = soft_argmax_heatmap_mse._forward(backend, x, mu, 2.0, w)
        assert c.dtype == dtype and mse.dtype == dtype and st.dtype == acc
        for gc, gm in ((torch.empty((2, 3, 3), device="meta"), None), (None, torch.empty((), device="meta")),
                       (torch.empty((2, 3, 3), device="meta"), torch.empty((), device="meta"))):
            grad3 = soft_argmax_heatmap_mse._backward(backend, gc, gm, x, mu, 2.0, w, st)
            assert grad3.shape == x.shape and grad3.dtype == dtype


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16], ids=str)
def test_stats_in_the_storage_dtype_are_refused(dtype):
    """The saved stats are accumulation-typed on both sides: handing the CUDA backward half-precision
    stats (what a kernel writing T into them would need) fails on the CPU, before C++."""
    from fastpose.ops.native import soft_argmax

    x, _, _, acc = _meta(dtype)
    n = 4 * 5 * 6
    bufs = {"grad_coords": torch.empty((6, 3), dtype=acc, device="meta"), "logits": x.view(6, n),
            "stats": torch.empty((6, 5), dtype=dtype, device="meta"),
            "grad_logits": torch.empty((6, n), dtype=dtype, device="meta")}
    sizes = {"R": 6, "N": n, "d": 4, "h": 5, "w": 6, "ndim": 3}
    with g.dry_run(), pytest.raises(ValueError, match=r"soft_argmax_backward_cuda: buffer 'stats' \(role acc"):
        soft_argmax.BACKWARD.launch("cuda", dtype, torch.device("meta"), sizes, bufs)
