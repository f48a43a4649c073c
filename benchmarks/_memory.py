"""Memory and roofline: peak bytes allocated by one step, the bytes a perfect implementation must
move, and the machine's measured copy bandwidth (the roofline the report divides by)."""

from __future__ import annotations

import functools
import statistics
import time

import torch

from benchmarks._cases import MODES, Case, cases_for, make_inputs
from benchmarks._timing import Step
from fastpose.ops._spec import SPECS

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
def _numel(shape: tuple, sizes: dict[str, tuple[int, ...]]) -> int:
    """Elements of a declared shape (size symbols and ints, ``*L`` / ``*C`` leading dims)."""
    n = 1
    for sym in shape:
        for v in (sizes[sym] if isinstance(sym, str) else (sym,)):
            n *= v
    return n


@functools.cache
def _passed(op: str, camera: str) -> tuple[str, ...]:
    """Names of the tensor arguments the benchmark cases of ``op`` pass (an optional one may be
    None there: the projection cases are unweighted), read from a tiny case's inputs."""
    case = next(c for c in cases_for(op, "cpu", "tiny") if c.camera == camera or not c.camera)
    _x, args = make_inputs(case, "cpu")
    return tuple(a.name for a, v in zip(SPECS[op].args[1:], args, strict=True) if isinstance(v, torch.Tensor))


def bytes_moved(case: Case, mode: str) -> int:
    """The bytes a perfect implementation must read and write for ``case`` in ``mode``, from the
    op's declaration (``fastpose/ops/_spec.py``: argument and output shapes, input family).

    With M the main input's bytes (N elements of size s: the volume, image maps or points),
    S the secondary tensors the case passes (joints, weights, camera, keypoints; float32, float64
    for float64 inputs) and O the outputs (size s):

    - forward reads the main input and S once and writes O: ``M + S + O``;
    - backward reads the main input, S and the upstream gradients (O) and writes the main input's
      gradient: ``2 M + S + O``, plus the saved softmax statistics of an op with coordinate outputs
      (a volume / image op with a non-scalar output: (B, J, 5) in the accumulation dtype, the
      saved state of docs/ops.md), the probability volume is never stored;
    - forward+backward: forward + backward when an output is not a scalar (its upstream gradient
      is unknown in the forward pass, so the backward re-reads the input: soft-argmax and the fused
      heads 3 M, project_to_2d); only the backward's bytes for a scalar loss (heatmap MSE,
      reprojection loss: the gradient can be formed in the forward pass, the backward is a scale).
    """
    if mode not in MODES:
        raise ValueError(f"bytes_moved: mode must be one of {MODES}, got {mode!r}")
    spec = SPECS[case.op]
    s = case.torch_dtype.itemsize
    s2 = 8 if case.torch_dtype == torch.float64 else 4  # secondary tensors
    d = case.size
    sizes: dict[str, tuple[int, ...]] = {k: (v,) for k, v in d.items()}
    if spec.family == "points":  # points (N, T, J, 3); camera per window (N, 9) or per frame (N, T, 9)
        sizes["*L"] = (d["N"], d["T"])
        sizes["*C"] = (d["N"], d["T"]) if case.camera == "frame" else (d["N"],)
    main = _numel(spec.main.shape, sizes) * s
    passed = _passed(case.op, case.camera)
    sec = sum(_numel(a.shape, sizes) * s2 for a in spec.args[1:] if a.name in passed)
    outs = [_numel(shape, sizes) for _name, shape in spec.outputs]
    out = sum(outs) * s
    coords = spec.family in ("volume", "image") and any(shape != () for _name, shape in spec.outputs)
    saved = d["B"] * d["J"] * 5 * s2 if coords else 0
    forward = main + sec + out
    backward = 2 * main + sec + out + saved
    per = {"forward": forward, "backward": backward,
           "forward+backward": forward + backward if any(shape != () for _n, shape in spec.outputs) else backward}
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

