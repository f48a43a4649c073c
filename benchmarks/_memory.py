"""Memory and roofline: peak bytes allocated by one step, the bytes a perfect implementation must
move, and the machine's measured copy bandwidth (the roofline the report divides by)."""

from __future__ import annotations

import statistics
import time

import torch

from benchmarks._cases import IMAGE_OPS, MODES, VOLUMETRIC_OPS, Case
from benchmarks._timing import Step

__all__ = ["bytes_moved", "copy_bandwidth", "peak_memory_bytes"]


def peak_memory_bytes(step: Step, device: torch.device) -> int:
    """Peak bytes allocated by torch during one call of ``step`` above what was live before it.

    GPU: ``torch.cuda.max_memory_allocated`` after ``reset_peak_memory_stats`` (the caching
    allocator's exact count of live tensor bytes). CPU: the c10 CPU allocator reports every
    allocation and free to the profiler when ``profile_memory=True``; the ``[memory]`` events
    (bytes > 0 allocate, < 0 free) are summed in time order and the running maximum is the peak.
    This counts every tensor torch allocates on the calling thread (C++ extension kernels
    included when they allocate through torch), not scratch memory a kernel takes with ``malloc``.
    """
    a, kw = step.setup() if step.setup else ((), {})
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        base = torch.cuda.memory_allocated(device)
        out = step.target(*a, **kw)
        torch.cuda.synchronize(device)
        peak = torch.cuda.max_memory_allocated(device) - base
        del out
        return int(peak)
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU], profile_memory=True, record_shapes=False) as prof:
        out = step.target(*a, **kw)
    del out
    events = [e for e in prof.profiler.kineto_results.events() if e.name() == "[memory]"
              and e.device_type() == torch.autograd.DeviceType.CPU]
    events.sort(key=lambda e: e.start_ns())
    live = peak = 0
    for e in events:
        live += e.nbytes()
        peak = max(peak, live)
    return int(peak)


# ------------------------------------------------------------------------------------------------
# Bytes that must move (the roofline)
# ------------------------------------------------------------------------------------------------
def bytes_moved(case: Case, mode: str) -> int:
    """The bytes a perfect implementation must read and write for ``case`` in ``mode``.

    Volumes (N = B*J*D*H*W elements of size s): forward reads the volume once (N s);
    backward reads it and writes the gradient (2 N s), the probability volume is never stored.
    forward+backward: soft-argmax and the fused head 3 N s (the upstream gradient of the
    coordinates is unknown in the forward pass, so the backward re-reads the logits); the heatmap
    MSE 2 N s (a scalar loss: its gradient can be formed in the forward pass, the backward is then
    a scale). Small terms (joints, weights, coordinates, statistics) are counted too.
    Points (P = N*T*J points): project_to_2d forward reads 3P, writes 2P; backward reads the
    upstream 2P and the points 3P and writes 3P. reprojection_loss forward reads points 3P and
    keypoints 2P; backward reads them and writes 3P; forward+backward (a scalar loss, gradient
    formed in the forward pass) reads 5P and writes 3P. Cameras (N, 9) are read each pass.
    """
    if mode not in MODES:
        raise ValueError(f"bytes_moved: mode must be one of {MODES}, got {mode!r}")
    s = case.torch_dtype.itemsize
    s2 = 8 if case.torch_dtype == torch.float64 else 4  # secondary tensors
    d = case.size
    op = case.op
    if op in VOLUMETRIC_OPS or op in IMAGE_OPS:
        ndim = 3 if "D" in d else 2
        bj = d["B"] * d["J"]
        n = bj * d["H"] * d["W"] * (d["D"] if ndim == 3 else 1)
        if op.startswith("soft_argmax_heatmap"):
            small_f = bj * (ndim + 1) * s2 + bj * ndim * s + s  # joints+weights in, coords+mse out
            small_b = bj * (ndim + 1) * s2 + 2 * bj * ndim * s2 + bj * s2  # + coords, grad, lse
            per = {"forward": n * s + small_f, "backward": 2 * n * s + small_b,
                   "forward+backward": 3 * n * s + small_f + small_b}
        elif op.startswith("soft_argmax"):
            small_f = bj * ndim * s
            small_b = 2 * bj * ndim * s + bj * s2  # upstream grad + coords + lse
            per = {"forward": n * s + small_f, "backward": 2 * n * s + small_b,
                   "forward+backward": 3 * n * s + small_f + small_b}
        else:  # heatmap_mse
            small = bj * (ndim + 1) * s2 + s
            per = {"forward": n * s + small, "backward": 2 * n * s + small,
                   "forward+backward": 2 * n * s + small}
        return int(per[mode])
    p = d["N"] * d["T"] * d["J"]
    cam = d["N"] * 9 * s2
    if op == "project_to_2d":
        fwd = 3 * p * s + 2 * p * s + cam
        bwd = 2 * p * s + 3 * p * s + cam + 3 * p * s
        per = {"forward": fwd, "backward": bwd, "forward+backward": fwd + bwd}
    else:
        fwd = 3 * p * s + 2 * p * s2 + cam + s
        bwd = 3 * p * s + 2 * p * s2 + cam + 3 * p * s
        per = {"forward": fwd, "backward": bwd, "forward+backward": bwd}
    return int(per[mode])


def copy_bandwidth(device: str | torch.device, nbytes: int | None = None) -> float:
    """Measured copy bandwidth in bytes/s (bytes read + bytes written per second), the roofline.

    GPU: a 1 GiB device-to-device ``copy_`` timed with CUDA events; CPU: 256 MiB with the host
    clock at the current torch thread count. Median of several runs.
    """
    device = torch.device(device)
    nbytes = nbytes or (2**30 if device.type == "cuda" else 2**28)
    src = torch.ones(nbytes // 4, dtype=torch.float32, device=device)
    dst = torch.empty_like(src)
    times = []
    for i in range(12 if device.type == "cuda" else 7):
        if device.type == "cuda":
            a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            a.record()
            dst.copy_(src)
            b.record()
            b.synchronize()
            t = a.elapsed_time(b) / 1e3
        else:
            t0 = time.perf_counter()
            dst.copy_(src)
            t = time.perf_counter() - t0
        if i >= 2:  # the first runs fault pages in / warm up
            times.append(t)
    return 2 * src.numel() * 4 / statistics.median(times)

