"""Shapes, inputs, providers, timers, memory and roofline arithmetic shared by the benchmark suites.

Everything a ``benchmarks/test_bench_<stem>.py`` needs lives here, so the four suites are a list of
ops and one call to :func:`run_item`.

Shapes (DESIGN.md "Benchmarks", taken from the papers):

- volumetric (Tsai & Luo): B = 32 on a GPU (the paper's batch), B = 8 on the CPU (the CPU seed
  shape of issue 3), J = 18, D = H = W = 64; the 2D heatmaps of the same model are J x 64 x 64;
- lifting (SPGNet / VideoPose3D): 1024 windows x 243 frames x 17 joints;
- sweeps (mode forward+backward only): volume edge 16..96 (3D ops), batch (fused head), frames per
  window 1, 27, 81 (and the paper's 243: the receptive fields; T = 1 is the "1024 x 17 points" seed
  shape of issue 3).

Providers: ``reference`` (the plain :mod:`fastpose.reference` functions, differentiated by
autograd: what a user writes without fastpose), ``reference-compiled`` (the same functions under
``torch.compile(dynamic=False)``), and every backend registered in :mod:`fastpose.ops._dispatch` for
the device except the ``reference`` backend (``cpu``, ``cuda``, ``triton``), called through the
public op with ``backend=``.

Modes: ``forward`` (a training forward: the input requires grad, so whatever the backward needs is
saved), ``backward`` (one backward pass; the forward runs untimed in pytest-benchmark's ``setup``)
and ``forward+backward``.

Timing: on a GPU each round is bracketed by CUDA events after an L2 flush (the device time of the
call, never the host clock alone); pytest-benchmark's own (host) statistics of the same rounds are
kept too. On the CPU the host clock of pytest-benchmark is the measurement.
"""

from __future__ import annotations

import functools
import math
import os
import platform
import socket
import statistics
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import pytest
import torch

import fastpose.reference as R
from fastpose import ops as _ops
from fastpose.ops import _dispatch

__all__ = [
    "bench_device",
    "bench_selection",
    "CI_COMPILED",
    "BenchItem",
    "LIFTING",
    "MODES",
    "PROVIDERS",
    "TINY",
    "Case",
    "bytes_moved",
    "cases_for",
    "copy_bandwidth",
    "machine_name",
    "machine_record",
    "make_inputs",
    "make_step",
    "peak_memory_bytes",
    "providers_for",
    "run_benchmark",
    "run_item",
    "volumetric_batch",
]

MODES = ("forward", "backward", "forward+backward")

# Provider names. "reference" is the plain math (not the dispatch's ``reference`` backend, whose
# analytic backward is a test vehicle); the others come from the registry.
PROVIDERS = ("reference", "reference-compiled", "cpu", "cuda", "triton")

VOLUMETRIC_OPS = ("soft_argmax_3d", "heatmap_mse_3d", "soft_argmax_heatmap_mse_3d")
IMAGE_OPS = ("soft_argmax_2d", "heatmap_mse_2d")
PROJECTION_OPS = ("project_to_2d", "reprojection_loss")

J_VOLUMETRIC = 18  # 17 Human3.6M joints + thorax (Tsai & Luo)
EDGE = 64  # D = H = W = 64 volumetric heatmaps, 64 x 64 2D heatmaps
LIFTING = {"N": 1024, "T": 243, "J": 17}  # SPGNet / VideoPose3D windows of 243 frames
SIGMA = 2.0  # Gaussian target width in voxels (the usual volumetric-heatmap choice)

# Tiny shapes for the CI correctness pass (odd sizes, as in tests/ops/_cases.py): each benchmark
# runs once there, through the Triton interpreter too, so these must stay small.
TINY = {
    "volumetric": {"B": 2, "J": 3, "D": 5, "H": 6, "W": 7},
    "image": {"B": 2, "J": 3, "H": 9, "W": 11},
    "lifting": {"N": 3, "T": 4, "J": 17},
}

