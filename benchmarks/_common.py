"""Compatibility re-exports for suites not yet moved to the split modules.

The former ``_common`` is split by job: :mod:`benchmarks._cases` (shapes, inputs, cotangents),
:mod:`benchmarks._providers` / :mod:`benchmarks._peers` (who computes a row),
:mod:`benchmarks._timing` (steps, timers), :mod:`benchmarks._memory` (peak memory, roofline),
:mod:`benchmarks._machine` (machine record), :mod:`benchmarks._check` (the check against reference
math) and :mod:`benchmarks._runner` (the shared benchmark body, pytest options). Only
``benchmarks/test_bench_engines.py`` still imports from here; no code lives in this module.
"""

from benchmarks._runner import bench_device, bench_selection
from benchmarks._timing import CudaEventTarget

_CudaEventTarget = CudaEventTarget  # the engines suite's import name

__all__ = ["CudaEventTarget", "bench_device", "bench_selection"]
