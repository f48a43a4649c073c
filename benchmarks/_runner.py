"""The benchmark body shared by every op suite and the pytest options every suite reads.

:func:`run_item` times one (case, mode, provider) item, records what the report needs in
``benchmark.extra_info``, checks the provider against reference math and measures peak memory.
"""

from __future__ import annotations

import os
import statistics
from dataclasses import dataclass

import pytest
import torch

from benchmarks._cases import Case, make_inputs
from benchmarks._check import check_against_reference
from benchmarks._memory import bytes_moved, peak_memory_bytes
from benchmarks._peers import check_target
from benchmarks._providers import not_supported, prepare_args, provider_fn, target_only
from benchmarks._timing import CudaEventTarget, call_once, make_step, rounds_for

__all__ = ["BenchItem", "bench_device", "bench_selection", "run_benchmark", "run_item"]


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
    dev = torch.device(device)
    x, args = make_inputs(case, dev)
    reasons = not_supported(case.op, provider, x, args)
    if reasons:
        pytest.skip(f"{provider} cannot serve {case.op} [{case.id}]: " + "; ".join(reasons))
    fn = provider_fn(case.op, provider)
    # A peer's precomputed target / camera layout is made here, untimed (its data pipeline's work).
    step = make_step(case, fn, x, prepare_args(case.op, provider, x, args), mode)
    only_target = target_only(case.op, provider)
    info = benchmark.extra_info
    info.update(op=case.op, case=case.id, kind=case.kind, shape=case.size, dtype=case.dtype, mode=mode,
                provider=provider, device=device, sweep_value=case.sweep_value,
                # target generation writes one float32 volume; everything else: the op's bytes
                bytes=x.numel() * 4 if only_target else bytes_moved(case, mode))
    if case.camera:
        info["camera_shape"] = list(args[0].shape)
    benchmark.group = f"{case.op} {case.id} {mode}"

    if benchmark.disabled:
        result = benchmark.pedantic(step.target, setup=step.setup, rounds=1)
    else:
        # Warm-up (compilation, autotuning, page faults of fresh allocations), then enough rounds
        # for ~1-3 s judged from the faster of two untimed calls.
        _, t = call_once(step, dev)
        _, t2 = call_once(step, dev)
        t = min(t, t2) if not provider.endswith("-compiled") and provider != "triton" else t2
        target = step.target
        timer = None
        if dev.type == "cuda":
            timer = CudaEventTarget(step.target, dev)
            target = timer
        rounds = rounds_for(t, dev)
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
        if only_target:
            info.update(check_target(x, args, outs[0]))
        else:
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