# The point the paper case already measures is not repeated (GPU 64^3 at B=32, CPU batch 8, T=243):
# the report puts the paper case into the sweep tables and plots.
SWEEP_EDGES = {"cuda": (16, 32, 48, 80, 96), "cpu": (16, 32, 64, 96)}
SWEEP_VOLUME_BATCH = {"cuda": 32, "cpu": 2}  # B of the volume sweep (CPU: bounded memory and time)
SWEEP_BATCHES = {"cuda": (1, 8, 64), "cpu": (1, 2, 4)}
SWEEP_FRAMES = (1, 27, 81)

# torch.compile of the reference on the CPU costs ~10-20 s per graph (inductor's C++ codegen):
# the CI pass compiles exactly these (op, mode) pairs, at the tiny shape.
CI_COMPILED = frozenset({("soft_argmax_heatmap_mse_3d", "forward+backward")})

_DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16,
           "float64": torch.float64}


def volumetric_batch(device: str) -> int:
    """The paper batch on a GPU (32), the CPU seed batch (8) elsewhere."""
    return 32 if device == "cuda" else 8


# ------------------------------------------------------------------------------------------------
# Cases
# ------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Case:
    """One input configuration of one op.

    ``kind``: ``tiny`` (CI), ``paper``, ``sweep-volume``, ``sweep-batch`` or ``sweep-frames``;
    ``dims``: the sizes (B, J, D, H, W / B, J, H, W / N, T, J) as ``((name, size), ...)``.
    """

    op: str
    kind: str
    dims: tuple[tuple[str, int], ...]
    dtype: str = "float32"
    modes: tuple[str, ...] = MODES

    @property
    def size(self) -> dict[str, int]:
        return dict(self.dims)

    @property
    def torch_dtype(self) -> torch.dtype:
        return _DTYPES[self.dtype]

    @property
    def shape_label(self) -> str:
        d = self.size
        if "D" in d:
            return f"B{d['B']}-J{d['J']}-{d['D']}x{d['H']}x{d['W']}"
        if "H" in d:
            return f"B{d['B']}-J{d['J']}-{d['H']}x{d['W']}"
        return f"{d['N']}x{d['T']}x{d['J']}"

    @property
    def id(self) -> str:
        return f"{self.kind}-{self.shape_label}-{self.dtype}"

    @property
    def sweep_value(self) -> int | None:
        """The swept size: volume edge, batch or frames (None outside a sweep)."""
        d = self.size
        return {"sweep-volume": d.get("D"), "sweep-batch": d.get("B"),
                "sweep-frames": d.get("T")}.get(self.kind)


def _dims(**kw: int) -> tuple[tuple[str, int], ...]:
    return tuple(kw.items())


