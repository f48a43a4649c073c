"""Peak memory of forward + backward (issue 12, item 3): ``heatmap_mse_3d`` and the fused head
keep nothing volume-sized between forward and backward (the loss gradient is recomputed), so the
peak above the inputs is the gradient itself (one input-sized volume) plus a few bounded chunks.

Measured on the CPU with the profiler's allocator events (the method of benchmarks/_memory.py):
every tensor torch allocates on the calling thread, autograd's backward included. The reference
and the CPU float16/bfloat16 path work on chunks of whole rows (at most 1/16 of the rows and
``CHUNK_ELEMS`` values, fastpose.reference._rows); with the shipped settings a chunk of this
16-row volume is one row, small against the volume, so a volume-sized temporary cannot hide in
the allowance of a few chunks.
"""

from __future__ import annotations

import pytest
import torch
from torch.profiler import ProfilerActivity, profile

import fastpose.reference._rows as rows_mod
from fastpose import ops
from tests.ops._cases import backends

SHAPE = (2, 8, 16, 16, 16)  # 16 rows of 4096 voxels
DTYPES = (torch.float32, torch.float64, torch.float16, torch.bfloat16)


def _peak_bytes(fn) -> int:
    """Peak of (allocated - freed) bytes during ``fn()``, in time order (CPU allocator events)."""
    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        fn()
    events = [e for e in prof.profiler.kineto_results.events()
              if e.name() == "[memory]" and e.device_type() == torch.autograd.DeviceType.CPU]
    events.sort(key=lambda e: e.start_ns())
    live = peak = 0
    for e in events:
        live += e.nbytes()
        peak = max(peak, live)
    return peak


def _step(op: str, backend: str, x: torch.Tensor, mu: torch.Tensor):
    def run():
        xr = x.detach().requires_grad_(True)  # a leaf view of the input: no copy
        if op == "heatmap_mse_3d":
            loss = ops.heatmap_mse_3d(xr, mu, 2.0, backend=backend)
        else:
            coords, mse = ops.soft_argmax_heatmap_mse_3d(xr, mu, 2.0, backend=backend)
            loss = coords.sum() + mse
        loss.backward()  # xr.grad: the one input-sized volume

    return run


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("op", ["heatmap_mse_3d", "soft_argmax_heatmap_mse_3d"])
def test_forward_backward_peak_is_one_volume(op, dtype):
    gen = torch.Generator().manual_seed(3)
    x = torch.randn(SHAPE, generator=gen).to(dtype)
    mu = torch.rand(SHAPE[0], SHAPE[1], 3, generator=gen) * 15
    volume = x.numel() * x.element_size()
    acc_size = 8 if dtype == torch.float64 else 4
    rows, n_vox = SHAPE[0] * SHAPE[1], x[0, 0].numel()
    _, first_stop = next(rows_mod.row_chunks(rows, n_vox, x))
    assert first_stop == 1, "the shipped chunking should give one row per chunk here"
    chunk = first_stop * n_vox * acc_size  # one chunk in the accumulation dtype
    for backend in backends(op, "cpu", dtype):
        if backend == "triton":
            continue  # measured in the interpreter separately (below)
        step = _step(op, backend, x, mu)
        step()  # warm-up: lazy initialisation does not count
        peak = _peak_bytes(step)
        allowance = volume + 4 * chunk + 16 * 1024  # the gradient, <= 4 chunks, small (B, J) tensors
        assert peak <= allowance, (f"{op}[{backend}] {dtype}: peak {peak / volume:.3f} volumes above the inputs "
                                   f"(allowed {allowance / volume:.3f})")
        assert peak >= volume, f"{op}[{backend}] {dtype}: the measurement missed the gradient ({peak} B)"


@pytest.mark.parametrize("op", ["heatmap_mse_3d", "soft_argmax_heatmap_mse_3d"])
def test_triton_interpreter_peak_is_one_volume(op):
    """The Triton kernels allocate the gradient and (B, J)-sized buffers only. float32 here;
    bfloat16 under the interpreter is stored through a float32 buffer (kernels._common.store_dtype),
    which GPUs do not need."""
    if "triton" not in backends(op, "cpu"):
        pytest.skip("the Triton interpreter backend is not available")
    gen = torch.Generator().manual_seed(4)
    x = torch.randn((1, 2, 8, 8, 8), generator=gen)
    mu = torch.rand(1, 2, 3, generator=gen) * 7
    step = _step(op, "triton", x, mu)
    step()
    volume = x.numel() * x.element_size()
    peak = _peak_bytes(step)
    assert volume <= peak <= 1.05 * volume + 4096, f"{op}[triton]: peak {peak / volume:.3f} volumes"
