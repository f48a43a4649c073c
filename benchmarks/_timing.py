"""Timing: the callable of one round per mode, CUDA-event timers, warm-up and round counts.

Modes: ``forward`` (a training forward: the input requires grad, so whatever the backward needs is
saved), ``backward`` (one backward pass; the forward runs untimed in pytest-benchmark's ``setup``)
and ``forward+backward``.

On a GPU each round is bracketed by CUDA events after an L2 flush (the device time of the call,
never the host clock alone); pytest-benchmark's own (host) statistics of the same rounds are kept
too. On the CPU the host clock of pytest-benchmark is the measurement.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import torch

from benchmarks._cases import MODES, Case, as_tuple, cotangents

__all__ = ["CudaEventTarget", "Step", "call_once", "make_step", "rounds_for", "sync"]


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
        return as_tuple(fn(xg, *args))

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
class CudaEventTarget:
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


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def call_once(step: Step, device: torch.device) -> tuple[object, float]:
    a, kw = step.setup() if step.setup else ((), {})
    sync(device)
    t0 = time.perf_counter()
    out = step.target(*a, **kw)
    sync(device)
    return out, time.perf_counter() - t0


def rounds_for(seconds_per_call: float, device: torch.device) -> int:
    """Enough rounds for ~3 s (CPU) / ~1 s (GPU) of measurement, within [5, 100] / [10, 200].

    At least 5 on the CPU: on a shared machine single rounds stall (another process holds a core),
    and the median needs a majority of clean rounds. ``FASTPOSE_BENCH_ROUND_S`` (seconds) replaces
    the 3 s / 1 s target (``benchmarks/gpu_run.sh`` uses 0.3 s to fit its time budget).
    """
    env = os.environ.get("FASTPOSE_BENCH_ROUND_S")
    target = float(env) if env else (1.0 if device.type == "cuda" else 3.0)
    if not target > 0:
        raise ValueError(f"FASTPOSE_BENCH_ROUND_S must be a positive number of seconds, received {env!r}")
    if device.type == "cuda":
        return int(min(200, max(10, math.ceil(target / max(seconds_per_call, 1e-6)))))
    return int(min(100, max(5, math.ceil(target / max(seconds_per_call, 1e-6)))))