def cases_for(op: str, device: str, selection: str) -> list[Case]:
    """The cases of ``op`` on ``device`` for ``selection``: ``tiny`` (CI), ``paper`` or ``all``
    (paper shapes in every mode, then the sweeps in forward+backward)."""
    fb = ("forward+backward",)
    if selection == "tiny":
        if op in VOLUMETRIC_OPS:
            return [Case(op, "tiny", _dims(**TINY["volumetric"]))]
        if op in IMAGE_OPS:
            return [Case(op, "tiny", _dims(**TINY["image"]))]
        return [Case(op, "tiny", _dims(**TINY["lifting"]))]
    if selection not in ("paper", "all"):
        raise ValueError(f"cases_for: selection must be 'tiny', 'paper' or 'all', got {selection!r}")
    b = volumetric_batch(device)
    out: list[Case] = []
    if op in VOLUMETRIC_OPS:
        out.append(Case(op, "paper", _dims(B=b, J=J_VOLUMETRIC, D=EDGE, H=EDGE, W=EDGE)))
        if device == "cuda":  # mixed-precision training: bf16 logits, float32 accumulation
            out.append(Case(op, "paper", _dims(B=b, J=J_VOLUMETRIC, D=EDGE, H=EDGE, W=EDGE), "bfloat16"))
        if selection == "all":
            bs = SWEEP_VOLUME_BATCH[_dev_key(device)]
            out += [Case(op, "sweep-volume", _dims(B=bs, J=J_VOLUMETRIC, D=e, H=e, W=e), modes=fb)
                    for e in SWEEP_EDGES[_dev_key(device)]]
            if op == "soft_argmax_heatmap_mse_3d":
                out += [Case(op, "sweep-batch", _dims(B=n, J=J_VOLUMETRIC, D=EDGE, H=EDGE, W=EDGE), modes=fb)
                        for n in SWEEP_BATCHES[_dev_key(device)]]
    elif op in IMAGE_OPS:
        out.append(Case(op, "paper", _dims(B=b, J=J_VOLUMETRIC, H=EDGE, W=EDGE)))
    elif op in PROJECTION_OPS:
        out.append(Case(op, "paper", _dims(**LIFTING)))
        if selection == "all":
            out += [Case(op, "sweep-frames", _dims(N=LIFTING["N"], T=t, J=LIFTING["J"]), modes=fb)
                    for t in SWEEP_FRAMES]
    else:
        raise ValueError(f"cases_for: unknown op {op!r}")
    return out


def _dev_key(device: str) -> str:
    return "cuda" if device == "cuda" else "cpu"


# ------------------------------------------------------------------------------------------------
# Inputs
# ------------------------------------------------------------------------------------------------
def _h36m_cameras_normalised() -> torch.Tensor:
    """(4, 9) normalised intrinsics of the four Human3.6M cameras (fastpose.camera's tables)."""
    from fastpose.camera import h36m_cameras

    return torch.stack([torch.from_numpy(c.intrinsics(normalized=True)) for c in h36m_cameras("S9")])


def make_inputs(case: Case, device: str | torch.device, seed: int = 0) -> tuple[torch.Tensor, tuple]:
    """(main input, the op's other positional arguments) for ``case`` on ``device``.

    Main input in ``case.dtype``; secondary tensors (joints, weights, camera, keypoints) in float32
    (float64 for float64 inputs), as the public ops pass them to backends. Values are realistic:
    logits ~ N(0, 2^2), heatmaps in [0, 0.3) near Gaussian-target scale, joints anywhere inside the
    volume (sub-voxel), points 2-6 m in front of a real Human3.6M camera, some beyond the clamp.
    """
    gen = torch.Generator().manual_seed(seed)
    dt = case.torch_dtype
    sec = torch.float64 if dt == torch.float64 else torch.float32
    d = case.size
    op = case.op

    def to(t: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
        return t.to(device=device, dtype=dtype)

    if op in VOLUMETRIC_OPS or op in IMAGE_OPS:
        spatial = (d["D"], d["H"], d["W"]) if "D" in d else (d["H"], d["W"])
        shape = (d["B"], d["J"], *spatial)
        extent = torch.tensor([s - 1 for s in reversed(spatial)], dtype=torch.float64)  # (x, y[, z])
        joints = torch.rand(d["B"], d["J"], len(spatial), generator=gen, dtype=torch.float64) * extent
        weights = torch.rand(d["B"], d["J"], generator=gen, dtype=torch.float64) * 0.5 + 0.5
        if op.startswith("heatmap_mse"):
            x = torch.rand(shape, generator=gen) * 0.3
            return to(x, dt), (to(joints, sec), SIGMA, to(weights, sec), "mean")
        x = torch.randn(shape, generator=gen) * 2.0
        if op == "soft_argmax_heatmap_mse_3d":
            return to(x, dt), (to(joints, sec), SIGMA, to(weights, sec))
        return to(x, dt), ()
    if op in PROJECTION_OPS:
        n, t, j = d["N"], d["T"], d["J"]
        z = torch.rand(n, t, j, 1, generator=gen) * 4.0 + 2.0  # metres in front of the camera
        xy = torch.randn(n, t, j, 2, generator=gen) * 0.35 * z  # |xy/z| > 1 for ~0.5% of points
        points = torch.cat([xy, z], -1)
        cams = _h36m_cameras_normalised()
        camera = cams[torch.arange(n) % cams.shape[0]]  # (N, 9): one camera per window
        if op == "project_to_2d":
            return to(points, dt), (to(camera, sec),)
        kp = R.project_to_2d(points, camera) + torch.randn(n, t, j, 2, generator=gen) * 0.02
        return to(points, dt), (to(camera, sec), to(kp, sec), None)  # SPGNet's 2D MPJPE: unweighted
    raise ValueError(f"make_inputs: unknown op {op!r}")


def _as_tuple(out) -> tuple[torch.Tensor, ...]:
    return tuple(out) if isinstance(out, (tuple, list)) else (out,)


def output_shapes(case: Case) -> list[tuple[int, ...]]:
    """Shapes of the op's outputs for ``case`` (coordinates, losses, projections)."""
    d = case.size
    op = case.op
    if op in ("soft_argmax_3d", "soft_argmax_2d"):
        return [(d["B"], d["J"], 3 if "D" in d else 2)]
    if op == "soft_argmax_heatmap_mse_3d":
        return [(d["B"], d["J"], 3), ()]
    if op in ("heatmap_mse_3d", "heatmap_mse_2d", "reprojection_loss"):
        return [()]  # reduction "mean" / a scalar loss
    if op == "project_to_2d":
        return [(d["N"], d["T"], d["J"], 2)]
    raise ValueError(f"output_shapes: unknown op {op!r}")


def cotangents(case: Case, device: torch.device, dtype: torch.dtype, seed: int = 1) -> list[torch.Tensor]:
    """Upstream gradients: random (drawn in float32, then cast, so every dtype sees the same
    values up to rounding) for coordinates / projections, 1 for scalar losses."""
    gen = torch.Generator().manual_seed(seed)
    out = []
    for shape in output_shapes(case):
        c = torch.ones(()) if shape == () else torch.randn(shape, generator=gen)
        out.append(c.to(device=device, dtype=dtype))
    return out


# ------------------------------------------------------------------------------------------------
# Providers
# ------------------------------------------------------------------------------------------------
def providers_for(op: str, device: str, *, timing: bool) -> list[str]:
    """Providers of ``op`` on ``device``: the two reference flavours plus every registered backend
    that declares the device. Under the CPU, ``triton`` runs only in the interpreter, which is for
    correctness: it is left out of timing runs (``timing=True``)."""
    out = ["reference", "reference-compiled"]
    for be in _dispatch.available_backends(op):
        if be == "reference":
            continue
        impl = _dispatch.get_impl(op, be)
        if impl.devices is not None and device not in impl.devices:
            continue
        if timing and device == "cpu" and be == "triton":
            continue
        out.append(be)
    return out


@functools.cache
def _compiled(op: str) -> Callable:
    import torch._dynamo

    # dynamic=False: one specialised graph per shape, as a training loop with a fixed batch gets.
    # The sweeps compile ~12 shapes of one function: raise dynamo's per-function limit (8).
    cfg = torch._dynamo.config
    name = "recompile_limit" if hasattr(cfg, "recompile_limit") else "cache_size_limit"
    setattr(cfg, name, max(getattr(cfg, name), 64))
    return torch.compile(getattr(R, op), dynamic=False)


def provider_fn(op: str, provider: str) -> Callable:
    """A callable ``fn(x, *args)`` computing ``op`` with ``provider``."""
    if provider == "reference":
        return getattr(R, op)
    if provider == "reference-compiled":
        return _compiled(op)
    public = getattr(_ops, op)
    return functools.partial(public, backend=provider)


def not_supported(op: str, provider: str, x: torch.Tensor, args: tuple) -> list[str]:
    """Why ``provider`` cannot serve these inputs (empty: it can)."""
    if provider.startswith("reference"):
        return []
    return _dispatch.not_supported_reasons(op, provider, x, x, *args)


# ------------------------------------------------------------------------------------------------
# Steps per mode
# ------------------------------------------------------------------------------------------------
@dataclass
class Step:
    """What one timed round calls: ``target(*setup()[0])``; ``setup`` is None except in backward."""

    target: Callable
    setup: Callable | None
    # Turns the target's return value into (outputs or None, gradient or None) for the check.
    unpack: Callable


def make_step(case: Case, fn: Callable, x: torch.Tensor, args: tuple, mode: str) -> Step:
    """The callable timed for ``mode`` (see the module docstring)."""
    xg = x.detach().requires_grad_(True)
    cots = cotangents(case, x.device, x.dtype)

    def forward():
        return _as_tuple(fn(xg, *args))

    def grad_of(outs):
        (g,) = torch.autograd.grad(outs, xg, cots)
        return g

    if mode == "forward":
        return Step(forward, None, lambda r: ([o.detach() for o in r], None))
    if mode == "forward+backward":
        def fwd_bwd():
            outs = forward()
            return [o.detach() for o in outs], grad_of(outs)

        return Step(fwd_bwd, None, lambda r: r)
    if mode == "backward":
        # pytest-benchmark's setup runs untimed before each round and returns (args, kwargs).
        return Step(grad_of, lambda: ((forward(),), {}), lambda r: (None, r))
    raise ValueError(f"make_step: mode must be one of {MODES}, got {mode!r}")


# ------------------------------------------------------------------------------------------------
# Timing
# ------------------------------------------------------------------------------------------------
@dataclass
class _CudaEventTarget:
    """Wraps a round's target: flush L2, record an event, call, record, wait; keeps device ms."""

    fn: Callable
    device: torch.device
    times_ms: list[float] = field(default_factory=list)

    def __post_init__(self):
        # Larger than any current L2 (H100 50 MB, H200 60 MB): each round starts cold, as the
        # paper-size inputs (hundreds of MB) do anyway.
        self._flush = torch.empty(256 * 2**20, dtype=torch.int8, device=self.device)

    def __call__(self, *args):
        start = torch.cuda.Event(enable_timing=True)
        end = torch.cuda.Event(enable_timing=True)
        self._flush.zero_()
        start.record()
        out = self.fn(*args)
        end.record()
        end.synchronize()
        self.times_ms.append(start.elapsed_time(end))
        return out


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _call_once(step: Step, device: torch.device) -> tuple[object, float]:
    a, kw = step.setup() if step.setup else ((), {})
    _sync(device)
    t0 = time.perf_counter()
    out = step.target(*a, **kw)
    _sync(device)
    return out, time.perf_counter() - t0


def _rounds(seconds_per_call: float, device: torch.device) -> int:
    """Enough rounds for ~3 s (CPU) / ~1 s (GPU) of measurement, within [5, 100] / [10, 200].

    At least 5 on the CPU: on a shared machine single rounds stall (another process holds a core),
    and the median needs a majority of clean rounds.
    """
    if device.type == "cuda":
        return int(min(200, max(10, math.ceil(1.0 / max(seconds_per_call, 1e-6)))))
    return int(min(100, max(5, math.ceil(3.0 / max(seconds_per_call, 1e-6)))))


# ------------------------------------------------------------------------------------------------
# Peak memory
# ------------------------------------------------------------------------------------------------
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


# ------------------------------------------------------------------------------------------------
# Machine record
# ------------------------------------------------------------------------------------------------
def _slug(text: str) -> str:
    out = "".join(c.lower() if c.isalnum() else "-" for c in text)
    while "--" in out:
        out = out.replace("--", "-")
    return out.strip("-")


def machine_name(device: str) -> str:
    """``benchmarks/results/<machine>``: the GPU's name (``nvidia-h100-80gb-hbm3``) or ``cpu-<host>``."""
    if device == "cuda" and torch.cuda.is_available():
        return _slug(torch.cuda.get_device_name(0))
    return "cpu-" + _slug(socket.gethostname().split(".")[0] or "local")


def _git_revision() -> str:
    env = os.environ.get("FASTPOSE_GIT_REVISION")
    if env:
        return env
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    try:
        rev = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True,
                             timeout=10, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=root,
                               capture_output=True, text=True, timeout=10).stdout.strip()
        return rev + ("-dirty" if dirty else "")
    except Exception as exc:  # not a git checkout (a copied tree on a GPU machine)
        return f"unknown ({type(exc).__name__})"


def machine_record(device: str) -> dict:
    """Machine, versions, threads, load, copy bandwidth and git revision, stored with the results."""
    import numpy

    rec: dict = {
        "fastpose_machine": machine_name(device),
        "fastpose_device": device,
        "hostname": socket.gethostname(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "numpy": numpy.__version__,
        "torch_threads": torch.get_num_threads(),
        "cpu_count": os.cpu_count(),
        "loadavg": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
        "git_revision": _git_revision(),
        "backends": {op: _dispatch.available_backends(op) for op in _dispatch.OPS},
        "backend_load_errors": _dispatch.load_errors(),
        "triton_interpret": os.environ.get("TRITON_INTERPRET", "0"),
        # OpenMP / threading settings change CPU timings (OMP_WAIT_POLICY above all): kept.
        "env": {k: v for k, v in sorted(os.environ.items())
                if k.startswith(("OMP_", "GOMP_", "KMP_", "MKL_", "FASTPOSE_", "CUDA_VISIBLE"))},
    }
    try:
        import triton

        rec["triton"] = triton.__version__
    except Exception as exc:
        rec["triton"] = f"not installed ({type(exc).__name__})"
    if device == "cuda" and torch.cuda.is_available():
        p = torch.cuda.get_device_properties(0)
        rec.update(gpu=p.name, gpu_sm_count=p.multi_processor_count,
                   gpu_memory_bytes=p.total_memory, cuda=torch.version.cuda,
                   gpu_capability=f"{p.major}.{p.minor}")
    try:
        rec["copy_bandwidth_Bps"] = copy_bandwidth(device)
    except Exception as exc:  # out of memory on a busy device: the report then shows no roofline
        rec["copy_bandwidth_Bps"] = None
        rec["copy_bandwidth_error"] = f"{type(exc).__name__}: {exc}"
    return rec


# ------------------------------------------------------------------------------------------------
# The check against the reference
# ------------------------------------------------------------------------------------------------
# The rule of tests/_tolerances.py, for every dtype: against float64 reference math on the same
# (rounded) inputs, a provider's error is at most LOW_PRECISION_FACTOR (2) times the error of the
# plain reference run in the same dtype, plus a slack of atol * max|expected| (atol of ATOL_RTOL for
# float32/float64, 1e-3 for float16/bfloat16). Relative to the reference's own error because some
# figures are ill-conditioned in float32 (the direction of a tiny reprojection error, a gradient of
# a mean over 10^7 voxels), so a fixed tolerance is either vacuous or fails the reference itself.
def _tolerance_rule(dtype: torch.dtype) -> tuple[float, float]:
    """(factor, normalised slack) for ``dtype``."""
    try:
        from tests._tolerances import ATOL_RTOL, LOW_PRECISION_FACTOR
    except ImportError:  # running outside the repository: the same numbers
        ATOL_RTOL = {torch.float64: (1e-10, 1e-9), torch.float32: (2e-5, 2e-4)}
        LOW_PRECISION_FACTOR = 2.0
    slack = ATOL_RTOL[dtype][0] if dtype in (torch.float32, torch.float64) else 1e-3
    return LOW_PRECISION_FACTOR, slack


def _expected(case: Case, x: torch.Tensor, args: tuple):
    """(float64 reference math, reference math in the case's dtype): each (outputs, gradient),
    with the cotangents of the provider's step (same shapes and seed)."""
    ref = getattr(R, case.op)
    x64 = x.detach().double()
    args64 = tuple(a.double() if isinstance(a, torch.Tensor) else a for a in args)
    exact = make_step(case, ref, x64, args64, "forward+backward").target()
    same = make_step(case, ref, x, args, "forward+backward").target()
    return exact, same


def _compare(actual: torch.Tensor, same: torch.Tensor, exact: torch.Tensor, dtype: torch.dtype,
             what: str, failures: list[str]) -> float:
    """Append to ``failures`` when ``actual`` breaks the rule above; return its normalised error."""
    if actual.dtype != dtype:
        failures.append(f"{what} has dtype {actual.dtype}, expected {dtype}")
        return float("nan")
    if actual.shape != exact.shape:
        failures.append(f"{what} has shape {tuple(actual.shape)}, expected {tuple(exact.shape)}")
        return float("nan")
    if exact.numel() == 0:
        return 0.0
    e = exact.detach().double().cpu()
    scale = max(float(e.abs().max()), 1e-30)
    err = float((actual.detach().double().cpu() - e).abs().max()) / scale
    ref_err = float((same.detach().double().cpu() - e).abs().max()) / scale
    factor, slack = _tolerance_rule(dtype)
    if not (err <= factor * ref_err + slack):  # also catches NaN
        failures.append(f"{what}: error {err:.3e} x max|expected| > {factor} x reference's {ref_err:.3e} + {slack}")
    return err


_EXPECTED_CACHE: dict = {}


def check_against_reference(case: Case, x, args, outs, grad) -> dict:
    """Compare a provider's outputs / gradient with reference math; raise AssertionError on mismatch."""
    key = (case, x.device.type)
    if key not in _EXPECTED_CACHE:
        _EXPECTED_CACHE.clear()  # one entry: paper-size float64 references are hundreds of MB
        _EXPECTED_CACHE[key] = _expected(case, x, args)
    (exact_outs, exact_grad), (same_outs, same_grad) = _EXPECTED_CACHE[key]
    dt = case.torch_dtype
    result: dict = {}
    failures: list[str] = []
    if outs is not None:
        if len(outs) != len(exact_outs):
            failures.append(f"{len(outs)} outputs, expected {len(exact_outs)}")
        for k, (o, s, e) in enumerate(zip(outs, same_outs, exact_outs, strict=False)):
            result[f"output{k}_max_rel_err"] = _compare(o, s, e, dt, f"output {k}", failures)
    if grad is not None:
        result["grad_max_rel_err"] = _compare(grad, same_grad, exact_grad, dt, "gradient", failures)
    if failures:
        raise AssertionError(f"{case.op} [{case.id}] does not match the reference: " + "; ".join(failures))
    return result


# ------------------------------------------------------------------------------------------------
# The benchmark body shared by every suite
# ------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class BenchItem:
    """One parametrisation of a suite's test: what to run and what to record."""

    case: Case
    mode: str
    provider: str
    device: str
    measure_memory: bool
    check: bool

    @property
    def id(self) -> str:
        return f"{self.case.op}-{self.case.id}-{self.mode}-{self.provider}"


def run_item(benchmark, item: BenchItem) -> None:
    run_benchmark(benchmark, item.case, item.mode, item.provider, item.device,
                  measure_memory=item.measure_memory, check=item.check)


def run_benchmark(benchmark, case: Case, mode: str, provider: str, device: str, *,
                  measure_memory: bool, check: bool) -> None:
    """Time ``case.op`` with ``provider`` in ``mode``; fill ``benchmark.extra_info``; check it.

    With ``--benchmark-disable`` (CI) the step runs exactly once: the point is the check.
    """
    import pytest

    dev = torch.device(device)
    x, args = make_inputs(case, dev)
    reasons = not_supported(case.op, provider, x, args)
    if reasons:
        pytest.skip(f"{provider} cannot serve {case.op} [{case.id}]: " + "; ".join(reasons))
    fn = provider_fn(case.op, provider)
    step = make_step(case, fn, x, args, mode)
    info = benchmark.extra_info
    info.update(op=case.op, case=case.id, kind=case.kind, shape=case.size, dtype=case.dtype, mode=mode,
                provider=provider, device=device, sweep_value=case.sweep_value,
                bytes=bytes_moved(case, mode))
    benchmark.group = f"{case.op} {case.id} {mode}"

    if benchmark.disabled:
        result = benchmark.pedantic(step.target, setup=step.setup, rounds=1)
    else:
        # Warm-up (compilation, autotuning, page faults of fresh allocations), then enough rounds
        # for ~1-3 s judged from the faster of two untimed calls.
        _, t = _call_once(step, dev)
        _, t2 = _call_once(step, dev)
        t = min(t, t2) if provider not in ("reference-compiled", "triton") else t2
        target = step.target
        timer = None
        if dev.type == "cuda":
            timer = _CudaEventTarget(step.target, dev)
            target = timer
        rounds = _rounds(t, dev)
        result = benchmark.pedantic(target, setup=step.setup, rounds=rounds, iterations=1)
        if timer is not None:
            info.update(time_source="cuda_events", median_ms=statistics.median(timer.times_ms),
                        min_ms=min(timer.times_ms), times_ms=timer.times_ms)
        else:
            times = benchmark.stats.stats.data if benchmark.stats else []
            info.update(time_source="host_clock", median_ms=statistics.median(times) * 1e3,
                        min_ms=min(times) * 1e3)
        # A shared machine's load is the main source of CPU noise: kept with each result.
        info["loadavg_1min"] = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
        info["rounds"] = rounds
        info["achieved_GBps"] = info["bytes"] / (info["median_ms"] * 1e-3) / 1e9

    if check:
        outs, grad = step.unpack(result)
        info.update(check_against_reference(case, x, args, outs, grad))
    del result
    if measure_memory:
        info["peak_memory_bytes"] = peak_memory_bytes(step, dev)
        # Every step that produces a gradient allocates at least the gradient tensor itself.
        if mode != "forward":
            need = x.numel() * x.element_size()
            assert info["peak_memory_bytes"] >= need, (
                f"peak memory {info['peak_memory_bytes']} B < the gradient's {need} B: the memory probe is broken")


# ---- pytest options shared by every suite (declared in benchmarks/conftest.py) ---------------


def bench_device(config) -> str:
    """``--bench-device``, default cuda when available, else cpu."""
    dev = config.getoption("bench_device") or ("cuda" if torch.cuda.is_available() else "cpu")
    if dev == "cuda" and not torch.cuda.is_available():
        raise pytest.UsageError("--bench-device cuda: torch.cuda.is_available() is False on this machine")
    return dev


def bench_selection(config) -> str:
    """``--bench-cases`` (``tiny`` | ``paper`` | ``all``); ``auto``: the real shapes only when benchmarks were asked for
    (``--benchmark-only``, ``--benchmark-json``, ``--benchmark-save``/``--benchmark-autosave``),
    else the tiny correctness pass (``--benchmark-disable`` in CI, or a plain ``pytest`` run that
    collects tests/ and benchmarks/ together)."""
    selection = config.getoption("bench_cases")
    if selection != "auto":
        return selection
    if config.getoption("benchmark_disable", False):
        return "tiny"
    asked = any(config.getoption(name, None) for name in
                ("benchmark_only", "benchmark_json", "benchmark_save", "benchmark_autosave"))
    return "all" if asked else "tiny"
